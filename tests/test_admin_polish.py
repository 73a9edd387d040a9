"""Admin polish: owners shown as users, titles, plurals, clipped ids with an ellipsis."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission
from django.test import Client, override_settings
from django.urls import path, reverse

from django_convstore import stores
from django_convstore.admin import ConversationAdmin
from django_convstore.admin.display import OwnerDisplay
from django_convstore.backends.base import BaseStore
from django_convstore.models import Conversation

pytestmark = pytest.mark.django_db

MEMORY = {"BACKEND": "django_convstore.backends.memory.MemoryStore", "LOCATION": "admin-polish"}
LIST = reverse("admin:django_convstore_conversation_changelist")


@pytest.fixture
def store() -> Iterator[BaseStore]:
    """An empty memory store as the only configured store."""
    with override_settings(CONVSTORE={"default": MEMORY}):
        yield stores["default"]
        stores["default"].clear()


@pytest.fixture
def root(client: Client, django_user_model: Any) -> Any:
    """A logged-in superuser."""
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return user


def cell(page: str, cid: str, field: str) -> str:
    """The HTML of one cell of the changelist row of ``cid``."""
    rows = re.findall(r"<tr>(.*?)</tr>", page, re.S)
    (row,) = [r for r in rows if re.search(rf'class="field-id"><a [^>]*>{re.escape(cid[:47])}', r)]
    match = re.search(rf'<t[dh][^>]* class="field-{field}[^"]*"[^>]*>(.*?)</t[dh]>', row, re.S)
    assert match, (cid, field, row)
    return match.group(0)


def test_owners_show_as_users_linked_to_the_user_admin(
    client: Client, store: BaseStore, root: Any, django_user_model: Any
) -> None:
    alice = django_user_model.objects.create_user("alice")
    store.save("hers", [], owner=str(alice.pk))
    store.save("nobodys", [], owner="ext:42")
    store.save("ownerless", [])

    page = client.get(LIST).content.decode()

    user_url = reverse("admin:auth_user_change", args=[quote(alice.pk)])
    hers = cell(page, "hers", "owner")
    assert (
        f'<a href="{user_url}" class="convstore-owner" title="owner value: {alice.pk}">alice</a>'
        in hers
    )
    assert f'href="?owner={alice.pk}"' in hers  # and still filterable
    raw = cell(page, "nobodys", "owner")
    assert 'title="owner value: ext:42">ext:42</span>' in raw and "auth/user" not in raw
    assert '<span class="quiet">—</span>' in cell(page, "ownerless", "owner")

    detail = client.get(reverse("admin:django_convstore_conversation_change", args=["hers"]))
    assert f'<a href="{user_url}" class="convstore-owner"' in detail.content.decode()


def test_viewers_who_may_not_see_users_get_the_name_without_a_link(
    client: Client, store: BaseStore, django_user_model: Any
) -> None:
    alice = django_user_model.objects.create_user("alice")
    viewer = django_user_model.objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_conversation"))
    client.force_login(viewer)
    store.save("hers", [], owner=str(alice.pk))

    owner = cell(client.get(LIST).content.decode(), "hers", "owner")

    assert f'title="owner value: {alice.pk}">alice</span>' in owner
    assert "auth/user" not in owner


def test_a_title_column_appears_when_conversations_have_titles(
    client: Client, store: BaseStore, root: Any
) -> None:
    store.save("plain", [])
    assert "field-title" not in client.get(LIST).content.decode()

    store.save("titled", [], metadata={"title": "Trip to <Paris>"})
    store.save("long-title", [], metadata={"title": "T" * 80})
    store.save("odd-title", [], metadata={"title": 42})
    page = client.get(LIST).content.decode()

    assert ">Title<" in page
    assert ">Trip to &lt;Paris&gt;</td>" in cell(page, "titled", "title")
    long = cell(page, "long-title", "title")
    assert f'title="{"T" * 80}"' in long and f">{'T' * 59}…</td>" in long
    assert "></td>" in cell(page, "odd-title", "title")
    assert "></td>" in cell(page, "plain", "title")


def test_long_ids_are_clipped_with_an_ellipsis_and_shown_whole_on_hover(
    client: Client, store: BaseStore, root: Any
) -> None:
    long_id = "support-" + "x" * 100
    store.save(long_id, [])
    store.save("short", [])

    page = client.get(LIST).content.decode()

    clipped = cell(page, long_id, "id")
    assert f'title="{long_id}">{long_id[:47]}…</a>' in clipped
    assert '">short</a>' in cell(page, "short", "id")


@pytest.mark.parametrize(
    ("conversations", "messages", "expected"),
    [
        (1, 1, ["1 conversation", "1 message"]),
        (2, 3, ["2 conversations", "3 messages"]),
        (1, 0, ["1 conversation", "0 messages"]),
    ],
)
def test_counts_read_in_the_singular_and_plural(
    client: Client,
    store: BaseStore,
    root: Any,
    conversations: int,
    messages: int,
    expected: list[str],
) -> None:
    for i in range(conversations):
        count = messages if i == 0 else 0
        store.save(f"c{i}", [{"role": "user", "content": "x"} for _ in range(count)])

    page = html.unescape(client.get(LIST).content.decode())
    stats = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page[page.index("convstore-stats") :]))

    for words in expected:
        assert re.search(rf"\b{words}\b", stats), (words, stats[:300])
    assert "1 messages" not in stats and "1 conversations" not in stats


class TeamOwnersAdmin(ConversationAdmin):
    """Owners that are team ids, shown with their team name."""

    def owner_displays(self, request: Any, owners: list[str | None]) -> dict[str, OwnerDisplay]:
        return {o: OwnerDisplay(o, f"Team {o.upper()}", "/teams/" + o) for o in owners if o}


team_site = admin.AdminSite(name="teamadmin")
team_site.register(Conversation, TeamOwnersAdmin)
urlpatterns = [path("team-admin/", team_site.urls)]


@override_settings(ROOT_URLCONF=__name__)
def test_projects_can_show_owners_from_elsewhere(
    client: Client, store: BaseStore, root: Any
) -> None:
    store.save("t", [], owner="blue")
    page = client.get("/team-admin/django_convstore/conversation/").content.decode()
    assert (
        '<a href="/teams/blue" class="convstore-owner" title="owner value: blue">Team BLUE</a>'
        in page
    )
