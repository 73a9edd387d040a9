"""The admin transcript: tool calls, content parts and roles rendered readably and safely.

Every value is escaped; images and files are links (http/https only) or
notes, never fetched or embedded; every role has its own look.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.admin.utils import quote
from django.test import Client, override_settings
from django.urls import reverse
from django.utils.html import escape

import django_convstore
from django_convstore import stores
from django_convstore.admin.rendering import part_view, role_classes, tool_call_view

pytestmark = pytest.mark.django_db

MEMORY = {"BACKEND": "django_convstore.backends.memory.MemoryStore", "LOCATION": "admin-render"}
EVIL = '<script>alert("x")</script>'
PNG = "data:image/png;base64," + "iVBORw0KGgo" * 2000
MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "Be brief."},
    {"role": "developer", "content": "Answer in French."},
    {
        "role": "user",
        "name": "alice",
        "content": [
            {"type": "text", "text": f"What is this? {EVIL}"},
            {"type": "image_url", "image_url": {"url": "https://img.example/cat.png?a=1&b=2"}},
            {"type": "image_url", "image_url": {"url": PNG, "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "javascript:alert(1)"}},
            {"type": "input_audio", "input_audio": {"data": "UklGRg" * 100, "format": "wav"}},
            {"type": "file", "file": {"filename": "report.pdf", "file_data": "JVBERi0" * 10}},
            {"type": "image", "source": {"type": "url", "url": "https://img.example/dog.jpg"}},
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/gif", "data": "R0"},
            },
            {"type": "hologram", "payload": {"html": EVIL}},
        ],
    },
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris", "n": 2}'},
            },
            {"id": "call_2", "type": "function", "function": {"name": EVIL, "arguments": "{oops"}},
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
    {"role": "function", "name": "get_weather", "content": "21"},
    {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "tu_1", "name": "lookup", "input": {"q": "x"}},
            {"type": "refusal", "refusal": "I can't do that."},
        ],
    },
]


@pytest.fixture
def page(client: Client, django_user_model: Any) -> str:
    """The detail page of a conversation with every kind of message, as a superuser sees it."""
    with override_settings(CONVSTORE={"default": MEMORY}):
        store = stores["default"]
        store.save("rich", MESSAGES)
        client.force_login(django_user_model.objects.create_superuser("root", "r@x.y", "pw"))
        response = client.get(
            reverse("admin:django_convstore_conversation_change", args=[quote("rich")])
        )
        store.clear()
    assert response.status_code == 200
    body = response.content.decode()
    return body[body.index('id="transcript"') : body.index("convstore-ttl-form")]


def bubbles(page: str) -> list[str]:
    """The HTML of each message bubble, in order."""
    return re.split(r'(?=<li class="convstore-msg )', page)[1:]


def test_every_role_has_its_own_look(page: str) -> None:
    roles = re.findall(r'<li class="convstore-msg convstore-role-([\w-]+)', page)
    assert roles == ["system", "developer", "user", "assistant", "tool", "function", "assistant"]
    assert "convstore-role-other" not in page
    css = _css()
    for role in ("system", "developer", "tool", "function", "user", "assistant"):
        assert f"li.convstore-role-{role} {{" in css, role


def _css() -> str:
    path = Path(django_convstore.__file__).parent / "static" / "django_convstore" / "admin.css"
    return path.read_text()


def test_everything_is_escaped_and_nothing_is_embedded(page: str) -> None:
    assert EVIL not in page
    assert escape(f"What is this? {EVIL}") in page
    assert "<img" not in page and "<iframe" not in page and "<audio" not in page
    assert "src=" not in page
    hrefs = [html.unescape(h) for h in re.findall(r'href="([^"]*)"', page)]
    assert hrefs == ["https://img.example/cat.png?a=1&b=2", "https://img.example/dog.jpg"]
    assert "javascript:alert(1)" in html.unescape(page)  # shown as text, never as a link
    assert "iVBORw0KGgo" * 200 not in page  # inline data is summarised, not dumped


def test_content_parts_are_described(page: str) -> None:
    user = html.unescape(bubbles(page)[2])
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", user))
    assert 'convstore-name" title="name">alice<' in user
    assert "image_url image" in text
    assert "image (high), inline (image/png, 22022 characters of base64)" in text
    assert "image: javascript:alert(1) (not a web address; not linked)" in text
    assert "audio, inline (wav, 600 characters of base64)" in text
    assert "file report.pdf, inline (70 characters of base64)" in text
    assert "image, inline (image/gif, 2 characters of base64)" in text
    assert '"html": "<script>alert(\\"x\\")</script>"' in user  # unknown part: its JSON
    assert 'data-type="hologram"' in user


def test_tool_calls_and_results_are_readable(page: str) -> None:
    calls, result, function, anthropic = (html.unescape(b) for b in bubbles(page)[3:7])
    plain = re.sub(r"<[^>]+>", "", calls)
    assert "calls get_weather" in plain and "call_1" in plain
    assert '{\n  "city": "Paris",\n  "n": 2\n}' in calls  # JSON arguments pretty-printed
    assert "{oops" in calls  # arguments that are not JSON, as they are
    assert 'calls <strong><script>alert("x")</script></strong>' not in bubbles(page)[3]
    assert "result of call_1" in re.sub(r"<[^>]+>", "", result)
    assert 'convstore-name" title="name">get_weather<' in function
    assert "calls lookup" in anthropic and '"q": "x"' in anthropic
    assert "I can't do that." in anthropic


def test_unknown_roles_and_shapes_fall_back_gracefully() -> None:
    assert role_classes("developer") == "convstore-msg convstore-role-developer"
    assert role_classes("function") == "convstore-msg convstore-role-function"
    assert role_classes("critic").endswith("convstore-role-critic convstore-role-other")
    assert part_view({"type": "image_url"}).kind == "json"
    assert part_view({"type": "text", "text": 5}).kind == "json"
    assert part_view({"type": "file", "file": {"file_url": "ftp://x/y"}}).kind == "note"
    odd = tool_call_view({"id": "c", "name": "search", "input": {"q": 1}})
    assert (odd.name, odd.arguments) == ("search", '{\n  "q": 1\n}')
    bare = tool_call_view({"type": "web_search"})
    assert bare.name == "web_search" and bare.id == ""
