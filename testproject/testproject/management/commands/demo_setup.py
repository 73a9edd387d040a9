"""Prepare the demo: migrate, create the demo users, load the demo conversations."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from django_convstore import ConvStoreError, is_memory_store, stores

from ...demo_data import DEMO_USERS, demo_owners, load_demo_conversations


class Command(BaseCommand):
    help = "Migrate, create the demo users and load the demo conversations (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        user_model = get_user_model()
        for username, password, staff in DEMO_USERS:
            user, created = user_model.objects.get_or_create(
                username=username, defaults={"is_staff": staff, "is_superuser": staff}
            )
            if created or not user.check_password(password):
                user.set_password(password)
                user.save()
        owners = demo_owners()
        for alias in settings.CONVSTORE:
            store = stores[alias]
            if is_memory_store(store):
                # A memory store lives in one process: the server loads it on its first request.
                self.stdout.write(f"{alias}: loaded by the server on its first request (memory)")
                continue
            try:
                loaded = load_demo_conversations(store, owners)
            except ConvStoreError as exc:
                self.stderr.write(f"{alias}: could not load demo conversations: {exc}")
                continue
            self.stdout.write(f"{alias}: {loaded} demo conversations loaded")
        address = os.environ.get("DEMO_ADDR", "127.0.0.1:8000")
        base = f"http://{address}"
        self.stdout.write(
            self.style.SUCCESS(
                "\nThe demo is ready.\n"
                f"  Start here:  {base}/  (what to try, the users)\n"
                f"  Chat page:   {base}/chat/\n"
                f"  Admin:       {base}/admin/django_convstore/conversation/\n"
                f"  REST API:    {base}/api/conversations/\n"
                f"  API docs:    {base}/api/docs/\n"
                "  Users: alice / alice and bob / bob (each sees only their own "
                "conversations), admin / admin (superuser).\n"
            )
        )
