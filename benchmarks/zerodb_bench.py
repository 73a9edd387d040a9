"""ZeroDB store: requests per operation, cost at 10 vs 10,000 messages, contention latencies.

Runs against its own ZeroDB-compatible server (``tests.servers.zerodb_server``)
on loopback, which counts requests and answers queries from the indexes the
tables declare (as a real service would). The claims:

* HTTP requests per operation do not depend on the conversation's length
  (measured at 10 and 10,000 messages); ``load(last=20)`` costs at most 3.
* ``load(last=20)``, ``append``, ``pop(1)`` and ``truncate`` to a length near
  the end take at 10,000 messages at most 1.5x their time at 10 (medians of
  calls alternating between the two conversations, so both see the same
  machine noise).
* Under contention nobody gives up: N processes appending to one
  conversation all succeed; p50/p99/max per append, with no injected
  latency and with 50 ms per request.

    python -m benchmarks.zerodb_bench [--quick] [--contention-appends N]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
django.setup()

from django_convstore import create_store  # noqa: E402
from django_convstore.backends.zerodb import ZeroDBStore  # noqa: E402
from tests.servers.zerodb_server import ZeroDBServer  # noqa: E402

from .timing import markdown_table  # noqa: E402

RATIO_TARGET = 1.5
LOAD_LAST_REQUESTS = 3


def text(i: int, prefix: str = "m") -> dict[str, str]:
    return {
        "id": f"{prefix}{i}",
        "role": "user" if i % 2 == 0 else "assistant",
        "content": f"message number {i} " * 4,
    }


def config(server: ZeroDBServer, **options: Any) -> dict[str, Any]:
    return {
        "BACKEND": "django_convstore.backends.zerodb.ZeroDBStore",
        "NAMESPACE": f"bench-{uuid.uuid4().hex[:8]}",
        "OPTIONS": {
            "BASE_URL": server.base_url,
            "PROJECT_ID": server.project_id,
            "API_KEY": server.api_key,
            "MAX_RETRIES": 8,
            **options,
        },
    }


def make_store(server: ZeroDBServer) -> ZeroDBStore:
    store = create_store(config(server), alias="bench")
    assert isinstance(store, ZeroDBStore)
    return store


def build(store: ZeroDBStore, cid: str, length: int) -> None:
    """A chat-like conversation: appends (of up to 1,000 messages), one row per message."""
    for start in range(0, length, 1000):
        store.append(cid, [text(i) for i in range(start, min(length, start + 1000))])


def requests_for(server: ZeroDBServer, operation: Callable[[], object]) -> int:
    with server.counting() as tally:
        operation()
    return tally.requests


def request_counts(server: ZeroDBServer, length: int) -> dict[str, int]:
    """Requests per operation on a conversation of ``length`` messages."""
    store = make_store(server)
    build(store, "c", length - 3)
    build(store, "d", length)
    counts = {
        "load(last=20)": requests_for(server, lambda: store.load("c", last=20)),
        "exists": requests_for(server, lambda: store.exists("c")),
        "get_ttl": requests_for(server, lambda: store.get_ttl("c")),
        "append (1 message)": requests_for(server, lambda: store.append("c", [text(0, "a")])),
        "append (3 messages)": requests_for(
            server, lambda: store.append("c", [text(i, "b") for i in range(3)])
        ),
        "append (ids already there)": requests_for(
            server, lambda: store.append("c", [text(0, "a")])
        ),
        "pop(1)": requests_for(server, lambda: store.pop("c")),
        # (the conversation has length + 4 - 1 messages now)
        "truncate(length - 2)": requests_for(server, lambda: store.truncate("c", length - 2)),
        "set_ttl": requests_for(server, lambda: store.set_ttl("c", 3600)),
        "update_metadata": requests_for(server, lambda: store.update_metadata("c", {"k": 1})),
    }
    store.tables.cache.clear()
    counts["append (header not seen yet)"] = requests_for(
        server, lambda: store.append("c", [text(1, "a")])
    )
    counts["save (10 messages)"] = requests_for(
        server, lambda: store.save("c", [text(i, "s") for i in range(10)])
    )
    counts["delete"] = requests_for(server, lambda: store.delete("d"))
    counts["append (new conversation)"] = requests_for(
        server, lambda: store.append("new", [text(0)])
    )
    counts["create (new conversation)"] = requests_for(
        server, lambda: store.create("new2", [text(0)])
    )
    store.clear()
    store.close()
    return counts


def alternating(
    small: Callable[[], object],
    large: Callable[[], object],
    *,
    calls: int,
    restore: tuple[Callable[[], object], Callable[[], object]] | None = None,
) -> tuple[float, float]:
    """Median seconds per call of ``small`` and ``large``, timed alternately (each followed,
    untimed, by its ``restore``)."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(calls):
        for operation, samples, index in ((small, a, 0), (large, b, 1)):
            start = time.perf_counter()
            operation()
            samples.append(time.perf_counter() - start)
            if restore is not None:
                restore[index]()
    return statistics.median(a), statistics.median(b)


