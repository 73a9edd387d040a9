"""Several processes appending to one ZeroDB conversation lose and duplicate nothing.

Each writer is a separate (spawned) process with its own store, session and
header cache, as in a multi-worker deployment; they start together on a barrier.
"""

from __future__ import annotations

import multiprocessing
import traceback
import uuid
from typing import Any

import pytest

from django_convstore import create_store
from tests.fixtures.zerodb import zerodb_config
from tests.servers.zerodb_server import ZeroDBServer

pytestmark = pytest.mark.slow

WRITERS = 4
APPENDS = 25


def _writer(
    config: dict[str, Any], cid: str, worker: int, appends: int, barrier: Any, errors: Any
) -> None:
    """One process: ``appends`` appends of 1 to 3 messages, in order, to ``cid``."""
    try:
        import django

        django.setup()
        from django_convstore import create_store as build

        store = build(config, alias=f"writer{worker}")
        barrier.wait(timeout=60)
        sequence = 0
        for i in range(appends):
            batch = []
            for _ in range(1 + i % 3):
                batch.append(
                    {
                        "id": f"w{worker}-{sequence}",
                        "role": "user",
                        "content": f"{worker}:{sequence}",
                    }
                )
                sequence += 1
            store.append(cid, batch)
        store.close()
    except BaseException:
        errors.put(f"writer {worker}: {traceback.format_exc()}")
        raise


def expected_per_writer(appends: int) -> int:
    return sum(1 + i % 3 for i in range(appends))


def run_writers(config: dict[str, Any], cid: str) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WRITERS)
    errors = context.Queue()
    processes = [
        context.Process(target=_writer, args=(config, cid, w, APPENDS, barrier, errors))
        for w in range(WRITERS)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert failures == []
    assert [p.exitcode for p in processes] == [0] * WRITERS


def check(config: dict[str, Any], cid: str) -> None:
    store = create_store(config, alias="checker")
    loaded = store.load(cid)
    assert loaded is not None
    total = WRITERS * expected_per_writer(APPENDS)
    ids = [m.id for m in loaded.messages]
    assert len(ids) == len(set(ids)) == total
    assert loaded.metadata.message_count == total
    assert store.list_conversations().items[0].message_count == total
    for worker in range(WRITERS):
        own = [
            int(m.content.split(":")[1])
            for m in loaded.messages
            if m.content.startswith(f"{worker}:")
        ]
        assert own == list(range(expected_per_writer(APPENDS)))
    store.close()


@pytest.fixture
def server() -> Any:
    with ZeroDBServer() as server:
        yield server


def test_processes_creating_and_appending_to_one_conversation(server):
    config = {**zerodb_config(server), "NAMESPACE": f"p{uuid.uuid4().hex[:8]}"}
    run_writers(config, "shared")
    check(config, "shared")
    headers = [
        r
        for r in server.rows("conversations")
        if r["row_data"]["namespace"] == config["NAMESPACE"]
    ]
    assert len(headers) == 1


def test_processes_appending_while_the_service_drops_and_fails_requests(server):
    config = {**zerodb_config(server, MAX_RETRIES=8), "NAMESPACE": f"p{uuid.uuid4().hex[:8]}"}
    store = create_store(config, alias="setup")
    store.save("shared", [])
    store.close()
    server.drop(times=6, route="rows.insert", after_commit=True)
    server.fail(times=6, status=503, route="rows.insert", after_commit=True)
    server.drop(times=6, route="rows.bulk_update", after_commit=True)
    server.fail(times=6, status=500, route="rows.bulk_update", after_commit=True)
    server.rate_limit(times=6, retry_after=0, route="rows.query")
    run_writers(config, "shared")
    assert server.pending_faults() == 0
    check(config, "shared")
