"""The demo project comes up the way ``make demo`` starts it, and shows what it promises.

``tests/demo_server.py`` runs ``manage.py demo_setup`` and ``manage.py
runserver`` as subprocesses on a free port with a throw-away SQLite file;
these tests talk to it over HTTP, and the browser test walks it in Chromium:
the landing page, the chat as alice, the admin as admin. With
``CONVSTORE_DOCS_SCREENSHOTS=docs`` the walk refreshes the screenshots the
docs show (``docs/demo-*.png``).
"""

from __future__ import annotations

import base64
import http.cookiejar
import json
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.demo_server import Demo, run_setup, running_demo

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
ALICE = {"demo-trip-to-lisbon", "demo-python-help", "demo-weather-photo"}
BOB = {"demo-support-refund-4711", "demo-recipe-ideas"}


def _request(
    url: str,
    *,
    auth: tuple[str, str] | None = None,
    opener: urllib.request.OpenerDirector | None = None,
    data: bytes | None = None,
) -> tuple[int, bytes, str]:
    request = urllib.request.Request(url, data=data)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    open_ = (opener or urllib.request.build_opener()).open
    try:
        with open_(request, timeout=15) as response:
            return response.status, response.read(), response.url
    except urllib.error.HTTPError as error:
        return error.code, error.read(), url


def _ids(body: bytes) -> set[str]:
    return {item["conversation_id"] for item in json.loads(body)["results"]}


