"""Maintenance of the ZeroDB store: ``cleanup()`` and ``clear()``."""

from __future__ import annotations

from ...clock import now_ms
from .legacy import LegacyHeader
from .protocol import Found, Tables
from .reads import Reads
from .rows import DELETED, LIVE, NEW, WITHDRAWN
from .writes import Writes

#: A ``new`` or ``withdrawn`` header row older than this is a dead creator's leftover.
LEFTOVER_MS = 2 * 60_000


class Maintenance:
    """``cleanup()`` and ``clear()`` on the store's :class:`~.protocol.Tables`."""

    def __init__(self, tables: Tables, reads: Reads, writes: Writes) -> None:
        self.tables = tables
        self.reads = reads
        self.writes = writes

    def cleanup(self) -> int:
        """Remove expired conversations; finish interrupted deletes; drop rows that no
        header commits and that are older than the grace period."""
        tables = self.tables
        now = now_ms()
        headers, legacy = tables.all_headers()
        removed = 0
        for header in headers:
            if header.state == LIVE and not header.is_live(now):
                if tables.cas(header, header.evolve(state=DELETED)) is None:
                    tables.delete_everything(header)
                    removed += 1
            elif header.state == DELETED or (
                header.state in (WITHDRAWN, NEW) and now - header.t > LEFTOVER_MS
            ):
                if header.state == NEW:
                    tables.withdraw(header)
                tables.delete_everything(header)
        views = self.reads.views([], legacy, now)
        for view in views.values():
            if isinstance(view, LegacyHeader) and not view.is_live(now):
                found = Found(
                    [], [row for row in legacy if row.conversation_id == view.conversation_id], now
                )
                if self.writes.delete_legacy(view.conversation_id, found):
                    removed += 1
        remaining = {h.hk: h for h in headers if h.state == LIVE}
        tables.sweep_uncommitted(remaining, now)
        return removed

    def clear(self) -> int:
        """Delete every row of the namespace; returns how many conversations there were."""
        now = now_ms()
        headers, legacy = self.tables.all_headers()
        count = len(self.reads.views(headers, legacy, now))
        self.tables.client.bulk_delete(self.tables.message_table, self.tables.scope())
        self.tables.client.bulk_delete(self.tables.header_table, self.tables.scope())
        self.tables.cache.clear()
        return count
