"""A run's settings as a ``plantnseek fit`` config, written into every run directory (``config.yaml``).

``plantnseek fit`` gets one from LightningCLI; ``main`` and sweep runs write the equivalent, so any run
can be re-run, resumed or tested the same way: ``plantnseek test --config <run>/config.yaml --ckpt_path ...``.
"""
from __future__ import annotations

import os
from typing import Any

import yaml


def fit_config(seed: int, data: dict[str, Any], model: dict[str, Any], pruning: dict[str, Any] | None,
               trainer: dict[str, Any] | None = None) -> dict[str, Any]:
    trainer = dict(trainer or {})
    if pruning is not None:
        trainer["callbacks"] = [{"class_path": "plantnseek.callbacks.Pruning", "init_args": dict(pruning)}]
    return {"seed_everything": seed, "data": dict(data), "model": {k: v for k, v in model.items()
                                                                   if k not in ("dataset", "seed")},
            "trainer": trainer}


def write_config(directory: str, config: dict[str, Any]) -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "config.yaml")
    with open(path, "w") as f:
        f.write("# The settings of this run as a `plantnseek fit` config.\n")
        yaml.safe_dump(config, f, sort_keys=False)
    return path
