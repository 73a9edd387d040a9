"""What the ZeroDB backend keeps in its two tables, and the ordering keys of message rows.

Header table (``TABLE_NAME``), one row per conversation::

    {"v": 1, "namespace", "conversation_id", "owner", "created_at", "updated_at",
     "ttl", "expires_at", "live_until", "message_count", "bytes", "metadata",
     "base", "last", "rev", "revs", "hkey", "state"}

``expires_at`` is ``updated_at + ttl*1000`` (None without a TTL) and
``live_until`` the same as a number that is always set (far future without a
TTL), so expired headers can be found with one numeric filter. ``rev`` is a
fresh random token on every header write: updates are compare-and-set on it;
``revs`` remembers the last few, so a writer whose reply was lost can tell
whether its update landed even after others updated the header again.
``base`` is the ordering position where the current incarnation of the
conversation starts (message rows below it belong to a replaced or expired
incarnation and are ignored), ``last`` the highest position appended so
far, ``hkey`` the creation key, ``state`` ``live`` (or, briefly, ``withdrawn``
or ``replaced``: see :func:`resolve`).

Message table (``<TABLE_NAME>_messages``), one row per write (an append
call, or a save/put), holding that write's messages in order; with the
usual one-message append that is one row per message::

    {"v": 1, "namespace", "conversation_id", "at", "key", "count", "bytes",
     "messages": [{"id", "role", "content", "timestamp", "metadata"}, ...]}

``at`` (ms, a number the service can compare) is the row's position and
``key`` (``"<at:013d>-<writer>-<counter:010d>"``) makes it unique: rows sort
by ``(at, key)``, and a retried insert that landed twice is recognised by its
key. Every store instance is one writer with a random id whose positions
never decrease, so each writer's messages keep their order.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..clock import now_ms
from ..types import ConversationMetadata, Message

FORMAT_VERSION = 1
#: ``live_until`` of a conversation that never expires (year 2286, exact in a float).
NEVER = 9_999_999_999_999
#: Header states: ``live``; ``withdrawn`` by a creator that lost a creation race;
#: ``replaced`` by a save/put that found it next to the header it wrote.
LIVE, WITHDRAWN, REPLACED = "live", "withdrawn", "replaced"
DEAD_STATES = (WITHDRAWN, REPLACED)
#: How many recent revisions a header remembers (to tell whether a lost update landed).
REV_HISTORY = 16


def new_rev() -> str:
    """A fresh header revision token."""
    return uuid.uuid4().hex[:16]


def content_bytes(messages: Iterable[Message]) -> int:
    """UTF-8 size of the messages' contents (what ``storage_size`` adds up)."""
    return sum(len(m.content.encode()) for m in messages)


def _int(data: Mapping[str, Any], key: str, *, optional: bool = False) -> Any:
    value = data.get(key)
    if value is None and optional:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key} is {value!r}, not an integer")
    return value


def _str(data: Mapping[str, Any], key: str, *, optional: bool = False) -> Any:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key} is {value!r}, not a string")
    return value


