"""Conversations written by 0.1: refused loudly, then moved exactly by one command.

The 0.1 data is real: written by 0.1's own Lua scripts with 0.1's arguments
(:mod:`tests.legacy.redis_v01`).
"""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from django_convstore import BackendError, create_store
from django_convstore.backends.redis import RedisStore
from django_convstore.clock import now_ms
from tests.legacy.redis_v01 import V01Writer
from tests.legacy.redis_v01_scripts import conversation_keys

BACKEND = "django_convstore.backends.redis.RedisStore"
PARTS = [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "x"}}]


def message(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"m{i}",
        "role": "user" if i % 2 else "assistant",
        "content": f"message {i} — ü",
        "timestamp": 1_700_000_000_000 + i,
        **extra,
    }


def read_v01(client: Any, base: str, cid: str) -> dict[str, Any]:
    """A 0.1 conversation as ``Conversation.to_dict()`` would show it, read from its keys."""
    meta_key, msgs_key, _ = conversation_keys(base, cid)
    meta = {k.decode(): v.decode() for k, v in client.hgetall(meta_key).items()}
    messages = json.loads(b"[" + (client.get(msgs_key) or b"") + b"]")
    updated, ttl = int(meta["updated_at"]), int(meta["ttl"]) or None
    return {
        "conversation_id": cid,
        "messages": messages,
        "metadata": {
            "conversation_id": cid,
            "created_at": int(meta["created_at"]),
            "updated_at": updated,
            "message_count": int(meta["message_count"]),
            "ttl": ttl,
            "owner": meta.get("owner"),
            "metadata": {k[2:]: json.loads(v) for k, v in meta.items() if k.startswith("m:")},
            "expires_at": updated + ttl * 1000 if ttl else None,
        },
    }


@pytest.fixture
def v01(redis_server, redis_client):
    """A namespace holding 0.1 data, and the settings naming a 0.2 store on it."""
    namespace = f"v01{uuid.uuid4().hex[:8]}"
    writer = V01Writer(redis_client, "aikit:conversation", namespace)
    now = now_ms()
    writer.save(
        "plain",
        [message(0, metadata={"model": "m", "usage": {"in": 3}}), message(1), message(2)],
        now=now - 5000,
        ttl=3600,
        owner="alice",
        metadata={"title": "Trip", "tags": ["a", "b"], "n": 2**40},
    )
    writer.append("plain", [message(3), message(4, content=PARTS)], now=now - 1000)
    writer.put("c{weird}%", [message(7)], created_at=5, updated_at=now - 10, owner="o{1}")
    writer.save("empty", [], now=now)
    writer.put("expired", [message(9)], created_at=1, updated_at=now - 60_000, ttl=10)
    for i in range(40):
        writer.save(f"bulk-{i:02d}", [message(j) for j in range(i % 4)], now=now - i, owner="bob")
    config = {"BACKEND": BACKEND, "LOCATION": redis_server.url, "NAMESPACE": namespace}
    yield namespace, config
    for key in redis_client.scan_iter(match=f"aikit:conversation:{namespace}:*"):
        redis_client.delete(key)  # 0.1 and 0.2 keys alike: the namespace is the test's own


def test_a_store_refuses_0_1_data_then_the_command_moves_it_exactly(v01, redis_client):
    namespace, config = v01
    base = f"aikit:conversation:{namespace}"
    ids = ["plain", "c{weird}%", "empty", *(f"bulk-{i:02d}" for i in range(40))]
    expected = {cid: read_v01(redis_client, base, cid) for cid in ids}
    assert expected["plain"]["metadata"]["message_count"] == 5
    assert expected["plain"]["messages"][4]["content"] == PARTS

    store = create_store(config, alias="old")
    assert isinstance(store, RedisStore)
    with pytest.raises(BackendError, match=r"0\.1.*convstore_redis_upgrade --store old"):
        store.load("plain")

    with override_settings(CONVSTORE={"old": config}):
        out = io.StringIO()
        call_command("convstore_redis_upgrade", "--dry-run", stdout=out)
        assert out.getvalue() == "old: would move 43 conversations, dropped 1 expired, 0 failed\n"
        assert redis_client.exists(f"{base}:ids")
        out = io.StringIO()
        call_command("convstore_redis_upgrade", "--store", "old", "--batch-size", "7", stdout=out)
        assert out.getvalue() == "old: moved 43 conversations, dropped 1 expired, 0 failed\n"

    for cid, whole in expected.items():
        loaded = store.load(cid)
        assert loaded is not None, cid
        assert loaded.to_dict() == {
            **whole,
            "messages": [{"metadata": {}, **m} for m in whole["messages"]],
        }, cid
    assert store.load("expired") is None
    assert [m.content for m in store.load("plain", last=1).messages] == [PARTS]
    assert 3500 < store.get_ttl("plain") <= 3600
    assert store.list_conversations(owner="bob").total == 40
    assert store.list_conversations(owner="o{1}").items[0].conversation_id == "c{weird}%"
    assert len(store.list()) == 43
    stats = store.get_stats()
    assert stats.total_conversations == 43
    assert stats.total_messages == 5 + 1 + sum(i % 4 for i in range(40))
    left = [
        key
        for key in redis_client.scan_iter(match=f"{base}:*")
        if key.endswith((b":meta", b":msgs", b":offs"))
        or key.decode()[len(base) + 1 :] in ("index", "expiry", "ids", "ledger", "totals")
        or key.decode().startswith(f"{base}:owner:")
    ]
    assert left == []  # no 0.1 key is left
    store.append("plain", [message(3), message(5)])  # ids stay known: m3 is not stored twice
    assert [m.id for m in store.load("plain").messages][-2:] == ["m4", "m5"]

    with override_settings(CONVSTORE={"old": config}):
        out = io.StringIO()
        call_command("convstore_redis_upgrade", stdout=out)
        assert out.getvalue() == "old: moved 0 conversations, dropped 0 expired, 0 failed\n"


def test_unreadable_0_1_conversations_are_reported_and_left_in_place(v01, redis_client):
    namespace, config = v01
    base = f"aikit:conversation:{namespace}"
    redis_client.set(conversation_keys(base, "bulk-03")[1], b"{broken")
    with override_settings(CONVSTORE={"old": config}):
        out, err = io.StringIO(), io.StringIO()
        with pytest.raises(CommandError, match="1 of 1 stores failed: old"):
            call_command("convstore_redis_upgrade", stdout=out, stderr=err)
    assert "moved 42 conversations, dropped 1 expired, 1 failed" in out.getvalue()
    assert "'bulk-03': BackendError: redis store: malformed data" in err.getvalue()
    assert redis_client.exists(*conversation_keys(base, "bulk-03")[:2]) == 2
    store = create_store(config, alias="old")
    with pytest.raises(BackendError, match=r"0\.1"):
        store.exists("plain")  # still refused: one 0.1 conversation is left


def test_the_command_names_stores_that_are_not_redis(v01):
    _, config = v01
    stores = {"old": config, "mem": {"BACKEND": "django_convstore.backends.memory.MemoryStore"}}
    with override_settings(CONVSTORE=stores):
        err = io.StringIO()
        with pytest.raises(CommandError, match="mem"):
            call_command("convstore_redis_upgrade", "--store", "mem", stderr=err)
        assert "mem: not a Redis store" in err.getvalue()
        out = io.StringIO()
        call_command("convstore_redis_upgrade", stdout=out)  # every Redis store; memory skipped
        assert out.getvalue().startswith("old: moved 43 conversations")
