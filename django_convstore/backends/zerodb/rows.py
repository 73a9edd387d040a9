"""What the ZeroDB backend keeps in its two tables (format 2).

Header table (``TABLE_NAME``), one row per conversation::

    {"v": 2, "namespace", "conversation_id", "hk", "state", "owner", "created_at",
     "updated_at", "ttl", "expires_at", "live_until", "metadata", "message_count",
     "base", "end", "hwm", "gen", "bulk", "bulk_n", "bulk_live", "pend", "bytes",
     "rev", "revs", "t", "turn"}

* ``hk`` names the header row; every message row carries the ``hk`` of the
  header it belongs to, so rows of a deleted conversation can never show up
  in a new one with the same id.
* ``state``: ``new`` while its creator checks for rivals, then ``live``;
  ``deleted`` (a tombstone until the rows are gone) and ``withdrawn`` (a
  creator that lost) count as missing.
* Messages sit at integer positions: the conversation is ``[base, end)``
  (``message_count = end - base``); ``hwm`` is the highest ``end`` ever, where
  the next incarnation (a ``save``, or a restart after expiry) begins.
* ``bulk``/``bulk_n``/``bulk_live``: the write (``save``/``put``/``create``)
  whose messages open the incarnation, stored in a few chunk rows; the first
  ``bulk_live`` of them are still part of the conversation (pops and
  truncates can cut into them). Every later message has a row of its own at
  ``pos >= base + bulk_live``.
* ``pend``: the last few committed appends (``[txn, n, delta, gen, mids]``):
  their rows are trusted because the header names them, until a later write
  stamps them (``c: 1``) and drops the entry. ``delta`` moves rows that were
  inserted before a concurrent append took their positions (rows are never
  rewritten to change position; readers add ``delta``), ``gen`` is their
  generation and ``mids`` their message ids (None when there are many), so a
  writer that lost a compare-and-set can re-check its ids without a query.
* ``gen`` grows with every write that removes messages (``save``, ``pop``,
  ``truncate``, restart); when two trusted rows claim one position the one of
  the higher generation wins, so a removed row that was not deleted yet (or
  that a late request re-created) never comes back.
* ``rev`` is a fresh token on every header write: updates are compare-and-set
  on it; ``revs`` remembers the last few so a writer whose reply was lost can
  tell whether its update landed.
* ``turn``: the token of a write that lost too many compare-and-sets in a
  row; others let it go first (see ``protocol.Contention``).

Message table (``<TABLE_NAME>_messages``)::

    {"v": 2, "namespace", "conversation_id", "hk", "kind": "m", "txn", "pos", "gen",
     "mid", "t", "m": "<message JSON>", "b", "c"?}                   one appended message
    {"v": 2, "namespace", "conversation_id", "hk", "kind": "bulk", "txn", "off", "n",
     "end_off", "ids", "ms": "<JSON array of messages>", "bs"}       a chunk of a bulk write

``m``/``ms`` hold the messages exactly as :mod:`django_convstore.codec`
encodes them (every field, content parts and tool calls included), as JSON
text. ``t`` is when the row was inserted (client clock): uncommitted rows
older than :data:`PENDING_GRACE_MS` are garbage that ``cleanup()`` removes.
Rows of format 1 (django-convstore 0.1) are read by :mod:`.legacy`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ... import codec
from ...types import ConversationMetadata, Message

FORMAT_VERSION = 2
#: ``live_until`` of a conversation that never expires (year 2286, exact in a float).
NEVER = 9_999_999_999_999
NEW, LIVE, DELETED, WITHDRAWN = "new", "live", "deleted", "withdrawn"
#: How many recent revisions a header remembers (to tell whether a lost update landed).
REV_HISTORY = 32
#: ``pend`` holds this many entries; a write that would exceed it stamps the oldest
#: :data:`PEND_STAMP` entries first, on its first try. A write that already lost a
#: compare-and-set leaves that to others (its stamps may be wasted again) until ``pend``
#: reaches :data:`PEND_LIMIT`.
PEND_MAX = 16
PEND_STAMP = 8
PEND_LIMIT = 64
#: An entry keeps its message ids when it has at most this many.
PEND_IDS = 16
#: A bulk write is stored in chunks of at most this many messages / bytes.
CHUNK_MESSAGES = 100
CHUNK_BYTES = 256 * 1024
#: Uncommitted message rows younger than this may still belong to a writer at work.
PENDING_GRACE_MS = 3_600_000
#: A ``new`` header older than this (relative to a rival's) belongs to a creator that died.
STALE_NEW_MS = 60_000
KIND_MESSAGE, KIND_BULK = "m", "bulk"


def new_token() -> str:
    """A fresh random token (revisions, transactions)."""
    return os.urandom(8).hex()


def new_hk(now: int) -> str:
    """A fresh header key: creation time first, so older headers sort first."""
    return f"{now:013d}-{os.urandom(6).hex()}"


def _int(data: Mapping[str, Any], key: str, *, default: int | None = None) -> int:
    value = data.get(key)
    if value is None and default is not None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key} is {value!r}, not an integer")
    return value


def _opt_int(data: Mapping[str, Any], key: str) -> int | None:
    return None if data.get(key) is None else _int(data, key)


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key} is {value!r}, not a string")
    return value


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    return None if data.get(key) is None else _str(data, key)


def _dict(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{key} is {type(value).__name__}, not an object")
    return dict(value)


def _strings(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{what} is not a list of strings")
    return list(value)


@dataclass(frozen=True)
class Pend:
    """A committed append whose rows are trusted because the header names them."""

    txn: str
    n: int
    delta: int
    gen: int
    mids: tuple[str, ...] | None

    def to_data(self) -> list[Any]:
        """The JSON form stored in the header."""
        mids = None if self.mids is None else list(self.mids)
        return [self.txn, self.n, self.delta, self.gen, mids]

    @classmethod
    def from_data(cls, item: Any) -> Pend:
        """Parse one ``pend`` entry; ValueError when it is not one."""
        if not isinstance(item, list) or len(item) != 5:
            raise ValueError("a pend entry is not a list of 5")
        txn, n, delta, gen, mids = item
        values = {"n": n, "delta": delta, "gen": gen}
        numbers = {key: _int(values, key) for key in values}
        if not isinstance(txn, str):
            raise ValueError("a pend entry has no transaction token")
        return cls(
            txn=txn,
            n=numbers["n"],
            delta=numbers["delta"],
            gen=numbers["gen"],
            mids=None if mids is None else tuple(_strings(mids, "pend mids")),
        )


@dataclass
class Header:
    """One conversation's header row (format 2)."""

    namespace: str
    conversation_id: str
    hk: str
    state: str
    owner: str | None
    created_at: int
    updated_at: int
    ttl: int | None
    metadata: dict[str, Any]
    base: int = 0
    end: int = 0
    hwm: int = 0
    gen: int = 0
    bulk: str | None = None
    bulk_n: int = 0
    bulk_live: int = 0
    pend: tuple[Pend, ...] = ()
    bytes: int = 0
    rev: str = field(default_factory=new_token)
    revs: tuple[str, ...] = ()
    t: int = 0
    turn: str | None = None
    row_id: str = ""

    @property
    def message_count(self) -> int:
        """How many messages the conversation holds."""
        return self.end - self.base

    @property
    def singles_from(self) -> int:
        """The first position held by a message row of its own (not by the bulk write)."""
        return self.base + self.bulk_live

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
        """True when it is a live conversation that has not expired at ``now``."""
        return self.state == LIVE and now < self.live_until

    def evolve(self, **changes: Any) -> Header:
        """A copy with ``changes`` and a fresh ``rev`` (same row)."""
        rev = new_token()
        revs = (*self.revs, rev)[-REV_HISTORY:]
        return dataclasses.replace(self, rev=rev, revs=revs, **changes)

    def saw(self, rev: str) -> bool:
        """True when this header is at revision ``rev`` or has been since."""
        return rev == self.rev or rev in self.revs

    def pend_map(self) -> dict[str, Pend]:
        """The ``pend`` entries by transaction token."""
        return {entry.txn: entry for entry in self.pend}

    def to_data(self) -> dict[str, Any]:
        """The ``row_data`` to store."""
        return {
            "v": FORMAT_VERSION,
            "namespace": self.namespace,
            "conversation_id": self.conversation_id,
            "hk": self.hk,
            "state": self.state,
            "owner": self.owner,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "ttl": self.ttl,
            "expires_at": self.expires_at,
            "live_until": self.live_until,
            "metadata": self.metadata,
            "message_count": self.message_count,
            "base": self.base,
            "end": self.end,
            "hwm": self.hwm,
            "gen": self.gen,
            "bulk": self.bulk,
            "bulk_n": self.bulk_n,
            "bulk_live": self.bulk_live,
            "pend": [entry.to_data() for entry in self.pend],
            "bytes": self.bytes,
            "rev": self.rev,
            "revs": list(self.revs),
            "t": self.t,
            "turn": self.turn,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any], row_id: str) -> Header:
        """Parse a format-2 header row; ValueError when it is not one."""
        pend = data.get("pend") or []
        if not isinstance(pend, list):
            raise ValueError("pend is not a list")
        state = _str(data, "state")
        if state not in (NEW, LIVE, DELETED, WITHDRAWN):
            raise ValueError(f"unknown state {state!r}")
        return cls(
            namespace=_str(data, "namespace"),
            conversation_id=_str(data, "conversation_id"),
            hk=_str(data, "hk"),
            state=state,
            owner=_opt_str(data, "owner"),
            created_at=_int(data, "created_at"),
            updated_at=_int(data, "updated_at"),
            ttl=_opt_int(data, "ttl") or None,
            metadata=_dict(data, "metadata"),
            base=_int(data, "base"),
            end=_int(data, "end"),
            hwm=_int(data, "hwm"),
            gen=_int(data, "gen"),
            bulk=_opt_str(data, "bulk"),
            bulk_n=_int(data, "bulk_n", default=0),
            bulk_live=_int(data, "bulk_live", default=0),
            pend=tuple(Pend.from_data(item) for item in pend),
            bytes=_int(data, "bytes", default=0),
            rev=_str(data, "rev"),
            revs=tuple(_strings(data.get("revs") or [], "revs")),
            t=_int(data, "t", default=0),
            turn=_opt_str(data, "turn"),
            row_id=row_id,
        )

    def conversation_metadata(self) -> ConversationMetadata:
        """The public metadata."""
        return ConversationMetadata(
            conversation_id=self.conversation_id,
            created_at=self.created_at,
            updated_at=self.updated_at,
            message_count=self.message_count,
            ttl=self.ttl,
            owner=self.owner,
            metadata=dict(self.metadata),
        )


