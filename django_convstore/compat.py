"""Bringing conversations over from the TypeScript original (``@ainative/ai-kit-core``).

The original's Redis store keeps each conversation as one JSON string under
``{keyPrefix}:{conversationId}`` (default prefix ``aikit:conversation``), with
camelCase keys::

    {"conversationId": "c1",
     "messages": [{"id": "1", "role": "user", "content": "Hi", "timestamp": 1700000000000}],
     "metadata": {"conversationId": "c1", "createdAt": ..., "updatedAt": ...,
                  "messageCount": 1, "ttl": 3600, "metadata": {"userId": "u1"}}}

:func:`conversation_from_original` turns one such document into a validated
:class:`~django_convstore.types.Conversation` (timestamps, TTL and custom
metadata kept), and :func:`import_original_redis` copies every conversation
of an original Redis store into any of our stores with ``put``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .backends.base import BaseStore
from .clock import now_ms
from .exceptions import BackendUnavailableError, ConvStoreError, InvalidInputError
from .types import Conversation
from .validation import validate_conversation

ORIGINAL_KEY_PREFIX = "aikit:conversation"


def _timestamp(value: Any) -> Any:
    """The original serialised ``Date`` objects as ISO strings; numbers pass through."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    return value


def conversation_from_original(
    document: Mapping[str, Any] | str | bytes,
    *,
    owner_key: str | None = None,
    expires_in_ms: int | None = None,
    now: int | None = None,
) -> Conversation:
    """A :class:`Conversation` from one stored document of the original library.

    Messages may use the original's shape (``toolCalls``, a single content
    object, ``sessionId`` and other keys without a field of their own, which
    are kept in the message's ``metadata``; see
    :func:`~django_convstore.validation.original_message`). ``owner_key``
    names a custom-metadata key (for example ``"userId"``) whose value becomes
    the conversation's ``owner``; an empty value means no owner.
    ``expires_in_ms`` is the key's remaining lifetime in Redis (``PTTL``), so a
    TTL set with the original's ``setTTL`` (which only expires the key) is
    kept: the conversation then expires at the same instant. Raises
    :class:`InvalidInputError` when the document is not a valid conversation.
    """
    if isinstance(document, str | bytes):
        try:
            document = json.loads(document)
        except ValueError as exc:
            raise InvalidInputError("document", f"is not JSON: {exc}.") from exc
    if not isinstance(document, Mapping):
        raise InvalidInputError("document", "must be a JSON object.")
    meta = document.get("metadata") or {}
    if not isinstance(meta, Mapping):
        raise InvalidInputError("metadata", "must be an object.")
    cid = document.get("conversationId", meta.get("conversationId"))
    custom = meta.get("metadata") or {}
    owner = custom.get(owner_key) if owner_key and isinstance(custom, Mapping) else None
    raw_messages = document.get("messages")
    if raw_messages is None:
        raw_messages = []
    if not isinstance(raw_messages, list):
        raise InvalidInputError("messages", "must be a list.")
    messages = [
        {key: _timestamp(value) if key == "timestamp" else value for key, value in message.items()}
        if isinstance(message, Mapping)
        else message
        for message in raw_messages
    ]
    created_at = _timestamp(meta.get("createdAt"))
    updated_at = _timestamp(meta.get("updatedAt", meta.get("createdAt")))
    ttl = meta.get("ttl") or None
    if expires_in_ms is not None and expires_in_ms > 0:
        ttl = _ttl_for_expiry(updated_at, (now_ms() if now is None else now) + expires_in_ms)
    return validate_conversation(
        {
            "conversation_id": cid,
            "messages": messages,
            "metadata": {
                "conversation_id": cid,
                "created_at": created_at,
                "updated_at": updated_at,
                "message_count": len(messages),
                "ttl": ttl,
                "owner": None if owner is None or owner == "" else str(owner),
                "metadata": custom,
            },
        },
        original=True,
    )


