"""Key names of :class:`~django_convstore.backends.redis.RedisStore`: buckets and hash tags.

A store's conversations are spread over ``OPTIONS["INDEX_SHARDS"]`` buckets
(default 1); a conversation's bucket is ``crc32(id) % INDEX_SHARDS``. Every
key of a bucket, the conversations' keys and the store-wide indexes over
them alike, carries the bucket's Redis Cluster hash tag, so each write script
touches a single slot. Bucket ``k`` of ``n`` is tagged with the shortest
``[a-z0-9]`` string whose slot is ``k * 16384 // n``: the buckets sit on
evenly spaced slots, so a cluster's usual even split of the slots gives every
master its share of buckets (tags derived from names would need several
times more buckets for the same balance). With ``<B>`` =
``<KEY_PREFIX>:<NAMESPACE>`` and ``<t>`` a bucket's tag::

    <B>:{<t>}:m:<id>       hash: created_at, updated_at (ms), ttl (s, 0 = never), owner
                           (absent = none), message_count, size (bytes of the data
                           string that are live), msize (bytes of custom metadata),
                           kexp (when the data, offsets and ids keys expire, ms),
                           version, and one "m:<key>" field per custom metadata key
                           (its JSON value)
    <B>:{<t>}:d:<id>       string: the messages as a JSON array; only its first ``size``
                           bytes count (pop and truncate shorten it logically)
    <B>:{<t>}:x:<id>       string: 4 bytes (unsigned, little-endian) per message, its
                           offset in the data string
    <B>:{<t>}:i:<id>       set: the message ids (idempotent appends)
    <B>:{<t>}:recent       sorted set: id -> updated_at (listing, newest first)
    <B>:{<t>}:expiry       sorted set: id -> a time at or before its expiry (ms), for the
                           conversations with a TTL
    <B>:{<t>}:names        sorted set, all scores 0: ids in byte order (prefix search)
    <B>:{<t>}:owner:<o>    sorted set: id -> updated_at, the conversations of owner <o>
    <B>:{<t>}:totals       string: two signed 64-bit counters (BITFIELD i64 at bits 0
                           and 64): the bucket's messages and bytes
    <B>:{<t>}:stage:<d|x|i>  a big batch on its way in (exists only inside a MULTI/EXEC:
                           written by plain commands, then renamed into place by the
                           write script, or deleted)
    <B>:layout             string: "2 shards=<INDEX_SHARDS>" (see :mod:`.legacy`)

``KEY_PREFIX`` and ``NAMESPACE`` may not contain ``{`` or ``}``, so the tag is
always the first ``{…}`` of a key and conversation ids and owners never need
escaping. The data, offsets and ids keys of a conversation expire
(``PEXPIREAT``) a little after it does, so Redis frees its messages by
itself; its ``m:`` hash and index entries stay until ``cleanup()`` or the
next write to that id, which is how ``get_stats`` and ``cleanup`` still know
what an expired conversation held.
"""

from __future__ import annotations

import binascii
import itertools
import string
import zlib
from functools import cache
from typing import NamedTuple

#: Version of this layout (the 0.1 layout is described in :mod:`.legacy`).
LAYOUT_VERSION = 2
#: Redis Cluster's number of hash slots.
SLOTS = 16384
_TAG_ALPHABET = string.ascii_lowercase + string.digits


def key_slot(tag: str) -> int:
    """The Redis Cluster slot of a hash tag (CRC16/XMODEM, as Redis computes it)."""
    return binascii.crc_hqx(tag.encode(), 0) % SLOTS