@dataclass
class MessageRow:
    """One appended message's row, as read back."""

    row_id: str
    txn: str
    pos: int
    gen: int
    mid: str
    stamped: bool
    encoded: bytes
    nbytes: int
    t: int

    @classmethod
    def from_data(cls, data: Mapping[str, Any], row_id: str) -> MessageRow:
        """Parse a message row; ValueError when it is not one."""
        return cls(
            row_id=row_id,
            txn=_str(data, "txn"),
            pos=_int(data, "pos"),
            gen=_int(data, "gen"),
            mid=_str(data, "mid"),
            stamped=data.get("c") == 1,
            encoded=_str(data, "m").encode(),
            nbytes=_int(data, "b", default=0),
            t=_int(data, "t", default=0),
        )


def message_row_data(
    namespace: str,
    conversation_id: str,
    *,
    hk: str,
    txn: str,
    pos: int,
    gen: int,
    message: Message,
    encoded: bytes,
    now: int,
) -> dict[str, Any]:
    """The ``row_data`` of one appended message (uncommitted until a header names it)."""
    return {
        "v": FORMAT_VERSION,
        "namespace": namespace,
        "conversation_id": conversation_id,
        "hk": hk,
        "kind": KIND_MESSAGE,
        "txn": txn,
        "pos": pos,
        "gen": gen,
        "mid": message.id,
        "t": now,
        "m": encoded.decode(),
        "b": len(encoded),
    }


