import csv
import os

import pytest
from PIL import Image

from plantnseek.cli.entry import main
from plantnseek.sweep.command import expand, load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(ROOT, "configs/sweeps/smoke.yaml")


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_smoke_sweep_end_to_end_with_resume_and_a_failing_run(in_tmp, capsys):
    assert main(["sweep", "--config", SMOKE, "--workers", "2", "--out", "sw"]) == 0
    rows = read_csv(in_tmp / "sw/results.csv")
    assert len(rows) == 8 and all(r["status"] == "completed" for r in rows)
    for col in ("dataset", "pruner", "sparsity", "param_sparsity", "final_metric", "ticket_metric",
                "ticket_density", "recall", "precision", "collapsed", "dead_pruned", "dead_final", "seconds"):
        assert col in rows[0]
    assert {r["engine"] for r in rows} <= {"kernel", "pytorch"} and all(r["engine"] for r in rows)
    ticket_rows = [r for r in rows if r["sparsity"] == "ticket"]
    assert all(float(r["param_sparsity"]) == pytest.approx(float(r["ticket_density"]), abs=1e-3) for r in ticket_rows)
    with Image.open(in_tmp / "sw/figure.png") as im:
        im.verify()
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(in_tmp / "sw/tensorboard"))
    run = in_tmp / "sw/runs/circle/synflow/0.2"  # a run's folder and TensorBoard name: its grid values
    assert (run / "summary.json").exists() and (run / "task.png").exists() and (run / "masks.png").exists()
    capsys.readouterr()

    # resume: the same sweep skips every finished run; a new axis value adds runs, one of which fails
    assert main(["sweep", "--config", SMOKE, "--workers", "1", "--out", "sw"]) == 0
    assert "8 already done, 0 to run" in capsys.readouterr().out
    assert main(["sweep", "--config", SMOKE, "--workers", "2", "--out", "sw", "--grid", "pruner=synflow,my_scorers.Broken",
                 "--grid", "dataset=relu"]) == 1  # failures are recorded, the sweep goes on, the exit code says so
    out = capsys.readouterr().out
    assert "2 already done, 2 to run" in out
    rows = read_csv(in_tmp / "sw/results.csv")
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(rows) == 4 and len(failed) == 2
    assert all("broken scorer" in r["error"] for r in failed)
    assert "failed: " in out


def test_submitit_local_executor_runs_a_two_run_grid(in_tmp, tmp_path):
    config = tmp_path / "two.yaml"
    config.write_text("""
base:
  data: {dataset: relu, n_samples: 600, prune_dataset_ratio: 5}
  model: {depth: 3, width: 4}
  pruning: {post_epochs: 1}
pictures: false
grid:
  pruner: [mag, rand]
""")
    assert main(["sweep", "--config", str(config), "--executor", "submitit", "--out", "sub"]) == 0
    rows = read_csv(in_tmp / "sub/results.csv")
    assert [r["status"] for r in rows] == ["completed", "completed"]


