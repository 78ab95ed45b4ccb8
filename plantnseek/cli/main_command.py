"""``plantnseek main``: the reference ``main.py`` command line, run through the Lightning components.

Accepts the reference's flags for planted models so that its example commands run verbatim (with
``python3 main.py`` replaced by ``plantnseek main``) and prints its key result lines. Booleans take
true/false/1/0/yes/no. ``--level L > 1`` runs multishot. Output goes to
``<result-dir>/<exp-suffix or expid>/version_N`` and never overwrites an earlier run.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any

from plantnseek.core.budgets import BUDGETS
from plantnseek.core.pruners import SCORERS
from plantnseek.core.argparsing import CleanArgumentParser, parse_bool
from plantnseek.core.errors import UsageError
from plantnseek.cli.interrupts import interrupted_message, refusal_leaves_nothing, restore_sigint
from plantnseek.memory import check_fits
from plantnseek.cli.paths import check_writable_dir


def build_parser() -> argparse.ArgumentParser:
    p = CleanArgumentParser(prog="plantnseek main", description="Reference main.py flags for planted-ticket models.",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t = p.add_argument_group("training")
    t.add_argument("--dataset", default="circle",
                   help="task: circle, relu, helix, a module.Class task or run:<run dir or checkpoint>")
    t.add_argument("--model", default="planted-model", help="network kind (only planted-model)")
    t.add_argument("--model-class", default="lottery", help="model class (only lottery; default is accepted too)")
    t.add_argument("--depth", type=int, default=5, help="layers including input and output")
    t.add_argument("--width", type=int, default=50, help="width of every hidden layer")
    t.add_argument("--data-noise", type=float, default=0.01, help="label-flip probability (circle) or noise std")
    t.add_argument("--optimizer", default="adam", help="adam, sgd, momentum or rms")
    t.add_argument("--train-batch-size", type=int, default=64, help="training batch size")
    t.add_argument("--test-batch-size", type=int, default=256, help="evaluation batch size")
    t.add_argument("--pre-epochs", type=int, default=0, help="training epochs before each pruning step")
    t.add_argument("--post-epochs", type=int, default=10, help="training epochs after the last pruning step")
    t.add_argument("--lr", type=float, default=0.001, help="learning rate")
    t.add_argument("--lr-drops", type=int, nargs="*", default=[], help="epochs at which the lr is multiplied by --lr-drop-rate")
    t.add_argument("--lr-drop-rate", type=float, default=0.1, help="factor of each lr drop")
    t.add_argument("--weight-decay", type=float, default=0.0, help="L2 weight decay")
    q = p.add_argument_group("pruning")
    q.add_argument("--pruner", default="rand", help=f"{', '.join(SCORERS)} or module.Class")
    q.add_argument("--compression", type=float, default=1.0, help="keep 10^-c when --sparsity is not given")
    q.add_argument("--prune-epochs", type=int, default=1, help="scoring rounds per pruning step")
    q.add_argument("--compression-schedule", default="exponential", help="density over the rounds: exponential or linear")
    q.add_argument("--mask-scope", default="global", help="global or local (per tensor) ranking, or a layer-wise "
                   "budget: uniform, erk, balanced, pyramidal")
    q.add_argument("--prune-dataset-ratio", type=int, default=10, help="pruning subset: ratio x 4 training samples")
    q.add_argument("--prune-batch-size", type=int, default=256, help="batch size when scoring")
    for flag, text in (("--prune-bias", "biases are prunable too"), ("--prune-train-mode", "score in train mode"),
                       ("--reinitialize", "fresh weights under the final mask"),
                       ("--shuffle", "permute each tensor's mask after pruning"), ("--invert", "keep the lowest scores")):
        q.add_argument(flag, type=parse_bool, default=False, metavar="BOOL", help=text)
    q.add_argument("--sparsity", type=float, default=None, help="kept fraction; -1: the ticket's")
    p.add_argument("--level", type=int, default=1, help="prune-train levels; > 1 runs multishot")
    p.add_argument("--experiment", default="singleshot", help="singleshot or multishot")
    p.add_argument("--expid", default="", help="run folder name when --exp-suffix is not given")
    p.add_argument("--exp-suffix", default=None, help="run folder name under --result-dir")
    p.add_argument("--result-dir", default="Results/data", help="output folder")
    p.add_argument("--seed", type=int, default=1, help="the one seed: ticket, data, order, masks")
    p.add_argument("--workers", type=int, default=4, help="ignored (data is in memory)")
    p.add_argument("--gpu", type=int, default=0, help="ignored (CPU)")
    p.add_argument("--no-cuda", action="store_true", help="ignored (always CPU)")
    p.add_argument("--verbose", action="store_true", help="print a line per epoch and pruning step")
    return p


def validate(args: argparse.Namespace) -> None:
    if args.model != "planted-model":
        raise UsageError(f"--model {args.model!r} is not supported; allowed: planted-model")
    if args.model_class not in ("lottery", "default"):
        raise UsageError(f"--model-class {args.model_class!r} is not supported; allowed: lottery")
    from plantnseek.core.registry import get_task

    get_task(args.dataset)  # one line for an unknown or bad task, before anything else
    if args.mask_scope not in ("global", "local", *BUDGETS):
        raise UsageError(f"--mask-scope {args.mask_scope!r} is not supported; allowed: global, local, "
                         f"{', '.join(b for b in BUDGETS if b != 'global')}")
    if args.experiment not in ("singleshot", "multishot"):
        raise UsageError(f"--experiment {args.experiment!r} is not supported; allowed: singleshot, multishot")


def quiet_lightning() -> None:
    """Drop Lightning's start-up chatter (device lines, tips); warnings and errors still show."""
    import logging

    for name in ("pytorch_lightning.utilities.rank_zero", "pytorch_lightning.accelerators.cuda", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run(argv: list[str]) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    validate(args)
    # Build everything first so bad values fail before anything is written.
    from plantnseek.callbacks import Pruning, RunSummary
    from plantnseek.data import PlantedDataModule
    from plantnseek.module import PlantedMLP

    data_args = {"dataset": args.dataset, "noise": args.data_noise, "train_batch_size": args.train_batch_size,
                 "test_batch_size": args.test_batch_size, "prune_dataset_ratio": args.prune_dataset_ratio,
                 "prune_batch_size": args.prune_batch_size}
    model_args = {"depth": args.depth, "width": args.width, "optimizer": args.optimizer, "lr": args.lr,
                  "weight_decay": args.weight_decay, "lr_drops": list(args.lr_drops), "lr_drop_rate": args.lr_drop_rate}
    multishot = args.level > 1 or args.experiment == "multishot"
    pruning_args = {"pruner": args.pruner, "sparsity": args.sparsity,
                    "compression": args.compression if args.sparsity is None else None, "levels": args.level,
                    "pre_epochs": args.pre_epochs, "post_epochs": args.post_epochs, "prune_epochs": args.prune_epochs,
                    "schedule": args.compression_schedule, "prune_bias": args.prune_bias,
                    **({"scope": args.mask_scope} if args.mask_scope in ("global", "local") else {"budget": args.mask_scope}),
                    "invert": args.invert, "shuffle": args.shuffle, "reinitialize": args.reinitialize,
                    "prune_train_mode": args.prune_train_mode, "rewind": multishot}
    dm = PlantedDataModule(**data_args, seed=args.seed)
    check_fits(data_args, model_args, pruning_args, "--width")  # before planting allocates the network
    model = PlantedMLP(dataset=args.dataset, seed=args.seed, **model_args)
    pruning = Pruning(**pruning_args)
    pruning.target_density(model.run)  # fails now on a sparsity that keeps nothing
    check_writable_dir(args.result_dir, "--result-dir")
    summary = RunSummary(verbose=False)  # its one-line summary comes last, after the report

    from pytorch_lightning.loggers import TensorBoardLogger

    from plantnseek.callbacks.summary import result_line
    from plantnseek.callbacks.progress import print_report
    from plantnseek.core.runconfig import fit_config, write_config
    from plantnseek.trainer import build_trainer, run_callbacks

    quiet_lightning()
    name = args.exp_suffix or args.expid or "default"
    # The reference's layout, <result-dir>/<exp-suffix>/version_N: the user names main's runs.
    logger = TensorBoardLogger(save_dir=args.result_dir, name=name, default_hp_metric=False)
    callbacks = run_callbacks(summary, progress_lines=args.verbose or not sys.stdout.isatty())
    trainer = build_trainer(callbacks, schedule=pruning, logger=logger, enable_progress_bar=sys.stdout.isatty())
    print(f"Loading {args.dataset} dataset.")
    print(f"Creating {args.model_class}-{args.model} model (depth {args.depth}, width {args.width}).")
    print(f"{'Multishot' if multishot else 'Singleshot'}: {args.level} level(s) of {args.pre_epochs} pre-epochs, "
          f"pruning with {pruning.scorer.name} for {args.prune_epochs} epoch(s), then {args.post_epochs} post-epochs.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with refusal_leaves_nothing(trainer.log_dir):  # e.g. a user task's data, refused once drawn in full
                write_config(trainer.log_dir, fit_config(args.seed, data_args, model_args, pruning_args))
                trainer.fit(model, datamodule=dm)
        except SystemExit:
            if not trainer.interrupted:
                raise
            restore_sigint()
            raise interrupted_message(trainer, "plantnseek fit") from None
    result = summary.last
    print_report(result)
    print(f"Results saved in {trainer.log_dir}")
    print(result_line(result))
    return result
