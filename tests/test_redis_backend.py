"""Redis backend specifics: key layout, buckets, expiry on keys, data strings, round trips.

The shared behaviour is covered by the contract suite (``tests/contract``);
here are the things only Redis has. Everything runs against the real server
the suite started (``redis_server`` fixture).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from django_convstore import (
    BackendError,
    OwnerMismatchError,
    codec,
    create_store,
    is_redis_store,
)
from django_convstore.backends.redis import RedisStore, operations
from django_convstore.backends.redis.layout import Layout, bucket_tags
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
    "m:x",
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


def data_keys(store: RedisStore, cid: str) -> list[str]:
    keys = store.layout.conversation(cid)
    return [keys.data, keys.offsets, keys.ids]


# -- keys and buckets ---------------------------------------------------------------------


@given(st.binary(max_size=40))
def test_own_slot_function_agrees_with_redis_py(key):
    assert crc16_slot(key) == key_slot(key)


@pytest.mark.parametrize("shards", [1, 8])
@pytest.mark.parametrize("cid", WEIRD_IDS)
def test_every_key_a_write_touches_shares_one_hash_slot(
    make_redis_store, redis_client, cid, shards
):
    store = make_redis_store(OPTIONS={"KEY_PREFIX": "app:conv", "INDEX_SHARDS": shards})
    store.save(cid, [msg("a")], owner="own{er}", ttl=60)
    keys = store.layout.conversation(cid)
    assert redis_client.exists(*keys[:4]) == 4
    touched = [*keys[:8], f"{keys.owners}own{{er}}"]
    assert len({key_slot(key.encode()) for key in touched}) == 1
    assert len({crc16_slot(key.encode()) for key in touched}) == 1
    assert [m.content for m in store.load(cid).messages] == ["a"]
    assert store.list() == [cid]


@given(st.text(min_size=1, max_size=60).filter(lambda s: s.isprintable()), st.integers(1, 64))
def test_any_id_maps_its_keys_and_its_bucket_to_one_slot(cid, shards):
    layout = Layout("aikit:conversation", "aikit", shards)
    keys = layout.conversation(cid)
    assert len({crc16_slot(key.encode()) for key in keys}) == 1
    assert keys.recent == layout.buckets()[layout.bucket_of(cid)].recent


@pytest.mark.parametrize("shards", [1, 3, 16, 256])
def test_buckets_sit_on_evenly_spaced_slots(shards):
    layout = Layout("p", "n", shards)
    slots = [key_slot(bucket.recent.encode()) for bucket in layout.buckets()]
    assert slots == [k * 16384 // shards for k in range(shards)]
    assert all(len(tag) <= 4 for tag in bucket_tags(shards))


def test_conversations_spread_evenly_over_the_buckets():
    layout = Layout("p", "n", 16)
    counts = [0] * 16
    for i in range(3200):
        counts[layout.bucket_of(f"conversation-{i}")] += 1
    assert min(counts) > 120 and max(counts) < 280


def test_key_layout_is_the_documented_one(make_redis_store, redis_client):
    store = make_redis_store(NAMESPACE="layout", OPTIONS={"KEY_PREFIX": "app:conv"})
    saved = store.save(
        "c{1}", [msg("a", id="m1")], ttl=600, owner="own{er}", metadata={"title": "T"}
    )
    store.append("c{1}", [msg("b", id="m2")])
    store.put(past_conversation("dead", ["x"]))
    found = {key.decode() for key in redis_client.scan_iter(match="app:conv:layout:*")}
    tag = "app:conv:layout:{la2}"  # the shortest tag in slot 0
    assert found == {
        f"{tag}:m:c{{1}}",
        f"{tag}:d:c{{1}}",
        f"{tag}:x:c{{1}}",
        f"{tag}:i:c{{1}}",
        f"{tag}:m:dead",
        f"{tag}:recent",
        f"{tag}:expiry",
        f"{tag}:names",
        f"{tag}:totals",
        f"{tag}:owner:own{{er}}",
        "app:conv:layout:layout",
    }
    meta = redis_client.hgetall(f"{tag}:m:c{{1}}")
    assert meta[b"ttl"] == b"600"
    assert meta[b"owner"] == b"own{er}"
    assert meta[b"message_count"] == b"2"
    assert json.loads(meta[b"m:title"]) == "T"
    data = redis_client.get(f"{tag}:d:c{{1}}")
    assert int(meta[b"size"]) == len(data)
    assert [item["content"] for item in json.loads(data)] == ["a", "b"]
    second = data.index(b',{"role"') + 1
    assert redis_client.get(f"{tag}:x:c{{1}}") == struct.pack("<II", 1, second)
    assert redis_client.smembers(f"{tag}:i:c{{1}}") == {b"m1", b"m2"}
    updated = int(meta[b"updated_at"])
    assert redis_client.zscore(f"{tag}:recent", "c{1}") == updated
    # The expiry index holds a time at or before the expiry: appends do not move it.
    assert redis_client.zscore(f"{tag}:expiry", "c{1}") == saved.metadata.expires_at
    assert saved.metadata.expires_at <= updated + 600_000
    assert int(meta[b"kexp"]) == saved.metadata.expires_at + 600_000 // 8
    messages, size = struct.unpack(">qq", redis_client.get(f"{tag}:totals"))
    dead = int(redis_client.hget(f"{tag}:m:dead", "size"))  # counted until cleanup()
    assert (messages, size) == (3, len(data) + len("title") + len('"T"') + dead)
    assert redis_client.zscore(f"{tag}:owner:own{{er}}", "c{1}") == updated
    assert redis_client.zscore(f"{tag}:names", "dead") == 0
    assert redis_client.get("app:conv:layout:layout") == b"2 shards=1"


def test_stores_with_different_namespaces_or_prefixes_never_share_keys(make_redis_store):
    first = make_redis_store(NAMESPACE="a")
    second = make_redis_store(NAMESPACE="a:owner")
    third = make_redis_store(NAMESPACE="a", OPTIONS={"KEY_PREFIX": "other"})
    fourth = make_redis_store(NAMESPACE="a:0", OPTIONS={"INDEX_SHARDS": 3})
    first.save("index", [msg("1")], owner="x")
    second.save("x", [msg("2")], owner="index")
    third.save("index", [msg("3")])
    fourth.save("index", [msg("4")])
    assert [m.content for m in first.load("index").messages] == ["1"]
    assert second.load("index") is None
    assert first.load("x") is None
    assert first.list_conversations(owner="index").total == 0
    assert [m.content for m in third.load("index").messages] == ["3"]
    assert [m.content for m in fourth.load("index").messages] == ["4"]
    assert first.clear() == 1
    assert second.list() == ["x"] and third.list() == ["index"] and fourth.list() == ["index"]


def test_a_store_refuses_data_written_with_another_bucket_count(make_redis_store):
    one = make_redis_store(OPTIONS={"INDEX_SHARDS": 1})
    one.save("c", [msg("a")])
    four = make_redis_store(NAMESPACE=one.namespace, OPTIONS={"INDEX_SHARDS": 4})
    with pytest.raises(BackendError, match=r"'2 shards=1'.*'2 shards=4'.*INDEX_SHARDS"):
        four.load("c")
    assert [m.content for m in one.load("c").messages] == ["a"]


# -- the data string, offsets and ids ---------------------------------------------------------


def test_duplicates_anywhere_in_a_batch_are_skipped_and_offsets_stay_right(make_redis_store):
    store = make_redis_store()
    store.save("c", [msg(f"m{i}", id=f"m{i}") for i in range(4)])
    meta = store.append(
        "c",
        [
            msg("new-a", id="a"),
            msg("dup", id="m1"),
            msg("new-b", id="b", tool_calls=[{"id": "t", "function": {"name": "f"}}]),
            msg("dup", id="m3"),
            msg("new-c", id="c"),
            msg("dup", id="m0"),
        ],
    )
    assert meta.message_count == 7
    contents = ["m0", "m1", "m2", "m3", "new-a", "new-b", "new-c"]
    assert [m.content for m in store.load("c").messages] == contents
    for last in range(8):
        assert [m.content for m in store.load("c", last=last).messages] == contents[7 - last :]
    assert [m.id for m in store.pop("c", 2)] == ["b", "c"]
    assert store.append("c", [msg("c again", id="c"), msg("a", id="a")]).message_count == 6
    assert [m.content for m in store.load("c").messages][-2:] == ["new-a", "c again"]


def test_removed_bytes_are_reused_and_the_string_is_compacted(make_redis_store, redis_client):
    store = make_redis_store()
    big = "x" * 1000
    store.save("c", [msg(f"{big}{i}", id=str(i)) for i in range(100)])
    data_key = store.layout.conversation("c").data
    full = redis_client.strlen(data_key)
    store.pop("c", 3)
    assert redis_client.strlen(data_key) == full  # shortened logically only
    store.append("c", [msg(f"{big}new", id="new")])
    assert redis_client.strlen(data_key) == full  # the append reused the freed bytes
    loaded = store.load("c")
    assert [m.id for m in loaded.messages][-2:] == ["96", "new"]
    assert int(redis_client.hget(store.layout.conversation("c").meta, "size")) < full
    store.truncate("c", 10)
    kept = redis_client.strlen(data_key)
    assert kept < full // 5  # more than half was garbage: rewritten to the live part
    assert [m.id for m in store.load("c").messages] == [str(i) for i in range(10)]
    assert redis_client.smembers(store.layout.conversation("c").ids) == {
        str(i).encode() for i in range(10)
    }
    store.truncate("c", 0)
    assert redis_client.exists(*data_keys(store, "c")) == 0
    assert store.load("c").messages == []


def test_pop_and_truncate_near_the_end_read_only_what_they_remove(counting_store):
    store = counting_store
    content = "y" * 300
    for start in range(0, 10_000, 1000):
        store.append("long", [msg(f"{content}{i}", id=str(i)) for i in range(start, start + 1000)])
    store.pop("long")  # warm up
    CountingConnection.reset()
    (popped,) = store.pop("long")
    assert popped.id == "9998"
    assert CountingConnection.requests == 1 and CountingConnection.received < 2_000
    CountingConnection.reset()
    meta = store.truncate("long", 9990)
    assert meta.message_count == 9990
    assert CountingConnection.requests == 1 and CountingConnection.received < 2_000
    assert store.load("long", last=1).messages[0].id == "9989"


def test_big_batches_are_staged_and_never_left_behind(
    make_redis_store, redis_client, redis_server
):
    """A batch over STAGE_BYTES reaches the script through staging keys in one MULTI."""
    store = make_redis_store()
    big = [msg("s" * 500, id=f"b{i}") for i in range(2 * operations.STAGE_BYTES // 500)]
    stage = store.layout.stage("c")
    saved = store.save("c", big, owner="alice", metadata={"k": 1})
    assert [m.id for m in store.load("c").messages] == [m["id"] for m in big]
    assert store.load("c", last=2).messages[-1].id == big[-1]["id"]
    assert redis_client.exists(*stage) == 0
    with pytest.raises(OwnerMismatchError):
        store.save("c", big[:40], owner="bob")
    assert store.create("c", big) is None
    assert redis_client.exists(*stage) == 0
    assert store.load("c").to_dict()["messages"] == saved.to_dict()["messages"]
    redis_server.command("SCRIPT", "FLUSH")  # the transaction's EVALSHA fails: runs again
    store.put(store.load("c"))
    assert store.append("c", [msg("one more", id="b0"), msg("new", id="n")]).message_count == (
        len(big) + 1
    )
    assert store.get_stats().total_messages == len(big) + 1
    assert redis_client.exists(*stage) == 0


# -- expiry -------------------------------------------------------------------------------


def expiry_times(client, keys):
    return {client.pexpiretime(key) for key in keys}


def test_message_keys_expire_a_little_after_the_conversation_and_the_meta_waits(
    make_redis_store, redis_client
):
    """The data, offsets and ids keys expire an eighth of the TTL after the conversation,
    so appends only move their expiry when the conversation's passes theirs."""
    store = make_redis_store()
    slack = 100_000 // 8
    saved = store.save("c", [msg("a")], ttl=100)
    keys = data_keys(store, "c")
    first = saved.metadata.updated_at + 100_000 + slack
    assert expiry_times(redis_client, keys) == {first}
    assert redis_client.pttl(store.layout.conversation("c").meta) == -1

    appended = store.append("c", [msg("b")])
    assert appended.expires_at <= first  # still covered: the keys' expiry does not move
    assert expiry_times(redis_client, keys) == {first}

    late = saved.metadata.updated_at - 95_000  # five seconds left, less than the slack
    store.put(
        Conversation(
            "old",
            [Message(role="user", content="x")],
            ConversationMetadata("old", late, late, message_count=1, ttl=100),
        )
    )
    assert expiry_times(redis_client, data_keys(store, "old")) == {late + 100_000 + slack}
    moved = store.append("old", [msg("y")])
    assert expiry_times(redis_client, data_keys(store, "old")) == {moved.expires_at + slack}

    store.save("empty", [], ttl=100)
    assert redis_client.exists(*data_keys(store, "empty")) == 0
    before = store.load("empty").metadata.expires_at
    store.append("empty", [msg("first")], update_timestamp=False)
    assert expiry_times(redis_client, data_keys(store, "empty")) == {before + slack}