@dataclass
class BulkChunk:
    """One chunk of a bulk write, as read back."""

    row_id: str
    txn: str
    off: int
    n: int
    ids: list[str]
    encoded: bytes
    sizes: list[int]

    @classmethod
    def from_data(cls, data: Mapping[str, Any], row_id: str) -> BulkChunk:
        """Parse a bulk chunk row; ValueError when it is not one."""
        ids = _strings(data.get("ids"), "ids")
        sizes = data.get("bs")
        if not isinstance(sizes, list) or len(sizes) != len(ids):
            raise ValueError("bs does not match ids")
        chunk = cls(
            row_id=row_id,
            txn=_str(data, "txn"),
            off=_int(data, "off"),
            n=_int(data, "n"),
            ids=ids,
            encoded=_str(data, "ms").encode(),
            sizes=[_int({"b": size}, "b") for size in sizes],
        )
        if chunk.n != len(ids):
            raise ValueError("n does not match ids")
        return chunk

    def messages(self) -> list[Message]:
        """The chunk's messages."""
        return codec.decode_messages(self.encoded)


def split_bulk(encoded: Sequence[bytes]) -> list[tuple[int, int]]:
    """``(offset, count)`` of each chunk of a bulk write of these encoded messages."""
    chunks: list[tuple[int, int]] = []
    start = size = 0
    for index, blob in enumerate(encoded):
        count = index - start
        if count and (count >= CHUNK_MESSAGES or size + len(blob) > CHUNK_BYTES):
            chunks.append((start, count))
            start, size = index, 0
        size += len(blob)
    if len(encoded) > start:
        chunks.append((start, len(encoded) - start))
    return chunks


