"""Model fields that give back exactly what the database backend stored, on every database.

Two things that a store accepts do not survive a plain PostgreSQL column:

* a NUL character (``"\\x00"``) in a message or in metadata: ``text`` refuses it,
  and ``jsonb`` refuses ``"\\u0000"``;
* numbers in ``jsonb`` lose their type: ``1e300`` comes back as a 301-digit
  integer.

:class:`SafeTextField` stores a string that holds a NUL as a JSON string
literal behind a marker character, and every other string unchanged.
:class:`JSONTextField` stores JSON as text, so it reads back with exactly the
values that were written.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import models

#: Marks an encoded value: U+FFFF is a Unicode noncharacter, never found in real text.
_MARKER = "\uffff"


def encode_text(value: str) -> str:
    """``value`` in a form every database stores (unchanged unless it needs escaping)."""
    if "\x00" in value or value.startswith(_MARKER):
        return _MARKER + json.dumps(value)
    return value


def decode_text(value: str) -> str:
    """The inverse of :func:`encode_text`."""
    if value.startswith(_MARKER):
        decoded: str = json.loads(value[1:])
        return decoded
    return value


def dump_json(value: Any) -> str:
    """Compact JSON text; control characters (NUL included) are escaped."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class SafeTextField(models.TextField):
    """A text column that also round-trips NUL characters."""

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        return None if value is None else encode_text(value)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return None if value is None else decode_text(value)


class JSONTextField(models.TextField):
    """JSON kept as text, so it reads back exactly as written on every database."""

    # The value types django-stubs reads (a JSON value in, a JSON value out).
    _pyi_private_set_type: Any
    _pyi_private_get_type: Any

    def get_prep_value(self, value: Any) -> Any:
        return None if value is None else dump_json(value)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return None if value is None else json.loads(value)

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value)
        return value

    def value_to_string(self, obj: Any) -> str:
        return dump_json(self.value_from_object(obj))
