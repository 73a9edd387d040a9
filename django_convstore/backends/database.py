"""A store on the Django ORM: SQLite, PostgreSQL, MySQL … whatever ``DATABASES`` holds.

One :class:`~django_convstore.models.StoredConversation` row per conversation
(namespaced by the store's ``NAMESPACE``) and one
:class:`~django_convstore.models.StoredMessage` row per message.
``OPTIONS["DATABASE"]`` picks the database alias; without it the database
routers decide (reads through ``db_for_read``, writes through
``db_for_write``, ``default`` when no router answers).

A conversation's messages sit at positions ``first_position`` …
``first_position + message_count - 1``. Appending adds positions after them;
replacing them (``save``, ``put``, an append to an expired conversation)
deletes them and starts again *past* the old positions.

Writers. Every write transaction begins with a write to the conversation row,
so it holds the row lock (PostgreSQL, MySQL) or the database write lock
(SQLite, where ``select_for_update`` does nothing) before it reads anything:

* ``append`` runs ``UPDATE … SET message_count = message_count + n`` on the
  live row first, reads the new count back and inserts the messages at the
  positions just claimed: two appends never pick the same positions, and the
  cost is one UPDATE, one SELECT and one INSERT at any length.
* ``save``, ``put``, ``delete`` and ``cleanup`` lock the rows with
  ``select_for_update`` (on SQLite: after a no-op UPDATE) before reading them.
* Creating a missing conversation inserts its row inside a savepoint; losing
  the race on the unique (namespace, conversation_id) constraint rolls back to
  the savepoint and retries, which finds the winner's row.
* ``create`` locks like ``save`` and answers None while the locked row is
  live; a creator that loses the insert race above finds the winner's live
  row on its retry, so exactly one of simultaneous creators writes.
* ``update_metadata`` uses append's trick: one UPDATE of the live row
  (``updated_at``, ``expires_at``) takes the lock, then the metadata is read,
  merged and written back in the same transaction; messages are not touched.

Readers (no locks). ``load`` reads the row, then the messages inside its
position range: messages appended in between lie beyond the range and are
left out, and messages replaced in between are gone from it, which the count
shows, so the read starts again. A read never mixes two versions.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connections,
    router,
    transaction,
)
from django.db.models import BigIntegerField, Count, ExpressionWrapper, F, Q, QuerySet, Sum, Value
from django.db.models.functions import Left

from ..clock import now_ms
from ..exceptions import BackendError, BackendUnavailableError
from ..types import Conversation, ConversationMetadata, Message, Page, StoreStats
from .base import BaseStore, remaining_ttl

try:
    from ..models import StoredConversation, StoredMessage
except RuntimeError as exc:  # Django refuses models of an app that is not installed
    raise ImportError(
        "the database backend keeps conversations in the models of django_convstore: "
        "add 'django_convstore' to INSTALLED_APPS and run manage.py migrate"
    ) from exc

#: How often a write retries when concurrent writers keep creating and deleting a conversation.
MAX_ATTEMPTS = 5
#: Conversations deleted per transaction by ``clear()`` and ``cleanup()``.
DELETE_BATCH_SIZE = 500
#: Message rows per INSERT statement (Django splits further on SQLite: 999 parameters).
INSERT_BATCH_SIZE = 500
#: ``iter_conversations`` fetches about this many messages per query.
MESSAGE_FETCH_SIZE = 10_000

_META_FIELDS = (
    "pk",
    "conversation_id",
    "created_at",
    "updated_at",
    "ttl",
    "owner",
    "metadata",
    "message_count",
    "first_position",
)
_MESSAGE_FIELDS = ("message_id", "role", "content", "timestamp", "metadata")
# SQLite's and MySQL's wordings of "the table is missing" (PostgreSQL: SQLSTATE 42P01).
_MISSING_TABLE_MARKERS = ("no such table", "doesn't exist", "does not exist")

Row = dict[str, Any]


def _live(now: int) -> Q:
    """Rows that have not expired at ``now``."""
    return Q(expires_at__isnull=True) | Q(expires_at__gt=now)


def _is_live(row: StoredConversation, now: int) -> bool:
    return row.expires_at is None or row.expires_at > now


def _expires_at(updated_at: int, ttl: int | None) -> int | None:
    return updated_at + ttl * 1000 if ttl else None


def _metadata(row: Mapping[str, Any]) -> ConversationMetadata:
    return ConversationMetadata(
        conversation_id=row["conversation_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        message_count=row["message_count"],
        ttl=row["ttl"] or None,
        owner=row["owner"],
        metadata=row["metadata"] or {},
    )


def _message(values: tuple[Any, ...]) -> Message:
    message_id, role, content, timestamp, metadata = values
    return Message(
        role=role, content=content, id=message_id, timestamp=timestamp, metadata=metadata or {}
    )


def _is_missing_table(exc: DatabaseError) -> bool:
    if getattr(exc.__cause__, "sqlstate", None) == "42P01":
        return True
    text = str(exc).lower()
    return "table" in text and any(marker in text for marker in _MISSING_TABLE_MARKERS)


def _is_read_only(exc: DatabaseError) -> bool:
    """SQLite reports writing to a read-only database as an OperationalError."""
    text = str(exc).lower()
    return "readonly database" in text or "read-only" in text


def _message_batches(rows: builtins.list[Row]) -> Iterator[builtins.list[Row]]:
    """Group conversation rows so one query fetches about MESSAGE_FETCH_SIZE messages."""
    batch: builtins.list[Row] = []
    messages = 0
    for row in rows:
        if batch and (
            messages + row["message_count"] > MESSAGE_FETCH_SIZE or len(batch) >= DELETE_BATCH_SIZE
        ):
            yield batch
            batch, messages = [], 0
        batch.append(row)
        messages += row["message_count"]
    if batch:
        yield batch


class DatabaseStore(BaseStore):
    """Conversations in the ORM tables of ``django_convstore`` (run ``manage.py migrate``).

    ``OPTIONS["DATABASE"]`` names the database alias; without it the database
    routers choose, falling back to ``default``. ``LOCATION`` is not used.
    The store joins the caller's transaction when called inside ``atomic()``.
    """

    backend_name: ClassVar[str] = "database"
    option_names: ClassVar[frozenset[str]] = frozenset({"DATABASE"})
    required_modules: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __init__(self, location: str = "", params: Any = None, *, alias: str | None = None):
        super().__init__(location, params, alias=alias)
        if self.location:
            raise self.configuration_error(
                "LOCATION is not used by the database backend; name the database alias "
                "in OPTIONS['DATABASE'] instead."
            )
        database = self.options.get("DATABASE")
        if database is not None:
            if not isinstance(database, str) or not database:
                raise self.configuration_error(
                    f"OPTIONS['DATABASE'] must be a database alias (a string), not {database!r}."
                )
            if database not in connections.settings:
                configured = ", ".join(sorted(connections.settings)) or "none"
                raise self.configuration_error(
                    f"OPTIONS['DATABASE'] is {database!r}, which is not in settings.DATABASES "
                    f"(configured: {configured})."
                )
        #: The explicit database alias, or None to let the routers decide.
        self.database: str | None = database

    # -- where and how ---------------------------------------------------------------------

    def _db(self, *, write: bool) -> str:
        if self.database:
            return self.database
        route = router.db_for_write if write else router.db_for_read
        return route(StoredConversation) or DEFAULT_DB_ALIAS

    def _rows(self, db: str) -> QuerySet[StoredConversation]:
        return StoredConversation.objects.using(db).filter(namespace=self.namespace)

    def _address(self, db: str) -> str:
        settings_dict = connections[db].settings_dict
        engine = str(settings_dict.get("ENGINE", "")).rsplit(".", 1)[-1]
        name = settings_dict.get("NAME") or ""
        host = settings_dict.get("HOST") or ""
        if host:
            port = settings_dict.get("PORT") or ""
            return f"{engine} {host}{':' if port else ''}{port}/{name}"
        return f"{engine} {name}"

    def _describe(self, db: str, what: str, exc: BaseException) -> str:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        password = connections[db].settings_dict.get("PASSWORD")
        if password:
            reason = reason.replace(str(password), "***")
        return (
            f"database store {self.display_alias!r}: {what} "
            f"(database alias {db!r}, {self._address(db)}): {reason}"
        )

    def _drop_broken_connection(self, db: str) -> None:
        """Close a connection that broke, so the next operation reconnects."""
        connection = connections[db]
        if connection.in_atomic_block:
            return
        try:
            connection.close_if_unusable_or_obsolete()
        except DatabaseError:
            connection.connection = None

    @contextmanager
    def _errors(self, db: str) -> Iterator[None]:
        """Translate database exceptions into the app's errors.

        Connection failures, timeouts, lock timeouts and deadlocks (Django's
        ``OperationalError``/``InterfaceError``) are ``BackendUnavailableError``:
        trying again later may work. Everything else is ``BackendError``.
        """
        try:
            yield
        except DatabaseError as exc:
            if _is_missing_table(exc):
                raise BackendError(
                    self._describe(db, "the tables are missing; run manage.py migrate", exc)
                ) from exc
            if isinstance(exc, OperationalError | InterfaceError) and not _is_read_only(exc):
                self._drop_broken_connection(db)
                raise BackendUnavailableError(
                    self._describe(db, "the database could not be reached", exc),
                    backend=self.backend_name,
                    alias=self.display_alias,
                    address=self._address(db),
                ) from exc
            raise BackendError(
                self._describe(db, "the database rejected the operation", exc)
            ) from exc

    def _gave_up(self, db: str, conversation_id: str) -> BackendError:
        return BackendError(
            f"database store {self.display_alias!r}: conversation {conversation_id!r} kept "
            f"changing under concurrent writers (database alias {db!r}); gave up after "
            f"{MAX_ATTEMPTS} attempts."
        )

    # -- writing ---------------------------------------------------------------------------

    def _take_write_lock(self, db: str, rows: QuerySet[StoredConversation]) -> bool:
        """Lock ``rows`` for the transaction; True when SELECT … FOR UPDATE must follow.

        SQLite has no row locks: a no-op UPDATE takes the database write lock, so
        that the reads that follow happen inside the write transaction.
        """
        if connections[db].features.has_select_for_update:
            return True
        rows.update(message_count=F("message_count"))
        return False

    def _lock(
        self, db: str, conversation_id: str, *, write_locked: bool = False
    ) -> StoredConversation | None:
        """The conversation's row, locked until the transaction ends (None when missing)."""
        rows = self._rows(db).filter(conversation_id=conversation_id)
        if write_locked and not connections[db].features.has_select_for_update:
            return rows.first()
        if self._take_write_lock(db, rows):
            rows = rows.select_for_update()
        return rows.first()

    def _write_row(
        self, db: str, conversation_id: str, old: StoredConversation | None, fields: Row
    ) -> tuple[int, int] | None:
        """Replace the locked ``old`` row's contents, or insert a new row.

        Returns the row's primary key and the position of its first message, or
        None when a concurrent writer created the row first (retry).
        """
        if old is not None:
            StoredMessage.objects.using(db).filter(conversation_id=old.pk).delete()
            first_position = old.first_position + old.message_count
            StoredConversation.objects.using(db).filter(pk=old.pk).update(
                first_position=first_position, **fields
            )
            return old.pk, first_position
        try:
            with transaction.atomic(using=db):
                row = StoredConversation.objects.using(db).create(
                    namespace=self.namespace, conversation_id=conversation_id, **fields
                )
        except IntegrityError:
            return None
        return row.pk, 0

    def _insert_messages(
        self, db: str, conversation_pk: int, start: int, messages: builtins.list[Message]
    ) -> None:
        if not messages:
            return
        StoredMessage.objects.using(db).bulk_create(
            [
                StoredMessage(
                    conversation_id=conversation_pk,
                    position=start + index,
                    message_id=message.id,
                    role=message.role,
                    content=message.content,
                    timestamp=message.timestamp,
                    metadata=message.metadata,
                )
                for index, message in enumerate(messages)
            ],
            batch_size=INSERT_BATCH_SIZE,
        )

    def _replace(
        self,
        db: str,
        conversation_id: str,
        messages: builtins.list[Message],
        build: Callable[[StoredConversation | None], Row],
    ) -> Row:
        """Write a whole conversation; ``build(old_row_or_None)`` gives the row's fields."""
        for _attempt in range(MAX_ATTEMPTS):
            old = self._lock(db, conversation_id)
            fields = build(old)
            written = self._write_row(db, conversation_id, old, fields)
            if written is not None:
                self._insert_messages(db, written[0], written[1], messages)
                return fields
        raise self._gave_up(db, conversation_id)

    def _new_conversation(self, now: int, count: int) -> Row:
        """The fields of a conversation that ``append`` creates."""
        return {
            "created_at": now,
            "updated_at": now,
            "ttl": self.default_ttl,
            "expires_at": _expires_at(now, self.default_ttl),
            "message_count": count,
            "owner": None,
            "metadata": {},
        }

    # -- reading ---------------------------------------------------------------------------

    def _read_messages(self, db: str, row: Row, last: int | None) -> builtins.list[Message] | None:
        """The row's messages (or the last ``last`` of them); None when they were replaced."""
        count, first = row["message_count"], row["first_position"]
        if count == 0 or last == 0:
            return []
        rows = StoredMessage.objects.using(db).filter(
            conversation_id=row["pk"], position__gte=first, position__lt=first + count
        )
        if last is None:
            values = list(rows.order_by("position").values_list(*_MESSAGE_FIELDS))
            expected = count
        else:
            values = list(rows.order_by("-position").values_list(*_MESSAGE_FIELDS)[:last])
            values.reverse()
            expected = min(last, count)
        if len(values) != expected:
            return None
        return [_message(value) for value in values]

    def _read(
        self, db: str, lookup: Row, *, include_expired: bool, last: int | None
    ) -> Conversation | None:
        """One conversation (found by ``lookup``) read consistently, or None."""
        for _attempt in range(MAX_ATTEMPTS):
            row = self._rows(db).filter(**lookup).values(*_META_FIELDS).first()
            if row is None:
                return None
            metadata = _metadata(row)
            if not include_expired and metadata.is_expired():
                return None
            messages = self._read_messages(db, row, last)
            if messages is not None:
                return Conversation(
                    conversation_id=metadata.conversation_id, messages=messages, metadata=metadata
                )
        raise self._gave_up(db, str(next(iter(lookup.values()))))

    def _messages_of(self, db: str, rows: builtins.list[Row]) -> dict[int, builtins.list[Message]]:
        """The current messages of several conversations, by primary key, in one query."""
        ranges = {
            row["pk"]: (row["first_position"], row["first_position"] + row["message_count"])
            for row in rows
            if row["message_count"]
        }
        found: dict[int, builtins.list[Message]] = {pk: [] for pk in ranges}
        if not ranges:
            return found
        values = (
            StoredMessage.objects.using(db)
            .filter(conversation_id__in=list(ranges))
            .order_by("conversation_id", "position")
            .values_list("conversation_id", "position", *_MESSAGE_FIELDS)
        )
        for conversation_pk, position, *message in values:
            start, end = ranges[conversation_pk]
            if start <= position < end:
                found[conversation_pk].append(_message(tuple(message)))
        return found

    # -- contract --------------------------------------------------------------------------

    def _save(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        ttl: int | None,
        metadata: dict[str, Any] | None,
        owner: str | None,
    ) -> Conversation:
        now = now_ms()
        db = self._db(write=True)

        def build(old: StoredConversation | None) -> Row:
            fields: Row = {
                "created_at": now,
                "updated_at": now,
                "ttl": ttl,
                "expires_at": _expires_at(now, ttl),
                "message_count": len(messages),
                "owner": owner,
                "metadata": dict(metadata or {}),
            }
            if old is not None and _is_live(old, now):
                fields["created_at"] = old.created_at
                fields["metadata"] = {**(old.metadata or {}), **(metadata or {})}
                if owner is None:
                    fields["owner"] = old.owner
            return fields

        with self._errors(db), transaction.atomic(using=db):
            fields = self._replace(db, conversation_id, messages, build)
        return Conversation(
            conversation_id=conversation_id,
            messages=messages,
            metadata=_metadata({"conversation_id": conversation_id, **fields}),
        )

    def _create(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        ttl: int | None,
        metadata: dict[str, Any],
        owner: str | None,
    ) -> Conversation | None:
        now = now_ms()
        db = self._db(write=True)
        fields: Row = {
            "created_at": now,
            "updated_at": now,
            "ttl": ttl,
            "expires_at": _expires_at(now, ttl),
            "message_count": len(messages),
            "owner": owner,
            "metadata": metadata,
        }
        with self._errors(db), transaction.atomic(using=db):
            for _attempt in range(MAX_ATTEMPTS):
                old = self._lock(db, conversation_id)
                if old is not None and _is_live(old, now):
                    return None
                written = self._write_row(db, conversation_id, old, fields)
                if written is not None:
                    self._insert_messages(db, written[0], written[1], messages)
                    return Conversation(
                        conversation_id=conversation_id,
                        messages=messages,
                        metadata=_metadata({"conversation_id": conversation_id, **fields}),
                    )
                # A concurrent creator inserted the row first: the next round finds it.
            raise self._gave_up(db, conversation_id)

    def _load(
        self, conversation_id: str, *, include_expired: bool, last: int | None
    ) -> Conversation | None:
        db = self._db(write=False)
        with self._errors(db):
            return self._read(
                db,
                {"conversation_id": conversation_id},
                include_expired=include_expired,
                last=last,
            )

    def _append(
        self, conversation_id: str, messages: builtins.list[Message], *, update_timestamp: bool
    ) -> ConversationMetadata:
        now = now_ms()
        db = self._db(write=True)
        added = len(messages)
        bump: Row = {"message_count": F("message_count") + added}
        if update_timestamp:
            bump["updated_at"] = now
            bump["expires_at"] = ExpressionWrapper(
                F("ttl") * 1000 + Value(now), output_field=BigIntegerField()
            )
        rows = self._rows(db).filter(conversation_id=conversation_id)
        with self._errors(db), transaction.atomic(using=db):
            for _attempt in range(MAX_ATTEMPTS):
                # The UPDATE comes first: it takes the row lock (the write lock on SQLite).
                if rows.filter(_live(now)).update(**bump):
                    row = rows.values(*_META_FIELDS).get()
                    start = row["first_position"] + row["message_count"] - added
                    self._insert_messages(db, row["pk"], start, messages)
                    return _metadata(row)
                old = self._lock(db, conversation_id, write_locked=True)
                if old is not None and _is_live(old, now):
                    continue  # a concurrent writer made it live meanwhile: bump it
                fields = self._new_conversation(now, added)  # missing or expired: start anew
                written = self._write_row(db, conversation_id, old, fields)
                if written is not None:
                    self._insert_messages(db, written[0], written[1], messages)
                    return _metadata({"conversation_id": conversation_id, **fields})
            raise self._gave_up(db, conversation_id)

    def _delete(self, conversation_id: str) -> bool:
        db = self._db(write=True)
        with self._errors(db), transaction.atomic(using=db):
            row = self._lock(db, conversation_id)
            if row is None:
                return False
            row.delete()
            return True

    def _delete_in_batches(self, db: str, rows: QuerySet[StoredConversation]) -> int:
        """Delete ``rows`` and their messages, DELETE_BATCH_SIZE conversations per transaction.

        Each batch is locked and its condition checked again under the lock, so a
        conversation revived meanwhile (an append to an expired one) is kept.
        """
        deleted = 0
        label = StoredConversation._meta.label
        with self._errors(db):
            while True:
                pks = list(rows.order_by().values_list("pk", flat=True)[:DELETE_BATCH_SIZE])
                if not pks:
                    return deleted
                with transaction.atomic(using=db):
                    batch = rows.filter(pk__in=pks)
                    if self._take_write_lock(db, batch):
                        batch = batch.select_for_update()
                    locked = list(batch.values_list("pk", flat=True))
                    if locked:
                        _total, per_model = (
                            StoredConversation.objects.using(db).filter(pk__in=locked).delete()
                        )
                        deleted += per_model.get(label, 0)

    def _clear(self) -> int:
        db = self._db(write=True)
        return self._delete_in_batches(db, self._rows(db))

    def _cleanup(self) -> int:
        db = self._db(write=True)
        return self._delete_in_batches(db, self._rows(db).filter(expires_at__lte=now_ms()))

    def _list(self) -> builtins.list[str]:
        db = self._db(write=False)
        with self._errors(db):
            return list(
                self._rows(db)
                .filter(_live(now_ms()))
                .order_by("-updated_at", "-conversation_id")
                .values_list("conversation_id", flat=True)
            )

    def _list_conversations(
        self, *, owner: str | None, prefix: str | None, limit: int, offset: int
    ) -> Page:
        db = self._db(write=False)
        rows = self._rows(db).filter(_live(now_ms()))
        if owner is not None:
            rows = rows.filter(owner=owner)
        if prefix:
            # LIKE ignores case on SQLite (and MySQL); comparing the leading characters
            # exactly keeps the prefix filter case-sensitive everywhere.
            rows = rows.alias(id_head=Left("conversation_id", len(prefix))).filter(
                conversation_id__startswith=prefix, id_head=prefix
            )
        with self._errors(db):
            total = rows.count()
            if offset >= total:
                return Page(items=[], total=total)
            page = rows.order_by("-updated_at", "-conversation_id").values(*_META_FIELDS)[
                offset : offset + limit
            ]
            return Page(items=[_metadata(row) for row in page], total=total)

    def _iter_conversations(
        self, *, include_expired: bool, batch_size: int
    ) -> Iterator[Conversation]:
        db = self._db(write=False)
        last_pk = 0
        while True:
            rows = self._rows(db).filter(pk__gt=last_pk)
            if not include_expired:
                rows = rows.filter(_live(now_ms()))
            with self._errors(db):
                batch = list(rows.order_by("pk").values(*_META_FIELDS)[:batch_size])
            if not batch:
                return
            last_pk = batch[-1]["pk"]
            yield from self._with_messages(db, batch, include_expired)
            if len(batch) < batch_size:
                return

    def _with_messages(
        self, db: str, batch: builtins.list[Row], include_expired: bool
    ) -> Iterator[Conversation]:
        """The conversations of ``batch`` with their messages.

        One that changed since ``batch`` was read is read again on its own (and
        skipped if it is gone by then).
        """
        for group in _message_batches(batch):
            with self._errors(db):
                messages = self._messages_of(db, group)
            for row in group:
                found = messages.get(row["pk"], [])
                if len(found) == row["message_count"]:
                    yield Conversation(
                        conversation_id=row["conversation_id"],
                        messages=found,
                        metadata=_metadata(row),
                    )
                    continue
                with self._errors(db):
                    again = self._read(
                        db, {"pk": row["pk"]}, include_expired=include_expired, last=None
                    )
                if again is not None:
                    yield again

    def _put(self, conversation: Conversation) -> None:
        db = self._db(write=True)
        meta = conversation.metadata
        fields: Row = {
            "created_at": meta.created_at,
            "updated_at": meta.updated_at,
            "ttl": meta.ttl,
            "expires_at": meta.expires_at,
            "message_count": len(conversation.messages),
            "owner": meta.owner,
            "metadata": meta.metadata,
        }
        with self._errors(db), transaction.atomic(using=db):
            self._replace(
                db, conversation.conversation_id, conversation.messages, lambda _old: fields
            )

    def _exists(self, conversation_id: str) -> bool:
        db = self._db(write=False)
        with self._errors(db):
            return self._rows(db).filter(_live(now_ms()), conversation_id=conversation_id).exists()

    def _get_stats(self) -> StoreStats:
        db = self._db(write=False)
        now = now_ms()
        live = _live(now)
        with self._errors(db):
            totals = self._rows(db).aggregate(
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

    def _get_ttl(self, conversation_id: str) -> int:
        db = self._db(write=False)
        now = now_ms()
        with self._errors(db):
            row = (
                self._rows(db)
                .filter(conversation_id=conversation_id)
                .values(*_META_FIELDS)
                .first()
            )
        if row is None:
            return -2
        metadata = _metadata(row)
        if metadata.is_expired(now):
            return -2
        return remaining_ttl(metadata, now)

    def _set_ttl(self, conversation_id: str, ttl: int | None) -> bool:
        db = self._db(write=True)
        now = now_ms()
        with self._errors(db):
            updated = (
                self._rows(db)
                .filter(_live(now), conversation_id=conversation_id)
                .update(ttl=ttl, updated_at=now, expires_at=_expires_at(now, ttl))
            )
        return bool(updated)

    def _update_metadata(
        self, conversation_id: str, metadata: dict[str, Any], *, replace: bool
    ) -> ConversationMetadata | None:
        now = now_ms()
        db = self._db(write=True)
        rows = self._rows(db).filter(conversation_id=conversation_id)
        touch: Row = {
            "updated_at": now,
            "expires_at": ExpressionWrapper(
                F("ttl") * 1000 + Value(now), output_field=BigIntegerField()
            ),
        }
        with self._errors(db), transaction.atomic(using=db):
            # The UPDATE comes first: it takes the row lock (the write lock on SQLite),
            # so the metadata read below cannot change before it is written back.
            if replace:
                touch["metadata"] = metadata
            if not rows.filter(_live(now)).update(**touch):
                return None
            row = rows.values(*_META_FIELDS).get()
            if not replace:
                row["metadata"] = {**(row["metadata"] or {}), **metadata}
                rows.filter(pk=row["pk"]).update(metadata=row["metadata"])
        return _metadata(row)

    def _close(self) -> None:
        """Give this thread's connection back the way Django does at the end of a request.

        The connection belongs to Django: it is closed when broken or past
        ``CONN_MAX_AGE`` (immediately with the default ``CONN_MAX_AGE = 0``), and
        never inside a transaction. The next operation reconnects.
        """
        aliases = {self._db(write=False), self._db(write=True)}
        for connection in connections.all(initialized_only=True):
            if connection.alias in aliases and not connection.in_atomic_block:
                connection.close_if_unusable_or_obsolete()
