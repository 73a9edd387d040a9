"""Several processes appending to one conversation: throughput, and nothing lost or doubled.

On every backend but memory, ``workers`` separate (spawned) processes each
build their own store, wait for a common start time, and append ``n``
one-message batches to the same conversation. The memory store lives in one
process, so there the workers are threads of this process. The original
algorithm runs the same way on the same Redis, to show what read-modify-write
appends do under concurrency.

Afterwards the conversation is loaded and checked: exactly ``workers * n``
messages, every message id once, each worker's messages in its own order,
and ``message_count`` agreeing. Throughput is all appends divided by the time
from the first worker's start to the last one's end.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

from .environment import Backend
from .plan import Plan
from .section import Section, Table

CID = "shared"


def _init_worker() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    import django

    django.setup()


def _ready(_: int) -> int:
    time.sleep(0.3)  # long enough for every process of the pool to take one
    return os.getpid()


def _add_database(alias: str, settings_dict: dict[str, Any]) -> None:
    from django.db import connections

    connections.settings[alias] = connections.configure_settings(
        {"default": {"ENGINE": "django.db.backends.dummy"}, alias: settings_dict}
    )[alias]


def batch(worker: int, number: int) -> list[dict[str, Any]]:
    """Worker ``worker``'s append number ``number``: one message naming both."""
    return [{"id": f"w{worker}-{number}", "role": "user", "content": f"{worker}:{number}"}]


def append_job(job: dict[str, Any]) -> tuple[float, float]:
    """One worker (in a pool process): appends, timed; returns (start, end) wall-clock times."""
    if job.get("database"):
        _add_database(job["database_alias"], job["database"])
    append: Callable[[str, list[dict[str, Any]]], object]
    if job["kind"] == "original":
        from .peers import OriginalRedis

        original = OriginalRedis(job["url"], job["prefix"])
        original.client.ping()
        append = original.append
    else:
        from django_convstore import create_store

        store = create_store(job["config"], alias=f"worker-{job['worker']}")
        store.exists("warm-up")
        append = store.append
    delay = job["start_at"] - time.time()
    if delay > 0:
        time.sleep(delay)
    started = time.time()
    for number in range(job["appends"]):
        append(CID, batch(job["worker"], number))
    return started, time.time()


def check(contents: list[str], ids: list[str], count: int, workers: int, appends: int) -> str:
    """``ok`` when nothing was lost, doubled or reordered, else what went wrong."""
    expected = workers * appends
    problems = []
    if len(ids) != expected:
        problems.append(f"{expected - len(ids)} of {expected} messages lost")
    if len(set(ids)) != len(ids):
        problems.append(f"{len(ids) - len(set(ids))} duplicated")
    if count != len(ids):
        problems.append(f"message_count {count} != {len(ids)} stored")
    for worker in range(workers):
        own = [int(c.split(":")[1]) for c in contents if c.startswith(f"{worker}:")]
        if own != sorted(own):
            problems.append(f"worker {worker}'s messages out of order")
            break
    return "ok: none lost, none duplicated, in order" if not problems else "; ".join(problems)


def _run_threads(backend: Backend, workers: int, appends: int) -> tuple[float, Any]:
    store = backend.store("concurrency")
    spans: list[tuple[float, float]] = []
    start = threading.Barrier(workers)

    def work(worker: int) -> None:
        start.wait()
        began = time.time()
        for number in range(appends):
            store.append(CID, batch(worker, number))
        spans.append((began, time.time()))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return max(e for _, e in spans) - min(s for s, _ in spans), store


def concurrency_section(backends: list[Backend], plan: Plan) -> Section:
    """Throughput and loss check of ``plan.workers`` writers on every backend."""
    workers = plan.workers
    section = Section(
        "concurrency",
        f"Concurrent appends: {workers} writers, one conversation",
        f"{workers} writers append one message at a time to the same conversation: separate "
        "processes (each with its own store and connections) on every backend except "
        "memory, where they are threads of one process. Then the conversation is "
        "loaded and checked: every message exactly once, each writer's messages in "
        "its own order, `message_count` right. The original algorithm (read-modify-"
        "write of one JSON blob) runs the same way on the same Redis. On a 2-core "
        "machine the writers and the server share the cores, so throughput is a "
        "lower bound.",
    )
    rows: list[dict[str, object]] = []
    data: dict[str, float] = {}
    lost: dict[str, float] = {}
    context = get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
        list(pool.map(_ready, range(workers)))
        subjects: list[tuple[str, Backend]] = [(b.name, b) for b in backends]
        redis = next((b for b in backends if b.name == "redis"), None)
        if redis is not None:
            subjects.append(("original", redis))
        for kind, backend in subjects:
            appends = plan.appends_for(kind)
            label = backend.label
            if kind == "memory":
                elapsed, store = _run_threads(backend, workers, appends)
                label = "memory (threads)"
            else:
                jobs = []
                store = None
                url = backend.config("x").get("LOCATION", "")
                if kind != "original":
                    store = backend.store("concurrency")
                    config = backend.config("concurrency")
                else:
                    label = "original algorithm (Redis)"
                    config = {}
                start_at = time.time() + 0.5
                for worker in range(workers):
                    jobs.append(
                        {
                            "kind": kind,
                            "worker": worker,
                            "appends": appends,
                            "start_at": start_at,
                            "config": config,
                            "url": url,
                            "prefix": "original-concurrency",
                            "database": backend.database,
                            "database_alias": backend.database_alias,
                        }
                    )
                spans = list(pool.map(append_job, jobs))
                elapsed = max(e for _, e in spans) - min(s for s, _ in spans)
            if kind == "original":
                from .peers import OriginalRedis

                original = OriginalRedis(url, "original-concurrency")
                blob = original.load(CID) or {"messages": [], "metadata": {"messageCount": 0}}
                contents = [m["content"] for m in blob["messages"]]
                ids = [m["id"] for m in blob["messages"]]
                count = blob["metadata"]["messageCount"]
                original.delete(CID)
                original.close()
            else:
                assert store is not None
                loaded = store.load(CID)
                messages = loaded.messages if loaded else []
                contents = [m.content for m in messages]
                ids = [m.id for m in messages]
                count = loaded.metadata.message_count if loaded else 0
                store.clear()
            total = workers * appends
            data[label] = total / elapsed
            lost[label] = 1 - len(set(ids)) / total
            rows.append(
                {
                    "backend": label,
                    "writers": workers,
                    "appends": f"{total:,}",
                    "seconds": f"{elapsed:.2f}",
                    "appends/s": f"{total / elapsed:,.0f}",
                    "stored": f"{len(ids):,}",
                    "check": check(contents, ids, count, workers, appends),
                }
            )
    section.tables.append(Table("throughput and integrity", rows))
    section.data["throughput"] = data
    section.data["lost"] = lost
    return section
