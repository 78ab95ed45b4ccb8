"""LightningCLI wiring: one seed for everything, the task chosen once, CPU and TensorBoard by default."""
from __future__ import annotations

import os
import sys
import warnings

import torch

from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from plantnseek.callbacks.pictures import Pictures
from plantnseek.callbacks.summary import RunSummary
from plantnseek.reporting import ProgressLines
from plantnseek.errors import UsageError
from plantnseek.data import PlantedDataModule
from plantnseek.module import PlantedMLP, check_same_network


def integer_seed(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"seed_everything {value!r} is invalid; give an integer seed (it fixes ticket, data and masks)")
    return value


DEFAULT_EPOCHS = 10  # the reference's default; Lightning's own default is 1000


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


    def _parse_ckpt_path(self) -> None:
        """Check a given checkpoint against the config before anything is built or written.

        (Lightning's default would silently replace the config's model arguments by the checkpoint's.)
        """
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

    def before_fit(self) -> None:
        # With the Pruning callback, the epoch count follows from its schedule (no user arithmetic).
        from plantnseek.callbacks.summary import find_pruning

        pruning = find_pruning(self.trainer)
        asked = self.config[self.subcommand].trainer.get("max_epochs")
        if pruning is None and asked is None:
            self.trainer.fit_loop.max_epochs = DEFAULT_EPOCHS
        if pruning is not None:
            pruning.target_density(self.model)  # a target that keeps nothing fails before anything is written
            if asked is not None and asked != pruning.total_epochs:
                print(f"note: the Pruning callback trains levels x pre_epochs + post_epochs = {pruning.total_epochs} "
                      f"epochs; trainer.max_epochs={asked} is ignored", file=sys.stderr)
            self.trainer.fit_loop.max_epochs = pruning.total_epochs
        self._name_run(pruning)

    def _name_run(self, pruning: object) -> None:
        """Log into ``lightning_logs/<what the run is>/version_N`` (unless the user chose a logger)."""
        from pytorch_lightning.loggers import TensorBoardLogger

        from plantnseek.runconfig import run_name

        if self.config[self.subcommand].trainer.get("logger") not in (None, True):
            return
        cfg = self.config[self.subcommand]
        settings = None
        if pruning is not None:
            settings = {"pruner": pruning.scorer.name, "sparsity": pruning.sparsity,
                        "compression": pruning.compression, "levels": pruning.levels}
        name = run_name(cfg.data.dataset, cfg.seed_everything, settings)
        root = self.trainer.default_root_dir
        self.trainer.loggers = [TensorBoardLogger(root, name=os.path.join("lightning_logs", name), default_hp_metric=False)]


def trainer_defaults() -> dict:
    return {
        "accelerator": "cpu",
        "devices": 1,
        "num_sanity_val_steps": 0,
        # progress bars in a terminal; in logs and pipes they are only carriage-return noise
        "enable_progress_bar": sys.stdout.isatty(),
        "callbacks": [RunSummary(), Pictures(), ModelCheckpoint(save_last="link")]
                     + ([] if sys.stdout.isatty() else [ProgressLines()]),  # piped: a line per epoch and step
    }


def run_cli(argv: list[str]) -> PlantnseekCLI:
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    return PlantnseekCLI(
        PlantedMLP,
        PlantedDataModule,
        trainer_defaults=trainer_defaults(),
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
