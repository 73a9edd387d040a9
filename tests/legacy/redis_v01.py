"""Writing conversations exactly as django-convstore 0.1's ``RedisStore`` did.

The argument lists below are those of 0.1's ``RedisStore._save``, ``_append``
and ``_put`` (commit 4a71b84), and the scripts are 0.1's own
(:mod:`tests.legacy.redis_v01_scripts`), so the keys this writes are real 0.1
data: what a deployment upgrading from 0.1 has in Redis.
"""

from __future__ import annotations

import json
from typing import Any

from redis import Redis

from . import redis_v01_scripts as scripts

_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def message_json(message: dict[str, Any]) -> str:
    """0.1 stored exactly these five fields of every message."""
    return _JSON.encode(
        {
            "id": message["id"],
            "role": message["role"],
            "content": message["content"],
            "timestamp": message["timestamp"],
            "metadata": message.get("metadata", {}),
        }
    )


def _metadata_args(metadata: dict[str, Any] | None) -> list[str]:
    args: list[str] = []
    for key, value in (metadata or {}).items():
        args.extend((f"m:{key}", _JSON.encode(value)))
    return args


class V01Writer:
    """0.1's writes on ``client`` for ``KEY_PREFIX`` and ``NAMESPACE``."""

    def __init__(self, client: Redis, key_prefix: str, namespace: str) -> None:
        self.client = client
        self.base = f"{key_prefix}:{namespace}"
        self.store_keys = scripts.store_keys(self.base)

    def _run(self, name: str, cid: str, args: list[Any]) -> Any:
        keys = [*self.store_keys, *scripts.conversation_keys(self.base, cid)]
        return self.client.register_script(scripts.SCRIPTS[name])(keys=keys, args=args)

    def save(
        self,
        cid: str,
        messages: list[dict[str, Any]],
        *,
        now: int,
        ttl: int | None = None,
        owner: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Any:
        meta_args = _metadata_args(metadata)
        return self._run(
            "save",
            cid,
            [
                self.base,
                cid,
                now,
                ttl or 0,
                "-" if owner is None else f"={owner}",
                len(meta_args) // 2,
                *meta_args,
                *map(message_json, messages),
            ],
        )

    def append(
        self,
        cid: str,
        messages: list[dict[str, Any]],
        *,
        now: int,
        default_ttl: int | None = None,
        update_timestamp: bool = True,
    ) -> Any:
        return self._run(
            "append",
            cid,
            [
                self.base,
                cid,
                now,
                default_ttl or 0,
                "1" if update_timestamp else "0",
                *map(message_json, messages),
            ],
        )

    def put(
        self,
        cid: str,
        messages: list[dict[str, Any]],
        *,
        created_at: int,
        updated_at: int,
        ttl: int | None = None,
        owner: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Any:
        meta_args = _metadata_args(metadata)
        return self._run(
            "put",
            cid,
            [
                self.base,
                cid,
                created_at,
                updated_at,
                ttl or 0,
                owner or "",
                len(meta_args) // 2,
                *meta_args,
                *map(message_json, messages),
            ],
        )