def _dict(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{key} is {type(value).__name__}, not an object")
    return dict(value)


@dataclass
class Header:
    """One conversation's header row."""

    namespace: str
    conversation_id: str
    created_at: int
    updated_at: int
    ttl: int | None
    owner: str | None
    metadata: dict[str, Any]
    message_count: int
    bytes: int
    base: int
    last: int
    rev: str
    hkey: str
    state: str = LIVE
    revs: list[str] = field(default_factory=list)
    row_id: str = ""

    @property
    def expires_at(self) -> int | None:
        """When it expires (ms), or None."""
        return self.updated_at + self.ttl * 1000 if self.ttl else None

    @property
    def live_until(self) -> int:
        """``expires_at``, or :data:`NEVER`."""
        expires_at = self.expires_at
        return NEVER if expires_at is None else expires_at

    def is_live(self, now: int) -> bool:
        """True when not expired at ``now``."""
        return now < self.live_until

    def evolve(self, **changes: Any) -> Header:
        """A copy with ``changes`` and a fresh ``rev`` (same row)."""
        rev = new_rev()
        revs = [*self.revs, rev][-REV_HISTORY:]
        return dataclasses.replace(self, rev=rev, revs=revs, **changes)

    def saw(self, rev: str) -> bool:
        """True when this header is at revision ``rev`` or has been since."""
        return rev == self.rev or rev in self.revs

    def to_data(self) -> dict[str, Any]:
        """The ``row_data`` to store."""
        return {
            "v": FORMAT_VERSION,
            "namespace": self.namespace,
            "conversation_id": self.conversation_id,
            "owner": self.owner,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "ttl": self.ttl,
            "expires_at": self.expires_at,
            "live_until": self.live_until,
            "message_count": self.message_count,
            "bytes": self.bytes,
            "metadata": self.metadata,
            "base": self.base,
            "last": self.last,
            "rev": self.rev,
            "revs": list(self.revs),
            "hkey": self.hkey,
            "state": self.state,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any], row_id: str) -> Header:
        """Parse a header row; ValueError when it is not one."""
        return cls(
            namespace=_str(data, "namespace"),
            conversation_id=_str(data, "conversation_id"),
            created_at=_int(data, "created_at"),
            updated_at=_int(data, "updated_at"),
            ttl=_int(data, "ttl", optional=True) or None,
            owner=_str(data, "owner", optional=True),
            metadata=_dict(data, "metadata"),
            message_count=_int(data, "message_count"),
            bytes=_int(data, "bytes", optional=True) or 0,
            base=_int(data, "base"),
            last=_int(data, "last"),
            rev=_str(data, "rev"),
            hkey=_str(data, "hkey"),
            state=_str(data, "state", optional=True) or LIVE,
            revs=[str(r) for r in data.get("revs") or [] if isinstance(r, str)],
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


def resolve(headers: list[Header], now: int) -> tuple[Header | None, Header | None]:
    """``(view, primary)`` of a conversation's header rows at ``now``.

    Normally there is one live row: it is both. Several live rows exist for a
    moment while creators that raced settle it, and for good after a crash in
    that moment. Writers then all update the same one, the *primary* (lowest
    ``(hkey, row_id)`` among the unexpired rows, else among all), and readers
    see the union: the primary's fields with the lowest ``base``, the summed
    counts and the newest ``updated_at``, so no message is hidden or lost.
    """
    live = [h for h in headers if h.state not in DEAD_STATES]
    if not live:
        return None, None
    group = [h for h in live if h.is_live(now)] or live
    primary = min(group, key=lambda h: (h.hkey, h.row_id))
    if len(group) == 1:
        return primary, primary
    view = dataclasses.replace(
        primary,
        created_at=min(h.created_at for h in group),
        updated_at=max(h.updated_at for h in group),
        message_count=sum(h.message_count for h in group),
        bytes=sum(h.bytes for h in group),
        base=min(h.base for h in group),
        last=max(h.last for h in group),
    )
    return view, primary


@dataclass
class Segment:
    """One message row: the messages one write added, at one position."""

    namespace: str
    conversation_id: str
    at: int
    key: str
    messages: list[Message]
    row_id: str = ""
    nbytes: int = field(default=0)

    def to_data(self) -> dict[str, Any]:
        """The ``row_data`` to store."""
        return {
            "v": FORMAT_VERSION,
            "namespace": self.namespace,
            "conversation_id": self.conversation_id,
            "at": self.at,
            "key": self.key,
            "count": len(self.messages),
            "bytes": self.nbytes or content_bytes(self.messages),
            "messages": [m.to_dict() for m in self.messages],
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any], row_id: str) -> Segment:
        """Parse a message row; ValueError when it is not one."""
        items = data.get("messages")
        if not isinstance(items, list):
            raise ValueError("messages is not a list")
        messages = []
        for item in items:
            if not isinstance(item, Mapping):
                raise ValueError("a message is not an object")
            messages.append(
                Message(
                    role=_str(item, "role"),
                    content=_str(item, "content"),
                    id=_str(item, "id"),
                    timestamp=_int(item, "timestamp"),
                    metadata=_dict(item, "metadata"),
                )
            )
        return cls(
            namespace=_str(data, "namespace"),
            conversation_id=_str(data, "conversation_id"),
            at=_int(data, "at"),
            key=_str(data, "key"),
            messages=messages,
            row_id=row_id,
            nbytes=_int(data, "bytes", optional=True) or 0,
        )


def ordered_messages(segments: Iterable[Segment], base: int) -> list[Message]:
    """The messages of the current incarnation, in order, each retried write once."""
    by_key: dict[str, Segment] = {}
    for segment in segments:
        if segment.at >= base:
            by_key.setdefault(segment.key, segment)
    messages: list[Message] = []
    for key in sorted(by_key, key=lambda k: (by_key[k].at, k)):
        messages.extend(by_key[key].messages)
    return messages


class KeyMaker:
    """Positions and unique keys for one writer; positions never go down."""

    def __init__(self) -> None:
        self.writer = uuid.uuid4().hex[:16]
        self._lock = threading.Lock()
        self._last_at = 0
        self._counter = 0

    def next(self, min_at: int = 0) -> tuple[int, str]:
        """A position ``>= max(now, min_at)`` and its unique key."""
        with self._lock:
            at = max(now_ms(), min_at, self._last_at)
            self._last_at = at
            self._counter += 1
            return at, f"{at:013d}-{self.writer}-{self._counter:010d}"


__all__ = [
    "DEAD_STATES",
    "LIVE",
    "NEVER",
    "REPLACED",
    "WITHDRAWN",
    "Header",
    "KeyMaker",
    "Segment",
    "content_bytes",
    "new_rev",
    "ordered_messages",
    "resolve",
]
