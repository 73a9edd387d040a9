"""The ZeroDB-compatible test server follows section 7 of zerodb-api.md (its behaviour matrix).

These tests talk raw HTTP to the server, so they pin down what the backend's
tests (and the benchmarks) rely on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.servers.zerodb_server import ZeroDBServer


@pytest.fixture(scope="module")
def module_server() -> Iterator[ZeroDBServer]:
    with ZeroDBServer() as server:
        yield server


@pytest.fixture
def server(module_server: ZeroDBServer) -> Iterator[ZeroDBServer]:
    module_server.reset()
    module_server.configure(
        strict_bearer=False,
        bearer_tokens=(),
        filter_keys=("filter",),
        create_table_status=200,
        duplicate_table_status=400,
        insert_status=201,
        delete_status=204,
        row_id_key="row_id",
        list_key="data",
    )
    yield module_server
    module_server.reset()


@pytest.fixture
def http(server: ZeroDBServer) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["X-API-Key"] = server.api_key
        yield session


def make_table(http: requests.Session, server: ZeroDBServer, name: str = "t") -> str:
    response = http.post(server.tables_url, json={"name": name})
    assert response.status_code == 200
    return f"{server.tables_url}/{name}"


def insert(http: requests.Session, table_url: str, data: dict[str, Any]) -> dict[str, Any]:
    response = http.post(f"{table_url}/rows", json={"row_data": data})
    assert response.status_code == 201, response.text
    return response.json()


def query(http: requests.Session, table_url: str, **body: Any) -> requests.Response:
    return http.post(f"{table_url}/query", json=body)


# -- prefixes, auth, project ------------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix",
    ["/api/v1/projects/{pid}", "/v1/projects/{pid}", "/v1/public/{pid}"],
)
def test_every_documented_prefix_serves_the_tables(server, http, prefix):
    make_table(http, server, "shared")
    url = server.root_url + prefix.format(pid=server.project_id) + "/database/tables"
    listing = http.get(url).json()
    assert [t["name"] for t in listing["data"]] == ["shared"]


def test_unknown_prefixes_are_404(server, http):
    for path in ("/api/v1/public/{pid}", "/v1/public/zerodb/{pid}", "/v2/projects/{pid}"):
        url = server.root_url + path.format(pid=server.project_id) + "/database/tables"
        response = http.get(url)
        assert response.status_code == 404
        assert response.json() == {"detail": "Not Found"}


def test_auth_accepts_x_api_key_and_bearer_and_rejects_the_rest(server):
    url = server.tables_url
    assert requests.get(url, headers={"X-API-Key": server.api_key}).status_code == 200
    bearer = {"Authorization": f"Bearer {server.api_key}"}
    assert requests.get(url, headers=bearer).status_code == 200
    for headers in ({}, {"X-API-Key": "sk_wrong"}, {"Authorization": "Bearer nope"}):
        response = requests.get(url, headers=headers)
        assert response.status_code == 401
        assert response.json() == {"detail": "Invalid or missing API key"}
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_strict_bearer_rejects_api_keys_in_bearer_but_accepts_tokens(server):
    server.configure(strict_bearer=True, bearer_tokens=("jwt-token",))
    url = server.tables_url
    assert (
        requests.get(url, headers={"Authorization": f"Bearer {server.api_key}"}).status_code == 401
    )
    assert requests.get(url, headers={"Authorization": "Bearer jwt-token"}).status_code == 200
    assert requests.get(url, headers={"X-API-Key": server.api_key}).status_code == 200


def test_unknown_project_is_404(server, http):
    url = f"{server.base_url}/projects/00000000-0000-0000-0000-000000000000/database/tables"
    response = http.get(url)
    assert response.status_code == 404
    assert response.json() == {"detail": "Project not found"}


# -- tables -----------------------------------------------------------------------------------


def test_create_table_accepts_name_or_table_name_and_replies_with_the_table(server, http):
    first = http.post(server.tables_url, json={"name": "a", "description": "d"})
    second = http.post(server.tables_url, json={"table_name": "b", "schema": {"fields": {}}})
    assert first.status_code == second.status_code == 200
    body = first.json()
    assert {
        "table_id",
        "id",
        "table_name",
        "name",
        "description",
        "schema",
        "row_count",
        "created_at",
        "updated_at",
    } <= set(body)
    assert body["name"] == body["table_name"] == "a" and body["row_count"] == 0
    assert second.json()["schema"] == {"fields": {}}
    missing = http.post(server.tables_url, json={"description": "no name"})
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "name"]


def test_duplicate_table_is_400_or_the_configured_409(server, http):
    make_table(http, server, "dup")
    response = http.post(server.tables_url, json={"name": "dup"})
    assert response.status_code == 400
    assert response.json() == {"detail": "Table 'dup' already exists"}
    server.configure(duplicate_table_status=409, create_table_status=201)
    assert http.post(server.tables_url, json={"name": "dup"}).status_code == 409
    assert http.post(server.tables_url, json={"name": "new"}).status_code == 201


def test_list_get_and_delete_tables(server, http):
    for name in ("a", "b", "c"):
        make_table(http, server, name)
    listing = http.get(server.tables_url, params={"skip": 1, "limit": 1}).json()
    assert listing["total"] == 3 and listing["has_more"] is True
    assert [t["name"] for t in listing["data"]] == ["b"]
    by_name = http.get(f"{server.tables_url}/a").json()
    assert http.get(f"{server.tables_url}/{by_name['table_id']}").json()["name"] == "a"
    insert(http, f"{server.tables_url}/a", {"x": 1})
    deleted = http.delete(f"{server.tables_url}/a", params={"confirm": "true"})
    assert deleted.status_code == 200
    assert deleted.json()["success"] is True and deleted.json()["rows_deleted"] == 1
    assert http.get(f"{server.tables_url}/a").status_code == 404
    assert http.delete(f"{server.tables_url}/a").status_code == 404


# -- rows -------------------------------------------------------------------------------------


def test_insert_needs_row_data_object_and_replies_201_envelope(server, http):
    table = make_table(http, server)
    row = insert(http, table, {"conversation_id": "c", "n": 1})
    assert set(row) >= {"row_id", "row_data", "created_at", "updated_at", "table_name"}
    assert row["row_data"] == {"conversation_id": "c", "n": 1}
    for body in ({"data": {}}, {"rows": [{}]}, {"row_data": [1]}, {}):
        response = http.post(f"{table}/rows", json=body)
        assert response.status_code == 422
        assert isinstance(response.json()["detail"], list)
        assert response.json()["detail"][0]["loc"] == ["body", "row_data"]
    bad_json = http.post(
        f"{table}/rows", data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 422


def test_rows_of_a_missing_table_are_404(server, http):
    response = http.post(f"{server.tables_url}/missing/rows", json={"row_data": {}})
    assert response.status_code == 404
    assert response.json() == {"detail": "Table 'missing' not found"}
    assert query(http, f"{server.tables_url}/missing", filter={"a": 1}).status_code == 404


def test_list_rows_ignores_filters_and_pages(server, http):
    table = make_table(http, server)
    for i in range(5):
        insert(http, table, {"i": i})
    listing = http.get(f"{table}/rows", params={"skip": 1, "limit": 2, "i": 4}).json()
    assert [r["row_data"]["i"] for r in listing["data"]] == [1, 2]
    assert listing["total"] == 5 and listing["has_more"] is True
    for limit in (0, 1001):
        assert http.get(f"{table}/rows", params={"limit": limit}).status_code == 422


def test_get_put_replaces_and_delete_is_204(server, http):
    table = make_table(http, server)
    row = insert(http, table, {"a": 1, "b": 2})
    url = f"{table}/rows/{row['row_id']}"
    assert http.get(url).json()["row_data"] == {"a": 1, "b": 2}
    time.sleep(0.002)
    updated = http.put(url, json={"row_data": {"a": 3}}).json()
    assert updated["row_data"] == {"a": 3}
    assert updated["updated_at"] > row["updated_at"]
    assert http.patch(url, json={"row_data": {"a": 4}}).status_code == 405
    deleted = http.delete(url)
    assert deleted.status_code == 204 and deleted.content == b""
    for method in ("get", "put", "delete"):
        assert getattr(http, method)(url, json={"row_data": {}}).status_code == 404


# -- query ------------------------------------------------------------------------------------


@pytest.fixture
def people(server, http):
    table = make_table(http, server)
    for name, age, tags in [
        ("ann", 30, ["a"]),
        ("bob", 25, ["b", "c"]),
        ("cy", 41, []),
        ("dee", 25, ["c"]),
    ]:
        insert(http, table, {"name": name, "age": age, "tags": tags, "nested": {"k": name}})
    return table


def names(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [row["row_data"]["name"] for row in response.json()["data"]]


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        ({"age": 25}, ["bob", "dee"]),
        ({"age": {"$eq": 30}}, ["ann"]),
        ({"age": {"$ne": 25}}, ["ann", "cy"]),
        ({"age": {"$gt": 25}}, ["ann", "cy"]),
        ({"age": {"$gte": 30, "$lt": 41}}, ["ann"]),
        ({"age": {"$lte": 25}}, ["bob", "dee"]),
        ({"name": {"$in": ["ann", "cy", "zed"]}}, ["ann", "cy"]),
        ({"name": {"$nin": ["ann", "cy"]}}, ["bob", "dee"]),
        ({"tags": {"$contains": "c"}}, ["bob", "dee"]),
        ({"name": {"$contains": "e"}}, ["dee"]),
        ({"name": {"$regex": "^[ab]"}}, ["ann", "bob"]),
        ({"nested.k": "cy"}, ["cy"]),
        ({"name": "ann", "age": 25}, []),
        ({}, ["ann", "bob", "cy", "dee"]),
    ],
)
def test_filter_operators(people, http, filter_, expected):
    assert names(query(http, people, filter=filter_)) == expected


def test_bad_operators_and_field_names_are_400(people, http):
    for filter_ in (
        {"age": {"$exists": True}},
        {"$or": [{"age": 1}]},
        {"a b": 1},
        {"age;drop": 1},
        {"name": {"$regex": "("}},
    ):
        response = query(http, people, filter=filter_)
        assert response.status_code == 400, filter_
        assert isinstance(response.json()["detail"], str)


def test_query_reply_shape_paging_and_limits(people, http):
    body = query(http, people, filter={}, limit=3, skip=0).json()
    assert {
        "total",
        "skip",
        "limit",
        "has_more",
        "filter_summary",
        "execution_time_ms",
        "data",
    } <= set(body)
    assert body["total"] == 4 and body["has_more"] is True and len(body["data"]) == 3
    rest = query(http, people, filter={}, limit=3, skip=3).json()
    assert rest["has_more"] is False and len(rest["data"]) == 1
    for limit in (0, 1001, "x"):
        response = query(http, people, filter={}, limit=limit)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "limit"]
    assert query(http, people, filter={}, limit=1000).status_code == 200


def test_query_sort_and_default_insertion_order(people, http):
    assert names(query(http, people, filter={})) == ["ann", "bob", "cy", "dee"]
    assert names(query(http, people, sort={"age": -1, "name": 1})) == ["cy", "ann", "bob", "dee"]
    assert query(http, people, sort={"age": 2}).status_code == 400


def test_filter_key_is_configurable(people, server, http):
    assert names(query(http, people, filters={"name": "ann"})) == ["ann", "bob", "cy", "dee"]
    server.configure(filter_keys=("filters",))
    assert names(query(http, people, filters={"name": "ann"})) == ["ann"]
    assert names(query(http, people, filter={"name": "ann"})) == ["ann", "bob", "cy", "dee"]


# -- bulk -------------------------------------------------------------------------------------


def test_bulk_update_operators(server, http):
    table = make_table(http, server)
    row = insert(http, table, {"k": "x", "n": 1, "list": [1, 2, 1], "gone": True})
    insert(http, table, {"k": "y", "n": 1})
    update = {
        "$set": {"s": "new", "deep.er": 1},
        "$inc": {"n": 2},
        "$push": {"list": 3},
        "$pull": {"list": 1},
        "$unset": {"gone": ""},
    }
    reply = http.put(f"{table}/rows/bulk", json={"filter": {"k": "x"}, "update": update}).json()
    assert reply["matched_count"] == 1 and reply["modified_count"] == 1
    assert {"filter_used", "update_operators", "execution_time_ms", "warnings"} <= set(reply)
    data = http.get(f"{table}/rows/{row['row_id']}").json()["row_data"]
    assert data == {"k": "x", "n": 3, "list": [2, 3], "s": "new", "deep": {"er": 1}}
    none = http.put(f"{table}/rows/bulk", json={"filter": {"k": "z"}, "update": update}).json()
    assert none["matched_count"] == 0


def test_bulk_operations_need_a_filter_valid_operators_and_confirmation(server, http):
    table = make_table(http, server)
    for i in range(101):
        insert(http, table, {"group": "big", "i": i})
    update = {"$set": {"x": 1}}
    assert http.put(f"{table}/rows/bulk", json={"filter": {}, "update": update}).status_code == 400
    assert http.put(f"{table}/rows/bulk", json={"update": update}).status_code == 400
    bad_op = http.put(f"{table}/rows/bulk", json={"filter": {"i": 1}, "update": {"$rename": {}}})
    assert bad_op.status_code == 400
    big = {"filter": {"group": "big"}, "update": update}
    refused = http.put(f"{table}/rows/bulk", json=big)
    assert refused.status_code == 400 and "confirm_large_operation" in refused.json()["detail"]
    assert http.delete(f"{table}/rows/bulk", json={"filter": {"group": "big"}}).status_code == 400
    confirmed = http.put(f"{table}/rows/bulk", json={**big, "confirm_large_operation": True})
    assert confirmed.json()["matched_count"] == 101
    deleted = http.delete(
        f"{table}/rows/bulk", json={"filter": {"i": {"$lt": 50}}, "confirm_large_operation": False}
    ).json()
    assert deleted["deleted_count"] == 50
    assert len(server.rows("t")) == 51


# -- response-shape switches ------------------------------------------------------------------


def test_alternative_response_shapes(server, http):
    server.configure(insert_status=200, delete_status=200, row_id_key="id", list_key="rows")
    table = make_table(http, server)
    response = http.post(f"{table}/rows", json={"row_data": {"a": 1}})
    assert response.status_code == 200 and "id" in response.json()
    assert "row_id" not in response.json()
    assert "rows" in http.get(f"{table}/rows").json()
    assert "rows" in query(http, table, filter={}).json()
    deleted = http.delete(f"{table}/rows/{response.json()['id']}")
    assert deleted.status_code == 200 and deleted.json()["success"] is True
    server.configure(list_key="bare")
    assert http.get(server.tables_url).json()[0]["name"] == "t"


# -- faults and counters ----------------------------------------------------------------------


def test_rate_limit_fault_carries_retry_after_and_fires_n_times(server, http):
    server.rate_limit(times=2, retry_after=2, route="tables.list")
    first, second, third = (http.get(server.tables_url) for _ in range(3))
    assert first.status_code == second.status_code == 429
    assert first.headers["Retry-After"] == "2"
    assert first.json() == {"detail": "Rate limit exceeded"}
    assert third.status_code == 200
    assert server.pending_faults() == 0


def test_server_error_fault_before_and_after_commit(server, http):
    table = make_table(http, server)
    server.fail(times=1, status=500, route="rows.insert")
    before = http.post(f"{table}/rows", json={"row_data": {"a": 1}})
    assert before.status_code == 500
    assert before.json() == {"detail": "Injected server error", "message": "Internal server error"}
    assert server.rows("t") == []
    server.fail(times=1, status=503, route="rows.insert", after_commit=True)
    assert http.post(f"{table}/rows", json={"row_data": {"a": 2}}).status_code == 503
    assert [r["row_data"] for r in server.rows("t")] == [{"a": 2}]


def test_dropped_connection_before_and_after_commit(server, http):
    table = make_table(http, server)
    server.drop(times=1, route="rows.insert", after_commit=False)
    with pytest.raises(requests.ConnectionError):
        http.post(f"{table}/rows", json={"row_data": {"a": 1}})
    assert server.rows("t") == []
    server.drop(times=1, route="rows.insert")
    with pytest.raises(requests.ConnectionError):
        http.post(f"{table}/rows", json={"row_data": {"a": 2}})
    assert [r["row_data"] for r in server.rows("t")] == [{"a": 2}]
    assert http.get(f"{table}/rows").status_code == 200


def test_faults_filter_by_method(server, http):
    make_table(http, server)
    server.fail(times=1, status=502, method="GET")
    assert http.post(server.tables_url, json={"name": "other"}).status_code == 200
    assert http.get(server.tables_url).status_code == 502


def test_latency_delays_requests(server, http):
    server.set_latency(0.1)
    started = time.perf_counter()
    http.get(server.tables_url)
    assert time.perf_counter() - started >= 0.1
    server.clear_faults()
    started = time.perf_counter()
    http.get(server.tables_url)
    assert time.perf_counter() - started < 0.1


def test_counters_count_requests_routes_and_keep_alive_connections(server, http):
    table = make_table(http, server)
    with server.counting() as tally:
        insert(http, table, {"a": 1})
        query(http, table, filter={"a": 1})
        query(http, table, filter={"a": 2})
        requests.get(server.tables_url, headers={"X-API-Key": server.api_key})
    assert tally.requests == 4
    assert tally.routes == {"rows.insert": 1, "rows.query": 2, "tables.list": 1}
    assert tally.request_bytes == sum(
        len(json.dumps(b).encode())
        for b in ({"row_data": {"a": 1}}, {"filter": {"a": 1}}, {"filter": {"a": 2}})
    )
    assert tally.response_bytes > tally.request_bytes
    # The session's connection was opened by make_table; requests.get opened one more.
    assert tally.connections == 1
    server.reset_counters()
    assert server.request_count == 0 and server.route_counts() == {}
    assert server.connection_count == 0


def test_direct_state_access(server, http):
    table = make_table(http, server)
    row_id = server.insert_row("t", {"direct": True})
    assert http.get(f"{table}/rows/{row_id}").json()["row_data"] == {"direct": True}
    assert server.table_names() == ["t"]
    with pytest.raises(KeyError):
        server.insert_row("missing", {})


def test_stop_and_start_again_on_the_same_port():
    with ZeroDBServer() as server:
        port = server.port
        server.stop()
        assert not server.running
        with pytest.raises(requests.ConnectionError):
            requests.get(server.tables_url, headers={"X-API-Key": server.api_key}, timeout=2)
        server.start()
        assert server.port == port
        assert requests.get(server.tables_url, headers={"X-API-Key": server.api_key}).ok


def test_delay_fault_slows_one_request_and_still_does_the_work(server, http):
    table = make_table(http, server)
    server.delay(0.2, times=1, route="rows.insert")
    with pytest.raises(requests.Timeout):
        http.post(f"{table}/rows", json={"row_data": {"late": True}}, timeout=0.05)
    deadline = time.monotonic() + 5
    while not server.rows("t"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert [r["row_data"] for r in server.rows("t")] == [{"late": True}]
    started = time.perf_counter()
    insert(http, table, {"fast": True})
    assert time.perf_counter() - started < 0.2


# -- indexes, nth-request faults, request order --------------------------------------------


@pytest.fixture
def indexed(server, http):
    """A table with a hash index on ``g`` and rows of each ``g`` ordered by ``n``."""
    response = http.post(
        server.tables_url, json={"name": "ix", "schema": {"indexes": ["g", ["g", "n"]]}}
    )
    assert response.status_code == 200
    table = f"{server.tables_url}/ix"
    for i in range(30):
        insert(http, table, {"g": f"g{i % 3}", "n": (i * 7) % 30, "odd": i % 2 == 1})
    insert(http, table, {"g": "g0", "n": "not a number"})
    insert(http, table, {"n": 5})  # no g at all
    return table


@pytest.mark.parametrize(
    "filter_",
    [
        {"g": "g1"},
        {"g": {"$in": ["g0", "g2"]}, "odd": True},
        {"g": "g0", "n": {"$gte": 4, "$lt": 20}},
        {"g": "g2", "n": {"$gt": 4, "$lte": 20}},
        {"g": "g1", "n": {"$in": [1, 2, 3, 100]}},
        {"g": None},
        {"n": {"$gte": 10}},
        {"g": "g0", "n": {"$ne": 3}},
    ],
)
def test_indexes_answer_exactly_like_a_scan(server, http, indexed, filter_):
    """Indexes only pick candidates: results (and their order) equal a full scan's."""
    answer = query(http, indexed, filter=filter_, limit=1000).json()
    with server.app.lock:
        table = server.app.tables["ix"]
        scanned = [r["row_id"] for r in table.rows.values() if matches_row(r, filter_)]
    assert [r["row_id"] for r in answer["data"]] == scanned
    assert answer["total"] == len(scanned)
    sorted_answer = query(http, indexed, filter=filter_, sort={"n": -1}, limit=1000).json()
    assert sorted(r["row_id"] for r in sorted_answer["data"]) == sorted(scanned)


