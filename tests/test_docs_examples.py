"""Every code example in README.md and the docs (``docs/**/*.md``) is executed.

- ``python`` blocks are run with ``exec``. Blocks that define ``CONVSTORE``
  (and ``CACHES``) have every alias built with ``create_store`` (which checks
  the configuration without connecting). A line ``expr  # literal`` is checked:
  ``expr`` must equal the literal.
- ``bash`` blocks of ``curl`` commands run verbatim against the demo project,
  started the way ``make demo`` starts it (only its address differs).
- ``console`` blocks of ``$ python manage.py ...`` lines run the commands.
- The remaining blocks (``make``/``pip``/``tox`` lines, cron syntax) are listed
  in ``NOT_EXECUTED`` with the test that covers them instead; a new block of an
  unknown kind fails.
"""

from __future__ import annotations

import ast
import io
import os
import re
import shlex
import subprocess
import sys
import types
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import override_settings

from django_convstore import create_store, stores
from tests.demo_server import Demo, running_demo

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
MEMORY = {"BACKEND": "django_convstore.backends.memory.MemoryStore"}

# First line of a shell block -> the test that runs the same thing instead.
NOT_EXECUTED = {
    "make demo": "the demo itself: tests/test_demo.py starts it the same way",
    "make test": "this test suite",
    "make lint": "ruff and mypy; .ci/run runs them (tox -e lint)",
    "make docs": "the docs build; .ci/run runs it (tox -e docs)",
    "make bench": "the benchmarks; tests/test_benchmarks.py runs them in smoke mode",
    "python -m pip install": "tests/test_packaging.py runs the install blocks in a fresh venv",
    "python -m pip install tox": "the tox environments; .ci/run runs them",
    ".venv/bin/python -m pytest": "this test suite",
    ".venv/bin/python -m benchmarks": "tests/test_benchmarks.py runs the benchmarks",
    "cron": "crontab syntax; the command in it is run by the console examples",
}


def _blocks() -> list[tuple[str, int, str, str]]:
    blocks = []
    for page in PAGES:
        text = page.read_text()
        name = str(page.relative_to(ROOT))
        blocks += [
            (name, text[: match.start()].count("\n") + 1, match.group(1), match.group(2))
            for match in BLOCK.finditer(text)
        ]
    return blocks


def _block_id(block: tuple[str, int, str, str]) -> str:
    return f"{block[0]}:{block[1]}-{block[2]}"


def _first_command(code: str) -> str:
    lines = [line for line in code.strip().splitlines() if not line.startswith("#")]
    return lines[0] if lines else ""


def _skipped_reason(language: str, code: str) -> str | None:
    if language == "cron":
        return NOT_EXECUTED["cron"]
    first = _first_command(code)
    for prefix, reason in NOT_EXECUTED.items():
        if first.startswith(prefix):
            return reason
    return None


def _check_literal_comments(code: str, namespace: dict[str, Any]) -> None:
    for line in code.splitlines():
        if "  # " not in line or line.startswith((" ", "#")):
            continue
        expression, comment = line.split("  # ", 1)
        try:
            expected = ast.literal_eval(comment.split(";")[0].strip())
            ast.parse(expression.strip(), mode="eval")
        except (ValueError, SyntaxError):
            continue
        assert eval(expression.strip(), namespace) == expected, line


def _run_python(code: str, filename: str) -> None:
    celery = types.ModuleType("celery")
    celery.shared_task = lambda func: func  # type: ignore[attr-defined]
    namespace: dict[str, Any] = {"__name__": "readme_example", "os": os}
    aliases = {alias: dict(MEMORY) for alias in ("default", "memory", "archive", "old")}
    os.environ.setdefault("ZERODB_API_KEY", "readme-example-key")
    with (
        override_settings(CONVSTORE=aliases),
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.setitem(sys.modules, "celery", celery)
        try:
            exec(compile(code, filename, "exec"), namespace)
            _check_literal_comments(code, namespace)
        finally:
            for alias in aliases:
                stores[alias].clear()
    caches = namespace.get("CACHES")
    for alias, config in (namespace.get("CONVSTORE") or {}).items():
        with override_settings(CACHES=caches or {}):
            built = create_store(config, alias=alias)
        assert built.alias == alias


def _run_console(code: str, tmp_path: Path) -> None:
    aliases = {alias: dict(MEMORY) for alias in ("default", "archive", "old")}
    with override_settings(CONVSTORE=aliases):
        for alias in aliases:
            stores[alias].save("seed", [{"role": "user", "content": "x"}], owner="17")
        cwd = os.getcwd()
        os.chdir(tmp_path)
        try:
            for line in code.splitlines():
                if not line.startswith("$ python manage.py "):
                    continue
                command = line[len("$ python manage.py ") :].split("#")[0]
                words = shlex.split(command)
                if ">" in words:
                    words = words[: words.index(">")]
                if words[0] == "convstore_import":
                    (tmp_path / words[1]).exists() or call_command(
                        "convstore_export", "--output", words[1]
                    )
                with redirect_stdout(io.StringIO()):
                    call_command(*words)
        finally:
            os.chdir(cwd)
            for alias in aliases:
                stores[alias].clear()


def _run_curl(code: str, base_url: str, tmp_path: Path) -> None:
    """The block as written, against ``base_url`` instead of the demo's default address."""
    script = code.replace("http://127.0.0.1:8000", base_url)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script.replace("curl ", "curl -sS --fail-with-body ")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _is_curl(language: str, code: str) -> bool:
    return language == "bash" and _first_command(code).startswith("curl ")


BLOCKS = _blocks()
CURL_BLOCKS = [block for block in BLOCKS if _is_curl(block[2], block[3])]
OTHER_BLOCKS = [block for block in BLOCKS if not _is_curl(block[2], block[3])]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with running_demo(tmp_path_factory.mktemp("docs-demo")) as running:
        yield running


@pytest.mark.parametrize("block", OTHER_BLOCKS, ids=_block_id)
def test_docs_example(block, tmp_path):
    page, _line, language, code = block
    reason = _skipped_reason(language, code)
    if reason:
        assert language in ("bash", "cron"), f"only shell blocks may be exempt: {reason}"
        return
    if language == "python":
        _run_python(code, page)
    elif language == "console":
        _run_console(code, tmp_path)
    else:
        pytest.fail(f"{page}: a block of kind {language!r} is neither run nor exempt")


@pytest.mark.parametrize("block", CURL_BLOCKS, ids=_block_id)
def test_docs_curl_example_runs_against_the_demo(block, demo, tmp_path):
    _run_curl(block[3], demo.url, tmp_path)


def test_every_page_of_the_site_is_scanned():
    nav = re.findall(r":\s+([\w/-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
    scanned = {str(page.relative_to(ROOT / "docs")) for page in PAGES[1:]}
    assert len(nav) >= 19 and set(nav) <= scanned
    assert "docs/api.md" in {block[0] for block in CURL_BLOCKS}


def test_literal_comments_are_checked():
    _check_literal_comments("x + 1  # 3", {"x": 2})
    with pytest.raises(AssertionError):
        _check_literal_comments("x + 1  # 4", {"x": 2})
    _check_literal_comments("x  # not a literal; ignored", {"x": 2})
