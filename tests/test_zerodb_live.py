"""The ZeroDB backend against the real service (opt-in).

Skipped unless ``ZERODB_API_KEY`` and ``ZERODB_PROJECT_ID`` are set. Optional:
``ZERODB_BASE_URL`` (default the documented ``https://api.ainative.studio/api/v1``;
try ``https://api.ainative.studio/v1`` if that root answers 404) and
``ZERODB_TABLE_NAME`` (default ``convstore_live_test``; the tables are created
when missing and left in place). Every test works in a fresh namespace and
clears it afterwards.

    ZERODB_API_KEY=... ZERODB_PROJECT_ID=... \
        .venv/bin/python -m pytest -m live tests/test_zerodb_live.py
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from django_convstore import create_store
from django_convstore.backends.zerodb import ZeroDBStore
from django_convstore.exceptions import BackendAuthError

API_KEY = os.environ.get("ZERODB_API_KEY", "")
PROJECT_ID = os.environ.get("ZERODB_PROJECT_ID", "")

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not (API_KEY and PROJECT_ID), reason="set ZERODB_API_KEY and ZERODB_PROJECT_ID"
    ),
]


def live_config(**options: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "PROJECT_ID": PROJECT_ID,
        "API_KEY": API_KEY,
        "TABLE_NAME": os.environ.get("ZERODB_TABLE_NAME", "convstore_live_test"),
        "TIMEOUT": 30,
        "MAX_RETRIES": 4,
        "RETRY_BACKOFF": 1,
    }
    if os.environ.get("ZERODB_BASE_URL"):
        base["BASE_URL"] = os.environ["ZERODB_BASE_URL"]
    return {
        "BACKEND": "django_convstore.backends.zerodb.ZeroDBStore",
        "NAMESPACE": f"live-{uuid.uuid4().hex[:12]}",
        "OPTIONS": {**base, **options},
    }


@pytest.fixture
def store() -> Iterator[ZeroDBStore]:
    built = create_store(live_config(), alias="live")
    assert isinstance(built, ZeroDBStore)
    yield built
    try:
        built.clear()
    finally:
        built.close()


def msgs(*contents: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": c} for c in contents]


def test_round_trip(store):
    saved = store.save("c1", msgs("hello", "world"), metadata={"k": "v"}, owner="u1")
    assert saved.metadata.message_count == 2
    meta = store.append("c1", msgs("again"))
    assert meta.message_count == 3 and meta.owner == "u1"
    loaded = store.load("c1")
    assert loaded is not None
    assert [m.content for m in loaded.messages] == ["hello", "world", "again"]
    assert loaded.metadata.metadata == {"k": "v"}
    assert [m.content for m in store.load("c1", last=1).messages] == ["again"]
    assert store.exists("c1") and not store.exists("missing")


def test_listing_stats_and_delete(store):
    store.save("a", msgs("1"), owner="x")
    time.sleep(0.01)
    store.append("b", msgs("2", "3"))
    assert store.list() == ["b", "a"]
    page = store.list_conversations(owner="x")
    assert page.total == 1 and page.items[0].conversation_id == "a"
    stats = store.get_stats()
    assert (stats.total_conversations, stats.total_messages) == (2, 3)
    assert [c.conversation_id for c in store.iter_conversations()] in (["a", "b"], ["b", "a"])
    assert store.delete("a") and not store.delete("a")
    assert store.clear() == 1


def test_ttl_and_cleanup(store):
    store.save("t", msgs("x"), ttl=120)
    assert 110 <= store.get_ttl("t") <= 120
    assert store.set_ttl("t", 0) and store.get_ttl("t") == -1
    store.put(
        {
            "conversation_id": "old",
            "messages": msgs("gone"),
            "metadata": {"conversation_id": "old", "created_at": 1, "updated_at": 2, "ttl": 1},
        }
    )
    assert store.load("old") is None
    assert store.load("old", include_expired=True) is not None
    assert store.cleanup() == 1
    assert store.load("old", include_expired=True) is None


def test_wrong_key_is_an_auth_error_without_the_key():
    wrong = "sk_" + uuid.uuid4().hex
    bad = create_store(live_config(API_KEY=wrong, MAX_RETRIES=0), alias="live-bad")
    with pytest.raises(BackendAuthError) as info:
        bad.exists("c")
    assert "API_KEY" in str(info.value)
    assert wrong not in str(info.value) and API_KEY not in str(info.value)
    bad.close()


def test_message_model_owner_idempotency_pop_and_truncate(store):
    full = {
        "id": "t1",
        "role": "assistant",
        "content": [{"type": "text", "text": "calling"}],
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
        "name": "helper",
    }
    tool = {"id": "t2", "role": "tool", "content": "42", "tool_call_id": "c1"}
    store.save("m", [full], owner="u1")
    assert store.append("m", [tool, {"id": "t1", "role": "user", "content": "dup"}], owner="u1")
    loaded = store.load("m", owner="u1")
    assert [m.to_dict() for m in loaded.messages] == [
        {**full, "timestamp": loaded.messages[0].timestamp, "metadata": {}},
        {**tool, "timestamp": loaded.messages[1].timestamp, "metadata": {}},
    ]
    assert store.load("m", owner="u2") is None
    assert [m.id for m in store.pop("m", owner="u1")] == ["t2"]
    assert store.truncate("m", 0, owner="u1").message_count == 0
    assert store.get_stats().total_messages == 0
