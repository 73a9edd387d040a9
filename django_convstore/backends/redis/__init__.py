"""A store on Redis (or Valkey), connected through django-redis.

Every write is one Lua script: atomic, one round trip, and deciding inside
Redis everything the contract says must hold under concurrency (expiry,
ownership, duplicate message ids). Reads are one script or one command; a
long conversation's messages come in a second round trip with ``GETRANGE``,
because Redis copies big strings into and out of Lua slowly. The pieces:

* :mod:`.layout` — key names, hash tags and the ``INDEX_SHARDS`` buckets;
* ``scripts/*.lua`` and :mod:`.scripts` — the Lua scripts and their loader;
* :mod:`.operations` — what each operation sends and how it reads the replies,
  shared by the sync methods (:mod:`.runner`) and the native async twins
  (:mod:`.async_`, on ``redis.asyncio``, one pool per event loop), with
  :mod:`.requests` (round trips) and :mod:`.wire` (encoding, parsing);
* :mod:`.connection` — settings, pools, django-redis caches, error translation;
* :mod:`.cluster` and :mod:`.cluster_async` — the same plans on a Redis Cluster
  (``OPTIONS["CLUSTER"]``), each request sent to the master serving its slot;
* :mod:`.legacy` — data written by 0.1, and its upgrade.

Time comes from the application (``django_convstore.clock.now_ms``), as on
every other backend; the keys holding a conversation's messages get an
absolute ``PEXPIREAT`` at its ``expires_at``, so Redis frees them itself.
Redis drops expired messages, so ``load(..., include_expired=True)`` cannot
return an expired conversation.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from django.conf import settings

from ...clock import now_ms
from ...types import Conversation, ConversationMetadata, Message, Page, StoreStats
from ..base import BaseStore
from . import connection, legacy, operations
from .async_ import NativeAsync
from .layout import Layout
from .requests import Plan

if TYPE_CHECKING:
    from redis import Redis

    from .cluster import ClusterRunner

DEFAULT_KEY_PREFIX = "aikit:conversation"
#: Default of ``OPTIONS["INDEX_SHARDS"]``: one bucket is fastest on a single server.
DEFAULT_INDEX_SHARDS = 1
#: Default of ``OPTIONS["INDEX_SHARDS"]`` on a Redis Cluster: enough buckets for the
#: conversations and their indexes to spread evenly over a few dozen masters.
DEFAULT_CLUSTER_INDEX_SHARDS = 256
MAX_INDEX_SHARDS = 16384

_T = TypeVar("_T")


class RedisStore(NativeAsync, BaseStore):
    """Conversations in Redis/Valkey: O(1) atomic appends, indexed listing, no ``KEYS``.

    ``LOCATION``: ``redis://[user:password@]host:port/db``, ``rediss://…``
    (TLS) or ``unix:///path.sock?db=0``; or the ``HOST``/``PORT``/``DB``/
    ``USERNAME``/``PASSWORD`` options (default ``redis://127.0.0.1:6379/0``).
    ``OPTIONS``: ``KEY_PREFIX`` (default ``aikit:conversation``; keys are
    ``<KEY_PREFIX>:<NAMESPACE>:{<bucket tag>}:…``), ``INDEX_SHARDS`` (buckets the
    store-wide indexes are spread over, default 1, or 256 on a cluster; see
    :mod:`.layout`), ``CLUSTER`` (``True``: LOCATION names any node of a Redis
    Cluster, see :mod:`.cluster`),
    ``SOCKET_TIMEOUT`` (seconds, default 5, for connecting and for each
    reply), ``CONNECTION_POOL_KWARGS`` (passed to redis-py's pool), or
    ``CACHE``: the alias of a django-redis cache whose client to reuse (its
    Sentinel/TLS/pool settings apply; the server options above then belong to
    that cache).
    """

    backend_name: ClassVar[str] = "redis"
    option_names: ClassVar[frozenset[str]] = frozenset(
        {"KEY_PREFIX", "CACHE", "CLUSTER", "INDEX_SHARDS", *connection.SERVER_OPTIONS}
    )
    required_modules: ClassVar[tuple[tuple[str, str], ...]] = (
        ("django_redis", "redis"),
        ("redis", "redis"),
    )
    #: The sync client is thread-safe, so thread-wrapped twins may overlap.
    async_thread_sensitive: ClassVar[bool] = False

    def __init__(self, location: str = "", params: Any = None, *, alias: str | None = None):
        super().__init__(location, params, alias=alias)
        try:
            import django_redis  # noqa: F401
            import redis  # noqa: F401
        except ImportError as exc:
            raise self.configuration_error(
                f"RedisStore needs the redis and django-redis packages ({exc}); "
                "pip install 'django-convstore[redis]'."
            ) from exc
        from redis.exceptions import RedisClusterException, RedisError

        from . import runner

        self._runner = runner
        #: What :meth:`_translate` turns into this app's errors.
        self._redis_errors: tuple[type[BaseException], ...] = (
            RedisError,
            RedisClusterException,
            OSError,
        )
        self.cluster = self._parse_cluster()
        self.key_prefix = self._parse_key_prefix()
        if "{" in self.namespace or "}" in self.namespace:
            raise self.configuration_error("NAMESPACE must not contain '{' or '}' on Redis.")
        shards = self.option_int(
            "INDEX_SHARDS",
            DEFAULT_CLUSTER_INDEX_SHARDS if self.cluster else DEFAULT_INDEX_SHARDS,
            minimum=1,
        )
        assert shards is not None
        if shards > MAX_INDEX_SHARDS:
            raise self.configuration_error(
                f"OPTIONS['INDEX_SHARDS'] must be at most {MAX_INDEX_SHARDS}, not {shards}."
            )
        self.layout = Layout(self.key_prefix, self.namespace, shards)
        self.cache_alias = self._parse_cache()
        self.server: connection.ServerSettings | None = None
        if self.cache_alias is None:
            timeout = self.option_number("SOCKET_TIMEOUT", connection.DEFAULT_SOCKET_TIMEOUT)
            assert timeout is not None
            try:
                self.server = connection.server_settings(self.location, self.options, timeout)
                if self.cluster:
                    connection.check_cluster_location(self.server.url)
            except connection.ConfigError as exc:
                raise self.configuration_error(str(exc)) from None
        self._lock = threading.Lock()
        self._client: Redis | None = None
        self._cluster: ClusterRunner | None = None
        self._layout_checked = False
        self._init_async()

    # -- configuration ---------------------------------------------------------------------

    def _parse_key_prefix(self) -> str:
        prefix = self.options.get("KEY_PREFIX", DEFAULT_KEY_PREFIX)
        if not isinstance(prefix, str) or not prefix:
            raise self.configuration_error(
                f"OPTIONS['KEY_PREFIX'] must be a non-empty string, not {prefix!r}."
            )
        if "{" in prefix or "}" in prefix:
            raise self.configuration_error(
                "OPTIONS['KEY_PREFIX'] must not contain '{' or '}' (they form hash tags)."
            )
        return prefix

    def _parse_cluster(self) -> bool:
        cluster = self.options.get("CLUSTER", False)
        if not isinstance(cluster, bool):
            raise self.configuration_error(
                f"OPTIONS['CLUSTER'] must be True or False, not {cluster!r}."
            )
        if cluster and "CACHE" in self.options:
            raise self.configuration_error(
                "OPTIONS['CLUSTER'] cannot be combined with OPTIONS['CACHE']: django-redis has "
                "no Redis Cluster client; give the cluster's LOCATION (any node) instead."
            )
        return cluster

    def _parse_cache(self) -> str | None:
        cache = self.options.get("CACHE")
        if cache is None:
            return None
        if not isinstance(cache, str) or not cache:
            raise self.configuration_error(
                f"OPTIONS['CACHE'] must be the alias of a django-redis cache, not {cache!r}."
            )
        clashing = [name for name in connection.SERVER_OPTIONS if name in self.options]
        if self.location:
            clashing.insert(0, "LOCATION")
        if clashing:
            raise self.configuration_error(
                f"OPTIONS['CACHE'] cannot be combined with {', '.join(clashing)}: the "
                f"connection settings come from CACHES[{cache!r}]."
            )
        if cache not in getattr(settings, "CACHES", {}):
            raise self.configuration_error(
                f"OPTIONS['CACHE'] names {cache!r}, which is not in settings.CACHES."
            )
        return cache

    @property
    def address(self) -> str:
        """Where the store connects (``host:port`` or ``unix:path``), without credentials."""
        if self.server is not None:
            if self.cluster:
                return f"the cluster seeded by {self.server.address}"
            return self.server.address
        client = self._client
        where = connection.client_address(client) if client is not None else "?"
        return f"{where} (cache {self.cache_alias!r})"

    # -- connection ------------------------------------------------------------------------

    @property
    def client(self) -> Redis:
        """The redis-py client, created on first use (no I/O until a command runs)."""
        client = self._client
        if client is None:
            with self._lock:
                client = self._client
                if client is None:
                    if self.server is not None:
                        client = connection.client_for(self.server)
                    else:
                        assert self.cache_alias is not None
                        try:
                            client = connection.cache_client(self.cache_alias)
                        except connection.ConfigError as exc:
                            raise self.configuration_error(str(exc)) from None
                    self._client = client
        return client

    @property
    def cluster_runner(self) -> ClusterRunner:
        """The cluster client's runner (``OPTIONS["CLUSTER"]``), created on first use:
        reads the slot map from the seed node (raises ``BackendUnavailableError``)."""
        runner = self._cluster
        if runner is None:
            from .cluster import ClusterRunner

            assert self.server is not None
            with self._lock:
                runner = self._cluster
                if runner is None:
                    try:
                        client = connection.cluster_client_for(self.server)
                    except self._redis_errors as exc:
                        raise self._translate(exc) from exc
                    runner = self._cluster = ClusterRunner(
                        client, timeout=self.server.socket_timeout
                    )
        return runner

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn redis-py and socket errors into this app's errors."""
        try:
            yield
        except self._redis_errors as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: BaseException, *, node: str | None = None) -> Exception:
        secrets = self.server.secrets() if self.server is not None else []
        address = self.address if node is None else f"cluster node {node}"
        return connection.translate_error(
            exc, alias=self.display_alias, address=address, secrets=secrets
        )

    def _run(self, plan: Plan[_T], *, check: bool = True) -> _T:
        """Run a plan of :mod:`.operations` on the sync client."""
        if check and not self._layout_checked:
            self._run(legacy.check_layout(self.layout, self.display_alias), check=False)
            self._layout_checked = True
        if self.cluster:
            from .cluster import NodeError

            try:
                return (self._cluster or self.cluster_runner).run(plan)
            except NodeError as exc:
                raise self._translate(exc.error, node=exc.node) from exc.error
            except self._redis_errors as exc:
                raise self._translate(exc) from exc
        try:
            return self._runner.run(self._client or self.client, plan)
        except self._redis_errors as exc:
            raise self._translate(exc) from exc

    def _close(self) -> None:
        """Disconnect the pool's idle connections; the next command reconnects.

        With ``OPTIONS["CACHE"]`` the pool belongs to that cache and is left open.
        The native async clients are released too (see :meth:`_forget_async_clients`).
        """
        self._forget_async_clients()
        self._close_sync()

    def _close_sync(self) -> None:
        if self._cluster is not None:
            with self._errors():
                self._cluster.disconnect()
            return
        with self._lock:
            client = self._client
            if client is None or self.server is None:
                self._client = None
                return
        with self._errors():
            client.connection_pool.disconnect(inuse_connections=False)

    # -- writes ----------------------------------------------------------------------------

    def _save(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        ttl: int | None,
        metadata: dict[str, Any] | None,
        owner: str | None,
    ) -> Conversation:
        result = self._run(
            operations.save(
                self.layout,
                conversation_id,
                messages,
                ttl=ttl,
                metadata=metadata,
                owner=owner,
                now=now_ms(),
            )
        )
        assert result is not None
        return result

    def _create(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        ttl: int | None,
        metadata: dict[str, Any],
        owner: str | None,
    ) -> Conversation | None:
        return self._run(
            operations.save(
                self.layout,
                conversation_id,
                messages,
                ttl=ttl,
                metadata=metadata,
                owner=owner,
                now=now_ms(),
                create=True,
            )
        )

    def _append(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        update_timestamp: bool,
        owner: str | None,
    ) -> ConversationMetadata:
        return self._run(
            operations.append(
                self.layout,
                conversation_id,
                messages,
                default_ttl=self.default_ttl,
                update_timestamp=update_timestamp,
                owner=owner,
                now=now_ms(),
            )
        )

    def _pop(
        self, conversation_id: str, count: int, *, owner: str | None
    ) -> builtins.list[Message]:
        return self._run(
            operations.pop(self.layout, conversation_id, count, owner=owner, now=now_ms())
        )

    def _truncate(
        self, conversation_id: str, keep: int, *, owner: str | None
    ) -> tuple[ConversationMetadata, int] | None:
        return self._run(
            operations.truncate(self.layout, conversation_id, keep, owner=owner, now=now_ms())
        )

    def _put(self, conversation: Conversation) -> None:
        self._run(operations.put(self.layout, conversation, now=now_ms()))

    def _delete(self, conversation_id: str, *, owner: str | None) -> bool:
        return self._run(
            operations.delete(self.layout, conversation_id, owner=owner, now=now_ms())
        )

    def _set_ttl(self, conversation_id: str, ttl: int | None, *, owner: str | None) -> bool:
        return self._run(
            operations.set_ttl(self.layout, conversation_id, ttl, owner=owner, now=now_ms())
        )

    def _update_metadata(
        self, conversation_id: str, metadata: dict[str, Any], *, replace: bool, owner: str | None
    ) -> ConversationMetadata | None:
        return self._run(
            operations.update_metadata(
                self.layout, conversation_id, metadata, replace=replace, owner=owner, now=now_ms()
            )
        )

    def _cleanup(self) -> int:
        removed, _ = self._run(operations.sweep(self.layout, operations.CLEANUP, now=now_ms()))
        return removed

    def _clear(self) -> int:
        _, live = self._run(operations.sweep(self.layout, operations.CLEAR, now=now_ms()))
        self._run(operations.forget_layout(self.layout), check=False)
        self._layout_checked = False
        return live

    # -- reads -----------------------------------------------------------------------------

    def _load(
        self, conversation_id: str, *, include_expired: bool, last: int | None, owner: str | None
    ) -> Conversation | None:
        return self._run(
            operations.load(self.layout, conversation_id, last=last, owner=owner, now=now_ms())
        )

    def _exists(self, conversation_id: str, *, owner: str | None) -> bool:
        return self._run(
            operations.exists(self.layout, conversation_id, owner=owner, now=now_ms())
        )

    def _get_ttl(self, conversation_id: str, *, owner: str | None) -> int:
        return self._run(
            operations.get_ttl(self.layout, conversation_id, owner=owner, now=now_ms())
        )

    def _list(self) -> builtins.list[str]:
        return self._run(operations.list_ids(self.layout, now=now_ms()))

    def _list_conversations(
        self, *, owner: str | None, prefix: str | None, limit: int, offset: int
    ) -> Page:
        return self._run(
            operations.list_page(
                self.layout, owner=owner, prefix=prefix, limit=limit, offset=offset, now=now_ms()
            )
        )

    def _iter_conversations(
        self, *, include_expired: bool, batch_size: int, owner: str | None
    ) -> Iterator[Conversation]:
        for bucket in self.layout.buckets():
            after = ""
            done = False
            while not done:
                found, after, done = self._run(
                    operations.iter_batch(
                        self.layout,
                        bucket,
                        after=after,
                        count=batch_size,
                        owner=owner,
                        now=now_ms(),
                    )
                )
                yield from found

    def _get_stats(self) -> StoreStats:
        return self._run(operations.stats(self.layout, now=now_ms()))


__all__ = [
    "DEFAULT_CLUSTER_INDEX_SHARDS",
    "DEFAULT_INDEX_SHARDS",
    "DEFAULT_KEY_PREFIX",
    "RedisStore",
]
