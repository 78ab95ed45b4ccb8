"""Dead networks are measured and flagged everywhere a result is read; the one ticket density (the ticket's
share of the prunable parameters) is what ``sparsity: -1`` keeps, and summary, results.csv, table and figure
agree on both."""
import csv
import json

import numpy as np
import pytest
import torch

from helpers import fit, make_pruning, read_summary, tiny
from plantnseek.core import figures
from plantnseek.callbacks import Pruning
from plantnseek.callbacks.summary import dead_note, result_line
from plantnseek.cli.entry import main
from plantnseek.core.registry import get_task
from plantnseek.core.run import DEAD_TOLERANCE, output_spread


def test_output_spread_is_the_largest_std_over_inputs_of_any_output():
    out = torch.tensor([[1.0, 2.0, 5.0], [3.0, 2.0, 5.0]])  # std over inputs: 1, 0, 0
    assert float(output_spread(out)) == 1.0
    assert float(output_spread(out[:, 1:])) == 0.0
    stacked = torch.stack([out, out * 3])  # a leading runs dimension: one value per run
    assert output_spread(stacked).tolist() == [1.0, 3.0]


def test_dead_is_said_for_each_moment_and_the_after_pruning_spread_survives_a_checkpoint():
    assert dead_note({"after_pruning": False, "final": True}) == " DEAD at the end"
    assert dead_note({"after_pruning": None, "final": False}) == "" and dead_note(None) == ""
    made = Pruning(pruner="mag", sparsity=0.2)
    made.pruned_spread = 0.0
    resumed = Pruning(pruner="mag", sparsity=0.2)
    resumed.load_state_dict(made.state_dict())
    assert resumed.pruned_spread == 0.0


def silence_first_layer(model) -> None:
    """Every first-layer unit inactive on every input (|w . x| < 100 for x in [-1, 1]^2): all paths stay,
    but the output no longer depends on the input."""
    with torch.no_grad():
        model.run.net.layers[0].bias.fill_(-100.0)


def test_a_network_with_every_first_unit_inactive_is_dead_though_not_collapsed(in_tmp):
    model, dm = tiny("circle", depth=4)
    silence_first_layer(model)
    x, _ = dm.split("test")
    assert float(model(x).detach().double().std(dim=0).max()) == 0.0  # by hand: every input gets the same output
    s = read_summary(fit(model, dm, make_pruning(pruner="mag", sparsity=0.5, post_epochs=1)))
    assert s["recovery"]["collapsed"] is False  # paths of kept weights remain: only the new measure sees it
    dead = s["dead"]
    assert dead["after_pruning"] is True and dead["final"] is True
    assert dead["output_spread"] == {"after_pruning": 0.0, "final": 0.0}
    assert dead["tolerance"] == pytest.approx(DEAD_TOLERANCE * dead["ticket_spread"]) and dead["tolerance"] > 0
    assert result_line(s).endswith("DEAD after pruning and at the end")


def test_a_live_network_is_not_dead_and_a_dense_run_has_no_after_pruning_flag(in_tmp):
    model, dm = tiny("circle", depth=4)
    s = read_summary(fit(model, dm, make_pruning(pruner="ticket", sparsity=-1, prune_bias=True)))
    dead = s["dead"]
    assert dead["after_pruning"] is False and dead["final"] is False and "DEAD" not in result_line(s)
    # the oracle's network is the ticket as planted: its spread is the yardstick's own
    assert dead["output_spread"]["after_pruning"] == pytest.approx(dead["ticket_spread"], rel=1e-5)
    model, dm = tiny("circle", depth=4)
    dense = read_summary(fit(model, dm))
    assert dense["dead"]["after_pruning"] is None and dense["dead"]["final"] is False