def matches_row(row: dict[str, Any], filter_: dict[str, Any]) -> bool:
    from tests.servers.zerodb_filters import matches

    return matches(row["row_data"], filter_)


def test_indexes_follow_updates_and_deletes(server, http, indexed):
    ranged = {"g": "g1", "n": {"$gte": 100}}
    assert query(http, indexed, filter=ranged).json()["total"] == 0
    reply = http.put(
        f"{indexed}/rows/bulk",
        json={"filter": {"g": "g1", "n": {"$lt": 10}}, "update": {"$inc": {"n": 100}}},
    )
    moved = reply.json()["matched_count"]
    assert moved > 0 and query(http, indexed, filter=ranged).json()["total"] == moved
    http.put(f"{indexed}/rows/bulk", json={"filter": {"g": "g1"}, "update": {"$set": {"g": "x"}}})
    assert query(http, indexed, filter={"g": "g1"}).json()["total"] == 0
    assert query(http, indexed, filter={"g": "x", "n": {"$gte": 100}}).json()["total"] == moved
    http.request("DELETE", f"{indexed}/rows/bulk", json={"filter": {"g": "x"}})
    assert query(http, indexed, filter={"g": "x", "n": {"$gte": 0}}).json()["total"] == 0
    row = insert(http, indexed, {"g": "x", "n": 500})
    assert query(http, indexed, filter={"g": "x", "n": {"$gt": 499}}).json()["total"] == 1
    http.delete(f"{indexed}/rows/{row['row_id']}")
    assert query(http, indexed, filter={"g": "x"}).json()["total"] == 0


