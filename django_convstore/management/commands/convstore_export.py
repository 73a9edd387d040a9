"""``manage.py convstore_export``: write conversations as JSON Lines (backup, GDPR export)."""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import validation
from ...conf import DEFAULT_STORE_ALIAS
from ...exceptions import InvalidInputError
from ..aliases import describe_error, get_store
from ..jsonl import dump_line
from ..maintenance import select_conversations


def _unstyled(text: str) -> str:
    return text


class Command(BaseCommand):
    help = (
        "Write the conversations of a store (or of one owner) as JSON Lines, one "
        "Conversation.to_dict() per line, to a file or to stdout. convstore_import reads it back."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--store",
            default=DEFAULT_STORE_ALIAS,
            metavar="ALIAS",
            help="The store to export (default: 'default').",
        )
        parser.add_argument("--owner", metavar="ID", help="Only the conversations of this owner.")
        parser.add_argument(
            "--include-expired",
            action="store_true",
            help="Also export expired conversations the store still holds.",
        )
        parser.add_argument(
            "--output",
            "-o",
            metavar="FILE",
            help="Write to FILE (replaced only once the export is complete); default stdout.",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=100,
            metavar="N",
            help="Conversations read per batch (default 100).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options["store"]
        store = get_store(alias)
        owner = options["owner"]
        if owner is not None:
            try:
                owner = validation.validate_owner(owner)
            except InvalidInputError as exc:
                raise CommandError(f"--owner {exc.message}") from exc
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        conversations = select_conversations(
            store,
            owner=owner,
            include_expired=options["include_expired"],
            batch_size=options["batch_size"],
        )
        output = options["output"]
        count = 0
        try:
            if output in (None, "-"):
                for conversation in conversations:
                    self.stdout.write(dump_line(conversation))
                    count += 1
            else:
                partial = f"{output}.partial"
                try:
                    with open(partial, "w", encoding="utf-8", newline="\n") as handle:
                        for conversation in conversations:
                            handle.write(dump_line(conversation) + "\n")
                            count += 1
                    os.replace(partial, output)
                except BaseException:
                    if os.path.exists(partial):
                        os.remove(partial)
                    raise
        except Exception as exc:
            raise CommandError(
                f"export of {alias!r} failed after {count} conversations: {describe_error(exc)}"
            ) from exc
        whose = f" of owner {owner!r}" if owner is not None else ""
        noun = "conversation" if count == 1 else "conversations"
        summary = f"exported {count} {noun}{whose} from {alias!r}"
        if output in (None, "-"):
            self.stderr.write(summary, style_func=_unstyled)
        else:
            self.stdout.write(f"{summary} to {output}")
