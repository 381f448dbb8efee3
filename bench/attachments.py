"""Attachment benchmark: downloads and uploads through the real server, and where mirrored attachments should live.

    uv run python bench/attachments.py [--size-mb 25] [--rounds 5] [--parallel 10] [--mirror 3000]

Part 1 starts ``email-service serve`` (waitress, SQLite, filesystem blobs) in a child process and, in the same run:

* uploads a ``--size-mb`` file to a draft (multipart, streamed from memory by http.client): seconds and MB/s;
* downloads it ``--rounds`` times through the API and reads the same blob file from disk as many times, in
  256 KiB pieces: MB/s of each and their ratio (goal: API >= 0.5 x disk);
* runs ``--parallel`` downloads at once while sampling the server's resident memory (``VmRSS``) every 5 ms:
  the server's RSS before and at peak (goal: flat, under +20 MB).

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
from email_service.protocols.imap import FetchedMessage  # noqa: E402
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
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Server:
    """``email-service serve`` in a child process with its own data folder."""

    def __init__(self, data_dir: Path) -> None:
        self.port = _free_port()
        self.env = {**os.environ, "EMAIL_SERVICE_DATA_DIR": str(data_dir), "SCHEDULER_ENABLED": "false",
                    "RATE_LIMIT": "100000 per minute", "LOG_LEVEL": "WARNING", "JWT_SECRET_KEY": "b" * 40}  # fmt: skip
        self.process = subprocess.Popen(
            [sys.executable, "-m", "email_service.cli", "serve", "--port", str(self.port), "--threads", "16"],
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
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
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

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _multipart(data: bytes, filename: str) -> tuple[list[bytes], str, int]:
    boundary = secrets.token_hex(16)
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()  # fmt: skip
    tail = f"\r\n--{boundary}--\r\n".encode()
    view = memoryview(data)
    pieces = [head, *(bytes(view[i : i + CHUNK]) for i in range(0, len(data), CHUNK)), tail]
    return pieces, f"multipart/form-data; boundary={boundary}", len(head) + len(data) + len(tail)


def api_part(size_mb: int, rounds: int, parallel: int) -> dict[str, Any]:
    """Part 1: upload, download vs disk, memory during parallel downloads."""
    data_dir = Path(tempfile.mkdtemp(prefix="bench-attachments-"))
    server = Server(data_dir)
    try:
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
        blob = data_dir / "blobs" / tenant / created["contentHash"][:2] / created["contentHash"]

        api_times, disk_times = [], []
        for _ in range(rounds):  # interleaved, so both see the same machine load
            started = time.perf_counter()
            assert server.download(created["url"], headers) == len(payload)
            api_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            with blob.open("rb") as handle:
                buffer = bytearray(CHUNK)
                while handle.readinto(buffer):
                    pass
            disk_times.append(time.perf_counter() - started)
        api_rate = len(payload) / MB / sorted(api_times)[len(api_times) // 2]
        disk_rate = len(payload) / MB / sorted(disk_times)[len(disk_times) // 2]

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
        workers = [threading.Thread(target=server.download, args=(created["url"], headers)) for _ in range(parallel)]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        parallel_seconds = time.perf_counter() - started
        done.set()
        sampler.join()
        ctx.db.dispose()
        return {
            "file_mb": size_mb,
            "upload_seconds": round(upload_seconds, 3),
            "upload_mb_s": round(len(payload) / MB / upload_seconds, 1),
            "download_api_mb_s": round(api_rate, 1),
            "read_disk_mb_s": round(disk_rate, 1),
            "api_over_disk": round(api_rate / disk_rate, 3),
            "parallel_downloads": parallel,
            "parallel_seconds": round(parallel_seconds, 3),
            "parallel_mb_s": round(parallel * len(payload) / MB / parallel_seconds, 1),
            "server_rss_before_mb": round(baseline / 1024, 1),
            "server_rss_peak_mb": round(peak / 1024, 1),
            "server_rss_growth_mb": round((peak - baseline) / 1024, 1),
        }
    finally:
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
            fetched = FetchedMessage(uid=uid, flags=(), raw=raw, internaldate_ms=0, size=len(raw), modseq=None)
            row, parts = message_rows(fetched, tenant_id=tenant, account_id=account, folder_id=folder, uidvalidity=1)
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
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--parallel", type=int, default=10)
    parser.add_argument("--mirror", type=int, default=3000, help="messages of part 2 (0: skip)")
    parser.add_argument("--part-kb", type=int, default=100)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "attachments.json")
    args = parser.parse_args()
    report: dict[str, Any] = {"api": api_part(args.size_mb, args.rounds, args.parallel)}
    print("\nPart 1: through the API (email-service serve, waitress, filesystem blobs)")
    for key, value in report["api"].items():
        print(f"  {key:24} {value}")
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
