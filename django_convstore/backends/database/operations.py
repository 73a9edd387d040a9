"""What every vendor shares: running a statement, and the one-statement reads.

A subclass per way of writing (:mod:`.postgresql`: one statement per write;
:mod:`.locking`: SQLite and MySQL/MariaDB, statements inside a locking
transaction) implements the write primitives. An instance serves one call on
one connection.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from django.db.backends.base.base import BaseDatabaseWrapper

from ...exceptions import OwnerMismatchError
from ...types import Conversation, ConversationMetadata, Message
from . import rows, sql

Params = dict[str, Any]
_rendered: dict[tuple[str, str], str] = {}


def mismatch(conversation_id: str) -> OwnerMismatchError:
    """The error for a write to another owner's conversation (the owner is not named)."""
    return OwnerMismatchError(f"conversation {conversation_id!r} belongs to another owner.")


class Operations(ABC):
    """The store's primitives on one database connection (see the module docstring)."""

    #: How the documents of a conversation are joined into one value by a load.
    aggregate: ClassVar[str] = sql.PG_AGGREGATE

    def __init__(
        self,
        connection: BaseDatabaseWrapper,
        namespace: str,
        default_ttl: int | None,
        *,
        prepared: bool = True,
    ):
        self.connection = connection
        self.namespace = namespace
        self.default_ttl = default_ttl
        #: Prepare the statements on the server where the vendor's module does (PostgreSQL).
        self.prepared = prepared

    # -- running statements ------------------------------------------------------------------

    def sql(self, template: str) -> str:
        """``template`` with this vendor's quoted table names (rendered once per vendor)."""
        key = (self.connection.vendor, template)
        text = _rendered.get(key)
        if text is None:
            text = _rendered[key] = sql.render(template, self.connection)
        return text

    def cursor(self) -> Any:
        """A cursor of Django's connection (logged, wrapped, errors translated by Django)."""
        return self.connection.cursor()

    def fetch(self, template: str, params: Params | Sequence[Any]) -> list[tuple[Any, ...]]:
        """The rows a statement returns."""
        with self.cursor() as cursor:
            cursor.execute(self.sql(template), params)
            return list(cursor.fetchall())

    def write(self, template: str, params: Params | Sequence[Any]) -> int:
        """Run a statement that returns no rows; how many rows it changed."""
        with self.cursor() as cursor:
            cursor.execute(self.sql(template), params)
            return int(cursor.rowcount)

    def params(self, conversation_id: str, now: int, owner: str | None = None) -> Params:
        """The parameters every statement about one conversation takes."""
        return {"ns": self.namespace, "cid": conversation_id, "now": now, "owner": owner}

    # -- reads: one statement each -------------------------------------------------------------

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
        statement = sql.load(
            self.aggregate, live=not include_expired, owner=owner is not None, last=last
        )
        found = self.fetch(statement, params)
        if not found:
            return None
        row = found[0]
        return Conversation(
            conversation_id=conversation_id,
            messages=rows.decode_joined(row[6]),
            metadata=rows.metadata(conversation_id, row),
        )

    def exists(self, conversation_id: str, now: int, *, owner: str | None) -> bool:
        params = self.params(conversation_id, now, owner)
        return bool(self.fetch(sql.exists(owner=owner is not None), params))

    def expires_at(self, conversation_id: str, now: int, *, owner: str | None) -> tuple[Any, ...]:
        """``()`` when missing or expired (or another owner's), else ``(expires_at,)``."""
        params = self.params(conversation_id, now, owner)
        found = self.fetch(sql.get_ttl(owner=owner is not None), params)
        return found[0] if found else ()

    def set_ttl(
        self, conversation_id: str, ttl: int | None, now: int, *, owner: str | None
    ) -> bool:
        params = self.params(conversation_id, now, owner)
        params.update(ttl=ttl, expires=rows.expires_at(now, ttl))
        return self.write(sql.set_ttl(owner=owner is not None), params) > 0

    # -- writes (per vendor) ---------------------------------------------------------------------

    @abstractmethod
    def append(
        self,
        conversation_id: str,
        messages: list[Message],
        now: int,
        *,
        touch: bool,
        owner: str | None,
    ) -> ConversationMetadata:
        """See the primitive of the same name in :class:`~..base.BaseStore`."""

    @abstractmethod
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
        """See the primitive of the same name in :class:`~..base.BaseStore`."""

    @abstractmethod
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
        """See the primitive of the same name in :class:`~..base.BaseStore`."""

    @abstractmethod
    def put(self, conversation: Conversation) -> None:
        """See the primitive of the same name in :class:`~..base.BaseStore`."""

    @abstractmethod
    def pop(
        self, conversation_id: str, count: int, now: int, *, owner: str | None
    ) -> list[Message]:
        """See the primitive of the same name in :class:`~..base.BaseStore`."""

    @abstractmethod
    def truncate(
        self, conversation_id: str, keep: int, now: int, *, owner: str | None
    ) -> tuple[ConversationMetadata, int] | None:
        """See the primitive of the same name in :class:`~..base.BaseStore`."""

    @abstractmethod
    def delete(self, conversation_id: str, now: int, *, owner: str | None) -> bool:
        """See the primitive of the same name in :class:`~..base.BaseStore`."""

    @abstractmethod
    def update_metadata(
        self,
        conversation_id: str,
        metadata: dict[str, Any],
        now: int,
        *,
        replace: bool,
        owner: str | None,
    ) -> ConversationMetadata | None:
        """See the primitive of the same name in :class:`~..base.BaseStore`."""
