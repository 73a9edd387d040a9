"""The HTTP layer of the ZeroDB backend: one ``requests.Session``, retries, error mapping.

Everything here follows ``zerodb-api.md`` (the working specification of the
ZeroDB NoSQL table API), including its hedges where the public sources
disagree: table creation sends both ``name`` and ``table_name``, queries and
bulk operations send both ``filter`` and ``filters`` (and ``skip`` with
``offset``), any 2xx is success, an empty body is ``{}``, lists are read from
``data``, ``rows``, ``items``, ``tables`` or a bare list, row ids from
``row_id``, ``id`` or ``_id``, and payloads from ``row_data`` (else the row
itself). Rows a query returns are re-checked against the filter client-side.

Retries: connection errors, timeouts, 429 (sleeping ``Retry-After``) and 5xx
are retried with exponential backoff, up to ``max_retries`` times; then
:class:`~django_convstore.exceptions.BackendUnavailableError`. A write whose
outcome is unknown (the connection dropped, a timeout or a 5xx after the
request was sent) is retried only after its ``recheck`` callable found that
the first attempt did not land, so retried inserts never duplicate a row.
401/403 raise :class:`~django_convstore.exceptions.BackendAuthError` naming
``OPTIONS["API_KEY"]`` (never the key itself); other 4xx and malformed
replies raise :class:`~django_convstore.exceptions.BackendError`.

A 404 from a table route creates the table (both ``already exists``
answers, 400 and 409, count as success after a re-check) and repeats the
call once, so tables are created on first use at no cost afterwards.
Before the first bulk update/delete on a table, the client makes sure the
service honours the filter (see ``_check_filters``): a bulk operation with an
ignored filter would touch every row, so it is refused instead.
"""

from __future__ import annotations

import email.utils
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from ... import codec
from ...exceptions import BackendAuthError, BackendError, BackendUnavailableError

if TYPE_CHECKING:
    import requests

DEFAULT_BASE_URL = "https://api.ainative.studio/api/v1"
MAX_QUERY_LIMIT = 1000
USER_AGENT = "django-convstore"
_MISSING_DETAIL = "no detail"

#: Tables (base URL, project, table) on which the service was seen to honour filters.
_verified_filters: set[tuple[str, str, str]] = set()
_registry_lock = threading.Lock()


@dataclass
class Row:
    """One row as the service returned it: its server id and its ``row_data``."""

    row_id: str
    data: dict[str, Any]


@dataclass
class QueryPage:
    """One page of query results (``unmatched``: rows dropped by the client-side re-check)."""

    rows: list[Row]
    total: int | None
    has_more: bool
    unmatched: int = 0


class _NotFound(Exception):
    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class _Ambiguous(Exception):
    """Internal: the request may or may not have been carried out."""


def matches_filter(data: Mapping[str, Any], filter_: Mapping[str, Any]) -> bool:
    """Client-side re-check of the filters this backend sends (equality, $in, $gt … $lte)."""
    for field, condition in filter_.items():
        value = data.get(field)
        if isinstance(condition, Mapping):
            for op, argument in condition.items():
                if not _operator_holds(value, op, argument):
                    return False
        elif value != condition or isinstance(value, bool) != isinstance(condition, bool):
            return False
    return True


def _operator_holds(value: Any, op: str, argument: Any) -> bool:
    if op == "$in":
        return value in argument
    if op == "$nin":
        return value not in argument
    if op == "$eq":
        return bool(value == argument)
    if op == "$ne":
        return bool(value != argument)
    numbers = isinstance(value, int | float) and isinstance(argument, int | float)
    strings = isinstance(value, str) and isinstance(argument, str)
    if not (numbers or strings):
        return False
    if op == "$gt":
        return bool(value > argument)
    if op == "$gte":
        return bool(value >= argument)
    if op == "$lt":
        return bool(value < argument)
    if op == "$lte":
        return bool(value <= argument)
    raise ValueError(f"cannot re-check filter operator {op}")


