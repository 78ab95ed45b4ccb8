"""One run model: a `fit` run and the same run inside a sweep record the same outputs."""
import os

import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from helpers import run_dirs
from plantnseek.cli.entry import main

BASE = {
    "seed_everything": 2,
    "data": {"dataset": "circle", "n_samples": 600, "prune_dataset_ratio": 5, "batches_per_step": 4},
    "model": {"depth": 4, "width": 20},
}
PRUNING = {"pruner": "synflow", "sparsity": 0.2, "levels": 2, "pre_epochs": 1, "post_epochs": 1, "prune_bias": True}


def outputs(directory):
    """(scalar tags, image tags, hparams names, HParams metric tags, files, events) of one run."""
    events = EventAccumulator(str(directory), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    metrics = {m.name.tag for m in experiment.experiment.metric_infos}
    files = {f for f in os.listdir(directory) if f.endswith((".png", ".json"))}
    return set(tags["scalars"]), set(tags["images"]), set(start.session_start_info.hparams), metrics, files, events


def test_fit_run_and_sweep_run_record_the_same_outputs(in_tmp):
    config = dict(BASE, trainer={"enable_progress_bar": False, "callbacks": [
        {"class_path": "plantnseek.callbacks.Pruning", "init_args": PRUNING}]})
    (in_tmp / "fit.yaml").write_text(yaml.safe_dump(config))
    assert main(["fit", "--config", "fit.yaml"]) == 0
    sweep = {"name": "one", "pictures": True, "base": dict(BASE, pruning=PRUNING), "grid": {"seed": [2]}}
    (in_tmp / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    assert main(["sweep", "--config", "sweep.yaml", "--out", "sw", "--workers", "1"]) == 0

    fit_dir, = run_dirs(in_tmp / "lightning_logs")
    sweep_dir = in_tmp / "sw/runs/seed2"
    assert fit_dir.relative_to(in_tmp / "lightning_logs").parts[:5] == ("circle", "d4w20", "synflow", "0.2-L2", "seed2")
    fit, swept = outputs(fit_dir), outputs(sweep_dir)
    for i, what in enumerate(("scalars", "images", "hparams", "hparams metrics", "files")):
        assert fit[i] == swept[i], what
    scalars, images, hparams, metrics, files, events = fit
    assert {"train/loss", "test/loss", "test/accuracy", "ticket/sparsity", "ticket/metric", "prune/density",
            "prune/recall", "prune/recall/layers.0.weight", "prune/kept/layers.0.bias",
            "prune/dead_units/layers.0"} <= scalars
    assert not any(tag.startswith("prune/recall/layer0") for tag in scalars)  # one naming scheme
    assert {"pictures/task", "pictures/masks", "pictures/scores"} <= images
    assert {"dataset", "depth", "width", "seed", "pruner", "sparsity", "pruning.levels", "pruning.pre_epochs",
            "pruning.post_epochs", "pruning.prune_bias", "pruning.scope", "model.optimizer", "model.lr",
            "data.noise"} <= hparams
    assert {"outcome/final_accuracy", "outcome/recall", "outcome/precision", "outcome/collapsed",
            "outcome/param_sparsity", "outcome/ticket_accuracy"} <= metrics
    assert "hp_metric" not in scalars  # no -1 placeholder
    assert len(events.Scalars("prune/density")) == 2 and len(events.Scalars("test/loss")) == 3
    # the same numbers too: it is the same run
    for tag in ("test/loss", "prune/recall", "outcome/final_accuracy"):
        a = [e.value for e in outputs(fit_dir)[5].Scalars(tag)]
        b = [e.value for e in outputs(sweep_dir)[5].Scalars(tag)]
        assert a == b, tag
