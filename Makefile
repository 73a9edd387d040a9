# Two commands matter: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= dev
STAMP  := $(VENV)/.installed-$(EXTRAS)-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install test test-fast lint format demo bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	@rm -f $(VENV)/.installed-$(EXTRAS)-*
	@touch $@

install: $(STAMP)

## Run the whole test suite (starts its own Redis and ZeroDB test server).
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## Lint and type-check.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy django_convstore tests benchmarks testproject

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Run the demo project on http://127.0.0.1:8000/
demo: install
	cd testproject && ../$(BIN)/python manage.py demo_setup
	cd testproject && ../$(BIN)/python manage.py runserver $${DEMO_ADDR:-127.0.0.1:8000}

## Run the benchmarks (writes benchmarks/results/latest.md).
bench:
	@$(MAKE) --no-print-directory install EXTRAS=$(EXTRAS),bench
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
