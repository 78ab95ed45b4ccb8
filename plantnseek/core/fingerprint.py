"""A run's settings as flat ``{key: value}`` and the differences between two of them.

A resumed ``fit`` must run under the settings its checkpoint was made with (otherwise its summary
would describe masks and numbers that another configuration produced), so checkpoints carry them and
a resume is compared key by key. No imports from the rest of the package: every layer may use this.
"""
from __future__ import annotations

from typing import Any, Mapping

from plantnseek.core.errors import UsageError


def normalise(value: Any) -> Any:
    """Equal settings compare equal however they were spelled (1 and 1.0, a tuple and a list)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    if isinstance(value, Mapping):
        return {k: normalise(v) for k, v in value.items()}
    return repr(value)


def differences(theirs: Mapping[str, Any], ours: Mapping[str, Any]) -> list[str]:
    """``key old -> new`` for every key whose value differs (a key missing on one side reads as unset)."""
    out = []
    for key in list(theirs) + [k for k in ours if k not in theirs]:
        a, b = theirs.get(key, "unset"), ours.get(key, "unset")
        if normalise(a) != normalise(b):
            out.append(f"{key} {a} -> {b}")
    return out


def refuse_differences(theirs: Mapping[str, Any], ours: Mapping[str, Any], what: str = "the checkpoint") -> None:
    diff = differences(theirs, ours)
    if diff:
        raise UsageError(f"{what} was made with other settings: {', '.join(diff)}; resume with the settings it "
                         "was made with (its run's config.yaml), or start a new run without --ckpt_path")


def model_settings(hp: Any) -> dict[str, Any]:
    """The model's hyperparameters that change a run's numbers, keyed as in a fit config."""
    keys = ("dataset", "depth", "width", "seed", "optimizer", "lr", "weight_decay", "lr_drops", "lr_drop_rate")
    rename = {"seed": "seed_everything", "dataset": "data.dataset"}
    out = {rename.get(k, f"model.{k}"): hp[k] for k in keys if k in hp}
    if "model.lr_drops" in out:
        out["model.lr_drops"] = list(out["model.lr_drops"] or [])
    return out


def check_same_network(theirs: Any, ours: Any) -> None:
    """Refuse a checkpoint of another task or architecture with a clear message (not a size mismatch)."""
    keys = ("dataset", "depth", "width")
    if any(k in theirs and theirs[k] != ours[k] for k in keys):
        def describe(h: Any) -> str:
            return ", ".join(f"{k} {h.get(k) if hasattr(h, 'get') else h[k]}" for k in keys)

        raise UsageError(f"the checkpoint is of another network ({describe(theirs)}); this run is {describe(ours)}")
