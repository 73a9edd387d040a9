"""Fixtures of the adapter tests: stores of every backend leg, and Django's async bridge.

``leg_store_factory`` builds stores of the leg under test (``backend_leg`` of
tests/conftest.py: memory, Redis, ZeroDB, SQLite and PostgreSQL), each in a
namespace of its own, cleared and closed after the test. The adapters are
called for real, sync and async; async calls go through asgiref's
``async_to_sync``, as Django runs them, so the database leg's sync work
stays in its thread.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from asgiref.sync import async_to_sync
from django.contrib.admin.utils import quote
from django.urls import reverse

from django_convstore import create_store
from django_convstore.backends.base import BaseStore

_T = TypeVar("_T")


#: How the admin's transcript shows a tool call of ``get_weather``.
TOOL_CALL_SHOWN = re.compile(r"calls\s*<strong>get_weather</strong>")


def admin_page(client: Any, conversation_id: str) -> str:
    """The admin's page of a conversation of the default store, as HTML."""
    url = reverse("admin:django_convstore_conversation_change", args=[quote(conversation_id)])
    response = client.get(url)
    assert response.status_code == 200
    return str(response.content.decode())


def run(awaitable_factory: Callable[[], Awaitable[_T]]) -> _T:
    """Run one coroutine the way a sync Django view would (``async_to_sync``)."""

    async def call() -> _T:
        return await awaitable_factory()

    return async_to_sync(call)()


@pytest.fixture
def leg_store_factory(store_config: dict[str, Any]) -> Iterator[Callable[[], BaseStore]]:
    """Build stores of the leg under test, each in a fresh namespace (cleared afterwards)."""
    built: list[BaseStore] = []

    def factory() -> BaseStore:
        config = {**store_config, "NAMESPACE": f"i{uuid.uuid4().hex[:12]}"}
        new = create_store(config, alias=f"integrations-{len(built)}")
        built.append(new)
        return new

    yield factory
    for store in built:
        try:
            store.clear()
        finally:
            store.close()


@pytest.fixture
def leg_store(leg_store_factory: Callable[[], BaseStore]) -> BaseStore:
    """One empty store of the leg under test."""
    return leg_store_factory()


@pytest.fixture
def memory_store() -> Iterator[BaseStore]:
    """A memory store of its own (for tests about the adapters, not the backends)."""
    store = create_store(
        {
            "BACKEND": "django_convstore.backends.memory.MemoryStore",
            "LOCATION": f"integrations-{uuid.uuid4().hex}",
        },
        alias="integrations-memory",
    )
    yield store
    store.clear()


SIGNAL_NAMES = (
    "conversation_saved",
    "messages_appended",
    "messages_removed",
    "conversation_deleted",
)


class SignalLog:
    """The store signals sent during a test, in order, with their arguments."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def names(self) -> list[str]:
        return [event["signal"] for event in self.events]

    def of(self, name: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["signal"] == name]


@pytest.fixture
def signal_log() -> Iterator[SignalLog]:
    """Record every store signal sent while the test runs."""
    from django_convstore import signals

    log = SignalLog()
    receivers = []
    for name in SIGNAL_NAMES:

        def receiver(sender: type, name: str = name, **kwargs: Any) -> None:
            log.events.append({**kwargs, "sender": sender, "signal": name})

        getattr(signals, name).connect(receiver, weak=False)
        receivers.append((name, receiver))
    yield log
    for name, receiver in receivers:
        getattr(signals, name).disconnect(receiver)


class FailingReceiver:
    """A receiver of every store signal that raises each time it is called."""

    def __init__(self) -> None:
        self.calls = 0

    def receive(self, sender: type, **kwargs: Any) -> None:
        self.calls += 1
        raise RuntimeError("a receiver failed")


@pytest.fixture
def failing_receiver() -> Iterator[FailingReceiver]:
    """Connect a receiver that always raises (to every signal) for the test's duration."""
    from django_convstore import signals

    failing = FailingReceiver()
    for name in SIGNAL_NAMES:
        getattr(signals, name).connect(failing.receive, weak=False)
    yield failing
    for name in SIGNAL_NAMES:
        getattr(signals, name).disconnect(failing.receive)
