"""Processes racing to create ZeroDB conversations: exactly one wins each id, nobody takes over
another owner's conversation, losers leave nothing behind.

Each racer is a separate (spawned) process with its own store, session and
header cache, as in a multi-worker deployment. All racers of a round are
released together by a barrier; every id is raced once.
"""

from __future__ import annotations

import multiprocessing
import traceback
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from django_convstore import create_store
from tests.fixtures.zerodb import own_rows, zerodb_config
from tests.servers.zerodb_server import ZeroDBServer

pytestmark = pytest.mark.slow


def _racer(
    config: dict[str, Any], worker: int, kind: str, rounds: int, barrier: Any, results: Any
) -> None:
    """One process: for each round, ``create`` (owner "a") or ``save`` (owner "b") its id."""
    try:
        import django

        django.setup()
        from django_convstore import create_store as build
        from django_convstore.exceptions import OwnerMismatchError

        store = build(config, alias=f"racer{worker}")
        for index in range(rounds):
            messages = [
                {"id": f"w{worker}-{i}", "role": "user", "content": f"{worker}"} for i in range(2)
            ]
            barrier.wait(timeout=120)
            if kind == "create":
                created = store.create(
                    f"race-{index}", messages, metadata={"worker": worker}, owner=f"o{worker}"
                )
                outcome = "won" if created is not None else "none"
            else:
                try:
                    store.save(f"race-{index}", messages, owner=f"o{worker}")
                    outcome = "saved"
                except OwnerMismatchError:
                    outcome = "mismatch"
            results.put(("result", worker, index, outcome))
        store.close()
    except BaseException:
        results.put(("error", worker, traceback.format_exc(), ""))
        raise


def race(config: dict[str, Any], kinds: list[str], rounds: int) -> dict[int, dict[int, str]]:
    """Outcome per round and worker."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(kinds))
    results = context.Queue()
    processes = [
        context.Process(target=_racer, args=(config, w, kind, rounds, barrier, results))
        for w, kind in enumerate(kinds)
    ]
    for process in processes:
        process.start()
    reports = [results.get(timeout=280) for _ in range(len(kinds) * rounds)]
    for process in processes:
        process.join(timeout=60)
    errors = [report for report in reports if report[0] == "error"]
    assert errors == []
    assert [p.exitcode for p in processes] == [0] * len(kinds)
    outcomes: dict[int, dict[int, str]] = {index: {} for index in range(rounds)}
    for _kind, worker, index, outcome in reports:
        outcomes[index][worker] = outcome
    return outcomes


@pytest.fixture
def server() -> Iterator[ZeroDBServer]:
    with ZeroDBServer() as server:
        yield server


@pytest.fixture
def config(server: ZeroDBServer) -> dict[str, Any]:
    config = {**zerodb_config(server, MAX_RETRIES=8), "NAMESPACE": f"c{uuid.uuid4().hex[:8]}"}
    warm = create_store(config, alias="setup")
    warm.save("warm", [])  # the tables exist; the client's filter check is done
    warm.delete("warm")
    warm.close()
    return config


def test_processes_creating_the_same_ids(server, config):
    rounds = 12
    outcomes = race(config, ["create"] * 4, rounds)
    store = create_store(config, alias="checker")
    for index, by_worker in outcomes.items():
        (winner,) = [w for w, outcome in by_worker.items() if outcome == "won"]
        loaded = store.load(f"race-{index}")
        assert loaded is not None
        assert [m.id for m in loaded.messages] == [f"w{winner}-0", f"w{winner}-1"]
        assert loaded.metadata.metadata == {"worker": winner}
        assert loaded.metadata.owner == f"o{winner}" and loaded.metadata.message_count == 2
    namespace = config["NAMESPACE"]
    headers = own_rows(server, namespace, "conversations")
    assert sorted(h["conversation_id"] for h in headers) == sorted(
        f"race-{index}" for index in range(rounds)
    )
    assert {h["state"] for h in headers} == {"live"}
    # Every loser deleted the chunk it had written: one per conversation is left.
    assert len(own_rows(server, namespace, "conversations_messages")) == rounds
    store.close()


ROUNDS = 200


def test_create_of_one_owner_racing_save_of_another_never_takes_over(server, config):
    """``create(owner=o0)`` against ``save(owner=o1)`` on a new id, 200 rounds: exactly one
    of them writes, the other sees the conversation as taken, and the conversation is the
    winner's, messages and owner. Violations must be 0."""
    outcomes = race(config, ["create", "save"], ROUNDS)
    store = create_store(config, alias="checker")
    violations = []
    for index, by_worker in outcomes.items():
        final = store.load(f"race-{index}")
        assert final is not None
        ids = [m.id for m in final.messages]
        if by_worker == {0: "won", 1: "mismatch"}:
            ok = final.metadata.owner == "o0" and ids == ["w0-0", "w0-1"]
        elif by_worker == {0: "none", 1: "saved"}:
            ok = final.metadata.owner == "o1" and ids == ["w1-0", "w1-1"]
        else:
            ok = False
        if not ok or final.metadata.message_count != 2:
            violations.append((index, by_worker, final.metadata.owner, ids))
    assert violations == []
    assert len(store.list()) == ROUNDS
    created = sum(by_worker[0] == "won" for by_worker in outcomes.values())
    print(f"\ncreate vs save: {created} created, {ROUNDS - created} saved, 0 violations")
    store.close()
