"""Redis backend specifics: key layout, hash slots, expiry on keys, round trips, no KEYS.

The shared behaviour is covered by the contract suite (``tests/contract``);
here are the things only Redis has. Everything runs against the real server
the suite started (``redis_server`` fixture).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from django_convstore import create_store, is_redis_store
from django_convstore.backends import redis_scripts
from django_convstore.backends.redis import RedisStore
from django_convstore.clock import now_ms
from django_convstore.types import Conversation, ConversationMetadata, Message
from tests.servers.redis_counting import CountingConnection

WEIRD_IDS = [
    "plain",
    "with:colons:and spaces",
    "{braces}",
    "}starts-with-close",
    "{}",
    "a{b}c{d}",
    "100%{",
    "%7B",
    "ünïcødé-会话-👋",
    "x" * 255,
]


def msg(content: str, role: str = "user", **extra: object) -> dict[str, object]:
    return {"role": role, "content": content, **extra}


def crc16_slot(key: bytes) -> int:
    """Redis Cluster's slot of ``key``: CRC16/XMODEM of its hash tag (or whole key) mod 16384."""
    start = key.find(b"{")
    if start != -1:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    crc = 0
    for byte in key:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc % 16384


def past_conversation(cid: str, contents: list[str], *, owner: str | None = None) -> Conversation:
    """A conversation whose 10-second TTL ran out a minute ago."""
    updated = now_ms() - 60_000
    return Conversation(
        conversation_id=cid,
        messages=[Message(role="user", content=c) for c in contents],
        metadata=ConversationMetadata(
            conversation_id=cid,
            created_at=updated - 1000,
            updated_at=updated,
            message_count=len(contents),
            ttl=10,
            owner=owner,
        ),
    )


# -- keys ---------------------------------------------------------------------------------


@given(st.binary(max_size=40))
def test_own_slot_function_agrees_with_redis_py(key):
    assert crc16_slot(key) == key_slot(key)


@pytest.mark.parametrize("cid", WEIRD_IDS)
def test_all_keys_of_a_conversation_share_one_hash_slot(make_redis_store, redis_client, cid):
    store = make_redis_store(OPTIONS={"KEY_PREFIX": "app:conv"})
    store.save(cid, [msg("a")])
    keys = redis_scripts.conversation_keys(store.base, cid)
    assert redis_client.exists(*keys) == 3
    assert len({crc16_slot(key.encode()) for key in keys}) == 1
    assert len({key_slot(key.encode()) for key in keys}) == 1
    assert [m.content for m in store.load(cid).messages] == ["a"]
    assert store.list() == [cid]


@given(st.text(min_size=1, max_size=60).filter(lambda s: s.isprintable()))
def test_any_id_maps_all_its_keys_to_one_slot(cid):
    keys = redis_scripts.conversation_keys("aikit:conversation:aikit", cid)
    assert len({crc16_slot(key.encode()) for key in keys}) == 1


def test_key_layout_is_the_documented_one(make_redis_store, redis_client):
    store = make_redis_store(NAMESPACE="layout", OPTIONS={"KEY_PREFIX": "app:conv"})
    assert store.base == "app:conv:layout"
    store.save("c{1}", [msg("a")], ttl=600, owner="own{er}", metadata={"title": "T"})
    store.append("c{1}", [msg("b")])
    store.put(past_conversation("dead", ["x"]))
    found = {key.decode() for key in redis_client.scan_iter(match="app:conv:layout:*")}
    assert found == {
        "app:conv:layout:{c%7B1%7D}:meta",
        "app:conv:layout:{c%7B1%7D}:msgs",
        "app:conv:layout:{c%7B1%7D}:offs",
        "app:conv:layout:index",
        "app:conv:layout:expiry",
        "app:conv:layout:ids",
        "app:conv:layout:ledger",
        "app:conv:layout:totals",
        "app:conv:layout:owner:{own%7Ber%7D}",
    }
    meta = redis_client.hgetall("app:conv:layout:{c%7B1%7D}:meta")
    assert meta[b"ttl"] == b"600"
    assert meta[b"owner"] == b"own{er}"
    assert meta[b"message_count"] == b"2"
    assert json.loads(meta[b"m:title"]) == "T"
    joined = redis_client.get("app:conv:layout:{c%7B1%7D}:msgs")
    items = json.loads(b"[" + joined + b"]")
    assert [item["content"] for item in items] == ["a", "b"]
    offsets = redis_client.get("app:conv:layout:{c%7B1%7D}:offs").decode()
    second = joined.index(b',{"id"') + 1
    assert offsets == f"{0:010d}{second:010d}"
    updated = int(meta[b"updated_at"])
    assert redis_client.zscore("app:conv:layout:index", "c{1}") == updated
    assert redis_client.zscore("app:conv:layout:expiry", "c{1}") == updated + 600_000
    assert redis_client.zscore("app:conv:layout:owner:{own%7Ber%7D}", "c{1}") == updated
    ledger = redis_client.hget("app:conv:layout:ledger", "c{1}").decode()
    assert ledger.startswith("2|") and ledger.endswith("|own{er}")
    assert redis_client.zscore("app:conv:layout:ids", "dead") == 0


