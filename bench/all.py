"""``make bench``: run every benchmark, each in its own process, and write bench/results.json.

The machine may be shared: the load average before and after each run is recorded
with its figures, so a noisy number can be told from a regression.

    .venv/bin/python bench/all.py [--only scale,churn] [--out bench/results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ("burst", "scale", "churn", "plan", "storm", "ingest", "tenants")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(BENCHES))
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
    results: dict[str, object] = {"commit": commit, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                  "cpus": os.cpu_count()}
    failed = 0
    for name in args.only.split(","):
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        run = subprocess.run([sys.executable, str(HERE / f"{name}.py"), "--json"], capture_output=True, text=True)
        entry: dict[str, object] = {"seconds": round(time.monotonic() - started, 1),
                                    "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}
        try:
            entry["figures"] = json.loads(run.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            failed += 1
            entry["error"] = (run.stderr or run.stdout)[-2000:]
        results[name] = entry
        print(f"{name:7s} {'ok' if 'figures' in entry else 'FAILED'} in {entry['seconds']} s", flush=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
