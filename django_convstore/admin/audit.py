"""Audit: admin ``LogEntry`` rows for conversations, which are not ORM rows."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.admin.models import LogEntry

from ..models import Conversation as ConversationAnchor


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