def _ttl_for_expiry(updated_at: Any, expires_at: int) -> Any:
    """The TTL (s) that makes a conversation updated at ``updated_at`` expire at ``expires_at``."""
    if isinstance(updated_at, datetime):
        updated_at = int(updated_at.timestamp() * 1000)
    if isinstance(updated_at, bool) or not isinstance(updated_at, int):
        return None  # validation reports the bad updatedAt itself
    return max(1, -(-(expires_at - updated_at) // 1000))


def is_original_document(value: Any) -> bool:
    """Whether a parsed Redis value looks like one of the original's conversation documents."""
    return isinstance(value, Mapping) and ("conversationId" in value or "messages" in value)


@dataclass
class ImportReport:
    """What :func:`import_original_redis` did."""

    imported: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def import_original_redis(
    url: str,
    target: BaseStore,
    *,
    key_prefix: str = ORIGINAL_KEY_PREFIX,
    owner_key: str | None = None,
    batch_size: int = 500,
    on_progress: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Copy every conversation of the original's Redis store at ``url`` into ``target``.

    Walks the original's keys with ``SCAN`` (a one-off migration; the stores
    themselves never scan), reads them with their remaining TTL in pipelined
    batches, and writes each with ``target.put``. Keys that are not the
    original's conversation documents (for example this project's own keys
    under the same prefix) are skipped, never reported as failures; documents
    that fail validation are reported in ``failed``, never half-written.
    """
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - the redis extra is missing
        raise ConvStoreError(
            "import_original_redis needs: pip install 'django-convstore[redis]'"
        ) from exc
    client = redis.Redis.from_url(url, socket_timeout=10)
    report = ImportReport()
    pattern = key_prefix.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?") + ":*"
    try:
        keys: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=batch_size):
            keys.append(key)
            if len(keys) >= batch_size:
                _import_batch(client, keys, key_prefix, owner_key, target, report)
                keys = []
                if on_progress:
                    on_progress(report)
        if keys:
            _import_batch(client, keys, key_prefix, owner_key, target, report)
    except redis.RedisError as exc:
        address = client.connection_pool.connection_kwargs.get("host", "?")
        raise BackendUnavailableError(
            f"could not read the original store at {address}: {type(exc).__name__}",
            backend="redis",
            address=str(address),
        ) from exc
    finally:
        client.close()
    return report


def _import_batch(
    client: Any,
    keys: list[bytes],
    key_prefix: str,
    owner_key: str | None,
    target: BaseStore,
    report: ImportReport,
) -> None:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.get(key)
        pipe.pttl(key)
    replies = pipe.execute(raise_on_error=False)
    now = now_ms()
    for key, value, pttl in zip(keys, replies[0::2], replies[1::2], strict=True):
        name = key.decode("utf-8", "replace")
        if not isinstance(value, bytes) or not value.startswith(b"{"):
            report.skipped += 1
            continue
        try:
            document = json.loads(value)
        except ValueError:
            document = None
        if not is_original_document(document):
            # Not one of the original's documents: this project's own keys under the
            # same prefix (message documents, offsets …) or foreign data. A document
            # that claims to be a conversation but is not valid JSON is a failure.
            if b'"conversationId"' in value[:4096] and document is None:
                report.failed[name] = "the document is not valid JSON"
            else:
                report.skipped += 1
            continue
        expires_in = pttl if isinstance(pttl, int) and pttl > 0 else None
        try:
            conversation = conversation_from_original(
                document, owner_key=owner_key, expires_in_ms=expires_in, now=now
            )
        except InvalidInputError as exc:
            report.failed[name] = str(exc)
            continue
        if f"{key_prefix}:{conversation.conversation_id}" != name:
            report.failed[name] = "the key does not match the document's conversationId"
            continue
        try:
            target.put(conversation)
        except ConvStoreError as exc:
            report.failed[name] = f"{type(exc).__name__}: {exc}"
            continue
        report.imported += 1
