"""The store contract every backend implements, with its shared semantics.

Public methods validate their input (see :mod:`django_convstore.validation`)
and resolve defaults, then call a backend primitive of the same name with a
leading underscore. A backend therefore only ever sees clean values, and every
backend rejects bad input identically, before anything is written.

Each public method has an async twin with an ``a`` prefix (``asave``,
``aload`` …) that validates the same way and awaits an async primitive
(``_asave`` …). Those default to the sync primitive run through
:func:`asgiref.sync.sync_to_async`, as Django's cache does; a backend
overrides them natively (Redis on ``redis.asyncio``).

Every method that names a conversation takes ``owner=``: the call then acts
for that owner, and the backend enforces it inside its atomic step (see
"Acting as an owner" in the docs). Successful writes send the signals of
:mod:`django_convstore.signals`.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured

from .. import signals, validation
from ..types import Conversation, ConversationMetadata, Message, Page, StoreStats

if TYPE_CHECKING:
    from django.dispatch import Signal

DEFAULT_NAMESPACE = "aikit"
MAX_PAGE_SIZE = 1000
_CONFIG_KEYS = frozenset({"BACKEND", "LOCATION", "TTL", "NAMESPACE", "OPTIONS"})

MessageInput = Message | Mapping[str, Any]

_sentinel = object()
_T = TypeVar("_T")


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
        #: Accept the TypeScript original's message shape too (``toolCalls``, ``sessionId`` …,
        #: see :func:`~django_convstore.validation.original_message`). Set by ``create_store``
        #: for stores configured in the original's ``{"type": ...}`` form.
        self.original_messages = False

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

    # -- input preparation (shared by the sync and async methods) ---------------------------

    def _prepare_write(
        self,
        conversation_id: str,
        messages: Iterable[MessageInput],
        ttl: Any,
        metadata: Mapping[str, Any] | None,
        owner: Any,
    ) -> tuple[str, builtins.list[Message], int | None, dict[str, Any] | None, str | None]:
        cid = validation.validate_conversation_id(conversation_id)
        clean = validation.validate_messages(messages, original=self.original_messages)
        resolved_ttl = self._resolve_ttl(ttl)
        clean_metadata = None if metadata is None else validation.validate_metadata(metadata)
        return cid, clean, resolved_ttl, clean_metadata, validation.validate_owner(owner)

    def _prepare_load(
        self, conversation_id: str, last: Any, owner: Any
    ) -> tuple[str, int | None, str | None]:
        cid = validation.validate_conversation_id(conversation_id)
        if last is not None:
            last = validation.validate_positive_int(last, "last", minimum=0)
        return cid, last, validation.validate_owner(owner)

    def _prepare_id(self, conversation_id: str, owner: Any) -> tuple[str, str | None]:
        return (
            validation.validate_conversation_id(conversation_id),
            validation.validate_owner(owner),
        )

    def _prepare_list(
        self, owner: Any, prefix: Any, limit: Any, offset: Any
    ) -> tuple[str | None, str | None, int, int]:
        clean_owner = validation.validate_owner(owner)
        clean_prefix = validation.validate_prefix(prefix)
        limit = validation.validate_positive_int(limit, "limit", minimum=1)
        if limit > MAX_PAGE_SIZE:
            raise validation.InvalidInputError("limit", f"must be at most {MAX_PAGE_SIZE}.")
        offset = validation.validate_positive_int(offset, "offset", minimum=0)
        return clean_owner, clean_prefix, limit, offset

    def _prepare_set_ttl(self, ttl: Any) -> int | None:
        if ttl is None:
            raise validation.InvalidInputError("ttl", "is required (use 0 for no expiry).")
        return validation.validate_ttl(ttl)

    def _prepare_metadata(self, metadata: Any) -> dict[str, Any]:
        if metadata is None:
            raise validation.InvalidInputError("metadata", "is required (a dict).")
        return validation.validate_metadata(metadata)

    # -- signals ---------------------------------------------------------------------------

    def _signal_args(self, conversation_id: str, owner: str | None) -> dict[str, Any]:
        return {
            "store": self,
            "alias": self.alias,
            "conversation_id": conversation_id,
            "owner": owner,
        }

    def _saved(self, conversation: Conversation, operation: str) -> dict[str, Any]:
        return {
            **self._signal_args(conversation.conversation_id, conversation.metadata.owner),
            "messages": conversation.messages,
            "metadata": conversation.metadata,
            "operation": operation,
        }

    def _appended(
        self, cid: str, messages: builtins.list[Message], meta: ConversationMetadata
    ) -> dict[str, Any]:
        return {**self._signal_args(cid, meta.owner), "messages": messages, "metadata": meta}

    def _popped(
        self, cid: str, owner: str | None, removed: builtins.list[Message]
    ) -> dict[str, Any]:
        return {
            **self._signal_args(cid, owner),
            "messages": removed,
            "count": len(removed),
            "metadata": None,
        }

    def _truncated(self, cid: str, meta: ConversationMetadata, removed: int) -> dict[str, Any]:
        return {
            **self._signal_args(cid, meta.owner),
            "messages": None,
            "count": removed,
            "metadata": meta,
        }

    def _listened(self, signal: Signal) -> bool:
        # ``receivers`` first: an empty list is the common case and much cheaper to test.
        return bool(signal.receivers) and signal.has_listeners(type(self))

    def _notify(self, signal: Signal, name: str, kwargs: dict[str, Any]) -> None:
        signals.send(signal, name, type(self), **kwargs)

    async def _anotify(self, signal: Signal, name: str, kwargs: dict[str, Any]) -> None:
        await signals.asend(signal, name, type(self), **kwargs)

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
        custom metadata. Message ids must be distinct.

        ``owner``: None acts unscoped and keeps the existing owner. With an
        owner, a missing (or expired) conversation is created for that owner,
        and an existing one of another owner (or none) is left unchanged and
        :class:`~django_convstore.exceptions.OwnerMismatchError` is raised.
        ``save`` never changes an owner.
        """
        cid, clean, ttl_, meta, owner_ = self._prepare_write(
            conversation_id, messages, ttl, metadata, owner
        )
        result = self._save(cid, clean, ttl=ttl_, metadata=meta, owner=owner_)
        if self._listened(signals.conversation_saved):
            self._notify(
                signals.conversation_saved, "conversation_saved", self._saved(result, "save")
            )
        return result

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
        expired conversation counts as absent (an expired one is replaced,
        whoever owned it). ``ttl``, ``metadata`` and ``owner`` as in
        :meth:`save`: the new conversation belongs to ``owner``.
        """
        cid, clean, ttl_, meta, owner_ = self._prepare_write(
            conversation_id, messages, ttl, metadata, owner
        )
        result = self._create(cid, clean, ttl=ttl_, metadata=meta or {}, owner=owner_)
        if result is not None and self._listened(signals.conversation_saved):
            self._notify(
                signals.conversation_saved, "conversation_saved", self._saved(result, "create")
            )
        return result

    def load(
        self,
        conversation_id: str,
        *,
        include_expired: bool = False,
        last: int | None = None,
        owner: str | None = None,
    ) -> Conversation | None:
        """The conversation, or None when missing or expired.

        ``last=N`` returns only the newest N messages (``message_count`` still
        counts them all). The result is a copy: changing it never changes the
        store. With ``owner``, another owner's (or an ownerless) conversation
        is None, and its messages are never read.
        """
        cid, last_, owner_ = self._prepare_load(conversation_id, last, owner)
        return self._load(cid, include_expired=bool(include_expired), last=last_, owner=owner_)

    def append(
        self,
        conversation_id: str,
        messages: Iterable[MessageInput],
        *,
        update_timestamp: bool = True,
        owner: str | None = None,
    ) -> ConversationMetadata:
        """Append messages atomically; create the conversation when missing or expired.

        Concurrent appends never lose or duplicate a message, and the cost does
        not grow with the conversation's length. Idempotent: messages whose id
        the conversation already holds are skipped, so a retried append never
        duplicates (an append that adds nothing changes nothing). With
        ``update_timestamp`` ``updated_at`` (and so the expiry) moves to now;
        without it neither moves. With ``owner``, a missing conversation is
        created for that owner, and another owner's raises
        :class:`~django_convstore.exceptions.OwnerMismatchError` (nothing written).
        """
        cid, clean, _, _, owner_ = self._prepare_write(
            conversation_id, messages, None, None, owner
        )
        meta = self._append(cid, clean, update_timestamp=bool(update_timestamp), owner=owner_)
        if self._listened(signals.messages_appended):
            self._notify(
                signals.messages_appended, "messages_appended", self._appended(cid, clean, meta)
            )
        return meta

    def pop(
        self, conversation_id: str, count: int = 1, *, owner: str | None = None
    ) -> builtins.list[Message]:
        """Remove and return the last ``count`` messages (oldest first), atomically.

        ``[]`` when the conversation is missing, expired, empty, or (with
        ``owner``) another owner's. ``updated_at`` becomes now when something
        was removed. The cost grows with ``count``, not with the length.
        """
        cid, owner_ = self._prepare_id(conversation_id, owner)
        count = validation.validate_positive_int(count, "count", minimum=1)
        removed = self._pop(cid, count, owner=owner_)
        if removed and self._listened(signals.messages_removed):
            self._notify(
                signals.messages_removed,
                "messages_removed",
                self._popped(cid, owner_, removed),
            )
        return removed

    def truncate(
        self, conversation_id: str, keep: int, *, owner: str | None = None
    ) -> ConversationMetadata | None:
        """Keep the first ``keep`` messages and drop the rest, atomically.

        The "edit an earlier message / regenerate" flow. Returns the new
        metadata, or None when missing, expired or (with ``owner``) another
        owner's. ``updated_at`` becomes now when something was dropped;
        ``keep`` at or beyond the length changes nothing. The cost grows with
        what is dropped, not with the length.
        """
        cid, owner_ = self._prepare_id(conversation_id, owner)
        keep = validation.validate_positive_int(keep, "keep", minimum=0)
        outcome = self._truncate(cid, keep, owner=owner_)
        if outcome is None:
            return None
        meta, removed = outcome
        if removed and self._listened(signals.messages_removed):
            self._notify(
                signals.messages_removed,
                "messages_removed",
                self._truncated(cid, meta, removed),
            )
        return meta

    def delete(self, conversation_id: str, *, owner: str | None = None) -> bool:
        """Delete a conversation; True when something was deleted.

        With ``owner``, another owner's (or an ownerless) conversation is left
        alone and False is returned.
        """
        cid, owner_ = self._prepare_id(conversation_id, owner)
        deleted = self._delete(cid, owner=owner_)
        if deleted and self._listened(signals.conversation_deleted):
            self._notify(
                signals.conversation_deleted,
                "conversation_deleted",
                self._signal_args(cid, owner_),
            )
        return deleted

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
        owner_, prefix_, limit_, offset_ = self._prepare_list(owner, prefix, limit, offset)
        return self._list_conversations(owner=owner_, prefix=prefix_, limit=limit_, offset=offset_)

    def iter_conversations(
        self, *, include_expired: bool = False, batch_size: int = 100, owner: str | None = None
    ) -> Iterator[Conversation]:
        """Stream whole conversations (for migration and export), ``batch_size`` at a time.

        With ``owner``, only that owner's conversations.
        """
        batch_size = validation.validate_positive_int(batch_size, "batch_size", minimum=1)
        owner_ = validation.validate_owner(owner)
        return self._iter_conversations(
            include_expired=bool(include_expired), batch_size=batch_size, owner=owner_
        )

    def put(self, conversation: Conversation | Mapping[str, Any]) -> None:
        """Write a conversation exactly as given: timestamps, TTL, owner and metadata included.

        Replaces any conversation with the same id, whoever owns it: ``put``
        is for migration and restore (unscoped), and the only way to change
        an owner.
        """
        clean = validation.validate_conversation(conversation, original=self.original_messages)
        self._put(clean)
        if self._listened(signals.conversation_saved):
            self._notify(
                signals.conversation_saved, "conversation_saved", self._saved(clean, "put")
            )

    def exists(self, conversation_id: str, *, owner: str | None = None) -> bool:
        """True when the conversation exists, has not expired and (with ``owner``) is theirs."""
        cid, owner_ = self._prepare_id(conversation_id, owner)
        return self._exists(cid, owner=owner_)

    def get_stats(self) -> StoreStats:
        """Counts of live (and, where known, expired) conversations and messages."""
        return self._get_stats()

    def cleanup(self) -> int:
        """Remove expired conversations and stale index entries; returns how many conversations."""
        return self._cleanup()

    def get_ttl(self, conversation_id: str, *, owner: str | None = None) -> int:
        """Remaining seconds; -1 when it never expires; -2 when missing or expired.

        With ``owner``, -2 for another owner's conversation too.
        """
        cid, owner_ = self._prepare_id(conversation_id, owner)
        return self._get_ttl(cid, owner=owner_)

    def set_ttl(self, conversation_id: str, ttl: int, *, owner: str | None = None) -> bool:
        """Set the TTL (0 = never expire) and count it as an update; False when missing.

        With ``owner``, False for another owner's conversation (nothing changed).
        """
        cid, owner_ = self._prepare_id(conversation_id, owner)
        return self._set_ttl(cid, self._prepare_set_ttl(ttl), owner=owner_)

    def update_metadata(
        self,
        conversation_id: str,
        metadata: Mapping[str, Any],
        *,
        replace: bool = False,
        owner: str | None = None,
    ) -> ConversationMetadata | None:
        """Merge ``metadata`` over the custom metadata of a live conversation, atomically.

        With ``replace=True`` the custom metadata becomes exactly ``metadata``.
        Messages are never touched, so appends running at the same time are
        never lost. Counts as an update, like :meth:`set_ttl`: ``updated_at``
        becomes now (so the expiry slides). Returns the new metadata, or None
        when the conversation is missing, expired or (with ``owner``) another
        owner's.
        """
        cid, owner_ = self._prepare_id(conversation_id, owner)
        clean = self._prepare_metadata(metadata)
        return self._update_metadata(cid, clean, replace=bool(replace), owner=owner_)

    def close(self) -> None:
        """Release connections. Idempotent; a closed store reopens lazily on next use."""
        self._close()

    # -- async twins ---------------------------------------------------------------------
    #
    # Each validates in the caller's event loop, awaits the backend's ``_a*``
    # primitive and sends the same signals as its sync twin. The ``_a*``
    # primitives default to the sync primitive run by ``_run_sync``; native
    # backends override them.

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
        cid, clean, ttl_, meta, owner_ = self._prepare_write(
            conversation_id, messages, ttl, metadata, owner
        )
        result = await self._asave(cid, clean, ttl=ttl_, metadata=meta, owner=owner_)
        if self._listened(signals.conversation_saved):
            await self._anotify(
                signals.conversation_saved, "conversation_saved", self._saved(result, "save")
            )
        return result

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
        cid, clean, ttl_, meta, owner_ = self._prepare_write(
            conversation_id, messages, ttl, metadata, owner
        )
        result = await self._acreate(cid, clean, ttl=ttl_, metadata=meta or {}, owner=owner_)
        if result is not None and self._listened(signals.conversation_saved):
            await self._anotify(
                signals.conversation_saved, "conversation_saved", self._saved(result, "create")
            )
        return result

    async def aload(
        self,
        conversation_id: str,
        *,
        include_expired: bool = False,
        last: int | None = None,
        owner: str | None = None,
    ) -> Conversation | None:
        """See :meth:`load`."""
        cid, last_, owner_ = self._prepare_load(conversation_id, last, owner)
        return await self._aload(
            cid, include_expired=bool(include_expired), last=last_, owner=owner_
        )

    async def aappend(
        self,
        conversation_id: str,
        messages: Iterable[MessageInput],
        *,
        update_timestamp: bool = True,
        owner: str | None = None,
    ) -> ConversationMetadata:
        """See :meth:`append`."""
        cid, clean, _, _, owner_ = self._prepare_write(
            conversation_id, messages, None, None, owner
        )
        meta = await self._aappend(
            cid, clean, update_timestamp=bool(update_timestamp), owner=owner_
        )
        if self._listened(signals.messages_appended):
            await self._anotify(
                signals.messages_appended, "messages_appended", self._appended(cid, clean, meta)
            )
        return meta

    async def apop(
        self, conversation_id: str, count: int = 1, *, owner: str | None = None
    ) -> builtins.list[Message]:
        """See :meth:`pop`."""
        cid, owner_ = self._prepare_id(conversation_id, owner)
        count = validation.validate_positive_int(count, "count", minimum=1)
        removed = await self._apop(cid, count, owner=owner_)
        if removed and self._listened(signals.messages_removed):
            await self._anotify(
                signals.messages_removed,
                "messages_removed",
                self._popped(cid, owner_, removed),
            )
        return removed

    async def atruncate(
        self, conversation_id: str, keep: int, *, owner: str | None = None
    ) -> ConversationMetadata | None:
        """See :meth:`truncate`."""
        cid, owner_ = self._prepare_id(conversation_id, owner)
        keep = validation.validate_positive_int(keep, "keep", minimum=0)
        outcome = await self._atruncate(cid, keep, owner=owner_)
        if outcome is None:
            return None
        meta, removed = outcome
        if removed and self._listened(signals.messages_removed):
            await self._anotify(
                signals.messages_removed,
                "messages_removed",
                self._truncated(cid, meta, removed),
            )
        return meta

    async def adelete(self, conversation_id: str, *, owner: str | None = None) -> bool:
        """See :meth:`delete`."""
        cid, owner_ = self._prepare_id(conversation_id, owner)
        deleted = await self._adelete(cid, owner=owner_)
        if deleted and self._listened(signals.conversation_deleted):
            await self._anotify(
                signals.conversation_deleted,
                "conversation_deleted",
                self._signal_args(cid, owner_),
            )
        return deleted

    async def aclear(self) -> int:
        """See :meth:`clear`."""
        return await self._run_sync(self._clear)

    async def alist(self) -> builtins.list[str]:
        """See :meth:`list`."""
        return await self._run_sync(self._list)

    async def alist_conversations(
        self,
        *,
        owner: str | None = None,
        prefix: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page:
        """See :meth:`list_conversations`."""
        owner_, prefix_, limit_, offset_ = self._prepare_list(owner, prefix, limit, offset)
        return await self._alist_conversations(
            owner=owner_, prefix=prefix_, limit=limit_, offset=offset_
        )

    async def aiter_conversations(
        self, *, include_expired: bool = False, batch_size: int = 100, owner: str | None = None
    ) -> AsyncIterator[Conversation]:
        """See :meth:`iter_conversations`."""
        iterator = self.iter_conversations(
            include_expired=include_expired, batch_size=batch_size, owner=owner
        )

        def fetch() -> Any:
            return next(iterator, _sentinel)

        while True:
            item = await self._run_sync(fetch)
            if item is _sentinel:
                return
            yield item

    async def aput(self, conversation: Conversation | Mapping[str, Any]) -> None:
        """See :meth:`put`."""
        clean = validation.validate_conversation(conversation, original=self.original_messages)
        await self._aput(clean)
        if self._listened(signals.conversation_saved):
            await self._anotify(
                signals.conversation_saved, "conversation_saved", self._saved(clean, "put")
            )

    async def aexists(self, conversation_id: str, *, owner: str | None = None) -> bool:
        """See :meth:`exists`."""
        cid, owner_ = self._prepare_id(conversation_id, owner)
        return await self._aexists(cid, owner=owner_)

    async def aget_stats(self) -> StoreStats:
        """See :meth:`get_stats`."""
        return await self._run_sync(self._get_stats)

    async def acleanup(self) -> int:
        """See :meth:`cleanup`."""
        return await self._run_sync(self._cleanup)

    async def aget_ttl(self, conversation_id: str, *, owner: str | None = None) -> int:
        """See :meth:`get_ttl`."""
        cid, owner_ = self._prepare_id(conversation_id, owner)
        return await self._aget_ttl(cid, owner=owner_)

    async def aset_ttl(self, conversation_id: str, ttl: int, *, owner: str | None = None) -> bool:
        """See :meth:`set_ttl`."""
        cid, owner_ = self._prepare_id(conversation_id, owner)
        return await self._aset_ttl(cid, self._prepare_set_ttl(ttl), owner=owner_)

    async def aupdate_metadata(
        self,
        conversation_id: str,
        metadata: Mapping[str, Any],
        *,
        replace: bool = False,
        owner: str | None = None,
    ) -> ConversationMetadata | None:
        """See :meth:`update_metadata`."""
        cid, owner_ = self._prepare_id(conversation_id, owner)
        clean = self._prepare_metadata(metadata)
        return await self._aupdate_metadata(cid, clean, replace=bool(replace), owner=owner_)

    async def aclose(self) -> None:
        """See :meth:`close`."""
        await self._aclose()

    # -- backend primitives (inputs already validated) -------------------------------------
    #
    # ``owner`` is the already-validated owner to act for (None: unscoped). A
    # primitive enforces it atomically: see "Acting as an owner" in the docs.

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
        self, conversation_id: str, *, include_expired: bool, last: int | None, owner: str | None
    ) -> Conversation | None:
        raise self._not_implemented("_load")

    def _append(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        update_timestamp: bool,
        owner: str | None,
    ) -> ConversationMetadata:
        raise self._not_implemented("_append")

    def _pop(
        self, conversation_id: str, count: int, *, owner: str | None
    ) -> builtins.list[Message]:
        raise self._not_implemented("_pop")

    def _truncate(
        self, conversation_id: str, keep: int, *, owner: str | None
    ) -> tuple[ConversationMetadata, int] | None:
        """The new metadata and how many messages were dropped, or None when missing."""
        raise self._not_implemented("_truncate")

    def _delete(self, conversation_id: str, *, owner: str | None) -> bool:
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
        self, *, include_expired: bool, batch_size: int, owner: str | None
    ) -> Iterator[Conversation]:
        raise self._not_implemented("_iter_conversations")

    def _put(self, conversation: Conversation) -> None:
        raise self._not_implemented("_put")

    def _exists(self, conversation_id: str, *, owner: str | None) -> bool:
        raise self._not_implemented("_exists")

    def _get_stats(self) -> StoreStats:
        raise self._not_implemented("_get_stats")

    def _cleanup(self) -> int:
        raise self._not_implemented("_cleanup")

    def _get_ttl(self, conversation_id: str, *, owner: str | None) -> int:
        raise self._not_implemented("_get_ttl")

    def _set_ttl(self, conversation_id: str, ttl: int | None, *, owner: str | None) -> bool:
        raise self._not_implemented("_set_ttl")

    def _update_metadata(
        self, conversation_id: str, metadata: dict[str, Any], *, replace: bool, owner: str | None
    ) -> ConversationMetadata | None:
        raise self._not_implemented("_update_metadata")

    def _close(self) -> None:
        """Default: nothing to release."""

    # -- async primitives: default to the sync ones through ``_run_sync`` ------------------

    #: ``thread_sensitive`` for ``sync_to_async`` in :meth:`_run_sync`: True runs every call
    #: on one shared thread (needed for Django's database connections); backends whose
    #: sync calls are thread-safe set False so concurrent calls overlap.
    async_thread_sensitive: ClassVar[bool] = True

    async def _run_sync(self, func: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        """Run a sync primitive from async code (``sync_to_async`` by default)."""
        return await sync_to_async(func, thread_sensitive=self.async_thread_sensitive)(
            *args, **kwargs
        )

    async def _asave(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        ttl: int | None,
        metadata: dict[str, Any] | None,
        owner: str | None,
    ) -> Conversation:
        return await self._run_sync(
            self._save, conversation_id, messages, ttl=ttl, metadata=metadata, owner=owner
        )

    async def _acreate(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        ttl: int | None,
        metadata: dict[str, Any],
        owner: str | None,
    ) -> Conversation | None:
        return await self._run_sync(
            self._create, conversation_id, messages, ttl=ttl, metadata=metadata, owner=owner
        )

    async def _aload(
        self, conversation_id: str, *, include_expired: bool, last: int | None, owner: str | None
    ) -> Conversation | None:
        return await self._run_sync(
            self._load, conversation_id, include_expired=include_expired, last=last, owner=owner
        )

    async def _aappend(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        update_timestamp: bool,
        owner: str | None,
    ) -> ConversationMetadata:
        return await self._run_sync(
            self._append, conversation_id, messages, update_timestamp=update_timestamp, owner=owner
        )

    async def _apop(
        self, conversation_id: str, count: int, *, owner: str | None
    ) -> builtins.list[Message]:
        return await self._run_sync(self._pop, conversation_id, count, owner=owner)

    async def _atruncate(
        self, conversation_id: str, keep: int, *, owner: str | None
    ) -> tuple[ConversationMetadata, int] | None:
        return await self._run_sync(self._truncate, conversation_id, keep, owner=owner)

    async def _adelete(self, conversation_id: str, *, owner: str | None) -> bool:
        return await self._run_sync(self._delete, conversation_id, owner=owner)

    async def _alist_conversations(
        self, *, owner: str | None, prefix: str | None, limit: int, offset: int
    ) -> Page:
        return await self._run_sync(
            self._list_conversations, owner=owner, prefix=prefix, limit=limit, offset=offset
        )

    async def _aput(self, conversation: Conversation) -> None:
        await self._run_sync(self._put, conversation)

    async def _aexists(self, conversation_id: str, *, owner: str | None) -> bool:
        return await self._run_sync(self._exists, conversation_id, owner=owner)

    async def _aget_ttl(self, conversation_id: str, *, owner: str | None) -> int:
        return await self._run_sync(self._get_ttl, conversation_id, owner=owner)

    async def _aset_ttl(self, conversation_id: str, ttl: int | None, *, owner: str | None) -> bool:
        return await self._run_sync(self._set_ttl, conversation_id, ttl, owner=owner)

    async def _aupdate_metadata(
        self, conversation_id: str, metadata: dict[str, Any], *, replace: bool, owner: str | None
    ) -> ConversationMetadata | None:
        return await self._run_sync(
            self._update_metadata, conversation_id, metadata, replace=replace, owner=owner
        )

    async def _aclose(self) -> None:
        await self._run_sync(self._close)
