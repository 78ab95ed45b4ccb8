"""The seed README's example 1, process start to exit, side by side with the reference program.

Both programs run in this one process's session, alternating (plantnseek, reference, plantnseek, ...), so
load on the machine hits both alike. The reference is the runner that ``../shared/tools/reference-runner``
builds (its ``run`` script); without one, plantnseek is timed alone and the JSON says no comparison was made.
Goal: plantnseek <= 0.65x the reference's median wall time.

    .venv/bin/python benchmarks/seed_example.py [--reference ../reference-program/run] [--repeats 4]
    PLANTNSEEK_REFERENCE=../reference-program/run .venv/bin/python benchmarks/seed_example.py
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import emit, stats  # noqa: E402

EXAMPLE_1 = ("--dataset circle --model planted-model --model-class lottery --train-batch-size 32 "
             "--test-batch-size 512 --pruner synflow --prune-bias True --no-cuda --verbose --post-epochs 10 "
             "--sparsity 0.1 --lr 0.001 --result-dir results/test --depth 5 --width 50 --exp-suffix circle_test")


def wall(cmd: list[str], cwd: str, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", default=os.environ.get("PLANTNSEEK_REFERENCE"),
                   help="the reference runner script (default: $PLANTNSEEK_REFERENCE)")
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--threads", default=None,
                   help="also time plantnseek with OMP_NUM_THREADS=N (its default is 1; e.g. 2 = torch's default here)")
    p.add_argument("--busy", action="store_true", help="keep one core busy (a spinning process) during all timings")
    args = p.parse_args()
    ours = [os.path.join(os.path.dirname(sys.executable), "plantnseek"), "main", *EXAMPLE_1.split()]
    programs: dict[str, tuple[list[str], dict[str, str] | None]] = {"plantnseek": (ours, None)}
    if args.threads:
        programs[f"plantnseek_threads{args.threads}"] = (ours, {**os.environ, "OMP_NUM_THREADS": args.threads})
    if args.reference:
        ref = os.path.abspath(args.reference)
        programs["reference"] = ([ref, *EXAMPLE_1.replace("--result-dir results/test ", "").split()], None)
    times: dict[str, list[float]] = {k: [] for k in programs}
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.repeats):  # A B A B ...: the same load for both
                for name, (cmd, env) in programs.items():
                    times[name].append(wall(cmd, tmp, env))
    finally:
        if hog is not None:
            hog.kill()
    record = {"benchmark": "seed_example_1", "repeats": args.repeats, "machine": platform.machine(),
              "cores": os.cpu_count(), "busy_core": args.busy, "load_average_1min": round(os.getloadavg()[0], 2), "wall_s": {k: stats(v) for k, v in times.items()}}
    if "reference" in times:
        ref_median = stats(times["reference"])["median"]
        record["ratio_to_reference"] = {k: round(stats(v)["median"] / ref_median, 3)
                                        for k, v in times.items() if k != "reference"}
        record["goal"] = "plantnseek <= 0.65 x reference"
    else:
        record["comparison"] = "none: no reference given (--reference or PLANTNSEEK_REFERENCE)"
    emit(record)


if __name__ == "__main__":
    main()
