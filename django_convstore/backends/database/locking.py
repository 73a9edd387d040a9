"""SQLite and MySQL/MariaDB: short statements inside a transaction that holds the lock.

SQLite has no row locks: ``BEGIN IMMEDIATE`` takes the database's write lock
before anything is read, so everything the transaction reads stays true until
it commits. MySQL/MariaDB lock the conversation row with ``SELECT … FOR
UPDATE``. Under the lock, owner, expiry and idempotency are plain checks:

* ``append`` = BEGIN, SELECT the row, one multi-row INSERT that skips ids
  already present (``ON CONFLICT DO NOTHING`` / ``INSERT IGNORE``), one UPDATE of
  the counters, COMMIT; nothing in it grows with the conversation's length.
* ``pop``/``truncate`` read and delete only the rows they remove.

Two MySQL transactions creating the same conversation can collide (duplicate
key, or a deadlock on the gap lock): the loser rolls back and runs again,
when it finds the winner's row.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, NamedTuple

from django.db import IntegrityError, OperationalError

from ...exceptions import BackendError
from ...types import Conversation, ConversationMetadata, Message
from . import rows, sql
from .operations import Operations, mismatch
from .transactions import joins_caller, write_transaction

#: Rounds before giving up when concurrent creators keep colliding (MySQL only).
MAX_ROUNDS = 50
#: MySQL error codes worth another round: deadlock, and a duplicate key on create.
_RETRYABLE = {1213, 1062}

#: ``sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER`` (the module has the name from Python 3.11 on).
SQLITE_LIMIT_VARIABLE_NUMBER = 9


class Row(NamedTuple):
    """A locked conversation row (the columns of ``sql.LOCK_COLUMNS``)."""

    id: int
    created_at: int
    updated_at: int
    ttl: int | None
    owner: str | None
    message_count: int
    metadata: Any
    expires_at: int | None
    next_position: int

    def live(self, now: int) -> bool:
        return self.expires_at is None or self.expires_at > now

    def visible(self, now: int, owner: str | None) -> bool:
        """Live, and the owner's when acting for one."""
        return self.live(now) and (owner is None or self.owner == owner)

    def meta(self, conversation_id: str) -> ConversationMetadata:
        return rows.metadata(conversation_id, self[1:7])


