"""A store on ZeroDB's hosted NoSQL table API, over HTTPS with ``requests``.

Layout (see :mod:`.zerodb_rows`): a header table ``TABLE_NAME`` with one row
per conversation, and ``<TABLE_NAME>_messages`` with one row per write (an
``append`` call or a ``save``/``put``) holding that write's messages. Every
row carries ``namespace``, and every query filters on it, so stores sharing
a project and tables never see each other's conversations.

The API has no transactions, no unique keys and no upsert; what it has is
single-row inserts, filtered queries, and a bulk update whose filter can
compare-and-set. The protocol built on that:

* **Append** inserts one message row at position ``at >= max(base, last)``
  of the header it read, then compare-and-sets the header on its ``rev``
  (``message_count``, ``last``, ``updated_at``). Earlier rows are never read
  or rewritten. When the header changed meanwhile the header is re-read:
  if the row is still inside the current incarnation (``at >= base``) only
  the header update is repeated; otherwise (the conversation was saved over,
  deleted or expired) the row is deleted and inserted again at a valid
  position. A message is therefore never lost and never counted twice, and
  one writer's positions never go down, so its messages keep their order.
* **Creation** (append, save or put of a missing conversation) inserts the
  message row, inserts a header, and queries the headers again. Alone, it
  stays. If other creators raced it, it withdraws its header (a
  compare-and-set to ``withdrawn``, then a delete) unless somebody already
  updated it, and carries on as if the conversation existed. A header that
  was ever alone is never withdrawn, so one header survives. While several
  live headers exist, writers wait a moment for that, then all update the
  same one (the lowest creation key) and readers see their union, so nothing
  is hidden or lost even if a creator crashed in that moment.
* **Create** (``create``, create-if-absent) runs that creation protocol but
  never adopts a rival's header. When a live header exists, or a rival's
  shows up, it first makes sure that header stands: one still at the
  revision it was created with gets a fresh ``rev`` (nothing else changes),
  so its creator's withdrawal, a compare-and-set on that revision, can no
  longer succeed. Then it deletes the message row it had inserted, if any,
  and answers None. An expired conversation is started afresh by one
  compare-and-set of its header row, which only one racer wins.
  Guaranteed: of simultaneous creates of one id exactly one returns the
  conversation, and once they have all returned it holds exactly the
  winner's messages. Not guaranteed: a reader racing them may see a loser's
  messages for the moment between the loser's insert and its delete (as
  readers see the union while racing creators settle), and a loser that
  dies in that moment leaves its message row in the winner's conversation.
* **Metadata updates** (``update_metadata``) are one compare-and-set of the
  header (``metadata``, ``updated_at``), merged from the very revision they
  replace and redone from the fresh header on conflict. Message rows are
  never touched, and appends compare-and-set the same header, so neither
  undoes the other: no message and no metadata key is lost.
* **Save/put** write their messages as a new row at a position above every
  row of the conversation, compare-and-set the header to start there
  (``base``), then bulk-delete the rows below it. Readers switch at the
  header write, so they never see a mix of old and new messages.
* **Load** reads the header, then the rows ``at >= base`` (pages of 1000),
  sorts them by ``(at, key)`` and keeps one row per key (a retried insert
  that landed twice). Its ``message_count`` is counted from those rows.
* **TTL**: the service has none, so headers carry ``expires_at`` and
  ``live_until``; reads treat expired conversations as missing and
  ``cleanup()`` deletes them.

Retries never apply a write twice: before re-sending an insert whose first
attempt may have landed, the client looks for the row by its unique key (and
a row that still lands late is read once, by key); a header update whose
reply was lost is recognised by its ``rev`` in the header's recent ``revs``.

One assumption about the service (``zerodb-api.md`` section 8): a bulk update
applies its filter and its update atomically, as the test server does and the
real service's documentation claims ("transaction support"; not verified by
anyone). If it did not, two racing header updates could both succeed: the
header's ``message_count`` (used by listings and stats) could drift, but no
message row is lost or duplicated by that, and ``load`` counts rows itself.

HTTP requests per operation (independent of the conversation's length while
it has at most 1000 message rows; one more request per further 1000 rows):
``load`` 2, ``exists``/``get_ttl`` 1, ``append`` 2 and ``save`` 3 when this
process already knows the conversation's header (any earlier operation on
it), one more otherwise; creating a conversation costs 4.
``update_metadata`` costs 1 (2 without a known header); ``create`` of a
missing id 4, and 1 or 2 when a live conversation has the id (2 when its
header must be confirmed first).
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import random
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, ClassVar
from urllib.parse import urlsplit

from ..clock import now_ms
from ..exceptions import BackendError
from ..types import Conversation, ConversationMetadata, Message, Page, StoreStats
from .base import BaseStore, remaining_ttl
from .zerodb_client import DEFAULT_BASE_URL, Row, ZeroDBClient
from .zerodb_rows import (
    DEAD_STATES,
    LIVE,
    REPLACED,
    WITHDRAWN,
    Header,
    KeyMaker,
    Segment,
    content_bytes,
    new_rev,
    ordered_messages,
    resolve,
)

DEFAULT_TABLE_NAME = "conversations"
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_BACKOFF = 0.5
DEFAULT_BACKOFF_MAX = 30.0
TABLE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,54}$")
#: How many times one operation re-reads a header that others keep changing.
MAX_ROUNDS = 200
#: How long a writer waits for racing creators to leave one live header.
SETTLE_SECONDS = 2.0
HEADER_CACHE_SIZE = 4096

HEADER_SCHEMA = {
    "fields": {
        "namespace": "string",
        "conversation_id": "string",
        "owner": "string",
        "updated_at": "number",
        "live_until": "number",
        "rev": "string",
    },
    "indexes": ["namespace", "conversation_id", "live_until"],
}
MESSAGE_SCHEMA = {
    "fields": {
        "namespace": "string",
        "conversation_id": "string",
        "at": "number",
        "key": "string",
    },
    "indexes": ["namespace", "conversation_id"],
}


class _HeaderCache:
    """Headers this process saw last, per table and namespace (a hint: writes compare-and-set)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[str, Header] = OrderedDict()

    def get(self, conversation_id: str) -> Header | None:
        with self._lock:
            header = self._items.get(conversation_id)
            if header is not None:
                self._items.move_to_end(conversation_id)
            return header

    def put(self, header: Header) -> None:
        with self._lock:
            self._items[header.conversation_id] = header
            self._items.move_to_end(header.conversation_id)
            while len(self._items) > HEADER_CACHE_SIZE:
                self._items.popitem(last=False)

    def drop(self, conversation_id: str) -> None:
        with self._lock:
            self._items.pop(conversation_id, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_caches: dict[tuple[str, str, str, str], _HeaderCache] = {}
_caches_lock = threading.Lock()


def _cache_for(key: tuple[str, str, str, str]) -> _HeaderCache:
    with _caches_lock:
        cache = _caches.get(key)
        if cache is None:
            cache = _caches[key] = _HeaderCache()
        return cache


def _jitter(round_: int) -> float:
    return random.uniform(0, 0.005 * (2 ** min(round_, 6)))


class ZeroDBStore(BaseStore):
    """Conversations in two ZeroDB tables; see the module docstring for the protocol.

    ``OPTIONS``: ``PROJECT_ID`` and ``API_KEY`` (required), ``BASE_URL``
    (default ``https://api.ainative.studio/api/v1``; ``LOCATION`` works too),
    ``TABLE_NAME`` (default ``conversations``; messages go to
    ``<TABLE_NAME>_messages``), ``TIMEOUT`` (seconds per HTTP call, default
    10), ``MAX_RETRIES`` (default 3), ``RETRY_BACKOFF`` (first retry delay in
    seconds, doubled each time, default 0.5) and ``RETRY_BACKOFF_MAX`` (the
    longest wait, ``Retry-After`` included, default 30).
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
        self._keys = KeyMaker()
        self._cache = _cache_for((self.base_url, self.project_id, table_name, self.namespace))

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
                        "description": "django-convstore: the messages of each write",
                        "schema": MESSAGE_SCHEMA,
                    },
                },
            )
        return self._client

    # -- rows ------------------------------------------------------------------------------

    def _scope(self, conversation_id: Any = None, **more: Any) -> dict[str, Any]:
        scope: dict[str, Any] = {"namespace": self.namespace}
        if conversation_id is not None:
            scope["conversation_id"] = conversation_id
        scope.update(more)
        return scope

    def _header(self, row: Row) -> Header:
        try:
            return Header.from_data(row.data, row.row_id)
        except ValueError as exc:
            raise self.client.malformed(f"header row {row.row_id}", str(exc)) from exc

    def _segment(self, row: Row) -> Segment:
        try:
            return Segment.from_data(row.data, row.row_id)
        except ValueError as exc:
            raise self.client.malformed(f"message row {row.row_id}", str(exc)) from exc

    def _read_headers(self, conversation_id: str) -> list[Header]:
        """Every header row of the conversation (any state), fresh from the service."""
        rows = self.client.query_all(self.table_name, self._scope(conversation_id))
        headers = [self._header(row) for row in rows]
        live = [h for h in headers if h.state == LIVE]
        if len(live) == 1:
            self._cache.put(live[0])
        else:
            self._cache.drop(conversation_id)
        return headers

    def _known_headers(self, conversation_id: str) -> tuple[list[Header], bool]:
        """The headers as this process last saw them (cached: True), else read now."""
        cached = self._cache.get(conversation_id)
        if cached is not None:
            return [cached], True
        return self._read_headers(conversation_id), False

    def _views(self, rows: list[Row], now: int) -> dict[str, Header]:
        grouped: dict[str, list[Header]] = {}
        for row in rows:
            header = self._header(row)
            grouped.setdefault(header.conversation_id, []).append(header)
        views: dict[str, Header] = {}
        for conversation_id, headers in grouped.items():
            view, _ = resolve(headers, now)
            if view is not None:
                views[conversation_id] = view
        return views

    def _find(self, table: str, scope: dict[str, Any]) -> Row | None:
        page = self.client.query(table, scope, limit=10)
        return page.rows[0] if page.rows else None

    def _insert_segment(
        self, conversation_id: str, messages: list[Message], min_at: int
    ) -> Segment:
        at, key = self._keys.next(min_at)
        segment = Segment(self.namespace, conversation_id, at, key, messages)
        row = self.client.insert(
            self.messages_table,
            segment.to_data(),
            recheck=lambda: self._find(self.messages_table, self._scope(conversation_id, key=key)),
        )
        segment.row_id = row.row_id
        return segment

    def _place(
        self, segment: Segment | None, conversation_id: str, messages: list[Message], floor: int
    ) -> Segment:
        """``segment`` if it sits at ``floor`` or above, else a new row there (old one deleted)."""
        if segment is not None and segment.at >= floor:
            return segment
        if segment is not None:
            self.client.delete_row(self.messages_table, segment.row_id)
        return self._insert_segment(conversation_id, messages, floor)

    def _segments(self, scope: dict[str, Any]) -> list[Segment]:
        return [self._segment(row) for row in self.client.query_all(self.messages_table, scope)]

    def _delete_segments_below(self, conversation_id: str, base: int) -> None:
        self.client.bulk_delete(
            self.messages_table, self._scope(conversation_id, at={"$lt": base})
        )

    def _cas(self, old: Header, new: Header) -> tuple[bool, list[Header]]:
        """Write ``new`` over ``old`` if ``old`` is still current; else the fresh headers."""
        # A matching rev means the row holds exactly ``old``: sending the changes suffices.
        before, after = old.to_data(), new.to_data()
        changes = {key: value for key, value in after.items() if before.get(key) != value}
        matched = self.client.bulk_update(
            self.table_name,
            self._scope(old.conversation_id, rev=old.rev),
            {"$set": changes},
        )
        if not matched:
            headers = self._read_headers(old.conversation_id)
            if not any(h.row_id == old.row_id and h.saw(new.rev) for h in headers):
                return False, headers
            # An earlier attempt of this very update landed (its reply was lost).
        if new.state == LIVE:
            self._cache.put(new)
        else:
            self._cache.drop(new.conversation_id)
        return True, []

    def _retire(self, header: Header, state: str) -> bool:
        """Mark a header row dead (compare-and-set) and delete it; False when it had changed."""
        done, _ = self._cas(header, header.evolve(state=state))
        if done:
            self.client.delete_row(self.table_name, header.row_id)
        return done

    def _create_header(self, header: Header) -> tuple[bool, list[Header]]:
        """Insert ``header`` for a missing conversation; (True, []) when the creation stands.

        It stands when no rival live header shows up, and also when somebody
        changed it before it could be withdrawn (they adopted it, or a save
        replaced it, or a delete removed the conversation: all of which
        happened after this creation). Otherwise: (False, the fresh headers).
        """
        cid = header.conversation_id
        row = self.client.insert(
            self.table_name,
            header.to_data(),
            recheck=lambda: self._find(self.table_name, self._scope(cid, hkey=header.hkey)),
        )
        header.row_id = row.row_id
        headers = self._read_headers(cid)
        if all(h.row_id == header.row_id or h.state != LIVE for h in headers):
            self._cache.put(header)
            return True, []
        if not self._retire(header, WITHDRAWN):
            return True, []
        return False, self._read_headers(cid)

    def _confirm(self, header: Header) -> tuple[bool, list[Header]]:
        """Make sure a live ``header`` stands; (False, the fresh headers) when it changed.

        Only its creator withdraws a header, and only by a compare-and-set on
        the revision it was created with. A header past that revision has
        stood for good; one still at it is moved past it here (a new ``rev``,
        nothing else changes), so its creator can no longer withdraw it.
        """
        if header.revs:
            return True, []
        return self._cas(header, header.evolve())

    def _settle(self, conversation_id: str, headers: list[Header], round_: int) -> list[Header]:
        """Give racing creators a moment to leave a single live header."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while sum(h.state == LIVE for h in headers) > 1 and time.monotonic() < deadline:
            time.sleep(_jitter(round_))
            round_ += 1
            headers = self._read_headers(conversation_id)
        return headers

    def _contention(self, conversation_id: str) -> BackendError:
        return BackendError(
            f"ZeroDB store {self.display_alias!r} ({self.client.address}): gave up updating "
            f"conversation {conversation_id!r} after {MAX_ROUNDS} rounds of concurrent changes."
        )

    def _new_header(self, conversation_id: str, **fields: Any) -> Header:
        return Header(
            namespace=self.namespace,
            conversation_id=conversation_id,
            rev=new_rev(),
            **fields,
        )

    def _settle_once(
        self, conversation_id: str, headers: list[Header], round_: int, settled: bool
    ) -> tuple[list[Header], bool]:
        if settled or sum(h.state == LIVE for h in headers) <= 1:
            return headers, settled
        return self._settle(conversation_id, headers, round_), True

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
        def fields(current: Header | None, now: int) -> dict[str, Any]:
            if current is None or not current.is_live(now):
                return {
                    "created_at": now,
                    "updated_at": now,
                    "ttl": ttl,
                    "owner": owner,
                    "metadata": dict(metadata or {}),
                }
            return {
                "created_at": current.created_at,
                "updated_at": now,
                "ttl": ttl,
                "owner": current.owner if owner is None else owner,
                "metadata": {**current.metadata, **(metadata or {})},
            }

        header = self._replace(conversation_id, messages, fields)
        return Conversation(
            conversation_id=conversation_id,
            messages=[m.copy() for m in messages],
            metadata=header.conversation_metadata(),
        )

    def _put(self, conversation: Conversation) -> None:
        meta = conversation.metadata

        def fields(current: Header | None, now: int) -> dict[str, Any]:
            return {
                "created_at": meta.created_at,
                "updated_at": meta.updated_at,
                "ttl": meta.ttl or None,
                "owner": meta.owner,
                "metadata": dict(meta.metadata),
            }

        self._replace(conversation.conversation_id, conversation.messages, fields)

    def _replace(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        fields: Callable[[Header | None, int], dict[str, Any]],
    ) -> Header:
        """Save/put: the messages as a new row above everything, then the header starts there."""
        size = content_bytes(messages)
        segment: Segment | None = None
        headers, _ = self._known_headers(conversation_id)
        settled = False
        for round_ in range(MAX_ROUNDS):
            headers, settled = self._settle_once(conversation_id, headers, round_, settled)
            now = now_ms()
            view, current = resolve(headers, now)
            floor = max(view.base, view.last) + 1 if view is not None else 0
            if messages:
                segment = self._place(segment, conversation_id, messages, floor)
                base = segment.at
            else:
                base, _ = self._keys.next(floor)
            hkey = self._keys.next(base)[1]  # unique per header row: inserts are re-checked by it
            values = {
                **fields(current, now),
                "message_count": len(messages),
                "bytes": size,
                "base": base,
                "last": base,
            }
            if current is None:
                header = self._new_header(conversation_id, hkey=hkey, **values)
                created, headers = self._create_header(header)
                if created:
                    return header
                time.sleep(_jitter(round_))
                continue
            others = [h for h in headers if h.state == LIVE and h.row_id != current.row_id]
            new = current.evolve(**values)
            done, headers = self._cas(current, new)
            if done:
                for other in others:
                    self._retire(other, REPLACED)
                assert view is not None
                if view.message_count or view.last > view.base:
                    self._delete_segments_below(conversation_id, base)
                return new
        raise self._contention(conversation_id)

    def _create(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        ttl: int | None,
        metadata: dict[str, Any],
        owner: str | None,
    ) -> Conversation | None:
        """The creation protocol; None once a rival's live header is sure to stand.

        A missing conversation gets a new header (:meth:`_create_header`); an
        expired one starts afresh in its header row (a compare-and-set, so of
        racing creators exactly one succeeds). A creator that loses deletes the
        message row it had inserted.
        """
        size = content_bytes(messages)
        segment: Segment | None = None
        headers = self._read_headers(conversation_id)  # fresh: the cache may be stale
        settled = False
        for round_ in range(MAX_ROUNDS):
            headers, settled = self._settle_once(conversation_id, headers, round_, settled)
            now = now_ms()
            view, current = resolve(headers, now)
            if view is not None and current is not None and view.is_live(now):
                confirmed, headers = self._confirm(current)
                if confirmed:
                    if segment is not None:
                        self.client.delete_row(self.messages_table, segment.row_id)
                    return None
                continue
            floor = max(view.base, view.last) + 1 if view is not None else 0
            if messages:
                segment = self._place(segment, conversation_id, messages, floor)
                base = segment.at
            else:
                base, _ = self._keys.next(floor)
            values = {
                "created_at": now,
                "updated_at": now,
                "ttl": ttl,
                "owner": owner,
                "metadata": dict(metadata),
                "message_count": len(messages),
                "bytes": size,
                "base": base,
                "last": base,
            }
            if current is None:
                header = self._new_header(conversation_id, hkey=self._keys.next(base)[1], **values)
                created, headers = self._create_header(header)
                if not created:
                    time.sleep(_jitter(round_))
                    continue
            else:
                # Expired: the conversation starts afresh in the same header row.
                header = current.evolve(**values)
                done, headers = self._cas(current, header)
                if not done:
                    continue
                self._delete_segments_below(conversation_id, base)
            return Conversation(
                conversation_id=conversation_id,
                messages=[m.copy() for m in messages],
                metadata=header.conversation_metadata(),
            )
        raise self._contention(conversation_id)

    def _load(
        self, conversation_id: str, *, include_expired: bool, last: int | None
    ) -> Conversation | None:
        view, _ = resolve(self._read_headers(conversation_id), now_ms())
        if view is None or (not include_expired and not view.is_live(now_ms())):
            return None
        segments = self._segments(self._scope(conversation_id, at={"$gte": view.base}))
        messages = ordered_messages(segments, view.base)
        metadata = view.conversation_metadata(message_count=len(messages))
        if last is not None:
            messages = messages[len(messages) - last :] if last else []
        return Conversation(conversation_id=conversation_id, messages=messages, metadata=metadata)

    def _append(
        self, conversation_id: str, messages: builtins.list[Message], *, update_timestamp: bool
    ) -> ConversationMetadata:
        size = content_bytes(messages)
        count = len(messages)
        segment: Segment | None = None
        headers, _ = self._known_headers(conversation_id)
        settled = False
        for round_ in range(MAX_ROUNDS):
            headers, settled = self._settle_once(conversation_id, headers, round_, settled)
            now = now_ms()
            view, current = resolve(headers, now)
            if view is None or current is None:
                segment = self._place(segment, conversation_id, messages, 0)
                header = self._new_header(
                    conversation_id,
                    hkey=self._keys.next(segment.at)[1],
                    created_at=now,
                    updated_at=now,
                    ttl=self.default_ttl,
                    owner=None,
                    metadata={},
                    message_count=count,
                    bytes=size,
                    base=segment.at,
                    last=segment.at,
                )
                created, headers = self._create_header(header)
                if created:
                    return header.conversation_metadata()
                time.sleep(_jitter(round_))
                continue
            if view.is_live(now):
                segment = self._place(
                    segment, conversation_id, messages, max(view.base, view.last)
                )
                new = current.evolve(
                    message_count=current.message_count + count,
                    bytes=current.bytes + size,
                    last=max(current.last, segment.at),
                    updated_at=now if update_timestamp else current.updated_at,
                )
            else:
                # Expired: the conversation starts afresh in the same header row.
                floor = max(view.base, view.last) + 1
                segment = self._place(segment, conversation_id, messages, floor)
                new = current.evolve(
                    created_at=now,
                    updated_at=now,
                    ttl=self.default_ttl,
                    owner=None,
                    metadata={},
                    message_count=count,
                    bytes=size,
                    base=segment.at,
                    last=segment.at,
                )
            done, headers = self._cas(current, new)
            if done:
                if not view.is_live(now):
                    self._delete_segments_below(conversation_id, new.base)
                if view is current:
                    return new.conversation_metadata()
                return dataclasses.replace(
                    view, message_count=view.message_count + count, updated_at=new.updated_at
                ).conversation_metadata()
        raise self._contention(conversation_id)

    def _delete(self, conversation_id: str) -> bool:
        headers = self._read_headers(conversation_id)
        if not headers:
            return False
        self.client.bulk_delete(self.messages_table, self._scope(conversation_id))
        self.client.bulk_delete(self.table_name, self._scope(conversation_id))
        self._cache.drop(conversation_id)
        return any(h.state == LIVE for h in headers)

    def _clear(self) -> int:
        now = now_ms()
        views = self._views(self.client.query_all(self.table_name, self._scope()), now)
        self.client.bulk_delete(self.table_name, self._scope())
        self.client.bulk_delete(self.messages_table, self._scope())
        self._cache.clear()
        return len(views)

    def _live_views(self, **filters: Any) -> builtins.list[Header]:
        now = now_ms()
        rows = self.client.query_all(
            self.table_name, self._scope(live_until={"$gt": now}, **filters)
        )
        return [view for view in self._views(rows, now).values() if view.is_live(now)]

    def _list(self) -> builtins.list[str]:
        views = sorted(self._live_views(), key=lambda v: (v.updated_at, v.conversation_id))
        return [view.conversation_id for view in reversed(views)]

    def _list_conversations(
        self, *, owner: str | None, prefix: str | None, limit: int, offset: int
    ) -> Page:
        views = self._live_views(**({"owner": owner} if owner is not None else {}))
        matching = [
            v
            for v in views
            if (owner is None or v.owner == owner)
            and (prefix is None or v.conversation_id.startswith(prefix))
        ]
        matching.sort(key=lambda v: (v.updated_at, v.conversation_id), reverse=True)
        return Page(
            items=[v.conversation_metadata() for v in matching[offset : offset + limit]],
            total=len(matching),
        )

    def _iter_conversations(
        self, *, include_expired: bool, batch_size: int
    ) -> Iterator[Conversation]:
        rows = self.client.query_all(self.table_name, self._scope())
        views = list(self._views(rows, now_ms()).values())
        for start in range(0, len(views), batch_size):
            now = now_ms()
            batch = [
                v for v in views[start : start + batch_size] if include_expired or v.is_live(now)
            ]
            if not batch:
                continue
            ids = [v.conversation_id for v in batch]
            by_id: dict[str, builtins.list[Segment]] = {cid: [] for cid in ids}
            for segment in self._segments(self._scope(conversation_id={"$in": ids})):
                by_id.setdefault(segment.conversation_id, []).append(segment)
            for view in batch:
                messages = ordered_messages(by_id[view.conversation_id], view.base)
                yield Conversation(
                    conversation_id=view.conversation_id,
                    messages=messages,
                    metadata=view.conversation_metadata(message_count=len(messages)),
                )

    def _exists(self, conversation_id: str) -> bool:
        now = now_ms()
        view, _ = resolve(self._read_headers(conversation_id), now)
        return view is not None and view.is_live(now)

    def _get_stats(self) -> StoreStats:
        now = now_ms()
        views = self._views(self.client.query_all(self.table_name, self._scope()), now)
        live = [v for v in views.values() if v.is_live(now)]
        return StoreStats(
            total_conversations=len(live),
            total_messages=sum(v.message_count for v in live),
            expired_conversations=len(views) - len(live),
            storage_size=sum(v.bytes + len(json.dumps(v.metadata)) for v in live),
        )

    def _cleanup(self) -> int:
        now = now_ms()
        rows = self.client.query_all(self.table_name, self._scope(live_until={"$lte": now}))
        expired = [v for v in self._views(rows, now).values() if not v.is_live(now)]
        dead = self.client.query_all(self.table_name, self._scope(state={"$in": DEAD_STATES}))
        for row in dead:
            self.client.delete_row(self.table_name, row.row_id)
        if not expired:
            return 0
        # Only rows that are still expired go; an append may have revived one meanwhile.
        self.client.bulk_delete(self.table_name, self._scope(live_until={"$lte": now}))
        removed = 0
        for view in expired:
            if any(h.state == LIVE for h in self._read_headers(view.conversation_id)):
                continue
            self.client.bulk_delete(
                self.messages_table,
                self._scope(view.conversation_id, at={"$lte": max(view.last, view.base)}),
            )
            removed += 1
        return removed

    def _get_ttl(self, conversation_id: str) -> int:
        now = now_ms()
        view, _ = resolve(self._read_headers(conversation_id), now)
        if view is None or not view.is_live(now):
            return -2
        return remaining_ttl(view.conversation_metadata(), now)

    def _change_live_header(
        self, conversation_id: str, change: Callable[[Any, int], Any]
    ) -> tuple[Any, Any, int] | None:
        """Compare-and-set the live header to ``change(current, now)``, retrying on conflict.

        ``change`` runs on the very revision the compare-and-set replaces, so a
        concurrent change (an append, a TTL, a metadata update) makes it start
        again from the fresh header instead of undoing it. Returns the resolved
        view, the header written and ``now``; None when missing or expired.
        """
        headers, cached = self._known_headers(conversation_id)
        settled = False
        for round_ in range(MAX_ROUNDS):
            headers, settled = self._settle_once(conversation_id, headers, round_, settled)
            now = now_ms()
            view, current = resolve(headers, now)
            if view is None or current is None or not view.is_live(now):
                if not cached:
                    return None
                headers, cached = self._read_headers(conversation_id), False
                continue
            new = change(current, now)
            done, headers = self._cas(current, new)
            if done:
                return (new if view is current else view), new, now
            cached = False
        raise self._contention(conversation_id)

    def _set_ttl(self, conversation_id: str, ttl: int | None) -> bool:
        changed = self._change_live_header(
            conversation_id, lambda current, now: current.evolve(ttl=ttl, updated_at=now)
        )
        return changed is not None

    def _update_metadata(
        self, conversation_id: str, metadata: dict[str, Any], *, replace: bool
    ) -> ConversationMetadata | None:
        """A compare-and-set of the header; message rows are never touched."""

        def change(current: Any, now: int) -> Any:
            merged = dict(metadata) if replace else {**current.metadata, **metadata}
            return current.evolve(metadata=merged, updated_at=now)

        changed = self._change_live_header(conversation_id, change)
        if changed is None:
            return None
        view, new, now = changed
        if view is new:
            return new.conversation_metadata()
        return dataclasses.replace(
            view, metadata=new.metadata, updated_at=max(view.updated_at, now)
        ).conversation_metadata()

    def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()


__all__ = ["ZeroDBStore"]
