"""The API's JSON parser: DRF's, plus two guards that keep odd bodies at 400.

JSON nested deeper than :data:`MAX_JSON_DEPTH` and strings holding lone UTF-16
surrogates (``"\\ud800"``, valid JSON but not valid Unicode, so they could
never be stored or rendered as UTF-8) are rejected as parse errors.
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

#: The deepest nesting of arrays/objects a request body may have.
MAX_JSON_DEPTH = 64

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _check_structure(data: Any, *, check_strings: bool) -> None:
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels.")
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
        try:
            text = raw.decode(encoding) if isinstance(raw, bytes) else str(raw)
            data = json.loads(text, parse_constant=strict_constant)
        except (ValueError, LookupError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        except RecursionError:
            raise ParseError(
                f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels."
            ) from None
        _check_structure(data, check_strings=bool(_SURROGATE_ESCAPE.search(text)))
        return data
