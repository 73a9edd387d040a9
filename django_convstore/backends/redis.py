"""A store on Redis (or Valkey), connected through django-redis.

Every write is one Lua script: atomic, and one round trip (``EVALSHA``;
redis-py reloads a script the server lost and retries once on ``NOSCRIPT``).
A whole ``load`` is one ``MULTI``/``EXEC`` (``HGETALL`` + ``GET``) whose
messages arrive as one JSON array body, parsed with a single ``json.loads``;
``load(last=N)`` is a script that reads only the tail. ``exists`` and
``get_ttl`` are one ``HMGET``. Appends ``APPEND`` to strings, so their cost
does not depend on the conversation's length. Listing, stats, iteration and
cleanup work from sorted-set indexes; ``KEYS`` is never used. The key layout
is documented in :mod:`django_convstore.backends.redis_scripts`.

Time comes from the application (``django_convstore.clock.now_ms``), as on
every other backend; keys get an absolute ``PEXPIREAT`` at the conversation's
``expires_at``, so Redis drops them at the instant the metadata says (with
synchronised clocks). Redis deletes expired conversations itself, so
``load(..., include_expired=True)`` cannot return them.
"""

from __future__ import annotations

import builtins
import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings

from ..clock import now_ms
from ..exceptions import BackendError
from ..types import Conversation, ConversationMetadata, Message, Page, StoreStats
from . import redis_connection as connection
from . import redis_scripts as scripts
from .base import BaseStore, remaining_ttl

if TYPE_CHECKING:
    from redis import Redis
    from redis.commands.core import Script

DEFAULT_KEY_PREFIX = "aikit:conversation"
#: Conversations handled per script call by ``cleanup()`` and ``clear()``.
SWEEP_BATCH = 500

_USE_SCRIPT = object()
_MESSAGE_FIELDS = ("id", "role", "content", "timestamp", "metadata")
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _message_json(message: Message) -> str:
    return _JSON.encode(
        {
            "id": message.id,
            "role": message.role,
            "content": message.content,
            "timestamp": message.timestamp,
            "metadata": message.metadata,
        }
    )


def _metadata_args(metadata: dict[str, Any] | None) -> list[str]:
    args: list[str] = []
    for key, value in (metadata or {}).items():
        args.extend((f"m:{key}", _JSON.encode(value)))
    return args


def _message(item: dict[str, Any]) -> Message:
    # Loading 10,000 messages must stay close to one json.loads of the original's
    # blob, so stored documents (always written with exactly Message's fields by
    # _message_json) become instances without running the dataclass __init__.
    if len(item) != len(_MESSAGE_FIELDS):
        return Message(**item)
    message = object.__new__(Message)
    message.__dict__ = item
    return message


def _malformed(conversation_id: str, exc: Exception) -> BackendError:
    return BackendError(
        f"redis store: malformed data stored for conversation {conversation_id!r} "
        f"({type(exc).__name__}: {exc}).",
        detail=conversation_id,
    )


def _parse_messages(conversation_id: str, joined: bytes | str) -> builtins.list[Message]:
    if not joined:
        return []
    try:
        if isinstance(joined, bytes):
            items = json.loads(b"[" + joined + b"]")
        else:
            items = json.loads("[" + joined + "]")
        return [_message(item) for item in items]
    except (ValueError, TypeError) as exc:
        raise _malformed(conversation_id, exc) from exc


