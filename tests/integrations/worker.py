"""A writer process for the adapters' concurrency tests.

Run as ``python -m tests.integrations.worker '<json>'``: it sets Django up on
its own (with the given databases, for the database backend), builds the
store and the framework's adapter, prints ``ready``, waits for the ``go``
file, then adds ``rounds`` batches through the adapter (see :func:`add_batches`)
and prints ``done``. Memory stores cannot be shared between processes: the
tests call :func:`add_batches` from threads instead.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any


def batch_size(worker: int, number: int) -> int:
    """How many messages batch ``number`` of ``worker`` holds (1 to 3)."""
    return 1 + (worker + number) % 3


def text(worker: int, number: int, index: int) -> str:
    """The content of one message: who wrote it, in which batch, at which place."""
    return f"{worker}:{number}:{index}"


def add_batches(
    store: Any, framework: str, conversation_id: str, worker: int, rounds: int
) -> None:
    """Add ``rounds`` batches of 1-3 messages to one conversation through an adapter.

    LangChain and the Agents SDK add each batch in one call; LlamaIndex has no
    batch operation, so its messages are added one ``add_message`` at a time.
    """
    if framework == "langchain":
        from langchain_core.messages import HumanMessage

        from django_convstore.integrations.langchain import ConvStoreChatMessageHistory

        history = ConvStoreChatMessageHistory(conversation_id, store=store)
        for number in range(rounds):
            history.add_messages(
                [
                    HumanMessage(text(worker, number, i), id=f"w{worker}-{number}-{i}")
                    for i in range(batch_size(worker, number))
                ]
            )
    elif framework == "openai_agents":
        from django_convstore.integrations.openai_agents import ConvStoreSession

        session = ConvStoreSession(conversation_id, store=store)

        async def add_all() -> None:
            for number in range(rounds):
                await session.add_items(
                    [
                        {"role": "user", "content": text(worker, number, i)}
                        for i in range(batch_size(worker, number))
                    ]
                )

        asyncio.run(add_all())
    else:
        from llama_index.core.base.llms.types import ChatMessage

        from django_convstore.integrations.llama_index import ConvStoreChatStore

        chat_store = ConvStoreChatStore(store=store)
        for number in range(rounds):
            for i in range(batch_size(worker, number)):
                chat_store.add_message(
                    conversation_id, ChatMessage(content=text(worker, number, i))
                )


def main(argv: list[str]) -> int:
    job = json.loads(argv[1])
    import django
    from django.conf import settings

    settings.configure(
        DATABASES=job["databases"],
        INSTALLED_APPS=["django_convstore"],
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()
    from django_convstore import create_store

    store = create_store(job["config"], alias=f"worker-{job['worker']}")
    store.exists("warm-up")
    print("ready", flush=True)
    go = Path(job["go"])
    deadline = time.monotonic() + 60
    while not go.exists():
        if time.monotonic() > deadline:
            return 2
        time.sleep(0.005)
    add_batches(store, job["framework"], job["conversation_id"], job["worker"], job["rounds"])
    store.close()
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
