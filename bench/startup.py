"""Start-up time of light commands, before and after the lazy-import work, in one run (issue 7).

Measures with hyperfine (Debian package ``hyperfine``) ``email-service --help`` and ``email-service token ...``
for the source tree of ``--baseline`` (default: where this branch left ``main``, ``git merge-base HEAD main``,
extracted with ``git archive``, so that it runs with this environment's packages) and for this checkout,
both through the same interpreter and virtual environment (``python -m email_service.cli``; the baseline's
``src`` is put first on ``PYTHONPATH``), plus the installed console script of this checkout.  Prints mean ±
standard deviation and the ratio to the baseline; writes ``bench/results/startup.json``.  Run::

    uv run python bench/startup.py [--baseline REF] [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKEN_ARGS = "token --tenant 550e8400-e29b-41d4-a716-446655440000 --user 6ba7b810-9dad-11d1-80b4-00c04fd430c8"


def _extract(ref: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default=None, help="git ref of the 'before' tree (default: merge-base with main)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/startup.json")
    args = parser.parse_args()
    if args.baseline is None:
        merge_base = subprocess.run(
            ["git", "-C", str(ROOT), "merge-base", "HEAD", "main"], capture_output=True, text=True
        )
        args.baseline = merge_base.stdout.strip()[:10]
    if shutil.which("hyperfine") is None:
        print("hyperfine is not installed (apt-get install hyperfine)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="email-service-startup-"))
    try:
        baseline_src = _extract(args.baseline, work)
        data_dir = work / "instance"
        python = sys.executable
        script = Path(python).with_name("email-service")
        commands = {
            f"help ({args.baseline})": f"PYTHONPATH={baseline_src} {python} -m email_service.cli --help",
            "help (this tree)": f"{python} -m email_service.cli --help",
            "help (console script)": f"{script} --help",
            f"token ({args.baseline})": f"PYTHONPATH={baseline_src} {python} -m email_service.cli {TOKEN_ARGS}",
            "token (this tree)": f"{python} -m email_service.cli {TOKEN_ARGS}",
            "token (console script)": f"{script} {TOKEN_ARGS}",
        }
        exported = work / "hyperfine.json"
        hyperfine = ["hyperfine", "--warmup", "3", "--runs", str(args.runs), "--export-json", str(exported), "-N"]
        for name, command in commands.items():
            hyperfine += ["-n", name, f"env EMAIL_SERVICE_DATA_DIR={data_dir} {command}"]
        subprocess.run(hyperfine, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": ""})
        # (a failing command, e.g. a baseline needing packages this environment lacks, stops hyperfine: see stderr)
        results = {r["command"]: r for r in json.loads(exported.read_text())["results"]}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    for name in commands:
        kind = name.split()[0]
        baseline = results[f"{kind} ({args.baseline})"]["mean"]
        mean, stddev = results[name]["mean"], results[name]["stddev"]
        rows.append({"command": name, "mean_s": mean, "stddev_s": stddev, "x_baseline": mean / baseline})
    print(f"{'command':<26} {'mean':>9} {'± sd':>8} {'x before':>9}")
    for row in rows:
        print(f"{row['command']:<26} {row['mean_s']:>8.3f}s {row['stddev_s']:>7.3f}s {row['x_baseline']:>9.2f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"baseline": args.baseline, "runs": args.runs, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
