"""What every comparison of the run sends (the same messages everywhere) and how it is timed."""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

CONTENT = (
    "Sure - here is a short answer with enough words to look like a real chat message, "
    "about two hundred characters long, which is typical for assistant replies in practice."
)


def message(i: int) -> dict[str, Any]:
    """Message ``i`` of a conversation: about 300 bytes of JSON once stored."""
    return {
        "role": "user" if i % 2 == 0 else "assistant",
        "content": f"{CONTENT} #{i}",
        "metadata": {"tokens": 42},
    }


def messages(start: int, count: int) -> list[dict[str, Any]]:
    """Messages ``start`` … ``start + count - 1``."""
    return [message(i) for i in range(start, start + count)]


def fill(store: Any, cid: str, count: int) -> None:
    """Give ``cid`` ``count`` messages through ``store.append``, 1,000 per call."""
    for start in range(0, count, 1000):
        store.append(cid, messages(start, min(1000, count - start)))


def cycle(ids: list[str]) -> Callable[[], str]:
    """A function returning ``ids`` in turn, forever."""
    ids_cycle = itertools.cycle(ids)
    return lambda: next(ids_cycle)


def paired_medians(
    first: Callable[[], object], second: Callable[[], object], *, calls: int
) -> tuple[float, float]:
    """Median seconds per call of two operations timed alternately, call by call.

    Alternating makes both see the same machine noise (other processes, CPU
    frequency), so their ratio is stable even on a busy machine.
    """
    a: list[float] = []
    b: list[float] = []
    for _ in range(calls):
        start = time.perf_counter()
        first()
        middle = time.perf_counter()
        second()
        b.append(time.perf_counter() - middle)
        a.append(middle - start)
    return statistics.median(a), statistics.median(b)


@dataclass(frozen=True)
class Latency:
    """Median and 95th percentile of some calls, in seconds, and how many calls."""

    median: float
    p95: float
    calls: int

    @classmethod
    def of(cls, samples: list[float]) -> Latency:
        """Summarise per-call samples."""
        ordered = sorted(samples)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        return cls(statistics.median(ordered), p95, len(ordered))


def interleaved(
    operations: Mapping[str, Callable[[], object]],
    *,
    calls: int,
    warmup: int = 1,
    budget: float | None = None,
    min_calls: int = 3,
) -> dict[str, Latency]:
    """Time each operation up to ``calls`` times, taking turns call by call.

    Taking turns makes every operation see the same machine noise (other
    processes, CPU frequency), so their ratios are stable on a busy machine.
    With a ``budget`` (seconds), it stops early once the rounds so far took
    that long and at least ``min_calls`` rounds ran, which bounds the run
    time of operations whose cost grows with the data (the original's
    ``KEYS``, a listing that sorts everything).
    """
    for operation in operations.values():
        for _ in range(warmup):
            operation()
    samples: dict[str, list[float]] = {name: [] for name in operations}
    clock = time.perf_counter
    began = clock()
    for round_number in range(calls):
        for name, operation in operations.items():
            start = clock()
            operation()
            samples[name].append(clock() - start)
        if budget is not None and round_number + 1 >= min_calls and clock() - began > budget:
            break
    return {name: Latency.of(values) for name, values in samples.items()}


def one_after_another(
    operations: Mapping[str, Callable[[], object]],
    *,
    calls: int,
    warmup: int = 1,
    budget: float | None = None,
    min_calls: int = 3,
) -> dict[str, Latency]:
    """Time each operation up to ``calls`` times in a row, one operation after the other.

    Used where the operations differ a lot in cost: taking turns call by call
    would make a cheap call pay for the garbage collection and the CPU caches
    trashed by an expensive neighbour (an ``append`` timed right after
    loading 10,000 messages looks several times slower than it is). Each
    block starts with ``warmup`` untimed calls that absorb that; ``budget``
    and ``min_calls`` as for :func:`interleaved`, per operation.
    """
    return {
        name: interleaved(
            {name: operation},
            calls=calls,
            warmup=warmup,
            budget=budget,
            min_calls=min_calls,
        )[name]
        for name, operation in operations.items()
    }


def sample(
    operation: Callable[[], object],
    *,
    calls: int,
    warmup: int = 1,
    budget: float | None = None,
    min_calls: int = 3,
) -> Latency:
    """Latency of one operation (see :func:`interleaved` for ``budget``)."""
    return interleaved(
        {"op": operation}, calls=calls, warmup=warmup, budget=budget, min_calls=min_calls
    )["op"]


def microseconds(seconds: float) -> str:
    """``1234 µs`` below 10 ms, else ``12.3 ms`` (or ``1.23 s``)."""
    if seconds < 0.01:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 10:
        return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"
    return f"{seconds:.1f} s"


def ratio(theirs: float, ours: float) -> str:
    """``theirs / ours`` as ``12.5x`` (above 1: ours is faster)."""
    value = theirs / ours
    return f"{value:.1f}x" if value >= 10 else f"{value:.2f}x"


def size_label(n: int) -> str:
    """``10,000``-style labels."""
    return f"{n:,}"
