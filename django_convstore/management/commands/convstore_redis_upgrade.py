"""``manage.py convstore_redis_upgrade``: move conversations written by 0.1 to the 0.2 layout.

Redis stores of 0.2 keep their data under other key names than 0.1 did, and
refuse to work while 0.1 data sits under their prefix. This command moves it,
conversation by conversation, exactly as it was; it can be stopped and run
again. See :mod:`django_convstore.backends.redis.legacy`.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...backends.redis import RedisStore
from ...backends.redis.legacy import upgrade
from ..aliases import check_aliases, configured_aliases, describe_error, get_store


class Command(BaseCommand):
    help = (
        "Move the conversations that django-convstore 0.1 wrote to Redis into the layout of "
        "this version, for every configured Redis store (or those named with --store). "
        "Safe to run again; exit status 1 when a conversation or a store failed."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--store",
            action="append",
            dest="stores",
            metavar="ALIAS",
            help="Upgrade only this store; repeat for several (default: every Redis store).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Only count what would be moved."
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=100,
            metavar="N",
            help="Conversations read per round trip (default 100).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        named = options["stores"]
        aliases = check_aliases(named or configured_aliases())
        problems: list[str] = []
        for alias in aliases:
            store = get_store(alias)
            if not isinstance(store, RedisStore):
                if named:
                    problems.append(alias)
                    self.stderr.write(f"{alias}: not a Redis store")
                continue
            try:
                report = upgrade(
                    store, batch_size=options["batch_size"], dry_run=options["dry_run"]
                )
            except Exception as exc:
                problems.append(alias)
                self.stderr.write(f"{alias}: failed: {describe_error(exc)}")
                continue
            verb = "would move" if options["dry_run"] else "moved"
            self.stdout.write(
                f"{alias}: {verb} {report.upgraded} conversations, dropped {report.expired} "
                f"expired, {len(report.failed)} failed"
            )
            for cid, reason in report.failed.items():
                self.stderr.write(f"{alias}: {cid!r}: {reason}")
            if report.failed:
                problems.append(alias)
        if problems:
            raise CommandError(
                f"{len(problems)} of {len(aliases)} stores failed: {', '.join(problems)}."
            )
