"""ZeroDB backend under faults: retries recover without duplicates; clear errors when they cannot.

Faults are real: the test server answers 429/5xx, closes connections without
a reply (before or after doing the work), delays requests, or is stopped.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from django_convstore import create_store
from django_convstore.backends.zerodb import ZeroDBStore
from django_convstore.exceptions import (
    BackendAuthError,
    BackendError,
    BackendUnavailableError,
    ConvStoreError,
)
from tests.fixtures.zerodb import own_rows as rows_of
from tests.fixtures.zerodb import zerodb_config
from tests.servers.zerodb_server import ZeroDBServer

Factory = Callable[..., ZeroDBStore]


def msgs(*contents: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": c} for c in contents]


@pytest.fixture(scope="module")
def module_server() -> Iterator[ZeroDBServer]:
    with ZeroDBServer() as server:
        yield server


@pytest.fixture
def server(module_server: ZeroDBServer) -> Iterator[ZeroDBServer]:
    module_server.clear_faults()
    yield module_server
    module_server.clear_faults()


@pytest.fixture
def make(server: ZeroDBServer) -> Iterator[Factory]:
    built: list[ZeroDBStore] = []

    def factory(target: ZeroDBServer | None = None, **options: Any) -> ZeroDBStore:
        config = {
            **zerodb_config(target or server, **options),
            "NAMESPACE": f"f{uuid.uuid4().hex[:10]}",
        }
        store = create_store(config, alias="faulty")
        assert isinstance(store, ZeroDBStore)
        built.append(store)
        return store

    yield factory
    for store in built:
        store.close()


@pytest.fixture
def store(make: Factory) -> ZeroDBStore:
    store = make()
    store.save("warm", msgs("tables exist"))
    return store


def own_rows(server: ZeroDBServer, store: ZeroDBStore, table: str) -> list[dict[str, Any]]:
    return rows_of(server, store.namespace, table)


def contents(store: ZeroDBStore, cid: str) -> list[str]:
    loaded = store.load(cid)
    assert loaded is not None
    return [m.text() for m in loaded.messages]


# -- recovery ---------------------------------------------------------------------------------


def test_429_is_retried_after_retry_after_seconds(make, server):
    store = make(RETRY_BACKOFF_MAX=60)
    store.save("c", msgs("a"))
    slept: list[float] = []
    store.client.sleep = slept.append
    server.rate_limit(times=2, retry_after=2, route="rows.query")
    assert contents(store, "c") == ["a"]
    assert slept == [2.0, 2.0]


def test_backoff_is_exponential_without_retry_after(make, server):
    store = make(RETRY_BACKOFF=1, RETRY_BACKOFF_MAX=60, MAX_RETRIES=4)
    store.save("c", msgs("a"))
    slept: list[float] = []
    store.client.sleep = slept.append
    server.fail(times=3, status=503, route="rows.query")
    assert contents(store, "c") == ["a"]
    assert len(slept) == 3
    assert 0.8 <= slept[0] <= 1 and 1.6 <= slept[1] <= 2 and 3.2 <= slept[2] <= 4


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_before_the_work_are_retried(store, server, status):
    server.fail(times=2, status=status, route="rows.insert")
    store.append("c", msgs("once"))
    assert contents(store, "c") == ["once"]
    assert len(own_rows(server, store, "conversations_messages")) == 2  # "warm" + "c"


@pytest.mark.parametrize(
    "inject",
    [
        lambda s: s.fail(times=1, status=503, route="rows.insert", after_commit=True),
        lambda s: s.drop(times=1, route="rows.insert", after_commit=True),
    ],
    ids=["503-after-commit", "dropped-after-commit"],
)
def test_an_insert_that_landed_is_not_inserted_again(make, server, inject):
    store = make(TIMEOUT=0.3)
    store.save("c", msgs("a"))
    inject(server)
    with server.counting() as tally:
        meta = store.append("c", msgs("b"))
    assert meta.message_count == 2
    assert contents(store, "c") == ["a", "b"]
    singles = [r for r in own_rows(server, store, "conversations_messages") if r["kind"] == "m"]
    assert len(singles) == 1
    assert tally.routes["rows.insert"] == 1  # found by the re-check, never re-sent
    assert tally.routes["rows.query"] >= 1


def test_an_insert_that_lands_after_its_retry_is_read_once(make, server):
    # A timed-out insert can still land after the re-check looked for it: then the row
    # exists twice, with the same key, and reads keep one.
    store = make(TIMEOUT=0.2)
    store.save("c", msgs("a"))
    server.delay(0.6, times=1, route="rows.insert")
    with server.counting() as tally:
        meta = store.append("c", msgs("b"))
    assert tally.routes["rows.insert"] == 2
    deadline = time.monotonic() + 5
    while len(own_rows(server, store, "conversations_messages")) < 3:  # the chunk, "b" twice
        assert time.monotonic() < deadline
        time.sleep(0.05)
    rows = [r for r in own_rows(server, store, "conversations_messages") if r["kind"] == "m"]
    assert len(rows) == 2 and len({(r["txn"], r["pos"], r["mid"]) for r in rows}) == 1
    assert meta.message_count == 2
    loaded = store.load("c")
    assert loaded is not None and [m.content for m in loaded.messages] == ["a", "b"]
    assert loaded.metadata.message_count == 2
    assert store.list_conversations().items[0].message_count == 2


def test_dropped_connection_before_the_work_is_retried(store, server):
    server.drop(times=2, route="rows.insert", after_commit=False)
    store.append("c", msgs("once"))
    assert contents(store, "c") == ["once"]


@pytest.mark.parametrize("after_commit", [True, False])
def test_header_update_that_landed_is_not_applied_twice(store, server, after_commit):
    store.save("c", msgs("a"))
    server.drop(times=1, route="rows.bulk_update", after_commit=after_commit)
    meta = store.append("c", msgs("b"))
    assert meta.message_count == 2
    assert store.load("c").metadata.message_count == 2
    assert store.list_conversations(prefix="c").items[0].message_count == 2


def test_creation_whose_header_insert_landed_leaves_one_header(store, server):
    server.drop(times=1, route="rows.insert", after_commit=True)  # the message row
    server.fail(times=1, status=500, route="rows.insert", after_commit=True)  # the header
    meta = store.append("new", msgs("x"))
    assert meta.message_count == 1
    headers = [
        h for h in own_rows(server, store, "conversations") if h["conversation_id"] == "new"
    ]
    assert len(headers) == 1
    assert contents(store, "new") == ["x"]


@pytest.mark.parametrize(
    "route", ["rows.query", "rows.bulk_update", "rows.bulk_delete", "rows.insert", "rows.delete"]
)
def test_every_operation_survives_faults_on_every_route(make, server, route):
    store = make(MAX_RETRIES=6)
    store.save("keep", msgs("k"))
    store.save("c", msgs("0"))
    server.rate_limit(times=1, retry_after=0, route=route)
    server.drop(times=2, route=route, after_commit=True)
    server.fail(times=2, status=503, route=route, after_commit=True)
    server.drop(times=1, route=route, after_commit=False)
    store.append("c", msgs("1"))
    store.append("c", msgs("2", "3"))
    store.save("s", msgs("x", "y"), metadata={"m": 1})
    store.save("s", msgs("z"))
    store.append("gone", msgs("g"))
    assert store.delete("gone")
    assert store.set_ttl("c", 500)
    assert contents(store, "c") == ["0", "1", "2", "3"]
    assert contents(store, "s") == ["z"]
    assert sorted(store.list()) == ["c", "keep", "s"]
    stats = store.get_stats()
    assert (stats.total_conversations, stats.total_messages) == (3, 6)
    assert store.clear() == 3
    assert own_rows(server, store, "conversations") == []
    assert own_rows(server, store, "conversations_messages") == []


def test_store_recovers_by_itself_when_the_server_comes_back(make):
    with ZeroDBServer() as flaky:
        store = make(flaky, MAX_RETRIES=1)
        store.save("c", msgs("a"))
        flaky.stop()
        with pytest.raises(BackendUnavailableError) as info:
            store.append("c", msgs("b"))
        assert info.value.address == f"127.0.0.1:{flaky.port}"
        flaky.start()
        store.append("c", msgs("b"))
        assert contents(store, "c") == ["a", "b"]


# -- errors when retries cannot help -------------------------------------------------------------


def test_exhausted_retries_raise_unavailable_naming_backend_alias_and_host(make, server):
    store = make(MAX_RETRIES=2)
    store.save("c", msgs("a"))
    server.fail(times=10, status=503, route="rows.query")
    with server.counting() as tally, pytest.raises(BackendUnavailableError) as info:
        store.load("c")
    error = info.value
    assert tally.requests == 3
    assert (error.backend, error.alias, error.address) == (
        "zerodb",
        "faulty",
        f"127.0.0.1:{server.port}",
    )
    message = str(error)
    assert "'faulty'" in message and f"127.0.0.1:{server.port}" in message
    assert "HTTP 503" in message and "3 attempts" in message
    assert server.api_key not in message


def test_persistent_rate_limiting_says_so(make, server):
    store = make(MAX_RETRIES=1)
    server.rate_limit(times=5, retry_after=0)
    with pytest.raises(BackendUnavailableError, match="rate limited: HTTP 429"):
        store.exists("c")


def test_timeouts_become_unavailable_errors(make, server):
    store = make(TIMEOUT=0.1, MAX_RETRIES=1)
    server.delay(0.5, times=2, route="rows.query")
    with pytest.raises(BackendUnavailableError, match="timed out"):
        store.exists("c")


def test_connection_refused_is_unavailable():
    config = zerodb_config(ZeroDBServer(), MAX_RETRIES=1)  # never started
    config["OPTIONS"]["BASE_URL"] = "http://127.0.0.1:9/api/v1"
    store = create_store(config, alias="nowhere")
    with pytest.raises(BackendUnavailableError, match=r"could not reach 127\.0\.0\.1:9:"):
        store.load("c")


def test_wrong_api_key_names_the_setting_and_never_the_key(make, server):
    wrong_key = "sk_live_wrong_" + uuid.uuid4().hex
    store = make(API_KEY=wrong_key)
    with server.counting() as tally, pytest.raises(BackendAuthError) as info:
        store.save("c", msgs("a"))
    assert tally.requests == 1  # not retried
    message = str(info.value)
    assert "CONVSTORE['faulty']['OPTIONS']['API_KEY']" in message
    assert "HTTP 401" in message and "Invalid or missing API key" in message
    assert wrong_key not in message and server.api_key not in message
    assert wrong_key not in repr(info.value.__dict__)
    assert info.value.status == 401 and isinstance(info.value, BackendError)


def test_forbidden_is_an_auth_error_too(store, server):
    server.fail(times=1, status=403, detail="Project belongs to another user")
    with pytest.raises(BackendAuthError, match="HTTP 403"):
        store.load("warm")


def test_other_client_errors_are_backend_errors_without_retry(store, server):
    server.fail(times=1, status=422, route="rows.query", detail="limit out of range")
    with server.counting() as tally, pytest.raises(BackendError) as info:
        store.exists("warm")
    assert tally.requests == 1
    assert info.value.status == 422 and "limit out of range" in str(info.value)
    assert not isinstance(info.value, BackendAuthError)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"<html>bad gateway</html>", "not JSON"),
        (b'{"unexpected": true}', "no list of rows"),
        (b'{"data": [{"row_data": {}}]}', "a row has no row_id"),
        (b'{"data": ["text"]}', "a row is str"),
    ],
)
def test_malformed_replies_are_backend_errors(store, server, body, fragment):
    server.fail(times=1, status=200, route="rows.query", body=body)
    with pytest.raises(BackendError, match=fragment):
        store.load("warm")


def test_no_requests_exception_ever_escapes(make, server):
    store = make(MAX_RETRIES=0)
    store.save("c", msgs("a"))
    operations: list[Callable[[], object]] = [
        lambda: store.load("c"),
        lambda: store.append("c", msgs("b")),
        lambda: store.save("c", msgs("c")),
        lambda: store.exists("c"),
        lambda: store.delete("c"),
        lambda: store.list(),
        lambda: store.get_stats(),
        lambda: store.cleanup(),
        lambda: store.set_ttl("c", 5),
        lambda: store.get_ttl("c"),
        lambda: list(store.iter_conversations()),
        lambda: store.clear(),
    ]
    for operation in operations:
        server.drop(times=1)
        with pytest.raises(ConvStoreError):
            operation()
        server.clear_faults()


def test_retry_after_header_forms():
    import email.utils
    import time

    from django_convstore.backends.zerodb.client import _retry_after

    assert _retry_after(None) is None
    assert _retry_after("") is None
    assert _retry_after("3") == 3.0
    assert _retry_after(" 1.5 ") == 1.5
    assert _retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= _retry_after(later) <= 31
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert _retry_after(past) == 0.0
