"""The seed README's example 1 end to end (process start to exit) with ``plantnseek main``.
The reference program takes 15-17 s for it on this kind of machine (shared/reference/README.md);
goal: at most half of that.

    .venv/bin/python benchmarks/seed_example.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from common import emit, stats, timeit  # noqa: E402

EXAMPLE_1 = ("--dataset circle --model planted-model --model-class lottery --train-batch-size 32 "
             "--test-batch-size 512 --pruner synflow --prune-bias True --no-cuda --verbose --post-epochs 10 "
             "--sparsity 0.1 --lr 0.001 --result-dir results/test --depth 5 --width 50 --exp-suffix circle_test")
REFERENCE_S = (15.0, 17.0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    exe = os.path.join(os.path.dirname(sys.executable), "plantnseek")
    with tempfile.TemporaryDirectory() as tmp:
        times = timeit(lambda: subprocess.run([exe, "main", *EXAMPLE_1.split()], cwd=tmp, check=True,
                                              capture_output=True), args.repeats)
    s = stats(times)
    emit({"benchmark": "seed_example_1", "wall_s": s, "reference_s": REFERENCE_S,
          "fraction_of_reference": round(s["median"] / sum(REFERENCE_S) * 2, 2), "goal": "<= 0.5"})


if __name__ == "__main__":
    main()
