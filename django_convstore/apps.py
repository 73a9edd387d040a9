"""Django app configuration for django-convstore."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConvStoreConfig(AppConfig):
    """Registers the system checks; the store handler needs no start-up work."""

    name = "django_convstore"
    verbose_name = _("Conversation store")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the checks)
