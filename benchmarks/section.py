"""What one part of a benchmark run hands to the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    """A captioned table: rows are dicts with the same keys (the columns)."""

    caption: str
    rows: list[dict[str, object]]


@dataclass
class Section:
    """One part of the run: its tables, notes, and raw figures for the plots."""

    key: str
    title: str
    intro: str
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
