"""Run every benchmark: ``python -m benchmarks [--quick] [--large] [--only NAME ...]``.

Starts its own Redis and ZeroDB test server (and uses a SQLite file, plus
PostgreSQL when one answers), measures, and writes
``benchmarks/results/latest.md`` and PNG plots next to it. A full run (no
``--quick``/``--only``/``--backends``) into the default directory also
regenerates the performance block of ``docs/performance.md``. Parts (``--only``):

* ``length`` — per-operation latency and requests vs conversation length, every backend;
* ``scale`` — per-operation latency vs number of conversations (memory, Redis);
* ``baselines`` — Redis: ours vs the original algorithm, raw redis-py and the peers;
* ``concurrency`` — several processes appending to one conversation;
* ``memory``, ``lru``, ``redis``, ``zerodb``, ``database``, ``migrate`` — the per-module
  benchmarks (``benchmarks/<name>_bench.py``), each with its own targets.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path

from .section import Section, Table

MATRIX_PARTS = ("length", "scale", "baselines", "concurrency")
MODULE_PARTS = {
    "memory": "memory_bench",
    "lru": "lru_bench",
    "redis": "redis_bench",
    "zerodb": "zerodb_bench",
    "database": "database_bench",
    "migrate": "migrate_bench",
    "cluster": "cluster_bench",
}
BACKENDS = ("memory", "redis", "zerodb", "sqlite", "postgresql")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run the django-convstore benchmarks and write benchmarks/results/.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, few calls (<1 min)")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes that only prove the code runs (used by the test suite)",
    )
    parser.add_argument(
        "--large", action="store_true", help="add 1,000,000 conversations (Redis listing)"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        choices=[*MATRIX_PARTS, *MODULE_PARTS],
        help=f"run only these parts: {', '.join([*MATRIX_PARTS, *MODULE_PARTS])}",
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        metavar="NAME",
        choices=BACKENDS,
        help=f"limit the matrix parts to these backends: {', '.join(BACKENDS)}",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="where to write latest.md and the plots (default: benchmarks/results)",
    )
    parser.add_argument(
        "--no-docs",
        action="store_true",
        help="never touch docs/performance.md, even on a full run",
    )
    return parser.parse_args(argv)


def describe(doc: str) -> tuple[str, str]:
    """A module docstring as a title and Markdown text (without its usage line)."""
    first, _, rest = doc.strip().partition("\n\n")
    paragraphs = [
        p.replace("``", "`")
        for p in rest.split("\n\n")
        if p.strip() and not p.strip().startswith("python -m")
    ]
    return first.replace("\n", " ").replace("``", "`").rstrip("."), "\n\n".join(paragraphs)


def _module_part(name: str, quick: bool) -> Section:
    module_name = MODULE_PARTS[name]
    try:
        module = importlib.import_module(f"benchmarks.{module_name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"benchmarks.{module_name}":
            raise
        section = Section(name, f"benchmarks/{module_name}.py", "")
        section.error = f"benchmarks/{module_name}.py does not exist in this checkout"
        return section
    title, intro = describe(module.__doc__ or module_name)
    section = Section(name, f"{title} (`benchmarks/{module_name}.py`)", intro)
    section.tables.append(Table("its own targets, checked in the same run", module.run(quick)))
    return section


def main(argv: list[str] | None = None) -> int:
    """Run the selected parts and write the report; 1 when any part failed."""
    args = parse(argv)
    started = time.perf_counter()
    from . import report
    from .comparison import comparison_section
    from .concurrency import concurrency_section
    from .environment import backends, machine, postgres_version, redis_version
    from .matrix import lengths_section, scale_section
    from .plan import Plan

    if args.smoke:
        plan = Plan.smoke()
    elif args.quick:
        plan = Plan.quick_run(large=args.large)
    else:
        plan = Plan.full(large=args.large)
    parts = args.only or [*MATRIX_PARTS, *MODULE_PARTS]
    output = args.output or report.RESULTS
    output.mkdir(parents=True, exist_ok=True)
    wanted = set(args.backends or BACKENDS)
    sections: list[Section] = []

    def attempt(key: str, run: Callable[[], Section]) -> None:
        began = time.perf_counter()
        print(f"[benchmarks] {key} …", file=sys.stderr, flush=True)
        try:
            section = run()
        except Exception as exc:  # keep going: one broken part must not hide the others
            traceback.print_exc()
            section = Section(key, key, "")
            section.error = f"{type(exc).__name__}: {exc}"
        section.seconds = time.perf_counter() - began
        print(f"[benchmarks] {key}: {section.seconds:.1f} s", file=sys.stderr, flush=True)
        sections.append(section)

    matrix = [part for part in MATRIX_PARTS if part in parts]
    if matrix:
        runners = {
            "length": lengths_section,
            "scale": scale_section,
            "baselines": comparison_section,
            "concurrency": concurrency_section,
        }
        with backends(only=wanted) as found:
            for part in matrix:
                attempt(part, partial(runners[part], found, plan))
    for part in MODULE_PARTS:
        if part in parts:
            attempt(part, partial(_module_part, part, args.quick or args.smoke))

    seconds = time.perf_counter() - started
    info = machine(redis_version(), postgres_version() if "postgresql" in wanted else None)
    if "postgresql" not in wanted:
        info["PostgreSQL"] = "not part of this run (--backends)"
    command = " ".join(["python -m benchmarks", *(sys.argv[1:] if argv is None else argv)])
    (output / "latest.md").write_text(
        report.render(sections, info, command=command, seconds=seconds)
    )
    written = report.plot(sections, output)
    print(f"[benchmarks] wrote {output / 'latest.md'}", file=sys.stderr)
    for path in written:
        print(f"[benchmarks] wrote {path}", file=sys.stderr)
    complete = not (args.quick or args.smoke or args.only or args.backends)
    if complete and args.output is None and not args.no_docs:
        block = report.performance_block(sections, info, seconds=seconds)
        page = report.PERFORMANCE_PAGE.relative_to(report.ROOT)
        if report.update_performance_page(block):
            print(f"[benchmarks] updated the performance block of {page}", file=sys.stderr)
        else:
            print(f"[benchmarks] {page} has no performance block markers", file=sys.stderr)
    failed = [s.key for s in sections if s.error]
    if failed:
        print(f"[benchmarks] FAILED parts: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
