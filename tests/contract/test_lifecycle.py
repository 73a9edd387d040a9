"""Contract: delete, clear, list, listing, iteration, put, exists, stats, cleanup, TTL, close."""

from __future__ import annotations

import time

import pytest

from django_convstore import InvalidInputError
from django_convstore.clock import now_ms

from .helpers import HOLDS_EXPIRED, conversation, expired_conversation, msg


def test_delete(store):
    store.save("c", [msg("a")])
    assert store.delete("c") is True
    assert store.delete("c") is False
    assert store.load("c") is None
    assert store.exists("c") is False
    assert "c" not in store.list()


def test_clear_counts_and_only_touches_its_namespace(make_store):
    store = make_store(NAMESPACE="ns-one")
    other = make_store(NAMESPACE="ns-two")
    for cid in ("a", "b", "c"):
        store.save(cid, [msg(cid)])
    other.save("a", [msg("other")])
    assert store.clear() == 3
    assert store.list() == []
    assert store.clear() == 0
    assert [m.content for m in other.load("a").messages] == ["other"]


def test_namespaces_are_isolated(make_store):
    one = make_store(NAMESPACE="iso-one")
    two = make_store(NAMESPACE="iso-two")
    one.save("same-id", [msg("one")])
    assert two.load("same-id") is None
    assert two.exists("same-id") is False
    assert two.list() == []
    assert two.get_stats().total_conversations == 0


def test_list_returns_live_ids_newest_first(store):
    for cid in ("a", "b", "c"):
        store.save(cid, [msg(cid)])
        time.sleep(0.005)
    store.put(expired_conversation("dead"))
    assert store.list() == ["c", "b", "a"]


def test_list_conversations_orders_paginates_and_filters(store):
    base = now_ms()
    for i in range(7):
        owner = "alice" if i % 2 == 0 else "bob"
        store.put(
            conversation(
                f"chat-{i}",
                ["x"] * i,
                updated_at=base - (10 - i) * 1000,
                owner=owner,
                metadata={"i": i},
            )
        )
    store.put(conversation("other-1", ["y"], updated_at=base - 500, owner="alice"))
    store.put(expired_conversation("chat-dead", owner="alice"))

    page = store.list_conversations(limit=3)
    assert page.total == 8
    assert [m.conversation_id for m in page.items] == ["other-1", "chat-6", "chat-5"]
    assert page.items[1].message_count == 6
    assert page.items[1].metadata == {"i": 6}
    assert not hasattr(page.items[0], "messages")

    second = store.list_conversations(limit=3, offset=3)
    assert [m.conversation_id for m in second.items] == ["chat-4", "chat-3", "chat-2"]
    assert store.list_conversations(limit=3, offset=9).items == []

    alice = store.list_conversations(owner="alice")
    assert [m.conversation_id for m in alice.items] == [
        "other-1",
        "chat-6",
        "chat-4",
        "chat-2",
        "chat-0",
    ]
    assert alice.total == 5
    prefixed = store.list_conversations(prefix="chat-")
    assert prefixed.total == 7
    both = store.list_conversations(owner="bob", prefix="chat-", limit=2)
    assert both.total == 3
    assert [m.conversation_id for m in both.items] == ["chat-5", "chat-3"]
    assert store.list_conversations(owner="nobody").total == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"limit": 0}, {"limit": 1001}, {"offset": -1}, {"limit": "5"}, {"owner": 5}, {"prefix": 7}],
)
def test_list_conversations_rejects_bad_arguments(store, kwargs):
    with pytest.raises(InvalidInputError):
        store.list_conversations(**kwargs)


def test_iter_conversations_streams_everything(store, backend_name):
    for i in range(5):
        store.save(f"c{i}", [msg(f"{i}-{j}") for j in range(i)])
    store.put(expired_conversation("dead"))
    seen = {c.conversation_id: c for c in store.iter_conversations(batch_size=2)}
    assert set(seen) == {f"c{i}" for i in range(5)}
    assert [m.content for m in seen["c3"].messages] == ["3-0", "3-1", "3-2"]
    assert seen["c3"].metadata.message_count == 3
    with_expired = {c.conversation_id for c in store.iter_conversations(include_expired=True)}
    if HOLDS_EXPIRED[backend_name]:
        assert "dead" in with_expired
    assert {f"c{i}" for i in range(5)} <= with_expired
    with pytest.raises(InvalidInputError):
        list(store.iter_conversations(batch_size=0))