def test_stores_with_different_namespaces_or_prefixes_never_share_keys(make_redis_store):
    first = make_redis_store(NAMESPACE="a")
    second = make_redis_store(NAMESPACE="a:owner")
    third = make_redis_store(NAMESPACE="a", OPTIONS={"KEY_PREFIX": "other"})
    first.save("index", [msg("1")], owner="x")
    second.save("x", [msg("2")], owner="index")
    third.save("index", [msg("3")])
    assert [m.content for m in first.load("index").messages] == ["1"]
    assert second.load("index") is None
    assert first.load("x") is None
    assert first.list_conversations(owner="index").total == 0
    assert [m.content for m in third.load("index").messages] == ["3"]
    assert first.clear() == 1
    assert second.list() == ["x"] and third.list() == ["index"]


# -- expiry -------------------------------------------------------------------------------


def expiry_times(client, keys):
    return {client.pexpiretime(key) for key in keys}


def test_all_keys_get_the_same_absolute_expiry(make_redis_store, redis_client):
    store = make_redis_store()
    saved = store.save("c", [msg("a")], ttl=100)
    keys = redis_scripts.conversation_keys(store.base, "c")
    assert expiry_times(redis_client, keys) == {saved.metadata.updated_at + 100_000}

    store.save("empty", [], ttl=100)
    empty = redis_scripts.conversation_keys(store.base, "empty")
    before = redis_client.pexpiretime(empty[0])
    store.append("empty", [msg("first")], update_timestamp=False)
    assert expiry_times(redis_client, empty) == {before}

    appended = store.append("c", [msg("b")])
    assert expiry_times(redis_client, keys) == {appended.updated_at + 100_000}


def test_set_ttl_zero_persists_the_keys(make_redis_store, redis_client):
    store = make_redis_store()
    store.save("c", [msg("a")], ttl=100)
    keys = redis_scripts.conversation_keys(store.base, "c")
    assert store.set_ttl("c", 0) is True
    assert {redis_client.ttl(key) for key in keys} == {-1}
    assert redis_client.zscore(f"{store.base}:expiry", "c") == float("inf")
    assert store.get_ttl("c") == -1
    assert [m.content for m in store.load("c").messages] == ["a"]
    assert store.set_ttl("c", 50) is True
    assert all(0 < redis_client.ttl(key) <= 50 for key in keys)


def test_put_of_an_expired_conversation_is_invisible_and_cleanup_prunes_it(
    make_redis_store, redis_client
):
    store = make_redis_store()
    store.save("live", [msg("a")])
    store.put(past_conversation("dead", ["x", "y"], owner="o"))
    assert redis_client.exists(*redis_scripts.conversation_keys(store.base, "dead")) == 0
    assert store.load("dead", include_expired=True) is None
    assert store.list() == ["live"]
    assert store.list_conversations(owner="o").total == 0
    stats = store.get_stats()
    assert (stats.total_conversations, stats.total_messages) == (1, 1)
    assert stats.expired_conversations == 1
    assert store.cleanup() == 1
    assert store.get_stats().expired_conversations == 0
    assert redis_client.zscore(f"{store.base}:index", "dead") is None
    assert redis_client.hget(f"{store.base}:ledger", "dead") is None
    assert redis_client.exists(redis_scripts.owner_key(store.base, "o")) == 0
    assert store.cleanup() == 0


