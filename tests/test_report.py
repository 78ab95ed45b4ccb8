"""``plantnseek report``: bootstrap intervals, grouping, pairing, mixed inputs, refusals and the files it writes.

Inputs are small hand-written summary.json / results.csv files (numbers chosen so every mean, count and
interval can be worked out by hand), plus one real smoke sweep.
"""
import csv
import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from plantnseek.cli.entry import main
from plantnseek.sweep.report import bootstrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def summary(folder, task="circle", pruner="synflow", seed=1, density=0.1, final=0.9, pruned=0.5, recall=0.5,
            precision=0.25, collapsed=False, dead=None, status="completed", ticket=False, **extra):
    metric = "accuracy" if task == "circle" else "rescaled_mse"
    s = {"status": status, "dataset": task, "depth": 4, "width": 20, "seed": seed, "pruner": pruner,
         "sparsity_target": density, "param_sparsity": density, "primary_metric": metric,
         "ticket": {"sparsity": 0.05, "metric_name": metric, "metric": 0.98},
         "recovery": {"recall": recall, "precision": precision, "collapsed": collapsed},
         "pruned": {metric: pruned}, "final": {metric: final}, **extra}
    if ticket:
        s["at_ticket_density"] = True
    if dead is not None:
        s["dead"] = {"after_pruning": dead[0], "final": dead[1]}
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "summary.json"), "w") as f:
        json.dump(s, f)


def fake_sweep(out, runs, axes=("dataset", "pruner", "sparsity", "seed")):
    """A sweep folder: runs/<name>/summary.json and results.csv (axes, status, run_dir)."""
    rows = []
    for name, values, kw in runs:
        summary(os.path.join(out, "runs", name), **kw)
        rows.append({**values, "status": kw.get("status", "completed"), "run_dir": os.path.join(out, "runs", name)})
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*axes, "status", "run_dir"], extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_bootstrap_mean_and_interval_by_hand():
    assert bootstrap([0.3] * 5) == pytest.approx((0.3, 0.3, 0.3))  # a constant sample: a zero-width interval
    mean, lo, hi = bootstrap([0.9])
    assert mean == 0.9 and math.isnan(lo) and math.isnan(hi)  # one seed: no interval at all
    # two values: resampled means are 0, 0.5, 1 with probability 1/4, 1/2, 1/4, so the 2.5 % and 97.5 %
    # percentiles of 2000 resamples are 0 and 1
    assert bootstrap([0.0, 1.0]) == (0.5, 0.0, 1.0)
    x = [0.1, 0.4, 0.35, 0.8, 0.55]
    mean, lo, hi = bootstrap(x)
    assert mean == pytest.approx(np.mean(x)) and min(x) < lo < mean < hi < max(x)
    assert bootstrap(x) == (mean, lo, hi)  # fixed RNG: the same report every time
    assert bootstrap([1.0, None, 3.0])[0] == 2.0  # missing values (a failed metric) are left out


