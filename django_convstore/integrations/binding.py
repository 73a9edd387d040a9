"""What every adapter shares: the store it writes to, the owner it acts for, its TTL.

A :class:`StoreBinding` turns each framework operation into one store call
(sync or async), so the store's atomicity and idempotency hold for the
framework too. Helpers here also tell which framework values our message
fields can carry as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import validation
from ..backends.base import BaseStore
from ..conf import app_settings
from ..exceptions import InvalidInputError
from ..handler import stores
from ..types import ConversationMetadata, Message

_KEEP = object()


def usable_id(value: Any) -> bool:
    """Whether ``value`` can be a message id as it is."""
    try:
        validation.validate_identifier(value, "id")
    except InvalidInputError:
        return False
    return True


def usable_text(value: Any) -> bool:
    """Whether ``value`` can be a message's ``name`` or ``tool_call_id`` as it is."""
    if not isinstance(value, str) or not value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def allowed_role(role: Any) -> bool:
    """Whether ``role`` is one of the roles this project allows (``CONVSTORE_ROLES``)."""
    return isinstance(role, str) and role in tuple(app_settings.ROLES)


def is_content_parts(value: Any) -> bool:
    """Whether ``value`` is a list our ``content`` keeps as it is (objects with a ``type``)."""
    return isinstance(value, list) and all(
        isinstance(part, dict) and isinstance(part.get("type"), str) and part["type"]
        for part in value
    )


def distinct(messages: Iterable[Message]) -> list[Message]:
    """The messages without repeats of an id (the first one stays), as one append wants them."""
    seen: set[str] = set()
    kept = []
    for message in messages:
        if message.id not in seen:
            seen.add(message.id)
            kept.append(message)
    return kept


class StoreBinding:
    """A store (instance or alias), an owner and a TTL, with the calls the adapters make.

    ``store``: a store instance, or an alias of ``settings.CONVSTORE`` looked
    up on every call (so each thread or async context gets its own instance,
    as with ``stores[alias]``). ``owner``: every call acts for this owner.
    ``ttl``: seconds (0 = never expire) given to the conversations the
    adapter writes; None leaves the TTL to the store (its default TTL when a
    conversation is created or replaced).
    """

    def __init__(self, store: BaseStore | str, *, owner: str | None, ttl: int | None) -> None:
        self._instance: BaseStore | None = None
        self._alias = ""
        if isinstance(store, BaseStore):
            self._instance = store
        elif isinstance(store, str):
            stores[store]  # fail now, naming the alias, when it is not configured
            self._alias = store
        else:
            raise TypeError(f"store must be a store or an alias, not {type(store).__name__}.")
        self.owner = validation.validate_owner(owner)
        self.ttl = ttl
        #: The TTL conversations must end up with (None = never expires), or _KEEP.
        self._wanted_ttl: Any = _KEEP if ttl is None else validation.validate_ttl(ttl)

    @property
    def store(self) -> BaseStore:
        """The store to call now."""
        return self._instance if self._instance is not None else stores[self._alias]

    @property
    def alias(self) -> str | None:
        """The store's alias (None for a store built outside ``settings.CONVSTORE``)."""
        return self._instance.alias if self._instance is not None else self._alias

    def _ttl_differs(self, meta: ConversationMetadata) -> bool:
        return self._wanted_ttl is not _KEEP and meta.ttl != self._wanted_ttl

    # -- sync ------------------------------------------------------------------------------

    def load(self, conversation_id: str, last: int | None = None) -> list[Message] | None:
        """The messages (or the newest ``last``); None when the conversation is missing."""
        found = self.store.load(conversation_id, last=last, owner=self.owner)
        return found.messages if found is not None else None

    def length(self, conversation_id: str) -> int | None:
        """How many messages the conversation holds (None when missing), reading none."""
        found = self.store.load(conversation_id, last=0, owner=self.owner)
        return found.metadata.message_count if found is not None else None

    def append(self, conversation_id: str, messages: list[Message]) -> None:
        """Append in one store call (none for no messages); then set the TTL if it differs.

        The TTL differs only when this append created the conversation (the
        store gave it its default TTL) or someone changed it since.
        """
        if not messages:
            return
        store = self.store
        meta = store.append(conversation_id, distinct(messages), owner=self.owner)
        if self._ttl_differs(meta):
            store.set_ttl(conversation_id, self.ttl or 0, owner=self.owner)

    def save(self, conversation_id: str, messages: list[Message]) -> None:
        """Replace the conversation's messages in one store call."""
        self.store.save(conversation_id, messages, ttl=self.ttl, owner=self.owner)

    def pop(self, conversation_id: str, count: int = 1) -> list[Message]:
        """Remove and return the last ``count`` messages (oldest first), atomically."""
        return self.store.pop(conversation_id, count, owner=self.owner)

    def delete(self, conversation_id: str) -> bool:
        """Delete the conversation; True when there was one."""
        return self.store.delete(conversation_id, owner=self.owner)

    def conversation_ids(self) -> list[str]:
        """Every live conversation id (this owner's only, when there is one)."""
        store = self.store
        if self.owner is None:
            return store.list()
        ids: list[str] = []
        while True:
            page = store.list_conversations(owner=self.owner, limit=1000, offset=len(ids))
            ids.extend(item.conversation_id for item in page.items)
            if not page.items or len(ids) >= page.total:
                return list(dict.fromkeys(ids))

    # -- async -----------------------------------------------------------------------------

    async def aload(self, conversation_id: str, last: int | None = None) -> list[Message] | None:
        """Async :meth:`load`."""
        found = await self.store.aload(conversation_id, last=last, owner=self.owner)
        return found.messages if found is not None else None

    async def alength(self, conversation_id: str) -> int | None:
        """Async :meth:`length`."""
        found = await self.store.aload(conversation_id, last=0, owner=self.owner)
        return found.metadata.message_count if found is not None else None

    async def aappend(self, conversation_id: str, messages: list[Message]) -> None:
        """Async :meth:`append`."""
        if not messages:
            return
        store = self.store
        meta = await store.aappend(conversation_id, distinct(messages), owner=self.owner)
        if self._ttl_differs(meta):
            await store.aset_ttl(conversation_id, self.ttl or 0, owner=self.owner)

    async def asave(self, conversation_id: str, messages: list[Message]) -> None:
        """Async :meth:`save`."""
        await self.store.asave(conversation_id, messages, ttl=self.ttl, owner=self.owner)

    async def apop(self, conversation_id: str, count: int = 1) -> list[Message]:
        """Async :meth:`pop`."""
        return await self.store.apop(conversation_id, count, owner=self.owner)

    async def adelete(self, conversation_id: str) -> bool:
        """Async :meth:`delete`."""
        return await self.store.adelete(conversation_id, owner=self.owner)

    async def aconversation_ids(self) -> list[str]:
        """Async :meth:`conversation_ids`."""
        store = self.store
        if self.owner is None:
            return await store.alist()
        ids: list[str] = []
        while True:
            page = await store.alist_conversations(owner=self.owner, limit=1000, offset=len(ids))
            ids.extend(item.conversation_id for item in page.items)
            if not page.items or len(ids) >= page.total:
                return list(dict.fromkeys(ids))
