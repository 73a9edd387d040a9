"""Writes that may create a conversation (``save``, ``append``), run as the right owner.

Every store call of the API names the owner it acts for, and the store
decides atomically (see "Acting as an owner"): the API never checks first
and writes second. A write that may *create* a conversation needs one more
rule, because ``owner=None`` would create it without an owner. So
:func:`write_as` always starts as the requesting user's own owner:

- a missing (or expired) conversation is created for the user;
- the user's own conversation is written;
- someone else's (or an ownerless one) makes the store raise
  ``OwnerMismatchError`` and change nothing. Without the cross-owner
  ``change`` permission that is a 404. With it, the write is repeated on
  behalf of the conversation's owner, read just before: the store refuses
  again if the owner changed meanwhile (and the write is retried), and a
  conversation deleted meanwhile is created for the user.

So the API never moves a conversation to another owner, and creates
conversations only for the requesting user. The one exception is narrow: an
ownerless conversation (made outside the API) is written unscoped, so if it
is deleted in the instant between reading its owner and writing, the write
re-creates it ownerless, as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from rest_framework.exceptions import NotFound

from ..backends.base import BaseStore
from ..exceptions import OwnerMismatchError
from .exceptions import ConcurrentChange
from .permissions import OwnerScope

_T = TypeVar("_T")

#: How often a privileged write is retried when the owner keeps changing under it.
ATTEMPTS = 5


def write_as(
    scope: OwnerScope,
    store: BaseStore,
    conversation_id: str,
    write: Callable[[str | None], _T],
) -> _T:
    """Run ``write(owner)`` as the user, or for a permitted user on the owner's behalf."""
    own = scope.owner_id()
    try:
        return write(own)
    except OwnerMismatchError:
        if not scope.cross_owner("change"):
            raise NotFound() from None
    for _ in range(ATTEMPTS):
        head = store.load(conversation_id, last=0)
        # Missing now: the user's own write creates it. Else the owner's (None: unscoped, for an
        # ownerless conversation, which keeps it ownerless).
        owner = own if head is None else head.metadata.owner
        try:
            return write(owner)
        except OwnerMismatchError:
            continue
    raise ConcurrentChange()
