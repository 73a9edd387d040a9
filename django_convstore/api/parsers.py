"""The API's JSON parser: DRF's, plus two guards that keep odd bodies at 400.

Nesting: any JSON value a request carries may nest ``CONVSTORE_MAX_DEPTH``
levels, which the store's validation enforces field by field (``{"metadata":
["nests deeper than 64 levels ..."]}``). The parser only stops runaway input
early: a body nesting deeper than twice that plus the body's own levels (see
:func:`max_body_depth`) is a parse error, as is one deep enough to exhaust
Python's recursion limit in the JSON decoder. Never a 500.

Unicode: strings holding lone UTF-16 surrogates (``"\\ud800"``, valid JSON but
not valid Unicode, so they could never be stored or rendered as UTF-8) are
parse errors too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils.json import strict_constant

from ..conf import app_settings

#: Levels a request body wraps around the deepest value it carries: the body object, its
#: ``messages`` array and a message object (a message's ``metadata`` sits at level 4).
BODY_LEVELS = 3


def max_body_depth() -> int:
    """The deepest nesting of arrays/objects the parser accepts: runaway input beyond it.

    Twice ``CONVSTORE_MAX_DEPTH`` plus :data:`BODY_LEVELS`, so a value that is
    too deep anywhere in a body still reaches validation, which names it.
    """
    limit: int = app_settings.MAX_DEPTH
    return 2 * limit + BODY_LEVELS


def _too_deep(limit: int) -> ParseError:
    return ParseError(
        f"JSON parse error - nested deeper than {limit} levels (values may nest "
        f"{app_settings.MAX_DEPTH}, the CONVSTORE_MAX_DEPTH setting)."
    )


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _check_structure(data: Any, *, limit: int, check_strings: bool) -> None:
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > limit:
                raise _too_deep(limit)
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if check_strings and isinstance(key, str):
                    stack.append((key, depth))
                stack.append((item, depth + 1))
        elif check_strings and isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ParseError(
                    "JSON parse error - strings must be valid Unicode "
                    "(lone surrogate escapes are not allowed)."
                ) from None


class ConvStoreJSONParser(JSONParser):
    """DRF's ``JSONParser`` (NaN and Infinity rejected) plus depth and Unicode guards."""

    def parse(
        self,
        stream: IO[Any] | None,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        """Return the parsed body or raise ``ParseError`` (400)."""
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        raw = stream.read() if stream is not None else b""
        limit = max_body_depth()
        try:
            text = raw.decode(encoding) if isinstance(raw, bytes) else str(raw)
            data = json.loads(text, parse_constant=strict_constant)
        except (ValueError, LookupError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        except RecursionError:
            raise _too_deep(limit) from None
        _check_structure(data, limit=limit, check_strings=bool(_SURROGATE_ESCAPE.search(text)))
        return data
