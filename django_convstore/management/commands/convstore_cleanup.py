"""``manage.py convstore_cleanup``: remove expired conversations, and erase one owner's data.

Meant for cron or Celery beat: every configured store by default, one line
per store, and the other stores are still cleaned when one fails (exit
status 1 then).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import validation
from ...exceptions import InvalidInputError
from ..aliases import check_aliases, configured_aliases, describe_error, get_store
from ..maintenance import count_expired, erase_owner


def _conversations(count: int, kind: str = "") -> str:
    noun = f"{kind} conversation" if kind else "conversation"
    return f"{count} {noun}{'' if count == 1 else 's'}"


class Command(BaseCommand):
    help = (
        "Remove expired conversations from every configured store (or those named with "
        "--store), printing one line per store. With --owner, also delete every conversation "
        "of that owner (GDPR erasure). Exit status 1 when a store failed; the others are "
        "still cleaned."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--store",
            action="append",
            dest="stores",
            metavar="ALIAS",
            help="Clean only this store; repeat for several (default: every configured store).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Only count what would be removed.",
        )
        parser.add_argument(
            "--owner",
            metavar="ID",
            help="Also delete every conversation of this owner, expired or not.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        aliases = check_aliases(options["stores"] or configured_aliases())
        owner = options["owner"]
        if owner is not None:
            try:
                owner = validation.validate_owner(owner)
            except InvalidInputError as exc:
                raise CommandError(f"--owner {exc.message}") from exc
        dry_run = options["dry_run"]
        failed: list[str] = []
        for alias in aliases:
            try:
                self._clean(alias, owner=owner, dry_run=dry_run)
            except Exception as exc:
                failed.append(alias)
                cause = exc.__cause__ if isinstance(exc, CommandError) else None
                self.stderr.write(f"{alias}: failed: {describe_error(cause or exc)}")
        if failed:
            raise CommandError(
                f"{len(failed)} of {len(aliases)} stores failed: {', '.join(failed)}."
            )

    def _clean(self, alias: str, *, owner: str | None, dry_run: bool) -> None:
        store = get_store(alias)
        verb = "would remove" if dry_run else "removed"
        expired = count_expired(store) if dry_run else store.cleanup()
        self.stdout.write(f"{alias}: {verb} {_conversations(expired, 'expired')}")
        if owner is not None:
            if dry_run:
                count = store.list_conversations(owner=owner, limit=1).total
            else:
                count = erase_owner(store, owner)
            self.stdout.write(f"{alias}: {verb} {_conversations(count)} of owner {owner!r}")
