"""A writer process for the database backend's concurrency tests.

Run as ``python -m tests.database_worker '<json>'``: it sets Django up on its
own (the given database as ``default``), prints ``ready``, waits for the
``go`` file, then appends ``appends`` batches of 1 to 3 messages to one
conversation, each message naming the writer, batch and index
(``"<worker>:<batch>:<index>"``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def batch(worker: int, number: int) -> list[dict[str, Any]]:
    """The messages of one append: 1 to 3 of them, in order."""
    return [
        {
            "role": "user",
            "content": f"{worker}:{number}:{index}",
            "id": f"w{worker}-{number}-{index}",
        }
        for index in range(1 + number % 3)
    ]


def main(argv: list[str]) -> int:
    job = json.loads(argv[1])
    import django
    from django.conf import settings

    settings.configure(
        DATABASES={"default": job["database"]},
        INSTALLED_APPS=["django_convstore"],
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()
    from django.db import connections

    from django_convstore import create_store

    store = create_store(
        {
            "BACKEND": "django_convstore.backends.database.DatabaseStore",
            "NAMESPACE": job["namespace"],
        }
    )
    print("ready", flush=True)
    go = Path(job["go"])
    deadline = time.monotonic() + 60
    while not go.exists():
        if time.monotonic() > deadline:
            return 2
        time.sleep(0.005)
    for number in range(job["appends"]):
        store.append(job["conversation_id"], batch(job["worker"], number))
    connections.close_all()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
