"""Redis Cluster vs standalone Redis: the same operations on a local cluster and on one server.

The claims, each checked against the standalone store measured in the same
run on the same machine (both servers freshly started on loopback, the
cluster with one replica per master):

* append and load cost at most 1.3x on the cluster;
* listing (``list_conversations``, first page and a deep page) reads every
  index bucket, so its cost grows with ``INDEX_SHARDS``: the table shows it
  for 16, 64, 256 and 1024 buckets next to the standalone store's single
  index, the trade-off behind the default bucket count.

Each pair of operations is timed alternately, call by call, and the medians
are compared, so both see the same machine noise. ``--raw`` times the
redis-py equivalents of the store's operations (one Lua script, one
pipeline, a two-phase top-k merge over the buckets) instead of the store:
the floor the backend can reach.

    python -m benchmarks.cluster_bench [--quick] [--raw]
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import os
import string
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
django.setup()


from django_convstore import create_store  # noqa: E402
from django_convstore.backends.base import BaseStore  # noqa: E402
from django_convstore.exceptions import ConvStoreError  # noqa: E402
from tests.servers.redis_cluster import SLOTS, LocalCluster, key_slot  # noqa: E402
from tests.servers.redis_server import RedisServer  # noqa: E402

from .timing import markdown_table  # noqa: E402
from .workload import cycle, message, messages, paired_medians  # noqa: E402

REDIS_BACKEND = "django_convstore.backends.redis.RedisStore"
BUCKET_COUNTS = (16, 64, 256, 1024)
PAGE = 50
DEEP_OFFSET = 1000
TARGET_RATIO = 1.3


@dataclass(frozen=True)
class Sizes:
    """How much data and how many timed calls."""

    conversations: int
    messages_per_conversation: int
    calls: int
    list_calls: int

    @classmethod
    def of(cls, *, quick: bool, smoke: bool = False) -> Sizes:
        """``smoke`` (the test suite), ``quick`` or the full run."""
        if smoke:
            return cls(conversations=300, messages_per_conversation=4, calls=5, list_calls=3)
        if quick:
            return cls(conversations=2_000, messages_per_conversation=10, calls=200, list_calls=15)
        return cls(conversations=20_000, messages_per_conversation=10, calls=1_000, list_calls=40)


# -- the store under test ---------------------------------------------------------------------


def standalone_config(server: RedisServer, namespace: str) -> dict[str, Any]:
    """A Django-form config of a Redis store on one server (today's layout)."""
    return {"BACKEND": REDIS_BACKEND, "LOCATION": server.url, "NAMESPACE": namespace}


def cluster_config(cluster: LocalCluster, namespace: str, shards: int | None) -> dict[str, Any]:
    """A Django-form config of a Redis store on ``cluster`` with ``shards`` index buckets."""
    options: dict[str, Any] = {"CLUSTER": True}
    if shards is not None:
        options["INDEX_SHARDS"] = shards
    return {
        "BACKEND": REDIS_BACKEND,
        "LOCATION": cluster.seed_url,
        "NAMESPACE": namespace,
        "OPTIONS": options,
    }


def build_store(config: dict[str, Any], alias: str) -> BaseStore:
    """The store of ``config`` (``create_store``)."""
    return create_store(config, alias=alias)


def check_cluster_store(store: BaseStore, cluster: LocalCluster) -> None:
    """Write and read a conversation on every master (raises if one fails)."""
    ids = _ids_on_every_master(cluster, "probe")
    try:
        for cid in ids:
            store.save(cid, [message(0)])
            loaded = store.load(cid)
            assert loaded is not None and loaded.metadata.message_count == 1
            store.delete(cid)
    except ConvStoreError as exc:
        raise RuntimeError(
            f"the store cannot write on every master of the cluster: {exc}"
        ) from exc


def _ids_on_every_master(cluster: LocalCluster, prefix: str) -> list[str]:
    """Conversation ids whose plain names hash to every master (the backend may re-tag them)."""
    found: dict[int, str] = {}
    masters = cluster.masters()
    for i in itertools.count():
        cid = f"{prefix}-{i}"
        found.setdefault(cluster.master_for(cid).port, cid)
        if len(found) == len(masters) or i > 10_000:
            return list(found.values())
    raise AssertionError("unreachable")  # pragma: no cover


def seed_store(store: BaseStore, sizes: Sizes, prefix: str = "conv") -> list[str]:
    """Fill ``store`` with ``sizes.conversations`` conversations; their ids."""
    ids = [f"{prefix}-{i}" for i in range(sizes.conversations)]
    batch = messages(0, sizes.messages_per_conversation)
    for index, cid in enumerate(ids):
        store.save(cid, batch, owner=f"user-{index % 50}")
    return ids


def store_append(store: BaseStore, cid: str) -> object:
    """One ``append`` of one message: the operation timed for "append"."""
    return store.append(cid, [message(1)])


def store_load(store: BaseStore, cid: str) -> object:
    """One ``load`` of a whole conversation: the operation timed for "load"."""
    return store.load(cid)


def store_list(store: BaseStore, offset: int) -> object:
    """One page of ``list_conversations`` (newest first): the operation timed for listing."""
    return store.list_conversations(limit=PAGE, offset=offset)


# -- the raw redis-py floor -------------------------------------------------------------------

APPEND_SCRIPT = """
redis.call('RPUSH', KEYS[1], ARGV[1])
local count = redis.call('HINCRBY', KEYS[2], 'message_count', 1)
redis.call('HSET', KEYS[2], 'updated_at', ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
return count
"""


def slot_tags() -> dict[int, str]:
    """The shortest ``[a-z0-9]`` hash tag of every slot (about 20 ms to compute)."""
    alphabet = string.ascii_lowercase + string.digits
    table: dict[int, str] = {}
    for length in range(1, 5):
        for combo in itertools.product(alphabet, repeat=length):
            tag = "".join(combo)
            table.setdefault(key_slot(f"{{{tag}}}"), tag)
            if len(table) == SLOTS:
                return table
    raise AssertionError("every slot has a tag of at most 4 characters")  # pragma: no cover


def bucket_tags(count: int, table: dict[int, str]) -> list[str]:
    """Hash tags of ``count`` buckets on evenly spaced slots (even over any even slot split)."""
    return [table[index * SLOTS // count] for index in range(count)]


def bucket_of(cid: str, count: int) -> int:
    """The bucket of a conversation id (CRC-16 of the id, stable across processes)."""
    return key_slot(f"{{{cid}}}") % count


@dataclass
class RawLayout:
    """Key names of the raw layout: per-conversation keys share their bucket's hash tag."""

    prefix: str
    tags: list[str]

    def tag(self, cid: str) -> str:
        """The hash tag of ``cid``'s bucket."""
        return self.tags[bucket_of(cid, len(self.tags))]

    def conversation_keys(self, cid: str) -> list[str]:
        """``[messages, meta, bucket index]`` of ``cid``, all in one slot."""
        tag = self.tag(cid)
        return [
            f"{self.prefix}:{{{tag}}}:{cid}:msgs",
            f"{self.prefix}:{{{tag}}}:{cid}:meta",
            f"{self.prefix}:{{{tag}}}:index",
        ]

    def indexes(self) -> list[str]:
        """Every bucket's index key."""
        return [f"{self.prefix}:{{{tag}}}:index" for tag in self.tags]


def raw_seed(client: Any, layout: RawLayout, sizes: Sizes) -> list[str]:
    """Fill the raw layout with ``sizes.conversations`` conversations; their ids."""
    ids = [f"conv-{i}" for i in range(sizes.conversations)]
    body = [str(m) for m in messages(0, sizes.messages_per_conversation)]
    pipe = client.pipeline(transaction=False)
    for index, cid in enumerate(ids):
        msgs, meta, index_key = layout.conversation_keys(cid)
        pipe.rpush(msgs, *body)
        pipe.hset(meta, mapping={"message_count": len(body), "updated_at": index})
        pipe.zadd(index_key, {cid: 1_700_000_000_000 + index})
        if index % 500 == 499:
            pipe.execute()
            pipe = client.pipeline(transaction=False)
    pipe.execute()
    return ids


def raw_append(client: Any, script: Any, layout: RawLayout, cid: str) -> object:
    """The append script on ``cid``'s slot (one round trip)."""
    return script(keys=layout.conversation_keys(cid), args=[str(message(1)), 1, cid])


def raw_load(client: Any, layout: RawLayout, cid: str) -> object:
    """HGETALL + LRANGE of ``cid`` in one pipeline (one node, one round trip)."""
    msgs, meta, _ = layout.conversation_keys(cid)
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(meta)
    pipe.lrange(msgs, 0, -1)
    return pipe.execute()


def raw_list(client: Any, indexes: list[str], offset: int, limit: int = PAGE) -> list[Any]:
    """One page, newest first, over every bucket: a two-phase top-k merge.

    Phase one reads about ``2 * (offset + limit) / buckets`` entries of each
    bucket; phase two reads on, by score, only in the buckets that may hold
    more entries above the page's cutoff. Both phases are one pipeline (one
    round trip per master, in parallel).
    """
    want = offset + limit
    first_size = min(want, max(1, math.ceil(2 * want / len(indexes))))
    pipe = client.pipeline(transaction=False)
    for key in indexes:
        pipe.zrevrange(key, 0, first_size - 1, withscores=True)
    rows: list[list[Any]] = pipe.execute()
    merged = list(itertools.islice(heapq.merge(*rows, key=_newest_first), want))
    cutoff: float | str = merged[-1][1] if len(merged) == want else "-inf"
    floor = float(cutoff)
    short = [i for i, got in enumerate(rows) if len(got) == first_size and got[-1][1] >= floor]
    if short:
        pipe = client.pipeline(transaction=False)
        for i in short:
            pipe.zrevrangebyscore(indexes[i], rows[i][-1][1], cutoff, withscores=True)
        for i, more in zip(short, pipe.execute(), strict=True):
            seen = {member for member, _ in rows[i]}
            rows[i] = rows[i] + [row for row in more if row[0] not in seen]
        merged = list(itertools.islice(heapq.merge(*rows, key=_newest_first), want))
    return merged[offset:]


def _newest_first(row: tuple[Any, float]) -> tuple[float, Any]:
    return (-row[1], row[0])


# -- running ----------------------------------------------------------------------------------


@contextmanager
def servers() -> Iterator[tuple[LocalCluster, RedisServer]]:
    """A fresh local cluster (3 masters + 3 replicas) and a standalone server."""
    with LocalCluster() as cluster, RedisServer() as server:
        yield cluster, server


def ratio_row(
    name: str, cluster_seconds: float, standalone_seconds: float, limit: float | None
) -> dict[str, object]:
    """One result row: the cluster's median, the standalone baseline and their ratio."""
    ratio = cluster_seconds / standalone_seconds
    return {
        "measurement": name,
        "cluster": f"{cluster_seconds * 1e6:.0f} µs",
        "standalone (same run)": f"{standalone_seconds * 1e6:.0f} µs",
        "ratio": f"{ratio:.2f}x",
        "target": "-" if limit is None else f"≤ {limit}x",
        "met": "-" if limit is None else ("yes" if ratio <= limit else "NO"),
    }


def compare(
    name: str,
    on_cluster: Callable[[], object],
    on_standalone: Callable[[], object],
    *,
    calls: int,
    limit: float | None = None,
) -> dict[str, object]:
    """Time two callables alternately and return their :func:`ratio_row`."""
    on_cluster()
    on_standalone()
    cluster_seconds, standalone_seconds = paired_medians(on_cluster, on_standalone, calls=calls)
    return ratio_row(name, cluster_seconds, standalone_seconds, limit)


def run_store(sizes: Sizes) -> list[dict[str, object]]:
    """The store's operations, cluster vs standalone (needs a backend with CLUSTER support)."""
    rows: list[dict[str, object]] = []
    with servers() as (cluster, server):
        namespace = f"bench{uuid.uuid4().hex[:6]}"
        standalone = build_store(standalone_config(server, namespace), "bench-standalone")
        default = build_store(cluster_config(cluster, namespace, None), "bench-cluster")
        stores = [standalone, default]
        try:
            check_cluster_store(default, cluster)
            ids = seed_store(standalone, sizes)
            seed_store(default, sizes)
            next_standalone, next_cluster = cycle(ids), cycle(ids)
            rows.append(
                compare(
                    "append (1 message)",
                    lambda: store_append(default, next_cluster()),
                    lambda: store_append(standalone, next_standalone()),
                    calls=sizes.calls,
                    limit=TARGET_RATIO,
                )
            )
            rows.append(
                compare(
                    f"load ({sizes.messages_per_conversation}+ messages)",
                    lambda: store_load(default, next_cluster()),
                    lambda: store_load(standalone, next_standalone()),
                    calls=sizes.calls,
                    limit=TARGET_RATIO,
                )
            )
            for shards in BUCKET_COUNTS:
                sharded = build_store(
                    cluster_config(cluster, f"{namespace}s{shards}", shards), f"bench-{shards}"
                )
                stores.append(sharded)
                seed_store(sharded, sizes)
                for offset in (0, DEEP_OFFSET):
                    rows.append(
                        compare(
                            f"list_conversations offset {offset}, {shards} buckets",
                            partial(store_list, sharded, offset),
                            partial(store_list, standalone, offset),
                            calls=sizes.list_calls,
                        )
                    )
        finally:
            for store in stores:
                try:
                    store.clear()
                finally:
                    store.close()
    return rows


def run_raw(sizes: Sizes) -> list[dict[str, object]]:
    """The redis-py floor of the same operations (works with any backend)."""
    from redis import Redis
    from redis.cluster import RedisCluster

    rows: list[dict[str, object]] = []
    table = slot_tags()
    with servers() as (cluster, server):
        on_cluster: Any = RedisCluster.from_url(cluster.seed_url)
        standalone: Any = Redis.from_url(server.url)
        try:
            single = RawLayout("raw", [""])
            default = RawLayout("raw", bucket_tags(256, table))
            ids = raw_seed(standalone, single, sizes)
            raw_seed(on_cluster, default, sizes)
            script_cluster = on_cluster.register_script(APPEND_SCRIPT)
            script_standalone = standalone.register_script(APPEND_SCRIPT)
            next_standalone, next_cluster = cycle(ids), cycle(ids)
            rows.append(
                compare(
                    "raw append script (RedisCluster client)",
                    lambda: raw_append(on_cluster, script_cluster, default, next_cluster()),
                    lambda: raw_append(standalone, script_standalone, single, next_standalone()),
                    calls=sizes.calls,
                    limit=TARGET_RATIO,
                )
            )
            rows.append(
                compare(
                    "raw append script (the slot's node client)",
                    lambda: _node_append(on_cluster, script_cluster, default, next_cluster()),
                    lambda: raw_append(standalone, script_standalone, single, next_standalone()),
                    calls=sizes.calls,
                    limit=TARGET_RATIO,
                )
            )
            rows.append(
                compare(
                    "raw load (HGETALL + LRANGE pipeline)",
                    lambda: raw_load(on_cluster, default, next_cluster()),
                    lambda: raw_load(standalone, single, next_standalone()),
                    calls=sizes.calls,
                    limit=TARGET_RATIO,
                )
            )
            for shards in BUCKET_COUNTS:
                layout = RawLayout(f"raw{shards}", bucket_tags(shards, table))
                raw_seed(on_cluster, layout, sizes)
                indexes = layout.indexes()
                for offset in (0, DEEP_OFFSET):
                    expected = raw_list(standalone, single.indexes(), offset)
                    assert raw_list(on_cluster, indexes, offset) == expected
                    rows.append(
                        compare(
                            f"raw listing offset {offset}, {shards} buckets",
                            partial(raw_list, on_cluster, indexes, offset),
                            partial(raw_list, standalone, single.indexes(), offset),
                            calls=sizes.list_calls,
                        )
                    )
        finally:
            on_cluster.close()
            standalone.close()
    return rows


def _node_append(client: Any, script: Any, layout: RawLayout, cid: str) -> object:
    """The append script sent through the slot owner's own ``Redis`` client."""
    keys = layout.conversation_keys(cid)
    node = client.get_redis_connection(client.get_node_from_key(keys[0]))
    return node.evalsha(script.sha, len(keys), *keys, str(message(1)), 1, cid)


def run(quick: bool = False, *, raw: bool = False, smoke: bool = False) -> list[dict[str, object]]:
    """Start the servers, measure, and return the result rows."""
    sizes = Sizes.of(quick=quick, smoke=smoke)
    return run_raw(sizes) if raw else run_store(sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="less data, fewer calls")
    parser.add_argument(
        "--raw", action="store_true", help="time the redis-py equivalents, not the store"
    )
    args = parser.parse_args()
    print(markdown_table(run(args.quick, raw=args.raw)))


if __name__ == "__main__":
    main()
