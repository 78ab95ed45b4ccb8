"""LightningCLI wiring: one seed for everything, the task chosen once, CPU and TensorBoard by default.

Everything the user can get wrong is checked before anything is written: the seed, the accelerator, the
output folder, an unbounded epoch count, a duplicated Pruning callback, trainer settings the model's own
optimizer steps exclude, a run too large for the memory, and a checkpoint made under other settings than
the run that resumes it. What can only be found during fit (data a user task draws wrongly) leaves no folder.
"""
from __future__ import annotations

import os
import warnings
from typing import Any

import torch

from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from plantnseek.callbacks.lookup import find_pruning
from plantnseek.data import PlantedDataModule, data_settings
from plantnseek.core.errors import UsageError, check_seed
from plantnseek.core.fingerprint import check_same_network, model_settings, refuse_differences
from plantnseek.cli.interrupts import interrupted_message, refusal_leaves_nothing, restore_sigint
from plantnseek.memory import check_fits
from plantnseek.module import PlantedMLP
from plantnseek.cli.paths import check_writable_dir
from plantnseek.core.runconfig import DENSE_EPOCHS
from plantnseek.sweep.check import check_supported
from plantnseek.trainer import cli_defaults


def integer_seed(value: object) -> int:
    return check_seed(value, "seed_everything")




def check_accelerator(value: Any) -> None:
    """An accelerator this machine has, said in one line (Lightning raises deep inside the Trainer)."""
    if not isinstance(value, str) or value.lower() in ("cpu", "auto"):
        return
    from pytorch_lightning.accelerators import AcceleratorRegistry

    registry = AcceleratorRegistry
    here = sorted(n for n in registry.available_accelerators() if registry[n]["accelerator"].is_available())
    name = value.lower()
    wanted = ["cuda", "mps"] if name == "gpu" else [name]
    if not any(n in here for n in wanted):
        known = name == "gpu" or name in registry.available_accelerators()
        what = "is not available on this machine" if known else "is unknown"
        raise UsageError(f"trainer.accelerator {value!r} {what}; allowed here: {', '.join(['auto', *here])}")


def pruning_settings(callbacks: Any) -> list[dict[str, Any]]:
    """The init_args of each Pruning callback in a config's ``trainer.callbacks``."""
    import importlib

    from plantnseek.callbacks.pruning import Pruning

    found = []
    for cb in callbacks if isinstance(callbacks, list) else [callbacks] if callbacks else []:
        path = cb.get("class_path") if hasattr(cb, "get") else None
        if not path:
            continue
        module, _, name = path.rpartition(".")
        cls = getattr(importlib.import_module(module), name, None)
        if isinstance(cls, type) and issubclass(cls, Pruning):
            args = cb.get("init_args") or {}
            found.append(args.as_dict() if hasattr(args, "as_dict") else dict(args))
    return found


def check_one_pruning(callbacks: Any) -> None:
    """Two Pruning callbacks would prune twice under one schedule (Lightning would fail with a traceback)."""
    found = []
    for args in pruning_settings(callbacks):
        pruner = args.get("pruner", "synflow")
        found.append(pruner if isinstance(pruner, str) else str(pruner.get("class_path", "?")))
    if len(found) > 1:
        raise UsageError(f"the Pruning callback is given {len(found)} times in trainer.callbacks "
                         f"(pruners {', '.join(found)}); give it once")


def pruning_state(ckpt: dict[str, Any]) -> dict[str, Any] | None:
    """The Pruning callback's saved state in a checkpoint (None if the run had none)."""
    return next((v for k, v in (ckpt.get("callbacks") or {}).items() if str(k).split("{")[0] == "Pruning"), None)


def run_settings(model_hp: Any, data_hp: Any, pruning: dict[str, Any] | None, detail: bool = True) -> dict[str, Any]:
    """A fit's settings that change its numbers, keyed as in a fit config (``detail=False``: only the pruner)."""
    out = {**model_settings(model_hp), **data_settings(data_hp)}
    if pruning is None or not detail:
        out["pruning"] = "none" if pruning is None else pruning.get("pruner", "?")
    else:
        out.update({f"pruning.{k}": v for k, v in pruning.items()})
    return out


