"""Who may do what: every endpoint, as anonymous, the owner, strangers and permission holders.

A user who neither owns a conversation nor holds the cross-owner permission
for the kind of access (``view_conversation``/``change_conversation`` to read,
``change_conversation`` to write, ``delete_conversation`` to delete) gets
exactly the answer a missing conversation gets (404, same body) and changes
nothing; being staff grants nothing; anonymous requests are refused; a wrong
Basic password answers 401 with a challenge.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import override_settings
from rest_framework.authentication import BasicAuthentication, SessionAuthentication
from rest_framework.test import APIClient, APIRequestFactory, force_authenticate

from django_convstore.api.permissions import OwnerScope
from django_convstore.api.views import ConversationViewSet
from django_convstore.backends.base import BaseStore
from tests.fixtures.api import PASSWORD

pytestmark = pytest.mark.django_db

BASE = "/api/conversations/"
USER = {"role": "user", "content": "hi"}

#: The app permissions each role holds (besides the owner, who needs none for their own).
ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "owner": (),
    "other": (),
    "staff": (),
    "viewer": ("view_conversation",),
    "changer": ("change_conversation",),
    "deleter": ("delete_conversation",),
    "superuser": (),
}
#: Which permissions grant each kind of cross-owner access.
GRANTS = {
    "view": {"view_conversation", "change_conversation"},
    "change": {"change_conversation"},
    "delete": {"delete_conversation"},
}
ROLES = ["anonymous", *ROLE_PERMISSIONS]


@dataclass(frozen=True)
class Endpoint:
    """One request: its access kind and its status for someone allowed to make it."""

    name: str
    method: str
    path: str
    body: Any
    access: str  # view / change / delete, or "any" for requests on no particular conversation
    success: int

    def call(self, client: APIClient) -> Any:
        """Send this request with ``client``."""
        return getattr(client, self.method)(self.path, self.body, format="json")

    def expected(self, role: str) -> int:
        """The status ``role`` gets for this request on the owner's conversation ``c``."""
        if self.access == "any" or role == "superuser":
            return self.success
        if self.access == "stats":
            return self.success if GRANTS["view"] & set(ROLE_PERMISSIONS[role]) else 403
        if role == "owner":
            return self.success
        return self.success if GRANTS[self.access] & set(ROLE_PERMISSIONS[role]) else 404


ENDPOINTS = [
    Endpoint("list", "get", BASE, None, "any", 200),
    Endpoint("create", "post", BASE, {"messages": [USER]}, "any", 201),
    Endpoint(
        "create-taken-id", "post", BASE, {"conversation_id": "c", "messages": []}, "any", 409
    ),
    Endpoint("retrieve", "get", f"{BASE}c/", None, "view", 200),
    Endpoint("retrieve-last", "get", f"{BASE}c/?last=1", None, "view", 200),
    Endpoint("messages", "get", f"{BASE}c/messages/", None, "view", 200),
    Endpoint("ttl", "get", f"{BASE}c/ttl/", None, "view", 200),
    Endpoint("update", "put", f"{BASE}c/", {"messages": [USER]}, "change", 200),
    Endpoint("partial-update", "patch", f"{BASE}c/", {"metadata": {"x": 1}}, "change", 200),
    Endpoint("partial-update-ttl", "patch", f"{BASE}c/", {"ttl": 5}, "change", 200),
    Endpoint("append", "post", f"{BASE}c/messages/", {"messages": [USER]}, "change", 201),
    Endpoint("append-one", "post", f"{BASE}c/messages/", USER, "change", 201),
    Endpoint("set-ttl", "put", f"{BASE}c/ttl/", {"ttl": 9}, "change", 200),
    Endpoint("pop", "post", f"{BASE}c/pop/", {}, "change", 200),
    Endpoint("truncate", "post", f"{BASE}c/truncate/", {"keep": 0}, "change", 200),
    Endpoint("destroy", "delete", f"{BASE}c/", None, "delete", 204),
    Endpoint("stats", "get", f"{BASE}stats/", None, "stats", 200),
]


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
def clients(client_for: Any, make_user: Any, owner: Any, other: Any) -> dict[str, APIClient]:
    """An APIClient per role."""
    users = {
        "owner": owner,
        "other": other,
        "staff": make_user("staffer", is_staff=True),
        "superuser": make_user("root", is_staff=True, is_superuser=True),
    }
    for role in ("viewer", "changer", "deleter"):
        users[role] = make_user(role, perms=ROLE_PERMISSIONS[role])
    return {"anonymous": client_for(None), **{role: client_for(u) for role, u in users.items()}}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e.name for e in ENDPOINTS])
