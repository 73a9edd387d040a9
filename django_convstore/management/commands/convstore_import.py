"""``manage.py convstore_import``: write conversations from a JSON Lines file into a store."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...backends.base import BaseStore
from ...conf import DEFAULT_STORE_ALIAS
from ..aliases import describe_error, get_store
from ..jsonl import parse_line
from ..statistics import StatisticsRefresh


class Command(BaseCommand):
    help = (
        "Read conversations from a JSON Lines file written by convstore_export (or '-' for "
        "stdin) and put them into a store exactly as they are: ids, timestamps, TTL, owner and "
        "metadata. Conversations with the same id are replaced. Bad lines are reported and "
        "skipped; exit status 1 when any failed."
    )
    requires_system_checks: list[str] = []
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "file", metavar="FILE", nargs="?", default="-", help="The JSONL file ('-' = stdin)."
        )
        parser.add_argument(
            "--store",
            default=DEFAULT_STORE_ALIAS,
            metavar="ALIAS",
            help="The store to write to (default: 'default').",
        )
        parser.add_argument(
            "--skip-existing",
            action="store_true",
            help="Leave conversations whose id already exists in the store untouched.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Read and validate, but write nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options["store"]
        store = get_store(alias)
        path = options["file"]
        stdin: TextIO = options.get("stdin") or sys.stdin
        try:
            if path == "-":
                counts = self._import(stdin, store, options)
            else:
                with open(path, encoding="utf-8") as handle:
                    counts = self._import(handle, store, options)
        except OSError as exc:
            raise CommandError(f"could not read {path}: {describe_error(exc)}") from exc
        imported, seen, failed, skipped = counts
        verb = "would import" if options["dry_run"] else "imported"
        line = f"{verb} {imported}/{seen} conversations into {alias!r}, {failed} failed"
        if skipped:
            line += f", {skipped} skipped (already in the store)"
        self.stdout.write(line)
        if failed:
            raise CommandError(f"{failed} conversations failed to import. Fix them and run again.")

    def _import(
        self, lines: Iterable[str], store: BaseStore, options: dict[str, Any]
    ) -> tuple[int, int, int, int]:
        imported = seen = failed = skipped = 0
        statistics = StatisticsRefresh(store)
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            seen += 1
            where = f"line {number}"
            try:
                conversation = parse_line(line)
                where += f" ({conversation.conversation_id!r})"
                if options["skip_existing"] and store.exists(conversation.conversation_id):
                    skipped += 1
                    continue
                if not options["dry_run"]:
                    store.put(conversation)
                    statistics.wrote()
            except Exception as exc:
                failed += 1
                self.stderr.write(f"{where}: {describe_error(exc)}")
                continue
            imported += 1
        statistics.finish()
        return imported, seen, failed, skipped
