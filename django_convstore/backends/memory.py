"""An in-process store with O(1) LRU eviction, shared by every thread of the process.

Like Django's locmem cache, the data lives in a module-level registry keyed by
``LOCATION`` (or the alias) and ``NAMESPACE``, so the per-thread store
instances of one alias see the same conversations. One lock guards each
bucket; an ``OrderedDict`` gives O(1) ``move_to_end`` / ``popitem`` LRU
bookkeeping.

Messages are kept encoded (one JSON document each, by
:mod:`django_convstore.codec`), which is what isolates callers from stored
state: nothing a caller holds is ever stored, and every load decodes fresh
objects (in C, cheaper than copying objects in Python the way ``deepcopy``
does). A set of message ids per conversation makes idempotent appends O(1);
``pop`` and ``truncate`` cost what they remove.
"""

from __future__ import annotations

import builtins
import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from .. import codec
from ..clock import now_ms
from ..exceptions import OwnerMismatchError
from ..types import Conversation, ConversationMetadata, Message, Page, StoreStats
from .base import BaseStore, remaining_ttl

DEFAULT_MAX_CONVERSATIONS = 1000
_T = TypeVar("_T")


@dataclass(slots=True)
class _Entry:
    """One conversation as held in memory (only ever touched under the bucket lock)."""

    meta: ConversationMetadata
    blobs: list[bytes] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    id_set: set[str] = field(default_factory=set)
    #: Bytes of the encoded messages, kept up to date so ``get_stats`` never reads them.
    size: int = 0

    def add(self, messages: list[Message]) -> bool:
        """Append the messages whose id is new (ids within ``messages`` are distinct).

        Returns whether anything was added.
        """
        id_set = self.id_set
        if id_set:
            messages = [m for m in messages if m.id not in id_set]
            if not messages:
                return False
        encode = codec.encode_message
        blobs = [encode(m) for m in messages]
        ids = [m.id for m in messages]
        self.blobs.extend(blobs)
        self.ids.extend(ids)
        id_set.update(ids)
        self.size += sum(map(len, blobs))
        self.meta.message_count = len(self.blobs)
        return bool(messages)

    def drop_from(self, start: int) -> list[bytes]:
        """Remove the messages at ``start`` and after; returns their documents."""
        removed = self.blobs[start:]
        for message_id in self.ids[start:]:
            self.id_set.discard(message_id)
        del self.blobs[start:], self.ids[start:]
        self.size -= sum(map(len, removed))
        self.meta.message_count = len(self.blobs)
        return removed

    def messages(self, last: int | None = None) -> list[Message]:
        """Fresh message objects (all, or the newest ``last``)."""
        blobs = self.blobs
        if last is not None:
            blobs = blobs[max(0, len(blobs) - last) :] if last else []
        return codec.decode_joined_messages(b",".join(blobs))


@dataclass
class _Bucket:
    entries: OrderedDict[str, _Entry] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_buckets: dict[tuple[str, str], _Bucket] = {}
_buckets_lock = threading.Lock()
_anonymous_ids = itertools.count(1)


def _bucket_for(key: tuple[str, str]) -> _Bucket:
    with _buckets_lock:
        bucket = _buckets.get(key)
        if bucket is None:
            bucket = _buckets[key] = _Bucket()
        return bucket


def _mismatch(conversation_id: str) -> OwnerMismatchError:
    return OwnerMismatchError(f"conversation {conversation_id!r} belongs to another owner.")


