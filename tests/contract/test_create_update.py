"""Contract: ``create`` (create-if-absent) and ``update_metadata`` are atomic on every backend."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from django_convstore.clock import now_ms
from django_convstore.exceptions import InvalidInputError

from .helpers import HOLDS_EXPIRED, conversation, expired_conversation, msg


def run_threads(count: int, target: Callable[[int], None]) -> None:
    """Run ``target(i)`` in ``count`` threads released together; re-raise the first error."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def body(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            target(index)
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def snapshot(store: Any, cid: str) -> tuple[Any, ...] | None:
    """Everything a reader can see of a conversation, expired ones included."""
    loaded = store.load(cid, include_expired=True)
    if loaded is None:
        return None
    return (loaded.metadata.to_dict(), [m.to_dict() for m in loaded.messages])


# -- create -------------------------------------------------------------------------------


def test_create_a_missing_conversation(store):
    before = now_ms()
    created = store.create(
        "c", [msg("a", id="m1"), msg("b", "assistant", id="m2")], metadata={"k": 1}, owner="o"
    )
    assert created is not None
    meta = created.metadata
    assert created.conversation_id == "c"
    assert [m.id for m in created.messages] == ["m1", "m2"]
    assert before <= meta.created_at == meta.updated_at <= now_ms()
    assert meta.message_count == 2
    assert meta.ttl is None and meta.owner == "o" and meta.metadata == {"k": 1}
    loaded = store.load("c")
    assert loaded.to_dict() == created.to_dict()
    assert store.list_conversations(owner="o").total == 1
    assert store.get_stats().total_messages == 2


def test_create_without_messages(store):
    created = store.create("empty", [])
    assert created is not None and created.messages == []
    assert created.metadata.message_count == 0 and created.metadata.metadata == {}
    assert store.exists("empty")
    assert store.create("empty", [msg("late")]) is None
    assert store.load("empty").messages == []


def test_create_ttl_defaults_like_save(make_store):
    store = make_store(TTL=60)
    assert store.create("default", [msg("a")]).metadata.ttl == 60
    assert 58 <= store.get_ttl("default") <= 60
    assert store.create("never", [msg("a")], ttl=0).metadata.ttl is None
    assert store.get_ttl("never") == -1
    own = store.create("own", [msg("a")], ttl=30)
    assert own.metadata.ttl == 30
    assert own.metadata.expires_at == own.metadata.updated_at + 30_000


def test_create_answers_none_and_writes_nothing_when_a_live_one_exists(store):
    store.save("c", [msg("original", id="o1")], metadata={"a": 1}, owner="first", ttl=600)
    store.append("c", [msg("more", id="o2")])
    before = snapshot(store, "c")
    stats = store.get_stats()
    time.sleep(0.01)

    assert store.create("c", [msg("intruder")], metadata={"a": 2, "b": 3}, owner="x") is None
    assert store.create("c", [], ttl=0) is None

    assert snapshot(store, "c") == before
    assert store.get_stats() == stats
    assert store.list_conversations(owner="x").total == 0
    assert store.list_conversations(owner="first").total == 1


def test_create_replaces_an_expired_conversation(store, backend_name):
    store.put(expired_conversation("c", ["old 1", "old 2"], owner="old", metadata={"stale": 1}))
    assert store.exists("c") is False

    created = store.create("c", [msg("new", id="n1")], metadata={"fresh": 1})

    assert created is not None
    assert created.metadata.created_at == created.metadata.updated_at >= now_ms() - 5000
    loaded = store.load("c")
    assert [m.id for m in loaded.messages] == ["n1"]
    assert loaded.metadata.metadata == {"fresh": 1}
    assert loaded.metadata.owner is None
    assert loaded.metadata.message_count == 1
    assert store.list_conversations(owner="old").total == 0
    stats = store.get_stats()
    assert stats.total_conversations == 1 and stats.total_messages == 1
    if stats.expired_conversations is not None:
        assert stats.expired_conversations == 0
    assert store.list() == ["c"]
    assert [c.conversation_id for c in store.iter_conversations(include_expired=True)] == ["c"]


def test_create_rejects_bad_input_and_writes_nothing(store, backend_name):
    store.put(expired_conversation("dead"))
    dead = snapshot(store, "dead")
    bad_calls: list[tuple[Any, list[Any], dict[str, Any]]] = [
        ("", [msg("a")], {}),
        ("x" * 256, [msg("a")], {}),
        (42, [msg("a")], {}),
        ("new", [msg("a"), {"role": "robot", "content": "b"}], {}),
        ("new", [msg("a")], {"ttl": -1}),
        ("new", [msg("a")], {"ttl": "10"}),
        ("new", [msg("a")], {"metadata": {"x": math.nan}}),
        ("new", [msg("a")], {"metadata": {1: "non-string key"}}),
        ("new", [msg("a")], {"metadata": ["not", "a", "dict"]}),
        ("new", [msg("a")], {"owner": ""}),
        ("dead", [msg("a")], {"ttl": 1.5}),
    ]
    for cid, messages, kwargs in bad_calls:
        with pytest.raises(InvalidInputError):
            store.create(cid, messages, **kwargs)
    assert store.exists("new") is False
    assert snapshot(store, "dead") == dead
    assert store.list() == []
    if HOLDS_EXPIRED[backend_name]:
        assert dead is not None


