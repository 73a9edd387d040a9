"""Redis backend under faults: a stopped, paused or crashed server, and server-side errors.

Each test that breaks a server gets a dedicated one (``RedisServer``), never
the session server the other tests share.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis import Redis

from django_convstore import (
    BackendError,
    BackendUnavailableError,
    ConvStoreError,
    create_store,
)
from django_convstore.backends.redis import RedisStore
from django_convstore.types import Conversation, ConversationMetadata, Message
from tests.servers.redis_server import RedisServer, find_binary

pytestmark = pytest.mark.skipif(find_binary() is None, reason="no redis-server/valkey-server")

TIMEOUT = 1.0


def msg(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as dedicated:
        yield dedicated


def store_on(
    server: RedisServer, namespace: str | None = None, alias: str = "faulty", **options: object
) -> RedisStore:
    store = create_store(
        {
            "BACKEND": "django_convstore.backends.redis.RedisStore",
            "LOCATION": server.url,
            "NAMESPACE": namespace or uuid.uuid4().hex[:8],
            "OPTIONS": {"SOCKET_TIMEOUT": TIMEOUT, **options},
        },
        alias=alias,
    )
    assert isinstance(store, RedisStore)
    return store


def every_operation(store: RedisStore) -> dict[str, Callable[[], object]]:
    whole = Conversation(
        conversation_id="p",
        messages=[Message(role="user", content="x")],
        metadata=ConversationMetadata(
            conversation_id="p", created_at=1, updated_at=2, message_count=1
        ),
    )
    return {
        "save": lambda: store.save("c", [msg("a")]),
        "append": lambda: store.append("c", [msg("b")]),
        "load": lambda: store.load("c"),
        "exists": lambda: store.exists("c"),
        "delete": lambda: store.delete("c"),
        "clear": store.clear,
        "list": store.list,
        "list_conversations": store.list_conversations,
        "iter_conversations": lambda: list(store.iter_conversations()),
        "put": lambda: store.put(whole),
        "get_stats": store.get_stats,
        "cleanup": store.cleanup,
        "get_ttl": lambda: store.get_ttl("c"),
        "set_ttl": lambda: store.set_ttl("c", 5),
    }


def every_async_operation(store: RedisStore) -> dict[str, Callable[[], Any]]:
    return {
        "asave": lambda: store.asave("c", [msg("a")]),
        "acreate": lambda: store.acreate("n", [msg("a")]),
        "aappend": lambda: store.aappend("c", [msg("b")]),
        "aload": lambda: store.aload("c"),
        "aexists": lambda: store.aexists("c"),
        "apop": lambda: store.apop("c"),
        "atruncate": lambda: store.atruncate("c", 0),
        "adelete": lambda: store.adelete("c"),
        "alist_conversations": store.alist_conversations,
        "aget_ttl": lambda: store.aget_ttl("c"),
        "aset_ttl": lambda: store.aset_ttl("c", 5),
        "aupdate_metadata": lambda: store.aupdate_metadata("c", {"k": 1}),
    }


def test_async_twins_raise_unavailable_and_recover(server):
    store = store_on(server, alias="faulty-async")

    async def scenario() -> None:
        await store.asave("c", [msg("before")])
        server.stop()
        for name, operation in every_async_operation(store).items():
            with pytest.raises(BackendUnavailableError, match="redis store 'faulty-async'"):
                await operation()
            assert name
        server.start()
        assert await store.aload("c") is None
        for operation in every_async_operation(store).values():
            await operation()
        await store.aclose()

    asyncio.run(scenario())
    store.close()


def test_stopped_server_raises_unavailable_and_the_same_store_recovers(server):
    store = store_on(server)
    store.save("c", [msg("before")])
    server.stop()
    for name, operation in every_operation(store).items():
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError) as info:
            operation()
        assert time.monotonic() - started < TIMEOUT + 1.5, name
        text = str(info.value)
        assert "redis store 'faulty'" in text and f"127.0.0.1:{server.port}" in text, text
        assert info.value.address == f"127.0.0.1:{server.port}"
        assert isinstance(info.value.__cause__, Exception)
    server.start()
    assert store.load("c") is None  # no persistence: the restarted server is empty
    store.save("c", [msg("after")])
    store.append("c", [msg("again")])
    assert [m.content for m in store.load("c").messages] == ["after", "again"]
    for operation in every_operation(store).values():
        operation()
    store.close()


def test_writers_see_only_unavailable_errors_across_a_restart(server):
    store = store_on(server)
    stop = threading.Event()
    outcomes: list[object] = []

    def writer() -> None:
        i = 0
        while not stop.is_set():
            try:
                store.append("stream", [msg(f"m{i}"), msg(f"m{i}-2")])
                outcomes.append("ok")
            except ConvStoreError as exc:
                outcomes.append(exc)
                time.sleep(0.02)
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.3)
    server.stop()
    time.sleep(0.5)
    failures_while_down = len(outcomes)
    server.start()
    time.sleep(0.5)
    stop.set()
    thread.join()
    errors = [o for o in outcomes if o != "ok"]
    assert errors, "the writer never noticed the outage"
    assert all(isinstance(e, BackendUnavailableError) for e in errors), errors
    assert outcomes[-1] == "ok" and "ok" in outcomes[failures_while_down:]
    loaded = store.load("stream")
    assert loaded.metadata.message_count == len(loaded.messages) > 0
    assert len(loaded.messages) % 2 == 0


def test_a_paused_server_times_out_within_the_socket_timeout(server):
    store = store_on(server, SOCKET_TIMEOUT=0.5)
    store.save("c", [msg("a")])
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        for operation in (lambda: store.load("c"), lambda: store.append("c", [msg("b")])):
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError, match="unavailable: Timeout"):
                operation()
            assert 0.4 < time.monotonic() - started < 2.0
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    assert store.exists("c")
    store.append("c", [msg("c")])
    loaded = store.load("c")
    assert loaded.metadata.message_count == len(loaded.messages)


def test_other_server_errors_become_backend_errors(server):
    store = store_on(server)
    meta = store.layout.conversation("wrong-type").meta
    raw = Redis.from_url(server.url)
    raw.set(meta, "not a hash")
    for operation in (
        lambda: store.load("wrong-type"),
        lambda: store.save("wrong-type", [msg("a")]),
        lambda: store.exists("wrong-type"),
    ):
        with pytest.raises(BackendError, match=r"redis store 'faulty'.*WRONGTYPE"):
            operation()
    store.save("c", [msg("a")])
    store.save("long", [msg("x" * 300) for _ in range(200)])
    raw.config_set("maxmemory", 1)
    try:
        with pytest.raises(BackendError, match=r"OutOfMemoryError: .*maxmemory") as info:
            store.append("c", [msg("b")])
        assert not isinstance(info.value, BackendUnavailableError)
        assert [m.content for m in store.load("c").messages] == ["a"]
        # Out of memory, Redis refuses even reads inside MULTI: a long load reads in its script.
        assert len(store.load("long").messages) == 200
    finally:
        raw.config_set("maxmemory", 0)
    store.append("c", [msg("b")])
    assert store.get_stats().total_messages == 202
    raw.close()


def test_malformed_stored_data_is_a_backend_error(make_redis_store, redis_client):
    store = make_redis_store()
    store.save("c", [msg("a")])
    keys = store.layout.conversation("c")
    meta, msgs = keys.meta, keys.data
    redis_client.set(msgs, b"{not json")
    with pytest.raises(BackendError, match="malformed data stored for conversation 'c'"):
        store.load("c")
    with pytest.raises(BackendError, match="malformed data stored for conversation 'c'"):
        list(store.iter_conversations())
    redis_client.hdel(meta, "created_at")
    with pytest.raises(BackendError, match="malformed data stored for conversation 'c'"):
        store.load("c", last=1)
    assert store.delete("c") is True


def _check_whole(loaded: Conversation | None, batch: int) -> None:
    """Every batch of ``batch`` messages is complete and the count matches."""
    assert loaded is not None
    contents = [m.text() for m in loaded.messages]
    assert loaded.metadata.message_count == len(contents)
    assert len(contents) % batch == 0, contents
    for start in range(0, len(contents), batch):
        group = contents[start : start + batch]
        tag = group[0].rsplit(":", 1)[0]
        assert group == [f"{tag}:{k}" for k in range(batch)], group


def test_no_partial_conversation_is_ever_visible_to_readers(make_redis_store):
    writer_store = make_redis_store()
    reader_store = make_redis_store(NAMESPACE=writer_store.namespace)
    writer_store.save("saved", [msg("v0:0")])
    deadline = time.monotonic() + 1.5
    problems: list[BaseException] = []

    def writer() -> None:
        version = 1
        while time.monotonic() < deadline:
            size = 1 + version % 40
            writer_store.save("saved", [msg(f"v{version}:{k}") for k in range(size)])
            writer_store.append("appended", [msg(f"b{version}:{k}") for k in range(3)])
            version += 1

    def reader() -> None:
        try:
            while time.monotonic() < deadline:
                saved = reader_store.load("saved")
                assert saved is not None
                contents = [m.content for m in saved.messages]
                assert saved.metadata.message_count == len(contents)
                version = contents[0].split(":")[0]
                assert contents == [f"{version}:{k}" for k in range(len(contents))]
                appended = reader_store.load("appended")
                if appended is not None:
                    _check_whole(appended, 3)
        except BaseException as exc:
            problems.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert problems == []


@pytest.mark.slow
def test_a_crash_mid_writes_leaves_only_whole_conversations():
    """SIGKILL the server during concurrent writes, replay its AOF: nothing is half-written."""
    with RedisServer(appendonly=True) as server:
        namespace = uuid.uuid4().hex[:8]
        acknowledged: dict[int, list[str]] = {w: [] for w in range(3)}
        stop = threading.Event()

        def writer(worker: int) -> None:
            store = store_on(server, namespace)
            batch = 0
            while not stop.is_set():
                tag = f"w{worker}b{batch}"
                try:
                    store.append("shared", [msg(f"{tag}:{k}") for k in range(3)])
                    store.save(f"own-{worker}", [msg(f"{tag}:{k}") for k in range(3 + batch % 5)])
                except BackendUnavailableError:
                    return
                acknowledged[worker].append(tag)
                batch += 1

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(0.6)
        server.kill()
        stop.set()
        for thread in threads:
            thread.join()
        server.start()

        store = store_on(server, namespace)
        shared = store.load("shared")
        _check_whole(shared, 3)
        tags = [m.content.rsplit(":", 1)[0] for m in shared.messages[::3]]
        assert len(tags) == len(set(tags))
        for worker, done in acknowledged.items():
            assert done, f"worker {worker} wrote nothing before the crash"
            mine = [t for t in tags if t.startswith(f"w{worker}b")]
            assert mine[: len(done)] == done  # every acknowledged append survived, in order
            own = store.load(f"own-{worker}")
            assert own is not None
            contents = [m.content for m in own.messages]
            assert own.metadata.message_count == len(contents)
            tag = contents[0].rsplit(":", 1)[0]
            assert contents == [f"{tag}:{k}" for k in range(len(contents))]
        stats = store.get_stats()
        assert stats.total_conversations == 4
        assert stats.total_messages == len(shared.messages) + sum(
            store.load(f"own-{w}").metadata.message_count for w in range(3)
        )
        assert sorted(store.list()) == ["own-0", "own-1", "own-2", "shared"]