def test_authorization_matrix(
    api_store: BaseStore,
    alices_conversation: dict[str, Any],
    clients: dict[str, APIClient],
    owner: Any,
    endpoint: Endpoint,
    role: str,
) -> None:
    response = endpoint.call(clients[role])

    if role == "anonymous":
        assert response.status_code in (401, 403)
        assert "detail" in response.json()
    else:
        assert response.status_code == endpoint.expected(role), response.content
    stored = api_store.load("c", include_expired=True)
    if response.status_code >= 400:
        body = response.content.decode()
        assert "private" not in body and "alice's" not in body
        assert stored is not None and stored.to_dict() == alices_conversation
    elif stored is not None:
        assert stored.metadata.owner == str(owner.pk)  # nobody else's writes move it
    if response.status_code == 404:
        missing = clients[role].get(f"{BASE}no-such-id/")
        assert missing.status_code == 404
        assert response.json() == missing.json()


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("owner", ["c"]),
        ("other", []),
        ("staff", []),
        ("viewer", ["c", "ownerless"]),
        ("changer", ["c", "ownerless"]),
        ("deleter", []),
        ("superuser", ["c", "ownerless"]),
    ],
)
def test_listings_show_own_conversations_or_with_view_permission_all(
    api_store: BaseStore,
    alices_conversation: dict[str, Any],
    clients: dict[str, APIClient],
    role: str,
    expected: list[str],
) -> None:
    api_store.save("ownerless", [])

    def ids(**params: Any) -> list[str]:
        body = clients[role].get(BASE, params).json()
        return sorted(item["conversation_id"] for item in body["results"])

    assert ids() == expected
    assert ids(prefix="c") == [cid for cid in expected if cid.startswith("c")]


def test_conversations_belong_to_whoever_created_them(
    api_store: BaseStore, client_for: Any, other: Any, manager: Any, owner: Any
) -> None:
    by_other = client_for(other).post(BASE, {"messages": []}, format="json").json()
    by_manager = client_for(manager).put(f"{BASE}mgr/", {"messages": []}, format="json").json()
    appended = client_for(manager).post(f"{BASE}new/messages/", USER, format="json").json()

    assert by_other["metadata"]["owner"] == str(other.pk)
    assert by_manager["metadata"]["owner"] == str(manager.pk)
    assert appended["owner"] == str(manager.pk)
    alice = client_for(owner)
    assert alice.get(f"{BASE}{by_other['conversation_id']}/").status_code == 404
    assert alice.get(f"{BASE}mgr/").status_code == 404
    assert client_for(manager).get(f"{BASE}{by_other['conversation_id']}/").status_code == 200


def test_permitted_writes_keep_the_owner(
    api_store: BaseStore, alices_conversation: dict[str, Any], client_for: Any, manager: Any
) -> None:
    client = client_for(manager)
    owner = alices_conversation["metadata"]["owner"]

    replaced = client.put(
        f"{BASE}c/", {"messages": [USER], "metadata": {"by": "mgr"}}, format="json"
    )
    appended = client.post(f"{BASE}c/messages/", {**USER, "id": "m2"}, format="json")

    assert replaced.status_code == 200 and replaced.json()["metadata"]["owner"] == owner
    assert appended.status_code == 201 and appended.json()["owner"] == owner
    stored = api_store.load("c")
    assert stored is not None and stored.metadata.owner == owner
    assert stored.metadata.metadata == {"secret": "alice's", "by": "mgr"}
    assert stored.metadata.message_count == 2


def test_ownerless_conversations_need_the_permissions(
    api_store: BaseStore, client_for: Any, owner: Any, manager: Any
) -> None:
    api_store.save("ownerless", [USER])
    alice, boss = client_for(owner), client_for(manager)

    assert alice.get(f"{BASE}ownerless/").status_code == 404
    assert alice.put(f"{BASE}ownerless/", {"messages": []}, format="json").status_code == 404
    assert alice.post(f"{BASE}ownerless/messages/", USER, format="json").status_code == 404
    assert boss.get(f"{BASE}ownerless/").status_code == 200
    assert (
        boss.post(f"{BASE}ownerless/messages/", {**USER, "id": "x"}, format="json").json()["owner"]
        is None
    )
    stored = api_store.load("ownerless")
    assert stored is not None and stored.metadata.owner is None
    assert stored.metadata.message_count == 2


