"""Writes ``summary.json`` into the run directory and logs the ticket's reference values.

The summary is what sweeps and people read after a run: configuration, the planted ticket, what the
pruner kept and how much of the ticket that is, the final test results and the per-epoch history.
It is written at the end of ``fit`` and also when a run fails or is interrupted (with its status); a run
interrupted after its completed summary was written (while its pictures were drawn) stays completed.
"""
from __future__ import annotations


import os
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from plantnseek.callbacks.hparams import hparams_of, log_hparams, outcome_metrics
from plantnseek.callbacks.pruning import ticket_density
from plantnseek.callbacks.lookup import log_dir_of, pruning_of
from plantnseek.core.errors import UsageError
from plantnseek.core.files import write_summary
from plantnseek.core.masking import recovery
from plantnseek.core.run import DEAD_TOLERANCE

if TYPE_CHECKING:
    from plantnseek.core.run import Run


def layer_table(run: "Run", scores: dict, prunable: set[str] | None = None) -> list[dict[str, Any]]:
    """Per parameter: shape, size, kept fraction, FLOPs (in x out for weights, out for biases), score stats.

    ``prunable`` names the parameters the pruner ranks (default: those with scores).
    """
    rows = []
    for name, p, mask in run.net.masked_parameters(bias=True):
        shape = list(p.shape)
        s = scores.get(name)
        row = {"name": name, "shape": shape, "size": p.numel(), "kept_fraction": float(mask.mean()),
               "flops": p.numel(), "prunable": name in prunable if prunable is not None else s is not None}
        if s is not None:
            s = s.double()
            row.update({"score_mean": float(s.mean()), "score_var": float(s.var(unbiased=False)),
                        "score_sum": float(s.sum())})
        rows.append(row)
    return rows


def ticket_info(run: "Run", x: Any, y: Any) -> dict[str, Any]:
    """The planted ticket on the test split (``x``, ``y``): its counts, metric and output spread."""
    nonzero, total = run.ticket.counts()
    info = {"sparsity": nonzero / total, "sparsity_counts": "weights (as the reference's 'ticket sparsity')",
            "nonzero": nonzero, "total": total, "metric_name": run.task.metric_name,
            "metric": run.ticket_metric(x, y), "output_spread": run.ticket_spread(x)}
    if not run.task.builtin:  # user and run: tasks can change after a run; record which ticket it was
        info["fingerprint"] = run.task.fingerprint(run.hparams.depth)
    return info


def dead_info(pruned_spread: float | None, final_spread: float | None, ticket_spread: float | None) -> dict[str, Any]:
    """Whether the network was dead right after the last pruning step and at the end (None: not measured, e.g.
    no pruning), with the measured output spreads and the tolerance they are compared with."""
    tolerance = None if ticket_spread is None else DEAD_TOLERANCE * ticket_spread
    flags = [None if s is None or tolerance is None else s < tolerance for s in (pruned_spread, final_spread)]
    return {"after_pruning": flags[0], "final": flags[1],
            "output_spread": {"after_pruning": pruned_spread, "final": final_spread},
            "ticket_spread": ticket_spread, "tolerance": tolerance}


def build_summary(run: "Run", pruning: Any, ticket: dict[str, Any], initial: dict[str, float] | None,
                  epochs: int, status: str, test: Any = None) -> dict[str, Any]:
    """The content of summary.json for one run (a PlantedMLP and, if any, its Pruning callback); ``test``
    (the test batches) measures whether the network the run ends with is dead."""
    hp = run.hparams
    masks = [layer.weight_mask for layer in run.net.layers]
    rec = recovery(masks, run.ticket.weight_masks())
    # The prunable set follows from the settings (not from the scores, which a run may not have yet).
    names = {n for n, _, _ in pruning.prunable(run)} if pruning else \
        {n for n, _, _ in run.net.masked_parameters(bias=False)}
    layers = layer_table(run, pruning.last_scores if pruning else {}, names if pruning else None)
    prunable = [r for r in layers if r["name"] in names]
    kept = sum(r["kept_fraction"] * r["size"] for r in prunable)
    size = sum(r["size"] for r in prunable)
    flops = sum(r["flops"] for r in layers)
    history = run.history
    final = {k[len("test_"):]: v for k, v in history[-1].items() if k.startswith("test_")} if history else {}
    pruned = pruning.pruned if pruning else None
    if pruned is not None and pruning.post_epochs == 0:
        final = dict(pruned)  # nothing trained after the last pruning step: the run ends with the pruned network
    # the one ticket density: the ticket's share of this run's prunable parameters (as ``sparsity: -1`` keeps)
    ticket = {**ticket, "density": ticket_density(run.ticket, bool(pruning and pruning.prune_bias)),
              "density_counts": "weights and biases" if pruning and pruning.prune_bias else "weights"}
    dead = dead_info(pruning.pruned_spread if pruning else None,
                     run.output_spread(test) if test is not None else None, ticket.get("output_spread"))
    return {
        "status": status,
        "dataset": hp.dataset, "depth": hp.depth, "width": hp.width, "seed": hp.seed,
        "optimizer": hp.optimizer, "lr": hp.lr,
        "pruner": pruning.scorer.name if pruning else None,
        "levels": pruning.levels if pruning else 0,
        "scope": pruning.scope if pruning else None,
        "budget": pruning.budget if pruning else None,
        "prune_bias": pruning.prune_bias if pruning else None,
        "sparsity_target": pruning.density if pruning else 1.0,
        "at_ticket_density": bool(pruning and pruning.sparsity == -1),
        "param_sparsity": kept / size,
        "param_kept": round(kept), "param_prunable": size,
        "flop_sparsity": sum(r["kept_fraction"] * r["flops"] for r in layers) / flops,
        "ticket": ticket,
        "recovery": {"recall": rec["recall"], "precision": rec["precision"], "collapsed": rec["collapsed"],
                     "layers": rec["layers"]},
        "dead": dead,
        "primary_metric": run.primary_metric,
        "initial": initial,
        "pruned": pruned,
        "final": final,
        "epochs": epochs,
        "history": history,
        "prune_events": pruning.events if pruning else [],
        "layers": layers,
    }


