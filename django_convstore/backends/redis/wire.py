"""The store's values on the wire: batches of messages going in, replies coming out.

Messages travel as one JSON array per batch (``codec`` encodes each message
straight into it), with a string of 4-byte offsets and the ids joined by
``\\n`` (ids cannot contain control characters): three script arguments,
whatever the batch size. Replies are parsed straight into this app's types.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from ... import codec
from ...exceptions import BackendError, OwnerMismatchError
from ...types import ConversationMetadata, Message

_encoder = msgspec.json.Encoder()
_OFFSET_TYPE = next(code for code in "IL" if array(code).itemsize == 4)
_SWAP = sys.byteorder != "little"
_ONE_OFFSET = (1).to_bytes(4, "little")


def encode_batch(messages: Sequence[Message]) -> tuple[bytes, bytes, str]:
    """The messages as a JSON array, their offsets in it (4 bytes each) and their ids."""
    if not messages:
        return b"", b"", ""
    if len(messages) == 1:
        message = messages[0]
        return b"[" + _encoder.encode(message) + b"]", _ONE_OFFSET, message.id
    buf = bytearray(b"[")
    offsets = array(_OFFSET_TYPE)
    encode_into = _encoder.encode_into
    for message in messages:
        offsets.append(len(buf))
        encode_into(message, buf, -1)
        buf.append(44)  # ","
    buf[-1] = 93  # "]"
    if _SWAP:
        offsets.byteswap()
    return bytes(buf), offsets.tobytes(), "\n".join([message.id for message in messages])


def metadata_args(metadata: Mapping[str, Any] | None) -> list[Any]:
    """Custom metadata as hash fields: ``m:<key>``, the value's JSON."""
    args: list[Any] = []
    for key, value in (metadata or {}).items():
        args.append(f"m:{key}")
        args.append(codec.encode(value))
    return args


def acting(owner: str | None) -> str:
    """The acting-owner argument of the scripts: '' (unscoped) or '=<owner>'."""
    return "" if owner is None else f"={owner}"


# -- decoding ----------------------------------------------------------------------------


def malformed(conversation_id: str, exc: Exception) -> BackendError:
    """The error for stored data this store cannot read."""
    return BackendError(
        f"redis store: malformed data stored for conversation {conversation_id!r} "
        f"({type(exc).__name__}: {exc}).",
        detail=conversation_id,
    )


def mismatch(conversation_id: str) -> OwnerMismatchError:
    """The error for a write to another owner's conversation (never names that owner)."""
    return OwnerMismatchError(f"conversation {conversation_id!r} belongs to another owner.")


def text(value: bytes | str) -> str:
    """A reply string (bytes unless the pool decodes responses)."""
    return value.decode() if isinstance(value, bytes) else value


def _pairs(flat: Any) -> Iterable[tuple[Any, Any]]:
    if isinstance(flat, Mapping):
        return flat.items()
    items = iter(flat)
    return zip(items, items, strict=True)


def fields_of(flat: Any) -> dict[str, Any]:
    """A meta hash reply (flat list or dict) as ``{field: value}`` with str keys."""
    return {text(key): value for key, value in _pairs(flat)}


def parse_meta(conversation_id: str, flat: Any) -> ConversationMetadata:
    """:class:`ConversationMetadata` from a meta hash reply (flat list or dict)."""
    return meta_from_fields(conversation_id, fields_of(flat))


def meta_from_fields(conversation_id: str, fields: dict[str, Any]) -> ConversationMetadata:
    """:class:`ConversationMetadata` from a meta hash's fields (see :func:`fields_of`)."""
    try:
        owner = fields.get("owner")
        return ConversationMetadata(
            conversation_id=conversation_id,
            created_at=int(fields["created_at"]),
            updated_at=int(fields["updated_at"]),
            message_count=int(fields.get("message_count", 0)),
            ttl=int(fields.get("ttl", 0)) or None,
            owner=text(owner) if owner else None,
            metadata={
                key[2:]: codec.decode(value) for key, value in fields.items() if key[:2] == "m:"
            },
        )
    except (KeyError, ValueError, TypeError, codec.DecodeError) as exc:
        raise malformed(conversation_id, exc) from exc


def parse_reply(conversation_id: str, values: Sequence[Any]) -> ConversationMetadata:
    """:class:`ConversationMetadata` from a script's metadata reply (see lib/conversation.lua):
    created_at, updated_at, ttl, owner (None: none), message_count, then custom pairs."""
    try:
        created_at, updated_at, ttl, owner, count = values[:5]
        custom = values[5:]
        return ConversationMetadata(
            conversation_id=conversation_id,
            created_at=int(created_at),
            updated_at=int(updated_at),
            message_count=int(count),
            ttl=int(ttl) or None,
            owner=text(owner) if owner else None,
            metadata={
                text(key)[2:]: codec.decode(value)
                for key, value in zip(custom[::2], custom[1::2], strict=True)
            },
        )
    except (ValueError, TypeError, codec.DecodeError) as exc:
        raise malformed(conversation_id, exc) from exc


def decode_messages(conversation_id: str, data: Any, *, joined: bool) -> list[Message]:
    """Messages from a JSON array, or from message objects joined by ',' (``joined``)."""
    if isinstance(data, str):
        data = data.encode()
    try:
        if joined:
            return codec.decode_joined_messages(data)
        return codec.decode_messages(data)
    except (codec.DecodeError, TypeError) as exc:
        raise malformed(conversation_id, exc) from exc
