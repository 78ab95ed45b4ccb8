"""A sweep run's identity covers everything that makes its numbers, and each setting has one value.

Editing a user task's or scorer's module, the checkpoint a ``run:`` task plants from, or the training
engine re-runs the affected runs (and says what changed); an unchanged re-run skips. Two axes that set
one setting are refused, and every label a sweep writes is read from the configuration that trained.
Runs are tiny (depth 3, width 4-8, 600 samples, 1 epoch) and in-process; a new ``plantnseek sweep``
process is imitated by forgetting the user's modules (:func:`forget`).
"""
import builtins
import csv
import importlib
import json
import os
import sys

import pytest

from plantnseek.engine import kernel_build

from plantnseek.core import registry

from plantnseek.sweep import execute as sweep_exec
from plantnseek.cli.entry import main
from plantnseek.sweep.command import expand, load_config, parse_overrides, result_row
from plantnseek.sweep.spec import grid_points, run_name
from plantnseek.sweep.store import todo_report

TASK, SCORER = "identity_task", "identity_scorer"
TASK_SOURCE = '''
import numpy as np
from plantnseek.core.tasks import Task

SPREAD = {spread}


class Xor(Task):
    d_in, d_out, classification, max_noise = 2, 2, True, 1.0

    def sample(self, rng, n, noise):
        x = rng.uniform(-SPREAD, SPREAD, size=(n, 2))
        label = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
        return x, np.where(rng.uniform(0.0, 1.0, size=n) < noise, 1 - label, label)

    def ticket(self, depth):
        first = np.array([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])
        middle = [(np.eye(4), np.zeros(4)) for _ in range(depth - 3)]
        last = np.array([[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
        return [(first, np.zeros(4)), *middle, (last, np.zeros(2))]
'''
SCORER_SOURCE = '''
from plantnseek.callbacks import Scorer

SIGN = {sign}


class Keep(Scorer):
    uses_data = False

    def score(self, ctx):
        return [SIGN * p.detach().abs().double() for p in ctx.params]
'''
CONFIG = """
base:
  data: {{dataset: {dataset}, n_samples: 600, prune_dataset_ratio: 5, train_batch_size: 64}}
  model: {{depth: 3, width: {width}}}
  pruning: {{post_epochs: 1, sparsity: 0.5}}
pictures: false
grid:
{grid}
"""


def forget() -> None:
    """What a new sweep process does: import the user's modules anew (and check their tasks anew)."""
    for name in (TASK, SCORER):
        sys.modules.pop(name, None)
    registry._CACHE.clear()
    importlib.invalidate_caches()


@pytest.fixture
def user_code(in_tmp, monkeypatch):
    """The user's task and scorer modules, importable from the sweep's directory; no bytecode, so an
    edit is always read."""
    monkeypatch.syspath_prepend(str(in_tmp))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.setattr(sweep_exec, "available_cores", lambda: 1)  # runs in this process
    forget()
    yield in_tmp
    forget()


def write(path, text, **values):
    path.write_text(text.format(**values))
    return str(path)


def sweep(config, *flags):
    return main(["sweep", "--config", config, "--out", "sw", "--workers", "1", *flags])


def summaries(out):
    found = {}
    for d, _, files in os.walk(os.path.join(out, "runs")):
        if "summary.json" in files:
            with open(os.path.join(d, "summary.json")) as f:
                found[os.path.relpath(d, out)] = json.load(f)
    return found


def read_rows(out):
    with open(os.path.join(out, "results.csv")) as f:
        return list(csv.DictReader(f))


SUMMARY_KEY = {"dataset": "dataset", "pruner": "pruner", "seed": "seed", "width": "width", "depth": "depth",
               "levels": "levels", "sparsity": "sparsity_target"}  # what a run's summary says it trained with


def assert_rows_name_what_trained(out):
    """Every results.csv row and its folder name the settings its own run recorded having trained with."""
    rows = read_rows(out)
    for row in rows:
        with open(os.path.join(row["run_dir"], "summary.json")) as f:
            summary = json.load(f)
        axes = list(row)[:list(row).index("status")]
        trained = {a: summary[SUMMARY_KEY[a.rpartition(".")[2]]] for a in axes}  # pruning.pruner: pruner
        assert {a: row[a] for a in axes} == {a: str(v) for a, v in trained.items()}
        assert os.path.relpath(row["run_dir"], os.path.join(out, "runs")) == run_name(trained)
    return rows


def rerun_says(capsys, config, change):
    """Re-running after an edit redoes the runs and names the change; once more, nothing is redone."""
    before = summaries("sw")
    forget()
    assert sweep(config) == 0
    out = capsys.readouterr().out
    assert f"2 run(s) changed since the last sweep ({change}): re-running them" in out
    assert "0 already done, 2 to run" in out
    after = summaries("sw")
    assert after.keys() == before.keys()
    assert all(after[k]["final"] != before[k]["final"] for k in after)  # recomputed: new numbers
    forget()
    assert sweep(config) == 0
    assert "2 already done, 0 to run" in capsys.readouterr().out
    return after


