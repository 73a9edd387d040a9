"""A LlamaIndex chat store over a conversation store (extra ``llama-index``).

:class:`ConvStoreChatStore` is a ``BaseChatStore``: give it to
``ChatMemoryBuffer.from_defaults(chat_store=..., chat_store_key=...)`` or use
it directly. Its keys are conversation ids. Every ``ChatMessage`` comes back
equal (``==``) to the one added. How a message maps onto a stored
:class:`~django_convstore.types.Message`:

===================================  ============================================
LlamaIndex                           stored message
===================================  ============================================
``role``                             ``role`` (chatbot and model → assistant)
one ``TextBlock``                    ``content``: its text
any other ``blocks``                 ``content``: one part per block,
                                     ``{"type": block_type, ...its fields}``
``additional_kwargs["tool_calls"]``  ``tool_calls``
``additional_kwargs["tool_call_id"]``  ``tool_call_id``
``additional_kwargs["name"]``        ``name``
everything else                      ``metadata["llama_index"]`` (the role
                                     ``chatbot``/``model``, the remaining
                                     ``additional_kwargs``)
===================================  ============================================

Values are stored in their JSON form, as ``SimpleChatStore.persist`` writes
them: objects in ``additional_kwargs`` (an OpenAI ``ChatCompletionMessageToolCall``)
come back as their dicts, bytes as base64. Each conversion is checked when
written; if reading it back would not give an equal message although its JSON
form would, the whole message is kept in ``metadata["llama_index"]``.

Operations and their store calls:

- ``set_messages``: one ``save``; ``get_messages``: one ``load``;
  ``add_message``: one ``append``; ``delete_last_message``: one ``pop``;
  ``get_keys``: one ``list`` (``list_conversations`` pages with an owner).
- ``delete_messages``: ``load`` (to return them) then ``delete``.
- ``add_message(idx=i)`` and ``delete_message(idx=i)`` change the middle of a
  conversation, which no single store call does: they read the length
  (``load(last=0)``, no messages read), ``pop`` the messages from ``i`` on
  (one atomic call that returns what it removed, so a message appended
  concurrently is never dropped) and ``append`` them back (with the new
  message first, or without the deleted one). Cost: three calls and the
  messages after ``i``. Not atomic: another writer's message may land
  between the two writes (it then sits before the re-appended tail), a
  reader may see the shortened conversation, and a failure between the
  writes loses the tail.
"""

from __future__ import annotations

from typing import Any, get_args

from llama_index.core.base.llms.types import ChatMessage, ContentBlock, MessageRole
from llama_index.core.bridge.pydantic import ConfigDict, Field, PrivateAttr, field_serializer
from llama_index.core.storage.chat_store.base import BaseChatStore

from ..backends.base import BaseStore
from ..types import Message
from .binding import StoreBinding, usable_text

#: The key of a stored message's ``metadata`` that holds LlamaIndex's extras.
METADATA_KEY = "llama_index"

_OUR_ROLE = {"chatbot": "assistant", "model": "assistant"}
_ROLES = frozenset(role.value for role in MessageRole)
#: The ``block_type`` of every content block this LlamaIndex knows.
_BLOCK_TYPES = frozenset(
    block.model_fields["block_type"].default for block in get_args(get_args(ContentBlock)[0])
)
_CARRIED_KWARGS = ("tool_call_id", "name")


def _content(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]] | None:
    """Our content for dumped blocks; None when a block has a field named ``type``."""
    if len(blocks) == 1 and set(blocks[0]) == {"block_type", "text"}:
        text = blocks[0]["text"]
        if blocks[0]["block_type"] == "text" and isinstance(text, str):
            return text
    if any("type" in block for block in blocks):
        return None
    return [
        {"type": block["block_type"], **{k: v for k, v in block.items() if k != "block_type"}}
        for block in blocks
    ]


