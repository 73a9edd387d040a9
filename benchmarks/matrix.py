"""Per-operation latency on every backend, as conversations get longer and more numerous.

Two measurements, on stores the run builds for itself (see :mod:`.environment`):

* **length** — on every backend (memory, Redis, ZeroDB test server, SQLite,
  PostgreSQL when reachable): ``save`` (replace a conversation with as many
  messages as it holds), ``load``, ``load(last=20)``, ``append`` (one message),
  ``list_conversations(limit=20)`` and ``get_stats`` at 10, 100, 1,000 and
  10,000 messages per conversation. Conversations grow the way chats do, one
  turn (two messages) per ``append``. Each cell is the median / p95 of the
  calls, with the requests one call sends (round trips, HTTP requests, SQL
  statements; counted on a warm store).
* **scale** — memory and Redis, plus the original algorithm and the raw
  redis-py floor on the same Redis: the same operations with 1,000, 10,000
  and 100,000 small conversations stored (``--large``: one million more for
  our Redis store). Fills are pipelined: our Redis store's own ``put`` script
  is queued in pipelines of 2,000, so a million conversations take a minute,
  not an hour of round trips.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from django.test.utils import override_settings

from django_convstore.backends.base import BaseStore
from django_convstore.backends.redis import RedisStore
from django_convstore.backends.redis import operations as redis_operations
from django_convstore.backends.redis.requests import Eval
from django_convstore.clock import now_ms
from django_convstore.validation import validate_conversation

from .environment import TTL, Backend, redis_counter
from .peers import OriginalRedis, RawFloor, System
from .plan import Plan
from .section import Section, Table
from .workload import (
    Latency,
    cycle,
    interleaved,
    message,
    messages,
    microseconds,
    one_after_another,
    size_label,
)

LENGTH_OPERATIONS = (
    "save",
    "load",
    "load(last=20)",
    "append",
    "list_conversations",
    "get_stats",
)
#: The largest save/append batch the run sends (a 10,000-message save).
MAX_BATCH = 10_000


@contextmanager
def large_batches() -> Iterator[None]:
    """Allow the run's 10,000-message saves (``CONVSTORE_MAX_BATCH`` defaults to 1,000)."""
    with override_settings(CONVSTORE_MAX_BATCH=MAX_BATCH):
        yield


def grow(store: BaseStore, cid: str, have: int, want: int) -> int:
    """Append turns (two messages) to ``cid`` until it holds ``want``; returns the count."""
    while have < want:
        step = min(2, want - have)
        store.append(cid, messages(have, step))
        have += step
    return have


def cell(latency: Latency) -> str:
    """``median / p95``."""
    return f"{microseconds(latency.median)} / {microseconds(latency.p95)}"


def counts_cell(counts: list[int | None]) -> str:
    """One value when every size sent as many requests, else each size's, in order."""
    if all(c is None for c in counts):
        return "-"
    shown = ["-" if c is None else str(c) for c in counts]
    return shown[0] if len(set(shown)) == 1 else " → ".join(shown)


# -- latency vs conversation length -------------------------------------------------------------


def length_operations(
    store: BaseStore,
    save_id: str,
    save_batch: list[dict[str, Any]],
    pool: list[str],
    one: list[dict[str, Any]],
) -> dict[str, Callable[[], object]]:
    """The six measured calls at one length (reads and appends take turns over ``pool``)."""
    next_load, next_append = cycle(pool), cycle(pool)
    return {
        "save": lambda: store.save(save_id, save_batch),
        "load": lambda: store.load(next_load()),
        "load(last=20)": lambda: store.load(next_load(), last=20),
        "append": lambda: store.append(next_append(), one),
        "list_conversations": lambda: store.list_conversations(limit=20),
        "get_stats": store.get_stats,
    }


