"""Prepare the demo: migrate, create the demo superuser, load demo conversations."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from django_convstore import ConvStoreError, stores

from ...demo_data import DEMO_CONVERSATIONS


class Command(BaseCommand):
    help = "Migrate, create the demo superuser and load demo conversations (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        username = os.environ.get("DEMO_USERNAME", "admin")
        password = os.environ.get("DEMO_PASSWORD", "admin")
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(
            username=username, defaults={"is_staff": True, "is_superuser": True}
        )
        if created or not user.check_password(password):
            user.set_password(password)
            user.save()
        owner = str(user.pk)
        for alias in settings.CONVSTORE:
            store = stores[alias]
            loaded = 0
            try:
                for demo in DEMO_CONVERSATIONS:
                    if store.exists(demo["conversation_id"]):
                        continue
                    messages = [{"role": r, "content": c} for r, c in demo["messages"]]
                    store.save(
                        demo["conversation_id"],
                        messages,
                        ttl=demo["ttl"],
                        metadata=demo["metadata"],
                        owner=owner,
                    )
                    loaded += 1
            except ConvStoreError as exc:
                self.stderr.write(f"{alias}: could not load demo conversations: {exc}")
                continue
            self.stdout.write(f"{alias}: {loaded} demo conversations loaded")
        address = os.environ.get("DEMO_ADDR", "127.0.0.1:8000")
        base = f"http://{address}"
        self.stdout.write(
            self.style.SUCCESS(
                "\nThe demo is ready.\n"
                f"  Chat page:   {base}/\n"
                f"  Admin:       {base}/admin/django_convstore/conversation/\n"
                f"  REST API:    {base}/api/conversations/\n"
                f"  API docs:    {base}/api/docs/\n"
                f"  Log in as {username!r} with password {password!r} "
                "(set DEMO_USERNAME / DEMO_PASSWORD to change).\n"
            )
        )
