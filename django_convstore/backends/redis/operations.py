"""What each store operation sends to Redis and how it reads the replies, without I/O.

Every operation is a *plan*: a generator that yields requests (a script to
run, a command, a ``MULTI``/``EXEC`` transaction, or a pipelined batch; see
:mod:`.requests`) and receives their replies, then returns the operation's
result. The sync store and its native async twins drive the same plans
(:mod:`.runner`, :mod:`.async_`), so both send exactly the same commands and
share every rule. Values are encoded and replies parsed by :mod:`.wire`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...types import Conversation, ConversationMetadata, Message, Page, StoreStats
from ..base import remaining_ttl
from . import scripts
from .layout import BucketKeys, Layout
from .requests import Batch, Call, Eval, Plan, Transaction
from .wire import (
    acting,
    decode_messages,
    encode_batch,
    fields_of,
    malformed,
    meta_from_fields,
    metadata_args,
    mismatch,
    parse_meta,
    parse_reply,
    text,
)

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


# -- encoding ----------------------------------------------------------------------------


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
    """``list_conversations``: one script on a single bucket; with several, a two-phase
    top-k merge over the buckets, then the page's meta hashes."""
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
    # Two phases (a threshold top-k merge): a few rows of every bucket, then, from the
    # buckets that may hold more rows above the cutoff those rows imply, the rest of
    # their share - only rows at or above the cutoff.
    want = offset + limit
    first = min(want, max(1, -(-2 * want // len(buckets))))
    replies = yield _each_bucket(layout, PAGE, now, *filters, 0, first, "0")
    total = sum(max(0, int(reply[0])) for reply in replies)
    per_bucket = [
        [(float(score), cid) for cid, score in zip(reply[1::2], reply[2::2], strict=True)]
        for reply in replies
    ]
    rows = _newest_first([row for bucket_rows in per_bucket for row in bucket_rows])
    cutoff = rows[want - 1][0] if len(rows) >= want else None
    more = [
        index
        for index, bucket_rows in enumerate(per_bucket)
        if len(bucket_rows) == first
        and first < want
        and (cutoff is None or bucket_rows[-1][0] >= cutoff)
    ]
    if more:
        floor = "" if cutoff is None else repr(cutoff)
        extra = yield Batch(
            [
                _bucket_eval(PAGE, buckets[i], now, *filters, first, want - first, "0", floor)
                for i in more
            ]
        )
        seen = {cid for _, cid in rows}  # a write between the phases may shift ranks
        rows = _newest_first(
            rows
            + [
                (float(score), cid)
                for reply in extra
                for cid, score in zip(reply[1::2], reply[2::2], strict=True)
                if cid not in seen
            ]
        )
    page = [text(cid) for _, cid in rows[offset : offset + limit]]
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
