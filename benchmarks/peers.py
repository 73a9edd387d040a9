"""The baselines our Redis store is compared with, all on the same Redis server.

Every baseline offers the same small interface (:class:`System`), so the
comparison code treats them alike:

* :class:`Ours` — :class:`~django_convstore.backends.redis.RedisStore`.
* :class:`OriginalRedis` — the TypeScript original's Redis algorithm,
  re-implemented faithfully: one JSON blob per conversation (``SETEX`` with
  the TTL), ``append`` = ``GET`` + parse + add + serialise + ``SETEX`` (read,
  modify, write: two round trips and the whole conversation both ways, and
  concurrent appends lose messages), ``list`` = ``KEYS prefix*``,
  ``get_stats`` = ``KEYS`` then one ``GET`` per conversation.
* :class:`RawFloor` — raw redis-py and msgspec (the store's JSON library)
  doing the least work each operation needs: ``save`` = one ``SET`` (with
  the TTL) of the messages as a JSON array, ``load`` = one ``GET`` of that
  pre-joined array decoded straight into ``Message`` structs, ``append`` =
  ``RPUSH`` + ``EXPIRE`` pipelined, ``load(last=N)`` = ``LRANGE`` of that
  list, ``delete`` = ``DEL``, listing = ``ZREVRANGE``/``ZCARD`` of one sorted
  set. No metadata, no validation, no atomicity between the keys: the floor,
  not a competitor.
* :class:`LangChainHistory` — ``RedisChatMessageHistory`` from
  ``langchain-community`` (optional ``bench`` extra): a list per session,
  ``LPUSH`` + ``EXPIRE`` per message, reads the whole list.
* :class:`AgentsSession` — the OpenAI Agents SDK's ``RedisSession``
  (``openai-agents``, optional ``bench`` extra): async only, WATCH/MULTI/EXEC
  per write; driven here from one event loop with ``run_until_complete``.

``langchain-redis`` (the partner package's ``RedisChatMessageHistory``) is not
included: it is deprecated since 0.2.6 and needs the RediSearch module (Redis
Stack or Redis 8), which a plain ``redis-server`` 7 does not have.

Every client counts its round trips in ``CountingConnection`` (the async one
through :class:`AsyncCountingConnection`), so one counter serves all.
"""

from __future__ import annotations

import asyncio
import json
import uuid
import warnings
from collections.abc import Iterable
from typing import Any, ClassVar

import msgspec
from redis import ConnectionPool, Redis

from django_convstore.backends.base import BaseStore
from django_convstore.clock import now_ms
from django_convstore.ids import new_message_id
from django_convstore.types import Message
from tests.servers.redis_counting import CountingConnection

from .environment import TTL

_encoder = msgspec.json.Encoder()
_messages = msgspec.json.Decoder(list[Message])


def counting_client(url: str) -> Redis:
    """A sync client whose round trips ``CountingConnection`` counts."""
    return Redis(connection_pool=ConnectionPool.from_url(url, connection_class=CountingConnection))


