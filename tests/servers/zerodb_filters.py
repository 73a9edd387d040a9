"""The filter, sort and update language of the ZeroDB-compatible test server.

Section 5.7 and 5.11 of ``zerodb-api.md``: MongoDB-style filters applied to
the fields inside ``row_data`` (implicit equality plus ``$eq $ne $gt $gte
$lt $lte $in $nin $contains $regex``), field names matching
``^[A-Za-z0-9_.]+$`` (a dot walks into nested objects), and bulk updates with
``$set $inc $push $pull $unset``. Anything else raises :class:`ApiError`
with status 400, as the real service's docstring describes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

FIELD_NAME = re.compile(r"^[A-Za-z0-9_.]+$")
OPERATORS = frozenset(
    {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$contains", "$regex"}
)
UPDATE_OPERATORS = frozenset({"$set", "$inc", "$push", "$pull", "$unset"})
MISSING: Any = object()


class ApiError(Exception):
    """An HTTP error answer: ``status`` and a FastAPI-style ``detail`` (string or list)."""

    def __init__(self, status: int, detail: Any, headers: Mapping[str, str] | None = None):
        super().__init__(status, detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})


def validation_error(loc: list[Any], msg: str, kind: str) -> ApiError:
    """A 422 in FastAPI's list format."""
    return ApiError(422, [{"loc": loc, "msg": msg, "type": kind}])


def check_field(name: Any) -> str:
    """A valid field name, or a 400."""
    if not isinstance(name, str) or not FIELD_NAME.match(name):
        raise ApiError(400, f"Invalid field name: {name!r}")
    return name


def _is_operator_dict(value: Any) -> bool:
    return isinstance(value, dict) and any(str(k).startswith("$") for k in value)


def check_filter(filter_: Any) -> dict[str, Any]:
    """Validate a filter object; returns it."""
    if filter_ is None:
        return {}
    if not isinstance(filter_, dict):
        raise validation_error(
            ["body", "filter"], "Input should be a valid dictionary", "dict_type"
        )
    for field, condition in filter_.items():
        if isinstance(field, str) and field.startswith("$"):
            raise ApiError(400, f"Unsupported filter operator: {field}")
        check_field(field)
        if not _is_operator_dict(condition):
            continue
        for op, argument in condition.items():
            if op not in OPERATORS:
                raise ApiError(400, f"Unsupported filter operator: {op}")
            if op in ("$in", "$nin") and not isinstance(argument, list):
                raise ApiError(400, f"{op} needs a list")
            if op == "$regex":
                if not isinstance(argument, str):
                    raise ApiError(400, "$regex needs a string")
                try:
                    re.compile(argument)
                except re.error as exc:
                    raise ApiError(400, f"Invalid regular expression: {exc}") from exc
    return filter_


def get_path(data: Any, field: str) -> Any:
    """The value at a dotted path inside ``data``, or :data:`MISSING`."""
    current = data
    for part in field.split("."):
        if not isinstance(current, dict) or part not in current:
            return MISSING
        current = current[part]
    return current


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(a: Any, b: Any) -> bool:
    if a is MISSING:
        a = None
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    if _number(a) and _number(b):
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)


def _compare(a: Any, b: Any) -> int | None:
    """-1/0/1 when ``a`` and ``b`` are comparable (two numbers or two strings), else None."""
    if (_number(a) and _number(b)) or (isinstance(a, str) and isinstance(b, str)):
        return (a > b) - (a < b)
    return None


def _operator_matches(value: Any, op: str, argument: Any) -> bool:
    if op == "$eq":
        return _equal(value, argument)
    if op == "$ne":
        return not _equal(value, argument)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        order = _compare(value, argument)
        if order is None:
            return False
        return {"$gt": order > 0, "$gte": order >= 0, "$lt": order < 0, "$lte": order <= 0}[op]
    if op == "$in":
        return any(_equal(value, item) for item in argument)
    if op == "$nin":
        return not any(_equal(value, item) for item in argument)
    if op == "$contains":
        if isinstance(value, str) and isinstance(argument, str):
            return argument in value
        if isinstance(value, list):
            return any(_equal(item, argument) for item in value)
        return False
    if op == "$regex":
        return isinstance(value, str) and re.search(argument, value) is not None
    raise ApiError(400, f"Unsupported filter operator: {op}")


