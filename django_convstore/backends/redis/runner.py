"""Driving :mod:`.operations` plans with a sync redis-py client.

Each request of a plan is one round trip: a script (``EVALSHA``; on
``NOSCRIPT`` the same call as ``EVAL``, which also caches the script on the
server), a command, a ``MULTI``/``EXEC`` transaction or a pipelined batch.
Errors are redis-py's own; the store translates them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from redis.exceptions import NoScriptError, ResponseError

from .operations import Batch, Call, Eval, Plan, Request, Transaction

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
        return client.execute_command(*request.args)
    if type(request) is Transaction:
        try:
            return _pipeline(client, request.commands, transaction=True)
        except ResponseError as exc:  # refused as a whole (e.g. out of memory): the plan decides
            return exc
    assert type(request) is Batch
    return _batch(client, request.requests)


def _eval(client: Redis, request: Eval) -> Any:
    script, keys, args = request
    try:
        return client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    except NoScriptError:
        return client.execute_command("EVAL", script.source, len(keys), *keys, *args)


def _pipeline(client: Redis, commands: list[tuple[Any, ...]], *, transaction: bool) -> list[Any]:
    pipe = client.pipeline(transaction=transaction)
    for command in commands:
        pipe.execute_command(*command)
    return pipe.execute()


def _batch(client: Redis, requests: list[Eval | Call]) -> list[Any]:
    """Pipeline the requests; scripts the server did not know run again as ``EVAL``."""
    if len(requests) == 1:
        return [execute(client, requests[0])]
    pipe = client.pipeline(transaction=False)
    for request in requests:
        if type(request) is Eval:
            script, keys, args = request
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        else:
            pipe.execute_command(*request.args)
    replies = pipe.execute(raise_on_error=False)
    for index, reply in enumerate(replies):
        request = requests[index]
        if isinstance(reply, NoScriptError) and type(request) is Eval:
            replies[index] = _eval(client, request)
        elif isinstance(reply, ResponseError):
            raise reply
    return replies


__all__ = ["execute", "run"]
