"""Owner safety under concurrency, through HTTP against a live server.

Each scenario runs :data:`ROUNDS` rounds. In a round, real threads (one per
actor, each with its own HTTP connection) are released together by a
barrier and send their requests to a live server (pytest-django's
see :func:`live_url`, a threaded WSGI server). Afterwards the final state is read
from the store and every round is checked:

- **takeover**: a conversation ends up owned by one user while holding
  another user's messages or metadata, or a response hands one user another
  user's data;
- **ownerless**: a conversation the API wrote ends up without an owner;
- **inconsistent**: the responses do not describe the final state (e.g. both
  a 201 and a 200 for one new id, or a winner's body that differs from what
  is stored).

All three counts must be 0. The tally (and how often each side won, which
shows the races really interleave) is printed in pytest's terminal summary.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from django.db import connections
from django.test.testcases import LiveServerThread, _StaticFilesHandler

from django_convstore.backends.base import BaseStore
from django_convstore.types import Conversation
from tests.fixtures.api import PASSWORD, RACE_STATS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROUNDS = 200
TIMEOUT = 30


@dataclass
class Reply:
    """The status and JSON body (None when there is none) of one response."""

    status: int
    body: Any

    @property
    def text(self) -> str:
        """The body as text, for "does it mention ..." checks."""
        return repr(self.body)


class Actor:
    """A user with an HTTP connection of their own to the live server."""

    def __init__(self, base_url: str, user: Any) -> None:
        self.user = user
        self.owner = str(user.pk)
        self.base_url = f"{base_url}/api/conversations/"
        self.session = requests.Session()
        self.session.auth = (user.username, PASSWORD)

    def __call__(self, method: str, path: str = "", body: Any = None) -> Reply:
        """Send one request; ``path`` is relative to ``conversations/``."""
        response = self.session.request(method, self.base_url + path, json=body, timeout=TIMEOUT)
        return Reply(response.status_code, response.json() if response.content else None)


Request = tuple[Actor, str, str, Any]


def race(*calls: Request) -> list[Reply]:
    """Send ``(actor, method, path, body)`` requests from threads released together."""
    barrier = threading.Barrier(len(calls))
    replies: list[Reply | None] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        actor, method, path, body = calls[index]
        try:
            barrier.wait(TIMEOUT)
            replies[index] = actor(method, path, body)
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [reply for reply in replies if reply is not None]


@dataclass
class Tally:
    """What the rounds of one scenario did."""

    scenario: str
    leg: str
    rounds: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    takeovers: list[str] = field(default_factory=list)
    ownerless: list[str] = field(default_factory=list)
    inconsistent: list[str] = field(default_factory=list)

    def outcome(self, name: str) -> None:
        """Count one round's outcome (which request went first, in effect)."""
        self.rounds += 1
        self.outcomes[name] = self.outcomes.get(name, 0) + 1

    def summary(self) -> str:
        """One line for the terminal summary."""
        seen = ", ".join(f"{name} {count}" for name, count in sorted(self.outcomes.items()))
        return (
            f"{self.leg}, {self.scenario}: {len(self.takeovers)} takeovers, {len(self.ownerless)} "
            f"ownerless, {len(self.inconsistent)} inconsistent of {self.rounds} rounds ({seen})"
        )

    def check(self) -> None:
        """Record the tally and fail on any violation."""
        RACE_STATS.append(self.summary())
        assert self.rounds == ROUNDS
        assert self.takeovers == [], self.takeovers[:5]
        assert self.ownerless == [], self.ownerless[:5]
        assert self.inconsistent == [], self.inconsistent[:5]