FIT_HELP = ("Train a planted MLP, and prune it with the Pruning callback (example: plantnseek fit --config "
            "configs/synflow_singleshot.yaml --seed_everything 3). The project's options come first: "
            "--seed_everything (the one seed of ticket, data and masks), --model.* (depth, width, optimizer, lr, ...) "
            "and --data.* (dataset, noise, batch sizes, ...); Lightning's --trainer.* options follow. Pruning is a "
            "callback in the config (trainer.callbacks, class_path plantnseek.callbacks.Pruning). Its options (pruner, "
            "sparsity, levels, pre/post epochs, scope, prune_bias, ...) are listed by 'plantnseek fit "
            "--trainer.callbacks.help plantnseek.callbacks.Pruning' and set with "
            "--trainer.callbacks.init_args.OPTION when the config has that callback.")


class PlantnseekCLI(LightningCLI):
    def add_core_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Model and data before the trainer, so ``--help`` shows the project's options first."""
        parser.add_lightning_class_args(self._model_class, "model", subclass_mode=self.subclass_mode_model)
        parser.add_lightning_class_args(self._datamodule_class, "data", subclass_mode=self.subclass_mode_data)
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.set_defaults({"trainer." + k: v for k, v in self.trainer_defaults.items() if k != "callbacks"})

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # The data module owns the task; ``seed_everything`` is the one seed of ticket, data and masks.
        parser.link_arguments("data.dataset", "model.dataset")
        parser.link_arguments("seed_everything", "data.seed", compute_fn=integer_seed)
        parser.link_arguments("seed_everything", "model.seed", compute_fn=integer_seed)

    def _set_seed(self) -> None:
        """Seed quietly: Lightning's "Seed set to N" line would come before any error about the config."""
        from lightning_fabric.utilities.seed import seed_everything

        seed = self._get(self.config, "seed_everything")
        seed_everything(integer_seed(seed), workers=True, verbose=False)

    def _parse_ckpt_path(self) -> None:
        """Check a given checkpoint against the config before anything is built or written.

        (Lightning's default would silently replace the config's model arguments by the checkpoint's.)
        """
        self.checkpoint: dict[str, Any] | None = None
        if not self.config.get("subcommand"):
            return
        cfg = self.config[self.config.subcommand]
        path = cfg.get("ckpt_path")
        if path in (None, "last", "best", "hpc", "registry"):
            return
        if not os.path.isfile(path):
            raise UsageError(f"checkpoint {path!r} does not exist")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001 - any unreadable file is bad input
            raise UsageError(f"checkpoint {path!r} cannot be read ({type(e).__name__})") from None
        if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
            raise UsageError(f"{path!r} is not a Lightning checkpoint")
        theirs = ckpt.get("hyper_parameters", {})
        ours = {"dataset": cfg.data.dataset, "depth": cfg.model.depth, "width": cfg.model.width}
        check_same_network(theirs, ours)
        self.checkpoint = ckpt

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.config.subcommand]
        check_accelerator(cfg.trainer.get("accelerator"))
        check_writable_dir(cfg.trainer.get("default_root_dir") or os.getcwd(), "trainer.default_root_dir")
        check_one_pruning(cfg.trainer.get("callbacks"))
        check_supported(cfg.trainer)
        fit = self.config.subcommand == "fit"
        # before the model is built: planting allocates the whole network at once
        pruning = pruning_settings(cfg.trainer.get("callbacks")) if fit else []
        check_fits(cfg.data.as_dict(), cfg.model.as_dict(), pruning[0] if pruning else None, "model.width",
                   checkpoints=fit and cfg.trainer.get("enable_checkpointing") is not False, pictures=fit)

    def check_resume(self, pruning: Any) -> None:
        """A resumed fit must run under its checkpoint's settings (a dense run may train longer)."""
        if self.checkpoint is None:
            return
        state = pruning_state(self.checkpoint)
        their_pruning = None if state is None else state.get("config", {})
        our_pruning = None if pruning is None else pruning.config()
        detail = (their_pruning is None) == (our_pruning is None)  # pruned vs dense: say only that
        theirs = run_settings(self.checkpoint.get("hyper_parameters", {}),
                              self.checkpoint.get("datamodule_hyper_parameters", {}), their_pruning, detail)
        ours = run_settings(self.model.hparams, self.datamodule.hparams, our_pruning, detail)
        if state is not None and "config" not in state:  # an older checkpoint: compare what it has
            ours = {k: v for k, v in ours.items() if not k.startswith("pruning.")}
        refuse_differences(theirs, ours)

    def before_fit(self) -> None:
        # With the Pruning callback, the epoch count follows from its schedule (no user arithmetic).
        pruning = find_pruning(self.trainer)
        self.check_resume(pruning)
        trainer_cfg = self.config[self.subcommand].trainer
        asked = trainer_cfg.get("max_epochs")
        if pruning is None and asked is None:
            self.trainer.fit_loop.max_epochs = DENSE_EPOCHS
        if pruning is None and asked is not None and asked < 0 and (trainer_cfg.get("max_steps") in (None, -1)) \
                and trainer_cfg.get("max_time") is None:
            raise UsageError(f"trainer.max_epochs {asked} never stops (no max_steps, max_time or Pruning schedule); "
                             f"give a number of epochs >= 0 (default {DENSE_EPOCHS})")
        if pruning is not None:
            pruning.target_density(pruning.run_of(self.model))  # a target that keeps nothing fails before anything is written
            if asked is not None and asked != pruning.total_epochs:  # one value per setting, never ignored
                raise UsageError(f"trainer.max_epochs {asked} contradicts the Pruning schedule, levels x pre_epochs + "
                                 f"post_epochs = {pruning.total_epochs} epochs; leave trainer.max_epochs unset (or "
                                 f"{pruning.total_epochs}), or change the schedule")
            self.trainer.fit_loop.max_epochs = pruning.total_epochs
        self._name_run(pruning)

    def _name_run(self, pruning: object) -> None:
        """Log into ``lightning_logs/<what the run is>/version_N`` (unless the user chose a logger)."""
        from pytorch_lightning.loggers import TensorBoardLogger

        from plantnseek.core.runconfig import run_name

        if self.config[self.subcommand].trainer.get("logger") not in (None, True):
            return
        cfg = self.config[self.subcommand]
        settings = None
        if pruning is not None:
            settings = {"pruner": pruning.scorer.name, "sparsity": pruning.sparsity,
                        "compression": pruning.compression, "levels": pruning.levels}
        name = run_name(cfg.data.dataset, cfg.model.depth, cfg.model.width, cfg.seed_everything, settings)
        root = self.trainer.default_root_dir
        self.trainer.loggers = [TensorBoardLogger(root, name=os.path.join("lightning_logs", name), default_hp_metric=False)]

    def before_validate(self) -> None:
        find_pruning(self.trainer)

    def before_test(self) -> None:
        find_pruning(self.trainer)

    def fit(self, model: Any, **kwargs: Any) -> None:
        """``trainer.fit``; Ctrl-C ends in one line saying what was saved and how to resume; a refusal
        during fit (e.g. data a user task draws wrongly only at full size) leaves no run folder."""
        try:
            with refusal_leaves_nothing(self.trainer.log_dir):
                self.trainer.fit(model, **kwargs)
        except SystemExit:
            if not self.trainer.interrupted:
                raise
            restore_sigint()
            raise interrupted_message(self.trainer, "plantnseek fit") from None


def run_cli(argv: list[str]) -> PlantnseekCLI:
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    return PlantnseekCLI(
        PlantedMLP,
        PlantedDataModule,
        trainer_defaults=cli_defaults(),
        seed_everything_default=1,
        save_config_kwargs={"overwrite": True},
        args=argv,
        parser_kwargs={"default_env": False, "exit_on_error": False,
                       **{cmd: {"usage": f"plantnseek {cmd} [-c CONFIG] [--seed_everything N] [--model.X V] "
                                         f"[--data.X V] [--trainer.X V] [--ckpt_path PATH]",
                                "description": FIT_HELP if cmd == "fit" else
                                FIT_HELP.replace("Train a planted MLP, and prune it", "Evaluate a planted MLP, e.g. pruned")} for cmd in ("fit", "validate", "test")}},
        load_from_checkpoint_support=False,  # the config defines the network; a checkpoint must match it
        auto_configure_optimizers=False,  # optimizers are model.optimizer / lr / lr_drops (the reference's)
    )
