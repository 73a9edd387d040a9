"""The OpenAPI schema (drf-spectacular) and the demo project's schema and docs pages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from django.test import Client

ROOT = Path(__file__).resolve().parent.parent
TESTPROJECT = ROOT / "testproject"

EXPECTED = {
    "/api/conversations/": {"get": "200", "post": "201"},
    "/api/conversations/{conversation_id}/": {
        "get": "200",
        "put": "200",
        "patch": "200",
        "delete": "204",
    },
    "/api/conversations/{conversation_id}/messages/": {"get": "200", "post": "201"},
    "/api/conversations/{conversation_id}/ttl/": {"get": "200", "put": "200"},
    "/api/conversations/{conversation_id}/pop/": {"post": "200"},
    "/api/conversations/{conversation_id}/truncate/": {"post": "200"},
    "/api/conversations/stats/": {"get": "200"},
}


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The schema as ``manage.py spectacular --validate --fail-on-warn`` writes it."""
    target = tmp_path_factory.mktemp("schema") / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    schema: dict[str, Any] = yaml.safe_load(target.read_text())
    return schema


def test_every_endpoint_is_described(openapi: dict[str, Any]) -> None:
    paths = {path: ops for path, ops in openapi["paths"].items() if path != "/api/schema/"}
    assert {path: set(ops) for path, ops in paths.items()} == {
        path: set(ops) for path, ops in EXPECTED.items()
    }
    for path, operations in EXPECTED.items():
        for method, success in operations.items():
            operation = paths[path][method]
            responses = operation["responses"]
            assert success in responses, (path, method)
            if success != "204":
                assert "$ref" in str(responses[success]["content"]["application/json"]["schema"])
            for code in ("401", "403", "429", "502", "503"):
                assert code in responses, (path, method, code)
            if method in ("post", "put", "patch"):
                body = operation["requestBody"]["content"]
                assert list(body) == ["application/json"], (path, method)
                assert {"400", "413", "415"} <= set(responses), (path, method)
            if "{conversation_id}" in path:
                assert "404" in responses
                (parameter,) = [p for p in operation["parameters"] if p["in"] == "path"]
                assert parameter["schema"]["pattern"] == r"^(?!(?:stats|\.|\.\.)$)[^/]+$"
            assert operation["security"] == [{"cookieAuth": []}, {"basicAuth": []}]


def test_message_shapes(openapi: dict[str, Any]) -> None:
    components = openapi["components"]["schemas"]
    for name in ("MessageInput", "Message"):
        properties = components[name]["properties"]
        content = properties["content"]
        assert [option["type"] for option in content["oneOf"]] == ["string", "array"]
        part = content["oneOf"][1]["items"]
        assert part["required"] == ["type"] and part["additionalProperties"] is True
        assert properties["tool_calls"]["type"] == "array"
        assert properties["tool_calls"]["items"]["type"] == "object"
        assert properties["name"]["type"] == "string"
        assert properties["tool_call_id"]["type"] == "string"
    # Responses carry name/tool_calls/tool_call_id only when set.
    assert set(components["Message"]["required"]) == {
        "id",
        "role",
        "content",
        "timestamp",
        "metadata",
    }
    assert components["MessageInput"]["properties"]["name"]["minLength"] == 1


def test_descriptions_are_markdown_not_rest(openapi: dict[str, Any]) -> None:
    # (``x`` is a CommonMark code span too; reST roles are not Markdown.)
    text = yaml.safe_dump(openapi)
    assert ":class:" not in text and ":func:" not in text and ":mod:" not in text


def test_request_and_response_shapes(openapi: dict[str, Any]) -> None:
    components = openapi["components"]["schemas"]
    assert set(components["MessageInput"]["required"]) == {"role", "content"}
    role = components["MessageInput"]["properties"]["role"]
    assert role["allOf"] == [{"$ref": "#/components/schemas/RoleEnum"}]
    assert components["RoleEnum"]["enum"] == [
        "user",
        "assistant",
        "system",
        "tool",
        "function",
        "developer",
    ]
    assert set(components["MessageInput"]["properties"]) == {
        "id",
        "role",
        "content",
        "timestamp",
        "metadata",
        "name",
        "tool_calls",
        "tool_call_id",
    }
    assert components["ConversationCreate"]["required"] == ["messages"]
    assert components["Pop"].get("required") is None
    assert components["Truncate"]["required"] == ["keep"]
    assert components["Popped"]["required"] == ["messages"]
    assert components["TTL"]["required"] == ["ttl"]
    assert set(components["ConversationMetadata"]["properties"]) == {
        "conversation_id",
        "created_at",
        "updated_at",
        "message_count",
        "ttl",
        "owner",
        "metadata",
        "expires_at",
    }
    assert set(components["PaginatedConversationMetadataList"]["properties"]) == {
        "count",
        "next",
        "previous",
        "results",
    }
    append = openapi["paths"]["/api/conversations/{conversation_id}/messages/"]["post"]
    append_schema = append["requestBody"]["content"]["application/json"]["schema"]
    assert append_schema["$ref"].endswith("/AppendMessages")
    assert {ref["$ref"].rsplit("/", 1)[1] for ref in components["AppendMessages"]["oneOf"]} == {
        "Append",
        "MessageInput",
    }


@pytest.mark.django_db
def test_the_schema_and_docs_are_served(client: Client) -> None:
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert schema["Content-Type"].startswith("application/vnd.oai.openapi")
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"/api/schema/" in docs.content


def run_in_testproject(*args: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
    """Run ``python <args>`` in the demo project's directory with its settings."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
        "PYTHONPATH": str(ROOT),  # this checkout's code, whatever is installed
        **env_vars,
    }
    return subprocess.run(
        [sys.executable, *args],
        cwd=TESTPROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_testproject_schema_validates_without_warnings() -> None:
    result = run_in_testproject(
        "manage.py", "spectacular", "--validate", "--fail-on-warn", "--file", os.devnull
    )
    assert result.returncode == 0, result.stderr


DOCS_PROBE = """
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)  # the demo seeds its memory store for its users
from django.test import Client
client = Client()
docs = client.get("/api/docs/")
schema = client.get("/api/schema/")
print(docs.status_code, schema.status_code)
print(docs.content.decode())
"""


@pytest.mark.slow
def test_testproject_serves_swagger_ui_without_a_cdn(tmp_path: Path) -> None:
    result = run_in_testproject("-c", DOCS_PROBE, DEMO_DB=str(tmp_path / "demo.sqlite3"))
    assert result.returncode == 0, result.stderr
    statuses, html = result.stdout.split("\n", 1)
    assert statuses == "200 200"
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower() and "https://" not in html
