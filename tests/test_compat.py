"""Bringing conversations over from the TypeScript original's Redis store."""

from __future__ import annotations

import json

import pytest

from django_convstore import InvalidInputError, create_store
from django_convstore.clock import now_ms
from django_convstore.compat import conversation_from_original, import_original_redis


def original_document(cid: str, **meta_extra):
    """A conversation as the original's RedisStore stores it (JSON.stringify of it)."""
    return {
        "conversationId": cid,
        "messages": [
            {"id": "1", "role": "user", "content": "Hello", "timestamp": 1_700_000_000_000},
            {
                "id": "2",
                "role": "assistant",
                "content": "Hi!",
                "timestamp": "2023-11-14T22:13:21.000Z",
            },
        ],
        "metadata": {
            "conversationId": cid,
            "createdAt": 1_699_999_000_000,
            "updatedAt": 1_700_000_001_000,
            "messageCount": 2,
            "metadata": {"userId": "u-7", "source": "web"},
            **meta_extra,
        },
    }


def test_conversation_from_original_keeps_everything():
    conversation = conversation_from_original(
        json.dumps(original_document("c1", ttl=3600)), owner_key="userId"
    )
    assert conversation.conversation_id == "c1"
    assert [m.to_dict() for m in conversation.messages] == [
        {
            "id": "1",
            "role": "user",
            "content": "Hello",
            "timestamp": 1_700_000_000_000,
            "metadata": {},
        },
        {
            "id": "2",
            "role": "assistant",
            "content": "Hi!",
            "timestamp": 1_700_000_001_000,
            "metadata": {},
        },
    ]
    meta = conversation.metadata
    assert (meta.created_at, meta.updated_at, meta.ttl) == (
        1_699_999_000_000,
        1_700_000_001_000,
        3600,
    )
    assert meta.owner == "u-7"
    assert meta.metadata == {"userId": "u-7", "source": "web"}


@pytest.mark.parametrize(
    "document",
    [
        "not json",
        "[]",
        {"conversationId": "", "messages": []},
        {"conversationId": "c", "messages": [{"role": "wizard", "content": "x"}]},
    ],
)
def test_invalid_original_documents_are_rejected(document):
    with pytest.raises(InvalidInputError):
        conversation_from_original(document if isinstance(document, str) else json.dumps(document))


def test_import_original_redis_copies_into_any_store(redis_server, redis_client):
    prefix = "legacy-test:conversation"
    for cid in ("a", "b", "c"):
        redis_client.set(f"{prefix}:{cid}", json.dumps(original_document(cid)))
    redis_client.set(f"{prefix}:broken", json.dumps({"conversationId": "broken", "messages": "x"}))
    redis_client.hset(f"{prefix}:not-a-string", "k", "v")
    target = create_store({"type": "memory"})
    report = import_original_redis(redis_server.url, target, key_prefix=prefix, batch_size=2)
    assert report.imported == 3
    assert report.skipped == 1
    assert list(report.failed) == [f"{prefix}:broken"]
    assert sorted(target.list()) == ["a", "b", "c"]
    assert target.load("b").metadata.created_at == 1_699_999_000_000
    assert target.exists("broken") is False
    redis_client.delete(*redis_client.scan_iter(match=f"{prefix}:*"))


def tool_calling_document(cid: str):
    """A conversation as the published @ainative/ai-kit-core 0.2.0 writes it, every shape used."""
    return {
        "conversationId": cid,
        "messages": [
            {
                "id": "m1",
                "role": "user",
                "content": [
                    {"type": "text", "data": "What is on this picture?"},
                    {"type": "image", "data": "aGVsbG8=", "mimeType": "image/png"},
                ],
                "timestamp": 1_700_000_000_000,
                "sessionId": "s-1",
                "metadata": {"tags": ["vision"]},
            },
            {
                "id": "m2",
                "role": "assistant",
                "content": "",
                "timestamp": 1_700_000_000_100,
                "toolCalls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "describe", "arguments": '{"detail": "high"}'},
                    }
                ],
            },
            {
                "id": "m3",
                "role": "tool",
                "content": '{"description": "a cat"}',
                "timestamp": 1_700_000_000_200,
                "toolCallId": "call_1",
                "name": "describe",
            },
            {
                "id": "m4",
                "role": "function",
                "content": {"type": "text", "data": "12:00"},
                "timestamp": 1_700_000_000_300,
                "name": "now",
                "functionCall": {"name": "now", "arguments": "{}"},
                "metadata": {"sessionId": "already here"},
                "sessionId": "s-1",
            },
        ],
        "metadata": {
            "conversationId": cid,
            "createdAt": 1_700_000_000_000,
            "updatedAt": 1_700_000_000_300,
            "messageCount": 4,
            "metadata": {"userId": "", "title": "Vision"},
        },
    }


