"""Indexes for the ZeroDB-compatible test server, built from a table's declared schema.

A real service answers a filtered query from an index instead of reading
the whole table; without one the test server would make every query cost
as much as the table is large, and benchmarks would measure the test
server. The table schema's ``indexes`` list (``zerodb-api.md`` 4.1: the
service treats the schema as metadata) declares them:

* ``"field"``: a hash index, used for equality (``{"f": v}``, ``{"f": {"$eq":
  v}}``) and ``$in`` conditions;
* ``["a", "b"]``: for each value of ``a``, the rows ordered by the number in
  ``b``, used for an equality on ``a`` together with a range (``$gt``,
  ``$gte``, ``$lt``, ``$lte``) or ``$in`` on ``b``.

An index only picks candidate rows; the full filter still decides, so
results are exactly those of a table scan.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

from .zerodb_filters import MISSING, get_path

_RANGE = ("$gt", "$gte", "$lt", "$lte")


def index_key(value: Any) -> tuple[Any, ...]:
    """A hashable key under which equal values (as the filters compare them) meet."""
    if value is MISSING or value is None:
        return ("z",)
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", value)
    if isinstance(value, str):
        return ("s", value)
    return ("j", json.dumps(value, sort_keys=True))


def _union(sets: list[set[str]]) -> set[str]:
    return sets[0] if len(sets) == 1 else set().union(*sets)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _wanted(condition: Any) -> list[Any] | None:
    """The values an equality or ``$in`` condition admits (None: not such a condition)."""
    if not isinstance(condition, Mapping) or not any(str(k).startswith("$") for k in condition):
        return None if isinstance(condition, Mapping) else [condition]
    if "$eq" in condition:
        return [condition["$eq"]]
    if isinstance(condition.get("$in"), list):
        return list(condition["$in"])
    return None


class TableIndex:
    """The declared indexes of one table (only ever touched under the server's lock)."""

    def __init__(self, declared: Any) -> None:
        self.hashed: dict[str, dict[tuple[Any, ...], set[str]]] = {}
        self.ordered: dict[tuple[str, str], dict[tuple[Any, ...], list[tuple[Any, int, str]]]] = {}
        for item in declared if isinstance(declared, list) else []:
            if isinstance(item, str):
                self.hashed[item] = {}
            elif (
                isinstance(item, list) and len(item) == 2 and all(isinstance(f, str) for f in item)
            ):
                self.ordered[(item[0], item[1])] = {}

    def add(self, row_id: str, order: int, data: Mapping[str, Any]) -> None:
        """Index a row (``order``: its insertion number)."""
        for field, buckets in self.hashed.items():
            buckets.setdefault(index_key(get_path(data, field)), set()).add(row_id)
        for (field, by), ordered in self.ordered.items():
            value = get_path(data, by)
            if _number(value) and not math.isnan(value):
                bucket = ordered.setdefault(index_key(get_path(data, field)), [])
                bisect.insort(bucket, (value, order, row_id))

    def remove(self, row_id: str, order: int, data: Mapping[str, Any]) -> None:
        """Forget a row as it was indexed."""
        for field, buckets in self.hashed.items():
            key = index_key(get_path(data, field))
            members = buckets.get(key)
            if members is not None:
                members.discard(row_id)
                if not members:
                    del buckets[key]
        for (field, by), ordered in self.ordered.items():
            value = get_path(data, by)
            key = index_key(get_path(data, field))
            bucket = ordered.get(key)
            if bucket is None or not _number(value):
                continue
            at = bisect.bisect_left(bucket, (value, order, row_id))
            if at < len(bucket) and bucket[at] == (value, order, row_id):
                del bucket[at]
                if not bucket:
                    del ordered[key]

    def candidates(self, filter_: Mapping[str, Any]) -> Iterable[str] | None:
        """Row ids that may match ``filter_`` (a superset), or None to scan the table.

        Of the usable indexes, the one with the fewest candidates is used (sizes
        are estimated before anything is copied, so a large bucket costs nothing).
        """
        best_size: int | None = None
        best: Callable[[], Iterable[str]] | None = None
        for field, buckets in self.hashed.items():
            wanted = _wanted(filter_[field]) if field in filter_ else None
            if wanted is None:
                continue
            chosen = [buckets.get(index_key(value), set()) for value in wanted]
            size = sum(map(len, chosen))
            if best_size is None or size < best_size:
                best_size, best = size, partial(_union, chosen)
        for (field, by), ordered in self.ordered.items():
            wanted = _wanted(filter_[field]) if field in filter_ else None
            condition = filter_.get(by)
            if wanted is None or len(wanted) != 1 or not isinstance(condition, Mapping):
                continue
            found = self._slice(ordered.get(index_key(wanted[0]), []), condition)
            if found is not None and (best_size is None or len(found) < best_size):
                best_size, best = len(found), partial(list, found)
        return None if best is None else best()

    @staticmethod
    def _slice(
        bucket: list[tuple[Any, int, str]], condition: Mapping[str, Any]
    ) -> list[str] | None:
        if isinstance(condition.get("$in"), list):
            found = []
            for value in condition["$in"]:
                if _number(value):
                    at = bisect.bisect_left(bucket, (value, -1, ""))
                    while at < len(bucket) and bucket[at][0] == value:
                        found.append(bucket[at][2])
                        at += 1
            return found
        bounds = {op: condition[op] for op in _RANGE if op in condition}
        if not bounds or not all(_number(v) for v in bounds.values()):
            return None
        lo, hi = 0, len(bucket)
        if "$gte" in bounds:
            lo = max(lo, bisect.bisect_left(bucket, (bounds["$gte"], -1, "")))
        if "$gt" in bounds:
            lo = max(lo, bisect.bisect_right(bucket, (bounds["$gt"], math.inf, "")))
        if "$lt" in bounds:
            hi = min(hi, bisect.bisect_left(bucket, (bounds["$lt"], -1, "")))
        if "$lte" in bounds:
            hi = min(hi, bisect.bisect_right(bucket, (bounds["$lte"], math.inf, "")))
        return [entry[2] for entry in bucket[lo:hi]]


__all__ = ["TableIndex", "index_key"]