def _mapped(dump: dict[str, Any]) -> Message:
    """The stored form of a dumped message: our fields carry what they can."""
    role = dump["role"]
    extras: dict[str, Any] = {}
    our_role = _OUR_ROLE.get(role, role)
    if our_role != role:
        extras["role"] = role
    fields: dict[str, Any] = {}
    content = _content(dump["blocks"])
    if content is None:
        extras["blocks"] = dump["blocks"]
        content = "\n".join(b["text"] for b in dump["blocks"] if isinstance(b.get("text"), str))
    kwargs = dict(dump["additional_kwargs"])
    calls = kwargs.get("tool_calls")
    if isinstance(calls, list) and all(isinstance(call, dict) for call in calls):
        fields["tool_calls"] = kwargs.pop("tool_calls")
    for key in _CARRIED_KWARGS:
        if usable_text(kwargs.get(key)):
            fields[key] = kwargs.pop(key)
    if kwargs:
        extras["additional_kwargs"] = kwargs
    metadata = {METADATA_KEY: extras} if extras else {}
    return Message(role=our_role, content=content, metadata=metadata, **fields)


def to_store(message: ChatMessage) -> Message:
    """The stored form of a LlamaIndex message (see the module's table)."""
    dump = message.model_dump(mode="json")
    stored = _mapped(dump)
    if from_store(stored) != message and ChatMessage.model_validate(dump) == message:
        stored.metadata = {METADATA_KEY: dump}
    return stored


def _block(part: dict[str, Any]) -> dict[str, Any] | None:
    """A LlamaIndex block for a content part (None for a part it has no block for)."""
    kind = part.get("type")
    if kind in _BLOCK_TYPES:
        return {"block_type": kind, **{k: v for k, v in part.items() if k != "type"}}
    image = part.get("image_url")
    if kind == "image_url" and isinstance(image, dict) and isinstance(image.get("url"), str):
        return {"block_type": "image", "url": image["url"], "detail": image.get("detail")}
    if isinstance(part.get("text"), str):
        return {"block_type": "text", "text": part["text"]}
    return None


