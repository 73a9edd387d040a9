"""The Redis store on a real local Redis Cluster: what is specific to ``OPTIONS["CLUSTER"]``.

The contract suite, the API tests and the command tests run on the cluster
too (their ``redis_cluster`` legs); here: configuration, how data and
requests spread over the masters, round trips, slot moves, TLS and
passwords, many processes at once, and a master killed while writers run.
"""

from __future__ import annotations

import asyncio
import collections
import io
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from django_convstore import BackendUnavailableError, create_store
from django_convstore.backends.redis import DEFAULT_CLUSTER_INDEX_SHARDS, RedisStore
from django_convstore.backends.redis.cluster import slot_of_key
from django_convstore.backends.redis.cluster_async import AsyncClusterRunner
from django_convstore.backends.redis.layout import bucket_tags, key_slot
from django_convstore.exceptions import ConvStoreError
from tests.fixtures.redis_cluster import cluster_store_config
from tests.servers.redis_cluster import ClusterNode, LocalCluster

pytest.importorskip("redis", reason="the redis extra is not installed")

PROCESSES = 6
APPENDS = 150
RECOVERY_TIMEOUT = 30.0


def msg(content: str, **extra: Any) -> dict[str, Any]:
    return {"role": "user", "content": content, **extra}


def _store(config: dict[str, Any], alias: str = "cluster") -> RedisStore:
    config = {**config, "NAMESPACE": config.get("NAMESPACE") or f"c{uuid.uuid4().hex[:10]}"}
    store = create_store(config, alias=alias)
    assert isinstance(store, RedisStore)
    return store


def _master_serving(cluster: LocalCluster, slot: int) -> ClusterNode:
    for master in cluster.masters():
        if any(first <= slot <= last for first, last in master.myself().slots):
            return master
    raise AssertionError(f"no master serves slot {slot}")


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "options", "complaint"),
    [
        ("redis://127.0.0.1:7000", {"CLUSTER": "yes"}, "True or False"),
        ("unix:///run/redis.sock", {"CLUSTER": True}, "unix sockets"),
        ("redis://127.0.0.1:7000/3", {"CLUSTER": True}, "only database 0"),
        ("", {"CLUSTER": True, "CACHE": "default"}, "django-redis has no Redis Cluster client"),
    ],
)
def test_bad_cluster_settings_are_refused_up_front(
    location: str, options: dict[str, Any], complaint: str
) -> None:
    config = {"BACKEND": "django_convstore.backends.redis.RedisStore", "OPTIONS": options}
    if location:
        config["LOCATION"] = location
    with pytest.raises(ImproperlyConfigured, match=complaint):
        create_store(config, alias="bad")


def test_no_cluster_at_the_seed_is_backend_unavailable_naming_it() -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = _store(
        {
            "BACKEND": "django_convstore.backends.redis.RedisStore",
            "LOCATION": f"redis://127.0.0.1:{port}",
            "OPTIONS": {"CLUSTER": True, "SOCKET_TIMEOUT": 0.5},
        }
    )
    with pytest.raises(BackendUnavailableError, match=f"127.0.0.1:{port}"):
        store.save("c", [msg("hi")])


def test_buckets_and_conversations_spread_evenly_over_the_masters(
    redis_cluster: LocalCluster,
) -> None:
    store = _store(cluster_store_config(redis_cluster))
    assert store.layout.shards == DEFAULT_CLUSTER_INDEX_SHARDS
    per_master = collections.Counter(
        _master_serving(redis_cluster, key_slot(tag)).port
        for tag in bucket_tags(DEFAULT_CLUSTER_INDEX_SHARDS)
    )
    assert len(per_master) == len(redis_cluster.masters())
    assert max(per_master.values()) - min(per_master.values()) <= 1

    for i in range(600):
        store.save(f"spread-{i}", [msg(str(i))])
    conversations = collections.Counter(
        _master_serving(
            redis_cluster, slot_of_key(store.layout.conversation(f"spread-{i}").meta)
        ).port
        for i in range(600)
    )
    assert min(conversations.values()) >= 600 / len(per_master) * 0.8
    assert store.list_conversations(prefix="spread-", limit=1).total == 600
    store.clear()


def _scripts_run(masters: list[ClusterNode]) -> int:
    """How many scripts (``EVALSHA``/``EVAL``) the masters ran (commands a script calls count
    in ``commandstats`` too, so they cannot be told from the store's own)."""
    total = 0
    for master in masters:
        for line in str(master.call("INFO", "commandstats")).splitlines():
            name, _, fields = line.partition(":")
            if name in ("cmdstat_evalsha", "cmdstat_eval"):
                total += int(fields.split(",")[0].removeprefix("calls="))
    return total


