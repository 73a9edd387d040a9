"""Redis store: round trips, the floor, the original, the peers, native async, server time.

Every claim is a ratio against a baseline measured in the same run, on the
same freshly started loopback server, with the same messages (about 300
bytes of JSON each) and TTL:

* **floor** — raw redis-py with msgspec doing the least work each operation
  needs (:class:`~benchmarks.peers.RawFloor`: ``save`` = ``SET`` of a JSON
  array, ``load`` = one ``GET`` of it, ``append`` = ``RPUSH`` + ``EXPIRE``).
  Targets (issue 15): append at 10 and 10,000 messages ≤ 1.5x, load and
  ``load(last=20)`` at 10 messages ≤ 1.3x (both against the ``GET``), load of
  10,000 ≤ 1.2x, save of 1,000 ≤ 1.5x;
* **original** — the TypeScript library's algorithm in Python
  (:class:`~benchmarks.peers.OriginalRedis`): load of 10,000 and save of
  1,000 no slower (≤ 1.0x);
* **peers** — the OpenAI Agents SDK's ``RedisSession`` (``add_items`` of
  1,000, ``get_items``, ``get_items(limit=20)``) and LangChain's
  ``RedisChatMessageHistory`` (every operation it has): faster;
* **native async** — 200 concurrent ``aappend`` / ``aload`` (20 messages)
  on one event loop, native twins vs the ``sync_to_async`` wrappers:
  ≥ 2x / ≥ 1.4x the throughput;
* **length** — append, ``pop(1)`` and a truncate near the end cost at
  10,000 messages within 1.5x of their cost at 10;
* **server time** — ``INFO commandstats`` microseconds per script call, ours
  and 0.1's (its scripts, run on the same server): no target, for the record.

Timed pairs take turns call by call in blocks, and each side's median is the
median of its block medians, so both see the same machine noise.

    python -m benchmarks.redis_bench [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import ClassVar

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
django.setup()

from django.test.utils import override_settings  # noqa: E402

from django_convstore import create_store  # noqa: E402
from django_convstore.backends.base import BaseStore  # noqa: E402
from django_convstore.backends.redis import RedisStore  # noqa: E402
from django_convstore.clock import now_ms  # noqa: E402
from tests.legacy.redis_v01 import V01Writer  # noqa: E402
from tests.servers.redis_counting import CountingConnection  # noqa: E402
from tests.servers.redis_server import RedisServer  # noqa: E402

from .environment import TTL  # noqa: E402
from .peers import (  # noqa: E402
    AgentsSession,
    LangChainHistory,
    OriginalRedis,
    RawFloor,
    agents_available,
    langchain_available,
    stamped_fast,
)
from .timing import markdown_table  # noqa: E402
from .workload import message, messages  # noqa: E402

Row = dict[str, object]


class WrappedRedisStore(RedisStore):
    """The Redis store with the base class's async twins: ``sync_to_async`` on one thread."""

    async_thread_sensitive: ClassVar[bool] = True
    _aappend = BaseStore._aappend
    _aload = BaseStore._aload


