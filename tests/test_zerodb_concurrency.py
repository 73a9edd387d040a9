"""Several processes appending to one ZeroDB conversation: nobody gives up, nothing is lost
or duplicated.

Each writer is a separate (spawned) process with its own store, session and
header cache, as in a multi-worker deployment; they start together on a
barrier. The contention figures (p50/p99/max per append) are printed; the
benchmark (``benchmarks/zerodb_bench.py --contention``) measures them with
50 ms of injected latency too.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from django_convstore import create_store
from tests.fixtures.zerodb import own_rows, zerodb_config
from tests.servers.zerodb_server import ZeroDBServer

pytestmark = pytest.mark.slow


def _message(message_id: str, content: str) -> dict[str, str]:
    return {"id": message_id, "role": "user", "content": content}


def _appender(
    config: dict[str, Any],
    cid: str,
    worker: int,
    batches: list[list[dict[str, str]]],
    barrier: Any,
    results: Any,
) -> None:
    """One process: append ``batches`` in order, timing each append."""
    try:
        import django

        django.setup()
        from django_convstore import create_store as build

        store = build(config, alias=f"writer{worker}")
        barrier.wait(timeout=120)
        durations = []
        for batch in batches:
            started = time.perf_counter()
            store.append(cid, batch)
            durations.append(time.perf_counter() - started)
        store.close()
        results.put(("ok", worker, durations))
    except BaseException:
        results.put(("error", worker, traceback.format_exc()))
        raise


def run_appenders(config: dict[str, Any], cid: str, plans: list[list[list[dict[str, str]]]]):
    """Run one process per plan; returns every append's duration (seconds)."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(plans))
    results = context.Queue()
    processes = [
        context.Process(target=_appender, args=(config, cid, w, plan, barrier, results))
        for w, plan in enumerate(plans)
    ]
    for process in processes:
        process.start()
    reports = [results.get(timeout=280) for _ in plans]
    for process in processes:
        process.join(timeout=60)
    errors = [report for report in reports if report[0] == "error"]
    assert errors == []
    assert [p.exitcode for p in processes] == [0] * len(plans)
    return [d for report in reports for d in report[2]]


def describe(durations: list[float]) -> str:
    ordered = sorted(durations)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (
        f"{len(ordered)} appends: p50 {statistics.median(ordered) * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms"
    )


@pytest.fixture
def server() -> Iterator[ZeroDBServer]:
    with ZeroDBServer() as server:
        yield server


@pytest.fixture
def config(server: ZeroDBServer) -> dict[str, Any]:
    return {**zerodb_config(server, MAX_RETRIES=8), "NAMESPACE": f"p{uuid.uuid4().hex[:8]}"}


def check_one_conversation(
    server: ZeroDBServer, config: dict[str, Any], expected: int, order: Callable[[list[str]], None]
) -> None:
    store = create_store(config, alias="checker")
    loaded = store.load("shared")
    assert loaded is not None
    ids = [m.id for m in loaded.messages]
    assert len(ids) == len(set(ids)) == expected
    assert loaded.metadata.message_count == expected
    assert store.list_conversations().items[0].message_count == expected
    assert store.get_stats().total_messages == expected
    order(ids)
    live = [
        h for h in own_rows(server, config["NAMESPACE"], "conversations") if h["state"] == "live"
    ]
    assert len(live) == 1
    store.close()


def in_order_per_prefix(prefixes: list[str]) -> Callable[[list[str]], None]:
    def check(ids: list[str]) -> None:
        for prefix in prefixes:
            mine = [int(i.rsplit("-", 1)[1]) for i in ids if i.startswith(prefix + "-")]
            assert mine == sorted(mine), prefix

    return check


WRITERS = 8
APPENDS = 200


def test_8_processes_x_200_appends_to_one_conversation_all_succeed(server, config):
    plans = [[[_message(f"w{w}-{i}", f"{w}:{i}")] for i in range(APPENDS)] for w in range(WRITERS)]
    durations = run_appenders(config, "shared", plans)
    assert len(durations) == WRITERS * APPENDS
    check_one_conversation(
        server,
        config,
        WRITERS * APPENDS,
        in_order_per_prefix([f"w{w}" for w in range(WRITERS)]),
    )
    print(f"\ncontention, {WRITERS} processes, 0 ms latency: {describe(durations)}")


PAIRS = 3
IDS_PER_PAIR = 60


def test_processes_retrying_the_same_ids_store_each_exactly_once(server, config):
    """6 processes; every id is sent by two of them (in the same order), in batches of 1-3."""
    plans = []
    for worker in range(2 * PAIRS):
        pair = worker // 2
        ids = [f"p{pair}-{k}" for k in range(IDS_PER_PAIR)]
        size = 1 + worker % 3
        plans.append(
            [
                [_message(i, i) for i in ids[start : start + size]]
                for start in range(0, IDS_PER_PAIR, size)
            ]
        )
    run_appenders(config, "shared", plans)
    check_one_conversation(
        server, config, PAIRS * IDS_PER_PAIR, in_order_per_prefix([f"p{p}" for p in range(PAIRS)])
    )


def test_processes_appending_while_the_service_drops_and_fails_requests(server, config):
    store = create_store(config, alias="setup")
    store.save("shared", [])
    store.close()
    server.drop(times=6, route="rows.insert", after_commit=True)
    server.fail(times=6, status=503, route="rows.insert", after_commit=True)
    server.drop(times=6, route="rows.bulk_update", after_commit=True)
    server.fail(times=6, status=500, route="rows.bulk_update", after_commit=True)
    server.rate_limit(times=6, retry_after=0, route="rows.query")
    plans = [
        [[_message(f"w{w}-{i}", str(i)) for _ in range(1)] for i in range(25)] for w in range(4)
    ]
    run_appenders(config, "shared", plans)
    assert server.pending_faults() == 0
    check_one_conversation(server, config, 100, in_order_per_prefix([f"w{w}" for w in range(4)]))
