"""The admin's Conversations section in a real browser: Debian's Chromium driven by Playwright.

Playwright's own browser download cannot work on these network-less
machines, so the tests launch the system Chromium (``/usr/bin/chromium``,
installed by ``.ci/run`` when missing; ``CONVSTORE_CHROMIUM`` names another
binary) and skip only when none exists. Screenshots of every step go to
``test-artifacts/``. ``test_readme_screenshots`` renders realistic demo
conversations; with ``CONVSTORE_README_SCREENSHOTS=docs`` it refreshes the
README's ``docs/admin-list.png`` and ``docs/admin-detail.png``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.test import override_settings
from django.urls import reverse

from django_convstore import stores
from django_convstore.backends.base import BaseStore
from django_convstore.clock import now_ms

playwright_sync = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PASSWORD = "correct horse battery staple"
CHANGELIST = "admin:django_convstore_conversation_changelist"


def find_chromium() -> str | None:
    """The system Chromium: ``$CONVSTORE_CHROMIUM``, ``/usr/bin/chromium`` or one on PATH."""
    candidates = [
        os.environ.get("CONVSTORE_CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (Playwright's sync API)."""
    executable = find_chromium()
    if executable is None:
        pytest.skip(
            "no Chromium binary: install Debian's chromium package (apt-get install chromium) "
            "or set CONVSTORE_CHROMIUM"
        )
    # Playwright's sync API runs an asyncio loop in this thread; Django's ORM refuses
    # to run under one unless told the (single-threaded, sequential) access is fine.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with playwright_sync.sync_playwright() as playwright:
            launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            yield launched
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page at a desktop size."""
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-GB")
    context.set_default_timeout(15_000)
    opened = context.new_page()
    yield opened
    context.close()


@pytest.fixture(params=["memory", "redis"])
def browser_stores(request: pytest.FixtureRequest) -> Iterator[dict[str, BaseStore]]:
    """Two stores (``default``, ``archive``) of the backend under test, emptied afterwards."""
    config: dict[str, Any] = request.getfixturevalue(f"{request.param}_store_config")
    setting = {
        alias: {**config, "NAMESPACE": f"brw{uuid.uuid4().hex[:10]}"}
        for alias in ("default", "archive")
    }
    with override_settings(CONVSTORE=setting):
        configured = {alias: stores[alias] for alias in setting}
        yield configured
        for built in configured.values():
            built.clear()


@pytest.fixture
def superuser(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("admin", "admin@example.com", PASSWORD)


# -- helpers --------------------------------------------------------------------------------------


def shot(page: Any, name: str, directory: Path = ARTIFACTS, *, full_page: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    assert path.stat().st_size > 5_000
    return path


def log_in(page: Any, live_server: Any, next_path: str) -> None:
    page.goto(live_server.url + next_path)
    assert "/admin/login/" in page.url
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"**{next_path}")


def write_conversation(
    target: BaseStore,
    cid: str,
    messages: Sequence[tuple[str, str] | dict[str, Any]],
    *,
    minutes_ago: float,
    owner: str | None = None,
    ttl: int | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    updated = now_ms() - int(minutes_ago * 60_000)
    step = 40_000
    target.put(
        {
            "conversation_id": cid,
            "messages": [
                {
                    "id": f"{cid}-{index}",
                    **as_message(message),
                    "timestamp": updated - (len(messages) - 1 - index) * step,
                }
                for index, message in enumerate(messages)
            ],
            "metadata": {
                "conversation_id": cid,
                "created_at": updated - len(messages) * step - 5_000,
                "updated_at": updated,
                "message_count": len(messages),
                "ttl": ttl,
                "owner": owner,
                "metadata": metadata or {},
            },
        }
    )


def as_message(message: tuple[str, str] | dict[str, Any]) -> dict[str, Any]:
    """A message dict from a ``(role, content)`` pair (dicts are taken as they are)."""
    if isinstance(message, dict):
        return message
    role, content = message
    return {"role": role, "content": content}


SUPPORT_TRANSCRIPT: list[dict[str, Any]] = [
    {
        "role": "system",
        "content": "You are Ada, the support assistant of Northwind Cloud. Be concise and "
        "friendly. Use the billing tool for anything about invoices.",
    },
    {
        "role": "user",
        "name": "jane",
        "content": [
            {
                "type": "text",
                "text": "Hi! I was charged twice for my March invoice (INV-20931). Can you help?",
            },
            {
                "type": "image_url",
                "image_url": {"url": "https://files.northwind.example/u/jane/statement.png"},
            },
        ],
    },
    {
        "role": "assistant",
        "content": "Sorry about that! Let me look up INV-20931 for you.",
        "tool_calls": [
            {
                "id": "call_7Qx2",
                "type": "function",
                "function": {"name": "billing_lookup", "arguments": '{"invoice": "INV-20931"}'},
            }
        ],
    },
    {
        "role": "tool",
        "tool_call_id": "call_7Qx2",
        "content": '{"invoice": "INV-20931", "amount": "49.00 EUR", "charges": 2,\n'
        ' "second_charge": "2026-03-02T09:14:11Z", "refundable": true}',
    },
    {
        "role": "assistant",
        "content": "I can see the duplicate charge of 49.00 EUR on 2 March. I've started a "
        "refund; it should reach your card within 3-5 business days.\n\n"
        "Is there anything else I can help you with?",
    },
    {"role": "user", "content": "That's great, thank you so much!"},
]


def populate_demo(
    default: BaseStore, archive: BaseStore, owners: dict[str, str] | None = None
) -> None:
    """Realistic conversations: support chats, a sales thread, an agent run with tools.

    Owners are "17", "23", "42" …, or what ``owners`` maps them to (users' keys).
    """
    owners = owners or {}
    write_conversation(
        default,
        "support/northwind-4821",
        SUPPORT_TRANSCRIPT,
        minutes_ago=2,
        owner=owners.get("17", "17"),
        ttl=7 * 24 * 3600,
        metadata={
            "title": "Refund for a double charge",
            "channel": "web-widget",
            "model": "gpt-4o-mini",
            "locale": "en-GB",
            "ticket": "SUP-4821",
            "tags": ["billing", "refund"],
            "customer": {"plan": "team", "seats": 12},
        },
    )
    chats: list[tuple[str, str | None, float, int | None, int]] = [
        ("support/northwind-4820", "23", 14, 7 * 24 * 3600, 8),
        ("sales/lead-0193-acme", "42", 38, 30 * 24 * 3600, 12),
        ("onboarding/müller-gmbh", "42", 75, 3 * 24 * 3600, 6),
        ("agent-run 2026-03-14 #7", None, 130, 3600 * 6, 27),
        ("support/northwind-4817", "17", 260, 7 * 24 * 3600, 4),
        ("faq-bot/session-9f2c1e", None, 420, 2 * 3600, 3),  # expired 5 hours ago
        ("sales/lead-0188-globex", "8", 900, 30 * 24 * 3600, 19),
        ("support/northwind-4809", "23", 1500, 7 * 24 * 3600, 9),
        ("internal/eval-100%-recall", "1", 2880, None, 42),
    ]
    for cid, owner, minutes_ago, ttl, count in chats:
        lines = [
            ("user" if index % 2 == 0 else "assistant", f"Message {index + 1} of {cid}.")
            for index in range(count)
        ]
        write_conversation(
            default,
            cid,
            lines,
            minutes_ago=minutes_ago,
            owner=owners.get(owner, owner) if owner else None,
            ttl=ttl,
            metadata={"channel": "web-widget"},
        )
    for index in range(3):
        write_conversation(
            archive,
            f"2025/q4/support-{3100 + index}",
            SUPPORT_TRANSCRIPT[1:3],
            minutes_ago=60 * 24 * (40 + index),
            owner=owners.get("17", "17"),
        )


# -- the flow -------------------------------------------------------------------------------------


def test_admin_flow_in_chromium(
    page: Any, live_server: Any, superuser: Any, browser_stores: dict[str, BaseStore]
):
    """Log in, list, search, open a conversation, change its TTL, delete it, bulk-delete."""
    expect = playwright_sync.expect
    default, archive = browser_stores["default"], browser_stores["archive"]
    populate_demo(default, archive)
    prefix = f"{default.backend_name}-"
    changelist = reverse(CHANGELIST)

    # 1. log in through the admin's login form, landing on the list
    log_in(page, live_server, changelist)
    expect(page.locator("#content h1")).to_have_text("Conversations")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(9)  # the faq-bot session has expired: listed nowhere
    expect(rows.first.locator("th a")).to_have_text("support/northwind-4821")
    expect(page.locator(".convstore-stat-value").first).to_have_text("9")
    shot(page, f"{prefix}01-list")

    # 2. the store selector switches to the archive and back
    page.click(".convstore-stores a[data-store=archive]")
    expect(rows).to_have_count(3)
    expect(page.locator(".convstore-stores li.selected a")).to_contain_text("archive")
    page.click(".convstore-stores a[data-store=default]")
    expect(rows).to_have_count(9)

    # 3. search by id prefix, then by owner
    page.fill("#searchbar", "support/")
    page.press("#searchbar", "Enter")
    expect(rows).to_have_count(4)
    expect(page.locator("#searchbar")).to_have_value("support/")
    shot(page, f"{prefix}02-search")
    page.fill("#searchbar", "")
    page.fill("#ownerbar", "42")
    page.press("#ownerbar", "Enter")
    expect(rows).to_have_count(2)
    page.fill("#ownerbar", "")
    page.fill("#searchbar", "support/northwind-48")
    page.press("#searchbar", "Enter")
    expect(rows).to_have_count(4)

    # 4. open a conversation: metadata and role-styled bubbles
    page.click("text=support/northwind-4821")
    expect(page.locator("#content h2").first).to_have_text("support/northwind-4821")
    bubbles = page.locator("li.convstore-msg")
    expect(bubbles).to_have_count(6)
    expect(page.locator(".convstore-json").first).to_contain_text('"ticket": "SUP-4821"')
    user = page.locator("li.convstore-role-user").first
    assistant = page.locator("li.convstore-role-assistant").first
    system = page.locator("li.convstore-role-system").first

    def style(locator: Any, prop: str) -> str:
        return str(locator.evaluate(f"el => getComputedStyle(el)['{prop}']"))

    assert style(user, "alignSelf") == "flex-end"
    assert style(assistant, "alignSelf") == "flex-start"
    assert style(user, "backgroundColor") != style(assistant, "backgroundColor")
    assert style(system, "backgroundColor") not in {
        style(user, "backgroundColor"),
        style(assistant, "backgroundColor"),
    }
    tool = page.locator("li.convstore-role-tool")
    assert style(tool.locator(".convstore-msg-body"), "fontFamily") != (
        style(page.locator("li.convstore-role-assistant .convstore-msg-body").first, "fontFamily")
    )
    assert style(tool, "backgroundColor") != style(assistant, "backgroundColor")
    # tool calls, the tool result they belong to, and a content part's image as a link
    expect(page.locator(".convstore-tool-call")).to_contain_text("calls billing_lookup")
    expect(page.locator(".convstore-tool-call pre")).to_contain_text('"invoice": "INV-20931"')
    expect(tool.locator(".convstore-answers")).to_contain_text("result of call_7Qx2")
    expect(page.locator(".convstore-part-link a")).to_have_attribute(
        "href", "https://files.northwind.example/u/jane/statement.png"
    )
    assert page.locator("#transcript img").count() == 0
    shot(page, f"{prefix}03-detail")

    # 5. the same page in the admin's dark theme stays readable
    page.emulate_media(color_scheme="dark")
    page.reload()
    body_bg = style(page.locator("body"), "backgroundColor")
    assert body_bg == "rgb(18, 18, 18)"
    assert style(assistant, "color") != style(assistant, "backgroundColor")
    assert style(user, "backgroundColor") != "rgb(255, 255, 255)"
    shot(page, f"{prefix}04-detail-dark")
    page.emulate_media(color_scheme="light")
    page.reload()

    # 6. change the TTL to two hours
    page.fill("#id_ttl", "7200")
    page.click("#convstore-ttl-form input[type=submit]")
    expect(page.locator(".messagelist .success")).to_contain_text("is now 7200 seconds")
    expect(page.locator(".convstore-expires")).to_contain_text("hour")
    assert 7190 <= default.get_ttl("support/northwind-4821") <= 7200
    shot(page, f"{prefix}05-ttl-changed")

    # 7. delete it: confirmation page, then the POST
    page.click("a.deletelink")
    expect(page.locator("#content h1")).to_have_text("Are you sure?")
    assert default.exists("support/northwind-4821")
    shot(page, f"{prefix}06-delete-confirm")
    page.click("input[type=submit][value^='Yes']")
    expect(page.locator(".messagelist .success")).to_contain_text("was deleted successfully")
    assert not default.exists("support/northwind-4821")
    assert LogEntry.objects.filter(
        object_id="support/northwind-4821", action_flag=DELETION
    ).exists()
    expect(rows).to_have_count(8)
    shot(page, f"{prefix}07-deleted")

    # 8. bulk delete through the admin's own actions.js ("select all" checkbox)
    page.fill("#searchbar", "sales/")
    page.press("#searchbar", "Enter")
    expect(rows).to_have_count(2)
    page.check("#action-toggle")
    expect(page.locator(".action-counter")).to_have_text("2 of 2 selected")
    page.select_option("select[name=action]", "delete_selected")
    page.click("button[name=index]")
    expect(page.locator("#deleted-objects li")).to_have_count(2)
    page.click("input[type=submit][value^='Yes']")
    expect(page.locator(".messagelist .success")).to_have_text(
        "Successfully deleted 2 conversations."
    )
    assert default.list_conversations(prefix="sales/").total == 0
    assert default.get_stats().total_conversations == 6
    shot(page, f"{prefix}08-bulk-deleted")


def test_readme_screenshots(
    page: Any,
    live_server: Any,
    superuser: Any,
    memory_store_config: dict[str, Any],
    django_user_model: Any,
):
    """List and detail pages with demo data; to ``$CONVSTORE_README_SCREENSHOTS`` when set."""
    target = Path(os.environ.get("CONVSTORE_README_SCREENSHOTS") or ARTIFACTS)
    if not target.is_absolute():
        target = ROOT / target
    setting = {
        alias: {**memory_store_config, "NAMESPACE": f"readme-{alias}", "TTL": 7 * 24 * 3600}
        for alias in ("default", "archive")
    }
    users = {
        key: str(django_user_model.objects.create_user(name).pk)
        for key, name in (("17", "jane"), ("23", "omar"), ("42", "li.wei"), ("8", "sam"))
    }
    with override_settings(CONVSTORE=setting):
        try:
            populate_demo(stores["default"], stores["archive"], users)
            page.set_viewport_size({"width": 1360, "height": 900})
            page.add_init_script("localStorage.setItem('django.admin.navSidebarIsOpen', 'false');")
            log_in(page, live_server, reverse(CHANGELIST))
            playwright_sync.expect(page.locator("#result_list tbody tr")).to_have_count(9)
            shot(page, "admin-list", target)
            page.click("text=support/northwind-4821")
            playwright_sync.expect(page.locator("li.convstore-msg")).to_have_count(6)
            shot(page, "admin-detail", target)
        finally:
            for built in (stores["default"], stores["archive"]):
                built.clear()
