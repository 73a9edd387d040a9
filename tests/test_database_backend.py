"""The database backend beyond the contract: tables, routing, statements, errors.

Every test that touches a database runs on SQLite and, when a server answers,
on PostgreSQL and MySQL/MariaDB (see ``tests/fixtures/database.py``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connections, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils.connection import ConnectionDoesNotExist

from django_convstore import (
    BackendError,
    BackendUnavailableError,
    codec,
    create_store,
    is_database_store,
)
from django_convstore.backends.database import DatabaseStore
from django_convstore.backends.database import catalog as catalog_module
from django_convstore.checks import check_stores
from django_convstore.clock import now_ms
from django_convstore.models import StoredConversation, StoredMessage
from django_convstore.types import Conversation, ConversationMetadata, Message
from tests.fixtures.database import (
    POSTGRES_ALIAS,
    SQLITE_ALIAS,
    database_params,
    postgres_only,
    write_before_first_read,
)

BACKEND = "django_convstore.backends.database.DatabaseStore"
MESSAGE = {"role": "user", "content": "hello"}


@pytest.fixture(params=database_params())
def db_alias(request: pytest.FixtureRequest) -> str:
    """The database alias under test (SQLite, and PostgreSQL when reachable)."""
    request.getfixturevalue("_database_threads_released")
    return str(request.param)


@pytest.fixture
def make_db_store(db_alias: str) -> Iterator[Callable[..., DatabaseStore]]:
    """Build database stores on ``db_alias``, each in a namespace of its own."""
    built: list[DatabaseStore] = []

    def factory(**config: Any) -> DatabaseStore:
        options = {"DATABASE": db_alias, **config.pop("OPTIONS", {})}
        config.setdefault("NAMESPACE", f"t{uuid.uuid4().hex[:12]}")
        store = create_store({"BACKEND": BACKEND, "OPTIONS": options, **config})
        assert isinstance(store, DatabaseStore)
        built.append(store)
        return store

    yield factory
    for store in built:
        store.clear()


@pytest.fixture
def db_store(make_db_store: Callable[..., DatabaseStore]) -> DatabaseStore:
    """An empty database store on the alias under test."""
    return make_db_store()


def row(store: DatabaseStore, conversation_id: str) -> StoredConversation:
    """The conversation's row, read straight from the table."""
    return StoredConversation.objects.using(store.database).get(
        namespace=store.namespace, conversation_id=conversation_id
    )


def vendor(alias: str) -> str:
    return connections[alias].vendor


# -- configuration ------------------------------------------------------------------------


def test_database_option_must_name_a_configured_alias():
    with pytest.raises(ImproperlyConfigured) as info:
        create_store({"BACKEND": BACKEND, "OPTIONS": {"DATABASE": "nope"}}, alias="chat")
    message = str(info.value)
    assert "CONVSTORE['chat']" in message
    assert "'nope'" in message
    assert "default" in message  # lists the configured aliases


@pytest.mark.parametrize("value", [3, "", ["default"]])
def test_database_option_must_be_an_alias_name(value):
    with pytest.raises(ImproperlyConfigured, match=r"OPTIONS\['DATABASE'\]"):
        create_store({"BACKEND": BACKEND, "OPTIONS": {"DATABASE": value}})


def test_location_is_refused_with_a_pointer_to_the_option():
    with pytest.raises(ImproperlyConfigured, match=r"OPTIONS\['DATABASE'\]"):
        create_store({"BACKEND": BACKEND, "LOCATION": "default"})


def test_original_form_and_type_guard():
    store = create_store({"type": "database", "database": SQLITE_ALIAS, "default_ttl": 60})
    assert isinstance(store, DatabaseStore)
    assert is_database_store(store)
    assert store.database == SQLITE_ALIAS
    assert store.default_ttl == 60
    assert DatabaseStore.required_modules == ()


def test_system_check_accepts_and_rejects_database_stores():
    good = {"BACKEND": BACKEND, "OPTIONS": {"DATABASE": SQLITE_ALIAS}}
    with override_settings(CONVSTORE={"default": good}):
        assert check_stores() == []
    bad = {"BACKEND": BACKEND, "OPTIONS": {"DATABASE": "missing"}}
    with override_settings(CONVSTORE={"default": good, "bad": bad}):
        errors = check_stores()
    assert [error.id for error in errors] == ["convstore.E006"]
    assert "'missing'" in errors[0].msg


def test_building_a_store_opens_no_connection():
    # No django_db marker: any connection attempt would fail this test.
    store = create_store({"BACKEND": BACKEND, "OPTIONS": {"DATABASE": SQLITE_ALIAS}})
    assert repr(store).startswith("<DatabaseStore")


def test_without_the_app_installed_the_backend_says_what_to_do():
    script = """
import django
from django.conf import settings
settings.configure(INSTALLED_APPS=[], DATABASES={})
django.setup()
from django_convstore.handler import create_store
try:
    create_store({"BACKEND": "django_convstore.backends.database.DatabaseStore"})
except Exception as exc:
    print(type(exc).__name__, exc)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.startswith("ImproperlyConfigured")
    assert "add 'django_convstore' to INSTALLED_APPS" in result.stdout


def test_migrations_are_up_to_date(django_db_blocker):
    # Exits (SystemExit) when models and migrations disagree. It reads each database's
    # migration history, hence the unblocking.
    with django_db_blocker.unblock():
        call_command("makemigrations", "django_convstore", check=True, dry_run=True, verbosity=0)


# -- routing ------------------------------------------------------------------------------


class SplitRouter:
    """Reads of the store's models from ``default``, writes to ``sqlite``."""

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return "default" if model._meta.app_label == "django_convstore" else None

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return SQLITE_ALIAS if model._meta.app_label == "django_convstore" else None