def dead_note(dead: dict[str, Any] | None) -> str:
    """" DEAD after pruning and at the end" (or one of them), or "": said as plainly as COLLAPSED."""
    when = [w for k, w in (("after_pruning", "after pruning"), ("final", "at the end")) if (dead or {}).get(k)]
    return f" DEAD {' and '.join(when)}" if when else ""


def result_line(s: dict[str, Any]) -> str:
    """The run's result in one line: final metric, kept parameters, ticket, recovery, collapsed or dead."""
    name = s["primary_metric"]
    final = s["final"].get(name)
    t, rec = s["ticket"], s["recovery"]
    density = t.get("density", t["sparsity"])
    parts = [f"{s['dataset']} d{s['depth']} w{s['width']} seed {s['seed']}",
             f"{s['pruner'] or 'dense'}: test {name} {final:.4g}" if final is not None else "not trained",
             *([f"after pruning {s['pruned'][name]:.4g}"] if s.get("pruned") else []),
             f"kept {s['param_kept']}/{s['param_prunable']} prunable ({s['param_sparsity']:.4f})",
             f"ticket alone {t['metric_name']} {t['metric']:.4g} at density {density:.4f}",
             f"recall {rec['recall']:.3f} precision {rec['precision']:.3f}" + (" COLLAPSED" if rec["collapsed"] else "")
             + dead_note(s.get("dead"))]
    return " | ".join(parts)


ENDED_EARLY = "the process ended during training without finishing (killed, or a crash in native code)"


