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
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from .worker import add_batches, batch_size, text

WRITERS = 2
ROUNDS = 100
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


def _together(*work: Callable[[], None]) -> None:
    """Run each callable in its own thread, released together; re-raise what they raised."""
    barrier = threading.Barrier(len(work))
    errors: list[BaseException] = []

    def run(job: Callable[[], None]) -> None:
        try:
            barrier.wait()
            job()
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(job,)) for job in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def _in_threads(store: Any, job: dict[str, Any]) -> None:
    _together(
        *(
            partial(add_batches, store, job["framework"], job["conversation_id"], w, job["rounds"])
            for w in range(WRITERS)
        )
    )


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


@pytest.mark.slow
def test_inserting_and_deleting_in_the_middle_lose_no_concurrent_append(leg_store: Any) -> None:
    """LlamaIndex's ``add_message(idx=)`` / ``delete_message`` against a concurrent appender.

    They are not atomic (documented): the appender's messages may end up after
    the re-added tail, but none is ever lost or duplicated.
    """
    from llama_index.core.base.llms.types import ChatMessage

    from django_convstore.integrations.llama_index import ConvStoreChatStore

    chat_store = ConvStoreChatStore(store=leg_store)
    key = f"middle-{uuid.uuid4().hex}"
    chat_store.set_messages(key, [ChatMessage(content=f"seed{i}") for i in range(5)])
    deleted: list[str] = []

    def append() -> None:
        for i in range(ROUNDS):
            chat_store.add_message(key, ChatMessage(content=f"a{i}"))

    def edit() -> None:
        for i in range(ROUNDS // 2):
            chat_store.add_message(key, ChatMessage(content=f"i{i}"), idx=1)
            removed = chat_store.delete_message(key, 2)
            assert removed is not None
            deleted.append(str(removed.content))

    _together(append, edit)
    contents = [str(m.content) for m in chat_store.get_messages(key)]
    written = [f"seed{i}" for i in range(5)]
    written += [f"a{i}" for i in range(ROUNDS)] + [f"i{i}" for i in range(ROUNDS // 2)]
    assert sorted(contents + deleted) == sorted(written)
    assert leg_store.load(key).metadata.message_count == len(contents)