def paired(
    ours: Callable[[], object], theirs: Callable[[], object], *, calls: int, blocks: int = 9
) -> tuple[float, float]:
    """Median seconds per call of two operations taking turns (median of block medians)."""
    for _ in range(2):
        ours()
        theirs()
    per_block = max(2, calls // blocks)
    mine: list[float] = []
    other: list[float] = []
    clock = time.perf_counter
    for _ in range(blocks):
        a: list[float] = []
        b: list[float] = []
        for _ in range(per_block):
            start = clock()
            ours()
            middle = clock()
            theirs()
            b.append(clock() - middle)
            a.append(middle - start)
        mine.append(statistics.median(a))
        other.append(statistics.median(b))
    return statistics.median(mine), statistics.median(other)


def row(name: str, value: float, baseline: float, *, limit: float, what: str = "µs") -> Row:
    """A result row: ``value / baseline`` against ``≤ limit`` (lower is better)."""
    ratio = value / baseline
    scale, unit = (1e6, "µs") if what == "µs" else (1.0, what)
    return {
        "measurement": name,
        "result": f"{value * scale:.0f} {unit}",
        "baseline (same run)": f"{baseline * scale:.0f} {unit}",
        "ratio": f"{ratio:.2f}x",
        "target": f"≤ {limit}x",
        "met": "yes" if ratio <= limit else "NO",
    }


def info_row(name: str, result: str, baseline: str = "-", ratio: str = "-") -> Row:
    """A row without a target."""
    return {
        "measurement": name,
        "result": result,
        "baseline (same run)": baseline,
        "ratio": ratio,
        "target": "-",
        "met": "-",
    }


def build(server: RedisServer, namespace: str, cls: type[RedisStore] = RedisStore) -> RedisStore:
    """A store of the run (the counting connection lets us count round trips)."""
    config = {
        "BACKEND": f"{cls.__module__}.{cls.__qualname__}",
        "LOCATION": server.url,
        "NAMESPACE": namespace,
        "TTL": TTL,
        "OPTIONS": {"CONNECTION_POOL_KWARGS": {"connection_class": CountingConnection}},
    }
    store = create_store(config, alias=f"bench-{namespace}")
    assert isinstance(store, RedisStore)
    return store


# -- round trips ---------------------------------------------------------------------------


def round_trips(store: RedisStore) -> list[Row]:
    """Requests one warm call of each operation sends."""
    store.save("rt-long", messages(0, 500), owner="o")
    operations: dict[str, Callable[[], object]] = {
        "save": lambda: store.save("rt", messages(0, 2), owner="o"),
        "save (1,000 messages: staged in one MULTI)": lambda: store.save(
            "rt-big", messages(0, 1000)
        ),
        "append": lambda: store.append("rt", [message(2)]),
        "append of ids already there": lambda: store.append("rt", [{**message(2), "id": "x"}]),
        "load": lambda: store.load("rt"),
        "load for its owner": lambda: store.load("rt", owner="o"),
        "load for a stranger": lambda: store.load("rt", owner="stranger"),
        "load of 500 messages": lambda: store.load("rt-long"),
        "load of 500 messages for their owner (script, then GETRANGE)": lambda: store.load(
            "rt-long", owner="o"
        ),
        "load(last=20)": lambda: store.load("rt", last=20),
        "pop": lambda: store.pop("rt"),
        "truncate": lambda: store.truncate("rt", 1),
        "exists": lambda: store.exists("rt"),
        "set_ttl": lambda: store.set_ttl("rt", 600),
        "update_metadata": lambda: store.update_metadata("rt", {"k": 1}),
        "list_conversations": lambda: store.list_conversations(limit=20),
        "get_stats": store.get_stats,
        "delete": lambda: store.delete("rt"),
    }
    rows = []
    for name, operation in operations.items():
        operation()
        CountingConnection.reset()
        operation()
        rows.append(info_row(f"round trips: {name}", str(CountingConnection.requests)))
    return rows


# -- vs the floor and the original ---------------------------------------------------------


def floor_and_original(server: RedisServer, store: RedisStore, quick: bool) -> list[Row]:
    """Issue 15's ratios against the floor and the original algorithm."""
    floor = RawFloor(server.url, "floor")
    original = OriginalRedis(server.url, "original")
    small, large = messages(0, 10), messages(0, 10_000)
    for name, content in (("s", small), ("l", large)):
        store.save(f"load-{name}", content)
        store.save(f"append-{name}", content)
        floor.fill(f"load-{name}", content)
        floor.fill(f"append-{name}", content)
    original.fill("load-l", large)
    one = [message(1)]
    thousand = messages(0, 1000)
    fast, slow = (600, 24) if quick else (3000, 90)
    rows = []
    pairs: list[tuple[str, Callable[[], object], Callable[[], object], int, float]] = [
        ("append at 10 messages vs floor (RPUSH+EXPIRE)",
         lambda: store.append("append-s", one), lambda: floor.append("append-s", one), fast, 1.5),
        ("append at 10,000 messages vs floor",
         lambda: store.append("append-l", one), lambda: floor.append("append-l", one), fast, 1.5),
        ("load of 10 messages vs floor (GET + msgspec)",
         lambda: store.load("load-s"), lambda: floor.load("load-s"), fast, 1.3),
        ("load(last=20) of 10 messages vs floor's GET",
         lambda: store.load("load-s", last=20), lambda: floor.load("load-s"), fast, 1.3),
        ("load of 10,000 messages vs floor",
         lambda: store.load("load-l"), lambda: floor.load("load-l"), slow, 1.2),
        ("save of 1,000 messages vs floor (SET)",
         lambda: store.save("save", thousand), lambda: floor.save("save", thousand), slow, 1.5),
        ("load of 10,000 messages vs original (GET + json.loads)",
         lambda: store.load("load-l"), lambda: original.load("load-l"), slow, 1.0),
        ("save of 1,000 messages vs original (GET + json.dumps + SETEX)",
         lambda: store.save("save", thousand), lambda: original.save("save", thousand), slow,
         1.0),
    ]  # fmt: skip
    for name, ours, theirs, calls, limit in pairs:
        mine, other = paired(ours, theirs, calls=calls)
        rows.append(row(name, mine, other, limit=limit))
    floor.close()
    original.close()
    return rows


# -- vs the peers --------------------------------------------------------------------------


def peers(server: RedisServer, store: RedisStore, quick: bool) -> list[Row]:
    """RedisSession and RedisChatMessageHistory: we must be faster (ratio < 1)."""
    rows: list[Row] = []
    calls = 40 if quick else 150
    hundred = messages(0, 100)
    reason = agents_available()
    if reason is None:
        session = AgentsSession(server.url, "agents")
        items = session.prepare(messages(0, 1000))
        session.fill("read", hundred)
        store.save("peer-read", hundred)
        sessions: tuple[tuple[str, Callable[[], object], Callable[[], object]], ...] = (
            ("add_items(1,000) vs RedisSession",
             lambda: store.append("peer-add", messages(0, 1000)),
             lambda: session.append("add", items)),
            ("get_items() of 100 vs RedisSession",
             lambda: store.load("peer-read"), lambda: session.load("read")),
            ("get_items(limit=20) of 100 vs RedisSession",
             lambda: store.load("peer-read", last=20), lambda: session.load_last("read", 20)),
        )  # fmt: skip
        for name, ours, theirs in sessions:
            mine, other = paired(ours, theirs, calls=calls)
            rows.append(row(name, mine, other, limit=1.0))
        session.close()
    else:
        rows.append(info_row("OpenAI Agents RedisSession", f"skipped: {reason}"))
    reason = langchain_available()
    if reason is None:
        history = LangChainHistory(server.url, "langchain")
        history.fill("read", hundred)
        one = history.prepare([message(1)])
        counter = iter(range(10**9))
        for cid in range(calls * 3):
            history.fill(f"doomed-{cid}", messages(0, 10))
            store.save(f"doomed-{cid}", messages(0, 10))
        doomed_ours = iter(range(10**9))
        doomed_theirs = iter(range(10**9))
        cases: tuple[tuple[str, Callable[[], object], Callable[[], object]], ...] = (
            ("add_messages (1 message) vs LangChain",
             lambda: store.append("lc-add", [message(next(counter))]),
             lambda: history.append("add", one)),
            (".messages of 100 vs LangChain",
             lambda: store.load("peer-read"), lambda: history.load("read")),
            ("clear() of 10 vs LangChain",
             lambda: store.delete(f"doomed-{next(doomed_ours)}"),
             lambda: history.delete(f"doomed-{next(doomed_theirs)}")),
        )  # fmt: skip
        for name, ours, theirs in cases:
            mine, other = paired(ours, theirs, calls=calls)
            rows.append(row(name, mine, other, limit=1.0))
        history.close()
    else:
        rows.append(info_row("LangChain RedisChatMessageHistory", f"skipped: {reason}"))
    return rows


# -- native async --------------------------------------------------------------------------


def throughput(
    loop: asyncio.AbstractEventLoop, call: Callable[[int], Awaitable[object]], *, rounds: int
) -> float:
    """Calls per second of 200 concurrent calls on one loop (median of ``rounds``)."""

    async def burst() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(call(i) for i in range(200)))
        return time.perf_counter() - start

    loop.run_until_complete(burst())  # connections, scripts
    seconds = [loop.run_until_complete(burst()) for _ in range(rounds)]
    return 200 / statistics.median(seconds)


