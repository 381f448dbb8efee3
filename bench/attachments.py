"""Attachment benchmark: downloads and uploads through the real server, and where mirrored attachments should live.

    uv run python bench/attachments.py [--size-mb 25] [--rounds 7] [--parallel 10] [--mirror 3000]
                                       [--servers waitress,gunicorn]

Part 1 starts the API in a child process, once per ``--servers`` entry -- ``waitress`` (``email-service serve``, the
embedded default) and ``gunicorn`` (``serve_gunicorn`` as production runs it: one gthread worker, sendfile; same
embedded settings, SQLite and filesystem blobs, so only the HTTP server differs) -- and for each, in the same run:

* uploads a ``--size-mb`` file to a draft (multipart, streamed from memory by http.client): seconds and MB/s;
* downloads it ``--rounds`` times through the API, interleaved with two references read by the same client code
  (256 KiB ``readinto``): the same blob file read from disk (page cache warm: a memory copy), the same file read
  with ``O_DIRECT`` (from the device, past the page cache; 1 MiB pieces), and the same file sent
  by the kernel (``socket.sendfile``) from a bare TCP server in another process with a minimal HTTP header (the
  loopback transport's ceiling, no application): MB/s of each and the API's ratio to both (goal: API >= 0.5 x disk);
* runs ``--parallel`` downloads at once while sampling the resident memory (``VmRSS``) of the server's process
  tree every 5 ms: before and at peak (goal: flat, under +20 MB).

Part 2 (``--mirror N``, no network) stores N generated messages with one ~``--part-kb`` attachment each as a
sync stores them (parse, raw blob, rows), then with each part also decoded into the blob store ("extract at
sync"): seconds and bytes on disk of both; then the cost of a first download of a part decoded on demand from
its raw message against a download of an already decoded one.

Prints tables and writes ``bench/results/attachments.json``.  Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import mmap
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from email_service.config import Settings  # noqa: E402
from email_service.models import EmailFolder, EmailMessage  # noqa: E402
from email_service.protocols.mime.parse import attachment_bytes  # noqa: E402
from email_service.services.context import build_context  # noqa: E402
from email_service.storage.blobs import FilesystemBlobStore  # noqa: E402
from email_service.sync.store import message_rows  # noqa: E402

MB = 1024 * 1024
CHUNK = 256 * 1024


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_kb(pid: int) -> int:
    """Resident kB of process ``pid`` and all its descendants (gunicorn: the master and its worker)."""
    total = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:  # the process ended
        return total
    return total + sum(_rss_kb(int(child)) for child in children)


#: The production server's code path with embedded settings: ``serve_gunicorn`` with one worker (the in-process job
#: runner of the embedded mode must not run twice) of 16 threads, the app built in the worker.
_GUNICORN = """
import os, sys
from email_service.cli import _build_app, _prepare_database
from email_service.config import Settings
from email_service.server import listen, serve_gunicorn
settings = Settings.from_env()
_prepare_database(settings)
sys.exit(serve_gunicorn(settings, lambda: _build_app(settings), listen("127.0.0.1", int(sys.argv[1])), threads=16))
"""

#: A bare HTTP/1.0 server: reads a request, answers with the file through ``socket.sendfile`` (no application).
_SENDFILE = """
import os, socket, sys
path, server = sys.argv[1], socket.create_server(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
size = os.path.getsize(path)
while True:
    connection, _ = server.accept()
    with connection, open(path, "rb") as handle:
        connection.recv(65536)
        connection.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % size)
        connection.sendfile(handle)