ROUTER = f"{__name__}.SplitRouter"


@pytest.mark.django_db(transaction=True, databases=["default", SQLITE_ALIAS])
def test_routers_choose_the_databases_without_the_option():
    store = create_store({"BACKEND": BACKEND, "NAMESPACE": "routed"})
    with override_settings(DATABASE_ROUTERS=[ROUTER]):
        store.save("c", [MESSAGE])
        # written through db_for_write …
        assert StoredConversation.objects.using(SQLITE_ALIAS).filter(namespace="routed").exists()
        assert not StoredConversation.objects.using("default").filter(namespace="routed").exists()
        # … and read through db_for_read, which holds nothing
        assert store.load("c") is None
        assert store.list() == []
    # Without routers everything goes to "default".
    assert store.load("c") is None
    store.save("d", [MESSAGE])
    assert StoredConversation.objects.using("default").filter(namespace="routed").count() == 1
    store.clear()
    create_store(
        {"BACKEND": BACKEND, "NAMESPACE": "routed", "OPTIONS": {"DATABASE": SQLITE_ALIAS}}
    ).clear()


@pytest.mark.django_db(transaction=True, databases=["default", SQLITE_ALIAS])
def test_the_database_option_wins_over_routers():
    store = create_store(
        {"BACKEND": BACKEND, "NAMESPACE": "pinned", "OPTIONS": {"DATABASE": SQLITE_ALIAS}}
    )
    with override_settings(DATABASE_ROUTERS=[ROUTER]):
        store.save("c", [MESSAGE])
        assert [m.content for m in store.load("c").messages] == ["hello"]
    assert not StoredConversation.objects.using("default").filter(namespace="pinned").exists()
    store.clear()


# -- rows and semantics ---------------------------------------------------------------------


def test_expires_at_column_follows_updated_at_and_ttl(db_store):
    db_store.save("c", [MESSAGE], ttl=60)
    saved = row(db_store, "c")
    assert saved.expires_at == saved.updated_at + 60_000
    assert saved.ttl == 60 and saved.message_count == 1

    time.sleep(0.005)
    db_store.append("c", [MESSAGE], update_timestamp=False)
    quiet = row(db_store, "c")
    assert (quiet.updated_at, quiet.expires_at) == (saved.updated_at, saved.expires_at)
    assert quiet.message_count == 2

    time.sleep(0.005)
    db_store.append("c", [MESSAGE])
    moved = row(db_store, "c")
    assert moved.updated_at > saved.updated_at
    assert moved.expires_at == moved.updated_at + 60_000

    assert db_store.set_ttl("c", 0) is True
    assert row(db_store, "c").expires_at is None and row(db_store, "c").ttl is None

    past = now_ms() - 120_000
    db_store.put(
        Conversation(
            "p",
            [Message("user", "x")],
            ConversationMetadata("p", created_at=past, updated_at=past, message_count=1, ttl=30),
        )
    )
    put = row(db_store, "p")
    assert (put.created_at, put.updated_at, put.expires_at) == (past, past, past + 30_000)


def documents(store: DatabaseStore, conversation_id: str) -> list[tuple[int, str, str]]:
    """(position, message id, document) of a conversation's rows, straight from the table."""
    return list(
        StoredMessage.objects.using(store.database)
        .filter(conversation=row(store, conversation_id))
        .order_by("position")
        .values_list("position", "message_id", "document")
    )


def test_messages_are_json_documents_at_growing_positions(db_store):
    db_store.save("c", [{**MESSAGE, "content": "a", "id": "1"}, {**MESSAGE, "content": "b"}])
    db_store.append("c", [{**MESSAGE, "content": "c", "id": "1"}, {**MESSAGE, "content": "d"}])
    stored = documents(db_store, "c")
    # The append skipped id "1" (already present): its position stays unused.
    assert [position for position, _id, _doc in stored] == [0, 1, 3]
    first = json.loads(stored[0][2])
    assert stored[0][1] == "1"
    assert first == {"role": "user", "content": "a", "id": "1", "timestamp": first["timestamp"]}
    assert [json.loads(doc)["content"] for _p, _id, doc in stored] == ["a", "b", "d"]
    assert row(db_store, "c").next_position == 4
    db_store.pop("c")
    db_store.save("c", [{**MESSAGE, "content": "e"}])  # a replacement starts past the old ones
    assert [position for position, _id, _doc in documents(db_store, "c")] == [4]


def test_namespaces_share_tables_but_not_conversations(make_db_store):
    one, two = make_db_store(NAMESPACE="one"), make_db_store(NAMESPACE="two")
    one.save("same-id", [MESSAGE])
    two.save("same-id", [MESSAGE, MESSAGE])
    assert one.load("same-id").metadata.message_count == 1
    assert two.load("same-id").metadata.message_count == 2
    assert one.clear() == 1
    assert two.exists("same-id") is True


AWKWARD_TEXT = [
    "NUL \x00 inside",
    "\x00",
    "\uffff starts with the marker",
    "emoji 🙂 and accents é",
    "",
]
AWKWARD_METADATA = {
    "huge": 1e300,
    "max": 1.7976931348623157e308,
    "tiny": 5e-324,
    "int": 2**53,
    "nul\x00key": "nul\x00value",
    "nested": [{"a": None, "b": [True, -0.5]}],
}