def test_editing_a_user_task_reruns_its_runs_with_new_numbers(user_code, capsys):
    write(user_code / f"{TASK}.py", TASK_SOURCE, spread=1.0)
    config = write(user_code / "s.yaml", CONFIG, dataset=f"{TASK}.Xor", width=8, grid="  pruner: [mag, rand]")
    assert sweep(config) == 0
    assert_rows_name_what_trained("sw")
    forget()
    assert sweep(config) == 0
    assert "2 already done, 0 to run" in capsys.readouterr().out

    write(user_code / f"{TASK}.py", TASK_SOURCE, spread=3.0)  # sample() draws inputs from a wider square
    rerun_says(capsys, config, f"task source {TASK}.py changed")
    assert_rows_name_what_trained("sw")


def test_editing_a_user_scorer_reruns_its_runs_with_new_numbers(user_code, capsys):
    write(user_code / f"{SCORER}.py", SCORER_SOURCE, sign=1)
    config = write(user_code / "s.yaml", CONFIG, dataset="relu", width=4,
                   grid=f"  pruner: [{SCORER}.Keep]\n  seed: [1, 2]")
    assert sweep(config) == 0
    capsys.readouterr()
    write(user_code / f"{SCORER}.py", SCORER_SOURCE, sign=-1)  # keeps the smallest weights instead
    after = rerun_says(capsys, config, f"scorer source {SCORER}.py changed")
    assert all(s["identity"]["code"][f"scorer source {SCORER}.py"] for s in after.values())


def test_a_changed_training_engine_reruns_the_runs(user_code, capsys, monkeypatch):
    monkeypatch.delenv("PLANTNSEEK_KERNEL", raising=False)
    if kernel_build.load() is None:
        pytest.skip("the native training kernel cannot be built here")
    config = write(user_code / "s.yaml", CONFIG, dataset="relu", width=4, grid="  pruner: [mag, rand]")
    monkeypatch.setenv("PLANTNSEEK_KERNEL", "torch")
    assert sweep(config) == 0
    assert {s["engine"] for s in summaries("sw").values()} == {"pytorch"}  # as the run itself says it
    capsys.readouterr()
    monkeypatch.setenv("PLANTNSEEK_KERNEL", "auto")
    assert sweep(config) == 0
    out = capsys.readouterr().out
    assert "2 run(s) changed since the last sweep (engine torch -> kernel): re-running them" in out
    assert {s["engine"] for s in summaries("sw").values()} == {"kernel"}
    assert sweep(config) == 0
    assert "2 already done, 0 to run" in capsys.readouterr().out


def test_a_changed_checkpoint_of_a_run_task_reruns_the_runs(user_code, capsys):
    import torch

    assert main(["fit", "--data.dataset", "relu", "--model.depth", "3", "--model.width", "4",
                 "--data.n_samples", "600", "--data.prune_dataset_ratio", "5", "--trainer.max_epochs", "1",
                 "--trainer.enable_progress_bar", "false"]) == 0
    ckpt = str(next(user_code.glob("lightning_logs/**/checkpoints/last.ckpt")))
    config = write(user_code / "s.yaml", CONFIG, dataset=f"run:{ckpt}", width=4, grid="  pruner: [mag, rand]")
    assert sweep(config) == 0
    capsys.readouterr()
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state["state_dict"]["stack.weights.0"] *= 2.0  # the network the task plants from is another one
    torch.save(state, ckpt)
    rerun_says(capsys, config, f"checkpoint of run:{ckpt} changed")


def test_each_file_is_digested_once_per_sweep(user_code, monkeypatch):
    write(user_code / f"{TASK}.py", TASK_SOURCE, spread=1.0)
    write(user_code / f"{SCORER}.py", SCORER_SOURCE, sign=1)
    specs = expand(load_config(write(user_code / "s.yaml", CONFIG, dataset=f"{TASK}.Xor", width=8,
                                     grid=f"  pruner: [{SCORER}.Keep, mag]\n  seed: [1, 2, 3]")))
    opened, real_open = [], builtins.open  # every file a sweep's identities read, by path
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: (opened.append(str(path)), real_open(path, *a, **k))[1])
    todo, _ = todo_report("sw", specs)
    monkeypatch.setattr(builtins, "open", real_open)
    assert todo == specs and all("identity" in vars(s) for s in specs)  # workers get it, computed here
    codes = [spec.identity["code"] for spec in specs]
    assert sorted(p for p in opened if p.startswith(str(user_code))) == \
        sorted(str(user_code / f"{name}.py") for name in (SCORER, TASK))
    assert all(f"task source {TASK}.py" in c for c in codes)
    assert [f"scorer source {SCORER}.py" in c for c in codes] == [True] * 3 + [False] * 3


