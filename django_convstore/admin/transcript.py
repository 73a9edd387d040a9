"""Transcript windows: one page of a conversation's messages, read from the end.

The store reads a conversation's newest N messages cheaply (``load(last=N)``),
so pages are addressed by absolute positions and read from the end; see
:func:`load_transcript_window`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..backends.base import BaseStore
from ..types import Conversation, Message
from .rendering import MessageView, message_view


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
    rows: list[MessageView]

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


def _message_rows(messages: list[Message], first_position: int) -> list[MessageView]:
    return [message_view(m, first_position + index + 1) for index, m in enumerate(messages)]


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
