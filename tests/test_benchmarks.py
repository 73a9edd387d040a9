"""The benchmark runner still runs and writes what the docs link to.

``python -m benchmarks --smoke`` uses tiny sizes, so these figures mean
nothing; what is checked is the shape: every part ran, the report has its
tables with one column per size, the plots are real PNGs, and the
concurrency check saw every message of our backends.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers.redis_server import find_binary

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    if find_binary() is None:
        pytest.skip("no redis-server or valkey-server binary for the benchmark run")
    output = tmp_path_factory.mktemp("bench")
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    page_before = (ROOT / "docs" / "performance.md").read_bytes()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--smoke",
            "--only",
            "length",
            "scale",
            "baselines",
            "concurrency",
            "--backends",
            "memory",
            "redis",
            "zerodb",
            "sqlite",
            "--output",
            str(output),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert (ROOT / "docs" / "performance.md").read_bytes() == page_before, (
        "a smoke run rewrote docs/performance.md"
    )
    return output, (output / "latest.md").read_text()


def table_after(report: str, caption: str) -> list[dict[str, str]]:
    """The Markdown table under ``*caption*`` as a list of rows."""
    start = report.index(f"*{caption}*")
    lines = []
    for line in report[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        lines.append([cell.strip() for cell in line.strip("|").split("|")])
    header, rows = lines[0], lines[2:]
    return [dict(zip(header, row, strict=True)) for row in rows]


def test_report_describes_the_machine_and_every_part(smoke_run):
    _output, report = smoke_run
    assert report.startswith("# django-convstore benchmark results")
    for field in ("CPU", "cores", "Python", "Redis", "SQLite", "date (UTC)"):
        assert re.search(rf"^\| {re.escape(field)} \| .+ \|$", report, re.MULTILINE), field
    for title in (
        "## Latency per operation vs conversation length",
        "## Latency per operation vs number of conversations",
        "## Redis: ours vs the original algorithm",
        "## Concurrent appends: 2 writers",
    ):
        assert title in report
    assert "This part failed" not in report


def test_length_table_has_every_backend_operation_and_size(smoke_run):
    _output, report = smoke_run
    rows = table_after(report, "median / p95 per call")
    backends = {row["backend"] for row in rows}
    assert backends == {"memory", "Redis", "ZeroDB (test server)", "database (SQLite)"}
    assert len(rows) == 4 * 6
    for row in rows:
        assert re.fullmatch(r"\S+ (µs|ms|s) / \S+ (µs|ms|s)", row["10 msgs"]), row
        assert re.fullmatch(r"\S+ (µs|ms|s) / \S+ (µs|ms|s)", row["100 msgs"]), row
    redis_append = next(r for r in rows if r["backend"] == "Redis" and r["operation"] == "append")
    assert redis_append["requests/call"] == "1 round trip"
    zerodb_load = next(
        r for r in rows if r["backend"] == "ZeroDB (test server)" and r["operation"] == "load"
    )
    assert zerodb_load["requests/call"].endswith("HTTP requests")
    sqlite_stats = next(
        r for r in rows if r["backend"] == "database (SQLite)" and r["operation"] == "get_stats"
    )
    assert sqlite_stats["requests/call"].endswith("SQL statement")


def test_baseline_table_has_ratios_for_every_size(smoke_run):
    _output, report = smoke_run
    rows = table_after(report, "their median · their time ÷ ours")
    assert {(r["operation"], r["messages"]) for r in rows} == {
        (op, n)
        for op in ("save", "append", "load", "load(last=20)", "delete")
        for n in ("10", "100")
    }
    for row in rows:
        assert re.fullmatch(r"\S+ (µs|ms) · [\d.]+x", row["original"]), row
        assert re.fullmatch(r"\S+ (µs|ms) · [\d.]+x", row["floor"]), row
    trips = table_after(
        report, "round trips per call (warm; a range when it depends on the length)"
    )
    append = next(r for r in trips if r["operation"] == "append")
    assert (append["ours"], append["original"]) == ("1", "2")


def test_concurrency_lost_nothing_on_our_backends(smoke_run):
    _output, report = smoke_run
    rows = {r["backend"]: r for r in table_after(report, "throughput and integrity")}
    assert set(rows) == {
        "memory (threads)",
        "Redis",
        "ZeroDB (test server)",
        "database (SQLite)",
        "original algorithm (Redis)",
    }
    for name, row in rows.items():
        if name != "original algorithm (Redis)":
            assert row["check"].startswith("ok"), row
            assert row["stored"] == row["appends"], row


def test_plots_are_pngs(smoke_run):
    output, report = smoke_run
    for name in (
        "latency_vs_length.png",
        "latency_vs_conversations.png",
        "baseline_ratios.png",
        "concurrency.png",
    ):
        data = (output / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, name
        assert f"]({name})" in report


def test_integrity_check_names_each_problem():
    from benchmarks.concurrency import check

    contents = ["0:0", "1:0", "0:1", "1:1"]
    ids = ["w0-0", "w1-0", "w0-1", "w1-1"]
    assert check(contents, ids, 4, workers=2, appends=2).startswith("ok")
    assert check(contents[:3], ids[:3], 3, workers=2, appends=2) == "1 of 4 messages lost"
    doubled = check([*contents, "1:1"], [*ids, "w1-1"], 5, workers=2, appends=2)
    assert "duplicated" in doubled
    swapped = check(["0:1", "0:0", "1:0", "1:1"], ids, 4, workers=2, appends=2)
    assert swapped == "worker 0's messages out of order"
    assert "message_count 3 != 4 stored" in check(contents, ids, 3, workers=2, appends=2)


def test_performance_block_is_replaced_between_the_markers_only(tmp_path):
    from benchmarks.report import BLOCK_END, BLOCK_START, update_performance_page

    page = tmp_path / "performance.md"
    page.write_text(f"# Title\n\n## Results\n\n{BLOCK_START}\nold\n{BLOCK_END}\n\n## Next\n")
    assert update_performance_page(f"{BLOCK_START}\nnew table\n{BLOCK_END}", page)
    assert page.read_text() == (
        f"# Title\n\n## Results\n\n{BLOCK_START}\nnew table\n{BLOCK_END}\n\n## Next\n"
    )
    page.write_text("# No markers\n")
    assert not update_performance_page(f"{BLOCK_START}\nx\n{BLOCK_END}", page)
    assert page.read_text() == "# No markers\n"


def test_the_performance_page_carries_the_block_and_its_links_resolve():
    from benchmarks.report import BLOCK_END, BLOCK_START, PERFORMANCE_PAGE

    text = PERFORMANCE_PAGE.read_text()
    assert text.count(BLOCK_START) == 1 and text.count(BLOCK_END) == 1
    for target in re.findall(r"\]\((benchmarks/results/[^)]+)\)", text):
        assert (ROOT / target).exists(), target
