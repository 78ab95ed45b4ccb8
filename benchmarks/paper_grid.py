"""A whole paper grid end to end: ``plantnseek sweep`` as a user runs it, wall time from start to exit.

    .venv/bin/python benchmarks/paper_grid.py [--config configs/sweeps/paper_singleshot.yaml] [--seeds N]

Goals on 2 cores: paper_singleshot (1,875 runs) <= 5 min; paper_multishot (750 runs) <= 12 min.
``--seeds N`` times a slice and projects the full grid linearly (said so in the JSON).
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time

import yaml

sys.path.insert(0, os.path.dirname(__file__))
from common import emit  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/sweeps/paper_singleshot.yaml")
    p.add_argument("--seeds", type=int, default=None, help="only seeds 1..N (a slice), projected to the full grid")
    p.add_argument("--workers", type=int, default=None)
    args = p.parse_args()
    with open(args.config) as f:
        grid = yaml.safe_load(f)["grid"]
    full = 1
    for values in grid.values():
        full *= len(values)
    exe = os.path.join(os.path.dirname(sys.executable), "plantnseek")
    with tempfile.TemporaryDirectory() as out:
        cmd = [exe, "sweep", "--config", os.path.abspath(args.config), "--out", out]
        cmd += ["--seeds", str(args.seeds)] if args.seeds else []
        cmd += ["--workers", str(args.workers)] if args.workers else []
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        with open(os.path.join(out, "results.csv")) as f:
            rows = list(csv.DictReader(f))
    completed = sum(r["status"] == "completed" for r in rows)
    record = {"benchmark": "paper_grid", "config": args.config, "runs": len(rows), "completed": completed,
              "exit_code": done.returncode, "wall_s": round(seconds, 1), "runs_per_min": round(60 * len(rows) / seconds, 1)}
    if len(rows) < full:
        record["projected_full_grid_min"] = round(seconds * full / len(rows) / 60, 2)
        record["note"] = f"a slice of {len(rows)} of {full} runs, projected linearly"
    emit(record)


if __name__ == "__main__":
    main()