def length_ratios(server: ZeroDBServer, large: int, calls: int) -> list[dict[str, object]]:
    """Time of each operation at ``large`` messages vs at 10."""
    store = make_store(server)
    build(store, "small", 10)
    build(store, "large", large)
    counter = iter(range(10**9))

    def again(cid: str) -> Callable[[], object]:
        return lambda: store.append(cid, [text(next(counter), "r")])

    def near_end(cid: str) -> Callable[[], object]:
        def cut() -> object:
            header = store.tables.cache.get(cid)
            assert header is not None
            return store.truncate(cid, header.message_count - 1)

        return cut

    cases: list[tuple[str, Callable[[], object], Callable[[], object], Any]] = [
        (
            "load(last=20)",
            lambda: store.load("small", last=20),
            lambda: store.load("large", last=20),
            None,
        ),
        ("append (1 message)", again("small"), again("large"), None),
        (
            "pop(1)",
            lambda: store.pop("small"),
            lambda: store.pop("large"),
            (again("small"), again("large")),
        ),
        (
            "truncate to length - 1",
            near_end("small"),
            near_end("large"),
            (again("small"), again("large")),
        ),
    ]
    rows = []
    for name, small, big, restore in cases:
        for _ in range(3):  # warm both
            small()
            big()
            if restore is not None:
                restore[0]()
                restore[1]()
        at_small, at_large = alternating(small, big, calls=calls, restore=restore)
        ratio = at_large / at_small
        rows.append(
            row(
                f"{name}: ms at {large:,} msgs (vs 10)",
                f"{at_large * 1000:.2f}",
                f"{at_small * 1000:.2f}",
                f"{ratio:.2f}x",
                f"<= {RATIO_TARGET}x",
                "yes" if ratio <= RATIO_TARGET else "NO",
            )
        )
    store.clear()
    store.close()
    return rows


def _contender(
    settings: dict[str, Any], worker: int, appends: int, barrier: Any, results: Any
) -> None:
    """One process: ``appends`` one-message appends to the shared conversation, timed."""
    try:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
        django.setup()
        store = create_store(settings, alias=f"contender{worker}")
        barrier.wait(timeout=300)
        durations = []
        for number in range(appends):
            message = {"id": f"w{worker}-{number}", "role": "user", "content": f"{number}"}
            started = time.perf_counter()
            store.append("shared", [message])
            durations.append(time.perf_counter() - started)
        store.close()
        results.put(("ok", durations))
    except BaseException:
        results.put(("error", traceback.format_exc()))
        raise


