"""A store on the Django ORM's databases: PostgreSQL, SQLite, MySQL/MariaDB.

One :class:`~django_convstore.models.StoredConversation` row per conversation
(namespaced by the store's ``NAMESPACE``) and one
:class:`~django_convstore.models.StoredMessage` row per message, holding the
message as one JSON document (see ``docs/backends/database.md``).
``OPTIONS["DATABASE"]`` picks the database alias; without it the database
routers decide (reads through ``db_for_read``, writes through
``db_for_write``, ``default`` when no router answers).

The models are the schema, the migrations and the admin's source; the hot
paths are plain SQL on Django's connection (``connections[alias].cursor()``),
one module per way of writing:

* :mod:`.postgresql` — one statement (one round trip) per write and per read;
* :mod:`.locking` — SQLite (``BEGIN IMMEDIATE``) and MySQL/MariaDB (``SELECT …
  FOR UPDATE``): a few short statements inside a transaction that holds the lock;
* :mod:`.sql` — the statements, per vendor; :mod:`.catalog` — listing,
  streaming, stats, cleanup and clear; :mod:`.rows` — decoding with the codec;
  :mod:`.errors` — exceptions; :mod:`.transactions` — joining the caller's
  ``atomic()`` block.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from typing import Any, ClassVar

from django.db import DEFAULT_DB_ALIAS, connections, router

from ...clock import now_ms
from ...types import Conversation, ConversationMetadata, Message, Page, StoreStats
from ..base import BaseStore
from . import errors

try:
    from ...models import StoredConversation
except RuntimeError as exc:  # Django refuses models of an app that is not installed
    raise ImportError(
        "the database backend keeps conversations in the models of django_convstore: "
        "add 'django_convstore' to INSTALLED_APPS and run manage.py migrate"
    ) from exc

from . import sql
from .catalog import Catalog
from .locking import MysqlOperations, SqliteOperations
from .operations import Operations
from .postgresql import PostgresOperations

#: The operations class per Django database vendor (``connection.vendor``).
OPERATIONS: dict[str, type[Operations]] = {
    "postgresql": PostgresOperations,
    "sqlite": SqliteOperations,
    "mysql": MysqlOperations,
}
#: How each vendor begins the store's own write transaction, and locks rows while in it.
_LOCKING = {"postgresql": ("BEGIN", " FOR UPDATE"), "mysql": ("START TRANSACTION", " FOR UPDATE")}


class DatabaseStore(BaseStore):
    """Conversations in the tables of ``django_convstore`` (run ``manage.py migrate``).

    ``OPTIONS["DATABASE"]`` names the database alias; without it the database
    routers choose, falling back to ``default``. ``LOCATION`` is not used.
    Inside the caller's ``atomic()`` block the store runs in that transaction.
    """

    backend_name: ClassVar[str] = "database"
    option_names: ClassVar[frozenset[str]] = frozenset({"DATABASE", "PREPARED_STATEMENTS"})
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
        prepared = self.options.get("PREPARED_STATEMENTS", True)
        if not isinstance(prepared, bool):
            raise self.configuration_error(
                f"OPTIONS['PREPARED_STATEMENTS'] must be True or False, not {prepared!r}."
            )
        #: PostgreSQL: prepare the store's statements on the server (see the docs: turn it
        #: off behind a connection pooler that cannot keep prepared statements).
        self.prepared_statements: bool = prepared

    # -- where and how -----------------------------------------------------------------------

    def _db(self, *, write: bool) -> str:
        if self.database:
            return self.database
        route = router.db_for_write if write else router.db_for_read
        return route(StoredConversation) or DEFAULT_DB_ALIAS

    def _ops(self, db: str) -> Operations:
        connection = connections[db]
        operations = OPERATIONS.get(connection.vendor, SqliteOperations)
        return operations(
            connection, self.namespace, self.default_ttl, prepared=self.prepared_statements
        )

    def _catalog(self, db: str) -> Catalog:
        vendor = connections[db].vendor
        begin, lock_suffix = _LOCKING.get(vendor, (SqliteOperations.begin, ""))
        return Catalog(self._ops(db), begin, lock_suffix)

    def _errors(self, db: str) -> Any:
        return errors.translated(self.display_alias, db)

    # -- contract ----------------------------------------------------------------------------

    def _save(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        ttl: int | None,
        metadata: dict[str, Any] | None,
        owner: str | None,
    ) -> Conversation:
        db = self._db(write=True)
        with self._errors(db):
            meta = self._ops(db).save(
                conversation_id, messages, now_ms(), ttl=ttl, metadata=metadata, owner=owner
            )
        return Conversation(conversation_id, messages, meta)

    def _create(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        ttl: int | None,
        metadata: dict[str, Any],
        owner: str | None,
    ) -> Conversation | None:
        db = self._db(write=True)
        with self._errors(db):
            meta = self._ops(db).create(
                conversation_id, messages, now_ms(), ttl=ttl, metadata=metadata, owner=owner
            )
        return None if meta is None else Conversation(conversation_id, messages, meta)

    def _load(
        self, conversation_id: str, *, include_expired: bool, last: int | None, owner: str | None
    ) -> Conversation | None:
        db = self._db(write=False)
        with self._errors(db):
            return self._ops(db).load(
                conversation_id, now_ms(), include_expired=include_expired, last=last, owner=owner
            )

    def _append(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        update_timestamp: bool,
        owner: str | None,
    ) -> ConversationMetadata:
        db = self._db(write=True)
        with self._errors(db):
            return self._ops(db).append(
                conversation_id, messages, now_ms(), touch=update_timestamp, owner=owner
            )

    def _pop(
        self, conversation_id: str, count: int, *, owner: str | None
    ) -> builtins.list[Message]:
        db = self._db(write=True)
        with self._errors(db):
            return self._ops(db).pop(conversation_id, count, now_ms(), owner=owner)

    def _truncate(
        self, conversation_id: str, keep: int, *, owner: str | None
    ) -> tuple[ConversationMetadata, int] | None:
        db = self._db(write=True)
        with self._errors(db):
            return self._ops(db).truncate(conversation_id, keep, now_ms(), owner=owner)

    def _delete(self, conversation_id: str, *, owner: str | None) -> bool:
        db = self._db(write=True)
        with self._errors(db):
            return self._ops(db).delete(conversation_id, now_ms(), owner=owner)

    def _put(self, conversation: Conversation) -> None:
        db = self._db(write=True)
        with self._errors(db):
            self._ops(db).put(conversation)

    def _exists(self, conversation_id: str, *, owner: str | None) -> bool:
        db = self._db(write=False)
        with self._errors(db):
            return self._ops(db).exists(conversation_id, now_ms(), owner=owner)

    def _get_ttl(self, conversation_id: str, *, owner: str | None) -> int:
        db = self._db(write=False)
        now = now_ms()
        with self._errors(db):
            found = self._ops(db).expires_at(conversation_id, now, owner=owner)
        if not found:
            return -2
        (expires_at,) = found
        if expires_at is None:
            return -1
        return max(0, (int(expires_at) - now + 500) // 1000)  # rounded like remaining_ttl

    def _set_ttl(self, conversation_id: str, ttl: int | None, *, owner: str | None) -> bool:
        db = self._db(write=True)
        with self._errors(db):
            return self._ops(db).set_ttl(conversation_id, ttl, now_ms(), owner=owner)

    def _update_metadata(
        self, conversation_id: str, metadata: dict[str, Any], *, replace: bool, owner: str | None
    ) -> ConversationMetadata | None:
        db = self._db(write=True)
        with self._errors(db):
            return self._ops(db).update_metadata(
                conversation_id, metadata, now_ms(), replace=replace, owner=owner
            )

    def _clear(self) -> int:
        db = self._db(write=True)
        with self._errors(db):
            return self._catalog(db).clear()

    def _cleanup(self) -> int:
        db = self._db(write=True)
        with self._errors(db):
            return self._catalog(db).cleanup(now_ms())

    def _list(self) -> builtins.list[str]:
        db = self._db(write=False)
        with self._errors(db):
            return self._catalog(db).list(now_ms())

    def _list_conversations(
        self, *, owner: str | None, prefix: str | None, limit: int, offset: int
    ) -> Page:
        db = self._db(write=False)
        with self._errors(db):
            return self._catalog(db).page(
                now_ms(), owner=owner, prefix=prefix, limit=limit, offset=offset
            )

    def _iter_conversations(
        self, *, include_expired: bool, batch_size: int, owner: str | None
    ) -> Iterator[Conversation]:
        db = self._db(write=False)
        stream = self._catalog(db).iterate(
            include_expired=include_expired, batch_size=batch_size, owner=owner, now=now_ms()
        )
        while True:
            with self._errors(db):
                conversation = next(stream, None)
            if conversation is None:
                return
            yield conversation

    def _get_stats(self) -> StoreStats:
        db = self._db(write=False)
        with self._errors(db):
            return self._catalog(db).stats(now_ms())

    def analyze(self) -> bool:
        """Refresh PostgreSQL's planner statistics of the store's tables (False elsewhere).

        PostgreSQL plans a prepared statement once per session. Plans made
        while the tables were nearly empty may look a conversation up through
        a namespace index, scanning the whole namespace, once the tables are
        large; they stay until the statistics change (autovacuum's ANALYZE, or
        this). ``convstore_migrate`` and ``convstore_import`` call it as they
        write. SQLite and MySQL/MariaDB look a conversation up by its unique
        key without statistics: there it does nothing and returns False.
        """
        db = self._db(write=True)
        connection = connections[db]
        if connection.vendor != "postgresql":
            return False
        with self._errors(db), connection.cursor() as cursor:
            cursor.execute(sql.render("ANALYZE {conv}, {msg}", connection))
        return True

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


__all__ = ["DatabaseStore"]
