"""The commit protocol on ZeroDB's table API: header compare-and-set, creation, row writes.

The service has single-row inserts, filtered queries and a bulk update (or
delete) whose filter can compare-and-set; no transactions, unique keys or
upsert. Everything a conversation is lives in its header row; message rows
are written first and become part of the conversation only when a
compare-and-set of the header names them (see :mod:`.visibility`). So:

* **Commit.** A write reads the header, writes its rows (an append: one row
  per new message at ``end``, ``end + 1`` ...; a save: a few chunk rows),
  then compare-and-sets the header on its ``rev``: ``end`` moves past the
  rows and ``pend`` names their transaction. Whatever decides the write
  (ownership, expiry, which message ids are new, the count) was read from
  that very revision, so it is decided inside the compare-and-set.
* **Conflicts.** When the header changed meanwhile the writer re-reads it and
  tries again; rows stay where they are: the new ``pend`` entry carries the
  ``delta`` between where they were written and where they belong. It
  re-checks its message ids against the appends committed meanwhile, from
  their ``pend`` entries (ids included) when it can, else with a query. It
  waits a random, growing moment between tries and never gives up.
* **Creation.** A missing conversation gets a header row in state ``new``,
  holding the creator's messages. The creator then reads the conversation's
  header rows: alone, it compare-and-sets its header to ``live``; beside a
  ``live`` rival it withdraws and writes into the rival (or stops: ``create``
  answers None, another owner's conversation raises); beside another ``new``
  header it withdraws and tries again after a random moment. A header that
  was alone when its creator looked is the only one that goes live: any
  later creator sees it. A ``new`` header a minute older than a rival's is a
  crashed creator's; the rival withdraws it (a compare-and-set, so a slow
  creator's own switch to ``live`` cannot also succeed).
* **Lost replies.** Inserts are re-checked before being re-sent (by their
  transaction and message id), and a compare-and-set whose reply was lost is
  recognised by its ``rev`` in the header's ``revs``.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ... import codec
from ...clock import now_ms
from ...exceptions import BackendError, ConvStoreError
from ...types import Message
from . import visibility
from .cache import HeaderCache, bulk_ids
from .client import MAX_QUERY_LIMIT, Row, ZeroDBClient
from .legacy import LegacyHeader, LegacySegment, ordered_messages
from .legacy import resolve as resolve_legacy
from .rows import (
    KIND_BULK,
    KIND_MESSAGE,
    LIVE,
    NEW,
    PEND_IDS,
    PEND_LIMIT,
    PEND_MAX,
    PEND_STAMP,
    PENDING_GRACE_MS,
    STALE_NEW_MS,
    WITHDRAWN,
    BulkChunk,
    Header,
    MessageRow,
    Pend,
    bulk_chunk_data,
    message_row_data,
    new_token,
    split_bulk,
)

#: Rows further than this from where they belong are written again instead of displaced.
MAX_DELTA = 64
#: At most this many message ids per ``$in`` filter.
IDS_PER_QUERY = 500
#: A write that lost this many compare-and-sets in a row claims the conversation's turn.
TURN_AFTER = 6
#: A write waits this many polls for another write's turn before taking it as abandoned.
TURN_PATIENCE = 24
#: Between two tries a write waits a random moment of up to one typical request time.
BACKOFF_CAP = 1.0
#: After a lost compare-and-set a store counts as contended for this many seconds.
CONTENDED_FOR = 1.0
#: A write raises only after meeting concurrent changes this long (a safety valve against
#: a bug or a broken service, not a contention limit).
CONTENTION_DEADLINE = 600.0


class Contention:
    """The pace of one write that meets concurrent changes; nobody is left behind.

    Each lost compare-and-set means another write succeeded, so the writers
    as a whole always progress; between tries a write waits a random moment
    of up to one typical request time. That alone lets an unlucky write lose
    again and again (and an exponential backoff makes it worse: its waits grow
    while fresh writes start with none), so a write that lost
    :data:`TURN_AFTER` times in a row claims the conversation's *turn* (a
    compare-and-set of ``turn`` in the header). Writes that see another's turn
    wait for it, polling the header, instead of competing; the holder's write
    ends the turn, and so does any write once it has waited
    :data:`TURN_PATIENCE` polls (the holder stopped writing or died).
    """

    def __init__(self, tables: Tables, conversation_id: str) -> None:
        self.tables = tables
        self.conversation_id = conversation_id
        self.token = new_token()
        self.started = time.monotonic()
        self.rounds = 0
        self.polls = 0
        self.waiting_on: str | None = None

    def pause(self, spread: float = 1.0) -> None:
        """Wait a random moment of up to ``spread`` typical request times (raises after
        :data:`CONTENTION_DEADLINE`)."""
        if time.monotonic() - self.started > CONTENTION_DEADLINE:
            raise self.tables.contention(self.conversation_id)
        typical = self.tables.client.typical_seconds
        time.sleep(random.uniform(0, min(BACKOFF_CAP, spread * typical)))

    def lost(self, found: Found) -> Found:
        """After a lost compare-and-set: pause; after enough losses, claim the turn."""
        self.rounds += 1
        self.pause()
        header = found.current
        if self.rounds < TURN_AFTER or header is None or header.turn is not None:
            return found
        claimed = header.evolve(turn=self.token)
        fresh = self.tables.cas(header, claimed, keep_turn=True)
        return Found([claimed], [], found.now) if fresh is None else fresh

    def blocked(self, header: Header) -> bool:
        """True when another write holds the turn: pause, read the header again, retry."""
        if header.turn is None or header.turn == self.token:
            return False
        if header.turn != self.waiting_on:
            self.waiting_on, self.polls = header.turn, 0
        self.polls += 1
        return self.polls <= TURN_PATIENCE


@dataclass
class Found:
    """A conversation's header rows, as read together."""

    headers: list[Header]
    legacy: list[LegacyHeader]
    now: int

    @property
    def current(self) -> Header | None:
        """The conversation's header: its ``live`` row (expired or not), if any."""
        live = [h for h in self.headers if h.state == LIVE]
        return min(live, key=lambda h: (h.hk, h.row_id)) if live else None

    @property
    def creators(self) -> list[Header]:
        """``new`` headers of creators that may still be at work."""
        return [h for h in self.headers if h.state == NEW and self.now - h.t <= STALE_NEW_MS]

    @property
    def legacy_view(self) -> LegacyHeader | None:
        """The format-1 view when the conversation was written by 0.1 and not since."""
        if self.current is not None:
            return None
        view, _rows = resolve_legacy(self.legacy, self.now)
        return view