def test_awkward_values_round_trip_exactly(db_store):
    messages = [
        {"role": "user", "content": text, "metadata": AWKWARD_METADATA} for text in AWKWARD_TEXT
    ]
    db_store.save("c", messages, metadata=AWKWARD_METADATA)
    loaded = db_store.load("c")
    assert [m.content for m in loaded.messages] == AWKWARD_TEXT
    for message in loaded.messages:
        assert message.metadata == AWKWARD_METADATA
        assert type(message.metadata["huge"]) is float
    assert loaded.metadata.metadata == AWKWARD_METADATA
    iterated = next(db_store.iter_conversations())
    assert [m.content for m in iterated.messages] == AWKWARD_TEXT


def test_documents_are_the_codecs_json(db_store):
    message = Message("assistant", [{"type": "text", "text": "hi"}], id="m", timestamp=5)
    message.tool_calls = [{"id": "call", "type": "function", "function": {"name": "f"}}]
    db_store.save("c", [message])
    ((_position, message_id, document),) = documents(db_store, "c")
    assert message_id == "m"
    assert document == codec.encode_message(message).decode()


def test_append_to_an_expired_conversation_starts_a_new_one(make_db_store):
    store = make_db_store(TTL=300)
    past = now_ms() - 60_000
    store.put(
        Conversation(
            "c",
            [Message("user", "old")],
            ConversationMetadata(
                "c", past - 1, past, message_count=1, ttl=10, owner="o", metadata={"k": 1}
            ),
        )
    )
    meta = store.append("c", [MESSAGE])
    assert meta.message_count == 1
    assert meta.created_at > past and meta.ttl == 300
    assert meta.owner is None and meta.metadata == {}
    assert [m.content for m in store.load("c").messages] == ["hello"]
    assert len(documents(store, "c")) == 1  # the old message's row is gone


def test_store_joins_the_callers_transaction(db_store):
    db_store.save("kept", [MESSAGE])
    with pytest.raises(RuntimeError), transaction.atomic(using=db_store.database):
        db_store.append("kept", [MESSAGE])
        db_store.save("dropped", [MESSAGE])
        assert db_store.load("kept").metadata.message_count == 2
        raise RuntimeError("roll back")
    assert db_store.load("kept").metadata.message_count == 1
    assert db_store.exists("dropped") is False


def test_prefix_filter_is_case_sensitive_and_literal(db_store):
    for cid in ["Ab-1", "ab-2", "a%c", "abc", "a_c"]:
        db_store.save(cid, [MESSAGE])
    ids = lambda **kw: sorted(m.conversation_id for m in db_store.list_conversations(**kw).items)  # noqa: E731
    assert ids(prefix="Ab") == ["Ab-1"]
    assert ids(prefix="ab") == ["ab-2", "abc"]
    assert ids(prefix="a%") == ["a%c"]
    assert ids(prefix="a_") == ["a_c"]


def test_cleanup_and_clear_work_in_batches(db_store, monkeypatch):
    monkeypatch.setattr(catalog_module, "DELETE_BATCH_SIZE", 3)
    past = now_ms() - 60_000
    for i in range(7):
        meta = ConversationMetadata(f"old{i}", past, past, message_count=1, ttl=10)
        db_store.put(Conversation(f"old{i}", [Message("user", "x")], meta))
    db_store.save("live1", [MESSAGE])
    db_store.save("live2", [MESSAGE], ttl=3600)
    with CaptureQueriesContext(connections[db_store.database]) as ctx:
        assert db_store.cleanup() == 7
    deletes = [q for q in ctx.captured_queries if q["sql"].startswith("DELETE FROM")]
    assert len(deletes) == 3 * 2  # three batches (3 + 3 + 1), messages then conversations
    assert all("LIMIT 3" in q["sql"] for q in ctx.captured_queries if "SELECT" in q["sql"])
    assert sorted(db_store.list()) == ["live1", "live2"]
    assert StoredMessage.objects.using(db_store.database).count() == 2
    assert db_store.clear() == 2
    assert StoredMessage.objects.using(db_store.database).count() == 0


def test_iter_conversations_reads_one_batch_at_a_time(db_store):
    for i in range(5):
        db_store.save(f"c{i}", [MESSAGE] * (i + 1))
    stream = db_store.iter_conversations(batch_size=2)
    with CaptureQueriesContext(connections[db_store.database]) as ctx:
        first = next(stream)
    assert len(ctx.captured_queries) == 2  # two conversation rows, then their messages
    assert "LIMIT 2" in ctx.captured_queries[0]["sql"]
    rest = list(stream)
    assert [c.conversation_id for c in [first, *rest]] == [f"c{i}" for i in range(5)]
    assert [c.metadata.message_count for c in [first, *rest]] == [1, 2, 3, 4, 5]


def test_iter_conversations_yields_each_conversation_once_during_writes(db_store):
    for i in range(5):
        db_store.save(f"c{i}", [MESSAGE])
    stream = db_store.iter_conversations(batch_size=2)
    seen = [next(stream)]  # c0 and c1 (with messages) are read by now
    db_store.save("c1", [MESSAGE, MESSAGE])  # already read: yielded as it was read
    db_store.save("c3", [MESSAGE] * 3)  # not read yet: yielded new
    db_store.delete("c4")  # not read yet: never yielded
    seen.extend(stream)
    assert [(c.conversation_id, c.metadata.message_count) for c in seen] == [
        ("c0", 1),
        ("c1", 1),
        ("c2", 1),
        ("c3", 3),
    ]
    assert all(len(c.messages) == c.metadata.message_count for c in seen)


def test_iter_conversations_rereads_one_replaced_after_its_batch_was_read(db_store):
    db_store.save("a", [MESSAGE])
    db_store.save("b", [{**MESSAGE, "content": "old"}])
    with write_before_first_read(
        db_store.database,
        "SELECT conversation_id, document",
        lambda: db_store.save("b", [{**MESSAGE, "content": "new"}] * 2),
    ) as state:
        seen = list(db_store.iter_conversations())
    assert state["done"]
    assert [(c.conversation_id, [m.content for m in c.messages]) for c in seen] == [
        ("a", ["hello"]),
        ("b", ["new", "new"]),
    ]


