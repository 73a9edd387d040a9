"""Who sees what: every endpoint, as anonymous, owner, another user and staff.

A non-staff user who is not the owner gets exactly the answer a missing
conversation gets (404, same body) and changes nothing; anonymous requests
are refused; staff see and change everything; stats are staff only.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import override_settings
from rest_framework.test import APIClient, APIRequestFactory, force_authenticate

from django_convstore.api.permissions import OwnerScope
from django_convstore.api.views import ConversationViewSet
from django_convstore.backends.base import BaseStore
from tests.fixtures.api import PASSWORD

pytestmark = pytest.mark.django_db

BASE = "/api/conversations/"
USER = {"role": "user", "content": "hi"}


@dataclass(frozen=True)
class Endpoint:
    """One request and the status each role gets."""

    name: str
    method: str
    path: str
    body: Any
    owner: int
    other: int
    staff: int

    def call(self, client: APIClient) -> Any:
        """Send this request with ``client``."""
        return getattr(client, self.method)(self.path, self.body, format="json")


ENDPOINTS = [
    Endpoint("list", "get", BASE, None, 200, 200, 200),
    Endpoint("create", "post", BASE, {"messages": [USER]}, 201, 201, 201),
    Endpoint(
        "create-taken-id", "post", BASE, {"conversation_id": "c", "messages": []}, 409, 409, 409
    ),
    Endpoint("retrieve", "get", f"{BASE}c/", None, 200, 404, 200),
    Endpoint("retrieve-last", "get", f"{BASE}c/?last=1", None, 200, 404, 200),
    Endpoint("update", "put", f"{BASE}c/", {"messages": [USER]}, 200, 404, 200),
    Endpoint("partial-update", "patch", f"{BASE}c/", {"metadata": {"x": 1}}, 200, 404, 200),
    Endpoint("partial-update-ttl", "patch", f"{BASE}c/", {"ttl": 5}, 200, 404, 200),
    Endpoint("destroy", "delete", f"{BASE}c/", None, 204, 404, 204),
    Endpoint("messages", "get", f"{BASE}c/messages/", None, 200, 404, 200),
    Endpoint("append", "post", f"{BASE}c/messages/", {"messages": [USER]}, 201, 404, 201),
    Endpoint("append-one", "post", f"{BASE}c/messages/", USER, 201, 404, 201),
    Endpoint("ttl", "get", f"{BASE}c/ttl/", None, 200, 404, 200),
    Endpoint("set-ttl", "put", f"{BASE}c/ttl/", {"ttl": 9}, 200, 404, 200),
    Endpoint("stats", "get", f"{BASE}stats/", None, 403, 403, 200),
]
ROLES = ["anonymous", "owner", "other", "staff"]


@pytest.fixture
def alices_conversation(api_store: BaseStore, owner: Any) -> dict[str, Any]:
    """Conversation ``c``, owned by the owner; returns its stored form."""
    saved = api_store.save(
        "c",
        [{"id": "m1", "role": "user", "content": "private"}],
        owner=str(owner.pk),
        metadata={"secret": "alice's"},
        ttl=1000,
    )
    return saved.to_dict()


@pytest.fixture
def clients(client_for: Any, owner: Any, other: Any, staff: Any) -> dict[str, APIClient]:
    """An APIClient per role."""
    return {
        "anonymous": client_for(None),
        "owner": client_for(owner),
        "other": client_for(other),
        "staff": client_for(staff),
    }


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e.name for e in ENDPOINTS])
def test_authorization_matrix(
    api_store: BaseStore,
    alices_conversation: dict[str, Any],
    clients: dict[str, APIClient],
    endpoint: Endpoint,
    role: str,
) -> None:
    response = endpoint.call(clients[role])

    if role == "anonymous":
        assert response.status_code in (401, 403)
        assert "detail" in response.json()
    else:
        assert response.status_code == getattr(endpoint, role), response.content
    if response.status_code >= 400:
        body = response.content.decode()
        assert "private" not in body and "alice's" not in body
        stored = api_store.load("c", include_expired=True)
        assert stored is not None and stored.to_dict() == alices_conversation
    if response.status_code == 404:
        missing = clients[role].get(f"{BASE}no-such-id/")
        assert missing.status_code == 404
        assert response.json() == missing.json()


def test_listings_are_scoped_to_the_owner(
    api_store: BaseStore, alices_conversation: dict[str, Any], clients: dict[str, APIClient]
) -> None:
    api_store.save("ownerless", [])

    def ids(role: str, **params: Any) -> list[str]:
        body = clients[role].get(BASE, params).json()
        return sorted(item["conversation_id"] for item in body["results"])

    assert ids("owner") == ["c"]
    assert ids("other") == []
    assert ids("other", prefix="c") == []
    assert ids("staff") == ["c", "ownerless"]


def test_conversations_belong_to_whoever_created_them(
    api_store: BaseStore, clients: dict[str, APIClient], other: Any, staff: Any
) -> None:
    by_other = clients["other"].post(BASE, {"messages": []}, format="json").json()
    by_staff = clients["staff"].put(f"{BASE}staffs/", {"messages": []}, format="json").json()

    assert by_other["metadata"]["owner"] == str(other.pk)
    assert by_staff["metadata"]["owner"] == str(staff.pk)
    assert clients["owner"].get(f"{BASE}{by_other['conversation_id']}/").status_code == 404
    assert clients["owner"].get(f"{BASE}staffs/").status_code == 404
    assert clients["staff"].get(f"{BASE}{by_other['conversation_id']}/").status_code == 200


def test_ownerless_conversations_are_staff_only(
    api_store: BaseStore, clients: dict[str, APIClient]
) -> None:
    api_store.save("ownerless", [USER])
    assert clients["owner"].get(f"{BASE}ownerless/").status_code == 404
    assert clients["staff"].get(f"{BASE}ownerless/").status_code == 200


def test_put_by_a_stranger_never_takes_over(
    api_store: BaseStore, alices_conversation: dict[str, Any], clients: dict[str, APIClient]
) -> None:
    response = clients["other"].put(f"{BASE}c/", {"messages": [USER]}, format="json")
    assert response.status_code == 404
    stored = api_store.load("c")
    assert stored is not None and stored.to_dict() == alices_conversation


def basic(username: str, password: str) -> str:
    """An HTTP Basic ``Authorization`` header value."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def test_http_basic_authentication(api_store: BaseStore, owner: Any) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic("alice", PASSWORD))
    assert client.post(BASE, {"messages": [USER]}, format="json").status_code == 201

    client.credentials(HTTP_AUTHORIZATION=basic("alice", "wrong"))
    assert client.get(BASE).status_code in (401, 403)