def test_set_ttl_zero_persists_the_keys(make_redis_store, redis_client):
    store = make_redis_store()
    store.save("c", [msg("a")], ttl=100)
    keys = data_keys(store, "c")
    assert store.set_ttl("c", 0) is True
    assert {redis_client.ttl(key) for key in keys} == {-1}
    assert redis_client.zscore(store.layout.conversation("c").expiry, "c") is None
    assert store.get_ttl("c") == -1
    assert [m.content for m in store.load("c").messages] == ["a"]
    assert store.set_ttl("c", 50) is True
    assert all(50 <= redis_client.ttl(key) <= 50 + 50 // 8 for key in keys)
    assert redis_client.zscore(store.layout.conversation("c").expiry, "c") is not None


def test_put_of_an_expired_conversation_is_invisible_and_cleanup_prunes_it(
    make_redis_store, redis_client
):
    store = make_redis_store()
    store.save("live", [msg("a")])
    store.put(past_conversation("dead", ["x", "y"], owner="o"))
    keys = store.layout.conversation("dead")
    assert redis_client.exists(*data_keys(store, "dead")) == 0
    assert store.load("dead", include_expired=True) is None
    assert store.list() == ["live"]
    assert store.list_conversations(owner="o").total == 0
    stats = store.get_stats()
    assert (stats.total_conversations, stats.total_messages) == (1, 1)
    assert stats.expired_conversations == 1
    assert store.cleanup() == 1
    assert store.get_stats().expired_conversations == 0
    assert redis_client.exists(keys.meta) == 0
    assert redis_client.zscore(keys.recent, "dead") is None
    assert redis_client.exists(store.layout.owner_index(0, "o")) == 0
    assert store.cleanup() == 0


@pytest.mark.parametrize("shards", [1, 3])
def test_cleanup_and_clear_work_in_batches(make_redis_store, monkeypatch, shards):
    monkeypatch.setattr(operations, "SWEEP_BATCH", 7)
    store = make_redis_store(OPTIONS={"INDEX_SHARDS": shards})
    for i in range(30):
        store.put(past_conversation(f"d{i}", ["x"], owner=f"o{i % 4}"))
    for i in range(20):
        store.save(f"live{i}", [msg("a")], owner="o1")
    assert store.cleanup() == 30
    assert store.get_stats().expired_conversations == 0
    assert store.clear() == 20
    stats = store.get_stats()
    assert (stats.total_conversations, stats.total_messages, stats.storage_size) == (0, 0, 0)


def test_stats_follow_every_write_without_reading_messages(make_redis_store):
    store = make_redis_store()
    store.save("a", [msg("1" * 10), msg("2" * 10)], metadata={"k": "v"})
    store.append("a", [msg("3")])
    store.save("b", [msg("x")])
    store.save("b", [msg("y"), msg("z")])
    store.update_metadata("b", {"long": "w" * 20})
    store.update_metadata("b", {"s": 1}, replace=True)
    store.pop("a")
    store.put(past_conversation("gone", ["p", "q", "r"]))
    stats = store.get_stats()
    assert (stats.total_conversations, stats.total_messages) == (2, 4)
    # What the data strings hold: each conversation's messages as one JSON array.
    arrays = [codec.encode_messages(store.load(cid).messages) for cid in ("a", "b")]
    expected = sum(map(len, arrays)) + len("k") + len('"v"') + len("s") + len("1")
    assert stats.storage_size == expected
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
    shards=st.sampled_from([1, 2, 5, 16]),
    owner=st.sampled_from([None, "o1", "o2", "nobody"]),
    prefix=st.sampled_from([None, "a", "ab", "b", "ü", "a{", "q"]),
    limit=st.integers(1, 6),
    offset=st.integers(0, 12),
)
def test_listing_matches_the_memory_store(
    redis_server, specs, shards, owner, prefix, limit, offset
):
    """Pages, totals, filters and expiry skipping agree with the reference, for any buckets."""
    namespace = f"h{uuid.uuid4().hex[:10]}"
    redis_store = create_store(
        {
            "BACKEND": "django_convstore.backends.redis.RedisStore",
            "LOCATION": redis_server.url,
            "NAMESPACE": namespace,
            "OPTIONS": {"INDEX_SHARDS": shards},
        }
    )
    memory_store = create_store({"type": "memory", "location": namespace})
    base = now_ms()
    try:
        for name, number, spec_owner, age, expired in specs:
            updated = base - (60_000 if expired else 0) - age * 1000
            conversation = Conversation(
                conversation_id=f"{name}{number}",
                messages=[Message(role="user", content="m", id=f"m{i}") for i in range(number)],
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
        streamed = {c.conversation_id for c in redis_store.iter_conversations(batch_size=2)}
        assert streamed == {m.conversation_id for m in everything.items}
    finally:
        redis_store.clear()
        redis_store.close()
        memory_store.clear()


@pytest.mark.parametrize("shards", [1, 4])
def test_iteration_pages_through_every_bucket(make_redis_store, shards):
    store = make_redis_store(OPTIONS={"INDEX_SHARDS": shards})
    ids = [f"c{i:03d}" for i in range(25)]
    for cid in ids:
        store.save(cid, [msg(cid)], owner="o" if cid < "c010" else None)
    store.put(past_conversation("c100-dead", ["x"]))
    store.pop("c003")
    streamed = list(store.iter_conversations(batch_size=4))
    assert sorted(c.conversation_id for c in streamed) == ids
    by_id = {c.conversation_id: c for c in streamed}
    assert by_id["c003"].messages == []
    assert all(c.messages[0].content == c.conversation_id for c in streamed if c.messages)
    assert sorted(c.conversation_id for c in store.iter_conversations(owner="o")) == ids[:10]


# -- round trips and commands -------------------------------------------------------------


@pytest.fixture
def counting_store(make_redis_store):
    return make_redis_store(
        OPTIONS={"CONNECTION_POOL_KWARGS": {"connection_class": CountingConnection}}
    )


def test_one_round_trip_per_operation(counting_store, redis_server):
    store = counting_store
    operations_ = {
        "save": lambda: store.save("c", [msg("a"), msg("b")], ttl=600, metadata={"k": 1}),
        "save (staged)": lambda: store.save("big", [msg("x" * 1000) for _ in range(40)]),
        "create": lambda: store.create("new", [msg("a")]),
        "append": lambda: store.append("c", [msg("c")]),
        "append (duplicate)": lambda: store.append("c", [msg("c", id="same")]),
        "load": lambda: store.load("c"),
        "load(last=1)": lambda: store.load("c", last=1),
        "load (stranger)": lambda: store.load("c", owner="stranger"),
        "exists": lambda: store.exists("c"),
        "get_ttl": lambda: store.get_ttl("c"),
        "set_ttl": lambda: store.set_ttl("c", 300),
        "update_metadata": lambda: store.update_metadata("c", {"k": 2}),
        "pop": lambda: store.pop("c"),
        "truncate": lambda: store.truncate("c", 1),
        "list": lambda: store.list(),
        "list_conversations": lambda: store.list_conversations(owner="u", prefix="c"),
        "get_stats": lambda: store.get_stats(),
        "put": lambda: store.put(past_conversation("p", ["x"])),
        "cleanup": lambda: store.cleanup(),
        "delete": lambda: store.delete("new"),
    }
    for operation in operations_.values():  # warm up: connect, check the layout, load scripts
        operation()
    plain = {"exists", "get_ttl", "load"}
    for name, operation in operations_.items():
        before = redis_server.commandstats().get("evalsha", 0)
        CountingConnection.reset()
        operation()
        assert CountingConnection.requests == 1, name
        evalsha = redis_server.commandstats().get("evalsha", 0) - before
        assert evalsha == (0 if name in plain else 1), name
    assert store.load("big").metadata.message_count == 40


def test_loads_read_messages_without_lua(counting_store, redis_server):
    """A whole load is one MULTI (HGETALL + GET); acting for an owner, a script decides
    first, and a long conversation's messages then come with GETRANGE in a MULTI."""
    store = counting_store
    store.save("long", [msg("z" * 200) for _ in range(500)], owner="o")
    store.load("long", owner="o")

    def used(operation):
        before = redis_server.commandstats()
        CountingConnection.reset()
        result = operation()
        after = redis_server.commandstats()
        names = ("evalsha", "multi", "exec", "hgetall", "get", "getrange")
        return (
            result,
            CountingConnection.requests,
            {
                name: after.get(name, 0) - before.get(name, 0)
                for name in names
                if after.get(name, 0) != before.get(name, 0)
            },
        )

    loaded, requests, commands = used(lambda: store.load("long"))
    assert len(loaded.messages) == 500
    assert requests == 1
    assert commands == {"multi": 1, "exec": 1, "hgetall": 1, "get": 1}
    loaded, requests, commands = used(lambda: store.load("long", owner="o"))
    assert len(loaded.messages) == 500
    assert requests == 2
    assert commands == {"evalsha": 1, "multi": 1, "exec": 1, "hgetall": 2, "getrange": 1}
    window, requests, _ = used(lambda: store.load("long", last=300))
    assert [m.content for m in window.messages] == ["z" * 200] * 300
    assert requests == 2
    short, requests, commands = used(lambda: store.load("long", last=3))
    assert len(short.messages) == 3
    assert requests == 1 and commands["evalsha"] == 1


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


def _net_output(server) -> int:
    info = str(server.command("INFO", "stats"))
    line = next(x for x in info.splitlines() if x.startswith("total_net_output_bytes:"))
    return int(line.split(":")[1])


def test_a_strangers_reads_of_a_long_conversation_read_no_message(counting_store, redis_server):
    """Issue 14: acting for another owner reads only the metadata, not 20,000 messages."""
    store = counting_store
    body = "secret " * 40
    for start in range(0, 20_000, 1000):
        store.append("big", [msg(f"{body}{i}") for i in range(start, start + 1000)], owner="alice")
    store.load("big", owner="bob")  # warm up
    start = _net_output(redis_server)
    info_reply = _net_output(redis_server) - start  # what one INFO itself adds
    reads = {
        "load": lambda: store.load("big", owner="bob"),
        "load(last=5)": lambda: store.load("big", owner="bob", last=5),
        "exists": lambda: store.exists("big", owner="bob"),
        "get_ttl": lambda: store.get_ttl("big", owner="bob"),
        "pop": lambda: store.pop("big", owner="bob"),
        "truncate": lambda: store.truncate("big", 0, owner="bob"),
        "iter": lambda: list(store.iter_conversations(owner="bob")),
        "list": lambda: store.list_conversations(owner="bob").items,
    }
    for name, read in reads.items():
        before = _net_output(redis_server)
        CountingConnection.reset()
        result = read()
        sent = _net_output(redis_server) - before - info_reply
        assert not result or result == -2, name
        assert CountingConnection.received < 1_000, name
        assert sent < 1_000, name
    before = _net_output(redis_server)
    assert store.load("big", owner="alice").metadata.message_count == 20_000
    assert _net_output(redis_server) - before > 20_000 * len(body)


def test_no_keys_or_scan_command_is_ever_sent(make_redis_store, redis_server):
    store = make_redis_store(TTL=600, OPTIONS={"INDEX_SHARDS": 3})
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
    store.pop("a")
    store.truncate("a", 0)
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
    store = make_redis_store(OPTIONS={"INDEX_SHARDS": 2})
    store.save("c", [msg("a")])
    redis_server.command("SCRIPT", "FLUSH")
    store.append("c", [msg("b")])
    redis_server.command("SCRIPT", "FLUSH")
    assert store.get_stats().total_messages == 2  # a pipelined batch of scripts
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
    assert store.update_metadata("big", {"new": 1}, replace=True).metadata == {"new": 1}
    assert [m.id for m in store.pop("big", 1500)] == [f"id{i}" for i in range(1000, 2500)]
    assert store.append("big", messages[999:1200]).message_count == 1200


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


def test_stores_with_the_same_settings_share_one_pool(make_redis_store):
    one = make_redis_store(NAMESPACE="pool-a")
    two = make_redis_store(NAMESPACE="pool-b")
    other = make_redis_store(OPTIONS={"SOCKET_TIMEOUT": 2})
    assert one.client.connection_pool is two.client.connection_pool
    assert other.client.connection_pool is not one.client.connection_pool


def test_responses_decoded_by_the_pool_are_handled(make_redis_store):
    store = make_redis_store(OPTIONS={"CONNECTION_POOL_KWARGS": {"decode_responses": True}})
    store.save("ü", [msg("héllo", metadata={"k": "ü"})], metadata={"t": 1}, owner="o")
    store.append("ü", [msg("2")])
    store.save("long", [msg("é" * 500) for _ in range(100)])
    assert [m.content for m in store.load("ü").messages] == ["héllo", "2"]
    assert [m.content for m in store.load("ü", last=1).messages] == ["2"]
    assert len(store.load("long").messages) == 100
    assert len(store.load("long", last=90).messages) == 90
    assert [m.content for m in store.pop("ü")] == ["2"]
    assert sorted(store.list()) == ["long", "ü"]
    assert store.list_conversations(owner="o").items[0].metadata == {"t": 1}
    assert {c.conversation_id for c in store.iter_conversations()} == {"long", "ü"}
    assert store.get_stats().total_messages == 101


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
