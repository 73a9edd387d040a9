"""Memory-backend specifics: LRU eviction, size(), sharing across threads, close()."""

from __future__ import annotations

import threading

import pytest

from django_convstore import codec, create_store, is_memory_store
from django_convstore.backends.memory import MemoryStore


@pytest.fixture
def small():
    store = create_store({"type": "memory", "max_conversations": 3})
    yield store
    store.clear()


def _msg(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def test_size_counts_conversations(small):
    assert small.size() == 0
    small.save("a", [_msg("a")])
    small.save("b", [_msg("b")])
    assert small.size() == 2


def test_least_recently_saved_is_evicted(small):
    for cid in ("a", "b", "c", "d"):
        small.save(cid, [_msg(cid)])
    assert small.size() == 3
    assert small.exists("a") is False
    assert sorted(small.list()) == ["b", "c", "d"]


@pytest.mark.parametrize("touch", ["load", "exists", "append", "save"])
def test_access_marks_as_recently_used(small, touch):
    for cid in ("a", "b", "c"):
        small.save(cid, [_msg(cid)])
    if touch == "load":
        small.load("a")
    elif touch == "exists":
        small.exists("a")
    elif touch == "append":
        small.append("a", [_msg("more")])
    else:
        small.save("a", [_msg("again")])
    small.save("d", [_msg("d")])
    assert small.exists("a") is True
    assert small.load("b") is None


def test_eviction_after_append_creates_a_conversation(small):
    for cid in ("a", "b", "c"):
        small.save(cid, [_msg(cid)])
    small.append("new", [_msg("x")])
    assert small.size() == 3
    assert small.load("a") is None
    assert small.exists("new")


def test_close_keeps_data(small):
    small.save("a", [_msg("a")])
    small.close()
    assert small.exists("a")


def test_each_create_store_gets_its_own_data():
    one = create_store({"type": "memory"})
    two = create_store({"type": "memory"})
    one.save("a", [_msg("a")])
    assert two.exists("a") is False


def test_same_location_shares_data():
    config = {"BACKEND": "django_convstore.backends.memory.MemoryStore", "LOCATION": "shared-x"}
    one = create_store(config)
    two = create_store(config)
    try:
        one.save("a", [_msg("a")])
        assert two.exists("a")
        other_namespace = create_store({**config, "NAMESPACE": "other"})
        assert other_namespace.exists("a") is False
    finally:
        one.clear()


def test_threads_share_one_store_per_alias(settings):
    from django_convstore import stores

    settings.CONVSTORE = {"default": {"BACKEND": "django_convstore.backends.memory.MemoryStore"}}
    stores["default"].save("from-main", [_msg("a")])
    seen: dict[str, object] = {}

    def worker() -> None:
        instance = stores["default"]
        seen["instance"] = instance
        seen["exists"] = instance.exists("from-main")
        instance.save("from-thread", [_msg("b")])

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen["instance"] is not stores["default"]
    assert seen["exists"] is True
    assert stores["default"].exists("from-thread")
    stores["default"].clear()


def test_max_conversations_option_validated():
    with pytest.raises(Exception, match=r"MAX_CONVERSATIONS"):
        MemoryStore("", {"OPTIONS": {"MAX_CONVERSATIONS": 0}}, alias="x")


def test_type_guard():
    assert is_memory_store(create_store({"type": "memory"}))
    assert not is_memory_store(object())


def test_stats_report_expired_and_size(small):
    small.save("a", [_msg("hello")])
    stats = small.get_stats()
    assert stats.expired_conversations == 0
    assert stats.storage_size >= 5


def _stored_bytes(store) -> int:
    """What the memory store counts: its encoded messages plus non-empty custom metadata."""
    total = 0
    for cid in store.list():
        conversation = store.load(cid)
        total += sum(len(codec.encode_message(m)) for m in conversation.messages)
        if conversation.metadata.metadata:
            total += len(codec.encode(conversation.metadata.metadata))
    return total


def test_storage_size_follows_every_write(small):
    small.save("a", [_msg("héllo")], metadata={"k": "v"})
    small.append("a", [_msg("1234")])
    small.append("b", [_msg("xy")])
    assert small.get_stats().storage_size == _stored_bytes(small) > 0
    small.save("a", [_msg("z")])
    assert small.get_stats().storage_size == _stored_bytes(small)
    small.delete("b")
    small.save("c", [_msg("abc")])
    small.save("d", [_msg("abcd")])
    small.save("e", [_msg("abcde")])  # evicts "a" (max 3)
    assert small.list() == ["e", "d", "c"]
    assert small.get_stats().storage_size == _stored_bytes(small)
    small.pop("e")
    small.truncate("d", 0)
    assert small.get_stats().storage_size == _stored_bytes(small)
    small.clear()
    assert small.get_stats().storage_size == 0