def test_inactive_users_are_refused(api_store: BaseStore, owner: Any) -> None:
    owner.is_active = False
    owner.save()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic("alice", PASSWORD))
    assert client.get(BASE).status_code in (401, 403)


# -- replacing the scope ------------------------------------------------------------------


class SupportScope(OwnerScope):
    """Members of the "support" group see every conversation."""

    def sees_everything(self) -> bool:
        return super().sees_everything() or self.user.groups.filter(name="support").exists()


def test_the_scope_class_setting_replaces_the_rules(
    api_store: BaseStore,
    alices_conversation: dict[str, Any],
    clients: dict[str, APIClient],
    other: Any,
) -> None:
    other.groups.add(Group.objects.create(name="support"))
    assert clients["other"].get(f"{BASE}c/").status_code == 404

    with override_settings(CONVSTORE_API_SCOPE_CLASS="tests.test_api_authorization.SupportScope"):
        assert clients["other"].get(f"{BASE}c/").status_code == 200
        assert clients["other"].get(f"{BASE}stats/").status_code == 200
        assert clients["owner"].get(f"{BASE}stats/").status_code == 403


@pytest.mark.parametrize(
    "path", ["tests.nowhere.Scope", "django_convstore.api.views.ConversationViewSet"]
)
def test_a_bad_scope_class_setting_answers_503(
    api_store: BaseStore, clients: dict[str, APIClient], path: str
) -> None:
    with override_settings(CONVSTORE_API_SCOPE_CLASS=path):
        response = clients["owner"].get(BASE)
    assert response.status_code == 503


class ReadOnlyForOthersScope(OwnerScope):
    """Everybody may read everything (a subclass wired through ``scope_class``)."""

    def allows(self, metadata: Any) -> bool:
        return self.request.method == "GET" or super().allows(metadata)


class OpenViewSet(ConversationViewSet):
    scope_class = ReadOnlyForOthersScope


def test_a_viewset_subclass_can_set_scope_class(
    api_store: BaseStore, alices_conversation: dict[str, Any], other: Any
) -> None:
    factory = APIRequestFactory()
    retrieve = OpenViewSet.as_view({"get": "retrieve", "delete": "destroy"})

    request = factory.get(f"{BASE}c/")
    force_authenticate(request, user=other)
    assert retrieve(request, conversation_id="c").status_code == 200

    request = factory.delete(f"{BASE}c/")
    force_authenticate(request, user=other)
    assert retrieve(request, conversation_id="c").status_code == 404
    assert api_store.exists("c")
