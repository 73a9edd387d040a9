# Two commands matter: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= dev
STAMP  := $(VENV)/.installed-$(EXTRAS)-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install test lint format demo bench docs docs-serve clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	@case ',$(EXTRAS),' in *,dev,*|*,test,*) \
	    $(BIN)/python -m pip install --quiet 'mysqlclient>=2.2' >/dev/null 2>&1 \
	    || echo "note: mysqlclient did not build (it needs default-libmysqlclient-dev and pkg-config); the MySQL tests will skip";; esac
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

## Run the demo project on http://127.0.0.1:8000/ (installs only the demo extra).
demo:
	@$(MAKE) --no-print-directory install EXTRAS=demo
	cd testproject && ../$(BIN)/python manage.py demo_setup
	cd testproject && ../$(BIN)/python manage.py runserver $${DEMO_ADDR:-127.0.0.1:8000}

## Run the benchmarks (writes benchmarks/results/latest.md).
bench:
	@$(MAKE) --no-print-directory install EXTRAS=$(EXTRAS),bench
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

## Build the docs site into site/ (warnings are errors), in a virtualenv of its own.
DOCS_VENV ?= .venv-docs
DOCS_STAMP := $(DOCS_VENV)/.installed-docs-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

$(DOCS_STAMP): pyproject.toml
	@test -x $(DOCS_VENV)/bin/python || $(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DOCS_VENV)/bin/python -m pip install --quiet -e '.[docs]'
	@rm -f $(DOCS_VENV)/.installed-docs-*
	@touch $@

# NO_MKDOCS_2_WARNING: Material's end-of-life notice (see docs/contributing.md).
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(DOCS_VENV)/bin/mkdocs build --strict

docs-serve: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(DOCS_VENV)/bin/mkdocs serve --strict -a $${DOCS_ADDR:-127.0.0.1:8001}

clean:
	rm -rf $(VENV) $(DOCS_VENV) .tox build dist site *.egg-info .pytest_cache .mypy_cache .ruff_cache
