"""Drive a store through its async twins, for the contract suite's ``async`` mode.

:class:`AsyncDriven` looks like the store it wraps, but every contract method
runs the ``a``-prefixed twin as a coroutine on one event loop that lives in a
thread of its own. Calls from several test threads therefore overlap on that
loop exactly as concurrent coroutines of an ASGI app would, so the same tests
(races included) check the async twins' semantics.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from django_convstore.backends.base import BaseStore

#: Contract methods that have an ``a``-prefixed twin.
TWINNED = frozenset(
    {
        "save",
        "create",
        "load",
        "append",
        "pop",
        "truncate",
        "delete",
        "clear",
        "list",
        "list_conversations",
        "put",
        "exists",
        "get_stats",
        "cleanup",
        "get_ttl",
        "set_ttl",
        "update_metadata",
        "close",
    }
)


class _LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=120)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class AsyncDriven:
    """A store whose contract methods go through the async twins (see the module doc)."""

    def __init__(self, store: BaseStore) -> None:
        self.wrapped = store
        self._loop = _LoopThread()

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance() and type guards see the real backend
        return type(self.wrapped)

    def __getattr__(self, name: str) -> Any:
        if name in TWINNED:
            twin = getattr(self.wrapped, f"a{name}")

            def call(*args: Any, **kwargs: Any) -> Any:
                return self._loop.run(twin(*args, **kwargs))

            return call
        if name == "iter_conversations":
            return self._iter_conversations
        return getattr(self.wrapped, name)

    def _iter_conversations(self, **kwargs: Any) -> Iterator[Any]:
        async def collect() -> list[Any]:
            return [c async for c in self.wrapped.aiter_conversations(**kwargs)]

        return iter(self._loop.run(collect()))

    def run(self, make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """Run a coroutine on this store's loop (for tests that need the loop itself)."""
        return self._loop.run(make())

    def stop(self) -> None:
        """Stop the loop (after the wrapped store was closed)."""
        self._loop.stop()
