"""Memory store: LRU cost per operation with 1k vs 100k conversations stored.

The claim: bookkeeping is O(1), so an operation costs the same whether the
store holds 1,000 or 100,000 conversations. The baseline is the TypeScript
original's algorithm (an array of ids scanned and spliced on every access),
re-implemented here and measured in the same run.

    python -m benchmarks.lru_bench [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import os
import random

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
django.setup()

from django_convstore import create_store  # noqa: E402
from django_convstore.backends.base import BaseStore  # noqa: E402

from .timing import markdown_table, per_call_seconds  # noqa: E402

MESSAGE = [{"role": "user", "content": "hello"}]


class ArrayLRU:
    """The original library's LRU: a list of ids, scanned and spliced on every access."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.data: dict[str, list[dict[str, str]]] = {}
        self.order: list[str] = []

    def touch(self, key: str) -> None:
        if key in self.order:
            self.order.remove(key)
        self.order.append(key)

    def save(self, key: str, value: list[dict[str, str]]) -> None:
        self.data[key] = value
        self.touch(key)
        if len(self.order) > self.max_size:
            oldest = self.order.pop(0)
            del self.data[oldest]

    def load(self, key: str) -> list[dict[str, str]] | None:
        value = self.data.get(key)
        if value is not None:
            self.touch(key)
        return value


def _fill(store: BaseStore, size: int) -> None:
    for i in range(size):
        store.append(f"c{i}", MESSAGE)


def measure(size: int, calls: int, working_set: int | None) -> dict[str, float]:
    """Seconds per operation on a full store of ``size`` conversations.

    Keys are drawn from the newest ``working_set`` conversations (all of them
    when None). A fixed working set isolates the bookkeeping cost from CPU
    cache misses, which grow with the size of whatever is being touched.
    """
    store = create_store({"type": "memory", "max_conversations": size})
    _fill(store, size)
    rng = random.Random(size)
    lowest = size - (working_set or size)
    keys = [f"c{rng.randrange(lowest, size)}" for _ in range(calls)]
    cycle = itertools.cycle(keys)
    fresh = (f"n{i}" for i in itertools.count())
    results = {
        "load": per_call_seconds(lambda: store.load(next(cycle)), calls=calls),
        "exists": per_call_seconds(lambda: store.exists(next(cycle)), calls=calls),
        "append": per_call_seconds(lambda: store.append(next(cycle), MESSAGE), calls=calls),
        "save (evicts)": per_call_seconds(lambda: store.save(next(fresh), MESSAGE), calls=calls),
    }
    store.clear()
    original = ArrayLRU(size)
    # Filled directly: going through save() costs O(n) per call, O(n²) in all.
    original.order = [f"c{i}" for i in range(size)]
    original.data = dict.fromkeys(original.order, MESSAGE)
    results["original algorithm: load"] = per_call_seconds(
        lambda: original.load(next(cycle)), calls=max(20, calls // 100), repeats=3
    )
    return results


def run(quick: bool = False) -> list[dict[str, object]]:
    """Rows: per-op microseconds at 1k and 100k conversations, and their ratio."""
    calls = 2_000 if quick else 20_000
    rows: list[dict[str, object]] = []
    for label, working_set in (("1k hot ids", 1_000), ("uniform over all ids", None)):
        small = measure(1_000, calls, working_set)
        large = measure(100_000, calls, working_set)
        for op in small:
            rows.append(
                {
                    "operation": op,
                    "access pattern": label,
                    "1k stored (µs)": f"{small[op] * 1e6:.2f}",
                    "100k stored (µs)": f"{large[op] * 1e6:.2f}",
                    "ratio 100k/1k": f"{large[op] / small[op]:.2f}x",
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls")
    args = parser.parse_args()
    print(markdown_table(run(quick=args.quick)))


if __name__ == "__main__":
    main()
