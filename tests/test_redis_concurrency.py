"""Many processes appending to one Redis conversation lose, duplicate and reorder nothing."""

from __future__ import annotations

import itertools
import multiprocessing
import os
from typing import Any

import pytest

PROCESSES = 6
APPENDS = 150


def _append_worker(config: dict[str, Any], worker: int, start: Any, done: Any) -> None:
    """Runs in a child process: its own store, its own connections (and Django, if spawned)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from django_convstore import create_store

    store = create_store(config, alias=f"worker-{worker}")
    store.exists("warm-up")
    start.wait()
    for i in range(APPENDS):
        size = 1 + (worker + i) % 3
        store.append(
            "shared",
            [
                {"role": "user", "content": f"{worker}:{i}:{k}/{size}", "id": f"w{worker}-{i}-{k}"}
                for k in range(size)
            ],
        )
    store.close()
    done.put(worker)


@pytest.mark.slow
def test_processes_appending_to_one_conversation(make_redis_store):
    store = make_redis_store()
    config = {
        "BACKEND": "django_convstore.backends.redis.RedisStore",
        "LOCATION": store.location,
        "NAMESPACE": store.namespace,
    }
    # fork is much faster than spawn here; both give every worker its own connections.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    start = context.Barrier(PROCESSES)
    done = context.Queue()
    processes = [
        context.Process(target=_append_worker, args=(config, worker, start, done))
        for worker in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    assert sorted(done.get(timeout=5) for _ in processes) == list(range(PROCESSES))

    expected = {
        worker: sum(1 + (worker + i) % 3 for i in range(APPENDS)) for worker in range(PROCESSES)
    }
    loaded = store.load("shared")
    assert loaded is not None
    contents = [m.content for m in loaded.messages]
    assert loaded.metadata.message_count == len(contents) == sum(expected.values())
    ids = [m.id for m in loaded.messages]
    assert len(set(ids)) == len(ids)
    for worker in range(PROCESSES):  # each process's messages, all there, in its own order
        own = [c for c in contents if c.startswith(f"{worker}:")]
        assert len(own) == expected[worker]
        assert own == [
            f"{worker}:{i}:{k}/{1 + (worker + i) % 3}"
            for i in range(APPENDS)
            for k in range(1 + (worker + i) % 3)
        ]
    position = 0
    while position < len(contents):  # one append's batch is never interleaved with another
        worker, i, rest = contents[position].split(":")
        size = int(rest.split("/")[1])
        batch = contents[position : position + size]
        assert batch == [f"{worker}:{i}:{k}/{size}" for k in range(size)]
        position += size
    workers = [c.split(":")[0] for c in contents]
    switches = sum(a != b for a, b in itertools.pairwise(workers))
    assert switches > 2 * PROCESSES, "the workers did not actually run concurrently"
    stats = store.get_stats()
    assert (stats.total_conversations, stats.total_messages) == (1, len(contents))


# -- retried appends: every id sent by two processes ------------------------------------------

SEQUENCE = 300


def _chunks(worker: int) -> list[list[int]]:
    """The pair's one id sequence, cut into batches differently by each of its two workers."""
    sizes = (1, 2, 3) if worker % 2 == 0 else (3, 1, 2, 4)
    chunks: list[list[int]] = []
    start, turn = 0, 0
    while start < SEQUENCE:
        size = sizes[turn % len(sizes)]
        chunks.append(list(range(start, min(SEQUENCE, start + size))))
        start += size
        turn += 1
    return chunks


def _retrying_worker(config: dict[str, Any], worker: int, start: Any, done: Any) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from django_convstore import create_store

    store = create_store(config, alias=f"retry-{worker}")
    store.exists("warm-up")
    pair = worker // 2
    start.wait()
    for chunk in _chunks(worker):
        store.append(
            "shared",
            [{"role": "user", "content": f"p{pair}:{j}", "id": f"p{pair}-{j}"} for j in chunk],
        )
    store.close()
    done.put(worker)


