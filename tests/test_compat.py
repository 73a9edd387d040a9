"""Bringing conversations over from the TypeScript original's Redis store."""

from __future__ import annotations

import json

import pytest

from django_convstore import InvalidInputError, create_store
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
