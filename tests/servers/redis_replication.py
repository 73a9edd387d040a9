"""Raw-socket helpers shared by the cluster and Sentinel test servers (no client library).

* :func:`parse_info` turns an ``INFO`` reply into a dict;
* :func:`send_commands` sends several commands on one connection (``WAIT``
  counts the writes made on its own connection);
* :func:`in_sync` tells whether a replica has finished its sync: its link
  is up and its master lists it ``state=online``;
* :func:`acknowledged` writes a probe key and sends ``WAIT`` for it: how many
  replicas really receive the stream. Only this proves it: after a
  diskless full sync both sides report the link up and online while the
  master still buffers new writes until the replica's next ``REPLCONF
  ACK`` (up to a second later), and a replica promoted in that window
  lacks them.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any

from tests.servers.redis_server import RedisServer, _encode, _read_reply


def parse_info(text: object) -> dict[str, str]:
    """An ``INFO`` reply as ``{field: value}``."""
    info = {}
    for line in str(text).splitlines():
        name, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            info[name.strip()] = value.strip()
    return info


def send_commands(
    server: RedisServer, *commands: Iterable[str], timeout: float = 10.0
) -> list[Any]:
    """Send ``commands`` on one connection (after AUTH when needed); their replies.

    Error replies are returned as ``RuntimeError`` instances, not raised.
    """
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        stream = sock.makefile("rb")
        batch = [list(command) for command in commands]
        if server.password:
            batch.insert(0, ["AUTH", server.password])
        sock.sendall(b"".join(_encode(*command) for command in batch))
        replies = [_read_reply(stream) for _ in batch]
    return replies[1:] if server.password else replies


def online_replicas(master_info: dict[str, str]) -> set[int]:
    """Ports of the replicas a master's ``INFO replication`` lists as ``state=online``."""
    ports = set()
    for name, value in master_info.items():
        if name.startswith("slave") and name[5:].isdigit():
            fields = dict(item.split("=", 1) for item in value.split(",") if "=" in item)
            if fields.get("state") == "online":
                ports.add(int(fields["port"]))
    return ports


def ports_of(server: RedisServer) -> set[int]:
    """Every port ``server`` listens on (its ``tls_port`` too, when it has one)."""
    tls_port = getattr(server, "tls_port", None)
    return {server.port} if tls_port is None else {server.port, int(tls_port)}


def in_sync(replica: RedisServer, master: RedisServer) -> bool:
    """``replica`` replicates ``master``, its link is up and the master lists it online."""
    info = parse_info(replica.command("INFO", "replication"))
    online = online_replicas(parse_info(master.command("INFO", "replication")))
    return (
        info.get("role") == "slave"
        and int(info.get("master_port") or 0) in ports_of(master)
        and info.get("master_link_status") == "up"
        and info.get("master_sync_in_progress") == "0"
        and bool(online & ports_of(replica))
    )


def acknowledged(server: RedisServer, replicas: int, *, key: str, timeout_ms: int = 1000) -> int:
    """``SET key`` + ``WAIT replicas timeout_ms`` + ``DEL key`` on one connection.

    Returns how many replicas acknowledged the probe, and so every write the
    server acknowledged before it (the replication stream is ordered).
    """
    replies = send_commands(
        server,
        ["SET", key, "probe"],
        ["WAIT", str(replicas), str(timeout_ms)],
        ["DEL", key],
        timeout=timeout_ms / 1000 + 5,
    )
    for reply in replies:
        if isinstance(reply, RuntimeError):
            raise reply
    return int(replies[1])
