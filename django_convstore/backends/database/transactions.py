"""The write transactions of the SQLite and MySQL paths, and of PostgreSQL's fallback.

Outside ``atomic()`` the store opens its own transaction with one statement
(``BEGIN IMMEDIATE`` on SQLite, which takes the write lock at once, so the
reads that follow already hold it; ``BEGIN`` elsewhere) and commits it.
Inside a caller's ``atomic()`` block it runs its statements in the caller's
transaction: they commit or roll back with it, and its locks are held until
then.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

from django.db import DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper


def joins_caller(connection: BaseDatabaseWrapper) -> bool:
    """True inside a transaction the caller opened (``atomic()``, or autocommit off)."""
    return connection.in_atomic_block or not connection.get_autocommit()


@contextmanager
def write_transaction(connection: BaseDatabaseWrapper, begin: str) -> Iterator[None]:
    """Run the block in a transaction: the caller's, or one begun with ``begin``."""
    if joins_caller(connection):
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute(begin)
    try:
        yield
        with connection.cursor() as cursor:
            cursor.execute("COMMIT")
    except BaseException:
        # A broken connection cannot roll back; the server drops its transaction anyway,
        # and the error being raised says why.
        with suppress(DatabaseError), connection.cursor() as cursor:
            cursor.execute("ROLLBACK")
        raise
