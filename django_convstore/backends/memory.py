"""An in-process store with O(1) LRU eviction, shared by every thread of the process.

Like Django's locmem cache, the data lives in a module-level registry keyed by
``LOCATION`` (or the alias) and ``NAMESPACE``, so the per-thread store
instances of one alias see the same conversations. One lock guards each
bucket; an ``OrderedDict`` gives O(1) ``move_to_end`` / ``popitem`` LRU
bookkeeping. Messages are copied on the way in and out, so callers can never
change stored state.
"""

from __future__ import annotations

import builtins
import itertools
import json
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..clock import now_ms
from ..types import Conversation, ConversationMetadata, Message, Page, StoreStats
from .base import BaseStore, remaining_ttl

DEFAULT_MAX_CONVERSATIONS = 1000


@dataclass
class _Bucket:
    conversations: OrderedDict[str, Conversation] = field(default_factory=OrderedDict)
    #: UTF-8 bytes of each conversation's message contents, kept up to date on every
    #: write so ``get_stats`` never reads message bodies.
    content_bytes: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_buckets: dict[tuple[str, str], _Bucket] = {}
_buckets_lock = threading.Lock()
_anonymous_ids = itertools.count(1)


def _content_bytes(messages: builtins.list[Message]) -> int:
    return sum(len(message.content.encode()) for message in messages)