def contention(
    server: ZeroDBServer, writers: int, appends: int, latency: float
) -> tuple[list[float], float, int]:
    """Every append's seconds, the wall time, and how many messages were stored."""
    settings = config(server)
    server.set_latency(latency)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(writers + 1)
    results = context.Queue()
    processes = [
        context.Process(target=_contender, args=(settings, w, appends, barrier, results))
        for w in range(writers)
    ]
    for process in processes:
        process.start()
    barrier.wait(timeout=300)
    started = time.perf_counter()
    reports = [results.get(timeout=3600) for _ in processes]
    wall = time.perf_counter() - started
    for process in processes:
        process.join(timeout=60)
    server.set_latency(0)
    errors = [report[1] for report in reports if report[0] == "error"]
    if errors:
        raise RuntimeError(errors[0])
    checker = create_store(settings, alias="checker")
    loaded = checker.load("shared")
    stored = 0 if loaded is None else len({m.id for m in loaded.messages})
    assert loaded is None or loaded.metadata.message_count == stored
    checker.clear()
    checker.close()
    return [d for report in reports for d in report[1]], wall, stored


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def row(
    measurement: str,
    result: object,
    baseline: object = "-",
    ratio: object = "-",
    target: object = "-",
    met: object = "-",
) -> dict[str, object]:
    return {
        "measurement": measurement,
        "result": result,
        "baseline (same run)": baseline,
        "ratio": ratio,
        "target": target,
        "met": met,
    }


def run(
    quick: bool = False, *, contention_runs: list[tuple[int, int, float]] | None = None
) -> list[dict[str, object]]:
    """Start a server, measure, and return the result rows (also used by ``benchmarks``)."""
    large = 2000 if quick else 10_000
    calls = 15 if quick else 60
    if contention_runs is None:
        contention_runs = [(4, 20, 0.0)] if quick else [(8, 200, 0.0), (8, 40, 0.05)]
    rows: list[dict[str, object]] = []
    with ZeroDBServer() as server:
        warm = make_store(server)
        warm.append("warm-up", [text(0)])  # creates the tables, checks the filter support
        warm.clear()
        warm.close()
        per_length = {n: request_counts(server, n) for n in (10, large)}
        for operation in per_length[10]:
            figures = [per_length[n][operation] for n in (10, large)]
            same = figures[0] == figures[1]
            target, met = "same at both lengths", "yes" if same else "NO"
            if operation == "load(last=20)":
                target = f"<= {LOAD_LAST_REQUESTS}, same at both lengths"
                met = "yes" if same and max(figures) <= LOAD_LAST_REQUESTS else "NO"
            rows.append(
                row(
                    f"requests: {operation} (10 / {large:,} msgs)",
                    " / ".join(map(str, figures)),
                    target=target,
                    met=met,
                )
            )
        rows.extend(length_ratios(server, large, calls))
        for writers, appends, latency in contention_runs:
            durations, wall, stored = contention(server, writers, appends, latency)
            expected = writers * appends
            rows.append(
                row(
                    f"contention: {writers} processes x {appends} appends to one conversation, "
                    f"{latency * 1000:.0f} ms latency: p50 / p99 / max per append "
                    f"({expected / wall:.0f} appends/s)",
                    " / ".join(
                        f"{x * 1000:.0f} ms"
                        for x in (
                            statistics.median(durations),
                            percentile(durations, 0.99),
                            max(durations),
                        )
                    ),
                    target=f"all {expected} stored once",
                    met="yes" if stored == expected and len(durations) == expected else "NO",
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument(
        "--contention",
        nargs=3,
        action="append",
        metavar=("WRITERS", "APPENDS", "LATENCY_MS"),
        help="contention runs to measure instead of the default ones (repeatable)",
    )
    args = parser.parse_args()
    runs = None
    if args.contention:
        runs = [(int(w), int(a), float(ms) / 1000) for w, a, ms in args.contention]
    print(markdown_table(run(quick=args.quick, contention_runs=runs)))


if __name__ == "__main__":
    main()
