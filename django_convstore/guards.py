"""Type guards for backend-specific features (``size()`` on memory, for example)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import TypeGuard

    from .backends.database import DatabaseStore
    from .backends.memory import MemoryStore
    from .backends.redis import RedisStore
    from .backends.zerodb import ZeroDBStore


def _is(store: Any, backend_name: str) -> bool:
    return getattr(type(store), "backend_name", None) == backend_name


def is_memory_store(store: Any) -> TypeGuard[MemoryStore]:
    """True for a :class:`~django_convstore.backends.memory.MemoryStore` (or subclass)."""
    return _is(store, "memory")


def is_redis_store(store: Any) -> TypeGuard[RedisStore]:
    """True for a :class:`~django_convstore.backends.redis.RedisStore` (or subclass)."""
    return _is(store, "redis")


def is_zerodb_store(store: Any) -> TypeGuard[ZeroDBStore]:
    """True for a :class:`~django_convstore.backends.zerodb.ZeroDBStore` (or subclass)."""
    return _is(store, "zerodb")


def is_database_store(store: Any) -> TypeGuard[DatabaseStore]:
    """True for a :class:`~django_convstore.backends.database.DatabaseStore` (or subclass)."""
    return _is(store, "database")
