"""``convstore_cleanup``: expired data across several stores, dry runs, owner erasure, failures."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.core.management.base import CommandError

from .conftest import BACKENDS
from .support import FAULTY_STORE, HOLDS_EXPIRED, contents, dump, expired, simple

MEMORY = "django_convstore.backends.memory.MemoryStore"
ROOT = Path(__file__).resolve().parents[2]


def memory(location: str) -> dict[str, str]:
    return {"BACKEND": MEMORY, "LOCATION": location}


def seed(store, live_ids, expired_ids, *, owner=None):
    live = [simple(cid, owner=owner) for cid in live_ids]
    for conversation in live + [expired(cid, owner=owner) for cid in expired_ids]:
        store.put(conversation)
    return dump(live)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cleanup_removes_expired_and_keeps_live_conversations(convstores, run, backend):
    built = convstores.configure(main=convstores.config(backend))
    store = built["main"]
    live = seed(store, ["live-1", "live-2"], ["old-1", "old-2", "old-3"])
    store.put(simple("long-ttl", ttl=86_400))
    live["long-ttl"] = store.load("long-ttl").to_dict()
    holds_expired = backend in HOLDS_EXPIRED

    dry = run("convstore_cleanup", "--dry-run")
    assert dry.error is None, dry
    if holds_expired:
        assert dry.lines == ["main: would remove 3 expired conversations"]
        assert len(contents(store)) == 6
    else:
        assert re.fullmatch(r"main: would remove \d+ expired conversations?", dry.lines[0])

    result = run("convstore_cleanup")
    assert result.error is None, result
    if holds_expired:
        assert result.lines == ["main: removed 3 expired conversations"]
    else:
        assert re.fullmatch(r"main: removed \d+ expired conversations?", result.lines[0])
    assert contents(store) == live
    assert run("convstore_cleanup").lines == ["main: removed 0 expired conversations"]


def test_every_configured_store_is_cleaned_one_line_each(convstores, run):
    built = convstores.configure(first=memory("cl-1"), second=memory("cl-2"), third=memory("cl-3"))
    kept = {
        "first": seed(built["first"], ["a"], ["x"]),
        "second": seed(built["second"], ["b", "c"], []),
        "third": seed(built["third"], [], ["y", "z"]),
    }

    result = run("convstore_cleanup")

    assert result.error is None, result
    assert result.lines == [
        "first: removed 1 expired conversation",
        "second: removed 0 expired conversations",
        "third: removed 2 expired conversations",
    ]
    for alias, live in kept.items():
        assert contents(built[alias]) == live


def test_named_stores_only(convstores, run):
    built = convstores.configure(first=memory("ns-1"), second=memory("ns-2"), third=memory("ns-3"))
    for alias in ("first", "second", "third"):
        store = built[alias]
        seed(store, ["a"], ["x"])

    result = run("convstore_cleanup", "--store", "third", "--store", "first", "--store", "third")

    assert result.lines == [
        "third: removed 1 expired conversation",
        "first: removed 1 expired conversation",
    ]
    assert set(contents(built["second"])) == {"a", "x"}


def test_unknown_store_names_the_configured_ones(convstores, run):
    convstores.configure(first=memory("u-1"), second=memory("u-2"))
    result = run("convstore_cleanup", "--store", "nope")
    assert isinstance(result.error, CommandError)
    assert "Unknown store alias 'nope'; configured stores: first, second." in str(result.error)
    assert result.stdout == ""


def test_a_failing_store_fails_the_run_but_the_others_are_cleaned(convstores, run):
    built = convstores.configure(
        first=memory("f-1"),
        broken={"BACKEND": FAULTY_STORE, "LOCATION": "f-b", "OPTIONS": {"FAIL_CLEANUP": True}},
        misconfigured={"BACKEND": "django_convstore.backends.nowhere.Store"},
        last=memory("f-2"),
    )
    live_first = seed(built["first"], ["a"], ["x", "y"])
    live_last = seed(built["last"], ["b"], ["z"])

    result = run("convstore_cleanup")

    assert isinstance(result.error, CommandError)
    assert result.error.returncode == 1
    assert "2 of 4 stores failed: broken, misconfigured." in str(result.error)
    assert result.lines == [
        "first: removed 2 expired conversations",
        "last: removed 1 expired conversation",
    ]
    assert "broken: failed: BackendUnavailableError: injected fault: cleanup timed out" in (
        result.stderr
    )
    assert "misconfigured: failed: ImproperlyConfigured: CONVSTORE['misconfigured']" in (
        result.stderr
    )
    assert contents(built["first"]) == live_first
    assert contents(built["last"]) == live_last


def test_owner_erasure_deletes_all_of_one_owners_conversations(convstores, run):
    built = convstores.configure(first=memory("o-1"), second=memory("o-2"))
    seed(built["first"], ["mine-1", "mine-2"], ["mine-old"], owner="17")
    seed(built["second"], ["mine-3"], [], owner="17")
    others = {
        "first": seed(built["first"], ["theirs-1"], [], owner="170"),
        "second": seed(built["second"], ["nobody"], []),
    }

    dry = run("convstore_cleanup", "--owner", "17", "--dry-run")
    assert dry.lines == [
        "first: would remove 1 expired conversation",
        "first: would remove 2 conversations of owner '17'",
        "second: would remove 0 expired conversations",
        "second: would remove 1 conversation of owner '17'",
    ]
    assert len(contents(built["first"])) == 4

    result = run("convstore_cleanup", "--owner", "17")
    assert result.error is None, result
    assert result.lines == [
        "first: removed 1 expired conversation",
        "first: removed 2 conversations of owner '17'",
        "second: removed 0 expired conversations",
        "second: removed 1 conversation of owner '17'",
    ]
    for alias, theirs in others.items():
        assert contents(built[alias]) == theirs


def test_owner_erasure_pages_through_many_conversations(convstores, run):
    built = convstores.configure(big={**memory("o-big"), "OPTIONS": {"MAX_CONVERSATIONS": 5000}})
    for i in range(2345):
        built["big"].put(simple(f"c{i:05d}", 1, owner="heavy-user"))
    built["big"].put(simple("other", 1, owner="someone"))

    result = run("convstore_cleanup", "--owner", "heavy-user")

    assert "big: removed 2345 conversations of owner 'heavy-user'" in result.lines
    assert set(contents(built["big"])) == {"other"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_owner_erasure_on_every_backend(convstores, run, backend):
    built = convstores.configure(main=convstores.config(backend))
    seed(built["main"], ["a", "b", "c"], [], owner="gdpr")
    theirs = seed(built["main"], ["d"], [], owner="other")

    result = run("convstore_cleanup", "--owner", "gdpr")

    assert "main: removed 3 conversations of owner 'gdpr'" in result.lines
    assert contents(built["main"]) == theirs


def test_invalid_owner_is_a_command_error(convstores, run):
    convstores.configure(main=memory("io"))
    result = run("convstore_cleanup", "--owner", "")
    assert isinstance(result.error, CommandError)
    assert "--owner must not be empty" in str(result.error)


def _manage(fault: str) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(
        """
        import sys
        import django
        from django.conf import settings
        settings.configure(
            INSTALLED_APPS=["django_convstore"],
            CONVSTORE={
                "ok": {"BACKEND": "django_convstore.backends.memory.MemoryStore"},
                "broken": {
                    "BACKEND": "tests.commands.support.FaultyMemoryStore",
                    "OPTIONS": {"FAIL_CLEANUP": FAULT_SWITCH},
                },
            },
        )
        django.setup()
        from django.core.management import execute_from_command_line
        execute_from_command_line(["manage.py", "convstore_cleanup"])
        """
    ).replace("FAULT_SWITCH", fault)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_exit_status_for_cron():
    healthy = _manage("False")
    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stdout.splitlines() == [
        "ok: removed 0 expired conversations",
        "broken: removed 0 expired conversations",
    ]
    failing = _manage("True")
    assert failing.returncode == 1
    assert failing.stdout.splitlines() == ["ok: removed 0 expired conversations"]
    assert "broken: failed: BackendUnavailableError" in failing.stderr
    assert "CommandError: 1 of 2 stores failed: broken." in failing.stderr


def test_dry_run_counts_by_scanning_when_stats_cannot_tell(convstores, run):
    built = convstores.configure(
        main={"BACKEND": FAULTY_STORE, "LOCATION": "scan", "OPTIONS": {"UNKNOWN_EXPIRED": True}}
    )
    seed(built["main"], ["a", "b"], ["x", "y", "z"])
    assert built["main"].get_stats().expired_conversations is None

    dry = run("convstore_cleanup", "--dry-run")

    assert dry.lines == ["main: would remove 3 expired conversations"]
    assert len(contents(built["main"])) == 5
    assert run("convstore_cleanup").lines == ["main: removed 3 expired conversations"]