def test_groups_counts_directions_and_marks(tmp_path, capsys):
    sw = tmp_path / "sw"
    runs = []
    for seed, (final, dead, collapsed) in enumerate([(0.9, (False, False), False), (0.7, (True, True), False),
                                                     (0.8, None, True)], 1):
        runs.append((f"circle/synflow/0.1/seed{seed}", {"dataset": "circle", "pruner": "synflow", "sparsity": 0.1,
                                                       "seed": seed},
                     dict(seed=seed, final=final, dead=dead, collapsed=collapsed)))
    runs.append(("circle/mag/ticket/seed1", {"dataset": "circle", "pruner": "mag", "sparsity": "ticket", "seed": 1},
                 dict(pruner="mag", density=0.05, ticket=True)))
    runs.append(("relu/mag/0.1/seed1", {"dataset": "relu", "pruner": "mag", "sparsity": 0.1, "seed": 1},
                 dict(task="relu", pruner="mag", final=0.2, pruned=0.3)))
    runs.append(("relu/mag/0.1/seed2", {"dataset": "relu", "pruner": "mag", "sparsity": 0.1, "seed": 2},
                 dict(task="relu", pruner="mag", seed=2, status="failed")))
    fake_sweep(str(sw), runs)
    assert main(["report", str(sw), "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    rows = {(r["task"], r["pruner"], r["density"]): r for r in read(tmp_path / "r.csv")}
    assert set(rows) == {("circle", "synflow", "0.1"), ("circle", "mag", "ticket"), ("relu", "mag", "0.1")}
    syn = rows["circle", "synflow", "0.1"]
    assert int(syn["n"]) == 3 and float(syn["final_mean"]) == pytest.approx(0.8)
    assert syn["collapsed"] == "1" and syn["dead_final"] == "1" and syn["dead_final_unknown"] == "1"
    assert rows["circle", "mag", "ticket"]["final_lo"] == ""  # one seed: no interval
    assert rows["relu", "mag", "0.1"]["higher_is_better"] == "False" and int(rows["relu", "mag", "0.1"]["n"]) == 1
    assert "5 completed run(s)" in out and "not counted: 1 failed" in out
    assert "**accuracy** (higher is better)" in out and "**rescaled_mse** (lower is better)" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("| circle | synflow |"))
    assert "0.1 ⚠" in line and "1/2 (1 unknown)" in line  # dead at end: 1 of the 2 runs that recorded it
    assert "| circle | mag | ticket | 1 |" in out

    assert main(["report", str(sw), "--by", "pruner", "--out", str(tmp_path / "p")]) == 0
    by_pruner = {r["pruner"]: r for r in read(tmp_path / "p.csv") if r["metric_name"] == "accuracy"}
    assert by_pruner.keys() == {"synflow", "mag"} and "task" not in read(tmp_path / "p.csv")[0]
    assert float(by_pruner["mag"]["final_mean"]) == pytest.approx(0.9)


def test_compare_pairs_by_seed_within_task_and_density(tmp_path, capsys):
    for seed, final in ((1, 0.9), (2, 0.8), (3, 0.7)):
        summary(tmp_path / "logs" / "a" / f"seed{seed}" / "version_0", pruner="synflow", seed=seed, final=final)
    for seed, final in ((1, 0.5), (2, 0.6), (4, 0.1)):  # seed 4 has no partner: left out
        summary(tmp_path / "logs" / "b" / f"seed{seed}" / "version_0", pruner="mag", seed=seed, final=final)
    summary(tmp_path / "logs" / "c" / "version_0", pruner="mag", seed=1, density=0.5, final=0.0)  # another density
    assert main(["report", str(tmp_path / "logs"), "--compare", "synflow", "mag", "--out", str(tmp_path / "r")]) == 0
    (row,) = read(tmp_path / "r_compare.csv")
    assert (row["task"], row["density"], row["n_pairs"]) == ("circle", "0.1", "2")
    # differences 0.4 and 0.2: mean 0.3, and (two values) the interval is their range
    assert [float(row[k]) for k in ("final_diff", "final_lo", "final_hi")] == pytest.approx([0.3, 0.2, 0.4])
    assert float(row["recall_diff"]) == 0.0
    assert "**synflow − mag**, paired by seed" in capsys.readouterr().out


def test_fit_runs_and_sweeps_mixed_and_extra_axes(tmp_path, capsys):
    fit = tmp_path / "fit_run"
    summary(fit, pruner="synflow", seed=7, final=0.6)
    sw = tmp_path / "sw"
    runs = [(f"circle/synflow/0.1/pruning.prune_epochs={e}", {"dataset": "circle", "pruner": "synflow",
                                                              "sparsity": 0.1, "pruning.prune_epochs": e},
             dict(final=f)) for e, f in ((1, 0.8), (100, 0.4))]
    fake_sweep(str(sw), runs, axes=("dataset", "pruner", "sparsity", "pruning.prune_epochs"))
    assert main(["report", str(fit), str(sw), "--out", str(tmp_path / "r")]) == 0
    captured = capsys.readouterr()
    assert "grouping also by pruning.prune_epochs" in captured.err  # a varying axis is not averaged over silently
    rows = {r["pruning.prune_epochs"]: float(r["final_mean"]) for r in read(tmp_path / "r.csv")}
    assert rows == {"-": 0.6, "1": 0.8, "100": 0.4}  # the fit run has no such axis
    assert main(["report", str(fit), str(sw), "--by", "task,source", "--out", str(tmp_path / "s")]) == 0
    assert {r["source"]: r["n"] for r in read(tmp_path / "s.csv")} == {str(fit): "1", str(sw): "2"}


@pytest.mark.parametrize("args, message", [
    (["nowhere"], "'nowhere' is not a folder"),
    (["empty"], "'empty' holds no runs"),
    (["runs", "--by", "task,colour"], "--by: 'colour' is not an axis of these runs; allowed:"),
    (["runs", "--compare", "synflow", "snip"], "--compare: 'snip' is not a pruner of these runs; allowed: synflow"),
    (["failed"], "no completed runs"),
    (["runs", "--out", "runs/one/summary.json/r"], "--out 'runs/one/summary.json/r' cannot be written"),
])
def test_refusals_are_one_line_and_exit_2(in_tmp, capsys, args, message):
    os.makedirs("empty")
    summary("runs/one")
    summary("failed/one", status="failed")
    assert main(["report", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not os.path.exists("report.csv") and not os.path.exists("lightning_logs")


def test_real_smoke_sweep_report_files(in_tmp, capsys):
    smoke = os.path.join(ROOT, "configs/sweeps/smoke.yaml")
    assert main(["sweep", "--config", smoke, "--grid", "seed=1,2", "--grid", "dataset=circle",
                 "--out", "sw"]) == 0
    capsys.readouterr()
    assert main(["report", "sw", "--compare", "synflow", "mag"]) == 0  # default: lightning_logs/reports/report.*
    out = capsys.readouterr().out
    os.chdir("lightning_logs/reports")
    rows = read("report.csv")
    assert len(rows) == 4 and all(r["n"] == "2" for r in rows)
    assert {r["density"] for r in rows} == {"ticket", "0.2"}
    assert all(r["dead_final"] in ("0", "1", "2") for r in rows)  # the runs record whether they are dead
    assert len(read("report_compare.csv")) == 2
    with open("report.md") as f:
        assert f.read().strip() == out.split("written:")[0].strip()
    with Image.open("report.png") as im:
        im.verify()
