"""A writer process for the database backend's concurrency tests.

Run as ``python -m tests.database_worker '<json>'``: it sets Django up on its
own (the given database as ``default``), prints ``ready``, then works in the
job's ``mode``:

* ``append``: waits for the ``go`` file, then appends ``appends`` batches of 1
  to 3 messages to one conversation, each message naming the writer, batch and
  index (``"<worker>:<batch>:<index>"``);
* ``overlap``: like ``append``, but writers ``2k`` and ``2k + 1`` send the very
  same messages (same ids), so every id arrives twice;
* ``retry``: appends one message per call, retrying a call that failed with
  ``BackendUnavailableError`` (the same message, so the retry is idempotent),
  and prints ``ack <id>`` once an append returned;
* ``race``: for each of ``rounds`` rounds, prints ``ready <round>``, waits for a
  line on stdin, then either creates ``race-<round>`` for owner ``a`` or saves
  it for owner ``b`` (``role``), and prints the outcome.
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


def _wait_for(go: Path) -> bool:
    deadline = time.monotonic() + 120
    while not go.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


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
    from django_convstore.exceptions import BackendUnavailableError, OwnerMismatchError

    store = create_store(
        {
            "BACKEND": "django_convstore.backends.database.DatabaseStore",
            "NAMESPACE": job["namespace"],
        }
    )
    mode = job.get("mode", "append")
    print("ready", flush=True)
    if mode == "race":
        for number in range(job["rounds"]):
            print(f"ready {number}", flush=True)
            sys.stdin.readline()
            cid = f"race-{number}"
            if job["role"] == "a":
                created = store.create(
                    cid, [{"role": "user", "content": "a", "id": "a"}], owner="a"
                )
                print("created" if created is not None else "none", flush=True)
            else:
                try:
                    store.save(cid, [{"role": "user", "content": "b", "id": "b"}], owner="b")
                except OwnerMismatchError:
                    print("refused", flush=True)
                else:
                    print("saved", flush=True)
        connections.close_all()
        return 0
    if not _wait_for(Path(job["go"])):
        return 2
    worker = job["worker"]
    for number in range(job["appends"]):
        if mode == "retry":
            message = {
                "role": "user",
                "content": f"{worker}:{number}",
                "id": f"w{worker}-{number}",
            }
            while True:
                try:
                    store.append(job["conversation_id"], [message])
                except BackendUnavailableError:
                    time.sleep(0.01)
                    continue
                break
            print(f"ack {message['id']}", flush=True)
            continue
        sender = worker // 2 if mode == "overlap" else worker
        store.append(job["conversation_id"], batch(sender, number))
    connections.close_all()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
