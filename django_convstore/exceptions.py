"""The errors django-convstore raises on purpose.

Configuration problems use Django's own ``ImproperlyConfigured``. Raw
``redis``, ``requests`` or database exceptions never escape the public API:
backends translate them into the classes below.
"""

from __future__ import annotations

from typing import Any


class ConvStoreError(Exception):
    """Base class of everything django-convstore raises on purpose."""


class InvalidInputError(ConvStoreError, ValueError):
    """Bad input: an id, message, TTL or metadata that breaks an input rule.

    ``field`` names the offending field (dotted path, e.g. ``messages.2.role``)
    and ``errors`` maps field paths to lists of messages, ready for a DRF
    ``ValidationError``.
    """

    def __init__(self, field: str, message: str, errors: dict[str, list[str]] | None = None):
        self.field = field
        self.message = message
        self.errors: dict[str, list[str]] = errors or {field: [message]}
        super().__init__(f"{field}: {message}")


class BackendUnavailableError(ConvStoreError):
    """The backend could not be reached in time.

    Raised for refused connections, timeouts and exhausted retries. The message
    names the backend, alias and address, never a password or API key.
    """

    def __init__(self, message: str, *, backend: str = "", alias: str = "", address: str = ""):
        self.backend = backend
        self.alias = alias
        self.address = address
        super().__init__(message)


class OwnerMismatchError(ConvStoreError):
    """A write acting for one owner met a conversation that belongs to someone else.

    Nothing was changed. The message never reveals the real owner.
    """


class BackendError(ConvStoreError):
    """The backend answered, but with an error the store cannot handle."""

    def __init__(self, message: str, *, status: int | None = None, detail: Any = None):
        self.status = status
        self.detail = detail
        super().__init__(message)


class BackendAuthError(BackendError):
    """The backend rejected the configured credentials."""


__all__ = [
    "BackendAuthError",
    "BackendError",
    "BackendUnavailableError",
    "ConvStoreError",
    "InvalidInputError",
    "OwnerMismatchError",
]
