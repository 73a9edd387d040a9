"""Plain data types exchanged with the stores.

Timestamps are integers: milliseconds since the Unix epoch, as in the
TypeScript original, so stored data is plain JSON and time-zone free.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .clock import now_ms


def _copy_json(value: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(value) if value else {}


@dataclass
class Message:
    """One chat message."""

    role: str
    content: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    timestamp: int = field(default_factory=now_ms)
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with snake_case keys."""
        return {
            "id": self.id,
            "role": self.role,
            "content": self.content,
            "timestamp": self.timestamp,
            "metadata": _copy_json(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        """Build a message from a dict as produced by :meth:`to_dict` (no validation)."""
        kwargs: dict[str, Any] = {"role": data["role"], "content": data["content"]}
        if data.get("id") is not None:
            kwargs["id"] = data["id"]
        if data.get("timestamp") is not None:
            kwargs["timestamp"] = data["timestamp"]
        kwargs["metadata"] = _copy_json(dict(data.get("metadata") or {}))
        return cls(**kwargs)

    def copy(self) -> Message:
        """A deep copy: changing it never changes this message."""
        return Message(
            role=self.role,
            content=self.content,
            id=self.id,
            timestamp=self.timestamp,
            metadata=_copy_json(self.metadata),
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
            "metadata": _copy_json(self.metadata),
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
            metadata=_copy_json(dict(data.get("metadata") or {})),
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
            metadata=_copy_json(self.metadata),
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


__all__ = ["Conversation", "ConversationMetadata", "Message", "Page", "StoreStats"]