def _run_processes(target: Any, config: dict[str, Any], count: int, *extra: Any) -> None:
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context: Any = multiprocessing.get_context(method)
    start = context.Barrier(count)
    done = context.Queue()
    processes = [
        context.Process(target=target, args=(config, worker, start, done, *extra))
        for worker in range(count)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(180)
        assert process.exitcode == 0
    assert sorted(done.get(timeout=5) for _ in processes) == list(range(count))


def _config(store: Any) -> dict[str, Any]:
    return {
        "BACKEND": "django_convstore.backends.redis.RedisStore",
        "LOCATION": store.location,
        "NAMESPACE": store.namespace,
        "OPTIONS": store.options,
    }


@pytest.mark.slow
@pytest.mark.parametrize("shards", [1, 4])
def test_processes_retrying_the_same_ids_store_each_once(make_redis_store, shards):
    """Issue 13: 6 processes; each id is sent by two of them (batched differently)."""
    store = make_redis_store(OPTIONS={"INDEX_SHARDS": shards})
    _run_processes(_retrying_worker, _config(store), PROCESSES)
    loaded = store.load("shared")
    assert loaded is not None
    ids = [m.id for m in loaded.messages]
    assert len(ids) == len(set(ids)) == loaded.metadata.message_count == 3 * SEQUENCE
    for pair in range(PROCESSES // 2):
        mine = [m for m in loaded.messages if m.id.startswith(f"p{pair}-")]
        assert [m.id for m in mine] == [f"p{pair}-{j}" for j in range(SEQUENCE)]
        assert [m.content for m in mine] == [f"p{pair}:{j}" for j in range(SEQUENCE)]
    assert store.get_stats().total_messages == 3 * SEQUENCE
    assert [m.id for m in store.load("shared", last=3).messages] == ids[-3:]


# -- create(owner=a) racing save(owner=b) ------------------------------------------------------

ROUNDS = 300


def _owner_worker(config: dict[str, Any], worker: int, start: Any, done: Any, out: Any) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from django_convstore import OwnerMismatchError, create_store

    store = create_store(config, alias=f"owner-{worker}")
    store.exists("warm-up")
    outcomes = []
    for round_ in range(ROUNDS):
        cid = f"race-{round_}"
        start.wait()
        try:
            if worker == 0:
                created = store.create(
                    cid, [{"role": "user", "content": "a", "id": "a"}], owner="a"
                )
                outcomes.append("created" if created is not None else "none")
            else:
                store.save(cid, [{"role": "user", "content": "b", "id": "b"}], owner="b")
                outcomes.append("saved")
        except OwnerMismatchError:
            outcomes.append("mismatch")
    store.close()
    out.put((worker, outcomes))
    done.put(worker)


@pytest.mark.slow
def test_processes_racing_create_and_save_of_another_owner(make_redis_store):
    """Issue 14: create(owner=a) vs save(owner=b) on a new id, released together each round."""
    store = make_redis_store()
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    out = multiprocessing.get_context(method).Queue()
    _run_processes(_owner_worker, _config(store), 2, out)
    results = dict(out.get(timeout=5) for _ in range(2))
    violations = 0
    kinds = set()
    for round_ in range(ROUNDS):
        created, saved = results[0][round_], results[1][round_]
        final = store.load(f"race-{round_}")
        ids = [m.id for m in final.messages]
        if created == "created":  # alice won: bob was refused, nothing of his was written
            ok = saved == "mismatch" and final.metadata.owner == "a" and ids == ["a"]
        else:  # bob won: alice's create saw his conversation and wrote nothing
            ok = created == "none" and saved == "saved"
            ok = ok and final.metadata.owner == "b" and ids == ["b"]
        violations += not ok
        kinds.add(created)
    assert violations == 0
    assert store.get_stats().total_conversations == ROUNDS
    assert kinds == {"created", "none"}, "one side always won: the race never happened"