def test_get_stats_counts_by_sql_without_storage_size(db_store):
    db_store.save("a", [MESSAGE] * 3)
    db_store.save("b", [MESSAGE] * 2)
    past = now_ms() - 60_000
    meta = ConversationMetadata("x", past, past, message_count=1, ttl=10)
    db_store.put(Conversation("x", [Message("user", "x")], meta))
    with CaptureQueriesContext(connections[db_store.database]) as ctx:
        stats = db_store.get_stats()
    assert (stats.total_conversations, stats.total_messages, stats.expired_conversations) == (
        2,
        5,
        1,
    )
    assert stats.storage_size is None
    assert len(ctx.captured_queries) == 1
    assert StoredMessage._meta.db_table not in ctx.captured_queries[0]["sql"]


def test_listing_never_reads_messages(db_store):
    db_store.save("a", [MESSAGE] * 3, owner="o")
    with CaptureQueriesContext(connections[db_store.database]) as ctx:
        page = db_store.list_conversations(owner="o", prefix="a")
        ids = db_store.list()
    assert page.total == 1 and page.items[0].message_count == 3 and ids == ["a"]
    assert all(StoredMessage._meta.db_table not in q["sql"] for q in ctx.captured_queries)


def test_load_last_reads_only_the_tail(db_store):
    db_store.save("c", [{"role": "user", "content": str(i)} for i in range(50)])
    with CaptureQueriesContext(connections[db_store.database]) as ctx:
        loaded = db_store.load("c", last=3)
    assert [m.content for m in loaded.messages] == ["47", "48", "49"]
    assert loaded.metadata.message_count == 50
    (query,) = ctx.captured_queries
    assert "ORDER BY m.position DESC LIMIT" in query["sql"]


# Statements per operation, BEGIN/COMMIT included, for (SQLite, PostgreSQL, MySQL/MariaDB).
# PostgreSQL: one statement per write and per read (in autocommit: one round trip).
# SQLite: BEGIN IMMEDIATE … COMMIT around the writes (an append to a live conversation of
# the caller: INSERT … SELECT, UPDATE … RETURNING; otherwise the general path follows the
# INSERT that inserted nothing); MySQL: START TRANSACTION … COMMIT.
STATEMENTS = {
    "append (creates)": (6, 1, 5),
    "append": (4, 1, 5),
    "append (only ids already present)": (5, 1, 4),
    "save (creates, 100 messages)": (5, 1, 5),
    "save (replaces, 100 messages)": (6, 1, 6),
    "save (merges metadata)": (6, 1, 6),
    "create": (5, 1, 5),
    "put (replaces)": (6, 1, 6),
    "pop": (6, 1, 6),
    "truncate": (6, 1, 6),
    "update_metadata": (4, 1, 4),
    "set_ttl": (1, 1, 4),  # MySQL: locks the row, then updates it by primary key
    "load": (1, 1, 1),
    "load(last=N)": (1, 1, 1),
    "exists": (1, 1, 1),
    "get_ttl": (1, 1, 1),
    "list": (1, 1, 1),
    "list_conversations": (1, 1, 1),
    "get_stats": (1, 1, 1),
    "iter_conversations (one short batch)": (2, 2, 2),
    "cleanup (nothing expired)": (3, 3, 3),
    "delete": (5, 1, 5),
    "clear (one batch)": (5, 5, 5),
}
COLUMNS = {"sqlite": 0, "postgresql": 1, "mysql": 2}


def test_statements_per_operation(db_store):
    column = COLUMNS[vendor(db_store.database)]
    many = [MESSAGE] * 100  # one INSERT statement on every database
    snapshot = Conversation(
        "p", [Message("user", "x")], ConversationMetadata("p", 1, now_ms(), message_count=1)
    )
    db_store.put(snapshot)
    retried = Message("user", "again", id="retried")
    operations: dict[str, Callable[[], Any]] = {
        "append (creates)": lambda: db_store.append("c", [retried]),
        "append": lambda: db_store.append("c", [MESSAGE] * 3),
        "append (only ids already present)": lambda: db_store.append("c", [retried]),
        "save (creates, 100 messages)": lambda: db_store.save("s", many),
        "save (replaces, 100 messages)": lambda: db_store.save("s", many),
        "save (merges metadata)": lambda: db_store.save("s", many, metadata={"k": 1}),
        "create": lambda: db_store.create("new", [MESSAGE]),
        "put (replaces)": lambda: db_store.put(snapshot),
        "pop": lambda: db_store.pop("s", 2),
        "truncate": lambda: db_store.truncate("s", 50),
        "update_metadata": lambda: db_store.update_metadata("s", {"j": 2}),
        "set_ttl": lambda: db_store.set_ttl("s", 60),
        "load": lambda: db_store.load("s"),
        "load(last=N)": lambda: db_store.load("s", last=20),
        "exists": lambda: db_store.exists("s"),
        "get_ttl": lambda: db_store.get_ttl("s"),
        "list": lambda: db_store.list(),
        "list_conversations": lambda: db_store.list_conversations(prefix="s"),
        "get_stats": lambda: db_store.get_stats(),
        "iter_conversations (one short batch)": lambda: list(db_store.iter_conversations()),
        "cleanup (nothing expired)": lambda: db_store.cleanup(),
        "delete": lambda: db_store.delete("c"),
        "clear (one batch)": lambda: db_store.clear(),
    }
    counted = {}
    for name, operation in operations.items():
        with CaptureQueriesContext(connections[db_store.database]) as ctx:
            operation()
        counted[name] = len(ctx.captured_queries)
    assert counted == {name: counts[column] for name, counts in STATEMENTS.items()}


