"""Conversations written by django-convstore 0.1, and their one-command upgrade.

0.1 kept every conversation under ``<KEY_PREFIX>:<NAMESPACE>`` in one slot per
conversation and one set of store-wide indexes::

    <base>:{<id>}:meta    hash: created_at, updated_at, ttl, message_count, owner, m:<key>
    <base>:{<id>}:msgs    string: the messages' JSON objects joined by ","
    <base>:{<id>}:offs    string: 10-digit offsets
    <base>:index  <base>:expiry  <base>:ids  <base>:ledger  <base>:totals
    <base>:owner:{<owner>}

(``<id>`` and ``<owner>`` with ``%``, ``{`` and ``}`` percent-escaped.) The
0.2 layout (:mod:`.layout`) uses other key names, so 0.1 data is invisible
to a 0.2 store. To make that loud instead of silent, a store checks once per
connection pool (:func:`check_layout`) that the data under its prefix is of
its own layout and bucket count, and refuses to work on 0.1 data until
``manage.py convstore_redis_upgrade`` (:func:`upgrade`) has moved it:
every conversation is read whole, written in the new layout exactly as it
was (ids, messages, timestamps, TTL, owner, metadata) and only then removed
from the old keys, so the command can be stopped and run again at any time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ... import codec, validation
from ...clock import now_ms
from ...exceptions import BackendError, ConvStoreError
from ...types import Conversation, ConversationMetadata
from . import operations
from .layout import Layout
from .requests import Batch, Call, Plan, Request, Transaction
from .wire import decode_messages, fields_of, text

if TYPE_CHECKING:
    from . import RedisStore

#: The store-wide keys of the 0.1 layout (besides the per-owner indexes).
STORE_KEYS = ("index", "expiry", "ids", "ledger", "totals")


def legacy_base(layout: Layout) -> str:
    """``<KEY_PREFIX>:<NAMESPACE>``, under which 0.1 kept everything (as 0.2 does, with
    other key names)."""
    return layout.base


def _escape(value: str) -> str:
    return value.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def legacy_keys(layout: Layout, conversation_id: str) -> tuple[str, str, str]:
    """The 0.1 ``(meta, msgs, offs)`` keys of a conversation."""
    tag = f"{legacy_base(layout)}:{{{_escape(conversation_id)}}}"
    return f"{tag}:meta", f"{tag}:msgs", f"{tag}:offs"


def check_layout(layout: Layout, alias: str) -> Plan[None]:
    """Fail clearly on 0.1 data, or on data written with another ``INDEX_SHARDS``.

    Marks a store that has no data yet with this layout.
    """
    marker, legacy = yield Batch(
        [Call(("GET", layout.marker)), Call(("EXISTS", f"{legacy_base(layout)}:ids"))]
    )
    if legacy:
        raise BackendError(
            f"redis store {alias!r}: {legacy_base(layout)} holds conversations written by "
            f"django-convstore 0.1, which this version stores differently; move them once with "
            f"`python manage.py convstore_redis_upgrade --store {alias}`.",
            detail="legacy-layout",
        )
    if marker is None:
        yield Call(("SET", layout.marker, layout.marker_value, "NX"))
    elif text(marker) != layout.marker_value:
        raise BackendError(
            f"redis store {alias!r}: the conversations under {layout.base} were written "
            f"with {text(marker)!r}, but this store is configured with "
            f"{layout.marker_value!r} (OPTIONS['INDEX_SHARDS']); changing the number of "
            "buckets needs a copy into a new NAMESPACE with convstore_migrate.",
            detail="layout-mismatch",
        )


@dataclass
class UpgradeReport:
    """What :func:`upgrade` did (or, with ``dry_run``, would do)."""

    upgraded: int = 0
    #: 0.1 conversations that had expired: dropped, as ``cleanup()`` would have.
    expired: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def _conversation(cid: str, meta: Any, msgs: Any) -> Conversation:
    fields = fields_of(meta)
    custom = {key[2:]: codec.decode(value) for key, value in fields.items() if key[:2] == "m:"}
    owner = fields.get("owner")
    messages = decode_messages(cid, msgs or b"", joined=True)
    metadata = ConversationMetadata(
        conversation_id=cid,
        created_at=int(fields["created_at"]),
        updated_at=int(fields["updated_at"]),
        message_count=len(messages),
        ttl=int(fields.get("ttl") or 0) or None,
        owner=text(owner) if owner else None,
        metadata=custom,
    )
    return validation.validate_conversation(Conversation(cid, messages, metadata))


def _forget(layout: Layout, cid: str, meta: Any) -> list[tuple[Any, ...]]:
    """Commands removing a 0.1 conversation's keys and index entries."""
    base = legacy_base(layout)
    owner = fields_of(meta or {}).get("owner")
    commands: list[tuple[Any, ...]] = [("DEL", *legacy_keys(layout, cid))]
    commands += [("ZREM", f"{base}:{name}", cid) for name in ("index", "expiry", "ids")]
    commands.append(("HDEL", f"{base}:ledger", cid))
    if owner:
        commands.append(("ZREM", f"{base}:owner:{{{_escape(text(owner))}}}", cid))
    return commands


