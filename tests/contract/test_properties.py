"""Contract properties (hypothesis): round trips, append ≡ save, pop/truncate ≡ list slicing.

Messages carry every field and content shape (strings and lists of parts,
tool calls, names), on every backend.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROLES = st.sampled_from(["user", "assistant", "system", "tool", "function", "developer"])
TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | TEXT
    | st.floats(allow_nan=False, allow_infinity=False)
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=6,
)
NAME = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=20)
PART = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image_url", "input_audio", "file"])},
    optional={"text": TEXT, "image_url": st.dictionaries(TEXT, JSON, max_size=2), "x": JSON},
)
TOOL_CALL = st.fixed_dictionaries(
    {"id": NAME, "type": st.just("function")},
    optional={"function": st.fixed_dictionaries({"name": NAME, "arguments": TEXT}), "x": JSON},
)
MESSAGE = st.fixed_dictionaries(
    {
        "role": ROLES,
        "content": TEXT | st.lists(PART, max_size=3),
        "timestamp": st.integers(0, 2**45),
        "metadata": st.dictionaries(TEXT, JSON, max_size=3),
    },
    optional={
        "name": NAME,
        "tool_calls": st.lists(TOOL_CALL, max_size=2),
        "tool_call_id": NAME,
    },
)
counter = itertools.count()

SETTINGS = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(messages=st.lists(MESSAGE, max_size=8))
def test_any_valid_messages_round_trip(store, messages):
    cid = f"prop-{next(counter)}"
    for i, message in enumerate(messages):
        message["id"] = f"{cid}-{i}"
    store.save(cid, messages)
    loaded = store.load(cid)
    assert [m.to_dict() for m in loaded.messages] == messages


@SETTINGS
@given(messages=st.lists(MESSAGE, min_size=1, max_size=10), data=st.data())
def test_appending_in_chunks_equals_saving_at_once(store, messages, data):
    cid = f"chunks-{next(counter)}"
    for i, message in enumerate(messages):
        message["id"] = f"{cid}-{i}"
    cuts = sorted(data.draw(st.sets(st.integers(1, len(messages)), max_size=3)))
    bounds = [0, *cuts, len(messages)]
    for start, end in itertools.pairwise(bounds):
        if start < end:
            store.append(cid, messages[start:end])
    loaded = store.load(cid)
    assert [m.to_dict() for m in loaded.messages] == messages
    assert loaded.metadata.message_count == len(messages)
    tail = data.draw(st.integers(0, len(messages)))
    assert [m.to_dict() for m in store.load(cid, last=tail).messages] == messages[
        len(messages) - tail :
    ]


@pytest.mark.slow
@SETTINGS
@given(messages=st.lists(MESSAGE, min_size=1, max_size=10), data=st.data())
def test_pop_and_truncate_behave_like_list_slicing(store, messages, data):
    cid = f"cut-{next(counter)}"
    for i, message in enumerate(messages):
        message["id"] = f"{cid}-{i}"
    store.save(cid, messages)
    expected = list(messages)
    for _ in range(3):
        if data.draw(st.booleans()):
            count = data.draw(st.integers(1, len(messages) + 1))
            popped = store.pop(cid, count)
            cut = max(0, len(expected) - count)
            assert [m.to_dict() for m in popped] == expected[cut:]
            expected = expected[:cut]
        else:
            keep = data.draw(st.integers(0, len(messages) + 1))
            meta = store.truncate(cid, keep)
            expected = expected[:keep]
            assert meta.message_count == len(expected)
        loaded = store.load(cid)
        assert [m.to_dict() for m in loaded.messages] == expected
        assert loaded.metadata.message_count == len(expected)
    store.append(cid, messages)
    assert [m.to_dict() for m in store.load(cid).messages] == expected + [
        m for m in messages if m not in expected
    ]
    (streamed,) = [c for c in store.iter_conversations() if c.conversation_id == cid]
    assert streamed.to_dict() == store.load(cid).to_dict()
