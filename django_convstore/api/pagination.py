"""Limit/offset pagination over the store, never loading more than one page.

Both classes keep DRF's ``LimitOffsetPagination`` semantics (``limit`` and
``offset`` query parameters; a missing or invalid ``limit`` falls back to the
default, one above ``max_limit`` is cut to it; an invalid ``offset`` is 0) and
its response shape (``count``, ``next``, ``previous``, ``results``), but page
through ``store.list_conversations`` / ``store.load(last=...)`` instead of a
queryset.
"""

from __future__ import annotations

from rest_framework.exceptions import NotFound
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

from ..backends.base import MAX_PAGE_SIZE, BaseStore
from ..types import ConversationMetadata, Message

#: Offsets beyond this are treated as this (every page there is empty anyway).
MAX_OFFSET = 2**31 - 1


class StorePagination(LimitOffsetPagination):
    """Common parsing of ``limit``/``offset``; subclasses fetch the page."""

    default_limit = 50
    max_limit = MAX_PAGE_SIZE
    template = None

    limit: int
    offset: int

    def read_params(self, request: Request) -> tuple[int, int]:
        """Set and return ``limit`` and ``offset`` from the query string."""
        self.request = request
        self.limit = self.get_limit(request) or self.default_limit
        self.offset = min(self.get_offset(request) or 0, MAX_OFFSET)
        return self.limit, self.offset


class ConversationPagination(StorePagination):
    """Pages of conversation metadata from ``store.list_conversations``."""

    def paginate_store(
        self, store: BaseStore, request: Request, *, owner: str | None, prefix: str | None
    ) -> list[ConversationMetadata]:
        """One page, newest first; sets ``count`` for the response."""
        limit, offset = self.read_params(request)
        page = store.list_conversations(owner=owner, prefix=prefix, limit=limit, offset=offset)
        self.count = page.total
        return page.items


class MessagePagination(StorePagination):
    """A window of a conversation's messages, read with ``store.load(last=...)``.

    The store reads a conversation's newest N messages cheaply, so the window
    ``[offset, offset + limit)`` is read as the last ``count - offset``
    messages, cut to ``limit``: reading the end of a long conversation is
    cheap, reading its start costs as much as loading it.
    """

    default_limit = 100

    def paginate_messages(
        self,
        store: BaseStore,
        request: Request,
        conversation_id: str,
        message_count: int,
        *,
        owner: str | None = None,
    ) -> list[Message]:
        """The window; ``message_count`` is the count the caller just read as ``owner``."""
        limit, offset = self.read_params(request)
        self.count = message_count
        if offset >= message_count:
            return []
        conversation = store.load(conversation_id, last=message_count - offset, owner=owner)
        if conversation is None:
            raise NotFound()
        count = conversation.metadata.message_count
        first = count - len(conversation.messages)  # index of the first message read
        if first > offset:
            # Messages were appended since the count was read: read the whole conversation.
            conversation = store.load(conversation_id, owner=owner)
            if conversation is None:
                raise NotFound()
            count, first = conversation.metadata.message_count, 0
        self.count = count
        start = offset - first
        return conversation.messages[start : start + limit]