def native_async(server: RedisServer, quick: bool) -> list[Row]:
    """200 concurrent calls: native twins vs the sync_to_async wrappers."""
    native = build(server, "async-native")
    wrapped = build(server, "async-wrapped", WrappedRedisStore)
    rounds = 3 if quick else 7
    rows: list[Row] = []
    loop = asyncio.new_event_loop()
    try:
        for store in (native, wrapped):
            for i in range(200):
                store.save(f"read-{i}", messages(0, 20))
        results: dict[str, tuple[float, float]] = {}
        for label, store in (("native", native), ("wrapped", wrapped)):
            results[label] = (
                throughput(
                    loop,
                    lambda i, s=store: s.aappend(f"w-{i % 50}", [message(i)]),  # type: ignore[misc]
                    rounds=rounds,
                ),
                throughput(
                    loop,
                    lambda i, s=store: s.aload(f"read-{i}"),  # type: ignore[misc]
                    rounds=rounds,
                ),
            )
        for index, (name, limit) in enumerate((("aappend", 2.0), ("aload (20 messages)", 1.4))):
            ours, theirs = results["native"][index], results["wrapped"][index]
            rows.append(
                {
                    "measurement": f"{name}: 200 concurrent on one loop, native vs sync_to_async",
                    "result": f"{ours:.0f} calls/s",
                    "baseline (same run)": f"{theirs:.0f} calls/s",
                    "ratio": f"{ours / theirs:.2f}x",
                    "target": f"≥ {limit}x",
                    "met": "yes" if ours / theirs >= limit else "NO",
                }
            )
        loop.run_until_complete(native.aclose())
        loop.run_until_complete(wrapped.aclose())
    finally:
        loop.close()
    native.clear()
    wrapped.clear()
    return rows


