"""``convstore_migrate``: exact copies between every pair of backends, faults, options."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from django_convstore.types import Conversation

from .conftest import BACKENDS
from .support import (
    FAULTY_STORE,
    HOLDS_EXPIRED,
    contents,
    dump,
    expired,
    sample_conversations,
    simple,
)

MEMORY = "django_convstore.backends.memory.MemoryStore"


def memory(location: str, **options: Any) -> dict[str, Any]:
    """A plain memory store configuration."""
    config: dict[str, Any] = {"BACKEND": MEMORY, "LOCATION": location}
    if options:
        config["OPTIONS"] = options
    return config


def faulty(location: str, **options: Any) -> dict[str, Any]:
    """A fault-injecting memory store configuration (see ``support.FaultyMemoryStore``)."""
    return {"BACKEND": FAULTY_STORE, "LOCATION": location, "OPTIONS": options}


def fill(store: Any, conversations: list[Conversation]) -> dict[str, Any]:
    for conversation in conversations:
        store.put(conversation)
    return dump(conversations)


def ten() -> list[Conversation]:
    return [simple(f"c{i:02d}", owner=str(i % 3)) for i in range(10)]


# -- exact round trips between every pair of backends -----------------------------------


@pytest.mark.parametrize("target_backend", BACKENDS)
@pytest.mark.parametrize("source_backend", BACKENDS)
def test_round_trip_between_backends_is_exact(convstores, run, source_backend, target_backend):
    built = convstores.configure(
        src=convstores.config(source_backend), dst=convstores.config(target_backend)
    )
    source, target = built["src"], built["dst"]
    expected = fill(source, sample_conversations())
    assert contents(source) == expected
    assert contents(target) == {}

    result = run("convstore_migrate", "src", "dst", "--batch-size", "3", "--no-progress")

    assert result.error is None, result
    assert f"migrated {len(expected)}/{len(expected)} conversations, 0 failed" in result.lines
    assert contents(target) == expected
    for cid, data in expected.items():
        loaded = target.load(cid)
        assert loaded is not None and loaded.to_dict() == data
        # The two reads are moments apart, so the rounded seconds may differ by one.
        assert abs(target.get_ttl(cid) - source.get_ttl(cid)) <= 1
        assert (target.get_ttl(cid) == -1) == (source.get_ttl(cid) == -1)
    assert contents(source) == expected

    # A second run converges on the same result.
    again = run("convstore_migrate", "src", "dst", "--no-progress")
    assert again.error is None, again
    assert contents(target) == expected


@pytest.mark.parametrize("target_backend", BACKENDS)
@pytest.mark.parametrize("source_backend", BACKENDS)
def test_delete_source_moves_everything_between_backends(
    convstores, run, source_backend, target_backend
):
    built = convstores.configure(
        src=convstores.config(source_backend), dst=convstores.config(target_backend)
    )
    expected = fill(built["src"], sample_conversations())

    result = run("convstore_migrate", "src", "dst", "--delete-source", "--no-progress")

    assert result.error is None, result
    assert f"deleted {len(expected)} conversations from 'src'" in result.lines
    assert contents(built["dst"]) == expected
    assert contents(built["src"]) == {}


POSTGRES_PAIRS = [
    ("memory", "database_postgresql"),
    ("database_postgresql", "memory"),
    ("redis", "database_postgresql"),
    ("database_postgresql", "redis"),
]


@pytest.mark.postgres
@pytest.mark.parametrize(("source_backend", "target_backend"), POSTGRES_PAIRS)
def test_round_trip_with_postgresql_is_exact(convstores, run, source_backend, target_backend):
    built = convstores.configure(
        src=convstores.config(source_backend), dst=convstores.config(target_backend)
    )
    expected = fill(built["src"], sample_conversations())

    result = run("convstore_migrate", "src", "dst", "--delete-source", "--no-progress")

    assert result.error is None, result
    assert contents(built["dst"]) == expected
    assert contents(built["src"]) == {}


@pytest.mark.parametrize("target_backend", HOLDS_EXPIRED)
@pytest.mark.parametrize("source_backend", HOLDS_EXPIRED)
def test_include_expired_copies_expired_conversations_exactly(
    convstores, run, source_backend, target_backend
):
    built = convstores.configure(
        src=convstores.config(source_backend), dst=convstores.config(target_backend)
    )
    live = [simple("live-1", owner="a"), simple("live-2", ttl=600)]
    gone = [expired("old-1", owner="a"), expired("old-2", metadata={"k": "v"})]
    fill(built["src"], live + gone)

    plain = run("convstore_migrate", "src", "dst", "--no-progress")
    assert plain.error is None, plain
    assert "migrated 2/2 conversations, 0 failed" in plain.lines
    assert contents(built["dst"]) == dump(live)

    with_expired = run("convstore_migrate", "src", "dst", "--include-expired", "--no-progress")
    assert with_expired.error is None, with_expired
    assert "migrated 4/4 conversations, 0 failed" in with_expired.lines
    assert contents(built["dst"]) == dump(live + gone)
    assert built["dst"].load("old-1") is None
    assert built["dst"].get_ttl("old-1") == -2


# -- failures: reported, skipped, never half-written, and a re-run completes -------------


def test_failing_target_conversations_are_reported_and_a_rerun_completes(convstores, run):
    data = ten()
    built = convstores.configure(src=memory("m-src"), dst=faulty("m-dst", FAIL_PUT=["c03", "c07"]))
    expected = fill(built["src"], data)

    result = run("convstore_migrate", "src", "dst", "--no-progress")

    assert isinstance(result.error, CommandError)
    assert "2 conversations failed" in str(result.error)
    assert "migrated 8/10 conversations, 2 failed" in result.lines
    assert "'c03': could not write to the target: BackendUnavailableError" in result.stderr
    assert "'c07'" in result.stderr
    assert contents(built["dst"]) == {k: v for k, v in expected.items() if k not in ("c03", "c07")}

    # The target recovers (same data, fault switched off): running again completes.
    built = convstores.configure(src=memory("m-src"), dst=faulty("m-dst"))
    rerun = run("convstore_migrate", "src", "dst", "--no-progress")
    assert rerun.error is None, rerun
    assert "migrated 10/10 conversations, 0 failed" in rerun.lines
    assert contents(built["dst"]) == expected


def test_a_write_that_dies_half_way_leaves_no_partial_copy(convstores, run):
    built = convstores.configure(src=memory("p-src"), dst=faulty("p-dst", PARTIAL_PUT=["c05"]))
    expected = fill(built["src"], [simple("c04", 6), simple("c05", 6), simple("c06", 6)])

    result = run("convstore_migrate", "src", "dst", "--no-progress")

    assert result.error is not None
    assert "migrated 2/3 conversations, 1 failed" in result.lines
    assert "'c05': could not write to the target" in result.stderr
    assert built["dst"].load("c05", include_expired=True) is None
    assert contents(built["dst"]) == {k: v for k, v in expected.items() if k != "c05"}


def test_a_source_that_breaks_off_stops_with_exit_1_and_a_rerun_completes(convstores, run):
    built = convstores.configure(src=faulty("b-src", FAIL_ITER_AFTER=4), dst=memory("b-dst"))
    expected = fill(built["src"], ten())

    result = run("convstore_migrate", "src", "dst", "--no-progress")

    assert result.error is not None
    assert "reading 'src' stopped early: BackendUnavailableError" in str(result.error)
    assert "migrated 4/4 conversations, 0 failed" in result.lines
    assert len(contents(built["dst"])) == 4

    built = convstores.configure(src=faulty("b-src"), dst=memory("b-dst"))
    rerun = run("convstore_migrate", "src", "dst", "--no-progress")
    assert rerun.error is None, rerun
    assert contents(built["dst"]) == expected


def test_delete_source_never_loses_a_conversation_when_the_target_fails(convstores, run):
    built = convstores.configure(
        src=memory("d-src"),
        dst=faulty("d-dst", FAIL_PUT=["c01"], PARTIAL_PUT=["c02"], CORRUPT_PUT=["c03"]),
    )
    expected = fill(built["src"], ten())

    result = run("convstore_migrate", "src", "dst", "--delete-source", "--no-progress")

    assert result.error is not None
    assert "migrated 7/10 conversations, 3 failed" in result.lines
    assert "deleted 7 conversations from 'src'" in result.lines
    assert "deleting 7 conversations from 'src' (copied and verified)" in result.stderr
    assert "'c03': the copy read back from the target differs from the source; source kept" in (
        result.stderr
    )
    source_left = contents(built["src"])
    assert set(source_left) == {"c01", "c02", "c03"}
    # Every conversation still exists exactly as it was, in the source or in the target.
    target_now = contents(built["dst"])
    for cid, data in expected.items():
        assert source_left.get(cid) == data or target_now.get(cid) == data

    # Once the target is healthy a re-run moves the rest.
    built = convstores.configure(src=memory("d-src"), dst=faulty("d-dst"))
    rerun = run("convstore_migrate", "src", "dst", "--delete-source", "--no-progress")
    assert rerun.error is None, rerun
    assert contents(built["src"]) == {}
    assert contents(built["dst"]) == expected


def test_delete_source_keeps_a_conversation_that_changed_after_it_was_copied(convstores, run):
    def touch_source(conversation: Conversation) -> None:
        if conversation.conversation_id == "c02":
            from django_convstore.handler import stores

            stores["src"].append("c02", [{"role": "user", "content": "written meanwhile"}])

    built = convstores.configure(src=memory("x-src"), dst=faulty("x-dst", AFTER_PUT=touch_source))
    fill(built["src"], ten())

    result = run("convstore_migrate", "src", "dst", "--delete-source", "--no-progress")

    assert result.error is not None
    assert "1 conversation kept in the source" in str(result.error)
    assert "'c02': changed in the source after it was copied" in result.stderr
    assert "deleted 9 conversations from 'src', 1 kept" in result.lines
    kept = built["src"].load("c02")
    assert kept is not None and kept.messages[-1].content == "written meanwhile"

    built = convstores.configure(src=memory("x-src"), dst=memory("x-dst"))
    rerun = run("convstore_migrate", "src", "dst", "--delete-source", "--no-progress")
    assert rerun.error is None, rerun
    assert contents(built["src"]) == {}
    moved = built["dst"].load("c02")
    assert moved is not None and moved.to_dict() == kept.to_dict()


def test_delete_source_keeps_the_source_when_deleting_fails(convstores, run):
    built = convstores.configure(src=faulty("f-src", FAIL_DELETE=True), dst=memory("f-dst"))
    expected = fill(built["src"], ten()[:3])

    result = run("convstore_migrate", "src", "dst", "--delete-source", "--no-progress")

    assert result.error is not None
    assert "could not delete from the source: BackendError" in result.stderr
    assert contents(built["src"]) == expected
    assert contents(built["dst"]) == expected


# -- options ----------------------------------------------------------------------------


def test_skip_existing_leaves_existing_target_conversations_alone(convstores, run):
    built = convstores.configure(src=memory("s-src"), dst=memory("s-dst"))
    expected = fill(built["src"], ten())
    different = simple("c00", 1, owner="someone-else")
    built["dst"].put(different)

    result = run("convstore_migrate", "src", "dst", "--skip-existing", "--no-progress")

    assert result.error is None, result
    assert (
        "migrated 9/10 conversations, 0 failed, 1 skipped (already in the target)" in result.lines
    )
    target = contents(built["dst"])
    assert target["c00"] == different.to_dict()
    assert {k: v for k, v in target.items() if k != "c00"} == {
        k: v for k, v in expected.items() if k != "c00"
    }

    # Without --skip-existing, put replaces: the target converges on the source.
    run("convstore_migrate", "src", "dst", "--no-progress")
    assert contents(built["dst"]) == expected


def test_skip_existing_with_delete_source_deletes_only_identical_copies(convstores, run):
    built = convstores.configure(src=memory("sd-src"), dst=memory("sd-dst"))
    data = ten()[:4]
    expected = fill(built["src"], data)
    built["dst"].put(data[0])  # identical copy
    built["dst"].put(simple("c01", 1))  # same id, other content

    result = run(
        "convstore_migrate", "src", "dst", "--skip-existing", "--delete-source", "--no-progress"
    )

    assert result.error is not None
    assert "'c01': already in the target with different content" in result.stderr
    assert contents(built["src"]) == {"c01": expected["c01"]}
    assert "deleted 3 conversations from 'src', 1 kept" in result.lines


def test_dry_run_writes_and_deletes_nothing(convstores, run):
    built = convstores.configure(src=memory("dr-src"), dst=memory("dr-dst"))
    expected = fill(built["src"], ten())
    built["dst"].put(simple("c00"))
    before = contents(built["dst"])

    result = run(
        "convstore_migrate",
        "src",
        "dst",
        "--dry-run",
        "--delete-source",
        "--skip-existing",
        "--no-progress",
    )

    assert result.error is None, result
    assert (
        "would migrate 9/10 conversations, 0 failed, 1 skipped (already in the target)"
        in result.lines
    )
    assert contents(built["dst"]) == before
    assert contents(built["src"]) == expected


def test_without_include_expired_expired_conversations_stay_behind(convstores, run):
    built = convstores.configure(src=memory("e-src"), dst=memory("e-dst"))
    fill(built["src"], [simple("live"), expired("old")])

    result = run("convstore_migrate", "src", "dst", "--no-progress")

    assert "migrated 1/1 conversations, 0 failed" in result.lines
    assert set(contents(built["dst"])) == {"live"}


@pytest.mark.parametrize("batch_size", ["1", "7", "1000"])
def test_batch_size_does_not_change_the_result(convstores, run, batch_size):
    built = convstores.configure(src=memory("bs-src"), dst=memory("bs-dst"))
    expected = fill(built["src"], ten())
    result = run("convstore_migrate", "src", "dst", "--batch-size", batch_size, "--no-progress")
    assert result.error is None, result
    assert contents(built["dst"]) == expected


def test_invalid_conversations_in_the_source_are_reported(convstores, run):
    built = convstores.configure(src=memory("r-src"), dst=memory("r-dst"))
    fill(built["src"], [simple("ok")])
    # A role the project allowed once and no longer allows: put() refuses it.
    with override_settings(CONVSTORE_ROLES=("user", "narrator")):
        built["src"].append("odd-role", [{"role": "narrator", "content": "once upon a time"}])

    result = run("convstore_migrate", "src", "dst", "--no-progress")

    assert result.error is not None
    assert "'odd-role': could not write to the target: InvalidInputError" in result.stderr
    assert set(contents(built["dst"])) == {"ok"}


# -- argument errors --------------------------------------------------------------------


def test_unknown_alias_names_the_configured_ones(convstores):
    convstores.configure(alpha=memory("u-a"), beta=memory("u-b"))
    with pytest.raises(CommandError, match=r"Unknown store alias 'gamma'.*alpha, beta"):
        call_command("convstore_migrate", "alpha", "gamma", stdout=io.StringIO())
    with pytest.raises(CommandError, match=r"Unknown store alias 'gamma'.*alpha, beta"):
        call_command("convstore_migrate", "gamma", "beta", stdout=io.StringIO())


def test_source_and_target_must_differ(convstores):
    convstores.configure(alpha=memory("same"), beta=memory("same"), gamma=memory("other"))
    with pytest.raises(CommandError, match="same store"):
        call_command("convstore_migrate", "alpha", "alpha")
    with pytest.raises(CommandError, match="same store"):
        call_command("convstore_migrate", "alpha", "beta")
    call_command("convstore_migrate", "alpha", "gamma", "--no-progress", stdout=io.StringIO())


def test_memory_stores_without_location_are_told_apart_by_alias(convstores, run):
    built = convstores.configure(one={"BACKEND": MEMORY}, two={"BACKEND": MEMORY})
    expected = fill(built["one"], ten()[:2])
    result = run("convstore_migrate", "one", "two", "--no-progress")
    assert result.error is None, result
    assert contents(built["two"]) == expected


def test_batch_size_must_be_positive(convstores):
    convstores.configure(a=memory("z-a"), b=memory("z-b"))
    with pytest.raises(CommandError, match="--batch-size"):
        call_command("convstore_migrate", "a", "b", "--batch-size", "0")


# -- progress ---------------------------------------------------------------------------


class TerminalIO(io.StringIO):
    """A StringIO that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_plain_progress_lines_without_a_terminal(convstores, run):
    built = convstores.configure(src=memory("pg-src"), dst=faulty("pg-dst", FAIL_PUT=["c24"]))
    fill(built["src"], [simple(f"c{i:02d}", 1) for i in range(25)])

    result = run("convstore_migrate", "src", "dst")  # stderr is no terminal: plain lines

    progress = [line for line in result.lines if line.startswith("src -> dst: ")]
    assert progress[0] == "src -> dst: 3/25 conversations, 0 failed"
    assert progress[-1] == "src -> dst: 25/25 conversations, 1 failed"
    assert len(progress) == 9
    assert result.lines[-1] == "migrated 24/25 conversations, 1 failed"
    assert "\r" not in result.stdout + result.stderr