def test_cleanup_works_in_batches(make_redis_store, monkeypatch):
    monkeypatch.setattr("django_convstore.backends.redis.SWEEP_BATCH", 7)
    store = make_redis_store()
    for i in range(30):
        store.put(past_conversation(f"d{i}", ["x"]))
    store.save("live", [])
    assert store.cleanup() == 30
    assert store.get_stats().expired_conversations == 0
    assert store.clear() == 1


def test_stats_follow_every_write_without_reading_messages(make_redis_store):
    store = make_redis_store()
    store.save("a", [msg("1" * 10), msg("2" * 10)], metadata={"k": "v"})
    store.append("a", [msg("3")])
    store.save("b", [msg("x")])
    store.save("b", [msg("y"), msg("z")])
    store.put(past_conversation("gone", ["p", "q", "r"]))
    stats = store.get_stats()
    assert (stats.total_conversations, stats.total_messages) == (2, 5)
    stored = {  # what the msgs strings hold: message JSON joined by ","
        cid: ",".join(
            json.dumps(m.to_dict(), ensure_ascii=False, separators=(",", ":"))
            for m in store.load(cid).messages
        )
        for cid in ("a", "b")
    }
    expected_bytes = sum(len(text.encode()) for text in stored.values()) + len("k") + len('"v"')
    assert stats.storage_size == expected_bytes
    store.delete("a")
    assert store.get_stats().total_messages == 2
    store.clear()
    stats = store.get_stats()
    assert (stats.total_conversations, stats.total_messages, stats.storage_size) == (0, 0, 0)


# -- listing ------------------------------------------------------------------------------

conversation_specs = st.lists(
    st.tuples(
        st.sampled_from(["a", "ab", "abc", "b", "ba", "z", "ü", "a{", "a}"]),
        st.integers(0, 3),
        st.sampled_from([None, "o1", "o2"]),
        st.integers(0, 5),
        st.booleans(),
    ),
    max_size=14,
    unique_by=lambda spec: (spec[0], spec[1]),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    specs=conversation_specs,
    owner=st.sampled_from([None, "o1", "o2", "nobody"]),
    prefix=st.sampled_from([None, "a", "ab", "b", "ü", "a{", "q"]),
    limit=st.integers(1, 6),
    offset=st.integers(0, 12),
)
def test_listing_matches_the_memory_store(redis_server, specs, owner, prefix, limit, offset):
    """Pages, totals, filters and expiry skipping agree with the reference implementation."""
    namespace = f"h{uuid.uuid4().hex[:10]}"
    redis_store = create_store(
        {
            "BACKEND": "django_convstore.backends.redis.RedisStore",
            "LOCATION": redis_server.url,
            "NAMESPACE": namespace,
        }
    )
    memory_store = create_store({"type": "memory", "location": namespace})
    base = now_ms()
    try:
        for name, number, spec_owner, age, expired in specs:
            updated = base - (60_000 if expired else 0) - age * 1000
            conversation = Conversation(
                conversation_id=f"{name}{number}",
                messages=[Message(role="user", content="m", id="m")] * number,
                metadata=ConversationMetadata(
                    conversation_id=f"{name}{number}",
                    created_at=updated,
                    updated_at=updated,
                    message_count=number,
                    ttl=10 if expired else None,
                    owner=spec_owner,
                ),
            )
            redis_store.put(conversation)
            memory_store.put(conversation)
        expected = memory_store.list_conversations(
            owner=owner, prefix=prefix, limit=limit, offset=offset
        )
        actual = redis_store.list_conversations(
            owner=owner, prefix=prefix, limit=limit, offset=offset
        )
        assert actual.total == expected.total
        assert [m.to_dict() for m in actual.items] == [m.to_dict() for m in expected.items]
        everything = memory_store.list_conversations(limit=1000)
        assert redis_store.list() == [m.conversation_id for m in everything.items]
        redis_stats, memory_stats = redis_store.get_stats(), memory_store.get_stats()
        assert redis_stats.total_conversations == memory_stats.total_conversations
        assert redis_stats.total_messages == memory_stats.total_messages
        assert redis_stats.expired_conversations == memory_stats.expired_conversations
    finally:
        redis_store.clear()
        redis_store.close()
        memory_store.clear()


