"""Small timing helpers shared by the benchmark modules."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def per_call_seconds(func: Callable[[], object], *, calls: int, repeats: int = 5) -> float:
    """The median over ``repeats`` runs of the mean time of one call of ``func``."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            func()
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


def latencies(func: Callable[[], object], *, calls: int) -> tuple[float, float]:
    """Median and p95 latency of single calls, in seconds."""
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        func()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.95))]


def markdown_table(rows: list[dict[str, object]]) -> str:
    """Render rows (dicts with the same keys) as a Markdown table."""
    if not rows:
        return ""
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(str(row[h]) for h in headers) + " |")
    return "\n".join(lines)
