"""The servers and stores a benchmark run measures, started for the run and torn down after.

:func:`backends` starts a private Redis (``tests.servers.redis_server``), a
ZeroDB-compatible test server (``tests.servers.zerodb_server``), a SQLite file
in a temporary directory, and a scratch PostgreSQL database when a server
answers (``CONVSTORE_BENCH_POSTGRES`` or ``CONVSTORE_TEST_POSTGRES`` naming a
DSN, else 127.0.0.1:5432), and yields one :class:`Backend` per store kind.
Each backend builds stores and counts what one operation sends to its server:
round trips (Redis), HTTP requests (ZeroDB) or SQL statements (database).
"""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
django.setup()

from django.db import connections  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from django_convstore import create_store  # noqa: E402
from django_convstore.backends.base import BaseStore  # noqa: E402
from tests.servers.redis_counting import CountingConnection  # noqa: E402
from tests.servers.redis_server import RedisServer  # noqa: E402
from tests.servers.zerodb_server import ZeroDBServer  # noqa: E402

MEMORY = "django_convstore.backends.memory.MemoryStore"
REDIS = "django_convstore.backends.redis.RedisStore"
ZERODB = "django_convstore.backends.zerodb.ZeroDBStore"
DATABASE = "django_convstore.backends.database.DatabaseStore"
#: Every store of the run expires conversations after two hours, like a real deployment.
TTL = 7200


class Tally:
    """What a :meth:`Backend.counting` block saw: ``value`` requests (None: not countable)."""

    value: int | None = None


@dataclass
class Backend:
    """One store kind of the run: how to build its stores and count their requests."""

    name: str
    label: str
    unit: str
    config: Callable[[str], dict[str, Any]]
    counter: Callable[[], AbstractContextManager[Tally]] | None = None
    #: Django database settings a worker process must add (database backends only).
    database: dict[str, Any] | None = None
    database_alias: str | None = None
    stores: list[BaseStore] = field(default_factory=list)

    def store(self, namespace: str, **options: Any) -> BaseStore:
        """A new store of this kind in its own namespace (closed when the run ends)."""
        config = self.config(namespace)
        config["OPTIONS"] = {**config.get("OPTIONS", {}), **options}
        store = create_store(config, alias=f"bench-{self.name}")
        self.stores.append(store)
        return store

    def count(self, operation: Callable[[], object]) -> int | None:
        """Requests one call of ``operation`` sends (None for the memory store)."""
        if self.counter is None:
            operation()
            return None
        with self.counter() as tally:
            operation()
        return tally.value


@contextmanager
def redis_counter() -> Iterator[Tally]:
    """Count the round trips of clients built with ``CountingConnection``."""
    tally = Tally()
    CountingConnection.reset()
    yield tally
    tally.value = CountingConnection.requests


def zerodb_counter(server: ZeroDBServer) -> Callable[[], AbstractContextManager[Tally]]:
    """Count the HTTP requests ``server`` answers."""

    @contextmanager
    def counting() -> Iterator[Tally]:
        tally = Tally()
        with server.counting() as seen:
            yield tally
        tally.value = seen.requests

    return counting


def query_counter(alias: str) -> Callable[[], AbstractContextManager[Tally]]:
    """Count the SQL statements sent on the database ``alias`` (BEGIN/COMMIT included)."""

    @contextmanager
    def counting() -> Iterator[Tally]:
        tally = Tally()
        with CaptureQueriesContext(connections[alias]) as context:
            yield tally
        tally.value = len(context.captured_queries)

    return counting


def redis_store_config(url: str, namespace: str) -> dict[str, Any]:
    """A Redis store on the run's server whose round trips ``CountingConnection`` counts."""
    return {
        "BACKEND": REDIS,
        "LOCATION": url,
        "NAMESPACE": namespace,
        "TTL": TTL,
        "OPTIONS": {"CONNECTION_POOL_KWARGS": {"connection_class": CountingConnection}},
    }


def zerodb_store_config(server: ZeroDBServer, namespace: str) -> dict[str, Any]:
    """A ZeroDB store on the test server (quick retries; nothing is injected here)."""
    return {
        "BACKEND": ZERODB,
        "NAMESPACE": namespace,
        "TTL": TTL,
        "OPTIONS": {
            "BASE_URL": server.base_url,
            "PROJECT_ID": server.project_id,
            "API_KEY": server.api_key,
            "TIMEOUT": 30,
        },
    }


