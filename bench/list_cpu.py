"""CPU per message-list request in the process (Flask test client), on a kept 100,000-message mailbox (issue 11).

Reads the mailbox that ``bench/api_latency.py --mailboxes DIR`` keeps (``DIR/<database>.json``), builds the app of
the checkout it runs in (rate limit lifted), and measures ``time.process_time`` per request for the first page of
the folder, ``isRead=false``, the cursor 90 % deep, one account (the floor of an authenticated request) and
``/health``: ``--rounds`` rounds of 20 requests each after a warm-up; prints the best and the median round, in ms.
To compare, run this file with each checkout's environment, alternating (``uv run python bench/list_cpu.py DIR
sqlite``, then ``cd OTHER && uv run python THIS/bench/list_cpu.py OTHER_DIR sqlite``: the app is imported from the
checkout whose environment runs it).  ``--profile
first|isread|cursor`` prints a cProfile of 300 such requests instead.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.api_latency import _ENV_KEYS, _cursor_at, kept_mailbox
from bench.mailbox100k import Mailbox
from flask import Flask

from email_service.app import create_app
from email_service.config import Settings
from email_service.security.tokens import create_jwt_token
from email_service.services.context import build_context


def app_on_kept_mailbox(mailboxes: Path, database: str) -> tuple[Flask, Mailbox, dict[str, Any], dict[str, str]]:
    """The app of the checkout whose environment runs this (rate limit lifted) on the mailbox ``bench/api_latency.py
    --mailboxes`` keeps in ``mailboxes`` for ``database``; the mailbox, its saved ``<database>.json`` and the
    ``Authorization`` header of its owner."""
    info = json.loads((mailboxes / f"{database}.json").read_text())
    kept = kept_mailbox(mailboxes, database, "postgresql://postgres@127.0.0.1:5432/postgres", 0)
    kept.ctx.db.dispose()
    env = {**{key: info[key] for key in _ENV_KEYS}, "RATE_LIMIT": "100000000 per minute", "LOG_LEVEL": "WARNING"}
    app = create_app(context=build_context(Settings.from_env(env)))
    token = create_jwt_token(kept.ctx.tokens, tenant_id=kept.principal.tenant_id, user_id=kept.principal.user_id)
    return app, kept, info, {"Authorization": f"Bearer {token}"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mailboxes", type=Path, help="the --mailboxes folder of bench/api_latency.py")
    parser.add_argument("database", choices=["sqlite", "postgresql"])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--profile", choices=["first", "isread", "cursor"])
    args = parser.parse_args()
    app, kept, info, headers = app_on_kept_mailbox(args.mailboxes, args.database)
    client = app.test_client()
    listing = f"/api/v1/accounts/{kept.account_id}/messages?folderId={kept.folder_id}&limit=50"
    urls = {
        "first": listing,
        "isread": f"{listing}&isRead=false",
        "cursor": f"{listing}&cursor={_cursor_at(kept, int(info['count']) * 9 // 10)}",
        "account": f"/api/v1/accounts/{kept.account_id}",
        "health": "/health",
    }
    for _ in range(30):
        for url in urls.values():
            assert client.get(url, headers=headers).status_code == 200, url
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(300):
            client.get(urls[args.profile], headers=headers)
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)
        return 0
    rounds: dict[str, list[float]] = {name: [] for name in urls}
    for _ in range(args.rounds):
        for name, url in urls.items():
            started = time.process_time()
            for _ in range(20):
                client.get(url, headers=headers)
            rounds[name].append((time.process_time() - started) / 20 * 1000)
    for name, values in rounds.items():
        values.sort()
        print(f"{name:<8} best {values[0]:.2f} ms, median {values[len(values) // 2]:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
