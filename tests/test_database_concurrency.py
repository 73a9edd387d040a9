"""The database backend under concurrent writers: processes, threads, races, interleavings.

SQLite (a file, so other connections share it) always; PostgreSQL when a
server answers. Interleavings are produced for real: a Django
``execute_wrapper`` runs another thread's write between two statements of the
operation under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext

from django_convstore import create_store
from django_convstore.backends.database import DatabaseStore
from django_convstore.clock import now_ms
from django_convstore.models import StoredConversation, StoredMessage
from django_convstore.types import Conversation, ConversationMetadata, Message
from tests.database_worker import batch
from tests.fixtures.database import (
    POSTGRES_ALIAS,
    database_params,
    postgres_only,
    write_before_first_read,
)

BACKEND = "django_convstore.backends.database.DatabaseStore"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=database_params())
def db_alias(request: pytest.FixtureRequest) -> str:
    """The database alias under test (SQLite, and PostgreSQL when reachable)."""
    request.getfixturevalue("_database_threads_released")
    return str(request.param)


@pytest.fixture
def db_store(db_alias: str) -> Iterator[DatabaseStore]:
    """An empty database store on the alias under test, in a namespace of its own."""
    store = create_store(
        {
            "BACKEND": BACKEND,
            "NAMESPACE": f"t{uuid.uuid4().hex[:12]}",
            "OPTIONS": {"DATABASE": db_alias},
        }
    )
    assert isinstance(store, DatabaseStore)
    yield store
    store.clear()


def in_threads(count: int, work: Callable[[int], Any]) -> list[BaseException]:
    """Run ``work(i)`` in ``count`` threads started together; return what they raised."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            work(index)
        except BaseException as exc:  # collected for the assertion
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


def positions(store: DatabaseStore, conversation_id: str) -> list[int]:
    return list(
        StoredMessage.objects.using(store.database)
        .filter(
            conversation__namespace=store.namespace, conversation__conversation_id=conversation_id
        )
        .order_by("position")
        .values_list("position", flat=True)
    )


WORKERS = 4
APPENDS = 30


@pytest.mark.slow
def test_processes_appending_to_one_conversation(db_store, tmp_path):
    settings_dict = connections[db_store.database].settings_dict
    database = {
        key: settings_dict[key]
        for key in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT", "OPTIONS")
    }
    go = tmp_path / "go"
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(ROOT)
    workers = []
    for worker in range(WORKERS):
        job = {
            "database": database,
            "namespace": db_store.namespace,
            "conversation_id": "shared",
            "worker": worker,
            "appends": APPENDS,
            "go": str(go),
        }
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.database_worker", json.dumps(job)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        for process in workers:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        go.touch()
        for process in workers:
            _out, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
    finally:
        for process in workers:
            process.kill()
            process.communicate()

    expected = {
        worker: [m["content"] for n in range(APPENDS) for m in batch(worker, n)]
        for worker in range(WORKERS)
    }
    total = sum(len(contents) for contents in expected.values())
    loaded = db_store.load("shared")
    assert loaded.metadata.message_count == total == len(loaded.messages)
    assert positions(db_store, "shared") == list(range(total))
    assert len({m.id for m in loaded.messages}) == total
    for worker, contents in expected.items():
        own = [m.content for m in loaded.messages if m.content.startswith(f"{worker}:")]
        assert own == contents  # each writer's order kept, its batches contiguous-in-order


def test_threads_creating_the_same_conversation(db_store):
    for round_number in range(4):
        cid = f"new-{round_number}"
        errors = in_threads(
            6, lambda i, cid=cid: db_store.append(cid, [{"role": "user", "content": str(i)}])
        )
        assert errors == []
        loaded = db_store.load(cid)
        assert sorted(m.content for m in loaded.messages) == [str(i) for i in range(6)]
        assert positions(db_store, cid) == list(range(6))
    rows = StoredConversation.objects.using(db_store.database).filter(namespace=db_store.namespace)
    assert rows.count() == 4


def test_threads_saving_the_same_new_conversation(db_store):
    errors = in_threads(
        6,
        lambda i: db_store.save("c", [{"role": "user", "content": f"{i}:{j}"} for j in range(3)]),
    )
    assert errors == []
    loaded = db_store.load("c")
    writers = {m.content.split(":")[0] for m in loaded.messages}
    assert len(writers) == 1 and loaded.metadata.message_count == 3  # one save won, whole
    first = positions(db_store, "c")[0]
    assert positions(db_store, "c") == [first, first + 1, first + 2]


