"""Contract: messages as AI apps write them (content parts, tool calls, names), every backend."""

from __future__ import annotations

import pytest

from django_convstore.types import Message

from .helpers import conversation, msg

TOOL_CALLS = [
    {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "c"}'},
    },
    {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": "{}"}},
]
PARTS = [
    {"type": "text", "text": "What is in this picture?"},
    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
    {"type": "file", "file": {"file_id": "f-1", "filename": "a.pdf"}, "extra": [1, None, 2.5]},
]
TRANSCRIPT = [
    {"id": "s", "role": "system", "content": "You are terse.", "timestamp": 1},
    {"id": "d", "role": "developer", "content": "Answer in French.", "timestamp": 2},
    {"id": "u", "role": "user", "content": PARTS, "timestamp": 3, "name": "alice"},
    {"id": "a", "role": "assistant", "content": "", "timestamp": 4, "tool_calls": TOOL_CALLS},
    {
        "id": "t1",
        "role": "tool",
        "content": '{"temp": 21}',
        "timestamp": 5,
        "tool_call_id": "call_1",
        "name": "get_weather",
    },
    {"id": "f", "role": "function", "content": "12:00", "timestamp": 6, "name": "now"},
    {
        "id": "a2",
        "role": "assistant",
        "content": [{"type": "text", "text": "Il fait 21 °C à Paris."}],
        "timestamp": 7,
        "metadata": {"model": "gpt-x", "usage": {"in": 10, "out": 5}},
    },
]


def expected(messages: list[dict]) -> list[dict]:
    """``to_dict()`` shapes: metadata always present, optional fields only when set."""
    return [{"metadata": {}, **m} for m in messages]


def dicts(messages: list[Message]) -> list[dict]:
    return [m.to_dict() for m in messages]


def test_every_field_round_trips_through_save_and_load(store):
    saved = store.save("c", TRANSCRIPT)
    assert dicts(saved.messages) == expected(TRANSCRIPT)
    assert dicts(store.load("c").messages) == expected(TRANSCRIPT)
    assert dicts(store.load("c", last=3).messages) == expected(TRANSCRIPT[-3:])


def test_every_field_round_trips_through_append(store):
    for message in TRANSCRIPT:
        store.append("c", [message])
    assert dicts(store.load("c").messages) == expected(TRANSCRIPT)
    assert store.load("c").metadata.message_count == len(TRANSCRIPT)


def test_every_field_round_trips_through_put_and_iter(store):
    base = conversation("c", [])
    base.messages = [Message(**m) for m in TRANSCRIPT]
    base.metadata.message_count = len(TRANSCRIPT)
    store.put(base)
    (streamed,) = list(store.iter_conversations())
    assert dicts(streamed.messages) == expected(TRANSCRIPT)
    assert streamed.to_dict() == store.load("c").to_dict()


def test_message_objects_are_accepted_and_equal_their_dicts(store):
    objects = [Message(**m) for m in TRANSCRIPT]
    store.save("c", objects)
    assert store.load("c").messages == objects


def test_plain_text_messages_keep_their_short_shape(store):
    store.save("c", [msg("hi", id="m1", timestamp=5)])
    (message,) = store.load("c").messages
    assert message.to_dict() == {
        "id": "m1",
        "role": "user",
        "content": "hi",
        "timestamp": 5,
        "metadata": {},
    }
    assert message.name is None and message.tool_calls is None and message.tool_call_id is None


def test_stored_parts_and_tool_calls_are_isolated_from_callers(store):
    parts = [{"type": "text", "text": "a", "nested": {"k": [1]}}]
    calls = [{"id": "x", "function": {"arguments": "{}"}}]
    store.save("c", [{"role": "user", "content": parts, "tool_calls": calls, "id": "m"}])
    parts[0]["nested"]["k"].append(2)
    calls[0]["function"]["arguments"] = "changed"
    loaded = store.load("c")
    assert loaded.messages[0].content == [{"type": "text", "text": "a", "nested": {"k": [1]}}]
    assert loaded.messages[0].tool_calls == [{"id": "x", "function": {"arguments": "{}"}}]
    loaded.messages[0].content[0]["text"] = "mutated"
    loaded.messages[0].tool_calls.append({"id": "y"})
    again = store.load("c").messages[0]
    assert again.content[0]["text"] == "a"
    assert again.tool_calls == [{"id": "x", "function": {"arguments": "{}"}}]


def test_text_helper_joins_text_parts(store):
    store.save("c", [{"role": "user", "content": PARTS, "id": "u"}, msg("plain", id="p")])
    first, second = store.load("c").messages
    assert first.text() == "What is in this picture?"
    assert second.text() == "plain"


@pytest.mark.parametrize("role", ["function", "developer"])
def test_new_default_roles(store, role):
    store.append("c", [{"role": role, "content": "x"}])
    assert store.load("c").messages[0].role == role


def test_unicode_and_big_numbers_in_parts_round_trip(store):
    part = {"type": "text", "text": "héllo 🌍 \u200b", "n": 2**53 - 1, "f": -0.5, "b": False}
    store.save("c", [{"role": "user", "content": [part], "id": "m"}])
    assert store.load("c").messages[0].content == [part]