def test_a_scorer_given_as_class_path_is_digested_too(user_code):
    write(user_code / f"{SCORER}.py", SCORER_SOURCE, sign=1)
    config = load_config(write(user_code / "s.yaml", CONFIG, dataset="relu", width=4, grid="  seed: [1]"))
    config["base"]["pruning"]["pruner"] = {"class_path": f"{SCORER}.Keep", "init_args": {}}
    # grid_points, not expand: a sweep's Pruning takes a scorer by its dotted path today
    assert f"scorer source {SCORER}.py" in grid_points(config)[0].identity["code"]


CONFLICTS = [  # (grid in the config, flags, the refusal)
    ("  pruner: [synflow]", ["--grid", "pruning.pruner=mag"],
     "--grid pruning.pruner=mag sets the same setting as the grid axis pruner [synflow]; give it once"),
    ("  sparsity: [0.2]", ["--grid", "pruning.sparsity=0.3"],
     "--grid pruning.sparsity=0.3 sets the same setting as the grid axis sparsity [0.2]; give it once"),
    ("  dataset: [relu]", ["--grid", "data.dataset=circle"],
     "--grid data.dataset=circle sets the same setting as the grid axis dataset [relu]; give it once"),
    ("  model.depth: [3]", ["--grid", "depth=4"],
     "--grid depth=4 sets the same setting as the grid axis model.depth [3]; give it once"),
    ("  width: [4]", ["--grid", "model.width=5,6"],
     "--grid model.width=5,6 sets the same setting as the grid axis width [4]; give it once"),
    ("  levels: [1]", ["--grid", "pruning.levels=2"],
     "--grid pruning.levels=2 sets the same setting as the grid axis levels [1]; give it once"),
    ("  pruner: [synflow]\n  pruning.pruner: [mag]", [],
     "the grid axis pruning.pruner [mag] sets the same setting as the grid axis pruner [synflow]; give it once"),
    ("  seed: [1]", ["--grid", "sparsity=0.5", "--grid", "pruning.sparsity=0.4"],
     "--grid pruning.sparsity=0.4 sets the same setting as --grid sparsity=0.5; give it once"),
    ("  pruner: [mag]", ["--grid", "seed=1", "--seeds", "2"],
     "--seeds 2 and --grid seed=... both set the seeds; give one of them"),
    ("  pruner: [mag]", ["--grid", "seed=1", "--grid", "seed=2"],
     "--grid seed=2 repeats the axis seed; give its values once: --grid seed=V1,V2,..."),
]


@pytest.mark.parametrize("grid,flags,message", CONFLICTS)
def test_two_values_for_one_setting_are_refused_in_one_line(grid, flags, message, in_tmp, capsys):
    config = write(in_tmp / "s.yaml", CONFIG, dataset="relu", width=4, grid=grid)
    assert sweep(config, *flags) == 2
    assert capsys.readouterr() == ("", f"plantnseek: error: {message}\n")
    assert os.listdir(in_tmp) == ["s.yaml"]  # nothing written


def test_a_grid_override_of_the_same_axis_replaces_it_and_labels_follow(user_code, capsys):
    config = write(user_code / "s.yaml", CONFIG, dataset="relu", width=4, grid="  pruner: [synflow]\n  sparsity: [0.2]")
    assert sweep(config, "--grid", "pruner=mag", "--grid", "sparsity=0.3") == 0
    table = capsys.readouterr().out
    assert "synflow" not in table and " mag " in table
    rows = assert_rows_name_what_trained("sw")
    assert [(r["pruner"], r["sparsity"]) for r in rows] == [("mag", "0.3")]
    assert os.path.isdir("sw/runs/mag/0.3")


def test_labels_are_read_from_the_configuration_that_trains(in_tmp):
    """A run's axis values, folder and results row follow its configuration, whatever set it."""
    config = load_config(write(in_tmp / "s.yaml", CONFIG, dataset="relu", width=4,
                               grid="  pruner: [synflow]\n  sparsity: [ticket]\n  seed: [1]"))
    spec = expand(config, parse_overrides([], None))[0]
    assert spec.name == "synflow/ticket/seed1"
    spec.pruning["pruner"], spec.pruning["sparsity"], spec.seed = "mag", 0.3, 2
    assert spec.values == {"pruner": "mag", "sparsity": 0.3, "seed": 2}
    assert spec.name == "mag/0.3/seed2" and spec.point == "pruner=mag,sparsity=0.3,seed=2"
    row = result_row("sw", spec)
    assert (row["pruner"], row["sparsity"], row["seed"], row["label"]) == ("mag", 0.3, 2, "mag")
