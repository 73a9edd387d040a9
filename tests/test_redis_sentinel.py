"""The Redis store behind Sentinel: a django-redis SentinelClient cache, real Sentinels, failovers.

The store reaches the master through ``OPTIONS["CACHE"]`` naming a cache
whose client asks the Sentinels for the master. After a failover (requested
or after a crash) the same store object carries on by itself: callers see
at most a few ``BackendUnavailableError`` meanwhile, never another error,
and every write acknowledged and replicated before the failover is there,
exactly once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from django_convstore import BackendUnavailableError, create_store
from django_convstore.backends.base import BaseStore
from tests.fixtures.redis_sentinel import sentinel_store_config
from tests.servers.redis_replication import acknowledged
from tests.servers.redis_sentinel import SentinelSetup

pytest.importorskip("django_redis", reason="the redis extra is not installed")

RECOVERY_TIMEOUT = 20.0
T = TypeVar("T")


def msg(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


def _store(settings: Any, setup: SentinelSetup) -> BaseStore:
    config = sentinel_store_config(settings, setup)
    config["NAMESPACE"] = f"s{uuid.uuid4().hex[:8]}"
    return create_store(config, alias="sentinel")


def _until_it_works(call: Callable[[], T]) -> tuple[T, int]:
    """Retry ``call`` through BackendUnavailableError only; its result and the failures seen."""
    failures = 0
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while True:
        try:
            return call(), failures
        except BackendUnavailableError:
            failures += 1
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_the_store_writes_to_the_master_the_sentinel_names(
    settings: Any, redis_sentinel: SentinelSetup
) -> None:
    store = _store(settings, redis_sentinel)
    try:
        store.save("c", [msg("one")])
        assert acknowledged(redis_sentinel.master, 1, key="probe-c") == 1
        (replica,) = redis_sentinel.replicas
        keys = replica.command("KEYS", f"*{store.namespace}*")
        assert keys, "the conversation is on the master's replica"
    finally:
        store.clear()
        store.close()


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["SENTINEL FAILOVER", "SIGKILL"])
def test_the_same_store_follows_a_failover(
    settings: Any, make_redis_sentinel: Callable[..., SentinelSetup], fault: str
) -> None:
    setup = make_redis_sentinel()
    store = _store(settings, setup)
    try:
        store.save("c", [msg("one")])
        assert acknowledged(setup.master, 1, key="probe-c") == 1

        old, new = setup.failover() if fault == "SENTINEL FAILOVER" else setup.kill_master()

        metadata, _ = _until_it_works(lambda: store.append("c", [msg("two")]))
        assert metadata.message_count == 2
        loaded = store.load("c")
        assert loaded is not None
        assert [m.content for m in loaded.messages] == ["one", "two"]
        assert setup.master is new and new is not old
    finally:
        store.close()