def test_append_costs_the_same_statements_at_any_length(db_store):
    db_store.append("c", [MESSAGE])
    statements = []
    for _ in range(3):
        with CaptureQueriesContext(connections[db_store.database]) as ctx:
            db_store.append("c", [MESSAGE] * 100)
        statements.append([re.sub(r"'[^']*'|\d+", "?", q["sql"]) for q in ctx.captured_queries])
    assert statements[0] == statements[1] == statements[2]  # nothing grows with the length
    assert db_store.load("c").metadata.message_count == 301


def test_close_gives_the_connection_back_outside_transactions(db_store):
    db_store.save("c", [MESSAGE])
    connection = connections[db_store.database]
    assert connection.connection is not None
    with transaction.atomic(using=db_store.database):
        db_store.close()
        assert connection.connection is not None  # never inside the caller's transaction
    db_store.close()
    db_store.close()
    assert connection.connection is None  # CONN_MAX_AGE = 0: closed, like at request end
    assert db_store.exists("c") is True  # and reopened on demand


# -- errors -------------------------------------------------------------------------------


@contextmanager
def extra_database(alias: str, **settings_dict: Any) -> Iterator[None]:
    """Add a database alias for the duration of a test (Django's defaults filled in)."""
    filled = connections.configure_settings(
        {"default": {"ENGINE": "django.db.backends.dummy"}, alias: settings_dict}
    )[alias]
    connections.settings[alias] = filled
    try:
        yield
    finally:
        try:
            connection = connections[alias]
        except ConnectionDoesNotExist:
            pass
        else:
            connection.close()
            del connections[alias]
        connections.settings.pop(alias, None)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_postgresql_is_backend_unavailable(django_db_blocker):
    port = free_port()
    with (
        extra_database(
            "gone",
            ENGINE="django.db.backends.postgresql",
            NAME="chat",
            USER="app",
            PASSWORD="s3cret-pw",
            HOST="127.0.0.1",
            PORT=str(port),
            OPTIONS={"connect_timeout": 2},
        ),
        django_db_blocker.unblock(),
    ):
        store = create_store({"BACKEND": BACKEND, "OPTIONS": {"DATABASE": "gone"}}, alias="chat")
        started = time.monotonic()
        for operation in (lambda: store.append("c", [MESSAGE]), lambda: store.load("c")):
            with pytest.raises(BackendUnavailableError) as info:
                operation()
            error = info.value
            message = str(error)
            assert "'chat'" in message and "'gone'" in message
            assert f"127.0.0.1:{port}/chat" in message
            assert "s3cret-pw" not in message and "s3cret-pw" not in repr(error.__cause__)
            assert (error.backend, error.alias, error.address) == (
                "database",
                "chat",
                f"postgresql 127.0.0.1:{port}/chat",
            )
        assert time.monotonic() - started < 5


def test_unopenable_sqlite_file_is_backend_unavailable(tmp_path, django_db_blocker):
    missing = tmp_path / "no-such-dir" / "db.sqlite3"
    with (
        extra_database("nofile", ENGINE="django.db.backends.sqlite3", NAME=str(missing)),
        django_db_blocker.unblock(),
    ):
        store = create_store({"BACKEND": BACKEND, "OPTIONS": {"DATABASE": "nofile"}})
        with pytest.raises(BackendUnavailableError, match="unable to open database file"):
            store.exists("c")


def test_missing_tables_say_to_migrate(tmp_path: Path, django_db_blocker):
    with (
        extra_database("empty", ENGINE="django.db.backends.sqlite3", NAME=str(tmp_path / "e.db")),
        django_db_blocker.unblock(),
    ):
        store = create_store({"BACKEND": BACKEND, "OPTIONS": {"DATABASE": "empty"}})
        for operation in (lambda: store.save("c", [MESSAGE]), store.get_stats):
            with pytest.raises(BackendError, match="migrate") as info:
                operation()
            assert not isinstance(info.value, BackendUnavailableError)


def test_a_read_only_database_is_a_backend_error(db_store):
    # A replica or a read-only role: the database answers, and refuses every write.
    db_store.save("c", [MESSAGE])
    settings_dict = connections[db_store.database].settings_dict
    keys = ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")
    if vendor(db_store.database) == "sqlite":
        read_only = {
            "ENGINE": settings_dict["ENGINE"],
            "NAME": f"file:{settings_dict['NAME']}?mode=ro",
            "OPTIONS": {"uri": True},
        }
    elif vendor(db_store.database) == "mysql":
        read_only = {key: settings_dict[key] for key in keys}
        read_only["OPTIONS"] = {"init_command": "SET SESSION TRANSACTION READ ONLY"}
    else:
        read_only = {key: settings_dict[key] for key in keys}
        read_only["OPTIONS"] = {"options": "-c default_transaction_read_only=on"}
    with extra_database("replica", **read_only):
        config = {"NAMESPACE": db_store.namespace, "OPTIONS": {"DATABASE": "replica"}}
        replica = create_store({"BACKEND": BACKEND, **config})
        # Build this thread's connection object, then unlist the alias: Django's test case
        # allows such dynamically created connections besides the test's `databases`.
        connections["replica"]
        del connections.settings["replica"]
        assert [m.content for m in replica.load("c").messages] == ["hello"]
        for write in (
            lambda: replica.append("c", [MESSAGE]),
            lambda: replica.save("d", [MESSAGE]),
            lambda: replica.set_ttl("c", 60),
            lambda: replica.delete("c"),
        ):
            with pytest.raises(BackendError, match=r"(?i)read") as info:
                write()
            assert not isinstance(info.value, BackendUnavailableError)
    assert db_store.load("c").metadata.message_count == 1
    assert db_store.exists("d") is False