def _detail(payload: Any, text: str) -> str:
    """A reply's error text: ``detail`` (string or list), ``message`` or ``error.message``."""
    if isinstance(payload, Mapping):
        detail = payload.get("detail")
        if isinstance(detail, str) and detail:
            return detail
        if isinstance(detail, list) and detail:
            parts = []
            for item in detail:
                if isinstance(item, Mapping):
                    loc = ".".join(str(p) for p in item.get("loc") or [])
                    parts.append(f"{loc}: {item.get('msg', '')}".strip(": "))
                else:
                    parts.append(str(item))
            return "; ".join(parts)
        message = payload.get("message")
        if isinstance(message, str) and message:
            return message
        error = payload.get("error")
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            return str(error["message"])
    return text.strip()[:300] or _MISSING_DETAIL


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().replace(".", "", 1).isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class ZeroDBClient:
    """Talks to one ZeroDB project over one ``requests.Session`` (opened lazily).

    ``alias`` only names the store in error messages. ``sleep`` is the
    function used to wait between retries.
    """

    backend_name = "zerodb"

    def __init__(
        self,
        *,
        base_url: str,
        project_id: str,
        api_key: str,
        timeout: float,
        max_retries: int,
        backoff: float,
        backoff_max: float,
        alias: str,
        table_specs: Mapping[str, Mapping[str, Any]] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.project_id = project_id
        self._api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.alias = alias
        self.table_specs = dict(table_specs or {})
        self.sleep = sleep
        self.address = urlsplit(self.base_url).netloc or self.base_url
        self.tables_path = f"/projects/{quote(project_id, safe='')}/database/tables"
        self._session: requests.Session | None = None
        #: A running average of how long a request takes (paces writes that meet others).
        self.typical_seconds = 0.01

    # -- session ---------------------------------------------------------------------------

    @property
    def session(self) -> requests.Session:
        """The store's ``requests.Session`` (one connection pool, reused by every call).

        The environment's proxy and CA bundle settings are read once, here:
        ``requests`` would otherwise look them up again on every call, which
        costs about a third of a request to a nearby server.
        """
        if self._session is None:
            import requests

            session = requests.Session()
            session.headers.update(
                {
                    "X-API-Key": self._api_key,
                    "Accept": "application/json",
                    "User-Agent": USER_AGENT,
                }
            )
            session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            if bundle:
                session.verify = bundle
            session.trust_env = False
            self._session = session
        return self._session

    def close(self) -> None:
        """Close the session's connections; the next call opens a new session."""
        session, self._session = self._session, None
        if session is not None:
            session.close()

    # -- errors ----------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        if self._api_key and len(self._api_key) >= 4:
            text = text.replace(self._api_key, "***")
        return text

    def _error(self, message: str, **kwargs: Any) -> BackendError:
        return BackendError(
            self._scrub(f"ZeroDB store {self.alias!r} ({self.address}): {message}"), **kwargs
        )

    def malformed(self, what: str, why: str) -> BackendError:
        """A :class:`BackendError` for a reply the backend cannot use."""
        return self._error(f"malformed reply to {what}: {why}")

    def _auth_error(self, status: int, detail: str) -> BackendAuthError:
        return BackendAuthError(
            self._scrub(
                f"ZeroDB rejected the credentials of store {self.alias!r} (HTTP {status} from "
                f"{self.address}: {detail}). Check CONVSTORE[{self.alias!r}]['OPTIONS']"
                f"['API_KEY'] (sent as the X-API-Key header) and that the key may use "
                f"PROJECT_ID {self.project_id!r}."
            ),
            status=status,
            detail=detail,
        )

    def _unavailable(self, reason: str, attempts: int) -> BackendUnavailableError:
        return BackendUnavailableError(
            self._scrub(
                f"ZeroDB store {self.alias!r} could not reach {self.address}: {reason} "
                f"(gave up after {attempts} attempt{'s' if attempts != 1 else ''}; "
                f"OPTIONS['MAX_RETRIES'] is {self.max_retries})."
            ),
            backend=self.backend_name,
            alias=self.alias,
            address=self.address,
        )

    # -- requests --------------------------------------------------------------------------

    def _delay(self, attempt: int) -> float:
        delay = min(self.backoff_max, self.backoff * (2 ** (attempt - 1)))
        return delay * random.uniform(0.8, 1.0)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        recheck: Callable[[], Any] | None = None,
    ) -> Any:
        """Send one call (``path`` is relative to ``base_url``) and return its decoded JSON.

        ``recheck`` (for writes that must not happen twice) is called before a
        retry whose predecessor may have been carried out; when it returns
        something other than None, that is the result and nothing is re-sent.
        Raises ``_NotFound`` on 404 for the table-level methods to handle.
        """
        import requests

        url = self.base_url + path
        what = f"{method} {path}"
        attempt = 0
        while True:
            attempt += 1
            delay: float | None = None
            ambiguous = False
            started = time.monotonic()
            try:
                response = self.session.request(
                    method,
                    url,
                    data=None if body is None else codec.encode(body),
                    headers=_JSON if body is not None else None,
                    params=params,
                    timeout=self.timeout,
                )
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                sent = not isinstance(exc, requests.ConnectTimeout)
                ambiguous = sent and not _refused(exc)
                kind = "timed out" if isinstance(exc, requests.Timeout) else "connection failed"
                reason = f"{what} {kind} ({type(exc).__name__})"
            except requests.RequestException as exc:
                raise self._error(f"{what} failed: {type(exc).__name__}: {exc}") from exc
            else:
                status = response.status_code
                elapsed = time.monotonic() - started
                self.typical_seconds += (elapsed - self.typical_seconds) / 8
                if 200 <= status < 300:
                    return self._decode(response, what)
                payload = self._payload(response)
                detail = _detail(payload, response.text)
                if status == 429:
                    delay = _retry_after(response.headers.get("Retry-After"))
                    ambiguous = method != "GET"  # nothing says a rejected write did nothing
                    reason = f"rate limited: HTTP 429 from {what} ({detail})"
                elif status >= 500:
                    ambiguous = method != "GET"
                    reason = f"HTTP {status} from {what} ({detail})"
                elif status in (401, 403):
                    raise self._auth_error(status, detail)
                elif status == 404:
                    raise _NotFound(detail)
                else:
                    raise self._error(
                        f"{what} answered HTTP {status}: {detail}", status=status, detail=payload
                    )
            if attempt > self.max_retries:
                raise self._unavailable(reason, attempt)
            if delay is None:
                delay = self._delay(attempt)
            self.sleep(min(delay, self.backoff_max))
            if ambiguous and recheck is not None:
                found = recheck()
                if found is not None:
                    return found

    @staticmethod
    def _payload(response: requests.Response) -> Any:
        try:
            return codec.decode(response.content)
        except codec.DecodeError:
            return None

    def _decode(self, response: requests.Response, what: str) -> Any:
        if not response.content or not response.content.strip():
            return {}
        try:
            return codec.decode(response.content)
        except codec.DecodeError as exc:
            raise self.malformed(what, f"not JSON ({response.text[:80]!r})") from exc

    # -- tables ----------------------------------------------------------------------------

    def _key(self, table: str) -> tuple[str, str, str]:
        return (self.base_url, self.project_id, table)

    def _table_path(self, table: str, *rest: str) -> str:
        parts = [self.tables_path, quote(table, safe="")]
        parts.extend(quote(part, safe="") for part in rest)
        return "/".join(parts)

    def _not_found(self, table: str, detail: str) -> BackendError:
        if "project" in detail.lower():
            return self._error(
                f"project {self.project_id!r} not found ({detail}); check "
                f"CONVSTORE[{self.alias!r}]['OPTIONS']['PROJECT_ID'] and that the API key "
                "belongs to that project.",
                status=404,
                detail=detail,
            )
        return self._error(
            f"table {table!r} cannot be reached ({detail}); check "
            f"CONVSTORE[{self.alias!r}]['OPTIONS']['BASE_URL'] ({self.base_url}).",
            status=404,
            detail=detail,
        )

    def ensure_table(self, table: str) -> None:
        """Create ``table`` unless it exists ("already exists" answers are fine)."""
        spec = self.table_specs.get(table, {})
        body: dict[str, Any] = {"name": table, "table_name": table}
        if spec.get("description"):
            body["description"] = spec["description"]
        if spec.get("schema"):
            body["schema"] = spec["schema"]
        if not self._table_exists(table):
            try:
                self.request("POST", self.tables_path, body=body)
            except _NotFound as exc:
                raise self._not_found(table, exc.detail) from None
            except BackendError as exc:
                if exc.status == 422 and "schema" in body:
                    body.pop("schema")
                    self.request("POST", self.tables_path, body=body)
                elif not (exc.status in (400, 409) and self._table_exists(table)):
                    raise

    def _table_exists(self, table: str) -> bool:
        try:
            self.request("GET", self._table_path(table))
        except _NotFound as exc:
            if "project" in exc.detail.lower():
                raise self._not_found(table, exc.detail) from None
            return False
        return True

    def _on_table(self, table: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except _NotFound as exc:
            if "project" in exc.detail.lower():
                raise self._not_found(table, exc.detail) from None
        self.ensure_table(table)
        try:
            return call()
        except _NotFound as exc:
            raise self._not_found(table, exc.detail) from None

    # -- rows ------------------------------------------------------------------------------

    def _rows_of(self, payload: Any, what: str) -> list[Any]:
        if isinstance(payload, list):
            return payload
        if isinstance(payload, Mapping):
            for key in ("data", "rows", "items", "results"):
                if isinstance(payload.get(key), list):
                    return list(payload[key])
        raise self.malformed(what, "no list of rows in it")

    def row(self, item: Any, what: str) -> Row:
        """A :class:`Row` from one row envelope, whatever its key names."""
        if not isinstance(item, Mapping):
            raise self.malformed(what, f"a row is {type(item).__name__}, not an object")
        row_id = next((item[k] for k in ("row_id", "id", "_id") if item.get(k)), None)
        if row_id is None:
            raise self.malformed(what, "a row has no row_id")
        data = item.get("row_data")
        if data is None:
            data = {k: v for k, v in item.items() if k not in _ENVELOPE_KEYS}
        if not isinstance(data, Mapping):
            raise self.malformed(what, "row_data is not an object")
        return Row(row_id=str(row_id), data=dict(data))

    def insert(
        self, table: str, row_data: Mapping[str, Any], *, recheck: Callable[[], Row | None]
    ) -> Row:
        """Insert one row; ``recheck`` finds it when an attempt's outcome is unknown."""
        path = self._table_path(table, "rows")
        what = f"POST {path}"

        def call() -> Any:
            return self.request("POST", path, body={"row_data": dict(row_data)}, recheck=recheck)

        result = self._on_table(table, call)
        if isinstance(result, Row):
            return result
        if isinstance(result, Mapping) and not any(k in result for k in ("row_id", "id", "_id")):
            found = recheck()
            if found is None:
                raise self.malformed(what, "the inserted row has no row_id")
            return found
        return self.row(result, what)

    def query(
        self,
        table: str,
        filter_: Mapping[str, Any],
        *,
        limit: int = MAX_QUERY_LIMIT,
        skip: int = 0,
        sort: Mapping[str, int] | None = None,
    ) -> QueryPage:
        """One page of rows matching ``filter_`` (re-checked client-side)."""
        limit = max(1, min(limit, MAX_QUERY_LIMIT))
        path = self._table_path(table, "query")
        what = f"POST {path}"
        body: dict[str, Any] = {
            "filter": dict(filter_),
            "filters": dict(filter_),
            "limit": limit,
            "skip": skip,
            "offset": skip,
        }
        if sort:
            body["sort"] = dict(sort)
        payload = self._on_table(table, lambda: self.request("POST", path, body=body))
        items = self._rows_of(payload, what)
        rows = [self.row(item, what) for item in items]
        kept = [row for row in rows if matches_filter(row.data, filter_)]
        if len(kept) < len(rows):
            with _registry_lock:
                _verified_filters.discard(self._key(table))
        total = payload.get("total") if isinstance(payload, Mapping) else None
        if not isinstance(total, int) or isinstance(total, bool):
            total = None
        has_more = payload.get("has_more") if isinstance(payload, Mapping) else None
        if not isinstance(has_more, bool):
            has_more = (skip + len(items) < total) if total is not None else len(items) >= limit
        return QueryPage(
            rows=kept,
            total=total,
            has_more=has_more and bool(items),
            unmatched=len(rows) - len(kept),
        )

    def query_all(
        self, table: str, filter_: Mapping[str, Any], *, sort: Mapping[str, int] | None = None
    ) -> list[Row]:
        """Every row matching ``filter_``, paging 1000 at a time, without duplicate row ids."""
        rows: list[Row] = []
        seen: set[str] = set()
        skip = 0
        while True:
            page = self.query(table, filter_, skip=skip, sort=sort)
            for row in page.rows:
                if row.row_id not in seen:
                    seen.add(row.row_id)
                    rows.append(row)
            if not page.has_more:
                return rows
            skip += MAX_QUERY_LIMIT

    def _check_filters(self, table: str) -> None:
        """Refuse bulk operations unless the service is seen to honour query filters.

        Proof, once per process and table: a query for a namespace that cannot
        exist returns nothing while the table does hold rows. Any query that
        returns rows not matching its filter withdraws the proof.
        """
        key = self._key(table)
        with _registry_lock:
            if key in _verified_filters:
                return
        probe = {"namespace": f"convstore-probe-{uuid.uuid4().hex}"}
        if self.query(table, probe, limit=1).unmatched:
            raise self._error(
                f"the service ignored the query filter on table {table!r} (sent as both "
                "'filter' and 'filters'); refusing a bulk update/delete that would touch "
                "every row."
            )
        try:
            listing = self.request("GET", self._table_path(table, "rows"), params={"limit": 1})
        except _NotFound:
            return
        if self._rows_of(listing, f"GET {self._table_path(table, 'rows')}"):
            with _registry_lock:
                _verified_filters.add(key)

    def bulk_update(
        self, table: str, filter_: Mapping[str, Any], update: Mapping[str, Any]
    ) -> int:
        """Apply ``update`` to the rows matching ``filter_``; returns how many matched."""
        self._check_filters(table)
        path = self._table_path(table, "rows", "bulk")
        body = {
            "filter": dict(filter_),
            "filters": dict(filter_),
            "update": dict(update),
            "confirm_large_operation": True,
        }
        payload = self._on_table(table, lambda: self.request("PUT", path, body=body))
        return self._count(payload, ("matched_count", "matched", "modified_count"), f"PUT {path}")

    def bulk_delete(self, table: str, filter_: Mapping[str, Any]) -> int | None:
        """Delete the rows matching ``filter_``; how many, when the reply says."""
        self._check_filters(table)
        path = self._table_path(table, "rows", "bulk")
        body = {"filter": dict(filter_), "filters": dict(filter_), "confirm_large_operation": True}
        payload = self._on_table(table, lambda: self.request("DELETE", path, body=body))
        if payload == {}:
            return None
        return self._count(
            payload, ("deleted_count", "deleted", "rows_deleted", "count"), f"DELETE {path}"
        )

    def _count(self, payload: Any, keys: tuple[str, ...], what: str) -> int:
        if isinstance(payload, Mapping):
            for key in keys:
                value = payload.get(key)
                if isinstance(value, int) and not isinstance(value, bool):
                    return value
        raise self.malformed(what, f"no {keys[0]} in it")

    def delete_row(self, table: str, row_id: str) -> bool:
        """Delete one row by id; False when it was already gone."""
        path = self._table_path(table, "rows", row_id)
        try:
            self.request("DELETE", path)
        except _NotFound:
            return False
        return True


_JSON = {"Content-Type": "application/json"}
_ENVELOPE_KEYS = frozenset(
    {"row_id", "id", "_id", "project_id", "table_id", "table_name", "created_at", "updated_at"}
)


def _refused(exc: Exception) -> bool:
    """True when the connection was never established (so nothing was sent)."""
    text = repr(exc)
    return "NewConnectionError" in text or "Connection refused" in text


__all__ = ["DEFAULT_BASE_URL", "QueryPage", "Row", "ZeroDBClient", "matches_filter"]
