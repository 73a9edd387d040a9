"""Helpers of the admin section: store selection, transcript windows, display values, audit.

Kept apart from :mod:`django_convstore.admin` so the ``ModelAdmin`` only
holds views and permissions. Nothing here touches the ORM for conversations;
the only database writes are Django's own ``LogEntry`` rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from django.contrib.admin.models import LogEntry
from django.core.exceptions import ImproperlyConfigured
from django.utils.text import slugify
from django.utils.timesince import timeuntil
from django.utils.translation import gettext as _

from .backends.base import BaseStore
from .conf import DEFAULT_STORE_ALIAS
from .exceptions import BackendError, BackendUnavailableError, ConvStoreError
from .handler import stores
from .models import Conversation as ConversationAnchor
from .types import Conversation, ConversationMetadata, Message

#: Query parameters of the admin pages.
STORE_VAR = "store"
SEARCH_VAR = "q"
OWNER_VAR = "owner"
PAGE_VAR = "p"
UPTO_VAR = "upto"

#: Roles with their own bubble style; any other role gets ``convstore-role-other`` too.
STYLED_ROLES = frozenset({"user", "assistant", "system", "tool"})


# -- store selection -----------------------------------------------------------------------


def configured_aliases() -> list[str]:
    """Every alias of ``settings.CONVSTORE``, the default one first."""
    aliases = list(stores.settings)
    if DEFAULT_STORE_ALIAS in aliases:
        aliases.remove(DEFAULT_STORE_ALIAS)
        aliases.insert(0, DEFAULT_STORE_ALIAS)
    return aliases


@dataclass
class StoreChoice:
    """The store an admin page works on, chosen with ``?store=alias``.

    ``store`` is None when the alias is unknown or its store could not be
    built; ``error`` then says why, in words fit for the page.
    """

    alias: str
    aliases: list[str]
    store: BaseStore | None = None
    error: str = ""
    requested_unknown: bool = False
    backends: dict[str, str] = field(default_factory=dict)

    @property
    def is_multi(self) -> bool:
        """Whether more than one store is configured (the selector is shown then)."""
        return len(self.aliases) > 1

    def params(self, **extra: Any) -> dict[str, str]:
        """Query parameters that keep this store selected, plus ``extra`` (None/"" dropped)."""
        params: dict[str, str] = {}
        if self.is_multi:
            params[STORE_VAR] = self.alias
        for key, value in extra.items():
            if value is not None and value != "":
                params[key] = str(value)
        return params

    def query(self, **extra: Any) -> str:
        """``?store=alias&...`` (or an empty string when there is nothing to keep)."""
        params = self.params(**extra)
        return f"?{urlencode(params)}" if params else ""

    def selector(self) -> list[dict[str, Any]]:
        """The store selector's entries: alias, backend name, query string, selected."""
        return [
            {
                "alias": alias,
                "backend": self.backends.get(alias, ""),
                "query": f"?{urlencode({STORE_VAR: alias})}",
                "selected": alias == self.alias,
            }
            for alias in self.aliases
        ]


def _backend_label(alias: str) -> str:
    config = stores.settings.get(alias)
    if not isinstance(config, Mapping):
        return ""
    if "type" in config:
        return str(config["type"])
    backend = config.get("BACKEND", "")
    name = backend if isinstance(backend, str) else getattr(backend, "__name__", "")
    return name.rsplit(".", 1)[-1]


def choose_store(requested: str | None) -> StoreChoice:
    """Resolve ``?store=`` to a configured store; unknown aliases fall back to the default."""
    aliases = configured_aliases()
    backends = {alias: _backend_label(alias) for alias in aliases}
    fallback = aliases[0] if aliases else DEFAULT_STORE_ALIAS
    if requested and requested in aliases:
        choice = StoreChoice(alias=requested, aliases=aliases, backends=backends)
    else:
        choice = StoreChoice(
            alias=fallback,
            aliases=aliases,
            backends=backends,
            requested_unknown=bool(requested),
        )
    try:
        choice.store = stores[choice.alias]
    except ImproperlyConfigured as exc:
        choice.error = _("The store “%(alias)s” is misconfigured: %(error)s") % {
            "alias": choice.alias,
            "error": exc,
        }
    return choice


def describe_error(exc: ConvStoreError, alias: str) -> tuple[str, int]:
    """A message for the page and an HTTP status for a store failure."""
    if isinstance(exc, BackendUnavailableError):
        text = _("The store “%(alias)s” is unavailable right now: %(error)s")
        status = 503
    elif isinstance(exc, BackendError):
        text = _("The store “%(alias)s” answered with an error: %(error)s")
        status = 502
    else:
        text = _("The store “%(alias)s” failed: %(error)s")
        status = 503
    return text % {"alias": alias, "error": exc}, status


# -- display values ------------------------------------------------------------------------


def ms_to_datetime(value: int | None) -> datetime | None:
    """An aware UTC datetime for a millisecond timestamp (templates localise it)."""
    if value is None:
        return None
    return datetime.fromtimestamp(value / 1000, tz=timezone.utc)


def expires_in(metadata: ConversationMetadata, now: datetime | None = None) -> str:
    """ "never", "expired" or a human duration such as "1 hour, 59 minutes"."""
    expires_at = ms_to_datetime(metadata.expires_at)
    if expires_at is None:
        return _("never")
    now = now or datetime.now(tz=timezone.utc)
    if expires_at <= now:
        return _("expired")
    return timeuntil(expires_at, now)


