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
from .operations import Batch, Call, Eval, Plan, Request, Transaction

if TYPE_CHECKING:
    from collections.abc import Callable

    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

    from .layout import Layout

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
    """One round trip (see :func:`.runner.execute`)."""
    if type(request) is Eval:
        return await _eval(client, request)
    if type(request) is Call:
        return await client.execute_command(*request.args)
    if type(request) is Transaction:
        from redis.exceptions import ResponseError

        pipe = client.pipeline(transaction=True)
        for command in request.commands:
            pipe.execute_command(*command)
        try:
            return await pipe.execute()
        except ResponseError as exc:  # refused as a whole (e.g. out of memory): the plan decides
            return exc
    assert type(request) is Batch
    return await _batch(client, request.requests)


async def _eval(client: AsyncRedis, request: Eval) -> Any:
    from redis.exceptions import NoScriptError

    script, keys, args = request
    try:
        return await client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    except NoScriptError:
        return await client.execute_command("EVAL", script.source, len(keys), *keys, *args)


async def _batch(client: AsyncRedis, requests: list[Eval | Call]) -> list[Any]:
    from redis.exceptions import NoScriptError, ResponseError

    if len(requests) == 1:
        return [await execute(client, requests[0])]
    pipe = client.pipeline(transaction=False)
    for request in requests:
        if type(request) is Eval:
            script, keys, args = request
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        else:
            pipe.execute_command(*request.args)
    replies = await pipe.execute(raise_on_error=False)
    for index, reply in enumerate(replies):
        request = requests[index]
        if isinstance(reply, NoScriptError) and type(request) is Eval:
            replies[index] = await _eval(client, request)
        elif isinstance(reply, ResponseError):
            raise reply
    return replies


async def _disconnect(client: AsyncRedis) -> None:
    pool = client.connection_pool
    await pool.disconnect()
    manager = getattr(pool, "sentinel_manager", None)
    for sentinel in getattr(manager, "sentinels", ()):
        await sentinel.connection_pool.disconnect()


def _schedule_disconnect(loop: asyncio.AbstractEventLoop, client: AsyncRedis) -> None:
    loop.create_task(_disconnect(client))


class NativeAsync:
    """The ``_a*`` primitives of :class:`~django_convstore.backends.redis.RedisStore`."""

    if TYPE_CHECKING:
        layout: Layout
        default_ttl: int | None
        display_alias: str
        _layout_checked: bool

        @property
        def client(self) -> Redis: ...

        def _run(self, plan: Plan[_T], *, check: bool = True) -> _T: ...
        def _translate(self, exc: BaseException) -> Exception: ...
        def _close(self) -> None: ...
        async def _run_sync(self, func: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T: ...

    def _init_async(self) -> None:
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncRedis] = (
            weakref.WeakKeyDictionary()
        )
        self._async_lock = threading.Lock()
        #: Set when the sync client's pool has no asyncio equivalent: use threads then.
        self._async_unsupported = False

    # -- clients ---------------------------------------------------------------------------

    def _async_client(self) -> AsyncRedis | None:
        """This event loop's client (None: fall back to threads)."""
        if self._async_unsupported:
            return None
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:
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
        """Drop every loop's client; disconnect those whose loop still runs."""
        with self._async_lock:
            clients = list(self._async_clients.items())
            self._async_clients.clear()
        for loop, client in clients:
            if loop.is_closed() or not loop.is_running():
                continue  # nothing can run there any more (or yet); the sockets go with it
            loop.call_soon_threadsafe(_schedule_disconnect, loop, client)

    async def _arun(self, plan: Plan[_T], *, check: bool = True) -> _T:
        """Run a plan of :mod:`.operations` on this loop's client."""
        if check and not self._layout_checked:
            await self._arun(legacy.check_layout(self.layout, self.display_alias), check=False)
            self._layout_checked = True
        client = self._async_client()
        if client is None:
            return await self._run_sync(self._run, plan, check=False)
        from redis.exceptions import RedisError

        try:
            return await run(client, plan)
        except (RedisError, OSError) as exc:
            raise self._translate(exc) from exc

    async def _aclose(self) -> None:
        """Disconnect this loop's client and the sync pool; the next call reconnects."""
        with self._async_lock:
            client = self._async_clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            try:
                await _disconnect(client)
            except OSError as exc:  # pragma: no cover - closing a socket rarely fails
                raise self._translate(exc) from exc
        self._close()

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


__all__ = ["NativeAsync", "execute", "run"]
