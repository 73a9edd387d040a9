"""The demo's title receiver, driven through the adapters (and connected when the demo starts)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from .conftest import run

TESTPROJECT = Path(__file__).resolve().parents[2] / "testproject"


@pytest.fixture
def receivers(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(TESTPROJECT))
    module = importlib.import_module("testproject.receivers")

    module.connect()
    yield module
    module.disconnect()


def test_titles_come_from_the_first_user_message(receivers, memory_store):
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    from django_convstore.integrations.langchain import ConvStoreChatMessageHistory

    chat = ConvStoreChatMessageHistory(f"t-{uuid.uuid4().hex}", store=memory_store)
    chat.add_messages([SystemMessage("Be brief.")])
    assert memory_store.load(chat.conversation_id).metadata.metadata == {}
    chat.add_messages([HumanMessage("  What is\nthe weather   in Paris? "), AIMessage("Sunny.")])
    chat.add_messages([HumanMessage("And tomorrow?")])
    meta = memory_store.load(chat.conversation_id).metadata
    assert meta.metadata == {"title": "What is the weather in Paris?"}


def test_titles_from_every_adapter_sync_and_async(receivers, memory_store):
    from llama_index.core.base.llms.types import ChatMessage

    from django_convstore.integrations.llama_index import ConvStoreChatStore
    from django_convstore.integrations.openai_agents import ConvStoreSession

    session = ConvStoreSession(f"t-{uuid.uuid4().hex}", store=memory_store)
    run(
        lambda: session.add_items(
            [{"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}]
        )
    )
    chat_store = ConvStoreChatStore(store=memory_store)
    chat_store.set_messages("llama", [ChatMessage(content="x" * 100)])
    titles = {
        cid: memory_store.load(cid).metadata.metadata.get("title")
        for cid in (session.session_id, "llama")
    }
    assert titles == {session.session_id: "Hi", "llama": "x" * 59 + "…"}


def test_a_restored_conversation_keeps_its_metadata(receivers, memory_store):
    memory_store.save("c", [{"role": "user", "content": "hello"}])
    restored = memory_store.load("c")
    restored.metadata.metadata = {}
    memory_store.put(restored)
    assert memory_store.load("c").metadata.metadata == {}


def test_the_demo_connects_it_when_django_starts() -> None:
    probe = (
        "import django; django.setup()\n"
        "from django_convstore.signals import messages_appended\n"
        "names = [r[1]().__name__ for r in messages_appended.receivers]\n"
        "print('keep_title' in names)\n"
    )
    env: dict[str, Any] = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
        "PYTHONPATH": f"{TESTPROJECT}{os.pathsep}{TESTPROJECT.parent}",
    }
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=TESTPROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
