"""Running :mod:`.operations` plans on a Redis Cluster (or Valkey Cluster).

Every request of a plan touches one hash slot (a conversation's keys and its
bucket's indexes share the bucket's hash tag, see :mod:`.layout`), except a
:class:`~.requests.Batch`, whose requests may sit in many slots. So a request
goes, unchanged, to the master serving its slot, over that node's own
redis-py client and the raw connection API of :mod:`.runner` (one write, raw
replies); a batch is split by node, each node's part pipelined in one round
trip, every master's pipeline written before any reply is read (so they work at
the same time, without threads), and the replies put back in order.

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
from collections.abc import Sequence
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

    def node_client(self, node: ClusterNode) -> Redis:
        """The sync redis-py client of ``node`` (its own connection pool)."""
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
        retry = Retry(self, request)
        while True:
            node = retry.node()
            try:
                return self._send(node, request, asking=retry.asking is not None)
            except (RedisError, OSError) as exc:
                pause = retry.failed(exc, node)
            if self._stale:
                self.refresh()
            if pause:
                time.sleep(pause)

    def _send(self, node: ClusterNode, request: Eval | Call | Transaction, *, asking: bool) -> Any:
        client = self.node_client(node)
        if asking:
            for by_sha in (True, False):
                replies = runner.send(client, [("ASKING",), asking_command(request, by_sha)])
                if not asking_needs_eval(request, replies):
                    break
            return asking_reply(replies)
        if type(request) is Transaction:
            for by_sha in (True, False):
                replies = runner.send(client, wrap_transaction(request.commands, by_sha=by_sha))
                if not transaction_needs_eval(replies):
                    break
            return unwrap_cluster_transaction(replies)
        return runner.execute(client, request)

    def _batch(self, requests: list[Eval | Call]) -> list[Any]:
        """Group by master, pipeline each group, all masters at once."""
        rounds = BatchRounds(self, requests)
        while rounds.pending:
            groups = rounds.groups()
            pause = rounds.settle(groups, self._each_node(groups, rounds))
            if self._stale:
                self.refresh()
            elif pause:
                time.sleep(pause)
        return rounds.replies

    def _each_node(
        self, groups: list[tuple[ClusterNode, list[int]]], rounds: BatchRounds
    ) -> list[list[Any] | BaseException]:
        """Each group's replies (or the error that stopped it). Every master's pipeline is
        written before any reply is read, so the masters work at the same time."""
        started: list[tuple[Redis, list[Eval | Call], runner.Sent] | BaseException] = []
        unread: list[runner.Sent] = []
        try:
            for node, indexes in groups:
                client = self.node_client(node)
                requests = rounds.requests_of(indexes)
                try:
                    sent = runner.start(client, runner.batch_commands(requests))
                except (RedisError, OSError) as exc:
                    started.append(exc)
                    continue
                unread.append(sent)
                started.append((client, requests, sent))
            outcomes: list[list[Any] | BaseException] = []
            for item in started:
                if isinstance(item, BaseException):
                    outcomes.append(item)
                    continue
                client, requests, sent = item
                unread.remove(sent)
                try:
                    outcomes.append(runner.batch_replies(client, requests, runner.finish(sent)))
                except (RedisError, OSError) as exc:
                    outcomes.append(exc)
            return outcomes
        finally:
            for sent in unread:  # only when something unexpected interrupted the reading
                runner.abandon(sent)

    # -- lifetime ----------------------------------------------------------------------------

    def disconnect(self) -> None:
        """Close every node's idle connections (the next request reconnects)."""
        for node in self.client.nodes_manager.nodes_cache.values():
            if node.redis_connection is not None:
                node.redis_connection.connection_pool.disconnect(inuse_connections=False)


def asking_command(request: Eval | Call | Transaction, by_sha: bool = True) -> tuple[Any, ...]:
    """The command sent after ``ASKING`` (a transaction is tried again later instead)."""
    if isinstance(request, Transaction):
        raise TryAgainError("a slot is being migrated")
    return eval_args(request, by_sha=by_sha) if isinstance(request, Eval) else request.args


def asking_needs_eval(request: Eval | Call | Transaction, replies: list[Any]) -> bool:
    """Whether the node an ``ASK`` named did not know the script (send ``EVAL``)."""
    return isinstance(request, Eval) and isinstance(replies[1], NoScriptError)


def asking_reply(replies: list[Any]) -> Any:
    """The reply to the command sent after ``ASKING`` (an error reply raised)."""
    reply = replies[1]
    if isinstance(reply, Exception):
        raise reply
    return reply


