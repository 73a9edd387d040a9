"""Connections of :class:`~django_convstore.backends.redis.RedisStore`, through django-redis.

Two ways to connect (the native async twins get a ``redis.asyncio`` client that
connects the same way, see :func:`async_client_for`):

* ``OPTIONS["CACHE"]`` names a django-redis cache in ``settings.CACHES``; the
  store uses that cache's client (``django_redis.get_redis_connection``), so
  its pool, TLS, Sentinel or custom connection factory settings all apply.
* Otherwise ``LOCATION`` (``redis://``, ``rediss://``, ``unix://``) or the
  ``HOST``/``PORT``/``PASSWORD``/``DB`` options describe one server, and the
  pool is built by django-redis's ``ConnectionFactory``. Pools are shared per
  process between stores with identical connection settings (credentials
  and timeouts included, unlike the factory's own URL-keyed cache).

redis-py and django-redis are imported lazily, so this module imports
without them. Nothing here opens a socket until a command runs.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

from ...exceptions import BackendAuthError, BackendError, BackendUnavailableError, ConvStoreError

if TYPE_CHECKING:
    from redis import ConnectionPool, Redis
    from redis.asyncio import Redis as AsyncRedis
    from redis.cluster import RedisCluster

DEFAULT_LOCATION = "redis://127.0.0.1:6379/0"
DEFAULT_SOCKET_TIMEOUT = 5.0
SCHEMES = ("redis", "rediss", "unix")
CONNECTION_FACTORY = "django_redis.pool.ConnectionFactory"

#: Options that describe the server; they cannot be combined with ``CACHE``.
SERVER_OPTIONS = (
    "HOST",
    "PORT",
    "DB",
    "USERNAME",
    "PASSWORD",
    "SOCKET_TIMEOUT",
    "CONNECTION_POOL_KWARGS",
)

_pools: dict[tuple[Any, ...], ConnectionPool] = {}
_pools_lock = threading.Lock()


class ConfigError(ValueError):
    """A configuration problem; the store turns it into ``ImproperlyConfigured``."""


@dataclass(frozen=True)
class ServerSettings:
    """Where and how to connect when the store builds its own pool."""

    url: str
    address: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT
    pool_kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def pool_key(self) -> tuple[Any, ...]:
        """Everything that makes two pools different."""
        return (
            self.url,
            self.username,
            self.password,
            self.socket_timeout,
            tuple(sorted((str(k), repr(v)) for k, v in self.pool_kwargs.items())),
        )

    def secrets(self) -> list[str]:
        """Strings that must never appear in an error message."""
        found = [self.password] if self.password else []
        url_password = urlsplit(self.url).password
        if url_password:
            found.extend({url_password, unquote(url_password)})
        return found


def _address_of(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port or 6379}"


def _int_option(options: Mapping[str, Any], name: str, low: int, high: int | None) -> int | None:
    value = options.get(name)
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"OPTIONS[{name!r}] must be an integer >= {low}, not {value!r}.")
    if high is not None and value > high:
        raise ConfigError(f"OPTIONS[{name!r}] must be at most {high}, not {value!r}.")
    return value


def _str_option(options: Mapping[str, Any], name: str) -> str | None:
    value = options.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"OPTIONS[{name!r}] must be a non-empty string.")
    return value


def _check_location(location: str) -> None:
    parts = urlsplit(location)
    if parts.scheme not in SCHEMES:
        raise ConfigError(
            "LOCATION must be a redis://, rediss:// or unix:// URL, "
            f"not {parts.scheme or location!r}."
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("LOCATION has an invalid port.") from None
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigError("LOCATION unix:// needs a socket path, e.g. unix:///run/redis.sock.")
    else:
        if not parts.hostname:
            raise ConfigError("LOCATION needs a host, e.g. redis://127.0.0.1:6379/0.")
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise ConfigError(f"LOCATION's database must be a number, not {db!r}.")
    del port
    from redis.connection import parse_url

    try:
        parse_url(location)
    except ValueError as exc:
        raise ConfigError(f"LOCATION is not a valid Redis URL: {exc}") from None


def server_settings(
    location: str, options: Mapping[str, Any], socket_timeout: float
) -> ServerSettings:
    """Build :class:`ServerSettings` from ``LOCATION`` and ``OPTIONS`` (raises ConfigError)."""
    host = _str_option(options, "HOST")
    port = _int_option(options, "PORT", 1, 65535)
    db = _int_option(options, "DB", 0, None)
    username = _str_option(options, "USERNAME")
    password = options.get("PASSWORD")
    if password is not None and not isinstance(password, str):
        raise ConfigError("OPTIONS['PASSWORD'] must be a string.")
    pool_kwargs = options.get("CONNECTION_POOL_KWARGS")
    if pool_kwargs is None:
        pool_kwargs = {}
    if not isinstance(pool_kwargs, Mapping):
        raise ConfigError("OPTIONS['CONNECTION_POOL_KWARGS'] must be a dict.")
    if location:
        for name, value in (("HOST", host), ("PORT", port), ("DB", db)):
            if value is not None:
                raise ConfigError(
                    f"OPTIONS[{name!r}] cannot be combined with LOCATION; put it in the URL."
                )
        _check_location(location)
        parts = urlsplit(location)
        if password and parts.password:
            raise ConfigError(
                "OPTIONS['PASSWORD'] cannot be combined with a password in LOCATION."
            )
        url = location
    else:
        if port is not None and host is None:
            host = "127.0.0.1"
        if host is None:
            url = DEFAULT_LOCATION if db is None else f"redis://127.0.0.1:6379/{db}"
        else:
            netloc = f"[{host}]" if ":" in host else host
            url = f"redis://{netloc}:{port or 6379}/{db or 0}"
    return ServerSettings(
        url=url,
        address=_address_of(url),
        username=username,
        password=password or None,
        socket_timeout=socket_timeout,
        pool_kwargs=dict(pool_kwargs),
    )


def pool_for(settings: ServerSettings) -> ConnectionPool:
    """The process-wide pool for ``settings``, built by django-redis's ConnectionFactory."""
    from django_redis.pool import get_connection_factory

    key = settings.pool_key
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            options: dict[str, Any] = {
                "CONNECTION_FACTORY": CONNECTION_FACTORY,
                "SOCKET_TIMEOUT": settings.socket_timeout,
                "SOCKET_CONNECT_TIMEOUT": settings.socket_timeout,
                "CONNECTION_POOL_KWARGS": dict(settings.pool_kwargs),
            }
            if settings.username:
                options["USERNAME"] = settings.username
            if settings.password:
                options["PASSWORD"] = settings.password
            factory = get_connection_factory(options=options)
            pool = factory.get_connection_pool(factory.make_connection_params(settings.url))
            _pools[key] = pool
        return pool


