"""Running :mod:`.operations` plans on a Redis Cluster (or Valkey Cluster).

Every request of a plan touches one hash slot (a conversation's keys and its
bucket's indexes share the bucket's hash tag, see :mod:`.layout`), except a
:class:`~.requests.Batch`, whose requests may sit in many slots. So a request
goes, unchanged, to the master serving its slot, over that node's own
redis-py client and the raw connection API of :mod:`.runner` (one write, raw
replies); a batch is split by node, each node's part pipelined in one round
trip, the nodes asked in parallel, and the replies put back in order.

The slot map is redis-py's (``RedisCluster.nodes_manager``). What the
cluster answers is handled here:

* ``MOVED`` (a slot changed hands) and ``READONLY`` (a former master that came
  back as a replica): the slot map is refreshed and the request sent again -
  nothing ran;
* ``ASK`` (a slot being migrated): the request goes to the named node after
  ``ASKING``;
* ``TRYAGAIN`` and ``CLUSTERDOWN`` (a failover under way): nothing ran; the
  request is sent again, with growing pauses, until the socket timeout has
  passed;
* a connection that fails or times out: the request may or may not have run,
  so it is never sent again; the caller gets ``BackendUnavailableError``
  naming the node, and the next request refreshes the slot map first (which
  is how the store finds a promoted replica by itself).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    TryAgainError,
)

from . import runner
from .layout import key_slot
from .requests import (
    Batch,
    Call,
    Eval,
    Plan,
    Request,
    Transaction,
    eval_args,
    unwrap_transaction,
    wrap_transaction,
)

if TYPE_CHECKING:
    from redis import Redis
    from redis.cluster import ClusterNode, RedisCluster

_T = TypeVar("_T")

#: Errors after which the slot map is refreshed and the request sent again (nothing ran).
_REROUTE = (MovedError, ReadOnlyError)
#: Errors after which the request is sent again after a pause (nothing ran).
_WAIT = (TryAgainError, ClusterDownError)
#: First pause after TRYAGAIN/CLUSTERDOWN (seconds); each next one doubles, up to 0.5 s.
_FIRST_PAUSE = 0.02


class NodeError(Exception):
    """A redis-py error, with the address of the cluster node it came from."""

    def __init__(self, error: BaseException, node: str) -> None:
        super().__init__(str(error))
        self.error = error
        self.node = node


def slot_of_key(key: str) -> int:
    """The slot of a key: of its hash tag (the first non-empty ``{…}``), else of the key."""
    start = key.find("{")
    if start != -1:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key_slot(key[start + 1 : end])
    return key_slot(key)


def request_key(request: Eval | Call | Transaction) -> str:
    """A key the request touches (all of its keys share its slot)."""
    if type(request) is Eval:
        return str(request.keys[0])
    if type(request) is Call:
        return str(request.args[1])
    assert type(request) is Transaction
    first = request.commands[0]
    return str(first.keys[0] if isinstance(first, Eval) else first[1])


class ClusterRunner:
    """Sends plans' requests to the right masters of one ``RedisCluster`` client."""

    def __init__(self, client: RedisCluster, *, timeout: float) -> None:
        self.client = client
        self.timeout = timeout
        self._refresh_lock = threading.Lock()
        self._stale = False
        self._refreshed_at = 0.0
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    # -- plans -------------------------------------------------------------------------------

    def run(self, plan: Plan[_T]) -> _T:
        """Run ``plan`` to its end and return its result."""
        request = next(plan)
        while True:
            reply = self.execute(request)
            try:
                request = plan.send(reply)
            except StopIteration as done:
                return done.value

    def execute(self, request: Request) -> Any:
        """One request: one round trip to one master, or one per master for a batch."""
        if self._stale:
            self.refresh()
        if type(request) is Batch:
            return self._batch(request.requests)
        assert type(request) is Eval or type(request) is Call or type(request) is Transaction
        return self._single(request)

    # -- routing -----------------------------------------------------------------------------

    def master_for_slot(self, slot: int) -> ClusterNode:
        """The master serving ``slot`` in the current slot map."""
        nodes = self._slots().get(slot)
        if not nodes:
            self.refresh()
            nodes = self._slots().get(slot)
            if not nodes:
                raise RedisClusterException(f"slot {slot} is not served by any node")
        return nodes[0]

    def _slots(self) -> dict[int, list[ClusterNode]]:
        slots: Any = self.client.nodes_manager.slots_cache  # types-redis says str keys
        return slots

    def _node_client(self, node: ClusterNode) -> Redis:
        return self.client.get_redis_connection(node)

    def refresh(self) -> None:
        """Read the slot map again from the cluster (one refresh for concurrent callers)."""
        with self._refresh_lock:
            if not self._stale and self._refreshed_at > time.monotonic() - 0.05:
                return  # another caller just did
            self._stale = True
            self.client.nodes_manager.initialize()
            self._stale = False
            self._refreshed_at = time.monotonic()

    def _single(self, request: Eval | Call | Transaction) -> Any:
        slot = slot_of_key(request_key(request))
        deadline = time.monotonic() + self.timeout
        pause = _FIRST_PAUSE
        asking: ClusterNode | None = None
        while True:
            node = asking or self.master_for_slot(slot)
            try:
                if asking is not None:
                    return self._asking(node, request)
                if type(request) is Transaction:
                    return _transaction(self._node_client(node), request.commands)
                return runner.execute(self._node_client(node), request)
            except _REROUTE:
                asking = None
                self._stale = True
                self.refresh()
            except AskError as exc:
                asking = self.client.nodes_manager.get_node(exc.host, exc.port)
                if asking is None:
                    self.refresh()
            except _WAIT as exc:
                asking = None
                if time.monotonic() + pause > deadline:
                    raise NodeError(exc, node.name) from exc
                time.sleep(pause)
                pause = min(pause * 2, 0.5)
            except (RedisError, OSError) as exc:
                if _is_connection_error(exc):
                    self._stale = True
                raise NodeError(exc, node.name) from exc
            if time.monotonic() > deadline:
                raise NodeError(RedisClusterException("the slot kept moving"), node.name)

    def _asking(self, node: ClusterNode, request: Eval | Call | Transaction) -> Any:
        """``ASKING`` and the request, in one write (a transaction is tried again later)."""
        if isinstance(request, Transaction):
            raise TryAgainError("a slot is being migrated")
        command = eval_args(request) if isinstance(request, Eval) else request.args
        replies = runner.send(self._node_client(node), [("ASKING",), command])
        reply = replies[1]
        if isinstance(reply, Exception):
            raise reply
        return reply

    def _batch(self, requests: list[Eval | Call]) -> list[Any]:
        """Group by master, pipeline each group, ask the masters in parallel."""
        replies: list[Any] = [None] * len(requests)
        pending = list(range(len(requests)))
        deadline = time.monotonic() + self.timeout
        pause = _FIRST_PAUSE
        while pending:
            groups: dict[str, tuple[ClusterNode, list[int]]] = {}
            for index in pending:
                node = self.master_for_slot(slot_of_key(request_key(requests[index])))
                groups.setdefault(node.name, (node, []))[1].append(index)
            outcomes = self._each_node(
                [
                    (node, [requests[index] for index in indexes])
                    for node, indexes in groups.values()
                ]
            )
            pending = []
            retry_after: BaseException | None = None
            for (node, indexes), outcome in zip(groups.values(), outcomes, strict=True):
                if isinstance(outcome, _REROUTE + _WAIT + (AskError,)):
                    pending.extend(indexes)  # nothing of this group ran
                    retry_after = outcome
                    if isinstance(outcome, _REROUTE):
                        self._stale = True
                    continue
                if isinstance(outcome, BaseException):
                    if _is_connection_error(outcome):
                        self._stale = True
                    raise NodeError(outcome, node.name) from outcome
                for index, reply in zip(indexes, outcome, strict=True):
                    replies[index] = reply
            if pending:
                assert retry_after is not None
                if time.monotonic() + pause > deadline:
                    raise NodeError(retry_after, "several nodes")
                if self._stale:
                    self.refresh()
                else:
                    time.sleep(pause)
                    pause = min(pause * 2, 0.5)
        return replies

    def _each_node(
        self, groups: Sequence[tuple[ClusterNode, list[Eval | Call]]]
    ) -> list[list[Any] | BaseException]:
        """Each group's replies (or the error that stopped it), the nodes asked in parallel."""

        def one(group: tuple[ClusterNode, list[Eval | Call]]) -> list[Any] | BaseException:
            node, requests = group
            try:
                return runner.batch(self._node_client(node), requests)
            except (RedisError, OSError) as exc:
                return exc

        if len(groups) == 1:
            return [one(groups[0])]
        return list(self._executor().map(one, groups))

    def _executor(self) -> ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._pool_lock:
                pool = self._pool
                if pool is None:
                    pool = self._pool = ThreadPoolExecutor(
                        max_workers=16, thread_name_prefix="convstore-cluster"
                    )
        return pool

    # -- lifetime ----------------------------------------------------------------------------

    def disconnect(self) -> None:
        """Close every node's idle connections (the next request reconnects)."""
        for node in self.client.nodes_manager.nodes_cache.values():
            if node.redis_connection is not None:
                node.redis_connection.connection_pool.disconnect(inuse_connections=False)

    def each_master(self, func: Callable[[Redis], _T]) -> list[_T]:
        """``func`` on every master's client (tests and tools)."""
        return [
            func(self._node_client(node))
            for node in self.client.nodes_manager.nodes_cache.values()
            if node.server_type == "primary"
        ]


def _transaction(client: Redis, commands: list[tuple[Any, ...] | Eval]) -> Any:
    """As :func:`.runner.execute` does a transaction, but a command the node refused to
    queue (``MOVED``, ``TRYAGAIN``, ...: the whole transaction was discarded) raises that
    refusal, so the caller can send it elsewhere or again."""
    for by_sha in (True, False):
        replies = runner.send(client, wrap_transaction(commands, by_sha=by_sha))
        for reply in replies[1:-1]:
            if isinstance(reply, AskError | TryAgainError | ClusterDownError | ReadOnlyError):
                raise reply
        if not (
            isinstance(replies[-1], list)
            and any(isinstance(reply, NoScriptError) for reply in replies[-1])
        ):
            break
    return unwrap_transaction(replies)


def _is_connection_error(exc: BaseException) -> bool:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError)


__all__ = ["ClusterRunner", "NodeError", "request_key", "slot_of_key"]
