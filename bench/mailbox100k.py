"""A mirrored mailbox of N messages written straight into the database through the store functions every writer
uses (:func:`message_rows` / :func:`insert_rows`: threads and search index included), without IMAP: shared by
``bench/search.py`` and ``bench/api_latency.py``.

One folder (INBOX) of ``count`` messages: subjects and bodies drawn from a Zipf-like vocabulary (common and rare
words), 200 senders, every 3rd message a reply (References) to an earlier one, every 10th with a PDF attachment,
a third unread, 5 % flagged, one message a minute from 2025-01-01.
"""

from __future__ import annotations

import datetime as dt
import random
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.sync_throughput import bench_settings

from email_service.models import EmailFolder, folder_counts_delta
from email_service.security.tokens import Principal
from email_service.services import accounts
from email_service.services.context import ServiceContext, build_context
from email_service.services.search_index import refresh_statistics
from email_service.sync.store import insert_rows, message_rows

EPOCH = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
COMMON = ["meeting", "budget", "report", "project", "review", "update", "team", "schedule", "client", "invoice"]
RARE = ["zeppelin", "quokka", "marmalade", "obsidian", "tundra", "xylophone", "gazebo", "lantern"]
_SYLLABLES = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "ve", "da", "zu", "fe"]


def vocabulary(rng: random.Random, size: int = 3000) -> list[str]:
    words = {"".join(rng.choices(_SYLLABLES, k=rng.randint(2, 4))) for _ in range(size * 2)}
    return sorted(words)[:size]


@dataclass
class Mailbox:
    """A built mailbox: its service context, owner, account and INBOX."""

    ctx: ServiceContext
    principal: Principal
    account_id: uuid.UUID
    folder_id: uuid.UUID
    dropped: str | None
    admin_url: str


def messages(count: int, seed: int = 11) -> Iterator[tuple[bytes, tuple[str, ...]]]:
    """``(raw, flags)`` of the mailbox's messages, oldest first."""
    rng = random.Random(seed)
    vocab = vocabulary(rng)
    weights = [1 / (rank + 1) for rank in range(len(vocab))]
    ids: list[str] = []
    for index in range(count):
        message = EmailMessage()
        sender = index % 200
        message["From"] = f"Sender {sender} <sender{sender}@example{sender % 7}.com>"
        message["To"] = f"Bench User <bench@example.com>, Peer {index % 50} <peer{index % 50}@example.org>"
        words = [*rng.choices(vocab, weights, k=5), rng.choice(COMMON)]
        if index % 1000 == 0:
            words.append(rng.choice(RARE))
        message["Subject"] = " ".join(words)
        message["Date"] = format_datetime(EPOCH + dt.timedelta(minutes=index))
        message_id = f"m{index}.{seed}@bench.example"
        message["Message-ID"] = f"<{message_id}>"
        if index % 3 == 0 and ids:
            parent = ids[rng.randrange(max(0, len(ids) - 300), len(ids))]
            message["In-Reply-To"] = f"<{parent}>"
            message["References"] = f"<{parent}>"
        ids.append(message_id)
        body = rng.choices(vocab, weights, k=rng.randint(60, 250)) + rng.choices(COMMON, k=5)
        if index % 500 == 0:
            body.append(rng.choice(RARE))
        message.set_content(" ".join(body))
        if index % 10 == 0:
            message.add_attachment(b"%PDF-1.4\n" + bytes(200), maintype="application", subtype="pdf",
                                   filename=f"report-{index}.pdf")  # fmt: skip
        flags = tuple(f for f, on in (("\\Seen", index % 3 != 0), ("\\Flagged", index % 20 == 0)) if on)
        yield bytes(message), flags


def build(workdir: Path, database: str, admin_url: str, count: int, batch: int = 1000) -> Mailbox:
    """Fresh database, one account and INBOX, ``count`` messages stored a batch per transaction; statistics
    refreshed at the end (as a bulk sync does)."""
    settings, dropped = bench_settings(workdir, database, admin_url, RATE_LIMIT="1000000 per minute")
    ctx = build_context(settings)
    principal = Principal(uuid.uuid4(), uuid.uuid4(), "user")
    fields = {"account_name": "bench", "email_address": "bench@example.com", "protocol": "imap",
              "hostname": "127.0.0.1", "port": 1, "encryption": "none", "username": "bench",
              "is_sync_enabled": False}  # fmt: skip
    account = accounts.create_account(ctx, principal=principal, password="x", fields=fields)
    folder_id = uuid.uuid4()
    with ctx.db.tenant_session(principal.tenant_id) as session:
        session.add(EmailFolder(id=folder_id, tenant_id=principal.tenant_id, account_id=account.id, name="INBOX",
                                type="inbox", attributes=[]))  # fmt: skip
    started = time.perf_counter()
    rows: list[dict[str, object]] = []
    parts: list[dict[str, object]] = []
    for uid, (raw, flags) in enumerate(messages(count), start=1):
        row, attachment_rows = message_rows(raw, identity={"uid": uid, "uidvalidity": 1}, tenant_id=principal.tenant_id,
                                            account_id=account.id, folder_id=folder_id, flags=flags)  # fmt: skip
        rows.append(row)
        parts.extend(attachment_rows)
        if len(rows) >= batch:
            _store(ctx, principal, folder_id, rows, parts)
            rows, parts = [], []
    _store(ctx, principal, folder_id, rows, parts)
    with ctx.db.tenant_session(principal.tenant_id) as session:
        refresh_statistics(session)
    print(f"  {database}: {count} messages stored in {time.perf_counter() - started:.0f} s")
    return Mailbox(ctx, principal, account.id, folder_id, dropped, admin_url)


def _store(
    ctx: ServiceContext,
    principal: Principal,
    folder_id: uuid.UUID,
    rows: list,
    parts: list,  # type: ignore[type-arg]
) -> None:
    if not rows:
        return
    unread = sum(1 for r in rows if not r["is_read"])
    with ctx.db.tenant_session(principal.tenant_id) as session:
        insert_rows(session, rows, parts)
        session.execute(folder_counts_delta(folder_id, total=len(rows), unread=unread))


def close(mailbox: Mailbox) -> None:
    from bench.sync_throughput import _drop_postgres

    mailbox.ctx.db.dispose()
    if mailbox.dropped:
        _drop_postgres(mailbox.admin_url, mailbox.dropped)