def transaction_needs_eval(replies: list[Any]) -> bool:
    """Whether a transaction was refused for a script the node did not know (send ``EVAL``)."""
    return isinstance(replies[-1], list) and any(
        isinstance(reply, NoScriptError) for reply in replies[-1]
    )


def unwrap_cluster_transaction(replies: list[Any]) -> Any:
    """:func:`.requests.unwrap_transaction`, but a command the node refused to queue
    (``MOVED``, ``TRYAGAIN``, ...: the whole transaction was discarded) raises that refusal,
    so the caller can send it elsewhere or again."""
    for reply in replies[1:-1]:
        if isinstance(reply, AskError | TryAgainError | ClusterDownError | ReadOnlyError):
            raise reply
    return unwrap_transaction(replies)


class Retry:
    """What to do after a request to one slot failed: the rules of the module docstring."""

    def __init__(self, runner: ClusterRunner, request: Eval | Call | Transaction) -> None:
        self.runner = runner
        self.slot = slot_of_key(request_key(request))
        self.deadline = time.monotonic() + runner.timeout
        self.pause = _FIRST_PAUSE
        #: The node an ``ASK`` named, for the next try.
        self.asking: ClusterNode | None = None

    def node(self) -> ClusterNode:
        """Where the next try goes."""
        return self.asking or self.runner.master_for_slot(self.slot)

    def failed(self, exc: BaseException, node: ClusterNode) -> float:
        """How long to wait before the next try (the runner's ``_stale`` set: refresh the
        slot map first); raises :class:`NodeError` when there is no next try."""
        self.asking = None
        wait = 0.0
        if isinstance(exc, _REROUTE):
            self.runner._stale = True
        elif isinstance(exc, AskError):
            self.asking = self.runner.client.nodes_manager.get_node(exc.host, exc.port)
            if self.asking is None:
                self.runner._stale = True
        elif isinstance(exc, _WAIT):
            wait = self.pause
            self.pause = min(self.pause * 2, 0.5)
        else:
            if _is_connection_error(exc):
                self.runner._stale = True  # the next request re-reads the slot map
            raise NodeError(exc, node.name) from exc
        if time.monotonic() + wait > self.deadline:
            raise NodeError(exc, node.name) from exc
        return wait


class BatchRounds:
    """A batch sent in rounds: the requests a node refused to run go again."""

    def __init__(self, runner: ClusterRunner, requests: list[Eval | Call]) -> None:
        self.runner = runner
        self.requests = requests
        self.replies: list[Any] = [None] * len(requests)
        self.pending = list(range(len(requests)))
        self.deadline = time.monotonic() + runner.timeout
        self.pause = _FIRST_PAUSE

    def groups(self) -> list[tuple[ClusterNode, list[int]]]:
        """The pending requests by master."""
        groups: dict[str, tuple[ClusterNode, list[int]]] = {}
        for index in self.pending:
            node = self.runner.master_for_slot(slot_of_key(request_key(self.requests[index])))
            groups.setdefault(node.name, (node, []))[1].append(index)
        return list(groups.values())

    def requests_of(self, indexes: list[int]) -> list[Eval | Call]:
        """The requests at ``indexes``."""
        return [self.requests[index] for index in indexes]

    def settle(
        self,
        groups: list[tuple[ClusterNode, list[int]]],
        outcomes: Sequence[list[Any] | BaseException],
    ) -> float:
        """Keep the replies of the groups that ran; the others stay pending. How long to wait
        before the next round; raises :class:`NodeError` when there is none."""
        self.pending = []
        refused: BaseException | None = None
        for (node, indexes), outcome in zip(groups, outcomes, strict=True):
            if isinstance(outcome, _REROUTE + _WAIT + (AskError,)):
                self.pending.extend(indexes)  # nothing of this group ran
                refused = outcome
                if isinstance(outcome, _REROUTE):
                    self.runner._stale = True
                continue
            if isinstance(outcome, BaseException):
                if _is_connection_error(outcome):
                    self.runner._stale = True
                raise NodeError(outcome, node.name) from outcome
            for index, reply in zip(indexes, outcome, strict=True):
                self.replies[index] = reply
        if refused is None:
            return 0.0
        wait = 0.0 if self.runner._stale else self.pause
        self.pause = min(self.pause * 2, 0.5)
        if time.monotonic() + wait > self.deadline:
            raise NodeError(refused, "several nodes")
        return wait


def _is_connection_error(exc: BaseException) -> bool:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError)


__all__ = ["BatchRounds", "ClusterRunner", "NodeError", "Retry", "request_key", "slot_of_key"]
