"""A store on ZeroDB's hosted NoSQL table API, over HTTPS with ``requests``.

Two tables: ``TABLE_NAME`` with one header row per conversation, and
``<TABLE_NAME>_messages`` with one row per appended message plus a few chunk
rows per save (:mod:`.rows` describes every field). A message row is part
of a conversation only once a compare-and-set of the header commits it
(:mod:`.protocol`, :mod:`.visibility`), so every write is all or nothing for
readers, and every rule that must hold under concurrency (the owner, the
conversation's existence and expiry, which message ids are new, the count)
is decided on the very header revision the write replaces.

HTTP requests per operation (measured in ``tests/test_zerodb_backend.py``;
none depends on the conversation's length):

========================== =====================================================
``load`` / ``load(last=N)`` 2 (header, rows); 3 when it reaches into a save's chunks
``exists`` / ``get_ttl``    1
``append``                  3 (id check, one insert per message, header); +1 when
                            this process has not seen the conversation yet
``save``                    1 insert per 100 messages + header + 2 clean-ups (+1)
``pop`` / ``truncate``      read the removed rows, header, delete them (+1)
``set_ttl`` / metadata      1 (+1)
``delete``                  header, rows, header row (+1)
========================== =====================================================

Rows written by django-convstore 0.1 keep loading (:mod:`.legacy`); the
first write to such a conversation converts it.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import urlsplit

from ...types import Conversation, ConversationMetadata, Message, Page, StoreStats
from ..base import BaseStore
from .cache import cache_for
from .client import DEFAULT_BASE_URL, ZeroDBClient
from .maintenance import Maintenance
from .protocol import Tables
from .reads import Reads
from .rows import HEADER_SCHEMA, MESSAGE_SCHEMA
from .writes import Writes

DEFAULT_TABLE_NAME = "conversations"
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_BACKOFF = 0.5
DEFAULT_BACKOFF_MAX = 30.0
TABLE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,54}$")


class ZeroDBStore(BaseStore):
    """Conversations in two ZeroDB tables; see the module docstring and :mod:`.protocol`.

    ``OPTIONS``: ``PROJECT_ID`` and ``API_KEY`` (required), ``BASE_URL``
    (default ``https://api.ainative.studio/api/v1``; ``LOCATION`` works too),
    ``TABLE_NAME`` (default ``conversations``; messages go to
    ``<TABLE_NAME>_messages``), ``TIMEOUT`` (seconds per HTTP call, default
    10), ``MAX_RETRIES`` (default 3), ``RETRY_BACKOFF`` (first retry delay in
    seconds, doubled each time, default 0.5) and ``RETRY_BACKOFF_MAX`` (the
    longest wait, ``Retry-After`` included, default 30).

    The async twins run the sync calls in a thread pool (they wait on the
    network, and the client is thread-safe), so concurrent calls overlap.
    """

    backend_name: ClassVar[str] = "zerodb"
    option_names: ClassVar[frozenset[str]] = frozenset(
        {
            "PROJECT_ID",
            "API_KEY",
            "BASE_URL",
            "TABLE_NAME",
            "TIMEOUT",
            "MAX_RETRIES",
            "RETRY_BACKOFF",
            "RETRY_BACKOFF_MAX",
        }
    )
    required_modules: ClassVar[tuple[tuple[str, str], ...]] = (("requests", "zerodb"),)
    async_thread_sensitive: ClassVar[bool] = False

    def __init__(self, location: str = "", params: Any = None, *, alias: str | None = None):
        super().__init__(location, params, alias=alias)
        self.project_id = self._required_string("PROJECT_ID", "the ZeroDB project id")
        self._api_key = self._required_string("API_KEY", "the ZeroDB API key, sent as X-API-Key")
        self.base_url = self._parse_base_url()
        table_name = self.options.get("TABLE_NAME", DEFAULT_TABLE_NAME)
        if not isinstance(table_name, str) or not TABLE_NAME_RE.match(table_name):
            raise self.configuration_error(
                f"OPTIONS['TABLE_NAME'] must start with a letter and hold only letters, digits "
                f"and underscores (at most 55 characters), not {table_name!r}."
            )
        self.table_name = table_name
        self.messages_table = f"{table_name}_messages"
        timeout = self.option_number("TIMEOUT", DEFAULT_TIMEOUT)
        self.timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        max_retries = self.option_int("MAX_RETRIES", DEFAULT_MAX_RETRIES, minimum=0)
        self.max_retries = DEFAULT_MAX_RETRIES if max_retries is None else max_retries
        self.retry_backoff = self._non_negative("RETRY_BACKOFF", DEFAULT_BACKOFF)
        self.retry_backoff_max = self._non_negative("RETRY_BACKOFF_MAX", DEFAULT_BACKOFF_MAX)
        self._client: ZeroDBClient | None = None
        self.tables = Tables(
            lambda: self.client,
            namespace=self.namespace,
            header_table=table_name,
            message_table=self.messages_table,
            cache=cache_for((self.base_url, self.project_id, table_name, self.namespace)),
        )
        self.reads = Reads(self.tables)
        self.writes = Writes(self.tables, default_ttl=self.default_ttl)
        self.maintenance = Maintenance(self.tables, self.reads, self.writes)

    # -- configuration ---------------------------------------------------------------------

    def _required_string(self, name: str, what: str) -> str:
        value = self.options.get(name)
        if not isinstance(value, str) or not value.strip():
            shown = "missing" if value is None else ("empty" if value == "" else "not a string")
            raise self.configuration_error(
                f"OPTIONS['{name}'] is required for ZeroDBStore ({what}); it is {shown}."
            )
        return value.strip()

    def _parse_base_url(self) -> str:
        option = self.options.get("BASE_URL")
        location = self.location.rstrip("/")
        if option is not None and location and str(option).rstrip("/") != location:
            raise self.configuration_error(
                "LOCATION and OPTIONS['BASE_URL'] disagree; give the API root once."
            )
        value = option if option is not None else (location or DEFAULT_BASE_URL)
        parts = urlsplit(value) if isinstance(value, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise self.configuration_error(
                f"OPTIONS['BASE_URL'] must be an http(s) URL such as {DEFAULT_BASE_URL!r}, "
                f"not {value!r}."
            )
        return str(value).rstrip("/")

    def _non_negative(self, name: str, default: float) -> float:
        value = self.options.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise self.configuration_error(
                f"OPTIONS[{name!r}] must be a number of seconds >= 0, not {value!r}."
            )
        return float(value)

    def __repr__(self) -> str:
        return (
            f"<ZeroDBStore alias={self.display_alias!r} namespace={self.namespace!r} "
            f"base_url={self.base_url!r} table={self.table_name!r}>"
        )

    @property
    def client(self) -> ZeroDBClient:
        """The HTTP client (one ``requests.Session``), created on first use."""
        if self._client is None:
            self._client = ZeroDBClient(
                base_url=self.base_url,
                project_id=self.project_id,
                api_key=self._api_key,
                timeout=self.timeout,
                max_retries=self.max_retries,
                backoff=self.retry_backoff,
                backoff_max=self.retry_backoff_max,
                alias=self.display_alias,
                table_specs={
                    self.table_name: {
                        "description": "django-convstore: one row per conversation",
                        "schema": HEADER_SCHEMA,
                    },
                    self.messages_table: {
                        "description": "django-convstore: the messages of each conversation",
                        "schema": MESSAGE_SCHEMA,
                    },
                },
            )
        return self._client

    # -- the contract: each primitive is one call into reads.py / writes.py / maintenance.py ---

    def _load(
        self, conversation_id: str, *, include_expired: bool, last: int | None, owner: str | None
    ) -> Conversation | None:
        return self.reads.load(
            conversation_id, include_expired=include_expired, last=last, owner=owner
        )

    def _exists(self, conversation_id: str, *, owner: str | None) -> bool:
        return self.reads.exists(conversation_id, owner=owner)

    def _get_ttl(self, conversation_id: str, *, owner: str | None) -> int:
        return self.reads.get_ttl(conversation_id, owner=owner)

    def _list(self) -> builtins.list[str]:
        return self.reads.list()

    def _list_conversations(
        self, *, owner: str | None, prefix: str | None, limit: int, offset: int
    ) -> Page:
        return self.reads.list_conversations(
            owner=owner, prefix=prefix, limit=limit, offset=offset
        )

    def _iter_conversations(
        self, *, include_expired: bool, batch_size: int, owner: str | None
    ) -> Iterator[Conversation]:
        return self.reads.iter_conversations(
            include_expired=include_expired, batch_size=batch_size, owner=owner
        )

    def _get_stats(self) -> StoreStats:
        return self.reads.stats()

    def _append(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        update_timestamp: bool,
        owner: str | None,
    ) -> ConversationMetadata:
        return self.writes.append(
            conversation_id, messages, update_timestamp=update_timestamp, owner=owner
        )

    def _save(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        ttl: int | None,
        metadata: dict[str, Any] | None,
        owner: str | None,
    ) -> Conversation:
        return self.writes.save(conversation_id, messages, ttl=ttl, metadata=metadata, owner=owner)

    def _create(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        ttl: int | None,
        metadata: dict[str, Any],
        owner: str | None,
    ) -> Conversation | None:
        return self.writes.create(
            conversation_id, messages, ttl=ttl, metadata=metadata, owner=owner
        )

    def _put(self, conversation: Conversation) -> None:
        self.writes.put(conversation)

    def _pop(
        self, conversation_id: str, count: int, *, owner: str | None
    ) -> builtins.list[Message]:
        return self.writes.pop(conversation_id, count, owner=owner)

    def _truncate(
        self, conversation_id: str, keep: int, *, owner: str | None
    ) -> tuple[ConversationMetadata, int] | None:
        return self.writes.truncate(conversation_id, keep, owner=owner)

    def _delete(self, conversation_id: str, *, owner: str | None) -> bool:
        return self.writes.delete(conversation_id, owner=owner)

    def _set_ttl(self, conversation_id: str, ttl: int | None, *, owner: str | None) -> bool:
        return self.writes.set_ttl(conversation_id, ttl, owner=owner)

    def _update_metadata(
        self, conversation_id: str, metadata: dict[str, Any], *, replace: bool, owner: str | None
    ) -> ConversationMetadata | None:
        return self.writes.update_metadata(conversation_id, metadata, replace=replace, owner=owner)

    def _cleanup(self) -> int:
        return self.maintenance.cleanup()

    def _clear(self) -> int:
        return self.maintenance.clear()

    def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()


__all__ = ["ZeroDBStore"]