def test_original_message_shapes_import_field_by_field():
    conversation = conversation_from_original(tool_calling_document("t"), owner_key="userId")
    first, second, third, fourth = (m.to_dict() for m in conversation.messages)
    assert first == {
        "id": "m1",
        "role": "user",
        "content": [
            {"type": "text", "data": "What is on this picture?"},
            {"type": "image", "data": "aGVsbG8=", "mimeType": "image/png"},
        ],
        "timestamp": 1_700_000_000_000,
        "metadata": {"tags": ["vision"], "sessionId": "s-1"},
    }
    assert second["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "describe", "arguments": '{"detail": "high"}'},
        }
    ]
    assert (third["tool_call_id"], third["name"]) == ("call_1", "describe")
    assert fourth["content"] == [{"type": "text", "data": "12:00"}]
    assert fourth["role"] == "function" and fourth["name"] == "now"
    assert fourth["metadata"] == {
        "sessionId": "already here",
        "original:sessionId": "s-1",
        "functionCall": {"name": "now", "arguments": "{}"},
    }
    assert conversation.metadata.owner is None  # an empty owner value means no owner


def test_original_form_stores_accept_the_original_message_shape():
    store = create_store({"type": "memory"})
    store.save("c", tool_calling_document("c")["messages"])
    loaded = store.load("c")
    assert loaded.messages[1].tool_calls[0]["id"] == "call_1"
    assert loaded.messages[2].tool_call_id == "call_1"
    assert loaded.messages[0].metadata["sessionId"] == "s-1"
    django_form = create_store({"BACKEND": "django_convstore.backends.memory.MemoryStore"})
    with pytest.raises(InvalidInputError, match="unknown fields: sessionId"):
        django_form.save("c", tool_calling_document("c")["messages"][:1])


def test_importer_keeps_ttls_set_on_the_key_only(redis_server, redis_client):
    prefix = "ttl-test:conversation"
    document = original_document("short")
    document["metadata"]["updatedAt"] = now_ms()
    redis_client.set(f"{prefix}:short", json.dumps(document), px=90_000)
    redis_client.set(f"{prefix}:forever", json.dumps(original_document("forever")))
    target = create_store({"type": "memory"})
    report = import_original_redis(redis_server.url, target, key_prefix=prefix)
    assert report.imported == 2 and not report.failed
    assert 85 <= target.get_ttl("short") <= 91
    assert target.get_ttl("forever") == -1
    redis_client.delete(*redis_client.scan_iter(match=f"{prefix}:*"))


def test_importer_never_reports_this_projects_own_keys(
    redis_server, redis_client, make_redis_store
):
    """Run against the same Redis and prefix as a RedisStore: re-runs report no failures."""
    prefix = "aikit:conversation"
    target = make_redis_store(NAMESPACE="aikit", OPTIONS={"KEY_PREFIX": prefix})
    target.save("ours", [{"role": "user", "content": "x"}, {"role": "user", "content": "y"}])
    target.append("ours", [{"role": "assistant", "content": "z"}])
    for cid in ("o1", "o2"):
        redis_client.set(f"{prefix}:{cid}", json.dumps(tool_calling_document(cid)))
    for _ in range(3):
        report = import_original_redis(redis_server.url, target, key_prefix=prefix)
        assert report.failed == {}
        assert report.imported == 2
    assert sorted(target.list()) == ["o1", "o2", "ours"]
    assert target.load("o1").messages[1].tool_calls[0]["function"]["name"] == "describe"
    redis_client.delete(f"{prefix}:o1", f"{prefix}:o2")