def from_store(message: Message) -> ChatMessage:
    """The LlamaIndex message a stored message stands for."""
    extras = message.metadata.get(METADATA_KEY)
    if not isinstance(extras, dict):
        extras = {}
    role = extras.get("role", message.role)
    if role not in _ROLES:
        role = MessageRole.USER.value
    if "blocks" in extras:
        blocks = extras["blocks"]
    elif isinstance(message.content, str):
        blocks = [{"block_type": "text", "text": message.content}]
    else:
        blocks = [b for b in map(_block, message.content) if b is not None]
    additional: dict[str, Any] = {}
    if message.tool_calls is not None:
        additional["tool_calls"] = message.tool_calls
    if message.tool_call_id is not None:
        additional["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        additional["name"] = message.name
    additional.update(extras.get("additional_kwargs") or {})
    return ChatMessage(role=role, blocks=blocks, additional_kwargs=additional)


def _messages(stored: list[Message]) -> list[ChatMessage]:
    return [from_store(m) for m in stored]


class ConvStoreChatStore(BaseChatStore):
    """A LlamaIndex chat store whose keys are conversations of a conversation store.

    ``store``: a store instance or an alias of ``settings.CONVSTORE``.
    ``owner``: every call acts for this owner (another owner's conversations
    read as missing and are not listed; adding to one raises
    ``OwnerMismatchError``). ``ttl``: seconds (0 = never expire) for the
    conversations it writes; None leaves it to the store's default.

    See the module documentation for the store calls of each operation.
    Differences from ``SimpleChatStore``: ``get_keys`` lists the most recently
    updated conversation first (not in creation order), and
    ``delete_last_message`` of an empty conversation returns None (where
    ``SimpleChatStore`` raises ``IndexError``).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    store: BaseStore | str = Field(default="default", description="A store or its alias.")
    owner: str | None = Field(default=None, description="The owner every call acts for.")
    ttl: int | None = Field(default=None, description="TTL in seconds of written conversations.")
    _binding: StoreBinding = PrivateAttr()

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        self._binding = StoreBinding(self.store, owner=self.owner, ttl=self.ttl)

    @classmethod
    def class_name(cls) -> str:
        """The name LlamaIndex serialises this chat store under."""
        return "ConvStoreChatStore"

    @field_serializer("store")
    def _serialize_store(self, store: BaseStore | str) -> str | None:
        return store.alias if isinstance(store, BaseStore) else store

    @property
    def binding(self) -> StoreBinding:
        """The store, owner and TTL this chat store calls with."""
        return self._binding

    # -- sync ------------------------------------------------------------------------------

    def set_messages(self, key: str, messages: list[ChatMessage]) -> None:
        """Replace the conversation's messages (one ``save``)."""
        self._binding.save(key, [to_store(m) for m in messages])

    def get_messages(self, key: str, **kwargs: Any) -> list[ChatMessage]:
        """The conversation's messages, oldest first; [] when missing (one ``load``)."""
        return _messages(self._binding.load(key) or [])

    def add_message(self, key: str, message: ChatMessage, idx: int | None = None) -> None:
        """Append the message, or insert it before position ``idx`` (as ``list.insert``)."""
        stored = to_store(message)
        if idx is None:
            self._binding.append(key, [stored])
            return
        length = self._binding.length(key)
        start = _insert_position(idx, length or 0)
        if length is None or start >= length:
            self._binding.append(key, [stored])
            return
        tail = self._binding.pop(key, length - start)
        self._binding.append(key, [stored, *tail])

    def delete_messages(self, key: str) -> list[ChatMessage] | None:
        """Delete the conversation; its messages, or None when it was missing."""
        found = self._binding.load(key)
        if found is None:
            return None
        self._binding.delete(key)
        return _messages(found)

    def delete_message(self, key: str, idx: int) -> ChatMessage | None:
        """Remove and return the message at ``idx`` (as ``list.pop``); None when out of range."""
        length = self._binding.length(key)
        if length is None or idx >= length:
            return None
        removed = self._binding.pop(key, length - _pop_position(idx, length))
        if not removed:
            return None
        self._binding.append(key, removed[1:])
        return from_store(removed[0])

    def delete_last_message(self, key: str) -> ChatMessage | None:
        """Remove and return the last message (one ``pop``); None when there is none."""
        removed = self._binding.pop(key)
        return from_store(removed[0]) if removed else None

    def get_keys(self) -> list[str]:
        """The ids of the live conversations (this owner's, with an owner)."""
        return self._binding.conversation_ids()

    # -- async -----------------------------------------------------------------------------

    async def aset_messages(self, key: str, messages: list[ChatMessage]) -> None:
        """Async :meth:`set_messages`."""
        await self._binding.asave(key, [to_store(m) for m in messages])

    async def aget_messages(self, key: str, **kwargs: Any) -> list[ChatMessage]:
        """Async :meth:`get_messages`."""
        return _messages(await self._binding.aload(key) or [])

    async def async_add_message(
        self, key: str, message: ChatMessage, idx: int | None = None
    ) -> None:
        """Async :meth:`add_message`."""
        stored = to_store(message)
        if idx is None:
            await self._binding.aappend(key, [stored])
            return
        length = await self._binding.alength(key)
        start = _insert_position(idx, length or 0)
        if length is None or start >= length:
            await self._binding.aappend(key, [stored])
            return
        tail = await self._binding.apop(key, length - start)
        await self._binding.aappend(key, [stored, *tail])

    async def adelete_messages(self, key: str) -> list[ChatMessage] | None:
        """Async :meth:`delete_messages`."""
        found = await self._binding.aload(key)
        if found is None:
            return None
        await self._binding.adelete(key)
        return _messages(found)

    async def adelete_message(self, key: str, idx: int) -> ChatMessage | None:
        """Async :meth:`delete_message`."""
        length = await self._binding.alength(key)
        if length is None or idx >= length:
            return None
        removed = await self._binding.apop(key, length - _pop_position(idx, length))
        if not removed:
            return None
        await self._binding.aappend(key, removed[1:])
        return from_store(removed[0])

    async def adelete_last_message(self, key: str) -> ChatMessage | None:
        """Async :meth:`delete_last_message`."""
        removed = await self._binding.apop(key)
        return from_store(removed[0]) if removed else None

    async def aget_keys(self) -> list[str]:
        """Async :meth:`get_keys`."""
        return await self._binding.aconversation_ids()


def _insert_position(idx: int, length: int) -> int:
    """Where ``list.insert(idx, x)`` puts ``x`` in a list of ``length`` items."""
    return min(idx, length) if idx >= 0 else max(0, length + idx)


def _pop_position(idx: int, length: int) -> int:
    """The position ``list.pop(idx)`` removes (``IndexError`` as ``list.pop`` raises it)."""
    position = idx if idx >= 0 else length + idx
    if position < 0:
        raise IndexError("pop index out of range" if length else "pop from empty list")
    return position


__all__ = ["METADATA_KEY", "ConvStoreChatStore", "from_store", "to_store"]
