"""Contract: message ids are unique per conversation and appends are idempotent."""

from __future__ import annotations

import threading
import time

import pytest

from django_convstore.exceptions import InvalidInputError

from .helpers import conversation, msg


def ids(store, cid="c"):
    return [m.id for m in store.load(cid).messages]


def test_append_skips_ids_already_present(store):
    store.save("c", [msg("a", id="1"), msg("b", id="2")])
    meta = store.append("c", [msg("b again", id="2"), msg("c", id="3")])
    assert meta.message_count == 3
    loaded = store.load("c")
    assert [m.content for m in loaded.messages] == ["a", "b", "c"]
    assert loaded.metadata.message_count == 3


def test_retried_append_changes_nothing(store):
    store.save("c", [msg("a", id="1")], ttl=1000)
    first = store.append("c", [msg("b", id="2")])
    time.sleep(0.01)
    retry = store.append("c", [msg("b", id="2")])
    assert retry.message_count == 2
    assert retry.updated_at == first.updated_at
    assert retry.expires_at == first.expires_at
    assert ids(store) == ["1", "2"]


def test_append_of_new_conversation_stores_each_id_once(store):
    meta = store.append("new", [msg("a", id="x")])
    assert meta.message_count == 1
    assert store.append("new", [msg("a", id="x")]).message_count == 1


def test_duplicate_ids_inside_one_batch_are_invalid_and_write_nothing(store):
    store.save("c", [msg("a", id="1")])
    snapshot = store.load("c").to_dict()
    calls = [
        lambda: store.append("c", [msg("x", id="d"), msg("y", id="d")]),
        lambda: store.save("c", [msg("x", id="d"), msg("y", id="d")]),
        lambda: store.create("other", [msg("x", id="d"), msg("y", id="d")]),
    ]
    for call in calls:
        with pytest.raises(InvalidInputError) as info:
            call()
        assert info.value.field == "messages.1.id"
        assert "duplicates the id of messages.0" in str(info.value)
    bad = conversation("other", ["x", "y"])
    bad.messages[1].id = bad.messages[0].id
    with pytest.raises(InvalidInputError):
        store.put(bad)
    assert store.load("c").to_dict() == snapshot
    assert store.list() == ["c"]


def test_generated_ids_are_distinct(store):
    store.append("c", [msg(str(i)) for i in range(200)])
    store.append("c", [msg(str(i)) for i in range(200)])
    assert len(set(ids(store))) == 400


def test_save_replaces_ids_so_old_ids_can_come_back(store):
    store.save("c", [msg("a", id="1"), msg("b", id="2")])
    store.save("c", [msg("c", id="3")])
    store.append("c", [msg("a again", id="1")])
    assert ids(store) == ["3", "1"]


def test_removed_ids_can_be_appended_again(store):
    store.save("c", [msg(str(i), id=str(i)) for i in range(6)])
    store.pop("c", 2)
    store.append("c", [msg("4b", id="4")])
    store.truncate("c", 2)
    store.append("c", [msg("2b", id="2"), msg("3b", id="3"), msg("1b", id="1")])
    assert ids(store) == ["0", "1", "2", "3"]
    assert [m.content for m in store.load("c").messages] == ["0", "1", "2b", "3b"]


def test_expired_conversation_forgets_its_ids(store):
    store.put(conversation("c", ["old"], updated_at=100_000, ttl=1))
    meta = store.append("c", [msg("new", id="c-m0")])
    assert meta.message_count == 1
    assert [m.content for m in store.load("c").messages] == ["new"]


ROUNDS = 40
THREADS = 4


@pytest.mark.slow
def test_threads_retrying_the_same_ids_store_each_once(store):
    """Every id is sent by two threads at the same moment; each is stored exactly once."""
    violations = 0
    for round_ in range(ROUNDS):
        cid = f"race-{round_}"
        barrier = threading.Barrier(THREADS)
        errors: list[BaseException] = []

        def writer(
            worker: int,
            cid: str = cid,
            barrier: threading.Barrier = barrier,
            errors: list[BaseException] = errors,
        ) -> None:
            pair = worker // 2
            try:
                barrier.wait()
                store.append(cid, [msg(f"p{pair}", id=f"id-{pair}-{k}") for k in range(2)])
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        loaded = store.load(cid)
        stored = [m.id for m in loaded.messages]
        if (
            len(stored) != len(set(stored))
            or sorted(stored)
            != sorted(f"id-{p}-{k}" for p in range(THREADS // 2) for k in range(2))
            or loaded.metadata.message_count != len(stored)
        ):
            violations += 1
    assert violations == 0
