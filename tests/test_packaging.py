"""The install steps of the docs work as written, and the built distributions are complete.

Runs the quick start's install blocks verbatim in fresh virtualenvs (with the
venv's ``bin`` first on ``PATH``, in a clean copy of the repository): one
installs from the clone, the other builds an sdist and a wheel with
``python -m build`` and installs the wheel. ``twine check`` must accept both
distributions; the wheel must carry the templates, static files and
migrations and the SPDX license metadata; no install may print setuptools'
license deprecation warnings. Then, outside the source tree, the installed
package must save and load a conversation and pass ``manage.py check`` and
``migrate`` in a minimal project. Needs only the package registries.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "docs" / "quickstart.md"
BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)

pytestmark = pytest.mark.slow

# Appended to the settings of a `django-admin startproject` project, as the quick start says.
SETTINGS = """
INSTALLED_APPS += ["rest_framework", "django_convstore"]
CONVSTORE = {"default": {"BACKEND": "django_convstore.backends.database.DatabaseStore"}}
"""

URLS = """
from django.urls import include
urlpatterns += [path("api/", include("django_convstore.api.urls"))]
"""

STORE_OPERATION = """
import django
django.setup()
import django_convstore
from django_convstore import store
assert "site-packages" in django_convstore.__file__, django_convstore.__file__
store.save("packaged", [{"role": "user", "content": "Hello from the wheel"}], owner="1")
store.append("packaged", [{"role": "assistant", "content": "Hi"}])
loaded = store.load("packaged")
assert [m.content for m in loaded.messages] == ["Hello from the wheel", "Hi"], loaded
print("store ok:", loaded.metadata.message_count)
"""

LICENSE_WARNINGS = ("license", "License classifiers", "SetuptoolsDeprecationWarning")


def install_blocks() -> dict[str, str]:
    """The quick start's install blocks, by how they start."""
    blocks = {}
    for code in BLOCK.findall(QUICKSTART.read_text()):
        first = code.strip().splitlines()[0]
        if first.startswith('python -m pip install ".['):
            blocks["clone"] = code
        elif first.startswith("python -m pip install build"):
            blocks["wheel"] = code
    assert set(blocks) == {"clone", "wheel"}, "the quick start lost an install block"
    return blocks


def clean_copy(target: Path) -> Path:
    """The repository's tracked and new (not ignored) files, as a fresh clone has them."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            destination = target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
    return target


def fresh_venv(path: Path) -> dict[str, str]:
    """A new virtualenv; the environment that puts its ``python`` first on PATH."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(path)], check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env["PATH"] = f"{path / 'bin'}{os.pathsep}{env['PATH']}"
    env["VIRTUAL_ENV"] = str(path)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run_block(code: str, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    return output


def assert_no_license_warnings(output: str) -> None:
    noisy = [
        line
        for line in output.splitlines()
        if "Warning" in line and any(word in line for word in LICENSE_WARNINGS)
    ]
    assert not noisy, "\n".join(noisy)


def new_project(venv: Path, path: Path) -> Path:
    """``django-admin startproject mysite`` with the app added the way the quick start says."""
    path.mkdir()
    run_project(venv, path, "-m", "django", "startproject", "mysite", ".")
    with (path / "mysite" / "settings.py").open("a") as settings:
        settings.write(SETTINGS)
    with (path / "mysite" / "urls.py").open("a") as urls:
        urls.write(URLS)
    return path


def run_project(venv: Path, project: Path, *args: str) -> str:
    result = subprocess.run(
        [str(venv / "bin" / "python"), *args],
        cwd=project,
        env={
            **{k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}},
            "DJANGO_SETTINGS_MODULE": "mysite.settings",
            "PYTHONPATH": str(project),
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("packaging")


def test_readme_and_quick_start_give_the_same_install_line():
    readme = (ROOT / "README.md").read_text()
    assert install_blocks()["clone"].strip() in readme


def test_install_from_the_clone_as_written(workdir):
    source = clean_copy(workdir / "clone-a")
    venv = workdir / "venv-clone"
    env = fresh_venv(venv)
    output = run_block(install_blocks()["clone"], source, env)
    assert_no_license_warnings(output)
    project = new_project(venv, workdir / "project-clone")
    run_project(venv, project, "manage.py", "migrate", "--verbosity", "0")
    assert "store ok: 2" in run_project(venv, project, "-c", STORE_OPERATION)


def test_wheel_and_sdist_build_check_and_install_as_written(workdir):
    source = clean_copy(workdir / "clone-b")
    venv = workdir / "venv-wheel"
    env = fresh_venv(venv)
    output = run_block(install_blocks()["wheel"], source, env)
    assert_no_license_warnings(output)

    dist = sorted((source / "dist").iterdir(), key=lambda path: path.suffix)
    assert [p.suffix for p in dist] == [".gz", ".whl"], dist
    twine = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, dist)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert twine.returncode == 0, twine.stdout + twine.stderr

    wheel = zipfile.ZipFile(dist[1])
    names = wheel.namelist()
    for expected in (
        "django_convstore/py.typed",
        "django_convstore/migrations/0001_initial.py",
    ):
        assert expected in names
    assert any(n.startswith("django_convstore/templates/admin/") for n in names)
    assert any(n.startswith("django_convstore/static/") for n in names)
    assert not any(n.startswith(("tests/", "testproject/", "benchmarks/")) for n in names)
    metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
    metadata = wheel.read(metadata_name).decode()
    assert "License-Expression: MIT" in metadata
    assert "Classifier: License ::" not in metadata
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    for classifier in ("Django :: 5.2", "Django :: 6.0", "Django :: 6.1"):
        assert f"Classifier: Framework :: {classifier}" in metadata

    project = new_project(venv, workdir / "project-wheel")
    checked = run_project(venv, project, "manage.py", "check")
    assert "System check identified no issues" in checked
    migrated = run_project(venv, project, "manage.py", "migrate")
    assert "Applying django_convstore.0001_initial... OK" in migrated
    assert "store ok: 2" in run_project(venv, project, "-c", STORE_OPERATION)
    tables = run_project(
        venv,
        project,
        "-c",
        "import sqlite3; print(sorted(r[0] for r in sqlite3.connect('db.sqlite3')"
        ".execute(\"select name from sqlite_master where type='table'\")))",
    )
    assert "django_convstore_storedconversation" in tables


def test_the_demo_extra_installs_no_test_or_lint_tooling():
    """What ``make demo`` installs, read from the installed package's metadata."""
    requirements = metadata.requires("django-convstore") or []

    def resolve(extra: str) -> set[str]:
        found: set[str] = set()
        for requirement in requirements:
            name, _, marker = requirement.partition(";")
            if f'extra == "{extra}"' not in marker:
                continue
            nested = re.match(r"django-convstore\[(.+)\]", name.strip())
            if nested:
                for inner in nested.group(1).split(","):
                    found |= resolve(inner.strip())
            else:
                found.add(re.split(r"[<>=!~\[ (]", name.strip(), maxsplit=1)[0].lower())
        return found

    demo = resolve("demo")
    assert {"djangorestframework", "drf-spectacular", "django-redis"} <= demo
    assert not demo & {"playwright", "mypy", "schemathesis", "matplotlib", "pytest", "ruff"}
