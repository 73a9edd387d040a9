"""The JSON Lines format of ``convstore_export`` / ``convstore_import``.

One conversation per line, as ``Conversation.to_dict()`` gives it (UTF-8,
compact separators, no NaN/Infinity). ``metadata.expires_at`` is written for
readers' convenience and ignored on import, since it is derived from
``updated_at`` and ``ttl``.
"""

from __future__ import annotations

import json

from .. import validation
from ..exceptions import InvalidInputError
from ..types import Conversation

#: Characters that ``str.splitlines()`` treats as line breaks but JSON leaves unescaped.
_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def dump_line(conversation: Conversation) -> str:
    """One conversation as one JSON line (without the newline).

    Non-ASCII text stays readable; the few characters some line splitters
    take for line breaks are escaped, so a line is always exactly one record.
    """
    line = json.dumps(
        conversation.to_dict(), ensure_ascii=False, separators=(",", ":"), allow_nan=False
    )
    for character, escaped in _LINE_BREAKS.items():
        line = line.replace(character, escaped)
    return line


def parse_line(line: str) -> Conversation:
    """A validated conversation from one JSON line, or ``InvalidInputError``."""
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise InvalidInputError("line", f"is not valid JSON: {exc}.") from exc
    except RecursionError:
        raise InvalidInputError("line", "nests too deeply to be a conversation.") from None
    return validation.validate_conversation(data)