def test_threads_appending_to_an_expired_conversation(db_store):
    past = now_ms() - 60_000
    old = [Message("user", f"old{i}") for i in range(5)]
    db_store.put(Conversation("c", old, ConversationMetadata("c", past, past, 5, ttl=10)))
    errors = in_threads(
        6,
        lambda i: [
            db_store.append("c", [{"role": "user", "content": f"{i}:{n}"}]) for n in range(5)
        ],
    )
    assert errors == []
    loaded = db_store.load("c")
    assert loaded.metadata.message_count == 30 == len(loaded.messages)
    assert not any(m.content.startswith("old") for m in loaded.messages)
    assert positions(db_store, "c") == list(range(5, 35))  # past the old messages' positions


def test_readers_never_see_a_mix_while_writers_save_and_append(db_store):
    db_store.save("c", [{"role": "user", "content": "s0"}])
    seen: list[tuple[int, int]] = []

    def work(index: int) -> None:
        for n in range(15):
            if index == 0:
                db_store.save("c", [{"role": "user", "content": f"s{n}"}] * 3)
            elif index in (1, 2):
                db_store.append("c", [{"role": "user", "content": f"a{index}-{n}"}])
            else:
                loaded = db_store.load("c")
                tail = db_store.load("c", last=2)
                seen.append((loaded.metadata.message_count, len(loaded.messages)))
                assert len(tail.messages) == min(2, tail.metadata.message_count)
                saves = {m.content for m in loaded.messages if m.content.startswith("s")}
                assert len(saves) == 1  # messages of one save only, never two versions

    errors = in_threads(4, work)
    assert errors == []
    assert seen and all(count == length for count, length in seen)


# -- interleavings between the statements of one operation ----------------------------------


MESSAGES_TABLE = StoredMessage._meta.db_table


@pytest.mark.parametrize("last", [None, 2])
def test_a_save_between_the_two_reads_of_load_is_noticed(db_store, last):
    db_store.save("c", [{"role": "user", "content": f"old{i}"} for i in range(3)])
    with write_before_first_read(
        db_store.database,
        MESSAGES_TABLE,
        lambda: db_store.save("c", [{"role": "user", "content": f"new{i}"} for i in range(4)]),
    ) as state:
        loaded = db_store.load("c", last=last)
    assert state["done"]
    contents = [m.content for m in loaded.messages]
    assert contents == [f"new{i}" for i in range(4)][-(last or 4) :]
    assert loaded.metadata.message_count == 4


def test_an_append_between_the_two_reads_of_load_is_left_out(db_store):
    db_store.save("c", [{"role": "user", "content": f"m{i}"} for i in range(3)])
    with write_before_first_read(
        db_store.database,
        MESSAGES_TABLE,
        lambda: db_store.append("c", [{"role": "user", "content": "late"}]),
    ) as state:
        loaded = db_store.load("c")
    assert state["done"]
    assert [m.content for m in loaded.messages] == ["m0", "m1", "m2"]
    assert loaded.metadata.message_count == 3
    assert db_store.load("c").metadata.message_count == 4


@postgres_only()
def test_losing_the_race_to_create_a_conversation_retries():
    """PostgreSQL: another transaction inserts the row first; append waits, then retries."""
    import psycopg

    store = create_store(
        {"BACKEND": BACKEND, "NAMESPACE": "race", "OPTIONS": {"DATABASE": POSTGRES_ALIAS}}
    )
    settings_dict = connections[POSTGRES_ALIAS].settings_dict
    params = {
        "host": settings_dict["HOST"],
        "port": settings_dict["PORT"],
        "user": settings_dict["USER"],
        "password": settings_dict["PASSWORD"],
        "dbname": settings_dict["NAME"],
    }
    table = StoredConversation._meta.db_table
    now = now_ms()
    statements: list[str] = []
    results: list[Any] = []

    def append() -> None:
        with CaptureQueriesContext(connections[POSTGRES_ALIAS]) as ctx:
            results.append(store.append("c", [{"role": "user", "content": "mine"}]))
        statements.extend(q["sql"] for q in ctx.captured_queries)
        connections.close_all()

    with psycopg.connect(**params) as other, psycopg.connect(**params, autocommit=True) as spy:
        other.execute(
            f"INSERT INTO {table} (namespace, conversation_id, owner, created_at, updated_at, "
            "ttl, expires_at, message_count, first_position, metadata) "
            "VALUES ('race', 'c', 'winner', %s, %s, NULL, NULL, 0, 0, '{}')",
            [now, now],
        )
        thread = threading.Thread(target=append)
        thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            waiting = spy.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            if waiting and waiting[0]:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the append never waited for the other transaction")
        assert thread.is_alive()
        other.commit()
        thread.join(10)

    assert len(results) == 1
    assert results[0].owner == "winner" and results[0].message_count == 1
    assert any(sql.startswith("ROLLBACK TO SAVEPOINT") for sql in statements)
    assert sum(sql.startswith("UPDATE") for sql in statements) == 2  # tried, then bumped
    assert [m.content for m in store.load("c").messages] == ["mine"]
    store.clear()
