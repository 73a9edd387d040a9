"""Every read of the ZeroDB store: one conversation, listings, stats and iteration.

A read for an owner decides on the header alone and never reads the
messages of a conversation it may not see.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from typing import Any

from ... import codec
from ...clock import now_ms
from ...types import Conversation, Page, StoreStats
from ..base import remaining_ttl
from .legacy import LegacyHeader
from .legacy import resolve as resolve_legacy
from .protocol import Tables, View, view_of, visible
from .rows import LIVE, Header

#: How often a read starts again when rows vanished under it (a concurrent removal).
READ_ATTEMPTS = 8


class Reads:
    """The store's reads, on its :class:`~.protocol.Tables`."""

    def __init__(self, tables: Tables) -> None:
        self.tables = tables

    def load(
        self, conversation_id: str, *, include_expired: bool, last: int | None, owner: str | None
    ) -> Conversation | None:
        for _ in range(READ_ATTEMPTS):
            found = self.tables.read(conversation_id)
            view = view_of(found)
            if not visible(view, owner, found.now, include_expired):
                return None
            if isinstance(view, LegacyHeader):
                messages = self.tables.legacy_messages(view)
                metadata = view.conversation_metadata(message_count=len(messages))
                if last is not None:
                    messages = messages[len(messages) - last :] if last else []
                return Conversation(conversation_id, messages, metadata)
            assert view is not None
            lo = view.base if last is None else max(view.base, view.end - last)
            got = self.tables.read_range(view, lo, view.end)
            if got is not None:
                return Conversation(conversation_id, got.messages, view.conversation_metadata())
        raise self.tables.inconsistent(conversation_id)

    def exists(self, conversation_id: str, *, owner: str | None) -> bool:
        found = self.tables.read(conversation_id)
        return visible(view_of(found), owner, found.now, False)

    def get_ttl(self, conversation_id: str, *, owner: str | None) -> int:
        found = self.tables.read(conversation_id)
        view = view_of(found)
        if view is None or not visible(view, owner, found.now, False):
            return -2
        return remaining_ttl(view.conversation_metadata(), found.now)

    def views(
        self, headers: list[Header], legacy: list[LegacyHeader], now: int
    ) -> dict[str, View]:
        """Each conversation's header among header rows of many conversations."""
        views: dict[str, View] = {}
        for header in headers:
            if header.state != LIVE:
                continue
            current = views.get(header.conversation_id)
            if not isinstance(current, Header) or (header.hk, header.row_id) < (
                current.hk,
                current.row_id,
            ):
                views[header.conversation_id] = header
        grouped: dict[str, list[LegacyHeader]] = {}
        for row in legacy:
            grouped.setdefault(row.conversation_id, []).append(row)
        for conversation_id, rows in grouped.items():
            if conversation_id not in views:
                view, _ = resolve_legacy(rows, now)
                if view is not None:
                    views[conversation_id] = view
        return views

    def live_views(self, **filters: Any) -> builtins.list[View]:
        now = now_ms()
        headers, legacy = self.tables.all_headers(live_until={"$gt": now}, state=LIVE, **filters)
        return [v for v in self.views(headers, legacy, now).values() if v.is_live(now)]

    def list(self) -> builtins.list[str]:
        views = sorted(self.live_views(), key=lambda v: (v.updated_at, v.conversation_id))
        return [view.conversation_id for view in reversed(views)]

    def list_conversations(
        self, *, owner: str | None, prefix: str | None, limit: int, offset: int
    ) -> Page:
        views = self.live_views(**({"owner": owner} if owner is not None else {}))
        matching = [
            v
            for v in views
            if (owner is None or v.owner == owner)
            and (prefix is None or v.conversation_id.startswith(prefix))
        ]
        matching.sort(key=lambda v: (v.updated_at, v.conversation_id), reverse=True)
        return Page(
            items=[v.conversation_metadata() for v in matching[offset : offset + limit]],
            total=len(matching),
        )

    def iter_conversations(
        self, *, include_expired: bool, batch_size: int, owner: str | None
    ) -> Iterator[Conversation]:
        now = now_ms()
        filters = {"state": LIVE, **({"owner": owner} if owner is not None else {})}
        headers, legacy = self.tables.all_headers(**filters)
        views = [
            v
            for v in self.views(headers, legacy, now).values()
            if (owner is None or v.owner == owner) and (include_expired or v.is_live(now))
        ]
        for start in range(0, len(views), batch_size):
            batch = views[start : start + batch_size]
            current = [v for v in batch if isinstance(v, Header)]
            read = self.tables.conversation_rows(current) if current else {}
            for view in batch:
                if isinstance(view, LegacyHeader):
                    messages = self.tables.legacy_messages(view)
                    yield Conversation(
                        view.conversation_id,
                        messages,
                        view.conversation_metadata(message_count=len(messages)),
                    )
                    continue
                got = read.get(view.hk)
                if got is None:
                    conversation = self.load(
                        view.conversation_id, include_expired=True, last=None, owner=owner
                    )
                    if conversation is not None:
                        yield conversation
                    continue
                yield Conversation(
                    view.conversation_id, got.messages, view.conversation_metadata()
                )

    def stats(self) -> StoreStats:
        now = now_ms()
        headers, legacy = self.tables.all_headers(state=LIVE)
        views = self.views(headers, legacy, now)
        live = [v for v in views.values() if v.is_live(now)]
        return StoreStats(
            total_conversations=len(live),
            total_messages=sum(v.message_count for v in live),
            expired_conversations=len(views) - len(live),
            storage_size=sum(
                v.bytes + (len(codec.encode(v.metadata)) if v.metadata else 0) for v in live
            ),
        )
