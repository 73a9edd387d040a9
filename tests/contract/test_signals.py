"""Contract: every backend sends the signals of django_convstore.signals after its writes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from django_convstore import signals

from .helpers import conversation, msg

ALL = {
    "conversation_saved": signals.conversation_saved,
    "messages_appended": signals.messages_appended,
    "messages_removed": signals.messages_removed,
    "conversation_deleted": signals.conversation_deleted,
}


@contextmanager
def recording() -> Iterator[list[tuple[str, dict]]]:
    events: list[tuple[str, dict]] = []
    receivers = {}
    for name, signal in ALL.items():

        def receiver(sender, _name=name, **kwargs):
            events.append((_name, {"sender": sender, **kwargs}))

        receivers[name] = receiver
        signal.connect(receiver, weak=False)
    try:
        yield events
    finally:
        for name, signal in ALL.items():
            signal.disconnect(receivers[name])


def test_each_write_sends_its_signal(store):
    with recording() as events:
        store.save("c", [msg("a", id="1")], owner="alice")
        store.append("c", [msg("b", id="2")])
        store.pop("c")
        store.truncate("c", 0)
        store.create("d", [msg("x", id="x")])
        store.create("d", [msg("y")])  # taken: nothing written, no signal
        store.put(conversation("p", ["y"]))
        store.delete("c", owner="alice")
        store.delete("missing")
        store.pop("missing")
        store.truncate("d", 5)  # nothing dropped
    names = [name for name, _ in events]
    assert names == [
        "conversation_saved",
        "messages_appended",
        "messages_removed",
        "messages_removed",
        "conversation_saved",
        "conversation_saved",
        "conversation_deleted",
    ]
    saved, appended, popped, truncated, created, put, deleted = (kw for _, kw in events)
    for kwargs in (saved, appended, popped, truncated, created, put, deleted):
        assert kwargs["sender"] is store.__class__
        assert kwargs["store"] is getattr(store, "wrapped", store)
        assert kwargs["alias"] == store.alias
    assert saved["conversation_id"] == "c" and saved["owner"] == "alice"
    assert saved["operation"] == "save" and [m.id for m in saved["messages"]] == ["1"]
    assert saved["metadata"].message_count == 1
    assert appended["owner"] == "alice" and [m.id for m in appended["messages"]] == ["2"]
    assert appended["metadata"].message_count == 2
    assert [m.id for m in popped["messages"]] == ["2"] and popped["count"] == 1
    assert truncated["count"] == 1 and truncated["messages"] is None
    assert truncated["metadata"].message_count == 0 and truncated["owner"] == "alice"
    assert created["operation"] == "create" and created["conversation_id"] == "d"
    assert put["operation"] == "put" and put["conversation_id"] == "p"
    assert deleted["conversation_id"] == "c" and deleted["owner"] == "alice"


def test_a_failing_receiver_is_logged_and_never_undoes_the_write(store, caplog):
    def broken(sender, **kwargs):
        raise RuntimeError("receiver bug")

    calls = []

    def healthy(sender, **kwargs):
        calls.append(kwargs["conversation_id"])

    signals.messages_appended.connect(broken, weak=False)
    signals.messages_appended.connect(healthy, weak=False)
    try:
        with caplog.at_level(logging.ERROR, logger="django_convstore.signals"):
            meta = store.append("c", [msg("kept")])
    finally:
        signals.messages_appended.disconnect(broken)
        signals.messages_appended.disconnect(healthy)
    assert meta.message_count == 1
    assert [m.content for m in store.load("c").messages] == ["kept"]
    assert calls == ["c"]
    assert "receiver bug" in caplog.text


def test_async_twins_send_the_same_signals(store):
    async def scenario():
        await store.asave("c", [msg("a", id="1")])
        await store.aappend("c", [msg("b", id="2")])
        await store.apop("c")
        await store.atruncate("c", 0)
        await store.acreate("d", [])
        await store.aput(conversation("p", ["y"]))
        await store.adelete("c")

    with recording() as events:
        asyncio.run(scenario())
    assert [name for name, _ in events] == [
        "conversation_saved",
        "messages_appended",
        "messages_removed",
        "messages_removed",
        "conversation_saved",
        "conversation_saved",
        "conversation_deleted",
    ]


@pytest.mark.parametrize("name", list(ALL))
def test_no_receivers_costs_nothing_observable(store, name):
    assert not ALL[name].has_listeners(store.__class__)
    store.save("c", [msg("a")])
    store.append("c", [msg("b")])
    assert store.load("c").metadata.message_count == 2
