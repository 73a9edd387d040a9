"""LangChain chat message history over a conversation store (extra ``langchain``).

:class:`ConvStoreChatMessageHistory` is a ``BaseChatMessageHistory``: use it
wherever LangChain asks for one (``RunnableWithMessageHistory``, your own
chains). Every ``langchain_core`` message comes back equal (``==``) to the one
added. How a message maps onto a stored :class:`~django_convstore.types.Message`:

=====================  ==================================================
LangChain              stored message
=====================  ==================================================
type                   ``role``: human → user, ai → assistant, system →
                       system (developer when ``additional_kwargs`` says
                       ``__openai_role__: developer``), tool, function,
                       chat → its ``role``; chunks as their message
``content``            ``content`` (a string, or a list of blocks that all
                       are objects with a ``type``)
``id``                 ``id``
``name``               ``name``
``tool_call_id``       ``tool_call_id``
``tool_calls``         ``tool_calls``, in the OpenAI shape
                       ``{"id", "type": "function", "function": {"name",
                       "arguments"}}``
everything else        ``metadata["langchain"]``: ``type`` and every field
                       that differs from its default (``additional_kwargs``,
                       ``response_metadata``, ``usage_metadata``,
                       ``invalid_tool_calls``, ``artifact``, ``status`` …)
=====================  ==================================================

A value a field cannot hold as it is (no id, an empty name, content with bare
strings, tool call arguments that are not a JSON object) is kept exactly in
``metadata["langchain"]`` as well, and the field gets the nearest readable
form (a generated id, the text). Each conversion is checked when written: if
reading it back would not give an equal message (an ``AIMessageChunk`` whose
``tool_call_chunks`` disagree with its tool calls, which LangChain's own
constructor would re-derive), the whole message is kept in
``metadata["langchain"]`` and rebuilt from it as it was. Values must be JSON
(an ``artifact`` object that is not is rejected with
:class:`~django_convstore.exceptions.InvalidInputError`, nothing written).

Messages written by others (the REST API, another framework) are read by
role: user → ``HumanMessage``, assistant → ``AIMessage`` (OpenAI-shaped tool
calls parsed into ``tool_calls``), system, developer, tool, function; any other
role → ``ChatMessage``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    ChatMessageChunk,
    FunctionMessage,
    FunctionMessageChunk,
    HumanMessage,
    HumanMessageChunk,
    RemoveMessage,
    SystemMessage,
    SystemMessageChunk,
    ToolMessage,
    ToolMessageChunk,
)
from langchain_core.messages.tool import InvalidToolCall, ToolCall, invalid_tool_call, tool_call
from pydantic import ValidationError

from .. import validation
from ..backends.base import BaseStore
from ..exceptions import InvalidInputError
from ..types import Message
from .binding import StoreBinding, allowed_role, is_content_parts, usable_id, usable_text

#: The key of a stored message's ``metadata`` that holds LangChain's extras.
METADATA_KEY = "langchain"

_CLASSES: dict[str, type[BaseMessage]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        HumanMessage,
        AIMessage,
        SystemMessage,
        ToolMessage,
        FunctionMessage,
        ChatMessage,
        RemoveMessage,
        HumanMessageChunk,
        AIMessageChunk,
        SystemMessageChunk,
        ToolMessageChunk,
        FunctionMessageChunk,
        ChatMessageChunk,
    )
}
_ROLE_OF_CLASS: dict[type[BaseMessage], str] = {
    HumanMessage: "user",
    AIMessage: "assistant",
    SystemMessage: "system",
    ToolMessage: "tool",
    FunctionMessage: "function",
    # A RemoveMessage is an instruction to LangGraph, not a turn of anyone's.
    RemoveMessage: "system",
}
_TYPE_OF_ROLE = {
    "user": "human",
    "assistant": "ai",
    "system": "system",
    "developer": "system",
    "tool": "tool",
    "function": "function",
}
_OPENAI_ROLE = "__openai_role__"
#: The role of a ``ChatMessage`` whose own role this project does not allow.
_FALLBACK_ROLE = "user"


def _role(message: BaseMessage) -> str:
    if isinstance(message, ChatMessage | ChatMessageChunk):
        return message.role if allowed_role(message.role) else _FALLBACK_ROLE
    for cls, role in _ROLE_OF_CLASS.items():
        if isinstance(message, cls):
            if role == "system" and message.additional_kwargs.get(_OPENAI_ROLE) == "developer":
                return "developer"
            return role
    return _FALLBACK_ROLE


def _text(content: list[Any]) -> str:
    """The text of content our field cannot keep: its strings and text blocks, joined."""
    return "".join(
        item if isinstance(item, str) else item["text"]
        for item in content
        if isinstance(item, str)
        or (
            isinstance(item, dict)
            and item.get("type") == "text"
            and isinstance(item.get("text"), str)
        )
    )


def _openai_tool_calls(calls: list[Any]) -> list[dict[str, Any]] | None:
    """LangChain tool calls in the OpenAI shape; None when one has no JSON arguments."""
    try:
        return [
            {
                "id": call["id"],
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": json.dumps(call["args"], ensure_ascii=False),
                },
            }
            for call in calls
        ]
    except (TypeError, ValueError, KeyError):
        return None


def parse_tool_calls(raw: list[Any]) -> tuple[list[ToolCall], list[InvalidToolCall]]:
    """OpenAI-shaped tool calls as LangChain's valid and invalid tool calls.

    Like ``langchain_core``'s ``default_tool_parser``, but an entry of any
    other shape becomes an invalid tool call instead of an exception.
    """
    calls: list[ToolCall] = []
    invalid: list[InvalidToolCall] = []
    for entry in raw:
        entry_id = entry.get("id") if isinstance(entry, dict) else None
        call_id = entry_id if isinstance(entry_id, str) else None
        function = entry.get("function") if isinstance(entry, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        arguments = function.get("arguments") if isinstance(function, dict) else None
        try:
            args = json.loads(arguments) if isinstance(arguments, str) else None
        except ValueError:
            args = None
        if isinstance(name, str) and isinstance(args, dict):
            calls.append(tool_call(name=name, args=args, id=call_id))
        else:
            invalid.append(
                invalid_tool_call(
                    name=name if isinstance(name, str) else None,
                    args=arguments if isinstance(arguments, str) else json.dumps(entry),
                    id=call_id,
                    error="not an OpenAI function call with JSON object arguments",
                )
            )
    return calls, invalid


@functools.cache
def _default(cls: type[BaseMessage], field: str) -> Any:
    """A field's default, only ever compared with (pydantic's lookup is slow)."""
    return cls.model_fields[field].get_default(call_default_factory=True)


def _mapped(message: BaseMessage) -> Message:
    """The stored form: our fields carry what they can, the rest goes to the extras."""
    cls = type(message)
    data = message.model_dump()
    extras: dict[str, Any] = {"type": data.pop("type")}
    fields: dict[str, Any] = {}
    content = data.pop("content")
    if isinstance(content, str) or is_content_parts(content):
        fields["content"] = content
    else:
        fields["content"] = _text(content)
        extras["content"] = content
    message_id = data.pop("id")
    if usable_id(message_id):
        fields["id"] = message_id
    else:
        extras["id"] = message_id
    for key in ("name", "tool_call_id"):
        if key in data:
            value = data.pop(key)
            if usable_text(value):
                fields[key] = value
            elif value is not None:
                extras[key] = value
    if "role" in data:
        role = data.pop("role")
        if not allowed_role(role):
            extras["role"] = role
    if "tool_calls" in data:
        calls = data.pop("tool_calls")
        shaped = _openai_tool_calls(calls) if calls else None
        if shaped:
            fields["tool_calls"] = shaped
        if calls and (shaped is None or parse_tool_calls(shaped) != (calls, [])):
            extras["tool_calls"] = calls
    for key, value in data.items():
        if value != _default(cls, key):
            extras[key] = value
    return Message(role=_role(message), metadata={METADATA_KEY: extras}, **fields)


def to_store(message: BaseMessage) -> Message:
    """The stored form of a LangChain message (see the module's table)."""
    if not isinstance(message, BaseMessage):
        raise InvalidInputError(
            "messages", f"must be LangChain messages, not {type(message).__name__}."
        )
    stored = _mapped(message)
    try:
        exact = from_store(stored) == message
    except (ValidationError, TypeError, ValueError):
        exact = False
    if not exact:
        everything = message.model_dump()
        stored.metadata = {METADATA_KEY: everything}
    return stored


def from_store(message: Message) -> BaseMessage:
    """The LangChain message a stored message stands for."""
    extras = message.metadata.get(METADATA_KEY)
    if isinstance(extras, dict) and extras.get("type") in _CLASSES:
        cls = _CLASSES[extras["type"]]
        if extras.keys() >= cls.model_fields.keys():
            # The whole message was kept: rebuild it as it was, without the validators
            # (AIMessageChunk's would derive its tool calls from tool_call_chunks again).
            return cls.model_construct(**extras)
        extras = dict(extras)
        del extras["type"]
    else:
        extras = {}
        cls = _CLASSES.get(_TYPE_OF_ROLE.get(message.role, "chat"), ChatMessage)
        if message.role == "developer":
            extras["additional_kwargs"] = {_OPENAI_ROLE: "developer"}
    fields = cls.model_fields
    kwargs: dict[str, Any] = {"content": message.content, "id": message.id}
    if message.name is not None or (fields["name"].is_required()):
        kwargs["name"] = message.name or ""
    if "tool_call_id" in fields:
        kwargs["tool_call_id"] = message.tool_call_id or ""
    if "role" in fields:
        kwargs["role"] = message.role
    if "tool_calls" in fields:
        calls, invalid = parse_tool_calls(message.tool_calls or [])
        kwargs["tool_calls"] = calls
        if invalid:
            kwargs["invalid_tool_calls"] = invalid
    kwargs.update(extras)
    return cls(**kwargs)


class ConvStoreChatMessageHistory(BaseChatMessageHistory):
    """A LangChain chat message history kept in a conversation store.

    ``conversation_id``: the conversation holding the history. ``store``: a
    store instance or an alias of ``settings.CONVSTORE``. ``owner``: every
    call acts for this owner (another owner's conversation reads as empty, and
    adding to it raises ``OwnerMismatchError``). ``ttl``: seconds (0 = never
    expire) for the conversation; None leaves it to the store's default.

    Each operation is one store call: ``messages`` / ``aget_messages`` one
    load (assigning ``messages`` one ``save``), ``add_messages`` /
    ``aadd_messages`` one append (none for an empty list; a second call,
    ``set_ttl``, only when ``ttl`` is given and the append created the
    conversation), ``clear`` / ``aclear`` one delete.
    Adding a message whose id the conversation already holds stores nothing
    (the store's idempotent append), so a retried ``add_messages`` never
    duplicates.
    """

    def __init__(
        self,
        conversation_id: str,
        *,
        store: BaseStore | str = "default",
        owner: str | None = None,
        ttl: int | None = None,
    ) -> None:
        super().__init__()
        self.conversation_id = validation.validate_conversation_id(conversation_id)
        self.binding = StoreBinding(store, owner=owner, ttl=ttl)

    @property
    def messages(self) -> list[BaseMessage]:
        """The history, oldest first (one store read)."""
        return [from_store(m) for m in self.binding.load(self.conversation_id) or []]

    @messages.setter
    def messages(self, messages: Sequence[BaseMessage]) -> None:
        """Replace the history (one store ``save``), like assigning to the in-memory history's."""
        self.binding.save(self.conversation_id, [to_store(m) for m in messages])

    async def aget_messages(self) -> list[BaseMessage]:
        """The history, oldest first (one async store read)."""
        return [from_store(m) for m in await self.binding.aload(self.conversation_id) or []]

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append the messages in one store call."""
        self.binding.append(self.conversation_id, [to_store(m) for m in messages])

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append the messages in one async store call."""
        await self.binding.aappend(self.conversation_id, [to_store(m) for m in messages])

    def clear(self) -> None:
        """Delete the conversation (its messages and metadata)."""
        self.binding.delete(self.conversation_id)

    async def aclear(self) -> None:
        """Delete the conversation (its messages and metadata), async."""
        await self.binding.adelete(self.conversation_id)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} conversation_id={self.conversation_id!r} "
            f"store={self.binding.alias!r}>"
        )


__all__ = ["METADATA_KEY", "ConvStoreChatMessageHistory", "from_store", "to_store"]
