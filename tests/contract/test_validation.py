"""Contract: bad input raises InvalidInputError naming the field, and writes nothing."""

from __future__ import annotations

import math

import pytest
from django.test import override_settings

from django_convstore import InvalidInputError

from .helpers import msg

BAD_IDS = [
    ("", "conversation_id"),
    ("x" * 256, "conversation_id"),
    (5, "conversation_id"),
    (None, "conversation_id"),
    ("line\nbreak", "conversation_id"),
    ("nul\x00", "conversation_id"),
]

BAD_MESSAGES = [
    ({"role": "wizard", "content": "x"}, "messages.1.role"),
    ({"content": "x"}, "messages.1.role"),
    ({"role": "user", "content": 5}, "messages.1.content"),
    ({"role": "user"}, "messages.1.content"),
    ({"role": "user", "content": "x", "id": ""}, "messages.1.id"),
    ({"role": "user", "content": "x", "id": 7}, "messages.1.id"),
    ({"role": "user", "content": "x", "id": "a" * 256}, "messages.1.id"),
    ({"role": "user", "content": "x", "timestamp": -1}, "messages.1.timestamp"),
    ({"role": "user", "content": "x", "timestamp": True}, "messages.1.timestamp"),
    ({"role": "user", "content": "x", "timestamp": 1.5}, "messages.1.timestamp"),
    ({"role": "user", "content": "x", "timestamp": "2024-01-01"}, "messages.1.timestamp"),
    ({"role": "user", "content": "x", "metadata": []}, "messages.1.metadata"),
    ({"role": "user", "content": "x", "metadata": {1: "a"}}, "messages.1.metadata"),
    ({"role": "user", "content": "x", "metadata": {"a": {2: "b"}}}, "messages.1.metadata.a"),
    ({"role": "user", "content": "x", "metadata": {"n": math.nan}}, "messages.1.metadata.n"),
    ({"role": "user", "content": "x", "metadata": {"o": object()}}, "messages.1.metadata.o"),
    ({"role": "user", "content": "x", "nickname": "bob"}, "messages.1"),
    ({"role": "user", "content": "x", "toolCalls": []}, "messages.1"),
    ({"role": "user", "content": [{"text": "no type"}]}, "messages.1.content.0.type"),
    ({"role": "user", "content": [{"type": ""}]}, "messages.1.content.0.type"),
    ({"role": "user", "content": ["text"]}, "messages.1.content.0"),
    ({"role": "user", "content": {"type": "text", "text": "x"}}, "messages.1.content"),
    ({"role": "user", "content": [{"type": "x", "v": math.inf}]}, "messages.1.content.0.v"),
    ({"role": "user", "content": "x", "name": ""}, "messages.1.name"),
    ({"role": "user", "content": "x", "name": 3}, "messages.1.name"),
    ({"role": "tool", "content": "x", "tool_call_id": ""}, "messages.1.tool_call_id"),
    ({"role": "assistant", "content": "", "tool_calls": {"id": "c"}}, "messages.1.tool_calls"),
    ({"role": "assistant", "content": "", "tool_calls": ["c"]}, "messages.1.tool_calls.0"),
    (
        {"role": "assistant", "content": "", "tool_calls": [{"a": {1: 2}}]},
        "messages.1.tool_calls.0.a",
    ),
    ({"role": "user", "content": "x", "id": "original"}, "messages.1.id"),
    ("just a string", "messages.1"),
]


@pytest.fixture
def seeded(store):
    store.save("keep", [msg("original")], metadata={"k": 1}, owner="u1", ttl=3600)
    return store, store.load("keep").to_dict()


def _unchanged(store, snapshot):
    assert store.load("keep").to_dict() == snapshot
    assert store.list() == ["keep"]


@pytest.mark.parametrize(("bad_id", "field"), BAD_IDS)
def test_bad_conversation_ids(seeded, bad_id, field):
    store, snapshot = seeded
    for call in (
        lambda: store.save(bad_id, [msg("x")]),
        lambda: store.append(bad_id, [msg("x")]),
        lambda: store.load(bad_id),
        lambda: store.delete(bad_id),
        lambda: store.exists(bad_id),
        lambda: store.get_ttl(bad_id),
        lambda: store.set_ttl(bad_id, 5),
    ):
        with pytest.raises(InvalidInputError) as info:
            call()
        assert info.value.field == field
    _unchanged(store, snapshot)


