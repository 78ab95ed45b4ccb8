"""Human-readable output of a run: the reference's key lines, and per-epoch lines."""
from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback


def _metric_line(row: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.6g}" for k, v in row.items())


class ProgressLines(Callback):
    """A plain line per epoch and per pruning step, for output that is not a terminal (CI, nohup, a cluster
    job: no progress bar there) and for ``main --verbose``. Prints run 0's lines (a single run's)."""

    def __init__(self) -> None:
        self.printed_events = 0

    def _events(self, trainer: pl.Trainer) -> None:
        from plantnseek.callbacks.lookup import pruning_of

        pruning = pruning_of(trainer, 0)
        for event in (pruning.events if pruning else [])[self.printed_events:]:
            rec = event["recovery"]
            print(f"pruning step {event['level']}/{pruning.levels}: kept {event['kept']}/{event['prunable']} "
                  f"({event['density']:.4f}), ticket recall {rec['recall']:.3f}, precision {rec['precision']:.3f}"
                  + (" COLLAPSED" if rec["collapsed"] else ""), flush=True)
            self.printed_events += 1

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._events(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        run = pl_module.runs[0]
        if trainer.sanity_checking or not run.history:
            return
        row = run.history[-1]
        print(f"epoch {int(row['epoch']) + 1}/{trainer.max_epochs}: "
              + _metric_line({k: v for k, v in row.items() if k != "epoch"}), flush=True)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._events(trainer)


def print_report(s: dict[str, Any]) -> None:
    """The reference's result lines: train results, prune table, parameter/FLOP sparsity, the ticket."""
    print("Train results:")
    rows = [("Init.", s.get("initial"))]
    events = s.get("prune_events") or []
    if s.get("pruned"):  # right after the last pruning step (multishot: after the rewind): the strong ticket
        rows.append(("Post-Prune", s["pruned"]))
    elif events and "test_after_prune" in events[-1]:
        rows.append(("Post-Prune", events[-1]["test_after_prune"]))
    rows.append(("Final", s.get("final")))
    for label, row in rows:
        if row:
            print(f"  {label:<11}" + _metric_line(row))
    print("Prune results:")
    print(f"  {'param':<16} {'shape':<10} {'size':>6} {'kept':>8} {'flops':>6}  score mean / var / sum")
    for r in s["layers"]:
        stats = (f"{r['score_mean']:.3g} / {r['score_var']:.3g} / {r['score_sum']:.3g}" if "score_mean" in r else "-")
        shape = "x".join(map(str, r["shape"]))
        print(f"  {r['name']:<16} {shape:<10} {r['size']:>6} {r['kept_fraction']:>8.4f} {r['flops']:>6}  {stats}")
    total = sum(r["size"] for r in s["layers"])
    kept = round(sum(r["size"] * r["kept_fraction"] for r in s["layers"]))
    print(f"Parameter Sparsity: {kept}/{total} ({kept / total:.4f})")
    flops = sum(r["flops"] for r in s["layers"])
    kept_flops = round(sum(r["flops"] * r["kept_fraction"] for r in s["layers"]))
    print(f"FLOP Sparsity: {kept_flops}/{flops} ({kept_flops / flops:.4f})")
    t = s["ticket"]
    print(f"Sparsity of ticket: {t['sparsity']}")
    label = "Accuracy" if t["metric_name"] == "accuracy" else "MSE"
    print(f"{label} of ticket: {t['metric']}")
    rec = s["recovery"]
    print(f"Ticket recovery: recall {rec['recall']:.4f}, precision {rec['precision']:.4f}, "
          f"{'collapsed (no input-output path)' if rec['collapsed'] else 'not collapsed'}")