# -- cost vs length ------------------------------------------------------------------------


def length(store: RedisStore, quick: bool) -> list[Row]:
    """append, pop(1) and truncate near the end: at 10,000 vs at 10 messages."""
    calls = 300 if quick else 1500
    store.save("len-s", messages(0, 10))
    store.save("len-l", messages(0, 1000))
    for start in range(1000, 10_000, 1000):
        store.append("len-l", messages(start, 1000))
    rows = []
    counter = iter(range(10**9))

    def popped(cid: str) -> Callable[[], object]:
        def call() -> object:
            result = store.pop(cid)
            store.append(cid, [message(next(counter))])  # back to the same length
            return result

        return call

    def truncated(cid: str, length_: int) -> Callable[[], object]:
        def call() -> object:
            result = store.truncate(cid, length_ - 2)
            store.append(cid, messages(next(counter) * 2, 2))
            return result

        return call

    with_restore = {"pop(1)", "truncate(n - 2)"}
    for name, at_large, at_small in (
        ("append (1 message)", lambda: store.append("len-l", [message(1)]),
         lambda: store.append("len-s", [message(1)])),
        ("pop(1)", popped("len-l"), popped("len-s")),
        ("truncate(n - 2)", truncated("len-l", 10_000), truncated("len-s", 10)),
    ):  # fmt: skip
        large, small = paired(at_large, at_small, calls=calls)
        note = " (each with an append restoring the length)" if name in with_restore else ""
        rows.append(row(f"{name} at 10,000 vs at 10 messages{note}", large, small, limit=1.5))
    return rows


# -- server time ---------------------------------------------------------------------------


def _usec_per_call(server: RedisServer, command: str = "evalsha") -> float:
    info = str(server.command("INFO", "commandstats"))
    for line in info.splitlines():
        if line.startswith(f"cmdstat_{command}:"):
            return float(line.split("usec_per_call=")[1].split(",")[0])
    return float("nan")


def server_time(server: RedisServer, store: RedisStore, quick: bool) -> list[Row]:
    """µs per script call on the server (min over rounds): ours, and 0.1's scripts."""
    from redis import Redis

    client = Redis.from_url(server.url)
    old = V01Writer(client, "aikit:conversation", "v01")
    thousand = messages(0, 1000)
    calls = 200 if quick else 1000
    big_calls = 10 if quick else 40
    now = now_ms()
    old.save("a", stamped_fast(messages(0, 10)), now=now)
    store.save("srv-a", messages(0, 10))
    store.save("srv-l", messages(0, 10))
    counter = iter(range(10**9))
    cases: list[tuple[str, Callable[[], object], Callable[[], object] | None, int]] = [
        ("append (1 message)", lambda: store.append("srv-a", [message(next(counter))]),
         lambda: old.append("a", stamped_fast([message(1)]), now=now_ms()), calls),
        ("save (1,000 messages)", lambda: store.save("srv-s", thousand),
         lambda: old.save("s", stamped_fast(thousand), now=now_ms()), big_calls),
        ("load(last=20) / load for an owner", lambda: store.load("srv-l", last=20), None, calls),
        ("pop(1)", lambda: (store.pop("srv-a"), store.append("srv-a", [message(1)])), None,
         calls),
    ]  # fmt: skip
    rows = []
    for name, ours, theirs, n in cases:
        results: list[float | None] = []
        for operation in (ours, theirs):
            if operation is None:
                results.append(None)
                continue
            best = float("inf")
            for _ in range(3):
                operation()
                server.command("CONFIG", "RESETSTAT")
                for _ in range(n):
                    operation()
                best = min(best, _usec_per_call(server))
            results.append(best)
        mine, before = results
        assert mine is not None
        if name == "pop(1)":
            mine = mine * 2  # two scripts per call: report their sum
            name = "pop(1) + the append restoring the length"
        rows.append(
            info_row(
                f"server µs per script (INFO commandstats): {name}",
                f"{mine:.1f} µs",
                "-" if before is None else f"{before:.1f} µs (0.1's script)",
                "-" if before is None else f"{mine / before:.2f}x",
            )
        )
    client.close()
    return rows


def run(quick: bool = False) -> list[Row]:
    """Start a server, measure, and return the result rows (also used by ``benchmarks``)."""
    rows: list[Row] = []
    with RedisServer() as server, override_settings(CONVSTORE_MAX_BATCH=10_000):
        store = build(server, "bench")
        rows += round_trips(store)
        rows += floor_and_original(server, store, quick)
        rows += length(store, quick)
        rows += peers(server, store, quick)
        rows += native_async(server, quick)
        rows += server_time(server, store, quick)
        store.clear()
        store.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls")
    args = parser.parse_args()
    print(markdown_table(run(quick=args.quick)))


if __name__ == "__main__":
    main()