def test_created_conversation_behaves_like_a_saved_one(store):
    store.create("c", [msg("a")], metadata={"k": "v"}, owner="o", ttl=120)
    store.append("c", [msg("b")])
    saved = store.save("c", [msg("replaced")], metadata={"k2": 1})
    assert saved.metadata.metadata == {"k": "v", "k2": 1}
    assert saved.metadata.owner == "o"
    assert [m.content for m in store.load("c").messages] == ["replaced"]
    assert store.delete("c") is True
    assert store.create("c", [msg("again")]) is not None
    assert [m.content for m in store.load("c").messages] == ["again"]


# -- update_metadata ----------------------------------------------------------------------


def test_update_metadata_merges_and_counts_as_an_update(store):
    saved = store.save("c", [msg("a", id="m1"), msg("b", id="m2")], metadata={"a": 1, "b": 1})
    store.set_ttl("c", 300)
    store.save("other", [msg("x")], owner="o")
    before = store.load("c").metadata
    time.sleep(0.01)

    updated = store.update_metadata("c", {"b": 2, "c": {"nested": [1, 2]}})

    assert updated is not None
    assert updated.metadata == {"a": 1, "b": 2, "c": {"nested": [1, 2]}}
    assert updated.updated_at > before.updated_at
    assert updated.created_at == saved.metadata.created_at
    assert updated.message_count == 2 and updated.ttl == 300 and updated.owner is None
    loaded = store.load("c")
    assert loaded.metadata.to_dict() == updated.to_dict()
    assert [m.id for m in loaded.messages] == ["m1", "m2"]
    assert loaded.metadata.expires_at == updated.updated_at + 300_000
    assert 298 <= store.get_ttl("c") <= 300
    assert store.list() == ["c", "other"]  # the update moved it to the front
    assert store.list_conversations().items[0].metadata == updated.metadata


def test_update_metadata_replace(store):
    store.save("c", [msg("a")], metadata={"a": 1, "b": 2}, owner="o")
    replaced = store.update_metadata("c", {"z": True}, replace=True)
    assert replaced.metadata == {"z": True}
    assert store.load("c").metadata.metadata == {"z": True}
    emptied = store.update_metadata("c", {}, replace=True)
    assert emptied.metadata == {}
    assert store.load("c").metadata.metadata == {}
    assert store.load("c").metadata.owner == "o"
    assert store.list_conversations(owner="o").total == 1


def test_update_metadata_with_nothing_to_merge_still_touches(store):
    saved = store.save("c", [msg("a")], metadata={"k": 1}, ttl=60)
    time.sleep(0.01)
    touched = store.update_metadata("c", {})
    assert touched.metadata == {"k": 1}
    assert touched.updated_at > saved.metadata.updated_at


def test_update_metadata_of_missing_or_expired_conversations(store, backend_name):
    assert store.update_metadata("missing", {"a": 1}) is None
    assert store.exists("missing") is False
    store.put(expired_conversation("dead", metadata={"old": 1}))
    dead = snapshot(store, "dead")
    assert store.update_metadata("dead", {"a": 1}) is None
    assert store.update_metadata("dead", {"a": 1}, replace=True) is None
    assert store.exists("dead") is False
    assert snapshot(store, "dead") == dead
    if HOLDS_EXPIRED[backend_name]:
        assert dead is not None and dead[0]["metadata"] == {"old": 1}


def test_update_metadata_rejects_bad_input_and_changes_nothing(store):
    store.save("c", [msg("a")], metadata={"k": 1})
    before = snapshot(store, "c")
    for cid, metadata in [
        ("c", None),
        ("c", ["not", "a", "dict"]),
        ("c", {1: "non-string key"}),
        ("c", {"x": math.inf}),
        ("c", {"x": object()}),
        ("", {"a": 1}),
        (None, {"a": 1}),
    ]:
        with pytest.raises(InvalidInputError):
            store.update_metadata(cid, metadata)
    assert snapshot(store, "c") == before


def test_update_metadata_keeps_storage_size_consistent(make_store):
    direct, updated = make_store(), make_store()
    messages = [msg("some content", id="m1")]
    direct.save("c", messages, metadata={"a": "x" * 50, "b": 1})
    updated.save("c", messages, metadata={"a": "short", "gone": "y" * 80})
    updated.update_metadata("c", {"a": "x" * 50, "b": 1}, replace=True)
    assert updated.get_stats().storage_size == direct.get_stats().storage_size
    updated.update_metadata("c", {"c": [1, 2, 3]})
    direct.update_metadata("c", {"c": [1, 2, 3]})
    assert updated.get_stats() == direct.get_stats()


