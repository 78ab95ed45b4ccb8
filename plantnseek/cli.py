"""The ``plantnseek`` command: LightningCLI subcommands plus ``ticket`` and ``main``.

``fit``/``validate``/``test`` go to a LightningCLI over :class:`PlantedMLP` and
:class:`PlantedDataModule`; the other subcommands are small argparse programs. Every user error ends
as one line on stderr and exit code 2.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Callable

from plantnseek.errors import RunFailure, UsageError

LIGHTNING_COMMANDS = ("fit", "validate", "test")

USAGE = """usage: plantnseek <command> [options]

Can pruning find the winning ticket? Plant a known sparse ticket in an MLP, prune it, measure recovery.

commands:
  fit        train (and prune, with the Pruning callback) from a config:  plantnseek fit --config configs/circle.yaml
  validate   evaluate a model on the test split (LightningCLI)
  test       evaluate a model on the test split (LightningCLI), e.g. with --ckpt_path
  ticket     show the planted ticket:  plantnseek ticket --dataset circle --depth 5 --width 100 [--json]
  main       run with the reference main.py flags:  plantnseek main --dataset circle --pruner synflow ...
  sweep      a grid of runs in parallel, results.csv and figure.png:  plantnseek sweep --config configs/sweeps/smoke.yaml

Run 'plantnseek <command> --help' for a command's options.
"""


def _lightning(argv: list[str]) -> None:
    from plantnseek.lightning_cli import run_cli

    run_cli(argv)


def _ticket(argv: list[str]) -> None:
    from plantnseek.ticket_cmd import run

    run(argv)


def _main(argv: list[str]) -> None:
    from plantnseek.main_cmd import run

    run(argv)


def _sweep(argv: list[str]) -> int:
    from plantnseek.sweep import run

    return 1 if run(argv)["failed"] else 0  # failed runs are recorded; the exit code tells scripts


COMMANDS: dict[str, Callable[[list[str]], int | None]] = {"ticket": _ticket, "main": _main, "sweep": _sweep}


def quiet_libraries() -> None:
    """Drop library chatter that says nothing about the run (tips, deprecations inside Lightning)."""
    import logging
    import warnings

    for text in ("isinstance\\(treespec, LeafSpec\\)", "The number of training batches", "transfer_batch_to_device",
                 "dirpath has changed", "Checkpoint directory .* exists and is not empty",
                 "LightningCLI's args parameter"):
        warnings.filterwarnings("ignore", message=f".*{text}")

    class NoTips(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "Tip:" not in record.getMessage()

    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(NoTips())


def find_cause(error: BaseException, kind: type) -> BaseException | None:
    """``error`` itself or the first exception of ``kind`` in its cause/context chain."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def one_line(message: str, limit: int = 300) -> str:
    """jsonargparse's (often long, multi-line) messages as one short line naming the actual problem."""
    text = " ".join(part.strip() for part in message.strip().splitlines() if part.strip())
    missing = re.search(r"class_path '([^']+)': No module named '([^']+)'", text)
    if missing:
        return (f"cannot import {missing.group(1)}: no module named {missing.group(2)!r}; "
                f"install it or add its folder to PYTHONPATH")
    option = re.search(r"class_path '([^']+)': Option '([^']+)' is not accepted", text)
    if option:
        return f"{option.group(1)} has no option {option.group(2)!r}"
    return text if len(text) <= limit else text[:limit] + " ..."


def union_reason(message: str) -> str | None:
    """The actual complaint in jsonargparse's "does not validate against any of the Union subtypes" text."""
    if "Does not validate against any of the Union subtypes" not in message:
        return None
    lines = message.splitlines()
    for line, following in zip(lines, lines[1:]):  # the sibling of "Expected a <class 'str'>": the class's own error
        indent = len(line) - len(line.lstrip())
        if (line.strip().startswith("- Expected a") and following.startswith(" " * indent + "- ")
                and not following.strip().startswith(("- Expected a", "- Does not validate", "- Not a valid"))):
            return following.strip()[2:]
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    if argv[0] in ("-V", "--version"):
        from importlib.metadata import version

        print(f"plantnseek {version('plantnseek')}")
        return 0
    command, rest = argv[0], argv[1:]
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: your own scorer modules next to your configs import
    quiet_libraries()
    try:
        if command in LIGHTNING_COMMANDS:
            _lightning(argv)
        elif command in COMMANDS:
            code = COMMANDS[command](rest)
            if code:
                return code
        else:
            raise UsageError(f"unknown command {command!r}; allowed: {', '.join(LIGHTNING_COMMANDS + tuple(COMMANDS))}")
    except SystemExit as e:  # argparse / jsonargparse already printed their message; Ctrl-C in a fit
        return int(e.code) if isinstance(e.code, int) else (0 if e.code is None else 2)
    except Exception as e:
        # Our errors may arrive wrapped (jsonargparse re-raises what a class's __init__ raised).
        usage, failure = find_cause(e, UsageError), find_cause(e, RunFailure)
        if usage is not None:
            print(f"plantnseek: error: {usage}", file=sys.stderr)
            return 2
        if failure is not None:
            print(f"plantnseek: run failed: {failure} (status recorded in summary.json)", file=sys.stderr)
            return 1
        reason = union_reason(str(e))
        if reason:  # e.g. a scorer's own check of its init_args, reported by jsonargparse as text only
            print(f"plantnseek: error: {reason}", file=sys.stderr)
            return 2
        if type(e).__name__ == "ArgumentError" and type(e).__module__.startswith(("jsonargparse", "argparse")):
            print(f"plantnseek: error: {one_line(str(e))} (see 'plantnseek {command} --help')", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
