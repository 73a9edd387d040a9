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
