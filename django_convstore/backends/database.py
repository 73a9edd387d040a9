"""A store on the Django ORM: SQLite, PostgreSQL, MySQL … whatever ``DATABASES`` holds.

One :class:`~django_convstore.models.StoredConversation` row per conversation
(namespaced by the store's ``NAMESPACE``) and one
:class:`~django_convstore.models.StoredMessage` row per message, at a 0-based
``position``. ``OPTIONS["DATABASE"]`` picks the database alias; without it the
database routers decide (reads through ``db_for_read``, writes through
``db_for_write``, ``default`` when no router answers).

Concurrency. Every write transaction starts with a write to the conversation
row, so it holds the row lock (PostgreSQL, MySQL) or the database write lock
(SQLite, where ``select_for_update`` does nothing) before it reads anything:

* ``append`` first runs ``UPDATE … SET message_count = message_count + n`` on
  the live row, reads the new count back and inserts the messages at the
  positions below it. Two appends can therefore never pick the same
  positions, and the cost is one UPDATE, one SELECT and one INSERT whatever
  the conversation's length.
* ``save``, ``put`` and ``delete`` lock the row with ``select_for_update``
  (on SQLite: with a no-op UPDATE) before reading it.
* Creating a missing conversation inserts its row inside a savepoint; losing
  the race on the unique (namespace, conversation_id) constraint rolls back to
  the savepoint and retries, finding the winner's row.

Replacing a conversation (``save``, ``put``, or ``append`` to an expired one)
writes a new row with a new primary key. Reads fetch the row, then its
messages with ``position < message_count``: appends made in between are
ignored, and a conversation replaced in between is noticed (too few
messages) and read again, so a read never mixes two versions.
"""

from __future__ import annotations

import builtins
from collections.abc import Generator, Iterator, Mapping
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
from ..models import StoredConversation, StoredMessage
from ..types import Conversation, ConversationMetadata, Message, Page, StoreStats
from .base import BaseStore, remaining_ttl

#: How often a write retries when concurrent writers keep replacing the same conversation.
MAX_ATTEMPTS = 5
#: Conversations deleted per transaction by ``clear()`` and ``cleanup()``.
DELETE_BATCH_SIZE = 500
#: Message rows per INSERT statement.
INSERT_BATCH_SIZE = 500
#: ``iter_conversations`` fetches the messages of at most this many messages' worth of
#: conversations (and at most ``DELETE_BATCH_SIZE`` conversations) per query.
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
)
_MESSAGE_FIELDS = ("message_id", "role", "content", "timestamp", "metadata")
# SQLSTATE 42P01 (PostgreSQL) and the SQLite / MySQL wordings of "the table is missing".
_MISSING_TABLE_MARKERS = ("no such table", "doesn't exist", "does not exist")


def _live(now: int) -> Q:
    """Rows that have not expired at ``now``."""
    return Q(expires_at__isnull=True) | Q(expires_at__gt=now)


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


def _instance_metadata(row: StoredConversation) -> ConversationMetadata:
    return _metadata({name: getattr(row, name) for name in _META_FIELDS})


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