def measure_lengths(backend: Backend, plan: Plan) -> dict[str, dict[int, tuple[Latency, Any]]]:
    """``{operation: {length: (latency, requests per call)}}`` for one backend."""
    store = backend.store(
        "lengths", **({"MAX_CONVERSATIONS": 10_000} if backend.name == "memory" else {})
    )
    results: dict[str, dict[int, tuple[Latency, Any]]] = {op: {} for op in LENGTH_OPERATIONS}
    main_count = 0
    one = [message(1)]
    with large_batches():
        for length in plan.lengths:
            calls = plan.calls_at(length)
            # Appending must not lengthen what is measured by more than ~10%:
            # short conversations are measured on a pool, each growing by a few messages.
            pool_size = math.ceil((plan.max_calls + 2) / max(1, length // 10))
            if pool_size > 1:
                pool = [f"pool-{length}-{j}" for j in range(pool_size)]
                for cid in pool:
                    grow(store, cid, 0, length)
            else:
                main_count = grow(store, "main", main_count, length)
                pool = ["main"]
            save_id, save_batch = f"save-{length}", messages(0, length)
            store.save(save_id, save_batch)
            operations = length_operations(store, save_id, save_batch, pool, one)
            latencies = one_after_another(
                operations, calls=plan.max_calls, min_calls=calls, budget=plan.call_budget
            )
            for op, operation in operations.items():
                results[op][length] = (latencies[op], backend.count(operation))
            if pool == ["main"]:
                main_count += latencies["append"].calls + 2  # and the warm-up and counted ones
    store.clear()
    return results


def lengths_section(backends: list[Backend], plan: Plan) -> Section:
    """Latency and requests per operation vs conversation length, every backend."""
    section = Section(
        "length",
        "Latency per operation vs conversation length (every backend)",
        "Median / p95 of single calls on a store holding conversations of the given "
        "length, built the way chats grow (one `append` of two messages per turn). "
        "Each operation makes its calls in a row after an untimed warm-up call "
        f"(at least {' / '.join(str(c) for _, c in plan.length_calls)} calls at these "
        f"lengths, up to {plan.max_calls} while within {plan.call_budget:g} s). "
        "`save` replaces a conversation of that length with as many messages "
        "(`CONVSTORE_MAX_BATCH` raised to 10,000 for the run); `append` adds one "
        "message; `list_conversations` asks for a page of 20; `get_stats` counts "
        "everything. *requests/call*: round trips (Redis), HTTP requests (ZeroDB) or "
        "SQL statements incl. BEGIN/COMMIT (database), for one warm call; when they "
        "differ by length they are listed in order of length.",
    )
    rows: list[dict[str, object]] = []
    data: dict[str, Any] = {}
    for backend in backends:
        results = measure_lengths(backend, plan)
        data[backend.label] = {
            op: {length: value[0].median for length, value in by_length.items()}
            for op, by_length in results.items()
        }
        for op in LENGTH_OPERATIONS:
            row: dict[str, object] = {
                "backend": backend.label,
                "operation": op,
                "requests/call": counts_cell([results[op][n][1] for n in plan.lengths]),
            }
            if backend.counter is not None:
                shown = str(row["requests/call"])
                unit = backend.unit[:-1] if shown.split()[-1] == "1" else backend.unit
                row["requests/call"] = f"{shown} {unit}"
            for length in plan.lengths:
                row[f"{size_label(length)} msgs"] = cell(results[op][length][0])
            rows.append(row)
    section.tables.append(Table("median / p95 per call", rows))
    section.data["medians"] = data
    section.data["lengths"] = list(plan.lengths)
    append_ratio: list[dict[str, object]] = []
    first, last = plan.lengths[0], plan.lengths[-1]
    for label, by_op in data.items():
        growth = by_op["append"][last] / by_op["append"][first]
        append_ratio.append(
            {
                "backend": label,
                f"append at {size_label(first)} msgs": microseconds(by_op["append"][first]),
                f"append at {size_label(last)} msgs": microseconds(by_op["append"][last]),
                "growth": f"{growth:.2f}x",
                f"load(last=20) at {size_label(last)}": microseconds(by_op["load(last=20)"][last]),
                f"load at {size_label(last)}": microseconds(by_op["load"][last]),
            }
        )
    section.tables.append(Table("append cost vs length (medians)", append_ratio))
    return section


# -- latency vs number of conversations ----------------------------------------------------------


def conversation_dict(cid: str, now: int, count: int = 2) -> dict[str, Any]:
    """A small conversation for :meth:`BaseStore.put` (``count`` messages, the run's TTL)."""
    return {
        "conversation_id": cid,
        "messages": [{**message(i), "timestamp": now} for i in range(count)],
        "metadata": {
            "conversation_id": cid,
            "created_at": now,
            "updated_at": now,
            "message_count": count,
            "ttl": TTL,
        },
    }


def pipelined_put(store: RedisStore, ids: range, *, batch: int = 2_000) -> None:
    """``store.put`` many conversations, sending them in pipelines of ``batch``.

    Each conversation is validated as ``put`` validates it and written by the
    store's own put script with its own arguments (the request its put plan
    makes); only the round trips are batched.
    """
    store.exists("warm-up")  # connect and check the layout, as a first put would
    store.client.script_load(redis_operations.PUT.source)
    pipe = store.client.pipeline(transaction=False)
    now = now_ms()
    for n, i in enumerate(ids, 1):
        conversation = validate_conversation(conversation_dict(f"c{i}", now))
        request = next(redis_operations.put(store.layout, conversation, now=now))
        assert isinstance(request, Eval)
        keys = request.keys
        pipe.execute_command("EVALSHA", request.script.sha, len(keys), *keys, *request.args)
        if n % batch == 0:
            pipe.execute()
    pipe.execute()


def pipelined_fill(system: OriginalRedis | RawFloor, ids: range, *, batch: int = 2_000) -> None:
    """Create conversations ``c<i>`` of two messages on a Redis baseline, pipelined."""
    pipe = system.client.pipeline(transaction=False)
    for n, i in enumerate(ids, 1):
        cid = f"c{i}"
        if isinstance(system, OriginalRedis):
            pipe.setex(system.key(cid), TTL, system.blob_json(cid, messages(0, 2)))
        else:
            system.queue_fill(pipe, cid, messages(0, 2))
        if n % batch == 0:
            pipe.execute()
    pipe.execute()


class Subject:
    """One system of the scale measurement: how to fill it and its five operations."""

    def __init__(
        self,
        label: str,
        fill: Callable[[range], None],
        operations: Callable[[random.Random, Iterator[int], int], dict[str, Callable[[], object]]],
        counted: bool,
        clear: Callable[[], object] = lambda: None,
    ) -> None:
        self.label, self.fill, self.operations, self.counted = label, fill, operations, counted
        self.clear = clear
        self.size = 0


def store_operations(store: BaseStore) -> Callable[..., dict[str, Callable[[], object]]]:
    def operations(
        rng: random.Random, fresh: Iterator[int], size: int
    ) -> dict[str, Callable[[], object]]:
        def pick() -> str:
            return f"c{rng.randrange(size)}"

        one = [message(1)]
        return {
            "save (new)": lambda: store.save(f"n{next(fresh)}", messages(0, 2)),
            "load": lambda: store.load(pick()),
            "append": lambda: store.append(pick(), one),
            "list_conversations": lambda: store.list_conversations(limit=20),
            "get_stats": store.get_stats,
        }

    return operations


def system_operations(system: System) -> Callable[..., dict[str, Callable[[], object]]]:
    def operations(
        rng: random.Random, fresh: Iterator[int], size: int
    ) -> dict[str, Callable[[], object]]:
        def pick() -> str:
            return f"c{rng.randrange(size)}"

        one = system.prepare([message(1)])
        return {
            "save (new)": lambda: system.save(f"n{next(fresh)}", messages(0, 2)),
            "load": lambda: system.load(pick()),
            "append": lambda: system.append(pick(), one),
            "list_conversations": system.list_page,
            "get_stats": system.stats,
        }

    return operations


def measure_growing(
    operation: Callable[[], object], counted: bool, calls: int, budget: float
) -> tuple[Latency, int | None]:
    """Latency (and round trips) of an operation whose cost may grow with the data.

    The first call warms up and is counted; when it alone took longer than
    the budget (the original's ``get_stats`` at 100,000 conversations is
    100,001 round trips) it is the only sample.
    """
    started = time.perf_counter()
    if counted:
        with redis_counter() as tally:
            operation()
    else:
        operation()
    first = time.perf_counter() - started
    count = tally.value if counted else None
    if first > budget:
        return Latency.of([first]), count
    latency = interleaved({"op": operation}, calls=calls, warmup=0, budget=budget)["op"]
    return latency, count


SCALE_OPERATIONS = ("save (new)", "load", "append", "list_conversations", "get_stats")


def scale_section(backends: list[Backend], plan: Plan) -> Section:
    """Latency per operation vs the number of stored conversations (memory and Redis)."""
    section = Section(
        "scale",
        "Latency per operation vs number of conversations (memory, Redis)",
        "Median / p95 of single calls with N small conversations (two messages each) "
        "stored; ids are picked at random. The original algorithm and the raw redis-py "
        "floor run on the same Redis server. The original has no paged listing, so its "
        "`list_conversations` is its `list()` (`KEYS prefix*`, ids only), and its "
        "`get_stats` is `KEYS` plus one `GET` per conversation, as in the TypeScript "
        "library. The floor lists with `ZREVRANGE` and counts with `ZCARD`. Operations "
        "whose cost grows with N stop after 3 calls once they used their time budget "
        "(or after one call, when that call alone took longer).",
    )
    by_name = {backend.name: backend for backend in backends}
    subjects: list[Subject] = []
    extra: list[OriginalRedis | RawFloor] = []
    max_size = max(plan.scales)
    if "memory" in by_name:
        memory = by_name["memory"].store(
            "scale", MAX_CONVERSATIONS=max_size + plan.scale_calls * len(plan.scales) * 4
        )
        now = now_ms()

        def fill_memory(ids: range, store: BaseStore = memory) -> None:
            for i in ids:
                store.put(conversation_dict(f"c{i}", now))

        subjects.append(
            Subject("memory", fill_memory, store_operations(memory), False, memory.clear)
        )
    if "redis" in by_name:
        redis_backend = by_name["redis"]
        store = redis_backend.store("scale")
        assert isinstance(store, RedisStore)
        url = redis_backend.config("x")["LOCATION"]
        original = OriginalRedis(url, "original-scale")
        floor = RawFloor(url, "floor-scale")
        extra += [original, floor]
        subjects += [
            Subject(
                "Redis",
                partial(pipelined_put, store),
                store_operations(store),
                True,
            ),
            Subject(
                "original (Redis)",
                partial(pipelined_fill, original),
                system_operations(original),
                True,
            ),
            Subject(
                "floor (Redis)",
                partial(pipelined_fill, floor),
                system_operations(floor),
                True,
            ),
        ]
    sizes = list(plan.scales) + list(plan.redis_only_scales)
    results: dict[str, dict[str, dict[int, tuple[Latency, int | None]]]] = {}
    fill_seconds: dict[str, dict[int, float]] = {}
    for size in sizes:
        for subject in subjects:
            if size not in plan.scales and subject.label != "Redis":
                continue
            started = time.perf_counter()
            subject.fill(range(subject.size, size))
            fill_seconds.setdefault(subject.label, {})[size] = time.perf_counter() - started
            subject.size = size
            rng = random.Random(size)
            fresh = itertools.count(size * 10)
            operations = subject.operations(rng, fresh, size)
            if size == sizes[0]:
                for operation in operations.values():  # load scripts, open connections
                    operation()
            by_op = results.setdefault(subject.label, {})
            for op, operation in operations.items():
                latency, count = measure_growing(
                    operation, subject.counted, plan.scale_calls, plan.scale_budget
                )
                by_op.setdefault(op, {})[size] = (latency, count)
    rows: list[dict[str, object]] = []
    for label, by_op in results.items():
        for op in SCALE_OPERATIONS:
            row: dict[str, object] = {
                "system": label,
                "operation": op,
                "round trips/call": counts_cell(
                    [by_op[op][n][1] for n in sizes if n in by_op[op]]
                ),
            }
            for size in sizes:
                row[f"{size_label(size)} convs"] = (
                    cell(by_op[op][size][0]) if size in by_op[op] else "-"
                )
            rows.append(row)
    section.tables.append(Table("median / p95 per call", rows))
    fills: list[dict[str, object]] = [
        {
            "system": label,
            **{
                f"fill to {size_label(size)}": f"{seconds:.1f} s"
                for size, seconds in by_size.items()
            },
        }
        for label, by_size in fill_seconds.items()
        if label != "memory"
    ]
    if plan.redis_only_scales and "redis" in by_name:
        section.notes.append(
            "The largest size fills only our Redis store (pipelined `put`): "
            + ", ".join(f"{size_label(n)} conversations" for n in plan.redis_only_scales)
            + "."
        )
    section.tables.append(
        Table("time to fill (pipelined writes; not a measured operation)", fills)
    )
    section.data["medians"] = {
        label: {op: {n: v[0].median for n, v in by_size.items()} for op, by_size in by_op.items()}
        for label, by_op in results.items()
    }
    section.data["sizes"] = sizes
    # The Redis server is this run's own: drop the scale data in one go.
    if extra:
        extra[0].client.flushdb()
    for system in extra:
        system.close()
    for subject in subjects:
        subject.clear()
    return section
