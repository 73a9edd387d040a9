"""ZeroDB backend specifics: configuration, layout, request counts, tolerance of API quirks."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_convstore import codec, create_store
from django_convstore.backends.zerodb import ZeroDBStore, protocol, rows
from django_convstore.exceptions import BackendError
from django_convstore.guards import is_zerodb_store
from django_convstore.types import Message
from tests.fixtures.zerodb import own_rows, write_legacy_conversation, zerodb_config
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


def headers_of(server: ZeroDBServer, store: ZeroDBStore) -> list[dict[str, Any]]:
    return own_rows(server, store.namespace, "conversations")


def messages_of(server: ZeroDBServer, store: ZeroDBStore) -> list[dict[str, Any]]:
    return own_rows(server, store.namespace, "conversations_messages")


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
        second.save("c", msgs("2"))
        assert sorted(fresh.table_names()) == ["conversations", "conversations_messages"]
        assert first.load("c").messages[0].content == "1"
        first.close()
        second.close()


def test_rows_follow_the_documented_layout(server, make):
    store = make(TTL=300)
    store.save("c", msgs("a", "b"), metadata={"k": "v"}, owner="u1")
    store.append("c", msgs("c"))
    (header,) = headers_of(server, store)
    assert header["v"] == 2 and header["state"] == "live" and header["owner"] == "u1"
    assert header["message_count"] == 3 == header["end"] - header["base"]
    assert header["ttl"] == 300 and header["metadata"] == {"k": "v"}
    assert header["expires_at"] == header["updated_at"] + 300_000 == header["live_until"]
    assert header["bulk_n"] == header["bulk_live"] == 2
    (entry,) = header["pend"]
    rows_ = messages_of(server, store)
    chunk = next(r for r in rows_ if r["kind"] == "bulk")
    single = next(r for r in rows_ if r["kind"] == "m")
    assert chunk["txn"] == header["bulk"] and chunk["hk"] == header["hk"]
    assert chunk["off"] == 0 and chunk["n"] == 2 and len(chunk["ids"]) == 2
    assert [m["content"] for m in codec.decode(chunk["ms"])] == ["a", "b"]
    assert single["txn"] == entry[0] and single["pos"] == header["base"] + 2
    assert single["mid"] == entry[4][0] and "c" not in single  # committed by the header only
    assert codec.decode(single["m"])["content"] == "c"


def test_every_message_field_is_stored_as_the_codec_writes_it(server, make):
    store = make()
    full = Message(
        role="assistant",
        content=[
            {"type": "text", "text": "see"},
            {"type": "image_url", "image_url": {"url": "u"}},
        ],
        name="helper",
        tool_calls=[
            {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
        metadata={"deep": {"list": [1, 2.5, None, "x"]}},
    )
    tool = Message(role="tool", content="42", tool_call_id="t1")
    store.save("c", [full])
    store.append("c", [tool])
    stored = {r["kind"]: r for r in messages_of(server, store)}
    assert stored["m"]["m"] == codec.encode_message(tool).decode()
    assert stored["bulk"]["ms"] == "[" + codec.encode_message(full).decode() + "]"
    assert store.load("c").messages == [full, tool]
    assert store.load("c", last=1).messages == [tool]


def test_a_save_deletes_the_rows_it_replaced(server, make):
    store = make()
    store.save("c", msgs("a"))
    store.append("c", msgs("b"))
    store.save("c", msgs("new"))
    (chunk,) = messages_of(server, store)
    assert codec.decode(chunk["ms"])[0]["content"] == "new"


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
    assert headers_of(server, store) == [] and messages_of(server, store) == []


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
    store.append("fresh", msgs("z"))
    assert store.load("old", include_expired=True) is not None
    assert store.cleanup() == 1
    assert store.load("old", include_expired=True) is None
    assert {r["conversation_id"] for r in messages_of(server, store)} == {"fresh"}
    assert [h["conversation_id"] for h in headers_of(server, store)] == ["fresh"]
    assert store.cleanup() == 0


# -- requests per operation -----------------------------------------------------------------


def build(store: ZeroDBStore, cid: str, length: int) -> None:
    """A conversation of ``length`` messages: a save of up to 1000, then appends of 1000."""
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
    store.append("c", msgs("a row of its own"))
    assert count(server, lambda: store.load("c", last=1)) == 2  # header, rows
    assert count(server, lambda: store.load("c", last=20)) == (2 if length > 1000 else 3)
    assert count(server, lambda: store.exists("c")) == 1
    assert count(server, lambda: store.get_ttl("c")) == 1
    assert count(server, lambda: store.append("c", msgs("one more"))) == 3  # ids, row, header
    assert count(server, lambda: store.append("c", msgs(*["batch"] * 5))) == 2 + 5
    assert count(server, lambda: store.set_ttl("c", 600)) == 1
    assert count(server, lambda: store.update_metadata("c", {"k": 1})) == 1
    assert count(server, lambda: store.pop("c")) == 3  # rows, header, delete
    total = store.load("c").metadata.message_count
    assert count(server, lambda: store.truncate("c", total - 3)) == 3
    assert (
        count(server, lambda: store.save("c", msgs(*["s"] * 20))) == 4
    )  # chunk, header, 2 deletes
    assert store.load("c").metadata.message_count == 20


def test_requests_when_this_process_has_not_seen_the_conversation(server, make):
    store = make()
    build(store, "c", 100)
    store.append("c", msgs("x"))
    store.tables.cache.clear()
    assert count(server, lambda: store.append("c", msgs("x"))) == 4  # + the header
    store.tables.cache.clear()
    assert count(server, lambda: store.pop("c")) == 4
    store.tables.cache.clear()
    assert count(server, lambda: store.delete("c")) == 4  # header, tombstone, rows, header row
    # A new conversation: look, rows, new header, look again, go live.
    assert count(server, lambda: store.append("new", msgs("x"))) == 5
    assert count(server, lambda: store.save("new2", msgs("x", "y"))) == 5
    assert count(server, lambda: store.create("new3", msgs("x"))) == 5


def test_a_stranger_never_reads_message_rows(server, make):
    store = make()
    build(store, "c", 50)
    store.update_metadata("c", {"k": 1})
    store.save("c", msgs("mine"), owner=None)
    with server.counting() as tally:
        assert store.load("c", owner="stranger") is None
        assert store.load("c", owner="stranger", last=5) is None
        assert not store.exists("c", owner="stranger")
        assert store.get_ttl("c", owner="stranger") == -2
        assert store.pop("c", owner="stranger") == []
        assert store.truncate("c", 0, owner="stranger") is None
    assert tally.routes == {"rows.query": 6}  # one header query each, no message rows
    assert tally.response_bytes < 6 * 2000


def test_load_pages_past_1000_rows(server, make):
    store = make()
    store.append("long", msgs(*(f"r{i}" for i in range(1000))))
    store.append("long", msgs(*(f"r{i}" for i in range(1000, 1200))))
    with server.counting() as tally:
        loaded = store.load("long")
    assert tally.requests == 3  # header + two pages of at most 1000 rows
    assert loaded is not None and loaded.metadata.message_count == 1200
    assert [m.content for m in loaded.messages[:2]] == ["r0", "r1"]
    assert loaded.messages[-1].content == "r1199"


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


# -- which rows count -----------------------------------------------------------------------


def current_header(server: ZeroDBServer, store: ZeroDBStore, cid: str = "c") -> rows.Header:
    (row,) = [
        r
        for r in server.rows("conversations")
        if r["row_data"]["namespace"] == store.namespace
        and r["row_data"]["conversation_id"] == cid
    ]
    return rows.Header.from_data(row["row_data"], row["row_id"])


def stray_row(store: ZeroDBStore, header: rows.Header, pos: int, content: str, **more: Any):
    message = Message(role="user", content=content, id=f"stray-{pos}-{content}")
    data = rows.message_row_data(
        store.namespace,
        header.conversation_id,
        hk=header.hk,
        txn=rows.new_token(),
        pos=pos,
        gen=header.gen,
        message=message,
        encoded=codec.encode_message(message),
        now=1,
    )
    return {**data, **more}


def test_rows_no_header_committed_are_invisible(server, make):
    store = make()
    store.append("c", msgs("a", "b"))
    header = current_header(server, store)
    # A writer at work (at the end) and one that lost or died (on a committed position).
    server.insert_row("conversations_messages", stray_row(store, header, header.end, "ahead"))
    server.insert_row("conversations_messages", stray_row(store, header, header.base, "loser"))
    loaded = store.load("c")
    assert [m.content for m in loaded.messages] == ["a", "b"]
    assert loaded.metadata.message_count == 2 == store.get_stats().total_messages
    assert store.append("c", msgs("c")).message_count == 3
    assert [m.content for m in store.load("c").messages] == ["a", "b", "c"]


def test_a_duplicated_row_is_read_once(server, make):
    store = make()
    store.save("c", msgs("a"))
    store.append("c", msgs("b"))
    row = next(r for r in messages_of(server, store) if r["kind"] == "m")
    server.insert_row("conversations_messages", row)  # a retried insert that landed twice
    loaded = store.load("c")
    assert [m.content for m in loaded.messages] == ["a", "b"]
    assert [c.messages for c in store.iter_conversations()] == [loaded.messages]


def test_removed_rows_left_behind_never_come_back(server, make):
    store = make()
    store.append("c", [{"id": "x", "role": "user", "content": "first"}])
    store.append("c", [{"id": "y", "role": "user", "content": "second"}])
    server.fail(times=10, status=503, route="rows.bulk_delete")  # the pop's clean-up fails
    assert [m.id for m in store.pop("c")] == ["y"]
    server.clear_faults()
    assert any(r.get("mid") == "y" for r in messages_of(server, store))  # still stored
    store.append("c", [{"id": "z", "role": "user", "content": "third"}])  # same position
    assert [m.id for m in store.load("c").messages] == ["x", "z"]
    store.append("c", [{"id": "y", "role": "user", "content": "second again"}])
    assert [m.content for m in store.load("c").messages] == ["first", "third", "second again"]
    assert store.load("c").metadata.message_count == 3


def test_pend_entries_are_stamped_into_the_rows_before_they_are_dropped(server, make):
    store = make()
    for i in range(rows.PEND_MAX + 3):
        store.append("c", msgs(f"m{i}"))
    header = current_header(server, store)
    assert len(header.pend) <= rows.PEND_MAX
    stamped = [r for r in messages_of(server, store) if r.get("c") == 1]
    # Every message is vouched for by the header (pend) or by its own row (stamped).
    assert stamped and len(stamped) + len(header.pend) == rows.PEND_MAX + 3
    assert [m.content for m in store.load("c").messages] == [
        f"m{i}" for i in range(rows.PEND_MAX + 3)
    ]


def test_an_update_whose_reply_was_lost_is_recognised_after_later_updates(server, make):
    store = make()
    store.save("c", msgs("a"))
    old = current_header(server, store)
    mine = old.evolve(metadata={"n": 5})
    later = mine.evolve(metadata={"n": 6})
    # As if "mine" landed (reply lost) and another writer then updated the header again.
    with server.app.lock:
        table = server.app.tables["conversations"]
        table.change(table.rows[old.row_id], later.to_data())
    assert store.tables.cas(old, mine) is None
    stranger = old.evolve(metadata={"n": 9})
    fresh = store.tables.cas(old, stranger)
    assert fresh is not None and fresh.current.metadata == {"n": 6}


def new_header(store: ZeroDBStore, owner: str, t: int) -> rows.Header:
    """A ``new`` header row as a creator inserts it before looking for rivals."""
    return rows.Header(store.namespace, "c", rows.new_hk(t), rows.NEW, owner, t, t, None, {}, t=t)


def test_a_dead_creators_header_does_not_block_the_id(server, make):
    store = make()
    store.tables.client.ensure_table("conversations")
    server.insert_row("conversations", new_header(store, "someone", 1).to_data())
    meta = store.append("c", msgs("mine"), owner="me")
    assert meta.owner == "me" and meta.message_count == 1
    states = [h["state"] for h in headers_of(server, store) if h["conversation_id"] == "c"]
    assert states == ["live"]  # the dead creator's header was withdrawn, then deleted


def test_a_creator_at_work_makes_others_wait_then_it_is_taken_as_dead(server, make, monkeypatch):
    monkeypatch.setattr(protocol, "STALE_NEW_MS", 300)
    store = make()
    store.tables.client.ensure_table("conversations")
    server.insert_row("conversations", new_header(store, "other", protocol.now_ms()).to_data())
    started = protocol.now_ms()
    created = store.create("c", msgs("mine"), owner="me")
    assert created is not None and created.metadata.owner == "me"
    assert protocol.now_ms() - started >= 300  # it waited for the other creator first
    assert store.load("c").metadata.owner == "me"


def test_malformed_rows_raise_backend_error(server, make):
    store = make()
    store.save("c", msgs("a"))
    server.insert_row(
        "conversations",
        {"v": 2, "namespace": store.namespace, "conversation_id": "c", "created_at": "yesterday"},
    )
    with pytest.raises(BackendError, match="malformed reply to header row"):
        store.load("c")


# -- rows written by django-convstore 0.1 ----------------------------------------------------


def legacy_messages(*contents: str) -> list[dict[str, Any]]:
    return [
        {"id": f"old-{c}", "role": "user", "content": c, "timestamp": 1000 + i, "metadata": {}}
        for i, c in enumerate(contents)
    ]


@pytest.fixture
def old_store(make: Factory) -> ZeroDBStore:
    """A store whose tables exist but hold nothing of its namespace."""
    store = make()
    store.tables.client.ensure_table("conversations")
    store.tables.client.ensure_table("conversations_messages")
    return store


def test_conversations_written_by_0_1_keep_loading(server, old_store):
    store = old_store
    write_legacy_conversation(
        server,
        store.namespace,
        "old",
        [legacy_messages("a", "b"), legacy_messages("c")],
        owner="u1",
        metadata={"k": "v"},
    )
    loaded = store.load("old")
    assert [m.content for m in loaded.messages] == ["a", "b", "c"]
    assert loaded.metadata.owner == "u1" and loaded.metadata.metadata == {"k": "v"}
    assert [m.content for m in store.load("old", last=1).messages] == ["c"]
    assert store.exists("old") and store.get_ttl("old") == -1
    assert store.load("old", owner="u2") is None
    assert store.list() == ["old"]
    assert store.list_conversations(owner="u1").items[0].message_count == 3
    assert store.get_stats().total_messages == 3
    assert [c.conversation_id for c in store.iter_conversations()] == ["old"]


def test_the_first_write_converts_a_0_1_conversation(server, old_store):
    store = old_store
    write_legacy_conversation(
        server, store.namespace, "old", [legacy_messages("a", "b"), legacy_messages("c")]
    )
    meta = store.append("old", msgs("d"))
    assert meta.message_count == 4
    assert [m.content for m in store.load("old").messages] == ["a", "b", "c", "d"]
    (header,) = headers_of(server, store)
    assert header["v"] == 2 and header["bulk_n"] == 3
    assert all(r.get("v") == 2 for r in messages_of(server, store))  # 0.1 rows deleted
    assert store.append("old", legacy_messages("b")).message_count == 4  # ids carried over
    last_id = store.load("old").messages[-1].id
    assert [m.id for m in store.pop("old", 2)] == ["old-c", last_id]
    assert [m.content for m in store.load("old").messages] == ["a", "b"]


@pytest.mark.parametrize(
    "write",
    [
        lambda s: s.save("old", msgs("new")),
        lambda s: s.set_ttl("old", 60),
        lambda s: s.update_metadata("old", {"x": 1}),
        lambda s: s.pop("old"),
        lambda s: s.truncate("old", 1),
    ],
    ids=["save", "set_ttl", "update_metadata", "pop", "truncate"],
)
def test_every_write_works_on_a_0_1_conversation(server, old_store, write):
    store = old_store
    write_legacy_conversation(server, store.namespace, "old", [legacy_messages("a", "b")])
    write(store)
    loaded = store.load("old")
    assert loaded is not None and loaded.metadata.message_count == len(loaded.messages)
    assert store.get_stats().total_messages == len(loaded.messages)
    assert all(r.get("v") == 2 for r in messages_of(server, store))


def test_0_1_conversations_delete_expire_and_clear(server, old_store):
    store = old_store
    write_legacy_conversation(server, store.namespace, "a", [legacy_messages("x")], owner="u")
    write_legacy_conversation(server, store.namespace, "b", [legacy_messages("y")], ttl=1)
    assert store.delete("a", owner="someone else") is False
    assert store.delete("a", owner="u") is True and not store.exists("a")
    assert store.load("b") is None and store.load("b", include_expired=True) is not None
    assert store.cleanup() == 1
    assert headers_of(server, store) == [] and messages_of(server, store) == []
    write_legacy_conversation(server, store.namespace, "c", [legacy_messages("z")])
    assert store.clear() == 1


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
        assert [m.content for m in store.pop("c")] == ["b"]
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
        with pytest.raises(BackendError, match="ignored the query filter"):
            first.append("c", msgs("first"))
        assert second.load("c") is None


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


def test_async_twins_overlap_in_a_thread_pool(server, make):
    """``async_thread_sensitive`` is False: concurrent awaits run on several threads."""
    import asyncio
    import threading

    store = make()
    store.save("c", msgs("a"))
    assert type(store).async_thread_sensitive is False
    seen: set[int] = set()
    original = store.client.request

    def request(*args: Any, **kwargs: Any) -> Any:
        seen.add(threading.get_ident())
        return original(*args, **kwargs)

    store.client.request = request
    server.set_latency(0.05)

    async def many() -> list[Any]:
        return await asyncio.gather(*(store.aload("c") for _ in range(8)))

    loaded = asyncio.run(many())
    server.set_latency(0)
    assert all(c.messages[0].content == "a" for c in loaded)
    assert len(seen) > 1 and threading.get_ident() not in seen


def lose_reply_then_scroll(store: ZeroDBStore, other: ZeroDBStore, monkeypatch) -> None:
    """The next header compare-and-set lands, its reply is lost, and before the writer
    looks again 33 other header writes push its revision out of ``revs``."""
    original = store.client.bulk_update
    armed = [True]

    def bulk_update(table: str, filter_: Any, update: Any) -> int:
        matched = original(table, filter_, update)
        if armed[0] and table == "conversations" and "rev" in filter_:
            armed[0] = False
            for i in range(rows.REV_HISTORY + 1):
                other.update_metadata("c", {"n": i})
            return 0
        return matched

    monkeypatch.setattr(store.client, "bulk_update", bulk_update)


def test_an_append_whose_reply_was_lost_long_ago_keeps_its_rows(make, monkeypatch):
    store, other = make(), make()
    other.namespace = store.namespace
    other.tables.namespace = store.namespace
    store.append("c", [{"id": "a", "role": "user", "content": "a"}])
    lose_reply_then_scroll(store, other, monkeypatch)
    meta = store.append("c", [{"id": "b", "role": "user", "content": "b"}])
    assert meta.message_count == 2
    loaded = other.load("c")
    assert [m.id for m in loaded.messages] == ["a", "b"] and loaded.metadata.message_count == 2


def test_a_save_whose_reply_was_lost_long_ago_keeps_its_chunks(make, monkeypatch):
    store, other = make(), make()
    other.namespace = store.namespace
    other.tables.namespace = store.namespace
    store.save("c", msgs("old"))
    lose_reply_then_scroll(store, other, monkeypatch)
    saved = store.save("c", msgs("new", "er"))
    assert saved.metadata.message_count == 2
    assert [m.content for m in other.load("c").messages] == ["new", "er"]
