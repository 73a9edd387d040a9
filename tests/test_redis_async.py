"""The Redis store's native async twins: ``redis.asyncio``, one pool per event loop.

The contract suite runs every contract test through the async twins too
(``[redis-async]``); these tests check what is specific to the native ones:
concurrent calls overlap on several connections, each event loop has its own
pool, ``aclose``/``close`` release them, and scripts the server forgot are
sent again.
"""

from __future__ import annotations

import asyncio
import threading
import uuid

from tests.servers.redis_counting import CountingConnection


def msg(content: str, **extra: object) -> dict[str, object]:
    return {"role": "user", "content": content, **extra}


def _clients_named(server, name: str) -> int:
    listing = str(server.command("CLIENT", "LIST"))
    return sum(f" name={name} " in f" {line} " for line in listing.splitlines())


def named_store(make_redis_store, **options: object):
    name = f"async-{uuid.uuid4().hex[:8]}"
    pool = {"client_name": name, **options}
    return make_redis_store(OPTIONS={"CONNECTION_POOL_KWARGS": pool}), name


def test_concurrent_calls_overlap_on_several_connections(make_redis_store, redis_server):
    store, name = named_store(make_redis_store)
    seen: list[int] = []

    async def scenario() -> None:
        await store.aexists("warm-up")

        async def one(i: int) -> None:
            await store.aappend("shared", [msg(str(i), id=f"m{i}")])
            await store.aload("shared", last=5)

        async def watch() -> None:
            for _ in range(20):
                seen.append(_clients_named(redis_server, name))
                await asyncio.sleep(0)

        await asyncio.gather(watch(), *(one(i) for i in range(50)))
        loaded = await store.aload("shared")
        assert sorted(m.id for m in loaded.messages) == sorted(f"m{i}" for i in range(50))
        assert _clients_named(redis_server, name) > 1  # they did not queue on one connection
        await store.aclose()
        assert _clients_named(redis_server, name) == 0

    asyncio.run(scenario())
    assert store.client.connection_pool.connection_kwargs["client_name"] == name


def test_the_sync_pool_is_not_used_by_the_native_twins(make_redis_store):
    store = make_redis_store(
        OPTIONS={"CONNECTION_POOL_KWARGS": {"connection_class": CountingConnection}}
    )
    store.save("c", [msg("a")])
    CountingConnection.reset()

    async def scenario() -> None:
        await store.aappend("c", [msg("b")])
        assert [m.content for m in (await store.aload("c")).messages] == ["a", "b"]
        await store.aclose()

    asyncio.run(scenario())
    assert CountingConnection.requests == 0


def test_one_store_on_several_event_loops(make_redis_store):
    store = make_redis_store()
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def worker(n: int) -> None:
        async def scenario() -> None:
            barrier.wait()
            for i in range(20):
                await store.aappend("c", [msg(f"{n}-{i}", id=f"{n}-{i}")])
            await store.aclose()

        try:
            asyncio.run(scenario())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.load("c").metadata.message_count == 80

    async def exists_and_client() -> tuple[bool, object]:
        return await store.aexists("c"), await store._async_client()

    first = asyncio.run(exists_and_client())
    second = asyncio.run(exists_and_client())
    assert first[0] is second[0] is True
    assert first[1] is not second[1]  # each event loop gets a client of its own


def test_sync_close_releases_the_clients_of_running_loops(make_redis_store, redis_server):
    store, name = named_store(make_redis_store)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(store.asave("c", [msg("a")]), loop).result(10)
        assert _clients_named(redis_server, name) >= 1
        store.close()
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0.05), loop).result(10)
        assert _clients_named(redis_server, name) == 0
        loaded = asyncio.run_coroutine_threadsafe(store.aload("c"), loop).result(10)
        assert [m.content for m in loaded.messages] == ["a"]
    finally:
        asyncio.run_coroutine_threadsafe(store.aclose(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_scripts_are_sent_again_after_script_flush(make_redis_store, redis_server):
    store = make_redis_store(OPTIONS={"INDEX_SHARDS": 2})

    async def scenario() -> None:
        await store.asave("c", [msg("a")])
        redis_server.command("SCRIPT", "FLUSH")
        await store.aappend("c", [msg("b")])
        redis_server.command("SCRIPT", "FLUSH")
        page = await store.alist_conversations()  # a pipelined batch of scripts
        assert page.total == 1
        assert [m.content for m in (await store.aload("c")).messages] == ["a", "b"]
        await store.aclose()

    asyncio.run(scenario())


def test_long_loads_and_windows_through_the_async_twins(make_redis_store):
    store = make_redis_store()
    store.save("long", [msg("x" * 300, id=str(i)) for i in range(400)])

    async def scenario() -> None:
        whole = await store.aload("long")
        window = await store.aload("long", last=250)
        assert [m.id for m in whole.messages] == [str(i) for i in range(400)]
        assert [m.id for m in window.messages] == [str(i) for i in range(150, 400)]
        assert [m.id for m in await store.apop("long", 2)] == ["398", "399"]
        await store.aclose()

    asyncio.run(scenario())
