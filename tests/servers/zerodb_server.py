"""A ZeroDB-compatible HTTP server for the test suite and the benchmarks.

It implements the behaviour matrix of section 7 of ``zerodb-api.md`` (the
NoSQL table API of ZeroDB) in memory, on a free loopback port, with HTTP/1.1
keep-alive so clients can reuse connections, and switches to inject faults.

Usage::

    from tests.servers.zerodb_server import ZeroDBServer

    with ZeroDBServer() as server:                # start(); stop() on exit
        server.base_url        # "http://127.0.0.1:<port>/api/v1" (also served: /v1, /v1/public)
        server.api_key         # the key it accepts (X-API-Key, or Bearer unless strict_bearer)
        server.project_id      # the one project it knows (a uuid4 string)

Routes (under ``/api/v1`` and ``/v1``: ``/projects/{pid}/database/tables``;
under ``/v1`` also the legacy ``/public/{pid}/database/tables``)::

    GET/POST   tables                        list (skip, limit) / create (name or table_name)
    GET/DELETE tables/{name or id}           404 when missing; delete → {"success", "rows_deleted"}
    GET/POST   tables/{t}/rows               list (ignores filters) / insert {"row_data": {...}}
    POST       tables/{t}/query              {"filter", "sort", "limit" 1..1000, "skip"}
    PUT/DELETE tables/{t}/rows/bulk          {"filter" (non-empty), "update",
                                             "confirm_large_operation"}
    GET/PUT/DELETE tables/{t}/rows/{row_id}  PUT replaces row_data; DELETE → 204; PATCH → 405

Errors are FastAPI-shaped: ``{"detail": "..."}``, and 422 with a list of
``{"loc", "msg", "type"}``. Every request holds one global lock, so each call
is atomic (and nothing more). Route names used by faults and counters:
``tables.list tables.create tables.get tables.delete rows.list rows.insert
rows.query rows.get rows.update rows.delete rows.bulk_update rows.bulk_delete``
(``unknown`` for anything else).

Behaviour switches (constructor keywords, or ``server.configure(**kw)`` at
any time): ``strict_bearer`` (reject ``Bearer <api key>``, as S4 describes),
``bearer_tokens`` (extra accepted Bearer tokens, e.g. a JWT),
``filter_keys`` (which query/bulk body keys carry the filter: default
``("filter",)``; ``("filters",)`` or both), ``create_table_status`` (200),
``duplicate_table_status`` (400, or 409), ``insert_status`` (201),
``delete_status`` (204), ``row_id_key`` (``"row_id"``, or ``"id"``),
``list_key`` (where list endpoints put their rows: ``"data"``, ``"rows"``,
``"items"`` or ``"bare"`` for a bare JSON list), ``latency`` (seconds added
to every request).

Fault injection (``route`` is a route name or a prefix such as ``"rows."``;
``method`` an HTTP method; both optional; each fault fires ``times`` times)::

    server.rate_limit(times=1, retry_after=2)      # 429 + Retry-After (seconds; None = no header)
    server.fail(status=503, route="rows.query", nth=3)  # only the 3rd matching request
    server.fail(times=1, status=500)               # 500 {"detail", "message"}; any status works
    server.fail(status=503, after_commit=True)     # do the work, then answer 503
    server.fail(status=200, body=b"<html>")        # a raw (malformed) reply
    server.drop(times=1)                           # close the socket without a reply,
    server.drop(after_commit=False)                #   after (default) or before doing the work
    server.delay(0.5, times=1, route="rows.insert")  # one slow request (the work still happens)
    server.set_latency(0.05)                       # every request sleeps first (outside the lock)
    server.clear_faults()

Every fault takes ``nth`` (fire on the nth matching request, letting earlier ones
through) and, except ``delay``, ``after_commit`` (answer after doing the work).

Indexes: a table created with ``schema={"indexes": [...]}`` answers queries
from hash indexes (``"field"``) and ordered ones (``["field", "number field"]``)
instead of scanning every row (see :mod:`tests.servers.zerodb_index`).

Counters: ``server.request_count`` (all requests), ``server.route_counts()``
(``{route: n}``), ``server.connection_count`` (TCP connections accepted:
sequential requests over one keep-alive connection count 1),
``server.reset_counters()``, and ``with server.counting() as tally: ...``
then ``tally.requests``, ``tally.routes``, ``tally.connections``,
``tally.request_bytes`` and ``tally.response_bytes`` (body bytes; the deltas
while the block ran) and ``tally.sequence`` (``(route, method)`` of each request,
in order).

State: ``server.rows(table)`` (row envelopes, insertion order),
``server.table_names()``, ``server.insert_row(table, row_data)`` (bypasses
HTTP, faults and counters), ``server.reset()`` (drop all tables, faults and
counters). Thread-safe throughout.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote

from .zerodb_filters import (
    ApiError,
    apply_update,
    check_filter,
    check_sort,
    check_update,
    matches,
    sort_rows,
    validation_error,
)
from .zerodb_index import TableIndex

MAX_LIMIT = 1000
LARGE_OPERATION = 100
TABLE_NAME_KEYS = ("name", "table_name")
_ROW_ROUTES = frozenset({"rows.get", "rows.update", "rows.delete"})


class DropConnection(Exception):
    """Raised inside the app to make the HTTP layer close the socket without answering."""


@dataclass
class _Fault:
    kind: str  # "status", "drop" or "delay"
    times: int
    status: int = 500
    retry_after: float | None = None
    detail: str | None = None
    after_commit: bool = False
    route: str | None = None
    method: str | None = None
    body: bytes | None = None
    seconds: float = 0.0
    skip: int = 0

    def applies(self, route: str, method: str) -> bool:
        if self.route is not None and not (
            route == self.route or (self.route.endswith(".") and route.startswith(self.route))
        ):
            return False
        return self.method is None or self.method.upper() == method


@dataclass
class _Table:
    name: str
    table_id: str
    description: str
    schema: Any
    created_at: str
    updated_at: str
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    index: TableIndex = field(default_factory=lambda: TableIndex(None))
    order: dict[str, int] = field(default_factory=dict)
    inserted: int = 0

    def add(self, row: dict[str, Any]) -> None:
        """Store a new row and index it."""
        self.inserted += 1
        self.rows[row["row_id"]] = row
        self.order[row["row_id"]] = self.inserted
        self.index.add(row["row_id"], self.inserted, row["row_data"])

    def discard(self, row_id: str) -> None:
        """Delete a row and unindex it."""
        row = self.rows.pop(row_id)
        self.index.remove(row_id, self.order.pop(row_id), row["row_data"])

    def change(self, row: dict[str, Any], data: dict[str, Any]) -> None:
        """Replace a row's data, keeping the indexes right."""
        order = self.order[row["row_id"]]
        self.index.remove(row["row_id"], order, row["row_data"])
        row["row_data"] = data
        self.index.add(row["row_id"], order, data)

    def matching(self, filter_: dict[str, Any]) -> list[dict[str, Any]]:
        """The rows ``filter_`` matches, in insertion order (an index picks candidates)."""
        candidates = self.index.candidates(filter_)
        if candidates is None:
            rows: Any = self.rows.values()
        else:
            rows = sorted(
                (self.rows[row_id] for row_id in candidates if row_id in self.rows),
                key=lambda row: self.order[row["row_id"]],
            )
        return [row for row in rows if matches(row["row_data"], filter_)]


