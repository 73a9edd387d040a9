"""Messages as AI apps write them, through the REST API's JSON: exact round trips.

Content strings and lists of parts, ``tool_calls``, ``name`` and
``tool_call_id`` are stored and answered exactly as sent, through create,
save, append, the message window, ``?last=`` and pop; plain text messages keep
their short shape (no null fields).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from django_convstore.backends.base import BaseStore
from tests.contract.test_properties import MESSAGE

pytestmark = pytest.mark.django_db

BASE = "/api/conversations/"
TURNS: list[dict[str, Any]] = [
    {"id": "s", "role": "system", "content": "You are terse.", "timestamp": 1, "metadata": {}},
    {
        "id": "d",
        "role": "developer",
        "content": "Use metric units.",
        "timestamp": 2,
        "metadata": {},
    },
    {
        "id": "u",
        "role": "user",
        "name": "alice",
        "content": [
            {"type": "text", "text": "What is on this picture, and the weather there?"},
            {
                "type": "image_url",
                "image_url": {"url": "https://example.com/a.png", "detail": "low"},
            },
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
            {"type": "file", "file": {"filename": "notes.pdf", "file_id": "file-1"}},
        ],
        "timestamp": 3,
        "metadata": {"client": "web"},
    },
    {
        "id": "a1",
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
        "timestamp": 4,
        "metadata": {},
    },
    {
        "id": "t1",
        "role": "tool",
        "tool_call_id": "call_1",
        "content": '{"temp": 21.5, "unit": "C"}',
        "timestamp": 5,
        "metadata": {},
    },
    {
        "id": "f1",
        "role": "function",
        "name": "get_weather",
        "content": "21.5",
        "timestamp": 6,
        "metadata": {},
    },
    {
        "id": "a2",
        "role": "assistant",
        "content": "Paris, 21.5 °C.",
        "timestamp": 7,
        "metadata": {},
    },
]


def test_every_shape_round_trips_exactly(
    api_store: BaseStore, owner_client: APIClient, owner: Any
) -> None:
    created = owner_client.post(
        BASE, {"conversation_id": "c", "messages": TURNS[:3]}, format="json"
    )
    assert created.status_code == 201
    assert created.json()["messages"] == TURNS[:3]
    appended = owner_client.post(f"{BASE}c/messages/", {"messages": TURNS[3:]}, format="json")
    assert appended.status_code == 201 and appended.json()["message_count"] == len(TURNS)

    assert owner_client.get(f"{BASE}c/").json()["messages"] == TURNS
    assert owner_client.get(f"{BASE}c/?last=3").json()["messages"] == TURNS[-3:]
    assert owner_client.get(f"{BASE}c/messages/?offset=2&limit=3").json()["results"] == TURNS[2:5]
    # Plain text messages keep their short shape: no null name/tool_calls/tool_call_id.
    assert set(owner_client.get(f"{BASE}c/").json()["messages"][0]) == {
        "id",
        "role",
        "content",
        "timestamp",
        "metadata",
    }
    assert owner_client.post(f"{BASE}c/pop/", {"count": 4}, format="json").json() == {
        "messages": TURNS[3:]
    }
    saved = owner_client.put(f"{BASE}c/", {"messages": TURNS[::-1]}, format="json")
    assert saved.json()["messages"] == TURNS[::-1]
    stored = api_store.load("c")
    assert stored is not None and [m.to_dict() for m in stored.messages] == TURNS[::-1]


def test_a_single_message_object_with_parts_can_be_appended(
    api_store: BaseStore, owner_client: APIClient
) -> None:
    response = owner_client.post(f"{BASE}new/messages/", TURNS[2], format="json")
    assert response.status_code == 201
    assert owner_client.get(f"{BASE}new/").json()["messages"] == [TURNS[2]]


@pytest.mark.parametrize(
    ("message", "errors"),
    [
        (
            {"role": "user", "content": [{"type": ""}]},
            {"content": {"0": {"type": ["must be a non-empty string."]}}},
        ),
        (
            {"role": "user", "content": ["text"]},
            {"content": {"0": ["must be a content part object (with a 'type'), not str."]}},
        ),
        (
            {"role": "assistant", "content": "", "tool_calls": {"id": 1}},
            {"tool_calls": ["must be a list of objects, not dict."]},
        ),
        ({"role": "user", "content": "x", "name": 5}, {"name": ["must be a string, not int."]}),
        (
            {"role": "user", "content": "x", "name": ""},
            {"name": ["must not be empty (leave it out instead)."]},
        ),
    ],
)
def test_bad_shapes_answer_400_naming_the_field(
    api_store: BaseStore, owner_client: APIClient, message: dict[str, Any], errors: Any
) -> None:
    response = owner_client.post(f"{BASE}c/messages/", message, format="json")
    assert response.status_code == 400
    assert response.json() == errors
    assert api_store.list() == []


counter = itertools.count()


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(messages=st.lists(MESSAGE, min_size=1, max_size=6), keep=st.integers(0, 6))
def test_any_valid_messages_round_trip_through_the_json(
    api_store: BaseStore, owner_client: APIClient, messages: list[dict[str, Any]], keep: int
) -> None:
    cid = f"prop-{next(counter)}"
    for i, message in enumerate(messages):
        message["id"] = f"{cid}-{i}"
    # Through the wire: what the client serialises is what it must read back.
    sent = json.loads(json.dumps(messages))

    created = owner_client.post(BASE, {"conversation_id": cid, "messages": sent}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["messages"] == sent
    assert owner_client.get(f"{BASE}{cid}/").json()["messages"] == sent
    window = owner_client.get(f"{BASE}{cid}/messages/").json()["results"]
    assert window == sent

    truncated = owner_client.post(f"{BASE}{cid}/truncate/", {"keep": keep}, format="json")
    assert truncated.json()["message_count"] == min(keep, len(sent))
    popped = owner_client.post(f"{BASE}{cid}/pop/", {"count": 2}, format="json").json()
    assert popped["messages"] == sent[: min(keep, len(sent))][-2:]
    # Re-sending everything (a client retrying) adds back exactly what is missing, in order.
    again = owner_client.post(f"{BASE}{cid}/messages/", {"messages": sent}, format="json")
    assert again.json()["message_count"] == len(sent)
    assert owner_client.get(f"{BASE}{cid}/").json()["messages"] == sent
