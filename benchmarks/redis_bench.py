"""Redis store: round trips per operation, latency, and the original library's algorithm.

The claims, each checked against a baseline measured in the same run on the
same (freshly started, loopback) server:

* one network round trip for save, append, load, exists and delete;
* append costs the same at 5,000 messages as at 10 (target: within 1.5x);
* append is at least 5x faster than the TypeScript original's algorithm at
  1,000 messages (GET the conversation's JSON blob, parse, add, serialise,
  SET it back);
* loading 10,000 messages is no slower than 1.5x the original's load (one
  GET of the blob + ``json.loads``).

Each ratio times the two sides alternately, call by call, and compares the
medians, so both see the same machine noise.

    python -m benchmarks.redis_bench [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from collections.abc import Callable
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
django.setup()

from redis import Redis  # noqa: E402

from django_convstore import create_store  # noqa: E402
from django_convstore.backends.redis import RedisStore  # noqa: E402
from django_convstore.clock import now_ms  # noqa: E402
from tests.servers.redis_counting import CountingConnection  # noqa: E402
from tests.servers.redis_server import RedisServer  # noqa: E402

from .timing import latencies, markdown_table  # noqa: E402
from .workload import cycle, fill, message, paired_medians  # noqa: E402


class OriginalRedisStore:
    """The TypeScript original's Redis algorithm: one JSON blob per conversation.

    ``append`` = GET the blob, parse it, add the messages, serialise, SET it
    back (two round trips, and the whole conversation both ways).
    """

    def __init__(self, client: Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def key(self, cid: str) -> str:
        return f"{self.prefix}:{cid}"

    def save(self, cid: str, messages: list[dict[str, Any]]) -> None:
        now = now_ms()
        blob = {
            "conversationId": cid,
            "messages": [{**m, "id": uuid.uuid4().hex, "timestamp": now} for m in messages],
            "metadata": {"createdAt": now, "updatedAt": now, "messageCount": len(messages)},
        }
        self.client.set(self.key(cid), json.dumps(blob))

    def load(self, cid: str) -> dict[str, Any] | None:
        raw = self.client.get(self.key(cid))
        return None if raw is None else json.loads(raw)

    def append(self, cid: str, messages: list[dict[str, Any]]) -> None:
        blob = self.load(cid)
        assert blob is not None
        now = now_ms()
        blob["messages"].extend({**m, "id": uuid.uuid4().hex, "timestamp": now} for m in messages)
        blob["metadata"]["updatedAt"] = now
        blob["metadata"]["messageCount"] = len(blob["messages"])
        self.client.set(self.key(cid), json.dumps(blob))


def round_trips(store: RedisStore) -> dict[str, int]:
    """Requests sent to the server by one call of each operation (after a warm-up)."""
    operations: dict[str, Callable[[], object]] = {
        "save": lambda: store.save("rt", [message(0), message(1)], ttl=3600),
        "append": lambda: store.append("rt", [message(2)]),
        "load": lambda: store.load("rt"),
        "load(last=10)": lambda: store.load("rt", last=10),
        "exists": lambda: store.exists("rt"),
        "get_ttl": lambda: store.get_ttl("rt"),
        "set_ttl": lambda: store.set_ttl("rt", 600),
        "list_conversations": lambda: store.list_conversations(limit=20),
        "get_stats": store.get_stats,
        "delete": lambda: store.delete("rt"),
    }
    for operation in operations.values():
        operation()
    counts = {}
    for name, operation in operations.items():
        CountingConnection.reset()
        operation()
        counts[name] = CountingConnection.requests
    return counts


def run(quick: bool = False) -> list[dict[str, object]]:
    """Start a server, measure, and return the result rows (also used by ``benchmarks``)."""
    calls = 200 if quick else 1000
    rows: list[dict[str, object]] = []
    with RedisServer() as server:
        store = create_store(
            {
                "BACKEND": "django_convstore.backends.redis.RedisStore",
                "LOCATION": server.url,
                "NAMESPACE": "bench",
                "OPTIONS": {"CONNECTION_POOL_KWARGS": {"connection_class": CountingConnection}},
            },
            alias="bench",
        )
        assert isinstance(store, RedisStore)
        client = Redis.from_url(server.url)
        original = OriginalRedisStore(client, "original")

        for name, count in round_trips(store).items():
            target = "1" if name in {"save", "append", "load", "exists", "delete"} else "-"
            rows.append(
                {
                    "measurement": f"round trips: {name}",
                    "result": count,
                    "baseline (same run)": "-",
                    "ratio": "-",
                    "target": target,
                    "met": "-" if target == "-" else ("yes" if count == 1 else "NO"),
                }
            )

        fill(store, "lat", 100)
        fill(store, "lat-append", 100)
        for name, operation in {
            "save (2 messages)": lambda: store.save("lat-save", [message(0), message(1)]),
            "append (1 message)": lambda: store.append("lat-append", [message(1)]),
            "load (100 messages)": lambda: store.load("lat"),
            "load(last=10) of 100": lambda: store.load("lat", last=10),
            "exists": lambda: store.exists("lat"),
        }.items():
            median, p95 = latencies(operation, calls=calls)
            rows.append(
                {
                    "measurement": f"latency: {name}",
                    "result": f"median {median * 1e6:.0f} µs, p95 {p95 * 1e6:.0f} µs",
                    "baseline (same run)": "-",
                    "ratio": "-",
                    "target": "-",
                    "met": "-",
                }
            )

        # Append at 10 vs 5,000 messages. The small conversations are many, so
        # each grows by only calls/100 messages while being measured.
        small_ids = [f"small-{i}" for i in range(100)]
        for cid in small_ids:
            fill(store, cid, 10)
        fill(store, "large", 5000)
        next_small = cycle(small_ids)
        at_5000, at_10 = paired_medians(
            lambda: store.append("large", [message(0)]),
            lambda: store.append(next_small(), [message(0)]),
            calls=calls,
        )
        rows.append(_ratio_row("append at 5,000 vs at 10 messages", at_5000, at_10, "≤ 1.5x", 1.5))

        # Append vs the original algorithm, both at 1,000 messages (5 conversations each).
        ids = [f"k{i}" for i in range(5)]
        for cid in ids:
            fill(store, f"thousand-{cid}", 1000)
            original.save(cid, [message(i) for i in range(1000)])
        ours_next, theirs_next = cycle(ids), cycle(ids)
        ours, theirs = paired_medians(
            lambda: store.append(f"thousand-{ours_next()}", [message(0)]),
            lambda: original.append(theirs_next(), [message(0)]),
            calls=calls // 5,
        )
        rows.append(
            _ratio_row(
                "append at 1,000 messages vs original (GET+SET blob)",
                ours,
                theirs,
                "≥ 5x faster",
                None,
                faster=True,
            )
        )

        # Loading 10,000 messages vs the original's single GET + json.loads.
        fill(store, "ten-thousand", 10_000)
        original.save("ten-thousand", [message(i) for i in range(10_000)])
        ours, theirs = paired_medians(
            lambda: store.load("ten-thousand"),
            lambda: original.load("ten-thousand"),
            calls=15 if quick else 60,
        )
        rows.append(
            _ratio_row(
                "load 10,000 messages vs original (GET + json.loads)", ours, theirs, "≤ 1.5x", 1.5
            )
        )
        store.clear()
        store.close()
        client.close()
    return rows


def _ratio_row(
    name: str,
    value: float,
    baseline: float,
    target: str,
    limit: float | None,
    *,
    faster: bool = False,
) -> dict[str, object]:
    if faster:
        ratio = baseline / value
        met = ratio >= 5
        shown = f"{ratio:.1f}x faster"
    else:
        ratio = value / baseline
        met = limit is not None and ratio <= limit
        shown = f"{ratio:.2f}x"
    return {
        "measurement": name,
        "result": f"{value * 1e6:.0f} µs",
        "baseline (same run)": f"{baseline * 1e6:.0f} µs",
        "ratio": shown,
        "target": target,
        "met": "yes" if met else "NO",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls")
    args = parser.parse_args()
    print(markdown_table(run(quick=args.quick)))


if __name__ == "__main__":
    main()
