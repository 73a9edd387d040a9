"""Redis backend configuration: LOCATION forms, server options, passwords, CACHE reuse, errors."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_convstore import (
    BackendAuthError,
    BackendError,
    BackendUnavailableError,
    create_store,
)
from django_convstore.backends.redis import RedisStore
from tests.servers.redis_server import RedisServer, free_port

BACKEND = "django_convstore.backends.redis.RedisStore"
PASSWORD = "s3cret-pässword"


def msg(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


def build(alias: str = "chat", **config: object) -> RedisStore:
    store = create_store({"BACKEND": BACKEND, **config}, alias=alias)
    assert isinstance(store, RedisStore)
    return store


@pytest.fixture(scope="module")
def password_server():
    """A server that requires a password (module-scoped: a few tests share it)."""
    with RedisServer(password=PASSWORD) as server:
        yield server


# -- locations and options -------------------------------------------------------------------


def test_unix_socket_location(redis_server):
    store = build(LOCATION=redis_server.unix_url, NAMESPACE=uuid.uuid4().hex)
    try:
        store.save("c", [msg("over a socket")])
        assert [m.content for m in store.load("c").messages] == ["over a socket"]
        assert store.address == f"unix:{redis_server.unix_socket}"
    finally:
        store.clear()
        store.close()


def test_host_port_db_options(redis_server, redis_client):
    namespace = uuid.uuid4().hex
    in_db3 = build(
        OPTIONS={"HOST": "127.0.0.1", "PORT": redis_server.port, "DB": 3}, NAMESPACE=namespace
    )
    in_db0 = build(LOCATION=redis_server.url, NAMESPACE=namespace)
    try:
        in_db3.save("c", [msg("db three")])
        assert in_db0.load("c") is None
        assert in_db3.address == f"127.0.0.1:{redis_server.port}"
        assert in_db3.client.connection_pool.connection_kwargs["db"] == 3
        assert redis_client.exists(in_db3.layout.conversation("c").meta) == 0
    finally:
        in_db3.clear()
        in_db3.close()
        in_db0.close()


def test_url_db_and_string_port(redis_server):
    store = build(OPTIONS={"PORT": str(redis_server.port)}, NAMESPACE=uuid.uuid4().hex)
    try:
        store.save("c", [])
        assert store.exists("c")
    finally:
        store.clear()


def test_rediss_location_is_accepted_without_connecting():
    store = build(LOCATION="rediss://cache.example.com:6380/2")
    assert store.address == "cache.example.com:6380"
    assert store.server is not None and store.server.url.startswith("rediss://")


def test_defaults():
    store = build()
    assert store.address == "127.0.0.1:6379"
    assert store.key_prefix == "aikit:conversation"
    assert store.layout.shards == 1
    assert store.layout.conversation("c").meta == "aikit:conversation:aikit:{la2}:m:c"
    assert store.server is not None and store.server.socket_timeout == 5.0


def test_original_form_through_create_store(redis_server):
    namespace = uuid.uuid4().hex
    by_url = create_store(
        {
            "type": "redis",
            "url": redis_server.url,
            "key_prefix": "orig",
            "namespace": namespace,
            "default_ttl": 60,
        }
    )
    by_host = create_store(
        {
            "type": "redis",
            "host": "127.0.0.1",
            "port": redis_server.port,
            "db": 0,
            "keyPrefix": "orig",
            "namespace": namespace,
        }
    )
    try:
        assert isinstance(by_url, RedisStore) and isinstance(by_host, RedisStore)
        assert by_url.layout.marker == by_host.layout.marker == f"orig:{namespace}:layout"
        by_url.save("c", [msg("hi")])
        assert by_host.get_ttl("c") in (59, 60)
        assert [m.content for m in by_host.load("c").messages] == ["hi"]
    finally:
        by_url.clear()


# -- passwords -------------------------------------------------------------------------------


def test_password_option(password_server):
    store = build(
        OPTIONS={"HOST": "127.0.0.1", "PORT": password_server.port, "PASSWORD": PASSWORD}
    )
    store.save("c", [msg("a")])
    assert store.exists("c")
    assert PASSWORD not in repr(store.server)
    store.clear()


def test_password_in_url(password_server):
    store = build(LOCATION=password_server.url)
    store.save("c", [msg("a")])
    assert store.exists("c")
    assert PASSWORD not in store.address
    store.clear()


@pytest.mark.parametrize(
    "config",
    [
        {"OPTIONS": {"PASSWORD": "wrong-" + PASSWORD}},
        {"OPTIONS": {"PASSWORD": "wrong-" + PASSWORD, "USERNAME": "default"}},
        {"LOCATION_PASSWORD": "wrong-" + PASSWORD},
        {},
    ],
    ids=["wrong-password", "wrong-user-password", "wrong-password-in-url", "no-password"],
)
def test_rejected_credentials_raise_auth_errors_without_the_password(password_server, config):
    port = password_server.port
    if "LOCATION_PASSWORD" in config:
        store = build(LOCATION=f"redis://:{config['LOCATION_PASSWORD']}@127.0.0.1:{port}/0")
    else:
        options = {"HOST": "127.0.0.1", "PORT": port, **config.get("OPTIONS", {})}
        store = build(OPTIONS=options)
    with pytest.raises(BackendAuthError) as info:
        store.save("c", [msg("a")])
    text = str(info.value)
    assert isinstance(info.value, BackendError)
    assert "'chat'" in text and f"127.0.0.1:{port}" in text
    assert PASSWORD not in text
    assert "rejected the credentials" in text


# -- reusing a django-redis cache ------------------------------------------------------------


def test_cache_option_reuses_the_django_redis_client(redis_server):
    caches = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "sessions": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": redis_server.url},
    }
    with override_settings(CACHES=caches):
        from django.core.cache import caches as django_caches
        from django_redis import get_redis_connection

        store = build(OPTIONS={"CACHE": "sessions"}, NAMESPACE=uuid.uuid4().hex)
        store.save("c", [msg("via the cache's pool")])
        assert [m.content for m in store.load("c").messages] == ["via the cache's pool"]
        assert store.client.connection_pool is get_redis_connection("sessions").connection_pool
        assert f"127.0.0.1:{redis_server.port}" in store.address and "sessions" in store.address
        django_caches["sessions"].set("k", "v")

        async def native() -> None:
            await store.aappend("c", [msg("async")])
            assert await store._async_client() is not None
            assert (await store.aload("c")).metadata.message_count == 2
            await store.aclose()

        asyncio.run(native())
        store.close()
        assert django_caches["sessions"].get("k") == "v"
        assert store.exists("c")
        store.clear()


def test_cache_option_errors():
    caches = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "plain": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }
    with override_settings(CACHES=caches):
        with pytest.raises(ImproperlyConfigured, match=r"CONVSTORE\['chat'\].*'missing'"):
            build(OPTIONS={"CACHE": "missing"})
        store = build(OPTIONS={"CACHE": "plain"})
        with pytest.raises(ImproperlyConfigured, match=r"CONVSTORE\['chat'\].*not a django-redis"):
            store.exists("c")
        with pytest.raises(ImproperlyConfigured, match=r"CACHE.*cannot be combined with LOCATION"):
            build(LOCATION="redis://127.0.0.1:6379/0", OPTIONS={"CACHE": "plain"})
        with pytest.raises(ImproperlyConfigured, match=r"CACHE.*cannot be combined with PASSWORD"):
            build(OPTIONS={"CACHE": "plain", "PASSWORD": "x"})


# -- configuration errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"LOCATION": "http://127.0.0.1:6379"}, "LOCATION"),
        ({"LOCATION": "redis://"}, "LOCATION"),
        ({"LOCATION": "redis://127.0.0.1:notaport/0"}, "LOCATION"),
        ({"LOCATION": "redis://127.0.0.1:6379/zero"}, "LOCATION"),
        ({"LOCATION": "unix://"}, "LOCATION"),
        ({"LOCATION": "redis://127.0.0.1:6379/0", "OPTIONS": {"HOST": "x"}}, "'HOST'"),
        ({"LOCATION": "redis://127.0.0.1:6379/0", "OPTIONS": {"DB": 1}}, "'DB'"),
        ({"LOCATION": "redis://:pw@127.0.0.1:6379/0", "OPTIONS": {"PASSWORD": "x"}}, "PASSWORD"),
        ({"OPTIONS": {"PORT": 0}}, "'PORT'"),
        ({"OPTIONS": {"PORT": 70000}}, "'PORT'"),
        ({"OPTIONS": {"PORT": "abc"}}, "'PORT'"),
        ({"OPTIONS": {"DB": -1}}, "'DB'"),
        ({"OPTIONS": {"HOST": ""}}, "'HOST'"),
        ({"OPTIONS": {"PASSWORD": 5}}, "'PASSWORD'"),
        ({"OPTIONS": {"SOCKET_TIMEOUT": 0}}, "'SOCKET_TIMEOUT'"),
        ({"OPTIONS": {"SOCKET_TIMEOUT": "5"}}, "'SOCKET_TIMEOUT'"),
        ({"OPTIONS": {"CONNECTION_POOL_KWARGS": []}}, "'CONNECTION_POOL_KWARGS'"),
        ({"OPTIONS": {"KEY_PREFIX": ""}}, "'KEY_PREFIX'"),
        ({"OPTIONS": {"KEY_PREFIX": "a{b}"}}, "'KEY_PREFIX'"),
        ({"OPTIONS": {"CACHE": 3}}, "'CACHE'"),
        ({"OPTIONS": {"SENTINELS": []}}, "SENTINELS"),
        ({"OPTIONS": {"INDEX_SHARDS": 0}}, "'INDEX_SHARDS'"),
        ({"OPTIONS": {"INDEX_SHARDS": "4"}}, "'INDEX_SHARDS'"),
        ({"OPTIONS": {"INDEX_SHARDS": True}}, "'INDEX_SHARDS'"),
        ({"OPTIONS": {"INDEX_SHARDS": 16385}}, "'INDEX_SHARDS'"),
        ({"NAMESPACE": "ns{1}"}, "NAMESPACE"),
    ],
)
def test_configuration_errors_name_the_alias_and_the_option(config, named):
    with pytest.raises(ImproperlyConfigured) as info:
        build(alias="chat", **config)
    text = str(info.value)
    assert text.startswith("CONVSTORE['chat']: ")
    assert named in text
    assert "pw" not in text.replace("password", "")


def test_system_check_reports_a_bad_redis_store():
    from django.core.checks import run_checks

    bad = {"default": {"BACKEND": BACKEND, "LOCATION": "http://nope"}}
    with override_settings(CONVSTORE=bad):
        errors = [e for e in run_checks() if e.id == "convstore.E006"]
    assert errors and "LOCATION" in errors[0].msg


def test_building_a_store_opens_no_connection():
    port = free_port()
    store = build(LOCATION=f"redis://127.0.0.1:{port}/0", OPTIONS={"SOCKET_TIMEOUT": 1})
    with pytest.raises(BackendUnavailableError) as info:
        store.exists("c")
    assert f"127.0.0.1:{port}" in str(info.value)
    assert info.value.backend == "redis" and info.value.alias == "chat"
    assert info.value.address == f"127.0.0.1:{port}"


def test_cache_option_brings_a_sentinel_setup(redis_server):
    """A django-redis cache with SentinelClient: the store finds the primary through Sentinel."""
    from tests.servers.redis_server import RedisSentinel

    with RedisSentinel(redis_server, name="convstore-primary") as sentinel:
        caches = {
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "ha": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": "redis://convstore-primary/0",
                "OPTIONS": {
                    "CLIENT_CLASS": "django_redis.client.SentinelClient",
                    "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
                    "SENTINELS": [(sentinel.host, sentinel.port)],
                },
            },
        }
        with override_settings(CACHES=caches):
            store = build(OPTIONS={"CACHE": "ha"}, NAMESPACE=uuid.uuid4().hex)
            store.save("c", [msg("through sentinel")])
            direct = build(LOCATION=redis_server.url, NAMESPACE=store.namespace)
            assert [m.content for m in direct.load("c").messages] == ["through sentinel"]

            async def native() -> None:
                await store.aappend("c", [msg("async, through sentinel")])
                assert await store._async_client() is not None  # not the thread fallback
                loaded = await store.aload("c")
                assert [m.content for m in loaded.messages][-1] == "async, through sentinel"
                await store.aclose()

            asyncio.run(native())
            assert store.clear() == 1
