"""Contract: save and load (every backend)."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from django_convstore import Message
from django_convstore.clock import now_ms

from .helpers import HOLDS_EXPIRED, expired_conversation, msg


def test_save_returns_the_conversation(store):
    before = now_ms()
    saved = store.save("c1", [msg("Hello"), msg("Hi!", "assistant")])
    assert saved.conversation_id == "c1"
    assert [m.content for m in saved.messages] == ["Hello", "Hi!"]
    assert [m.role for m in saved.messages] == ["user", "assistant"]
    assert all(len(m.id) == 32 for m in saved.messages)
    assert all(before - 5 <= m.timestamp <= now_ms() + 5 for m in saved.messages)
    meta = saved.metadata
    assert meta.conversation_id == "c1"
    assert meta.message_count == 2
    assert meta.created_at == meta.updated_at
    assert before - 5 <= meta.updated_at <= now_ms() + 5
    assert meta.ttl is None
    assert meta.owner is None
    assert meta.metadata == {}
    assert meta.expires_at is None


def test_load_round_trips_every_message_field(store):
    messages = [
        {
            "id": "m-1",
            "role": "system",
            "content": "Be brief.",
            "timestamp": 1,
            "metadata": {"nested": {"list": [1, 2.5, None, True, "x"]}},
        },
        {
            "id": "m/2 ü%",
            "role": "user",
            "content": "Grüße, 世界 👋\n\tand a newline",
            "timestamp": 1_700_000_000_000,
            "metadata": {},
        },
        {"id": "m-3", "role": "tool", "content": "", "timestamp": 2, "metadata": {"k": "v"}},
    ]
    store.save("round-trip", messages)
    loaded = store.load("round-trip")
    assert loaded is not None
    assert [m.to_dict() for m in loaded.messages] == messages


def test_message_objects_and_datetimes_are_accepted(store):
    when = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    store.save(
        "objs",
        [
            Message(role="user", content="a", id="x"),
            {"role": "assistant", "content": "b", "timestamp": when},
        ],
    )
    loaded = store.load("objs")
    assert loaded.messages[0].id == "x"
    assert loaded.messages[1].timestamp == int(when.timestamp() * 1000)


def test_load_missing_returns_none(store):
    assert store.load("nope") is None
    assert store.load("nope", include_expired=True) is None


def test_save_replaces_messages(store):
    store.save("c", [msg("one"), msg("two")])
    store.save("c", [msg("three")])
    loaded = store.load("c")
    assert [m.content for m in loaded.messages] == ["three"]
    assert loaded.metadata.message_count == 1


def test_save_empty_conversation(store):
    saved = store.save("empty", [])
    assert saved.messages == [] and saved.metadata.message_count == 0
    assert store.exists("empty")
    assert store.load("empty").messages == []


def test_save_keeps_created_at_and_moves_updated_at(store):
    first = store.save("c", [msg("a")])
    time.sleep(0.01)
    second = store.save("c", [msg("b")])
    assert second.metadata.created_at == first.metadata.created_at
    assert second.metadata.updated_at > first.metadata.updated_at
    assert store.load("c").metadata.created_at == first.metadata.created_at


def test_save_merges_metadata_and_keeps_owner(store):
    store.save("c", [msg("a")], metadata={"a": 1, "b": 2}, owner="u1")
    saved = store.save("c", [msg("b")], metadata={"b": 3, "c": {"d": 4}})
    assert saved.metadata.metadata == {"a": 1, "b": 3, "c": {"d": 4}}
    assert saved.metadata.owner == "u1"
    loaded = store.load("c")
    assert loaded.metadata.metadata == {"a": 1, "b": 3, "c": {"d": 4}}
    assert loaded.metadata.owner == "u1"
    store.save("c", [msg("c")], owner="u1")
    assert store.load("c").metadata.owner == "u1"


def test_save_uses_default_ttl_and_zero_means_never(make_store):
    store = make_store(TTL=600)
    assert store.save("default", [msg("a")]).metadata.ttl == 600
    assert store.save("custom", [msg("a")], ttl=30).metadata.ttl == 30
    assert store.save("never", [msg("a")], ttl=0).metadata.ttl is None
    assert store.load("default").metadata.ttl == 600
    assert store.load("never").metadata.ttl is None
    assert 598 <= store.get_ttl("default") <= 600
    assert store.get_ttl("never") == -1


def test_save_over_expired_conversation_starts_afresh(store):
    old = expired_conversation("c", metadata={"old": True}, owner="u1")
    store.put(old)
    saved = store.save("c", [msg("new")])
    assert saved.metadata.created_at > old.metadata.created_at
    assert saved.metadata.metadata == {}
    assert saved.metadata.owner is None
    assert [m.content for m in store.load("c").messages] == ["new"]


def test_returned_and_loaded_objects_are_copies(store):
    source = [msg("a", metadata={"k": [1]})]
    saved = store.save("c", source, metadata={"m": {"x": 1}})
    source[0]["content"] = "changed by caller"
    source[0]["metadata"]["k"].append(2)
    saved.messages[0].content = "changed"
    saved.messages.append(Message(role="user", content="extra"))
    saved.metadata.metadata["m"]["x"] = 2
    loaded = store.load("c")
    loaded.messages[0].metadata["k"].append(3)
    loaded.metadata.message_count = 99
    again = store.load("c")
    assert [m.content for m in again.messages] == ["a"]
    assert again.messages[0].metadata == {"k": [1]}
    assert again.metadata.metadata == {"m": {"x": 1}}
    assert again.metadata.message_count == 1


def test_load_last_n(store):
    store.save("c", [msg(str(i)) for i in range(10)])
    window = store.load("c", last=3)
    assert [m.content for m in window.messages] == ["7", "8", "9"]
    assert window.metadata.message_count == 10
    assert store.load("c", last=0).messages == []
    assert len(store.load("c", last=50).messages) == 10


def test_load_expired(store, backend_name):
    store.put(expired_conversation("gone", ["a", "b"]))
    assert store.load("gone") is None
    held = store.load("gone", include_expired=True)
    if HOLDS_EXPIRED[backend_name]:
        assert held is not None
        assert [m.content for m in held.messages] == ["a", "b"]
    else:
        assert held is None


@pytest.mark.parametrize("stored", [1, 2, 5])
def test_last_beyond_the_length_returns_everything(store, stored):
    store.save("c", [msg(str(i), id=f"m{i}") for i in range(stored)])
    for last in (stored, stored + 1, 2 * stored - 1, 2 * stored, 2 * stored + 1, 1000):
        loaded = store.load("c", last=last)
        assert [m.id for m in loaded.messages] == [f"m{i}" for i in range(stored)], last
        assert loaded.metadata.message_count == stored
    store.pop("c")
    loaded = store.load("c", last=stored)
    assert [m.id for m in loaded.messages] == [f"m{i}" for i in range(stored - 1)]