def test_put_by_a_stranger_never_takes_over(
    api_store: BaseStore, alices_conversation: dict[str, Any], client_for: Any, other: Any
) -> None:
    stranger = client_for(other)
    assert stranger.put(f"{BASE}c/", {"messages": [USER]}, format="json").status_code == 404
    assert stranger.post(f"{BASE}c/messages/", USER, format="json").status_code == 404
    stored = api_store.load("c")
    assert stored is not None and stored.to_dict() == alices_conversation


# -- authentication -------------------------------------------------------------------------


def basic(username: str, password: str) -> str:
    """An HTTP Basic ``Authorization`` header value."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def test_http_basic_authentication(api_store: BaseStore, owner: Any) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic("alice", PASSWORD))
    assert client.post(BASE, {"messages": [USER]}, format="json").status_code == 201


@pytest.mark.parametrize(
    "credentials",
    [basic("alice", "wrong"), basic("nobody", PASSWORD), "Basic !!!not-base64", "Basic"],
    ids=["wrong-password", "unknown-user", "garbled", "empty"],
)
def test_bad_basic_credentials_answer_401_with_a_challenge(
    api_store: BaseStore, owner: Any, credentials: str
) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=credentials)
    for response in (client.get(BASE), client.post(BASE, {"messages": []}, format="json")):
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == 'Basic realm="api"'
        assert "detail" in response.json()
    assert api_store.list() == []


def test_inactive_users_are_refused(api_store: BaseStore, owner: Any) -> None:
    owner.is_active = False
    owner.save()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic("alice", PASSWORD))
    response = client.get(BASE)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Basic realm="api"'


class BasicFirstViewSet(ConversationViewSet):
    authentication_classes = [BasicAuthentication, SessionAuthentication]


def test_anonymous_requests_keep_drf_s_answer(api_store: BaseStore) -> None:
    # DRF's defaults put session authentication first: 403, no challenge (no browser pop-up).
    response = APIClient().get(BASE)
    assert response.status_code == 403
    assert "WWW-Authenticate" not in response
    # With Basic first, DRF challenges anonymous requests too.
    view = BasicFirstViewSet.as_view({"get": "list"})
    challenged = view(APIRequestFactory().get(BASE))
    assert challenged.status_code == 401
    assert challenged["WWW-Authenticate"] == 'Basic realm="api"'


# -- replacing the scope ------------------------------------------------------------------


class SupportScope(OwnerScope):
    """Members of the "support" group act on every conversation."""

    def sees_everything(self) -> bool:
        return super().sees_everything() or self.user.groups.filter(name="support").exists()


def test_the_scope_class_setting_replaces_the_rules(
    api_store: BaseStore,
    alices_conversation: dict[str, Any],
    client_for: Any,
    owner: Any,
    other: Any,
) -> None:
    other.groups.add(Group.objects.create(name="support"))
    assert client_for(other).get(f"{BASE}c/").status_code == 404

    with override_settings(CONVSTORE_API_SCOPE_CLASS="tests.test_api_authorization.SupportScope"):
        assert client_for(other).get(f"{BASE}c/").status_code == 200
        assert client_for(other).get(f"{BASE}stats/").status_code == 200
        assert client_for(owner).get(f"{BASE}stats/").status_code == 403


@pytest.mark.parametrize(
    "path", ["tests.nowhere.Scope", "django_convstore.api.views.ConversationViewSet"]
)
def test_a_bad_scope_class_setting_answers_503(
    api_store: BaseStore, client_for: Any, owner: Any, path: str
) -> None:
    with override_settings(CONVSTORE_API_SCOPE_CLASS=path):
        response = client_for(owner).get(BASE)
    assert response.status_code == 503


class ReadOnlyForOthersScope(OwnerScope):
    """Everybody may read everything; writes stay the owner's (a subclass via ``scope_class``)."""

    def cross_owner(self, access: Any) -> bool:
        return access == "view" or super().cross_owner(access)


class OpenViewSet(ConversationViewSet):
    scope_class = ReadOnlyForOthersScope


def test_a_viewset_subclass_can_set_scope_class(
    api_store: BaseStore, alices_conversation: dict[str, Any], other: Any
) -> None:
    factory = APIRequestFactory()
    view = OpenViewSet.as_view({"get": "retrieve", "delete": "destroy"})

    request = factory.get(f"{BASE}c/")
    force_authenticate(request, user=other)
    assert view(request, conversation_id="c").status_code == 200

    request = factory.delete(f"{BASE}c/")
    force_authenticate(request, user=other)
    assert view(request, conversation_id="c").status_code == 404
    assert api_store.exists("c")