def test_a_fault_can_target_the_nth_matching_request(server, http):
    table = make_table(http, server)
    server.fail(times=1, status=503, route="rows.insert", nth=3)
    codes = [http.post(f"{table}/rows", json={"row_data": {"i": i}}).status_code for i in range(4)]
    assert codes == [201, 201, 503, 201]
    server.drop(times=1, nth=2, after_commit=True)  # any route: the second request from now
    assert http.get(f"{table}/rows").status_code == 200
    with pytest.raises(requests.ConnectionError):
        http.post(f"{table}/rows", json={"row_data": {"i": 9}})
    assert [r["row_data"]["i"] for r in server.rows("t")] == [0, 1, 3, 9]
    server.rate_limit(times=1, retry_after=0, route="rows.insert", after_commit=True)
    assert http.post(f"{table}/rows", json={"row_data": {"i": 10}}).status_code == 429
    assert server.rows("t")[-1]["row_data"] == {"i": 10}


def test_counting_records_the_order_of_requests(server, http):
    table = make_table(http, server)
    with server.counting() as tally:
        insert(http, table, {"a": 1})
        query(http, table, filter={})
        http.get(f"{table}/rows")
    assert tally.sequence == [
        ("rows.insert", "POST"),
        ("rows.query", "POST"),
        ("rows.list", "GET"),
    ]
