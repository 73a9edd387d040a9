"""Django signals sent by every store after a successful write.

Each is sent with ``sender`` = the store's class and these keyword arguments:

``conversation_saved``
    ``store``, ``alias``, ``conversation_id``, ``owner``, ``messages`` (the
    conversation's messages as written), ``metadata``
    (:class:`~django_convstore.types.ConversationMetadata`) and ``operation``
    (``"save"``, ``"create"`` or ``"put"``). Sent by ``save``, ``create``
    (only when it created the conversation) and ``put``.
``messages_appended``
    ``store``, ``alias``, ``conversation_id``, ``owner``, ``messages`` (the
    batch as given to ``append``; ids the conversation already held were
    skipped by the store), ``metadata`` (after the append).
``messages_removed``
    ``store``, ``alias``, ``conversation_id``, ``owner``, ``messages`` (what
    ``pop`` removed, oldest first; None for ``truncate``), ``count`` (how many
    were removed), ``metadata`` (after the removal, None after ``pop``).
    Sent only when something was removed.
``conversation_deleted``
    ``store``, ``alias``, ``conversation_id``, ``owner`` (the ``owner``
    argument of the call). Sent when ``delete`` deleted something;
    ``clear()`` and ``cleanup()`` send nothing.

``owner`` is the conversation's owner where the store returned it
(``save``, ``append``, ``truncate`` …), else the ``owner`` argument of the call.
Receivers run after the write, outside any lock or transaction of the store.
A receiver that raises is logged (logger ``django_convstore.signals``) and
never undoes or hides the write; the other receivers still run.
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal

logger = logging.getLogger("django_convstore.signals")

conversation_saved = Signal()
messages_appended = Signal()
messages_removed = Signal()
conversation_deleted = Signal()


def _log_failures(signal_name: str, results: list[tuple[Any, Any]]) -> None:
    for receiver, result in results:
        if isinstance(result, Exception):
            logger.error(
                "django-convstore: receiver %r of %s failed; the write stands.",
                receiver,
                signal_name,
                exc_info=(type(result), result, result.__traceback__),
            )


def send(signal: Signal, name: str, sender: type, **kwargs: Any) -> None:
    """Send ``signal`` robustly: a failing receiver is logged, never raised."""
    if not signal.receivers or not signal.has_listeners(sender):
        return
    _log_failures(name, signal.send_robust(sender, **kwargs))


async def asend(signal: Signal, name: str, sender: type, **kwargs: Any) -> None:
    """The async twin of :func:`send` (sync receivers run in a thread, as Django does)."""
    if not signal.receivers or not signal.has_listeners(sender):
        return
    _log_failures(name, await signal.asend_robust(sender, **kwargs))


__all__ = [
    "conversation_deleted",
    "conversation_saved",
    "messages_appended",
    "messages_removed",
]
