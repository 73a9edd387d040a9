"""The headers this process saw last: a hint that saves a request before most writes.

Writes compare-and-set the header they start from, so a stale entry only
costs one failed compare-and-set and a fresh read. Decisions that write
nothing (another owner's conversation, an append whose ids are all present)
are never taken on a cached header alone: they are confirmed on a fresh read.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from .rows import Header

HEADER_CACHE_SIZE = 4096


class HeaderCache:
    """A thread-safe LRU of headers by conversation id (one per table and namespace)."""

    def __init__(self, size: int = HEADER_CACHE_SIZE) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[str, Header] = OrderedDict()

    def get(self, conversation_id: str) -> Header | None:
        """The header last seen for ``conversation_id``, or None."""
        with self._lock:
            header = self._items.get(conversation_id)
            if header is not None:
                self._items.move_to_end(conversation_id)
            return header

    def put(self, header: Header) -> None:
        """Remember ``header`` (the newest one seen for its conversation)."""
        with self._lock:
            self._items[header.conversation_id] = header
            self._items.move_to_end(header.conversation_id)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def drop(self, conversation_id: str) -> None:
        """Forget ``conversation_id``."""
        with self._lock:
            self._items.pop(conversation_id, None)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._items.clear()


_caches: dict[tuple[str, ...], HeaderCache] = {}
_caches_lock = threading.Lock()


def cache_for(key: tuple[str, ...]) -> HeaderCache:
    """The process-wide cache for ``key`` (base URL, project, table, namespace)."""
    with _caches_lock:
        cache = _caches.get(key)
        if cache is None:
            cache = _caches[key] = HeaderCache()
        return cache


class BulkIdCache:
    """Message ids of bulk writes, which never change once written (LRU by bulk token)."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, str], tuple[str, ...]] = OrderedDict()

    def get(self, hk: str, txn: str) -> tuple[str, ...] | None:
        """The ids of bulk write ``txn`` of header ``hk``, in order, or None."""
        with self._lock:
            ids = self._items.get((hk, txn))
            if ids is not None:
                self._items.move_to_end((hk, txn))
            return ids

    def put(self, hk: str, txn: str, ids: tuple[str, ...]) -> None:
        """Remember the ids of a bulk write."""
        with self._lock:
            self._items[(hk, txn)] = ids
            self._items.move_to_end((hk, txn))
            while len(self._items) > self._size:
                self._items.popitem(last=False)


bulk_ids = BulkIdCache()

__all__ = ["HEADER_CACHE_SIZE", "BulkIdCache", "HeaderCache", "bulk_ids", "cache_for"]
