"""Fixtures of the management command tests: ``settings.CONVSTORE`` with real stores."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command

from django_convstore import create_store
from django_convstore.backends.base import BaseStore
from django_convstore.handler import stores

BACKENDS = ["memory", "redis", "redis_cluster", "zerodb", "database"]
HERE = Path(__file__).parent
#: Backend names of the database stores → the test database alias they run on.
DATABASE_LEGS = {"database": "sqlite", "database_postgresql": "postgres"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give every test here that runs a database store transactional access to its database.

    The stores are built from backend names given as parameters, so the
    database fixtures cannot see from a test's signature which database it uses.
    """
    for item in items:
        if HERE not in Path(str(item.path)).parents:
            continue
        params = getattr(getattr(item, "callspec", None), "params", {})
        aliases = sorted(
            {
                DATABASE_LEGS[v]
                for v in params.values()
                if isinstance(v, str) and v in DATABASE_LEGS
            }
        )
        aliases = [alias for alias in aliases if alias in settings.DATABASES]
        if aliases and item.get_closest_marker("django_db") is None:
            item.add_marker(
                pytest.mark.django_db(
                    transaction=True, databases=aliases, available_apps=["django_convstore"]
                )
            )


class StoreSetup:
    """Builds store configurations from the backend fixtures and installs them as settings."""

    def __init__(self, request: pytest.FixtureRequest, settings: Any) -> None:
        self._request = request
        self._settings = settings

    def config(self, backend: str, **overrides: Any) -> dict[str, Any]:
        """A fresh configuration of ``backend`` with a namespace of its own."""
        base: dict[str, Any] = self._request.getfixturevalue(f"{backend}_store_config")
        config = {**base, "NAMESPACE": f"cmd{uuid.uuid4().hex[:12]}", **overrides}
        if "OPTIONS" in base or "OPTIONS" in overrides:
            config["OPTIONS"] = {**base.get("OPTIONS", {}), **overrides.get("OPTIONS", {})}
        return config

    def configure(self, **aliases: dict[str, Any]) -> Configured:
        """Set ``settings.CONVSTORE`` to these aliases; ``result[alias]`` is ``stores[alias]``.

        Each configured store is cleared when the test ends (the servers outlive the test).
        """
        self._settings.CONVSTORE = aliases
        for alias, config in aliases.items():
            self._request.node.addfinalizer(_clearer(alias, config))
        return Configured()


class Configured:
    """``configured[alias]`` is ``stores[alias]``, built on first access."""

    def __getitem__(self, alias: str) -> BaseStore:
        return stores[alias]


def _clearer(alias: str, config: dict[str, Any]) -> Callable[[], None]:
    def clear() -> None:
        try:
            built = create_store(config, alias=f"teardown-{alias}")
            try:
                built.clear()
            finally:
                built.close()
        except Exception:
            # A store whose server or database is already gone needs no clearing.
            return

    return clear


@pytest.fixture
def convstores(request: pytest.FixtureRequest, settings: Any) -> StoreSetup:
    """Configure ``settings.CONVSTORE`` with real stores of any backend for one test."""
    return StoreSetup(request, settings)


class Result:
    """What a command printed, and the ``CommandError`` it raised (if any)."""

    def __init__(self, stdout: str, stderr: str, error: Exception | None) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.error = error

    @property
    def lines(self) -> list[str]:
        """Non-empty stdout lines."""
        return [line for line in self.stdout.splitlines() if line]

    def __repr__(self) -> str:
        return f"Result(stdout={self.stdout!r}, stderr={self.stderr!r}, error={self.error!r})"


@pytest.fixture
def run() -> Callable[..., Result]:
    """``run("convstore_migrate", "a", "b", ...)``: call a command, capturing its output.

    A ``CommandError`` (exit status 1 under ``manage.py``) is captured in
    ``result.error`` instead of raised; ``stderr=`` may pass a custom stream.
    """
    from django.core.management.base import CommandError

    def runner(*args: str, stderr: io.StringIO | None = None, **options: Any) -> Result:
        out = io.StringIO()
        err = stderr if stderr is not None else io.StringIO()
        error: Exception | None = None
        try:
            call_command(*args, stdout=out, stderr=err, **options)
        except CommandError as exc:
            error = exc
        return Result(out.getvalue(), err.getvalue(), error)

    return runner
