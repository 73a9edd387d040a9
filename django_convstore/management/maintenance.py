"""Store-wide chores shared by the commands: counting expired data and finding one owner's data."""

from __future__ import annotations

from collections.abc import Iterator

from ..backends.base import MAX_PAGE_SIZE, BaseStore
from ..clock import now_ms
from ..types import Conversation


def count_expired(store: BaseStore) -> int:
    """How many expired conversations ``cleanup()`` would remove, without removing any.

    Uses ``get_stats().expired_conversations`` where the backend reports it;
    otherwise streams ``iter_conversations(include_expired=True)`` and counts
    the expired ones.
    """
    expired = store.get_stats().expired_conversations
    if expired is not None:
        return expired
    now = now_ms()
    return sum(
        1
        for conversation in store.iter_conversations(include_expired=True)
        if conversation.metadata.is_expired(now)
    )


def owner_conversation_ids(store: BaseStore, owner: str) -> list[str]:
    """The ids of every live conversation of ``owner`` (paged through ``list_conversations``)."""
    ids: list[str] = []
    offset = 0
    while True:
        page = store.list_conversations(owner=owner, limit=MAX_PAGE_SIZE, offset=offset)
        ids.extend(item.conversation_id for item in page.items)
        offset += len(page.items)
        if not page.items or offset >= page.total:
            return ids


def erase_owner(store: BaseStore, owner: str) -> int:
    """Delete every live conversation of ``owner``; returns how many were deleted.

    Lists again after deleting, until a listing shows no id it has not tried,
    so conversations created meanwhile are caught too.
    """
    removed = 0
    attempted: set[str] = set()
    while True:
        fresh = [cid for cid in owner_conversation_ids(store, owner) if cid not in attempted]
        if not fresh:
            return removed
        for conversation_id in fresh:
            attempted.add(conversation_id)
            if store.delete(conversation_id):
                removed += 1


def select_conversations(
    store: BaseStore,
    *,
    owner: str | None = None,
    include_expired: bool = False,
    batch_size: int = 100,
) -> Iterator[Conversation]:
    """Whole conversations of the store, or of one owner, streamed.

    Live conversations of one owner are found through the owner listing (no
    full scan); with ``include_expired`` the whole store is streamed and
    filtered, since listings only show live conversations.
    """
    if owner is None:
        yield from store.iter_conversations(include_expired=include_expired, batch_size=batch_size)
    elif include_expired:
        for conversation in store.iter_conversations(include_expired=True, batch_size=batch_size):
            if conversation.metadata.owner == owner:
                yield conversation
    else:
        for conversation_id in owner_conversation_ids(store, owner):
            loaded = store.load(conversation_id)
            if loaded is not None:
                yield loaded