@postgres_only()
def test_store_recovers_when_its_connection_is_killed():
    store = create_store({"BACKEND": BACKEND, "OPTIONS": {"DATABASE": POSTGRES_ALIAS}})
    store.save("c", [MESSAGE])
    connection = connections[POSTGRES_ALIAS]
    pid = connection.connection.info.backend_pid
    import psycopg

    settings_dict = connection.settings_dict
    with psycopg.connect(
        host=settings_dict["HOST"],
        port=settings_dict["PORT"],
        user=settings_dict["USER"],
        password=settings_dict["PASSWORD"],
        dbname=settings_dict["NAME"],
        autocommit=True,
    ) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    with pytest.raises(BackendUnavailableError):
        store.load("c")
    assert [m.content for m in store.load("c").messages] == ["hello"]
    store.clear()


# -- migrating 0.1 rows ---------------------------------------------------------------------------


@contextmanager
def unlisted(alias: str) -> Iterator[tuple[str, DatabaseStore]]:
    """A store on ``alias``, whose connection object exists while the alias is unlisted.

    Django's test case allows such dynamically created connections besides the
    test's ``databases``.
    """
    store = create_store({"BACKEND": BACKEND, "OPTIONS": {"DATABASE": alias}})
    assert isinstance(store, DatabaseStore)
    connections[alias]
    del connections.settings[alias]
    try:
        yield alias, store
    finally:
        connections[alias].close()


@contextmanager
def scratch_database(db_alias: str, tmp_path: Path) -> Iterator[tuple[str, DatabaseStore]]:
    """A new, empty database on the server of ``db_alias`` (alias ``scratch``), and a store."""
    settings_dict = connections[db_alias].settings_dict
    engine = settings_dict["ENGINE"]
    if vendor(db_alias) == "sqlite":
        path = str(tmp_path / "scratch.sqlite3")
        with extra_database("scratch", ENGINE=engine, NAME=path), unlisted("scratch") as found:
            yield found
        return
    name = f"convstore_scratch_{uuid.uuid4().hex[:8]}"
    keys = ("ENGINE", "USER", "PASSWORD", "HOST", "PORT", "OPTIONS")
    server = {key: settings_dict[key] for key in keys}
    with connections[db_alias].cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    try:
        with extra_database("scratch", NAME=name, **server), unlisted("scratch") as found:
            yield found
    finally:
        with connections[db_alias].cursor() as cursor:
            cursor.execute(f"DROP DATABASE {name}")


def migrate(alias: str, target: str | None) -> Any:
    """Migrate ``alias`` to ``django_convstore``'s ``target`` (None: the latest one).

    Returns the app registry of that state.
    """
    executor = MigrationExecutor(connections[alias])
    if target is None:
        ((_app, target),) = executor.loader.graph.leaf_nodes("django_convstore")
    executor.migrate([("django_convstore", target)])
    return executor.loader.project_state([("django_convstore", target)]).apps


def test_rows_written_by_0_1_keep_working_after_migrating(db_alias, tmp_path):
    with scratch_database(db_alias, tmp_path) as (alias, store):
        old = migrate(alias, "0001_initial")
        conversations = old.get_model("django_convstore", "StoredConversation").objects
        messages = old.get_model("django_convstore", "StoredMessage").objects
        now = now_ms()
        a = conversations.using(alias).create(
            namespace="aikit",
            conversation_id="a",
            owner="7",
            created_at=now - 10,
            updated_at=now,
            ttl=3600,
            expires_at=now + 3_600_000,
            message_count=3,
            first_position=2,
            metadata={"title": "trip", "n": 1e300},
        )
        rows_01 = [
            (0, "gone", "left over by 0.1: outside the range, never shown", {}),
            (2, "m1", "hi", {}),
            (3, "m1", "NUL \x00 inside", {"k": [1, None]}),  # 0.1 allowed a duplicate id
            (4, "m2", "bye", {"tokens": 3}),
        ]
        for position, message_id, content, metadata in rows_01:
            messages.using(alias).create(
                conversation=a,
                position=position,
                message_id=message_id,
                role="user" if position % 2 else "assistant",
                content=content,
                timestamp=now - 100 + position,
                metadata=metadata,
            )
        conversations.using(alias).create(
            namespace="aikit",
            conversation_id="empty",
            owner=None,
            created_at=now,
            updated_at=now,
            message_count=0,
            first_position=7,
        )

        migrate(alias, None)

        loaded = store.load("a", owner="7")
        assert [m.to_dict() for m in loaded.messages] == [
            {"id": "m1", "role": "assistant", "content": "hi", "timestamp": now - 98,
             "metadata": {}},
            {"id": "m1~3", "role": "user", "content": "NUL \x00 inside", "timestamp": now - 97,
             "metadata": {"k": [1, None]}},
            {"id": "m2", "role": "assistant", "content": "bye", "timestamp": now - 96,
             "metadata": {"tokens": 3}},
        ]  # fmt: skip
        meta = loaded.metadata
        assert (meta.message_count, meta.owner, meta.ttl) == (3, "7", 3600)
        assert meta.metadata == {"title": "trip", "n": 1e300}
        assert store.load("empty").messages == []
        # 0.2 behaviour on migrated rows: idempotent appends, pop, ids compared exactly.
        assert store.append("a", [{"role": "user", "content": "x", "id": "m2"}]).message_count == 3
        store.append("a", [{"role": "user", "content": c, "id": c} for c in ("Case", "case ")])
        assert [m.id for m in store.load("a", last=2).messages] == ["Case", "case "]
        assert [m.id for m in store.pop("a", 3)] == ["m2", "Case", "case "]
        assert store.load("a").metadata.message_count == 2


