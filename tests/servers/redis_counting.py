"""A redis-py connection class that counts round trips and reply bytes.

Give it to a store with ``OPTIONS={"CONNECTION_POOL_KWARGS": {"connection_class":
CountingConnection}}`` and read the class-level counters::

    CountingConnection.reset()
    store.append("c", [...])
    CountingConnection.requests   # writes to the server: 1 per round trip
    CountingConnection.received   # bytes read from the server

A pipeline writes all its commands at once and so counts as one request. A
new connection's handshake (HELLO/AUTH/SELECT) counts too, so warm the pool
up before measuring. TCP connections only.
"""

from __future__ import annotations

import socket
from typing import Any, ClassVar

from redis.connection import Connection


class _CountingSocket(socket.socket):
    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data = super().recv(bufsize, flags)
        CountingConnection.received += len(data)
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        count = super().recv_into(buffer, nbytes, flags)
        CountingConnection.received += count
        return count


class CountingConnection(Connection):
    """A TCP connection that counts requests sent and bytes received (class-wide)."""

    requests: ClassVar[int] = 0
    received: ClassVar[int] = 0

    @classmethod
    def reset(cls) -> None:
        """Zero both counters."""
        cls.requests = 0
        cls.received = 0

    def _connect(self) -> socket.socket:
        raw = super()._connect()  # type: ignore[misc]
        timeout = raw.gettimeout()
        wrapped = _CountingSocket(raw.family, raw.type, raw.proto, fileno=raw.detach())
        wrapped.settimeout(timeout)
        return wrapped

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.requests += 1
        super().send_packed_command(command, check_health)
