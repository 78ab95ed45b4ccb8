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
from plantnseek.errors import UsageError, check_seed
from plantnseek.data import PlantedDataModule
from plantnseek.module import PlantedMLP, check_same_network


def integer_seed(value: object) -> int:
    return check_seed(value, "seed_everything")


DEFAULT_EPOCHS = 10  # the reference's default; Lightning's own default is 1000


class PlantnseekCLI(LightningCLI):
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


def trainer_defaults() -> dict:
    return {
        "accelerator": "cpu",
        "devices": 1,
        "num_sanity_val_steps": 0,
        # progress bars in a terminal; in logs and pipes they are only carriage-return noise
        "enable_progress_bar": sys.stdout.isatty(),
        "callbacks": [RunSummary(), Pictures(), ModelCheckpoint(save_last="link")],
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
        parser_kwargs={"default_env": False, "exit_on_error": False},
        load_from_checkpoint_support=False,  # the config defines the network; a checkpoint must match it
        auto_configure_optimizers=False,  # optimizers are model.optimizer / lr / lr_drops (the reference's)
    )