# -- acting as an owner: a stranger's reads never touch the messages ---------------------------


def _work_counter(alias: str) -> Callable[[Callable[[], Any]], int]:
    """A function measuring what running a call costs the database, by vendor.

    PostgreSQL: message rows read (``pg_stat_xact_user_tables`` of the messages table,
    inside one transaction). MySQL: rows read by the storage engine (``Handler_read_*``).
    SQLite: virtual machine instructions (a progress handler called for each).
    """
    connection = connections[alias]
    table = StoredMessage._meta.db_table
    if connection.vendor == "postgresql":

        def rows_read() -> int:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) "
                    "FROM pg_stat_xact_user_tables WHERE relname = %s",
                    [table],
                )
                return int(cursor.fetchone()[0])

        def measure(call: Callable[[], Any]) -> int:
            with transaction.atomic(using=alias):
                before = rows_read()
                call()
                return rows_read() - before

        return measure
    if connection.vendor == "mysql":

        def handler_reads() -> int:
            with connection.cursor() as cursor:
                cursor.execute("SHOW SESSION STATUS LIKE 'Handler_read%%'")
                return sum(int(value) for _name, value in cursor.fetchall())

        def measure_mysql(call: Callable[[], Any]) -> int:
            before = handler_reads()
            call()
            return handler_reads() - before

        return measure_mysql

    def measure_sqlite(call: Callable[[], Any]) -> int:
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        connection.ensure_connection()
        connection.connection.set_progress_handler(count, 1)
        try:
            call()
        finally:
            connection.connection.set_progress_handler(None, 1)
        return steps[0]

    return measure_sqlite


def test_a_strangers_reads_never_read_the_messages(make_db_store, db_alias):
    store = make_db_store()
    for start in range(0, 2000, 1000):
        store.append("big", [{**MESSAGE, "id": str(i)} for i in range(start, start + 1000)],
                     owner="alice")  # fmt: skip
    measure = _work_counter(db_alias)
    strangers = {
        "load": measure(lambda: store.load("big", owner="mallory")),
        "load(last=N)": measure(lambda: store.load("big", owner="mallory", last=500)),
        "exists": measure(lambda: store.exists("big", owner="mallory")),
    }
    missing = measure(lambda: store.load("nothing-here", owner="mallory"))
    owners = measure(lambda: store.load("big", owner="alice"))
    assert owners >= 2000  # the measure sees message rows being read …
    if vendor(db_alias) == "postgresql":
        assert strangers == {"load": 0, "load(last=N)": 0, "exists": 0}  # … none for a stranger
    else:
        # … and a stranger's read costs what reading a missing id costs.
        assert all(cost <= missing + 50 for cost in strangers.values()), (strangers, missing)
    assert store.load("big", owner="mallory") is None


def test_metadata_with_nul_in_keys_merges_exactly(db_store):
    key = "nul\x00key"
    db_store.save("c", [MESSAGE], metadata={key: 1, "n": 1e300})
    with CaptureQueriesContext(connections[db_store.database]) as ctx:
        merged = db_store.update_metadata("c", {"b": 2})
    assert merged.metadata == {key: 1, "n": 1e300, "b": 2}
    saved = db_store.save("c", [MESSAGE], metadata={"b": 3, key: 4})
    assert saved.metadata.metadata == {key: 4, "n": 1e300, "b": 3}
    assert db_store.load("c").metadata.metadata == {key: 4, "n": 1e300, "b": 3}
    if vendor(db_store.database) == "postgresql":
        # SQL cannot merge a key holding NUL: the merge moved to Python, under the row lock.
        statements = [q["sql"].split()[0] for q in ctx.captured_queries]
        assert statements == ["UPDATE", "BEGIN", "SELECT", "UPDATE", "COMMIT"]


@postgres_only()
def test_postgresql_merges_metadata_in_sql_keeping_values_exact():
    store = create_store({"BACKEND": BACKEND, "OPTIONS": {"DATABASE": POSTGRES_ALIAS}})
    store.save("c", [MESSAGE], metadata={"a": 1e300, "b": [1, {"x": None}], "é": "\x01"})
    with CaptureQueriesContext(connections[POSTGRES_ALIAS]) as ctx:
        meta = store.update_metadata("c", {"b": 2, "c": -0.5})
    assert meta.metadata == {"a": 1e300, "b": 2, "é": "\x01", "c": -0.5}
    assert type(store.load("c").metadata.metadata["a"]) is float
    assert len(ctx.captured_queries) == 1
    store.clear()


@postgres_only()
def test_a_write_that_waited_for_the_lock_runs_again_holding_it():
    """PostgreSQL: a pop whose snapshot predates the writer it waited for must not use it."""
    store = create_store({"BACKEND": BACKEND, "OPTIONS": {"DATABASE": POSTGRES_ALIAS}})
    store.save("c", [{**MESSAGE, "id": str(i)} for i in range(3)])
    entered, release = threading.Event(), threading.Event()

    def late_append() -> None:
        with transaction.atomic(using=POSTGRES_ALIAS):
            store.append("c", [{**MESSAGE, "id": "late"}])  # holds the row lock …
            entered.set()
            release.wait(10)  # … until the pop below waits for it
        connections.close_all()

    writer = threading.Thread(target=late_append)
    writer.start()
    entered.wait(10)
    popped: list[Any] = []
    statements: list[str] = []

    def pop() -> None:
        with CaptureQueriesContext(connections[POSTGRES_ALIAS]) as ctx:
            popped.extend(store.pop("c"))
        statements.extend(q["sql"].split()[0] for q in ctx.captured_queries)
        connections.close_all()

    popper = threading.Thread(target=pop)
    popper.start()
    wait_for_a_lock_wait(POSTGRES_ALIAS)
    release.set()
    writer.join(10)
    popper.join(10)
    assert [m.id for m in popped] == ["late"]  # the newest message, not the snapshot's
    assert statements == ["WITH", "BEGIN", "SELECT", "WITH", "COMMIT"]
    assert [m.id for m in store.load("c").messages] == ["0", "1", "2"]
    store.clear()


