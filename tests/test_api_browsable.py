"""The browsable API: every page renders, and shows its docstrings without reST markup."""

from __future__ import annotations

import re
from typing import Any

import pytest

from django_convstore.api.text import markdown_from_rest, plain_from_markdown
from django_convstore.backends.base import BaseStore

pytestmark = pytest.mark.django_db

PAGES = [
    "/api/conversations/",
    "/api/conversations/c/",
    "/api/conversations/c/messages/",
    "/api/conversations/c/ttl/",
    "/api/conversations/c/pop/",
    "/api/conversations/c/truncate/",
    "/api/conversations/stats/",
]
REST_MARKUP = re.compile(r"``|:(?:class|func|mod|meth|data|attr):`")


@pytest.mark.parametrize("path", PAGES)
def test_pages_render_their_descriptions_as_plain_text(
    api_store: BaseStore, client_for: Any, manager: Any, path: str
) -> None:
    api_store.save("c", [{"role": "user", "content": "hi"}], owner=str(manager.pk))
    response = client_for(manager).get(path, HTTP_ACCEPT="text/html")

    assert response.status_code in (200, 405)  # pop/truncate only take POST
    html = response.content.decode()
    description = html[html.index('class="page-header"') : html.index('class="request-info"')]
    assert not REST_MARKUP.search(description), description
    assert "`" not in description  # no Python-Markdown here: plain text
    assert len(re.sub(r"<[^>]+>", "", description).split()) > 8  # a real description


def test_rest_markup_becomes_markdown() -> None:
    text = (
        "See :class:`~django_convstore.types.Message`, :func:`validation.validate_message`, "
        ":mod:`the codec <django_convstore.codec>` and ``store.pop(cid)``. Example::\n"
    )
    assert markdown_from_rest(text) == (
        "See `Message`, `validation.validate_message`, `the codec` and `store.pop(cid)`. "
        "Example:\n"
    )
    assert plain_from_markdown("`GET`: a window (`offset`)") == "GET: a window (offset)"


@pytest.mark.parametrize("path", ["/api/conversations", "/api/conversations/c"])
def test_slashless_routes_describe_themselves_alike(
    api_store: BaseStore, client_for: Any, owner: Any, path: str
) -> None:
    client = client_for(owner)
    assert client.options(path).json() == client.options(f"{path}/").json()
