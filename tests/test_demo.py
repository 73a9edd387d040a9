"""The demo project comes up the way `make demo` starts it, and the chat page works.

Runs ``manage.py demo_setup`` and ``manage.py runserver`` as subprocesses on a
free port with a throw-away SQLite file, then talks to the server over HTTP.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MANAGE = ROOT / "testproject" / "manage.py"
CHROMIUM = Path("/usr/bin/chromium")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, auth: tuple[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "DEMO_DB": str(tmp_path_factory.mktemp("demo") / "demo.sqlite3"),
        "DEMO_ADDR": f"127.0.0.1:{port}",
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
    }
    env.pop("REDIS_URL", None)
    setup = subprocess.run(
        [sys.executable, str(MANAGE), "demo_setup"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert setup.returncode == 0, setup.stderr
    assert "The demo is ready." in setup.stdout
    assert f"http://127.0.0.1:{port}/admin/" in setup.stdout
    again = subprocess.run(
        [sys.executable, str(MANAGE), "demo_setup"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0 and "default: 0 demo conversations loaded" in again.stdout
    server = subprocess.Popen(
        [sys.executable, str(MANAGE), "runserver", "--noreload", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            _get(base + "/admin/login/")
            break
        except OSError:
            time.sleep(0.2)
    yield base
    server.terminate()
    server.wait(timeout=10)


def test_admin_login_and_schema_answer(demo_server):
    assert _get(demo_server + "/admin/login/")[0] == 200
    status, body = _get(demo_server + "/api/schema/")
    assert status == 200
    assert b"/api/conversations/" in body


def test_api_docs_page_has_no_external_assets(demo_server):
    status, body = _get(demo_server + "/api/docs/")
    assert status == 200
    assert b"cdn.jsdelivr.net" not in body and b"unpkg.com" not in body


def test_demo_conversations_are_loaded(demo_server):
    status, body = _get(demo_server + "/api/conversations/", auth=("admin", "admin"))
    assert status == 200
    ids = {item["conversation_id"] for item in json.loads(body)["results"]}
    assert "demo-trip-to-lisbon" in ids and len(ids) >= 4


def test_chat_page_requires_login(demo_server):
    status, _ = _get(demo_server + "/", auth=None)
    assert status == 200  # urllib followed the redirect to the login page
    with urllib.request.urlopen(demo_server + "/", timeout=10) as response:
        assert "/admin/login/" in response.url


@pytest.mark.browser
def test_chat_page_creates_a_conversation_and_appends(demo_server, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page()
            page.goto(demo_server + "/")
            page.fill("#id_username", "admin")
            page.fill("#id_password", "admin")
            page.click("input[type=submit]")
            page.wait_for_selector("#composer")
            page.fill("#message", "Hello from the browser test")
            page.press("#message", "Enter")
            page.wait_for_selector(".bubble.user >> text=Hello from the browser test")
            page.wait_for_selector(".bubble.assistant >> text=You said 5 words")
            page.screenshot(path=str(artifacts / "demo-chat.png"), full_page=True)
        finally:
            browser.close()
    status, body = _get(demo_server + "/api/conversations/?limit=1", auth=("admin", "admin"))
    assert status == 200
    newest = json.loads(body)["results"][0]
    assert newest["message_count"] == 2
