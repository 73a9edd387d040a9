"""``convstore_migrate`` throughput: memory → Redis and Redis → database (SQLite).

For each pair, 10,000 conversations of a few messages each are copied three
ways, all measured in the same run against the same stores:

- ``convstore_migrate`` — the management command (``iter_conversations`` + ``put``);
- ``convstore_migrate --delete-source`` — the same, reading every copy back
  and comparing it before deleting the source;
- the original library's migration recipe — ``list()``, then ``load`` and
  ``save`` per id (which also resets ``created_at``/``updated_at``): the baseline.

The methods take turns for two rounds and each keeps its best time. Redis
is a private ``redis-server`` (or ``valkey-server``) started on loopback for
the run; the database is a SQLite file in a temporary directory, so the
database figures are dominated by one SQLite commit per conversation.

    python -m benchmarks.migrate_bench [--quick]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import django

_SQLITE = os.path.join(tempfile.mkdtemp(prefix="convstore-migrate-bench-"), "bench.sqlite3")
os.environ.setdefault("CONVSTORE_BENCH_SQLITE", _SQLITE)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
django.setup()

from django.core.management import call_command  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from django_convstore.backends.base import BaseStore  # noqa: E402
from django_convstore.clock import now_ms  # noqa: E402
from django_convstore.handler import stores  # noqa: E402
from django_convstore.types import Conversation, ConversationMetadata, Message  # noqa: E402

from .timing import markdown_table  # noqa: E402

MESSAGES_PER_CONVERSATION = 4
MEMORY = "django_convstore.backends.memory.MemoryStore"
REDIS = "django_convstore.backends.redis.RedisStore"
DATABASE = "django_convstore.backends.database.DatabaseStore"


def make_conversations(count: int) -> list[Conversation]:
    """``count`` conversations of a few short messages, with owner, TTL and metadata."""
    now = now_ms()
    conversations = []
    for i in range(count):
        cid = f"conv-{i:06d}"
        messages = [
            Message(
                id=f"{cid}-{j}",
                role="user" if j % 2 == 0 else "assistant",
                content=f"Message {j} of conversation {i}: " + "lorem ipsum " * 6,
                timestamp=now - 60_000 + j,
                metadata={"tokens": 20 + j} if j % 2 else {},
            )
            for j in range(MESSAGES_PER_CONVERSATION)
        ]
        conversations.append(
            Conversation(
                conversation_id=cid,
                messages=messages,
                metadata=ConversationMetadata(
                    conversation_id=cid,
                    created_at=now - 120_000,
                    updated_at=now - 60_000 + i % 1000,
                    message_count=len(messages),
                    ttl=86_400,
                    owner=str(i % 97),
                    metadata={"channel": "web", "n": i},
                ),
            )
        )
    return conversations


def original_recipe(source: BaseStore, target: BaseStore) -> None:
    """The TypeScript original's migration guide: list, then load and save each id."""
    for conversation_id in source.list():
        conversation = source.load(conversation_id, include_expired=True)
        if conversation is not None:
            target.save(
                conversation.conversation_id,
                conversation.messages,
                ttl=conversation.metadata.ttl or 0,
                metadata=conversation.metadata.metadata,
                owner=conversation.metadata.owner,
            )


def migrate_command(*extra: str) -> Callable[[BaseStore, BaseStore], None]:
    """Run ``convstore_migrate src dst`` (plain progress lines, captured).

    Any failed conversation makes the command raise ``CommandError``, which
    stops the benchmark.
    """

    def migrate(source: BaseStore, target: BaseStore) -> None:
        out, err = io.StringIO(), io.StringIO()
        call_command(
            "convstore_migrate", "src", "dst", "--no-progress", *extra, stdout=out, stderr=err
        )

    return migrate


@contextmanager
def redis_location() -> Iterator[str]:
    """A private Redis (or Valkey) server on loopback for this run."""
    from tests.servers.redis_server import RedisServer

    with RedisServer() as server:
        yield server.url


def _check_copy(target: BaseStore, data: list[Conversation], *, exact: bool) -> None:
    stats = target.get_stats()
    if stats.total_conversations != len(data):
        raise AssertionError(f"target holds {stats.total_conversations}, expected {len(data)}")
    for conversation in data[:: max(1, len(data) // 50)]:
        copy = target.load(conversation.conversation_id)
        if copy is None:
            raise AssertionError(f"{conversation.conversation_id} is missing from the target")
        if exact and copy.to_dict() != conversation.to_dict():
            raise AssertionError(f"{conversation.conversation_id} differs in the target")


def measure_pair(
    label: str,
    source_config: dict[str, Any],
    target_config: dict[str, Any],
    count: int,
    rounds: int,
) -> list[dict[str, object]]:
    """Time the three ways of copying ``count`` conversations from one store to another.

    The methods take turns for ``rounds`` rounds and each keeps its best time,
    so a busy machine penalises all of them alike.
    """
    data = make_conversations(count)
    methods: list[tuple[str, Callable[[BaseStore, BaseStore], None], bool]] = [
        ("original recipe (list + load + save)", original_recipe, False),
        ("convstore_migrate", migrate_command(), True),
        ("convstore_migrate --delete-source", migrate_command("--delete-source"), True),
    ]
    best = {name: float("inf") for name, _method, _exact in methods}
    with override_settings(CONVSTORE={"src": source_config, "dst": target_config}):
        source, target = stores["src"], stores["dst"]
        for _round in range(rounds):
            for name, method, exact in methods:
                source.clear()
                target.clear()
                for conversation in data:
                    source.put(conversation)
                start = time.perf_counter()
                method(source, target)
                best[name] = min(best[name], time.perf_counter() - start)
                _check_copy(target, data, exact=exact)
        source.clear()
        target.clear()
        stores.close_all()
    baseline = count / best[methods[0][0]]
    rows: list[dict[str, object]] = []
    for name, _method, _exact in methods:
        rate = count / best[name]
        rows.append(
            {
                "pair": label,
                "method": name,
                "conversations": count,
                "best of": rounds,
                "seconds": round(best[name], 2),
                "conversations/s": round(rate),
                "vs original recipe": f"{rate / baseline:.2f}x",
            }
        )
    return rows


def run(quick: bool = False) -> list[dict[str, object]]:
    """Measure both pairs: 10,000 conversations, best of 2 rounds (1,000 and 1 round if quick)."""
    count, rounds = (1_000, 1) if quick else (10_000, 2)
    call_command("migrate", verbosity=0, interactive=False)
    memory = {
        "BACKEND": MEMORY,
        "LOCATION": "migrate-bench",
        "OPTIONS": {"MAX_CONVERSATIONS": count},
    }
    database = {"BACKEND": DATABASE, "NAMESPACE": "migrate-bench"}
    rows: list[dict[str, object]] = []
    with redis_location() as location:
        redis = {"BACKEND": REDIS, "LOCATION": location, "NAMESPACE": "migrate-bench"}
        rows += measure_pair("memory → Redis", memory, redis, count, rounds)
        rows += measure_pair("Redis → database (SQLite)", redis, database, count, rounds)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="1,000 conversations instead of 10,000"
    )
    args = parser.parse_args()
    print(markdown_table(run(quick=args.quick)))


if __name__ == "__main__":
    main()
