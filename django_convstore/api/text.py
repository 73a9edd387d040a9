"""Docstrings as the browsable API and the OpenAPI schema show them: Markdown, not reST.

The project's docstrings use reStructuredText inline markup (double-backtick
literals, roles such as ``:class:`~pkg.Name```). :func:`markdown_from_rest`
rewrites them as Markdown code spans, and :func:`plain_from_markdown` drops
the backticks for places that show plain text (DRF's browsable API when
Python-Markdown is not installed).
"""

from __future__ import annotations

import re

_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`([^`]+)`")
_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)
_LITERAL_BLOCK = re.compile(r"(\S)::$", re.MULTILINE)
_CODE_SPAN = re.compile(r"`([^`]+)`")


def _role_text(match: re.Match[str]) -> str:
    text = match.group(1).strip()
    if text.endswith(">") and "<" in text:
        text = text[: text.index("<")].strip()  # :role:`title <target>`
    elif text.startswith("~"):
        text = text[1:].rsplit(".", 1)[-1]  # :role:`~pkg.mod.Name`
    return f"`{text}`"


def markdown_from_rest(text: str) -> str:
    """``text`` with reST roles, double-backtick literals and ``::`` markers as Markdown."""
    text = _ROLE.sub(_role_text, text)
    text = _LITERAL.sub(r"`\1`", text)
    return _LITERAL_BLOCK.sub(r"\1:", text)


def plain_from_markdown(text: str) -> str:
    """``text`` with its Markdown code spans as plain words."""
    return _CODE_SPAN.sub(r"\1", text)