"""


class Server:
    """``email-service serve`` in a child process with its own data folder."""

    def __init__(self, data_dir: Path, kind: str) -> None:
        self.port = _free_port()
        self.env = {**os.environ, "EMAIL_SERVICE_DATA_DIR": str(data_dir), "SCHEDULER_ENABLED": "false",
                    "RATE_LIMIT": "100000 per minute", "LOG_LEVEL": "WARNING", "JWT_SECRET_KEY": "b" * 40,
                    "WEB_CONCURRENCY": "1"}  # fmt: skip
        command = [sys.executable, "-m", "email_service.cli", "serve", "--port", str(self.port), "--threads", "16"]
        if kind == "gunicorn":
            command = [sys.executable, "-c", _GUNICORN, str(self.port)]
        self.process = subprocess.Popen(
            command,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("server did not start")

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
            return response.status, data
        finally:
            connection.close()

    def download(self, path: str, headers: dict[str, str]) -> int:
        """Download ``path`` into a reused buffer; return the byte count."""
        return _download(self.port, path, headers)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _download(port: int, path: str, headers: dict[str, str]) -> int:
    """GET ``path`` into a reused 256 KiB buffer (the same client for the API and the bare sendfile server)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    buffer = bytearray(CHUNK)
    total = 0
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        assert response.status == 200, response.status
        while count := response.readinto(buffer):
            total += count
    finally:
        connection.close()
    return total


def _read_file(path: Path) -> int:
    total = 0
    with path.open("rb") as handle:
        buffer = bytearray(CHUNK)
        while count := handle.readinto(buffer):
            total += count
    return total