@pytest.mark.parametrize(("bad_message", "field"), BAD_MESSAGES)
def test_bad_messages_write_nothing(seeded, bad_message, field):
    store, snapshot = seeded
    batch = [msg("valid", id="original"), bad_message]
    with pytest.raises(InvalidInputError) as info:
        store.append("keep", batch)
    assert info.value.field == field
    assert isinstance(info.value, ValueError)
    with pytest.raises(InvalidInputError):
        store.save("keep", batch)
    with pytest.raises(InvalidInputError):
        store.append("new-one", batch)
    assert store.exists("new-one") is False
    _unchanged(store, snapshot)


@pytest.mark.parametrize("not_a_list", ["abc", {"role": "user", "content": "x"}, 5, None])
def test_messages_must_be_a_list(seeded, not_a_list):
    store, snapshot = seeded
    with pytest.raises(InvalidInputError) as info:
        store.save("keep", not_a_list)
    assert info.value.field == "messages"
    _unchanged(store, snapshot)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ttl": -1}, "ttl"),
        ({"ttl": "60"}, "ttl"),
        ({"ttl": True}, "ttl"),
        ({"ttl": 1.5}, "ttl"),
        ({"metadata": "x"}, "metadata"),
        ({"metadata": {"a": math.inf}}, "metadata.a"),
        ({"metadata": {3: 1}}, "metadata"),
        ({"owner": 12}, "owner"),
        ({"owner": ""}, "owner"),
    ],
)
def test_bad_save_options(seeded, kwargs, field):
    store, snapshot = seeded
    with pytest.raises(InvalidInputError) as info:
        store.save("keep", [msg("new")], **kwargs)
    assert info.value.field == field
    _unchanged(store, snapshot)


def test_batch_limit(seeded):
    store, _snapshot = seeded
    with override_settings(CONVSTORE_MAX_BATCH=3):
        store.append("keep", [msg(str(i)) for i in range(3)])
        with pytest.raises(InvalidInputError) as info:
            store.append("keep", [msg(str(i)) for i in range(4)])
        assert info.value.field == "messages"
        assert "at most 3" in str(info.value)
    assert store.load("keep").metadata.message_count == 4


def test_custom_roles_setting(store):
    with override_settings(CONVSTORE_ROLES=["human", "bot"]):
        store.save("c", [msg("hi", "human"), msg("hello", "bot")])
        with pytest.raises(InvalidInputError):
            store.append("c", [msg("x", "user")])
    assert store.load("c").metadata.message_count == 2


def test_bad_last_argument(store):
    store.save("c", [msg("a")])
    for bad in (-1, "2", 1.0):
        with pytest.raises(InvalidInputError) as info:
            store.load("c", last=bad)
        assert info.value.field == "last"


def test_error_names_field_in_message(store):
    with pytest.raises(InvalidInputError, match=r"messages\.0\.role: must be one of"):
        store.save("c", [{"role": "robot", "content": "x"}])


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda s: s.save("c", [msg("bad \ud800 surrogate")]), "messages.0.content"),
        (lambda s: s.save("c\udfff", [msg("x")]), "conversation_id"),
        (lambda s: s.save("c", [msg("x", metadata={"k": "\ud800"})]), "messages.0.metadata.k"),
        (lambda s: s.save("c", [msg("x")], metadata={"\udc00": 1}), "metadata"),
        (lambda s: s.save("c", [msg("x", timestamp=2**53)]), "messages.0.timestamp"),
        (lambda s: s.save("c", [msg("x")], ttl=2**31), "ttl"),
        (lambda s: s.set_ttl("keep", 2**40), "ttl"),
        (lambda s: s.list_conversations(prefix="a\x00"), "prefix"),
        (lambda s: s.list_conversations(prefix="p" * 256), "prefix"),
    ],
)
def test_values_no_backend_can_hold_are_rejected(seeded, call, field):
    store, snapshot = seeded
    with pytest.raises(InvalidInputError) as info:
        call(store)
    assert info.value.field == field
    _unchanged(store, snapshot)


def test_largest_allowed_values_round_trip(store):
    store.save("big", [msg("x", timestamp=2**53 - 1)], ttl=2**31 - 1)
    loaded = store.load("big")
    assert loaded.messages[0].timestamp == 2**53 - 1
    assert loaded.metadata.ttl == 2**31 - 1