def test_each_write_and_read_is_one_script_on_one_master(redis_cluster: LocalCluster) -> None:
    store = _store(cluster_store_config(redis_cluster, INDEX_SHARDS=1))

    def calls(cid: str) -> list[tuple[str, Callable[[], Any]]]:
        return [
            ("save", lambda: store.save(cid, [msg("one")], owner="alice")),
            ("append", lambda: store.append(cid, [msg("two")], owner="alice")),
            ("load", lambda: store.load(cid, owner="alice")),
            ("pop", lambda: store.pop(cid, owner="alice")),
            ("truncate", lambda: store.truncate(cid, 0, owner="alice")),
            ("update_metadata", lambda: store.update_metadata(cid, {"k": 1}, owner="alice")),
            ("set_ttl", lambda: store.set_ttl(cid, 60, owner="alice")),
            ("delete", lambda: store.delete(cid, owner="alice")),
        ]

    for _, call in calls("warm-up"):  # the master learns the scripts (NOSCRIPT, then EVAL)
        call()
    masters = redis_cluster.masters()
    for name, call in calls("counted"):
        before = _scripts_run(masters)
        call()
        assert _scripts_run(masters) - before == 1, name


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_slot_that_moved_is_followed(
    make_redis_cluster: Callable[..., LocalCluster], mode: str
) -> None:
    cluster = make_redis_cluster(masters=2, replicas=0)
    store = _store(cluster_store_config(cluster, INDEX_SHARDS=4))
    store.save("before", [msg("x")])
    cid = "moves"
    slot = slot_of_key(store.layout.conversation(cid).meta)
    old = _master_serving(cluster, slot)
    new = next(master for master in cluster.masters() if master is not old)
    # Move the (bucket's) slot with its keys, as redis-cli --cluster reshard does.
    new.call("CLUSTER", "SETSLOT", str(slot), "IMPORTING", old.node_id)
    old.call("CLUSTER", "SETSLOT", str(slot), "MIGRATING", new.node_id)
    keys = old.call("CLUSTER", "GETKEYSINSLOT", str(slot), "1000") or []
    if keys:
        old.call("MIGRATE", "127.0.0.1", str(new.port), "", "0", "5000", "KEYS", *map(str, keys))
    for master in cluster.masters():
        master.call("CLUSTER", "SETSLOT", str(slot), "NODE", new.node_id)

    # The store's slot map is stale: MOVED, then the new owner.
    if mode == "sync":
        store.append(cid, [msg("after the move")])
    else:
        asyncio.run(store.aappend(cid, [msg("after the move")]))
    assert [m.content for m in store.load(cid).messages] == ["after the move"]  # type: ignore[union-attr]
    assert int(new.call("CLUSTER", "COUNTKEYSINSLOT", str(slot))) > 0
    assert int(old.call("CLUSTER", "COUNTKEYSINSLOT", str(slot))) == 0
    assert sorted(store.list()) == ["before", "moves"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_write_during_a_slot_migration_waits_for_it(
    make_redis_cluster: Callable[..., LocalCluster], mode: str
) -> None:
    """While a slot migrates, the old master answers ASK for keys it no longer has: a one-key
    read follows it (ASKING, then the command, on the new master). The new master answers a
    multi-key script TRYAGAIN until the migration ends (Redis's rule): the store retries
    and lands the write once the slot has moved."""
    cluster = make_redis_cluster(masters=2, replicas=0)
    store = _store(cluster_store_config(cluster, INDEX_SHARDS=4))
    cid = "migrating"
    store.save(cid, [msg("before")])
    slot = slot_of_key(store.layout.conversation(cid).meta)
    old = _master_serving(cluster, slot)
    new = next(master for master in cluster.masters() if master is not old)
    new.call("CLUSTER", "SETSLOT", str(slot), "IMPORTING", old.node_id)
    old.call("CLUSTER", "SETSLOT", str(slot), "MIGRATING", new.node_id)
    keys = old.call("CLUSTER", "GETKEYSINSLOT", str(slot), "1000")
    assert keys
    old.call("MIGRATE", "127.0.0.1", str(new.port), "", "0", "5000", "KEYS", *map(str, keys))

    # A one-key read is served by the new master after ASKING.
    assert (store.exists(cid) if mode == "sync" else asyncio.run(store.aexists(cid))) is True

    errors: list[BaseException] = []

    def append() -> None:
        try:
            if mode == "sync":
                store.append(cid, [msg("during the move")])
            else:
                asyncio.run(store.aappend(cid, [msg("during the move")]))
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=append)
    writer.start()
    time.sleep(0.5)  # the write keeps being sent on and told to try again
    assert writer.is_alive()
    for master in cluster.masters():
        master.call("CLUSTER", "SETSLOT", str(slot), "NODE", new.node_id)
    writer.join(10)
    assert not errors, errors
    loaded = store.load(cid)
    assert loaded is not None
    assert [m.content for m in loaded.messages] == ["before", "during the move"]
    assert int(old.call("CLUSTER", "COUNTKEYSINSLOT", str(slot))) == 0
    assert "errorstat_ASK:" in str(old.call("INFO", "errorstats"))
    assert "errorstat_TRYAGAIN:" in str(new.call("INFO", "errorstats"))


