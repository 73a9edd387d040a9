"""Start the demo project the way ``make demo`` does, on a free port, for tests.

``demo_setup`` then ``runserver`` as subprocesses of this interpreter, with a
throw-away SQLite file; the server is stopped when the context exits.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANAGE = ROOT / "testproject" / "manage.py"


@dataclass(frozen=True)
class Demo:
    """A running demo: its base URL and what ``demo_setup`` printed."""

    url: str
    setup_output: str
    env: dict[str, str]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_env(workdir: Path, port: int) -> dict[str, str]:
    """The environment ``make demo`` would give the demo, with a private database."""
    env = {
        **os.environ,
        "DEMO_DB": str(workdir / "demo.sqlite3"),
        "DEMO_ADDR": f"127.0.0.1:{port}",
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
    }
    env.pop("REDIS_URL", None)
    return env


def run_setup(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``manage.py demo_setup`` as ``make demo`` runs it."""
    return subprocess.run(
        [sys.executable, str(MANAGE), "demo_setup"],
        env=env,
        cwd=MANAGE.parent,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@contextmanager
def running_demo(workdir: Path) -> Iterator[Demo]:
    """Set the demo up and serve it until the block ends."""
    port = free_port()
    env = demo_env(workdir, port)
    setup = run_setup(env)
    if setup.returncode != 0:
        raise RuntimeError(f"demo_setup failed:\n{setup.stdout}\n{setup.stderr}")
    log = (workdir / "runserver.log").open("w")
    server = subprocess.Popen(
        [sys.executable, str(MANAGE), "runserver", "--noreload", f"127.0.0.1:{port}"],
        env=env,
        cwd=MANAGE.parent,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/", timeout=5):
                    break
            except urllib.error.HTTPError:
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "the demo server did not come up:\n"
                        + (workdir / "runserver.log").read_text()
                    ) from None
                time.sleep(0.2)
        yield Demo(url=url, setup_output=setup.stdout, env=env)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()
