"""The admin's Conversations section through Django's test client, on every backend.

Every view is exercised for every kind of user (superuser, staff with each
permission, staff without, non-staff, anonymous). Conversations are written
with the store API and checked with it: the admin never touches the ORM for
them.
"""

from __future__ import annotations

import contextlib
import html
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.test import Client, override_settings
from django.urls import reverse

from django_convstore import stores
from django_convstore.admin import ConversationAdmin
from django_convstore.admin.rendering import role_classes
from django_convstore.admin.transcript import load_transcript_window
from django_convstore.backends.base import BaseStore
from django_convstore.backends.memory import MemoryStore
from django_convstore.clock import now_ms
from django_convstore.exceptions import BackendUnavailableError
from django_convstore.models import Conversation as ConversationAnchor

pytestmark = pytest.mark.django_db

ADMIN_BACKENDS = [
    "memory",
    "redis",
    "zerodb",
    # the database store writes through its own database alias, from the view's thread
    pytest.param(
        "database", marks=pytest.mark.django_db(transaction=True, databases=["default", "sqlite"])
    ),
]
WEIRD_IDS = [
    "a/b/c",
    "with space",
    "ünïcødé-会话-💬",
    "100%_sure",
    "a_2Fb",
    "q?x=1&y=2#frag",
    " leading and trailing ",
    "semi;colon:at@plus+",
    "..",
    'quote"and<angle>',
    "curly{brace}",
]

