"""The REST API's writes stay atomic under concurrency (every backend leg of the API tests).

``PATCH`` changes metadata with ``store.update_metadata`` and ``POST`` creates
with ``store.create``, so a message appended meanwhile is never lost and two
simultaneous creates of one id never both succeed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from django_convstore import stores
from django_convstore.backends.base import BaseStore
from tests.fixtures.api import API_ALIAS

pytestmark = pytest.mark.django_db

BASE = "/api/conversations/"
APPENDERS = 3
APPENDS = 20
PATCHERS = 3
PATCHES = 10
CREATORS = 6


def run_threads(count: int, target: Callable[[int], None]) -> None:
    """Run ``target(i)`` in ``count`` threads released together; re-raise the first error."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def body(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            target(index)
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def test_patch_never_loses_messages_appended_meanwhile(
    api_store: BaseStore,
    client_for: Callable[[Any], APIClient],
    owner: Any,
    api_backend: str,
    request: pytest.FixtureRequest,
) -> None:
    api_store.save("c", [{"id": "first", "role": "user", "content": "hi"}], owner=str(owner.pk))
    statuses: list[int] = []

    def worker(index: int) -> None:
        if index < APPENDERS:
            store = stores[API_ALIAS]  # this thread's instance of the served store
            for i in range(APPENDS):
                store.append("c", [{"id": f"a{index}-{i}", "role": "user", "content": str(i)}])
            return
        patcher = index - APPENDERS
        client = client_for(owner)
        for i in range(PATCHES):
            body: dict[str, Any] = {"metadata": {f"p{patcher}-{i}": i}}
            if i % 3 == 0:
                body["ttl"] = 600
            response = client.patch(f"{BASE}c/", body, format="json")
            statuses.append(response.status_code)
            assert response.json()["metadata"][f"p{patcher}-{i}"] == i

    run_threads(APPENDERS + PATCHERS, worker)

    assert statuses == [200] * (PATCHERS * PATCHES)
    stored = api_store.load("c")
    assert stored is not None
    ids = [m.id for m in stored.messages]
    assert len(ids) == len(set(ids)) == 1 + APPENDERS * APPENDS
    assert stored.metadata.message_count == 1 + APPENDERS * APPENDS
    assert stored.metadata.metadata == {
        f"p{p}-{i}": i for p in range(PATCHERS) for i in range(PATCHES)
    }
    assert stored.metadata.owner == str(owner.pk)
    assert stored.metadata.ttl == 600


def test_simultaneous_posts_of_one_id_create_it_once(
    api_store: BaseStore, client_for: Callable[[Any], APIClient], make_user: Any
) -> None:
    users = [make_user(f"creator{i}") for i in range(CREATORS)]
    responses: dict[int, Any] = {}

    def creator(index: int) -> None:
        responses[index] = client_for(users[index]).post(
            BASE,
            {
                "conversation_id": "contested",
                "messages": [{"id": f"m{index}", "role": "user", "content": f"from {index}"}],
                "metadata": {"creator": index},
            },
            format="json",
        )

    run_threads(CREATORS, creator)

    statuses = sorted(response.status_code for response in responses.values())
    assert statuses == [201] + [409] * (CREATORS - 1)
    winner = next(i for i, response in responses.items() if response.status_code == 201)
    stored = api_store.load("contested")
    assert stored is not None
    assert [m.id for m in stored.messages] == [f"m{winner}"]
    assert stored.metadata.metadata == {"creator": winner}
    assert stored.metadata.owner == str(users[winner].pk)
    assert responses[winner].json() == stored.to_dict()
