"""What each store operation sends to Redis and how it reads the replies, without I/O.

Every operation is a *plan*: a generator that yields requests (a script to
run, a command, a ``MULTI``/``EXEC`` transaction, or a pipelined batch) and
receives their replies, then returns the operation's result. The sync store
and its native async twins drive the same plans (:mod:`.runner`,
:mod:`.async_`), so both send exactly the same commands and share every rule.

Messages travel as one JSON array per batch (``codec`` encodes each message
straight into it), with a string of 4-byte offsets and the ids joined by
``\\n`` (ids cannot contain control characters): three script arguments,
whatever the batch size.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Generator, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import msgspec

from ... import codec
from ...exceptions import BackendError, OwnerMismatchError
from ...types import Conversation, ConversationMetadata, Message, Page, StoreStats
from ..base import remaining_ttl
from . import scripts
from .layout import BucketKeys, Layout

#: Reply statuses of the conversation scripts (first element; see lib/conversation.lua).
OK, MISMATCH, MISSING, TAKEN = 0, 1, 2, 3
#: A load returns up to this many bytes of messages from its script; longer ones are read
#: with a plain ``GETRANGE`` in a transaction (Lua copies big strings slowly).
INLINE_BYTES = 32 * 1024
#: How often a long load retries its transaction when a write slipped in between.
LOAD_ATTEMPTS = 3
#: Conversations handled per script call by ``cleanup()`` and ``clear()``.
SWEEP_BATCH = 500
#: Batches of at least this many bytes reach save/create/put scripts through staging keys
#: (see :func:`_write`), since passing them as script arguments costs more than that.
STAGE_BYTES = 16 * 1024

_T = TypeVar("_T")

SAVE = scripts.load("save")
CREATE = scripts.load("create")
PUT = scripts.load("put")
APPEND = scripts.load("append")
POP = scripts.load("pop")
TRUNCATE = scripts.load("truncate")
DELETE = scripts.load("delete")
SET_TTL = scripts.load("set_ttl")
UPDATE_METADATA = scripts.load("update_metadata")
LOAD = scripts.load("load")
PAGE = scripts.load("page")
IDS = scripts.load("ids")
STATS = scripts.load("stats")
CLEANUP = scripts.load("cleanup")
CLEAR = scripts.load("clear")
ITER = scripts.load("iter")


class Eval(NamedTuple):
    """Run a script (``EVALSHA``, falling back to ``EVAL``)."""

    script: scripts.Script
    keys: Sequence[str]
    args: Sequence[Any]


class Call(NamedTuple):
    """Send one command."""

    args: tuple[Any, ...]


class Transaction(NamedTuple):
    """Send commands (and scripts) in ``MULTI``/``EXEC``; the reply is the list of their
    replies, or the error when the server refused the transaction as a whole (out of
    memory, for one). A command that failed inside raises its error."""

    commands: list[tuple[Any, ...] | Eval]


class Batch(NamedTuple):
    """Pipeline independent requests (one round trip); the reply is the list of replies."""

    requests: list[Eval | Call]


Request = Eval | Call | Transaction | Batch
Plan = Generator[Request, Any, _T]


def eval_args(request: Eval, *, by_sha: bool = True) -> tuple[Any, ...]:
    """The ``EVALSHA`` (or ``EVAL``) command of a script request."""
    script, keys, args = request
    if by_sha:
        return ("EVALSHA", script.sha, len(keys), *keys, *args)
    return ("EVAL", script.source, len(keys), *keys, *args)


def pack(commands: Sequence[tuple[Any, ...]], connection: Any) -> Any:
    """The commands in the Redis protocol: with hiredis (C) when it is installed, else with
    the connection's own packer. Strings are sent as UTF-8."""
    if _pack_command is None:
        return connection.pack_commands(commands)
    if len(commands) == 1:
        return [_pack_command(commands[0])]
    return [b"".join([_pack_command(command) for command in commands])]  # one write


