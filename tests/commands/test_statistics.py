"""Bulk writes into a database store keep PostgreSQL's planner statistics fresh.

``convstore_migrate`` and ``convstore_import`` run the store's ``analyze()``
each time the number of conversations written doubles (from 500) and once at
the end; on SQLite (and for other stores) they run nothing extra.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connections

from django_convstore.backends.database import DatabaseStore
from django_convstore.exceptions import BackendUnavailableError
from django_convstore.management.statistics import FIRST_REFRESH, StatisticsRefresh

from .conftest import DATABASE_LEGS
from .support import contents, dump, simple

#: SQLite, and PostgreSQL when a server answers.
DATABASES = pytest.mark.parametrize(
    "backend", ["database", pytest.param("database_postgresql", marks=pytest.mark.postgres)]
)
#: Crosses the first refresh once: a refresh there and one at the end.
COUNT = FIRST_REFRESH + 20


@contextmanager
def analyze_statements(alias: str) -> Iterator[list[str]]:
    """The ANALYZE statements run on database ``alias`` inside the block."""
    seen: list[str] = []

    def record(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith("ANALYZE"):
            seen.append(sql)
        return execute(sql, params, many, context)

    with connections[alias].execute_wrapper(record):
        yield seen


def conversations() -> list:
    return [simple(f"s{i:04d}", count=1) for i in range(COUNT)]


@DATABASES
def test_migrate_refreshes_statistics_as_it_writes(convstores, run, backend):
    built = convstores.configure(src=convstores.config("memory"), dst=convstores.config(backend))
    data = conversations()
    for conversation in data:
        built["src"].put(conversation)

    with analyze_statements(DATABASE_LEGS[backend]) as seen:
        result = run("convstore_migrate", "src", "dst", "--no-progress")

    assert result.error is None, result
    assert contents(built["dst"]) == dump(data)
    expected = 2 if backend == "database_postgresql" else 0  # at 500, and at the end
    assert len(seen) == expected
    assert all("django_convstore_storedconversation" in sql for sql in seen)


@DATABASES
def test_import_refreshes_statistics_as_it_writes(convstores, run, backend):
    built = convstores.configure(default=convstores.config(backend))
    data = conversations()
    jsonl = "".join(json.dumps(c.to_dict()) + "\n" for c in data)

    with analyze_statements(DATABASE_LEGS[backend]) as seen:
        result = run("convstore_import", "-", stdin=io.StringIO(jsonl))

    assert result.error is None, result
    assert contents(built["default"]) == dump(data)
    assert len(seen) == (2 if backend == "database_postgresql" else 0)


@DATABASES
def test_a_dry_run_refreshes_nothing(convstores, run, backend):
    built = convstores.configure(src=convstores.config("memory"), dst=convstores.config(backend))
    for conversation in conversations():
        built["src"].put(conversation)

    with analyze_statements(DATABASE_LEGS[backend]) as seen:
        result = run("convstore_migrate", "src", "dst", "--dry-run", "--no-progress")

    assert result.error is None, result
    assert seen == []


class ScriptedAnalyze(DatabaseStore):
    """A database store whose ``analyze`` answers from a script (True, or an error to raise)."""

    def __init__(self, *answers: bool | Exception) -> None:
        super().__init__("", {"NAMESPACE": "scripted"}, alias="scripted")
        self.answers = list(answers)
        self.calls = 0

    def analyze(self) -> bool:
        self.calls += 1
        answer = self.answers.pop(0) if self.answers else True
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_refreshes_when_the_count_doubles_and_at_the_end():
    store = ScriptedAnalyze()
    refresh = StatisticsRefresh(store, first=2)
    for _ in range(7):
        refresh.wrote()
    assert store.calls == 2  # after 2 and 4 written (8 is not reached)
    refresh.finish()
    refresh.finish()  # nothing written since: no second refresh
    assert (store.calls, refresh.refreshed) == (3, 3)


def test_a_failed_refresh_is_skipped_and_caught_up_later():
    store = ScriptedAnalyze(BackendUnavailableError("database 'default' is unreachable"))
    refresh = StatisticsRefresh(store, first=1)
    refresh.wrote()  # the refresh fails; the write goes on
    assert (store.calls, refresh.refreshed) == (1, 0)
    refresh.finish()  # what failed is caught up at the end
    assert (store.calls, refresh.refreshed) == (2, 1)


def test_other_stores_are_left_alone(convstores):
    built = convstores.configure(default=convstores.config("memory"))
    refresh = StatisticsRefresh(built["default"], first=1)
    refresh.wrote()
    refresh.finish()
    assert refresh.refreshed == 0