@dataclass
class Tally:
    """What a ``counting()`` block saw: requests, requests per route, TCP connections."""

    requests: int = 0
    routes: dict[str, int] = field(default_factory=dict)
    connections: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    #: ``(route, method)`` of every request, in the order they arrived.
    sequence: list[tuple[str, str]] = field(default_factory=list)


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class ZeroDBApp:
    """The WSGI application: ZeroDB's table routes over in-memory state."""

    def __init__(self, *, api_key: str, project_id: str, **options: Any) -> None:
        self.api_key = api_key
        self.project_id = project_id
        self.options: dict[str, Any] = {
            "strict_bearer": False,
            "bearer_tokens": (),
            "filter_keys": ("filter",),
            "create_table_status": 200,
            "duplicate_table_status": 400,
            "insert_status": 201,
            "delete_status": 204,
            "row_id_key": "row_id",
            "list_key": "data",
            "latency": 0.0,
        }
        self.configure(**options)
        self.lock = threading.RLock()
        self.tables: dict[str, _Table] = {}
        self.faults: list[_Fault] = []
        self.routes: Counter[str] = Counter()
        self.journal: list[tuple[str, str]] = []
        self.journal_start = 0  # how many entries were trimmed from the front
        self.requests = 0
        self.request_bytes = 0
        self.response_bytes = 0

    def configure(self, **options: Any) -> None:
        """Change behaviour switches (see the module docstring)."""
        unknown = set(options) - set(self.options)
        if unknown:
            raise TypeError(f"unknown ZeroDB server option(s): {', '.join(sorted(unknown))}")
        self.options.update(options)

    # -- WSGI ------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        method = environ["REQUEST_METHOD"].upper()
        path = environ.get("PATH_INFO", "")
        route, handler, args = self._route(method, path)
        with self.lock:
            self.requests += 1
            self.routes[route] += 1
            self.journal.append((route, method))
            if len(self.journal) > 200_000:
                del self.journal[:100_000]
                self.journal_start += 100_000
            self.request_bytes += int(environ.get("CONTENT_LENGTH") or 0)
            fault = self._take_fault(route, method)
        latency = float(self.options["latency"] or 0)
        if fault is not None and fault.kind == "delay":
            latency += fault.seconds
            fault = None
        if latency:
            time.sleep(latency)
        if fault is not None and not fault.after_commit:
            status, payload, headers = self._fault_answer(fault)
        else:
            try:
                if handler is None:
                    raise ApiError(*args)
                self._authenticate(environ)
                body = self._body(environ, method)
                query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
                with self.lock:
                    status, payload, headers = handler(*args, body=body, query=query)
            except ApiError as error:
                status, payload, headers = error.status, {"detail": error.detail}, error.headers
            if fault is not None:
                status, payload, headers = self._fault_answer(fault)
        if isinstance(payload, bytes):
            data = payload
        else:
            data = b"" if payload is None else json.dumps(payload).encode()
        with self.lock:
            self.response_bytes += len(data)
        header_list = [("Content-Type", "application/json"), *headers.items()]
        if status == 401:
            header_list.append(("WWW-Authenticate", "Bearer"))
        start_response(f"{status} {_REASONS.get(status, 'Status')}", header_list)
        return [data]

    def _take_fault(self, route: str, method: str) -> _Fault | None:
        for fault in self.faults:
            if fault.times > 0 and fault.applies(route, method):
                if fault.skip:
                    fault.skip -= 1
                    continue
                fault.times -= 1
                return fault
        return None

    @staticmethod
    def _fault_answer(fault: _Fault) -> tuple[int, Any, dict[str, str]]:
        """The injected answer; a dropped connection raises :class:`DropConnection`."""
        if fault.kind == "drop":
            raise DropConnection
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        if fault.body is not None:
            return fault.status, fault.body, headers
        if fault.status == 429:
            return 429, {"detail": fault.detail or "Rate limit exceeded"}, headers
        payload = {"detail": fault.detail or "Injected server error"}
        if fault.status >= 500:
            payload["message"] = "Internal server error"
        return fault.status, payload, headers

    def _authenticate(self, environ: dict[str, Any]) -> None:
        key = environ.get("HTTP_X_API_KEY")
        if key is not None and key == self.api_key:
            return
        authorization = environ.get("HTTP_AUTHORIZATION", "")
        if authorization[:7].lower() == "bearer ":
            token = authorization[7:].strip()
            if token in self.options["bearer_tokens"]:
                return
            if token == self.api_key and not self.options["strict_bearer"]:
                return
        raise ApiError(401, "Invalid or missing API key")

    @staticmethod
    def _body(environ: dict[str, Any], method: str) -> Any:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise validation_error(
                ["body", 0], f"JSON decode error: {exc}", "json_invalid"
            ) from exc

    # -- routing ---------------------------------------------------------------------------

    def _route(self, method: str, path: str) -> tuple[str, Any, tuple[Any, ...]]:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        rest: list[str] | None = None
        if parts[:2] == ["api", "v1"]:
            parts = parts[2:]
            if len(parts) >= 4 and parts[0] == "projects" and parts[2:4] == ["database", "tables"]:
                rest = parts[4:]
        elif parts[:1] == ["v1"]:
            parts = parts[1:]
            if (
                len(parts) >= 4
                and parts[0] in ("projects", "public")
                and parts[2:4] == ["database", "tables"]
            ):
                rest = parts[4:]
        if rest is None:
            return "unknown", None, (404, "Not Found")
        project = parts[1]
        options: dict[str, tuple[str, Callable[..., Any]]]
        table_routes: dict[int, dict[str, tuple[str, Callable[..., Any]]]] = {
            0: {
                "GET": ("tables.list", self._list_tables),
                "POST": ("tables.create", self._create_table),
            },
            1: {
                "GET": ("tables.get", self._get_table),
                "DELETE": ("tables.delete", self._delete_table),
            },
        }
        if len(rest) in table_routes:
            options = table_routes[len(rest)]
        elif len(rest) == 2 and rest[1] == "rows":
            options = {
                "GET": ("rows.list", self._list_rows),
                "POST": ("rows.insert", self._insert_row),
            }
        elif len(rest) == 2 and rest[1] == "query":
            options = {"POST": ("rows.query", self._query)}
        elif len(rest) == 3 and rest[1:] == ["rows", "bulk"]:
            options = {
                "PUT": ("rows.bulk_update", self._bulk_update),
                "DELETE": ("rows.bulk_delete", self._bulk_delete),
            }
        elif len(rest) == 3 and rest[1] == "rows":
            options = {
                "GET": ("rows.get", self._get_row),
                "PUT": ("rows.update", self._put_row),
                "DELETE": ("rows.delete", self._delete_row),
            }
        else:
            return "unknown", None, (404, "Not Found")
        if method not in options:
            return "unknown", None, (405, "Method Not Allowed")
        route, handler = options[method]
        args = (project, *rest[:1], *(rest[2:3] if route in _ROW_ROUTES else ()))
        return route, self._in_project(handler), args

    def _in_project(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(project: str, *args: Any, body: Any, query: dict[str, str]) -> Any:
            if project != self.project_id:
                raise ApiError(404, "Project not found")
            return handler(*args, body=body, query=query)

        return wrapped

    # -- helpers ---------------------------------------------------------------------------

    def _table(self, name: str) -> _Table:
        table = self.tables.get(name)
        if table is None:
            table = next((t for t in self.tables.values() if t.table_id == name), None)
        if table is None:
            raise ApiError(404, f"Table '{name}' not found")
        return table

    def _table_json(self, table: _Table) -> dict[str, Any]:
        return {
            "table_id": table.table_id,
            "id": table.table_id,
            "table_name": table.name,
            "name": table.name,
            "description": table.description,
            "schema": table.schema,
            "row_count": len(table.rows),
            "created_at": table.created_at,
            "updated_at": table.updated_at,
        }

    def _envelope(self, table: _Table, row: dict[str, Any]) -> dict[str, Any]:
        envelope = copy.deepcopy(row)
        if self.options["row_id_key"] != "row_id":
            envelope[self.options["row_id_key"]] = envelope.pop("row_id")
        envelope["project_id"] = self.project_id
        envelope["table_id"] = table.table_id
        envelope["table_name"] = table.name
        return envelope

    def _listing(self, items: list[Any], total: int, skip: int, limit: int, **extra: Any) -> Any:
        key = self.options["list_key"]
        if key == "bare":
            return items
        return {
            "total": total,
            "skip": skip,
            "limit": limit,
            "has_more": skip + len(items) < total,
            **extra,
            key: items,
        }

    @staticmethod
    def _int(value: Any, name: str, default: int, low: int, high: int | None) -> int:
        if value is None:
            return default
        try:
            number = int(value)
            if isinstance(value, bool) or (isinstance(value, float) and value != number):
                raise ValueError
        except (TypeError, ValueError):
            raise validation_error(
                ["body", name], "Input should be a valid integer", "int_type"
            ) from None
        if number < low or (high is not None and number > high):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            raise validation_error(
                ["body", name],
                f"Input should be {bound}",
                "less_than_equal" if high and number > high else "greater_than_equal",
            )
        return number

    def _filter_from(self, body: dict[str, Any]) -> dict[str, Any]:
        for key in self.options["filter_keys"]:
            if body.get(key) is not None:
                return check_filter(body[key])
        return {}

    @staticmethod
    def _object_body(body: Any) -> dict[str, Any]:
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise validation_error(["body"], "Input should be a valid dictionary", "dict_type")
        return body

    # -- tables ----------------------------------------------------------------------------

    def _list_tables(self, *, body: Any, query: dict[str, str]) -> Any:
        skip = self._int(query.get("skip"), "skip", 0, 0, None)
        limit = self._int(query.get("limit"), "limit", 100, 1, MAX_LIMIT)
        tables = [self._table_json(t) for t in self.tables.values()]
        return 200, self._listing(tables[skip : skip + limit], len(tables), skip, limit), {}

    def _create_table(self, *, body: Any, query: dict[str, str]) -> Any:
        body = self._object_body(body)
        name = next((body[k] for k in TABLE_NAME_KEYS if body.get(k)), None)
        if not isinstance(name, str) or not name:
            raise validation_error(["body", "name"], "Field required", "missing")
        if not name.replace("_", "").isalnum() or not name.isascii():
            raise ApiError(400, f"Invalid table name: {name!r}")
        if name in self.tables:
            raise ApiError(
                self.options["duplicate_table_status"], f"Table '{name}' already exists"
            )
        now = _now_iso()
        schema = body.get("schema")
        table = _Table(
            name=name,
            table_id=str(uuid.uuid4()),
            description=str(body.get("description") or ""),
            schema=schema,
            created_at=now,
            updated_at=now,
            index=TableIndex(schema.get("indexes") if isinstance(schema, dict) else None),
        )
        self.tables[name] = table
        return self.options["create_table_status"], self._table_json(table), {}

    def _get_table(self, name: str, *, body: Any, query: dict[str, str]) -> Any:
        return 200, self._table_json(self._table(name)), {}

    def _delete_table(self, name: str, *, body: Any, query: dict[str, str]) -> Any:
        table = self._table(name)
        del self.tables[table.name]
        return (
            200,
            {"success": True, "rows_deleted": len(table.rows), "table_name": table.name},
            {},
        )

    # -- rows ------------------------------------------------------------------------------

    def _insert_row(self, name: str, *, body: Any, query: dict[str, str]) -> Any:
        table = self._table(name)
        body = self._object_body(body)
        if "row_data" not in body:
            raise validation_error(["body", "row_data"], "Field required", "missing")
        if not isinstance(body["row_data"], dict):
            raise validation_error(
                ["body", "row_data"], "Input should be a valid dictionary", "dict_type"
            )
        now = _now_iso()
        row: dict[str, Any] = {
            "row_id": str(uuid.uuid4()),
            "row_data": copy.deepcopy(body["row_data"]),
            "created_at": now,
            "updated_at": now,
        }
        table.add(row)
        return self.options["insert_status"], self._envelope(table, row), {}

    def _list_rows(self, name: str, *, body: Any, query: dict[str, str]) -> Any:
        table = self._table(name)
        skip = self._int(query.get("skip"), "skip", 0, 0, None)
        limit = self._int(query.get("limit"), "limit", 100, 1, MAX_LIMIT)
        rows = list(table.rows.values())
        page = [self._envelope(table, r) for r in rows[skip : skip + limit]]
        return 200, self._listing(page, len(rows), skip, limit), {}

    def _query(self, name: str, *, body: Any, query: dict[str, str]) -> Any:
        started = time.perf_counter()
        table = self._table(name)
        body = self._object_body(body)
        filter_ = self._filter_from(body)
        sort = check_sort(body.get("sort"))
        skip = self._int(body.get("skip"), "skip", 0, 0, None)
        limit = self._int(body.get("limit"), "limit", 100, 1, MAX_LIMIT)
        found = table.matching(filter_)
        if sort:
            found = sort_rows(found, sort, lambda r: {**r, **r["row_data"]})
        page = [self._envelope(table, r) for r in found[skip : skip + limit]]
        elapsed = round((time.perf_counter() - started) * 1000, 3)
        key = self.options["list_key"] if self.options["list_key"] != "bare" else "data"
        return (
            200,
            {
                "total": len(found),
                "skip": skip,
                "limit": limit,
                "has_more": skip + len(page) < len(found),
                "filter_summary": filter_,
                "execution_time_ms": elapsed,
                key: page,
            },
            {},
        )

    def _row(self, table: _Table, row_id: str) -> dict[str, Any]:
        row = table.rows.get(row_id)
        if row is None:
            raise ApiError(404, f"Row '{row_id}' not found")
        return row

    def _get_row(self, name: str, row_id: str, *, body: Any, query: dict[str, str]) -> Any:
        table = self._table(name)
        return 200, self._envelope(table, self._row(table, row_id)), {}

    def _put_row(self, name: str, row_id: str, *, body: Any, query: dict[str, str]) -> Any:
        table = self._table(name)
        row = self._row(table, row_id)
        body = self._object_body(body)
        if not isinstance(body.get("row_data"), dict):
            raise validation_error(["body", "row_data"], "Field required", "missing")
        table.change(row, copy.deepcopy(body["row_data"]))
        row["updated_at"] = _now_iso()
        return 200, self._envelope(table, row), {}

    def _delete_row(self, name: str, row_id: str, *, body: Any, query: dict[str, str]) -> Any:
        table = self._table(name)
        self._row(table, row_id)
        table.discard(row_id)
        status = self.options["delete_status"]
        return status, (None if status == 204 else {"success": True, "row_id": row_id}), {}

    def _bulk_targets(
        self, table: _Table, body: dict[str, Any]
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        filter_ = self._filter_from(body)
        if not filter_:
            raise ApiError(400, "A non-empty filter is required for bulk operations")
        found = table.matching(filter_)
        if len(found) > LARGE_OPERATION and not body.get("confirm_large_operation"):
            raise ApiError(
                400,
                f"Operation affects {len(found)} rows (more than "
                f"{LARGE_OPERATION}); set confirm_large_operation=true",
            )
        return filter_, found

    def _bulk_update(self, name: str, *, body: Any, query: dict[str, str]) -> Any:
        started = time.perf_counter()
        table = self._table(name)
        body = self._object_body(body)
        update = check_update(body.get("update"))
        filter_, found = self._bulk_targets(table, body)
        staged = [(row, copy.deepcopy(row["row_data"])) for row in found]
        modified = 0
        for _row, data in staged:
            if apply_update(data, update):
                modified += 1
        now = _now_iso()
        for row, data in staged:
            if data != row["row_data"]:
                table.change(row, data)
                row["updated_at"] = now
        return (
            200,
            {
                "matched_count": len(found),
                "modified_count": modified,
                "filter_used": filter_,
                "update_operators": sorted(update),
                "execution_time_ms": round((time.perf_counter() - started) * 1000, 3),
                "warnings": [],
            },
            {},
        )

    def _bulk_delete(self, name: str, *, body: Any, query: dict[str, str]) -> Any:
        started = time.perf_counter()
        table = self._table(name)
        filter_, found = self._bulk_targets(table, self._object_body(body))
        for row in found:
            table.discard(row["row_id"])
        return (
            200,
            {
                "deleted_count": len(found),
                "filter_used": filter_,
                "execution_time_ms": round((time.perf_counter() - started) * 1000, 3),
                "warnings": [],
            },
            {},
        )


_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive request handler that runs the WSGI app for every request."""

    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle + delayed ACK add 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.owner._opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._closed(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests read counters, not logs."""

    def _run(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        environ = {
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "wsgi.input": io.BytesIO(body),
        }
        for name, value in self.headers.items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        answer: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]]) -> None:
            answer["status"], answer["headers"] = status, headers

        app = self.server.owner.app
        try:
            chunks = app(environ, start_response)
        except DropConnection:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        data = b"".join(chunks)
        code, _, reason = answer["status"].partition(" ")
        try:
            self.send_response(int(code), reason)
            for name, value in answer["headers"]:
                self.send_header(name, value)
            if int(code) != 204:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if int(code) != 204:
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a timeout): the work is done, the answer has nowhere to go.
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _run


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: ZeroDBServer


