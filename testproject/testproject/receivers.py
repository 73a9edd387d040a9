"""The demo's signal receivers: every conversation gets a title from its first user message.

Connected by :class:`testproject.apps.DemoConfig` when Django starts. They show
what the store signals are for: code that reacts to writes from anywhere (the
REST API, the admin, an agent framework's adapter) without touching the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django_convstore.signals import conversation_saved, messages_appended
from django_convstore.types import ConversationMetadata, Message

#: The longest title kept (longer first messages are cut, with an ellipsis).
TITLE_LENGTH = 60


def _text(message: Message) -> str:
    """The text of a message: its content, or its parts' ``text`` (``input_text`` parts too)."""
    if isinstance(message.content, str):
        return message.content
    return " ".join(p["text"] for p in message.content if isinstance(p.get("text"), str))


def title_from(messages: Iterable[Message]) -> str | None:
    """The first user message's text on one line, at most ``TITLE_LENGTH`` characters."""
    for message in messages:
        if message.role != "user":
            continue
        text = " ".join(_text(message).split())
        if text:
            return text if len(text) <= TITLE_LENGTH else text[: TITLE_LENGTH - 1] + "…"
    return None


def keep_title(
    sender: type,
    *,
    store: Any,
    conversation_id: str,
    messages: list[Message],
    metadata: ConversationMetadata,
    **kwargs: Any,
) -> None:
    """Give an untitled conversation the title of the first user message just written.

    One ``update_metadata`` call, only while the conversation has no title
    (a conversation restored with ``put`` is left as it was).
    """
    if kwargs.get("operation") == "put" or "title" in metadata.metadata:
        return
    title = title_from(messages)
    if title is not None:
        store.update_metadata(conversation_id, {"title": title})


def connect() -> None:
    """Connect the demo's receivers (idempotent)."""
    messages_appended.connect(keep_title, dispatch_uid="demo-title-appended")
    conversation_saved.connect(keep_title, dispatch_uid="demo-title-saved")


def disconnect() -> None:
    """Disconnect what :func:`connect` connected."""
    messages_appended.disconnect(dispatch_uid="demo-title-appended")
    conversation_saved.disconnect(dispatch_uid="demo-title-saved")