def _message_batches(
    rows: builtins.list[dict[str, Any]],
) -> Iterator[builtins.list[dict[str, Any]]]:
    """Split conversation rows so one message query fetches about MESSAGE_FETCH_SIZE rows."""
    batch: builtins.list[dict[str, Any]] = []
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

    # -- plumbing --------------------------------------------------------------------------

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
        """Translate database exceptions into the app's errors."""
        try:
            yield
        except OverflowError as exc:  # SQLite's driver, for integers beyond 64 bits
            raise BackendError(
                self._describe(db, "a value does not fit the database's columns", exc)
            ) from exc
        except DatabaseError as exc:
            if _is_missing_table(exc):
                raise BackendError(
                    self._describe(db, "the tables are missing; run manage.py migrate", exc)
                ) from exc
            if isinstance(exc, OperationalError | InterfaceError):
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

    def _lock(
        self, db: str, conversation_id: str, *, write_locked: bool = False
    ) -> StoredConversation | None:
        """The conversation's row, locked until the transaction ends (None when missing).

        On databases without ``SELECT … FOR UPDATE`` (SQLite) a no-op UPDATE takes
        the database write lock first, unless the transaction already holds it.
        """
        rows = self._rows(db).filter(conversation_id=conversation_id)
        if connections[db].features.has_select_for_update:
            return rows.select_for_update().first()
        if not write_locked:
            rows.update(message_count=F("message_count"))
        return rows.first()

    def _insert_row(
        self, db: str, fields: dict[str, Any], *, contended: bool
    ) -> StoredConversation | None:
        """Insert a conversation row; None when a concurrent writer created it first.

        ``contended`` means no lock guards the id (the row was missing), so the
        insert runs in a savepoint and a unique-constraint clash is survivable.
        """
        objects = StoredConversation.objects.using(db)
        if not contended:
            return objects.create(namespace=self.namespace, **fields)
        try:
            with transaction.atomic(using=db):
                return objects.create(namespace=self.namespace, **fields)
        except IntegrityError:
            return None

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

    def _replace(self, db: str, conversation_id: str, build: Any) -> StoredConversation:
        """Lock, delete and re-create a conversation row; ``build(old_row)`` gives its fields."""
        for _attempt in range(MAX_ATTEMPTS):
            old = self._lock(db, conversation_id)
            fields = build(old)
            if old is not None:
                old.delete()
            row = self._insert_row(db, fields, contended=old is None)
            if row is not None:
                return row
        raise self._gave_up(db, conversation_id)

    def _read_messages(
        self, db: str, conversation_pk: int, count: int, last: int | None
    ) -> builtins.list[Message] | None:
        """The first ``count`` messages (or the last ``last`` of them); None if replaced."""
        if count == 0 or last == 0:
            return []
        rows = StoredMessage.objects.using(db).filter(
            conversation_id=conversation_pk, position__lt=count
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

        def build(old: StoredConversation | None) -> dict[str, Any]:
            live = old is not None and (old.expires_at is None or old.expires_at > now)
            fields: dict[str, Any] = {
                "conversation_id": conversation_id,
                "created_at": now,
                "updated_at": now,
                "ttl": ttl,
                "expires_at": _expires_at(now, ttl),
                "message_count": len(messages),
                "owner": owner,
                "metadata": dict(metadata or {}),
            }
            if live and old is not None:
                fields["created_at"] = old.created_at
                fields["metadata"] = {**(old.metadata or {}), **(metadata or {})}
                if owner is None:
                    fields["owner"] = old.owner
            return fields

        with self._errors(db), transaction.atomic(using=db):
            row = self._replace(db, conversation_id, build)
            self._insert_messages(db, row.pk, 0, messages)
        return Conversation(
            conversation_id=conversation_id,
            messages=messages,
            metadata=_instance_metadata(row),
        )

    def _load(
        self, conversation_id: str, *, include_expired: bool, last: int | None
    ) -> Conversation | None:
        db = self._db(write=False)
        with self._errors(db):
            for _attempt in range(MAX_ATTEMPTS):
                row = (
                    self._rows(db)
                    .filter(conversation_id=conversation_id)
                    .values(*_META_FIELDS)
                    .first()
                )
                if row is None:
                    return None
                metadata = _metadata(row)
                if not include_expired and metadata.is_expired():
                    return None
                messages = self._read_messages(db, row["pk"], metadata.message_count, last)
                if messages is not None:
                    return Conversation(
                        conversation_id=conversation_id, messages=messages, metadata=metadata
                    )
        raise self._gave_up(db, conversation_id)

    def _append(
        self, conversation_id: str, messages: builtins.list[Message], *, update_timestamp: bool
    ) -> ConversationMetadata:
        now = now_ms()
        db = self._db(write=True)
        added = len(messages)
        bump: dict[str, Any] = {"message_count": F("message_count") + added}
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
                    values = rows.values(*_META_FIELDS).get()
                    conversation_pk, metadata = values["pk"], _metadata(values)
                    break
                old = self._lock(db, conversation_id, write_locked=True)
                if old is not None and (old.expires_at is None or old.expires_at > now):
                    continue  # a concurrent writer made it live meanwhile: bump it
                if old is not None:
                    old.delete()  # expired: start a new conversation in its place
                row = self._insert_row(
                    db,
                    {
                        "conversation_id": conversation_id,
                        "created_at": now,
                        "updated_at": now,
                        "ttl": self.default_ttl,
                        "expires_at": _expires_at(now, self.default_ttl),
                        "message_count": added,
                        "owner": None,
                        "metadata": {},
                    },
                    contended=old is None,
                )
                if row is not None:
                    conversation_pk, metadata = row.pk, _instance_metadata(row)
                    break
            else:
                raise self._gave_up(db, conversation_id)
            self._insert_messages(db, conversation_pk, metadata.message_count - added, messages)
        return metadata

    def _delete(self, conversation_id: str) -> bool:
        db = self._db(write=True)
        with self._errors(db), transaction.atomic(using=db):
            row = self._lock(db, conversation_id)
            if row is None:
                return False
            row.delete()
            return True

    def _delete_in_batches(self, db: str, rows: QuerySet[StoredConversation]) -> int:
        """Delete ``rows`` (and their messages) DELETE_BATCH_SIZE conversations at a time."""
        deleted = 0
        label = StoredConversation._meta.label
        with self._errors(db):
            while True:
                pks = list(rows.order_by().values_list("pk", flat=True)[:DELETE_BATCH_SIZE])
                if not pks:
                    return deleted
                # Each batch is one transaction (the collector's), whose first statement
                # is a DELETE, so SQLite takes its write lock before anything else.
                _total, per_model = rows.filter(pk__in=pks).only("pk").delete()
                deleted += per_model.get(label, 0)

    def _clear(self) -> int:
        db = self._db(write=True)
        return self._delete_in_batches(db, self._rows(db))

    def _cleanup(self) -> int:
        db = self._db(write=True)
        return self._delete_in_batches(db, self._rows(db).filter(expires_at__lte=now_ms()))

    def _live_rows(self, db: str) -> QuerySet[StoredConversation]:
        return self._rows(db).filter(_live(now_ms()))

    def _list(self) -> builtins.list[str]:
        db = self._db(write=False)
        with self._errors(db):
            return list(
                self._live_rows(db)
                .order_by("-updated_at", "-conversation_id")
                .values_list("conversation_id", flat=True)
            )

    def _list_conversations(
        self, *, owner: str | None, prefix: str | None, limit: int, offset: int
    ) -> Page:
        db = self._db(write=False)
        rows = self._live_rows(db)
        if owner is not None:
            rows = rows.filter(owner=owner)
        if prefix:
            # LIKE is case-insensitive on SQLite (and MySQL); the exact comparison of the
            # leading characters keeps the prefix filter case-sensitive everywhere.
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
            skipped = yield from self._with_messages(db, batch)
            if len(batch) < batch_size and not skipped:
                return  # a short batch was the last one, unless a replacement is still ahead

    def _with_messages(
        self, db: str, batch: builtins.list[dict[str, Any]]
    ) -> Generator[Conversation, None, int]:
        """Yield the conversations of ``batch`` with their messages; return how many were skipped.

        A conversation deleted or replaced since ``batch`` was read is skipped: a
        replacement has a higher primary key, so the stream reaches it later.
        """
        skipped = 0
        for group in _message_batches(batch):
            with self._errors(db):
                messages = self._messages_of(db, group)
            for row in group:
                found = messages.get(row["pk"], [])
                if len(found) != row["message_count"]:
                    skipped += 1
                    continue
                yield Conversation(
                    conversation_id=row["conversation_id"],
                    messages=found,
                    metadata=_metadata(row),
                )
        return skipped

    def _messages_of(
        self, db: str, rows: builtins.list[dict[str, Any]]
    ) -> dict[int, builtins.list[Message]]:
        counts = {row["pk"]: row["message_count"] for row in rows if row["message_count"]}
        found: dict[int, builtins.list[Message]] = {pk: [] for pk in counts}
        if not counts:
            return found
        values = (
            StoredMessage.objects.using(db)
            .filter(conversation_id__in=list(counts))
            .order_by("conversation_id", "position")
            .values_list("conversation_id", "position", *_MESSAGE_FIELDS)
        )
        for conversation_pk, position, *message in values:
            if position < counts[conversation_pk]:
                found[conversation_pk].append(_message(tuple(message)))
        return found

    def _put(self, conversation: Conversation) -> None:
        db = self._db(write=True)
        meta = conversation.metadata
        fields = {
            "conversation_id": conversation.conversation_id,
            "created_at": meta.created_at,
            "updated_at": meta.updated_at,
            "ttl": meta.ttl,
            "expires_at": meta.expires_at,
            "message_count": len(conversation.messages),
            "owner": meta.owner,
            "metadata": meta.metadata,
        }
        with self._errors(db), transaction.atomic(using=db):
            row = self._replace(db, conversation.conversation_id, lambda old: fields)
            self._insert_messages(db, row.pk, 0, conversation.messages)

    def _exists(self, conversation_id: str) -> bool:
        db = self._db(write=False)
        with self._errors(db):
            return self._live_rows(db).filter(conversation_id=conversation_id).exists()

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