def _session(demo: Demo, username: str, password: str) -> urllib.request.OpenerDirector:
    """A cookie session logged in through the demo's login page."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    _request(demo.url + "/accounts/login/", opener=opener)
    token = next(cookie.value for cookie in jar if cookie.name == "csrftoken")
    form = {"username": username, "password": password, "csrfmiddlewaretoken": token}
    status, _, final_url = _request(
        demo.url + "/accounts/login/",
        opener=opener,
        data=urllib.parse.urlencode(form).encode(),
    )
    assert status == 200 and final_url.endswith("/chat/"), (status, final_url)
    return opener


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with running_demo(tmp_path_factory.mktemp("demo")) as running:
        yield running


def test_setup_prints_where_to_start_and_is_idempotent(demo):
    assert "The demo is ready." in demo.setup_output
    assert f"Start here:  {demo.url}/" in demo.setup_output
    assert "default: 5 demo conversations loaded" in demo.setup_output
    assert "memory: loaded by the server on its first request" in demo.setup_output
    again = run_setup(demo.env)
    assert again.returncode == 0, again.stderr
    assert "default: 0 demo conversations loaded" in again.stdout


def test_landing_page_explains_the_demo_to_a_visitor(demo):
    status, body, _ = _request(demo.url + "/")
    assert status == 200
    page = body.decode()
    for text in ("alice", "bob", "admin", "What to try", "/chat/", "/api/docs/"):
        assert text in page
    assert re.search(r"<code>alice</code></td><td><code>alice</code>", page)
    assert f"curl -u alice:alice {demo.url}/api/conversations/" in page


def test_admin_login_and_schema_answer(demo):
    assert _request(demo.url + "/admin/login/")[0] == 200
    status, body, _ = _request(demo.url + "/api/schema/")
    assert status == 200
    assert b"/api/conversations/" in body


def test_api_docs_page_has_no_external_assets(demo):
    status, body, _ = _request(demo.url + "/api/docs/")
    assert status == 200
    assert b"cdn.jsdelivr.net" not in body and b"unpkg.com" not in body


def test_each_user_sees_only_their_own_conversations(demo):
    status, body, _ = _request(demo.url + "/api/conversations/", auth=("alice", "alice"))
    assert status == 200 and _ids(body) >= ALICE and not BOB & _ids(body)
    status, body, _ = _request(demo.url + "/api/conversations/", auth=("bob", "bob"))
    assert status == 200 and _ids(body) >= BOB and not ALICE & _ids(body)
    status, body, _ = _request(demo.url + "/api/conversations/", auth=("admin", "admin"))
    assert status == 200 and _ids(body) >= ALICE | BOB
    assert (
        _request(demo.url + "/api/conversations/demo-recipe-ideas/", auth=("alice", "alice"))[0]
        == 404
    )


def test_a_wrong_basic_password_answers_401_with_a_challenge(demo):
    request = urllib.request.Request(demo.url + "/api/conversations/")
    token = base64.b64encode(b"alice:wrong").decode()
    request.add_header("Authorization", f"Basic {token}")
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=15)
    assert error.value.code == 401
    assert error.value.headers["WWW-Authenticate"].startswith("Basic")


def test_non_staff_users_can_open_the_chat_page(demo):
    opener = _session(demo, "bob", "bob")
    status, body, _ = _request(demo.url + "/chat/", opener=opener)
    assert status == 200 and b'id="composer"' in body and b"bob" in body


def test_chat_page_sends_visitors_to_the_demo_login(demo):
    status, body, final_url = _request(demo.url + "/chat/")
    assert status == 200 and "/accounts/login/?next=/chat/" in final_url
    assert b"alice" in body  # the login page names the demo users


def test_the_memory_store_shows_its_demo_data_in_the_running_server(demo):
    opener = _session(demo, "admin", "admin")
    status, body, _ = _request(
        demo.url + "/admin/django_convstore/conversation/?store=memory", opener=opener
    )
    assert status == 200
    for conversation_id in ALICE | BOB:
        assert conversation_id.encode() in body


# -- the browser walk ----------------------------------------------------------------------------


def _chromium() -> str | None:
    for candidate in (
        os.environ.get("CONVSTORE_CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _screenshot(page: Any, name: str, *, docs: bool = True) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=False)
    target = os.environ.get("CONVSTORE_DOCS_SCREENSHOTS")
    if docs and target:
        shutil.copyfile(path, ROOT / target / name)


def _log_in(page: Any, demo: Demo, username: str) -> None:
    page.goto(demo.url + "/accounts/login/?next=/chat/")
    page.fill("#id_username", username)
    page.fill("#id_password", username)
    page.click("button[type=submit]")


@pytest.mark.browser
def test_browser_walk_landing_chat_as_alice_then_admin(demo):
    executable = _chromium()
    if executable is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            # The landing page, logged out: what to try and who to log in as.
            page.goto(demo.url + "/")
            page.wait_for_selector("#demo-users")
            assert page.locator("#demo-users tr").count() == 4
            _screenshot(page, "demo-landing.png")

            # Alice chats: only her conversations; tool calls, tool results, system and
            # developer turns and content parts each drawn their own way.
            page.click("text=Log in")
            page.fill("#id_username", "alice")
            page.fill("#id_password", "alice")
            page.click("button[type=submit]")
            page.wait_for_selector("#conversations li")
            titles = page.locator("#conversations li").all_inner_texts()
            assert any("Lisbon" in title for title in titles)
            assert not any("Refund" in title or "fridge" in title for title in titles)
            page.click("#conversations li:has-text('Weather')")
            page.wait_for_selector(".bubble.tool")
            styles = {
                role: page.eval_on_selector(
                    f".bubble.{role}",
                    "e => [getComputedStyle(e).borderStyle, getComputedStyle(e).fontFamily,"
                    " getComputedStyle(e).backgroundColor]",
                )
                for role in ("developer", "user", "assistant", "tool")
            }
            assert styles["developer"][0] == "dashed"
            assert "mono" in styles["tool"][1].lower() and "mono" not in styles["assistant"][1]
            assert len({style[2] for style in styles.values()}) == 4, styles
            call = page.inner_text(".bubble.assistant .tool-call")
            assert "get_weather" in call and "Lisbon" in call
            assert "result of call_weather_1" in (page.text_content(".bubble.tool .role") or "")
            image = page.locator(".bubble.user .part.attachment a")
            assert image.get_attribute("href") == "https://example.com/photos/lisbon-tram-28.jpg"
            assert page.locator(".bubble img").count() == 0  # parts are links, never fetched
            page.fill("#message", "Hello from the browser test")
            page.press("#message", "Enter")
            page.wait_for_selector(".bubble.user >> text=Hello from the browser test")
            page.wait_for_selector(".bubble.assistant >> text=You said 5 words")
            _screenshot(page, "demo-chat.png")
            page.click("#logout")
            page.wait_for_selector("#landing")

            # Bob does not see alice's conversations, tool results are drawn as tool bubbles.
            _log_in(page, demo, "bob")
            page.wait_for_selector("#conversations li")
            titles = page.locator("#conversations li").all_inner_texts()
            assert not any("Lisbon" in title for title in titles)
            page.click("#conversations li:has-text('Refund')")
            page.wait_for_selector(".bubble.tool")
            tool_font = page.eval_on_selector(
                ".bubble.tool", "e => getComputedStyle(e).fontFamily"
            )
            assert "mono" in tool_font.lower()
            page.click("#logout")
            page.wait_for_selector("#landing")

            # The admin sees everybody's conversations in the admin section.
            page.goto(demo.url + "/admin/django_convstore/conversation/")
            page.fill("#id_username", "admin")
            page.fill("#id_password", "admin")
            page.click("input[type=submit]")
            page.wait_for_selector("text=demo-trip-to-lisbon")
            page.wait_for_selector("text=demo-recipe-ideas")
            _screenshot(page, "demo-admin.png", docs=False)  # the docs show admin-*.png
            page.click("text=demo-support-refund-4711")
            page.wait_for_selector("text=R-2291")
        finally:
            browser.close()
    status, body, _ = _request(demo.url + "/api/conversations/?limit=1", auth=("alice", "alice"))
    assert status == 200
    assert json.loads(body)["results"][0]["conversation_id"] == "demo-weather-photo"
