"""App settings with defaults, read lazily and re-read when tests change them.

Settings (all optional):

``CONVSTORE``
    Store aliases, like ``CACHES``. Missing: one ``default`` memory store.
``CONVSTORE_ROLES``
    The allowed message roles. Default ``("user", "assistant", "system", "tool",
    "function", "developer")``.
``CONVSTORE_MAX_BATCH``
    The most messages one save/append accepts. Default 1000.
``CONVSTORE_MAX_DEPTH``
    How deeply any JSON value given to the store (metadata, content parts,
    tool calls) may nest. Default 64.
``CONVSTORE_API_STORE``
    The alias the REST API serves. Default ``"default"``.
``CONVSTORE_API_MAX_BODY``
    The largest REST request body in bytes. Default 2.5 MB (Django's own
    ``DATA_UPLOAD_MAX_MEMORY_SIZE`` default).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

DEFAULT_STORE_ALIAS = "default"
MEMORY_BACKEND = "django_convstore.backends.memory.MemoryStore"

DEFAULTS: dict[str, Any] = {
    "CONVSTORE_ROLES": ("user", "assistant", "system", "tool", "function", "developer"),
    "CONVSTORE_MAX_BATCH": 1000,
    "CONVSTORE_MAX_DEPTH": 64,
    "CONVSTORE_API_STORE": DEFAULT_STORE_ALIAS,
    "CONVSTORE_API_MAX_BODY": 2_621_440,
}


class AppSettings:
    """Attribute access to the ``CONVSTORE_*`` settings, with defaults, cached.

    Usable before (or without) ``settings.configure()``: stores built with
    ``create_store`` in a plain script then get the defaults.
    """

    def __getattr__(self, name: str) -> Any:
        # Only called for names not cached yet: a read caches the value as an instance
        # attribute, so later reads (several per store call) cost a plain attribute lookup.
        setting = f"CONVSTORE_{name}"
        if setting not in DEFAULTS:
            raise AttributeError(name)
        if not settings.configured:
            return DEFAULTS[setting]
        value = getattr(settings, setting, DEFAULTS[setting])
        self.__dict__[name] = value
        return value

    def reload(self) -> None:
        """Forget cached values; the next access re-reads settings."""
        self.__dict__.clear()


app_settings = AppSettings()


@receiver(setting_changed)
def _reload_app_settings(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("CONVSTORE"):
        app_settings.reload()
