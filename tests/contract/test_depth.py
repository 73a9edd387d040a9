"""Contract: CONVSTORE_MAX_DEPTH bounds every JSON value; deeper input writes nothing."""

from __future__ import annotations

import pytest
from django.test import override_settings

from django_convstore.exceptions import InvalidInputError

from .helpers import msg


def nested(levels: int) -> dict:
    """A dict nesting ``levels`` containers deep ({} is 1 level)."""
    value: dict = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def nested_list(levels: int) -> list:
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.fixture
def seeded(store):
    store.save("keep", [msg("original", id="o")], metadata={"k": 1})
    return store, store.load("keep").to_dict()


def assert_unchanged(store, snapshot):
    assert store.load("keep").to_dict() == snapshot
    assert store.list() == ["keep"]
    assert store.list_conversations().total == 1


CALLS = {
    "message metadata": lambda s, v: s.append("keep", [msg("x", metadata={"v": v})]),
    "conversation metadata": lambda s, v: s.save("new", [msg("x")], metadata={"v": v}),
    "content part": lambda s, v: s.save(
        "new", [{"role": "user", "content": [{"type": "t", "v": v}]}]
    ),
    "tool calls": lambda s, v: s.append(
        "keep", [{"role": "assistant", "content": "", "tool_calls": [{"v": v}]}]
    ),
    "update_metadata": lambda s, v: s.update_metadata("keep", {"deep": v}),
    "create": lambda s, v: s.create("new", [msg("x")], metadata={"deep": v}),
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
@pytest.mark.parametrize("depth", [1000, 100_000])
def test_very_deep_input_is_invalid_input_never_recursion_error(seeded, call, depth):
    store, snapshot = seeded
    with pytest.raises(InvalidInputError, match="nests deeper than 64 levels"):
        call(store, nested(depth))
    with pytest.raises(InvalidInputError, match="nests deeper than 64 levels"):
        call(store, nested_list(depth))
    assert_unchanged(store, snapshot)


def test_the_limit_itself_is_accepted_and_one_more_is_not(seeded):
    store, _ = seeded
    store.append("keep", [msg("ok", metadata=nested(64), id="deep")])
    assert store.load("keep").messages[-1].metadata == nested(64)
    with pytest.raises(InvalidInputError) as info:
        store.append("keep", [msg("no", metadata=nested(65))])
    assert info.value.field.startswith("messages.0.metadata")
    assert store.load("keep").metadata.message_count == 2


def test_the_setting_changes_the_limit(seeded):
    store, _ = seeded
    with override_settings(CONVSTORE_MAX_DEPTH=3):
        store.append("keep", [msg("ok", metadata=nested(3), id="three")])
        with pytest.raises(InvalidInputError, match="deeper than 3 levels"):
            store.append("keep", [msg("no", metadata=nested(4))])
    store.append("keep", [msg("back to 64", metadata=nested(10), id="ten")])
    assert store.load("keep").metadata.message_count == 3
