"""The LlamaIndex adapter: exact round trips, the same behaviour as LlamaIndex's own
``SimpleChatStore`` (hypothesis-generated operation sequences, on every backend leg), chat
memory and a chat engine over it, and the result in the admin and the REST API."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llama_index.core.base.llms.types import (
    ChatMessage,
    ImageBlock,
    MessageRole,
    TextBlock,
)
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.llms import MockLLM
from llama_index.core.memory import ChatMemoryBuffer
from llama_index.core.storage.chat_store import SimpleChatStore
from pydantic import BaseModel

from django_convstore import codec, validation
from django_convstore.exceptions import OwnerMismatchError
from django_convstore.integrations.llama_index import (
    ConvStoreChatStore,
    from_store,
    to_store,
)
from django_convstore.types import Message

from .conftest import TOOL_CALL_SHOWN, admin_page, run
from .strategies import llama_index_message

SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# -- the mapping ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(message=llama_index_message())
def test_every_message_round_trips_exactly(message):
    stored = to_store(message)
    clean = validation.validate_messages([stored])
    reread = codec.decode_message(codec.encode_message(clean[0]))
    assert from_store(reread) == message


def test_fields_carry_what_the_admin_and_the_api_show():
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    asked = to_store(
        ChatMessage(role="assistant", content="", additional_kwargs={"tool_calls": calls})
    )
    assert (asked.role, asked.content, asked.tool_calls, asked.metadata) == (
        "assistant",
        "",
        calls,
        {},
    )
    answered = to_store(
        ChatMessage(
            role="tool", content="42", additional_kwargs={"tool_call_id": "c1", "name": "f"}
        )
    )
    assert (answered.role, answered.tool_call_id, answered.name) == ("tool", "c1", "f")
    picture = to_store(
        ChatMessage(
            role=MessageRole.CHATBOT,
            blocks=[TextBlock(text="Look"), ImageBlock(url="https://example.com/a.png")],
        )
    )
    assert picture.role == "assistant"
    assert picture.metadata == {"llama_index": {"role": "chatbot"}}
    assert picture.content[0] == {"type": "text", "text": "Look"}
    assert picture.content[1]["type"] == "image"
    assert picture.content[1]["url"] == "https://example.com/a.png"


class ToolCallObject(BaseModel):
    """Stands for an SDK object in ``additional_kwargs`` (as llama-index-llms-openai puts them)."""

    id: str
    type: str
    function: dict[str, str]


def test_objects_in_additional_kwargs_are_stored_as_their_json():
    call = ToolCallObject(id="c1", type="function", function={"name": "f", "arguments": "{}"})
    message = ChatMessage(role="assistant", content="", additional_kwargs={"tool_calls": [call]})
    stored = to_store(message)
    assert stored.tool_calls == [call.model_dump()]
    assert from_store(stored).additional_kwargs == {"tool_calls": [call.model_dump()]}
    # ... exactly the message's own JSON form (what SimpleChatStore.persist() writes).
    assert from_store(stored) == ChatMessage.model_validate(message.model_dump(mode="json"))


def test_messages_other_clients_wrote_are_read_by_role():
    parts = [
        {"type": "text", "text": "Look"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        {"type": "input_audio", "input_audio": {"data": "...", "format": "wav"}},
    ]
    read = from_store(Message(role="user", content=parts, name="ann"))
    assert read.role == MessageRole.USER
    assert [type(b).__name__ for b in read.blocks] == ["TextBlock", "ImageBlock"]
    assert read.additional_kwargs == {"name": "ann"}
    assert from_store(Message(role="critic", content="x")).role == MessageRole.USER


# -- against LlamaIndex's SimpleChatStore, on every backend -----------------------------------

KEYS = st.sampled_from(["k1", "k2", "k3"])
INDEX = st.integers(-4, 5)
OPERATIONS = st.one_of(
    st.tuples(st.just("set_messages"), KEYS, st.lists(llama_index_message(), max_size=3)),
    st.tuples(st.just("aset_messages"), KEYS, st.lists(llama_index_message(), max_size=3)),
    st.tuples(st.just("get_messages"), KEYS),
    st.tuples(st.just("aget_messages"), KEYS),
    st.tuples(st.just("add_message"), KEYS, llama_index_message(), st.none() | INDEX),
    st.tuples(st.just("async_add_message"), KEYS, llama_index_message()),
    st.tuples(st.just("delete_messages"), KEYS),
    st.tuples(st.just("adelete_messages"), KEYS),
    st.tuples(st.just("delete_message"), KEYS, INDEX),
    st.tuples(st.just("adelete_message"), KEYS, INDEX),
    st.tuples(st.just("delete_last_message"), KEYS),
    st.tuples(st.just("adelete_last_message"), KEYS),
    st.tuples(st.just("get_keys")),
    st.tuples(st.just("aget_keys")),
)


def outcome(target: Any, name: str, args: tuple[Any, ...]) -> Any:
    """What the call returned (lists copied: SimpleChatStore hands out its own), or raised."""
    if name == "add_message" and args[2] is None:
        args = args[:2]
    try:
        if name.startswith(("aset", "aget", "async", "adelete")):
            result = run(lambda: getattr(target, name)(*args))
        else:
            result = getattr(target, name)(*args)
    except IndexError as error:
        return ("IndexError", str(error))
    if name in ("get_keys", "aget_keys"):
        return sorted(result)  # ours lists the most recently updated first
    return list(result) if isinstance(result, list) else result


@SETTINGS
@given(operations=st.lists(OPERATIONS, max_size=12))
def test_same_results_as_simple_chat_store(leg_store_factory, operations):
    ours = ConvStoreChatStore(store=leg_store_factory())
    reference = SimpleChatStore()
    for name, *args in operations:
        expected = outcome(reference, name, tuple(args))
        got = outcome(ours, name, tuple(args))
        if name in ("delete_last_message", "adelete_last_message") and expected == (
            "IndexError",
            "pop from empty list",
        ):
            assert got is None  # the one documented difference
        else:
            assert got == expected, name
    for key in ("k1", "k2", "k3"):
        assert ours.get_messages(key) == reference.get_messages(key)


def test_insert_and_delete_in_the_middle_keep_everything_else(memory_store, signal_log):
    chat = ConvStoreChatStore(store=memory_store)
    for text in "abcd":
        chat.add_message("k", ChatMessage(content=text))
    ids = [m.id for m in memory_store.load("k").messages]
    chat.add_message("k", ChatMessage(content="x"), idx=1)
    assert [m.content for m in chat.get_messages("k")] == ["a", "x", "b", "c", "d"]
    assert chat.delete_message("k", 2) == ChatMessage(content="b")
    stored = memory_store.load("k").messages
    assert [m.content for m in stored] == ["a", "x", "c", "d"]
    assert [stored[0].id, *(m.id for m in stored[2:])] == [ids[0], ids[2], ids[3]]
    # What each cost: a pop of the tail and an append of it (with or without a message).
    names = signal_log.names()[4:]
    assert names == [
        "messages_removed",
        "messages_appended",
        "messages_removed",
        "messages_appended",
    ]
    assert [event["count"] for event in signal_log.of("messages_removed")] == [3, 3]


def test_delete_the_last_message_is_one_pop(memory_store, signal_log):
    chat = ConvStoreChatStore(store=memory_store)
    chat.set_messages("k", [ChatMessage(content="a"), ChatMessage(content="b")])
    assert chat.delete_last_message("k") == ChatMessage(content="b")
    assert signal_log.names() == ["conversation_saved", "messages_removed"]
    assert chat.delete_messages("k") == [ChatMessage(content="a")]
    assert signal_log.names()[-1] == "conversation_deleted"
    assert chat.delete_messages("k") is None


# -- owner, ttl, serialisation, signals -------------------------------------------------------


def test_acting_for_an_owner(memory_store):
    alice = ConvStoreChatStore(store=memory_store, owner="alice")
    bob = ConvStoreChatStore(store=memory_store, owner="bob")
    alice.add_message("shared", ChatMessage(content="mine"))
    alice.set_messages("alice-only", [])
    bob.add_message("bobs", ChatMessage(content="his"))
    assert sorted(alice.get_keys()) == ["alice-only", "shared"]
    assert run(bob.aget_keys) == ["bobs"]
    assert bob.get_messages("shared") == []
    assert bob.delete_messages("shared") is None
    assert bob.delete_last_message("shared") is None
    with pytest.raises(OwnerMismatchError):
        bob.add_message("shared", ChatMessage(content="theirs"))
    with pytest.raises(OwnerMismatchError):
        bob.set_messages("shared", [])
    assert alice.get_messages("shared") == [ChatMessage(content="mine")]


def test_ttl_is_given_to_the_conversations(memory_store):
    chat = ConvStoreChatStore(store=memory_store, ttl=45)
    chat.add_message("appended", ChatMessage(content="x"))
    chat.set_messages("saved", [ChatMessage(content="x")])
    run(lambda: chat.async_add_message("async", ChatMessage(content="x")))
    for key in ("appended", "saved", "async"):
        assert memory_store.load(key).metadata.ttl == 45


def test_serialises_like_other_chat_stores(settings):
    settings.CONVSTORE = {"default": {"BACKEND": "django_convstore.backends.memory.MemoryStore"}}
    from django_convstore import stores

    chat = ConvStoreChatStore(store=stores["default"], owner="ann", ttl=5)
    assert chat.to_dict() == {
        "store": "default",
        "owner": "ann",
        "ttl": 5,
        "class_name": "ConvStoreChatStore",
    }
    memory = ChatMemoryBuffer.from_defaults(chat_store=chat, chat_store_key="k")
    assert memory.to_dict()["chat_store"]["class_name"] == "ConvStoreChatStore"


def test_a_failing_receiver_never_breaks_the_chat_store(memory_store, failing_receiver):
    chat = ConvStoreChatStore(store=memory_store)
    chat.add_message("k", ChatMessage(content="kept"))
    assert chat.get_messages("k") == [ChatMessage(content="kept")]
    assert failing_receiver.calls == 1


# -- end to end: chat memory and a chat engine over the chat store ------------------------------


def converse(chat_store: Any) -> None:
    memory = ChatMemoryBuffer.from_defaults(chat_store=chat_store, chat_store_key="llama-chat")
    engine = SimpleChatEngine.from_defaults(llm=MockLLM(), memory=memory)
    engine.chat("What is the weather in Paris?")
    memory.put(
        ChatMessage(
            role="assistant",
            content="",
            additional_kwargs={
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ]
            },
        )
    )
    run(
        lambda: memory.aput(
            ChatMessage(
                role="tool",
                content="sunny, 21 °C",
                additional_kwargs={"tool_call_id": "call_1", "name": "get_weather"},
            )
        )
    )
    run(lambda: engine.achat("And tomorrow?"))


@pytest.mark.django_db
def test_memory_and_a_chat_engine_end_to_end(settings, client, django_user_model):
    settings.CONVSTORE = {
        "default": {
            "BACKEND": "django_convstore.backends.memory.MemoryStore",
            "LOCATION": uuid.uuid4().hex,
        }
    }
    alice = django_user_model.objects.create_user("alice", password="pw")
    ours = ConvStoreChatStore(owner=str(alice.pk))
    reference = SimpleChatStore()
    converse(ours)
    converse(reference)
    history = ours.get_messages("llama-chat")
    assert history == reference.get_messages("llama-chat")
    assert [m.role.value for m in history] == [
        "user",
        "assistant",
        "assistant",
        "tool",
        "user",
        "assistant",
    ]

    client.force_login(alice)
    messages = client.get("/api/conversations/llama-chat/").json()["messages"]
    assert [m["role"] for m in messages] == [m.role.value for m in history]
    assert messages[0]["content"] == "What is the weather in Paris?"
    assert messages[2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert (messages[3]["tool_call_id"], messages[3]["name"]) == ("call_1", "get_weather")

    django_user_model.objects.create_superuser("root", password="pw")
    client.force_login(django_user_model.objects.get(username="root"))
    page = admin_page(client, "llama-chat")
    for text in ("What is the weather in Paris?", "sunny, 21 °C", "And tomorrow?"):
        assert text in page
    assert TOOL_CALL_SHOWN.search(page)