def _read_device(path: Path) -> int:
    """Read ``path`` with ``O_DIRECT`` (from the device, past the page cache) in 1 MiB aligned pieces."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECT)
    buffer = mmap.mmap(-1, 1024 * 1024)  # page-aligned, as O_DIRECT needs
    total = 0
    try:
        while count := os.readv(descriptor, [buffer]):
            total += count
    finally:
        os.close(descriptor)
        buffer.close()
    return total


def _median_rate(size: int, seconds: list[float]) -> float:
    return size / MB / sorted(seconds)[len(seconds) // 2]


def _timed(call: Any, *args: Any) -> float:
    started = time.perf_counter()
    call(*args)
    return time.perf_counter() - started


def _multipart(data: bytes, filename: str) -> tuple[list[bytes], str, int]:
    boundary = secrets.token_hex(16)
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()  # fmt: skip
    tail = f"\r\n--{boundary}--\r\n".encode()
    view = memoryview(data)
    pieces = [head, *(bytes(view[i : i + CHUNK]) for i in range(0, len(data), CHUNK)), tail]
    return pieces, f"multipart/form-data; boundary={boundary}", len(head) + len(data) + len(tail)


def _setup(server: Server) -> tuple[dict[str, str], Any, Any]:
    """A tenant, an account and a draft on ``server``: (auth headers, draft id, service context)."""
    tenant, user = str(uuid.uuid4()), str(uuid.uuid4())
    headers = {"X-Tenant-ID": tenant, "X-User-ID": user}
    account = {"accountName": "b", "emailAddress": "b@example.test", "protocol": "imap",
               "hostname": "127.0.0.1", "port": 1, "encryption": "none", "username": "b", "password": "p",
               "isSyncEnabled": False}  # fmt: skip
    status, body = server.request(
        "POST", "/api/v1/accounts", json.dumps(account), {**headers, "Content-Type": "application/json"}
    )
    assert status == 201, body
    account_id = uuid.UUID(json.loads(body)["id"])
    settings = Settings.from_env({k: v for k, v in server.env.items() if k != "FLASK_ENV"})
    ctx = build_context(settings)
    draft_id = uuid.uuid4()
    with ctx.db.tenant_session(uuid.UUID(tenant)) as session:
        folder = EmailFolder(id=uuid.uuid4(), tenant_id=uuid.UUID(tenant), account_id=account_id, name="Drafts",
                             type="drafts", attributes=[])  # fmt: skip
        session.add(folder)
        session.flush()
        session.add(EmailMessage(id=draft_id, tenant_id=uuid.UUID(tenant), account_id=account_id,
                                 folder_id=folder.id, subject="bench", is_draft=True))  # fmt: skip
    return headers, draft_id, ctx


def _peak_rss(server: Server, parallel: int, url: str, headers: dict[str, str]) -> tuple[int, int, float]:
    """(RSS kB before, peak RSS kB, seconds) of ``parallel`` simultaneous downloads of ``url``."""
    baseline = _rss_kb(server.process.pid)
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_kb(server.process.pid))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    workers = [threading.Thread(target=server.download, args=(url, headers)) for _ in range(parallel)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    return baseline, peak, seconds


def api_part(kind: str, size_mb: int, rounds: int, parallel: int) -> dict[str, Any]:
    """Part 1 for one HTTP server ``kind``: upload, download vs the references, memory during parallel downloads."""
    data_dir = Path(tempfile.mkdtemp(prefix="bench-attachments-"))
    server = Server(data_dir, kind)
    reference = None
    try:
        headers, draft_id, ctx = _setup(server)
        payload = b"%PDF-1.4\n" + os.urandom(size_mb * MB - 9)
        pieces, content_type, length = _multipart(payload, "bench.pdf")
        started = time.perf_counter()
        status, body = server.request(
            "POST", f"/api/v1/messages/{draft_id}/attachments", iter(pieces),
            {**headers, "Content-Type": content_type, "Content-Length": str(length)},
        )  # fmt: skip
        upload_seconds = time.perf_counter() - started
        assert status == 201, body
        created = json.loads(body)
        blob = data_dir / "blobs" / headers["X-Tenant-ID"] / created["contentHash"][:2] / created["contentHash"]
        reference = subprocess.Popen([sys.executable, "-c", _SENDFILE, str(blob)], stdout=subprocess.PIPE, text=True)
        assert reference.stdout is not None
        reference_port = int(reference.stdout.readline())
        times: dict[str, list[float]] = {"api": [], "disk": [], "sendfile": [], "device": []}
        for _ in range(rounds):  # interleaved, so all see the same machine load
            times["api"].append(_timed(server.download, created["url"], headers))
            times["disk"].append(_timed(_read_file, blob))
            times["sendfile"].append(_timed(_download, reference_port, "/", {}))
            times["device"].append(_timed(_read_device, blob))
        rates = {name: _median_rate(len(payload), seconds) for name, seconds in times.items()}
        baseline, peak, parallel_seconds = _peak_rss(server, parallel, created["url"], headers)
        ctx.db.dispose()
        return {
            "server": kind,
            "file_mb": size_mb,
            "upload_seconds": round(upload_seconds, 3),
            "upload_mb_s": round(len(payload) / MB / upload_seconds, 1),
            "download_api_mb_s": round(rates["api"], 1),
            "read_disk_mb_s": round(rates["disk"], 1),
            "read_device_mb_s": round(rates["device"], 1),
            "bare_sendfile_mb_s": round(rates["sendfile"], 1),
            "api_over_disk": round(rates["api"] / rates["disk"], 3),
            "api_over_device": round(rates["api"] / rates["device"], 3),
            "api_over_bare_sendfile": round(rates["api"] / rates["sendfile"], 3),
            "bare_sendfile_over_disk": round(rates["sendfile"] / rates["disk"], 3),
            "parallel_downloads": parallel,
            "parallel_seconds": round(parallel_seconds, 3),
            "parallel_mb_s": round(parallel * len(payload) / MB / parallel_seconds, 1),
            "server_rss_before_mb": round(baseline / 1024, 1),
            "server_rss_peak_mb": round(peak / 1024, 1),
            "server_rss_growth_mb": round((peak - baseline) / 1024, 1),
        }
    finally:
        if reference is not None:
            reference.kill()
            reference.wait()
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _message(index: int, part: bytes) -> bytes:
    encoded = base64.encodebytes(part).replace(b"\n", b"\r\n")
    return (
        (
            f"From: a{index}@example.test\r\nTo: b@example.test\r\nSubject: report {index}\r\n"
            f"Message-ID: <m{index}@example.test>\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\n'
            f"Report {index} attached.\r\n--x\r\nContent-Type: application/pdf\r\n"
            f'Content-Disposition: attachment; filename="r{index}.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        ).encode()
        + encoded
        + b"--x--\r\n"
    )


def _disk_bytes(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def mirror_part(count: int, part_kb: int) -> dict[str, Any]:
    """Part 2: decode attachments at sync vs on first download (storage and time), without the network."""
    work = Path(tempfile.mkdtemp(prefix="bench-mirror-"))
    tenant, account, folder = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    raws = [_message(i, b"%PDF-1.4\n" + os.urandom(part_kb * 1024)) for i in range(count)]
    results: dict[str, Any] = {"messages": count, "part_kb": part_kb}
    for mode in ("raw_only", "extract_at_sync"):
        store = FilesystemBlobStore(work / mode)
        started = time.perf_counter()
        for uid, raw in enumerate(raws, start=1):
            row, parts = message_rows(
                raw,
                identity={"uid": uid, "uidvalidity": 1},
                tenant_id=tenant,
                account_id=account,
                folder_id=folder,
                received_at=0,
                size=len(raw),
            )
            store.put(str(tenant), raw, sha256=row["raw_sha256"])
            if mode == "extract_at_sync":
                for part in parts:
                    store.put(str(tenant), attachment_bytes(raw, part["part_id"])[1], sha256=part["content_hash"])
        seconds = time.perf_counter() - started
        disk_mb = round(_disk_bytes(work / mode) / MB, 1)
        results[mode] = {"seconds": round(seconds, 3), "msg_s": round(count / seconds), "disk_mb": disk_mb}
    store = FilesystemBlobStore(work / "raw_only")
    sample = raws[: min(200, count)]
    decoded = []
    started = time.perf_counter()
    for raw in sample:  # first download: decode the part from the raw message, store it, stream it
        data = attachment_bytes(store.get(str(tenant), hashlib.sha256(raw).hexdigest()), "2")[1]
        decoded.append(store.put(str(tenant), data))
        for _ in store.iter_chunks(str(tenant), decoded[-1]):
            pass
    first = (time.perf_counter() - started) / len(sample)
    started = time.perf_counter()
    for digest in decoded:  # later downloads: stream the decoded blob
        for _ in store.iter_chunks(str(tenant), digest):
            pass
    later = (time.perf_counter() - started) / len(sample)
    results["first_download_ms"] = round(first * 1000, 3)
    results["later_download_ms"] = round(later * 1000, 3)
    shutil.rmtree(work, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--servers", default="waitress,gunicorn", help="comma-separated: waitress, gunicorn")
    parser.add_argument("--parallel", type=int, default=10)
    parser.add_argument("--mirror", type=int, default=3000, help="messages of part 2 (0: skip)")
    parser.add_argument("--part-kb", type=int, default=100)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "attachments.json")
    args = parser.parse_args()
    kinds = [kind.strip() for kind in args.servers.split(",") if kind.strip()]
    report: dict[str, Any] = {"api": [api_part(kind, args.size_mb, args.rounds, args.parallel) for kind in kinds]}
    print("\nPart 1: through the API (SQLite, filesystem blobs), one column per HTTP server")
    for key in report["api"][0]:
        print(f"  {key:24} " + " ".join(f"{run[key]!s:>12}" for run in report["api"]))
    if args.mirror:
        report["mirror"] = mirror_part(args.mirror, args.part_kb)
        mirror = report["mirror"]
        print(f"\nPart 2: {mirror['messages']} messages with a {mirror['part_kb']} KB attachment each")
        print(f"  {'mode':18} {'seconds':>8} {'msg/s':>7} {'disk MB':>8}")
        for mode in ("raw_only", "extract_at_sync"):
            row = mirror[mode]
            print(f"  {mode:18} {row['seconds']:>8} {row['msg_s']:>7} {row['disk_mb']:>8}")
        print(f"  first download (decode from raw + store): {mirror['first_download_ms']} ms a part")
        print(f"  later download (stream decoded blob):     {mirror['later_download_ms']} ms a part")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(f"\nwritten {args.output}")


if __name__ == "__main__":
    main()
