"""The store contract every backend implements, with its shared semantics.

Public methods validate their input (see :mod:`django_convstore.validation`)
and resolve defaults, then call a backend primitive of the same name with a
leading underscore. A backend therefore only ever sees clean values, and every
backend rejects bad input identically, before anything is written.

Each public method has an async twin with an ``a`` prefix (``asave``,
``aload`` …) that runs it through :func:`asgiref.sync.sync_to_async`, as
Django's cache does; a backend may override the twins natively.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any, ClassVar

from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured

from .. import validation
from ..types import Conversation, ConversationMetadata, Message, Page, StoreStats

DEFAULT_NAMESPACE = "aikit"
MAX_PAGE_SIZE = 1000
_CONFIG_KEYS = frozenset({"BACKEND", "LOCATION", "TTL", "NAMESPACE", "OPTIONS"})

MessageInput = Message | Mapping[str, Any]

_sentinel = object()


def remaining_ttl(metadata: ConversationMetadata, now: int) -> int:
    """Seconds left before ``metadata`` expires, rounded like Redis ``TTL``; -1 = never."""
    expires_at = metadata.expires_at
    if expires_at is None:
        return -1
    return max(0, (expires_at - now + 500) // 1000)


class BaseStore:
    """The conversation store contract.

    ``location`` and ``params`` come from one ``settings.CONVSTORE`` entry
    (``params`` holds ``TTL``, ``NAMESPACE`` and ``OPTIONS``), exactly as
    Django's cache backends receive ``LOCATION`` and the rest of ``CACHES``.
    Building a store never opens a connection; the first operation does.
    """

    #: Short backend name used in error messages.
    backend_name: ClassVar[str] = "base"
    #: ``OPTIONS`` keys the backend understands; anything else is a configuration error.
    option_names: ClassVar[frozenset[str]] = frozenset()
    #: Importable modules the backend needs, with the pip extra that provides them.
    required_modules: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: Whether ``stores.close_all()`` should run for this backend when a request finishes.
    closes_on_request_finished: ClassVar[bool] = False

    def __init__(
        self,
        location: str = "",
        params: Mapping[str, Any] | None = None,
        *,
        alias: str | None = None,
    ) -> None:
        self.alias = alias
        self.location = location or ""
        params = dict(params or {})
        unknown = set(params) - _CONFIG_KEYS
        if unknown:
            raise self.configuration_error(
                f"unknown key(s) {', '.join(sorted(unknown))}; "
                f"expected some of {', '.join(sorted(_CONFIG_KEYS))}."
            )
        self.default_ttl = self._parse_ttl(params.get("TTL"))
        self.namespace = self._parse_namespace(params.get("NAMESPACE", DEFAULT_NAMESPACE))
        options = params.get("OPTIONS")
        if options is None:
            options = {}
        if not isinstance(options, Mapping):
            raise self.configuration_error("OPTIONS must be a dict.")
        unknown_options = set(options) - self.option_names
        if unknown_options:
            allowed = ", ".join(sorted(self.option_names)) or "none"
            raise self.configuration_error(
                f"unknown OPTIONS {', '.join(sorted(map(str, unknown_options)))} for "
                f"{type(self).__name__} (allowed: {allowed})."
            )
        self.options: dict[str, Any] = dict(options)

    # -- configuration helpers ---------------------------------------------------------

    @property
    def display_alias(self) -> str:
        """The alias for messages (``<unnamed>`` for stores built outside settings)."""
        return self.alias or "<unnamed>"

    def configuration_error(self, message: str) -> ImproperlyConfigured:
        """An ``ImproperlyConfigured`` whose message names this store's alias."""
        return ImproperlyConfigured(f"CONVSTORE[{self.display_alias!r}]: {message}")

    def _parse_ttl(self, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.configuration_error(
                f"TTL must be None or an integer number of seconds >= 0, not {value!r}."
            )
        return value or None

    def _parse_namespace(self, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise self.configuration_error(f"NAMESPACE must be a non-empty string, not {value!r}.")
        return value

    def option_int(
        self, name: str, default: int | None, *, minimum: int = 0, allow_none: bool = False
    ) -> int | None:
        """Read an integer option, failing clearly when it is not one."""
        value = self.options.get(name, default)
        if value is None and allow_none:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.configuration_error(
                f"OPTIONS[{name!r}] must be an integer >= {minimum}, not {value!r}."
            )
        return value

    def option_number(self, name: str, default: float | None) -> float | None:
        """Read a positive number option (seconds), or None."""
        value = self.options.get(name, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise self.configuration_error(
                f"OPTIONS[{name!r}] must be a positive number, not {value!r}."
            )
        return float(value)

    def _resolve_ttl(self, ttl: Any) -> int | None:
        if ttl is None:
            return self.default_ttl
        return validation.validate_ttl(ttl)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} alias={self.display_alias!r} namespace={self.namespace!r}>"

    def __enter__(self) -> BaseStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the public contract -------------------------------------------------------------

    def save(
        self,
        conversation_id: str,
        messages: Iterable[MessageInput],
        *,
        ttl: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        owner: str | None = None,
    ) -> Conversation:
        """Replace the messages of a conversation, creating it when missing.

        Keeps ``created_at`` of an existing live conversation and sets
        ``updated_at`` to now. ``ttl=None`` applies the store's default TTL;
        ``ttl=0`` means never expire. ``metadata`` is merged over the existing
        custom metadata; ``owner=None`` keeps the existing owner.
        """
        cid = validation.validate_conversation_id(conversation_id)
        clean = validation.validate_messages(messages)
        resolved_ttl = self._resolve_ttl(ttl)
        clean_metadata = None if metadata is None else validation.validate_metadata(metadata)
        clean_owner = validation.validate_owner(owner)
        return self._save(cid, clean, ttl=resolved_ttl, metadata=clean_metadata, owner=clean_owner)

    def create(
        self,
        conversation_id: str,
        messages: Iterable[MessageInput],
        *,
        ttl: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        owner: str | None = None,
    ) -> Conversation | None:
        """Create a conversation unless a live one has this id (then None; nothing written).

        Atomic: of several simultaneous creates of one id exactly one returns
        the conversation, and its messages are the ones stored. A missing or
        expired conversation counts as absent (an expired one is replaced).
        ``ttl``, ``metadata`` and ``owner`` as in :meth:`save`: ``ttl=None``
        applies the store's default TTL, ``ttl=0`` means never expire.
        """
        cid = validation.validate_conversation_id(conversation_id)
        clean = validation.validate_messages(messages)
        resolved_ttl = self._resolve_ttl(ttl)
        clean_metadata = validation.validate_metadata(metadata)
        clean_owner = validation.validate_owner(owner)
        return self._create(
            cid, clean, ttl=resolved_ttl, metadata=clean_metadata, owner=clean_owner
        )

    def load(
        self, conversation_id: str, *, include_expired: bool = False, last: int | None = None
    ) -> Conversation | None:
        """The conversation, or None when missing or expired.

        ``last=N`` returns only the newest N messages (``message_count`` still
        counts them all). The result is a copy: changing it never changes the store.
        """
        cid = validation.validate_conversation_id(conversation_id)
        if last is not None:
            last = validation.validate_positive_int(last, "last", minimum=0)
        return self._load(cid, include_expired=bool(include_expired), last=last)

    def append(
        self,
        conversation_id: str,
        messages: Iterable[MessageInput],
        *,
        update_timestamp: bool = True,
    ) -> ConversationMetadata:
        """Append messages atomically; create the conversation when missing or expired.

        Concurrent appends never lose or duplicate a message, and the cost does
        not grow with the conversation's length. With ``update_timestamp``
        ``updated_at`` (and so the expiry) moves to now; without it neither moves.
        """
        cid = validation.validate_conversation_id(conversation_id)
        clean = validation.validate_messages(messages)
        return self._append(cid, clean, update_timestamp=bool(update_timestamp))

    def delete(self, conversation_id: str) -> bool:
        """Delete a conversation; True when something was deleted."""
        return self._delete(validation.validate_conversation_id(conversation_id))

    def clear(self) -> int:
        """Delete every conversation of this store (its namespace only); returns how many."""
        return self._clear()

    def list(self) -> builtins.list[str]:
        """Every live conversation id (newest ``updated_at`` first)."""
        return self._list()

    def list_conversations(
        self,
        *,
        owner: str | None = None,
        prefix: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page:
        """Live conversations' metadata, newest ``updated_at`` first, paginated.

        Filtered by ``owner`` and/or conversation id ``prefix``; never loads
        messages. ``limit`` is 1-1000.
        """
        clean_owner = validation.validate_owner(owner)
        clean_prefix = validation.validate_prefix(prefix)
        limit = validation.validate_positive_int(limit, "limit", minimum=1)
        if limit > MAX_PAGE_SIZE:
            raise validation.InvalidInputError("limit", f"must be at most {MAX_PAGE_SIZE}.")
        offset = validation.validate_positive_int(offset, "offset", minimum=0)
        return self._list_conversations(
            owner=clean_owner, prefix=clean_prefix, limit=limit, offset=offset
        )

    def iter_conversations(
        self, *, include_expired: bool = False, batch_size: int = 100
    ) -> Iterator[Conversation]:
        """Stream whole conversations (for migration and export), ``batch_size`` at a time."""
        batch_size = validation.validate_positive_int(batch_size, "batch_size", minimum=1)
        return self._iter_conversations(
            include_expired=bool(include_expired), batch_size=batch_size
        )

    def put(self, conversation: Conversation | Mapping[str, Any]) -> None:
        """Write a conversation exactly as given: timestamps, TTL, owner and metadata included.

        Replaces any conversation with the same id. Used by migration and restore.
        """
        self._put(validation.validate_conversation(conversation))

    def exists(self, conversation_id: str) -> bool:
        """True when the conversation exists and has not expired."""
        return self._exists(validation.validate_conversation_id(conversation_id))

    def get_stats(self) -> StoreStats:
        """Counts of live (and, where known, expired) conversations and messages."""
        return self._get_stats()

    def cleanup(self) -> int:
        """Remove expired conversations and stale index entries; returns how many conversations."""
        return self._cleanup()

    def get_ttl(self, conversation_id: str) -> int:
        """Remaining seconds; -1 when it never expires; -2 when missing or expired."""
        return self._get_ttl(validation.validate_conversation_id(conversation_id))

    def set_ttl(self, conversation_id: str, ttl: int) -> bool:
        """Set the TTL (0 = never expire) and count it as an update; False when missing."""
        cid = validation.validate_conversation_id(conversation_id)
        if ttl is None:
            raise validation.InvalidInputError("ttl", "is required (use 0 for no expiry).")
        return self._set_ttl(cid, validation.validate_ttl(ttl))

    def update_metadata(
        self, conversation_id: str, metadata: Mapping[str, Any], *, replace: bool = False
    ) -> ConversationMetadata | None:
        """Merge ``metadata`` over the custom metadata of a live conversation, atomically.

        With ``replace=True`` the custom metadata becomes exactly ``metadata``.
        Messages are never touched, so appends running at the same time are
        never lost. Counts as an update, like :meth:`set_ttl`: ``updated_at``
        becomes now (so the expiry slides). Returns the new metadata, or None
        when the conversation is missing or expired.
        """
        cid = validation.validate_conversation_id(conversation_id)
        if metadata is None:
            raise validation.InvalidInputError("metadata", "is required (a dict).")
        clean = validation.validate_metadata(metadata)
        return self._update_metadata(cid, clean, replace=bool(replace))

    def close(self) -> None:
        """Release connections. Idempotent; a closed store reopens lazily on next use."""
        self._close()

    # -- async twins ---------------------------------------------------------------------

    async def asave(
        self,
        conversation_id: str,
        messages: Iterable[MessageInput],
        *,
        ttl: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        owner: str | None = None,
    ) -> Conversation:
        """See :meth:`save`."""
        return await sync_to_async(self.save)(
            conversation_id, messages, ttl=ttl, metadata=metadata, owner=owner
        )

    async def acreate(
        self,
        conversation_id: str,
        messages: Iterable[MessageInput],
        *,
        ttl: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        owner: str | None = None,
    ) -> Conversation | None:
        """See :meth:`create`."""
        return await sync_to_async(self.create)(
            conversation_id, messages, ttl=ttl, metadata=metadata, owner=owner
        )

    async def aload(
        self, conversation_id: str, *, include_expired: bool = False, last: int | None = None
    ) -> Conversation | None:
        """See :meth:`load`."""
        return await sync_to_async(self.load)(
            conversation_id, include_expired=include_expired, last=last
        )

    async def aappend(
        self,
        conversation_id: str,
        messages: Iterable[MessageInput],
        *,
        update_timestamp: bool = True,
    ) -> ConversationMetadata:
        """See :meth:`append`."""
        return await sync_to_async(self.append)(
            conversation_id, messages, update_timestamp=update_timestamp
        )

    async def adelete(self, conversation_id: str) -> bool:
        """See :meth:`delete`."""
        return await sync_to_async(self.delete)(conversation_id)

    async def aclear(self) -> int:
        """See :meth:`clear`."""
        return await sync_to_async(self.clear)()

    async def alist(self) -> builtins.list[str]:
        """See :meth:`list`."""
        return await sync_to_async(self.list)()

    async def alist_conversations(
        self,
        *,
        owner: str | None = None,
        prefix: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page:
        """See :meth:`list_conversations`."""
        return await sync_to_async(self.list_conversations)(
            owner=owner, prefix=prefix, limit=limit, offset=offset
        )

    async def aiter_conversations(
        self, *, include_expired: bool = False, batch_size: int = 100
    ) -> AsyncIterator[Conversation]:
        """See :meth:`iter_conversations`."""
        iterator = await sync_to_async(self.iter_conversations)(
            include_expired=include_expired, batch_size=batch_size
        )

        def fetch() -> Any:
            return next(iterator, _sentinel)

        fetch_async = sync_to_async(fetch)
        while True:
            item = await fetch_async()
            if item is _sentinel:
                return
            yield item

    async def aput(self, conversation: Conversation | Mapping[str, Any]) -> None:
        """See :meth:`put`."""
        await sync_to_async(self.put)(conversation)

    async def aexists(self, conversation_id: str) -> bool:
        """See :meth:`exists`."""
        return await sync_to_async(self.exists)(conversation_id)

    async def aget_stats(self) -> StoreStats:
        """See :meth:`get_stats`."""
        return await sync_to_async(self.get_stats)()

    async def acleanup(self) -> int:
        """See :meth:`cleanup`."""
        return await sync_to_async(self.cleanup)()

    async def aget_ttl(self, conversation_id: str) -> int:
        """See :meth:`get_ttl`."""
        return await sync_to_async(self.get_ttl)(conversation_id)

    async def aset_ttl(self, conversation_id: str, ttl: int) -> bool:
        """See :meth:`set_ttl`."""
        return await sync_to_async(self.set_ttl)(conversation_id, ttl)

    async def aupdate_metadata(
        self, conversation_id: str, metadata: Mapping[str, Any], *, replace: bool = False
    ) -> ConversationMetadata | None:
        """See :meth:`update_metadata`."""
        return await sync_to_async(self.update_metadata)(
            conversation_id, metadata, replace=replace
        )

    async def aclose(self) -> None:
        """See :meth:`close`."""
        await sync_to_async(self.close)()

    # -- backend primitives (inputs already validated) -------------------------------------

    def _not_implemented(self, name: str) -> NotImplementedError:
        return NotImplementedError(f"subclasses of BaseStore must provide a {name}() method")

    def _save(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        ttl: int | None,
        metadata: dict[str, Any] | None,
        owner: str | None,
    ) -> Conversation:
        raise self._not_implemented("_save")

    def _create(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        ttl: int | None,
        metadata: dict[str, Any],
        owner: str | None,
    ) -> Conversation | None:
        raise self._not_implemented("_create")

    def _load(
        self, conversation_id: str, *, include_expired: bool, last: int | None
    ) -> Conversation | None:
        raise self._not_implemented("_load")

    def _append(
        self, conversation_id: str, messages: builtins.list[Message], *, update_timestamp: bool
    ) -> ConversationMetadata:
        raise self._not_implemented("_append")

    def _delete(self, conversation_id: str) -> bool:
        raise self._not_implemented("_delete")

    def _clear(self) -> int:
        raise self._not_implemented("_clear")

    def _list(self) -> builtins.list[str]:
        """Default: page through :meth:`_list_conversations`; override when cheaper."""
        ids: builtins.list[str] = []
        offset = 0
        while True:
            page = self._list_conversations(
                owner=None, prefix=None, limit=MAX_PAGE_SIZE, offset=offset
            )
            ids.extend(item.conversation_id for item in page.items)
            offset += len(page.items)
            if not page.items or offset >= page.total:
                return ids

    def _list_conversations(
        self, *, owner: str | None, prefix: str | None, limit: int, offset: int
    ) -> Page:
        raise self._not_implemented("_list_conversations")

    def _iter_conversations(
        self, *, include_expired: bool, batch_size: int
    ) -> Iterator[Conversation]:
        raise self._not_implemented("_iter_conversations")

    def _put(self, conversation: Conversation) -> None:
        raise self._not_implemented("_put")

    def _exists(self, conversation_id: str) -> bool:
        raise self._not_implemented("_exists")

    def _get_stats(self) -> StoreStats:
        raise self._not_implemented("_get_stats")

    def _cleanup(self) -> int:
        raise self._not_implemented("_cleanup")

    def _get_ttl(self, conversation_id: str) -> int:
        raise self._not_implemented("_get_ttl")

    def _set_ttl(self, conversation_id: str, ttl: int | None) -> bool:
        raise self._not_implemented("_set_ttl")

    def _update_metadata(
        self, conversation_id: str, metadata: dict[str, Any], *, replace: bool
    ) -> ConversationMetadata | None:
        raise self._not_implemented("_update_metadata")

    def _close(self) -> None:
        """Default: nothing to release."""
