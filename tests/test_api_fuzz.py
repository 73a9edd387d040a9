"""Schema-driven fuzzing of the REST API with schemathesis, inside the normal test run.

The OpenAPI schema is loaded from the WSGI app (``/api/schema/``); for every
operation, as a normal user and as a user with every cross-owner permission,
against every backend the API is tested on, schemathesis generates
schema-valid ("positive") and schema-violating ("negative") requests. Every
response must be below 500 and conform to the schema (documented status code,
content type, body schema and headers).

Half of the generated requests address conversations that exist (one owned by
the caller, one by somebody else), re-created before every example, so the
detail endpoints are exercised beyond 404. Runs are derandomised (the same
cases every run) and bounded to :data:`MAX_EXAMPLES` per operation and mode.
The totals are printed in pytest's terminal summary.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from django_convstore.backends.base import BaseStore
from tests.fixtures.api import CROSS_OWNER, FUZZ_STATS, PASSWORD

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

MAX_EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
OPERATIONS = [
    "GET /api/conversations/",
    "POST /api/conversations/",
    "GET /api/conversations/{conversation_id}/",
    "PUT /api/conversations/{conversation_id}/",
    "PATCH /api/conversations/{conversation_id}/",
    "DELETE /api/conversations/{conversation_id}/",
    "GET /api/conversations/{conversation_id}/messages/",
    "POST /api/conversations/{conversation_id}/messages/",
    "GET /api/conversations/{conversation_id}/ttl/",
    "PUT /api/conversations/{conversation_id}/ttl/",
    "POST /api/conversations/{conversation_id}/pop/",
    "POST /api/conversations/{conversation_id}/truncate/",
    "GET /api/conversations/stats/",
]
MINE, THEIRS = "fuzz-mine", "fuzz-theirs"


@pytest.fixture(scope="module")
def wsgi_app() -> WSGIHandler:
    """The test project as a WSGI application."""
    return WSGIHandler()


@pytest.fixture
def api_schema(wsgi_app: WSGIHandler, db: None) -> Iterator[Any]:
    """The schemathesis schema, loaded from ``/api/schema/`` of the WSGI app.

    Like Django's test client, the WSGI calls must not close the test's
    database connection, neither when a request starts nor when it finishes:
    inside the test's transaction autocommit is off, so ``close_old_connections``
    takes the connection for a broken one and closes it (an in-memory SQLite
    database ignores that; the file the tests use does not, nor does PostgreSQL).
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/schema/", wsgi_app)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def test_the_schema_lists_every_operation(api_schema: Any) -> None:
    labels = sorted(result.ok().label for result in api_schema.get_all_operations())
    assert labels == sorted(OPERATIONS)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize("role", ["user", "manager"])
@pytest.mark.parametrize("label", OPERATIONS)
def test_fuzz_operation(
    api_store: BaseStore,
    api_schema: Any,
    make_user: Any,
    label: str,
    role: str,
    mode: GenerationMode,
) -> None:
    user = make_user("fuzzer", perms=CROSS_OWNER if role == "manager" else ())
    somebody = make_user("somebody")
    token = base64.b64encode(f"fuzzer:{PASSWORD}".encode()).decode()
    headers = {"Authorization": f"Basic {token}"}
    operation = api_schema.find_operation_by_label(label)
    strategy = operation.as_strategy(generation_mode=mode)
    if "{conversation_id}" in label:
        strategy = st.one_of(
            strategy,
            *(
                operation.as_strategy(
                    generation_mode=mode, path_parameters={"conversation_id": cid}
                )
                for cid in (MINE, THEIRS)
            ),
        )
    seen: list[int] = []

    @given(case=strategy)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        api_store.save(MINE, [{"role": "user", "content": "mine"}], owner=str(user.pk), ttl=0)
        api_store.save(THEIRS, [{"role": "user", "content": "x"}], owner=str(somebody.pk))
        response = case.call(headers=headers)
        seen.append(response.status_code)
        assert response.status_code < 500, (case.as_curl_command(), response.text)
        case.validate_response(response, checks=CHECKS, headers=headers)

    run()

    FUZZ_STATS.record(label, role, str(mode), seen)
    assert seen, "schemathesis generated no case"
    assert max(seen) < 500
