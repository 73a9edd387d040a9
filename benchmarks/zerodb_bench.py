"""ZeroDB store: HTTP requests per operation, connection reuse, and the original's algorithm.

Runs against its own ZeroDB-compatible server (``tests.servers.zerodb_server``)
on loopback, which counts requests, body bytes and TCP connections. The claims:

* HTTP requests per operation do not depend on the conversation's length:
  ``load`` <= 2, ``append`` <= 2, ``exists`` <= 1, ``save`` <= 3 (when the
  process already knows the conversation; "cold" rows show the first touch).
  Measured at 10, 1,000 and 5,000 messages, written in batches of 1,000
  ("batched") and one message per append ("chat"). A load reads at most
  1,000 message rows per request, so a chat-style conversation of more than
  1,000 appends costs one more request per further 1,000 appends: reported,
  not hidden.
* Sequential operations reuse one TCP connection.
* An append uploads the same few hundred bytes at 5,000 messages as at 10,
  while the TypeScript original's algorithm (read the conversation document,
  add the message, write the whole document back), run on the same server,
  uploads the whole conversation every time.

    python -m benchmarks.zerodb_bench [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
django.setup()

import requests  # noqa: E402

from django_convstore import create_store  # noqa: E402
from django_convstore.backends.zerodb import ZeroDBStore  # noqa: E402
from tests.servers.zerodb_server import ZeroDBServer  # noqa: E402

from .timing import markdown_table  # noqa: E402

TARGETS = {"load": 2, "append": 2, "exists": 1, "save": 3}


def text(i: int) -> dict[str, str]:
    return {"role": "user" if i % 2 == 0 else "assistant", "content": f"message number {i} " * 4}


def make_store(server: ZeroDBServer) -> ZeroDBStore:
    store = create_store(
        {
            "BACKEND": "django_convstore.backends.zerodb.ZeroDBStore",
            "NAMESPACE": f"bench-{uuid.uuid4().hex[:8]}",
            "OPTIONS": {
                "BASE_URL": server.base_url,
                "PROJECT_ID": server.project_id,
                "API_KEY": server.api_key,
            },
        },
        alias="bench",
    )
    assert isinstance(store, ZeroDBStore)
    return store


def build(store: ZeroDBStore, cid: str, length: int, layout: str) -> None:
    if layout == "chat":
        for i in range(length):
            store.append(cid, [text(i)])
        return
    store.save(cid, [text(i) for i in range(min(length, 1000))])
    for start in range(1000, length, 1000):
        store.append(cid, [text(i) for i in range(start, min(length, start + 1000))])


def requests_for(server: ZeroDBServer, operation: Callable[[], object]) -> int:
    with server.counting() as tally:
        operation()
    return tally.requests


def request_counts(server: ZeroDBServer, length: int, layout: str) -> dict[str, int]:
    """Requests per operation on a conversation of ``length`` messages."""
    store = make_store(server)
    build(store, "c", length, layout)
    counts = {
        "load": requests_for(server, lambda: store.load("c")),
        "load(last=20)": requests_for(server, lambda: store.load("c", last=20)),
        "exists": requests_for(server, lambda: store.exists("c")),
        "get_ttl": requests_for(server, lambda: store.get_ttl("c")),
        "append": requests_for(server, lambda: store.append("c", [text(0)])),
        "set_ttl": requests_for(server, lambda: store.set_ttl("c", 3600)),
    }
    store._cache.clear()
    counts["append (cold)"] = requests_for(server, lambda: store.append("c", [text(1)]))
    counts["save"] = requests_for(server, lambda: store.save("c", [text(2)] * 10))
    build(store, "d", length, layout)
    store._cache.clear()
    counts["save (cold)"] = requests_for(server, lambda: store.save("d", [text(3)] * 10))
    counts["delete"] = requests_for(server, lambda: store.delete("c"))
    counts["append (new conversation)"] = requests_for(
        server, lambda: store.append("new", [text(4)])
    )
    store.clear()
    store.close()
    return counts


def connections_for_sequential_ops(server: ZeroDBServer, operations: int) -> tuple[int, int]:
    """(requests, TCP connections) for ``operations`` sequential operations on a fresh store."""
    store = make_store(server)
    with server.counting() as tally:
        store.save("seq", [text(0)])
        for i in range(operations):
            if i % 3 == 0:
                store.append("seq", [text(i)])
            elif i % 3 == 1:
                store.load("seq", last=5)
            else:
                store.exists("seq")
        store.delete("seq")
    store.close()
    return tally.requests, tally.connections


class OriginalDocumentStore:
    """The TypeScript original's algorithm on the same API: one document row per conversation.

    ``append`` reads the document, adds the messages, and writes the whole
    document back (``PUT rows/{row_id}``), as the original does against its
    backends.
    """

    def __init__(self, server: ZeroDBServer, table: str) -> None:
        self.session = requests.Session()
        self.session.headers["X-API-Key"] = server.api_key
        self.url = f"{server.tables_url}/{table}"
        self.session.post(server.tables_url, json={"name": table, "table_name": table})

    def save(self, cid: str, messages: list[dict[str, Any]]) -> None:
        self.session.post(
            f"{self.url}/rows", json={"row_data": {"id": cid, "messages": messages}}
        ).raise_for_status()

    def append(self, cid: str, messages: list[dict[str, Any]]) -> None:
        found = self.session.post(f"{self.url}/query", json={"filter": {"id": cid}, "limit": 1})
        row = found.json()["data"][0]
        document = row["row_data"]
        document["messages"].extend(messages)
        self.session.put(
            f"{self.url}/rows/{row['row_id']}", json={"row_data": document}
        ).raise_for_status()

    def close(self) -> None:
        self.session.close()


def append_costs(
    server: ZeroDBServer, length: int, calls: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Upload bytes and median seconds per one-message append: (ours, original)."""
    ours = make_store(server)
    build(ours, "c", length, "batched")
    original = OriginalDocumentStore(server, "original_documents")
    cid = f"doc-{uuid.uuid4().hex[:8]}"
    original.save(cid, [text(i) for i in range(length)])
    results: dict[str, dict[str, list[float]]] = {
        "ours": {"bytes": [], "seconds": []},
        "original": {"bytes": [], "seconds": []},
    }
    for i in range(calls):
        appends: tuple[tuple[str, Callable[[int], object]], ...] = (
            ("ours", lambda n: ours.append("c", [text(n)])),
            ("original", lambda n: original.append(cid, [text(n)])),
        )
        for name, append in appends:
            with server.counting() as tally:
                started = time.perf_counter()
                append(i)
                elapsed = time.perf_counter() - started
            results[name]["bytes"].append(tally.request_bytes)
            results[name]["seconds"].append(elapsed)
    ours.clear()
    ours.close()
    original.close()
    summary = {
        name: {"bytes": statistics.median(v["bytes"]), "seconds": statistics.median(v["seconds"])}
        for name, v in results.items()
    }
    return summary["ours"], summary["original"]


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


