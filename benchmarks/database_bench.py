"""Database store: statements per operation, the floors and the SQL peers, costs vs length.

Every ratio compares two things measured in the same run on the same database,
timed alternately call by call (medians), so both see the same machine noise:

* ours ÷ floor — the plain driver doing the least equivalent work on the same
  tables (``benchmarks/sql_peers.py``); targets of issue 19: PostgreSQL append
  ≤ 1.0x, load @10 and ``load(last=20)`` ≤ 1.5x; SQLite (WAL) append ≤ 2.0x,
  ``load(last=20)`` ≤ 3x, load @1,000 ≤ 1.3x;
* ours ÷ peer — the OpenAI Agents SDK's ``SQLiteSession`` (SQLite, WAL) and
  ``SQLAlchemySession`` (PostgreSQL, asyncpg): below 1.0x means we are faster;
* at 10,000 messages ÷ at 10 — append and ``load(last=20)`` within 1.2x,
  ``pop(1)`` and ``truncate`` to a length near the end within 1.5x;
* the SQL statements each operation sends (BEGIN/COMMIT included).

SQLite: a file in a temporary directory in WAL mode. PostgreSQL when
``CONVSTORE_BENCH_POSTGRES`` names a DSN or a server answers on
127.0.0.1:5432; MySQL/MariaDB when ``CONVSTORE_BENCH_MYSQL`` names a DSN or a
server answers on 127.0.0.1:3306 (scratch databases ``convstore_bench_<pid>``,
created and dropped).

    python -m benchmarks.database_bench [--quick] [--only sqlite postgresql mysql]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
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

from . import sql_peers  # noqa: E402
from .timing import markdown_table  # noqa: E402
from .workload import fill, message, messages  # noqa: E402

BACKEND = "django_convstore.backends.database.DatabaseStore"
VENDORS = ("sqlite", "postgresql", "mysql")

# -- scratch databases ------------------------------------------------------------------------


@contextmanager
def scratch_alias(alias: str, settings_dict: dict[str, Any]) -> Iterator[str]:
    """A database alias added for the run, migrated, and removed afterwards."""
    connections.settings[alias] = connections.configure_settings(
        {"default": {"ENGINE": "django.db.backends.dummy"}, alias: settings_dict}
    )[alias]
    try:
        call_command("migrate", "django_convstore", database=alias, verbosity=0)
        yield alias
    finally:
        connections[alias].close()
        del connections[alias]
        del connections.settings[alias]


@contextmanager
def sqlite_database(*, wal: bool = True, alias: str = "bench_sqlite") -> Iterator[str]:
    """A migrated SQLite file (WAL mode unless ``wal=False``), in a temporary directory."""
    with (
        tempfile.TemporaryDirectory(prefix="convstore-db-bench-") as directory,
        scratch_alias(
            alias,
            {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": os.path.join(directory, "bench.sqlite3"),
                "OPTIONS": {"timeout": 30},
            },
        ) as found,
    ):
        if wal:
            with connections[found].cursor() as cursor:
                cursor.execute("PRAGMA journal_mode=WAL")
        yield found


def _server(variable: str, default: str) -> dict[str, Any]:
    url = urlparse(os.environ.get(variable, default))
    return {
        "host": url.hostname or "127.0.0.1",
        "port": url.port,
        "user": url.username or "",
        "password": url.password or "",
        "dbname": url.path.lstrip("/"),
    }


def postgres_server() -> dict[str, Any] | None:
    """Connection settings of a reachable PostgreSQL server, or None."""
    server = _server("CONVSTORE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
    server["port"] = server["port"] or 5432
    try:
        import psycopg

        psycopg.connect(**server, connect_timeout=2).close()
    except Exception:  # no server, no driver, no access: no PostgreSQL leg
        return None
    return server


def mysql_server() -> dict[str, Any] | None:
    """Connection settings of a reachable MySQL/MariaDB server, or None."""
    server = _server("CONVSTORE_BENCH_MYSQL", "mysql://root@127.0.0.1:3306/test")
    server["port"] = server["port"] or 3306
    try:
        import MySQLdb

        MySQLdb.connect(
            host=server["host"],
            port=server["port"],
            user=server["user"],
            password=server["password"],
            connect_timeout=2,
        ).close()
    except Exception:  # no server, no driver, no access: no MySQL leg
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
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def mysql_database(server: dict[str, Any]) -> Iterator[str]:
    """A scratch MySQL/MariaDB database (utf8mb4), migrated, dropped at the end."""
    import MySQLdb

    name = f"convstore_bench_{os.getpid()}"
    admin = {k: server[k] for k in ("host", "port", "user", "password")}
    connection = MySQLdb.connect(**admin)
    connection.cursor().execute(f"CREATE DATABASE IF NOT EXISTS {name} CHARACTER SET utf8mb4")
    connection.close()
    try:
        settings_dict = {
            "ENGINE": "django.db.backends.mysql",
            "NAME": name,
            "USER": server["user"],
            "PASSWORD": server["password"],
            "HOST": server["host"],
            "PORT": str(server["port"]),
            "OPTIONS": {"charset": "utf8mb4"},
        }
        with scratch_alias("bench_mysql", settings_dict) as alias:
            yield alias
    finally:
        connection = MySQLdb.connect(**admin)
        connection.cursor().execute(f"DROP DATABASE IF EXISTS {name}")
        connection.close()


# -- timing -------------------------------------------------------------------------------------


def paired(
    first: Callable[[], object],
    second: Callable[[], object],
    *,
    calls: int,
    after_first: Callable[[], object] | None = None,
    after_second: Callable[[], object] | None = None,
) -> tuple[float, float]:
    """Median seconds per call of two operations timed alternately (``after_*`` untimed)."""
    a: list[float] = []
    b: list[float] = []
    for call in range(calls + 3):
        start = time.perf_counter()
        first()
        middle = time.perf_counter()
        if after_first:
            after_first()
        resumed = time.perf_counter()
        second()
        end = time.perf_counter()
        if after_second:
            after_second()
        if call >= 3:  # warm-up: connections, prepared statements, caches
            a.append(middle - start)
            b.append(end - resumed)
    return statistics.median(a), statistics.median(b)


def row(
    database: str,
    measurement: str,
    value: float | int,
    baseline: float | None = None,
    target: str = "-",
) -> dict[str, object]:
    """One result row; ``target`` like ``"≤ 1.5x"`` or ``"< 1.0x"`` is checked."""
    if baseline is None:
        result = f"{value}" if isinstance(value, int) else f"{value * 1e6:.0f} µs"
        return {
            "database": database,
            "measurement": measurement,
            "result": result,
            "baseline (same run)": "-",
            "ratio": "-",
            "target": target,
            "met": "-",
        }
    ratio = value / baseline
    met = "-"
    if target != "-":
        bound = float(target.split()[1].rstrip("x"))
        met = "yes" if (ratio < bound if target.startswith("<") else ratio <= bound) else "NO"
    return {
        "database": database,
        "measurement": measurement,
        "result": f"{value * 1e6:.0f} µs",
        "baseline (same run)": f"{baseline * 1e6:.0f} µs",
        "ratio": f"{ratio:.2f}x",
        "target": target,
        "met": met,
    }


# -- measurements -----------------------------------------------------------------------------


def statements(store: DatabaseStore, big: int) -> dict[str, int]:
    """SQL statements sent by one call of each operation (BEGIN/COMMIT included)."""
    fill(store, "qa-long", big)
    snapshot = Conversation(
        "qa-put",
        [Message("user", "x")],
        ConversationMetadata("qa-put", 1, now_ms(), message_count=1),
    )
    store.put(snapshot)
    operations: dict[str, Callable[[], object]] = {
        "append (new conversation)": lambda: store.append("qa", [message(0)]),
        "append (9 messages)": lambda: store.append("qa", messages(1, 9)),
        f"append (at {big:,} messages)": lambda: store.append("qa-long", [message(1)]),
        "save (new, 20 messages)": lambda: store.save("qa-save", messages(0, 20)),
        "save (replace, 20 messages)": lambda: store.save("qa-save", messages(0, 20)),
        "create": lambda: store.create("qa-create", [message(0)]),
        "put (replace)": lambda: store.put(snapshot),
        "pop(1)": lambda: store.pop("qa-long"),
        "truncate": lambda: store.truncate("qa-long", big - 5),
        "update_metadata": lambda: store.update_metadata("qa", {"k": 1}),
        "set_ttl": lambda: store.set_ttl("qa", 600),
        "load": lambda: store.load("qa"),
        f"load(last=20) at {big:,}": lambda: store.load("qa-long", last=20),
        "exists": lambda: store.exists("qa"),
        "get_ttl": lambda: store.get_ttl("qa"),
        "list_conversations": lambda: store.list_conversations(limit=20),
        "get_stats": store.get_stats,
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


#: Targets per vendor: (measurement key) → target text.
FLOOR_TARGETS = {
    "postgresql": {"append@10": "≤ 1.0x", "load@10": "≤ 1.5x", "last@10": "≤ 1.5x",
                   "last@1000": "≤ 1.5x"},
    "sqlite": {"append@10": "≤ 2.0x", "load@1000": "≤ 1.3x", "last@10": "≤ 3.0x",
               "last@1000": "≤ 3.0x"},
}  # fmt: skip
PEER_TARGETS = {
    "postgresql": ("append@10", "load@10", "load@1000", "last@1000", "pop", "delete"),
    "sqlite": ("append@10", "load@10", "load@1000", "last@1000"),
}


def versus_floor(
    store: DatabaseStore, floor: sql_peers.Floor, vendor: str, calls: int
) -> list[dict[str, object]]:
    return [
        *_versus_floor_at(store, floor, vendor, calls, 10),
        *_versus_floor_at(store, floor, vendor, calls, 1000),
    ]


def _versus_floor_at(
    store: DatabaseStore, floor: sql_peers.Floor, vendor: str, calls: int, size: int
) -> list[dict[str, object]]:
    targets = FLOOR_TARGETS.get(vendor, {})
    doc = sql_peers.document(message(1))
    count = max(4, calls // 4) if size == 10 else 4
    ours_ids = [f"f{size}-{i}" for i in range(count)]
    for cid in ours_ids:
        fill(store, cid, size)
    floor_pks = [floor.create(f"floor-{size}-{i}", messages(0, size)) for i in range(count)]
    next_ours, next_floor = itertools.cycle(ours_ids), itertools.cycle(floor_pks)
    ours_t, floor_t = paired(
        lambda: store.append(next(next_ours), [message(1)]),
        lambda: floor.append(next(next_floor), doc),
        calls=calls,
    )
    rows = [
        row(vendor, f"append-1 @{size:,} msgs vs floor", ours_t, floor_t,
            targets.get(f"append@{size}", "-"))
    ]  # fmt: skip
    # Loads read conversations of exactly ``size`` messages, written for them.
    load_id, load_pk = f"load-{size}", floor.create(f"floor-load-{size}", messages(0, size))
    fill(store, load_id, size)
    ours_t, floor_t = paired(lambda: store.load(load_id), lambda: floor.load(load_pk), calls=calls)
    rows.append(
        row(vendor, f"load @{size:,} vs floor", ours_t, floor_t, targets.get(f"load@{size}", "-"))
    )
    ours_t, floor_t = paired(
        lambda: store.load(load_id, last=20), lambda: floor.last(load_pk, 20), calls=calls
    )
    rows.append(
        row(vendor, f"load(last=20) @{size:,} vs floor", ours_t, floor_t,
            targets.get(f"last@{size}", "-"))
    )  # fmt: skip
    return rows


def versus_peer(
    store: DatabaseStore, peer: sql_peers.AgentsSessions, vendor: str, calls: int
) -> list[dict[str, object]]:
    rows = []
    wanted = PEER_TARGETS.get(vendor, ())
    items = messages(0, 1000)
    plain = [{"role": m["role"], "content": m["content"]} for m in items]

    def target(key: str) -> str:
        return "< 1.0x" if key in wanted else "-"

    count = max(4, calls // 4)
    ours_ids = [f"p10-{i}" for i in range(count)]
    peer_ids = [f"peer10-{i}" for i in range(count)]
    for cid in ours_ids:
        fill(store, cid, 10)
    for cid in peer_ids:
        peer.fill(cid, plain[:10])
    next_ours, next_peer = itertools.cycle(ours_ids), itertools.cycle(peer_ids)
    ours_t, peer_t = paired(
        lambda: store.append(next(next_ours), [message(1)]),
        lambda: peer.append(next(next_peer), plain[1]),
        calls=calls,
    )
    rows.append(row(vendor, f"append-1 @10 vs {peer.label}", ours_t, peer_t, target("append@10")))
    for size in (10, 1000):
        fill(store, f"pl-{size}", size)
        peer.fill(f"peerl-{size}", plain[:size])
        ours_t, peer_t = paired(
            partial(store.load, f"pl-{size}"), partial(peer.load, f"peerl-{size}"), calls=calls
        )
        rows.append(
            row(vendor, f"load @{size:,} vs get_items()", ours_t, peer_t, target(f"load@{size}"))
        )
    ours_t, peer_t = paired(
        lambda: store.load("pl-1000", last=20),
        lambda: peer.last("peerl-1000", 20),
        calls=calls,
    )
    rows.append(
        row(vendor, "load(last=20) @1,000 vs get_items(limit=20)", ours_t, peer_t,
            target("last@1000"))
    )  # fmt: skip
    ours_t, peer_t = paired(
        lambda: store.pop("pl-1000"),
        lambda: peer.pop("peerl-1000"),
        calls=calls,
        after_first=lambda: store.append("pl-1000", [message(1)]),
        after_second=lambda: peer.append("peerl-1000", plain[1]),
    )
    rows.append(row(vendor, "pop(1) @1,000 vs pop_item()", ours_t, peer_t, target("pop")))
    ours_t, peer_t = paired(
        lambda: store.delete("pd"),
        lambda: peer.clear("peerd"),
        calls=calls,
        after_first=lambda: store.append("pd", messages(0, 10)),
        after_second=lambda: peer.fill("peerd", plain[:10]),
    )
    rows.append(
        row(vendor, "delete (10 msgs) vs clear_session()", ours_t, peer_t, target("delete"))
    )
    return rows


def versus_length(
    store: DatabaseStore, vendor: str, calls: int, big: int
) -> list[dict[str, object]]:
    rows = []
    count = max(4, calls // 4)
    small_ids = [f"s-{i}" for i in range(count)]
    large_ids = [f"l-{i}" for i in range(4)]
    for cid in small_ids:
        fill(store, cid, 10)
    for cid in large_ids:
        fill(store, cid, big)
    next_small, next_large = itertools.cycle(small_ids), itertools.cycle(large_ids)
    label = f"@{big:,} vs @10"
    at_big, at_10 = paired(
        lambda: store.append(next(next_large), [message(1)]),
        lambda: store.append(next(next_small), [message(1)]),
        calls=calls,
    )
    rows.append(row(vendor, f"append-1 {label}", at_big, at_10, "≤ 1.2x"))
    at_big, at_10 = paired(
        lambda: store.load("l-0", last=20), lambda: store.load("s-0", last=20), calls=calls
    )
    rows.append(row(vendor, f"load(last=20) {label}", at_big, at_10, "≤ 1.2x"))
    at_big, at_10 = paired(
        lambda: store.pop("l-1"),
        lambda: store.pop("s-1"),
        calls=calls,
        after_first=lambda: store.append("l-1", [message(1)]),
        after_second=lambda: store.append("s-1", [message(1)]),
    )
    rows.append(row(vendor, f"pop(1) {label}", at_big, at_10, "≤ 1.5x"))
    sizes = {cid: _length(store, cid) for cid in ("l-2", "s-2")}
    at_big, at_10 = paired(
        lambda: store.truncate("l-2", sizes["l-2"] - 1),
        lambda: store.truncate("s-2", sizes["s-2"] - 1),
        calls=calls,
        after_first=lambda: store.append("l-2", [message(1)]),
        after_second=lambda: store.append("s-2", [message(1)]),
    )
    rows.append(row(vendor, f"truncate(length - 1) {label}", at_big, at_10, "≤ 1.5x"))
    return rows


def _length(store: DatabaseStore, conversation_id: str) -> int:
    loaded = store.load(conversation_id, last=0)
    assert loaded is not None
    return loaded.metadata.message_count


def measure(alias: str, vendor: str, quick: bool, stack: ExitStack) -> list[dict[str, object]]:
    """All rows for one database."""
    calls = 40 if quick else 300
    big = 1000 if quick else 10_000
    store = create_store(
        {"BACKEND": BACKEND, "NAMESPACE": "bench", "OPTIONS": {"DATABASE": alias}}
    )
    assert isinstance(store, DatabaseStore)
    rows = [
        row(vendor, f"statements: {name}", count) for name, count in statements(store, big).items()
    ]
    floor = {
        "sqlite": sql_peers.sqlite_floor,
        "postgresql": sql_peers.postgres_floor,
        "mysql": sql_peers.mysql_floor,
    }[vendor](alias)
    stack.callback(floor.close)
    rows += versus_floor(store, floor, vendor, calls)
    missing = sql_peers.agents_missing()
    if vendor in PEER_TARGETS and missing:
        rows.append(row(vendor, f"peer skipped: {missing}", 0))
    elif vendor in PEER_TARGETS:
        if vendor == "sqlite":
            directory = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="convstore-agents-")
            )
            peer = sql_peers.sqlite_session(os.path.join(directory, "agents.sqlite3"))
        else:
            peer = sql_peers.sqlalchemy_session(alias)
        stack.callback(peer.close)
        rows += versus_peer(store, peer, vendor, calls)
    rows += versus_length(store, vendor, calls, big)
    if vendor == "sqlite":
        rows += wal_versus_rollback_journal(alias, calls)
    store.clear()
    return rows


def wal_versus_rollback_journal(wal_alias: str, calls: int) -> list[dict[str, object]]:
    """SQLite: the same store on a WAL file and on a file with the default rollback journal."""
    rows = []
    with sqlite_database(wal=False, alias="bench_sqlite_journal") as journal_alias:
        stores = [
            create_store({"BACKEND": BACKEND, "NAMESPACE": "wal", "OPTIONS": {"DATABASE": a}})
            for a in (wal_alias, journal_alias)
        ]
        for store in stores:
            fill(store, "c", 1000)
        wal, journal = stores
        wal_t, journal_t = paired(
            lambda: wal.append("c", [message(1)]),
            lambda: journal.append("c", [message(1)]),
            calls=calls,
        )
        rows.append(row("sqlite", "append-1: WAL vs rollback journal", wal_t, journal_t))
        wal_t, journal_t = paired(lambda: wal.load("c"), lambda: journal.load("c"), calls=calls)
        rows.append(row("sqlite", "load @1,000: WAL vs rollback journal", wal_t, journal_t))
        for store in stores:
            store.clear()
    return rows


def skipped(vendor: str, why: str) -> dict[str, object]:
    return row(vendor, f"skipped: {why}", 0)


def run(quick: bool = False, only: tuple[str, ...] = VENDORS) -> list[dict[str, object]]:
    """Measure on SQLite, and on PostgreSQL and MySQL/MariaDB when reachable."""
    rows: list[dict[str, object]] = []
    for vendor in only:
        with ExitStack() as stack:
            if vendor == "sqlite":
                alias = stack.enter_context(sqlite_database())
            elif vendor == "postgresql":
                server = postgres_server()
                if server is None:
                    rows.append(skipped(vendor, "no server (set CONVSTORE_BENCH_POSTGRES)"))
                    continue
                alias = stack.enter_context(postgres_database(server))
            else:
                mysql = mysql_server()
                if mysql is None:
                    rows.append(skipped(vendor, "no server (set CONVSTORE_BENCH_MYSQL)"))
                    continue
                alias = stack.enter_context(mysql_database(mysql))
            rows.extend(measure(alias, vendor, quick, stack))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, 1,000 not 10,000")
    parser.add_argument("--only", nargs="+", choices=VENDORS, default=list(VENDORS))
    args = parser.parse_args()
    print(markdown_table(run(quick=args.quick, only=tuple(args.only))))


if __name__ == "__main__":
    main()
