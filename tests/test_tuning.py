"""Process settings of the command line: Lightning without the compiler stack, one thread by default.

Each test runs a fresh interpreter: these settings act on what a process has imported or started.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REAL = "getattr(sys.modules.get('torch._dynamo'), '__file__', None) is not None"  # the stand-in has no file


def run_python(code: str, env: dict[str, str] | None = None) -> dict:
    environment = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**environment, **(env or {})}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_main_run_never_loads_the_compiler(tmp_path):
    """The command line imports Lightning with the stand-in, and a whole run (prune, train, test,
    summary, pictures) never needs the real ``torch._dynamo``: that is the 1.7 s it saves."""
    out = run_python(f"""
import json, sys
from plantnseek.cli import main
code = main('main --dataset circle --pruner synflow --sparsity 0.1 --pre-epochs 1 --post-epochs 1 --depth 4 '
            '--width 20 --optimizer rms --result-dir {tmp_path} --exp-suffix x'.split())
print(json.dumps({{"code": code, "real": {REAL}, "loaded": 'torch._dynamo' in sys.modules}}))
""")
    assert out == {"code": 0, "real": False, "loaded": True}
    assert (tmp_path / "x" / "version_0" / "summary.json").exists()


def test_anything_beyond_the_idle_names_loads_the_real_compiler():
    out = run_python(f"""
import json, sys
from plantnseek.lean_import import lean_lightning_import
lean = lean_lightning_import()
import torch, pytorch_lightning
before = {REAL}
stand_in = sys.modules['torch._dynamo']
idle = stand_in.disable(len) is len and stand_in.graph_break() is None
reset = stand_in.reset  # any other name
import torch._dynamo
print(json.dumps({{"lean": lean, "before": before, "idle": idle, "after": {REAL},
                   "same": reset is torch._dynamo.reset, "attr": torch._dynamo is sys.modules['torch._dynamo']}}))
""")
    assert out == {"lean": True, "before": False, "idle": True, "after": True, "same": True, "attr": True}


def test_a_submodule_import_loads_the_real_package_once():
    """``import torch._dynamo.config`` works with the stand-in in place, runs the submodule once, and a
    setting made on it is the one the compiler sees; compiling works."""
    out = run_python(f"""
import gc, json, sys, types, warnings
warnings.simplefilter("ignore")
from plantnseek.lean_import import lean_lightning_import
lean_lightning_import()
import torch._dynamo.config as config
config.suppress_errors = True
import torch
compiled = torch.compile(lambda x: x * 2 + 1, backend="eager")(torch.ones(2)).tolist()
real = sys.modules["torch._dynamo"]
copies = sum(issubclass(type(m), types.ModuleType) and m.__name__ == "torch._dynamo.config"
             for m in gc.get_objects())
print(json.dumps({{"real": {REAL}, "copies": copies, "kept": real.config is config, "compiled": compiled,
                   "seen": sys.modules["torch._dynamo.eval_frame"].config.suppress_errors}}))
""")
    assert out == {"real": True, "copies": 1, "kept": True, "seen": True, "compiled": [3.0, 3.0]}


def test_a_stand_in_lightning_cannot_use_falls_back_to_the_usual_import():
    out = run_python(f"""
import json, sys, types
from plantnseek.lean_import import lean_lightning_import
lean = lean_lightning_import(types.ModuleType('torch._dynamo'))  # lacks disable: Lightning's import fails
import pytorch_lightning as pl, torch
from pytorch_lightning.utilities.compile import OptimizedModule
print(json.dumps({{"lean": lean, "real": {REAL}, "trainer": hasattr(pl, 'Trainer'),
                   "optimized": OptimizedModule is torch._dynamo.OptimizedModule}}))
""")
    assert out == {"lean": False, "real": True, "trainer": True, "optimized": True}


def test_not_applied_once_lightning_is_imported():
    out = run_python(f"""
import json, sys
import pytorch_lightning
from plantnseek.lean_import import lean_lightning_import
print(json.dumps({{"lean": lean_lightning_import(), "real": {REAL}}}))
""")
    assert out == {"lean": False, "real": True}


@pytest.mark.parametrize("env, chosen, threads", [({}, True, 1), ({"OMP_NUM_THREADS": "2"}, False, 2)])
def test_one_thread_unless_the_user_sets_omp_num_threads(env, chosen, threads):
    out = run_python("""
import json
from plantnseek.tuning import one_thread_by_default
chosen = one_thread_by_default()
import torch
print(json.dumps({"chosen": chosen, "threads": torch.get_num_threads()}))
""", env)
    assert out == {"chosen": chosen, "threads": threads}