def run(quick: bool = False) -> list[dict[str, object]]:
    """Start a server, measure, and return the result rows (also used by ``benchmarks``)."""
    sizes = (10, 1000, 5000)
    chat_sizes = (10, 1000) if quick else sizes
    calls = 10 if quick else 30
    rows: list[dict[str, object]] = []
    with ZeroDBServer() as server:
        warm = make_store(server)
        warm.append("warm-up", [text(0)])  # creates the tables, checks the filter support
        warm.clear()
        warm.close()
        for layout, lengths in (("batched", sizes), ("chat", chat_sizes)):
            per_size = {n: request_counts(server, n, layout) for n in lengths}
            for operation in per_size[lengths[0]]:
                figures = [per_size[n][operation] for n in lengths]
                target = TARGETS.get(operation)
                met = "-" if target is None else ("yes" if max(figures) <= target else "NO")
                rows.append(
                    row(
                        f"requests: {operation} ({layout}; {' / '.join(map(str, lengths))} msgs)",
                        " / ".join(map(str, figures)),
                        target="-" if target is None else f"<= {target}",
                        met=met,
                    )
                )
        operations = 30 if quick else 100
        total, connections = connections_for_sequential_ops(server, operations)
        rows.append(
            row(
                f"TCP connections for {operations + 2} sequential operations ({total} requests)",
                connections,
                target=1,
                met="yes" if connections == 1 else "NO",
            )
        )
        small_ours, _ = append_costs(server, 10, calls)
        for length in sizes[1:]:
            ours, original = append_costs(server, length, calls)
            rows.append(
                row(
                    f"append upload bytes at {length} msgs (vs {small_ours['bytes']:.0f} at 10)",
                    f"{ours['bytes']:.0f}",
                    f"{original['bytes']:.0f}",
                    f"{original['bytes'] / ours['bytes']:.0f}x less",
                    target="same as at 10 msgs",
                    met="yes" if ours["bytes"] <= 1.1 * small_ours["bytes"] else "NO",
                )
            )
            rows.append(
                row(
                    f"append median ms at {length} msgs "
                    f"(vs {small_ours['seconds'] * 1e3:.2f} at 10)",
                    f"{ours['seconds'] * 1e3:.2f}",
                    f"{original['seconds'] * 1e3:.2f}",
                    f"{original['seconds'] / ours['seconds']:.1f}x faster",
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller chat-style runs")
    args = parser.parse_args()
    print(markdown_table(run(quick=args.quick)))


if __name__ == "__main__":
    main()
