"""``write_as``: creating writes run as the caller, or for a permitted user on the owner's behalf.

The write callables here are real store writes, except where a test injects
the one case a single process cannot produce on demand: an owner that changes
between every read and write.
"""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory, force_authenticate

from django_convstore.api.exceptions import ConcurrentChange
from django_convstore.api.ownership import ATTEMPTS, write_as
from django_convstore.api.permissions import OwnerScope
from django_convstore.backends.base import BaseStore
from django_convstore.exceptions import OwnerMismatchError
from django_convstore.types import Conversation

pytestmark = pytest.mark.django_db

HI = [{"role": "user", "content": "hi"}]


def scope_for(user: Any) -> OwnerScope:
    """The default scope of a request made by ``user``."""
    request = APIRequestFactory().put("/api/conversations/c/")
    force_authenticate(request, user=user)
    drf_request = Request(request)
    drf_request.user = user
    return OwnerScope(drf_request)


class Recorder:
    """A real ``store.save`` that records the owner of every attempt."""

    def __init__(self, store: BaseStore) -> None:
        self.store = store
        self.owners: list[str | None] = []

    def __call__(self, owner: str | None) -> Conversation:
        self.owners.append(owner)
        return self.store.save("c", HI, owner=owner)


def test_users_write_as_themselves(api_store: BaseStore, owner: Any) -> None:
    save = Recorder(api_store)
    result = write_as(scope_for(owner), api_store, "c", save)
    assert result.metadata.owner == str(owner.pk)
    assert save.owners == [str(owner.pk)]


def test_someone_elses_conversation_is_404_without_the_permission(
    api_store: BaseStore, owner: Any, other: Any
) -> None:
    api_store.save("c", [], owner=str(other.pk))
    save = Recorder(api_store)
    with pytest.raises(NotFound):
        write_as(scope_for(owner), api_store, "c", save)
    assert save.owners == [str(owner.pk)]
    stored = api_store.load("c")
    assert stored is not None and stored.messages == []


@pytest.mark.parametrize("existing_owner", ["someone", None])
def test_permitted_users_write_on_the_owners_behalf(
    api_store: BaseStore, manager: Any, existing_owner: str | None
) -> None:
    api_store.save("c", [], owner=existing_owner)
    save = Recorder(api_store)
    result = write_as(scope_for(manager), api_store, "c", save)
    assert save.owners == [str(manager.pk), existing_owner]
    assert result.metadata.owner == existing_owner
    assert len(result.messages) == 1


def test_a_conversation_deleted_meanwhile_is_created_for_the_permitted_user(
    api_store: BaseStore, manager: Any
) -> None:
    api_store.save("c", [], owner="someone")
    attempts: list[str | None] = []

    def save(owner: str | None) -> Conversation:
        attempts.append(owner)
        try:
            return api_store.save("c", HI, owner=owner)
        except OwnerMismatchError:
            api_store.delete("c")  # the owner deletes it right after the refusal
            raise

    result = write_as(scope_for(manager), api_store, "c", save)
    assert attempts == [str(manager.pk), str(manager.pk)]
    assert result.metadata.owner == str(manager.pk)


def test_an_owner_that_keeps_changing_answers_409(api_store: BaseStore, manager: Any) -> None:
    api_store.save("c", [], owner="someone")
    attempts: list[str | None] = []

    def always_refused(owner: str | None) -> Conversation:
        attempts.append(owner)
        raise OwnerMismatchError("changed again")

    with pytest.raises(ConcurrentChange):
        write_as(scope_for(manager), api_store, "c", always_refused)
    assert len(attempts) == 1 + ATTEMPTS
    stored = api_store.load("c")
    assert stored is not None and stored.metadata.owner == "someone"
