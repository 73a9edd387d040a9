"""Turning store aliases given on the command line into stores, or a clear ``CommandError``."""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError

from ..backends.base import BaseStore
from ..handler import stores


def configured_aliases() -> list[str]:
    """The aliases of ``settings.CONVSTORE``, in settings order."""
    try:
        return list(stores.settings)
    except ImproperlyConfigured as exc:
        raise CommandError(str(exc)) from exc


def check_aliases(aliases: Iterable[str]) -> list[str]:
    """The given aliases without duplicates, or ``CommandError`` naming the configured ones."""
    configured = configured_aliases()
    result: list[str] = []
    for alias in aliases:
        if alias not in configured:
            raise CommandError(
                f"Unknown store alias {alias!r}; configured stores: {', '.join(configured)}."
            )
        if alias not in result:
            result.append(alias)
    return result


def get_store(alias: str) -> BaseStore:
    """The store of a configured alias; a misconfiguration becomes ``CommandError``."""
    check_aliases([alias])
    try:
        return stores[alias]
    except ImproperlyConfigured as exc:
        raise CommandError(str(exc)) from exc


def same_store(first: str, second: str) -> bool:
    """Whether two aliases certainly hold the same data.

    True for the same alias, and for two identical configurations, except
    memory stores without ``LOCATION`` (those are kept apart by alias).
    """
    if first == second:
        return True
    settings = stores.settings
    config = settings.get(first)
    if config is None or config != settings.get(second):
        return False
    backend = str(config.get("BACKEND", config.get("type", "")))
    is_memory = backend.endswith("MemoryStore") or backend == "memory"
    return not is_memory or bool(config.get("LOCATION") or config.get("location"))


def describe_error(exc: BaseException) -> str:
    """A one-line reason for an error, with its class name (no traceback)."""
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
