"""``convstore_export`` / ``convstore_import``: JSON Lines backups, owner exports, restores."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management.base import CommandError

from .conftest import BACKENDS
from .support import FAULTY_STORE, contents, dump, expired, sample_conversations, simple

MEMORY = "django_convstore.backends.memory.MemoryStore"


def memory(location: str) -> dict[str, str]:
    return {"BACKEND": MEMORY, "LOCATION": location}


def read_jsonl(path) -> dict[str, dict]:
    with open(path, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    return {row["conversation_id"]: row for row in rows}


@pytest.mark.parametrize("backend", BACKENDS)
def test_export_then_import_round_trip_is_exact(convstores, run, tmp_path, backend):
    built = convstores.configure(
        default=convstores.config(backend), restored=convstores.config(backend)
    )
    data = sample_conversations()
    for conversation in data:
        built["default"].put(conversation)
    expected = dump(data)
    backup = tmp_path / "backup.jsonl"

    exported = run("convstore_export", "--output", str(backup))

    assert exported.error is None, exported
    assert exported.lines == [f"exported {len(data)} conversations from 'default' to {backup}"]
    assert read_jsonl(backup) == expected
    assert not (tmp_path / "backup.jsonl.partial").exists()

    imported = run("convstore_import", str(backup), "--store", "restored")

    assert imported.error is None, imported
    assert imported.lines == [
        f"imported {len(data)}/{len(data)} conversations into 'restored', 0 failed"
    ]
    assert contents(built["restored"]) == expected


def test_export_to_stdout_is_pure_jsonl(convstores, run):
    built = convstores.configure(default=memory("ex-out"))
    data = [simple("a", owner="1"), simple("b"), expired("c")]
    for conversation in data:
        built["default"].put(conversation)

    result = run("convstore_export")

    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {row["conversation_id"]: row for row in rows} == dump(data[:2])
    assert result.stderr.strip() == "exported 2 conversations from 'default'"

    everything = run("convstore_export", "--include-expired")
    assert len(everything.lines) == 3


def test_owner_export_for_gdpr(convstores, run, tmp_path):
    built = convstores.configure(default=memory("ex-a"), other=memory("ex-b"))
    mine = [simple("m1", owner="17"), simple("m2", owner="17", metadata={"x": 1})]
    mine_expired = expired("m3", owner="17")
    for conversation in [*mine, mine_expired, simple("t1", owner="170"), simple("n1")]:
        built["default"].put(conversation)

    live = run("convstore_export", "--owner", "17", "--output", str(tmp_path / "live.jsonl"))
    assert live.lines == [
        f"exported 2 conversations of owner '17' from 'default' to {tmp_path}/live.jsonl"
    ]
    assert read_jsonl(tmp_path / "live.jsonl") == dump(mine)

    run(
        "convstore_export",
        "--owner",
        "17",
        "--include-expired",
        "--output",
        str(tmp_path / "all.jsonl"),
    )
    assert read_jsonl(tmp_path / "all.jsonl") == dump([*mine, mine_expired])

    empty = run("convstore_export", "--store", "other", "--owner", "17")
    assert empty.stdout == ""


def test_failed_export_leaves_an_existing_file_untouched(convstores, run, tmp_path):
    built = convstores.configure(
        default={"BACKEND": FAULTY_STORE, "LOCATION": "ex-f", "OPTIONS": {"FAIL_ITER_AFTER": 2}}
    )
    for conversation in [simple(f"c{i}") for i in range(5)]:
        built["default"].put(conversation)
    backup = tmp_path / "backup.jsonl"
    backup.write_text("previous backup\n", encoding="utf-8")

    result = run("convstore_export", "--output", str(backup))

    assert isinstance(result.error, CommandError)
    assert "export of 'default' failed after 2 conversations: BackendUnavailableError" in str(
        result.error
    )
    assert backup.read_text(encoding="utf-8") == "previous backup\n"
    assert not (tmp_path / "backup.jsonl.partial").exists()


def test_export_unknown_store(convstores, run):
    convstores.configure(default=memory("ex-u"))
    result = run("convstore_export", "--store", "nope")
    assert "Unknown store alias 'nope'; configured stores: default." in str(result.error)


def test_import_reports_bad_lines_and_imports_the_rest(convstores, run, tmp_path):
    built = convstores.configure(default=memory("im-bad"))
    good = [simple("g1"), simple("g2", owner="9")]
    truncated = simple("short").to_dict()
    truncated["messages"] = truncated["messages"][:1]
    bad_role = simple("role").to_dict()
    bad_role["messages"][0]["role"] = "narrator"
    lines = [
        json.dumps(good[0].to_dict()),
        "{not json",
        "",
        json.dumps(truncated),
        json.dumps(bad_role),
        '{"a":' * 100_000 + "1" + "}" * 100_000,
        json.dumps(good[1].to_dict()),
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = run("convstore_import", str(path))

    assert isinstance(result.error, CommandError)
    assert "4 conversations failed to import" in str(result.error)
    assert result.lines == ["imported 2/6 conversations into 'default', 4 failed"]
    assert "line 2: InvalidInputError: line: is not valid JSON" in result.stderr
    assert "line 4: InvalidInputError: metadata.message_count: is 3 but 1 messages" in (
        result.stderr
    )
    assert "line 5: InvalidInputError: messages.0.role: must be one of" in result.stderr
    assert "line 6: InvalidInputError: line: nests too deeply" in result.stderr
    assert contents(built["default"]) == dump(good)


def test_import_skip_existing_dry_run_and_stdin(convstores, run):
    built = convstores.configure(default=memory("im-opts"))
    data = [simple("a"), simple("b"), simple("c")]
    built["default"].put(simple("a", 1, owner="kept"))
    before = contents(built["default"])
    jsonl = "".join(json.dumps(c.to_dict()) + "\n" for c in data)

    dry = run("convstore_import", "--dry-run", "--skip-existing", stdin=io.StringIO(jsonl))
    assert dry.lines == [
        "would import 2/3 conversations into 'default', 0 failed, 1 skipped (already in the store)"
    ]
    assert contents(built["default"]) == before

    real = run("convstore_import", "-", "--skip-existing", stdin=io.StringIO(jsonl))
    assert real.error is None, real
    assert contents(built["default"]) == {**dump(data[1:]), **before}


def test_import_missing_file(convstores, run, tmp_path):
    convstores.configure(default=memory("im-missing"))
    result = run("convstore_import", str(tmp_path / "nope.jsonl"))
    assert isinstance(result.error, CommandError)
    assert "could not read" in str(result.error)


def test_exported_lines_survive_any_line_splitter(convstores, run):
    built = convstores.configure(default=memory("ls-src"))
    tricky = simple("tricky", 1)
    tricky.messages[0].content = "a\u2028b\u2029c\x85d\re\nf"
    built["default"].put(tricky)

    result = run("convstore_export")

    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == tricky.to_dict()
