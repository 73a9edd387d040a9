"""Running :mod:`.operations` plans on a Redis Cluster from an event loop.

The asyncio twin of :class:`.cluster.ClusterRunner`, and its companion: the
slot map, the retry rules (:class:`.cluster.Retry`,
:class:`.cluster.BatchRounds`) and the "refresh before the next request"
flag are the sync runner's, shared by every event loop; what belongs to a
loop is one ``redis.asyncio`` client per node, built on first use from that
node's sync client (:func:`.connection.async_client_for`). Re-reading the
slot map is blocking I/O, so it runs in a thread.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, TypeVar

from redis.exceptions import RedisError

from . import async_
from .cluster import (
    BatchRounds,
    ClusterRunner,
    Retry,
    asking_command,
    asking_needs_eval,
    asking_reply,
    transaction_needs_eval,
    unwrap_cluster_transaction,
)
from .connection import async_client_for
from .requests import Batch, Call, Eval, Plan, Request, Transaction, wrap_transaction

if TYPE_CHECKING:
    from redis.asyncio import Redis as AsyncRedis
    from redis.cluster import ClusterNode

_T = TypeVar("_T")


class AsyncClusterRunner:
    """Sends plans' requests to the right masters, on one event loop."""

    def __init__(self, sync: ClusterRunner) -> None:
        self.sync = sync
        self._clients: dict[str, AsyncRedis] = {}

    async def run(self, plan: Plan[_T]) -> _T:
        """Run ``plan`` to its end and return its result."""
        request = next(plan)
        while True:
            reply = await self.execute(request)
            try:
                request = plan.send(reply)
            except StopIteration as done:
                return done.value

    async def execute(self, request: Request) -> Any:
        """One request: one round trip to one master, or one per master for a batch."""
        if self.sync._stale:
            await self._refresh()
        if type(request) is Batch:
            return await self._batch(request.requests)
        assert type(request) is Eval or type(request) is Call or type(request) is Transaction
        return await self._single(request)

    def _client(self, node: ClusterNode) -> AsyncRedis:
        client = self._clients.get(node.name)
        if client is None:
            client = self._clients[node.name] = async_client_for(self.sync.node_client(node))
        return client

    async def _refresh(self) -> None:
        await asyncio.to_thread(self.sync.refresh)

    async def _single(self, request: Eval | Call | Transaction) -> Any:
        retry = Retry(self.sync, request)
        while True:
            node = retry.node()
            try:
                return await self._send(node, request, asking=retry.asking is not None)
            except (RedisError, OSError) as exc:
                pause = retry.failed(exc, node)
            if self.sync._stale:
                await self._refresh()
            if pause:
                await asyncio.sleep(pause)

    async def _send(
        self, node: ClusterNode, request: Eval | Call | Transaction, *, asking: bool
    ) -> Any:
        client = self._client(node)
        if asking:
            for by_sha in (True, False):
                command = asking_command(request, by_sha)
                replies = await async_.send(client, [("ASKING",), command])
                if not asking_needs_eval(request, replies):
                    break
            return asking_reply(replies)
        if type(request) is Transaction:
            for by_sha in (True, False):
                commands = wrap_transaction(request.commands, by_sha=by_sha)
                replies = await async_.send(client, commands)
                if not transaction_needs_eval(replies):
                    break
            return unwrap_cluster_transaction(replies)
        return await async_.execute(client, request)

    async def _batch(self, requests: list[Eval | Call]) -> list[Any]:
        rounds = BatchRounds(self.sync, requests)
        while rounds.pending:
            groups = rounds.groups()
            outcomes = await asyncio.gather(
                *(
                    async_.batch(self._client(node), rounds.requests_of(indexes))
                    for node, indexes in groups
                ),
                return_exceptions=True,
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException) and not isinstance(
                    outcome, RedisError | OSError
                ):
                    raise outcome  # cancelled, or a bug: not a node's answer
            pause = rounds.settle(groups, outcomes)
            if self.sync._stale:
                await self._refresh()
            elif pause:
                await asyncio.sleep(pause)
        return rounds.replies

    async def disconnect(self, *, in_use: bool = True) -> None:
        """Close this loop's connections to every node (the next request reconnects)."""
        for client in list(self._clients.values()):
            await async_.disconnect(client, in_use=in_use)


__all__ = ["AsyncClusterRunner"]
