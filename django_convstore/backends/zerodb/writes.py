"""Every write of the ZeroDB store: append, save/put/create, pop/truncate, delete, TTL and
metadata changes, and the conversion of 0.1 conversations.

Each is a loop around one compare-and-set of the header (:mod:`.protocol`):
read the header (this process's last copy when it has one), decide from it
(ownership, expiry, which ids are new...), write the rows, compare-and-set.
A decision that writes nothing is only ever taken on a fresh read. A write
that meets concurrent changes waits a random, growing moment and tries
again; it never gives up (see ``protocol.CONTENTION_DEADLINE``).
"""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Callable
from functools import partial
from typing import Any

from ...clock import now_ms
from ...exceptions import OwnerMismatchError
from ...types import Conversation, ConversationMetadata, Message
from .legacy import LegacyHeader
from .protocol import (
    Attempt,
    BulkWrite,
    Contention,
    Found,
    Range,
    Tables,
    View,
    view_of,
    visible,
)
from .rows import DELETED, LIVE, NEW, Header, Pend, encode_all, new_hk, new_token

#: A write waiting for another's turn reads the header again after up to this many
#: typical request times.
POLL_SPREAD = 4.0
#: What ``fields`` callbacks answer for another owner's live conversation.
MISMATCH = object()


def mismatch(conversation_id: str) -> OwnerMismatchError:
    """The error for a write to another owner's conversation (never naming that owner)."""
    return OwnerMismatchError(f"conversation {conversation_id!r} belongs to another owner.")


def bulk_fields(base: int, bulk: BulkWrite) -> dict[str, Any]:
    """Header fields of an incarnation at ``base`` made of ``bulk``."""
    count = bulk.count
    return {
        "base": base,
        "end": base + count,
        "hwm": base + count,
        "bulk": bulk.txn if count else None,
        "bulk_n": count,
        "bulk_live": count,
        "pend": (),
        "bytes": bulk.nbytes,
    }