class MemoryStore(BaseStore):
    """Process-memory store with LRU eviction beyond ``OPTIONS["MAX_CONVERSATIONS"]``."""

    backend_name: ClassVar[str] = "memory"
    option_names: ClassVar[frozenset[str]] = frozenset({"MAX_CONVERSATIONS"})

    def __init__(self, location: str = "", params: Any = None, *, alias: str | None = None):
        super().__init__(location, params, alias=alias)
        max_conversations = self.option_int(
            "MAX_CONVERSATIONS", DEFAULT_MAX_CONVERSATIONS, minimum=1
        )
        assert max_conversations is not None
        self.max_conversations: int = max_conversations
        name = self.location or alias or f"<anonymous-{next(_anonymous_ids)}>"
        self._bucket = _bucket_for((name, self.namespace))

    # -- helpers (the bucket lock is held by the caller) ------------------------------------

    @property
    def _entries(self) -> OrderedDict[str, _Entry]:
        return self._bucket.entries

    def _evict(self) -> None:
        entries = self._entries
        while len(entries) > self.max_conversations:
            entries.popitem(last=False)

    def _hold(self, conversation_id: str, entry: _Entry) -> None:
        """Hold ``entry`` as the most recently used conversation."""
        self._entries[conversation_id] = entry
        self._entries.move_to_end(conversation_id)
        self._evict()

    def _live(self, conversation_id: str, now: int) -> _Entry | None:
        entry = self._entries.get(conversation_id)
        if entry is None or entry.meta.is_expired(now):
            return None
        return entry

    def _mine(self, conversation_id: str, owner: str | None, now: int) -> _Entry | None:
        """The live entry when ``owner`` may see it (None = unscoped); touches the LRU."""
        entry = self._live(conversation_id, now)
        if entry is None or (owner is not None and entry.meta.owner != owner):
            return None
        self._entries.move_to_end(conversation_id)
        return entry

    def _writable(self, conversation_id: str, owner: str | None, now: int) -> _Entry | None:
        """The live entry to write to, None when absent; raises for another owner's."""
        entry = self._live(conversation_id, now)
        if entry is not None and owner is not None and entry.meta.owner != owner:
            raise _mismatch(conversation_id)
        return entry

    def _new_entry(
        self,
        conversation_id: str,
        now: int,
        *,
        ttl: int | None,
        owner: str | None,
        metadata: dict[str, Any],
        created_at: int | None = None,
    ) -> _Entry:
        return _Entry(
            ConversationMetadata(
                conversation_id=conversation_id,
                created_at=now if created_at is None else created_at,
                updated_at=now,
                ttl=ttl,
                owner=owner,
                metadata=metadata,
            )
        )

    # -- contract --------------------------------------------------------------------------

    def size(self) -> int:
        """How many conversations are held in memory (expired ones included until cleanup)."""
        return len(self._entries)

    def _save(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        ttl: int | None,
        metadata: dict[str, Any] | None,
        owner: str | None,
    ) -> Conversation:
        now = now_ms()
        with self._bucket.lock:
            old = self._writable(conversation_id, owner, now)
            if old is not None:
                entry = self._new_entry(
                    conversation_id,
                    now,
                    ttl=ttl,
                    owner=old.meta.owner,
                    metadata={**old.meta.metadata, **(metadata or {})},
                    created_at=old.meta.created_at,
                )
            else:
                entry = self._new_entry(
                    conversation_id, now, ttl=ttl, owner=owner, metadata=dict(metadata or {})
                )
            entry.add(messages)
            self._hold(conversation_id, entry)
            # The validated messages were never stored (their encodings were): safe to return.
            return Conversation(conversation_id, messages, entry.meta.copy())

    def _create(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        ttl: int | None,
        metadata: dict[str, Any],
        owner: str | None,
    ) -> Conversation | None:
        now = now_ms()
        with self._bucket.lock:
            if self._live(conversation_id, now) is not None:
                self._entries.move_to_end(conversation_id)
                return None
            entry = self._new_entry(conversation_id, now, ttl=ttl, owner=owner, metadata=metadata)
            entry.add(messages)
            self._hold(conversation_id, entry)
            return Conversation(conversation_id, messages, entry.meta.copy())

    def _load(
        self, conversation_id: str, *, include_expired: bool, last: int | None, owner: str | None
    ) -> Conversation | None:
        with self._bucket.lock:
            entry = self._entries.get(conversation_id)
            if entry is None or (owner is not None and entry.meta.owner != owner):
                return None
            if not include_expired and entry.meta.is_expired():
                return None
            self._entries.move_to_end(conversation_id)
            return Conversation(conversation_id, entry.messages(last), entry.meta.copy())

    def _append(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        update_timestamp: bool,
        owner: str | None,
    ) -> ConversationMetadata:
        now = now_ms()
        with self._bucket.lock:
            entry = self._writable(conversation_id, owner, now)
            if entry is None:
                entry = self._new_entry(
                    conversation_id, now, ttl=self.default_ttl, owner=owner, metadata={}
                )
                self._hold(conversation_id, entry)
            else:
                self._entries.move_to_end(conversation_id)
            if entry.add(messages) and update_timestamp:
                entry.meta.updated_at = now
            return entry.meta.copy()

    def _pop(
        self, conversation_id: str, count: int, *, owner: str | None
    ) -> builtins.list[Message]:
        with self._bucket.lock:
            entry = self._mine(conversation_id, owner, now_ms())
            if entry is None or not entry.blobs:
                return []
            removed = entry.drop_from(max(0, len(entry.blobs) - count))
            entry.meta.updated_at = now_ms()
        return codec.decode_joined_messages(b",".join(removed))

    def _truncate(
        self, conversation_id: str, keep: int, *, owner: str | None
    ) -> tuple[ConversationMetadata, int] | None:
        with self._bucket.lock:
            entry = self._mine(conversation_id, owner, now_ms())
            if entry is None:
                return None
            removed = len(entry.drop_from(keep)) if keep < len(entry.blobs) else 0
            if removed:
                entry.meta.updated_at = now_ms()
            return entry.meta.copy(), removed

    def _delete(self, conversation_id: str, *, owner: str | None) -> bool:
        with self._bucket.lock:
            entry = self._entries.get(conversation_id)
            if entry is None:
                return False
            if owner is not None and (entry.meta.owner != owner or entry.meta.is_expired()):
                return False
            del self._entries[conversation_id]
            return True

    def _clear(self) -> int:
        with self._bucket.lock:
            count = len(self._entries)
            self._entries.clear()
            return count

    def _live_metadata(self) -> builtins.list[ConversationMetadata]:
        now = now_ms()
        with self._bucket.lock:
            return [e.meta for e in self._entries.values() if not e.meta.is_expired(now)]

    def _list(self) -> builtins.list[str]:
        items = sorted(
            self._live_metadata(), key=lambda m: (m.updated_at, m.conversation_id), reverse=True
        )
        return [m.conversation_id for m in items]

    def _list_conversations(
        self, *, owner: str | None, prefix: str | None, limit: int, offset: int
    ) -> Page:
        matching = [
            m
            for m in self._live_metadata()
            if (owner is None or m.owner == owner)
            and (prefix is None or m.conversation_id.startswith(prefix))
        ]
        matching.sort(key=lambda m: (m.updated_at, m.conversation_id), reverse=True)
        return Page(
            items=[m.copy() for m in matching[offset : offset + limit]], total=len(matching)
        )

    def _iter_conversations(
        self, *, include_expired: bool, batch_size: int, owner: str | None
    ) -> Iterator[Conversation]:
        with self._bucket.lock:
            ids = builtins.list(self._entries)
        for start in range(0, len(ids), batch_size):
            for conversation_id in ids[start : start + batch_size]:
                with self._bucket.lock:
                    entry = self._entries.get(conversation_id)
                    if entry is None or (owner is not None and entry.meta.owner != owner):
                        continue
                    if not include_expired and entry.meta.is_expired():
                        continue
                    snapshot = Conversation(conversation_id, entry.messages(), entry.meta.copy())
                yield snapshot

    def _put(self, conversation: Conversation) -> None:
        meta = conversation.metadata.copy()
        entry = _Entry(meta)
        entry.add(conversation.messages)
        with self._bucket.lock:
            self._hold(conversation.conversation_id, entry)

    def _exists(self, conversation_id: str, *, owner: str | None) -> bool:
        with self._bucket.lock:
            return self._mine(conversation_id, owner, now_ms()) is not None

    def _get_stats(self) -> StoreStats:
        now = now_ms()
        live = expired = messages = size = 0
        with self._bucket.lock:
            for entry in self._entries.values():
                if entry.meta.is_expired(now):
                    expired += 1
                    continue
                live += 1
                messages += entry.meta.message_count
                size += entry.size
                if entry.meta.metadata:
                    size += len(codec.encode(entry.meta.metadata))
        return StoreStats(
            total_conversations=live,
            total_messages=messages,
            expired_conversations=expired,
            storage_size=size,
        )

    def _cleanup(self) -> int:
        now = now_ms()
        with self._bucket.lock:
            expired = [cid for cid, e in self._entries.items() if e.meta.is_expired(now)]
            for conversation_id in expired:
                del self._entries[conversation_id]
        return len(expired)

    def _get_ttl(self, conversation_id: str, *, owner: str | None) -> int:
        now = now_ms()
        with self._bucket.lock:
            entry = self._mine(conversation_id, owner, now)
            if entry is None:
                return -2
            return remaining_ttl(entry.meta, now)

    def _set_ttl(self, conversation_id: str, ttl: int | None, *, owner: str | None) -> bool:
        now = now_ms()
        with self._bucket.lock:
            entry = self._mine(conversation_id, owner, now)
            if entry is None:
                return False
            entry.meta.ttl = ttl
            entry.meta.updated_at = now
            return True

    def _update_metadata(
        self, conversation_id: str, metadata: dict[str, Any], *, replace: bool, owner: str | None
    ) -> ConversationMetadata | None:
        now = now_ms()
        with self._bucket.lock:
            entry = self._mine(conversation_id, owner, now)
            if entry is None:
                return None
            meta = entry.meta
            meta.metadata = dict(metadata) if replace else {**meta.metadata, **metadata}
            meta.updated_at = now
            return meta.copy()

    def _close(self) -> None:
        """Nothing to release: the memory store keeps its data when closed."""

    async def _run_sync(self, func: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        # Every call is a few microseconds under a lock and never waits for I/O:
        # a thread hop would cost more than the call itself.
        return func(*args, **kwargs)
