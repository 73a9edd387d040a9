"""Database exceptions translated into the app's errors, with messages that say where.

Connection failures, timeouts, lock timeouts and deadlocks (Django's
``OperationalError``/``InterfaceError``) become ``BackendUnavailableError``:
trying again later may work. Missing tables say to run ``migrate``;
everything else is ``BackendError``. Passwords never appear in a message.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DatabaseError, InterfaceError, OperationalError, connections

from ...exceptions import BackendError, BackendUnavailableError

# SQLite's and MySQL's wordings of "the table is missing" (PostgreSQL: SQLSTATE 42P01).
_MISSING_TABLE_MARKERS = ("no such table", "doesn't exist", "does not exist")


def is_missing_table(exc: DatabaseError) -> bool:
    """True when one of the store's tables (or PostgreSQL's ``convstore_append``) is missing."""
    if getattr(exc.__cause__, "sqlstate", None) in ("42P01", "42883"):
        return True
    text = str(exc).lower()
    return "table" in text and any(marker in text for marker in _MISSING_TABLE_MARKERS)


def is_read_only(exc: DatabaseError) -> bool:
    """SQLite and MySQL report writing to a read-only database as an OperationalError."""
    text = str(exc).lower()
    return "readonly database" in text or "read-only" in text or "read only" in text


def address(db: str) -> str:
    """``engine host:port/name`` (or ``engine name``) of a database alias, for messages."""
    settings_dict = connections[db].settings_dict
    engine = str(settings_dict.get("ENGINE", "")).rsplit(".", 1)[-1]
    name = settings_dict.get("NAME") or ""
    host = settings_dict.get("HOST") or ""
    if host:
        port = settings_dict.get("PORT") or ""
        return f"{engine} {host}{':' if port else ''}{port}/{name}"
    return f"{engine} {name}"


def describe(alias: str, db: str, what: str, exc: BaseException) -> str:
    """A message naming the store, the database and the first line of the reason."""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    password = connections[db].settings_dict.get("PASSWORD")
    if password:
        reason = reason.replace(str(password), "***")
    return f"database store {alias!r}: {what} (database alias {db!r}, {address(db)}): {reason}"


def drop_broken_connection(db: str) -> None:
    """Close a connection that broke, so the next operation reconnects."""
    connection = connections[db]
    if connection.in_atomic_block:
        return
    try:
        connection.close_if_unusable_or_obsolete()
    except DatabaseError:
        connection.connection = None


@contextmanager
def translated(alias: str, db: str) -> Iterator[None]:
    """Raise the app's errors for database exceptions inside the block."""
    try:
        yield
    except DatabaseError as exc:
        if is_missing_table(exc):
            raise BackendError(
                describe(alias, db, "the tables are missing; run manage.py migrate", exc)
            ) from exc
        if isinstance(exc, OperationalError | InterfaceError) and not is_read_only(exc):
            drop_broken_connection(db)
            raise BackendUnavailableError(
                describe(alias, db, "the database could not be reached", exc),
                backend="database",
                alias=alias,
                address=address(db),
            ) from exc
        raise BackendError(
            describe(alias, db, "the database rejected the operation", exc)
        ) from exc