@pytest.mark.parametrize("text,message", [
    ("grid: {}", "no axes"),
    ("grid: {dataset: []}", "axis 'dataset' is empty"),
    ("grid: {colour: [red]}", "unknown axis 'colour'"),
    ("grid: {model.width: [5]}", "minimum width is 20"),
    ("grid: {pruner: [magic]}", "unknown pruner 'magic'"),
    ("grid: {sparsity: [0]}", "sparsity 0"),
    ("base: {colour: 1}\ngrid: {seed: [1]}", "unknown key 'colour'"),
    ("grids: {seed: [1]}", "needs a 'grid'"),
    ("grid: {seed: [x]}", "seed 'x' is invalid"),
    ("grid: {sparsity: [tickt]}", "sparsity 'tickt' is invalid"),
    ("grid: {data.noise: [abc]}", "noise 'abc' is invalid; it must be a number"),
    ("grid: {pruning.sparsty: [0.1]}", "unknown pruning key 'sparsty'"),
    ("grid: {trainer.max_epoch: [2]}", "unknown trainer key 'max_epoch'"),
    ("base: {model: {widht: 3}}\ngrid: {seed: [1]}", "unknown model key 'widht'"),
    ("grid: [unclosed", "not valid YAML"),
    ("grid: [{seed: [1]}, 3]", "or a list of such mappings"),
    ("grid: []", "or a list of such mappings"),
    ("grid: [{seed: [1]}, {pruner: [mag], pruning.pruner: [rand]}]", "sets the same setting as"),
])
def test_bad_sweep_configs(text, message, tmp_path, in_tmp, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["sweep", "--config", str(path), "--out", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (in_tmp / "x").exists()


def test_missing_config_and_bad_flags(in_tmp, capsys):
    assert main(["sweep", "--config", "nope.yaml"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["sweep", "--config", SMOKE, "--workers", "0"]) == 2
    assert main(["sweep", "--config", SMOKE, "--grid", "seed"]) == 2


def test_paper_configs_expand_to_the_paper_grid():
    single = expand(load_config(os.path.join(ROOT, "configs/sweeps/paper_singleshot.yaml")))
    assert len(single) == 3 * 5 * 5 * 25 == 1875
    assert {s.model["width"] for s in single} == {100} and {s.pruning["post_epochs"] for s in single} == {10}
    multi = expand(load_config(os.path.join(ROOT, "configs/sweeps/paper_multishot.yaml")))
    assert len(multi) == 3 * 5 * 5 * 10 and {s.pruning["levels"] for s in multi} == {10}
    fewer = expand(load_config(os.path.join(ROOT, "configs/sweeps/paper_singleshot.yaml")), {"seed": [1, 2]})
    assert len(fewer) == 150


def test_submitit_missing_is_a_clear_error(in_tmp, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "submitit", None)
    assert main(["sweep", "--config", SMOKE, "--executor", "submitit", "--out", "s"]) == 2
    assert "pip install" in capsys.readouterr().err
    assert not (in_tmp / "s").exists()


def test_a_list_of_grids_runs_their_union_each_run_named_by_every_axis(tmp_path):
    path = tmp_path / "union.yaml"
    path.write_text("""
base: {pruning: {post_epochs: 1, pre_epochs: 0}}
grid:
  - {pruner: [mag, rand], sparsity: [0.5]}
  - {pruner: [mag], sparsity: [0.5, 0.2], pruning.budget: [erk]}
  - {pruner: [mag], sparsity: [0.5], pruning.budget: [global]}
""")
    specs = expand(load_config(str(path)), {"seed": [1, 2]})
    # part 1: 2 x 2 seeds; part 2: 2 x 2; part 3 repeats part 1's mag runs (budget global is the default
    # of scope global, but given explicitly it is another resolved config, so it is its own run)
    names = [s.name for s in specs]
    assert len(names) == len(set(names)) == 4 + 4 + 2
    for s in specs:
        assert list(s.values) == ["pruner", "sparsity", "seed", "pruning.budget"]  # in the order first given
    first = [s for s in specs if s.pruning.get("budget") is None]
    assert {s.values["pruning.budget"] for s in first} == {None}  # the constructor's default (scope decides)
    assert {s.values["pruning.budget"] for s in specs} == {None, "erk", "global"}
    assert {s.name for s in specs if s.values["pruning.budget"] == "erk"} == {
        f"mag/{d}/seed{n}/pruning.budget=erk" for d in (0.5, 0.2) for n in (1, 2)}


def test_a_run_two_parts_of_a_union_share_runs_once(tmp_path):
    path = tmp_path / "union.yaml"
    path.write_text("grid:\n  - {pruner: [mag, rand], seed: [1]}\n  - {pruner: [mag], seed: [1, 2]}\n")
    assert sorted(s.name for s in expand(load_config(str(path)))) == ["mag/seed1", "mag/seed2", "rand/seed1"]
    path.write_text("grid: {pruner: [mag, mag]}\n")  # within one grid a repeat is a typo: refused
    with pytest.raises(Exception, match="share the run folder"):
        expand(load_config(str(path)))


def test_the_methods_config_compares_every_new_method_budget_and_rewinding():
    specs = expand(load_config(os.path.join(ROOT, "configs/sweeps/methods.yaml")), {"seed": [1]})
    pruners = {s.pruning["pruner"] for s in specs}
    assert pruners == {"rand", "mag", "snip", "grasp", "synflow", "itersnip", "force", "prospr", "phew"}
    assert {s.values["pruning.budget"] for s in specs} == {"global", "uniform", "erk", "balanced", "pyramidal"}
    imp = [s for s in specs if s.pruning.get("levels") == 10]
    assert {(s.values["pruning.rewind_epoch"], s.values["pruning.lr_rewind"]) for s in imp} == {
        (0, False), (2, False), (0, True), (2, True)}
    assert len(specs) == 3 * 5 * (9 + 3 * 4 + 4)
