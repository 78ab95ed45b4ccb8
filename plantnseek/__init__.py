"""plantnseek: plant a known sparse ticket in an MLP, prune at initialisation, measure whether it was found.

For Trainer users: ``from plantnseek import PlantedMLP, PlantedDataModule`` and
``from plantnseek.callbacks import Pruning``. The names load on first use, so importing the package
(and commands such as ``plantnseek ticket``) costs no Lightning import.
"""
from __future__ import annotations

from typing import Any

_EXPORTS = {"PlantedMLP": "plantnseek.module", "PlantedDataModule": "plantnseek.data"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'plantnseek' has no attribute {name!r}")
