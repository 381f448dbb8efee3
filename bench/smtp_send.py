"""SMTP sending throughput: pooled vs a new connection per message, beside a raw smtplib baseline, one run.

Starts ``python -m aiosmtpd`` with its ``Sink`` handler (accepts and discards) in a separate process on a free
loopback port, then sends ``--count`` messages of about ``--size`` bytes (plain text, unencrypted, no AUTH)
with:

* ``raw_smtplib``: one ``smtplib.SMTP`` connection, pre-built bytes, ``sendmail`` in a loop (network + server
  ceiling; no validation, no MIME building, no pool);
* ``pooled``: one :class:`SMTPProtocolHandler` whose pool keeps the connection (NOOP check per checkout);
* ``unpooled``: a new handler per message, closed after the send (TCP connect, greeting, EHLO and QUIT each
  time);
* ``pooled_prebuilt`` / ``unpooled_prebuilt``: the same two through ``send_built_message`` with one message
  built beforehand, so that the ratio shows the transport alone (building a message with ``email.policy``
  costs about as much as sending it on loopback).

Prints messages/second per mode and the ratios, and writes the figures as JSON (default
``bench/results/smtp_send.json``).  Timings are reported, never asserted (DESIGN.md section 11).  Run::

    uv run python bench/smtp_send.py [--count 1000] [--size 5000]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from email_service.protocols.mime.build import build_message
from email_service.protocols.net import HostPolicy
from email_service.protocols.smtp import SMTPDeliveryStatus, SMTPEncryption, SMTPProtocolHandler

HOST = "127.0.0.1"
SENDER = "Bench Sender <sender@bench.example>"
RECIPIENT = "bench@bench.example"
_WORD_LINES = (
    "mail sync server folder message client budget report meeting invoice project review team",
    "schedule quarter update draft note thread reply forward archive attachment inbox",
)
WORDS = tuple(word for line in _WORD_LINES for word in line.split())


def free_port() -> int:
    """A loopback port that was free a moment ago (the server binds it right after)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def start_server(port: int, timeout: float = 15.0) -> subprocess.Popen[bytes]:
    """Run aiosmtpd's Sink handler in its own process; return once it answers a greeting."""
    process = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink", "-l", f"{HOST}:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"aiosmtpd exited with status {process.returncode}")
        try:
            with smtplib.SMTP(HOST, port, local_hostname="bench.client", timeout=1) as probe:
                probe.noop()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"aiosmtpd did not answer on {HOST}:{port} within {timeout:g} s")


def body_text(size: int, seed: int = 7) -> str:
    """About ``size`` characters of words in lines of about 72 characters."""
    rng = random.Random(seed)
    lines, length = [], 0
    while length < size:
        line = " ".join(rng.choices(WORDS, k=10))
        lines.append(line)
        length += len(line) + 1
    return "\n".join(lines) + "\n"


def new_handler(port: int) -> SMTPProtocolHandler:
    return SMTPProtocolHandler(
        HOST,
        port,
        encryption=SMTPEncryption.NONE,
        from_address=SENDER,
        pool_size=1,
        timeout=10,
        local_hostname="bench.client",
        sleep=lambda delay: None,
        host_policy=HostPolicy.from_allowlist([HOST]),  # the in-process server on loopback
    )


def run_raw(port: int, count: int, body: str) -> int:
    raw = build_message(from_address=SENDER, to=[RECIPIENT], subject="raw", text_body=body).as_bytes()
    with smtplib.SMTP(HOST, port, local_hostname="bench.client", timeout=10) as conn:
        for _ in range(count):
            conn.sendmail("sender@bench.example", [RECIPIENT], raw)
    return len(raw)


def run_pooled(port: int, count: int, body: str) -> int:
    with new_handler(port) as handler:
        for index in range(count):
            result = handler.send_message([RECIPIENT], f"pooled {index}", text_body=body)
            if result.status is not SMTPDeliveryStatus.SUCCESS:
                raise RuntimeError(f"pooled send {index} failed: {result}")
        created = handler.pool.get_stats()["created"]
    return int(created)


