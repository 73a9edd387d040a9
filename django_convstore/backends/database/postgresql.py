"""PostgreSQL: every write is one statement, so in autocommit one round trip.

The statements (:mod:`.sql`) lock or create the conversation row, check
owner, expiry and idempotency on the locked row, write, and hand back what
the caller needs. A statement that had to wait for another writer's lock may
see the messages as they were before that writer committed (READ COMMITTED
gives each statement the snapshot of its start); the statements that depend
on the messages notice it and write nothing. The operation then runs again
with the lock taken first (``BEGIN``, ``SELECT … FOR UPDATE``, the same
statement, ``COMMIT``), when its snapshot is certainly current: several
round trips, but only under contention on one conversation. Appends never
need that path, except to replace an expired conversation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from ...exceptions import BackendError
from ...types import Conversation, ConversationMetadata, Message
from . import rows, sql
from .operations import Operations, Params, mismatch
from .transactions import write_transaction

#: Rounds before giving up: each after the first holds the row lock, so only a conversation
#: that is created or deleted again and again between two rounds can use them up.
MAX_ROUNDS = 50
#: What an attempt returns when it wrote nothing and must run again, holding the lock.
AGAIN = object()


#: psycopg prepares a statement after this many runs; far away, so only ours are prepared.
_NEVER_BY_COUNT = 2**31


@cache
def _server_binding_cursor_classes() -> tuple[type, type] | None:
    """psycopg 3's server-binding cursors for the store: ``(unprepared, prepared)``.

    Both send lists (the ids and JSON documents of the messages) as binary
    arrays. Django's cursor binds on the client, where an array is text that
    escapes every quote of every document, one regular expression match each:
    that cost more than the rest of an append's client side, and a
    1,000-message save spent 12.7 ms on it (0.7 ms as binary).

    The prepared one prepares each statement on first use. Planning one of the
    write statements costs more than running it; prepared once per
    connection, PostgreSQL reuses the plan. Django turns psycopg's automatic
    preparing off (``prepare_threshold = None``, for connection poolers);
    these statements are prepared all the same, and nothing else is.

    None with psycopg2, which has neither: there, Django's cursor is used.
    """
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    if not is_psycopg3:
        return None
    import psycopg
    from psycopg.types.array import ListBinaryDumper

    class BinaryArrayCursor(psycopg.Cursor[Any]):
        def __init__(self, connection: Any, **kwargs: Any):
            super().__init__(connection, **kwargs)
            self.adapters.register_dumper(list, ListBinaryDumper)

        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            kwargs.setdefault("prepare", False)
            return super().execute(query, params, **kwargs)

    class PreparedCursor(BinaryArrayCursor):
        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            kwargs.setdefault("prepare", True)
            connection = self.connection
            if connection.prepare_threshold is not None:
                return super().execute(query, params, **kwargs)
            connection.prepare_threshold = _NEVER_BY_COUNT
            try:
                return super().execute(query, params, **kwargs)
            finally:
                connection.prepare_threshold = None

    return BinaryArrayCursor, PreparedCursor


class PostgresOperations(Operations):
    """The store's primitives as single PostgreSQL statements."""

    aggregate = sql.PG_AGGREGATE

    def cursor(self) -> Any:
        connection = self.connection
        classes = _server_binding_cursor_classes()
        # While Django logs queries (DEBUG, CaptureQueriesContext) its own cursor runs the
        # statements: it logs them with their parameters, which a server-bound one cannot.
        if classes is None or connection.queries_logged:
            return super().cursor()
        cursor_class = classes[1] if self.prepared else classes[0]
        connection.ensure_connection()
        connection.validate_thread_sharing()
        # Django's wrapper: execute_wrappers apply and database errors are translated.
        return connection.make_cursor(cursor_class(connection.connection))

    @contextmanager
    def _locked(self, conversation_id: str, now: int) -> Iterator[tuple[Any, ...] | None]:
        """A transaction holding the conversation row's lock (None when there is no row)."""
        with write_transaction(self.connection, "BEGIN"):
            found = self.fetch(sql.PG_LOCK, self.params(conversation_id, now))
            yield found[0] if found else None

    def _until_done(
        self, conversation_id: str, now: int, attempt: Callable[[tuple[Any, ...] | None], Any]
    ) -> Any:
        """``attempt(None)`` unlocked, then ``attempt(lock_row)`` inside :meth:`_locked`,
        until it returns something other than :data:`AGAIN`."""
        result = attempt(None)
        for _round in range(MAX_ROUNDS):
            if result is not AGAIN:
                return result
            with self._locked(conversation_id, now) as lock:
                result = attempt(lock)
        if result is not AGAIN:
            return result
        raise BackendError(
            f"database store: conversation {conversation_id!r} kept being created and deleted "
            f"by concurrent writers; gave up after {MAX_ROUNDS} rounds."
        )

    def _message_params(
        self, conversation_id: str, messages: list[Message], now: int, owner: str | None
    ) -> Params:
        ids, docs = rows.encode(messages)
        params = self.params(conversation_id, now, owner)
        params.update(ids=ids, docs=docs, n=len(messages), created_at=now, updated_at=now)
        return params

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
        params = self._message_params(conversation_id, messages, now, owner)
        ttl = self.default_ttl
        params.update(ttl=ttl, expires=rows.expires_at(now, ttl), touch=touch)
        ((status, *values),) = self.fetch(sql.PG_APPEND, params)
        if status == "refused":
            raise mismatch(conversation_id)
        return rows.metadata(conversation_id, values)

    def _replaced(
        self,
        conversation_id: str,
        found: list[tuple[Any, ...]],
        new: ConversationMetadata,
        *,
        refused: str | None,
    ) -> Any:
        """The outcome of a save/create/put statement: the metadata, None, or AGAIN."""
        for status, *values, _added in found:
            if status == refused:
                raise mismatch(conversation_id)
            if status == "updated":
                return rows.metadata(conversation_id, values)
            if status == "created":
                return new
            if status in ("live", "refused"):
                return None
        return AGAIN

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
        params = self._message_params(conversation_id, messages, now, owner)
        params.update(ttl=ttl, expires=rows.expires_at(now, ttl))
        params["metadata"] = rows.encode_metadata(metadata)
        new = ConversationMetadata(
            conversation_id, now, now, len(messages), ttl, owner, dict(metadata or {})
        )

        def attempt(lock: tuple[Any, ...] | None) -> Any:
            statement = sql.PG_SAVE_MERGE if metadata else sql.PG_SAVE
            if lock is not None and metadata:
                # Holding the lock: merge in Python (the row may hold a key SQL cannot merge).
                live, _owner, stored = lock
                merged = {**rows.decode_metadata(stored), **metadata} if live else metadata
                params["metadata"] = rows.encode_metadata(merged)
                statement = sql.PG_SAVE_SET
            outcome = self._replaced(
                conversation_id, self.fetch(statement, params), new, refused="refused"
            )
            # "live" without the lock: the snapshot was stale (or the merge impossible).
            return AGAIN if outcome is None else outcome

        result: ConversationMetadata = self._until_done(conversation_id, now, attempt)
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
        params = self._message_params(conversation_id, messages, now, owner)
        params.update(
            ttl=ttl, expires=rows.expires_at(now, ttl), metadata=rows.encode_metadata(metadata)
        )
        new = ConversationMetadata(
            conversation_id, now, now, len(messages), ttl, owner, dict(metadata)
        )

        def attempt(_lock: tuple[Any, ...] | None) -> Any:
            return self._replaced(
                conversation_id, self.fetch(sql.PG_CREATE, params), new, refused=None
            )

        result: ConversationMetadata | None = self._until_done(conversation_id, now, attempt)
        return result

    def put(self, conversation: Conversation) -> None:
        meta = conversation.metadata
        cid = conversation.conversation_id
        params = self._message_params(cid, conversation.messages, meta.updated_at, meta.owner)
        params.update(
            created_at=meta.created_at,
            updated_at=meta.updated_at,
            ttl=meta.ttl,
            expires=meta.expires_at,
            metadata=rows.encode_metadata(meta.metadata),
        )

        def attempt(_lock: tuple[Any, ...] | None) -> Any:
            outcome = self._replaced(cid, self.fetch(sql.PG_PUT, params), meta, refused=None)
            return AGAIN if outcome is None else outcome

        self._until_done(cid, meta.updated_at, attempt)

    def pop(
        self, conversation_id: str, count: int, now: int, *, owner: str | None
    ) -> list[Message]:
        params = self.params(conversation_id, now, owner)
        params["count"] = count
        statement = sql.pg_pop(owner=owner is not None)

        def attempt(_lock: tuple[Any, ...] | None) -> Any:
            ((existing, fresh, _updated, joined),) = self.fetch(statement, params)
            if not existing:
                return []
            return rows.decode_joined(joined) if fresh else AGAIN

        result: list[Message] = self._until_done(conversation_id, now, attempt)
        return result

    def truncate(
        self, conversation_id: str, keep: int, now: int, *, owner: str | None
    ) -> tuple[ConversationMetadata, int] | None:
        params = self.params(conversation_id, now, owner)
        params["keep"] = keep
        statement = sql.pg_truncate(owner=owner is not None)

        def attempt(_lock: tuple[Any, ...] | None) -> Any:
            found = self.fetch(statement, params)
            if not found:
                return None
            status, *values, removed = found[0]
            if status == "retry":
                return AGAIN
            return rows.metadata(conversation_id, values), removed

        result: tuple[ConversationMetadata, int] | None = self._until_done(
            conversation_id, now, attempt
        )
        return result

    def delete(self, conversation_id: str, now: int, *, owner: str | None) -> bool:
        statement = sql.pg_delete(owner=owner is not None)
        params = self.params(conversation_id, now, owner)

        def attempt(_lock: tuple[Any, ...] | None) -> Any:
            ((existing, gone),) = self.fetch(statement, params)
            if not existing:
                return False
            return True if gone else AGAIN

        return bool(self._until_done(conversation_id, now, attempt))

    def update_metadata(
        self,
        conversation_id: str,
        metadata: dict[str, Any],
        now: int,
        *,
        replace: bool,
        owner: str | None,
    ) -> ConversationMetadata | None:
        params = self.params(conversation_id, now, owner)
        params["metadata"] = rows.encode_metadata(metadata)
        scoped = owner is not None
        found = self.fetch(sql.pg_update_metadata(owner=scoped, replace=replace), params)
        if found:
            return rows.metadata(conversation_id, found[0])
        if replace:
            return None
        # Missing, or holding a key that SQL cannot merge: merge in Python under the lock.
        with self._locked(conversation_id, now) as lock:
            if lock is None or not lock[0] or (scoped and lock[1] != owner):
                return None
            params["metadata"] = rows.encode_metadata(
                {**rows.decode_metadata(lock[2]), **metadata}
            )
            found = self.fetch(sql.pg_update_metadata(owner=scoped, replace=True), params)
        return rows.metadata(conversation_id, found[0]) if found else None


__all__ = ["PostgresOperations"]
