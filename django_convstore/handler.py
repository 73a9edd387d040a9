"""Per-alias store instances built from ``settings.CONVSTORE``, like ``django.core.cache.caches``.

``stores["alias"]`` returns that alias's store, one instance per alias per
thread (or async context). ``create_store(config)`` builds a store outside
settings, from the Django form or the TypeScript original's ``{"type": ...}``
form.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from asgiref.local import Local
from django.core import signals
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.connection import BaseConnectionHandler, ConnectionProxy
from django.utils.module_loading import import_string

from .backends.base import BaseStore
from .conf import DEFAULT_STORE_ALIAS, MEMORY_BACKEND

BACKENDS = {
    "memory": MEMORY_BACKEND,
    "redis": "django_convstore.backends.redis.RedisStore",
    "zerodb": "django_convstore.backends.zerodb.ZeroDBStore",
    "database": "django_convstore.backends.database.DatabaseStore",
}

# The original library's option names (snake_case and camelCase) → our config.
_COMMON_KEYS = {
    "default_ttl": ("TTL", None),
    "defaultTTL": ("TTL", None),
    "ttl": ("TTL", None),
    "namespace": ("NAMESPACE", None),
}
_TYPED_KEYS: dict[str, dict[str, tuple[str, str | None]]] = {
    "memory": {
        "max_conversations": ("OPTIONS", "MAX_CONVERSATIONS"),
        "maxConversations": ("OPTIONS", "MAX_CONVERSATIONS"),
        "location": ("LOCATION", None),
    },
    "redis": {
        "url": ("LOCATION", None),
        "location": ("LOCATION", None),
        "host": ("OPTIONS", "HOST"),
        "port": ("OPTIONS", "PORT"),
        "password": ("OPTIONS", "PASSWORD"),
        "db": ("OPTIONS", "DB"),
        "key_prefix": ("OPTIONS", "KEY_PREFIX"),
        "keyPrefix": ("OPTIONS", "KEY_PREFIX"),
        "cache": ("OPTIONS", "CACHE"),
        "socket_timeout": ("OPTIONS", "SOCKET_TIMEOUT"),
    },
    "zerodb": {
        "project_id": ("OPTIONS", "PROJECT_ID"),
        "projectId": ("OPTIONS", "PROJECT_ID"),
        "api_key": ("OPTIONS", "API_KEY"),
        "apiKey": ("OPTIONS", "API_KEY"),
        "table_name": ("OPTIONS", "TABLE_NAME"),
        "tableName": ("OPTIONS", "TABLE_NAME"),
        "base_url": ("OPTIONS", "BASE_URL"),
        "baseUrl": ("OPTIONS", "BASE_URL"),
        "timeout": ("OPTIONS", "TIMEOUT"),
        "max_retries": ("OPTIONS", "MAX_RETRIES"),
        "maxRetries": ("OPTIONS", "MAX_RETRIES"),
    },
    "database": {"database": ("OPTIONS", "DATABASE")},
}


def _from_original_form(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    store_type = config["type"]
    if store_type not in BACKENDS:
        raise ImproperlyConfigured(
            f"{name}: unknown store type {store_type!r}; "
            f"expected one of {', '.join(sorted(BACKENDS))}."
        )
    keys = {**_COMMON_KEYS, **_TYPED_KEYS[store_type]}
    result: dict[str, Any] = {"BACKEND": BACKENDS[store_type]}
    options: dict[str, Any] = {}
    for key, value in config.items():
        if key == "type":
            continue
        if key not in keys:
            allowed = ", ".join(["type", *sorted(keys)])
            raise ImproperlyConfigured(
                f"{name}: unknown option {key!r} for a {store_type} store (allowed: {allowed})."
            )
        target, option = keys[key]
        if option is None:
            result[target] = value
        else:
            options[option] = value
    if options:
        result["OPTIONS"] = options
    return result


def missing_modules(backend_cls: type[BaseStore]) -> list[tuple[str, str]]:
    """The ``(module, extra)`` pairs a backend needs that cannot be imported here."""
    return [
        (module, extra)
        for module, extra in backend_cls.required_modules
        if importlib.util.find_spec(module) is None
    ]


def create_store(config: Mapping[str, Any], *, alias: str | None = None) -> BaseStore:
    """Build a store from one configuration, outside ``settings.CONVSTORE``.

    Accepts the Django form (``{"BACKEND": ..., "LOCATION": ..., "TTL": ...,
    "NAMESPACE": ..., "OPTIONS": {...}}``) or the TypeScript original's form
    (``{"type": "memory", "max_conversations": 1000, "default_ttl": 3600}``);
    a store built from the original's form also accepts the original's message
    shape (``toolCalls``, ``toolCallId``; other keys such as ``sessionId`` are
    kept in the message's ``metadata``). Raises ``ImproperlyConfigured`` naming
    the alias and option for anything wrong.
    """
    name = f"CONVSTORE[{alias!r}]" if alias else "create_store()"
    if not isinstance(config, Mapping):
        raise ImproperlyConfigured(f"{name}: the configuration must be a dict, not {config!r}.")
    original = "type" in config
    if original:
        config = _from_original_form(config, name)
    params = dict(config)
    backend = params.pop("BACKEND", None)
    if not backend:
        raise ImproperlyConfigured(
            f"{name}: BACKEND is required (for example {MEMORY_BACKEND!r}), "
            "or give the original form with 'type'."
        )
    if isinstance(backend, str):
        try:
            backend_cls = import_string(backend)
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"{name}: could not import BACKEND {backend!r}: {exc}"
            ) from exc
    else:
        backend_cls = backend
    if not (isinstance(backend_cls, type) and issubclass(backend_cls, BaseStore)):
        raise ImproperlyConfigured(f"{name}: BACKEND {backend!r} is not a BaseStore subclass.")
    missing = missing_modules(backend_cls)
    if missing:
        modules = ", ".join(module for module, _ in missing)
        extras = ",".join(sorted({extra for _, extra in missing}))
        raise ImproperlyConfigured(
            f"{name}: {backend_cls.__name__} needs {modules}, which is not installed: "
            f"pip install 'django-convstore[{extras}]'."
        )
    location = params.pop("LOCATION", "")
    if location is None:
        location = ""
    if not isinstance(location, str):
        raise ImproperlyConfigured(f"{name}: LOCATION must be a string, not {location!r}.")
    built: BaseStore = backend_cls(location, params, alias=alias)
    built.original_messages = original
    return built


class StoreHandler(BaseConnectionHandler):
    """Per-alias, per-thread store instances, like Django's ``CacheHandler``."""

    settings_name = "CONVSTORE"
    exception_class = ImproperlyConfigured

    def configure_settings(self, settings: Any) -> dict[str, Any]:
        if settings is None:
            from django.conf import settings as django_settings

            settings = getattr(django_settings, self.settings_name, None)
        if not settings:
            return {DEFAULT_STORE_ALIAS: {"BACKEND": MEMORY_BACKEND}}
        if not isinstance(settings, Mapping):
            raise ImproperlyConfigured("settings.CONVSTORE must be a dict of store aliases.")
        return dict(settings)

    def __getitem__(self, alias: str) -> BaseStore:
        try:
            existing: BaseStore = getattr(self._connections, alias)
            return existing
        except AttributeError:
            if alias not in self.settings:
                configured = ", ".join(sorted(self.settings)) or "none"
                raise self.exception_class(
                    f"CONVSTORE[{alias!r}] is not configured (configured stores: {configured})."
                ) from None
        store = self.create_connection(alias)
        setattr(self._connections, alias, store)
        return store

    def create_connection(self, alias: str) -> BaseStore:
        return create_store(self.settings[alias], alias=alias)

    def reset(self) -> None:
        """Close every built store and re-read settings (used when settings change)."""
        if "settings" in self.__dict__:
            self.close_all()
        self._settings = None
        self.__dict__.pop("settings", None)
        self._connections = Local(self.thread_critical)

    def close_all(self) -> None:
        """Close every store built in this thread."""
        for store in self.all(initialized_only=True):
            store.close()


stores = StoreHandler()
store: BaseStore = ConnectionProxy(stores, DEFAULT_STORE_ALIAS)  # type: ignore[assignment]


def close_request_stores(**kwargs: Any) -> None:
    """Close the stores whose backend holds per-request connections."""
    for built in stores.all(initialized_only=True):
        if built.closes_on_request_finished:
            built.close()


signals.request_finished.connect(close_request_stores)


@receiver(setting_changed)
def _reset_stores(*, setting: str, **kwargs: Any) -> None:
    if setting == "CONVSTORE":
        stores.reset()