def test_no_progress_prints_plain_lines_even_on_a_terminal(convstores, run):
    built = convstores.configure(src=memory("np-src"), dst=memory("np-dst"))
    fill(built["src"], ten())
    terminal = TerminalIO()

    result = run("convstore_migrate", "src", "dst", "--no-progress", stderr=terminal)

    assert "src -> dst: 10/10 conversations, 0 failed" in result.lines
    assert terminal.getvalue() == ""


def test_progress_bar_on_a_terminal(convstores, run):
    built = convstores.configure(src=memory("tb-src"), dst=faulty("tb-dst", FAIL_PUT=["c05"]))
    fill(built["src"], ten())
    terminal = TerminalIO()

    result = run("convstore_migrate", "src", "dst", stderr=terminal)

    bar = terminal.getvalue()
    assert "\r" in bar
    assert re.search(r"src -> dst: 100%.*10/10", bar)
    assert "'c05': could not write to the target" in bar
    assert not [line for line in result.lines if line.startswith("src -> dst")]
    assert result.lines == ["migrated 9/10 conversations, 1 failed"]


def test_interrupting_a_migration_deletes_nothing_from_the_source(convstores, run):
    def interrupt(conversation: Conversation) -> None:
        if conversation.conversation_id == "c05":
            raise KeyboardInterrupt

    built = convstores.configure(src=memory("ki-src"), dst=faulty("ki-dst", AFTER_PUT=interrupt))
    expected = fill(built["src"], ten())

    result = run("convstore_migrate", "src", "dst", "--delete-source", "--no-progress")

    assert isinstance(result.error, CommandError)
    assert "Interrupted" in str(result.error)
    assert "migrated 5/6 conversations, 0 failed" in result.lines
    assert contents(built["src"]) == expected
