"""Processes racing ``create`` on ZeroDB: exactly one wins each id, losers leave nothing behind.

Each creator is a separate (spawned) process with its own store, session,
header cache and writer id, as in a multi-worker deployment. They start
together on a barrier for each id.
"""

from __future__ import annotations

import multiprocessing
import traceback
import uuid
from typing import Any

import pytest

from django_convstore import create_store
from django_convstore.backends.zerodb import ZeroDBStore
from django_convstore.backends.zerodb_rows import WITHDRAWN
from tests.fixtures.zerodb import zerodb_config
from tests.servers.zerodb_server import ZeroDBServer

pytestmark = pytest.mark.slow

CREATORS = 4
IDS = 6


def _creator(config: dict[str, Any], worker: int, barrier: Any, results: Any) -> None:
    """One process: ``create`` every id once, reporting which it won."""
    try:
        import django

        django.setup()
        from django_convstore import create_store as build

        store = build(config, alias=f"creator{worker}")
        for index in range(IDS):
            barrier.wait(timeout=60)  # every id is a race of all creators
            created = store.create(
                f"race-{index}",
                [
                    {"id": f"w{worker}-{i}", "role": "user", "content": f"{worker}"}
                    for i in range(2)
                ],
                metadata={"worker": worker},
            )
            results.put(("result", worker, index, created is not None))
        store.close()
    except BaseException:
        results.put(("error", worker, traceback.format_exc(), False))
        raise


def run_creators(config: dict[str, Any]) -> dict[int, list[int]]:
    """Winners per id index."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(CREATORS)
    results = context.Queue()
    processes = [
        context.Process(target=_creator, args=(config, w, barrier, results))
        for w in range(CREATORS)
    ]
    for process in processes:
        process.start()
    reports = [results.get(timeout=180) for _ in range(CREATORS * IDS)]
    for process in processes:
        process.join(timeout=60)
    errors = [report for report in reports if report[0] == "error"]
    assert errors == []
    assert [p.exitcode for p in processes] == [0] * CREATORS
    winners: dict[int, list[int]] = {index: [] for index in range(IDS)}
    for _kind, worker, index, won in reports:
        if won:
            winners[index].append(worker)
    return winners


def check(server: ZeroDBServer, config: dict[str, Any], winners: dict[int, list[int]]) -> None:
    assert all(len(workers) == 1 for workers in winners.values()), winners
    store = create_store(config, alias="checker")
    for index, (winner,) in winners.items():
        loaded = store.load(f"race-{index}")
        assert loaded is not None
        assert [m.id for m in loaded.messages] == [f"w{winner}-0", f"w{winner}-1"]
        assert loaded.metadata.metadata == {"worker": winner}
        assert loaded.metadata.message_count == 2
    namespace = config["NAMESPACE"]
    headers = [r for r in server.rows("conversations") if r["row_data"]["namespace"] == namespace]
    assert sorted(r["row_data"]["conversation_id"] for r in headers) == sorted(
        f"race-{index}" for index in range(IDS)
    )
    rows = [
        r for r in server.rows("conversations_messages") if r["row_data"]["namespace"] == namespace
    ]
    assert len(rows) == IDS  # every loser deleted the message row it had inserted
    store.close()


@pytest.fixture
def server() -> Any:
    with ZeroDBServer() as server:
        yield server


def test_processes_creating_the_same_ids(server):
    config = {**zerodb_config(server), "NAMESPACE": f"c{uuid.uuid4().hex[:8]}"}
    check(server, config, run_creators(config))


def test_processes_creating_while_header_updates_lose_their_replies(server):
    config = {**zerodb_config(server, MAX_RETRIES=8), "NAMESPACE": f"c{uuid.uuid4().hex[:8]}"}
    warm = create_store(config, alias="setup")
    warm.save("warm", [])  # creates the tables and passes the client's filter probe
    warm.delete("warm")
    warm.close()
    server.drop(times=8, route="rows.bulk_update", after_commit=True)
    server.fail(times=4, status=503, route="rows.insert", after_commit=True)
    check(server, config, run_creators(config))
    assert server.pending_faults() == 0


def test_a_losing_create_confirms_the_header_it_saw(server):
    """The header ``create`` answered None for can no longer be withdrawn by its creator.

    A creator still in the middle of the protocol could otherwise withdraw it
    (or crash after withdrawing it) and leave the id free although every
    rival was told it was taken.
    """
    config = {**zerodb_config(server), "NAMESPACE": f"c{uuid.uuid4().hex[:8]}"}
    rival = create_store(config, alias="rival")
    loser = create_store(config, alias="loser")
    assert isinstance(rival, ZeroDBStore)
    rival.save("c", [{"id": "r", "role": "user", "content": "rival"}])
    (as_created,) = rival._read_headers("c")
    assert as_created.revs == []  # the revision the rival's withdrawal would compare against

    assert loser.create("c", [{"id": "l", "role": "user", "content": "loser"}]) is None

    assert rival._retire(as_created, WITHDRAWN) is False
    loaded = loser.load("c")
    assert loaded is not None and [m.id for m in loaded.messages] == ["r"]
    assert loaded.metadata.updated_at == as_created.updated_at  # confirming is not an update
    with server.counting() as tally:
        assert loser.create("c", []) is None
    assert tally.requests == 1  # confirmed once: later creates only read
    rival.close()
    loser.close()
