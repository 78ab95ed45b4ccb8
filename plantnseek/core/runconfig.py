"""A run's settings as a ``plantnseek fit`` config, written into every run directory (``config.yaml``).

``plantnseek fit`` gets one from LightningCLI; ``main`` and sweep runs write the equivalent, so any run
can be re-run, resumed or tested the same way: ``plantnseek test --config <run>/config.yaml --ckpt_path ...``.
"""
from __future__ import annotations

import os
from typing import Any

import yaml

DENSE_EPOCHS = 10  # the epochs of a run without pruning unless its config says otherwise (the reference's default)


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


def safe_part(text: str) -> str:
    """One path component of a run's name: letters, digits and ``=,._-``."""
    import re

    return re.sub(r"[^A-Za-z0-9=,._-]", "_", text) or "_"


def run_name(dataset: str, depth: int, width: int, seed: int, pruning: dict[str, Any] | None) -> str:
    """What a run is, as its TensorBoard name: ``circle/d5w50/synflow/0.1/seed1`` (``.../0.1-L5/...``
    multishot); depth and width are in it so runs of different sizes do not land side by side."""
    dataset = safe_part(f"run_{os.path.basename(os.path.normpath(dataset[4:]))}" if dataset.startswith("run:")
                        else dataset)
    dataset = f"{dataset}/d{depth}w{width}"
    if pruning is None:
        return f"{dataset}/dense/seed{seed}"
    pruner = pruning.get("pruner", "synflow")
    if not isinstance(pruner, str):
        pruner = pruner.get("class_path", "custom") if isinstance(pruner, dict) else type(pruner).__name__
    pruner = safe_part(pruner.rsplit(".", 1)[-1])
    sparsity = pruning.get("sparsity", 0.1)
    if sparsity is None:
        sparsity = f"c{pruning.get('compression')}"
    density = "ticket" if sparsity == -1 else f"{sparsity:g}" if isinstance(sparsity, (int, float)) else str(sparsity)
    levels = pruning.get("levels", 1)
    return f"{dataset}/{pruner}/{density}{f'-L{levels}' if levels and levels > 1 else ''}/seed{seed}"
