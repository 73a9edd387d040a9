"""Turning database rows into the app's types, with the one codec.

Messages are stored as one JSON document each (see
:class:`~django_convstore.models.StoredMessage`); the reads hand back a
conversation's documents joined by commas (PostgreSQL ``string_agg``, SQLite
``group_concat``) or as rows, and either way they are decoded in one call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ... import codec
from ...exceptions import BackendError
from ...types import ConversationMetadata, Message

#: The conversation columns every read and write hands back, in this order.
META_COLUMNS = ("created_at", "updated_at", "ttl", "owner", "message_count", "metadata")


def text(value: Any) -> str:
    """A text column's value (drivers may hand back bytes or memoryview)."""
    if isinstance(value, str):
        return value
    if isinstance(value, memoryview):
        value = value.tobytes()
    return bytes(value).decode()


def decode_metadata(value: Any) -> dict[str, Any]:
    """The custom metadata of a conversation row (JSON text)."""
    if value is None:
        return {}
    if isinstance(value, dict):  # already decoded (read through the model field)
        return value
    try:
        decoded = codec.decode(text(value))
    except codec.DecodeError as exc:
        raise BackendError(f"malformed conversation metadata in the database: {exc}") from exc
    if not isinstance(decoded, dict):
        raise BackendError("malformed conversation metadata in the database: not an object")
    return decoded


def metadata(conversation_id: str, row: Sequence[Any]) -> ConversationMetadata:
    """Metadata from the :data:`META_COLUMNS` values of a row."""
    created_at, updated_at, ttl, owner, message_count, custom = row[:6]
    # int(): MySQL hands back DECIMAL for integer columns of a UNION (see sql.mysql_load).
    return ConversationMetadata(
        conversation_id=conversation_id,
        created_at=int(created_at),
        updated_at=int(updated_at),
        message_count=int(message_count),
        ttl=int(ttl) if ttl else None,
        owner=owner,
        metadata=decode_metadata(custom),
    )


def decode_joined(joined: Any) -> list[Message]:
    """Messages from their documents joined by commas (None or empty: no messages)."""
    if not joined:
        return []
    try:
        return codec.decode_messages("[" + text(joined) + "]")
    except codec.DecodeError as exc:
        raise BackendError(f"malformed message document in the database: {exc}") from exc


def decode_documents(documents: Iterable[Any]) -> list[Message]:
    """Messages from a sequence of documents, in one decoder call."""
    return decode_joined(",".join(map(text, documents)))


def encode(messages: Sequence[Message]) -> tuple[list[str], list[str]]:
    """The ids and JSON documents of ``messages`` (the columns an INSERT needs)."""
    return [m.id for m in messages], [codec.encode_message(m).decode() for m in messages]


def encode_metadata(value: dict[str, Any] | None) -> str:
    """Custom metadata as the JSON text the metadata column holds."""
    return codec.encode(value or {}).decode()


def expires_at(updated_at: int, ttl: int | None) -> int | None:
    """``updated_at + ttl`` in ms, or None when it never expires."""
    return updated_at + ttl * 1000 if ttl else None