def wrap_transaction(
    commands: Sequence[tuple[Any, ...] | Eval], *, by_sha: bool = True
) -> list[tuple[Any, ...]]:
    """``MULTI``, the commands (scripts as ``EVALSHA``, or ``EVAL``), ``EXEC``."""
    inner = [
        eval_args(command, by_sha=by_sha) if type(command) is Eval else command
        for command in commands
    ]
    return [("MULTI",), *inner, ("EXEC",)]  # type: ignore[list-item]


def unwrap_transaction(replies: list[Any]) -> Any:
    """The replies of a wrapped transaction's commands (see :class:`Transaction`)."""
    result = replies[-1]
    if isinstance(result, Exception):
        return result
    for reply in result:
        if isinstance(reply, Exception):
            raise reply
    return result


# -- encoding ----------------------------------------------------------------------------

try:
    from hiredis import pack_command as _pack_command
except ImportError:  # pragma: no cover - hiredis comes with the redis extra
    _pack_command = None

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


def _conversation(
    conversation_id: str, metadata: ConversationMetadata, joined: Any, last: int | None
) -> Conversation | None:
    if metadata.message_count and last != 0 and not joined:
        return None  # the messages expired a moment after the metadata was read
    return Conversation(
        conversation_id, decode_messages(conversation_id, joined, joined=True), metadata
    )


# -- conversation operations ---------------------------------------------------------------


def _args(
    layout: Layout, cid: str, now: int, owner: str | None
) -> tuple[Sequence[str], list[Any]]:
    keys = layout.conversation(cid)
    return keys[:8], [keys.owners, cid, now, acting(owner)]


def _write(
    layout: Layout,
    script: scripts.Script,
    cid: str,
    messages: Sequence[Message],
    *,
    now: int,
    owner: str | None,
    before: list[Any],
    after: list[Any],
) -> Plan[Any]:
    """Run a save/create/put script: its arguments are ``before``, the batch (JSON array,
    offsets, ids), ``after``. A big batch goes in a transaction instead, staged by plain
    commands that the script renames into place, so its bytes never pass through Lua."""
    keys, base = _args(layout, cid, now, owner)
    payload, offsets, ids = encode_batch(messages)
    if len(payload) < STAGE_BYTES:
        reply = yield Eval(script, keys, [*base, *before, payload, offsets, ids, *after])
        return reply
    stage = layout.stage(cid)
    replies = yield Transaction(
        [
            ("DEL", stage.ids),
            ("SET", stage.data, payload),
            ("SET", stage.offsets, offsets),
            ("SADD", stage.ids, *(message.id for message in messages)),
            Eval(script, [*keys, *stage], [*base, *before, "", "", "", *after]),
            ("DEL", *stage),  # what a refusing script left
        ]
    )
    if isinstance(replies, Exception):
        raise replies
    return replies[4]


def save(
    layout: Layout,
    cid: str,
    messages: list[Message],
    *,
    ttl: int | None,
    metadata: dict[str, Any] | None,
    owner: str | None,
    now: int,
    create: bool = False,
) -> Plan[Conversation | None]:
    """``save`` (or, with ``create``, ``create``): None when create found a live one."""
    reply = yield from _write(
        layout,
        CREATE if create else SAVE,
        cid,
        messages,
        now=now,
        owner=owner,
        before=[ttl or 0],
        after=metadata_args(metadata),
    )
    if reply[0] == MISMATCH:
        raise mismatch(cid)
    if reply[0] == TAKEN:
        return None
    return Conversation(cid, messages, parse_reply(cid, reply[1]))


def put(layout: Layout, conversation: Conversation, *, now: int) -> Plan[None]:
    """``put``: the conversation exactly as given."""
    meta = conversation.metadata
    yield from _write(
        layout,
        PUT,
        conversation.conversation_id,
        conversation.messages,
        now=now,
        owner=None,
        before=[meta.created_at, meta.updated_at, meta.ttl or 0, meta.owner or ""],
        after=metadata_args(meta.metadata),
    )


def append(
    layout: Layout,
    cid: str,
    messages: list[Message],
    *,
    default_ttl: int | None,
    update_timestamp: bool,
    owner: str | None,
    now: int,
) -> Plan[ConversationMetadata]:
    """``append``: the metadata after it."""
    keys, args = _args(layout, cid, now, owner)
    args += [default_ttl or 0, "1" if update_timestamp else "0", *encode_batch(messages)]
    reply = yield Eval(APPEND, keys, args)
    if reply[0] == MISMATCH:
        raise mismatch(cid)
    return parse_reply(cid, reply[1])


