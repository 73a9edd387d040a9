"""Contract: many threads appending to one conversation lose and duplicate nothing."""

from __future__ import annotations

import threading

from .helpers import msg

THREADS = 8
APPENDS = 25


def test_threads_appending_to_one_conversation(store):
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            barrier.wait()
            for i in range(APPENDS):
                store.append("shared", [msg(f"{worker}:{i}", id=f"w{worker}-{i}")])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    loaded = store.load("shared")
    assert loaded.metadata.message_count == THREADS * APPENDS
    ids = [m.id for m in loaded.messages]
    assert len(ids) == len(set(ids)) == THREADS * APPENDS
    for worker in range(THREADS):
        own = [
            int(m.content.split(":")[1])
            for m in loaded.messages
            if m.content.startswith(f"{worker}:")
        ]
        assert own == list(range(APPENDS))


def test_threads_saving_different_conversations(store):
    def writer(worker: int) -> None:
        for i in range(10):
            store.save(f"t{worker}-{i}", [msg(str(i))])

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.get_stats().total_conversations == 60