def wait_for_a_lock_wait(alias: str) -> None:
    """Return once some session of this test database waits for a lock."""
    with connections[alias].cursor() as cursor:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    pytest.fail("nobody waited for the lock")


def postgres_store(prefix: str, **options: Any) -> Any:
    """A store on the PostgreSQL test database, in a namespace of its own."""
    return create_store(
        {
            "BACKEND": BACKEND,
            "NAMESPACE": f"{prefix}{uuid.uuid4().hex[:8]}",
            "OPTIONS": {"DATABASE": POSTGRES_ALIAS, **options},
        }
    )


@postgres_only()
@pytest.mark.parametrize("prepared", [True, False])
def test_postgresql_statements_are_prepared_unless_turned_off(prepared):
    store = postgres_store("p", PREPARED_STATEMENTS=prepared)
    connection = connections[POSTGRES_ALIAS]
    connection.close()  # a fresh session: no prepared statements yet
    for index in range(3):
        store.append("c", [{**MESSAGE, "id": str(index)}])
        store.load("c", last=2)
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        statements = [statement for (statement,) in cursor.fetchall()]
    assert len(statements) == (2 if prepared else 0)  # the append and the load
    assert connection.connection.prepare_threshold is None  # Django's setting is kept
    assert [m.id for m in store.load("c").messages] == ["0", "1", "2"]
    store.clear()


AWKWARD_CONTENTS = [
    'say "hi"',
    'back\\slash \\" and \\\\',
    "{braces}, commas, (parens)",
    "NULL",
    "",
    "  padded  ",
    "naïve café ✓ 😀 \u2028",
    "tab\tnew\nline",
]


@postgres_only()
@pytest.mark.parametrize("prepared", [True, False])
def test_postgresql_sends_message_arrays_as_binary(prepared):
    """Ids and documents go as binary arrays, prepared or not, and come back exact."""
    store = postgres_store("b", PREPARED_STATEMENTS=prepared)
    from psycopg import pq
    from psycopg.adapt import PyFormat

    list_formats: list[pq.Format] = []

    def record_list_format(execute, sql, params, many, context):
        list_formats.append(
            context["cursor"].cursor.adapters.get_dumper(list, PyFormat.AUTO).format
        )
        return execute(sql, params, many, context)

    awkward = [
        {"role": "user", "content": text, "id": f"id {index} \"'{{,}}"}
        for index, text in enumerate(AWKWARD_CONTENTS)
    ]
    with connections[POSTGRES_ALIAS].execute_wrapper(record_list_format):
        store.append("c", awkward[:1])
        store.append("c", awkward[1:])
        store.save("s", awkward)
    assert list_formats == [pq.Format.BINARY] * 3
    for conversation_id in ("c", "s"):
        loaded = store.load(conversation_id).messages
        assert [(m.id, m.content) for m in loaded] == [(m["id"], m["content"]) for m in awkward]
    store.append("c", awkward[:2])  # the same ids again: nothing added
    assert store.load("c").metadata.message_count == len(awkward)
    store.clear()


def test_analyze_refreshes_statistics_on_postgresql_only(db_store, db_alias):
    connection = connections[db_alias]
    with CaptureQueriesContext(connection) as queries:
        analyzed = db_store.analyze()
    statements = [query["sql"] for query in queries.captured_queries]
    if connection.vendor == "postgresql":
        assert analyzed is True
        assert statements == [
            'ANALYZE "django_convstore_storedconversation", "django_convstore_storedmessage"'
        ]
    else:
        assert analyzed is False
        assert statements == []


@postgres_only()
def test_postgresql_plans_look_conversations_up_by_their_unique_key_after_analyze():
    """Fresh statistics make the generic plan of a lookup use the unique key.

    A plan made while the tables were nearly empty may pick a namespace index
    and filter on the conversation id, scanning the whole namespace.
    """
    store = postgres_store("a")
    namespace = store.namespace
    table = StoredConversation._meta.db_table
    connection = connections[POSTGRES_ALIAS]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (namespace, conversation_id, created_at, updated_at, ttl, "
            "expires_at, message_count, next_position, metadata) "
            "SELECT %s, 'bulk' || g, 0, 0, 3600, 9999999999999, 0, 0, '{}' "
            "FROM generate_series(1, 5000) g",
            [namespace],
        )
    assert store.analyze()
    with connection.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        cursor.execute(
            f"PREPARE lookup(text, text) AS SELECT id FROM {table} "
            "WHERE namespace = $1 AND conversation_id = $2 FOR UPDATE"
        )
        cursor.execute(f"EXPLAIN EXECUTE lookup('{namespace}', 'bulk7')")
        plan = "\n".join(line for (line,) in cursor.fetchall())
        cursor.execute("DEALLOCATE lookup")
        cursor.execute("RESET plan_cache_mode")
    assert "convstore_conv_ns_id_uniq" in plan, plan
    store.clear()


def test_prepared_statements_option_must_be_a_boolean():
    with pytest.raises(ImproperlyConfigured, match="PREPARED_STATEMENTS"):
        create_store({"BACKEND": BACKEND, "OPTIONS": {"PREPARED_STATEMENTS": "yes"}})
