"""A private ClamAV daemon and a private S3 server (moto) for integration tests and benchmarks (DESIGN.md 10).

* :class:`Clamd` runs ``clamd`` (Debian ``clamav-daemon``) in the foreground with a private configuration on a
  Unix socket and a free loopback TCP port.  No signature download is possible here, so its
  ``DatabaseDirectory`` holds one custom body signature (``.ndb``) for the EICAR test file: detections are
  named ``Eicar-Test-Signature.UNOFFICIAL``.  Ready when ``PING`` answers ``PONG``.
* :class:`S3Server` runs moto's server mode (``ThreadedMotoServer``) on a free loopback port with one bucket.

Fixtures ``clamd`` and ``s3_server`` (session) skip without their peer unless
``EMAIL_SERVICE_REQUIRE_INTEGRATION=1`` makes them fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.dovecot import HOST, _free_ports, scratch_parent

#: The EICAR anti-virus test file (eicar.org), assembled here so that this source file is not itself flagged.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_SIGNATURE = "Eicar-Test-Signature.UNOFFICIAL"


def _require(binary: str | None, what: str, install: str) -> str:
    if binary is not None:
        return binary
    if os.environ.get("EMAIL_SERVICE_REQUIRE_INTEGRATION") == "1":
        pytest.fail(f"{what} not installed but EMAIL_SERVICE_REQUIRE_INTEGRATION=1: {install}", pytrace=False)
    pytest.skip(f"{what} not installed")


def clamd_binary() -> str | None:
    """Path of ``clamd`` (usually /usr/sbin, often not on PATH)."""
    found = shutil.which("clamd")
    return found or ("/usr/sbin/clamd" if os.access("/usr/sbin/clamd", os.X_OK) else None)


@dataclass
class Clamd:
    """A running private clamd: ``socket_path`` (Unix), ``host``/``port`` (TCP), ``base_dir``."""

    process: subprocess.Popen[bytes]
    base_dir: Path
    socket_path: str
    host: str
    port: int

    @classmethod
    def start(cls, binary: str) -> Clamd:
        """Write the configuration and the EICAR signature, start clamd, wait until it answers PING."""
        base = Path(tempfile.mkdtemp(prefix="clamd-", dir=scratch_parent()))
        (base / "db").mkdir()
        (base / "db" / "eicar.ndb").write_text(f"Eicar-Test-Signature:0:*:{EICAR.hex()}\n")
        [port] = _free_ports(1)
        socket_path = str(base / "clamd.sock")
        (base / "clamd.conf").write_text(
            f"Foreground yes\nDatabaseDirectory {base / 'db'}\nLocalSocket {socket_path}\nTCPSocket {port}\n"
            f"TCPAddr {HOST}\nLogFile {base / 'clamd.log'}\nPidFile {base / 'clamd.pid'}\n"
            "StreamMaxLength 40M\nMaxFileSize 40M\nMaxScanSize 100M\nUser root\n"
        )
        process = subprocess.Popen(
            [binary, "-c", str(base / "clamd.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        server = cls(process, base, socket_path, HOST, port)
        server._wait_ready()
        return server

    def ping(self) -> bool:
        """True when clamd answers PING on its Unix socket."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(2)
                sock.connect(self.socket_path)
                sock.sendall(b"zPING\0")
                return sock.recv(16).startswith(b"PONG")
        except OSError:
            return False

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.base_dir / "clamd.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"clamd exited with {self.process.returncode}: {log}")
            if self.ping():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("clamd did not answer PING within 60 s")

    def stop(self) -> None:
        """Stop clamd and remove its directory."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.base_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def clamd() -> Iterator[Clamd]:
    """Session-wide private clamd with the EICAR signature."""
    server = Clamd.start(_require(clamd_binary(), "clamd", "apt-get install -y clamav-daemon"))
    try:
        yield server
    finally:
        server.stop()


@dataclass
class S3Server:
    """moto in server mode: ``endpoint_url``, ``bucket``, and the dummy credentials boto3 is given."""

    server: Any
    endpoint_url: str
    bucket: str
    environment: dict[str, str]

    def client(self) -> Any:
        """A boto3 S3 client of this server."""
        import boto3

        return boto3.session.Session(
            aws_access_key_id=self.environment["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.environment["AWS_SECRET_ACCESS_KEY"],
            region_name=self.environment["AWS_DEFAULT_REGION"],
        ).client("s3", endpoint_url=self.endpoint_url)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """Session-wide moto S3 server with the bucket ``email-service-test``."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        _require(None, "moto[server]", "uv sync (dev dependencies)")
        raise
    [port] = _free_ports(1)
    server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
    server.start()
    environment = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    running = S3Server(server, f"http://{HOST}:{port}", "email-service-test", environment)
    running.client().create_bucket(Bucket=running.bucket)
    try:
        yield running
    finally:
        server.stop()
