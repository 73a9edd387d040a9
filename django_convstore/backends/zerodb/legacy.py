"""Reading the rows django-convstore 0.1 wrote (format 1), so existing data keeps loading.

Format 1 kept one header row per conversation (``{"v": 1, ..., "base", "last",
"hkey", "rev", "revs", "state"}``; ``state`` ``live``, or briefly
``withdrawn``/``replaced``) and one message row per write (``{"v": 1, ...,
"at", "key", "messages": [...]}``): a conversation's messages were the rows
with ``at >= base``, ordered by ``(at, key)``, one row per ``key``. Racing
creators could leave two live headers for a moment; readers then saw their
union (lowest ``base``, summed counts).

Format-1 conversations are read as they are. The first write to one
converts it (see ``ZeroDBStore._upgrade``): its messages become the bulk
write of a format-2 header in the same row, and its format-1 message rows
are deleted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ... import codec
from ...types import ConversationMetadata, Message
from .rows import NEVER

FORMAT_VERSION = 1
_DEAD = ("withdrawn", "replaced")


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key} is {value!r}, not an integer")
    return value


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key} is {value!r}, not a string")
    return value


@dataclass
class LegacyHeader:
    """A format-1 header row (or, from :func:`resolve`, the union of several)."""

    namespace: str
    conversation_id: str
    owner: str | None
    created_at: int
    updated_at: int
    ttl: int | None
    metadata: dict[str, Any]
    message_count: int
    bytes: int
    base: int
    hkey: str
    rev: str
    state: str
    row_id: str

    @property
    def expires_at(self) -> int | None:
        """When it expires (ms), or None."""
        return self.updated_at + self.ttl * 1000 if self.ttl else None

    def is_live(self, now: int) -> bool:
        """True when not expired at ``now``."""
        expires_at = self.expires_at
        return now < (NEVER if expires_at is None else expires_at)

    @classmethod
    def from_data(cls, data: Mapping[str, Any], row_id: str) -> LegacyHeader:
        """Parse a format-1 header row; ValueError when it is not one."""
        owner = data.get("owner")
        metadata = data.get("metadata") or {}
        if owner is not None and not isinstance(owner, str):
            raise ValueError("owner is not a string")
        if not isinstance(metadata, Mapping):
            raise ValueError("metadata is not an object")
        ttl = data.get("ttl")
        return cls(
            namespace=_str(data, "namespace"),
            conversation_id=_str(data, "conversation_id"),
            owner=owner,
            created_at=_int(data, "created_at"),
            updated_at=_int(data, "updated_at"),
            ttl=(_int(data, "ttl") or None) if ttl is not None else None,
            metadata=dict(metadata),
            message_count=_int(data, "message_count"),
            bytes=_int(data, "bytes") if data.get("bytes") is not None else 0,
            base=_int(data, "base"),
            hkey=_str(data, "hkey"),
            rev=_str(data, "rev"),
            state=data.get("state") or "live",
            row_id=row_id,
        )

    def conversation_metadata(self, message_count: int | None = None) -> ConversationMetadata:
        """The public metadata (optionally with a message count measured on read)."""
        return ConversationMetadata(
            conversation_id=self.conversation_id,
            created_at=self.created_at,
            updated_at=self.updated_at,
            message_count=self.message_count if message_count is None else message_count,
            ttl=self.ttl,
            owner=self.owner,
            metadata=dict(self.metadata),
        )


def resolve(
    headers: list[LegacyHeader], now: int
) -> tuple[LegacyHeader | None, list[LegacyHeader]]:
    """``(view, rows)``: what 0.1 showed for a conversation's format-1 headers, and its rows.

    One live row is the view; several (racing creators) show their union:
    the primary's fields (lowest ``(hkey, row_id)``) with the lowest ``base``,
    summed counts and the newest ``updated_at``.
    """
    live = [h for h in headers if h.state not in _DEAD]
    if not live:
        return None, []
    group = [h for h in live if h.is_live(now)] or live
    primary = min(group, key=lambda h: (h.hkey, h.row_id))
    if len(group) == 1:
        return primary, live
    view = dataclasses.replace(
        primary,
        created_at=min(h.created_at for h in group),
        updated_at=max(h.updated_at for h in group),
        message_count=sum(h.message_count for h in group),
        bytes=sum(h.bytes for h in group),
        base=min(h.base for h in group),
    )
    return view, live


@dataclass
class LegacySegment:
    """A format-1 message row: the messages of one write."""

    at: int
    key: str
    items: list[Any]

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> LegacySegment:
        """Parse a format-1 message row; ValueError when it is not one."""
        items = data.get("messages")
        if not isinstance(items, list):
            raise ValueError("messages is not a list")
        return cls(at=_int(data, "at"), key=_str(data, "key"), items=items)


def ordered_messages(segments: Iterable[LegacySegment]) -> list[Message]:
    """The messages of format-1 rows, in order, each retried write once."""
    by_key: dict[str, LegacySegment] = {}
    for segment in segments:
        by_key.setdefault(segment.key, segment)
    items: list[Any] = []
    for key in sorted(by_key, key=lambda k: (by_key[k].at, k)):
        items.extend(by_key[key].items)
    try:
        return codec.decode_messages(codec.encode(items))
    except (codec.DecodeError, TypeError) as exc:
        raise ValueError(f"a message is malformed: {exc}") from exc


__all__ = ["FORMAT_VERSION", "LegacyHeader", "LegacySegment", "ordered_messages", "resolve"]
