"""The ZeroDB fault matrix: every request of save, append, pop, truncate and delete fails once.

For each operation the test first records the requests it makes (route by
route), then replays it once per request and fault: 429, 503, 400 or a
dropped connection on exactly that request, before or after the test
server carried it out. Afterwards:

* ``load``, the listing and ``get_stats`` agree with each other;
* the conversation is exactly as before the operation or exactly as after
  it (all or nothing), and exactly as after it when the operation returned;
* a caller that retries a failed write (same message ids) ends up with the
  write done once;
* the store is not wedged: a later append works;
* ``cleanup()`` (with no grace period) leaves no row that no header commits.

``python -m pytest tests/test_zerodb_fault_matrix.py -s -k summary`` prints the
whole matrix.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from django_convstore import create_store
from django_convstore.backends.zerodb import ZeroDBStore, protocol, rows
from django_convstore.exceptions import ConvStoreError
from tests.fixtures.zerodb import own_rows, zerodb_config
from tests.servers.zerodb_server import ZeroDBServer

BEFORE = ["a", "b", "c", "d"]


def m(content: str) -> dict[str, str]:
    return {"id": content, "role": "user", "content": content}


@dataclass(frozen=True)
class Operation:
    call: Callable[[ZeroDBStore], Any]
    after: list[str] | None  # None: the conversation is gone
    retry_is_safe: bool
    answer: Callable[[Any], bool]


OPERATIONS = {
    "save": Operation(
        lambda s: s.save("c", [m("s1"), m("s2")]), ["s1", "s2"], True, lambda r: True
    ),
    "append": Operation(
        lambda s: s.append("c", [m("e")]),
        [*BEFORE, "e"],
        True,
        lambda r: r.message_count == 5,
    ),
    "pop": Operation(
        lambda s: s.pop("c", 2), ["a", "b"], False, lambda r: [x.id for x in r] == ["c", "d"]
    ),
    "truncate": Operation(
        lambda s: s.truncate("c", 1), ["a"], True, lambda r: r.message_count == 1
    ),
    "delete": Operation(lambda s: s.delete("c"), None, True, lambda r: r is True),
}


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable[[ZeroDBServer, int, bool], None]


FAULTS = [
    Fault("429", lambda s, n, after: s.rate_limit(1, 0, nth=n, after_commit=after)),
    Fault("503", lambda s, n, after: s.fail(1, 503, nth=n, after_commit=after)),
    Fault("400", lambda s, n, after: s.fail(1, 400, nth=n, after_commit=after)),
    Fault("drop", lambda s, n, after: s.drop(1, nth=n, after_commit=after)),
]

#: (operation, request number, route, fault, before/after) -> outcome
RESULTS: dict[tuple[str, int, str, str, str], str] = {}


@pytest.fixture(scope="module")
def server() -> Iterator[ZeroDBServer]:
    with ZeroDBServer() as server:
        yield server


def fresh_store(server: ZeroDBServer) -> ZeroDBStore:
    """A store in a new namespace holding "c" = a, b (saved), c, d (appended), warm."""
    config = {
        **zerodb_config(server, MAX_RETRIES=3, TIMEOUT=2),
        "NAMESPACE": f"m{uuid.uuid4().hex[:10]}",
    }
    store = create_store(config, alias="matrix")
    assert isinstance(store, ZeroDBStore)
    store.save("c", [m("a"), m("b")])
    store.append("c", [m("c"), m("d")])
    return store


def contents(store: ZeroDBStore) -> list[str] | None:
    loaded = store.load("c")
    return None if loaded is None else [msg.text() for msg in loaded.messages]


def assert_consistent(store: ZeroDBStore) -> None:
    loaded = store.load("c")
    listed = {meta.conversation_id: meta for meta in store.list_conversations().items}
    stats = store.get_stats()
    if loaded is None:
        assert "c" not in listed
    else:
        assert loaded.metadata.message_count == len(loaded.messages)
        assert listed["c"].message_count == len(loaded.messages)
    assert stats.total_conversations == len(listed)
    assert stats.total_messages == sum(meta.message_count for meta in listed.values())


def assert_cleanup_leaves_only_committed_rows(
    server: ZeroDBServer, store: ZeroDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(protocol, "PENDING_GRACE_MS", -1)
        store.cleanup()
    headers = {
        h["hk"]: rows.Header.from_data(h, "")
        for h in own_rows(server, store.namespace, "conversations")
        if h["state"] == "live"
    }
    for row in own_rows(server, store.namespace, "conversations_messages"):
        header = headers.get(row["hk"])
        assert header is not None, row
        if row["kind"] == "bulk":
            assert row["txn"] == header.bulk, row
        else:
            assert row.get("c") == 1 or row["txn"] in header.pend_map(), row


def requests_of(server: ZeroDBServer, operation: Operation) -> list[tuple[str, str]]:
    store = fresh_store(server)
    with server.counting() as tally:
        operation.call(store)
    store.close()
    return tally.sequence


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
@pytest.mark.parametrize("name", list(OPERATIONS))
def test_one_fault_on_every_request(server, monkeypatch, name, fault, when):
    operation = OPERATIONS[name]
    sequence = requests_of(server, operation)
    assert sequence, name
    for number, (route, method) in enumerate(sequence, start=1):
        store = fresh_store(server)
        server.clear_faults()
        fault.inject(server, number, when == "after")
        try:
            answer = operation.call(store)
        except ConvStoreError:
            raised = True
        else:
            raised = False
        server.clear_faults()
        final = contents(store)
        where = f"{name}: {fault.name} {when} request {number} ({method} {route})"
        if raised:
            assert final in (BEFORE, operation.after), where
            outcome = "raised, " + ("nothing done" if final == BEFORE else "done")
        else:
            assert final == operation.after and operation.answer(answer), where
            outcome = "ok"
        assert_consistent(store)
        if raised and operation.retry_is_safe:
            operation.call(store)
            assert contents(store) == operation.after, where + ": the caller's retry"
        store.append("c", [m("z")])
        assert (contents(store) or [])[-1] == "z", where
        assert_consistent(store)
        assert_cleanup_leaves_only_committed_rows(server, store, monkeypatch)
        store.clear()
        store.close()
        RESULTS[(name, number, route, fault.name, when)] = outcome


def test_summary(capsys):
    """Print the matrix (run the module with ``-s`` to see it)."""
    if not RESULTS:
        pytest.skip("run with the matrix tests")
    lines = ["operation | # | request | fault | when | outcome", "---|---|---|---|---|---"]
    for (name, number, route, fault, when), outcome in RESULTS.items():
        lines.append(f"{name} | {number} | {route} | {fault} | {when} | {outcome}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert all(o in ("ok", "raised, nothing done", "raised, done") for o in RESULTS.values())
