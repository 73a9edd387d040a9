"""An OpenAI Agents SDK session over a conversation store (extra ``openai-agents``).

:class:`ConvStoreSession` implements the SDK's ``Session`` protocol
(``session_id``, ``session_settings``, ``get_items``, ``add_items``,
``pop_item``, ``clear_session``): pass it as ``session=`` to ``Runner.run``.
Each input item is one stored :class:`~django_convstore.types.Message`, and
comes back equal (``==``, same keys in the same order) to the item added:

=========================  ====================================================
item                       stored message
=========================  ====================================================
message (``role``)         ``role``, ``content`` (a string or the content
                           parts)
``function_call``          role ``assistant``, ``tool_calls`` =
                           ``[{"id": call_id, "type": "function", "function":
                           {"name", "arguments"}}]``
``custom_tool_call``       role ``assistant``, ``tool_calls`` =
                           ``[{"id": call_id, "type": "custom", "custom":
                           {"name", "input"}}]``
``*_output`` items         role ``tool``, ``tool_call_id`` = ``call_id``,
                           ``content`` = ``output`` (text or content parts)
``reasoning``              role ``assistant``, ``content`` = the summary parts
                           (``summary_text``)
any other item             role ``assistant``, empty content
=========================  ====================================================

``metadata["openai_agents"]`` holds the item's key order (``keys``) and every
value not carried by a field above (``item``: ``type``, ``id``, ``status``,
``encrypted_content`` …). Each conversion is checked when written; if reading
it back would not give an equal item, the whole item is kept in ``item``.

Every stored message gets a fresh message id: item ids are not identities
(models behind Chat Completions all answer with the id ``__fake_id__``, an
``item_reference`` repeats the id of another item), so, as in the SDK's own
sessions, adding an item twice stores it twice.

Messages written by others (the REST API, another framework) are read as
items too: ``{"role", "content"}`` messages, an assistant message's tool calls
as ``function_call`` items after it, tool and function messages as
``function_call_output`` items.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agents.memory.session_settings import (
    SessionSettings,
    coerce_session_settings,
    resolve_session_limit,
)

from .. import validation
from ..backends.base import BaseStore
from ..exceptions import InvalidInputError
from ..types import Message
from .binding import StoreBinding, allowed_role, is_content_parts, usable_text

if TYPE_CHECKING:
    from agents.items import TResponseInputItem

#: The key of a stored message's ``metadata`` that holds the item's extras.
METADATA_KEY = "openai_agents"

_MESSAGE_ROLES = ("user", "assistant", "system", "developer")
_TOOL_CALLS = {"function_call": ("function", "arguments"), "custom_tool_call": ("custom", "input")}


def _is_content(value: Any) -> bool:
    return isinstance(value, str) or is_content_parts(value)


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(
            part["text"]
            for part in value
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _mapped(item: dict[str, Any]) -> Message:
    """The stored form: our fields carry what they can (``carried``), the rest is kept."""
    kind = item.get("type")
    fields: dict[str, Any] = {"role": "assistant", "content": ""}
    carried: set[str] = set()
    if kind in (None, "message") and item.get("role") in _MESSAGE_ROLES:
        if allowed_role(item["role"]):
            fields["role"] = item["role"]
            carried.add("role")
        if _is_content(item.get("content")):
            fields["content"] = item["content"]
            carried.add("content")
        else:
            fields["content"] = _text_of(item.get("content"))
    elif isinstance(kind, str) and kind in _TOOL_CALLS:
        shape, argument_key = _TOOL_CALLS[kind]
        keys = ("call_id", "name", argument_key)
        if all(isinstance(item.get(key), str) for key in keys):
            fields["tool_calls"] = [
                {
                    "id": item["call_id"],
                    "type": shape,
                    shape: {"name": item["name"], argument_key: item[argument_key]},
                }
            ]
            carried.update(keys)
    elif isinstance(kind, str) and kind.endswith("_output"):
        fields["role"] = "tool"
        if usable_text(item.get("call_id")):
            fields["tool_call_id"] = item["call_id"]
            carried.add("call_id")
        if _is_content(item.get("output")):
            fields["content"] = item["output"]
            carried.add("output")
    elif kind == "reasoning" and is_content_parts(item.get("summary")):
        fields["content"] = item["summary"]
        carried.add("summary")
    extras = {
        "keys": list(item),
        "item": {key: value for key, value in item.items() if key not in carried},
    }
    return Message(metadata={METADATA_KEY: extras}, **fields)


def _carried(message: Message, kind: Any) -> dict[str, Any]:
    """The item values our fields carry, by item key, for an item of type ``kind``."""
    values: dict[str, Any] = {}
    if isinstance(kind, str) and kind in _TOOL_CALLS and message.tool_calls:
        shape, argument_key = _TOOL_CALLS[kind]
        call = message.tool_calls[0]
        values.update(
            call_id=call.get("id"),
            name=call.get(shape, {}).get("name"),
            **{argument_key: call.get(shape, {}).get(argument_key)},
        )
    elif isinstance(kind, str) and kind.endswith("_output"):
        values.update(call_id=message.tool_call_id, output=message.content)
    elif kind == "reasoning":
        values["summary"] = message.content
    else:
        values.update(role=message.role, content=message.content)
    return values


def to_store(item: TResponseInputItem | Mapping[str, Any]) -> Message:
    """The stored form of an input item (see the module's table)."""
    if not isinstance(item, Mapping):
        raise InvalidInputError(
            "items", f"must be input items (dicts), not {type(item).__name__}."
        )
    original = dict(item)
    stored = _mapped(original)
    if from_store(stored) != [original]:
        stored.metadata = {METADATA_KEY: {"keys": list(original), "item": original}}
    return stored


def _foreign_items(message: Message) -> list[dict[str, Any]]:
    """Items for a message another client wrote (no ``openai_agents`` metadata)."""
    if message.role in ("tool", "function"):
        output = message.content if message.role == "tool" else _text_of(message.content)
        return [
            {
                "type": "function_call_output",
                "call_id": message.tool_call_id or message.name or "",
                "output": output,
            }
        ]
    calls = [
        {
            "type": "function_call",
            "call_id": str(call.get("id") or ""),
            "name": str(call["function"].get("name") or ""),
            "arguments": str(call["function"].get("arguments") or ""),
        }
        for call in message.tool_calls or []
        if isinstance(call.get("function"), dict)
    ]
    if calls and not message.content:
        return calls
    role = message.role if message.role in _MESSAGE_ROLES else "user"
    return [{"role": role, "content": message.content}, *calls]


def from_store(message: Message) -> list[dict[str, Any]]:
    """The input items a stored message stands for (one, unless another client wrote it)."""
    extras = message.metadata.get(METADATA_KEY)
    if not (
        isinstance(extras, dict)
        and isinstance(extras.get("keys"), list)
        and isinstance(extras.get("item"), dict)
    ):
        return _foreign_items(message)
    kept: dict[str, Any] = extras["item"]
    carried = _carried(message, kept.get("type"))
    return [{key: kept[key] if key in kept else carried.get(key) for key in extras["keys"]}]


def _items(messages: list[Message], limit: int | None = None) -> list[dict[str, Any]]:
    items = [item for message in messages for item in from_store(message)]
    return items[-limit:] if limit is not None else items


class ConvStoreSession:
    """An OpenAI Agents SDK session kept in a conversation store.

    ``session_id``: the conversation holding the session. ``store``: a store
    instance or an alias of ``settings.CONVSTORE``. ``owner``: every call acts
    for this owner (another owner's conversation reads as empty; adding to it
    raises ``OwnerMismatchError``). ``ttl``: seconds (0 = never expire) for
    the conversation; None leaves it to the store's default.
    ``session_settings``: the SDK's ``SessionSettings`` (its ``limit`` is the
    default of ``get_items``).

    Each operation is one store call: ``get_items`` one load (``limit=N``
    reads only the newest N), ``add_items`` one append (a second call,
    ``set_ttl``, only when ``ttl`` is given and the append created the
    conversation), ``pop_item`` one atomic pop, ``clear_session`` one delete.
    """

    session_settings: SessionSettings | None

    def __init__(
        self,
        session_id: str,
        *,
        store: BaseStore | str = "default",
        owner: str | None = None,
        ttl: int | None = None,
        session_settings: SessionSettings | dict[str, Any] | None = None,
    ) -> None:
        self.session_id = validation.validate_conversation_id(session_id)
        self.binding = StoreBinding(store, owner=owner, ttl=ttl)
        self.session_settings = (
            coerce_session_settings(session_settings)
            if session_settings is not None
            else SessionSettings()
        )

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The history, oldest first; with ``limit``, the newest ``limit`` items.

        A ``limit`` of 0 gives [], a negative one everything (as the SDK's
        ``SQLiteSession`` does).
        """
        wanted = resolve_session_limit(limit, self.session_settings)
        if wanted is not None and wanted < 0:
            wanted = None
        if wanted == 0:
            return []
        messages = await self.binding.aload(self.session_id, last=wanted)
        return _items(messages or [], wanted)  # type: ignore[return-value]

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append the items in one store call."""
        await self.binding.aappend(self.session_id, [to_store(item) for item in items])

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the newest item (None when there is none), atomically."""
        removed = await self.binding.apop(self.session_id)
        if not removed:
            return None
        return from_store(removed[0])[-1]  # type: ignore[return-value]

    async def clear_session(self) -> None:
        """Delete the conversation (its items and metadata)."""
        await self.binding.adelete(self.session_id)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} session_id={self.session_id!r} store={self.binding.alias!r}>"
        )


__all__ = ["METADATA_KEY", "ConvStoreSession", "from_store", "to_store"]
