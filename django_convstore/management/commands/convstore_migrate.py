"""``manage.py convstore_migrate SOURCE TARGET``: copy every conversation between two stores."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ..aliases import check_aliases, get_store, same_store
from ..migration import Migration, MigrationReport, estimate_total
from ..progress import Progress


def _plural(count: int, word: str = "conversation") -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


class Command(BaseCommand):
    help = (
        "Copy every conversation from the store SOURCE to the store TARGET (aliases of "
        "settings.CONVSTORE), keeping ids, messages, timestamps, TTL, owner and metadata. "
        "Failed conversations are reported and skipped; exit status 1 when anything failed. "
        "Safe to run again."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", metavar="SOURCE", help="Alias of the store to read.")
        parser.add_argument("target", metavar="TARGET", help="Alias of the store to write.")
        parser.add_argument(
            "--batch-size",
            type=int,
            default=100,
            metavar="N",
            help="Conversations the source reads per batch (default 100).",
        )
        parser.add_argument(
            "--include-expired",
            action="store_true",
            help="Also copy expired conversations the source still holds.",
        )
        parser.add_argument(
            "--skip-existing",
            action="store_true",
            help="Leave conversations whose id already exists in the target untouched.",
        )
        parser.add_argument(
            "--delete-source",
            action="store_true",
            help="Delete each source conversation once its copy was written and read back equal.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Read and count, but write nothing."
        )
        parser.add_argument(
            "--no-progress",
            action="store_true",
            help="No progress bar: print a plain progress line now and then instead.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        source_alias, target_alias = options["source"], options["target"]
        check_aliases([source_alias, target_alias])
        if same_store(source_alias, target_alias):
            raise CommandError(
                f"SOURCE and TARGET are the same store ({source_alias!r} and {target_alias!r})."
            )
        batch_size = options["batch_size"]
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        source = get_store(source_alias)
        target = get_store(target_alias)
        dry_run = options["dry_run"]
        include_expired = options["include_expired"]

        progress = Progress(
            label=f"{source_alias} -> {target_alias}",
            total=estimate_total(source, include_expired=include_expired),
            bar_stream=self.stderr,
            write_line=self.stdout.write,
            use_bar=not options["no_progress"],
        )

        def report_failure(conversation_id: str, reason: str) -> None:
            progress.message(f"{conversation_id!r}: {reason}")

        migration = Migration(
            source,
            target,
            batch_size=batch_size,
            include_expired=include_expired,
            skip_existing=options["skip_existing"],
            delete_source=options["delete_source"],
            dry_run=dry_run,
            on_failure=report_failure,
            on_progress=lambda r: progress.update(r.seen, r.failed),
            on_delete_start=lambda count: progress.message(
                f"deleting {_plural(count)} from {source_alias!r} (copied and verified)"
            ),
        )
        try:
            report = migration.run()
        except KeyboardInterrupt:
            progress.close()
            self._summarise(migration.report, source_alias, dry_run=dry_run)
            raise CommandError(
                "Interrupted. Only verified copies were deleted from the source (if any); "
                "run the command again to finish."
            ) from None
        progress.close()
        self._summarise(report, source_alias, dry_run=dry_run)
        if not report.ok:
            problems = []
            if report.aborted:
                problems.append(f"reading {source_alias!r} stopped early: {report.aborted}")
            if report.failed:
                problems.append(f"{_plural(report.failed)} failed")
            if report.kept:
                problems.append(f"{_plural(report.kept)} kept in the source")
            raise CommandError("; ".join(problems) + ". Run the command again to retry.")

    def _summarise(self, report: MigrationReport, source_alias: str, *, dry_run: bool) -> None:
        verb = "would migrate" if dry_run else "migrated"
        line = f"{verb} {report.migrated}/{report.seen} conversations, {report.failed} failed"
        if report.skipped:
            line += f", {report.skipped} skipped (already in the target)"
        self.stdout.write(line)
        if report.deleted or report.kept:
            deleted = f"deleted {_plural(report.deleted)} from {source_alias!r}"
            if report.kept:
                deleted += f", {report.kept} kept"
            self.stdout.write(deleted)