def pop(
    layout: Layout, cid: str, count: int, *, owner: str | None, now: int
) -> Plan[list[Message]]:
    """``pop``: the removed messages, oldest first."""
    keys, args = _args(layout, cid, now, owner)
    reply = yield Eval(POP, keys, [*args, count])
    if reply[0] != OK or not reply[1]:
        return []
    return decode_messages(cid, reply[1], joined=True)


def truncate(
    layout: Layout, cid: str, keep: int, *, owner: str | None, now: int
) -> Plan[tuple[ConversationMetadata, int] | None]:
    """``truncate``: the new metadata and how many messages were dropped."""
    keys, args = _args(layout, cid, now, owner)
    reply = yield Eval(TRUNCATE, keys, [*args, keep])
    if reply[0] != OK:
        return None
    return parse_reply(cid, reply[2]), int(reply[1])


def delete(layout: Layout, cid: str, *, owner: str | None, now: int) -> Plan[bool]:
    """``delete``: whether a live conversation was deleted."""
    keys, args = _args(layout, cid, now, owner)
    reply = yield Eval(DELETE, keys, args)
    return bool(reply)


def set_ttl(
    layout: Layout, cid: str, ttl: int | None, *, owner: str | None, now: int
) -> Plan[bool]:
    """``set_ttl``: False when missing."""
    keys, args = _args(layout, cid, now, owner)
    reply = yield Eval(SET_TTL, keys, [*args, ttl or 0])
    return bool(reply)


def update_metadata(
    layout: Layout,
    cid: str,
    metadata: dict[str, Any],
    *,
    replace: bool,
    owner: str | None,
    now: int,
) -> Plan[ConversationMetadata | None]:
    """``update_metadata``: the metadata after it, or None when missing."""
    keys, args = _args(layout, cid, now, owner)
    args += ["1" if replace else "0", *metadata_args(metadata)]
    reply = yield Eval(UPDATE_METADATA, keys, args)
    if reply[0] != OK:
        return None
    return parse_reply(cid, reply[1])


def load(
    layout: Layout, cid: str, *, last: int | None, owner: str | None, now: int
) -> Plan[Conversation | None]:
    """``load``: without an owner, a ``MULTI`` of ``HGETALL`` and ``GET``; else a script.

    Acting for an owner, the script decides (expiry, owner) before it reads
    any message. It returns short conversations (and ``last=N`` windows)
    itself; for longer ones it returns where the messages start, and a
    ``MULTI`` reads them with ``GETRANGE`` (Redis copies big strings into and
    out of Lua slowly), together with the meta hash: if its version is not the
    one the script saw, a write slipped in between and the load starts over.
    """
    keys = layout.conversation(cid)
    if owner is None and last is None:
        replies = yield Transaction([("HGETALL", keys.meta), ("GET", keys.data)])
        if not isinstance(replies, Exception):  # else refused (out of memory): the script
            return _whole(cid, replies[0], replies[1], now)
    script_keys, args = _args(layout, cid, now, owner)
    window = "" if last is None else last
    limit = INLINE_BYTES
    for attempt in range(LOAD_ATTEMPTS + 1):
        if attempt == LOAD_ATTEMPTS:
            limit = 2**62  # writes keep slipping in: read it all inside the script
        reply = yield Eval(LOAD, script_keys, [*args, window, limit])
        if reply[0] != OK:
            return None
        metadata = parse_reply(cid, reply[1])
        if len(reply) == 3:
            return _conversation(cid, metadata, reply[2], last)
        start, size = int(reply[3]), int(reply[4])
        seen = (_number(reply[5]), _number(reply[6]), size)
        replies = yield Transaction(
            [("HGETALL", keys.meta), ("GETRANGE", keys.data, start - 1, size - 1)]
        )
        if isinstance(replies, Exception):  # refused (out of memory): read inside the script
            limit = 2**62
            continue
        fields = fields_of(replies[0])
        data = replies[1]
        current = (fields.get("version"), fields.get("created_at"), fields.get("size"))
        if tuple(_number(value) for value in current) == seen:
            if not data:
                return None  # expired a moment after the script looked
            if start != 1:  # the window starts after a ',': make it an array
                data = b"[" + (data.encode() if isinstance(data, str) else data)[1:]
            return Conversation(cid, decode_messages(cid, data, joined=False), metadata)
    raise AssertionError("unreachable: the last attempt reads inside the script")


