"""ZeroDB backend specifics: configuration, layout, request counts, tolerance of API quirks."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_convstore import create_store
from django_convstore.backends import zerodb
from django_convstore.backends.zerodb import ZeroDBStore
from django_convstore.backends.zerodb_rows import Segment
from django_convstore.exceptions import BackendError
from django_convstore.guards import is_zerodb_store
from django_convstore.types import Message
from tests.fixtures.zerodb import zerodb_config
from tests.servers.zerodb_server import ZeroDBServer

Factory = Callable[..., ZeroDBStore]


def msgs(*contents: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": c} for c in contents]


@pytest.fixture(scope="module")
def module_server() -> Iterator[ZeroDBServer]:
    with ZeroDBServer() as server:
        yield server


@pytest.fixture
def server(module_server: ZeroDBServer) -> Iterator[ZeroDBServer]:
    module_server.clear_faults()
    yield module_server
    module_server.clear_faults()


@pytest.fixture
def make(server: ZeroDBServer) -> Iterator[Factory]:
    built: list[ZeroDBStore] = []

    def factory(target: ZeroDBServer | None = None, **config: Any) -> ZeroDBStore:
        options = config.pop("OPTIONS", {})
        full = {
            **zerodb_config(target or server, **options),
            "NAMESPACE": f"n{uuid.uuid4().hex[:10]}",
            **config,
        }
        store = create_store(full, alias=f"zdb{len(built)}")
        assert isinstance(store, ZeroDBStore)
        built.append(store)
        return store

    yield factory
    for store in built:
        store.close()


# -- configuration ----------------------------------------------------------------------------


def base_config(**options: Any) -> dict[str, Any]:
    return {
        "BACKEND": "django_convstore.backends.zerodb.ZeroDBStore",
        "OPTIONS": {"PROJECT_ID": "p", "API_KEY": "sk_secret_value", **options},
    }


@pytest.mark.parametrize("missing", ["PROJECT_ID", "API_KEY"])
def test_required_options_name_alias_and_option(missing):
    config = base_config()
    del config["OPTIONS"][missing]
    with pytest.raises(ImproperlyConfigured) as info:
        create_store(config, alias="chats")
    assert "CONVSTORE['chats']" in str(info.value)
    assert f"OPTIONS['{missing}'] is required" in str(info.value)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"API_KEY": ""}, "OPTIONS['API_KEY'] is required"),
        ({"API_KEY": 12}, "OPTIONS['API_KEY'] is required"),
        ({"TABLE_NAME": "bad-name"}, "OPTIONS['TABLE_NAME']"),
        ({"TABLE_NAME": "1abc"}, "OPTIONS['TABLE_NAME']"),
        ({"BASE_URL": "ftp://x"}, "OPTIONS['BASE_URL']"),
        ({"BASE_URL": "api.ainative.studio"}, "OPTIONS['BASE_URL']"),
        ({"TIMEOUT": 0}, "OPTIONS['TIMEOUT']"),
        ({"MAX_RETRIES": -1}, "OPTIONS['MAX_RETRIES']"),
        ({"RETRY_BACKOFF": "x"}, "OPTIONS['RETRY_BACKOFF']"),
        ({"RETRY_BACKOFF_MAX": -2}, "OPTIONS['RETRY_BACKOFF_MAX']"),
        ({"SECRET": 1}, "unknown OPTIONS SECRET"),
    ],
)
def test_bad_options_fail_clearly_without_the_key(options, fragment):
    with pytest.raises(ImproperlyConfigured) as info:
        create_store(base_config(**options), alias="chats")
    assert fragment in str(info.value)
    assert "sk_secret_value" not in str(info.value)


def test_defaults_and_location_as_base_url():
    store = create_store(base_config())
    assert isinstance(store, ZeroDBStore) and is_zerodb_store(store)
    assert store.base_url == "https://api.ainative.studio/api/v1"
    assert (store.table_name, store.messages_table) == ("conversations", "conversations_messages")
    assert (store.timeout, store.max_retries) == (10.0, 3)
    assert "sk_secret_value" not in repr(store)
    located = create_store({**base_config(), "LOCATION": "https://x.example/v1/"})
    assert located.base_url == "https://x.example/v1"
    with pytest.raises(ImproperlyConfigured, match="disagree"):
        create_store(
            {**base_config(BASE_URL="https://a.example"), "LOCATION": "https://b.example"}
        )


def test_original_form_builds_a_zerodb_store(server):
    store = create_store(
        {
            "type": "zerodb",
            "project_id": server.project_id,
            "api_key": server.api_key,
            "table_name": "orig",
            "base_url": server.base_url,
            "default_ttl": 60,
        }
    )
    assert isinstance(store, ZeroDBStore) and store.table_name == "orig"
    store.save("c", msgs("hi"))
    assert store.get_ttl("c") in (59, 60)
    store.clear()
    store.close()


def test_building_a_store_sends_nothing(server, make):
    with server.counting() as tally:
        make()
    assert tally.requests == 0


# -- layout -----------------------------------------------------------------------------------


def test_tables_are_created_on_first_use_with_both_name_keys():
    with ZeroDBServer() as fresh:
        store = create_store({**zerodb_config(fresh, TABLE_NAME="chats"), "NAMESPACE": "ns"})
        assert fresh.table_names() == []
        store.append("c", msgs("hi"))
        assert sorted(fresh.table_names()) == ["chats", "chats_messages"]
        assert store.load("c").messages[0].content == "hi"
        store.close()


def test_existing_tables_and_already_exists_answers_are_fine():
    with ZeroDBServer(duplicate_table_status=409) as fresh:
        first = create_store({**zerodb_config(fresh), "NAMESPACE": "a"})
        second = create_store({**zerodb_config(fresh), "NAMESPACE": "b"})
        first.save("c", msgs("1"))
        # The second store's process-wide state says nothing about the tables; they exist.
        second.save("c", msgs("2"))
        assert sorted(fresh.table_names()) == ["conversations", "conversations_messages"]
        assert first.load("c").messages[0].content == "1"
        first.close()
        second.close()


def test_rows_follow_the_documented_layout(server, make):
    store = make(TTL=300)
    store.save("c", msgs("a", "b"), metadata={"k": "v"}, owner="u1")
    store.append("c", msgs("c"))
    headers = [
        r["row_data"]
        for r in server.rows("conversations")
        if r["row_data"]["namespace"] == store.namespace
    ]
    assert len(headers) == 1
    header = headers[0]
    assert header["conversation_id"] == "c" and header["owner"] == "u1"
    assert header["message_count"] == 3 and header["ttl"] == 300
    assert header["expires_at"] == header["updated_at"] + 300_000 == header["live_until"]
    assert header["metadata"] == {"k": "v"}
    rows = [
        r["row_data"]
        for r in server.rows("conversations_messages")
        if r["row_data"]["namespace"] == store.namespace
    ]
    assert [r["count"] for r in rows] == [2, 1]
    assert [[m["content"] for m in r["messages"]] for r in rows] == [["a", "b"], ["c"]]
    assert set(rows[1]["messages"][0]) == {"id", "role", "content", "timestamp", "metadata"}
    assert rows[0]["at"] <= rows[1]["at"] and rows[0]["key"] < rows[1]["key"]


def test_save_deletes_the_replaced_message_rows(server, make):
    store = make()
    store.save("c", msgs("a"))
    store.append("c", msgs("b"))
    store.save("c", msgs("new"))
    rows = [
        r["row_data"]
        for r in server.rows("conversations_messages")
        if r["row_data"]["namespace"] == store.namespace
    ]
    assert [[m["content"] for m in r["messages"]] for r in rows] == [["new"]]


def test_namespaces_sharing_tables_are_isolated(make):
    first, second = make(), make()
    first.save("same", msgs("first"), owner="x")
    second.save("same", msgs("second"))
    second.append("only-second", msgs("z"))
    assert first.load("same").messages[0].content == "first"
    assert first.list() == ["same"] and sorted(second.list()) == ["only-second", "same"]
    assert first.get_stats().total_conversations == 1
    assert second.clear() == 2
    assert first.exists("same") and not second.exists("same")
    assert first.delete("same") and first.list() == []


def test_delete_removes_header_and_message_rows(server, make):
    store = make()
    store.save("c", msgs("a"))
    store.append("c", msgs("b"))
    assert store.delete("c") is True
    assert store.delete("c") is False
    for table in ("conversations", "conversations_messages"):
        assert not [r for r in server.rows(table) if r["row_data"]["namespace"] == store.namespace]


def test_cleanup_removes_expired_rows_only(server, make):
    store = make()
    store.put(
        {
            "conversation_id": "old",
            "messages": msgs("x"),
            "metadata": {"conversation_id": "old", "created_at": 1, "updated_at": 1_000, "ttl": 5},
        }
    )
    store.save("fresh", msgs("y"), ttl=3600)
    assert store.load("old", include_expired=True) is not None
    assert store.cleanup() == 1
    assert store.load("old", include_expired=True) is None
    remaining = [
        r["row_data"]["conversation_id"]
        for r in server.rows("conversations_messages")
        if r["row_data"]["namespace"] == store.namespace
    ]
    assert remaining == ["fresh"]
    assert store.cleanup() == 0


# -- request counts and connections -------------------------------------------------------------


def build(store: ZeroDBStore, cid: str, length: int) -> None:
    """A conversation of ``length`` messages, written in batches of at most 1000."""
    store.save(cid, msgs(*(f"m{i}" for i in range(min(length, 1000)))))
    done = min(length, 1000)
    while done < length:
        batch = min(1000, length - done)
        store.append(cid, msgs(*(f"m{i}" for i in range(done, done + batch))))
        done += batch


def count(server: ZeroDBServer, operation: Callable[[], object]) -> int:
    with server.counting() as tally:
        operation()
    return tally.requests


@pytest.mark.parametrize("length", [10, 1000, 2500])
def test_requests_per_operation_do_not_depend_on_length(server, make, length):
    store = make()
    build(store, "c", length)
    assert count(server, lambda: store.load("c")) == 2
    assert count(server, lambda: store.load("c", last=5)) == 2
    assert count(server, lambda: store.exists("c")) == 1
    assert count(server, lambda: store.get_ttl("c")) == 1
    assert count(server, lambda: store.append("c", msgs("one more"))) == 2
    assert count(server, lambda: store.append("c", msgs(*["batch"] * 50))) == 2
    assert count(server, lambda: store.set_ttl("c", 600)) == 1
    assert count(server, lambda: store.save("c", msgs(*["s"] * 20))) == 3
    assert store.load("c").metadata.message_count == 20


def test_requests_when_this_process_has_not_seen_the_conversation(server, make):
    store = make()
    build(store, "c", 100)
    store._cache.clear()
    assert count(server, lambda: store.append("c", msgs("x"))) == 3
    store._cache.clear()
    assert count(server, lambda: store.save("c", msgs("y"))) == 4
    assert count(server, lambda: store.append("new", msgs("x"))) == 4
    assert count(server, lambda: store.save("new2", msgs("x"))) == 4
    assert count(server, lambda: store.delete("c")) == 3


def test_load_pages_past_1000_message_rows(server, make):
    store = make()
    meta = store.append("long", msgs("first"))
    base = store._cache.get("long").base
    for i in range(1200):
        segment = Segment(
            store.namespace,
            "long",
            base + 1 + i,
            f"k{i:06d}",
            [Message(role="user", content=f"r{i}", id=f"id{i}")],
        )
        server.insert_row("conversations_messages", segment.to_data())
    with server.counting() as tally:
        loaded = store.load("long")
    assert tally.requests == 3  # header + two pages of at most 1000 rows
    assert loaded is not None and loaded.metadata.message_count == 1201
    assert [m.content for m in loaded.messages[:3]] == ["first", "r0", "r1"]
    assert loaded.messages[-1].content == "r1199"
    assert meta.message_count == 1


def test_sequential_operations_reuse_one_connection(server, make):
    store = make()
    with server.counting() as tally:
        store.save("c", msgs("a"))
        for i in range(10):
            store.append("c", msgs(str(i)))
            store.load("c")
            store.exists("c")
        store.list_conversations()
        store.delete("c")
    assert tally.requests > 30
    assert tally.connections == 1


def test_close_releases_the_connection_and_reopens_lazily(server, make):
    store = make()
    store.save("c", msgs("a"))
    store.close()
    store.close()
    with server.counting() as tally:
        assert store.load("c").messages[0].content == "a"
    assert tally.connections == 1


# -- reading robustly ---------------------------------------------------------------------


def test_a_message_row_inserted_twice_is_read_once(server, make):
    store = make()
    store.save("c", msgs("a"))
    store.append("c", msgs("b"))
    row = next(
        r
        for r in server.rows("conversations_messages")
        if r["row_data"]["namespace"] == store.namespace
        and r["row_data"]["messages"][0]["content"] == "b"
    )
    server.insert_row("conversations_messages", row["row_data"])
    loaded = store.load("c")
    assert loaded is not None
    assert [m.content for m in loaded.messages] == ["a", "b"]
    assert loaded.metadata.message_count == 2
    assert [c.messages[-1].content for c in store.iter_conversations()] == ["b"]


def test_same_message_id_appended_twice_is_two_messages(make):
    store = make()
    store.append("c", [{"id": "same", "role": "user", "content": "1"}])
    store.append("c", [{"id": "same", "role": "user", "content": "2"}])
    assert [m.content for m in store.load("c").messages] == ["1", "2"]


def test_a_leftover_duplicate_header_hides_and_loses_nothing(server, make, monkeypatch):
    monkeypatch.setattr(zerodb, "SETTLE_SECONDS", 0.05)
    store = make()
    store.append("c", msgs("a"))
    mine = store._cache.get("c")
    assert mine is not None
    # What a creator that crashed between inserting its header and checking for rivals
    # leaves: a second live header (here with the lower creation key, so it is the primary).
    rival_at = mine.base + 5
    segment = Segment(
        store.namespace,
        "c",
        rival_at,
        "rival-key",
        [Message(role="user", content="rival", id="r")],
    )
    server.insert_row("conversations_messages", segment.to_data())
    leftover = mine.evolve(base=rival_at, last=rival_at, message_count=1, hkey="0-early")
    server.insert_row("conversations", leftover.to_data())

    def live_headers() -> list[dict[str, Any]]:
        return [
            r["row_data"]
            for r in server.rows("conversations")
            if r["row_data"]["namespace"] == store.namespace and r["row_data"]["state"] == "live"
        ]

    assert store.exists("c")
    assert [m.content for m in store.load("c").messages] == ["a", "rival"]
    assert store.list_conversations().items[0].message_count == 2
    # A writer that reads the headers waits a moment, then updates the primary.
    store._cache.drop("c")
    meta = store.append("c", msgs("b"))
    assert meta.message_count == 3
    assert [h["message_count"] for h in live_headers()] == [1, 2]
    assert [m.content for m in store.load("c").messages] == ["a", "rival", "b"]
    assert store.list_conversations().items[0].message_count == 3
    assert store.set_ttl("c", 100) and store.get_ttl("c") in (99, 100)
    # save replaces everything and retires the other header.
    store.save("c", msgs("new"))
    assert len(live_headers()) == 1
    loaded = store.load("c")
    assert loaded is not None and [m.content for m in loaded.messages] == ["new"]
    assert store.list_conversations().items[0].message_count == 1


def test_malformed_rows_raise_backend_error(server, make):
    store = make()
    store.save("c", msgs("a"))
    server.insert_row(
        "conversations",
        {"namespace": store.namespace, "conversation_id": "c", "created_at": "yesterday"},
    )
    with pytest.raises(BackendError, match="malformed reply to header row"):
        store.load("c")


# -- the API's documented ambiguities -----------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"filter_keys": ("filters",)},
        {"filter_keys": ("filter", "filters")},
        {"list_key": "rows", "row_id_key": "id"},
        {"list_key": "items"},
        {"insert_status": 200, "delete_status": 200, "create_table_status": 201},
        {"duplicate_table_status": 409},
    ],
    ids=["filters", "both-filter-keys", "rows-and-id", "items", "other-2xx", "409"],
)
def test_works_with_every_documented_variant_of_the_api(make, options):
    with ZeroDBServer(**options) as variant:
        store = make(variant, TTL=100)
        other = make(variant)
        other.save("c", msgs("other namespace"))
        store.save("c", msgs("a"), owner="u")
        store.append("c", msgs("b"))
        store.append("d", msgs("d"))
        loaded = store.load("c")
        assert loaded is not None and [m.content for m in loaded.messages] == ["a", "b"]
        assert store.list_conversations(owner="u").total == 1
        assert sorted(store.list()) == ["c", "d"]
        assert store.set_ttl("c", 50) and store.get_ttl("c") in (49, 50)
        assert store.delete("d") and not store.exists("d")
        assert store.clear() == 1
        assert other.load("c").messages[0].content == "other namespace"


def test_the_v1_root_works_too(make):
    with ZeroDBServer() as variant:
        store = make(variant, OPTIONS={"BASE_URL": variant.root_url + "/v1"})
        store.save("c", msgs("a"))
        assert store.load("c").messages[0].content == "a"


def test_a_service_ignoring_filters_still_reads_right_but_refuses_bulk_writes(make):
    with ZeroDBServer(filter_keys=()) as variant:
        first, second = make(variant), make(variant)
        first.append("c", msgs("first"))
        second.append("c", msgs("second"))
        loaded = first.load("c")
        assert loaded is not None and [m.content for m in loaded.messages] == ["first"]
        assert first.list() == ["c"]
        with pytest.raises(BackendError, match="ignored the query filter"):
            first.clear()
        assert second.load("c").messages[0].content == "second"


def test_project_not_found_names_the_option(make, server):
    store = make(OPTIONS={"PROJECT_ID": "00000000-0000-0000-0000-000000000000"})
    with pytest.raises(BackendError) as info:
        store.load("c")
    assert info.value.status == 404
    assert "OPTIONS']['PROJECT_ID']" in str(info.value)
    assert server.api_key not in str(info.value)


def test_wrong_base_url_path_names_the_option(make, server):
    store = make(OPTIONS={"BASE_URL": server.root_url + "/api/v9"})
    with pytest.raises(BackendError, match=r"OPTIONS'\]\['BASE_URL'\]"):
        store.save("c", msgs("a"))


def test_an_update_whose_reply_was_lost_is_recognised_after_later_updates(server, make):
    store = make()
    store.save("c", msgs("a"))
    old = store._cache.get("c")
    assert old is not None
    mine = old.evolve(message_count=5)
    later = mine.evolve(message_count=6)
    # As if "mine" landed (reply lost) and another writer then updated the header again.
    row = next(
        r for r in server.rows("conversations") if r["row_data"]["namespace"] == store.namespace
    )
    with server.app.lock:
        server.app.tables["conversations"].rows[row["row_id"]]["row_data"] = later.to_data()
    done, _ = store._cas(old, mine)
    assert done
    stranger = old.evolve(message_count=9)
    done, headers = store._cas(old, stranger)
    assert not done and headers[0].message_count == 6
