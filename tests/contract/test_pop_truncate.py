"""Contract: pop and truncate remove messages from the end, atomically, on every backend."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from django_convstore.exceptions import InvalidInputError

from .helpers import expired_conversation, msg


def contents(store, cid="c"):
    return [m.content for m in store.load(cid).messages]


@pytest.fixture
def five(store):
    store.save("c", [msg(str(i), id=f"m{i}") for i in range(5)], ttl=1000)
    return store


def test_pop_removes_and_returns_the_last_message(five):
    saved = five.load("c").metadata
    time.sleep(0.01)
    (popped,) = five.pop("c")
    assert popped.to_dict()["content"] == "4" and popped.id == "m4"
    meta = five.load("c").metadata
    assert meta.message_count == 4
    assert meta.updated_at > saved.updated_at
    assert meta.created_at == saved.created_at
    assert contents(five) == ["0", "1", "2", "3"]


def test_pop_many_returns_oldest_first(five):
    assert [m.content for m in five.pop("c", 3)] == ["2", "3", "4"]
    assert contents(five) == ["0", "1"]
    assert [m.content for m in five.load("c", last=1).messages] == ["1"]


def test_pop_more_than_there_is_empties_the_conversation(five):
    assert [m.content for m in five.pop("c", 99)] == ["0", "1", "2", "3", "4"]
    loaded = five.load("c")
    assert loaded is not None and loaded.messages == [] and loaded.metadata.message_count == 0
    assert five.pop("c") == []
    assert five.exists("c")


def test_pop_missing_or_expired_is_empty(store):
    assert store.pop("missing") == []
    store.put(expired_conversation("old", ["x"]))
    assert store.pop("old") == []


def test_pop_keeps_order_for_later_appends(five):
    five.pop("c", 2)
    five.append("c", [msg("x", id="x"), msg("y", id="y")])
    assert contents(five) == ["0", "1", "2", "x", "y"]
    assert five.load("c").metadata.message_count == 5
    assert [m.content for m in five.load("c", last=2).messages] == ["x", "y"]


def test_bad_pop_count(five):
    for bad in (0, -1, "1", 1.0, True):
        with pytest.raises(InvalidInputError) as info:
            five.pop("c", bad)
        assert info.value.field == "count"
    assert five.load("c").metadata.message_count == 5


def test_truncate_keeps_the_first_messages(five):
    saved = five.load("c").metadata
    time.sleep(0.01)
    meta = five.truncate("c", 2)
    assert meta.message_count == 2
    assert meta.updated_at > saved.updated_at
    assert meta.ttl == 1000
    assert contents(five) == ["0", "1"]
    assert five.load("c").metadata == meta


def test_truncate_to_zero_keeps_an_empty_conversation(five):
    assert five.truncate("c", 0).message_count == 0
    assert five.load("c").messages == []
    five.append("c", [msg("again", id="m0")])
    assert contents(five) == ["again"]


def test_truncate_at_or_beyond_the_length_changes_nothing(five):
    before = five.load("c").metadata
    time.sleep(0.01)
    assert five.truncate("c", 5) == before
    assert five.truncate("c", 50) == before
    assert five.load("c").metadata == before


def test_truncate_missing_or_expired_is_none(store):
    assert store.truncate("missing", 0) is None
    store.put(expired_conversation("old", ["x", "y"]))
    assert store.truncate("old", 1) is None


def test_bad_truncate_keep(five):
    for bad in (-1, "1", None, 2.0):
        with pytest.raises(InvalidInputError) as info:
            five.truncate("c", bad)
        assert info.value.field == "keep"
    assert five.load("c").metadata.message_count == 5


def test_regenerate_flow(five):
    """Edit message 2: truncate to it, append the edit and a new answer."""
    five.truncate("c", 2)
    five.append("c", [msg("2 edited", id="m2e"), msg("answer", "assistant", id="a")])
    assert contents(five) == ["0", "1", "2 edited", "answer"]
    assert five.get_stats().total_messages == 4


def test_stats_follow_removals(five):
    five.save("d", [msg("x")])
    five.pop("c", 2)
    five.truncate("d", 0)
    stats = five.get_stats()
    assert stats.total_messages == 3
    assert stats.total_conversations == 2


def test_async_twins(five):
    async def scenario():
        popped = await five.apop("c", 2)
        assert [m.content for m in popped] == ["3", "4"]
        meta = await five.atruncate("c", 1)
        assert meta.message_count == 1
        assert await five.apop("missing") == []
        assert await five.atruncate("missing", 0) is None

    asyncio.run(scenario())
    assert contents(five) == ["0"]


def test_concurrent_pops_never_return_a_message_twice(store):
    store.save("c", [msg(str(i), id=f"m{i}") for i in range(40)])
    barrier = threading.Barrier(4)
    popped: list[str] = []
    lock = threading.Lock()

    def popper() -> None:
        barrier.wait()
        for _ in range(12):
            got = store.pop("c")
            with lock:
                popped.extend(m.id for m in got)

    threads = [threading.Thread(target=popper) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(popped) == sorted(f"m{i}" for i in range(40))
    assert store.load("c").metadata.message_count == 0


def test_pops_racing_appends_lose_nothing(store):
    """Every message is either still stored or was returned by a pop, exactly once."""
    store.save("c", [])
    barrier = threading.Barrier(3)
    popped: list[str] = []

    def appender(worker: int) -> None:
        barrier.wait()
        for i in range(30):
            store.append("c", [msg(f"{worker}-{i}", id=f"w{worker}-{i}")])

    def popper() -> None:
        barrier.wait()
        for _ in range(30):
            popped.extend(m.id for m in store.pop("c"))

    threads = [threading.Thread(target=appender, args=(w,)) for w in range(2)]
    threads.append(threading.Thread(target=popper))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    loaded = store.load("c")
    remaining = [m.id for m in loaded.messages]
    assert loaded.metadata.message_count == len(remaining)
    assert sorted(remaining + popped) == sorted(f"w{w}-{i}" for w in range(2) for i in range(30))
    for worker in range(2):
        mine = [int(i.split("-")[1]) for i in remaining if i.startswith(f"w{worker}-")]
        assert mine == sorted(mine)