def _number(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _whole(cid: str, flat: Any, data: Any, now: int) -> Conversation | None:
    """A conversation from its meta hash and data string (read in one transaction)."""
    if not flat:
        return None
    fields = fields_of(flat)
    metadata = meta_from_fields(cid, fields)
    if metadata.is_expired(now):
        return None
    if not metadata.message_count:
        return Conversation(cid, [], metadata)
    if not data:
        return None  # the messages expired a moment before the metadata would have
    size = _number(fields.get("size"))
    if size is None:
        raise malformed(cid, ValueError("no size in the meta hash"))
    raw = data.encode() if isinstance(data, str) else data
    return Conversation(cid, decode_messages(cid, memoryview(raw)[:size], joined=False), metadata)


def ttl_fields(layout: Layout, cid: str) -> Call:
    """What ``exists`` and ``get_ttl`` read: one ``HMGET``."""
    return Call(("HMGET", layout.conversation(cid).meta, "updated_at", "ttl", "owner"))


def _live_ttl(
    cid: str, reply: Sequence[Any], owner: str | None, now: int
) -> ConversationMetadata | None:
    updated_at, ttl, found_owner = reply
    if updated_at is None:
        return None
    if owner is not None and (found_owner is None or text(found_owner) != owner):
        return None
    try:
        meta = ConversationMetadata(cid, 0, int(updated_at), ttl=int(ttl or 0) or None)
    except ValueError as exc:
        raise malformed(cid, exc) from exc
    return None if meta.is_expired(now) else meta


def exists(layout: Layout, cid: str, *, owner: str | None, now: int) -> Plan[bool]:
    """``exists``."""
    reply = yield ttl_fields(layout, cid)
    return _live_ttl(cid, reply, owner, now) is not None


def get_ttl(layout: Layout, cid: str, *, owner: str | None, now: int) -> Plan[int]:
    """``get_ttl``: seconds left, -1 for never, -2 when missing."""
    reply = yield ttl_fields(layout, cid)
    meta = _live_ttl(cid, reply, owner, now)
    return -2 if meta is None else remaining_ttl(meta, now)


# -- store-wide operations (every bucket) ----------------------------------------------------


def _bucket_eval(script: scripts.Script, bucket: BucketKeys, now: int, *args: Any) -> Eval:
    return Eval(script, bucket[:4], [bucket.prefix, now, *args])


def _each_bucket(layout: Layout, script: scripts.Script, now: int, *args: Any) -> Batch:
    return Batch([_bucket_eval(script, bucket, now, *args) for bucket in layout.buckets()])


def _newest_first(rows: list[tuple[float, Any]]) -> list[tuple[float, Any]]:
    """Merge rows of several buckets as one index would order them (score, then id bytes)."""

    def order(row: tuple[float, Any]) -> tuple[float, bytes]:
        member = row[1]
        return row[0], member if isinstance(member, bytes) else member.encode()

    return sorted(rows, key=order, reverse=True)


def list_page(
    layout: Layout,
    *,
    owner: str | None,
    prefix: str | None,
    limit: int,
    offset: int,
    now: int,
) -> Plan[Page]:
    """``list_conversations``: one script on a single bucket; with several, each bucket's
    top ``offset + limit`` rows, merged, then the page's meta hashes."""
    buckets = layout.buckets()
    filters = (owner or "", prefix or "")
    if len(buckets) == 1:
        reply = yield _bucket_eval(PAGE, buckets[0], now, *filters, offset, limit, "1")
        items = [
            parse_meta(text(cid), flat)
            for cid, flat in zip(reply[1::3], reply[3::3], strict=True)
            if flat
        ]
        return Page(items=items, total=max(0, int(reply[0])))
    replies = yield _each_bucket(layout, PAGE, now, *filters, 0, offset + limit, "0")
    total = sum(max(0, int(reply[0])) for reply in replies)
    rows = [
        (float(score), cid)
        for reply in replies
        for cid, score in zip(reply[1::2], reply[2::2], strict=True)
    ]
    page = [text(cid) for _, cid in _newest_first(rows)[offset : offset + limit]]
    if not page:
        return Page(items=[], total=total)
    metas = yield Batch([Call(("HGETALL", layout.conversation(cid).meta)) for cid in page])
    items = [parse_meta(cid, flat) for cid, flat in zip(page, metas, strict=True) if flat]
    return Page(items=items, total=total)


def list_ids(layout: Layout, *, now: int) -> Plan[list[str]]:
    """``list``: every live id, newest first."""
    replies = yield _each_bucket(layout, IDS, now)
    if len(replies) == 1:
        return [text(cid) for cid in replies[0][0::2]]
    rows = [
        (float(score), cid)
        for reply in replies
        for cid, score in zip(reply[0::2], reply[1::2], strict=True)
    ]
    return [text(cid) for _, cid in _newest_first(rows)]


def stats(layout: Layout, *, now: int) -> Plan[StoreStats]:
    """``get_stats``: sums over the buckets; reads no message."""
    replies = yield _each_bucket(layout, STATS, now)
    live, messages, expired, size = (sum(int(reply[i]) for reply in replies) for i in range(4))
    return StoreStats(
        total_conversations=max(0, live),
        total_messages=max(0, messages),
        expired_conversations=max(0, expired),
        storage_size=max(0, size),
    )


def sweep(
    layout: Layout, script: scripts.Script, *, now: int, batch: int | None = None
) -> Plan[tuple[int, int]]:
    """``cleanup`` (CLEANUP) or ``clear`` (CLEAR): batches on every bucket until done.

    Each script replies {removed, looked at, live among the removed}. Returns
    (conversations removed, live ones among them; cleanup: 0).
    """
    size = batch or SWEEP_BATCH
    pending = layout.buckets()
    removed = live = 0
    while pending:
        replies = yield Batch([_bucket_eval(script, bucket, now, size) for bucket in pending])
        still = []
        for bucket, reply in zip(pending, replies, strict=True):
            removed += int(reply[0])
            live += int(reply[2])
            if int(reply[1]) >= size:  # a full batch: there may be more
                still.append(bucket)
        pending = still
    return removed, live


def forget_layout(layout: Layout) -> Plan[None]:
    """After ``clear()``: drop the layout marker too, leaving no key behind."""
    yield Call(("DEL", layout.marker))


def iter_batch(
    layout: Layout,
    bucket: BucketKeys,
    *,
    after: str,
    count: int,
    owner: str | None,
    now: int,
) -> Plan[tuple[list[Conversation], str, bool]]:
    """The next ``count`` ids of a bucket, read whole in one transaction.

    Returns the conversations, the cursor for the next batch and whether the
    bucket is done.
    """
    reply = yield _bucket_eval(ITER, bucket, now, owner or "", after, count)
    cursor, scanned, ids = text(reply[0]), int(reply[1]), [text(cid) for cid in reply[2:]]
    done = scanned < count
    if not ids:
        return [], cursor, done
    commands: list[tuple[Any, ...]] = []
    for cid in ids:
        keys = layout.conversation(cid)
        commands += [("HGETALL", keys.meta), ("GET", keys.data)]
    replies = yield Transaction(commands)
    if isinstance(replies, Exception):
        raise replies
    found = []
    for cid, flat, data in zip(ids, replies[0::2], replies[1::2], strict=True):
        if not flat:
            continue
        metadata = parse_meta(cid, flat)
        if metadata.is_expired(now) or (owner is not None and metadata.owner != owner):
            continue
        size = int(fields_of(flat).get("size") or 0)
        if metadata.message_count and not data:
            continue
        raw = data.encode() if isinstance(data, str) else (data or b"")
        messages = decode_messages(cid, memoryview(raw)[:size], joined=False) if size else []
        found.append(Conversation(cid, messages, metadata))
    return found, cursor, done
