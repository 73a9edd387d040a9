"""Native async twins of the Redis store, on ``redis.asyncio``.

The ``_a*`` primitives run the same plans (:mod:`.operations`) with the same
scripts as the sync methods, on a ``redis.asyncio`` client, so concurrent
``aappend``/``aload`` calls of one event loop overlap their network waits
instead of queueing on a thread. Connections belong to an event loop, so
there is one client (with its own pool) per loop, built on first use from
the sync client's settings (:func:`.connection.async_client_for`): a store
used from several loops, or several threads with their own loops, works.
When no asyncio pool can be built (a django-redis cache with an unusual pool
class), the twins fall back to the sync methods in a thread.
"""

from __future__ import annotations

import asyncio
import builtins
import threading
import weakref
from typing import TYPE_CHECKING, Any, TypeVar

from ...clock import now_ms
from ...types import Conversation, ConversationMetadata, Message, Page
from . import connection, legacy, operations
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
    from collections.abc import Callable, Sequence
    from typing import TypeAlias

    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

    from .cluster import ClusterRunner
    from .cluster_async import AsyncClusterRunner
    from .layout import Layout

    #: What an event loop keeps: a client, or on a cluster a runner with a client per node.
    LoopClient: TypeAlias = "AsyncRedis | AsyncClusterRunner"

_T = TypeVar("_T")


async def run(client: AsyncRedis, plan: Plan[_T]) -> _T:
    """Run ``plan`` to its end on an asyncio client and return its result."""
    request = next(plan)
    while True:
        reply = await execute(client, request)
        try:
            request = plan.send(reply)
        except StopIteration as done:
            return done.value


async def execute(client: AsyncRedis, request: Request) -> Any:
    """One round trip (see :mod:`.runner`, which this mirrors)."""
    if type(request) is Eval:
        return await _eval(client, request)
    if type(request) is Call:
        from redis.exceptions import ResponseError

        reply = (await send(client, [request.args]))[0]
        if isinstance(reply, ResponseError):
            raise reply
        return reply
    if type(request) is Transaction:
        return await _transaction(client, request.commands)
    assert type(request) is Batch
    return await batch(client, request.requests)


async def send(client: AsyncRedis, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    from redis.exceptions import ResponseError

    pool = client.connection_pool
    connection = await pool.get_connection()
    try:
        await connection.send_packed_command(pack(commands, connection))
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await connection.read_response())
            except ResponseError as exc:
                replies.append(exc)
    except BaseException:
        await connection.disconnect()
        raise
    finally:
        await pool.release(connection)
    return replies


async def _eval(client: AsyncRedis, request: Eval) -> Any:
    from redis.exceptions import NoScriptError, ResponseError

    reply = (await send(client, [eval_args(request)]))[0]
    if isinstance(reply, NoScriptError):
        reply = (await send(client, [eval_args(request, by_sha=False)]))[0]
    if isinstance(reply, ResponseError):
        raise reply
    return reply


async def _transaction(client: AsyncRedis, commands: list[tuple[Any, ...] | Eval]) -> Any:
    from redis.exceptions import NoScriptError

    replies = await send(client, wrap_transaction(commands))
    if isinstance(replies[-1], list) and any(
        isinstance(reply, NoScriptError) for reply in replies[-1]
    ):
        replies = await send(client, wrap_transaction(commands, by_sha=False))
    return unwrap_transaction(replies)


async def batch(client: AsyncRedis, requests: list[Eval | Call]) -> list[Any]:
    from redis.exceptions import NoScriptError, ResponseError

    commands = [eval_args(r) if isinstance(r, Eval) else r.args for r in requests]
    replies = await send(client, commands)
    for index, reply in enumerate(replies):
        request = requests[index]
        if isinstance(reply, NoScriptError) and type(request) is Eval:
            replies[index] = await _eval(client, request)
        elif isinstance(reply, ResponseError):
            raise reply
    return replies