def upgrade(
    store: RedisStore,
    *,
    batch_size: int = 100,
    dry_run: bool = False,
    on_progress: Callable[[UpgradeReport], None] | None = None,
) -> UpgradeReport:
    """Move every 0.1 conversation of ``store``'s prefix and namespace to its layout.

    Each conversation is written with the store's ``put`` script, then its old
    keys are deleted; conversations that cannot be read are reported in
    ``failed`` and left in place. Once nothing is left, the old store-wide keys
    are deleted and the store is marked with its layout. Safe to re-run.
    """
    layout = store.layout
    base = legacy_base(layout)
    report = UpgradeReport()
    after = "-"
    while True:
        ids = [
            text(cid)
            for cid in store._run(
                _one(Call(("ZRANGEBYLEX", f"{base}:ids", after, "+", "LIMIT", 0, batch_size))),
                check=False,
            )
        ]
        if not ids:
            break
        after = f"({ids[-1]}"
        commands: list[tuple[Any, ...]] = []
        for cid in ids:
            meta_key, msgs_key, _ = legacy_keys(layout, cid)
            commands += [("HGETALL", meta_key), ("GET", msgs_key)]
        replies = store._run(_one(Transaction(commands)), check=False)
        now = now_ms()
        for cid, meta, msgs in zip(ids, replies[0::2], replies[1::2], strict=True):
            try:
                conversation = _conversation(cid, meta, msgs) if meta else None
            except (KeyError, ValueError, TypeError, ConvStoreError, codec.DecodeError) as exc:
                report.failed[cid] = f"{type(exc).__name__}: {exc}"
                continue
            if conversation is None or conversation.metadata.is_expired(now):
                report.expired += 1
            else:
                report.upgraded += 1
            if dry_run:
                continue
            if conversation is not None and not conversation.metadata.is_expired(now):
                store._run(operations.put(layout, conversation, now=now), check=False)
            store._run(_one(Transaction(_forget(layout, cid, meta))), check=False)
        if on_progress is not None:
            on_progress(report)
    if not dry_run and not report.failed:
        # One DEL per key: on a Redis Cluster they sit in different slots.
        store._run(
            _one(Batch([Call(("DEL", f"{base}:{name}")) for name in STORE_KEYS])), check=False
        )
        store._run(_one(Call(("SET", layout.marker, layout.marker_value, "NX"))), check=False)
    return report


def _one(request: Request) -> Plan[Any]:
    reply = yield request
    return reply


__all__ = ["UpgradeReport", "check_layout", "legacy_base", "legacy_keys", "upgrade"]
