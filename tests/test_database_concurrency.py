"""The database backend under concurrent writers: processes, threads, races, killed connections.

SQLite (a file in WAL mode, so other processes share it) always; PostgreSQL and
MySQL/MariaDB when a server answers. Processes are real (tests/database_worker.py),
released together; races are counted over hundreds of rounds.
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
from tests.fixtures.database import POSTGRES_ALIAS, database_params, postgres_only

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


# -- processes ------------------------------------------------------------------------------------


def database_settings(alias: str, **options: Any) -> dict[str, Any]:
    """The settings of ``alias``'s test database, for a worker process."""
    settings_dict = connections[alias].settings_dict
    database = {
        key: settings_dict[key]
        for key in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT", "OPTIONS")
    }
    database["OPTIONS"] = {**database["OPTIONS"], **options}
    if connections[alias].vendor == "sqlite":
        # WAL, as docs/backends/database.md recommends: readers never wait for the writer.
        with connections[alias].cursor() as cursor:
            cursor.execute("PRAGMA journal_mode=WAL")
    return database


def spawn(job: dict[str, Any]) -> subprocess.Popen[str]:
    """Start a worker process (tests/database_worker.py) on ``job``."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.database_worker", json.dumps(job)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_workers(jobs: list[dict[str, Any]], go: Path) -> list[str]:
    """Start the workers, release them together, wait; their outputs (all exit 0)."""
    workers = [spawn(job) for job in jobs]
    outputs = []
    try:
        for process in workers:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        go.touch()
        for process in workers:
            out, err = process.communicate(timeout=300)
            assert process.returncode == 0, err  # nobody gave up
            outputs.append(out)
    finally:
        for process in workers:
            process.kill()
            process.communicate()
    return outputs


WORKERS = 8
APPENDS = 200


@pytest.mark.slow
def test_processes_appending_to_one_conversation(db_store, tmp_path):
    """8 processes x 200 appends to one conversation: nothing lost, nothing twice."""
    database = database_settings(db_store.database)
    jobs = [
        {
            "database": database,
            "namespace": db_store.namespace,
            "conversation_id": "shared",
            "worker": worker,
            "appends": APPENDS,
            "go": str(tmp_path / "go"),
        }
        for worker in range(WORKERS)
    ]
    run_workers(jobs, tmp_path / "go")
    expected = {
        worker: [m["content"] for n in range(APPENDS) for m in batch(worker, n)]
        for worker in range(WORKERS)
    }
    total = sum(len(contents) for contents in expected.values())
    loaded = db_store.load("shared")
    assert loaded.metadata.message_count == total == len(loaded.messages)  # none lost
    assert len({m.id for m in loaded.messages}) == total  # none twice
    assert len(set(positions(db_store, "shared"))) == total
    for worker, contents in expected.items():
        own = [m.content for m in loaded.messages if m.content.startswith(f"{worker}:")]
        assert own == contents  # each writer's order kept


@pytest.mark.slow
def test_processes_sending_the_same_ids_store_each_once(db_store, tmp_path):
    """6 processes; writers 2k and 2k+1 send the same messages: each id is stored once."""
    database = database_settings(db_store.database)
    appends = 100
    jobs = [
        {
            "database": database,
            "namespace": db_store.namespace,
            "conversation_id": "shared",
            "worker": worker,
            "appends": appends,
            "mode": "overlap",
            "go": str(tmp_path / "go"),
        }
        for worker in range(6)
    ]
    run_workers(jobs, tmp_path / "go")
    loaded = db_store.load("shared")
    ids = [m.id for m in loaded.messages]
    expected = {
        pair: [m["id"] for n in range(appends) for m in batch(pair, n)] for pair in range(3)
    }
    assert len(ids) == len(set(ids)) == sum(map(len, expected.values()))
    assert loaded.metadata.message_count == len(ids)
    for pair, sent in expected.items():
        assert [i for i in ids if i.startswith(f"w{pair}-")] == sent  # order kept


@postgres_only()
@pytest.mark.slow
def test_acknowledged_appends_survive_killed_connections(tmp_path):
    """pg_terminate_backend on the writers again and again: every acknowledged append stays."""
    store = create_store(
        {"BACKEND": BACKEND, "NAMESPACE": "killed", "OPTIONS": {"DATABASE": POSTGRES_ALIAS}}
    )
    database = database_settings(POSTGRES_ALIAS, application_name="convstore-killed")
    appends = 150
    jobs = [
        {
            "database": database,
            "namespace": "killed",
            "conversation_id": "shared",
            "worker": worker,
            "appends": appends,
            "mode": "retry",
            "go": str(tmp_path / "go"),
        }
        for worker in range(4)
    ]
    kills = [0]
    done = threading.Event()

    def killer() -> None:
        with connections[POSTGRES_ALIAS].cursor() as cursor:
            while not done.wait(0.03):
                cursor.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = 'convstore-killed'"
                )
                kills[0] += cursor.fetchone()[0]
        connections.close_all()

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        outputs = run_workers(jobs, tmp_path / "go")
    finally:
        done.set()
        thread.join(10)
    acknowledged = [
        line.split()[1] for out in outputs for line in out.splitlines() if line.startswith("ack ")
    ]
    assert len(acknowledged) == 4 * appends  # every writer finished: nobody gave up
    assert kills[0] > 0
    loaded = store.load("shared")
    stored = [m.id for m in loaded.messages]
    assert sorted(stored) == sorted(acknowledged)  # none lost, none twice
    assert loaded.metadata.message_count == len(stored)
    for worker in range(4):
        mine = [int(i.split("-")[1]) for i in stored if i.startswith(f"w{worker}-")]
        assert mine == list(range(appends))
    store.clear()


RACE_ROUNDS = 300


@pytest.mark.slow
def test_processes_racing_create_against_save_never_take_over(db_store):
    """create(owner=a) against save(owner=b), released together, round after round."""
    database = database_settings(db_store.database)
    common = {
        "database": database,
        "namespace": db_store.namespace,
        "rounds": RACE_ROUNDS,
        "mode": "race",
    }
    workers = [spawn({**common, "role": "a"}), spawn({**common, "role": "b"})]
    outcomes: list[tuple[str, str]] = []
    try:
        for process in workers:
            assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        for number in range(RACE_ROUNDS):
            for process in workers:
                assert process.stdout is not None
                assert process.stdout.readline().strip() == f"ready {number}"
            for process in workers:  # the barrier: both wait for this line
                assert process.stdin is not None
                process.stdin.write("go\n")
                process.stdin.flush()
            results = []
            for process in workers:
                assert process.stdout is not None
                results.append(process.stdout.readline().strip())
            outcomes.append((results[0], results[1]))
        for process in workers:
            _out, err = process.communicate(timeout=60)
            assert process.returncode == 0, err
    finally:
        for process in workers:
            process.kill()
            process.communicate()
    violations = 0
    for number, (created, saved) in enumerate(outcomes):
        final = db_store.load(f"race-{number}")
        owner, ids = final.metadata.owner, [m.id for m in final.messages]
        if created == "created":
            ok = saved == "refused" and (owner, ids) == ("a", ["a"])
        else:
            ok = created == "none" and saved == "saved" and (owner, ids) == ("b", ["b"])
        violations += not ok
    assert violations == 0
    # Both orders happened, so the race was real.
    assert {created for created, _saved in outcomes} == {"created", "none"}


# -- threads ------------------------------------------------------------------------------------


def test_threads_creating_the_same_conversation(db_store):
    for round_number in range(4):
        cid = f"new-{round_number}"
        errors = in_threads(
            6, lambda i, cid=cid: db_store.append(cid, [{"role": "user", "content": str(i)}])
        )
        assert errors == []
        loaded = db_store.load(cid)
        assert sorted(m.content for m in loaded.messages) == [str(i) for i in range(6)]
        assert len(set(positions(db_store, cid))) == 6
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
    assert min(positions(db_store, "c")) >= 5  # past the old messages' positions


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


# -- PostgreSQL: losing the race to create -------------------------------------------------------


@postgres_only()
def test_losing_the_race_to_create_a_conversation_appends_to_the_winners():
    """Another transaction inserts the row first: the append waits, then appends to its row.

    ``convstore_append`` handles the race inside its one call: its INSERT of the
    row waits for the other transaction, finds the conflict, and locks the winner's row.
    """
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
        statements.extend(q["sql"].split()[0] for q in ctx.captured_queries)
        connections.close_all()

    with psycopg.connect(**params) as other, psycopg.connect(**params, autocommit=True) as spy:
        other.execute(
            f"INSERT INTO {table} (namespace, conversation_id, owner, created_at, updated_at, "
            "ttl, expires_at, message_count, next_position, metadata) "
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
    assert statements == ["SELECT"]  # still one statement, one round trip
    assert [m.content for m in store.load("c").messages] == ["mine"]
    store.clear()


def test_metadata_and_ttl_updates_racing_appends_never_fail(db_store):
    """On MySQL/MariaDB these can deadlock (1213); the store retries, callers see nothing.

    Every ``set_ttl`` finds the live conversation (True) while appends, metadata
    updates and the other ``set_ttl`` calls rewrite its row: on MariaDB a lone
    UPDATE that looked the row up through the ``(namespace, updated_at)`` index
    missed it when another writer had just moved it there, and answered False.
    """
    db_store.save("c", [Message(role="user", content="first", id="first")])
    missed: list[tuple[int, int]] = []

    def work(worker: int) -> None:
        for i in range(30):
            if worker < 2:
                db_store.append("c", [{"role": "user", "content": f"{worker}-{i}"}])
            elif worker < 4:
                if not db_store.set_ttl("c", 3600 + 100 * worker + i):
                    missed.append((worker, i))
            else:
                db_store.update_metadata("c", {f"k{i}": i})

    assert in_threads(5, work) == []
    assert missed == []
    loaded = db_store.load("c")
    assert loaded.metadata.message_count == len(loaded.messages) == 61
    assert loaded.metadata.metadata == {f"k{i}": i for i in range(30)}
    assert loaded.metadata.ttl in (3600 + 200 + 29, 3600 + 300 + 29)  # one setter's last
