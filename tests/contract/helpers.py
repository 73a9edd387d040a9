"""Small builders shared by the contract tests."""

from __future__ import annotations

from typing import Any

from django_convstore.clock import now_ms
from django_convstore.types import Conversation, ConversationMetadata, Message

#: Backends that keep an expired conversation until cleanup() (Redis drops it itself).
HOLDS_EXPIRED = {"memory": True, "database": True, "zerodb": True, "redis": False}


def msg(content: str, role: str = "user", **extra: Any) -> dict[str, Any]:
    """A message dict."""
    return {"role": role, "content": content, **extra}


def conversation(
    cid: str,
    contents: list[str],
    *,
    updated_at: int | None = None,
    created_at: int | None = None,
    ttl: int | None = None,
    owner: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Conversation:
    """A whole conversation for ``put`` (timestamps default to now)."""
    now = now_ms()
    updated = now if updated_at is None else updated_at
    messages = [
        Message(
            id=f"{cid}-m{i}",
            role="user" if i % 2 == 0 else "assistant",
            content=c,
            timestamp=updated - 1000 + i,
        )
        for i, c in enumerate(contents)
    ]
    return Conversation(
        conversation_id=cid,
        messages=messages,
        metadata=ConversationMetadata(
            conversation_id=cid,
            created_at=created_at if created_at is not None else updated - 5000,
            updated_at=updated,
            message_count=len(messages),
            ttl=ttl,
            owner=owner,
            metadata=metadata or {},
        ),
    )


def expired_conversation(
    cid: str, contents: list[str] | None = None, **kwargs: Any
) -> Conversation:
    """A conversation whose 10-second TTL ran out a minute ago."""
    return conversation(
        cid,
        contents if contents is not None else ["old"],
        updated_at=now_ms() - 60_000,
        ttl=10,
        **kwargs,
    )