def test_put_writes_exactly_as_given(store):
    original = conversation(
        "exact",
        ["a", "b", "c"],
        updated_at=now_ms() - 1234,
        created_at=1_600_000_000_000,
        ttl=86_400,
        owner="42",
        metadata={"title": "Trip", "tags": ["x"]},
    )
    store.put(original)
    loaded = store.load("exact")
    assert loaded.to_dict() == original.to_dict()
    store.put(conversation("exact", ["only"], owner="43"))
    replaced = store.load("exact")
    assert [m.content for m in replaced.messages] == ["only"]
    assert replaced.metadata.owner == "43"
    assert replaced.metadata.metadata == {}


def test_put_accepts_dicts_and_checks_message_count(store):
    data = conversation("d", ["a"]).to_dict()
    store.put(data)
    assert store.load("d").to_dict() == data
    data["metadata"]["message_count"] = 5
    with pytest.raises(InvalidInputError) as info:
        store.put(data)
    assert info.value.field == "metadata.message_count"


def test_exists(store):
    assert store.exists("c") is False
    store.save("c", [])
    assert store.exists("c") is True
    store.put(expired_conversation("old"))
    assert store.exists("old") is False


def test_get_stats(store, backend_name):
    store.save("a", [msg("1"), msg("2")])
    store.save("b", [msg("3")])
    store.append("b", [msg("4"), msg("5")])
    store.put(expired_conversation("dead", ["x", "y"]))
    stats = store.get_stats()
    assert stats.total_conversations == 2
    assert stats.total_messages == 5
    if stats.expired_conversations is not None and HOLDS_EXPIRED[backend_name]:
        assert stats.expired_conversations == 1
    if stats.storage_size is not None:
        assert stats.storage_size > 0


def test_cleanup_removes_expired_only(store):
    store.save("live", [msg("a")], ttl=3600)
    store.save("forever", [msg("b")])
    store.put(expired_conversation("dead-1"))
    store.put(expired_conversation("dead-2"))
    assert store.cleanup() == 2
    assert store.load("dead-1", include_expired=True) is None
    assert store.cleanup() == 0
    assert sorted(store.list()) == ["forever", "live"]
    assert store.get_stats().total_conversations == 2


def test_cleanup_after_real_expiry(store):
    store.save("short", [msg("a")], ttl=1)
    store.save("long", [msg("b")], ttl=3600)
    time.sleep(1.2)
    assert store.exists("short") is False
    assert store.load("short") is None
    assert store.cleanup() == 1
    assert store.list() == ["long"]
    assert store.cleanup() == 0


def test_get_ttl(store):
    assert store.get_ttl("missing") == -2
    store.save("never", [])
    assert store.get_ttl("never") == -1
    store.save("hour", [], ttl=3600)
    assert 3598 <= store.get_ttl("hour") <= 3600
    store.put(expired_conversation("dead"))
    assert store.get_ttl("dead") == -2


def test_set_ttl(store):
    assert store.set_ttl("missing", 60) is False
    saved = store.save("c", [msg("a")])
    time.sleep(0.01)
    assert store.set_ttl("c", 120) is True
    assert 118 <= store.get_ttl("c") <= 120
    meta = store.load("c").metadata
    assert meta.ttl == 120
    assert meta.updated_at > saved.metadata.updated_at
    assert meta.expires_at == meta.updated_at + 120_000
    assert store.set_ttl("c", 0) is True
    assert store.get_ttl("c") == -1
    assert store.exists("c")
    assert store.load("c").metadata.ttl is None
    assert [m.content for m in store.load("c").messages] == ["a"]
    store.put(expired_conversation("dead"))
    assert store.set_ttl("dead", 60) is False
    for bad in (-1, "10", None, 1.5, True):
        with pytest.raises(InvalidInputError):
            store.set_ttl("c", bad)


def test_close_is_idempotent_and_store_reopens(store):
    store.save("c", [msg("a")])
    store.close()
    store.close()
    assert [m.content for m in store.load("c").messages] == ["a"]
    store.append("c", [msg("b")])
    assert store.load("c").metadata.message_count == 2