def test_iteration_pages_through_the_id_index(make_redis_store):
    store = make_redis_store()
    ids = [f"c{i:03d}" for i in range(25)]
    for cid in ids:
        store.save(cid, [msg(cid)])
    store.put(past_conversation("c100-dead", ["x"]))
    streamed = list(store.iter_conversations(batch_size=4))
    assert [c.conversation_id for c in streamed] == ids
    assert all(c.messages[0].content == c.conversation_id for c in streamed)


# -- round trips and commands -------------------------------------------------------------


@pytest.fixture
def counting_store(make_redis_store):
    return make_redis_store(
        OPTIONS={"CONNECTION_POOL_KWARGS": {"connection_class": CountingConnection}}
    )


def test_one_round_trip_per_operation(counting_store, redis_server):
    store = counting_store
    operations = {
        "save": lambda: store.save("c", [msg("a"), msg("b")], ttl=600, metadata={"k": 1}),
        "append": lambda: store.append("c", [msg("c")]),
        "load": lambda: store.load("c"),
        "load(last=1)": lambda: store.load("c", last=1),
        "exists": lambda: store.exists("c"),
        "get_ttl": lambda: store.get_ttl("c"),
        "set_ttl": lambda: store.set_ttl("c", 300),
        "list": lambda: store.list(),
        "list_conversations": lambda: store.list_conversations(owner="u", prefix="c"),
        "get_stats": lambda: store.get_stats(),
        "put": lambda: store.put(past_conversation("p", ["x"])),
        "cleanup": lambda: store.cleanup(),
        "delete": lambda: store.delete("c"),
    }
    for operation in operations.values():  # warm up: connect, load the scripts
        operation()
    scripted = {
        "save",
        "append",
        "load(last=1)",
        "set_ttl",
        "list",
        "list_conversations",
        "get_stats",
        "put",
        "cleanup",
        "delete",
    }
    for name, operation in operations.items():
        before = redis_server.commandstats().get("evalsha", 0)
        CountingConnection.reset()
        operation()
        assert CountingConnection.requests == 1, name
        evalsha = redis_server.commandstats().get("evalsha", 0) - before
        assert evalsha == (1 if name in scripted else 0), name
    before = redis_server.commandstats()
    store.load("c")  # a whole load is one MULTI/EXEC (HGETALL + GET), not a script
    after = redis_server.commandstats()
    used = {
        name: after[name] - before.get(name, 0) for name in ("multi", "exec", "hgetall", "get")
    }
    assert used == {"multi": 1, "exec": 1, "hgetall": 1, "get": 1}


def test_load_last_n_reads_only_the_tail(counting_store):
    store = counting_store
    content = "x" * 200
    for start in range(0, 2000, 500):
        store.append("long", [msg(f"{content}{i}") for i in range(start, start + 500)])
    store.load("long", last=2)
    CountingConnection.reset()
    window = store.load("long", last=2)
    tail_bytes = CountingConnection.received
    CountingConnection.reset()
    whole = store.load("long")
    assert [m.content for m in window.messages] == [f"{content}1998", f"{content}1999"]
    assert len(whole.messages) == window.metadata.message_count == 2000
    assert tail_bytes < 2_000
    assert CountingConnection.received > 2000 * 200


def test_no_keys_or_scan_command_is_ever_sent(make_redis_store, redis_server):
    store = make_redis_store(TTL=600)
    redis_server.command("CONFIG", "RESETSTAT")
    store.save("a", [msg("1")], owner="o", metadata={"k": 1})
    store.append("a", [msg("2")])
    store.append("new", [msg("x")], update_timestamp=False)
    store.put(past_conversation("dead", ["y"]))
    store.load("a")
    store.load("a", last=1, include_expired=True)
    store.exists("a")
    store.get_ttl("a")
    store.set_ttl("a", 0)
    store.list()
    store.list_conversations()
    store.list_conversations(owner="o", prefix="a", limit=1, offset=1)
    list(store.iter_conversations(include_expired=True, batch_size=1))
    store.get_stats()
    store.cleanup()
    store.delete("new")
    store.close()
    store.clear()
    used = redis_server.commandstats()
    assert "evalsha" in used
    assert not {"keys", "scan", "flushdb", "flushall"} & set(used)


