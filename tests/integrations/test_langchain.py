"""The LangChain adapter: exact round trips, the same behaviour as LangChain's own history
(hypothesis-generated operation sequences, on every backend leg), a real chain with a fake
model, and the result as the admin and the REST API show it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.chat_history import InMemoryChatMessageHistory
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.history import RunnableWithMessageHistory

from django_convstore import codec, validation
from django_convstore.exceptions import InvalidInputError, OwnerMismatchError
from django_convstore.integrations.langchain import (
    ConvStoreChatMessageHistory,
    from_store,
    to_store,
)
from django_convstore.types import Message

from .conftest import TOOL_CALL_SHOWN, admin_page, run
from .strategies import TEXT, langchain_message

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def history(store: Any, **kwargs: Any) -> ConvStoreChatMessageHistory:
    return ConvStoreChatMessageHistory(f"lc-{uuid.uuid4().hex}", store=store, **kwargs)


# -- the mapping ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(message=langchain_message())
def test_every_message_type_round_trips_exactly(message):
    stored = to_store(message)
    clean = validation.validate_messages([stored])  # what the store does before writing
    reread = codec.decode_message(codec.encode_message(clean[0]))
    assert from_store(reread) == message
    assert type(from_store(reread)) is type(message)


def test_fields_carry_what_the_admin_and_the_api_show():
    call = {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}
    ai = AIMessage(
        "",
        id="run-1",
        tool_calls=[call],
        usage_metadata={"input_tokens": 3, "output_tokens": 5, "total_tokens": 8},
        response_metadata={"model_name": "fake"},
    )
    stored = to_store(ai)
    assert stored.role == "assistant"
    assert stored.id == "run-1"
    assert stored.tool_calls == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ]
    assert stored.metadata == {
        "langchain": {
            "type": "ai",
            "response_metadata": {"model_name": "fake"},
            "usage_metadata": {"input_tokens": 3, "output_tokens": 5, "total_tokens": 8},
        }
    }
    tool = to_store(ToolMessage("21 °C", tool_call_id="call_1", name="get_weather", id="t1"))
    assert (tool.role, tool.content, tool.tool_call_id, tool.name) == (
        "tool",
        "21 °C",
        "call_1",
        "get_weather",
    )
    assert tool.metadata == {"langchain": {"type": "tool"}}
    developer = SystemMessage("Be brief.", additional_kwargs={"__openai_role__": "developer"})
    assert to_store(developer).role == "developer"
    blocks = [{"type": "text", "text": "Look:"}, {"type": "image_url", "image_url": {"url": "u"}}]
    assert to_store(HumanMessage(blocks, id="h1")).content == blocks


def test_values_our_fields_cannot_hold_travel_in_the_metadata():
    message = HumanMessage(["bare string", {"type": "text", "text": "part"}], name="")
    stored = to_store(message)
    assert stored.content == "bare stringpart"  # the text, for people reading it
    assert stored.name is None
    assert stored.metadata["langchain"]["content"] == message.content
    assert stored.metadata["langchain"]["id"] is None  # LangChain had no id; ours is generated
    assert from_store(stored) == message


def test_messages_other_clients_wrote_are_read_by_role():
    written = [
        Message(role="system", content="Rules", id="m1"),
        Message(role="developer", content="Dev", id="m2"),
        Message(role="user", content=[{"type": "text", "text": "Hi"}], id="m3", name="ann"),
        Message(
            role="assistant",
            content="",
            id="m4",
            tool_calls=[
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{x"}},
            ],
        ),
        Message(role="tool", content="out", id="m5", tool_call_id="c1"),
        Message(role="function", content="fn", id="m6", name="f"),
    ]
    read = [from_store(m) for m in written]
    assert read[0] == SystemMessage("Rules", id="m1")
    assert read[1] == SystemMessage(
        "Dev", id="m2", additional_kwargs={"__openai_role__": "developer"}
    )
    assert read[2] == HumanMessage([{"type": "text", "text": "Hi"}], id="m3", name="ann")
    assert isinstance(read[3], AIMessage)
    assert read[3].tool_calls == [{"name": "f", "args": {}, "id": "c1", "type": "tool_call"}]
    assert [c["id"] for c in read[3].invalid_tool_calls] == ["c2"]
    assert read[4] == ToolMessage("out", id="m5", tool_call_id="c1")
    assert read[5] == FunctionMessage("fn", id="m6", name="f")
    custom = from_store(Message(role="critic", content="x", id="m7"))
    assert custom == ChatMessage("x", role="critic", id="m7")


# -- against LangChain's own history, on every backend --------------------------------------

OPERATIONS = st.one_of(
    st.tuples(st.just("add_messages"), st.lists(langchain_message(), max_size=4)),
    st.tuples(st.just("aadd_messages"), st.lists(langchain_message(), max_size=4)),
    st.tuples(st.just("add_message"), langchain_message()),
    st.tuples(st.just("add_user_message"), TEXT),
    st.tuples(st.just("add_ai_message"), TEXT),
    st.tuples(st.just("clear"), st.none()),
    st.tuples(st.just("aclear"), st.none()),
    st.tuples(st.just("aget_messages"), st.none()),
    st.tuples(st.just("messages ="), st.lists(langchain_message(), max_size=3)),
)


def apply(target: Any, name: str, argument: Any) -> Any:
    if name == "messages =":
        target.messages = list(argument)
        return None
    args = () if argument is None else (argument,)
    if name in ("aadd_messages", "aclear", "aget_messages"):
        return run(lambda: getattr(target, name)(*args))
    return getattr(target, name)(*args)


@SETTINGS
@given(operations=st.lists(OPERATIONS, max_size=8))
def test_same_results_as_in_memory_chat_message_history(leg_store, operations):
    ours = history(leg_store)
    reference = InMemoryChatMessageHistory()
    for name, argument in operations:
        assert apply(ours, name, argument) == apply(reference, name, argument), name
        assert ours.messages == reference.messages


def test_add_messages_is_one_append(memory_store, signal_log):
    chat = history(memory_store)
    chat.add_messages([HumanMessage("a"), AIMessage("b"), HumanMessage("c")])
    appended = signal_log.of("messages_appended")
    assert len(appended) == 1
    assert [m.content for m in appended[0]["messages"]] == ["a", "b", "c"]
    chat.add_messages([])
    assert len(signal_log.of("messages_appended")) == 1  # nothing to add, no store call


def test_adding_a_message_again_stores_it_once(memory_store):
    chat = history(memory_store)
    message = HumanMessage("retry me", id="h-1")
    chat.add_messages([message])
    chat.add_messages([message, AIMessage("answer", id="a-1")])
    chat.add_messages([AIMessage("answer", id="a-1"), AIMessage("answer", id="a-1")])
    assert chat.messages == [message, AIMessage("answer", id="a-1")]


def test_messages_without_ids_are_all_kept(memory_store):
    chat = history(memory_store)
    chat.add_user_message("same")
    chat.add_user_message("same")
    assert chat.messages == [HumanMessage("same"), HumanMessage("same")]


# -- owner, ttl, store by alias, bad input ----------------------------------------------------


def test_acting_for_an_owner(memory_store):
    cid = f"lc-{uuid.uuid4().hex}"
    alice = ConvStoreChatMessageHistory(cid, store=memory_store, owner="alice")
    bob = ConvStoreChatMessageHistory(cid, store=memory_store, owner="bob")
    alice.add_user_message("mine")
    assert memory_store.load(cid).metadata.owner == "alice"
    assert bob.messages == []
    with pytest.raises(OwnerMismatchError):
        bob.add_user_message("theirs")
    bob.clear()
    assert alice.messages == [HumanMessage("mine")]
    with pytest.raises(OwnerMismatchError):
        run(lambda: bob.aadd_messages([HumanMessage("theirs")]))
    assert run(bob.aget_messages) == []


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_ttl_is_given_to_the_conversation(mode):
    from django_convstore import create_store

    store = create_store(
        {
            "BACKEND": "django_convstore.backends.memory.MemoryStore",
            "LOCATION": uuid.uuid4().hex,
            "TTL": 60,
        }
    )
    chats = {
        "default": history(store),
        "short": history(store, ttl=5),
        "forever": history(store, ttl=0),
    }
    for chat in chats.values():
        if mode == "sync":
            chat.add_user_message("x")
            chat.add_user_message("y")
        else:
            run(lambda chat=chat: chat.aadd_messages([HumanMessage("x")]))
            run(lambda chat=chat: chat.aadd_messages([HumanMessage("y")]))
    ttls = {name: store.load(chat.conversation_id).metadata.ttl for name, chat in chats.items()}
    assert ttls == {"default": 60, "short": 5, "forever": None}


def test_store_by_alias(settings):
    settings.CONVSTORE = {
        "default": {"BACKEND": "django_convstore.backends.memory.MemoryStore"},
        "chats": {
            "BACKEND": "django_convstore.backends.memory.MemoryStore",
            "LOCATION": uuid.uuid4().hex,
        },
    }
    from django_convstore import stores

    chat = ConvStoreChatMessageHistory("by-alias", store="chats")
    chat.add_user_message("hello")
    assert stores["chats"].load("by-alias").messages[0].content == "hello"
    assert not stores["default"].exists("by-alias")
    with pytest.raises(Exception, match="not configured"):
        ConvStoreChatMessageHistory("x", store="nope")


def test_values_that_are_not_json_are_refused_and_nothing_is_written(memory_store):
    chat = history(memory_store)
    with pytest.raises(InvalidInputError):
        chat.add_messages([HumanMessage("ok"), ToolMessage("x", tool_call_id="c", artifact={1})])
    assert not memory_store.exists(chat.conversation_id)
    with pytest.raises(InvalidInputError):
        chat.add_messages(["not a message"])


# -- signals, seen from the adapter ------------------------------------------------------------


def test_signals_of_each_operation(memory_store, signal_log):
    chat = history(memory_store, owner="ann")
    chat.add_messages([HumanMessage("q", id="q1")])
    run(lambda: chat.aadd_messages([AIMessage("a", id="a1")]))
    chat.clear()
    run(chat.aclear)  # nothing left to delete: no signal
    assert signal_log.names() == ["messages_appended", "messages_appended", "conversation_deleted"]
    first, second, deleted = signal_log.events
    assert first["conversation_id"] == chat.conversation_id
    assert first["owner"] == "ann"
    assert [m.id for m in first["messages"]] == ["q1"]
    assert from_store(second["messages"][0]) == AIMessage("a", id="a1")
    assert second["metadata"].message_count == 2
    assert deleted["owner"] == "ann"


def test_a_failing_receiver_never_breaks_the_history(memory_store, failing_receiver):
    chat = history(memory_store)
    chat.add_user_message("still stored")
    assert chat.messages == [HumanMessage("still stored")]
    assert failing_receiver.calls == 1


# -- end to end: a chain with a fake model, then the admin and the REST API -------------------


def scripted_model() -> GenericFakeChatModel:
    return GenericFakeChatModel(
        messages=iter(
            [
                AIMessage(
                    "",
                    id="ai-1",
                    tool_calls=[
                        {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}
                    ],
                ),
                AIMessage("It is sunny in Paris.", id="ai-2"),
            ]
        )
    )


def converse(get_history: Any) -> None:
    chain = RunnableWithMessageHistory(scripted_model(), get_history)
    config: RunnableConfig = {"configurable": {"session_id": "weather-chat"}}
    chain.invoke("What is the weather in Paris?", config=config)
    tool_answer = [ToolMessage("sunny, 21 °C", tool_call_id="call_1", name="get_weather")]
    run(lambda: chain.ainvoke(tool_answer, config=config))


@pytest.mark.django_db
def test_a_chain_with_history_end_to_end(settings, client, django_user_model):
    settings.CONVSTORE = {
        "default": {
            "BACKEND": "django_convstore.backends.memory.MemoryStore",
            "LOCATION": uuid.uuid4().hex,
        }
    }
    alice = django_user_model.objects.create_user("alice", password="pw")
    django_user_model.objects.create_superuser("root", password="pw")
    owner = str(alice.pk)

    converse(lambda sid: ConvStoreChatMessageHistory(sid, owner=owner))
    reference = InMemoryChatMessageHistory()
    converse(lambda sid: reference)

    ours = ConvStoreChatMessageHistory("weather-chat", owner=owner)
    assert ours.messages == reference.messages
    assert [type(m).__name__ for m in ours.messages] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
    ]

    client.force_login(alice)
    body = client.get("/api/conversations/weather-chat/").json()
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert body["messages"][1]["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ]
    assert body["messages"][2]["tool_call_id"] == "call_1"
    assert body["messages"][3]["content"] == "It is sunny in Paris."
    assert body["messages"][3]["metadata"]["langchain"]["type"] == "ai"

    client.force_login(django_user_model.objects.get(username="root"))
    page = admin_page(client, "weather-chat")
    for text in ("What is the weather in Paris?", "sunny, 21 °C", "It is sunny in Paris."):
        assert text in page
    assert TOOL_CALL_SHOWN.search(page)
