"""A stranger's requests for a long conversation read none of its messages.

The API passes the caller's owner to the store, whose owner-scoped ``load``
decides before reading any message body (no existence or size oracle: a
stranger's GET of a 20,000-message conversation costs what a missing id
costs). Measured as message bytes the backend actually read, not as time:

- memory: bytes of stored message JSON decoded (the backend keeps messages
  encoded; a read decodes them);

Each leg of ``API_BACKENDS`` needs its probe here; the owner's own GET shows
the probe sees the reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from rest_framework.test import APIClient

from django_convstore import codec
from django_convstore.backends.base import BaseStore

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

MESSAGES = 20_000
BATCH = 1000
CONTENT = "x" * 480
#: What a stranger's request may read: nothing of the messages (a few KB of metadata at most).
ALLOWANCE = 16 * 1024

Probe = Callable[[], Any]  # a context manager yielding a dict with "bytes"


@contextmanager
def decoded_message_bytes(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """Count the bytes of message JSON decoded while the block runs."""
    seen = {"bytes": 0}
    for name in ("decode_message", "decode_messages", "decode_joined_messages"):
        original = getattr(codec, name)

        def counting(data: Any, _original: Any = original) -> Any:
            seen["bytes"] += len(data)
            return _original(data)

        monkeypatch.setattr(codec, name, counting)
    try:
        yield seen
    finally:
        monkeypatch.undo()


@pytest.fixture
def read_probe(api_backend: str, monkeypatch: pytest.MonkeyPatch) -> Probe:
    """A context manager measuring the message bytes the served store reads."""
    probes: dict[str, Probe] = {"memory": lambda: decoded_message_bytes(monkeypatch)}
    if api_backend not in probes:
        pytest.fail(f"no read probe for the {api_backend!r} leg: add one to this module")
    return probes[api_backend]


@pytest.fixture
def long_conversation(api_store: BaseStore, owner: Any) -> int:
    """Alice's conversation ``long`` with :data:`MESSAGES` messages; returns its size in bytes."""
    for start in range(0, MESSAGES, BATCH):
        api_store.append(
            "long",
            [
                {"id": f"m{i}", "role": "user", "content": CONTENT}
                for i in range(start, start + BATCH)
            ],
            owner=str(owner.pk),
        )
    return MESSAGES * len(CONTENT)


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


def test_a_strangers_requests_read_no_message_bodies(
    api_store: BaseStore,
    long_conversation: int,
    read_probe: Probe,
    client_for: Any,
    owner: Any,
    other: Any,
) -> None:
    stranger: APIClient = client_for(other)
    for method, path, body in STRANGER_REQUESTS:
        with read_probe() as read:
            response = getattr(stranger, method)(path.format("long"), body, format="json")
        assert response.status_code == 404, (method, path)
        assert response.json() == {"detail": "Not found."}  # as for a missing id
        assert read["bytes"] <= ALLOWANCE, (method, path, read["bytes"])

    # The probe does see reads: the owner's GET reads the whole conversation.
    with read_probe() as read:
        response = client_for(owner).get("/api/conversations/long/")
    assert response.status_code == 200
    assert read["bytes"] >= long_conversation
    stored = api_store.load("long", last=0)
    assert stored is not None and stored.metadata.message_count == MESSAGES