@cache
def bucket_tags(shards: int) -> tuple[str, ...]:
    """The hash tags of ``shards`` buckets: bucket k's is the shortest ``[a-z0-9]`` string
    whose slot is ``k * 16384 // shards`` (a few milliseconds, once per process)."""
    wanted = {index * SLOTS // shards: index for index in range(shards)}
    found: dict[int, str] = {}
    for length in range(1, 5):
        for letters in itertools.product(_TAG_ALPHABET, repeat=length):
            tag = "".join(letters)
            index = wanted.get(key_slot(tag))
            if index is not None and index not in found:
                found[index] = tag
                if len(found) == shards:
                    return tuple(found[i] for i in range(shards))
    raise AssertionError("every slot has a tag of at most four characters")


class ConversationKeys(NamedTuple):
    """Every key a conversation script gets, in the order of its ``KEYS``."""

    meta: str
    data: str
    offsets: str
    ids: str
    recent: str
    expiry: str
    names: str
    totals: str
    #: Prefix of the bucket's per-owner index keys (the owner is appended).
    owners: str


class StageKeys(NamedTuple):
    """Where a big batch waits, inside one transaction, for the script that places it."""

    data: str
    offsets: str
    ids: str


class BucketKeys(NamedTuple):
    """The index keys of one bucket, in the order of a bucket script's ``KEYS``."""

    recent: str
    expiry: str
    names: str
    totals: str
    #: ``<P>:{<N>:<b>}:`` — bucket scripts build conversation keys from it.
    prefix: str


class Layout:
    """Key names for one store (``KEY_PREFIX``, ``NAMESPACE``, ``INDEX_SHARDS``)."""

    __slots__ = ("_buckets", "base", "key_prefix", "marker", "namespace", "shards")

    def __init__(self, key_prefix: str, namespace: str, shards: int = 1) -> None:
        self.key_prefix = key_prefix
        self.namespace = namespace
        self.shards = shards
        #: ``<KEY_PREFIX>:<NAMESPACE>``: every key of the store starts with it.
        self.base = f"{key_prefix}:{namespace}"
        self._buckets = [self._bucket_keys(tag) for tag in bucket_tags(shards)]
        #: Records the layout version and bucket count the data was written with.
        self.marker = f"{self.base}:layout"

    def _bucket_keys(self, tag: str) -> BucketKeys:
        prefix = f"{self.base}:{{{tag}}}:"
        return BucketKeys(
            f"{prefix}recent", f"{prefix}expiry", f"{prefix}names", f"{prefix}totals", prefix
        )

    @property
    def marker_value(self) -> str:
        """What :attr:`marker` holds for this layout."""
        return f"{LAYOUT_VERSION} shards={self.shards}"

    def bucket_of(self, conversation_id: str) -> int:
        """The bucket of a conversation: ``crc32(id) % INDEX_SHARDS``."""
        if self.shards == 1:
            return 0
        return zlib.crc32(conversation_id.encode()) % self.shards

    def buckets(self) -> list[BucketKeys]:
        """Every bucket's index keys, bucket 0 first."""
        return self._buckets

    def conversation(self, conversation_id: str) -> ConversationKeys:
        """The keys of one conversation and of its bucket's indexes."""
        bucket = self._buckets[self.bucket_of(conversation_id)]
        prefix = bucket.prefix
        return ConversationKeys(
            f"{prefix}m:{conversation_id}",
            f"{prefix}d:{conversation_id}",
            f"{prefix}x:{conversation_id}",
            f"{prefix}i:{conversation_id}",
            bucket.recent,
            bucket.expiry,
            bucket.names,
            bucket.totals,
            f"{prefix}owner:",
        )

    def stage(self, conversation_id: str) -> StageKeys:
        """The staging keys of the conversation's bucket."""
        prefix = self._buckets[self.bucket_of(conversation_id)].prefix
        return StageKeys(f"{prefix}stage:d", f"{prefix}stage:x", f"{prefix}stage:i")

    def owner_index(self, bucket: int, owner: str) -> str:
        """The per-owner index key of ``owner`` in ``bucket``."""
        return f"{self._buckets[bucket].prefix}owner:{owner}"


__all__ = [
    "LAYOUT_VERSION",
    "SLOTS",
    "BucketKeys",
    "ConversationKeys",
    "Layout",
    "StageKeys",
    "bucket_tags",
    "key_slot",
]
