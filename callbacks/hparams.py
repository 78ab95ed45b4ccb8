"""A run's settings and outcome as TensorBoard's HParams (or any logger's hyperparameters).

Every run logs the same columns and metrics, so runs of a sweep, of several sweeps and of fits compare in
one table: every model, data and pruning setting; text ``dense`` where a pruning setting does not apply;
outcomes split by direction (accuracy: higher is better; rescaled MSE: lower is better), NaN where one
does not apply. :class:`plantnseek.callbacks.RunSummary` logs them at the end of a run.
"""
from __future__ import annotations

import inspect
from typing import Any

DENSE = "dense"  # what a dense run shows where a pruning setting does not apply
METRICS = ("accuracy", "rescaled_mse")  # a task's primary metric: higher is better, lower is better
# Every run logs every outcome (NaN where it does not apply): TensorBoard's HParams tab takes its metric
# columns from one run's experiment summary, picked arbitrarily, so a run lacking one would hide it.
OUTCOMES = (*(f"outcome/{when}_{m}" for when in ("final", "pruned", "ticket") for m in METRICS),
            "outcome/recall", "outcome/precision", "outcome/collapsed", "outcome/dead_pruned", "outcome/dead_final",
            "outcome/param_sparsity", "outcome/epochs")


def _column(value: Any) -> float | str:
    """One HParams cell. A column keeps one type in every run (TensorBoard's filters fail on mixed types):
    numbers and booleans as numbers, anything else (lists, None) as text."""
    return float(value) if isinstance(value, (bool, int, float)) else str(value)


def hparams_of(run: Any, pruning: Any, data: Any, summary: dict[str, Any] | None = None) -> dict[str, float | str]:
    """The settings a run is compared by in TensorBoard's HParams tab: every model, data and pruning setting
    (any of which a sweep can vary), the same columns for every run. Pruning settings are text, ``dense``
    for a dense run; ``sparsity`` says ``ticket`` for ticket-density runs, ``density`` is the number."""
    from plantnseek.callbacks.pruning import Pruning
    from plantnseek.data import data_settings
    from plantnseek.core.fingerprint import model_settings

    hp = run.hparams
    out: dict[str, float | str] = {"dataset": str(hp.dataset), "depth": float(hp.depth), "width": float(hp.width),
                                   "seed": float(hp.seed), "pruner": pruning.scorer.name if pruning else DENSE}
    settings = {**model_settings(hp), **data_settings(data.hparams)}
    out.update({k: _column(v) for k, v in settings.items()
                if k not in ("data.dataset", "seed_everything", "model.depth", "model.width")})
    s = summary or {}
    if pruning is None:
        out["sparsity"], out["density"] = DENSE, 1.0
    elif pruning.sparsity == -1:
        out["sparsity"] = "ticket"
        out["density"] = float(s.get("ticket", {}).get("density", s.get("param_sparsity", pruning.density)))
    else:
        out["sparsity"], out["density"] = f"{pruning.density:g}", float(pruning.density)
    config = pruning.config() if pruning else {}
    for key in inspect.signature(Pruning.__init__).parameters:
        if key not in ("self", "pruner", "sparsity"):
            out[f"pruning.{key}"] = str(config.get(key, getattr(pruning, key, None))) if pruning else DENSE
    args = " ".join(f"{k[len('pruner.'):]}={v}" for k, v in config.items() if k.startswith("pruner."))
    out["pruning.pruner_args"] = (args or "-") if pruning else DENSE
    return out


def outcome_metrics(s: dict[str, Any]) -> dict[str, float]:
    """A run's outcome, as the metric columns of TensorBoard's HParams tab: split by direction (accuracy,
    higher is better; rescaled MSE, lower is better), every one of OUTCOMES, NaN where it does not apply."""
    name, dead = s["primary_metric"], s.get("dead") or {}
    values = {f"outcome/final_{name}": s["final"].get(name),
              f"outcome/pruned_{name}": (s.get("pruned") or {}).get(name),
              f"outcome/ticket_{name}": s["ticket"]["metric"],
              "outcome/recall": s["recovery"]["recall"], "outcome/precision": s["recovery"]["precision"],
              "outcome/collapsed": s["recovery"]["collapsed"], "outcome/dead_pruned": dead.get("after_pruning"),
              "outcome/dead_final": dead.get("final"), "outcome/param_sparsity": s["param_sparsity"],
              "outcome/epochs": s.get("epochs")}
    return {k: float("nan") if values.get(k) is None else float(values[k]) for k in OUTCOMES}


def log_hparams(logger: Any, params: dict[str, Any], metrics: dict[str, float], step: int) -> None:
    """Settings and outcome through the logger's public interface. TensorBoard's ``log_hyperparams`` takes
    the outcome too (that links them in its HParams tab); a logger whose ``log_hyperparams`` takes only
    params (CSVLogger, most others) gets the params, and the outcome as metrics."""
    if "metrics" in inspect.signature(logger.log_hyperparams).parameters:
        logger.log_hyperparams(params, metrics)
    else:
        logger.log_hyperparams(params)
        logger.log_metrics(metrics, step=step)