async def disconnect(client: AsyncRedis, *, in_use: bool = True) -> None:
    """Close a client's connections (and its Sentinels'); the next command reconnects."""
    pool = client.connection_pool
    await pool.disconnect(inuse_connections=in_use)
    manager = getattr(pool, "sentinel_manager", None)
    for sentinel in getattr(manager, "sentinels", ()):
        await sentinel.connection_pool.disconnect(inuse_connections=in_use)


def _schedule_disconnect(loop: asyncio.AbstractEventLoop, client: LoopClient) -> None:
    loop.create_task(_disconnect_loop_client(client, in_use=False))


async def _disconnect_loop_client(client: LoopClient, *, in_use: bool = True) -> None:
    from .cluster_async import AsyncClusterRunner

    if isinstance(client, AsyncClusterRunner):
        await client.disconnect(in_use=in_use)
    else:
        await disconnect(client, in_use=in_use)


class NativeAsync:
    """The ``_a*`` primitives of :class:`~django_convstore.backends.redis.RedisStore`."""

    if TYPE_CHECKING:
        layout: Layout
        default_ttl: int | None
        display_alias: str
        _layout_checked: bool
        _redis_errors: tuple[type[BaseException], ...]
        cluster: bool
        _cluster: ClusterRunner | None

        @property
        def client(self) -> Redis: ...
        @property
        def cluster_runner(self) -> ClusterRunner: ...

        def _run(self, plan: Plan[_T], *, check: bool = True) -> _T: ...
        def _translate(self, exc: BaseException, *, node: str | None = None) -> Exception: ...
        def _close_sync(self) -> None: ...
        async def _run_sync(self, func: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T: ...

    def _init_async(self) -> None:
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopClient] = (
            weakref.WeakKeyDictionary()
        )
        self._async_lock = threading.Lock()
        #: Set when the sync client's pool has no asyncio equivalent: use threads then.
        self._async_unsupported = False

    # -- clients ---------------------------------------------------------------------------

    async def _async_client(self) -> LoopClient | None:
        """This event loop's client (None: fall back to threads)."""
        if self._async_unsupported:
            return None
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is not None:
            return client
        if self.cluster:
            # The first use reads the slot map from the seed node: blocking I/O.
            from .cluster_async import AsyncClusterRunner

            sync_runner = self._cluster
            if sync_runner is None:
                sync_runner = await asyncio.to_thread(lambda: self.cluster_runner)
            with self._async_lock:
                runner = self._async_clients.get(loop)
                if runner is None:
                    runner = self._async_clients[loop] = AsyncClusterRunner(sync_runner)
            return runner
        sync_client = self.client
        with self._async_lock:
            client = self._async_clients.get(loop)
            if client is None:
                try:
                    client = connection.async_client_for(sync_client)
                except connection.ConfigError:
                    self._async_unsupported = True
                    return None
                self._async_clients[loop] = client
        return client

    def _forget_async_clients(self) -> None:
        """Release the event loops' clients (for the sync ``close()``).

        A running loop's client stays, with its idle connections closed (its
        calls in flight finish; the next ones reconnect); the clients of
        closed loops are dropped.
        """
        with self._async_lock:
            clients = list(self._async_clients.items())
            for loop, _ in clients:
                if loop.is_closed():
                    del self._async_clients[loop]
        for loop, client in clients:
            if loop.is_running():
                loop.call_soon_threadsafe(_schedule_disconnect, loop, client)

    async def _arun(self, plan: Plan[_T], *, check: bool = True) -> _T:
        """Run a plan of :mod:`.operations` on this loop's client."""
        if check and not self._layout_checked:
            await self._arun(legacy.check_layout(self.layout, self.display_alias), check=False)
            self._layout_checked = True
        client = await self._async_client()
        if client is None:
            return await self._run_sync(self._run, plan, check=False)
        from .cluster_async import AsyncClusterRunner

        if isinstance(client, AsyncClusterRunner):
            from .cluster import NodeError

            try:
                return await client.run(plan)
            except NodeError as exc:
                raise self._translate(exc.error, node=exc.node) from exc.error
            except self._redis_errors as exc:
                raise self._translate(exc) from exc
        try:
            return await run(client, plan)
        except self._redis_errors as exc:
            raise self._translate(exc) from exc

    async def _aclose(self) -> None:
        """Disconnect this loop's client (other loops keep theirs) and the sync pool's idle
        connections; the next call reconnects."""
        with self._async_lock:
            client = self._async_clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            try:
                await _disconnect_loop_client(client)
            except OSError as exc:  # pragma: no cover - closing a socket rarely fails
                raise self._translate(exc) from exc
        self._close_sync()

    # -- primitives --------------------------------------------------------------------------

    async def _asave(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        ttl: int | None,
        metadata: dict[str, Any] | None,
        owner: str | None,
    ) -> Conversation:
        result = await self._arun(
            operations.save(
                self.layout,
                conversation_id,
                messages,
                ttl=ttl,
                metadata=metadata,
                owner=owner,
                now=now_ms(),
            )
        )
        assert result is not None
        return result

    async def _acreate(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        ttl: int | None,
        metadata: dict[str, Any],
        owner: str | None,
    ) -> Conversation | None:
        return await self._arun(
            operations.save(
                self.layout,
                conversation_id,
                messages,
                ttl=ttl,
                metadata=metadata,
                owner=owner,
                now=now_ms(),
                create=True,
            )
        )

    async def _aload(
        self, conversation_id: str, *, include_expired: bool, last: int | None, owner: str | None
    ) -> Conversation | None:
        return await self._arun(
            operations.load(self.layout, conversation_id, last=last, owner=owner, now=now_ms())
        )

    async def _aappend(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        update_timestamp: bool,
        owner: str | None,
    ) -> ConversationMetadata:
        return await self._arun(
            operations.append(
                self.layout,
                conversation_id,
                messages,
                default_ttl=self.default_ttl,
                update_timestamp=update_timestamp,
                owner=owner,
                now=now_ms(),
            )
        )

    async def _apop(
        self, conversation_id: str, count: int, *, owner: str | None
    ) -> builtins.list[Message]:
        return await self._arun(
            operations.pop(self.layout, conversation_id, count, owner=owner, now=now_ms())
        )

    async def _atruncate(
        self, conversation_id: str, keep: int, *, owner: str | None
    ) -> tuple[ConversationMetadata, int] | None:
        return await self._arun(
            operations.truncate(self.layout, conversation_id, keep, owner=owner, now=now_ms())
        )

    async def _adelete(self, conversation_id: str, *, owner: str | None) -> bool:
        return await self._arun(
            operations.delete(self.layout, conversation_id, owner=owner, now=now_ms())
        )

    async def _alist_conversations(
        self, *, owner: str | None, prefix: str | None, limit: int, offset: int
    ) -> Page:
        return await self._arun(
            operations.list_page(
                self.layout, owner=owner, prefix=prefix, limit=limit, offset=offset, now=now_ms()
            )
        )

    async def _aput(self, conversation: Conversation) -> None:
        await self._arun(operations.put(self.layout, conversation, now=now_ms()))

    async def _aexists(self, conversation_id: str, *, owner: str | None) -> bool:
        return await self._arun(
            operations.exists(self.layout, conversation_id, owner=owner, now=now_ms())
        )

    async def _aget_ttl(self, conversation_id: str, *, owner: str | None) -> int:
        return await self._arun(
            operations.get_ttl(self.layout, conversation_id, owner=owner, now=now_ms())
        )

    async def _aset_ttl(self, conversation_id: str, ttl: int | None, *, owner: str | None) -> bool:
        return await self._arun(
            operations.set_ttl(self.layout, conversation_id, ttl, owner=owner, now=now_ms())
        )

    async def _aupdate_metadata(
        self, conversation_id: str, metadata: dict[str, Any], *, replace: bool, owner: str | None
    ) -> ConversationMetadata | None:
        return await self._arun(
            operations.update_metadata(
                self.layout, conversation_id, metadata, replace=replace, owner=owner, now=now_ms()
            )
        )


__all__ = ["NativeAsync", "batch", "execute", "run", "send"]
