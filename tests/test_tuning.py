"""Process settings of the command line: one thread by default, and nothing that replaces another package.

Each test runs a fresh interpreter: these settings act on what a process has imported or started.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

def run_python(code: str, env: dict[str, str] | None = None) -> dict:
    environment = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**environment, **(env or {})}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_torch_compile_works_in_a_command_and_on_the_model_under_fit(tmp_path):
    """No stand-in for another package's module: after a whole ``main`` run, torch's and Lightning's own
    machinery works, ``torch.compile`` of a module and of the model under ``fit`` (eager backend: fast)."""
    out = run_python(f"""
import importlib.util, json, sys
import torch
from plantnseek.cli.entry import main
code = main('main --dataset circle --pruner synflow --sparsity 0.1 --pre-epochs 1 --post-epochs 1 --depth 4 '
            '--width 20 --optimizer rms --result-dir {tmp_path} --exp-suffix x'.split())
spec = importlib.util.find_spec("torch._dynamo") is not None
f = torch.compile(lambda x: torch.relu(x) * 2, backend="eager")
compiled_fn = float(f(torch.tensor([-1.0, 3.0])).sum())
import pytorch_lightning as pl
from plantnseek import PlantedDataModule, PlantedMLP
model = PlantedMLP(dataset="circle", depth=4, width=20)
dm = PlantedDataModule(dataset="circle", n_samples=600, train_batch_size=64)
trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, default_root_dir="{tmp_path}")
trainer.fit(torch.compile(model, backend="eager"), datamodule=dm)
print(json.dumps({{"code": code, "spec": spec, "fn": compiled_fn, "steps": trainer.global_step}}))
""")
    assert out == {"code": 0, "spec": True, "fn": 6.0, "steps": 9}
    assert (tmp_path / "x" / "version_0" / "summary.json").exists()


@pytest.mark.parametrize("env, chosen, threads", [({}, True, 1), ({"OMP_NUM_THREADS": "2"}, False, 2)])
def test_one_thread_unless_the_user_sets_omp_num_threads(env, chosen, threads):
    out = run_python("""
import json
from plantnseek.core.tuning import one_thread_by_default
chosen = one_thread_by_default()
import torch
print(json.dumps({"chosen": chosen, "threads": torch.get_num_threads()}))
""", env)
    assert out == {"chosen": chosen, "threads": threads}