def _parse_metadata(conversation_id: str, flat: Sequence[bytes | str]) -> ConversationMetadata:
    fields: dict[str, str] = {}
    custom: dict[str, Any] = {}
    try:
        for name, value in zip(flat[::2], flat[1::2], strict=True):
            key = _text(name)
            if key.startswith("m:"):
                custom[key[2:]] = json.loads(value)
            else:
                fields[key] = _text(value)
        owner = fields.get("owner")
        return ConversationMetadata(
            conversation_id=conversation_id,
            created_at=int(fields["created_at"]),
            updated_at=int(fields["updated_at"]),
            message_count=int(fields.get("message_count", 0)),
            ttl=int(fields.get("ttl", 0)) or None,
            owner=owner if owner else None,
            metadata=custom,
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise _malformed(conversation_id, exc) from exc


class RedisStore(BaseStore):
    """Conversations in Redis/Valkey: O(1) atomic appends, indexed listing, no ``KEYS``.

    ``LOCATION``: ``redis://[user:password@]host:port/db``, ``rediss://…``
    (TLS) or ``unix:///path.sock?db=0``; or the ``HOST``/``PORT``/``DB``/
    ``USERNAME``/``PASSWORD`` options (default ``redis://127.0.0.1:6379/0``).
    ``OPTIONS``: ``KEY_PREFIX`` (default ``aikit:conversation``; keys are
    ``<KEY_PREFIX>:<NAMESPACE>:…``), ``SOCKET_TIMEOUT`` (seconds, default 5,
    for connecting and for each reply), ``CONNECTION_POOL_KWARGS`` (passed to
    redis-py's pool), or ``CACHE``: the alias of a django-redis cache whose
    client to reuse (its Sentinel/TLS/pool settings apply; the server options
    above then belong to that cache).
    """

    backend_name: ClassVar[str] = "redis"
    option_names: ClassVar[frozenset[str]] = frozenset(
        {"KEY_PREFIX", "CACHE", *connection.SERVER_OPTIONS}
    )
    required_modules: ClassVar[tuple[tuple[str, str], ...]] = (
        ("django_redis", "redis"),
        ("redis", "redis"),
    )

    def __init__(self, location: str = "", params: Any = None, *, alias: str | None = None):
        super().__init__(location, params, alias=alias)
        try:
            import django_redis  # noqa: F401
            import redis  # noqa: F401
        except ImportError as exc:
            raise self.configuration_error(
                f"RedisStore needs the redis and django-redis packages ({exc}); "
                "pip install 'django-convstore[redis]'."
            ) from exc
        self.key_prefix = self._parse_key_prefix()
        if "{" in self.namespace or "}" in self.namespace:
            raise self.configuration_error("NAMESPACE must not contain '{' or '}' on Redis.")
        #: Every key of this store starts with ``<base>:``.
        self.base = f"{self.key_prefix}:{self.namespace}"
        self._store_keys = scripts.store_keys(self.base)
        self.cache_alias = self._parse_cache()
        self.server: connection.ServerSettings | None = None
        if self.cache_alias is None:
            timeout = self.option_number("SOCKET_TIMEOUT", connection.DEFAULT_SOCKET_TIMEOUT)
            assert timeout is not None
            try:
                self.server = connection.server_settings(self.location, self.options, timeout)
            except connection.ConfigError as exc:
                raise self.configuration_error(str(exc)) from None
        self._lock = threading.Lock()
        self._client: Redis | None = None
        self._scripts: dict[str, Script] = {}

    # -- configuration ---------------------------------------------------------------------

    def _parse_key_prefix(self) -> str:
        prefix = self.options.get("KEY_PREFIX", DEFAULT_KEY_PREFIX)
        if not isinstance(prefix, str) or not prefix:
            raise self.configuration_error(
                f"OPTIONS['KEY_PREFIX'] must be a non-empty string, not {prefix!r}."
            )
        if "{" in prefix or "}" in prefix:
            raise self.configuration_error(
                "OPTIONS['KEY_PREFIX'] must not contain '{' or '}' (they form hash tags)."
            )
        return prefix

    def _parse_cache(self) -> str | None:
        cache = self.options.get("CACHE")
        if cache is None:
            return None
        if not isinstance(cache, str) or not cache:
            raise self.configuration_error(
                f"OPTIONS['CACHE'] must be the alias of a django-redis cache, not {cache!r}."
            )
        clashing = [name for name in connection.SERVER_OPTIONS if name in self.options]
        if self.location:
            clashing.insert(0, "LOCATION")
        if clashing:
            raise self.configuration_error(
                f"OPTIONS['CACHE'] cannot be combined with {', '.join(clashing)}: the "
                f"connection settings come from CACHES[{cache!r}]."
            )
        if cache not in getattr(settings, "CACHES", {}):
            raise self.configuration_error(
                f"OPTIONS['CACHE'] names {cache!r}, which is not in settings.CACHES."
            )
        return cache

    @property
    def address(self) -> str:
        """Where the store connects (``host:port`` or ``unix:path``), without credentials."""
        if self.server is not None:
            return self.server.address
        client = self._client
        where = connection.client_address(client) if client is not None else "?"
        return f"{where} (cache {self.cache_alias!r})"

    # -- connection ------------------------------------------------------------------------

    @property
    def client(self) -> Redis:
        """The redis-py client, created on first use (no I/O until a command runs)."""
        client = self._client
        if client is None:
            with self._lock:
                client = self._client
                if client is None:
                    if self.server is not None:
                        client = connection.client_for(self.server)
                    else:
                        assert self.cache_alias is not None
                        try:
                            client = connection.cache_client(self.cache_alias)
                        except connection.ConfigError as exc:
                            raise self.configuration_error(str(exc)) from None
                    self._client = client
                    self._scripts = {}
        return client

    def _script(self, name: str) -> Script:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self.client.register_script(scripts.SCRIPTS[name])
        return script

    @contextmanager
    def _errors(self) -> Iterator[None]:
        from redis.exceptions import RedisError

        try:
            yield
        except (RedisError, OSError) as exc:
            secrets = self.server.secrets() if self.server is not None else []
            raise connection.translate_error(
                exc, alias=self.display_alias, address=self.address, secrets=secrets
            ) from exc

    def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        with self._errors():
            return self._script(name)(keys=keys, args=args)

    def _conversation_keys(self, conversation_id: str) -> list[str]:
        return [*self._store_keys, *scripts.conversation_keys(self.base, conversation_id)]

    def _close(self) -> None:
        """Disconnect the pool's idle connections; the next command reconnects.

        With ``OPTIONS["CACHE"]`` the pool belongs to that cache and is left open.
        """
        with self._lock:
            client = self._client
            if client is None or self.server is None:
                self._client = None
                self._scripts = {}
                return
        with self._errors():
            client.connection_pool.disconnect(inuse_connections=False)

    # -- writes ----------------------------------------------------------------------------

    def _save(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        ttl: int | None,
        metadata: dict[str, Any] | None,
        owner: str | None,
    ) -> Conversation:
        meta_args = _metadata_args(metadata)
        flat = self._run(
            "save",
            self._conversation_keys(conversation_id),
            [
                self.base,
                conversation_id,
                now_ms(),
                ttl or 0,
                "-" if owner is None else f"={owner}",
                len(meta_args) // 2,
                *meta_args,
                *map(_message_json, messages),
            ],
        )
        return Conversation(
            conversation_id=conversation_id,
            messages=messages,
            metadata=_parse_metadata(conversation_id, flat),
        )

    def _create(
        self,
        conversation_id: str,
        messages: builtins.list[Message],
        *,
        ttl: int | None,
        metadata: dict[str, Any],
        owner: str | None,
    ) -> Conversation | None:
        meta_args = _metadata_args(metadata)
        flat = self._run(
            "create",
            self._conversation_keys(conversation_id),
            [
                self.base,
                conversation_id,
                now_ms(),
                ttl or 0,
                owner or "",
                len(meta_args) // 2,
                *meta_args,
                *map(_message_json, messages),
            ],
        )
        if not flat:
            return None
        return Conversation(
            conversation_id=conversation_id,
            messages=messages,
            metadata=_parse_metadata(conversation_id, flat),
        )

    def _update_metadata(
        self, conversation_id: str, metadata: dict[str, Any], *, replace: bool
    ) -> ConversationMetadata | None:
        meta_args = _metadata_args(metadata)
        flat = self._run(
            "update_metadata",
            self._conversation_keys(conversation_id),
            [
                self.base,
                conversation_id,
                now_ms(),
                "1" if replace else "0",
                len(meta_args) // 2,
                *meta_args,
            ],
        )
        if not flat:
            return None
        return _parse_metadata(conversation_id, flat)

    def _append(
        self, conversation_id: str, messages: builtins.list[Message], *, update_timestamp: bool
    ) -> ConversationMetadata:
        flat = self._run(
            "append",
            self._conversation_keys(conversation_id),
            [
                self.base,
                conversation_id,
                now_ms(),
                self.default_ttl or 0,
                "1" if update_timestamp else "0",
                *map(_message_json, messages),
            ],
        )
        return _parse_metadata(conversation_id, flat)

    def _put(self, conversation: Conversation) -> None:
        meta = conversation.metadata
        meta_args = _metadata_args(meta.metadata)
        self._run(
            "put",
            self._conversation_keys(conversation.conversation_id),
            [
                self.base,
                conversation.conversation_id,
                meta.created_at,
                meta.updated_at,
                meta.ttl or 0,
                meta.owner or "",
                len(meta_args) // 2,
                *meta_args,
                *map(_message_json, conversation.messages),
            ],
        )

    def _delete(self, conversation_id: str) -> bool:
        keys = self._conversation_keys(conversation_id)
        return bool(self._run("delete", keys, [self.base, conversation_id, now_ms()]))

    def _set_ttl(self, conversation_id: str, ttl: int | None) -> bool:
        keys = self._conversation_keys(conversation_id)
        return bool(self._run("set_ttl", keys, [self.base, conversation_id, now_ms(), ttl or 0]))

    def _clear(self) -> int:
        removed = 0
        while True:
            processed, live = self._run(
                "clear", self._store_keys, [self.base, now_ms(), SWEEP_BATCH]
            )
            removed += int(live)
            if not processed:
                return removed

    def _cleanup(self) -> int:
        removed = 0
        while True:
            count = int(self._run("cleanup", self._store_keys, [self.base, now_ms(), SWEEP_BATCH]))
            removed += count
            if count < SWEEP_BATCH:
                return removed

    # -- reads -----------------------------------------------------------------------------

    def _load(
        self, conversation_id: str, *, include_expired: bool, last: int | None
    ) -> Conversation | None:
        keys = scripts.conversation_keys(self.base, conversation_id)
        now = now_ms()
        reply: Any = self._load_in_transaction(keys) if last is None else _USE_SCRIPT
        if reply is _USE_SCRIPT:
            tail = "" if last is None else last
            reply = self._run("load", keys, [now, tail, "1" if include_expired else "0"])
        if not reply:
            return None
        flat, joined = reply
        metadata = _parse_metadata(conversation_id, flat)
        if not include_expired and metadata.is_expired(now):
            return None
        if metadata.message_count and not joined and last != 0:
            return None  # the messages expired a moment after the metadata was read
        return Conversation(
            conversation_id=conversation_id,
            messages=_parse_messages(conversation_id, joined or b""),
            metadata=metadata,
        )

    def _load_in_transaction(self, keys: Sequence[str]) -> Any:
        """``MULTI HGETALL meta; GET msgs; EXEC``: one round trip, atomic.

        Cheaper than the load script for long conversations (Lua would copy the
        messages twice on the server). A server that refuses transactions (out
        of memory, which rejects even reads inside MULTI) answers
        ``_USE_SCRIPT``, and the caller falls back to the script.
        """
        from redis.exceptions import ExecAbortError, ResponseError

        with self._errors():
            pipe = self.client.pipeline(transaction=True)
            pipe.hgetall(keys[0])
            pipe.get(keys[1])
            try:
                fields, joined = pipe.execute()
            except (ExecAbortError, ResponseError):
                return _USE_SCRIPT
        if not fields:
            return None
        return [item for pair in fields.items() for item in pair], joined

    def _ttl_fields(self, conversation_id: str) -> tuple[int, int | None] | None:
        meta_key = scripts.conversation_keys(self.base, conversation_id)[0]
        with self._errors():
            updated_at, ttl = self.client.hmget(meta_key, ["updated_at", "ttl"])
        if updated_at is None:
            return None
        return int(updated_at), int(ttl or 0) or None

    def _exists(self, conversation_id: str) -> bool:
        fields = self._ttl_fields(conversation_id)
        if fields is None:
            return False
        meta = ConversationMetadata(conversation_id, 0, fields[0], ttl=fields[1])
        return not meta.is_expired(now_ms())

    def _get_ttl(self, conversation_id: str) -> int:
        fields = self._ttl_fields(conversation_id)
        if fields is None:
            return -2
        now = now_ms()
        meta = ConversationMetadata(conversation_id, 0, fields[0], ttl=fields[1])
        if meta.is_expired(now):
            return -2
        return remaining_ttl(meta, now)

    def _list(self) -> builtins.list[str]:
        ids = self._run("list_ids", self._store_keys, [self.base, now_ms()])
        return [_text(cid) for cid in ids]

    def _list_conversations(
        self, *, owner: str | None, prefix: str | None, limit: int, offset: int
    ) -> Page:
        reply = self._run(
            "list_page",
            self._store_keys,
            [self.base, now_ms(), owner or "", prefix or "", limit, offset],
        )
        items = []
        for cid, flat in zip(reply[1::2], reply[2::2], strict=True):
            if flat:
                items.append(_parse_metadata(_text(cid), flat))
        return Page(items=items, total=max(0, int(reply[0])))

    def _iter_conversations(
        self, *, include_expired: bool, batch_size: int
    ) -> Iterator[Conversation]:
        after = ""
        while True:
            reply = self._run(
                "iter_batch",
                self._store_keys,
                [self.base, now_ms(), "1" if include_expired else "0", after, batch_size],
            )
            if not reply:
                return
            for raw_id, flat, joined in zip(reply[0::3], reply[1::3], reply[2::3], strict=True):
                cid = _text(raw_id)
                after = cid
                if flat:
                    yield Conversation(
                        conversation_id=cid,
                        messages=_parse_messages(cid, joined),
                        metadata=_parse_metadata(cid, flat),
                    )
            if len(reply) < 3 * batch_size:
                return

    def _get_stats(self) -> StoreStats:
        live, messages, expired, size = self._run("stats", self._store_keys, [self.base, now_ms()])
        return StoreStats(
            total_conversations=max(0, int(live)),
            total_messages=max(0, int(messages)),
            expired_conversations=int(expired),
            storage_size=max(0, int(size)),
        )


__all__ = ["DEFAULT_KEY_PREFIX", "RedisStore"]