def matches(row_data: dict[str, Any], filter_: dict[str, Any]) -> bool:
    """True when ``row_data`` satisfies every condition of a (validated) filter."""
    for field, condition in filter_.items():
        value = get_path(row_data, field)
        if _is_operator_dict(condition):
            if not all(_operator_matches(value, op, arg) for op, arg in condition.items()):
                return False
        elif not _equal(value, condition):
            return False
    return True


def check_sort(sort: Any) -> list[tuple[str, int]]:
    """``{"field": 1 | -1, ...}`` as a list of (field, direction)."""
    if sort is None:
        return []
    if not isinstance(sort, dict):
        raise validation_error(["body", "sort"], "Input should be a valid dictionary", "dict_type")
    keys = []
    for field, direction in sort.items():
        check_field(field)
        if direction not in (1, -1) or isinstance(direction, bool):
            raise ApiError(400, f"Sort direction for {field!r} must be 1 or -1")
        keys.append((field, direction))
    return keys


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is MISSING or value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, int(value))
    if _number(value):
        return (2, value)
    if isinstance(value, str):
        return (3, value)
    return (4, repr(value))


def sort_rows(rows: list[Any], keys: list[tuple[str, int]], data: Any) -> list[Any]:
    """Stable multi-key sort of envelopes; ``data(row)`` gives the dict the fields live in."""
    result = list(rows)
    for field, direction in reversed(keys):

        def key(row: Any, field: str = field) -> tuple[int, Any]:
            return _sort_key(get_path(data(row), field))

        result.sort(key=key, reverse=direction == -1)
    return result


def check_update(update: Any) -> dict[str, dict[str, Any]]:
    """Validate a bulk update document."""
    if not isinstance(update, dict) or not update:
        raise ApiError(400, "Update must be a non-empty object of update operators")
    for op, fields in update.items():
        if op not in UPDATE_OPERATORS:
            raise ApiError(400, f"Unsupported update operator: {op}")
        if not isinstance(fields, dict) or not fields:
            raise ApiError(400, f"{op} needs a non-empty object")
        for field, value in fields.items():
            check_field(field)
            if op == "$inc" and not _number(value):
                raise ApiError(400, f"$inc needs a number for {field!r}")
    return update


def _parent(data: dict[str, Any], field: str, create: bool) -> tuple[dict[str, Any] | None, str]:
    parts = field.split(".")
    current: Any = data
    for part in parts[:-1]:
        if not isinstance(current, dict):
            return None, parts[-1]
        if part not in current and create:
            current[part] = {}
        current = current.get(part)
    return (current if isinstance(current, dict) else None), parts[-1]


def apply_update(row_data: dict[str, Any], update: dict[str, dict[str, Any]]) -> bool:
    """Apply a validated update in place; True when something changed."""
    before = repr(row_data)
    for op, fields in update.items():
        for field, value in fields.items():
            parent, leaf = _parent(row_data, field, create=op in ("$set", "$inc", "$push"))
            if parent is None:
                if op in ("$set", "$inc", "$push"):
                    raise ApiError(400, f"Cannot apply {op} to {field!r}: not an object")
                continue
            current = parent.get(leaf, MISSING)
            if op == "$set":
                parent[leaf] = value
            elif op == "$unset":
                parent.pop(leaf, None)
            elif op == "$inc":
                if current is MISSING:
                    current = 0
                if not _number(current):
                    raise ApiError(400, f"Cannot apply $inc to non-numeric field {field!r}")
                parent[leaf] = current + value
            elif op == "$push":
                if current is MISSING:
                    current = parent[leaf] = []
                if not isinstance(current, list):
                    raise ApiError(400, f"Cannot apply $push to non-array field {field!r}")
                current.append(value)
            elif op == "$pull" and isinstance(current, list):
                parent[leaf] = [item for item in current if not _equal(item, value)]
    return repr(row_data) != before
