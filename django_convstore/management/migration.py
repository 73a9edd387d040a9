"""Copying conversations from one store to another, exactly and resumably.

:class:`Migration` streams the source with ``iter_conversations`` and writes
each conversation to the target with ``put``, so ids, messages, timestamps,
TTL, owner and metadata arrive unchanged. A conversation that fails is
reported and skipped; a copy that may be partial is removed from the target
(best effort), so a failure never leaves a half-written conversation behind.
``put`` replaces, so running the same migration again converges.

With ``delete_source`` each copy is read back and compared with the source
(``to_dict()`` equality). The source deletions run after the stream has
ended, because deleting while a backend pages through its data could make it
skip conversations; right before each deletion the source conversation is
loaded again and deleted only if it is still what was copied.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from ..backends.base import BaseStore
from ..types import Conversation
from .aliases import describe_error
from .statistics import StatisticsRefresh

FailureCallback = Callable[[str, str], None]
ProgressCallback = Callable[["MigrationReport"], None]


@dataclass
class MigrationReport:
    """What a migration did, updated as it runs."""

    #: Conversations read from the source.
    seen: int = 0
    #: Conversations written to the target (or that would be, in a dry run).
    migrated: int = 0
    #: Conversations left alone because the target already had them (``skip_existing``).
    skipped: int = 0
    #: Conversations that could not be copied (or verified).
    failed: int = 0
    #: Source conversations deleted after a verified copy (``delete_source``).
    deleted: int = 0
    #: Verified copies whose source conversation was kept (changed meanwhile, or delete failed).
    kept: int = 0
    #: Why reading the source stopped early, or None when it was read to the end.
    aborted: str | None = None
    #: Ids verified in the target and waiting for deletion from the source, with a digest.
    pending_deletes: list[tuple[str, bytes]] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        """True when nothing failed, nothing was kept back and the source was read to the end."""
        return not self.failed and not self.kept and self.aborted is None


def conversation_digest(conversation: Conversation) -> bytes:
    """A stable fingerprint of everything ``to_dict()`` shows of a conversation."""
    encoded = json.dumps(conversation.to_dict(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(encoded.encode()).digest()


def estimate_total(source: BaseStore, *, include_expired: bool) -> int | None:
    """How many conversations the source will yield, from ``get_stats()``; None if unknown."""
    try:
        stats = source.get_stats()
    except Exception:
        return None
    total = stats.total_conversations
    if include_expired:
        total += stats.expired_conversations or 0
    return total


class Migration:
    """One run of copying ``source`` into ``target``; call :meth:`run`."""

    def __init__(
        self,
        source: BaseStore,
        target: BaseStore,
        *,
        batch_size: int = 100,
        include_expired: bool = False,
        skip_existing: bool = False,
        delete_source: bool = False,
        dry_run: bool = False,
        on_failure: FailureCallback | None = None,
        on_progress: ProgressCallback | None = None,
        on_delete_start: Callable[[int], None] | None = None,
    ) -> None:
        self.source = source
        self.target = target
        self.batch_size = batch_size
        self.include_expired = include_expired
        self.skip_existing = skip_existing
        self.delete_source = delete_source
        self.dry_run = dry_run
        self._on_failure = on_failure or (lambda cid, reason: None)
        self._on_progress = on_progress or (lambda report: None)
        self._on_delete_start = on_delete_start or (lambda count: None)
        self.report = MigrationReport()
        #: Keeps a database target's planner statistics in step with what is written.
        self.statistics = StatisticsRefresh(target)

    def run(self) -> MigrationReport:
        """Copy everything, then (with ``delete_source``) delete the verified originals."""
        report = self.report
        try:
            conversations = self.source.iter_conversations(
                include_expired=self.include_expired, batch_size=self.batch_size
            )
            for conversation in conversations:
                report.seen += 1
                self._copy(conversation)
                self._on_progress(report)
        except Exception as exc:
            report.aborted = describe_error(exc)
        self.statistics.finish()
        if self.delete_source and not self.dry_run:
            self._delete_verified()
        return report

    def _fail(self, conversation_id: str, reason: str) -> None:
        self.report.failed += 1
        self._on_failure(conversation_id, reason)

    def _copy(self, conversation: Conversation) -> None:
        report = self.report
        cid = conversation.conversation_id
        if self.skip_existing:
            try:
                exists = self.target.exists(cid)
            except Exception as exc:
                self._fail(cid, f"could not check the target: {describe_error(exc)}")
                return
            if exists:
                report.skipped += 1
                if self.delete_source and not self.dry_run:
                    self._schedule_existing(conversation)
                return
        if self.dry_run:
            report.migrated += 1
            return
        try:
            self.target.put(conversation)
        except Exception as exc:
            self._fail(cid, f"could not write to the target: {describe_error(exc)}")
            self._remove_partial_copy(cid)
            return
        self.statistics.wrote()
        if self.delete_source and not self._verify(conversation):
            return
        report.migrated += 1

    def _remove_partial_copy(self, conversation_id: str) -> None:
        try:
            self.target.delete(conversation_id)
        except Exception:
            # The target is probably unreachable; a later run's put replaces whatever is there.
            return

    def _verify(self, conversation: Conversation) -> bool:
        cid = conversation.conversation_id
        try:
            copy = self.target.load(cid, include_expired=True)
        except Exception as exc:
            self._fail(cid, f"could not read the copy back: {describe_error(exc)}; source kept")
            return False
        if copy is None or copy.to_dict() != conversation.to_dict():
            what = "is missing" if copy is None else "differs from the source"
            self._fail(cid, f"the copy read back from the target {what}; source kept")
            return False
        self.report.pending_deletes.append((cid, conversation_digest(conversation)))
        return True

    def _schedule_existing(self, conversation: Conversation) -> None:
        """Delete the source of a skipped conversation only if the target's copy is identical."""
        cid = conversation.conversation_id
        try:
            copy = self.target.load(cid, include_expired=True)
        except Exception as exc:
            self.report.kept += 1
            self._on_failure(cid, f"could not read the target's copy: {describe_error(exc)}")
            return
        if copy is not None and copy.to_dict() == conversation.to_dict():
            self.report.pending_deletes.append((cid, conversation_digest(conversation)))
        else:
            self.report.kept += 1
            self._on_failure(
                cid, "already in the target with different content; skipped, source kept"
            )

    def _delete_verified(self) -> None:
        report = self.report
        pending, report.pending_deletes = report.pending_deletes, []
        if pending:
            self._on_delete_start(len(pending))
        for cid, digest in pending:
            try:
                current = self.source.load(cid, include_expired=True)
                if current is None:
                    continue
                if conversation_digest(current) != digest:
                    report.kept += 1
                    self._on_failure(
                        cid, "changed in the source after it was copied; source kept, run again"
                    )
                    continue
                if self.source.delete(cid):
                    report.deleted += 1
            except Exception as exc:
                report.kept += 1
                self._on_failure(cid, f"could not delete from the source: {describe_error(exc)}")
