"""Contract: every method has an async twin that behaves like it."""

from __future__ import annotations

import asyncio

from .helpers import expired_conversation, msg


def test_async_twins(store):
    async def scenario():
        saved = await store.asave("a", [msg("1")], ttl=600, metadata={"k": 1}, owner="o")
        assert saved.metadata.ttl == 600
        meta = await store.aappend("a", [msg("2")])
        assert meta.message_count == 2
        loaded = await store.aload("a", last=1)
        assert [m.content for m in loaded.messages] == ["2"]
        assert await store.aexists("a") is True
        assert await store.alist() == ["a"]
        page = await store.alist_conversations(owner="o")
        assert page.total == 1
        assert 598 <= await store.aget_ttl("a") <= 600
        assert await store.aset_ttl("a", 0) is True
        assert await store.aget_ttl("a") == -1
        await store.aput(expired_conversation("old"))
        ids = [c.conversation_id async for c in store.aiter_conversations(batch_size=1)]
        assert ids == ["a"]
        stats = await store.aget_stats()
        assert stats.total_conversations == 1
        assert await store.acleanup() == 1
        assert await store.adelete("a") is True
        await store.asave("b", [])
        assert await store.aclear() == 1
        await store.aclose()
        assert await store.aexists("b") is False

    asyncio.run(scenario())


def test_async_appends_run_concurrently_without_loss(store):
    async def scenario():
        await asyncio.gather(*(store.aappend("c", [msg(f"m{i}")]) for i in range(20)))

    asyncio.run(scenario())
    loaded = store.load("c")
    assert loaded.metadata.message_count == 20
    assert sorted(m.content for m in loaded.messages) == sorted(f"m{i}" for i in range(20))