def _postgres_dsn_env() -> None:
    # database_bench reads CONVSTORE_BENCH_POSTGRES; the test suite's variable counts too.
    test_dsn = os.environ.get("CONVSTORE_TEST_POSTGRES")
    if test_dsn:
        os.environ.setdefault("CONVSTORE_BENCH_POSTGRES", test_dsn)


@contextmanager
def backends(*, postgres: bool = True, only: set[str] | None = None) -> Iterator[list[Backend]]:
    """Start every server and yield the backends (``only``: a subset of their names)."""
    from . import database_bench

    wanted = only or {"memory", "redis", "zerodb", "sqlite", "postgresql"}
    found: list[Backend] = []
    with ExitStack() as stack:
        if "memory" in wanted:
            found.append(
                Backend(
                    "memory",
                    "memory",
                    "-",
                    lambda ns: {"BACKEND": MEMORY, "LOCATION": ns, "NAMESPACE": ns, "TTL": TTL},
                )
            )
        if "redis" in wanted:
            redis = stack.enter_context(RedisServer())
            found.append(
                Backend(
                    "redis",
                    "Redis",
                    "round trips",
                    partial(redis_store_config, redis.url),
                    redis_counter,
                )
            )
        if "zerodb" in wanted:
            zerodb = stack.enter_context(ZeroDBServer())
            found.append(
                Backend(
                    "zerodb",
                    "ZeroDB (test server)",
                    "HTTP requests",
                    partial(zerodb_store_config, zerodb),
                    zerodb_counter(zerodb),
                )
            )
        if "sqlite" in wanted:
            alias = stack.enter_context(database_bench.sqlite_database())
            found.append(_database_backend("sqlite", "database (SQLite)", alias))
        if postgres and "postgresql" in wanted:
            _postgres_dsn_env()
            server = database_bench.postgres_server()
            if server is not None:
                alias = stack.enter_context(database_bench.postgres_database(server))
                found.append(_database_backend("postgresql", "database (PostgreSQL)", alias))
        try:
            yield found
        finally:
            for backend in found:
                for store in backend.stores:
                    store.close()


def _database_backend(name: str, label: str, alias: str) -> Backend:
    settings_dict = connections[alias].settings_dict
    database: dict[str, Any] = {
        key: settings_dict[key]
        for key in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT", "OPTIONS")
        if key in settings_dict
    }
    return Backend(
        name,
        label,
        "SQL statements",
        lambda ns: {
            "BACKEND": DATABASE,
            "NAMESPACE": ns,
            "TTL": TTL,
            "OPTIONS": {"DATABASE": alias},
        },
        query_counter(alias),
        database=database,
        database_alias=alias,
    )


# -- the machine ------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def machine(
    redis_version: str | None = None, postgres_version: str | None = None
) -> dict[str, str]:
    """What the run ran on, for the report's header."""
    info = {
        "date (UTC)": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count()),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "Django": django.get_version(),
        "Redis": redis_version or "-",
        "SQLite": sqlite3.sqlite_version,
        "PostgreSQL": postgres_version or "not reachable (skipped)",
        "commit": _git_commit(),
    }
    return info


def redis_version() -> str:
    """The version (and flavour) of the Redis server the run starts."""
    with RedisServer() as server:
        info = str(server.command("INFO", "server"))
    fields = dict(
        line.split(":", 1)
        for line in info.splitlines()
        if ":" in line and not line.startswith("#")
    )
    name = "Valkey" if "valkey_version" in fields else "Redis"
    version = fields.get("valkey_version") or fields.get("redis_version", "?")
    return f"{name} {version.strip()} ({os.path.basename(server.binary or '')})"


def postgres_version() -> str | None:
    """The version of the PostgreSQL server the run uses, or None when none answers."""
    from . import database_bench

    _postgres_dsn_env()
    server = database_bench.postgres_server()
    if server is None:
        return None
    import psycopg

    with psycopg.connect(**server, connect_timeout=2) as connection:
        row = connection.execute("SHOW server_version").fetchone()
    return f"PostgreSQL {row[0] if row else '?'}"