def describe_ttl(ttl: int | None) -> str:
    """A TTL in words: "never expires" or "3600 seconds (1 hour)"."""
    if not ttl:
        return _("never expires")
    now = datetime.now(tz=timezone.utc)
    human = timeuntil(datetime.fromtimestamp(now.timestamp() + ttl, tz=timezone.utc), now)
    return _("%(seconds)s seconds (%(human)s)") % {"seconds": ttl, "human": human}


def pretty_json(value: Any) -> str:
    """Indented, key-sorted JSON for ``<pre>`` blocks (non-ASCII kept readable)."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def role_classes(role: str) -> str:
    """CSS classes of a message bubble: ``convstore-role-<role>`` (+ ``-other`` when unstyled)."""
    slug = slugify(role) or "unknown"
    classes = f"convstore-msg convstore-role-{slug}"
    if role not in STYLED_ROLES:
        classes += " convstore-role-other"
    return classes


# -- transcript windows --------------------------------------------------------------------


@dataclass
class TranscriptWindow:
    """One page of a transcript: messages ``start`` (inclusive) to ``end`` (exclusive).

    Positions are absolute (0 = the first message ever), so a page link keeps
    showing the same messages while new ones are appended.
    """

    conversation: Conversation
    start: int
    end: int
    size: int
    rows: list[dict[str, Any]]

    @property
    def total(self) -> int:
        """How many messages the conversation has."""
        return self.conversation.metadata.message_count

    @property
    def has_older(self) -> bool:
        return self.start > 0

    @property
    def has_newer(self) -> bool:
        return self.end < self.total

    @property
    def older_end(self) -> int:
        """``upto`` of the previous (older) page."""
        return max(self.start, min(self.size, self.total))

    @property
    def newer_end(self) -> int:
        """``upto`` of the next (newer) page."""
        return min(self.total, self.end + self.size)

    @property
    def first_end(self) -> int:
        """``upto`` of the oldest page."""
        return min(self.size, self.total)


def _message_rows(messages: list[Message], first_position: int) -> list[dict[str, Any]]:
    return [
        {
            "position": first_position + index + 1,
            "id": message.id,
            "role": message.role,
            "classes": role_classes(message.role),
            "content": message.content,
            "timestamp": ms_to_datetime(message.timestamp),
            "metadata_json": pretty_json(message.metadata) if message.metadata else "",
        }
        for index, message in enumerate(messages)
    ]


def load_transcript_window(
    store: BaseStore, conversation_id: str, *, upto: int | None, size: int
) -> TranscriptWindow | None:
    """Load one page of messages through ``load(last=N)``; None when missing or expired.

    The store API reads windows from the end (``last=N`` returns the newest N
    messages and ``message_count`` the total), so:

    - the default page (``upto`` None) is the newest ``size`` messages: one
      ``load(last=size)``, whatever the conversation's length;
    - an older page ``[start, end)`` needs ``load(last=total - start)``, of
      which the first ``end - start`` messages are kept. That first asks
      ``load(last=0)`` for the total (metadata only). Its cost grows with the
      distance from the newest message, never with pages the admin skipped
      *towards* the end.
    """
    if upto is None:
        conversation = store.load(conversation_id, last=size)
        if conversation is None:
            return None
        total = conversation.metadata.message_count
        start = max(0, total - len(conversation.messages))
        return TranscriptWindow(
            conversation=conversation,
            start=start,
            end=total,
            size=size,
            rows=_message_rows(conversation.messages, start),
        )
    head = store.load(conversation_id, last=0)
    if head is None:
        return None
    total = head.metadata.message_count
    end = max(min(upto, total), min(size, total))
    start = max(0, end - size)
    conversation = store.load(conversation_id, last=total - start) if total else head
    if conversation is None:
        return None
    total = conversation.metadata.message_count
    messages = conversation.messages[: end - start]
    start = max(0, total - len(conversation.messages))
    end = start + len(messages)
    conversation.messages = messages
    return TranscriptWindow(
        conversation=conversation,
        start=start,
        end=end,
        size=size,
        rows=_message_rows(messages, start),
    )


# -- audit -----------------------------------------------------------------------------------


def log_conversation_actions(
    user_id: Any, conversation_ids: Iterable[str], action_flag: int, change_message: str = ""
) -> None:
    """Write admin ``LogEntry`` rows for conversations (which are not ORM rows).

    Uses the ``Conversation`` anchor model's content type and the conversation
    id as ``object_id``. Django 5.1 replaced ``log_action()`` with
    ``log_actions()``; both are handled.
    """
    anchors = [ConversationAnchor(conversation_id=cid) for cid in conversation_ids]
    if not anchors:
        return
    manager: Any = LogEntry.objects
    if hasattr(manager, "log_actions"):
        manager.log_actions(user_id, anchors, action_flag, change_message)
        return
    from django.contrib.contenttypes.models import ContentType  # Django < 5.1

    content_type_id = ContentType.objects.get_for_model(
        ConversationAnchor, for_concrete_model=False
    ).pk
    for anchor in anchors:
        manager.log_action(
            user_id=user_id,
            content_type_id=content_type_id,
            object_id=anchor.pk,
            object_repr=str(anchor),
            action_flag=action_flag,
            change_message=change_message,
        )
