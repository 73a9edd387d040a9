"""django-convstore: AI chat conversations behind one store API.

>>> from django_convstore import store
>>> store.save("c1", [{"role": "user", "content": "Hello"}])  # doctest: +SKIP
"""

from .exceptions import (
    BackendAuthError,
    BackendError,
    BackendUnavailableError,
    ConvStoreError,
    InvalidInputError,
    OwnerMismatchError,
)
from .guards import is_database_store, is_memory_store, is_redis_store, is_zerodb_store
from .handler import create_store, store, stores
from .types import Conversation, ConversationMetadata, Message, Page, StoreStats

__version__ = "0.2.0"

__all__ = [
    "BackendAuthError",
    "BackendError",
    "BackendUnavailableError",
    "ConvStoreError",
    "Conversation",
    "ConversationMetadata",
    "InvalidInputError",
    "Message",
    "OwnerMismatchError",
    "Page",
    "StoreStats",
    "create_store",
    "is_database_store",
    "is_memory_store",
    "is_redis_store",
    "is_zerodb_store",
    "store",
    "stores",
]
