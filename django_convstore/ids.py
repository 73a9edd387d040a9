"""Message ids: unique, URL-safe and cheap (about ten times faster than ``uuid4().hex``).

An id is 32 lowercase hex characters, like ``uuid4().hex``: 20 random
characters chosen once per process (chosen again in a forked child, so
processes never share them) followed by a 12-digit hex counter. Ids of one
process sort in creation order.
"""

from __future__ import annotations

import itertools
import os

_prefix = ""
_counter = itertools.count()


def _reseed() -> None:
    global _prefix, _counter
    _prefix = os.urandom(10).hex()
    _counter = itertools.count()


def new_message_id() -> str:
    """A fresh message id (32 hex characters, unique across processes)."""
    return f"{_prefix}{next(_counter):012x}"


_reseed()
os.register_at_fork(after_in_child=_reseed)

__all__ = ["new_message_id"]
