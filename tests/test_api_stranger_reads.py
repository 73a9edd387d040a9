"""A stranger's requests for a long conversation read none of its messages.

The API passes the caller's owner to the store, whose owner-scoped operations
decide before they read any message (no existence or size oracle): every
request a stranger makes for a 20,000-message conversation costs what the
same request costs for an id that does not exist. Measured as what the
backend actually reads, never as time:

- memory: bytes of stored message JSON decoded (the store keeps messages
  encoded; a read decodes them);
- Redis: bytes the server sent (``INFO stats``, ``total_net_output_bytes``);
- ZeroDB: bytes of the test server's answers;
- PostgreSQL: rows read from the messages table (``pg_stat_xact_user_tables``,
  the request run inside one transaction);
- MySQL/MariaDB: rows read by the storage engine (``Handler_read_*``);
- SQLite: virtual machine instructions executed on the store's connection.

The owner's own GET shows each probe does see the reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connections, transaction
from rest_framework.test import APIClient

from django_convstore import codec
from django_convstore.backends.base import BaseStore
from django_convstore.models import StoredMessage
from tests.fixtures.api import DATABASE_LEGS, READ_STATS

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

MESSAGES = 20_000
BATCH = 1000
CONTENT = "x" * 480

Call = Callable[[], Any]


@dataclass
class ReadProbe:
    """How much a backend reads while a call runs, in ``unit``s."""

    unit: str
    measure: Callable[[Call], int]
    #: How much more than the same request for a missing id a stranger's request may cost.
    margin: int
    #: The least the owner's GET of the whole conversation reads.
    owner_reads: int


def memory_probe(monkeypatch: pytest.MonkeyPatch) -> ReadProbe:
    """Bytes of message JSON decoded by the codec."""
    seen = [0]
    for name in ("decode_message", "decode_messages", "decode_joined_messages"):
        original = getattr(codec, name)

        def counting(data: Any, _original: Any = original) -> Any:
            seen[0] += len(data)
            return _original(data)

        monkeypatch.setattr(codec, name, counting)

    def measure(call: Call) -> int:
        before = seen[0]
        call()
        return seen[0] - before

    return ReadProbe("bytes decoded", measure, margin=0, owner_reads=MESSAGES * len(CONTENT))


def redis_probe(servers: Callable[[], list[Any]]) -> ReadProbe:
    """Bytes the Redis servers (one, or a cluster's masters) sent to their clients."""

    def sent() -> int:
        total = 0
        for server in servers():
            info = str(server.command("INFO", "stats"))
            line = next(x for x in info.splitlines() if x.startswith("total_net_output_bytes:"))
            total += int(line.split(":")[1])
        return total

    start = sent()
    info_replies = sent() - start  # what the INFO replies themselves add

    def measure(call: Call) -> int:
        before = sent()
        call()
        return sent() - before - info_replies

    return ReadProbe("bytes sent", measure, margin=4096, owner_reads=MESSAGES * len(CONTENT))


def zerodb_probe(server: Any) -> ReadProbe:
    """Bytes of the ZeroDB test server's answers."""

    def measure(call: Call) -> int:
        with server.counting() as tally:
            call()
        return int(tally.response_bytes)

    return ReadProbe("bytes answered", measure, margin=4096, owner_reads=MESSAGES * len(CONTENT))


def database_probe(alias: str) -> ReadProbe:
    """Rows read (PostgreSQL: of messages; MySQL: any) or VM instructions run (SQLite)."""
    connection = connections[alias]
    if connection.vendor == "postgresql":
        table = StoredMessage._meta.db_table

        def rows_read() -> int:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) "
                    "FROM pg_stat_xact_user_tables WHERE relname = %s",
                    [table],
                )
                row = cursor.fetchone()
                return int(row[0]) if row else 0

        def measure_rows(call: Call) -> int:
            with transaction.atomic(using=alias):
                before = rows_read()
                call()
                return rows_read() - before

        return ReadProbe("message rows read", measure_rows, margin=0, owner_reads=MESSAGES)
    if connection.vendor == "mysql":

        def handler_reads() -> int:
            with connection.cursor() as cursor:
                cursor.execute("SHOW SESSION STATUS LIKE 'Handler_read%%'")
                return sum(int(value) for _name, value in cursor.fetchall())

        def measure_handler(call: Call) -> int:
            before = handler_reads()
            call()
            return handler_reads() - before

        return ReadProbe("rows read", measure_handler, margin=20, owner_reads=MESSAGES)
    assert connection.vendor == "sqlite", connection.vendor
    step = 100

    def measure_steps(call: Call) -> int:
        steps = [0]

        def count() -> int:
            steps[0] += step
            return 0

        connection.ensure_connection()
        connection.connection.set_progress_handler(count, step)
        try:
            call()
        finally:
            connection.connection.set_progress_handler(None, step)
        return steps[0]

    return ReadProbe("VM instructions", measure_steps, margin=5_000, owner_reads=MESSAGES * 5)