def test_tls_and_a_password(make_redis_cluster: Callable[..., LocalCluster]) -> None:
    cluster = make_redis_cluster(masters=3, replicas=0, password="s3cret", tls=True)
    assert cluster.seed_url.startswith("rediss://")
    config = cluster_store_config(cluster, CONNECTION_POOL_KWARGS=cluster.client_kwargs)
    store = _store(config)
    for i in range(30):
        store.append(f"tls-{i}", [msg(str(i))])
    assert store.get_stats().total_messages == 30
    wrong = _store({**config, "LOCATION": cluster.seed_url.replace("s3cret", "wrong")})
    with pytest.raises(ConvStoreError) as caught:
        wrong.load("tls-1")
    assert "wrong" not in str(caught.value) and "s3cret" not in str(caught.value)


def test_the_upgrade_command_on_a_cluster_alias(
    redis_cluster: LocalCluster, settings: Any
) -> None:
    config = {**cluster_store_config(redis_cluster), "NAMESPACE": f"u{uuid.uuid4().hex[:8]}"}
    settings.CONVSTORE = {"default": {"BACKEND": "memory"}, "clustered": config}
    from django_convstore.handler import stores

    stores["clustered"].save("kept", [msg("x")])
    out = io.StringIO()
    call_command("convstore_redis_upgrade", "--store", "clustered", stdout=out)
    assert out.getvalue().splitlines() == [
        "clustered: moved 0 conversations, dropped 0 expired, 0 failed"
    ]
    assert [m.content for m in stores["clustered"].load("kept").messages] == ["x"]  # type: ignore[union-attr]
    stores["clustered"].clear()


# -- many processes -------------------------------------------------------------------------


def _worker(
    config: dict[str, Any], worker: int, conversations: int, start: Any, done: Any
) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from django_convstore import create_store

    store = create_store(config, alias=f"worker-{worker}")
    store.exists("warm-up")
    start.wait()
    for i in range(APPENDS):
        cid = "shared" if conversations == 1 else f"conv-{(worker * APPENDS + i) % conversations}"
        store.append(cid, [msg(f"{worker}:{i}", id=f"w{worker}-{i}")], owner="team")
    store.close()
    done.put(worker)