@pytest.mark.parametrize("prune_bias", [False, True])
def test_ticket_density_is_the_tickets_share_of_the_prunable_parameters(in_tmp, prune_bias):
    model, dm = tiny("circle", depth=4)  # widths 2, 20, 20, 4
    s = read_summary(fit(model, dm, make_pruning(pruner="ticket", sparsity=-1, prune_bias=prune_bias)))
    layers = get_task("circle").ticket(4)
    nonzero = sum(int(np.count_nonzero(w)) + prune_bias * int(np.count_nonzero(b)) for w, b in layers)
    prunable = (2 * 20 + 20 * 20 + 20 * 4) + prune_bias * (20 + 20 + 4)
    assert s["ticket"]["density"] == nonzero / prunable
    assert s["param_prunable"] == prunable and s["param_kept"] == round(s["ticket"]["density"] * prunable) == nonzero
    weights = sum(int(np.count_nonzero(w)) for w, _ in layers)
    assert s["ticket"]["sparsity"] == weights / 520  # the reference's number: weights only, labelled so
    assert s["ticket"]["sparsity_counts"].startswith("weights")
    assert f"at density {nonzero / prunable:.4f}" in result_line(s)


SWEEP = """
name: dead_density
base:
  seed_everything: 1
  data: {n_samples: 600, train_batch_size: 64}
  model: {depth: 4, width: 20}
  pruning: {prune_bias: true, post_epochs: 1}
pictures: false
grid:
  dataset: [relu]
  pruner: [synflow, mag]
  sparsity: [ticket, 0.5]
"""


def test_csv_table_and_figure_agree_on_dead_runs_and_the_ticket_density(in_tmp, monkeypatch, capsys):
    drawn = []
    draw = figures.sweep_figure
    monkeypatch.setattr(figures, "sweep_figure", lambda rows: drawn.append(draw(rows)) or drawn[-1])
    (in_tmp / "sweep.yaml").write_text(SWEEP)
    assert main(["sweep", "--config", "sweep.yaml", "--workers", "1", "--out", "sw"]) == 0
    table = capsys.readouterr().out
    with open(in_tmp / "sw/results.csv") as f:
        rows = list(csv.DictReader(f))
    assert "ticket_sparsity" not in rows[0]
    for r in rows:  # the csv says what each run's summary says
        with open(in_tmp / r["run_dir"] / "summary.json") as f:
            s = json.load(f)
        assert (r["dead_pruned"], r["dead_final"]) == (str(s["dead"]["after_pruning"]), str(s["dead"]["final"]))
        assert float(r["ticket_density"]) == s["ticket"]["density"]
    assert len({r["ticket_density"] for r in rows}) == 1
    weights_only = json.loads((in_tmp / rows[0]["run_dir"] / "summary.json").read_text())["ticket"]["sparsity"]
    assert float(rows[0]["ticket_density"]) != pytest.approx(weights_only)  # biases count: the two differ
    for r in rows:  # ticket runs sit on the ticket's density line
        if r["sparsity"] == "ticket":
            assert float(r["param_sparsity"]) == pytest.approx(float(r["ticket_density"]), rel=1e-6)
    dead = {(r["pruner"], r["sparsity"]): r["dead_pruned"] == "True" or r["dead_final"] == "True" for r in rows}
    assert any(dead.values()) and not all(dead.values())  # the grid has both: the test means something
    # the table: "ticket" in the density column, the dead count per group
    lines = {tuple(line.split()[1:3]): line.split() for line in table.splitlines() if line.startswith("relu ")}
    assert set(lines) == {(p, d) for p in ("synflow", "mag") for d in ("ticket", "0.5")}
    for (pruner, sparsity), cells in lines.items():
        assert cells[-1] == f"{int(dead[(pruner, sparsity)])}/1"
    # the figure: the dotted line at the ticket density, labelled "ticket"; a cross where a group has a dead run
    (fig,) = drawn
    axes = fig.axes
    t = float(rows[0]["ticket_density"])
    for ax in axes:
        dotted = [line for line in ax.lines if line.get_linestyle() == ":"]
        assert [float(line.get_xdata()[0]) for line in dotted] == [pytest.approx(t)]
    assert any(text.get_text().strip() == "ticket" for text in axes[-1].texts)
    crosses = sum(len(line.get_xdata()) for line in axes[1].lines if line.get_marker() == "x")
    dead_final = {(r["pruner"], r["sparsity"]) for r in rows if r["dead_final"] == "True"}
    assert crosses == len(dead_final) > 0
    assert "dead network" in [text.get_text() for text in axes[1].get_legend().get_texts()]
