"""Database store: statements per operation, and costs that must not grow with length.

The claims, each checked against a baseline measured in the same run on the
same database:

* append costs the same at 5,000 messages as at 10 (target: within 1.5x);
* ``load(last=20)`` of a 10,000-message conversation costs about what loading
  a whole 20-message conversation costs (target: within 2x);
* the SQL statements each operation sends (Django's ``CaptureQueriesContext``,
  BEGIN/COMMIT included) are listed, and do not depend on the length.

SQLite always (a file in a temporary directory, Django's default settings: a
commit waits for the disk); PostgreSQL when ``CONVSTORE_BENCH_POSTGRES``
names a DSN or a server answers on 127.0.0.1:5432 (a scratch database
``convstore_bench_<pid>`` is created and dropped). Each ratio times the two
sides alternately, call by call, and compares the medians, so both see the
same machine noise.

    python -m benchmarks.database_bench [--quick]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connections  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from django_convstore import create_store  # noqa: E402
from django_convstore.backends.database import DatabaseStore  # noqa: E402
from django_convstore.clock import now_ms  # noqa: E402
from django_convstore.types import Conversation, ConversationMetadata, Message  # noqa: E402

from .timing import markdown_table  # noqa: E402
from .workload import cycle, fill, message, paired_medians  # noqa: E402

BACKEND = "django_convstore.backends.database.DatabaseStore"
# -- scratch databases ------------------------------------------------------------------------


@contextmanager
def scratch_alias(alias: str, settings_dict: dict[str, Any]) -> Iterator[str]:
    """A database alias added for the run, migrated, and removed afterwards."""
    connections.settings[alias] = connections.configure_settings(
        {"default": {"ENGINE": "django.db.backends.dummy"}, alias: settings_dict}
    )[alias]
    try:
        call_command("migrate", database=alias, verbosity=0)
        yield alias
    finally:
        connections[alias].close()
        del connections[alias]
        del connections.settings[alias]


@contextmanager
def sqlite_database() -> Iterator[str]:
    """A migrated SQLite file in a temporary directory."""
    with (
        tempfile.TemporaryDirectory(prefix="convstore-db-bench-") as directory,
        scratch_alias(
            "bench_sqlite",
            {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": os.path.join(directory, "bench.sqlite3"),
            },
        ) as alias,
    ):
        yield alias


def postgres_server() -> dict[str, Any] | None:
    """Connection settings of a reachable PostgreSQL server, or None."""
    dsn = os.environ.get(
        "CONVSTORE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    url = urlparse(dsn)
    server: dict[str, Any] = {
        "host": url.hostname or "127.0.0.1",
        "port": url.port or 5432,
        "user": url.username or "postgres",
        "password": url.password or "",
        "dbname": url.path.lstrip("/") or "postgres",
    }
    try:
        import psycopg

        psycopg.connect(**server, connect_timeout=2).close()
    except Exception:  # no server, no driver, no access: no PostgreSQL leg
        return None
    return server


@contextmanager
def postgres_database(server: dict[str, Any]) -> Iterator[str]:
    """A scratch PostgreSQL database, migrated, dropped at the end."""
    import psycopg

    name = f"convstore_bench_{os.getpid()}"
    with psycopg.connect(**server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        settings_dict = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": server["user"],
            "PASSWORD": server["password"],
            "HOST": server["host"],
            "PORT": str(server["port"]),
        }
        with scratch_alias("bench_postgres", settings_dict) as alias:
            yield alias
    finally:
        with psycopg.connect(**server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


# -- measurements -----------------------------------------------------------------------------


def statements(store: DatabaseStore) -> dict[str, int]:
    """SQL statements sent by one call of each operation (BEGIN/COMMIT included)."""
    fill(store, "qa-long", 5000)
    snapshot = Conversation(
        "qa-put",
        [Message("user", "x")],
        ConversationMetadata("qa-put", 1, now_ms(), message_count=1),
    )
    store.put(snapshot)
    operations: dict[str, Callable[[], object]] = {
        "append (new conversation)": lambda: store.append("qa", [message(0)]),
        "append (at 10 messages)": lambda: store.append("qa", [message(1)] * 9),
        "append (at 5,000 messages)": lambda: store.append("qa-long", [message(1)]),
        "save (new, 20 messages)": lambda: store.save("qa-save", [message(0)] * 20),
        "save (replace, 20 messages)": lambda: store.save("qa-save", [message(0)] * 20),
        "put (replace)": lambda: store.put(snapshot),
        "load": lambda: store.load("qa"),
        "load(last=20) at 5,000": lambda: store.load("qa-long", last=20),
        "exists": lambda: store.exists("qa"),
        "get_ttl": lambda: store.get_ttl("qa"),
        "set_ttl": lambda: store.set_ttl("qa", 600),
        "list_conversations": lambda: store.list_conversations(limit=20),
        "get_stats": store.get_stats,
        "iter_conversations (4 conversations)": lambda: list(store.iter_conversations()),
        "cleanup (nothing expired)": store.cleanup,
        "delete": lambda: store.delete("qa"),
    }
    counts = {}
    connection = connections[store.database or "default"]
    for name, operation in operations.items():
        with CaptureQueriesContext(connection) as context:
            operation()
        counts[name] = len(context.captured_queries)
    store.clear()
    return counts


def ratio_row(
    database: str, name: str, value: float, baseline: float, target: float
) -> dict[str, object]:
    ratio = value / baseline
    return {
        "database": database,
        "measurement": name,
        "result": f"{value * 1e6:.0f} µs",
        "baseline (same run)": f"{baseline * 1e6:.0f} µs",
        "ratio": f"{ratio:.2f}x",
        "target": f"≤ {target}x",
        "met": "yes" if ratio <= target else "NO",
    }


def measure(alias: str, vendor: str, quick: bool) -> list[dict[str, object]]:
    """All rows for one database."""
    calls = 60 if quick else 300
    store = create_store(
        {"BACKEND": BACKEND, "NAMESPACE": "bench", "OPTIONS": {"DATABASE": alias}}
    )
    assert isinstance(store, DatabaseStore)
    rows: list[dict[str, object]] = [
        {
            "database": vendor,
            "measurement": f"statements: {name}",
            "result": count,
            "baseline (same run)": "-",
            "ratio": "-",
            "target": "-",
            "met": "-",
        }
        for name, count in statements(store).items()
    ]

    # Append at 10 vs at 5,000 messages. Many small conversations, so each grows by
    # only a few messages while measured; a few large ones share the other side.
    small_ids = [f"small-{i}" for i in range(calls // 2)]
    large_ids = [f"large-{i}" for i in range(4 if quick else 10)]
    for cid in small_ids:
        fill(store, cid, 10)
    for cid in large_ids:
        fill(store, cid, 5000)
    next_small, next_large = cycle(small_ids), cycle(large_ids)
    at_5000, at_10 = paired_medians(
        lambda: store.append(next_large(), [message(0)]),
        lambda: store.append(next_small(), [message(0)]),
        calls=calls,
    )
    rows.append(ratio_row(vendor, "append at 5,000 vs at 10 messages", at_5000, at_10, 1.5))

    # The newest 20 of 10,000 messages vs a whole 20-message conversation.
    fill(store, "ten-thousand", 10_000)
    fill(store, "twenty", 20)
    tail, whole = paired_medians(
        lambda: store.load("ten-thousand", last=20),
        lambda: store.load("twenty"),
        calls=calls,
    )
    rows.append(
        ratio_row(vendor, "load(last=20) of 10,000 vs load of 20 messages", tail, whole, 2.0)
    )
    store.clear()
    return rows


def run(quick: bool = False) -> list[dict[str, object]]:
    """Measure on SQLite, and on PostgreSQL when reachable; return the result rows."""
    with sqlite_database() as alias:
        rows = measure(alias, "sqlite", quick)
    server = postgres_server()
    if server is None:
        rows.append(
            {
                "database": "postgresql",
                "measurement": "skipped: no server (set CONVSTORE_BENCH_POSTGRES to a DSN)",
                "result": "-",
                "baseline (same run)": "-",
                "ratio": "-",
                "target": "-",
                "met": "-",
            }
        )
        return rows
    with postgres_database(server) as alias:
        rows.extend(measure(alias, "postgresql", quick))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls")
    args = parser.parse_args()
    print(markdown_table(run(quick=args.quick)))


if __name__ == "__main__":
    main()