def run_unpooled(port: int, count: int, body: str) -> int:
    for index in range(count):
        with new_handler(port) as handler:
            result = handler.send_message([RECIPIENT], f"unpooled {index}", text_body=body)
        if result.status is not SMTPDeliveryStatus.SUCCESS:
            raise RuntimeError(f"unpooled send {index} failed: {result}")
    return count


def run_pooled_prebuilt(port: int, count: int, body: str) -> int:
    message = build_message(from_address=SENDER, to=[RECIPIENT], subject="prebuilt", text_body=body)
    with new_handler(port) as handler:
        for index in range(count):
            result = handler.send_built_message(message, rcpt_tos=[RECIPIENT])
            if result.status is not SMTPDeliveryStatus.SUCCESS:
                raise RuntimeError(f"pooled prebuilt send {index} failed: {result}")
    return count


def run_unpooled_prebuilt(port: int, count: int, body: str) -> int:
    message = build_message(from_address=SENDER, to=[RECIPIENT], subject="prebuilt", text_body=body)
    for index in range(count):
        with new_handler(port) as handler:
            result = handler.send_built_message(message, rcpt_tos=[RECIPIENT])
        if result.status is not SMTPDeliveryStatus.SUCCESS:
            raise RuntimeError(f"unpooled prebuilt send {index} failed: {result}")
    return count


def timed(run: Callable[[int, int, str], int], port: int, count: int, body: str) -> tuple[float, int]:
    started = time.perf_counter()
    detail = run(port, count, body)
    return time.perf_counter() - started, detail


MODES: dict[str, Callable[[int, int, str], int]] = {
    "raw_smtplib": run_raw,
    "pooled": run_pooled,
    "unpooled": run_unpooled,
    "pooled_prebuilt": run_pooled_prebuilt,
    "unpooled_prebuilt": run_unpooled_prebuilt,
}


def summarise(count: int, seconds: dict[str, float], details: dict[str, int]) -> dict[str, Any]:
    """The JSON document: per-mode seconds, rates and ratios."""
    rates = {name: count / elapsed for name, elapsed in seconds.items()}
    return {
        "count": count,
        "message_bytes": details["raw_smtplib"],
        "python": platform.python_version(),
        "pooled_connections_opened": details["pooled"],
        "runs": {
            name: {
                "seconds": round(seconds[name], 3),
                "msgs_per_s": round(rate, 1),
                "ratio_to_unpooled": round(rate / rates["unpooled"], 2),
                "ratio_to_raw": round(rate / rates["raw_smtplib"], 3),
            }
            for name, rate in rates.items()
        },
        "pooled_over_unpooled": round(rates["pooled"] / rates["unpooled"], 2),
        "pooled_over_unpooled_prebuilt": round(rates["pooled_prebuilt"] / rates["unpooled_prebuilt"], 2),
    }


def print_table(results: dict[str, Any], port: int) -> None:
    print(f"SMTP send, {results['count']} messages of {results['message_bytes']} bytes, aiosmtpd Sink on {HOST}:{port}")
    print(f"{'mode':<18} {'seconds':>9} {'msgs/s':>9} {'x unpooled':>11} {'x raw':>7}")
    for name, run in results["runs"].items():
        print(
            f"{name:<18} {run['seconds']:>9.2f} {run['msgs_per_s']:>9.1f} {run['ratio_to_unpooled']:>11.2f} "
            f"{run['ratio_to_raw']:>7.3f}"
        )
    print(
        f"pooled / unpooled = {results['pooled_over_unpooled']:.2f}x with building, "
        f"{results['pooled_over_unpooled_prebuilt']:.2f}x transport only "
        f"(the pool opened {results['pooled_connections_opened']} connection(s))"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000, help="messages per mode (default 1000)")
    parser.add_argument("--size", type=int, default=5000, help="approximate body size in bytes (default 5000)")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "smtp_send.json"))
    args = parser.parse_args()

    body = body_text(args.size)
    port = free_port()
    server = start_server(port)
    seconds: dict[str, float] = {}
    details: dict[str, int] = {}
    try:
        for name, run in MODES.items():
            seconds[name], details[name] = timed(run, port, args.count, body)
    finally:
        server.terminate()
        server.wait(timeout=10)
    results = summarise(args.count, seconds, details)
    print_table(results, port)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {output}")


if __name__ == "__main__":
    main()