def test_update_metadata_after_put_with_an_old_timestamp(store):
    store.put(conversation("c", ["a", "b"], updated_at=now_ms() - 30_000, ttl=60))
    assert 25 <= store.get_ttl("c") <= 30
    updated = store.update_metadata("c", {"k": 1})
    assert updated.expires_at == updated.updated_at + 60_000
    assert 58 <= store.get_ttl("c") <= 60
    assert [m.content for m in store.load("c").messages] == ["a", "b"]


# -- concurrency --------------------------------------------------------------------------

CREATORS = 6
ROUNDS = 3


def test_threads_creating_one_id_exactly_one_wins(store):
    for round_ in range(ROUNDS):
        cid = f"race-{round_}"
        results: dict[int, Any] = {}

        def creator(worker: int, cid: str = cid, results: dict[int, Any] = results) -> None:
            results[worker] = store.create(
                cid,
                [msg(f"{worker}:{i}", id=f"w{worker}-{i}") for i in range(3)],
                metadata={"worker": worker},
                owner=f"owner{worker}",
            )

        run_threads(CREATORS, creator)
        winners = [worker for worker, result in results.items() if result is not None]
        assert len(winners) == 1, f"round {round_}: winners {winners}"
        winner = winners[0]
        loaded = store.load(cid)
        assert loaded.to_dict() == results[winner].to_dict()
        assert [m.id for m in loaded.messages] == [f"w{winner}-{i}" for i in range(3)]
        assert loaded.metadata.metadata == {"worker": winner}
        assert loaded.metadata.owner == f"owner{winner}"
    stats = store.get_stats()
    assert stats.total_conversations == ROUNDS and stats.total_messages == 3 * ROUNDS


def test_threads_creating_over_an_expired_conversation_exactly_one_wins(store):
    store.put(expired_conversation("race", ["old"]))
    results: dict[int, Any] = {}

    def creator(worker: int) -> None:
        results[worker] = store.create("race", [msg(str(worker), id=f"w{worker}")])

    run_threads(CREATORS, creator)
    winners = [worker for worker, result in results.items() if result is not None]
    assert len(winners) == 1
    loaded = store.load("race")
    assert [m.id for m in loaded.messages] == [f"w{winners[0]}"]
    assert store.get_stats().total_messages == 1


APPENDERS = 4
APPENDS = 15
UPDATERS = 3
UPDATES = 8


def test_metadata_updates_never_lose_concurrent_appends(store):
    store.create("c", [msg("first", id="first")], metadata={"initial": True})

    def worker(index: int) -> None:
        if index < APPENDERS:
            for i in range(APPENDS):
                store.append("c", [msg(f"{index}:{i}", id=f"a{index}-{i}")])
        else:
            updater = index - APPENDERS
            for i in range(UPDATES):
                result = store.update_metadata("c", {f"u{updater}-{i}": i, "last": updater})
                assert result is not None and result.metadata[f"u{updater}-{i}"] == i

    run_threads(APPENDERS + UPDATERS, worker)

    loaded = store.load("c")
    ids = [m.id for m in loaded.messages]
    assert len(ids) == len(set(ids)) == 1 + APPENDERS * APPENDS
    assert loaded.metadata.message_count == 1 + APPENDERS * APPENDS
    for index in range(APPENDERS):
        own = [m.id for m in loaded.messages if m.id.startswith(f"a{index}-")]
        assert own == [f"a{index}-{i}" for i in range(APPENDS)]
    expected = {f"u{u}-{i}": i for u in range(UPDATERS) for i in range(UPDATES)}
    metadata = loaded.metadata.metadata
    assert metadata.pop("last") in range(UPDATERS)
    assert metadata == {"initial": True, **expected}
    assert store.get_stats().total_messages == 1 + APPENDERS * APPENDS


# -- async twins --------------------------------------------------------------------------


def test_async_create_and_update_metadata(store):
    async def scenario() -> None:
        created = await store.acreate("a", [msg("1")], ttl=600, metadata={"k": 1}, owner="o")
        assert created is not None and created.metadata.ttl == 600
        assert await store.acreate("a", [msg("2")]) is None
        updated = await store.aupdate_metadata("a", {"j": 2})
        assert updated is not None and updated.metadata == {"k": 1, "j": 2}
        replaced = await store.aupdate_metadata("a", {"only": 3}, replace=True)
        assert replaced is not None and replaced.metadata == {"only": 3}
        assert await store.aupdate_metadata("missing", {"x": 1}) is None
        results = await asyncio.gather(*(store.acreate("b", [msg(str(i))]) for i in range(5)))
        assert sum(result is not None for result in results) == 1
        with pytest.raises(InvalidInputError):
            await store.acreate("", [])
        with pytest.raises(InvalidInputError):
            await store.aupdate_metadata("a", {"x": math.nan})

    asyncio.run(scenario())
    assert [m.content for m in store.load("a").messages] == ["1"]
    assert store.load("a").metadata.metadata == {"only": 3}
