"""Two processes adding to one session through an adapter lose, duplicate and reorder nothing.

On every backend leg that processes can share (Redis, ZeroDB, SQLite and PostgreSQL); the
memory store lives in one process, so there two threads do the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from .worker import add_batches, batch_size, text

WRITERS = 2
ROUNDS = 60
ROOT = Path(__file__).resolve().parents[2]
FRAMEWORKS = ["langchain", "openai_agents", "llama_index"]


def _databases(config: dict[str, Any]) -> dict[str, Any]:
    """The test database the store uses, for a process that sets Django up on its own."""
    alias = config.get("OPTIONS", {}).get("DATABASE")
    if alias is None:
        return {}
    settings_dict = connections[alias].settings_dict
    database = {
        key: settings_dict[key]
        for key in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT", "OPTIONS")
    }
    return {"default": database, alias: database}


def _in_processes(config: dict[str, Any], job: dict[str, Any], tmp_path: Path) -> None:
    go = tmp_path / "go"
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(ROOT)
    databases = _databases(config)
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integrations.worker",
                json.dumps(
                    {**job, "config": config, "databases": databases, "worker": w, "go": str(go)}
                ),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(WRITERS)
    ]
    try:
        for process in workers:
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                pytest.fail(f"a writer did not start: {process.communicate(timeout=30)[1]}")
        go.touch()
        for process in workers:
            out, err = process.communicate(timeout=240)
            assert process.returncode == 0, err
            assert out.strip() == "done"
    finally:
        for process in workers:
            if process.poll() is None:
                process.kill()


def _in_threads(store: Any, job: dict[str, Any]) -> None:
    barrier = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            barrier.wait()
            add_batches(store, job["framework"], job["conversation_id"], worker, job["rounds"])
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def _framework_texts(store: Any, framework: str, conversation_id: str) -> list[str]:
    """The conversation as the framework reads it back, as message texts."""
    if framework == "langchain":
        from django_convstore.integrations.langchain import ConvStoreChatMessageHistory

        return [
            str(m.content)
            for m in ConvStoreChatMessageHistory(conversation_id, store=store).messages
        ]
    if framework == "openai_agents":
        from django_convstore.integrations.openai_agents import ConvStoreSession

        from .conftest import run

        session = ConvStoreSession(conversation_id, store=store)
        return [str(dict(item)["content"]) for item in run(session.get_items)]
    from django_convstore.integrations.llama_index import ConvStoreChatStore

    chat_store = ConvStoreChatStore(store=store)
    return [str(m.content) for m in chat_store.get_messages(conversation_id)]


@pytest.mark.slow
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_two_writers_through_an_adapter_lose_nothing(
    framework, backend_leg, store_config, leg_store, tmp_path
):
    conversation_id = f"race-{uuid.uuid4().hex}"
    job = {"framework": framework, "conversation_id": conversation_id, "rounds": ROUNDS}
    if backend_leg == "memory":
        _in_threads(leg_store, job)
    else:
        config = {**store_config, "NAMESPACE": leg_store.namespace}
        _in_processes(config, job, tmp_path)

    texts = _framework_texts(leg_store, framework, conversation_id)
    expected = {
        w: [text(w, n, i) for n in range(ROUNDS) for i in range(batch_size(w, n))]
        for w in range(WRITERS)
    }
    assert len(texts) == sum(len(own) for own in expected.values())
    assert leg_store.load(conversation_id).metadata.message_count == len(texts)
    for worker, own in expected.items():  # every message, once, in its writer's order
        assert [t for t in texts if t.startswith(f"{worker}:")] == own
    if framework != "llama_index":  # one call per batch: a batch is never interleaved
        position = 0
        while position < len(texts):
            worker, number, _ = map(int, texts[position].split(":"))
            size = batch_size(worker, number)
            assert texts[position : position + size] == [
                text(worker, number, i) for i in range(size)
            ]
            position += size
