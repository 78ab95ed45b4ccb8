"""plantnseek from Python: one call each to plant and inspect a ticket, fit one run, and run a sweep.

Each call does what its command does (``plantnseek ticket``, ``fit``, ``sweep``): the same checks, the
same run names and folders, the same outputs. A config is a path to a YAML file or a dict of the same
keys. Bad input raises :class:`plantnseek.core.errors.UsageError` with the message the command would print.
"""
from __future__ import annotations

import csv
import os
import tempfile
from typing import Any, Mapping

import yaml


def plant_ticket(dataset: str = "circle", depth: int = 5, width: int = 50, seed: int = 1,
           noise: float = 0.01) -> dict[str, Any]:
    """The planted ticket of (dataset, depth, width, seed): sizes per layer, minimum width, its own metric
    on the test split. What ``plantnseek ticket --json`` prints."""
    from plantnseek.cli.ticket import report

    return report(dataset, depth, width, seed, noise)


def _config_file(config: str | Mapping[str, Any], folder: str) -> str:
    """A path to the config: as given, or a dict written as YAML into ``folder``."""
    if isinstance(config, (str, os.PathLike)):
        return os.fspath(config)
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a path or a dict, not {type(config).__name__}")
    os.makedirs(folder, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix="config-", suffix=".yaml", dir=folder)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(dict(config), f, sort_keys=False)
    return path


def fit_run(config: str | Mapping[str, Any], *args: str) -> dict[str, Any]:
    """Train (and prune) one run as ``plantnseek fit --config CONFIG ARGS...`` does; returns its summary.json.

    ``args`` are the command's own options, e.g. ``"--trainer.max_epochs", "3"``. The run is named and
    written where the command writes it (``lightning_logs/<dataset>/d<depth>w<width>/...``).
    """
    from plantnseek.callbacks import RunSummary
    from plantnseek.cli.lightning_cli import run_cli

    with tempfile.TemporaryDirectory() as tmp:
        cli = run_cli(["fit", "--config", _config_file(config, tmp), *args])
    summary = next(cb for cb in cli.trainer.callbacks if isinstance(cb, RunSummary))
    if summary.last is None:
        raise RuntimeError("the run wrote no summary (trainer.fast_dev_run?)")
    return summary.last


def run_sweep(config: str | Mapping[str, Any], *args: str) -> list[dict[str, str]]:
    """Run a sweep as ``plantnseek sweep --config CONFIG ARGS...`` does; returns the rows of its results.csv.

    ``args`` are the command's own options (``"--seeds", "3"``, ``"--out", "DIR"``, ``"--workers", "1"``). A
    dict config is kept as ``<out>/sweep.yaml`` (its name defaults to ``python``), so the resume command the
    sweep prints on Ctrl-C names a file that exists.
    """
    from plantnseek.sweep.command import build_parser, run

    path = config
    if not isinstance(config, (str, os.PathLike)):
        options = build_parser().parse_known_args(["--config", "-", *args])[0]
        name = (config.get("name") if isinstance(config, Mapping) else None) or "python"
        out = options.out or os.path.join("lightning_logs", "sweeps", str(name))
        os.makedirs(out, exist_ok=True)
        path = os.path.join(out, "sweep.yaml")
        with open(path, "w") as f:
            yaml.safe_dump({"name": name, **dict(config)}, f, sort_keys=False)
        args = (*args, "--out", out) if options.out is None else args
    result = run(["--config", os.fspath(path), *args])
    with open(os.path.join(result["out"], "results.csv"), newline="") as f:
        return list(csv.DictReader(f))