class LockingOperations(Operations):
    """The store's primitives as statements inside a locking transaction."""

    #: Starts the store's own write transaction.
    begin: ClassVar[str] = "BEGIN"
    #: Appended to the SELECT of the conversation row.
    lock_suffix: ClassVar[str] = ""
    #: A multi-row INSERT of messages that skips ids already present (``{rows}``: VALUES).
    insert_template: ClassVar[str] = sql.SQLITE_INSERT

    # -- helpers ---------------------------------------------------------------------------------

    def _rows_per_insert(self) -> int:
        return max(1, (self.connection.features.max_query_params or 2000) // 4)

    def _insert(self, conversation_pk: int, start: int, ids: list[str], docs: list[str]) -> int:
        """Insert messages at ``start``, ``start + 1`` …; returns how many were new."""
        inserted = 0
        step = self._rows_per_insert()
        for offset in range(0, len(ids), step):
            chunk = range(offset, min(offset + step, len(ids)))
            values: list[Any] = []
            for index in chunk:
                values += (conversation_pk, start + index, ids[index], docs[index])
            statement = self.insert_template.replace(
                "{rows}", ", ".join(["(%s, %s, %s, %s)"] * len(chunk))
            )
            inserted += self.write(statement, values)
        return inserted

    def _lock(self, conversation_id: str, now: int) -> Row | None:
        found = self.fetch(sql.lock(self.lock_suffix), self.params(conversation_id, now))
        return Row(*found[0]) if found else None

    def _new_row(self, params: dict[str, Any]) -> int:
        with self.connection.cursor() as cursor:
            cursor.execute(self.sql(sql.INSERT_CONVERSATION), params)
            return int(cursor.lastrowid)

    def _replace(
        self,
        conversation_id: str,
        row: Row | None,
        meta: ConversationMetadata,
        messages: Sequence[Message],
    ) -> None:
        """Make the locked ``row`` (or a new one) hold exactly ``meta`` and ``messages``."""
        ids, docs = rows.encode(list(messages))
        params = self.params(conversation_id, meta.updated_at, meta.owner)
        params.update(
            created_at=meta.created_at,
            updated_at=meta.updated_at,
            ttl=meta.ttl,
            expires=meta.expires_at,
            n=len(ids),
            metadata=rows.encode_metadata(meta.metadata),
        )
        if row is None:
            self._insert(self._new_row(params), 0, ids, docs)
            return
        self.write(sql.PURGE_MESSAGES, {"id": row.id})
        params["id"] = row.id
        self.write(sql.REWRITE_CONVERSATION, params)
        self._insert(row.id, row.next_position, ids, docs)

    def _retryable(self, exc: Exception) -> bool:
        code = getattr(exc.__cause__, "args", (None,))[0]
        return self.connection.vendor == "mysql" and code in _RETRYABLE

    def _in_transaction(self, work: Callable[[], Any]) -> Any:
        """``work()`` in a write transaction, again after a retryable collision (MySQL)."""
        for _round in range(MAX_ROUNDS):
            try:
                with write_transaction(self.connection, self.begin):
                    return work()
            except (IntegrityError, OperationalError) as exc:
                # Inside the caller's transaction a deadlock already rolled it back: say so.
                if not self._retryable(exc) or joins_caller(self.connection):
                    raise
            time.sleep(random.uniform(0, 0.002))  # let the winner commit
        raise BackendError(
            "database store: concurrent writers kept colliding on one conversation; "
            f"gave up after {MAX_ROUNDS} rounds."
        )

    # -- writes ----------------------------------------------------------------------------------

    def append(
        self,
        conversation_id: str,
        messages: list[Message],
        now: int,
        *,
        touch: bool,
        owner: str | None,
    ) -> ConversationMetadata:
        def work() -> ConversationMetadata:
            return self._append_locked(conversation_id, messages, now, touch=touch, owner=owner)

        result: ConversationMetadata = self._in_transaction(work)
        return result

    def _append_locked(
        self,
        conversation_id: str,
        messages: list[Message],
        now: int,
        *,
        touch: bool,
        owner: str | None,
    ) -> ConversationMetadata:
        """The append, inside the write transaction: lock, check, insert, count."""
        row = self._lock(conversation_id, now)
        if row is None or not row.live(now):
            new = ConversationMetadata(
                conversation_id, now, now, len(messages), self.default_ttl, owner
            )
            self._replace(conversation_id, row, new, messages)
            return new
        if owner is not None and row.owner != owner:
            raise mismatch(conversation_id)
        ids, docs = rows.encode(messages)
        meta = row.meta(conversation_id)
        added = self._insert(row.id, row.next_position, ids, docs)
        if added:
            if touch:
                meta.updated_at = now
            meta.message_count += added
            self.write(
                sql.BUMP_CONVERSATION,
                {
                    "added": added,
                    "n": len(ids),
                    "updated_at": meta.updated_at,
                    "expires": meta.expires_at,
                    "id": row.id,
                },
            )
        return meta

    def save(
        self,
        conversation_id: str,
        messages: list[Message],
        now: int,
        *,
        ttl: int | None,
        metadata: dict[str, Any] | None,
        owner: str | None,
    ) -> ConversationMetadata:
        def work() -> ConversationMetadata:
            row = self._lock(conversation_id, now)
            new = ConversationMetadata(
                conversation_id, now, now, len(messages), ttl, owner, dict(metadata or {})
            )
            if row is not None and row.live(now):
                if owner is not None and row.owner != owner:
                    raise mismatch(conversation_id)
                new.created_at = row.created_at
                new.owner = row.owner
                new.metadata = {**rows.decode_metadata(row.metadata), **(metadata or {})}
            self._replace(conversation_id, row, new, messages)
            return new

        result: ConversationMetadata = self._in_transaction(work)
        return result

    def create(
        self,
        conversation_id: str,
        messages: list[Message],
        now: int,
        *,
        ttl: int | None,
        metadata: dict[str, Any],
        owner: str | None,
    ) -> ConversationMetadata | None:
        def work() -> ConversationMetadata | None:
            row = self._lock(conversation_id, now)
            if row is not None and row.live(now):
                return None
            new = ConversationMetadata(
                conversation_id, now, now, len(messages), ttl, owner, dict(metadata)
            )
            self._replace(conversation_id, row, new, messages)
            return new

        result: ConversationMetadata | None = self._in_transaction(work)
        return result

    def put(self, conversation: Conversation) -> None:
        cid = conversation.conversation_id
        meta = conversation.metadata.copy()
        meta.message_count = len(conversation.messages)

        def work() -> None:
            row = self._lock(cid, meta.updated_at)
            self._replace(cid, row, meta, conversation.messages)

        self._in_transaction(work)

    def pop(
        self, conversation_id: str, count: int, now: int, *, owner: str | None
    ) -> list[Message]:
        def work() -> list[Message]:
            row = self._lock(conversation_id, now)
            if row is None or not row.visible(now, owner) or not row.message_count:
                return []
            tail = self.fetch(sql.TAIL_DOCUMENTS, {"id": row.id, "count": count})
            self.write(sql.DROP_FROM, {"id": row.id, "position": tail[-1][0]})
            self.write(
                sql.SHRINK_CONVERSATION,
                {
                    "removed": len(tail),
                    "now": now,
                    "expires": rows.expires_at(now, row.ttl),
                    "id": row.id,
                },
            )
            return rows.decode_documents(document for _position, document in reversed(tail))

        result: list[Message] = self._in_transaction(work)
        return result

    def truncate(
        self, conversation_id: str, keep: int, now: int, *, owner: str | None
    ) -> tuple[ConversationMetadata, int] | None:
        def work() -> tuple[ConversationMetadata, int] | None:
            row = self._lock(conversation_id, now)
            if row is None or not row.visible(now, owner):
                return None
            meta = row.meta(conversation_id)
            drop = row.message_count - keep
            if drop <= 0:
                return meta, 0
            ((cut,),) = self.fetch(sql.CUT_POSITION, {"id": row.id, "skip": drop - 1})
            self.write(sql.DROP_FROM, {"id": row.id, "position": cut})
            meta.message_count, meta.updated_at = keep, now
            self.write(
                sql.SHRINK_CONVERSATION,
                {"removed": drop, "now": now, "expires": meta.expires_at, "id": row.id},
            )
            return meta, drop

        result: tuple[ConversationMetadata, int] | None = self._in_transaction(work)
        return result

    def delete(self, conversation_id: str, now: int, *, owner: str | None) -> bool:
        def work() -> bool:
            row = self._lock(conversation_id, now)
            if row is None or (owner is not None and not row.visible(now, owner)):
                return False
            self.write(sql.PURGE_MESSAGES, {"id": row.id})
            self.write(sql.DELETE_CONVERSATION, {"id": row.id})
            return True

        return bool(self._in_transaction(work))

    def update_metadata(
        self,
        conversation_id: str,
        metadata: dict[str, Any],
        now: int,
        *,
        replace: bool,
        owner: str | None,
    ) -> ConversationMetadata | None:
        def work() -> ConversationMetadata | None:
            row = self._lock(conversation_id, now)
            if row is None or not row.visible(now, owner):
                return None
            meta = row.meta(conversation_id)
            meta.metadata = dict(metadata) if replace else {**meta.metadata, **metadata}
            meta.updated_at = now
            self.write(
                sql.TOUCH_METADATA,
                {
                    "metadata": rows.encode_metadata(meta.metadata),
                    "now": now,
                    "expires": meta.expires_at,
                    "id": row.id,
                },
            )
            return meta

        result: ConversationMetadata | None = self._in_transaction(work)
        return result


class SqliteOperations(LockingOperations):
    """SQLite: ``BEGIN IMMEDIATE`` holds the write lock for the whole operation.

    An append to a live conversation is BEGIN IMMEDIATE, one ``INSERT … SELECT``
    that inserts the new messages only if the conversation is live and the
    caller's (its positions read from the row in the same statement), one
    ``UPDATE … RETURNING`` of the counters, COMMIT: the statements of the plain
    driver's own transaction. When the INSERT inserts nothing (a new, expired or
    another owner's conversation, or only ids already stored) the general path
    runs in the same transaction.
    """

    begin = "BEGIN IMMEDIATE"
    aggregate = sql.SQLITE_AGGREGATE
    insert_template = sql.SQLITE_INSERT

    def append(
        self,
        conversation_id: str,
        messages: list[Message],
        now: int,
        *,
        touch: bool,
        owner: str | None,
    ) -> ConversationMetadata:
        if (
            not messages  # the single INSERT needs at least one row
            or len(messages) > self._rows_per_insert()
            or sqlite3.sqlite_version_info < (3, 35)
        ):
            return super().append(conversation_id, messages, now, touch=touch, owner=owner)
        ids, docs = rows.encode(messages)
        values: list[Any] = []
        for index, (message_id, document) in enumerate(zip(ids, docs, strict=True)):
            values += (index, message_id, document)
        values += (self.namespace, conversation_id, now, owner, owner)  # the WHERE clause
        insert = sql.SQLITE_APPEND.replace("{rows}", ", ".join(["(%s, %s, %s)"] * len(ids)))
        bump = {
            "n": len(ids),
            "touch": touch,
            "now": now,
            "ns": self.namespace,
            "cid": conversation_id,
        }

        def work() -> ConversationMetadata:
            bump["added"] = self.write(insert, values)
            if not bump["added"]:
                return self._append_locked(
                    conversation_id, messages, now, touch=touch, owner=owner
                )
            (found,) = self.fetch(sql.SQLITE_APPEND_COUNT, bump)
            return rows.metadata(conversation_id, found)

        result: ConversationMetadata = self._in_transaction(work)
        return result

    def _rows_per_insert(self) -> int:
        # Django assumes SQLite's old limit of 999 parameters; ask the library itself.
        self.connection.ensure_connection()
        raw = self.connection.connection
        limit = self.connection.features.max_query_params or 999
        getlimit = getattr(raw, "getlimit", None)  # Python 3.11+
        if getlimit is not None:
            limit = max(limit, getlimit(SQLITE_LIMIT_VARIABLE_NUMBER))
        return max(1, min(limit // 4, 1000))


class MysqlOperations(LockingOperations):
    """MySQL/MariaDB: ``SELECT … FOR UPDATE`` locks the conversation row."""

    begin = "START TRANSACTION"
    lock_suffix = " FOR UPDATE"
    insert_template = sql.MYSQL_INSERT

    def _rows_per_insert(self) -> int:
        return 500

    def set_ttl(
        self, conversation_id: str, ttl: int | None, now: int, *, owner: str | None
    ) -> bool:
        # Like the other writes: lock the row through the (namespace, conversation_id) key,
        # check it, update it by primary key. A lone UPDATE … WHERE namespace, id, expiry,
        # owner lets the optimizer pick another index, and MariaDB picks (namespace,
        # updated_at), the very column every write rewrites: under READ COMMITTED the scan
        # then misses a row another writer has just moved in that index and changes nothing
        # (False for a live conversation), or deadlocks against writers that lock in key order.
        def work() -> bool:
            row = self._lock(conversation_id, now)
            if row is None or not row.visible(now, owner):
                return False
            expires = rows.expires_at(now, ttl)
            self.write(sql.SET_TTL, {"ttl": ttl, "now": now, "expires": expires, "id": row.id})
            return True

        return bool(self._in_transaction(work))

    def load(
        self,
        conversation_id: str,
        now: int,
        *,
        include_expired: bool,
        last: int | None,
        owner: str | None,
    ) -> Conversation | None:
        params = self.params(conversation_id, now, owner)
        params["last"] = last
        statement = sql.mysql_load(live=not include_expired, owner=owner is not None, last=last)
        found = self.fetch(statement, params)
        if not found:
            return None
        head = found[0]
        meta = rows.metadata(conversation_id, (*head[2:7], head[1]))
        return Conversation(conversation_id, rows.decode_documents(r[1] for r in found[1:]), meta)
