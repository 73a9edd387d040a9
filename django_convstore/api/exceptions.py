"""API errors, and the translation of store errors into them.

Every store error becomes a DRF ``APIException`` with a short, safe detail:
bad input answers 400 with field errors, a conversation of another owner 404
(exactly like a missing one), an unreachable backend 503, a backend that
answered with an error 502. Backend addresses never reach the
client; the full error is logged on the ``django_convstore.api`` logger.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.settings import api_settings

from ..exceptions import (
    BackendError,
    BackendUnavailableError,
    InvalidInputError,
    OwnerMismatchError,
)

logger = logging.getLogger("django_convstore.api")

#: The deepest nesting of field errors in an answer (``messages`` > 0 > ``content`` > 0 > …).
MAX_ERROR_NESTING = 6


class RequestBodyTooLarge(APIException):
    """The request body is larger than ``CONVSTORE_API_MAX_BODY`` bytes."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "request_too_large"


class ConversationExists(APIException):
    """``POST conversations/`` named an id that is already taken."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "A conversation with this id already exists."
    default_code = "conversation_exists"


class ConcurrentChange(APIException):
    """A write kept meeting concurrent owner changes of its conversation; retrying may work."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The conversation changed concurrently; try again."
    default_code = "concurrent_change"


class StoreUnavailable(APIException):
    """The store's backend cannot be reached (or the store is misconfigured)."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The conversation store is unavailable; try again later."
    default_code = "store_unavailable"


class StoreError(APIException):
    """The store's backend answered with an error the store could not handle."""

    status_code = status.HTTP_502_BAD_GATEWAY
    default_detail = "The conversation store's backend answered with an error."
    default_code = "store_error"


def field_errors(errors: Mapping[str, list[str]]) -> dict[Any, Any]:
    """Nest dotted error paths the way DRF reports nested fields.

    ``{"messages.2.role": [...]}`` becomes ``{"messages": {2: {"role": [...]}}}``
    (list items keyed by index, as DRF's ``ListField`` does). An empty path
    goes under ``non_field_errors``; a path that collides with a shorter one
    stays flat. Nesting stops at :data:`MAX_ERROR_NESTING` levels: the rest of
    a longer path (a value nested too deeply) is one dotted key.
    """
    result: dict[Any, Any] = {}
    for path, messages in errors.items():
        segments = [p for p in path.split(".") if p]
        if len(segments) > MAX_ERROR_NESTING:
            cut = MAX_ERROR_NESTING - 1
            segments = [*segments[:cut], ".".join(segments[cut:])]
        parts: list[Any] = [int(p) if p.isdigit() else p for p in segments]
        if not parts:
            parts = [api_settings.NON_FIELD_ERRORS_KEY]
        node: Any = result
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            leaf = node.setdefault(parts[-1], [])
            if isinstance(leaf, list):
                leaf.extend(messages)
                continue
        result.setdefault(path, []).extend(messages)
    return result


def invalid_input(exc: InvalidInputError, *, strip: str = "") -> ValidationError:
    """A DRF ``ValidationError`` with the field errors of ``exc``.

    ``strip`` removes a leading path segment (``"message"`` when the whole
    body is one message, so its fields are reported at the top level).
    """
    errors: dict[str, list[str]] = {}
    for path, messages in exc.errors.items():
        if strip and (path == strip or path.startswith(f"{strip}.")):
            path = path[len(strip) + 1 :]
        errors.setdefault(path, []).extend(messages)
    return ValidationError(field_errors(errors))


def translate(exc: Exception) -> Exception:
    """The API exception for a store error; anything else is returned unchanged."""
    if isinstance(exc, InvalidInputError):
        return invalid_input(exc)
    if isinstance(exc, OwnerMismatchError):
        # Another owner's conversation answers exactly like a missing one.
        return NotFound()
    if isinstance(exc, BackendUnavailableError):
        logger.warning("conversation store unavailable: %s", exc)
        backend = f" ({exc.backend})" if exc.backend else ""
        return StoreUnavailable(
            f"The conversation store{backend} is unavailable; try again later."
        )
    if isinstance(exc, BackendError):
        logger.error("conversation store backend error: %s", exc, exc_info=exc)
        return StoreError()
    if isinstance(exc, ImproperlyConfigured):
        logger.error("conversation store misconfigured: %s", exc, exc_info=exc)
        return StoreUnavailable("The conversation store is not configured correctly.")
    return exc