def client_for(settings: ServerSettings) -> Redis:
    """A redis-py client on the shared pool for ``settings``."""
    from redis import Redis

    return Redis(connection_pool=pool_for(settings))


def cluster_client_for(settings: ServerSettings) -> RedisCluster:
    """A redis-py cluster client seeded by ``settings.url`` (it reads the slot map now)."""
    from redis.cluster import RedisCluster

    kwargs: dict[str, Any] = dict(settings.pool_kwargs)
    kwargs["socket_timeout"] = settings.socket_timeout
    kwargs.setdefault("socket_connect_timeout", settings.socket_timeout)
    if settings.username:
        kwargs["username"] = settings.username
    if settings.password:
        kwargs["password"] = settings.password
    return RedisCluster.from_url(settings.url, **kwargs)


def check_cluster_location(url: str) -> None:
    """Raise ConfigError unless ``url`` can seed a cluster client (TCP, database 0)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        raise ConfigError(
            "OPTIONS['CLUSTER'] needs a redis:// or rediss:// LOCATION naming a cluster node; "
            "redis-py's cluster client does not connect over unix sockets."
        )
    db = parts.path.strip("/")
    if db not in ("", "0"):
        raise ConfigError(f"a Redis Cluster has only database 0; LOCATION names database {db}.")


def cache_client(cache_alias: str) -> Redis:
    """The client of the django-redis cache ``cache_alias`` (raises ConfigError)."""
    from django.core.cache import InvalidCacheBackendError
    from django_redis import get_redis_connection

    try:
        return get_redis_connection(cache_alias, write=True)
    except InvalidCacheBackendError:
        raise ConfigError(
            f"OPTIONS['CACHE'] names {cache_alias!r}, which is not in CACHES."
        ) from None
    except NotImplementedError:
        raise ConfigError(
            f"OPTIONS['CACHE'] names {cache_alias!r}, which is not a django-redis cache."
        ) from None
    except ImproperlyConfigured as exc:
        raise ConfigError(f"OPTIONS['CACHE'] {cache_alias!r} is misconfigured: {exc}") from None


#: Connection settings that mean the same to redis-py's sync and asyncio connections.
_PORTABLE_KWARGS = frozenset(
    {
        "host",
        "port",
        "path",
        "db",
        "username",
        "password",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "socket_keepalive_options",
        "retry_on_timeout",
        "encoding",
        "encoding_errors",
        "decode_responses",
        "client_name",
        "health_check_interval",
        "protocol",
        "ssl_keyfile",
        "ssl_certfile",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ca_data",
        "ssl_check_hostname",
        "ssl_min_version",
        "ssl_ciphers",
    }
)


def _portable(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in kwargs.items() if name in _PORTABLE_KWARGS}


def async_client_for(client: Redis) -> AsyncRedis:
    """A ``redis.asyncio`` client (with a pool of its own) that connects like ``client``.

    Plain TCP, TLS and unix-socket pools, and Sentinel pools (as django-redis's
    ``SentinelConnectionFactory`` builds them), are rebuilt with the asyncio
    classes, with as many connections at most; other pool classes raise
    ``ConfigError``. No I/O happens here.
    """
    from redis import asyncio as aioredis
    from redis import connection as sync_connection
    from redis import sentinel as sync_sentinel
    from redis.asyncio import sentinel as async_sentinel

    pool = client.connection_pool
    if isinstance(pool, sync_sentinel.SentinelConnectionPool):
        manager = pool.sentinel_manager
        addresses = []
        sentinel_kwargs: dict[str, Any] = {}
        for sentinel in manager.sentinels:
            kwargs = sentinel.connection_pool.connection_kwargs
            addresses.append((kwargs["host"], kwargs["port"]))
            sentinel_kwargs = _portable(kwargs)
        sentinel_kwargs.pop("host", None)
        sentinel_kwargs.pop("port", None)
        watcher = async_sentinel.Sentinel(
            addresses,
            min_other_sentinels=manager.min_other_sentinels,
            sentinel_kwargs=sentinel_kwargs,
            **_portable(manager.connection_kwargs),
        )
        kwargs = _portable(pool.connection_kwargs)
        if pool.is_master:
            return watcher.master_for(pool.service_name, **kwargs)
        return watcher.slave_for(pool.service_name, **kwargs)
    if type(pool) is not sync_connection.ConnectionPool and not isinstance(
        pool, sync_connection.BlockingConnectionPool
    ):
        raise ConfigError(f"no asyncio equivalent of the connection pool {type(pool).__name__}")
    connection_class = pool.connection_class
    async_class: type[Any]
    if issubclass(connection_class, sync_connection.UnixDomainSocketConnection):
        async_class = aioredis.UnixDomainSocketConnection
    elif issubclass(connection_class, sync_connection.SSLConnection):
        async_class = aioredis.SSLConnection
    else:
        async_class = aioredis.Connection
    kwargs = _portable(pool.connection_kwargs)
    # Blocking: past max_connections, concurrent calls wait for a connection (up to the
    # socket timeout) instead of failing at once, as a plain asyncio pool would.
    async_pool = aioredis.BlockingConnectionPool(
        connection_class=async_class,
        max_connections=pool.max_connections,
        timeout=kwargs.get("socket_timeout") or DEFAULT_SOCKET_TIMEOUT,  # type: ignore[arg-type]
        **kwargs,
    )
    return aioredis.Redis(connection_pool=async_pool)


def client_address(client: Redis) -> str:
    """host:port (or unix:path) of a client's pool, for messages."""
    kwargs = getattr(client.connection_pool, "connection_kwargs", {}) or {}
    if kwargs.get("path"):
        return f"unix:{kwargs['path']}"
    if kwargs.get("host"):
        host = str(kwargs["host"])
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{kwargs.get('port', 6379)}"
    return "unknown address"


