"""plantnseek: plant a known sparse ticket in an MLP, prune at initialisation, measure whether it was found.

For Trainer users: ``from plantnseek import PlantedMLP, PlantedDataModule`` and
``from plantnseek.callbacks import Pruning``; one call each for a ticket, a run and a sweep:
``plantnseek.plant_ticket``, ``plantnseek.fit_run``, ``plantnseek.run_sweep`` (:mod:`plantnseek.api`). The names load on
first use, so importing the package (and commands such as ``plantnseek ticket``) costs no Lightning import.
"""
from __future__ import annotations

from typing import Any

_EXPORTS = {"PlantedMLP": "plantnseek.module", "PlantedDataModule": "plantnseek.data",
            "plant_ticket": "plantnseek.api", "fit_run": "plantnseek.api", "run_sweep": "plantnseek.api"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'plantnseek' has no attribute {name!r}")
