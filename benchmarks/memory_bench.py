"""Memory store vs Django's own locmem cache, on the same messages.

Django's ``LocMemCache`` is the floor for an in-process store: ``set``
pickles the value, ``get`` unpickles it (that is how it isolates callers),
and an ``OrderedDict`` keeps the LRU order. The memory store does more on
each call (validates every message, keeps ids for idempotent appends,
encodes once with msgspec, builds ``Message`` objects on the way out), so
the targets allow some headroom: ``load`` of 10 messages at most 1.5x a
cache ``get``, ``save`` at most 3x a cache ``set`` of the same messages.

    python -m benchmarks.memory_bench [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
django.setup()

from django.core.cache.backends.locmem import LocMemCache  # noqa: E402

from django_convstore import create_store  # noqa: E402

from .timing import markdown_table  # noqa: E402
from .workload import messages, paired_medians  # noqa: E402

SIZES = (10, 100, 1_000)
#: Operation → (ours ÷ locmem target, locmem's equivalent).
TARGETS = {"load": 1.5, "load(last=10)": 1.5, "save": 3.0, "append 1": 3.0}


def measure(size: int, calls: int) -> list[dict[str, object]]:
    """Rows comparing one conversation of ``size`` messages in both."""
    store = create_store({"type": "memory", "max_conversations": 10_000})
    cache = LocMemCache(f"bench-{size}", {"OPTIONS": {"MAX_ENTRIES": 10_000}})
    batch = messages(0, size)
    for i, item in enumerate(batch):
        item["id"] = f"m{i}"
    store.save("c", batch)
    cache.set("c", batch, None)
    fresh = itertools.count()
    one = messages(size, 1)[0]

    def append_ours() -> None:
        store.append("a", [{**one, "id": f"n{next(fresh)}"}])

    def append_cache() -> None:
        # The least a cache can do for an append: read, extend, write back.
        value = cache.get("a") or []
        value.append(one)
        cache.set("a", value, None)

    pairs = {
        "load": (lambda: store.load("c"), lambda: cache.get("c")),
        "load(last=10)": (lambda: store.load("c", last=10), lambda: cache.get("c")[-10:]),
        "save": (lambda: store.save("c", batch), lambda: cache.set("c", batch, None)),
        "append 1": (append_ours, append_cache),
    }
    rows = []
    for name, (ours, floor) in pairs.items():
        if name == "append 1":
            store.delete("a")
            cache.delete("a")
        ours_s, floor_s = paired_medians(ours, floor, calls=calls)
        ratio = ours_s / floor_s
        target = TARGETS[name]
        rows.append(
            {
                "operation": name,
                "messages": f"{size:,}",
                "memory store (µs)": f"{ours_s * 1e6:.1f}",
                "locmem cache (µs)": f"{floor_s * 1e6:.1f}",
                "ours ÷ locmem": f"{ratio:.2f}x",
                "target": f"≤ {target}x" if name != "append 1" else "(info)",
                "met": ("yes" if ratio <= target else "NO") if name != "append 1" else "—",
            }
        )
    store.clear()
    cache.clear()
    return rows


def run(quick: bool = False) -> list[dict[str, object]]:
    """Rows for every size; the targets apply at 10 messages (and are shown for all)."""
    rows: list[dict[str, object]] = []
    for size in SIZES:
        calls = (200 if quick else 2_000) if size < 1_000 else (30 if quick else 300)
        rows.extend(measure(size, calls))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls")
    args = parser.parse_args()
    print(markdown_table(run(quick=args.quick)))


if __name__ == "__main__":
    main()