def bulk_chunk_data(
    namespace: str,
    conversation_id: str,
    *,
    hk: str,
    txn: str,
    off: int,
    messages: Sequence[Message],
    encoded: Sequence[bytes],
    now: int,
) -> dict[str, Any]:
    """The ``row_data`` of one chunk of a bulk write."""
    return {
        "v": FORMAT_VERSION,
        "namespace": namespace,
        "conversation_id": conversation_id,
        "hk": hk,
        "kind": KIND_BULK,
        "txn": txn,
        "off": off,
        "n": len(messages),
        "end_off": off + len(messages),
        "ids": [m.id for m in messages],
        "ms": (b"[" + b",".join(encoded) + b"]").decode(),
        "bs": [len(blob) for blob in encoded],
        "t": now,
    }


def encode_all(messages: Iterable[Message]) -> list[bytes]:
    """Each message's JSON, as stored."""
    return [codec.encode_message(m) for m in messages]


#: Table schemas sent when a table is created (the service treats them as metadata; the
#: test server builds indexes from ``indexes``: a name is a hash index, a pair
#: ``[a, b]`` orders the rows of each ``a`` by ``b``).
HEADER_SCHEMA = {
    "fields": {
        "namespace": "string",
        "conversation_id": "string",
        "owner": "string",
        "state": "string",
        "updated_at": "number",
        "live_until": "number",
        "rev": "string",
    },
    "indexes": ["namespace", "conversation_id", "owner", "live_until"],
}
MESSAGE_SCHEMA = {
    "fields": {
        "namespace": "string",
        "conversation_id": "string",
        "hk": "string",
        "txn": "string",
        "mid": "string",
        "pos": "number",
    },
    "indexes": ["namespace", "conversation_id", "hk", "txn", "mid", ["hk", "pos"]],
}

__all__ = [
    "CHUNK_BYTES",
    "CHUNK_MESSAGES",
    "DELETED",
    "FORMAT_VERSION",
    "HEADER_SCHEMA",
    "KIND_BULK",
    "KIND_MESSAGE",
    "LIVE",
    "MESSAGE_SCHEMA",
    "NEVER",
    "NEW",
    "PENDING_GRACE_MS",
    "PEND_IDS",
    "PEND_LIMIT",
    "PEND_MAX",
    "PEND_STAMP",
    "STALE_NEW_MS",
    "WITHDRAWN",
    "BulkChunk",
    "Header",
    "MessageRow",
    "Pend",
    "bulk_chunk_data",
    "encode_all",
    "message_row_data",
    "new_hk",
    "new_token",
    "split_bulk",
]
