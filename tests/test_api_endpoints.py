"""Every REST API endpoint, through ``APIClient``, against the memory and Redis backends."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from django.test import override_settings
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from django_convstore import stores
from django_convstore.api.pagination import MessagePagination
from django_convstore.backends.base import BaseStore
from django_convstore.clock import now_ms
from django_convstore.types import Conversation, ConversationMetadata, Message

pytestmark = pytest.mark.django_db

BASE = "/api/conversations/"


def url(conversation_id: str | None = None, sub: str | None = None) -> str:
    """The URL of the list, a conversation, or one of its sub-resources."""
    path = BASE
    if conversation_id is not None:
        path += f"{quote(conversation_id, safe='')}/"
    if sub:
        path += f"{sub}/"
    return path


def msgs(count: int, start: int = 0) -> list[dict[str, Any]]:
    """``count`` user messages with ids m<start>…"""
    return [
        {"id": f"m{i}", "role": "user", "content": f"message {i}"}
        for i in range(start, start + count)
    ]


# -- list ---------------------------------------------------------------------------------


def test_list_shows_own_conversations_newest_first(
    api_store: BaseStore, owner_client: APIClient, owner: Any
) -> None:
    for name in ("first", "second", "third"):
        api_store.save(name, msgs(1), owner=str(owner.pk))
    api_store.save("someone-elses", msgs(1), owner="999")

    response = owner_client.get(url())

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert body["next"] is None and body["previous"] is None
    assert [item["conversation_id"] for item in body["results"]] == ["third", "second", "first"]
    item = body["results"][0]
    assert set(item) == {
        "conversation_id",
        "created_at",
        "updated_at",
        "message_count",
        "ttl",
        "owner",
        "metadata",
        "expires_at",
    }
    assert item["owner"] == str(owner.pk)
    assert item["message_count"] == 1


def test_list_paginates_with_limit_and_offset(
    api_store: BaseStore, owner_client: APIClient, owner: Any
) -> None:
    for i in range(7):
        api_store.save(f"c{i}", [], owner=str(owner.pk))

    first = owner_client.get(url(), {"limit": 3}).json()
    assert first["count"] == 7
    assert [item["conversation_id"] for item in first["results"]] == ["c6", "c5", "c4"]
    assert first["previous"] is None
    assert "limit=3" in first["next"] and "offset=3" in first["next"]

    second = owner_client.get(first["next"]).json()
    assert [item["conversation_id"] for item in second["results"]] == ["c3", "c2", "c1"]
    assert "offset" not in second["previous"]

    last = owner_client.get(url(), {"limit": 3, "offset": 6}).json()
    assert [item["conversation_id"] for item in last["results"]] == ["c0"]
    assert last["next"] is None
    assert "offset=3" in last["previous"]

    beyond = owner_client.get(url(), {"limit": 3, "offset": 50}).json()
    assert beyond["results"] == [] and beyond["count"] == 7


def test_list_limit_follows_drf_limit_offset_semantics(
    api_store: BaseStore, owner_client: APIClient, owner: Any
) -> None:
    for i in range(3):
        api_store.save(f"c{i}", [], owner=str(owner.pk))
    # Invalid or zero limits fall back to the default (50); invalid offsets to 0.
    for params in ({"limit": "abc"}, {"limit": 0}, {"limit": -4}, {"offset": "x"}):
        body = owner_client.get(url(), params).json()
        assert len(body["results"]) == 3, params
    # A limit over the maximum is cut to it (1000), as DRF's max_limit does.
    body = owner_client.get(url(), {"limit": 10**30, "offset": 10**30}).json()
    assert body["results"] == []
    assert "limit=1000" in body["previous"]


def test_list_filters_by_prefix(api_store: BaseStore, owner_client: APIClient, owner: Any) -> None:
    for name in ("support-1", "support-2", "sales-1"):
        api_store.save(name, [], owner=str(owner.pk))

    body = owner_client.get(url(), {"prefix": "support-"}).json()

    assert body["count"] == 2
    assert {item["conversation_id"] for item in body["results"]} == {"support-1", "support-2"}
    assert owner_client.get(url(), {"prefix": ""}).json()["count"] == 3


def test_list_rejects_an_overlong_prefix(api_store: BaseStore, owner_client: APIClient) -> None:
    response = owner_client.get(url(), {"prefix": "x" * 256})
    assert response.status_code == 400
    assert "prefix" in response.json()


def test_view_permission_lists_everything(
    api_store: BaseStore, client_for: Any, manager: Any, owner: Any
) -> None:
    api_store.save("alices", [], owner=str(owner.pk))
    api_store.save("ownerless", [])

    body = client_for(manager).get(url()).json()

    assert {item["conversation_id"] for item in body["results"]} == {"alices", "ownerless"}


# -- create -------------------------------------------------------------------------------


def test_create_generates_an_id_and_records_the_owner(
    api_store: BaseStore, owner_client: APIClient, owner: Any
) -> None:
    response = owner_client.post(
        url(),
        {"messages": msgs(2), "metadata": {"title": "Hello"}, "ttl": 600},
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    cid = body["conversation_id"]
    assert len(cid) == 32
    assert response["Location"] == f"http://testserver{url(cid)}"
    assert [m["id"] for m in body["messages"]] == ["m0", "m1"]
    assert body["metadata"]["owner"] == str(owner.pk)
    assert body["metadata"]["metadata"] == {"title": "Hello"}
    assert body["metadata"]["ttl"] == 600
    stored = api_store.load(cid)
    assert stored is not None and stored.metadata.owner == str(owner.pk)
    assert [m.content for m in stored.messages] == ["message 0", "message 1"]


def test_create_with_an_id_and_message_defaults(
    api_store: BaseStore, owner_client: APIClient
) -> None:
    before = now_ms()
    response = owner_client.post(
        url(),
        {"conversation_id": "support 42 ✓", "messages": [{"role": "user", "content": ""}]},
        format="json",
    )

    assert response.status_code == 201
    message = response.json()["messages"][0]
    assert len(message["id"]) == 32
    assert message["timestamp"] >= before
    assert message["metadata"] == {}
    assert api_store.exists("support 42 ✓")


def test_create_ttl_zero_means_never_and_omitted_means_store_default(
    api_store_config: dict[str, Any], owner_client: APIClient
) -> None:
    config = {**api_store_config, "TTL": 3600}
    with override_settings(CONVSTORE={"api": config}, CONVSTORE_API_STORE="api"):
        never = owner_client.post(url(), {"messages": [], "ttl": 0}, format="json").json()
        default = owner_client.post(url(), {"messages": []}, format="json").json()
        null = owner_client.post(url(), {"messages": [], "ttl": None}, format="json").json()
        stores["api"].clear()
    assert never["metadata"]["ttl"] is None and never["metadata"]["expires_at"] is None
    assert default["metadata"]["ttl"] == 3600
    assert null["metadata"]["ttl"] == 3600


def test_create_with_a_taken_id_answers_409_and_changes_nothing(
    api_store: BaseStore, owner_client: APIClient, client_for: Any, other: Any, owner: Any
) -> None:
    api_store.save("taken", msgs(1), owner=str(owner.pk), metadata={"secret": "x"})

    own = owner_client.post(url(), {"conversation_id": "taken", "messages": []}, format="json")
    foreign = client_for(other).post(
        url(), {"conversation_id": "taken", "messages": []}, format="json"
    )

    assert own.status_code == foreign.status_code == 409
    assert (
        own.json() == foreign.json() == {"detail": "A conversation with this id already exists."}
    )
    stored = api_store.load("taken")
    assert stored is not None
    assert stored.metadata.owner == str(owner.pk)
    assert stored.metadata.metadata == {"secret": "x"}
    assert [m.id for m in stored.messages] == ["m0"]


def test_create_may_reuse_the_id_of_an_expired_conversation(
    api_store: BaseStore, client_for: Any, other: Any, owner: Any
) -> None:
    old = now_ms() - 3_600_000
    api_store.put(
        Conversation(
            "expired",
            [],
            ConversationMetadata("expired", old, old, 0, ttl=60, owner=str(owner.pk)),
        )
    )

    response = client_for(other).post(
        url(), {"conversation_id": "expired", "messages": msgs(1)}, format="json"
    )

    assert response.status_code == 201
    assert response.json()["metadata"]["owner"] == str(other.pk)


# -- retrieve -----------------------------------------------------------------------------


def test_retrieve_returns_the_whole_conversation(
    api_store: BaseStore, owner_client: APIClient, owner: Any
) -> None:
    api_store.save("c", msgs(3), owner=str(owner.pk), metadata={"k": [1, 2]})

    response = owner_client.get(url("c"))

    assert response.status_code == 200
    body = response.json()
    assert body["conversation_id"] == "c"
    assert [m["id"] for m in body["messages"]] == ["m0", "m1", "m2"]
    assert body["messages"][0] == {
        "id": "m0",
        "role": "user",
        "content": "message 0",
        "timestamp": body["messages"][0]["timestamp"],
        "metadata": {},
    }
    assert body["metadata"]["message_count"] == 3
    assert body["metadata"]["metadata"] == {"k": [1, 2]}


def test_retrieve_last_n(api_store: BaseStore, owner_client: APIClient, owner: Any) -> None:
    api_store.save("c", msgs(10), owner=str(owner.pk))

    body = owner_client.get(url("c"), {"last": 3}).json()
    assert [m["id"] for m in body["messages"]] == ["m7", "m8", "m9"]
    assert body["metadata"]["message_count"] == 10
    assert owner_client.get(url("c"), {"last": 0}).json()["messages"] == []
    huge = owner_client.get(url("c"), {"last": 10**40}).json()
    assert len(huge["messages"]) == 10


@pytest.mark.parametrize("value", ["abc", "-1", "1.5"])
def test_retrieve_rejects_a_bad_last(
    api_store: BaseStore, owner_client: APIClient, owner: Any, value: str
) -> None:
    api_store.save("c", msgs(1), owner=str(owner.pk))
    response = owner_client.get(url("c"), {"last": value})
    assert response.status_code == 400
    assert list(response.json()) == ["last"]


def test_retrieve_missing_or_expired_is_404(
    api_store: BaseStore, owner_client: APIClient, owner: Any
) -> None:
    old = now_ms() - 3_600_000
    api_store.put(
        Conversation("gone", [], ConversationMetadata("gone", old, old, 0, 60, str(owner.pk)))
    )
    assert owner_client.get(url("gone")).status_code == 404
    assert owner_client.get(url("never-was")).status_code == 404


@pytest.mark.parametrize(
    "conversation_id",
    [
        "with space",
        "per%cent",
        "ünïcødé-会话-🙂",
        "dots.and..dots",
        "q?uery#frag",
        "a+b&c=d",
        "...",
    ],
)
def test_ids_with_special_characters_are_addressable_url_encoded(
    api_store: BaseStore, owner_client: APIClient, conversation_id: str
) -> None:
    created = owner_client.post(
        url(), {"conversation_id": conversation_id, "messages": msgs(1)}, format="json"
    )
    assert created.status_code == 201

    for sub in (None, "messages", "ttl"):
        response = owner_client.get(url(conversation_id, sub))
        assert response.status_code == 200, (sub, response.content)
    assert owner_client.get(url(conversation_id)).json()["conversation_id"] == conversation_id
    assert owner_client.delete(url(conversation_id)).status_code == 204
    assert not api_store.exists(conversation_id)


def test_ids_containing_a_slash_are_not_addressable(
    api_store: BaseStore, owner_client: APIClient, owner: Any
) -> None:
    # Made through the Python API: listed, but %2F is decoded before routing.
    api_store.save("a/b", msgs(1), owner=str(owner.pk))
    listed = owner_client.get(url()).json()["results"]
    assert [item["conversation_id"] for item in listed] == ["a/b"]

    response = owner_client.get(url("a/b"))
    assert response.status_code == 404

    # The API does not create such ids.
    created = owner_client.post(url(), {"conversation_id": "x/y", "messages": []}, format="json")
    assert created.status_code == 400
    assert "conversation_id" in created.json()


# -- update (PUT) -------------------------------------------------------------------------


def test_put_replaces_messages_and_keeps_owner_and_created_at(
    api_store: BaseStore, owner_client: APIClient, client_for: Any, manager: Any, owner: Any
) -> None:
    original = api_store.save("c", msgs(3), owner=str(owner.pk), metadata={"a": 1})

    response = client_for(manager).put(
        url("c"), {"messages": msgs(1, start=10), "metadata": {"b": 2}, "ttl": 0}, format="json"
    )

    assert response.status_code == 200
    body = response.json()
    assert [m["id"] for m in body["messages"]] == ["m10"]
    assert body["metadata"]["owner"] == str(owner.pk)
    assert body["metadata"]["created_at"] == original.metadata.created_at
    assert body["metadata"]["metadata"] == {"a": 1, "b": 2}
    stored = api_store.load("c")
    assert stored is not None and [m.id for m in stored.messages] == ["m10"]


def test_put_creates_a_missing_conversation_owned_by_the_caller(
    api_store: BaseStore, owner_client: APIClient, owner: Any
) -> None:
    response = owner_client.put(url("fresh"), {"messages": msgs(2)}, format="json")

    assert response.status_code == 200
    assert response.json()["metadata"]["owner"] == str(owner.pk)
    stored = api_store.load("fresh")
    assert stored is not None and stored.metadata.owner == str(owner.pk)


def test_put_requires_messages(api_store: BaseStore, owner_client: APIClient) -> None:
    response = owner_client.put(url("fresh"), {"ttl": 5}, format="json")
    assert response.status_code == 400
    assert response.json() == {"messages": ["This field is required."]}
    assert not api_store.exists("fresh")


# -- partial update (PATCH) ---------------------------------------------------------------


def test_patch_merges_metadata_and_keeps_messages(
    api_store: BaseStore, owner_client: APIClient, owner: Any
) -> None:
    api_store.save("c", msgs(3), owner=str(owner.pk), metadata={"a": 1, "b": 1}, ttl=100)

    response = owner_client.patch(url("c"), {"metadata": {"b": 2, "c": 3}}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["metadata"] == {"a": 1, "b": 2, "c": 3}
    assert body["ttl"] == 100
    assert body["message_count"] == 3
    assert "messages" not in body
    stored = api_store.load("c")
    assert stored is not None
    assert [m.id for m in stored.messages] == ["m0", "m1", "m2"]
    assert stored.metadata.metadata == {"a": 1, "b": 2, "c": 3}
    assert stored.metadata.owner == str(owner.pk)


def test_patch_ttl_alone_and_with_metadata(
    api_store: BaseStore, owner_client: APIClient, owner: Any
) -> None:
    api_store.save("c", msgs(1), owner=str(owner.pk))

    body = owner_client.patch(url("c"), {"ttl": 120}, format="json").json()
    assert body["ttl"] == 120 and body["expires_at"] == body["updated_at"] + 120_000
    assert 115 <= api_store.get_ttl("c") <= 120

    body = owner_client.patch(url("c"), {"ttl": 0, "metadata": {"x": True}}, format="json").json()
    assert body["ttl"] is None and body["expires_at"] is None
    assert body["metadata"] == {"x": True}
    assert api_store.get_ttl("c") == -1


def test_patch_without_changes_returns_the_metadata(
    api_store: BaseStore, owner_client: APIClient, owner: Any
) -> None:
    saved = api_store.save("c", msgs(2), owner=str(owner.pk))
    body = owner_client.patch(url("c"), {}, format="json").json()
    assert body == saved.metadata.to_dict()


def test_patch_of_a_conversation_longer_than_one_batch(
    api_store: BaseStore, owner_client: APIClient, owner: Any
) -> None:
    api_store.save("long", msgs(4), owner=str(owner.pk))
    api_store.append("long", msgs(4, start=4))
    with override_settings(CONVSTORE_MAX_BATCH=5):
        response = owner_client.patch(url("long"), {"metadata": {"k": "v"}}, format="json")
    assert response.status_code == 200
    stored = api_store.load("long")
    assert stored is not None and len(stored.messages) == 8


# -- delete -------------------------------------------------------------------------------


def test_delete(api_store: BaseStore, owner_client: APIClient, owner: Any) -> None:
    api_store.save("c", msgs(1), owner=str(owner.pk))

    response = owner_client.delete(url("c"))

    assert response.status_code == 204
    assert response.content == b""
    assert not api_store.exists("c")
    assert owner_client.delete(url("c")).status_code == 404


# -- messages -----------------------------------------------------------------------------


def test_messages_window(api_store: BaseStore, owner_client: APIClient, owner: Any) -> None:
    api_store.save("c", msgs(10), owner=str(owner.pk))

    body = owner_client.get(url("c", "messages"), {"offset": 2, "limit": 3}).json()
    assert body["count"] == 10
    assert [m["id"] for m in body["results"]] == ["m2", "m3", "m4"]
    assert "offset=5" in body["next"]
    assert "offset" not in body["previous"]

    default = owner_client.get(url("c", "messages")).json()
    assert [m["id"] for m in default["results"]] == [f"m{i}" for i in range(10)]
    assert default["next"] is None and default["previous"] is None

    tail = owner_client.get(url("c", "messages"), {"offset": 8, "limit": 5}).json()
    assert [m["id"] for m in tail["results"]] == ["m8", "m9"]
    assert owner_client.get(url("c", "messages"), {"offset": 99}).json()["results"] == []


def test_append_a_list(api_store: BaseStore, owner_client: APIClient, owner: Any) -> None:
    api_store.save("c", msgs(1), owner=str(owner.pk))

    response = owner_client.post(
        url("c", "messages"), {"messages": msgs(2, start=1)}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert body["conversation_id"] == "c"
    assert body["message_count"] == 3
    assert body["owner"] == str(owner.pk)
    stored = api_store.load("c")
    assert stored is not None and [m.id for m in stored.messages] == ["m0", "m1", "m2"]


def test_append_one_message_object(
    api_store: BaseStore, owner_client: APIClient, owner: Any
) -> None:
    api_store.save("c", [], owner=str(owner.pk))

    response = owner_client.post(
        url("c", "messages"),
        {"role": "assistant", "content": "Hi!", "metadata": {"model": "x"}, "timestamp": 5},
        format="json",
    )

    assert response.status_code == 201
    assert response.json()["message_count"] == 1
    stored = api_store.load("c")
    assert stored is not None
    assert stored.messages[0] == Message(
        role="assistant",
        content="Hi!",
        id=stored.messages[0].id,
        timestamp=5,
        metadata={"model": "x"},
    )


def test_append_to_a_missing_conversation_creates_it_for_the_caller(
    api_store: BaseStore, owner_client: APIClient, owner: Any
) -> None:
    response = owner_client.post(url("new", "messages"), {"messages": msgs(2)}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["owner"] == str(owner.pk) and body["message_count"] == 2
    stored = api_store.load("new")
    assert stored is not None and stored.metadata.owner == str(owner.pk)
    assert [m.id for m in stored.messages] == ["m0", "m1"]


def test_append_skips_ids_the_conversation_holds(
    api_store: BaseStore, owner_client: APIClient, owner: Any
) -> None:
    api_store.save("c", msgs(2), owner=str(owner.pk))
    before = api_store.load("c", last=0)
    assert before is not None

    retried = owner_client.post(url("c", "messages"), {"messages": msgs(2)}, format="json")
    more = owner_client.post(url("c", "messages"), {"messages": msgs(3)}, format="json")

    assert retried.status_code == 201
    assert retried.json() == before.metadata.to_dict()  # nothing new, nothing changed
    assert more.json()["message_count"] == 3
    stored = api_store.load("c")
    assert stored is not None and [m.id for m in stored.messages] == ["m0", "m1", "m2"]


def test_an_append_of_no_messages_changes_nothing_or_creates_an_empty_conversation(
    api_store: BaseStore,
    owner_client: APIClient,
    owner: Any,
) -> None:
    saved = api_store.save("c", msgs(2), owner=str(owner.pk))

    same = owner_client.post(url("c", "messages"), {"messages": []}, format="json")
    new = owner_client.post(url("new", "messages"), {"messages": []}, format="json")

    assert same.status_code == 201 and same.json() == saved.metadata.to_dict()
    assert new.status_code == 201
    assert new.json()["message_count"] == 0 and new.json()["owner"] == str(owner.pk)


def test_duplicate_ids_in_one_append_answer_400(
    api_store: BaseStore, owner_client: APIClient, owner: Any
) -> None:
    api_store.save("c", [], owner=str(owner.pk))
    response = owner_client.post(
        url("c", "messages"), {"messages": msgs(1) + msgs(1)}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "messages": {"1": {"id": ["duplicates the id of messages.0 (ids must be distinct)."]}}
    }


# -- ttl ----------------------------------------------------------------------------------


def test_ttl_get_and_put(api_store: BaseStore, owner_client: APIClient, owner: Any) -> None:
    api_store.save("c", msgs(1), owner=str(owner.pk))

    assert owner_client.get(url("c", "ttl")).json() == {"ttl": -1}

    response = owner_client.put(url("c", "ttl"), {"ttl": 300}, format="json")
    assert response.status_code == 200 and response.json() == {"ttl": 300}
    assert 295 <= owner_client.get(url("c", "ttl")).json()["ttl"] <= 300

    assert owner_client.put(url("c", "ttl"), {"ttl": 0}, format="json").json() == {"ttl": -1}
    assert api_store.get_ttl("c") == -1


@pytest.mark.parametrize("body", [{"ttl": -1}, {"ttl": "60"}, {"ttl": None}, {"ttl": 1.5}, {}])
def test_ttl_put_rejects_bad_values(
    api_store: BaseStore, owner_client: APIClient, owner: Any, body: dict[str, Any]
) -> None:
    api_store.save("c", msgs(1), owner=str(owner.pk), ttl=50)
    response = owner_client.put(url("c", "ttl"), body, format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["ttl"]
    stored = api_store.load("c")
    assert stored is not None and stored.metadata.ttl == 50


# -- stats --------------------------------------------------------------------------------


def test_stats_with_view_permission(
    api_store: BaseStore, client_for: Any, make_user: Any, owner: Any
) -> None:
    api_store.save("a", msgs(2), owner=str(owner.pk))
    api_store.save("b", msgs(3))

    response = client_for(make_user("viewer", perms=["view_conversation"])).get(url() + "stats/")

    assert response.status_code == 200
    body = response.json()
    assert body["total_conversations"] == 2
    assert body["total_messages"] == 5
    assert set(body) == {
        "total_conversations",
        "total_messages",
        "expired_conversations",
        "storage_size",
    }


def test_the_default_store_is_served_without_the_setting(
    db: None, owner_client: APIClient
) -> None:
    response = owner_client.post(url(), {"messages": []}, format="json")
    assert response.status_code == 201
    assert stores["default"].exists(response.json()["conversation_id"])
    stores["default"].clear()


@pytest.mark.parametrize("sub", [None, "messages", "ttl"])
def test_head_answers_like_get_without_a_body(
    api_store: BaseStore, owner_client: APIClient, owner: Any, sub: str | None
) -> None:
    api_store.save("c", msgs(2), owner=str(owner.pk))
    response = owner_client.head(url("c", sub))
    assert response.status_code == 200
    assert response.content == b""
    assert owner_client.head(url("missing", sub)).status_code == 404
    stored = api_store.load("c")
    assert stored is not None and len(stored.messages) == 2


def test_message_window_survives_appends_after_the_count_was_read(api_store: BaseStore) -> None:
    # The view reads message_count, then the window; appends in between shift the tail.
    api_store.save("c", msgs(10))
    request = Request(APIRequestFactory().get(url("c", "messages"), {"offset": 2, "limit": 3}))
    paginator = MessagePagination()

    window = paginator.paginate_messages(api_store, request, "c", message_count=8)

    assert [m.id for m in window] == ["m2", "m3", "m4"]
    assert paginator.count == 10


# -- pop and truncate -----------------------------------------------------------------------


def test_pop_removes_and_returns_the_newest_messages(
    api_store: BaseStore, owner_client: APIClient, owner: Any
) -> None:
    api_store.save("c", msgs(5), owner=str(owner.pk))

    one = owner_client.post(url("c", "pop"), {}, format="json")
    two = owner_client.post(url("c", "pop"), {"count": 2}, format="json")

    assert one.status_code == 200
    assert [m["id"] for m in one.json()["messages"]] == ["m4"]
    assert [m["id"] for m in two.json()["messages"]] == ["m2", "m3"]
    assert two.json()["messages"][0] == msgs(5)[2] | {
        "timestamp": two.json()["messages"][0]["timestamp"],
        "metadata": {},
    }
    stored = api_store.load("c")
    assert stored is not None and [m.id for m in stored.messages] == ["m0", "m1"]

    rest = owner_client.post(url("c", "pop"), {"count": 50}, format="json").json()
    assert [m["id"] for m in rest["messages"]] == ["m0", "m1"]
    empty = owner_client.post(url("c", "pop"), {}, format="json")
    assert empty.status_code == 200 and empty.json() == {"messages": []}
    assert api_store.exists("c")


def test_pop_without_a_body_pops_one(
    api_store: BaseStore, owner_client: APIClient, owner: Any
) -> None:
    api_store.save("c", msgs(2), owner=str(owner.pk))
    response = owner_client.post(url("c", "pop"))
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["messages"]] == ["m1"]


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"count": 0}, {"count": ["must be at least 1."]}),
        ({"count": "2"}, {"count": ["must be an integer."]}),
        ({"count": 1001}, {"count": ["at most 1000 messages per call."]}),
        ([1], {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
    ],
)
def test_pop_rejects_bad_counts(
    api_store: BaseStore, owner_client: APIClient, owner: Any, body: Any, errors: Any
) -> None:
    api_store.save("c", msgs(2), owner=str(owner.pk))
    response = owner_client.post(url("c", "pop"), body, format="json")
    assert response.status_code == 400
    assert response.json() == errors
    stored = api_store.load("c")
    assert stored is not None and stored.metadata.message_count == 2


def test_truncate_keeps_the_oldest_messages(
    api_store: BaseStore, owner_client: APIClient, owner: Any
) -> None:
    saved = api_store.save("c", msgs(5), owner=str(owner.pk))

    beyond = owner_client.post(url("c", "truncate"), {"keep": 10**12}, format="json")
    assert beyond.status_code == 200 and beyond.json() == saved.metadata.to_dict()

    response = owner_client.post(url("c", "truncate"), {"keep": 2}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["message_count"] == 2 and body["owner"] == str(owner.pk)
    assert body["updated_at"] >= saved.metadata.updated_at
    stored = api_store.load("c")
    assert stored is not None and [m.id for m in stored.messages] == ["m0", "m1"]

    # The "regenerate" flow: truncate, then append the new answer.
    owner_client.post(url("c", "truncate"), {"keep": 1}, format="json")
    owner_client.post(
        url("c", "messages"), {"role": "assistant", "content": "again"}, format="json"
    )
    stored = api_store.load("c")
    assert stored is not None and [m.content for m in stored.messages] == ["message 0", "again"]

    assert (
        owner_client.post(url("c", "truncate"), {"keep": 0}, format="json").json()["message_count"]
        == 0
    )


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, {"keep": ["This field is required."]}),
        ({"keep": -1}, {"keep": ["must be at least 0."]}),
        ({"keep": None}, {"keep": ["must be an integer."]}),
        ({"keep": 1.0}, {"keep": ["must be an integer."]}),
    ],
)
def test_truncate_rejects_bad_values(
    api_store: BaseStore, owner_client: APIClient, owner: Any, body: Any, errors: Any
) -> None:
    api_store.save("c", msgs(2), owner=str(owner.pk))
    response = owner_client.post(url("c", "truncate"), body, format="json")
    assert response.status_code == 400
    assert response.json() == errors


@pytest.mark.parametrize("sub", ["pop", "truncate"])
def test_pop_and_truncate_of_missing_or_others_conversations_are_404(
    api_store: BaseStore, owner_client: APIClient, sub: str
) -> None:
    api_store.save("theirs", msgs(3), owner="someone-else")
    body = {"keep": 0} if sub == "truncate" else {"count": 3}
    for cid in ("missing", "theirs"):
        response = owner_client.post(url(cid, sub), body, format="json")
        assert response.status_code == 404
        assert response.json() == owner_client.get(url("missing")).json()
    stored = api_store.load("theirs")
    assert stored is not None and stored.metadata.message_count == 3


# -- URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("post", "/api/conversations", {"conversation_id": "c", "messages": []}, 201),
        ("get", "/api/conversations", None, 200),
        ("get", "/api/conversations/c", None, 200),
        ("put", "/api/conversations/c", {"messages": []}, 200),
        ("patch", "/api/conversations/c", {"metadata": {"a": 1}}, 200),
        ("post", "/api/conversations/c/messages", {"role": "user", "content": "x"}, 201),
        ("get", "/api/conversations/c/messages", None, 200),
        ("get", "/api/conversations/c/ttl", None, 200),
        ("post", "/api/conversations/c/pop", {}, 200),
        ("post", "/api/conversations/c/truncate", {"keep": 0}, 200),
        ("get", "/api/conversations/stats", None, 403),
        ("delete", "/api/conversations/c", None, 204),
    ],
)
def test_every_route_answers_without_its_trailing_slash(
    api_store: BaseStore,
    owner_client: APIClient,
    owner: Any,
    method: str,
    path: str,
    body: Any,
    status: int,
) -> None:
    if not path.endswith("/conversations"):
        api_store.save("c", msgs(1), owner=str(owner.pk))
    response = getattr(owner_client, method)(path, body, format="json")
    assert response.status_code == status, response.content
    if status == 201 and method == "post" and "messages" not in path:
        assert response["Location"] == "http://testserver/api/conversations/c/"


@pytest.mark.parametrize(
    ("conversation_id", "error"),
    [
        (".", "'.' cannot be addressed through the REST API."),
        ("..", "'..' cannot be addressed through the REST API."),
        ("stats", "'stats' cannot be addressed through the REST API."),
        ("rtl\u202eevil", "must not contain Unicode format characters"),
        ("zero\u200bwidth", "must not contain Unicode format characters"),
        ("bom\ufeff", "must not contain Unicode format characters"),
    ],
)
def test_writes_that_would_create_unaddressable_ids_answer_400(
    api_store: BaseStore, owner_client: APIClient, conversation_id: str, error: str
) -> None:
    for sub, body in ((None, {"messages": []}), ("messages", {"role": "user", "content": "x"})):
        method = "put" if sub is None else "post"
        response = getattr(owner_client, method)(url(conversation_id, sub), body, format="json")
        if conversation_id == "stats" and sub is None:
            assert response.status_code == 405  # the stats endpoint only answers GET
            continue
        assert response.status_code == 400, response.content
        assert error in response.json()["conversation_id"][0]
    assert api_store.list() == []


def test_conversations_with_format_characters_made_elsewhere_stay_readable(
    api_store: BaseStore, owner_client: APIClient, owner: Any
) -> None:
    # The store accepts them (migrations); the API still reads and deletes them.
    cid = "legacy\u200bid"
    api_store.save(cid, msgs(2), owner=str(owner.pk))
    assert owner_client.get(url(cid)).status_code == 200
    assert owner_client.post(url(cid, "pop"), {}, format="json").status_code == 200
    assert owner_client.delete(url(cid)).status_code == 204