View = Header | LegacyHeader


def view_of(found: Found) -> View | None:
    """The conversation's header (format 2), or its 0.1 view, or None."""
    return found.current or found.legacy_view


def visible(view: View | None, owner: str | None, now: int, include_expired: bool) -> bool:
    """True when ``view`` exists for ``owner`` (None: anyone) and, unless asked, is live."""
    if view is None or (owner is not None and view.owner != owner):
        return False
    return include_expired or view.is_live(now)


@dataclass
class Attempt:
    """The rows one append wrote, not yet committed: where, and with what."""

    txn: str
    hk: str
    pos: int
    messages: list[Message]
    encoded: list[bytes]
    t: int

    @property
    def ids(self) -> list[str]:
        """The message ids, in order."""
        return [m.id for m in self.messages]


@dataclass
class BulkWrite:
    """The chunk rows of a save/put/create, written once per header they are for."""

    txn: str
    messages: list[Message]
    encoded: list[bytes]
    hk: str | None = None
    t: int = 0

    @property
    def count(self) -> int:
        """How many messages it holds."""
        return len(self.messages)

    @property
    def nbytes(self) -> int:
        """Bytes of its encoded messages."""
        return sum(map(len, self.encoded))


@dataclass
class Range:
    """Messages read from positions ``[lo, hi)``, with what a removal needs to know."""

    messages: list[Message]
    sizes: list[int]
    rows: dict[int, MessageRow] = field(default_factory=dict)