def test_scripts_are_reloaded_after_script_flush(make_redis_store, redis_server):
    store = make_redis_store()
    store.save("c", [msg("a")])
    redis_server.command("SCRIPT", "FLUSH")
    store.append("c", [msg("b")])
    assert [m.content for m in store.load("c").messages] == ["a", "b"]


def test_large_conversations_and_metadata_are_written_in_chunks(make_redis_store):
    store = make_redis_store()
    messages = [
        Message(role="user", content=f"m{i}", id=f"id{i}", timestamp=i) for i in range(2500)
    ]
    metadata = {f"key{i}": i for i in range(1200)}
    big = Conversation(
        conversation_id="big",
        messages=messages,
        metadata=ConversationMetadata(
            conversation_id="big",
            created_at=1,
            updated_at=now_ms(),
            message_count=2500,
            metadata=metadata,
        ),
    )
    store.put(big)
    loaded = store.load("big")
    assert loaded.to_dict() == big.to_dict()
    assert store.load("big", last=3).messages == messages[-3:]
    assert store.get_stats().total_messages == 2500


# -- connection lifecycle -----------------------------------------------------------------


def _clients_named(server, name: str) -> int:
    listing = str(server.command("CLIENT", "LIST"))
    return sum(f" name={name} " in f" {line} " for line in listing.splitlines())


def test_close_disconnects_and_the_next_call_reconnects(make_redis_store, redis_server):
    name = f"close-{uuid.uuid4().hex[:8]}"
    store = make_redis_store(OPTIONS={"CONNECTION_POOL_KWARGS": {"client_name": name}})
    assert _clients_named(redis_server, name) == 0
    store.save("c", [msg("a")])
    assert _clients_named(redis_server, name) == 1
    store.close()
    store.close()
    assert _clients_named(redis_server, name) == 0
    assert store.exists("c")
    assert _clients_named(redis_server, name) == 1


def test_stores_with_the_same_settings_share_one_pool(make_redis_store, redis_server):
    one = make_redis_store(NAMESPACE="pool-a")
    two = make_redis_store(NAMESPACE="pool-b")
    other = make_redis_store(OPTIONS={"SOCKET_TIMEOUT": 2})
    assert one.client.connection_pool is two.client.connection_pool
    assert other.client.connection_pool is not one.client.connection_pool


def test_responses_decoded_by_the_pool_are_handled(make_redis_store):
    store = make_redis_store(OPTIONS={"CONNECTION_POOL_KWARGS": {"decode_responses": True}})
    store.save("ü", [msg("héllo", metadata={"k": "ü"})], metadata={"t": 1}, owner="o")
    store.append("ü", [msg("2")])
    assert [m.content for m in store.load("ü").messages] == ["héllo", "2"]
    assert store.list() == ["ü"]
    assert store.list_conversations(owner="o").items[0].metadata == {"t": 1}
    assert [c.conversation_id for c in store.iter_conversations()] == ["ü"]
    assert store.get_stats().total_messages == 2


def test_type_guard():
    store = RedisStore("redis://127.0.0.1:1/0", {})
    assert is_redis_store(store)


def test_module_imports_and_fails_clearly_without_redis_installed():
    code = """
import sys
sys.modules["redis"] = None
sys.modules["django_redis"] = None
import django
from django.conf import settings
settings.configure(INSTALLED_APPS=[])
django.setup()
import django_convstore.backends.redis as backend
from django.core.exceptions import ImproperlyConfigured
try:
    backend.RedisStore("redis://127.0.0.1:6379/0", {}, alias="cache")
except ImproperlyConfigured as exc:
    print("ERROR:", exc)
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        check=True,
    )
    assert "ERROR: CONVSTORE['cache']" in result.stdout
    assert "pip install 'django-convstore[redis]'" in result.stdout