@pytest.fixture
def live_url(transactional_db: None) -> Iterator[str]:
    """The URL of a threaded WSGI server of the test project, in this process.

    Django's ``LiveServerThread``, started here rather than through
    pytest-django's session-wide ``live_server``, which may share a file-based
    SQLite connection (a database store's) among all request threads. Only
    in-memory SQLite connections are shared (they cannot be opened twice);
    every other database gets a connection per request thread, as in
    production.
    """
    shared = {
        conn.alias: conn
        for conn in connections.all()
        if conn.vendor == "sqlite" and conn.is_in_memory_db()  # type: ignore[attr-defined]
    }
    for conn in shared.values():
        conn.inc_thread_sharing()
    server = LiveServerThread("127.0.0.1", _StaticFilesHandler, connections_override=shared)
    server.daemon = True
    server.start()
    server.is_ready.wait()
    try:
        if server.error:
            raise server.error
        yield f"http://{server.host}:{server.port}"
    finally:
        server.terminate()
        for conn in shared.values():
            conn.dec_thread_sharing()


@pytest.fixture
def actors(live_url: str, api_store: BaseStore, make_user: Any) -> Iterator[dict[str, Actor]]:
    """Alice and Bob, two regular users, each with a connection to the live server."""
    alice, bob = make_user("alice"), make_user("bob")
    made = {"alice": Actor(live_url, alice), "bob": Actor(live_url, bob)}
    yield made
    for actor in made.values():
        actor.session.close()


def message(author: str, number: int = 0) -> dict[str, Any]:
    """A message whose id and text name its author."""
    return {"id": f"{author}-{number}", "role": "user", "content": f"written by {author}"}


def authors(conversation: Conversation) -> set[str]:
    """Whose messages and metadata a stored conversation holds."""
    found = {m.id.split("-")[0] for m in conversation.messages}
    by = conversation.metadata.metadata.get("by")
    return found | ({by} if by else set())


def test_post_against_put_on_a_new_id(
    api_store: BaseStore, actors: dict[str, Actor], api_backend: str
) -> None:
    alice, bob = actors["alice"], actors["bob"]
    names = {alice.owner: "alice", bob.owner: "bob"}
    tally = Tally("POST vs PUT on a new id", api_backend)
    for n in range(ROUNDS):
        cid = f"new-{n}"
        posted, put = race(
            (
                alice,
                "POST",
                "",
                {
                    "conversation_id": cid,
                    "messages": [message("alice")],
                    "metadata": {"by": "alice"},
                },
            ),
            (bob, "PUT", f"{cid}/", {"messages": [message("bob")], "metadata": {"by": "bob"}}),
        )
        final = api_store.load(cid)
        where = f"round {n}: POST {posted.status}, PUT {put.status}, final {final}"
        if "bob" in posted.text or "alice" in put.text:
            tally.takeovers.append(where)
        if final is None:
            tally.inconsistent.append(where)
            continue
        if final.metadata.owner is None:
            tally.ownerless.append(where)
            continue
        owner = names.get(final.metadata.owner)
        if owner is None or authors(final) != {owner}:
            tally.takeovers.append(where)
        if (posted.status, put.status) == (201, 404) and owner == "alice":
            tally.outcome("POST won")
            winner = posted
        elif (posted.status, put.status) == (409, 200) and owner == "bob":
            tally.outcome("PUT won")
            winner = put
        else:
            tally.outcome("other")
            tally.inconsistent.append(where)
            continue
        if winner.body != final.to_dict():
            tally.inconsistent.append(where)
    tally.check()