def _bucket_for(key: tuple[str, str]) -> _Bucket:
    with _buckets_lock:
        bucket = _buckets.get(key)
        if bucket is None:
            bucket = _buckets[key] = _Bucket()
        return bucket


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

    # -- helpers ---------------------------------------------------------------------------

    @property
    def _data(self) -> OrderedDict[str, Conversation]:
        return self._bucket.conversations

    def _evict(self) -> None:
        data = self._data
        while len(data) > self.max_conversations:
            evicted, _ = data.popitem(last=False)
            self._bucket.content_bytes.pop(evicted, None)

    def _store(self, conversation: Conversation) -> None:
        """Hold ``conversation`` as the most recently used one (lock held by the caller)."""
        conversation_id = conversation.conversation_id
        self._data[conversation_id] = conversation
        self._bucket.content_bytes[conversation_id] = _content_bytes(conversation.messages)
        self._data.move_to_end(conversation_id)
        self._evict()

    def _live(self, conversation_id: str, now: int) -> Conversation | None:
        conversation = self._data.get(conversation_id)
        if conversation is None or conversation.metadata.is_expired(now):
            return None
        return conversation

    # -- contract --------------------------------------------------------------------------

    def size(self) -> int:
        """How many conversations are held in memory (expired ones included until cleanup)."""
        return len(self._data)

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
            existing = self._live(conversation_id, now)
            if existing is not None:
                old = existing.metadata
                created_at = old.created_at
                merged = {**old.metadata, **(metadata or {})}
                owner = old.owner if owner is None else owner
            else:
                created_at, merged = now, dict(metadata or {})
            stored = Conversation(
                conversation_id=conversation_id,
                messages=messages,
                metadata=ConversationMetadata(
                    conversation_id=conversation_id,
                    created_at=created_at,
                    updated_at=now,
                    message_count=len(messages),
                    ttl=ttl,
                    owner=owner,
                    metadata=merged,
                ),
            )
            self._store(stored)
            return stored.copy()

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
                self._data.move_to_end(conversation_id)
                return None
            stored = Conversation(
                conversation_id=conversation_id,
                messages=messages,
                metadata=ConversationMetadata(
                    conversation_id=conversation_id,
                    created_at=now,
                    updated_at=now,
                    message_count=len(messages),
                    ttl=ttl,
                    owner=owner,
                    metadata=metadata,
                ),
            )
            self._store(stored)
            return stored.copy()

    def _load(
        self, conversation_id: str, *, include_expired: bool, last: int | None
    ) -> Conversation | None:
        with self._bucket.lock:
            conversation = self._data.get(conversation_id)
            if conversation is None:
                return None
            if not include_expired and conversation.metadata.is_expired():
                return None
            self._data.move_to_end(conversation_id)
            messages = conversation.messages
            if last is not None:
                messages = messages[len(messages) - last :] if last else []
            return Conversation(
                conversation_id=conversation_id,
                messages=[m.copy() for m in messages],
                metadata=conversation.metadata.copy(),
            )

    def _append(
        self, conversation_id: str, messages: builtins.list[Message], *, update_timestamp: bool
    ) -> ConversationMetadata:
        now = now_ms()
        with self._bucket.lock:
            conversation = self._live(conversation_id, now)
            if conversation is None:
                conversation = Conversation(
                    conversation_id=conversation_id,
                    messages=[],
                    metadata=ConversationMetadata(
                        conversation_id=conversation_id,
                        created_at=now,
                        updated_at=now,
                        ttl=self.default_ttl,
                    ),
                )
                self._store(conversation)
            conversation.messages.extend(messages)
            sizes = self._bucket.content_bytes
            sizes[conversation_id] = sizes.get(conversation_id, 0) + _content_bytes(messages)
            conversation.metadata.message_count = len(conversation.messages)
            if update_timestamp:
                conversation.metadata.updated_at = now
            self._data.move_to_end(conversation_id)
            self._evict()
            return conversation.metadata.copy()

    def _delete(self, conversation_id: str) -> bool:
        with self._bucket.lock:
            self._bucket.content_bytes.pop(conversation_id, None)
            return self._data.pop(conversation_id, None) is not None

    def _clear(self) -> int:
        with self._bucket.lock:
            count = len(self._data)
            self._data.clear()
            self._bucket.content_bytes.clear()
            return count

    def _live_metadata(self) -> builtins.list[ConversationMetadata]:
        now = now_ms()
        with self._bucket.lock:
            return [c.metadata for c in self._data.values() if not c.metadata.is_expired(now)]

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
        self, *, include_expired: bool, batch_size: int
    ) -> Iterator[Conversation]:
        with self._bucket.lock:
            ids = builtins.list(self._data)
        for start in range(0, len(ids), batch_size):
            for conversation_id in ids[start : start + batch_size]:
                with self._bucket.lock:
                    conversation = self._data.get(conversation_id)
                    if conversation is None:
                        continue
                    if not include_expired and conversation.metadata.is_expired():
                        continue
                    snapshot = conversation.copy()
                yield snapshot

    def _put(self, conversation: Conversation) -> None:
        with self._bucket.lock:
            self._store(conversation)

    def _exists(self, conversation_id: str) -> bool:
        with self._bucket.lock:
            if self._live(conversation_id, now_ms()) is None:
                return False
            self._data.move_to_end(conversation_id)
            return True

    def _get_stats(self) -> StoreStats:
        now = now_ms()
        live = expired = messages = size = 0
        with self._bucket.lock:
            for conversation in self._data.values():
                if conversation.metadata.is_expired(now):
                    expired += 1
                    continue
                live += 1
                messages += conversation.metadata.message_count
                size += self._bucket.content_bytes.get(conversation.conversation_id, 0)
                size += len(json.dumps(conversation.metadata.metadata))
        return StoreStats(
            total_conversations=live,
            total_messages=messages,
            expired_conversations=expired,
            storage_size=size,
        )

    def _cleanup(self) -> int:
        now = now_ms()
        with self._bucket.lock:
            expired = [cid for cid, c in self._data.items() if c.metadata.is_expired(now)]
            for conversation_id in expired:
                del self._data[conversation_id]
                self._bucket.content_bytes.pop(conversation_id, None)
        return len(expired)

    def _get_ttl(self, conversation_id: str) -> int:
        now = now_ms()
        with self._bucket.lock:
            conversation = self._live(conversation_id, now)
            if conversation is None:
                return -2
            return remaining_ttl(conversation.metadata, now)

    def _set_ttl(self, conversation_id: str, ttl: int | None) -> bool:
        now = now_ms()
        with self._bucket.lock:
            conversation = self._live(conversation_id, now)
            if conversation is None:
                return False
            conversation.metadata.ttl = ttl
            conversation.metadata.updated_at = now
            self._data.move_to_end(conversation_id)
            return True

    def _update_metadata(
        self, conversation_id: str, metadata: dict[str, Any], *, replace: bool
    ) -> ConversationMetadata | None:
        now = now_ms()
        with self._bucket.lock:
            conversation = self._live(conversation_id, now)
            if conversation is None:
                return None
            meta = conversation.metadata
            meta.metadata = dict(metadata) if replace else {**meta.metadata, **metadata}
            meta.updated_at = now
            self._data.move_to_end(conversation_id)
            return meta.copy()

    def _close(self) -> None:
        """Nothing to release: the memory store keeps its data when closed."""
