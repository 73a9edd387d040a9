"""``benchmarks/cluster_bench.py`` runs against a real local cluster (tiny sizes: shape only).

What is checked is the shape: every operation is timed on both sides, the
two-phase listing over many buckets returns exactly the single index's
page, and the store mode measures the store on a real cluster.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator

import pytest

from tests.servers.redis_server import RedisServer, find_binary

pytestmark = pytest.mark.skipif(find_binary() is None, reason="no redis-server/valkey-server")
pytest.importorskip("redis", reason="the redis extra is not installed")

from benchmarks import cluster_bench  # noqa: E402


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as started:
        yield started


def test_bucket_tags_sit_on_evenly_spaced_slots() -> None:
    table = cluster_bench.slot_tags()
    assert len(table) == cluster_bench.SLOTS
    tags = cluster_bench.bucket_tags(256, table)
    slots = [cluster_bench.key_slot(f"{{{tag}}}") for tag in tags]
    assert slots == [i * 64 for i in range(256)]
    assert all(len(tag) <= 4 for tag in tags)


@pytest.mark.parametrize("offset", [0, 7, 49, 50, 180, 1000])
def test_two_phase_listing_equals_one_sorted_set(server: RedisServer, offset: int) -> None:
    from redis import Redis

    client = Redis.from_url(server.url)
    rng = random.Random(offset)
    buckets = [f"tp{offset}:{{b{i}}}" for i in range(16)]
    single = f"tp{offset}:single"
    entries = {f"c{i}": float(rng.randrange(10**9)) for i in range(300)}
    for member, score in entries.items():
        client.zadd(single, {member: score})
        client.zadd(buckets[rng.randrange(len(buckets))], {member: score})
    try:
        expected = heapq.nsmallest(offset + 50, entries.items(), key=lambda e: (-e[1], e[0]))
        page = cluster_bench.raw_list(client, buckets, offset)
        assert [(m.decode(), s) for m, s in page] == expected[offset:]
        assert page == cluster_bench.raw_list(client, [single], offset)
    finally:
        client.delete(single, *buckets)
        client.close()


@pytest.mark.slow
def test_raw_mode_times_every_operation_on_a_real_cluster() -> None:
    rows = cluster_bench.run(raw=True, smoke=True)
    names = [row["measurement"] for row in rows]
    assert names[:3] == [
        "raw append script (RedisCluster client)",
        "raw append script (the slot's node client)",
        "raw load (HGETALL + LRANGE pipeline)",
    ]
    listing = [n for n in names if str(n).startswith("raw listing")]
    assert len(listing) == 2 * len(cluster_bench.BUCKET_COUNTS)
    for row in rows:
        assert float(str(row["ratio"]).rstrip("x")) > 0
        assert row["met"] in {"yes", "NO", "-"}


@pytest.mark.slow
def test_store_mode_times_the_store_on_a_real_cluster() -> None:
    rows = cluster_bench.run(smoke=True)
    names = [str(row["measurement"]) for row in rows]
    assert names[0].startswith("append") and names[1].startswith("load")
    assert len(rows) == 2 + 2 * len(cluster_bench.BUCKET_COUNTS)