class Writes:
    """The store's writes, on its :class:`~.protocol.Tables`."""

    def __init__(self, tables: Tables, *, default_ttl: int | None) -> None:
        self.tables = tables
        self.default_ttl = default_ttl

    def upgrade(self, conversation_id: str, found: Found) -> Found:
        """Convert a 0.1 conversation: its messages become the bulk write of a format-2
        header in the same row (a compare-and-set on its revision)."""
        view = found.legacy_view
        assert view is not None
        messages = self.tables.legacy_messages(view)
        bulk = BulkWrite(new_token(), messages, encode_all(messages))
        self.tables.write_bulk(conversation_id, bulk, view.hkey)
        now = now_ms()
        header = Header(
            namespace=self.tables.namespace,
            conversation_id=conversation_id,
            hk=view.hkey,
            state=LIVE,
            owner=view.owner,
            created_at=view.created_at,
            updated_at=view.updated_at,
            ttl=view.ttl,
            metadata=dict(view.metadata),
            **bulk_fields(0, bulk),
            t=now,
        )
        fresh = self.tables.cas_legacy(view, header)
        if fresh is not None:
            self.tables.discard_bulk(conversation_id, bulk)
            return fresh
        self.drop_legacy(conversation_id, found, keep=view.row_id)
        return Found([header], [], now)

    def drop_legacy(self, conversation_id: str, found: Found, keep: str | None = None) -> None:
        """Delete a converted (or replaced) conversation's 0.1 rows."""
        tables = self.tables
        tables.forget(
            lambda: self.tables.client.bulk_delete(
                self.tables.message_table, tables.scope(conversation_id, at={"$gte": 0})
            )
        )
        for legacy in found.legacy:
            if legacy.row_id != keep:
                tables.forget(
                    partial(self.tables.client.delete_row, self.tables.header_table, legacy.row_id)
                )

    @staticmethod
    def _bulk_fields(base: int, bulk: BulkWrite) -> dict[str, Any]:
        count = bulk.count
        return {
            "base": base,
            "end": base + count,
            "hwm": base + count,
            "bulk": bulk.txn if count else None,
            "bulk_n": count,
            "bulk_live": count,
            "pend": (),
            "bytes": bulk.nbytes,
        }

    def held(
        self, header: Header, ids: list[str], basis: Header | None, before: set[str]
    ) -> set[str]:
        """Which ids the conversation holds as of ``header``; without a query when the
        appends committed since ``basis`` (checked then) are all named in ``pend``."""
        if basis is not None and (basis.hk, basis.base, basis.gen, basis.bulk_live) == (
            header.hk,
            header.base,
            header.gen,
            header.bulk_live,
        ):
            known = basis.pend_map()
            added = [entry for entry in header.pend if entry.txn not in known]
            if all(e.mids is not None for e in added) and (
                sum(e.n for e in added) == header.end - basis.end
            ):
                return before | (set(ids) & {m for e in added for m in e.mids or ()})
        return self.tables.held(header, ids)

    def append(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        update_timestamp: bool,
        owner: str | None,
    ) -> ConversationMetadata:
        tables = self.tables
        found, cached = tables.known(conversation_id)
        attempt: Attempt | None = None
        basis: Header | None = None
        held: set[str] = set()
        committing = False
        pace = Contention(tables, conversation_id)
        ids = [m.id for m in messages]
        try:
            while True:
                now = now_ms()
                header = found.current
                if header is None and found.legacy_view is not None:
                    found, cached = self.upgrade(conversation_id, found), False
                    continue
                if header is None:
                    if cached or found.creators:
                        if found.creators:
                            pace.pause()  # another creator is at work: wait for its header
                        found, cached = tables.read(conversation_id), False
                        continue
                    hk = new_hk(now)
                    shell = Header(
                        self.tables.namespace,
                        conversation_id,
                        hk,
                        NEW,
                        owner,
                        now,
                        now,
                        self.default_ttl,
                        {},
                        t=now,
                    )
                    attempt = tables.place(conversation_id, attempt, shell, 0, messages, 0)
                    entry = tables.pend_entry(attempt, 0, 0)
                    shell = dataclasses.replace(
                        shell,
                        end=len(messages),
                        hwm=len(messages),
                        pend=(entry,),
                        bytes=sum(map(len, attempt.encoded)),
                    )
                    committing = True
                    live, found = tables.establish(shell)
                    committing = False
                    if live is not None:
                        return live.conversation_metadata()
                    if view_of(found) is None and not found.creators:
                        pace.pause()  # the creators that met withdrew: try again
                    continue
                if attempt is not None and attempt.txn in header.pend_map():
                    # This append's commit landed although its reply was lost.
                    return header.conversation_metadata()
                if not header.is_live(now):
                    # Expired: it counts as missing and starts afresh in its header row.
                    start, gen = header.hwm, header.gen + 1
                    attempt = tables.place(conversation_id, attempt, header, start, messages, gen)
                    new = header.evolve(
                        owner=owner,
                        created_at=now,
                        updated_at=now,
                        ttl=self.default_ttl,
                        metadata={},
                        base=start,
                        end=start + len(messages),
                        hwm=start + len(messages),
                        gen=gen,
                        bulk=None,
                        bulk_n=0,
                        bulk_live=0,
                        pend=(tables.pend_entry(attempt, start, gen),),
                        bytes=sum(map(len, attempt.encoded)),
                    )
                    if pace.blocked(header):
                        pace.pause(POLL_SPREAD)
                        found, cached = tables.read(conversation_id), False
                        continue
                    committing = True
                    fresh = tables.cas(header, new)
                    committing = False
                    if fresh is None:
                        tables.drop_incarnation(header, new)
                        return new.conversation_metadata()
                else:
                    if owner is not None and header.owner != owner:
                        if cached:
                            found, cached = tables.read(conversation_id), False
                            continue
                        raise mismatch(conversation_id)
                    held = self.held(header, ids, basis, held)
                    basis = header
                    new_messages = [m for m in messages if m.id not in held]
                    if not new_messages:
                        if cached:
                            found, cached, basis = tables.read(conversation_id), False, None
                            continue
                        tables.discard(conversation_id, attempt)
                        return header.conversation_metadata()
                    attempt = tables.place(
                        conversation_id, attempt, header, header.end, new_messages, header.gen
                    )
                    end = header.end + len(new_messages)
                    new = header.evolve(
                        end=end,
                        hwm=max(header.hwm, end),
                        pend=tables.with_entry(
                            header,
                            tables.pend_entry(attempt, header.end, header.gen),
                        ),
                        bytes=header.bytes + sum(map(len, attempt.encoded)),
                        updated_at=now if update_timestamp else header.updated_at,
                    )
                    if pace.blocked(header):
                        pace.pause(POLL_SPREAD)
                        found, cached = tables.read(conversation_id), False
                        continue
                    committing = True
                    fresh = tables.cas(header, new)
                    committing = False
                    if fresh is None:
                        return new.conversation_metadata()
                found, cached = pace.lost(fresh), False
        except BaseException:
            if not committing:
                # Never committed: nobody trusts these rows; delete them now rather than
                # leaving them to cleanup(). (When the outcome is unknown they stay.)
                tables.discard(conversation_id, attempt)
            raise

    def replace(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        fields: Callable[[View | None, int], Any],
        *,
        fresh_first: bool = False,
    ) -> Header | None:
        """Make ``messages`` the conversation's whole content, in one compare-and-set.

        ``fields(current, now)`` gets the live conversation (None when missing or
        expired) and answers the header fields to write (``created_at``,
        ``updated_at``, ``ttl``, ``owner``, ``metadata``), None to write nothing
        (then None is returned), or ``MISMATCH`` for another owner's.
        """
        tables = self.tables
        bulk = BulkWrite(new_token(), list(messages), encode_all(messages))
        if fresh_first:
            found, cached = tables.read(conversation_id), False
        else:
            found, cached = tables.known(conversation_id)
        committing = False
        pace = Contention(tables, conversation_id)
        try:
            while True:
                now = now_ms()
                header = found.current
                if header is not None and bulk.messages and header.bulk == bulk.txn:
                    return header  # this write's commit landed although its reply was lost
                view = view_of(found)
                live = view if view is not None and view.is_live(now) else None
                values = fields(live, now)
                if values is MISMATCH or (values is None and live is not None):
                    if cached:
                        found, cached = tables.read(conversation_id), False
                        continue
                    tables.discard_bulk(conversation_id, bulk)
                    if values is MISMATCH:
                        raise mismatch(conversation_id)
                    return None
                if view is None:
                    if cached or found.creators:
                        if found.creators:
                            pace.pause()  # another creator is at work: wait for its header
                        found, cached = tables.read(conversation_id), False
                        continue
                    hk = new_hk(now)
                    tables.write_bulk(conversation_id, bulk, hk)
                    shell = Header(
                        self.tables.namespace,
                        conversation_id,
                        hk,
                        NEW,
                        t=now,
                        **values,
                        **bulk_fields(0, bulk),
                    )
                    committing = True
                    established, found = tables.establish(shell)
                    committing = False
                    if established is not None:
                        return established
                    if view_of(found) is None and not found.creators:
                        pace.pause()  # the creators that met withdrew: try again
                    continue
                if isinstance(view, LegacyHeader):
                    tables.write_bulk(conversation_id, bulk, view.hkey)
                    new = Header(
                        self.tables.namespace,
                        conversation_id,
                        view.hkey,
                        LIVE,
                        t=now,
                        **values,
                        **bulk_fields(0, bulk),
                    )
                    committing = True
                    fresh = tables.cas_legacy(view, new)
                    committing = False
                    if fresh is None:
                        self.drop_legacy(conversation_id, found, keep=view.row_id)
                        return new
                else:
                    assert header is not None
                    tables.write_bulk(conversation_id, bulk, header.hk, verify=pace.rounds > 0)
                    new = header.evolve(
                        **values,
                        **bulk_fields(header.hwm, bulk),
                        gen=header.gen + 1,
                    )
                    if pace.blocked(header):
                        pace.pause(POLL_SPREAD)
                        found, cached = tables.read(conversation_id), False
                        continue
                    committing = True
                    fresh = tables.cas(header, new)
                    committing = False
                    if fresh is None:
                        tables.drop_incarnation(header, new)
                        return new
                found, cached = pace.lost(fresh), False
        except BaseException:
            if not committing:
                tables.discard_bulk(conversation_id, bulk)
            raise

    def save(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        ttl: int | None,
        metadata: dict[str, Any] | None,
        owner: str | None,
    ) -> Conversation:
        def fields(live: View | None, now: int) -> Any:
            if live is None:
                return {
                    "created_at": now,
                    "updated_at": now,
                    "ttl": ttl,
                    "owner": owner,
                    "metadata": dict(metadata or {}),
                }
            if owner is not None and live.owner != owner:
                return MISMATCH
            return {
                "created_at": live.created_at,
                "updated_at": now,
                "ttl": ttl,
                "owner": live.owner,
                "metadata": {**live.metadata, **(metadata or {})},
            }

        header = self.replace(conversation_id, messages, fields)
        assert header is not None
        return Conversation(conversation_id, list(messages), header.conversation_metadata())

    def create(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        ttl: int | None,
        metadata: dict[str, Any],
        owner: str | None,
    ) -> Conversation | None:
        def fields(live: View | None, now: int) -> Any:
            if live is not None:
                return None
            return {
                "created_at": now,
                "updated_at": now,
                "ttl": ttl,
                "owner": owner,
                "metadata": dict(metadata),
            }

        header = self.replace(conversation_id, messages, fields, fresh_first=True)
        if header is None:
            return None
        return Conversation(conversation_id, list(messages), header.conversation_metadata())

    def put(self, conversation: Conversation) -> None:
        meta = conversation.metadata

        def fields(live: View | None, now: int) -> Any:
            return {
                "created_at": meta.created_at,
                "updated_at": meta.updated_at,
                "ttl": meta.ttl or None,
                "owner": meta.owner,
                "metadata": dict(meta.metadata),
            }

        self.replace(conversation.conversation_id, conversation.messages, fields)

    def cut(
        self,
        conversation_id: str,
        owner: str | None,
        start_of: Callable[[Header], int | None],
        *,
        decode: bool,
    ) -> tuple[Header, Header | None, Range | None] | None:
        """Remove positions ``[start_of(header), end)`` in one compare-and-set.

        Returns None when missing, expired or another owner's; else the header
        before, the header after (None when nothing was removed) and what was
        removed. Reads the removed rows (to return them and to know their
        size), never the rest.
        """
        tables = self.tables
        found, cached = tables.known(conversation_id)
        pace = Contention(tables, conversation_id)
        while True:
            now = now_ms()
            header = found.current
            if header is None and found.legacy_view is not None:
                found, cached = self.upgrade(conversation_id, found), False
                continue
            shown = header is not None and visible(header, owner, now, False)
            start = start_of(header) if header is not None and shown else None
            if header is None or start is None or start >= header.end:
                if cached:
                    found, cached = tables.read(conversation_id), False
                    continue
                return (header, None, None) if header is not None and shown else None
            got = tables.read_range(header, start, header.end, decode=decode)
            if got is None:
                found, cached = tables.read(conversation_id), False
                continue
            new = header.evolve(
                end=start,
                gen=header.gen + 1,
                bulk_live=min(header.bulk_live, start - header.base),
                pend=self.remaining(header.pend, got),
                bytes=max(0, header.bytes - sum(got.sizes)),
                updated_at=now,
            )
            if pace.blocked(header):
                pace.pause(POLL_SPREAD)
                found, cached = tables.read(conversation_id), False
                continue
            fresh = tables.cas(header, new)
            if fresh is None:
                tables.drop_positions(header, got.rows, start)
                return header, new, got
            found, cached = pace.lost(fresh), False

    @staticmethod
    def remaining(pend: tuple[Pend, ...], removed: Range) -> tuple[Pend, ...]:
        """``pend`` without what a pop/truncate removed."""
        gone: dict[str, set[str]] = {}
        for row in removed.rows.values():
            gone.setdefault(row.txn, set()).add(row.mid)
        kept = []
        for entry in pend:
            mids = gone.get(entry.txn)
            if not mids:
                kept.append(entry)
            elif len(mids) < entry.n:
                left = (
                    None if entry.mids is None else tuple(m for m in entry.mids if m not in mids)
                )
                kept.append(dataclasses.replace(entry, n=entry.n - len(mids), mids=left))
        return tuple(kept)

    def pop(
        self, conversation_id: str, count: int, *, owner: str | None
    ) -> builtins.list[Message]:
        outcome = self.cut(
            conversation_id,
            owner,
            lambda h: max(h.base, h.end - count),
            decode=True,
        )
        if outcome is None or outcome[2] is None:
            return []
        return outcome[2].messages

    def truncate(
        self, conversation_id: str, keep: int, *, owner: str | None
    ) -> tuple[ConversationMetadata, int] | None:
        outcome = self.cut(conversation_id, owner, lambda h: h.base + keep, decode=False)
        if outcome is None:
            return None
        before, after, _removed = outcome
        if after is None:
            return before.conversation_metadata(), 0
        return after.conversation_metadata(), before.message_count - after.message_count

    def delete(self, conversation_id: str, *, owner: str | None) -> bool:
        tables = self.tables
        found, cached = tables.known(conversation_id)
        pace = Contention(tables, conversation_id)
        while True:
            now = now_ms()
            header = found.current
            view = view_of(found)
            mine = view is not None and (
                owner is None or (view.owner == owner and view.is_live(now))
            )
            if not mine:
                if cached:
                    found, cached = tables.read(conversation_id), False
                    continue
                return False
            if header is None:
                return self.delete_legacy(conversation_id, found)
            if pace.blocked(header):
                pace.pause(POLL_SPREAD)
                found, cached = tables.read(conversation_id), False
                continue
            fresh = tables.cas(header, header.evolve(state=DELETED))
            if fresh is None:
                tables.forget(partial(tables.delete_everything, header))
                return True
            found, cached = pace.lost(fresh), False

    def delete_legacy(self, conversation_id: str, found: Found) -> bool:
        """Delete a 0.1 conversation: its header rows (each only if unchanged), then its rows."""
        deleted = 0
        for legacy in found.legacy:
            deleted += (
                self.tables.client.bulk_delete(
                    self.tables.header_table,
                    self.tables.scope(conversation_id, hkey=legacy.hkey, rev=legacy.rev),
                )
                or 0
            )
        if deleted:
            self.drop_legacy(conversation_id, Found([], [], found.now))
        return bool(deleted)

    def change(
        self,
        conversation_id: str,
        owner: str | None,
        change: Callable[[Header, int], Header],
    ) -> Header | None:
        """Compare-and-set the live header to ``change(current, now)``; None when missing."""
        tables = self.tables
        found, cached = tables.known(conversation_id)
        pace = Contention(tables, conversation_id)
        while True:
            now = now_ms()
            header = found.current
            if header is None and found.legacy_view is not None:
                found, cached = self.upgrade(conversation_id, found), False
                continue
            if header is None or not visible(header, owner, now, False):
                if cached:
                    found, cached = tables.read(conversation_id), False
                    continue
                return None
            if pace.blocked(header):
                pace.pause(POLL_SPREAD)
                found, cached = tables.read(conversation_id), False
                continue
            new = change(header, now)
            fresh = tables.cas(header, new)
            if fresh is None:
                return new
            found, cached = pace.lost(fresh), False

    def set_ttl(self, conversation_id: str, ttl: int | None, *, owner: str | None) -> bool:
        changed = self.change(
            conversation_id, owner, lambda h, now: h.evolve(ttl=ttl, updated_at=now)
        )
        return changed is not None

    def update_metadata(
        self, conversation_id: str, metadata: dict[str, Any], *, replace: bool, owner: str | None
    ) -> ConversationMetadata | None:
        def change(header: Header, now: int) -> Header:
            merged = dict(metadata) if replace else {**header.metadata, **metadata}
            return header.evolve(metadata=merged, updated_at=now)

        changed = self.change(conversation_id, owner, change)
        return None if changed is None else changed.conversation_metadata()
