"""Plain data types exchanged with the stores.

Timestamps are integers: milliseconds since the Unix epoch, as in the
TypeScript original, so stored data is plain JSON and time-zone free.

:class:`Message` is a ``msgspec.Struct`` (the hot type: thousands are built
per load, straight from stored JSON by :mod:`django_convstore.codec`); the
other types are dataclasses. Both take keyword arguments and compare by value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .clock import now_ms
from .ids import new_message_id

#: ``content`` of a message: a string, or a list of content parts (JSON objects with a "type").
Content = str | list[dict[str, Any]]

_OPTIONAL_FIELDS = ("name", "tool_calls", "tool_call_id")


def copy_json(value: Any) -> Any:
    """A deep copy of plain JSON data (dicts, lists, scalars), much cheaper than ``deepcopy``."""
    kind = type(value)
    if kind is dict:
        return {key: copy_json(item) for key, item in value.items()} if value else {}
    if kind is list:
        return [copy_json(item) for item in value]
    return value


# gc=False: messages hold only JSON data (validated, so never a reference cycle), and
# untracked instances make decoding 10,000 messages about twice as fast.
class Message(msgspec.Struct, omit_defaults=True, gc=False):
    """One chat message.

    ``content`` is a string or a list of content parts (JSON objects, each
    with a string ``type``, kept exactly as given). ``name``, ``tool_calls``
    (a list of JSON objects, e.g. OpenAI's ``{"id", "type": "function",
    "function": {"name", "arguments"}}``) and ``tool_call_id`` are None
    unless set. ``id`` and ``timestamp`` (ms) are generated when missing.
    """

    role: str
    content: Content
    id: str = msgspec.field(default_factory=new_message_id)
    timestamp: int = msgspec.field(default_factory=now_ms)
    metadata: dict[str, Any] = {}
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with snake_case keys.

        ``name``, ``tool_calls`` and ``tool_call_id`` appear only when set, so
        plain text messages keep their short shape.
        """
        data: dict[str, Any] = {
            "id": self.id,
            "role": self.role,
            "content": copy_json(self.content),
            "timestamp": self.timestamp,
            "metadata": copy_json(self.metadata),
        }
        if self.name is not None:
            data["name"] = self.name
        if self.tool_calls is not None:
            data["tool_calls"] = copy_json(self.tool_calls)
        if self.tool_call_id is not None:
            data["tool_call_id"] = self.tool_call_id
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        """Build a message from a dict as produced by :meth:`to_dict` (no validation)."""
        kwargs: dict[str, Any] = {
            "role": data["role"],
            "content": copy_json(data["content"]),
            "metadata": copy_json(dict(data.get("metadata") or {})),
        }
        if data.get("id") is not None:
            kwargs["id"] = data["id"]
        if data.get("timestamp") is not None:
            kwargs["timestamp"] = data["timestamp"]
        for name in _OPTIONAL_FIELDS:
            if data.get(name) is not None:
                kwargs[name] = copy_json(data[name])
        return cls(**kwargs)

    def copy(self) -> Message:
        """A deep copy: changing it never changes this message."""
        return Message(
            role=self.role,
            content=copy_json(self.content),
            id=self.id,
            timestamp=self.timestamp,
            metadata=copy_json(self.metadata),
            name=self.name,
            tool_calls=copy_json(self.tool_calls),
            tool_call_id=self.tool_call_id,
        )

    def text(self) -> str:
        """The message's text: ``content`` itself, or its text parts joined by newlines."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(
            part["text"]
            for part in self.content
            if part.get("type") == "text" and isinstance(part.get("text"), str)
        )


@dataclass
class ConversationMetadata:
    """Everything about a conversation except its messages."""

    conversation_id: str
    created_at: int
    updated_at: int
    message_count: int = 0
    ttl: int | None = None
    owner: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def expires_at(self) -> int | None:
        """When it expires (ms since the epoch), or None when it never does."""
        if not self.ttl:
            return None
        return self.updated_at + self.ttl * 1000

    def is_expired(self, now_ms: int | None = None) -> bool:
        """True when the TTL has run out at ``now_ms`` (default: now)."""
        expires_at = self.expires_at
        if expires_at is None:
            return False
        return (now_ms if now_ms is not None else _now()) >= expires_at

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with snake_case keys (``expires_at`` included, derived)."""
        return {
            "conversation_id": self.conversation_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "message_count": self.message_count,
            "ttl": self.ttl,
            "owner": self.owner,
            "metadata": copy_json(self.metadata),
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConversationMetadata:
        """Build metadata from a dict as produced by :meth:`to_dict` (no validation)."""
        return cls(
            conversation_id=data["conversation_id"],
            created_at=data["created_at"],
            updated_at=data["updated_at"],
            message_count=data.get("message_count", 0),
            ttl=data.get("ttl") or None,
            owner=data.get("owner"),
            metadata=copy_json(dict(data.get("metadata") or {})),
        )

    def copy(self) -> ConversationMetadata:
        """A deep copy."""
        return ConversationMetadata(
            conversation_id=self.conversation_id,
            created_at=self.created_at,
            updated_at=self.updated_at,
            message_count=self.message_count,
            ttl=self.ttl,
            owner=self.owner,
            metadata=copy_json(self.metadata),
        )


def _now() -> int:
    return now_ms()


@dataclass
class Conversation:
    """A conversation: its id, ordered messages and metadata."""

    conversation_id: str
    messages: list[Message]
    metadata: ConversationMetadata

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with snake_case keys."""
        return {
            "conversation_id": self.conversation_id,
            "messages": [m.to_dict() for m in self.messages],
            "metadata": self.metadata.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Conversation:
        """Build a conversation from a dict as produced by :meth:`to_dict` (no validation)."""
        return cls(
            conversation_id=data["conversation_id"],
            messages=[Message.from_dict(m) for m in data.get("messages", [])],
            metadata=ConversationMetadata.from_dict(data["metadata"]),
        )

    def copy(self) -> Conversation:
        """A deep copy."""
        return Conversation(
            conversation_id=self.conversation_id,
            messages=[m.copy() for m in self.messages],
            metadata=self.metadata.copy(),
        )


@dataclass
class StoreStats:
    """Counts over a whole store."""

    total_conversations: int
    total_messages: int
    expired_conversations: int | None = None
    storage_size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with snake_case keys."""
        return {
            "total_conversations": self.total_conversations,
            "total_messages": self.total_messages,
            "expired_conversations": self.expired_conversations,
            "storage_size": self.storage_size,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoreStats:
        """Build stats from a dict as produced by :meth:`to_dict`."""
        return cls(
            total_conversations=data["total_conversations"],
            total_messages=data["total_messages"],
            expired_conversations=data.get("expired_conversations"),
            storage_size=data.get("storage_size"),
        )


@dataclass
class Page:
    """One page of conversation metadata and the total number matching."""

    items: list[ConversationMetadata]
    total: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with snake_case keys."""
        return {"items": [item.to_dict() for item in self.items], "total": self.total}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Page:
        """Build a page from a dict as produced by :meth:`to_dict`."""
        return cls(
            items=[ConversationMetadata.from_dict(i) for i in data["items"]],
            total=data["total"],
        )


__all__ = [
    "Content",
    "Conversation",
    "ConversationMetadata",
    "Message",
    "Page",
    "StoreStats",
    "copy_json",
]
