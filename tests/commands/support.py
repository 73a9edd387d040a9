"""Sample data and fault-injecting stores for the management command tests.

The faulty stores are real memory stores with one fault switched on through
``OPTIONS``; they stand in for failures that cannot be produced on demand
with a real backend (one conversation failing, a write dying half-way, a
silently corrupted copy, a stream breaking off).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from django_convstore.backends.memory import MemoryStore
from django_convstore.clock import now_ms
from django_convstore.exceptions import BackendError, BackendUnavailableError
from django_convstore.types import Conversation, ConversationMetadata, Message, StoreStats

FAULTY_STORE = "tests.commands.support.FaultyMemoryStore"
DAY = 86_400
#: Backends that keep expired conversations until cleanup (Redis drops them itself).
HOLDS_EXPIRED = ("memory", "database", "zerodb")


def make_conversation(
    cid: str,
    messages: builtins.list[Message] | None = None,
    *,
    created_at: int,
    updated_at: int,
    ttl: int | None = None,
    owner: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Conversation:
    """A whole conversation for ``put``."""
    messages = messages or []
    return Conversation(
        conversation_id=cid,
        messages=messages,
        metadata=ConversationMetadata(
            conversation_id=cid,
            created_at=created_at,
            updated_at=updated_at,
            message_count=len(messages),
            ttl=ttl,
            owner=owner,
            metadata=metadata or {},
        ),
    )


def simple(cid: str, count: int = 3, *, age_ms: int = 1000, **kwargs: Any) -> Conversation:
    """A small live conversation of ``count`` messages, updated ``age_ms`` ago."""
    now = now_ms()
    messages = [
        Message(
            id=f"{cid}-{i}",
            role="user" if i % 2 == 0 else "assistant",
            content=f"message {i} of {cid}",
            timestamp=now - age_ms - 100 + i,
        )
        for i in range(count)
    ]
    return make_conversation(
        cid, messages, created_at=now - age_ms - 500, updated_at=now - age_ms, **kwargs
    )


def expired(cid: str, count: int = 2, **kwargs: Any) -> Conversation:
    """A conversation whose one-minute TTL ran out an hour ago."""
    return simple(cid, count, age_ms=3_600_000, ttl=60, **kwargs)


def sample_conversations() -> builtins.list[Conversation]:
    """Live conversations exercising everything a migration must keep exactly."""
    now = now_ms()
    many = [
        Message(
            id=f"many-{i:03d}",
            role=("user", "assistant", "tool", "system")[i % 4],
            content=f"turn {i}",
            # Timestamps run backwards: order must come from position, not time.
            timestamp=now - i * 1000,
            metadata={"i": i} if i % 10 == 0 else {},
        )
        for i in range(250)
    ]
    return [
        make_conversation(
            "plain",
            [
                Message(id="p1", role="system", content="You are helpful.", timestamp=now - 9000),
                Message(id="p2", role="user", content="Hello!", timestamp=now - 8000),
                Message(
                    id="p3",
                    role="assistant",
                    content="Hi! How can I help?",
                    timestamp=now - 7000,
                    metadata={"model": "gpt-x", "tokens": 12},
                ),
            ],
            created_at=now - 50_000,
            updated_at=now - 1_000,
            owner="17",
            metadata={"channel": "web"},
        ),
        make_conversation(
            "ttl-live",
            [Message(id="t1", role="user", content="expires in an hour", timestamp=now - 5)],
            created_at=now - 20_000,
            updated_at=now - 10_000,
            ttl=3600,
            owner="42",
            metadata={"nested": {"deep": {"list": [1, 2, {"x": None}]}}},
        ),
        make_conversation("empty", [], created_at=now - 3000, updated_at=now - 3000),
        make_conversation(
            "epoch",
            [
                Message(id="e1", role="user", content="first", timestamp=0),
                Message(id="e2", role="user", content="far future", timestamp=253402300799999),
            ],
            created_at=0,
            updated_at=1,
        ),
        make_conversation(
            "unicode: 会话 🚀 {tag}/slash:colon #?&",
            [
                Message(
                    id="ü-1 {x}",
                    role="user",
                    content='Grüße, 你好, مرحبا, emoji 👩‍👩‍👧 and \u2028 line sep, "quotes" \\ \n',
                    timestamp=now - 100,
                    metadata={"ключ": "значение", "emoji": "🎉"},
                ),
                Message(id="ü-2", role="assistant", content="", timestamp=now - 99),
            ],
            created_at=now - 200,
            updated_at=now - 99,
            ttl=DAY * 365,
            owner="użytkownik-ß",
            metadata={"tags": ["ä", "b"], "ünïcode": True},
        ),
        make_conversation(
            "L" * 255,
            [Message(id="l1", role="user", content="x" * 65_536, timestamp=now - 1)],
            created_at=now - 2,
            updated_at=now - 1,
            owner="17",
        ),
        make_conversation(
            "many", many, created_at=now - 300_000, updated_at=now - 2_000, ttl=7200, owner="42"
        ),
        make_conversation(
            "agent",
            [
                Message(
                    id="ag1",
                    role="user",
                    content=[
                        {"type": "text", "text": "What's the weather in the photo's city?"},
                        {"type": "image_url", "image_url": {"url": "https://example.com/p.png"}},
                    ],
                    timestamp=now - 900,
                    name="alice",
                ),
                Message(
                    id="ag2",
                    role="assistant",
                    content="",
                    timestamp=now - 800,
                    tool_calls=[
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                        }
                    ],
                ),
                Message(
                    id="ag3",
                    role="tool",
                    content='{"temp": -3}',
                    timestamp=now - 700,
                    tool_call_id="call_1",
                    name="weather",
                ),
                Message(id="ag4", role="developer", content="Be brief.", timestamp=now - 650),
                Message(id="ag5", role="function", content="ok", timestamp=now - 640, name="f"),
            ],
            created_at=now - 1000,
            updated_at=now - 600,
            owner="17",
        ),
        make_conversation(
            "metadata-types",
            [
                Message(
                    id="mt1",
                    role="tool",
                    content='{"result": 42}',
                    timestamp=now - 400,
                    metadata={"float": 0.1, "negative": -3, "big": 2**53 - 1, "null": None},
                )
            ],
            created_at=now - 500,
            updated_at=now - 400,
            metadata={
                "float": 1.5,
                "int": 2**40,
                "null": None,
                "bool": False,
                "list": [1, "a", {"b": []}],
                "empty": {},
                "str": "",
            },
        ),
    ]


def dump(conversations: Iterator[Conversation] | builtins.list[Conversation]) -> dict[str, Any]:
    """``{id: to_dict()}`` of conversations, for exact comparison."""
    return {c.conversation_id: c.to_dict() for c in conversations}


def contents(store: Any) -> dict[str, Any]:
    """Everything a store holds (expired conversations included), as ``{id: to_dict()}``."""
    return dump(store.iter_conversations(include_expired=True))


class FaultyMemoryStore(MemoryStore):
    """A memory store with faults switched on through ``OPTIONS``.

    - ``FAIL_PUT``: ids whose ``put`` raises ``BackendUnavailableError`` before writing.
    - ``PARTIAL_PUT``: ids whose ``put`` writes half the messages, then raises.
    - ``CORRUPT_PUT``: ids whose ``put`` silently drops the owner and the last message.
    - ``AFTER_PUT``: a callable run with each conversation after it was written.
    - ``FAIL_ITER_AFTER``: ``iter_conversations`` raises after yielding this many.
    - ``FAIL_CLEANUP`` / ``FAIL_DELETE``: ``cleanup()`` / ``delete()`` raise.
    - ``UNKNOWN_EXPIRED``: ``get_stats()`` cannot tell how many expired (None), like
      backends that cannot count them cheaply.
    """

    option_names: ClassVar[frozenset[str]] = MemoryStore.option_names | {
        "FAIL_PUT",
        "PARTIAL_PUT",
        "CORRUPT_PUT",
        "AFTER_PUT",
        "FAIL_ITER_AFTER",
        "FAIL_CLEANUP",
        "FAIL_DELETE",
        "UNKNOWN_EXPIRED",
    }

    def _fault(self, what: str) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"injected fault: {what} (backend=memory, alias={self.display_alias})",
            backend="memory",
            alias=self.display_alias,
        )

    def _put(self, conversation: Conversation) -> None:
        cid = conversation.conversation_id
        if cid in self.options.get("FAIL_PUT", ()):
            raise self._fault(f"could not write {cid!r}")
        if cid in self.options.get("PARTIAL_PUT", ()):
            half = conversation.messages[: len(conversation.messages) // 2]
            partial = conversation.copy()
            partial.messages = half
            partial.metadata.message_count = len(half)
            super()._put(partial)
            raise self._fault(f"connection lost while writing {cid!r}")
        if cid in self.options.get("CORRUPT_PUT", ()):
            conversation = conversation.copy()
            conversation.metadata.owner = None
            conversation.messages = conversation.messages[:-1]
            conversation.metadata.message_count = len(conversation.messages)
        super()._put(conversation)
        after_put: Callable[[Conversation], None] | None = self.options.get("AFTER_PUT")
        if after_put is not None:
            after_put(conversation)

    def _iter_conversations(
        self, *, include_expired: bool, batch_size: int, owner: str | None
    ) -> Iterator[Conversation]:
        limit = self.options.get("FAIL_ITER_AFTER")
        for index, conversation in enumerate(
            super()._iter_conversations(
                include_expired=include_expired, batch_size=batch_size, owner=owner
            )
        ):
            if limit is not None and index >= limit:
                raise self._fault("connection reset while streaming")
            yield conversation

    def _get_stats(self) -> StoreStats:
        stats = super()._get_stats()
        if self.options.get("UNKNOWN_EXPIRED"):
            stats.expired_conversations = None
        return stats

    def _cleanup(self) -> int:
        if self.options.get("FAIL_CLEANUP"):
            raise self._fault("cleanup timed out")
        return super()._cleanup()

    def _delete(self, conversation_id: str, *, owner: str | None) -> bool:
        if self.options.get("FAIL_DELETE"):
            raise BackendError(f"injected fault: delete of {conversation_id!r} refused")
        return super()._delete(conversation_id, owner=owner)