class RunSummary(Callback):
    """The outputs of each run of the model (a single run is a stack of one), the same for ``fit`` and sweeps.

    Logs the ticket's sparsity and metric once, writes ``summary.json`` at the end of the run (and when it
    fails or is interrupted, with its status) and logs the run's settings and outcome as TensorBoard HParams.
    ``directories`` are the runs' directories (default: the trainer's log directory, for a single run).
    """

    def __init__(self, filename: str = "summary.json", verbose: bool = True,
                 directories: list[str] | None = None) -> None:
        self.filename = filename
        self.verbose = verbose
        self.directories = directories
        self.tickets: list[dict[str, Any]] | None = None
        self.initials: list[dict[str, float] | None] | None = None
        self.summaries: list[dict[str, Any]] = []  # the summaries last written, per run

    @property
    def last(self) -> dict[str, Any] | None:
        """The summary of the (first) run, as last written."""
        return self.summaries[0] if self.summaries else None

    def directory(self, trainer: pl.Trainer, r: int) -> str:
        return self.directories[r] if self.directories else log_dir_of(trainer)

    def _tickets(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> list[dict[str, Any]]:
        if self.tickets is None:
            self.tickets = [ticket_info(run, *trainer.datamodule.member(r).split("test"))
                            for r, run in enumerate(pl_module.runs)]
        return self.tickets

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        tickets = self._tickets(trainer, pl_module)
        if self.initials is None and trainer.current_epoch == 0:
            self.initials = [run.evaluate(trainer.datamodule.member(r).test_dataloader())
                             for r, run in enumerate(pl_module.runs)]
        for r, ticket in enumerate(tickets):
            pl_module.log_run(r, {"ticket/sparsity": ticket["sparsity"], "ticket/metric": ticket["metric"]}, step=0)
        # A kill or a crash in native code ends the process without running any Python: until the run's end
        # (or its exception) replaces it, its summary says so, and no run is left without one.
        self.write(trainer, pl_module, "failed", reason=ENDED_EARLY)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        paths = self.write(trainer, pl_module, "completed")
        for r, s in enumerate(self.summaries if paths else []):
            data = trainer.datamodule.member(r)
            for logger in pl_module.loggers_of(r):
                params = {**hparams_of(pl_module.runs[r], pruning_of(trainer, r), data, s), "engine": pl_module.engine}
                log_hparams(logger, params, outcome_metrics(s), trainer.global_step)
        if self.verbose and paths:
            for s, path in zip(self.summaries, paths):
                print(result_line(s) + f"\n  -> {path}")

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt) and self.completed(len(pl_module.runs)):
            self.note_missing_pictures(trainer, pl_module)
            return  # Ctrl-C after the results were written (while the pictures were drawn): the run is complete
        if isinstance(exception, UsageError) or not trainer.training and trainer.state.fn != "fit":
            for r, data in enumerate(self.summaries):  # not even the provisional summary of on_fit_start
                if data.get("reason") == ENDED_EARLY:
                    os.remove(os.path.join(self.directory(trainer, r), self.filename))
            return  # bad input is reported as such and leaves nothing behind; only fits have summaries
        status = "interrupted" if isinstance(exception, KeyboardInterrupt) else "failed"
        reason = f"{type(exception).__name__}: {exception}"
        try:
            self.write(trainer, pl_module, status, reason=reason)
        except Exception as e:  # noqa: BLE001 - e.g. the data could not be drawn: still say why the run stopped
            if not trainer.fast_dev_run:
                for r, run in enumerate(pl_module.runs):
                    hp = run.hparams
                    write_summary(self.directory(trainer, r),
                                  {"status": status, "reason": reason, "dataset": hp.get("dataset"),
                                   "depth": hp.get("depth"), "width": hp.get("width"), "seed": hp.get("seed"),
                                   "summary_error": f"{type(e).__name__}: {e}"}, self.filename)

    def completed(self, runs: int) -> bool:
        """Whether the summaries of all ``runs`` runs were written as completed (fit's results are all in)."""
        return len(self.summaries) == runs and all(s.get("status") == "completed" for s in self.summaries)

    def note_missing_pictures(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A completed run stopped while its pictures were drawn: its summary names those not drawn."""
        from plantnseek.callbacks.pictures import Pictures

        drawers = [c for c in trainer.callbacks if isinstance(c, Pictures)]
        if not drawers or trainer.fast_dev_run:
            return
        for r, (data, missing) in enumerate(zip(self.summaries, drawers[0].missing(trainer, pl_module))):
            if missing:
                data["pictures_missing"] = missing
                write_summary(self.directory(trainer, r), data, self.filename)

    def summary(self, trainer: pl.Trainer, pl_module: pl.LightningModule, status: str, r: int = 0) -> dict[str, Any]:
        initial = self.initials[r] if self.initials else None
        pruning, test = pruning_of(trainer, r), trainer.datamodule.member(r).test_dataloader()
        done = status == "completed"  # only the network a finished run ends with is measured (dead, final)
        data = build_summary(pl_module.runs[r], pruning, self._tickets(trainer, pl_module)[r],
                             initial, trainer.current_epoch, status, test if done else None)
        data["steps"] = trainer.global_step
        ends_pruned = data["pruned"] is not None and pruning.post_epochs == 0
        if done and pl_module.evaluated_at != trainer.global_step and not ends_pruned:
            # steps were taken after the last evaluation (max_steps, check_val_every_n_epoch, limit_val_batches
            # 0): the final result is measured on the weights the run ends with, not an earlier epoch's
            data["final"] = pl_module.runs[r].evaluate(test)
        data["engine"] = pl_module.engine  # what took every optimizer step: the kernel or PyTorch (same mathematics)
        data["engine_reason"] = pl_module.engine_reason  # why not the kernel, where it is not
        return data

    def state_dict(self) -> dict[str, Any]:
        return {"tickets": self.tickets, "initials": self.initials}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.tickets, self.initials = state_dict.get("tickets"), state_dict.get("initials")

    def write(self, trainer: pl.Trainer, pl_module: pl.LightningModule, status: str,
              reason: str | None = None) -> list[str] | None:
        if trainer.fast_dev_run:
            return None  # a debugging run: nothing to keep
        self.summaries, paths = [], []
        for r in range(len(pl_module.runs)):
            data = self.summary(trainer, pl_module, status, r)
            if reason:
                data["reason"] = reason
            self.summaries.append(data)
            paths.append(write_summary(self.directory(trainer, r), data, self.filename))
        return paths
