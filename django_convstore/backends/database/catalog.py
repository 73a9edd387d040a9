"""Whole-store operations of the database backend: listing, streaming, stats, cleanup, clear.

Reads are one statement each (the page and its total come from one query
with a window count). ``cleanup`` and ``clear`` delete
:data:`DELETE_BATCH_SIZE` conversations per transaction, each batch locked
and its condition checked again under the lock, so a conversation revived
meanwhile (an append to an expired one) is kept.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum, Window
from django.db.models.functions import Left

from ...models import StoredConversation
from ...types import Conversation, ConversationMetadata, Page, StoreStats
from . import rows
from .operations import Operations
from .transactions import write_transaction

#: Conversations deleted per transaction by ``clear()`` and ``cleanup()``.
DELETE_BATCH_SIZE = 500
#: ``iter_conversations`` fetches about this many messages per query.
MESSAGE_FETCH_SIZE = 10_000

_FIELDS = ("pk", "conversation_id", *rows.META_COLUMNS)


def _live(now: int) -> Q:
    return Q(expires_at__isnull=True) | Q(expires_at__gt=now)


def _meta(row: dict[str, Any]) -> ConversationMetadata:
    return rows.metadata(row["conversation_id"], [row[name] for name in rows.META_COLUMNS])


class Catalog:
    """The whole-store operations of one store on one connection."""

    def __init__(self, ops: Operations, begin: str, lock_suffix: str):
        self.ops = ops
        self.connection = ops.connection
        self.begin = begin
        self.lock_suffix = lock_suffix
        self.rows: QuerySet[StoredConversation] = StoredConversation.objects.using(
            ops.connection.alias
        ).filter(namespace=ops.namespace)

    def list(self, now: int) -> list[str]:
        return list(
            self.rows.filter(_live(now))
            .order_by("-updated_at", "-conversation_id")
            .values_list("conversation_id", flat=True)
        )

    def page(
        self, now: int, *, owner: str | None, prefix: str | None, limit: int, offset: int
    ) -> Page:
        matching = self.rows.filter(_live(now))
        if owner is not None:
            matching = matching.filter(owner=owner)
        if prefix:
            # LIKE ignores case on SQLite; comparing the leading characters exactly keeps
            # the prefix filter case-sensitive everywhere.
            matching = matching.alias(id_head=Left("conversation_id", len(prefix))).filter(
                conversation_id__startswith=prefix, id_head=prefix
            )
        found = list(
            matching.annotate(total=Window(Count("pk")))
            .order_by("-updated_at", "-conversation_id")
            .values(*_FIELDS, "total")[offset : offset + limit]
        )
        if found:
            return Page(items=[_meta(row) for row in found], total=found[0]["total"])
        return Page(items=[], total=matching.count() if offset else 0)

    def stats(self, now: int) -> StoreStats:
        live = _live(now)
        totals = self.rows.aggregate(
            conversations=Count("pk", filter=live),
            messages=Sum("message_count", filter=live),
            expired=Count("pk", filter=Q(expires_at__lte=now)),
        )
        return StoreStats(
            total_conversations=totals["conversations"],
            total_messages=totals["messages"] or 0,
            expired_conversations=totals["expired"],
            storage_size=None,
        )

    # -- streaming ---------------------------------------------------------------------------

    def iterate(
        self, *, include_expired: bool, batch_size: int, owner: str | None, now: int
    ) -> Iterator[Conversation]:
        last_pk = 0
        while True:
            batch_rows = self.rows.filter(pk__gt=last_pk)
            if not include_expired:
                batch_rows = batch_rows.filter(_live(now))
            if owner is not None:
                batch_rows = batch_rows.filter(owner=owner)
            batch = list(batch_rows.order_by("pk").values(*_FIELDS)[:batch_size])
            if not batch:
                return
            last_pk = batch[-1]["pk"]
            yield from self._with_messages(batch, include_expired=include_expired, now=now)
            if len(batch) < batch_size:
                return

    def _documents(self, pks: builtins.list[int]) -> dict[int, builtins.list[Any]]:
        found: dict[int, builtins.list[Any]] = {pk: [] for pk in pks}
        placeholders = ", ".join(["%s"] * len(pks))
        statement = (
            "SELECT conversation_id, document FROM {msg} "
            f"WHERE conversation_id IN ({placeholders}) ORDER BY conversation_id, position"
        )
        for pk, document in self.ops.fetch(statement, pks):
            found[pk].append(document)
        return found

    def _with_messages(
        self, batch: builtins.list[dict[str, Any]], *, include_expired: bool, now: int
    ) -> Iterator[Conversation]:
        """The conversations of ``batch`` with their messages.

        One that changed since ``batch`` was read (its message count differs)
        is read again on its own, and skipped if it is gone by then.
        """
        group: builtins.list[dict[str, Any]] = []
        size = 0
        for row in [*batch, None]:
            if row is not None and (
                not group or size + row["message_count"] <= MESSAGE_FETCH_SIZE
            ):
                group.append(row)
                size += row["message_count"]
                continue
            documents = self._documents([r["pk"] for r in group if r["message_count"]])
            for member in group:
                docs = documents.get(member["pk"], [])
                if len(docs) == member["message_count"]:
                    yield Conversation(
                        member["conversation_id"], rows.decode_documents(docs), _meta(member)
                    )
                    continue
                again = self.ops.load(
                    member["conversation_id"],
                    now,
                    include_expired=include_expired,
                    last=None,
                    owner=None,
                )
                if again is not None:
                    yield again
            if row is None:
                return
            group, size = [row], row["message_count"]

    # -- deleting in batches -------------------------------------------------------------------

    def delete_where(self, condition: str, params: dict[str, Any]) -> int:
        """Delete the namespace's conversations matching ``condition``, batch by batch."""
        select = (
            "SELECT c.id FROM {conv} c WHERE c.namespace = %(ns)s"
            f"{condition} ORDER BY c.id LIMIT {DELETE_BATCH_SIZE}{self.lock_suffix}"
        )
        params = {"ns": self.ops.namespace, **params}
        deleted = 0
        while True:
            with write_transaction(self.connection, self.begin):
                pks = [pk for (pk,) in self.ops.fetch(select, params)]
                if pks:
                    marks = ", ".join(["%s"] * len(pks))
                    self.ops.write(f"DELETE FROM {{msg}} WHERE conversation_id IN ({marks})", pks)
                    deleted += self.ops.write(f"DELETE FROM {{conv}} WHERE id IN ({marks})", pks)
            if len(pks) < DELETE_BATCH_SIZE:
                return deleted

    def clear(self) -> int:
        return self.delete_where("", {})

    def cleanup(self, now: int) -> int:
        return self.delete_where(" AND c.expires_at <= %(now)s", {"now": now})
