"""Driving :mod:`.operations` plans with a sync redis-py client.

Each request of a plan is one round trip: a script (``EVALSHA``; on
``NOSCRIPT`` the same call as ``EVAL``, which also caches the script on the
server), a command, a ``MULTI``/``EXEC`` transaction or a pipelined batch.

Requests go through redis-py's connection API (a pooled connection, one
write, raw replies) rather than ``execute_command``/pipelines: the store
makes one call per operation and their per-call bookkeeping costs as much as
a script's work on the server. The pool still checks every connection before
handing it out (a server that restarted is reconnected to); a connection
that failed mid-request is dropped, so no unread reply is left on it.
Errors are redis-py's own; the store translates them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from redis.exceptions import NoScriptError, ResponseError

from .requests import (
    Batch,
    Call,
    Eval,
    Plan,
    Request,
    Transaction,
    eval_args,
    pack,
    unwrap_transaction,
    wrap_transaction,
)

if TYPE_CHECKING:
    from redis import Redis

_T = TypeVar("_T")


def run(client: Redis, plan: Plan[_T]) -> _T:
    """Run ``plan`` to its end and return its result."""
    request = next(plan)
    while True:
        reply = execute(client, request)
        try:
            request = plan.send(reply)
        except StopIteration as done:
            return done.value


def execute(client: Redis, request: Request) -> Any:
    """One round trip."""
    if type(request) is Eval:
        return _eval(client, request)
    if type(request) is Call:
        reply = send(client, [request.args])[0]
        if isinstance(reply, ResponseError):
            raise reply
        return reply
    if type(request) is Transaction:
        return _transaction(client, request.commands)
    assert type(request) is Batch
    return batch(client, request.requests)


class Sent(NamedTuple):
    """Commands written on a pooled connection, their replies not read yet (see :func:`start`)."""

    pool: Any
    connection: Any
    replies: int


def start(client: Redis, commands: Sequence[tuple[Any, ...]]) -> Sent:
    """Send commands in one write on a pooled connection; :func:`finish` reads the replies.

    Between the two, other servers can be sent their commands: they all work at once.
    """
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        connection.send_packed_command(pack(commands, connection))
    except BaseException:
        connection.disconnect()
        pool.release(connection)
        raise
    return Sent(pool, connection, len(commands))


def finish(sent: Sent) -> list[Any]:
    """The replies of :func:`start`'s commands (error replies as exceptions); the connection
    goes back to its pool (dropped when reading failed: no unread reply is left on it)."""
    pool, connection, expected = sent
    try:
        replies: list[Any] = []
        for _ in range(expected):
            try:
                replies.append(connection.read_response())
            except ResponseError as exc:  # the reply was read whole: the connection is fine
                replies.append(exc)
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)
    return replies


def abandon(sent: Sent) -> None:
    """Give up on started commands: drop the connection (its replies are never read)."""
    sent.connection.disconnect()
    sent.pool.release(sent.connection)


def send(client: Redis, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Send commands in one write and read their replies (error replies as exceptions)."""
    return finish(start(client, commands))


def _eval(client: Redis, request: Eval) -> Any:
    reply = send(client, [eval_args(request)])[0]
    if isinstance(reply, NoScriptError):
        reply = send(client, [eval_args(request, by_sha=False)])[0]
    if isinstance(reply, ResponseError):
        raise reply
    return reply


def _transaction(client: Redis, commands: list[tuple[Any, ...] | Eval]) -> Any:
    """``MULTI``, the commands, ``EXEC``: their replies, or the error that refused them all
    (out of memory, for one); a command that failed inside raises its error. When a
    script was unknown, the transaction runs again with ``EVAL`` (nothing in it ran)."""
    replies = send(client, wrap_transaction(commands))
    if isinstance(replies[-1], list) and any(
        isinstance(reply, NoScriptError) for reply in replies[-1]
    ):
        replies = send(client, wrap_transaction(commands, by_sha=False))
    return unwrap_transaction(replies)


def batch_commands(requests: list[Eval | Call]) -> list[tuple[Any, ...]]:
    """The commands of a pipelined batch (scripts as ``EVALSHA``)."""
    return [eval_args(r) if isinstance(r, Eval) else r.args for r in requests]


def batch_replies(client: Redis, requests: list[Eval | Call], replies: list[Any]) -> list[Any]:
    """A batch's replies: scripts the server did not know run again as ``EVAL``; another
    error reply is raised."""
    for index, reply in enumerate(replies):
        request = requests[index]
        if isinstance(reply, NoScriptError) and type(request) is Eval:
            replies[index] = _eval(client, request)
        elif isinstance(reply, ResponseError):
            raise reply
    return replies


def batch(client: Redis, requests: list[Eval | Call]) -> list[Any]:
    """Pipeline the requests; scripts the server did not know run again as ``EVAL``."""
    return batch_replies(client, requests, send(client, batch_commands(requests)))


__all__ = [
    "Sent",
    "abandon",
    "batch",
    "batch_commands",
    "batch_replies",
    "execute",
    "finish",
    "run",
    "send",
    "start",
]