def translate_error(
    exc: BaseException, *, alias: str, address: str, secrets: list[str]
) -> ConvStoreError:
    """The django-convstore error for a redis-py (or socket) exception; no secret leaks."""
    from redis import exceptions as rx

    text = str(exc) or type(exc).__name__
    for secret in secrets:
        if secret:
            text = text.replace(secret, "********")
    where = f"redis store {alias!r} at {address}"
    if isinstance(exc, rx.ClusterDownError | rx.TryAgainError | rx.RedisClusterException):
        return BackendUnavailableError(
            f"{where} is unavailable (Redis Cluster): {text}",
            backend="redis",
            alias=alias,
            address=address,
        )
    if isinstance(exc, rx.AuthenticationError | rx.NoPermissionError):
        return BackendAuthError(f"{where}: the server rejected the credentials ({text}).")
    if isinstance(exc, rx.ConnectionError | rx.TimeoutError | OSError):
        return BackendUnavailableError(
            f"{where} is unavailable: {text}", backend="redis", alias=alias, address=address
        )
    if isinstance(exc, rx.ResponseError) and text.startswith(("NOAUTH", "WRONGPASS")):
        return BackendAuthError(f"{where}: the server rejected the credentials ({text}).")
    return BackendError(f"{where}: {type(exc).__name__}: {text}", detail=type(exc).__name__)
