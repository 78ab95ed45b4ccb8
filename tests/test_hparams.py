"""HParams a reader can compare runs by, read with TensorBoard's own reader, and results at their precision."""
import csv
import io
import json
import logging
import math

import numpy as np
import pytest
import yaml
from tensorboard import context
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.data.provider import RunTagFilter as provider_filter
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import backend_context, metadata

from plantnseek.callbacks.hparams import OUTCOMES
from plantnseek.cli.entry import main
from plantnseek.sweep.command import write_results
from plantnseek.sweep.progress import Progress

DATA = {"dataset": "circle", "n_samples": 600, "prune_dataset_ratio": 5, "batches_per_step": 4}
TINY = ["--data.n_samples", "600", "--data.prune_dataset_ratio", "5", "--trainer.enable_progress_bar", "false",
        "--model.depth", "4", "--model.width", "20", "--trainer.max_epochs", "1"]
SWEEP_PRUNED = {"name": "pruned", "base": {"data": DATA, "model": {"depth": 4, "width": 20},
                                           "pruning": {"pruner": "synflow", "post_epochs": 1}},
                "grid": {"dataset": ["circle", "relu"], "sparsity": ["ticket", 0.2], "pruning.prune_epochs": [1, 2]}}
SWEEP_DENSE = {"name": "dense", "base": {"data": DATA, "model": {"depth": 4, "width": 20},
                                         "trainer": {"max_epochs": 1}},
               "grid": {"model.lr": [0.001, 0.01], "data.noise": [0.0, 0.05]}}


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    """``lightning_logs`` holding a dense fit run and two sweeps (one pruned, one dense), as a user makes them."""
    root = tmp_path_factory.mktemp("logs")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        assert main(["fit", *TINY]) == 0
        for sweep in (SWEEP_PRUNED, SWEEP_DENSE):
            (root / f"{sweep['name']}.yaml").write_text(yaml.safe_dump(sweep))
            assert main(["sweep", "--config", f"{sweep['name']}.yaml", "--workers", "1"]) == 0
    return root / "lightning_logs"


def hparams_view(logdir):
    """What TensorBoard's HParams plugin reads: the experiment it shows, and each run's experiment and settings."""
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(logdir))
    tb = backend_context.Context(base_plugin.TBContext(logdir=str(logdir), multiplexer=mux, data_provider=provider))
    ctx = context.RequestContext()
    content = tb.hparams_metadata(ctx, "")
    shown = tb.experiment_from_metadata(ctx, "", True, content, tb.hparams_from_data_provider(ctx, "", None))
    experiments = {run: metadata.parse_experiment_plugin_data(tags[metadata.EXPERIMENT_TAG])
                   for run, tags in content.items() if metadata.EXPERIMENT_TAG in tags}
    sessions = {run: metadata.parse_session_start_info_plugin_data(tags[metadata.SESSION_START_INFO_TAG]).hparams
                for run, tags in content.items() if metadata.SESSION_START_INFO_TAG in tags}
    last = tb.read_last_scalars(ctx, "", provider_filter(runs=list(sessions), tags=list(OUTCOMES)))
    return shown, experiments, sessions, {run: {tag: d.value for tag, d in tags.items()} for run, tags in last.items()}


def value(v):
    return getattr(v, v.WhichOneof("kind"))


def test_every_column_and_metric_shows_whichever_run_tensorboard_picks(logdir):
    shown, experiments, sessions, _ = hparams_view(logdir)
    assert len(sessions) == 1 + 8 + 4
    assert any("/d4w20/dense/seed1/" in run for run in sessions)  # the fit run, named with depth and width
    # TensorBoard takes the columns from one run's experiment, picked arbitrarily: all must be the same
    assert len({e.SerializeToString(deterministic=True) for e in experiments.values()}) == 1
    columns = {h.name for h in shown.hparam_infos}
    assert {m.name.tag for m in shown.metric_infos} == set(OUTCOMES)
    assert {"outcome/final_accuracy", "outcome/final_rescaled_mse", "outcome/pruned_accuracy",
            "outcome/dead_final"} <= set(OUTCOMES)
    for axis in ("pruning.prune_epochs", "model.lr", "data.noise", "dataset", "sparsity", "seed"):
        assert axis in columns, axis
    assert {"pruning.schedule", "model.weight_decay", "data.train_batch_size", "model.lr_drops", "density"} <= columns
    for name in columns:  # one type per column in every run (TensorBoard's filters fail on mixed ones)
        assert all(name in hp for hp in sessions.values()), name
        assert len({hp[name].WhichOneof("kind") for hp in sessions.values()}) == 1, name


