"""System checks for ``settings.CONVSTORE`` and the ``CONVSTORE_*`` settings.

Ids: ``convstore.E001`` … for errors, ``convstore.W001`` … for warnings.
Building a store opens no connection, so these checks never touch a backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .backends.base import BaseStore
from .conf import DEFAULT_STORE_ALIAS, app_settings
from .handler import create_store, missing_modules

TAG = "convstore"


def _check_alias(alias: str, config: Any) -> list[CheckMessage]:
    obj = f"CONVSTORE[{alias!r}]"
    if not isinstance(config, Mapping):
        return [Error(f"{obj} must be a dict.", id="convstore.E002", obj=obj)]
    backend = config.get("BACKEND")
    if "type" in config and not backend:
        backend = None
    elif not backend:
        return [
            Error(
                f"{obj} has no BACKEND.",
                hint="Set BACKEND to e.g. 'django_convstore.backends.memory.MemoryStore'.",
                id="convstore.E003",
                obj=obj,
            )
        ]
    if isinstance(backend, str):
        try:
            backend_cls = import_string(backend)
        except ImportError as exc:
            return [
                Error(
                    f"{obj}: BACKEND {backend!r} cannot be imported: {exc}",
                    hint="Check the dotted path, and install the backend's extra, "
                    "e.g. pip install 'django-convstore[redis]'.",
                    id="convstore.E004",
                    obj=obj,
                )
            ]
        if isinstance(backend_cls, type) and issubclass(backend_cls, BaseStore):
            missing = missing_modules(backend_cls)
            if missing:
                return [
                    Error(
                        f"{obj}: {backend_cls.__name__} needs the '{module}' package, "
                        "which is not installed.",
                        hint=f"pip install 'django-convstore[{extra}]'",
                        id="convstore.E005",
                        obj=obj,
                    )
                    for module, extra in missing
                ]
    try:
        create_store(config, alias=alias)
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="convstore.E006", obj=obj)]
    return []


@register(TAG)
def check_stores(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Every alias of ``settings.CONVSTORE`` can be built, with its dependencies installed."""
    configured = getattr(settings, "CONVSTORE", None)
    if configured is None:
        return []
    if not isinstance(configured, Mapping):
        return [
            Error(
                "settings.CONVSTORE must be a dict mapping aliases to store configurations.",
                id="convstore.E001",
                obj="CONVSTORE",
            )
        ]
    messages: list[CheckMessage] = []
    if configured and DEFAULT_STORE_ALIAS not in configured:
        messages.append(
            Warning(
                "settings.CONVSTORE has no 'default' store, so django_convstore.store "
                "cannot be used.",
                hint="Add a 'default' alias.",
                id="convstore.W001",
                obj="CONVSTORE",
            )
        )
    for alias, config in configured.items():
        messages.extend(_check_alias(alias, config))
    return messages


@register(TAG)
def check_app_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``CONVSTORE_ROLES``, ``CONVSTORE_MAX_BATCH``, ``CONVSTORE_API_*`` have usable values."""
    messages: list[CheckMessage] = []
    roles = app_settings.ROLES
    if (
        isinstance(roles, str)
        or not isinstance(roles, list | tuple | set | frozenset)
        or not roles
        or not all(isinstance(role, str) and role for role in roles)
    ):
        messages.append(
            Error(
                "CONVSTORE_ROLES must be a non-empty list of role names.",
                id="convstore.E010",
                obj="CONVSTORE_ROLES",
            )
        )
    for name in ("MAX_BATCH", "API_MAX_BODY"):
        value = getattr(app_settings, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            messages.append(
                Error(
                    f"CONVSTORE_{name} must be a positive integer, not {value!r}.",
                    id="convstore.E011",
                    obj=f"CONVSTORE_{name}",
                )
            )
    api_store = app_settings.API_STORE
    configured = getattr(settings, "CONVSTORE", None) or {DEFAULT_STORE_ALIAS: {}}
    if isinstance(configured, Mapping) and api_store not in configured:
        messages.append(
            Error(
                f"CONVSTORE_API_STORE names {api_store!r}, which is not in settings.CONVSTORE.",
                hint=f"Use one of: {', '.join(sorted(configured))}.",
                id="convstore.E012",
                obj="CONVSTORE_API_STORE",
            )
        )
    return messages
