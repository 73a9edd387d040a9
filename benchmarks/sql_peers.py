"""What the database store is compared with, on the same database in the same run.

* Floors — the plain driver (``sqlite3`` / psycopg) doing the least equivalent
  work on the store's own tables (same indexes and constraints): append = one
  ``UPDATE`` of the conversation row (``RETURNING`` the position) and one
  ``INSERT`` of the message in a transaction; load = one ordered ``SELECT`` and a
  JSON decode (``json.loads``) per row; ``last=20`` = one ``SELECT`` of the newest 20
  (and a decode per row). No owner, expiry or idempotency checks, no metadata.
* Peers — the OpenAI Agents SDK's sessions (``openai-agents``, the ``bench``
  extra): ``SQLiteSession`` on a SQLite file in WAL mode, and
  ``SQLAlchemySession`` on PostgreSQL through asyncpg. Both are async; they are
  driven from one event loop with ``run_until_complete``, one call at a time.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from typing import Any

from django.db import connections

from django_convstore import codec
from django_convstore.models import StoredConversation, StoredMessage
from django_convstore.types import Message

CONV = StoredConversation._meta.db_table
MSG = StoredMessage._meta.db_table


def document(item: dict[str, Any]) -> str:
    """A message as the store keeps it (the codec's JSON), for the floors' rows."""
    return codec.encode_message(Message(**item)).decode()


class Floor:
    """The plain driver on the store's tables (see the module docstring)."""

    label = "floor"

    def __init__(self, connect: Callable[[], Any], begin: Callable[[Any], None]):
        self.connection = connect()
        self._begin = begin
        self._counter = 0

    def create(self, conversation_id: str, items: list[dict[str, Any]]) -> int:
        """A conversation row holding ``items``; its primary key (what the floor works on)."""
        cursor = self.connection.cursor()
        cursor.execute(
            f"INSERT INTO {CONV} (namespace, conversation_id, created_at, updated_at, "
            "message_count, next_position, metadata) VALUES ('floor', %s, 0, 0, %s, %s, '{}') "
            "RETURNING id",
            (conversation_id, len(items), len(items)),
        )
        pk = int(cursor.fetchone()[0])
        for position, item in enumerate(items):
            cursor.execute(
                f"INSERT INTO {MSG} (conversation_id, position, message_id, document) "
                "VALUES (%s, %s, %s, %s)",
                (pk, position, f"f{position}", document(item)),
            )
        self.connection.commit()
        return pk

    def append(self, pk: int, doc: str) -> None:
        self._counter += 1
        cursor = self.connection.cursor()
        self._begin(cursor)
        cursor.execute(
            f"UPDATE {CONV} SET message_count = message_count + 1, "
            "next_position = next_position + 1, updated_at = %s WHERE id = %s "
            "RETURNING next_position",
            (self._counter, pk),
        )
        position = cursor.fetchone()[0]
        cursor.execute(
            f"INSERT INTO {MSG} (conversation_id, position, message_id, document) "
            "VALUES (%s, %s, %s, %s)",
            (pk, position, f"a{position}", doc),
        )
        self.connection.commit()

    def load(self, pk: int) -> list[Any]:
        cursor = self.connection.cursor()
        cursor.execute(
            f"SELECT document FROM {MSG} WHERE conversation_id = %s ORDER BY position", (pk,)
        )
        rows = [json.loads(doc) for (doc,) in cursor.fetchall()]
        self.connection.commit()
        return rows

    def last(self, pk: int, count: int) -> list[Any]:
        cursor = self.connection.cursor()
        cursor.execute(
            f"SELECT document FROM (SELECT document, position FROM {MSG} "
            "WHERE conversation_id = %s ORDER BY position DESC LIMIT %s) AS t ORDER BY position",
            (pk, count),
        )
        rows = [json.loads(doc) for (doc,) in cursor.fetchall()]
        self.connection.commit()
        return rows

    def close(self) -> None:
        self.connection.close()


class _QmarkConnection:
    """sqlite3 with ``%s`` placeholders and explicit transactions, like the other drivers."""

    def __init__(self, path: str):
        self.raw = sqlite3.connect(path, isolation_level=None, timeout=30)

    def cursor(self) -> _QmarkCursor:
        return _QmarkCursor(self.raw.cursor())

    def commit(self) -> None:
        if self.raw.in_transaction:
            self.raw.execute("COMMIT")

    def close(self) -> None:
        self.raw.close()


class _QmarkCursor:
    def __init__(self, cursor: sqlite3.Cursor):
        self.cursor = cursor

    def execute(self, sql: str, params: Any = ()) -> None:
        self.cursor.execute(sql.replace("%s", "?"), params)

    def fetchone(self) -> Any:
        return self.cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self.cursor.fetchall()


def sqlite_floor(alias: str) -> Floor:
    """The floor on the SQLite file of ``alias`` (WAL, as the store's database)."""
    path = str(connections[alias].settings_dict["NAME"])
    return Floor(lambda: _QmarkConnection(path), lambda cursor: cursor.execute("BEGIN"))


def postgres_floor(alias: str) -> Floor:
    """The floor on the PostgreSQL database of ``alias`` (psycopg; BEGIN is implicit)."""
    import psycopg

    settings_dict = connections[alias].settings_dict
    params = {
        "host": settings_dict["HOST"],
        "port": settings_dict["PORT"] or 5432,
        "user": settings_dict["USER"],
        "password": settings_dict["PASSWORD"],
        "dbname": settings_dict["NAME"],
    }
    return Floor(lambda: psycopg.connect(**params), lambda cursor: None)


def mysql_floor(alias: str) -> Floor:
    """The floor on the MySQL/MariaDB database of ``alias`` (mysqlclient, no RETURNING)."""
    import MySQLdb

    settings_dict = connections[alias].settings_dict

    class MysqlFloor(Floor):
        def append(self, pk: int, doc: str) -> None:
            self._counter += 1
            cursor = self.connection.cursor()
            cursor.execute(
                f"UPDATE {CONV} SET message_count = message_count + 1, "
                "next_position = LAST_INSERT_ID(next_position + 1), updated_at = %s "
                "WHERE id = %s",
                (self._counter, pk),
            )
            position = cursor.lastrowid
            cursor.execute(
                f"INSERT INTO {MSG} (conversation_id, position, message_id, document) "
                "VALUES (%s, %s, %s, %s)",
                (pk, position, f"a{position}", doc),
            )
            self.connection.commit()

        def create(self, conversation_id: str, items: list[dict[str, Any]]) -> int:
            cursor = self.connection.cursor()
            cursor.execute(
                f"INSERT INTO {CONV} (namespace, conversation_id, created_at, updated_at, "
                "message_count, next_position, metadata) "
                "VALUES ('floor', %s, 0, 0, %s, %s, '{}')",
                (conversation_id, len(items), len(items)),
            )
            pk = int(cursor.lastrowid)
            for position, item in enumerate(items):
                cursor.execute(
                    f"INSERT INTO {MSG} (conversation_id, position, message_id, document) "
                    "VALUES (%s, %s, %s, %s)",
                    (pk, position, f"f{position}", document(item)),
                )
            self.connection.commit()
            return pk

    return MysqlFloor(
        lambda: MySQLdb.connect(
            host=settings_dict["HOST"],
            port=int(settings_dict["PORT"] or 3306),
            user=settings_dict["USER"],
            password=settings_dict["PASSWORD"],
            database=settings_dict["NAME"],
            charset="utf8mb4",
        ),
        lambda cursor: None,
    )


# -- the OpenAI Agents SDK's sessions --------------------------------------------------------


def agents_missing() -> str | None:
    """None when the OpenAI Agents SDK (with SQLAlchemy and asyncpg) can be used, else why not."""
    try:
        import agents.memory  # noqa: F401
        import asyncpg  # noqa: F401
        from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession  # noqa: F401
    except ImportError as exc:
        return f"{exc.name or exc} is not installed (pip install -e '.[bench]')"
    return None


class AgentsSessions:
    """One Agents SDK session per conversation id, driven from one event loop."""

    def __init__(self, make: Callable[[str], Any], label: str):
        self._make = make
        self.label = label
        self.loop = asyncio.new_event_loop()
        self._sessions: dict[str, Any] = {}

    def session(self, conversation_id: str) -> Any:
        found = self._sessions.get(conversation_id)
        if found is None:
            found = self._sessions[conversation_id] = self._make(conversation_id)
        return found

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def fill(self, conversation_id: str, items: list[dict[str, Any]]) -> None:
        session = self.session(conversation_id)
        for start in range(0, len(items), 1000):
            self.run(session.add_items(items[start : start + 1000]))

    def append(self, conversation_id: str, item: dict[str, Any]) -> None:
        self.run(self.session(conversation_id).add_items([item]))

    def load(self, conversation_id: str) -> list[Any]:
        return list(self.run(self.session(conversation_id).get_items()))

    def last(self, conversation_id: str, count: int) -> list[Any]:
        return list(self.run(self.session(conversation_id).get_items(limit=count)))

    def pop(self, conversation_id: str) -> Any:
        return self.run(self.session(conversation_id).pop_item())

    def clear(self, conversation_id: str) -> None:
        self.run(self.session(conversation_id).clear_session())

    def close(self) -> None:
        for session in self._sessions.values():
            close = getattr(session, "close", None)
            if close is not None and not asyncio.iscoroutinefunction(close):
                close()
        self.loop.close()


def sqlite_session(path: str) -> AgentsSessions:
    """``SQLiteSession`` on the SQLite file ``path`` (WAL)."""
    from agents.memory import SQLiteSession

    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
    return AgentsSessions(lambda cid: SQLiteSession(cid, path), "OpenAI Agents SQLiteSession")


def sqlalchemy_session(alias: str) -> AgentsSessions:
    """``SQLAlchemySession`` on the PostgreSQL database of ``alias`` (asyncpg, one engine)."""
    from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession
    from sqlalchemy.ext.asyncio import create_async_engine

    settings_dict = connections[alias].settings_dict
    password = f":{settings_dict['PASSWORD']}" if settings_dict["PASSWORD"] else ""
    url = (
        f"postgresql+asyncpg://{settings_dict['USER']}{password}@{settings_dict['HOST']}:"
        f"{settings_dict['PORT'] or 5432}/{settings_dict['NAME']}"
    )
    sessions: AgentsSessions

    def make(conversation_id: str) -> Any:
        return SQLAlchemySession(conversation_id, engine=engine, create_tables=True)

    sessions = AgentsSessions(make, "OpenAI Agents SQLAlchemySession (asyncpg)")
    # The engine's pool belongs to the loop that drives the sessions.
    asyncio.set_event_loop(sessions.loop)
    engine = create_async_engine(url)
    previous_close = sessions.close

    def close() -> None:
        sessions.run(engine.dispose())
        previous_close()

    sessions.close = close  # type: ignore[method-assign]
    return sessions
