"""The Lua scripts of the Redis store, read from the ``.lua`` files next to this module.

A script may start with ``--! include lib/<name>.lua`` lines: the loader puts
those files' text in their place (Redis has no module system for scripts).
Each :class:`Script` carries its SHA1, so callers send ``EVALSHA`` first and
fall back to ``EVAL`` (which also caches the script) when the server answers
``NOSCRIPT`` (after a restart or ``SCRIPT FLUSH``).
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from typing import NamedTuple

_INCLUDE = "--! include "


class Script(NamedTuple):
    """One Lua script: its name (the file name without ``.lua``), source and SHA1."""

    name: str
    source: str
    sha: str


def _read(path: str) -> str:
    return (resources.files(__package__) / path).read_text(encoding="utf-8")


@cache
def load(name: str) -> Script:
    """The script ``<name>.lua`` with its includes resolved."""
    lines = []
    for line in _read(f"{name}.lua").splitlines():
        if line.startswith(_INCLUDE):
            lines.append(_read(line[len(_INCLUDE) :].strip()).rstrip("\n"))
        else:
            lines.append(line)
    source = "\n".join(lines) + "\n"
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())


__all__ = ["Script", "load"]
