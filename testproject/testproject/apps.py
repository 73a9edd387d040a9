"""The demo project's app: connects its signal receivers when Django starts."""

from __future__ import annotations

from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The ``testproject`` app (templates, management commands, signal receivers)."""

    name = "testproject"

    def ready(self) -> None:
        from . import receivers

        receivers.connect()