StoreFactory = Callable[..., dict[str, BaseStore]]


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(params=ADMIN_BACKENDS)
def backend_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The configuration of the backend under test."""
    config: dict[str, Any] = request.getfixturevalue(f"{request.param}_store_config")
    return dict(config)


@pytest.fixture
def configure_stores(backend_config: dict[str, Any]) -> Iterator[StoreFactory]:
    """``configure_stores("default", "archive")`` sets ``CONVSTORE`` to empty stores."""
    active: list[tuple[Any, list[str]]] = []

    def configure(*aliases: str, **extra: dict[str, Any]) -> dict[str, BaseStore]:
        aliases = aliases or ("default",)
        setting = {
            alias: {**backend_config, "NAMESPACE": f"adm{uuid.uuid4().hex[:10]}"}
            for alias in aliases
        }
        setting.update(extra)
        override = override_settings(CONVSTORE=setting)
        override.enable()
        active.append((override, list(setting)))
        return {alias: stores[alias] for alias in aliases}

    yield configure
    for override, aliases in reversed(active):
        for alias in aliases:
            with contextlib.suppress(Exception):  # a deliberately broken store cannot clear
                stores[alias].clear()
        override.disable()


@pytest.fixture
def conv_store(configure_stores: StoreFactory) -> BaseStore:
    """The only configured store (alias ``default``) of the backend under test."""
    return configure_stores()["default"]


@pytest.fixture
def login(client: Client, django_user_model: Any) -> Callable[..., Any]:
    """``login("view_conversation", ...)`` logs a fresh user with those permissions in."""

    def log_in(*codenames: str, is_staff: bool = True, is_superuser: bool = False) -> Any:
        user = django_user_model.objects.create_user(
            username=f"u{uuid.uuid4().hex[:8]}",
            password=None,
            is_staff=is_staff,
            is_superuser=is_superuser,
        )
        perms = Permission.objects.filter(
            content_type__app_label="django_convstore", codename__in=codenames
        )
        assert perms.count() == len(codenames)
        user.user_permissions.add(*perms)
        client.force_login(user)
        return user

    return log_in


@pytest.fixture
def superuser(login: Callable[..., Any]) -> Any:
    return login(is_superuser=True)


# -- helpers --------------------------------------------------------------------------------------


def url(name: str, *ids: str, **params: Any) -> str:
    path = reverse(f"admin:django_convstore_conversation_{name}", args=[quote(i) for i in ids])
    return path + (f"?{urlencode(params)}" if params else "")


def seed(
    target: BaseStore,
    cid: str,
    count: int = 2,
    *,
    age: int = 0,
    owner: str | None = None,
    ttl: int | None = None,
    metadata: dict[str, Any] | None = None,
    roles: tuple[str, ...] = ("user", "assistant"),
) -> None:
    """Write a conversation whose ``updated_at`` is ``age`` seconds ago."""
    updated = now_ms() - age * 1000
    messages = [
        {
            "id": f"m{i}",
            "role": roles[i % len(roles)],
            "content": f"message {i + 1} of {cid}",
            "timestamp": updated - (count - i) * 1000,
        }
        for i in range(count)
    ]
    target.put(
        {
            "conversation_id": cid,
            "messages": messages,
            "metadata": {
                "conversation_id": cid,
                "created_at": updated - 3_600_000,
                "updated_at": updated,
                "message_count": count,
                "ttl": ttl,
                "owner": owner,
                "metadata": metadata or {},
            },
        }
    )


def text(response: Any) -> str:
    return html.unescape(response.content.decode())


def hrefs(response: Any) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="([^"]*)"', response.content.decode())]


def row_ids(response: Any) -> list[str]:
    """The conversation ids of the changelist rows, in order."""
    found = re.findall(
        r'<th scope="row" class="field-id"><a href="[^"]*"(?: title="[^"]*")?>(.*?)</a>',
        response.content.decode(),
    )
    return [html.unescape(cid) for cid in found]


def log_entries(cid: str | None = None) -> list[LogEntry]:
    content_type = ContentType.objects.get_for_model(ConversationAnchor)
    entries = LogEntry.objects.filter(content_type=content_type)
    if cid is not None:
        entries = entries.filter(object_id=cid)
    return list(entries.order_by("pk"))


# -- permissions ----------------------------------------------------------------------------------

VIEWS = ["changelist", "change", "delete", "history"]


def _view_url(view: str) -> str:
    return url(view) if view == "changelist" else url(view, "perm-check")


@pytest.mark.parametrize("view", VIEWS)
def test_anonymous_is_sent_to_the_login_page(client: Client, conv_store: BaseStore, view: str):
    seed(conv_store, "perm-check")
    response = client.get(_view_url(view))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize("view", VIEWS)
def test_non_staff_is_sent_to_the_login_page_even_with_permissions(
    client: Client, conv_store: BaseStore, login: Callable[..., Any], view: str
):
    seed(conv_store, "perm-check")
    login("view_conversation", "change_conversation", "delete_conversation", is_staff=False)
    response = client.get(_view_url(view))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize("view", VIEWS)
def test_staff_without_permissions_get_403(
    client: Client, conv_store: BaseStore, login: Callable[..., Any], view: str
):
    seed(conv_store, "perm-check")
    login()
    assert client.get(_view_url(view)).status_code == 403
    assert client.post(_view_url(view), {"post": "yes", "ttl": "5"}).status_code == 403
    assert conv_store.exists("perm-check")
    assert conv_store.get_ttl("perm-check") == -1


@pytest.mark.parametrize(
    ("codenames", "expected"),
    [
        (
            ("view_conversation",),
            {"changelist": 200, "change": 200, "delete": 403, "history": 200},
        ),
        (
            ("change_conversation",),
            {"changelist": 200, "change": 200, "delete": 403, "history": 200},
        ),
        (
            ("delete_conversation",),
            {"changelist": 403, "change": 403, "delete": 200, "history": 403},
        ),
    ],
)
def test_each_permission_opens_its_views(
    client: Client,
    conv_store: BaseStore,
    login: Callable[..., Any],
    codenames: tuple[str, ...],
    expected: dict[str, int],
):
    seed(conv_store, "perm-check")
    login(*codenames)
    assert {view: client.get(_view_url(view)).status_code for view in VIEWS} == expected


def test_admin_index_shows_the_section_to_viewers_only(
    client: Client, conv_store: BaseStore, login: Callable[..., Any]
):
    login("view_conversation")
    response = client.get(reverse("admin:index"))
    assert response.status_code == 200
    assert url("changelist") in hrefs(response)
    assert "Conversations" in text(response)
    assert not any("conversation/add" in h for h in hrefs(response))
    login()
    assert url("changelist") not in hrefs(client.get(reverse("admin:index")))


def test_view_permission_shows_no_ttl_form_delete_link_or_checkboxes(
    client: Client, conv_store: BaseStore, login: Callable[..., Any]
):
    seed(conv_store, "read-only")
    login("view_conversation")
    listing = client.get(url("changelist"))
    assert row_ids(listing) == ["read-only"]
    assert "_selected_action" not in text(listing)
    assert 'name="action"' not in text(listing)
    detail = client.get(url("change", "read-only"))
    assert "convstore-ttl-form" not in text(detail)
    assert url("delete", "read-only") not in hrefs(detail)
    post = client.post(url("changelist"), {"action": "delete_selected", "_selected_action": "x"})
    assert post.status_code == 403


def test_change_permission_shows_the_ttl_form_but_no_delete(
    client: Client, conv_store: BaseStore, login: Callable[..., Any]
):
    seed(conv_store, "retime-me")
    login("change_conversation")
    detail = client.get(url("change", "retime-me"))
    assert "convstore-ttl-form" in text(detail)
    assert url("delete", "retime-me") not in hrefs(detail)
    assert client.post(url("delete", "retime-me"), {"post": "yes"}).status_code == 403
    assert conv_store.exists("retime-me")


def test_delete_permission_alone_can_delete(
    client: Client, conv_store: BaseStore, login: Callable[..., Any]
):
    seed(conv_store, "doomed")
    login("delete_conversation")
    response = client.post(url("delete", "doomed"), {"post": "yes"})
    assert response.status_code == 302
    assert not conv_store.exists("doomed")


def test_superuser_sees_everything(client: Client, conv_store: BaseStore, superuser: Any):
    seed(conv_store, "all-powerful")
    listing = client.get(url("changelist"))
    assert 'value="all-powerful"' in listing.content.decode()
    detail = client.get(url("change", "all-powerful"))
    assert "convstore-ttl-form" in text(detail)
    assert url("delete", "all-powerful") in hrefs(detail)
    assert url("history", "all-powerful") in hrefs(detail)


# -- changelist -----------------------------------------------------------------------------------


def test_changelist_lists_newest_first_with_every_column(
    client: Client, conv_store: BaseStore, superuser: Any
):
    seed(conv_store, "oldest", 1, age=300, owner="17", ttl=7200)
    seed(conv_store, "middle", 3, age=200)
    seed(conv_store, "newest", 5, age=100, owner="42", ttl=86_400)
    response = client.get(url("changelist"))
    assert response.status_code == 200
    assert row_ids(response) == ["newest", "middle", "oldest"]
    page = response.content.decode()
    row = page[page.index(">newest<") :]
    row = row[: row.index("</tr>")]
    # Owner "42" is no user here: the raw value, and a filter link.
    assert re.search(
        r'class="field-owner"><span class="convstore-owner[^"]*" title="owner value: 42">42'
        r'</span> <a href="\?owner=42"',
        row,
    )
    assert '<td class="field-messages convstore-num">5</td>' in row
    assert 'class="field-created' in row and 'class="field-updated' in row
    assert re.search(r'class="field-expires nowrap"[^>]*>(23|24)\xa0hours', html.unescape(row))
    middle = page[page.index(">middle<") :]
    assert re.search(r'field-expires nowrap">never<', middle[: middle.index("</tr>")])
    for header in ("Conversation id", "Owner", "Messages", "Created", "Updated", "Expires in"):
        assert header in page


def test_changelist_shows_store_stats(client: Client, conv_store: BaseStore, superuser: Any):
    seed(conv_store, "one", 2)
    seed(conv_store, "two", 3)
    seed(conv_store, "gone", 4, age=120, ttl=60)  # already expired
    response = client.get(url("changelist"))
    stats = conv_store.get_stats()
    assert stats.total_conversations == 2
    page = text(response)
    section = page[page.index('class="convstore-stats"') : page.index("</section>")]
    values = re.findall(r'convstore-stat-value">([^<]*)<', section)
    assert values[0] == "2" and values[1] == "5"
    if stats.expired_conversations is not None:
        assert str(stats.expired_conversations) in values
        assert "expired, awaiting cleanup" in section
    assert row_ids(response) == ["one", "two"] or row_ids(response) == ["two", "one"]


def test_changelist_is_paginated(
    client: Client, conv_store: BaseStore, superuser: Any, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(ConversationAdmin, "list_per_page", 10)
    for index in range(25):
        seed(conv_store, f"conv-{index:02d}", 1, age=1000 - index)
    first = client.get(url("changelist"))
    assert row_ids(first) == [f"conv-{i:02d}" for i in range(24, 14, -1)]
    assert "?p=2" in hrefs(first) and "?p=3" in hrefs(first)
    assert "25 conversations" in text(first)
    third = client.get(url("changelist", p=3))
    assert row_ids(third) == [f"conv-{i:02d}" for i in range(4, -1, -1)]
    assert row_ids(client.get(url("changelist", p=99))) == row_ids(third)
    assert row_ids(client.get(url("changelist", p="nonsense"))) == row_ids(first)
    assert row_ids(client.get(url("changelist", p=0))) == row_ids(first)


def test_search_by_id_prefix_and_owner(
    client: Client, conv_store: BaseStore, superuser: Any, monkeypatch: pytest.MonkeyPatch
):
    seed(conv_store, "support-1", owner="alice", age=30)
    seed(conv_store, "support-2", owner="bob", age=20)
    seed(conv_store, "sales-1", owner="alice", age=10)
    assert row_ids(client.get(url("changelist", q="support-"))) == ["support-2", "support-1"]
    assert row_ids(client.get(url("changelist", owner="alice"))) == ["sales-1", "support-1"]
    both = client.get(url("changelist", q="sup", owner="alice"))
    assert row_ids(both) == ["support-1"]
    assert "1 result" in text(both)
    assert 'value="sup"' in both.content.decode()
    none = client.get(url("changelist", q="zzz"))
    assert row_ids(none) == []
    assert "No conversation matches this search." in text(none)

    monkeypatch.setattr(ConversationAdmin, "list_per_page", 1)
    paged = client.get(url("changelist", q="support-"))
    assert f"?{urlencode({'q': 'support-', 'p': 2})}" in hrefs(paged)
    assert row_ids(client.get(url("changelist", q="support-", p=2))) == ["support-1"]


def test_invalid_search_input_is_reported_not_crashed(
    client: Client, conv_store: BaseStore, superuser: Any
):
    seed(conv_store, "any")
    too_long = client.get(url("changelist", q="x" * 300))
    assert too_long.status_code == 200
    assert "at most 255 characters" in text(too_long)
    control = client.get(url("changelist", owner="bad\x01owner"))
    assert control.status_code == 200
    assert "Invalid search" in text(control)


def test_store_selector_switches_and_keeps_the_store(
    client: Client, configure_stores: StoreFactory, superuser: Any
):
    configured = configure_stores("default", "archive")
    seed(configured["default"], "live-1")
    seed(configured["archive"], "old-1", owner="7")
    seed(configured["archive"], "old-2", age=5)

    default_page = client.get(url("changelist"))
    assert row_ids(default_page) == ["live-1"]
    assert 'class="convstore-stores"' in default_page.content.decode()
    assert url("changelist", store="default") in hrefs(default_page)
    assert url("changelist", store="archive") in hrefs(default_page)

    archive = client.get(url("changelist", store="archive"))
    assert row_ids(archive) == ["old-1", "old-2"]
    links = hrefs(archive)
    assert url("change", "old-1", store="archive") in links
    assert "?store=archive&owner=7" in links
    assert '<input type="hidden" name="store" value="archive">' in archive.content.decode()

    detail = client.get(url("change", "old-1", store="archive"))
    assert detail.status_code == 200
    assert url("delete", "old-1", store="archive") in hrefs(detail)
    assert url("changelist", store="archive") in hrefs(detail)
    assert 'action="{}"'.format(url("change", "old-1", store="archive").replace("&", "&amp;")) in (
        detail.content.decode()
    )
    # the id only exists in "archive": the default store says it is missing
    missing = client.get(url("change", "old-1"))
    assert missing.status_code == 302

    unknown = client.get(url("changelist", store="nope"))
    assert unknown.status_code == 200
    assert "There is no store “nope”; showing “default”." in text(unknown)
    assert row_ids(unknown) == ["live-1"]
    object_unknown = client.get(url("change", "live-1", store="nope"))
    assert object_unknown.status_code == 302
    assert object_unknown["Location"] == url("changelist", store="default")


def test_single_store_has_no_selector(client: Client, conv_store: BaseStore, superuser: Any):
    seed(conv_store, "only")
    response = client.get(url("changelist"))
    assert 'class="convstore-stores"' not in response.content.decode()
    assert url("change", "only") in hrefs(response)


# -- detail ---------------------------------------------------------------------------------------


def test_detail_shows_metadata_and_bubbles(client: Client, conv_store: BaseStore, superuser: Any):
    conv_store.save(
        "chat-1",
        [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi <script>alert(1)</script>\nsecond line"},
            {"role": "assistant", "content": "Hello!", "metadata": {"model": "gpt-x"}},
            {"role": "tool", "content": '{"temp": 21}'},
        ],
        ttl=3600,
        metadata={"channel": "web", "tags": ["a", "b"], "nested": {"z": 1, "a": "ü"}},
        owner="42",
    )
    response = client.get(url("change", "chat-1"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "Hi &lt;script&gt;alert(1)&lt;/script&gt;\nsecond line" in page
    roles = re.findall(r'<li class="convstore-msg convstore-role-(\w+)"', page)
    assert roles == ["system", "user", "assistant", "tool"]
    assert '"model": "gpt-x"' in html.unescape(page)
    custom = html.unescape(page[page.index('<pre class="convstore-json">') :])
    assert custom.startswith('<pre class="convstore-json">{\n  "channel": "web",\n  "nested": {')
    assert '"a": "ü"' in custom
    assert "Messages 1\u20134 of 4" in html.unescape(page)
    assert "3600 seconds (1\xa0hour)" in html.unescape(page)
    assert re.search(
        r'<dd><span class="convstore-owner[^"]*" title="owner value: 42">42</span>', page
    )
    assert "admin/css/forms.css" in page and "django_convstore/admin.css" in page


def test_detail_of_a_missing_conversation_redirects_with_a_message(
    client: Client, conv_store: BaseStore, superuser: Any
):
    response = client.get(url("change", "ghost"), follow=True)
    assert response.redirect_chain[0] == (url("changelist"), 302)
    assert "“ghost” does not exist" in text(response)
    seed(conv_store, "expired", age=120, ttl=60)
    assert client.get(url("change", "expired")).status_code == 302
    assert client.get(url("change", "x" * 300)).status_code == 302


def test_old_style_object_url_redirects_to_change(
    client: Client, conv_store: BaseStore, superuser: Any
):
    seed(conv_store, "a/b")
    response = client.get(reverse("admin:django_convstore_conversation_changelist") + "a_2Fb/")
    assert response.status_code == 302
    assert response["Location"] == url("change", "a/b")


def test_transcript_pages_load_windows(
    client: Client, conv_store: BaseStore, superuser: Any, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(ConversationAdmin, "messages_per_page", 10)
    seed(conv_store, "long", 25)
    calls: list[int | None] = []
    real_load = conv_store.load

    def recording_load(cid: str, *, include_expired: bool = False, last: int | None = None):
        calls.append(last)
        return real_load(cid, include_expired=include_expired, last=last)

    monkeypatch.setattr(conv_store, "load", recording_load)

    def positions(response: Any) -> list[int]:
        return [int(p) for p in re.findall(r'id="message-(\d+)"', response.content.decode())]

    newest = client.get(url("change", "long"))
    assert positions(newest) == list(range(16, 26))
    assert calls == [10]
    assert "Messages 16\u201325 of 25" in text(newest)
    older_link = url("change", "long", upto=15) + "#transcript"
    assert older_link in hrefs(newest)
    assert url("change", "long", upto=10) + "#transcript" in hrefs(newest)  # oldest
    assert "convstore-newer" not in newest.content.decode()

    calls.clear()
    older = client.get(url("change", "long", upto=15))
    assert positions(older) == list(range(6, 16))
    assert calls == [0, 20]
    assert url("change", "long", upto=25) + "#transcript" in hrefs(older)  # newer
    assert url("change", "long") + "#transcript" in hrefs(older)  # newest

    oldest = client.get(url("change", "long", upto=3))  # clamped to a full first page
    assert positions(oldest) == list(range(1, 11))
    assert "message 1 of long" in text(oldest)
    assert positions(client.get(url("change", "long", upto=999))) == list(range(16, 26))
    assert positions(client.get(url("change", "long", upto="x"))) == list(range(16, 26))


def test_transcript_window_keeps_positions_when_messages_are_appended(conv_store: BaseStore):
    seed(conv_store, "growing", 30)
    window = load_transcript_window(conv_store, "growing", upto=20, size=10)
    assert window is not None
    assert [row.position for row in window.rows] == list(range(11, 21))
    conv_store.append("growing", [{"role": "user", "content": "late"}])
    again = load_transcript_window(conv_store, "growing", upto=20, size=10)
    assert again is not None
    assert [row.text for row in again.rows] == [row.text for row in window.rows]
    latest = load_transcript_window(conv_store, "growing", upto=None, size=10)
    assert latest is not None and latest.total == 31
    assert [row.position for row in latest.rows] == list(range(22, 32))
    conv_store.save("blank", [])
    blank = load_transcript_window(conv_store, "blank", upto=5, size=10)
    assert blank is not None and blank.rows == [] and blank.total == 0


def test_unknown_roles_get_a_generic_bubble_style():
    assert role_classes("user") == "convstore-msg convstore-role-user"
    assert role_classes("Critic Bot") == (
        "convstore-msg convstore-role-critic-bot convstore-role-other"
    )
    assert role_classes("!!!").endswith("convstore-role-unknown convstore-role-other")


# -- weird ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize("cid", WEIRD_IDS)
def test_weird_ids_round_trip_through_every_view(
    client: Client, conv_store: BaseStore, superuser: Any, cid: str
):
    seed(conv_store, cid, 3)
    listing = client.get(url("changelist"))
    assert row_ids(listing) == [cid]
    change_link = next(h for h in hrefs(listing) if "/change/" in h)
    assert change_link == url("change", cid)

    detail = client.get(change_link)
    assert detail.status_code == 200
    assert f"message 3 of {cid}" in text(detail)

    ttl = client.post(change_link, {"ttl": "600"})
    assert ttl.status_code == 302 and ttl["Location"] == change_link
    assert 590 <= conv_store.get_ttl(cid) <= 600

    history = client.get(url("history", cid))
    assert history.status_code == 200 and "Changed the TTL" in text(history)
    assert log_entries(cid)[0].get_admin_url() == change_link

    delete_link = url("delete", cid)
    assert delete_link in hrefs(detail)
    assert client.get(delete_link).status_code == 200
    assert conv_store.exists(cid)
    deleted = client.post(delete_link, {"post": "yes"})
    assert deleted.status_code == 302
    assert not conv_store.exists(cid)
    assert [entry.object_id for entry in log_entries(cid)] == [cid, cid]


def test_weird_ids_in_bulk_delete(client: Client, conv_store: BaseStore, superuser: Any):
    for index, cid in enumerate(WEIRD_IDS):
        seed(conv_store, cid, age=index)
    response = client.post(
        url("changelist"),
        {"action": "delete_selected", "_selected_action": WEIRD_IDS, "post": "yes"},
    )
    assert response.status_code == 302
    assert conv_store.list() == []
    assert sorted(str(entry.object_id) for entry in log_entries()) == sorted(WEIRD_IDS)


# -- TTL ------------------------------------------------------------------------------------------


def test_ttl_change_updates_the_store_and_logs(
    client: Client, conv_store: BaseStore, login: Callable[..., Any]
):
    seed(conv_store, "timed", ttl=60)
    user = login("view_conversation", "change_conversation")
    response = client.post(url("change", "timed"), {"ttl": "7200"}, follow=True)
    assert response.redirect_chain == [(url("change", "timed"), 302)]
    assert "The TTL of “timed” is now 7200 seconds (2\xa0hours)." in text(response)
    assert 7190 <= conv_store.get_ttl("timed") <= 7200
    meta = conv_store.load("timed", last=0)
    assert meta is not None and meta.metadata.ttl == 7200
    [entry] = log_entries("timed")
    assert entry.action_flag == CHANGE
    assert entry.user_id == user.pk
    assert entry.object_repr == "timed"
    assert "from 60 seconds (1\xa0minute) to 7200 seconds (2\xa0hours)" in entry.change_message

    never = client.post(url("change", "timed"), {"ttl": "0"})
    assert never.status_code == 302
    assert conv_store.get_ttl("timed") == -1


@pytest.mark.parametrize("bad", ["-5", "abc", "", "99999999999"])
def test_invalid_ttl_is_rejected_in_the_form(
    client: Client, conv_store: BaseStore, superuser: Any, bad: str
):
    seed(conv_store, "steady", ttl=300)
    response = client.post(url("change", "steady"), {"ttl": bad})
    assert response.status_code == 200
    assert "Please correct the error below." in text(response)
    meta = conv_store.load("steady", last=0)
    assert meta is not None and meta.metadata.ttl == 300
    assert log_entries("steady") == []


def test_ttl_of_a_vanished_conversation_redirects(
    client: Client, conv_store: BaseStore, superuser: Any
):
    response = client.post(url("change", "vanished"), {"ttl": "60"}, follow=True)
    assert response.redirect_chain == [(url("changelist"), 302)]
    assert "does not exist" in text(response)
    assert log_entries() == []


# -- delete ---------------------------------------------------------------------------------------


def test_delete_confirms_on_get_and_deletes_on_post(
    client: Client, conv_store: BaseStore, login: Callable[..., Any]
):
    seed(conv_store, "to-delete", 7, owner="99")
    user = login("view_conversation", "delete_conversation")
    confirm = client.get(url("delete", "to-delete"))
    assert confirm.status_code == 200
    page = text(confirm)
    assert "Are you sure you want to delete the conversation “to-delete”" in page
    assert "7 messages" in page and "Owner: 99" in re.sub(r"<[^>]+>", "", page)
    assert 'name="csrfmiddlewaretoken"' in page
    assert conv_store.exists("to-delete")
    again = client.post(url("delete", "to-delete"))  # a POST without the confirmation field
    assert again.status_code == 200 and conv_store.exists("to-delete")

    done = client.post(url("delete", "to-delete"), {"post": "yes"}, follow=True)
    assert done.redirect_chain == [(url("changelist"), 302)]
    assert "The conversation “to-delete” was deleted successfully." in text(done)
    assert not conv_store.exists("to-delete")
    [entry] = log_entries("to-delete")
    assert entry.action_flag == DELETION
    assert entry.user_id == user.pk
    assert entry.content_type == ContentType.objects.get_for_model(ConversationAnchor)
    assert "default" in entry.change_message

    gone = client.post(url("delete", "to-delete"), {"post": "yes"})
    assert gone.status_code == 302
    assert len(log_entries("to-delete")) == 1
    assert client.get(url("delete", "to-delete")).status_code == 302


def test_delete_requires_csrf(conv_store: BaseStore, superuser: Any):
    seed(conv_store, "protected")
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(superuser)
    response = csrf_client.post(url("delete", "protected"), {"post": "yes"})
    assert response.status_code == 403
    assert conv_store.exists("protected")
    bulk = csrf_client.post(
        url("changelist"),
        {"action": "delete_selected", "_selected_action": ["protected"], "post": "yes"},
    )
    assert bulk.status_code == 403
    ttl = csrf_client.post(url("change", "protected"), {"ttl": "5"})
    assert ttl.status_code == 403
    assert conv_store.exists("protected") and conv_store.get_ttl("protected") == -1


def test_delete_keeps_the_selected_store(
    client: Client, configure_stores: StoreFactory, superuser: Any
):
    configured = configure_stores("default", "archive")
    seed(configured["default"], "same-id")
    seed(configured["archive"], "same-id")
    confirm = client.get(url("delete", "same-id", store="archive"))
    assert f'action="{url("delete", "same-id", store="archive")}"' in confirm.content.decode()
    response = client.post(url("delete", "same-id", store="archive"), {"post": "yes"})
    assert response["Location"] == url("changelist", store="archive")
    assert not configured["archive"].exists("same-id")
    assert configured["default"].exists("same-id")
    assert "archive" in log_entries("same-id")[0].change_message


def test_history_lists_log_entries_even_after_deletion(
    client: Client, conv_store: BaseStore, superuser: Any
):
    seed(conv_store, "audited")
    client.post(url("change", "audited"), {"ttl": "100"})
    client.post(url("delete", "audited"), {"post": "yes"})
    history = client.get(url("history", "audited"))
    assert history.status_code == 200
    page = text(history)
    assert "Changed the TTL" in page and "Deleted from the store “default”." in page
    assert superuser.get_username() in page
    assert client.get(url("history", "never-touched")).status_code == 200
    index = client.get(reverse("admin:index"))
    assert index.status_code == 200 and "audited" in text(index)


# -- bulk delete ----------------------------------------------------------------------------------


def test_bulk_delete_asks_then_deletes(client: Client, conv_store: BaseStore, superuser: Any):
    for index in range(4):
        seed(conv_store, f"bulk-{index}", age=index)
    listing = client.get(url("changelist"))
    page = listing.content.decode()
    assert 'value="delete_selected"' in page and 'class="action-select"' in page
    assert "admin/js/actions.js" in page

    chosen = ["bulk-1", "bulk-3"]
    confirm = client.post(
        url("changelist", q="bulk"), {"action": "delete_selected", "_selected_action": chosen}
    )
    assert confirm.status_code == 200
    body = text(confirm)
    assert "Are you sure you want to delete the 2 selected conversations" in body
    assert all(f'name="_selected_action" value="{cid}"' in body for cid in chosen)
    assert f'action="{url("changelist", q="bulk")}"' in body
    assert conv_store.exists("bulk-1") and conv_store.exists("bulk-3")

    done = client.post(
        url("changelist", q="bulk"),
        {"action": "delete_selected", "_selected_action": chosen, "post": "yes"},
        follow=True,
    )
    assert done.redirect_chain == [(url("changelist", q="bulk"), 302)]
    assert "Successfully deleted 2 conversations." in text(done)
    assert sorted(conv_store.list()) == ["bulk-0", "bulk-2"]
    entries = log_entries()
    assert sorted(str(entry.object_id) for entry in entries) == chosen
    assert {entry.action_flag for entry in entries} == {DELETION}


def test_bulk_delete_without_selection_or_action(
    client: Client, conv_store: BaseStore, superuser: Any
):
    seed(conv_store, "keep")
    nothing = client.post(url("changelist"), {"action": "delete_selected"}, follow=True)
    assert "Items must be selected" in text(nothing)
    no_action = client.post(url("changelist"), {"_selected_action": ["keep"]}, follow=True)
    assert "No action selected." in text(no_action)
    assert conv_store.exists("keep")


def test_bulk_delete_in_another_store(
    client: Client, configure_stores: StoreFactory, login: Callable[..., Any]
):
    configured = configure_stores("default", "archive")
    seed(configured["default"], "x")
    seed(configured["archive"], "x")
    login("view_conversation", "delete_conversation")
    response = client.post(
        url("changelist", store="archive"),
        {"action": "delete_selected", "_selected_action": ["x", "not-there"], "post": "yes"},
        follow=True,
    )
    assert "Successfully deleted 1 conversation." in text(response)
    assert configured["default"].exists("x") and not configured["archive"].exists("x")
    assert [entry.object_id for entry in log_entries()] == ["x"]


# -- backend failures -----------------------------------------------------------------------------


class UnreachableStore(MemoryStore):
    """Fault injection: every store call fails as an unreachable backend does.

    The memory backend cannot be made unreachable for real; the Redis leg
    below produces the same failure with a real refused connection.
    """

    def _fail(self, *args: Any, **kwargs: Any) -> Any:
        raise BackendUnavailableError(
            f"memory store {self.display_alias!r} at fault://127.0.0.1:1 is unreachable "
            "(injected)",
            backend="memory",
            alias=self.display_alias,
            address="fault://127.0.0.1:1",
        )

    _load = _list_conversations = _get_stats = _delete = _set_ttl = _fail


def _assert_friendly_failures(client: Client, alias: str) -> None:
    listing = client.get(url("changelist", store=alias))
    assert listing.status_code == 503
    page = text(listing)
    assert f"The store “{alias}” is unavailable right now" in page
    assert 'class="convstore-stores"' in page  # the other store stays one click away
    for response in (
        client.get(url("change", "any", store=alias)),
        client.post(url("change", "any", store=alias), {"ttl": "5"}),
        client.get(url("delete", "any", store=alias)),
        client.post(url("delete", "any", store=alias), {"post": "yes"}),
        client.post(
            url("changelist", store=alias),
            {"action": "delete_selected", "_selected_action": ["any"], "post": "yes"},
        ),
    ):
        assert response.status_code == 503
        assert f"The store “{alias}” is unavailable right now" in text(response)
        assert "Back to the conversations" in text(response)
    assert log_entries() == []


def test_unavailable_backend_shows_a_friendly_message(
    client: Client, configure_stores: StoreFactory, superuser: Any
):
    configure_stores(
        "default", broken={"BACKEND": f"{__name__}.UnreachableStore", "LOCATION": "broken"}
    )
    _assert_friendly_failures(client, "broken")


def test_unreachable_redis_shows_a_friendly_message(
    client: Client, configure_stores: StoreFactory, superuser: Any
):
    pytest.importorskip("django_convstore.backends.redis")
    configure_stores(
        "default",
        down={
            "BACKEND": "django_convstore.backends.redis.RedisStore",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_TIMEOUT": 0.5},
        },
    )
    _assert_friendly_failures(client, "down")


def test_misconfigured_store_does_not_break_the_section(
    client: Client, configure_stores: StoreFactory, superuser: Any
):
    configure_stores(
        "default",
        typo={"BACKEND": "django_convstore.backends.memory.MemoryStore", "OPTIONS": {"NOPE": 1}},
    )
    response = client.get(url("changelist", store="typo"))
    assert response.status_code == 503
    assert "The store “typo” is misconfigured" in text(response)
    assert client.get(url("changelist")).status_code == 200
    assert client.get(url("change", "x", store="typo")).status_code == 503