class Tables:
    """One store's view of its two tables: header reads, compare-and-set, row writes."""

    def __init__(
        self,
        client: Callable[[], ZeroDBClient],
        *,
        namespace: str,
        header_table: str,
        message_table: str,
        cache: HeaderCache,
    ) -> None:
        self._client = client
        self.namespace = namespace
        self.header_table = header_table
        self.message_table = message_table
        self.cache = cache
        #: Until when this store counts as contended (it lost a compare-and-set recently):
        #: its writes then leave stamping to quieter moments.
        self.contended_until = 0.0

    @property
    def client(self) -> ZeroDBClient:
        """The HTTP client."""
        return self._client()

    def scope(self, conversation_id: str | None = None, **more: Any) -> dict[str, Any]:
        """A filter within this store's namespace (and conversation)."""
        scope: dict[str, Any] = {"namespace": self.namespace}
        if conversation_id is not None:
            scope["conversation_id"] = conversation_id
        scope.update(more)
        return scope

    def inconsistent(self, conversation_id: str) -> BackendError:
        """The error for rows that keep vanishing under a read."""
        return BackendError(
            f"ZeroDB store {self.client.alias!r} ({self.client.address}): the rows of "
            f"conversation {conversation_id!r} kept changing or are missing while reading it."
        )

    def contention(self, conversation_id: str) -> BackendError:
        """The error for a write that met concurrent changes for too long."""
        return BackendError(
            f"ZeroDB store {self.client.alias!r} ({self.client.address}): conversation "
            f"{conversation_id!r} kept changing under this write for "
            f"{CONTENTION_DEADLINE:.0f} seconds."
        )

    def malformed(self, what: str, exc: Exception) -> BackendError:
        """A :class:`BackendError` for a row this backend cannot read."""
        return self.client.malformed(what, str(exc))

    # -- headers ----------------------------------------------------------------------------

    def parse_headers(self, rows: Sequence[Row]) -> tuple[list[Header], list[LegacyHeader]]:
        """Header rows of either format."""
        headers: list[Header] = []
        legacy: list[LegacyHeader] = []
        for row in rows:
            try:
                if row.data.get("v") == 1:
                    legacy.append(LegacyHeader.from_data(row.data, row.row_id))
                else:
                    headers.append(Header.from_data(row.data, row.row_id))
            except ValueError as exc:
                raise self.malformed(f"header row {row.row_id}", exc) from exc
        return headers, legacy

    def read(self, conversation_id: str) -> Found:
        """Every header row of the conversation, fresh from the service."""
        rows = self.client.query_all(self.header_table, self.scope(conversation_id))
        headers, legacy = self.parse_headers(rows)
        found = Found(headers, legacy, now_ms())
        current = found.current
        if current is not None:
            self.cache.put(current)
        else:
            self.cache.drop(conversation_id)
        return found

    def known(self, conversation_id: str) -> tuple[Found, bool]:
        """The header this process saw last (``cached`` True), else a fresh read."""
        cached = self.cache.get(conversation_id)
        if cached is not None:
            return Found([cached], [], now_ms()), True
        return self.read(conversation_id), False

    def cas(self, old: Header, new: Header, *, keep_turn: bool = False) -> Found | None:
        """Write ``new`` over ``old`` if ``old`` is still current: None, else the fresh rows.

        Every write ends a turn (see :class:`Contention`) unless ``keep_turn``.
        """
        if not keep_turn and new.turn is not None:
            new.turn = None
        before, after = old.to_data(), new.to_data()
        changes = {key: value for key, value in after.items() if before.get(key) != value}
        matched = self.client.bulk_update(
            self.header_table,
            self.scope(old.conversation_id, hk=old.hk, rev=old.rev),
            {"$set": changes},
        )
        if not matched:
            found = self.read(old.conversation_id)
            if not any(h.row_id == old.row_id and h.saw(new.rev) for h in found.headers):
                self.contended_until = time.monotonic() + CONTENDED_FOR
                return found
            # Else an earlier attempt of this very update landed (its reply was lost).
        if new.state == LIVE:
            self.cache.put(new)
        else:
            self.cache.drop(new.conversation_id)
        return None

    def cas_legacy(self, old: LegacyHeader, new: Header) -> Found | None:
        """Convert the format-1 row ``old`` into ``new`` if it is unchanged (see :meth:`cas`)."""
        new.row_id = old.row_id
        matched = self.client.bulk_update(
            self.header_table,
            self.scope(old.conversation_id, hkey=old.hkey, rev=old.rev),
            {"$set": new.to_data()},
        )
        if not matched:
            found = self.read(old.conversation_id)
            if not any(h.row_id == old.row_id and h.saw(new.rev) for h in found.headers):
                return found
        self.cache.put(new)
        return None

    def insert_header(self, header: Header) -> None:
        """Insert a header row (its ``row_id`` is filled in)."""
        hk = header.hk
        row = self.client.insert(
            self.header_table,
            header.to_data(),
            recheck=lambda: self._find(
                self.header_table, self.scope(header.conversation_id, hk=hk)
            ),
        )
        header.row_id = row.row_id

    def establish(self, header: Header) -> tuple[Header | None, Found]:
        """Make the ``new`` header ``header`` the conversation's, unless a rival stands.

        Returns the live header when it stands, else None, with the header rows
        as last read: a rival ``live`` header among them, or the ``new`` header
        of an older creator (wait for it), or none (the creators that met
        withdrew; try again). Of creators that see each other, the one with
        the oldest header waits for the others to step aside.
        """
        self.insert_header(header)
        pace = Contention(self, header.conversation_id)
        while True:
            found = self.read(header.conversation_id)
            mine = next((h for h in found.headers if h.hk == header.hk), None)
            if mine is None or mine.state != NEW:
                return (mine if mine is not None and mine.state == LIVE else None), found
            rivals = [h for h in found.headers if h.hk != mine.hk and h.state in (NEW, LIVE)]
            if any(h.state == LIVE for h in rivals) or found.legacy_view is not None:
                self.withdraw(mine)
                return None, found
            stale = [h for h in rivals if mine.t - h.t > STALE_NEW_MS]
            if stale:
                for rival in stale:
                    self.withdraw(rival)
                continue
            if any((h.hk, h.row_id) < (mine.hk, mine.row_id) for h in rivals):
                self.withdraw(mine)
                return None, found
            if rivals:
                pace.pause()  # the oldest creator: wait until the others stepped aside
                continue
            live = mine.evolve(state=LIVE)
            if self.cas(mine, live) is None:
                return live, found

    def withdraw(self, header: Header) -> None:
        """Take a ``new`` header out of the running (compare-and-set), then delete its row."""
        if self.cas(header, header.evolve(state=WITHDRAWN)) is None:
            self.forget(lambda: self.client.delete_row(self.header_table, header.row_id))

    @staticmethod
    def forget(call: Callable[[], object]) -> None:
        """Run a clean-up request; a failure leaves garbage for ``cleanup()``, nothing worse."""
        with contextlib.suppress(ConvStoreError):
            call()

    def _find(self, table: str, scope: dict[str, Any]) -> Row | None:
        page = self.client.query(table, scope, limit=10)
        return page.rows[0] if page.rows else None

    # -- message rows -------------------------------------------------------------------------

    def insert_messages(
        self, conversation_id: str, hk: str, pos: int, gen: int, messages: list[Message]
    ) -> Attempt:
        """Write one uncommitted row per message at ``pos``, ``pos + 1`` ..."""
        now = now_ms()
        attempt = Attempt(
            txn=new_token(),
            hk=hk,
            pos=pos,
            messages=list(messages),
            encoded=[codec.encode_message(m) for m in messages],
            t=now,
        )
        for index, (message, encoded) in enumerate(
            zip(attempt.messages, attempt.encoded, strict=True)
        ):
            scope = self.scope(conversation_id, hk=hk, txn=attempt.txn, mid=message.id)
            self.client.insert(
                self.message_table,
                message_row_data(
                    self.namespace,
                    conversation_id,
                    hk=hk,
                    txn=attempt.txn,
                    pos=pos + index,
                    gen=gen,
                    message=message,
                    encoded=encoded,
                    now=now,
                ),
                recheck=partial(self._find, self.message_table, scope),
            )
        return attempt

    def rehome(self, conversation_id: str, attempt: Attempt, hk: str) -> bool:
        """Move an attempt's rows to header ``hk``; False when some are gone."""
        matched = self.client.bulk_update(
            self.message_table,
            self.scope(conversation_id, hk=attempt.hk, txn=attempt.txn),
            {"$set": {"hk": hk}},
        )
        if matched != len(attempt.messages):
            probe = self.client.query(
                self.message_table, self.scope(conversation_id, hk=hk, txn=attempt.txn), limit=1
            )
            if probe.total is None or probe.total < len(attempt.messages):
                return False
        attempt.hk = hk
        return True

    def discard(self, conversation_id: str, attempt: Attempt | None) -> None:
        """Delete an attempt's uncommitted rows (best effort; stamped rows are committed
        and always stay)."""
        if attempt is not None:
            scope = self.scope(conversation_id, hk=attempt.hk, txn=attempt.txn, c={"$ne": 1})
            self.forget(partial(self.client.bulk_delete, self.message_table, scope))

    def place(
        self,
        conversation_id: str,
        attempt: Attempt | None,
        header: Header,
        pos: int,
        messages: list[Message],
        gen: int,
    ) -> Attempt:
        """Rows for ``messages`` that can be committed at ``pos`` of ``header``.

        Keeps ``attempt`` when it holds exactly these messages for this header
        (moved there when it was written for another header row), close
        enough to ``pos`` and young enough; otherwise writes them again.
        """
        if attempt is not None and attempt.ids == [m.id for m in messages]:
            fresh = now_ms() - attempt.t < PENDING_GRACE_MS // 2
            near = abs(pos - attempt.pos) <= MAX_DELTA
            if (
                fresh
                and near
                and (attempt.hk == header.hk or self.rehome(conversation_id, attempt, header.hk))
            ):
                return attempt
        self.discard(conversation_id, attempt)
        return self.insert_messages(conversation_id, header.hk, pos, gen, messages)

    def pend_entry(self, attempt: Attempt, pos: int, gen: int) -> Pend:
        """The ``pend`` entry committing ``attempt`` at ``pos`` with generation ``gen``."""
        ids = tuple(attempt.ids) if len(attempt.messages) <= PEND_IDS else None
        return Pend(attempt.txn, len(attempt.messages), pos - attempt.pos, gen, ids)

    def with_entry(self, header: Header, entry: Pend) -> tuple[Pend, ...]:
        """``header.pend`` plus ``entry``; stamps the oldest entries first when full (see
        :data:`~.rows.PEND_MAX`; under contention only at :data:`~.rows.PEND_LIMIT`)."""
        pend = header.pend
        contended = time.monotonic() < self.contended_until
        if len(pend) + 1 > (PEND_LIMIT if contended else PEND_MAX):
            drop = len(pend) + 1 - PEND_MAX + PEND_STAMP
            self.stamp(header, pend[:drop])
            pend = pend[drop:]
        return (*pend, entry)

    def stamp(self, header: Header, entries: Sequence[Pend]) -> None:
        """Mark the rows of committed entries as committed (idempotent: ``c != 1`` only)."""
        groups: dict[tuple[int, int], list[str]] = {}
        for entry in entries:
            groups.setdefault((entry.delta, entry.gen), []).append(entry.txn)
        for (delta, gen), txns in groups.items():
            update: dict[str, Any] = {"$set": {"c": 1, "gen": gen}}
            if delta:
                update["$inc"] = {"pos": delta}
            self.client.bulk_update(
                self.message_table,
                self.scope(header.conversation_id, hk=header.hk, txn={"$in": txns}, c={"$ne": 1}),
                update,
            )

    def write_bulk(
        self, conversation_id: str, bulk: BulkWrite, hk: str, *, verify: bool = False
    ) -> None:
        """Write (or move) a bulk write's chunk rows for header ``hk``.

        ``verify``: make sure rows written earlier are all still there (after a lost
        compare-and-set: had that write landed after all and been replaced since, its
        rows were deleted with it); else write them again.
        """
        if not bulk.messages:
            bulk.hk = hk
            return
        chunks = split_bulk(bulk.encoded)
        if bulk.hk == hk:
            if not verify:
                return
            scope = self.scope(conversation_id, hk=hk, txn=bulk.txn)
            if (self.client.query(self.message_table, scope, limit=1).total or 0) >= len(chunks):
                return
            self.discard_bulk(conversation_id, bulk)
            bulk.hk, bulk.txn = None, new_token()
        if bulk.hk is not None:
            matched = self.client.bulk_update(
                self.message_table,
                self.scope(conversation_id, hk=bulk.hk, txn=bulk.txn),
                {"$set": {"hk": hk}},
            )
            if matched == len(chunks):
                bulk.hk = hk
                return
            self.discard_bulk(conversation_id, bulk)
            bulk.txn = new_token()
        now = now_ms()
        for off, count in chunks:
            scope = self.scope(conversation_id, hk=hk, txn=bulk.txn, off=off)
            self.client.insert(
                self.message_table,
                bulk_chunk_data(
                    self.namespace,
                    conversation_id,
                    hk=hk,
                    txn=bulk.txn,
                    off=off,
                    messages=bulk.messages[off : off + count],
                    encoded=bulk.encoded[off : off + count],
                    now=now,
                ),
                recheck=partial(self._find, self.message_table, scope),
            )
        bulk.hk, bulk.t = hk, now
        bulk_ids.put(hk, bulk.txn, tuple(m.id for m in bulk.messages))

    def discard_bulk(self, conversation_id: str, bulk: BulkWrite) -> None:
        """Delete a bulk write's uncommitted chunk rows (best effort)."""
        if bulk.hk is not None and bulk.messages:
            hk = bulk.hk
            self.forget(
                lambda: self.client.bulk_delete(
                    self.message_table, self.scope(conversation_id, hk=hk, txn=bulk.txn)
                )
            )

    def drop_incarnation(self, old: Header, new: Header) -> None:
        """Delete what a save/restart replaced: committed rows below the new ``base``, the
        old bulk write and the old ``pend`` rows (uncommitted rows of writers at work stay,
        and so does anything ``new`` names: ``old`` may be this very write, committed by an
        attempt whose reply was lost)."""
        cid, new_base = old.conversation_id, new.base
        keep = {entry.txn for entry in new.pend} | {new.bulk}
        txns = [entry.txn for entry in old.pend if entry.txn not in keep]
        if old.bulk is not None and old.bulk not in keep:
            txns.append(old.bulk)
        if txns:
            self.forget(
                lambda: self.client.bulk_delete(
                    self.message_table, self.scope(cid, hk=old.hk, txn={"$in": txns})
                )
            )
        if old.end > old.singles_from:
            self.forget(
                lambda: self.client.bulk_delete(
                    self.message_table,
                    self.scope(cid, hk=old.hk, c=1, pos={"$lt": new_base}),
                )
            )

    def drop_positions(self, header: Header, rows: dict[int, MessageRow], cut: int) -> None:
        """Delete the rows a pop/truncate removed (positions ``>= cut`` of ``header``)."""
        pend = header.pend_map()
        cid = header.conversation_id
        stamped = any(row.stamped for row in rows.values())
        groups: dict[int, set[str]] = {}
        for row in rows.values():
            if not row.stamped and row.txn in pend:
                groups.setdefault(pend[row.txn].delta, set()).add(row.txn)
        if stamped:
            self.forget(
                lambda: self.client.bulk_delete(
                    self.message_table, self.scope(cid, hk=header.hk, c=1, pos={"$gte": cut})
                )
            )
        for delta, txns in groups.items():
            scope = self.scope(
                cid,
                hk=header.hk,
                txn={"$in": sorted(txns)},
                c={"$ne": 1},
                pos={"$gte": cut - delta},
            )
            self.forget(partial(self.client.bulk_delete, self.message_table, scope))

    def delete_everything(self, header: Header) -> None:
        """Delete a removed conversation's message rows, then its header row."""
        self.client.bulk_delete(
            self.message_table, self.scope(header.conversation_id, hk=header.hk)
        )
        self.client.delete_row(self.header_table, header.row_id)

    # -- reading messages -------------------------------------------------------------------

    def message_rows(self, scope: dict[str, Any]) -> list[MessageRow]:
        """Message rows matching ``scope``, in position order."""
        rows = self.client.query_all(self.message_table, scope, sort={"pos": 1})
        parsed = []
        for row in rows:
            try:
                parsed.append(MessageRow.from_data(row.data, row.row_id))
            except ValueError as exc:
                raise self.malformed(f"message row {row.row_id}", exc) from exc
        return parsed

    def chunk_rows(self, scope: dict[str, Any]) -> list[BulkChunk]:
        """Bulk chunk rows matching ``scope``."""
        chunks = []
        for row in self.client.query_all(self.message_table, scope, sort={"off": 1}):
            try:
                chunks.append(BulkChunk.from_data(row.data, row.row_id))
            except ValueError as exc:
                raise self.malformed(f"bulk row {row.row_id}", exc) from exc
        return chunks

    def read_range(self, header: Header, lo: int, hi: int, *, decode: bool = True) -> Range | None:
        """Messages at positions ``[lo, hi)`` (only their rows and sizes unless ``decode``);
        None when a row is missing (removed since ``header`` was read: read it again)."""
        cid = header.conversation_id
        result = Range([], [])
        split = min(hi, header.singles_from)
        if lo < split:
            assert header.bulk is not None
            x_lo, x_hi = lo - header.base, split - header.base
            chunks = self.chunk_rows(
                self.scope(
                    cid,
                    hk=header.hk,
                    txn=header.bulk,
                    off={"$lt": x_hi},
                    end_off={"$gt": x_lo},
                )
            )
            part = visibility.bulk_messages(chunks, x_lo, x_hi, decode=decode)
            if part is None:
                return None
            result.messages.extend(part[0])
            result.sizes.extend(part[1])
        start = max(lo, header.singles_from)
        if start < hi:
            q_lo, q_hi = visibility.query_span(header, start, hi)
            rows = self.message_rows(
                self.scope(cid, hk=header.hk, pos={"$gte": q_lo, "$lt": q_hi})
            )
            picked = visibility.pick(header, rows, start, hi)
            if len(picked) != hi - start:
                return None
            ordered = [picked[pos] for pos in range(start, hi)]
            if decode:
                result.messages.extend(self.decode_rows(cid, ordered))
            result.sizes.extend(row.nbytes for row in ordered)
            result.rows = picked
        return result

    def decode_rows(self, conversation_id: str, rows: Sequence[MessageRow]) -> list[Message]:
        """The messages of ``rows`` (one decode for all of them)."""
        try:
            return codec.decode_joined_messages(b",".join(row.encoded for row in rows))
        except codec.DecodeError as exc:
            raise self.malformed(f"message rows of {conversation_id!r}", exc) from exc

    def bulk_id_list(self, header: Header) -> tuple[str, ...]:
        """The message ids of the header's bulk write, in order (cached: they never change)."""
        assert header.bulk is not None
        ids = bulk_ids.get(header.hk, header.bulk)
        if ids is None:
            chunks = self.chunk_rows(
                self.scope(header.conversation_id, hk=header.hk, txn=header.bulk)
            )
            by_off = {chunk.off: chunk for chunk in chunks}
            ordered: list[str] = []
            for off in sorted(by_off):
                if off != len(ordered):
                    raise self.client.malformed(
                        f"bulk rows of {header.conversation_id!r}", "a chunk is missing"
                    )
                ordered.extend(by_off[off].ids)
            ids = tuple(ordered)
            bulk_ids.put(header.hk, header.bulk, ids)
        return ids

    def held(self, header: Header, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` the conversation holds as of ``header`` (cost: one query, not
        the conversation's length; one more when a matching row predates a removal)."""
        held: set[str] = set()
        if header.bulk_live:
            held.update(set(ids) & set(self.bulk_id_list(header)[: header.bulk_live]))
        rest = [i for i in ids if i not in held]
        found: list[MessageRow] = []
        for start in range(0, len(rest), IDS_PER_QUERY):
            found.extend(
                self.message_rows(
                    self.scope(
                        header.conversation_id,
                        hk=header.hk,
                        mid={"$in": rest[start : start + IDS_PER_QUERY]},
                    )
                )
            )
        sure, unsure = visibility.held_ids(header, found)
        held |= sure
        if unsure:
            positions = visibility.stored_positions(header, unsure)
            rows: list[MessageRow] = []
            for start in range(0, len(positions), IDS_PER_QUERY):
                rows.extend(
                    self.message_rows(
                        self.scope(
                            header.conversation_id,
                            hk=header.hk,
                            pos={"$in": positions[start : start + IDS_PER_QUERY]},
                        )
                    )
                )
            winners = visibility.pick(header, rows, min(unsure), max(unsure) + 1)
            for pos, row in unsure.items():
                winner = winners.get(pos)
                if winner is not None and (winner.txn, winner.mid) == (row.txn, row.mid):
                    held.add(row.mid)
        return held

    # -- whole-store scans ------------------------------------------------------------------------

    def all_headers(self, **filters: Any) -> tuple[list[Header], list[LegacyHeader]]:
        """Every header row of the namespace matching ``filters``."""
        return self.parse_headers(self.client.query_all(self.header_table, self.scope(**filters)))

    def legacy_messages(self, view: LegacyHeader) -> list[Message]:
        """The messages of a format-1 conversation."""
        rows = self.client.query_all(
            self.message_table, self.scope(view.conversation_id, at={"$gte": view.base})
        )
        try:
            return ordered_messages(LegacySegment.from_data(row.data) for row in rows)
        except ValueError as exc:
            raise self.malformed(f"0.1 message rows of {view.conversation_id!r}", exc) from exc

    def conversation_rows(self, headers: Sequence[Header]) -> dict[str, Range | None]:
        """All messages of several conversations (by header ``hk``), read together."""
        hks = [h.hk for h in headers]
        singles: dict[str, list[MessageRow]] = {hk: [] for hk in hks}
        chunks: dict[str, list[BulkChunk]] = {hk: [] for hk in hks}
        for start in range(0, len(hks), MAX_QUERY_LIMIT // 10):
            batch = hks[start : start + MAX_QUERY_LIMIT // 10]
            for row in self.client.query_all(
                self.message_table, self.scope(hk={"$in": batch}), sort={"pos": 1}
            ):
                try:
                    if row.data.get("kind") == KIND_BULK:
                        chunks[str(row.data.get("hk"))].append(
                            BulkChunk.from_data(row.data, row.row_id)
                        )
                    elif row.data.get("kind") == KIND_MESSAGE:
                        singles[str(row.data.get("hk"))].append(
                            MessageRow.from_data(row.data, row.row_id)
                        )
                except (ValueError, KeyError) as exc:
                    raise self.malformed(f"message row {row.row_id}", exc) from exc
        return {h.hk: self._assemble(h, singles[h.hk], chunks[h.hk]) for h in headers}

    def _assemble(
        self, header: Header, rows: list[MessageRow], chunks: list[BulkChunk]
    ) -> Range | None:
        result = Range([], [])
        if header.bulk_live:
            part = visibility.bulk_messages(
                [c for c in chunks if c.txn == header.bulk], 0, header.bulk_live
            )
            if part is None:
                return None
            result.messages.extend(part[0])
            result.sizes.extend(part[1])
        picked = visibility.pick(header, rows, header.singles_from, header.end)
        if len(picked) != header.end - header.singles_from:
            return None
        ordered = [picked[pos] for pos in range(header.singles_from, header.end)]
        result.messages.extend(self.decode_rows(header.conversation_id, ordered))
        result.sizes.extend(row.nbytes for row in ordered)
        return result

    def sweep_uncommitted(self, headers: dict[str, Header], now: int) -> None:
        """Delete rows no header commits that are older than the grace period: rows of
        writers that failed or died (a writer at work is never that slow)."""
        old = {"$lt": now - PENDING_GRACE_MS}
        singles: set[tuple[str, str]] = set()
        for row in self.client.query_all(
            self.message_table, self.scope(kind=KIND_MESSAGE, c={"$ne": 1}, t=old)
        ):
            hk, txn = str(row.data.get("hk")), str(row.data.get("txn"))
            header = headers.get(hk)
            if header is None or txn not in header.pend_map():
                singles.add((hk, txn))
        chunks: set[tuple[str, str]] = set()
        for row in self.client.query_all(self.message_table, self.scope(kind=KIND_BULK, t=old)):
            hk, txn = str(row.data.get("hk")), str(row.data.get("txn"))
            header = headers.get(hk)
            if header is None or txn != header.bulk:
                chunks.add((hk, txn))
        for hk, txn in singles:
            self.client.bulk_delete(
                self.message_table,
                self.scope(hk=hk, txn=txn, kind=KIND_MESSAGE, c={"$ne": 1}, t=old),
            )
        for hk, txn in chunks:
            self.client.bulk_delete(
                self.message_table, self.scope(hk=hk, txn=txn, kind=KIND_BULK, t=old)
            )


__all__ = [
    "BACKOFF_CAP",
    "CONTENTION_DEADLINE",
    "MAX_DELTA",
    "TURN_AFTER",
    "TURN_PATIENCE",
    "Attempt",
    "BulkWrite",
    "Contention",
    "Found",
    "Range",
    "Tables",
    "View",
    "view_of",
    "visible",
]
