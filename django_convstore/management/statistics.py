"""Fresh planner statistics while a command writes many conversations into a database store.

A PostgreSQL session keeps the plans of its prepared statements. Planned
while the tables were nearly empty, a conversation lookup may scan a whole
namespace once they are large, and a bulk load into fresh tables then slows
down with every conversation it writes (measured: 1.2 ms per write at the
start, 7 ms after 30,000, until an ANALYZE). :class:`StatisticsRefresh` runs
the store's :meth:`~django_convstore.backends.database.DatabaseStore.analyze`
each time the number written doubles (from :data:`FIRST_REFRESH`) and once
at the end, so the plans follow the tables' size. Other stores are left alone.
"""

from __future__ import annotations

from ..backends.base import BaseStore
from ..exceptions import ConvStoreError
from ..guards import is_database_store

#: Conversations written before the first refresh.
FIRST_REFRESH = 500


class StatisticsRefresh:
    """Call :meth:`wrote` after each conversation written and :meth:`finish` at the end.

    A refresh that fails (the database went away) is skipped: the writes
    around it report the fault, and the next refresh catches up.
    """

    def __init__(self, store: BaseStore, *, first: int = FIRST_REFRESH) -> None:
        self.store = store if is_database_store(store) else None
        self.written = 0
        self.next_refresh = first
        #: How many times the statistics were refreshed.
        self.refreshed = 0
        self._unrefreshed = 0

    def wrote(self) -> None:
        """One more conversation written; refresh when the count reaches the next threshold."""
        self.written += 1
        self._unrefreshed += 1
        if self.written >= self.next_refresh:
            self.next_refresh = self.written * 2
            self._refresh()

    def finish(self) -> None:
        """Refresh once more if anything was written since the last refresh."""
        if self._unrefreshed:
            self._refresh()

    def _refresh(self) -> None:
        if self.store is None:
            return
        try:
            analyzed = self.store.analyze()
        except ConvStoreError:
            return
        self._unrefreshed = 0
        self.refreshed += analyzed