def test_append_against_delete(
    api_store: BaseStore, actors: dict[str, Actor], api_backend: str
) -> None:
    alice, bob = actors["alice"], actors["bob"]
    tally = Tally("append vs DELETE (owner and stranger)", api_backend)
    for n in range(ROUNDS):
        cid = f"chat-{n}"
        api_store.save(cid, [message("alice", 0)], owner=alice.owner, metadata={"by": "alice"})
        appended, deleted, strangers = race(
            (alice, "POST", f"{cid}/messages/", message("alice", 1)),
            (alice, "DELETE", f"{cid}/", None),
            (bob, "DELETE", f"{cid}/", None),
        )
        final = api_store.load(cid)
        where = (
            f"round {n}: append {appended.status} {appended.body}, DELETE {deleted.status}, "
            f"stranger's DELETE {strangers.status}, final {final}"
        )
        if strangers.status != 404 or deleted.status != 204 or appended.status != 201:
            tally.inconsistent.append(where)
            continue
        if final is None:
            tally.outcome("append first")
            if appended.body["message_count"] != 2:
                tally.inconsistent.append(where)
            continue
        tally.outcome("DELETE first")
        if final.metadata.owner is None:
            tally.ownerless.append(where)
        elif final.metadata.owner != alice.owner:
            tally.takeovers.append(where)
        if [m.id for m in final.messages] != [
            "alice-1"
        ] or appended.body != final.metadata.to_dict():
            tally.inconsistent.append(where)
    tally.check()


def test_put_against_delete(
    api_store: BaseStore, actors: dict[str, Actor], api_backend: str
) -> None:
    alice, bob = actors["alice"], actors["bob"]
    tally = Tally("stranger's PUT vs owner's DELETE", api_backend)
    for n in range(ROUNDS):
        cid = f"doc-{n}"
        api_store.save(cid, [message("alice", 0)], owner=alice.owner, metadata={"by": "alice"})
        put, deleted = race(
            (bob, "PUT", f"{cid}/", {"messages": [message("bob")], "metadata": {"by": "bob"}}),
            (alice, "DELETE", f"{cid}/", None),
        )
        final = api_store.load(cid)
        where = f"round {n}: PUT {put.status} {put.body}, DELETE {deleted.status}, final {final}"
        if "alice" in put.text:
            tally.takeovers.append(where)
        if deleted.status != 204:
            tally.inconsistent.append(where)
            continue
        if put.status == 404:
            tally.outcome("PUT first (refused)")
            if final is not None:
                tally.inconsistent.append(where)
            continue
        tally.outcome("DELETE first (id free again)")
        if final is None or put.status != 200:
            tally.inconsistent.append(where)
            continue
        if final.metadata.owner is None:
            tally.ownerless.append(where)
        elif final.metadata.owner != bob.owner or authors(final) != {"bob"}:
            tally.takeovers.append(where)
        if put.body != final.to_dict():
            tally.inconsistent.append(where)
    tally.check()


def test_permitted_put_against_owners_delete(
    api_store: BaseStore,
    actors: dict[str, Actor],
    live_url: str,
    make_user: Any,
    api_backend: str,
) -> None:
    # A user with change_conversation writes on the owner's behalf, never ownerless.
    alice = actors["alice"]
    manager = Actor(live_url, make_user("manager", perms=["change_conversation"]))
    tally = Tally("permitted PUT vs owner's DELETE", api_backend)
    for n in range(ROUNDS):
        cid = f"help-{n}"
        api_store.save(cid, [message("alice", 0)], owner=alice.owner)
        put, deleted = race(
            (manager, "PUT", f"{cid}/", {"messages": [message("manager")]}),
            (alice, "DELETE", f"{cid}/", None),
        )
        final = api_store.load(cid)
        where = f"round {n}: PUT {put.status} {put.body}, DELETE {deleted.status}, final {final}"
        if put.status != 200 or deleted.status != 204:
            tally.inconsistent.append(where)
            continue
        written_for = put.body["metadata"]["owner"]
        if final is None:
            tally.outcome("PUT, then DELETE")
            if written_for != alice.owner:
                tally.inconsistent.append(where)
            continue
        tally.outcome("DELETE, then PUT")
        if final.metadata.owner is None:
            tally.ownerless.append(where)
        elif final.metadata.owner not in (alice.owner, manager.owner):
            tally.takeovers.append(where)
        if authors(final) != {"manager"} or put.body != final.to_dict():
            tally.inconsistent.append(where)
    manager.session.close()
    tally.check()
