"""A search through the HTTP API, this checkout against another side by side (issue 11).

``bench/search.py`` times the search service; a request to ``GET .../messages/search`` also pays the request's own
work (authentication, the account's change-log ``state``, the JSON answer).  This starts one server (waitress, rate
limit lifted, ``bench/api_latency.Server``) per checkout on the same kept mailbox (``bench/api_latency.py
--mailboxes DIR``, ``DIR/<database>.json``) and sends the same request to each in turn, ``--repeat`` times per query
(which server goes first alternates), one at a time from this process; prints the median ms per checkout and the
ratio.  Before measuring, it checks that both servers answer every query with the same bytes.  Run::

    uv run python bench/search_api.py --mailboxes DIR --compare SRC [--database postgresql|sqlite] [--repeat 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import api_latency

from email_service.security.tokens import create_jwt_token

QUERIES = ["meeting", "has:attachment", '"budget review"', "(project OR client) from:example3 -invoice is:unread"]


def _get(url: str, token: str) -> tuple[float, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310 (local)
    started = time.perf_counter()
    with urllib.request.urlopen(request) as answer:  # noqa: S310 (local)
        body: bytes = answer.read()
    return (time.perf_counter() - started) * 1000, body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mailboxes", type=Path, required=True)
    parser.add_argument("--compare", type=Path, required=True, help="the other checkout (its src/ is used)")
    parser.add_argument("--database", default="postgresql", choices=["sqlite", "postgresql"])
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    mailbox = api_latency.kept_mailbox(args.mailboxes, args.database, args.postgres_url, 0)
    token = create_jwt_token(mailbox.ctx.tokens, tenant_id=mailbox.principal.tenant_id,
                             user_id=mailbox.principal.user_id)  # fmt: skip
    servers = {"other": api_latency.Server(mailbox, args.compare), "this": api_latency.Server(mailbox, None)}
    try:
        print(f"{'query':<56}{'other p50':>10}{'this p50':>10}{'ratio':>7}   ({args.database}, median ms)")
        for query in QUERIES:
            path = f"/api/v1/accounts/{mailbox.account_id}/messages/search?" + urllib.parse.urlencode({"q": query})
            bodies = {name: _get(server.base + path, token)[1] for name, server in servers.items()}
            assert bodies["this"] == bodies["other"], f"different answers to {query!r}"
            times: dict[str, list[float]] = {name: [] for name in servers}
            for index in range(args.repeat + 5):  # 5 warm-ups
                for name in list(servers) if index % 2 else list(servers)[::-1]:
                    elapsed = _get(servers[name].base + path, token)[0]
                    if index >= 5:
                        times[name].append(elapsed)
            other, this = statistics.median(times["other"]), statistics.median(times["this"])
            print(f"{query:<56}{other:>10.1f}{this:>10.1f}{this / other:>7.2f}")
    finally:
        for server in servers.values():
            server.stop()
        mailbox.ctx.db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
