"""Which message rows a header vouches for: the rules readers and writers share.

A message row belongs to the conversation only when its header commits it:

* the row is *trusted* when it is stamped (``c: 1``, written only for
  committed appends) or its transaction is in the header's ``pend`` list;
  rows of writers that are still at work, or that failed, are neither, and
  are ignored until ``cleanup()`` removes them;
* a trusted row sits at its ``pos`` (plus its ``pend`` entry's ``delta`` while
  unstamped) with its generation (the entry's ``gen`` while unstamped);
* the conversation is the positions ``[base, end)``: the first ``bulk_live``
  come from the bulk write's chunks, each later one from the trusted row of
  the highest generation at that position (a row a ``pop``/``truncate``/
  ``save`` removed has a lower generation than whatever took its place).

Everything here is pure: it reads :class:`~.rows.Header`,
:class:`~.rows.MessageRow` and :class:`~.rows.BulkChunk` values.
"""

from __future__ import annotations

from collections.abc import Iterable

from ...types import Message
from .rows import BulkChunk, Header, MessageRow, Pend


def placement(row: MessageRow, pend: dict[str, Pend]) -> tuple[int, int] | None:
    """``(position, generation)`` of a trusted row, or None for a row nobody committed."""
    if row.stamped:
        return row.pos, row.gen
    entry = pend.get(row.txn)
    if entry is None:
        return None
    return row.pos + entry.delta, entry.gen


def query_span(header: Header, lo: int, hi: int) -> tuple[int, int]:
    """The ``pos`` range to query for positions ``[lo, hi)``: unstamped rows of a
    displaced ``pend`` entry are stored at their position minus its ``delta``."""
    down = max((e.delta for e in header.pend if e.delta > 0), default=0)
    up = max((-e.delta for e in header.pend if e.delta < 0), default=0)
    return lo - down, hi + up


def stored_positions(header: Header, positions: Iterable[int]) -> list[int]:
    """Every ``pos`` a trusted row for one of ``positions`` may be stored at."""
    deltas = {0, *(e.delta for e in header.pend)}
    return sorted({p - d for p in positions for d in deltas})


def pick(header: Header, rows: Iterable[MessageRow], lo: int, hi: int) -> dict[int, MessageRow]:
    """The row holding each position of ``[lo, hi)`` among ``rows`` (missing positions absent)."""
    pend = header.pend_map()
    best: dict[int, tuple[int, MessageRow]] = {}
    for row in rows:
        placed = placement(row, pend)
        if placed is None:
            continue
        pos, gen = placed
        if not lo <= pos < hi or gen > header.gen:
            continue
        current = best.get(pos)
        if current is None or gen > current[0] or (gen == current[0] and row.txn < current[1].txn):
            best[pos] = (gen, row)
    return {pos: row for pos, (_gen, row) in best.items()}


def held_ids(header: Header, rows: Iterable[MessageRow]) -> tuple[set[str], dict[int, MessageRow]]:
    """Of rows found by message id: the ids the conversation surely holds, and the rows
    (by position) that hold their id only if nothing of a newer generation took their
    position (they predate the last removal; see :func:`pick`)."""
    pend = header.pend_map()
    sure: set[str] = set()
    unsure: dict[int, MessageRow] = {}
    for row in rows:
        placed = placement(row, pend)
        if placed is None:
            continue
        pos, gen = placed
        if not header.singles_from <= pos < header.end or gen > header.gen:
            continue
        if gen == header.gen:
            # Nothing was removed since it was committed: no newer row can hold its position.
            sure.add(row.mid)
        else:
            unsure[pos] = row
    return sure, unsure


def bulk_messages(
    chunks: Iterable[BulkChunk], lo: int, hi: int, *, decode: bool = True
) -> tuple[list[Message], list[int]] | None:
    """Messages ``[lo, hi)`` of a bulk write (offsets; none unless ``decode``) and their
    sizes; None when a chunk covering part of it is missing."""
    by_off: dict[int, BulkChunk] = {}
    for chunk in chunks:
        by_off.setdefault(chunk.off, chunk)
    messages: list[Message] = []
    sizes: list[int] = []
    position = lo
    starts = sorted(by_off)
    for off in starts:
        chunk = by_off[off]
        if off + chunk.n <= position or off >= hi:
            continue
        if off > position:
            return None
        start, stop = position - off, min(chunk.n, hi - off)
        if decode:
            messages.extend(chunk.messages()[start:stop])
        sizes.extend(chunk.sizes[start:stop])
        position = off + stop
        if position >= hi:
            break
    if position < hi:
        return None
    return messages, sizes


__all__ = ["bulk_messages", "held_ids", "pick", "placement", "query_span", "stored_positions"]