class ZeroDBServer:
    """A ZeroDB-compatible server on a free loopback port (see the module docstring)."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        project_id: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        **options: Any,
    ) -> None:
        self.api_key = api_key or f"sk_test_{uuid.uuid4().hex}"
        self.project_id = project_id or str(uuid.uuid4())
        self.host = host
        self._requested_port = port
        self.port = port
        self.app = ZeroDBApp(api_key=self.api_key, project_id=self.project_id, **options)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._connections = 0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> ZeroDBServer:
        """Listen and serve in a background thread (a no-op when already running)."""
        if self._httpd is not None:
            return self
        httpd = _HTTPServer((self.host, self._requested_port or self.port), _Handler)
        httpd.owner = self
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"zerodb-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection (state is kept)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ZeroDBServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while serving."""
        return self._httpd is not None

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:<port>`` (no API root)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The documented API root on this server: ``<root_url>/api/v1``."""
        return f"{self.root_url}/api/v1"

    @property
    def tables_url(self) -> str:
        """``<base_url>/projects/<project_id>/database/tables``."""
        return f"{self.base_url}/projects/{self.project_id}/database/tables"

    def configure(self, **options: Any) -> None:
        """Change behaviour switches at runtime (see the module docstring)."""
        with self.app.lock:
            self.app.configure(**options)

    # -- faults ----------------------------------------------------------------------------

    def _add_fault(self, fault: _Fault) -> None:
        with self.app.lock:
            self.app.faults.append(fault)

    def fail(
        self,
        times: int = 1,
        status: int = 500,
        *,
        route: str | None = None,
        method: str | None = None,
        retry_after: float | None = None,
        detail: str | None = None,
        after_commit: bool = False,
        body: bytes | None = None,
        nth: int = 1,
    ) -> None:
        """Answer ``times`` matching requests with ``status`` (and raw ``body``), starting
        with the ``nth`` matching one (earlier ones pass untouched)."""
        self._add_fault(
            _Fault(
                "status",
                times,
                status=status,
                retry_after=retry_after,
                detail=detail,
                after_commit=after_commit,
                route=route,
                method=method,
                body=body,
                skip=nth - 1,
            )
        )

    def rate_limit(
        self,
        times: int = 1,
        retry_after: float | None = 2,
        *,
        route: str | None = None,
        method: str | None = None,
        after_commit: bool = False,
        nth: int = 1,
    ) -> None:
        """Answer ``times`` matching requests with 429 and ``Retry-After`` (from the ``nth``)."""
        self.fail(
            times,
            429,
            route=route,
            method=method,
            retry_after=retry_after,
            after_commit=after_commit,
            nth=nth,
        )

    def drop(
        self,
        times: int = 1,
        *,
        route: str | None = None,
        method: str | None = None,
        after_commit: bool = True,
        nth: int = 1,
    ) -> None:
        """Close the connection without a reply, after (default) or before doing the work
        (from the ``nth`` matching request on)."""
        self._add_fault(
            _Fault(
                "drop", times, after_commit=after_commit, route=route, method=method, skip=nth - 1
            )
        )

    def delay(
        self,
        seconds: float,
        times: int = 1,
        *,
        route: str | None = None,
        method: str | None = None,
        nth: int = 1,
    ) -> None:
        """Delay ``times`` matching requests by ``seconds`` (then work), from the ``nth``."""
        self._add_fault(
            _Fault("delay", times, seconds=seconds, route=route, method=method, skip=nth - 1)
        )

    def set_latency(self, seconds: float) -> None:
        """Delay every request by ``seconds`` (0 turns it off)."""
        self.configure(latency=seconds)

    def clear_faults(self) -> None:
        """Forget every pending fault and the latency."""
        with self.app.lock:
            self.app.faults.clear()
            self.app.options["latency"] = 0.0

    def pending_faults(self) -> int:
        """How many injected faults have not fired yet."""
        with self.app.lock:
            return sum(f.times for f in self.app.faults)

    # -- counters --------------------------------------------------------------------------

    def _opened(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections += 1
            self._sockets.add(sock)

    def _closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)

    @property
    def request_count(self) -> int:
        """Requests received since the last reset."""
        with self.app.lock:
            return self.app.requests

    @property
    def connection_count(self) -> int:
        """TCP connections accepted since the last reset."""
        with self._lock:
            return self._connections

    def route_counts(self) -> dict[str, int]:
        """Requests per route name since the last reset."""
        with self.app.lock:
            return dict(self.app.routes)

    def reset_counters(self) -> None:
        """Zero the request and connection counters."""
        with self.app.lock:
            self.app.requests = 0
            self.app.request_bytes = self.app.response_bytes = 0
            self.app.routes.clear()
            self.app.journal_start += len(self.app.journal)
            self.app.journal.clear()
        with self._lock:
            self._connections = 0

    @contextlib.contextmanager
    def counting(self) -> Iterator[Tally]:
        """Count what happens inside the block: ``with server.counting() as tally: ...``."""
        tally = Tally()
        with self.app.lock:
            requests, routes = self.app.requests, Counter(self.app.routes)
            sent, received = self.app.request_bytes, self.app.response_bytes
            start = self.app.journal_start + len(self.app.journal)
        connections = self.connection_count
        try:
            yield tally
        finally:
            with self.app.lock:
                tally.requests = self.app.requests - requests
                tally.routes = {k: v for k, v in (self.app.routes - routes).items() if v}
                tally.request_bytes = self.app.request_bytes - sent
                tally.response_bytes = self.app.response_bytes - received
                tally.sequence = self.app.journal[max(0, start - self.app.journal_start) :]
            tally.connections = self.connection_count - connections

    # -- state -----------------------------------------------------------------------------

    def table_names(self) -> list[str]:
        """The names of the tables that exist."""
        with self.app.lock:
            return list(self.app.tables)

    def rows(self, table: str) -> list[dict[str, Any]]:
        """Copies of a table's row envelopes in insertion order ([] when it does not exist)."""
        with self.app.lock:
            found = self.app.tables.get(table)
            return [copy.deepcopy(r) for r in found.rows.values()] if found else []

    def insert_row(self, table: str, row_data: dict[str, Any]) -> str:
        """Insert a row directly (no HTTP, faults or counters); returns its row_id."""
        with self.app.lock:
            found = self.app.tables.get(table)
            if found is None:
                raise KeyError(table)
            now = _now_iso()
            row_id = str(uuid.uuid4())
            found.add(
                {
                    "row_id": row_id,
                    "row_data": copy.deepcopy(row_data),
                    "created_at": now,
                    "updated_at": now,
                }
            )
            return row_id

    def reset(self) -> None:
        """Drop every table, fault and counter."""
        with self.app.lock:
            self.app.tables.clear()
        self.clear_faults()
        self.reset_counters()


__all__ = ["ApiError", "DropConnection", "Tally", "ZeroDBApp", "ZeroDBServer"]