@pytest.fixture
def read_probe(
    request: pytest.FixtureRequest, api_backend: str, monkeypatch: pytest.MonkeyPatch
) -> ReadProbe:
    """The probe of the leg under test."""
    if api_backend == "memory":
        return memory_probe(monkeypatch)
    if api_backend == "redis":
        server = request.getfixturevalue("redis_server")
        return redis_probe(lambda: [server])
    if api_backend == "redis_cluster":
        return redis_probe(request.getfixturevalue("redis_cluster").masters)
    if api_backend == "zerodb":
        return zerodb_probe(request.getfixturevalue("zerodb_server"))
    if api_backend in DATABASE_LEGS:
        return database_probe(DATABASE_LEGS[api_backend])
    pytest.fail(f"no read probe for the {api_backend!r} leg: add one to this module")


@pytest.fixture
def long_conversation(api_store: BaseStore, owner: Any) -> None:
    """Alice's conversation ``long`` with :data:`MESSAGES` messages of 480 characters."""
    for start in range(0, MESSAGES, BATCH):
        api_store.append(
            "long",
            [
                {"id": f"m{i}", "role": "user", "content": CONTENT}
                for i in range(start, start + BATCH)
            ],
            owner=str(owner.pk),
        )


STRANGER_REQUESTS: list[tuple[str, str, Any]] = [
    ("get", "/api/conversations/{}/", None),
    ("get", "/api/conversations/{}/?last=100", None),
    ("get", "/api/conversations/{}/messages/", None),
    ("get", "/api/conversations/{}/messages/?offset=19990", None),
    ("get", "/api/conversations/{}/ttl/", None),
    ("put", "/api/conversations/{}/", {"messages": []}),
    ("patch", "/api/conversations/{}/", {"metadata": {"x": 1}}),
    ("post", "/api/conversations/{}/messages/", {"role": "user", "content": "hi"}),
    ("post", "/api/conversations/{}/pop/", {"count": 5}),
    ("post", "/api/conversations/{}/truncate/", {"keep": 0}),
    ("delete", "/api/conversations/{}/", None),
]


def test_a_strangers_requests_cost_what_a_missing_id_costs(
    api_store: BaseStore,
    long_conversation: None,
    read_probe: ReadProbe,
    client_for: Any,
    owner: Any,
    other: Any,
    api_backend: str,
) -> None:
    stranger: APIClient = client_for(other)
    costs: dict[str, tuple[int, int]] = {}
    for number, (method, path, body) in enumerate(STRANGER_REQUESTS):
        missing, _ = measured(read_probe, stranger, method, path.format(f"none-{number}"), body)
        cost, response = measured(read_probe, stranger, method, path.format("long"), body)
        assert response.status_code == 404, (method, path)
        assert response.json() == {"detail": "Not found."}  # as for a missing id
        costs[f"{method.upper()} {path}"] = (cost, missing)
        assert cost <= missing + read_probe.margin, (method, path, read_probe.unit, cost, missing)

    # The probe does see reads: the owner's GET reads the whole conversation.
    owners, response = measured(read_probe, client_for(owner), "get", "/api/conversations/long/")
    assert response.status_code == 200
    assert owners >= read_probe.owner_reads, (read_probe.unit, owners, costs)
    worst = max(costs, key=lambda name: costs[name][0])
    READ_STATS.append(
        f"{api_backend}: a stranger's 11 requests read at most {costs[worst][0]} "
        f"{read_probe.unit} ({worst}; {costs[worst][1]} for a missing id), "
        f"the owner's GET {owners}"
    )
    stored = api_store.load("long", last=0)
    assert stored is not None and stored.metadata.message_count == MESSAGES


def measured(
    probe: ReadProbe, client: APIClient, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    """What the backend read while ``client`` sent the request, and the response."""
    responses: list[Any] = []
    cost = probe.measure(
        lambda: responses.append(getattr(client, method)(path, body, format="json"))
    )
    return cost, responses[0]
