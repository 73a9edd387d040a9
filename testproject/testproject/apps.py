"""The demo project's app: loads the demo conversations into memory stores, keeps titles."""

from __future__ import annotations

import threading
from typing import Any

from django.apps import AppConfig
from django.core.signals import request_started
from django.db import DatabaseError

from . import receivers

_seeded = threading.Event()
_seeding = threading.Lock()


def seed_memory_stores(**_kwargs: Any) -> None:
    """Load the demo conversations into every memory store, once per process.

    A memory store lives inside one process, so ``demo_setup`` (another
    process) cannot fill it for the server; the server does it on its first
    request instead. Until ``demo_setup`` has migrated the database there are
    no users to own them, and the next request tries again.
    """
    if _seeded.is_set():
        return
    from django.conf import settings

    from django_convstore import is_memory_store, stores

    from .demo_data import demo_owners, load_demo_conversations

    with _seeding:
        if _seeded.is_set():
            return
        try:
            owners = demo_owners()
        except DatabaseError:  # not migrated yet
            return
        for alias in settings.CONVSTORE:
            store = stores[alias]
            if is_memory_store(store):
                load_demo_conversations(store, owners)
        _seeded.set()


class DemoConfig(AppConfig):
    name = "testproject"
    verbose_name = "django-convstore demo"

    def ready(self) -> None:
        request_started.connect(seed_memory_stores, dispatch_uid="convstore-demo-seed-memory")
        receivers.connect()
