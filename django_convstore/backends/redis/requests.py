"""The requests a plan of :mod:`.operations` yields, and how they go on the wire.

A request is one round trip: a script (:class:`Eval`), a command
(:class:`Call`), a ``MULTI``/``EXEC`` transaction or a pipelined batch. The
drivers (:mod:`.runner`, :mod:`.async_`) send them; the helpers here are
shared by both.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any, NamedTuple, TypeVar

from . import scripts

_T = TypeVar("_T")

_pack_command: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _pack_command
except ImportError:  # pragma: no cover - hiredis comes with the redis extra
    _pack_command = None


class Eval(NamedTuple):
    """Run a script (``EVALSHA``, falling back to ``EVAL``)."""

    script: scripts.Script
    keys: Sequence[str]
    args: Sequence[Any]


class Call(NamedTuple):
    """Send one command."""

    args: tuple[Any, ...]


class Transaction(NamedTuple):
    """Send commands (and scripts) in ``MULTI``/``EXEC``; the reply is the list of their
    replies, or the error when the server refused the transaction as a whole (out of
    memory, for one). A command that failed inside raises its error."""

    commands: list[tuple[Any, ...] | Eval]


class Batch(NamedTuple):
    """Pipeline independent requests (one round trip); the reply is the list of replies."""

    requests: list[Eval | Call]


Request = Eval | Call | Transaction | Batch
Plan = Generator[Request, Any, _T]


def eval_args(request: Eval, *, by_sha: bool = True) -> tuple[Any, ...]:
    """The ``EVALSHA`` (or ``EVAL``) command of a script request."""
    script, keys, args = request
    if by_sha:
        return ("EVALSHA", script.sha, len(keys), *keys, *args)
    return ("EVAL", script.source, len(keys), *keys, *args)


def pack(commands: Sequence[tuple[Any, ...]], connection: Any) -> Any:
    """The commands in the Redis protocol: with hiredis (C) when it is installed, else with
    the connection's own packer. Strings are sent as UTF-8."""
    if _pack_command is None:
        return connection.pack_commands(commands)
    if len(commands) == 1:
        return [_pack_command(commands[0])]
    return [b"".join([_pack_command(command) for command in commands])]  # one write


def wrap_transaction(
    commands: Sequence[tuple[Any, ...] | Eval], *, by_sha: bool = True
) -> list[tuple[Any, ...]]:
    """``MULTI``, the commands (scripts as ``EVALSHA``, or ``EVAL``), ``EXEC``."""
    inner = [
        eval_args(command, by_sha=by_sha) if isinstance(command, Eval) else command
        for command in commands
    ]
    return [("MULTI",), *inner, ("EXEC",)]


def unwrap_transaction(replies: list[Any]) -> Any:
    """The replies of a wrapped transaction's commands (see :class:`Transaction`)."""
    result = replies[-1]
    if isinstance(result, Exception):
        return result
    for reply in result:
        if isinstance(reply, Exception):
            raise reply
    return result