def test_dense_runs_say_dense_and_ticket_runs_say_ticket(logdir):
    _, _, sessions, _ = hparams_view(logdir)
    dense = [hp for hp in sessions.values() if value(hp["pruner"]) == "dense"]
    assert len(dense) == 1 + 4
    for hp in dense:
        assert value(hp["sparsity"]) == "dense" and value(hp["density"]) == 1.0
        assert all(value(hp[k]) == "dense" for k in ("pruning.levels", "pruning.post_epochs", "pruning.scope"))
    ticket = {run: hp for run, hp in sessions.items() if value(hp["sparsity"]) == "ticket"}
    assert len(ticket) == 4
    for run, hp in ticket.items():  # the number in a column of its own: the ticket's density, as in summary.json
        s = json.loads((logdir / run / "summary.json").read_text())
        assert value(hp["density"]) == pytest.approx(s["ticket"]["density"]) and 0 < value(hp["density"]) < 1
    assert {value(hp["pruning.prune_epochs"]) for hp in sessions.values()} == {"1", "2", "dense"}
    assert {value(hp["model.lr"]) for hp in dense} == {0.001, 0.01}


def test_metrics_are_split_by_direction(logdir):
    _, _, sessions, outcomes = hparams_view(logdir)
    for run, hp in sessions.items():
        last = outcomes[run]
        assert set(last) == set(OUTCOMES), run
        good, other = ("accuracy", "rescaled_mse") if value(hp["dataset"]) == "circle" else ("rescaled_mse", "accuracy")
        assert math.isfinite(last[f"outcome/final_{good}"]) and math.isnan(last[f"outcome/final_{other}"]), run
        pruned = value(hp["pruner"]) != "dense"
        assert math.isfinite(last[f"outcome/pruned_{good}"]) == pruned, run
        assert last["outcome/epochs"] == 1


def test_results_csv_holds_numbers_at_their_precision(logdir, tmp_path):
    with open(logdir / "sweeps/pruned/results.csv") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for field in ("final_metric", "pruned_metric", "final_loss"):  # measured in float32
            assert row[field] == str(np.float32(row[field])), (field, row[field])
    write_results(str(tmp_path), [{"final_metric": float(np.float32(0.17)), "param_sparsity": 108 / 20600}], [])
    text = (tmp_path / "results.csv").read_text()
    assert ",0.17," in text and str(108 / 20600) in text  # float32 as float32; a float64 ratio in full


def test_model_summary_is_off_by_default_and_can_be_enabled(in_tmp, capfd, caplog):
    caplog.set_level(logging.INFO, logger="pytorch_lightning")  # its model table goes through logging (a sweep run
    # in this process quiets that logger)

    def printed() -> str:
        text = "".join(capfd.readouterr()) + caplog.text
        caplog.clear()
        return text

    assert main(["fit", *TINY]) == 0
    assert "Total params" not in printed()
    assert main(["fit", *TINY, "--trainer.enable_model_summary", "true"]) == 0
    assert "Total params" in printed()


def test_progress_counts_fractions_of_a_batch_without_counting_twice():
    out = io.StringIO()
    progress = Progress(8, stream=out, every=10.0)
    progress.advance("runs/a", 2.0)  # half the epochs of a stack of 4
    progress.advance("runs/a", 1.0)  # a stack retried run by run does not go back
    assert progress.count == 2.0
    progress.update([{"status": "completed", "run_dir": d} for d in ("runs/a", "runs/b", "runs/c", "runs/d")])
    assert progress.count == 4.0  # its rows replace its fraction
    assert [line.split(",")[0] for line in out.getvalue().splitlines()] == ["sweep: 2/8 runs (25%)",
                                                                            "sweep: 4/8 runs (50%)"]


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_moves_while_a_stack_trains(in_tmp, capsys, workers):
    sweep = {"name": "stack", "base": {"data": DATA, "model": {"depth": 4, "width": 20},
                                       "pruning": {"pruner": "mag", "post_epochs": 4}},
             "grid": {"seed": [1, 2, 3, 4][: 2 * workers]}}
    (in_tmp / "stack.yaml").write_text(yaml.safe_dump(sweep))
    assert main(["sweep", "--config", "stack.yaml", "--workers", str(workers)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("sweep: ")]
    percents = [int(line.split("(")[1].split("%")[0]) for line in lines]
    assert percents[-1] == 100 and any(0 < p < 50 for p in percents), lines  # not 0 % then a jump to 100 %
