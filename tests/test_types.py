"""Data types: dict round trips and derived fields."""

from __future__ import annotations

import enum
import json
from datetime import datetime, timezone

import pytest
from django.test import override_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from django_convstore import Conversation, ConversationMetadata, Message, Page, StoreStats
from django_convstore.validation import (
    _is_encodable,
    validate_message,
    validate_metadata,
    validate_timestamp,
)


def test_message_defaults_and_round_trip():
    message = Message(role="user", content="hi")
    assert len(message.id) == 32 and message.timestamp > 0 and message.metadata == {}
    assert Message.from_dict(message.to_dict()) == message


def test_metadata_expiry():
    meta = ConversationMetadata("c", created_at=0, updated_at=1000, ttl=2)
    assert meta.expires_at == 3000
    assert meta.is_expired(2999) is False
    assert meta.is_expired(3000) is True
    assert ConversationMetadata("c", 0, 0).expires_at is None
    assert ConversationMetadata("c", 0, 0).is_expired() is False
    data = meta.to_dict()
    assert data["expires_at"] == 3000
    assert ConversationMetadata.from_dict(data) == meta


def test_conversation_page_stats_round_trip():
    meta = ConversationMetadata("c", 1, 2, 1, 60, "o", {"a": [1]})
    conversation = Conversation("c", [Message("user", "x", "id1", 5, {"k": 1})], meta)
    assert Conversation.from_dict(conversation.to_dict()) == conversation
    page = Page(items=[meta], total=3)
    assert Page.from_dict(page.to_dict()) == page
    stats = StoreStats(1, 2, 0, 10)
    assert StoreStats.from_dict(stats.to_dict()) == stats


def test_copies_are_deep():
    conversation = Conversation(
        "c", [Message("user", "x", metadata={"k": [1]})], ConversationMetadata("c", 1, 1)
    )
    clone = conversation.copy()
    clone.messages[0].metadata["k"].append(2)
    assert conversation.messages[0].metadata == {"k": [1]}


@override_settings(TIME_ZONE="Europe/Paris")
def test_naive_datetime_is_read_in_the_current_time_zone():
    naive = datetime(2024, 1, 1, 12, 0)
    aware = datetime(2024, 1, 1, 11, 0, tzinfo=timezone.utc)
    assert validate_timestamp(naive) == int(aware.timestamp() * 1000)


def test_validated_message_is_a_new_object():
    original = Message(role="user", content="x", metadata={"k": [1]})
    clean = validate_message(original)
    assert clean == original and clean is not original
    clean.metadata["k"].append(2)
    assert original.metadata == {"k": [1]}


def test_tuples_in_metadata_become_lists():
    clean = validate_message({"role": "user", "content": "x", "metadata": {"t": (1, 2)}})
    assert clean.metadata == {"t": [1, 2]}


@pytest.mark.parametrize("bad", [None, 3, object()])
def test_message_must_be_mapping(bad):
    with pytest.raises(ValueError, match="must be a message object"):
        validate_message(bad)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(metadata=st.dictionaries(st.text(), JSON_VALUES, max_size=4))
def test_metadata_fast_path_matches_a_json_round_trip(metadata):
    try:
        expected = json.loads(json.dumps(metadata, allow_nan=False, ensure_ascii=False))
    except ValueError:
        return
    if not _is_encodable(json.dumps(metadata, ensure_ascii=False)):
        with pytest.raises(ValueError, match="lone surrogates"):
            validate_metadata(metadata)
        return
    copied = validate_metadata(metadata)
    assert copied == expected
    assert json.dumps(copied) == json.dumps(expected)


class Colour(enum.IntEnum):
    RED = 1


class Tag(str):
    pass


def test_metadata_with_subclasses_takes_the_json_path():
    assert validate_metadata({"c": Colour.RED, Tag("k"): Tag("v"), "t": (1, 2)}) == {
        "c": 1,
        "k": "v",
        "t": [1, 2],
    }
    assert type(validate_metadata({"c": Colour.RED})["c"]) is int
