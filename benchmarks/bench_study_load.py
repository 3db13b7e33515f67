"""The database's load per trial when workers share a study on PostgreSQL.

Starts a throwaway PostgreSQL (``tests/postgres.sh``; or uses ``$SPECTUNE_TEST_POSTGRES``),
creates a database, runs ``spectune worker SCENARIO --storage URL`` with N local workers
(a recommend study with its default settings: 30 trials of 600 requests), and reads
PostgreSQL's own statistics for that database (``pg_stat_database``: committed
transactions, rows returned / fetched / inserted / updated; ``pg_database_size``) before and
after. Prints them per trial, with the wall time and the trials each worker ran.

    .venv/bin/python benchmarks/bench_study_load.py --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STATS = (
    "xact_commit",
    "tup_returned",
    "tup_fetched",
    "tup_inserted",
    "tup_updated",
    "tup_deleted",
)


def stats(psycopg, url: str, db: str) -> dict[str, float]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            f"SELECT {', '.join(STATS)}, pg_database_size(%s) FROM pg_stat_database "
            "WHERE datname = %s",
            (db, db),
        ).fetchone()
    return dict(zip([*STATS, "bytes"], map(float, row), strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scenario", default=str(REPO / "examples" / "azure-conv-h100.yaml"))
    args = ap.parse_args()
    import psycopg

    pgdir = None
    base = os.environ.get("SPECTUNE_TEST_POSTGRES")
    if not base:
        pgdir = tempfile.mkdtemp(prefix="spectune-pg-")
        base = subprocess.run(
            [str(REPO / "tests" / "postgres.sh"), "start", pgdir],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    try:
        db = f"load_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {db}")
        head, _, query = base.partition("?")
        url = f"{head.rsplit('/', 1)[0]}/{db}" + (f"?{query}" if query else "")
        before = stats(psycopg, base, db)
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "spectune.cli", "worker", args.scenario, "--storage", url]
        procs = [
            subprocess.Popen([*cmd, "--json"], stdout=subprocess.PIPE, text=True)
            for _ in range(args.workers)
        ]
        outs = [json.loads(p.communicate()[0]) for p in procs]
        wall = time.perf_counter() - t0
        time.sleep(1.0)  # the statistics collector reports with a short delay
        after = stats(psycopg, base, db)
        trials = outs[0]["finished"]
        delta = {k: after[k] - before[k] for k in after}
        print(
            json.dumps(
                {
                    "workers": args.workers,
                    "trials": trials,
                    "ran_per_worker": [o["ran"] for o in outs],
                    "wall_s": round(wall, 1),
                    "per_trial": {k: round(v / trials, 1) for k, v in delta.items()},
                    "per_trial_per_s_of_wall": round(delta["xact_commit"] / wall, 1),
                },
                indent=1,
            )
        )
    finally:
        if pgdir:
            subprocess.run([str(REPO / "tests" / "postgres.sh"), "stop", pgdir], check=False)


if __name__ == "__main__":
    main()