@pytest.mark.slow
@pytest.mark.parametrize("conversations", [1, 100])
def test_processes_appending_lose_and_duplicate_nothing(
    redis_cluster: LocalCluster, conversations: int
) -> None:
    config = {**cluster_store_config(redis_cluster), "NAMESPACE": f"p{uuid.uuid4().hex[:8]}"}
    store = _store(config)
    # spawn: this process has threads (the cluster runner asks masters in parallel), and
    # fork would copy whatever lock one of them held.
    context: Any = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    done = context.Queue()
    processes = [
        context.Process(target=_worker, args=(config, worker, conversations, start, done))
        for worker in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(180)
        assert process.exitcode == 0
    assert sorted(done.get(timeout=5) for _ in processes) == list(range(PROCESSES))

    seen: list[str] = []
    for cid in store.list():
        loaded = store.load(cid)
        assert loaded is not None
        assert loaded.metadata.message_count == len(loaded.messages)
        seen.extend(str(m.id) for m in loaded.messages)
        for worker in range(PROCESSES):  # each process's messages in its own order
            own = [
                int(str(m.content).split(":")[1])
                for m in loaded.messages
                if str(m.content).startswith(f"{worker}:")
            ]
            assert own == sorted(own)
    assert len(seen) == len(set(seen)) == PROCESSES * APPENDS
    assert store.list_conversations(limit=1).total == conversations
    assert store.list_conversations(owner="team", limit=1).total == conversations
    stats = store.get_stats()
    assert (stats.total_conversations, stats.total_messages) == (
        conversations,
        PROCESSES * APPENDS,
    )
    store.clear()


# -- failover -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_killed_master_fails_over_and_the_store_recovers_by_itself(
    make_redis_cluster: Callable[..., LocalCluster], mode: str
) -> None:
    """Writer threads (``async``: each with an event loop of its own, appending through
    the native async twins) run while a master is killed."""
    cluster = make_redis_cluster(masters=3, replicas=1)
    store = _store(cluster_store_config(cluster, INDEX_SHARDS=16, SOCKET_TIMEOUT=1))
    conversations = [f"fo-{i}" for i in range(24)]
    acknowledged: list[tuple[str, str]] = []
    lock = threading.Lock()
    other_errors: list[BaseException] = []
    unavailable = [0]
    stop = threading.Event()

    async def append_async(cid: str, mid: str) -> None:
        await store.aappend(cid, [msg(mid, id=mid)])

    def writer(number: int) -> None:
        loop = asyncio.new_event_loop() if mode == "async" else None
        i = 0
        while not stop.is_set():
            cid = conversations[(number * 7 + i) % len(conversations)]
            mid = f"t{number}-{i}"
            i += 1
            try:
                if loop is None:
                    store.append(cid, [msg(mid, id=mid)])
                else:
                    loop.run_until_complete(append_async(cid, mid))
            except BackendUnavailableError:
                with lock:
                    unavailable[0] += 1
                time.sleep(0.02)
                continue
            except BaseException as exc:  # any other error fails the test
                other_errors.append(exc)
                break
            with lock:
                acknowledged.append((cid, mid))
        if loop is not None:
            loop.run_until_complete(store.aclose())
            loop.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        with lock:
            before_checkpoint = list(acknowledged)
        cluster.require_checkpoint()  # everything acknowledged so far is on a replica
        victim = _master_serving(cluster, slot_of_key(store.layout.conversation("fo-0").meta))
        cluster.kill(victim)
        killed_at = time.monotonic()
        promoted = cluster.wait_for_failover(victim)
        on_promoted = {
            cid
            for cid in conversations
            if _master_serving(cluster, slot_of_key(store.layout.conversation(cid).meta))
            is promoted
        }
        with lock:
            mark = len(acknowledged)
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        while True:  # the same store object reaches the promoted replica by itself
            with lock:
                recent = acknowledged[mark:]
            if any(cid in on_promoted for cid, _ in recent):
                recovered_after = time.monotonic() - killed_at
                break
            assert time.monotonic() < deadline, "the store did not recover"
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not other_errors, other_errors

    present: dict[str, list[str]] = {}
    for cid in conversations:
        loaded = store.load(cid)
        if loaded is None:
            continue
        assert loaded.metadata.message_count == len(loaded.messages)
        ids = [str(m.id) for m in loaded.messages]
        assert len(ids) == len(set(ids))
        present[cid] = ids
    missing = [(c, m) for c, m in before_checkpoint if m not in present.get(c, [])]
    assert not missing, f"{len(missing)} replicated writes lost: {missing[:5]}"
    print(
        f"cluster failover ({mode}): {len(acknowledged)} appends acknowledged, "
        f"{unavailable[0]} BackendUnavailableError meanwhile, "
        f"{len(before_checkpoint)} replicated before the kill, none lost; writes to the "
        f"killed master's slots worked again {recovered_after:.1f} s after the kill"
    )


def test_the_async_twins_are_native_on_a_cluster(redis_cluster: LocalCluster) -> None:
    store = _store(cluster_store_config(redis_cluster))

    async def main() -> tuple[list[int], object, int]:
        await asyncio.gather(*(store.aappend(f"a{i % 10}", [msg(str(i))]) for i in range(200)))
        loaded = await asyncio.gather(*(store.aload(f"a{i}") for i in range(10)))
        client = await store._async_client()
        total = (await store.alist_conversations(prefix="a", limit=1)).total
        await store.aclose()
        return [c.metadata.message_count for c in loaded if c is not None], client, total

    counts, client, total = asyncio.run(main())
    assert counts == [20] * 10 and total == 10
    assert isinstance(client, AsyncClusterRunner)  # not the thread fallback
    store.clear()
