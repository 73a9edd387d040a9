"""The OpenAI Agents SDK adapter: exact items, the same behaviour as the SDK's own
``SQLiteSession`` (hypothesis-generated operation sequences, on every backend leg), a real
``Runner.run`` with an in-process model, and the result in the admin and the REST API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from agents import Agent, RunConfig, Runner, SQLiteSession, function_tool
from agents.items import ModelResponse
from agents.memory import Session
from agents.models.interface import Model
from agents.usage import Usage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseReasoningItem,
)
from openai.types.responses.response_reasoning_item import Summary

from django_convstore import codec, validation
from django_convstore.exceptions import InvalidInputError, OwnerMismatchError
from django_convstore.integrations.openai_agents import (
    ConvStoreSession,
    from_store,
    to_store,
)
from django_convstore.types import Message

from .conftest import TOOL_CALL_SHOWN, admin_page, run
from .strategies import OA_ITEM

SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def session(store: Any, **kwargs: Any) -> ConvStoreSession:
    return ConvStoreSession(f"oa-{uuid.uuid4().hex}", store=store, **kwargs)


# -- the mapping ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(item=OA_ITEM)
def test_every_item_round_trips_exactly(item):
    stored = to_store(item)
    clean = validation.validate_messages([stored])
    reread = codec.decode_message(codec.encode_message(clean[0]))
    assert from_store(reread) == [item]
    assert list(from_store(reread)[0]) == list(item)  # the same keys, in the same order


def test_fields_carry_what_the_admin_and_the_api_show():
    call = to_store(
        {
            "arguments": '{"city": "Paris"}',
            "call_id": "call_1",
            "name": "get_weather",
            "type": "function_call",
            "id": "fc_1",
            "status": "completed",
        }
    )
    assert call.role == "assistant"
    assert call.tool_calls == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ]
    assert call.metadata["openai_agents"]["item"] == {
        "type": "function_call",
        "id": "fc_1",
        "status": "completed",
    }
    output = to_store({"call_id": "call_1", "output": "sunny", "type": "function_call_output"})
    assert (output.role, output.tool_call_id, output.content) == ("tool", "call_1", "sunny")
    parts = [{"type": "output_text", "text": "Hi", "annotations": []}]
    answer = to_store({"role": "assistant", "content": parts, "type": "message", "id": "msg_1"})
    assert (answer.role, answer.content) == ("assistant", parts)
    assert answer.id != "msg_1"  # item ids are not identities (see the module)
    summary = [{"type": "summary_text", "text": "Thinking"}]
    reasoning = to_store({"type": "reasoning", "id": "rs_1", "summary": summary})
    assert (reasoning.role, reasoning.content) == ("assistant", summary)


def test_items_that_are_not_dicts_are_refused():
    with pytest.raises(InvalidInputError):
        to_store("hello")


def test_messages_other_clients_wrote_are_read_as_items():
    written = Message(
        role="assistant",
        content="",
        tool_calls=[
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    )
    assert from_store(written) == [
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
    ]
    assert from_store(Message(role="user", content="hi")) == [{"role": "user", "content": "hi"}]
    assert from_store(Message(role="tool", content="42", tool_call_id="c1")) == [
        {"type": "function_call_output", "call_id": "c1", "output": "42"}
    ]


def test_it_is_a_session():
    assert isinstance(ConvStoreSession("s"), Session)


# -- against the SDK's SQLiteSession, on every backend --------------------------------------

OPERATIONS = st.one_of(
    st.tuples(st.just("add_items"), st.lists(OA_ITEM, max_size=4)),
    st.tuples(st.just("get_items"), st.none() | st.integers(-2, 6)),
    st.tuples(st.just("pop_item"), st.none()),
    st.tuples(st.just("clear_session"), st.none()),
)


def apply(target: Any, name: str, argument: Any) -> Any:
    if name == "add_items":
        return run(lambda: target.add_items(argument))
    if name == "get_items":
        return run(lambda: target.get_items(argument))
    return run(getattr(target, name))


@SETTINGS
@given(operations=st.lists(OPERATIONS, max_size=10), default_limit=st.none() | st.integers(1, 3))
def test_same_results_as_the_sdks_sqlite_session(leg_store, operations, default_limit):
    limits = {"session_settings": {"limit": default_limit}}
    ours = session(leg_store, **limits)
    reference = SQLiteSession(ours.session_id, **limits)
    try:
        for name, argument in operations:
            assert apply(ours, name, argument) == apply(reference, name, argument), name
        assert run(lambda: ours.get_items(-1)) == run(lambda: reference.get_items(-1))
    finally:
        reference.close()


def test_a_limit_beyond_the_history_after_a_pop(leg_store):
    """Found by the test above: the newest 3 of 2 items are both (not just the last)."""
    chat = session(leg_store)
    run(lambda: chat.add_items([{"role": "user", "content": str(i)} for i in range(3)]))
    run(chat.pop_item)
    assert [item["content"] for item in run(lambda: chat.get_items(3))] == ["0", "1"]


def test_the_same_item_twice_is_stored_twice(memory_store):
    chat = session(memory_store)
    item = {"role": "assistant", "content": "Hi", "id": "__fake_id__", "type": "message"}
    run(lambda: chat.add_items([item, item]))
    run(lambda: chat.add_items([item]))
    assert run(chat.get_items) == [item, item, item]


# -- one store call per operation, owner, ttl, signals -----------------------------------------


def test_each_operation_is_one_store_call(memory_store, signal_log):
    chat = session(memory_store, owner="ann")
    run(
        lambda: chat.add_items(
            [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
        )
    )
    run(lambda: chat.add_items([]))
    assert run(chat.pop_item) == {"role": "user", "content": "b"}
    run(chat.clear_session)
    run(chat.clear_session)
    assert run(chat.pop_item) is None
    assert signal_log.names() == ["messages_appended", "messages_removed", "conversation_deleted"]
    appended, removed, deleted = signal_log.events
    assert appended["conversation_id"] == chat.session_id
    assert appended["owner"] == removed["owner"] == deleted["owner"] == "ann"
    assert len(appended["messages"]) == 2
    assert from_store(removed["messages"][0]) == [{"role": "user", "content": "b"}]
    assert removed["count"] == 1


def test_acting_for_an_owner(memory_store):
    sid = f"oa-{uuid.uuid4().hex}"
    alice = ConvStoreSession(sid, store=memory_store, owner="alice")
    bob = ConvStoreSession(sid, store=memory_store, owner="bob")
    run(lambda: alice.add_items([{"role": "user", "content": "mine"}]))
    assert run(bob.get_items) == []
    assert run(bob.pop_item) is None
    with pytest.raises(OwnerMismatchError):
        run(lambda: bob.add_items([{"role": "user", "content": "theirs"}]))
    run(bob.clear_session)
    assert run(alice.get_items) == [{"role": "user", "content": "mine"}]


def test_ttl_is_given_to_the_conversation(memory_store):
    short = session(memory_store, ttl=30)
    run(lambda: short.add_items([{"role": "user", "content": "x"}]))
    run(lambda: short.add_items([{"role": "user", "content": "y"}]))
    assert memory_store.load(short.session_id).metadata.ttl == 30


def test_a_failing_receiver_never_breaks_the_session(memory_store, failing_receiver):
    chat = session(memory_store)
    run(lambda: chat.add_items([{"role": "user", "content": "kept"}]))
    assert run(chat.get_items) == [{"role": "user", "content": "kept"}]
    assert failing_receiver.calls == 1


# -- end to end: Runner.run with an in-process model ---------------------------------------------


def _turns() -> list[list[Any]]:
    return [
        [
            ResponseReasoningItem(
                id="rs_1",
                type="reasoning",
                summary=[Summary(text="The user wants the weather.", type="summary_text")],
            ),
            ResponseFunctionToolCall(
                id="fc_1",
                call_id="call_1",
                name="get_weather",
                arguments='{"city": "Paris"}',
                type="function_call",
                status="completed",
            ),
        ],
        [
            ResponseOutputMessage(
                id="msg_1",
                role="assistant",
                status="completed",
                type="message",
                content=[
                    ResponseOutputText(
                        text="It is sunny in Paris.", type="output_text", annotations=[]
                    )
                ],
            )
        ],
    ]


class ScriptedModel(Model):
    """Answers with a canned tool call, then a canned message (streamed or not)."""

    def __init__(self) -> None:
        self.turns = _turns()
        self.inputs: list[Any] = []

    def _next(self, input: Any) -> list[Any]:
        self.inputs.append(input)
        return self.turns.pop(0)

    async def get_response(self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any):
        return ModelResponse(output=self._next(input), usage=Usage(), response_id=None)

    async def stream_response(
        self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any
    ) -> AsyncIterator[Any]:
        response = Response(
            id="resp_1",
            created_at=0,
            model="scripted",
            object="response",
            output=self._next(input),
            parallel_tool_calls=False,
            tool_choice="auto",
            tools=[],
        )
        yield ResponseCompletedEvent(
            type="response.completed", response=response, sequence_number=0
        )


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}, 21 °C"


def converse(chat: Any, *, streamed: bool = False) -> Any:
    model = ScriptedModel()
    agent = Agent(name="Weather", instructions="Be brief.", model=model, tools=[get_weather])
    config = RunConfig(tracing_disabled=True)

    async def go() -> Any:
        if not streamed:
            return await Runner.run(
                agent, "What is the weather in Paris?", session=chat, run_config=config
            )
        result = Runner.run_streamed(
            agent, "What is the weather in Paris?", session=chat, run_config=config
        )
        async for _event in result.stream_events():
            pass
        return result

    result = run(go)
    assert result.final_output == "It is sunny in Paris."
    return model


@pytest.mark.parametrize("streamed", [False, True])
def test_runner_with_a_session_is_the_same_as_with_sqlite(memory_store, streamed):
    ours = session(memory_store)
    reference = SQLiteSession(ours.session_id)
    converse(ours, streamed=streamed)
    converse(reference, streamed=streamed)
    items = run(ours.get_items)
    assert items == run(reference.get_items)
    assert [item.get("type") for item in items] == [
        None,
        "reasoning",
        "function_call",
        "function_call_output",
        "message",
    ]
    # The second run sees the first run's history, read back through the session.
    model = converse(ours, streamed=streamed)
    assert model.inputs[0][: len(items)] == items
    reference.close()


@pytest.mark.django_db
def test_a_run_end_to_end_in_the_admin_and_the_api(settings, client, django_user_model):
    settings.CONVSTORE = {
        "default": {
            "BACKEND": "django_convstore.backends.memory.MemoryStore",
            "LOCATION": uuid.uuid4().hex,
        }
    }
    alice = django_user_model.objects.create_user("alice", password="pw")
    converse(ConvStoreSession("weather-run", owner=str(alice.pk)))

    client.force_login(alice)
    body = client.get("/api/conversations/weather-run/").json()
    messages = body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "assistant", "tool", "assistant"]
    assert messages[0]["content"] == "What is the weather in Paris?"
    assert messages[1]["content"] == [
        {"type": "summary_text", "text": "The user wants the weather."}
    ]
    assert messages[2]["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ]
    assert messages[3]["tool_call_id"] == "call_1"
    assert messages[3]["content"] == "sunny in Paris, 21 °C"
    assert messages[4]["content"][0]["text"] == "It is sunny in Paris."

    django_user_model.objects.create_superuser("root", password="pw")
    client.force_login(django_user_model.objects.get(username="root"))
    page = admin_page(client, "weather-run")
    for text in (
        "What is the weather in Paris?",
        "sunny in Paris, 21 °C",
        "It is sunny in Paris.",
    ):
        assert text in page
    assert TOOL_CALL_SHOWN.search(page)
