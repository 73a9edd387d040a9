"""Contract: append (every backend)."""

from __future__ import annotations

import time

from .helpers import expired_conversation, msg


def test_append_creates_missing_conversation_with_default_ttl(make_store):
    store = make_store(TTL=120)
    meta = store.append("new", [msg("a"), msg("b")])
    assert meta.message_count == 2
    assert meta.ttl == 120
    assert meta.created_at == meta.updated_at
    assert 118 <= store.get_ttl("new") <= 120
    assert [m.content for m in store.load("new").messages] == ["a", "b"]


def test_append_adds_in_order_and_counts(store):
    store.save("c", [msg("1")])
    store.append("c", [msg("2")])
    meta = store.append("c", [msg("3"), msg("4", "assistant")])
    assert meta.message_count == 4
    loaded = store.load("c")
    assert [m.content for m in loaded.messages] == ["1", "2", "3", "4"]
    assert loaded.metadata.message_count == 4


def test_append_keeps_created_at_owner_metadata_and_own_ttl(make_store):
    store = make_store(TTL=60)
    saved = store.save("c", [msg("1")], ttl=500, metadata={"k": "v"}, owner="u")
    time.sleep(0.01)
    meta = store.append("c", [msg("2")])
    assert meta.created_at == saved.metadata.created_at
    assert meta.updated_at > saved.metadata.updated_at
    assert meta.ttl == 500
    assert meta.owner == "u"
    assert meta.metadata == {"k": "v"}
    assert store.load("c").metadata.ttl == 500


def test_append_without_timestamp_update_moves_neither_updated_at_nor_expiry(store):
    saved = store.save("c", [msg("1")], ttl=1000)
    time.sleep(0.01)
    meta = store.append("c", [msg("2")], update_timestamp=False)
    assert meta.updated_at == saved.metadata.updated_at
    assert meta.expires_at == saved.metadata.expires_at
    loaded = store.load("c")
    assert loaded.metadata.updated_at == saved.metadata.updated_at
    assert loaded.metadata.message_count == 2


def test_append_with_timestamp_update_slides_expiry(store):
    saved = store.save("c", [msg("1")], ttl=1000)
    time.sleep(0.01)
    meta = store.append("c", [msg("2")])
    assert meta.updated_at > saved.metadata.updated_at
    assert meta.expires_at == meta.updated_at + 1_000_000


def test_append_to_expired_conversation_starts_afresh(store):
    store.put(expired_conversation("c", ["old1", "old2"], owner="u"))
    meta = store.append("c", [msg("new")])
    assert meta.message_count == 1
    assert meta.owner is None
    assert [m.content for m in store.load("c").messages] == ["new"]


def test_append_keeps_message_fields(store):
    store.append(
        "c",
        [
            {
                "id": "fixed",
                "role": "tool",
                "content": "{}",
                "timestamp": 5,
                "metadata": {"tool": "search"},
            }
        ],
    )
    loaded = store.load("c")
    assert loaded.messages[0].to_dict() == {
        "id": "fixed",
        "role": "tool",
        "content": "{}",
        "timestamp": 5,
        "metadata": {"tool": "search"},
    }


def test_many_appends_and_windowed_load(store):
    for i in range(30):
        store.append("long", [msg(f"m{i}")])
    assert store.load("long").metadata.message_count == 30
    assert [m.content for m in store.load("long", last=2).messages] == ["m28", "m29"]


def test_an_empty_append_creates_a_missing_conversation_and_changes_nothing_else(store):
    meta = store.append("new", [])
    assert meta.message_count == 0
    assert store.exists("new")
    store.save("c", [msg("a", id="a")], ttl=1000)
    before = store.load("c").metadata
    time.sleep(0.01)
    assert store.append("c", []) == before
    assert store.load("c").metadata == before
