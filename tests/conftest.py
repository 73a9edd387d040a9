"""Shared fixtures: the backend-parametrised ``store`` fixture of the contract suite.

Each backend contributes a fixture named ``<backend>_store_config`` returning
a Django-form store configuration (``{"BACKEND": ..., ...}``) pointing at a
real server the suite started itself. Those fixtures live in
``tests/fixtures/<backend>.py`` and are loaded as plugins below. A backend
whose server cannot be started here skips with the reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from django_convstore import create_store
from django_convstore.backends.base import BaseStore
from tests.contract.async_driver import AsyncDriven

FIXTURES = Path(__file__).parent / "fixtures"
pytest_plugins = sorted(
    f"tests.fixtures.{path.stem}" for path in FIXTURES.glob("*.py") if path.stem != "__init__"
)

#: One leg per backend and server; a leg named ``X_Y`` is backend ``X`` on server ``Y``.
CONTRACT_BACKENDS = [
    "memory",
    "redis",
    "redis_cluster",
    "zerodb",
    "database",
    "database_postgresql",
    "database_mysql",
]
#: How the contract suite calls a store: its sync methods, or their async twins.
STORE_MODES = ["sync", "async"]


@pytest.fixture(params=CONTRACT_BACKENDS)
def backend_leg(request: pytest.FixtureRequest) -> str:
    """The leg under test (parametrised over every backend and database)."""
    return str(request.param)


@pytest.fixture
def backend_name(backend_leg: str) -> str:
    """The name of the backend under test (``database`` for both database legs)."""
    return backend_leg.split("_")[0]


@pytest.fixture
def store_config(request: pytest.FixtureRequest, backend_leg: str) -> dict[str, Any]:
    """A fresh configuration for the backend under test, with its own namespace."""
    config: dict[str, Any] = request.getfixturevalue(f"{backend_leg}_store_config")
    config = dict(config)
    config.setdefault("NAMESPACE", f"t{uuid.uuid4().hex[:12]}")
    return config


@pytest.fixture(params=STORE_MODES)
def store_mode(request: pytest.FixtureRequest) -> str:
    """``sync``: tests call the store's methods; ``async``: the same calls go through the
    async twins on an event loop (see :mod:`tests.contract.async_driver`)."""
    return str(request.param)


@pytest.fixture
def make_store(
    store_config: dict[str, Any], store_mode: str
) -> Iterator[Callable[..., BaseStore]]:
    """Build stores of the backend under test; ``make_store(TTL=60, OPTIONS={...})``."""
    built: list[BaseStore] = []
    drivers: list[AsyncDriven] = []

    def factory(**overrides: Any) -> BaseStore:
        config = {**store_config, **overrides}
        if "OPTIONS" in overrides:
            config["OPTIONS"] = {**store_config.get("OPTIONS", {}), **overrides["OPTIONS"]}
        new_store = create_store(config, alias=f"contract-{len(built)}")
        built.append(new_store)
        if store_mode == "async":
            driver = AsyncDriven(new_store)
            drivers.append(driver)
            return driver  # type: ignore[return-value]
        return new_store

    yield factory
    for driver in drivers:
        driver.close()
        driver.stop()
    for built_store in built:
        try:
            built_store.clear()
        finally:
            built_store.close()


@pytest.fixture
def store(make_store: Callable[..., BaseStore]) -> BaseStore:
    """An empty store of the backend under test (no default TTL)."""
    return make_store()