def stamped(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as the original's callers pass them: with an id and a timestamp."""
    now = now_ms()
    return [{"id": uuid.uuid4().hex, "timestamp": now, **item} for item in items]


def stamped_fast(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`stamped` with the store's own cheap id generator (what the floor does)."""
    now = now_ms()
    return [{"id": new_message_id(), "timestamp": now, **item} for item in items]


class System:
    """One way of storing conversations on Redis (see the module docstring)."""

    name: ClassVar[str]
    label: ClassVar[str]
    #: Which operations it offers, beyond append, load and delete.
    has_save: ClassVar[bool] = True
    has_load_last: ClassVar[bool] = True
    has_listing: ClassVar[bool] = True

    def prepare(self, items: list[dict[str, Any]]) -> Any:
        """``items`` as this system's callers hold them (done before timing)."""
        return items

    def fill(self, cid: str, items: list[dict[str, Any]]) -> None:
        """Create ``cid`` holding ``items`` in as few calls as the system allows."""
        raise NotImplementedError

    def save(self, cid: str, items: list[dict[str, Any]]) -> object:
        """Replace the conversation's messages."""
        raise NotImplementedError

    def append(self, cid: str, items: Any) -> object:
        """Add messages (as returned by :meth:`prepare`) at the end."""
        raise NotImplementedError

    def load(self, cid: str) -> object:
        """Every message (parsed)."""
        raise NotImplementedError

    def load_last(self, cid: str, n: int) -> object:
        """The newest ``n`` messages."""
        raise NotImplementedError

    def delete(self, cid: str) -> object:
        """Drop the conversation."""
        raise NotImplementedError

    def list_page(self) -> object:
        """What listing conversations costs (its closest equivalent of a first page)."""
        raise NotImplementedError

    def stats(self) -> object:
        """Conversation (and message) counts."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""


class Ours(System):
    """``RedisStore``: the store under test."""

    name, label = "ours", "django-convstore RedisStore"

    def __init__(self, store: BaseStore) -> None:
        self.store = store

    def fill(self, cid: str, items: list[dict[str, Any]]) -> None:
        self.store.save(cid, items)

    def save(self, cid: str, items: list[dict[str, Any]]) -> object:
        return self.store.save(cid, items)

    def append(self, cid: str, items: list[dict[str, Any]]) -> object:
        return self.store.append(cid, items)

    def load(self, cid: str) -> object:
        return self.store.load(cid)

    def load_last(self, cid: str, n: int) -> object:
        return self.store.load(cid, last=n)

    def delete(self, cid: str) -> object:
        return self.store.delete(cid)

    def list_page(self) -> object:
        return self.store.list_conversations(limit=20)

    def stats(self) -> object:
        return self.store.get_stats()

    def close(self) -> None:
        self.store.close()


class OriginalRedis(System):
    """The TypeScript original's ``RedisStore`` algorithm (see the module docstring)."""

    name, label = "original", "original algorithm (JSON blob, read-modify-write, KEYS)"

    def __init__(self, url: str, prefix: str, ttl: int = TTL) -> None:
        self.client = counting_client(url)
        self.prefix = prefix
        self.ttl = ttl

    def key(self, cid: str) -> str:
        return f"{self.prefix}:{cid}"

    def _write(self, cid: str, blob: dict[str, Any]) -> None:
        payload = json.dumps(blob)
        if self.ttl:
            self.client.setex(self.key(cid), self.ttl, payload)
        else:
            self.client.set(self.key(cid), payload)

    def _blob(self, cid: str, items: list[dict[str, Any]], created: int) -> dict[str, Any]:
        now = now_ms()
        return {
            "conversationId": cid,
            "messages": items,
            "metadata": {
                "conversationId": cid,
                "createdAt": created,
                "updatedAt": now,
                "messageCount": len(items),
                "ttl": self.ttl,
                "metadata": {},
            },
        }

    def blob_json(self, cid: str, items: list[dict[str, Any]]) -> str:
        """The stored value of a new conversation (for pipelined fills)."""
        return json.dumps(self._blob(cid, stamped(items), now_ms()))

    def fill(self, cid: str, items: list[dict[str, Any]]) -> None:
        self.save(cid, items)

    def save(self, cid: str, items: list[dict[str, Any]]) -> object:
        existing = self.load(cid)
        created = existing["metadata"]["createdAt"] if existing else now_ms()
        blob = self._blob(cid, stamped(items), created)
        self._write(cid, blob)
        return blob

    def load(self, cid: str) -> dict[str, Any] | None:
        raw = self.client.get(self.key(cid))
        if raw is None:
            return None
        blob: dict[str, Any] = json.loads(raw)
        meta = blob["metadata"]
        if meta.get("ttl") and meta["updatedAt"] + meta["ttl"] * 1000 <= now_ms():
            return None
        return blob

    def append(self, cid: str, items: list[dict[str, Any]]) -> object:
        blob = self.load(cid)
        if blob is None:
            return self.save(cid, items)
        blob["messages"].extend(stamped(items))
        blob["metadata"]["updatedAt"] = now_ms()
        blob["metadata"]["messageCount"] = len(blob["messages"])
        self._write(cid, blob)
        return blob["metadata"]

    def load_last(self, cid: str, n: int) -> object:
        blob = self.load(cid)  # no windowed read: the whole blob, then a slice
        return None if blob is None else blob["messages"][-n:]

    def delete(self, cid: str) -> object:
        return self.client.delete(self.key(cid)) > 0

    def list_ids(self) -> list[str]:
        start = len(self.prefix) + 1
        return [key.decode()[start:] for key in self.client.keys(f"{self.prefix}:*")]

    def list_page(self) -> object:
        # The original has no paged listing: list() (KEYS) is its closest call.
        return self.list_ids()

    def stats(self) -> object:
        conversations = messages = 0
        for cid in self.list_ids():
            blob = self.load(cid)
            if blob is not None:
                conversations += 1
                messages += len(blob["messages"])
        return conversations, messages

    def close(self) -> None:
        self.client.close()


class RawFloor(System):
    """Raw redis-py + msgspec, the least work per operation (see the module docstring)."""

    name, label = "floor", "raw redis-py + msgspec floor (minimal commands)"

    def __init__(self, url: str, prefix: str, ttl: int = TTL) -> None:
        self.client = counting_client(url)
        self.prefix = prefix
        self.index = f"{prefix}:index"
        self.ttl = ttl or None

    def key(self, cid: str) -> str:
        return f"{self.prefix}:{cid}"

    def list_key(self, cid: str) -> str:
        return f"{self.prefix}:{cid}:list"

    def queue_fill(self, pipe: Any, cid: str, items: list[dict[str, Any]]) -> None:
        """Add a new conversation's commands to ``pipe`` (for pipelined fills)."""
        stamped_items = stamped_fast(items)
        pipe.set(self.key(cid), _encoder.encode(stamped_items), ex=self.ttl)
        pipe.rpush(self.list_key(cid), *map(_encoder.encode, stamped_items))
        pipe.zadd(self.index, {cid: now_ms()})

    def fill(self, cid: str, items: list[dict[str, Any]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.key(cid), self.list_key(cid))
        self.queue_fill(pipe, cid, items)
        pipe.execute()

    def save(self, cid: str, items: list[dict[str, Any]]) -> object:
        return self.client.set(self.key(cid), _encoder.encode(stamped_fast(items)), ex=self.ttl)

    def append(self, cid: str, items: list[dict[str, Any]]) -> object:
        pipe = self.client.pipeline(transaction=False)
        pipe.rpush(self.list_key(cid), *map(_encoder.encode, stamped_fast(items)))
        if self.ttl:
            pipe.expire(self.list_key(cid), self.ttl)
        return pipe.execute()

    def load(self, cid: str) -> object:
        raw = self.client.get(self.key(cid))
        return None if raw is None else _messages.decode(raw)

    def load_last(self, cid: str, n: int) -> object:
        joined = b",".join(self.client.lrange(self.list_key(cid), -n, -1))
        return _messages.decode(b"[" + joined + b"]")

    def delete(self, cid: str) -> object:
        return self.client.delete(self.key(cid), self.list_key(cid)) > 0

    def list_page(self) -> object:
        return self.client.zrevrange(self.index, 0, 19)

    def stats(self) -> object:
        return self.client.zcard(self.index)

    def close(self) -> None:
        self.client.close()


def langchain_available() -> str | None:
    """None when ``RedisChatMessageHistory`` can be used, else why not."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from langchain_community.chat_message_histories import (  # noqa: F401
                RedisChatMessageHistory,
            )
    except ImportError as exc:
        return f"langchain-community is not installed ({exc.name}); pip install -e '.[bench]'"
    return None


def agents_available() -> str | None:
    """None when the OpenAI Agents SDK's ``RedisSession`` can be used, else why not."""
    try:
        from agents.extensions.memory import RedisSession  # noqa: F401
    except ImportError as exc:
        return f"openai-agents is not installed ({exc.name}); pip install -e '.[bench]'"
    return None


class LangChainHistory(System):
    """``langchain_community`` ``RedisChatMessageHistory``, one object per session."""

    name, label = "langchain", "LangChain RedisChatMessageHistory (langchain-community)"
    has_save = False
    has_load_last = False
    has_listing = False

    def __init__(self, url: str, prefix: str, ttl: int = TTL) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from langchain_community.chat_message_histories import RedisChatMessageHistory
            from langchain_core.messages import AIMessage, HumanMessage, message_to_dict
        self._history_class = RedisChatMessageHistory
        self._human, self._ai, self._to_dict = HumanMessage, AIMessage, message_to_dict
        self.url = url
        self.prefix = f"{prefix}:"
        self.ttl = ttl
        # One shared (counting) client instead of one pool per history object.
        self.client = counting_client(url)
        self.histories: dict[str, Any] = {}

    def history(self, cid: str) -> Any:
        history = self.histories.get(cid)
        if history is None:
            history = self._history_class(cid, url=self.url, key_prefix=self.prefix, ttl=self.ttl)
            history.redis_client.close()
            history.redis_client = self.client
            self.histories[cid] = history
        return history

    def prepare(self, items: list[dict[str, Any]]) -> list[Any]:
        """Our message dicts as LangChain messages."""
        return [
            (self._human if item["role"] == "user" else self._ai)(
                content=item["content"], additional_kwargs={"metadata": item["metadata"]}
            )
            for item in items
        ]

    def fill(self, cid: str, items: list[dict[str, Any]]) -> None:
        # The same layout add_messages builds (newest first), in one LPUSH.
        history = self.history(cid)
        payload = [json.dumps(self._to_dict(m)) for m in self.prepare(items)]
        self.client.lpush(history.key, *payload)
        if self.ttl:
            self.client.expire(history.key, self.ttl)

    def append(self, cid: str, items: list[Any]) -> object:
        self.history(cid).add_messages(items)
        return None

    def load(self, cid: str) -> object:
        return self.history(cid).messages

    def delete(self, cid: str) -> object:
        self.history(cid).clear()
        return None

    def close(self) -> None:
        self.client.close()


class AgentsSession(System):
    """The OpenAI Agents SDK's ``RedisSession`` (async), one object per session."""

    name, label = "openai-agents", "OpenAI Agents SDK RedisSession (openai-agents)"
    has_save = False
    has_listing = False

    def __init__(self, url: str, prefix: str, ttl: int = TTL) -> None:
        import redis.asyncio
        from agents.extensions.memory import RedisSession

        from .async_counting import AsyncCountingConnection

        self._session_class = RedisSession
        self.loop = asyncio.new_event_loop()
        pool: Any = redis.asyncio.ConnectionPool.from_url(
            url, connection_class=AsyncCountingConnection
        )
        self.client: Any = redis.asyncio.Redis(connection_pool=pool)
        self.prefix = prefix
        self.ttl = ttl
        self.sessions: dict[str, Any] = {}

    def session(self, cid: str) -> Any:
        session = self.sessions.get(cid)
        if session is None:
            session = self._session_class(
                cid, redis_client=self.client, key_prefix=self.prefix, ttl=self.ttl
            )
            self.sessions[cid] = session
        return session

    def prepare(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Our message dicts as Responses API input items."""
        return [{"role": item["role"], "content": item["content"]} for item in items]

    def fill(self, cid: str, items: list[dict[str, Any]]) -> None:
        self.loop.run_until_complete(self.session(cid).add_items(self.prepare(items)))

    def append(self, cid: str, items: list[Any]) -> object:
        return self.loop.run_until_complete(self.session(cid).add_items(items))

    def load(self, cid: str) -> object:
        return self.loop.run_until_complete(self.session(cid).get_items())

    def load_last(self, cid: str, n: int) -> object:
        return self.loop.run_until_complete(self.session(cid).get_items(limit=n))

    def delete(self, cid: str) -> object:
        return self.loop.run_until_complete(self.session(cid).clear_session())

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()
