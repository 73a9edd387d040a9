"""An asyncio redis-py connection that counts round trips in ``CountingConnection``.

The sync :class:`tests.servers.redis_counting.CountingConnection` counts every
write to the server as one request; this is the same for ``redis.asyncio``
clients (the OpenAI Agents SDK's ``RedisSession`` is async only), adding to
the same class-wide counter so one ``reset()``/``requests`` serves both.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.connection import Connection

from tests.servers.redis_counting import CountingConnection


class AsyncCountingConnection(Connection):
    """A TCP connection adding one to ``CountingConnection.requests`` per write."""

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.requests += 1
        await super().send_packed_command(command, check_health)
