"""What ``create`` and ``update_metadata`` cost per backend, at any conversation length.

Redis: one round trip (one script) each. Database: a fixed number of
statements in one transaction. ZeroDB: a fixed number of HTTP requests.
None of them reads or rewrites the messages, so the cost does not grow with
the conversation.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext

from django_convstore import create_store
from django_convstore.backends.zerodb import ZeroDBStore
from tests.fixtures.database import database_params
from tests.fixtures.zerodb import zerodb_config
from tests.servers.redis_counting import CountingConnection
from tests.servers.zerodb_server import ZeroDBServer

LENGTHS = [1, 1500]


def messages(count: int, prefix: str = "m") -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{i}", "role": "user", "content": f"text {i}"} for i in range(count)]


def fill(store: Any, cid: str, length: int) -> None:
    """A conversation of ``length`` messages written by a save and appends."""
    store.save(cid, messages(min(length, 1000)))
    for start in range(1000, length, 500):
        store.append(cid, messages(min(500, length - start), prefix=f"x{start}-"))


@pytest.mark.parametrize("length", LENGTHS)
def test_redis_one_round_trip_each(make_redis_store, redis_server, length):
    store = make_redis_store(
        OPTIONS={"CONNECTION_POOL_KWARGS": {"connection_class": CountingConnection}}
    )
    fill(store, "c", length)
    store.create("warm", [])  # loads the scripts (a first call is NOSCRIPT + load + retry)
    store.update_metadata("warm", {})
    operations: dict[str, Callable[[], Any]] = {
        "create (live id)": lambda: store.create("c", messages(2)),
        "create (new id)": lambda: store.create("new", messages(2), metadata={"k": 1}),
        "update_metadata": lambda: store.update_metadata("c", {"a": 1}),
        "update_metadata(replace)": lambda: store.update_metadata("c", {"b": 2}, replace=True),
        "update_metadata (missing)": lambda: store.update_metadata("nope", {"a": 1}),
    }
    for name, operation in operations.items():
        before = redis_server.commandstats()
        CountingConnection.reset()
        operation()
        after = redis_server.commandstats()
        assert CountingConnection.requests == 1, name
        assert after.get("evalsha", 0) - before.get("evalsha", 0) == 1, name
    assert store.load("c").metadata.message_count == length


def statements(alias: str, operation: Callable[[], Any]) -> list[str]:
    with CaptureQueriesContext(connections[alias]) as ctx:
        operation()
    return [query["sql"] for query in ctx.captured_queries]


@pytest.mark.parametrize("alias", database_params())
@pytest.mark.parametrize("length", LENGTHS)
def test_database_statements_do_not_depend_on_length(alias, length):
    store = create_store(
        {
            "BACKEND": "django_convstore.backends.database.DatabaseStore",
            "NAMESPACE": f"n{uuid.uuid4().hex[:10]}",
            "OPTIONS": {"DATABASE": alias},
        }
    )
    try:
        fill(store, "c", length)
        # BEGIN and COMMIT are counted. PostgreSQL: one statement each. SQLite (BEGIN
        # IMMEDIATE) and MySQL (SELECT … FOR UPDATE): lock and read the row, then write.
        single = connections[alias].vendor == "postgresql"
        assert len(statements(alias, lambda: store.create("c", messages(2)))) == (
            1 if single else 3  # BEGIN, SELECT the live row, COMMIT
        )
        created = statements(alias, lambda: store.create("new", messages(2)))
        assert len(created) == (1 if single else 5)  # + INSERT the row, INSERT the messages
        merge = statements(alias, lambda: store.update_metadata("c", {"a": 1}))
        assert len(merge) == (1 if single else 4)  # BEGIN, SELECT, UPDATE, COMMIT
        replace = statements(alias, lambda: store.update_metadata("c", {"b": 2}, replace=True))
        assert len(replace) == (1 if single else 4)
        for sql in merge + replace:
            assert "django_convstore_storedmessage" not in sql
        assert store.load("c").metadata.message_count == length
    finally:
        store.clear()


@pytest.mark.parametrize("length", LENGTHS)
def test_zerodb_requests_do_not_depend_on_length(zerodb_server: ZeroDBServer, length):
    config = {**zerodb_config(zerodb_server), "NAMESPACE": f"n{uuid.uuid4().hex[:10]}"}
    store = create_store(config, alias="costs")
    assert isinstance(store, ZeroDBStore)
    try:
        fill(store, "c", length)
        store.save("warm", [])  # the client's once-per-process filter probe before bulk updates
        store.update_metadata("warm", {})

        def count(operation: Callable[[], Any]) -> int:
            with zerodb_server.counting() as tally:
                operation()
            return tally.requests

        assert count(lambda: store.update_metadata("c", {"a": 1})) == 1  # header known
        store.tables.cache.clear()  # as in a process that never saw the conversation
        assert count(lambda: store.update_metadata("c", {"b": 1})) == 2
        assert count(lambda: store.create("c", messages(2))) == 1  # a fresh look at the header
        # look, the messages' chunk, a new header, look again, go live
        assert count(lambda: store.create("new", messages(2))) == 5
        assert count(lambda: store.create("bare", [])) == 4
        assert count(lambda: store.create("new", messages(1))) == 1
        loaded = store.load("c")
        assert loaded is not None
        assert loaded.metadata.message_count == length
        assert loaded.metadata.metadata == {"a": 1, "b": 1}
    finally:
        store.clear()
