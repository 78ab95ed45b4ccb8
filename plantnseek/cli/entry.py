"""The ``plantnseek`` command: LightningCLI subcommands plus ``ticket`` and ``main``.

``fit``/``validate``/``test`` go to a LightningCLI over :class:`PlantedMLP` and
:class:`PlantedDataModule`; the other subcommands are small argparse programs. Every user error ends
as one line on stderr and exit code 2.
"""
from __future__ import annotations

import faulthandler
import os
import re
import sys
from typing import Callable

from plantnseek.core.errors import Interrupted, RunFailure, UsageError, find_cause, lightning_refusal
from plantnseek.core.tuning import keep_freed_memory, one_thread_by_default

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
  report     one table and figure across sweeps and runs:  plantnseek report DIR... [--by ...] [--compare A B]

Run 'plantnseek <command> --help' for a command's options.
"""


def _lightning(argv: list[str]) -> None:
    from plantnseek.cli.lightning_cli import run_cli

    run_cli(argv)


def _ticket(argv: list[str]) -> None:
    from plantnseek.cli.ticket import run

    run(argv)


def _main(argv: list[str]) -> None:
    from plantnseek.cli.main_command import run

    run(argv)


def _sweep(argv: list[str]) -> int:
    from plantnseek.sweep.command import SweepInterrupted, run

    try:
        return 1 if run(argv)["failed"] else 0  # failed runs are recorded; the exit code tells scripts
    except SweepInterrupted as e:  # Ctrl-C: what was kept and the command that resumes
        print(f"plantnseek: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # before any run started: nothing was written
        print("plantnseek: interrupted before any run started", file=sys.stderr)
        return 130


def _report(argv: list[str]) -> None:
    from plantnseek.sweep.report import run

    run(argv)


COMMANDS: dict[str, Callable[[list[str]], int | None]] = {"ticket": _ticket, "main": _main, "sweep": _sweep,
                                                          "report": _report}


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
            # Ctrl-C is reported by plantnseek in one line of its own; device lines would come before errors
            message = record.getMessage()
            return not any(text in message for text in ("Tip:", "Detected KeyboardInterrupt", "PU available: "))

    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(NoTips())


def _allowed(subtypes: str) -> str:
    names = re.findall(r"<class '([\w.]+)'>", subtypes)
    return " or ".join("null" if n == "NoneType" else n.rpartition(".")[2] for n in names)


def nested_problem(message: str) -> str | None:
    """The innermost bad key of a jsonargparse union error (e.g. a bad value inside a callback's init_args),
    named in full with the value given and what is allowed; None if the message has no nested key."""
    lines = message.splitlines()
    chain: list[tuple[int, str, int]] = []  # (indent, key, line number)
    for i, line in enumerate(lines):
        m = re.match(r'(\s*)(?:- )?Parser key "([^"]+)":', line)
        if m:
            indent = len(m.group(1))
            if chain and indent <= chain[-1][0]:
                break  # another branch of the union: the first one is the class the user named
            chain.append((indent, m.group(2), i))
    if not chain:
        return None
    key = chain[0][1] + "".join(".init_args." + k for _, k, _ in chain[1:])
    tail = lines[chain[-1][2]:]
    text = "\n".join(tail)
    given = re.search(r"Got value: (.+)$", text, re.M) or \
        re.search(r"Given value: (?:NestedArg\(key='[^']*', val=)?(.+?)\)?$", text, re.M)
    if not given:
        return None  # not a bad value (e.g. a missing config file): the message says it already
    value = given.group(1).strip().strip("'\"")
    if "does not correspond to a subclass of Scorer" in text or "subclass of Scorer" in text:
        from plantnseek.core.pruners import SCORERS

        path = re.search(r"Import path (\S+) does not", text)
        return (f"{key}: {path.group(1) if path else value} is not a Scorer; allowed: {', '.join(SCORERS)}, "
                f"or a module.Class subclass of plantnseek.callbacks.Scorer")
    subtypes = re.search(r"Subtypes: (\[.*\])", text)
    expected = re.search(r"Expected a (<class '[\w.]+'>)", text)
    allowed = _allowed(subtypes.group(1)) if subtypes else _allowed(expected.group(1)) if expected else ""
    if value.lower().lstrip("+-") in ("inf", "infinity", "nan"):
        allowed = "a finite number"
    return f"{key}: '{value}' is invalid" + (f"; allowed: {allowed}" if allowed else "")


def clip_line(message: str, limit: int = 300) -> str:
    """jsonargparse's (often long, multi-line) messages as one short line naming the actual problem."""
    nested = nested_problem(message)
    if nested:
        return nested
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
        # your own task and scorer modules next to your configs import, after every installed package: a
        # yaml.py or torch.py of yours does not shadow the real one
        sys.path.append(os.getcwd())
    if not faulthandler.is_enabled() and sys.__stderr__ is not None:  # a crash in native code (the kernel, torch)
        faulthandler.enable(sys.__stderr__)  # names its signal and Python's stack on stderr; exit stays 128+signal
    quiet_libraries()
    keep_freed_memory()
    one_thread_by_default()
    try:
        if command in LIGHTNING_COMMANDS or command in ("main", "sweep"):  # those that train or evaluate
            from plantnseek.engine.kernel_build import check_setting

            check_setting()  # a bad PLANTNSEEK_KERNEL fails here, in one line, before any work
        if command in LIGHTNING_COMMANDS:
            _lightning(argv)
        elif command in COMMANDS:
            code = COMMANDS[command](rest)
            if code:
                return code
        else:
            raise UsageError(f"unknown command {command!r}; allowed: {', '.join(LIGHTNING_COMMANDS + tuple(COMMANDS))}")
    except SystemExit as e:  # argparse / jsonargparse already printed their message
        return int(e.code) if isinstance(e.code, int) else (0 if e.code is None else 2)
    except Interrupted as e:
        print(f"plantnseek: {e}", file=sys.stderr)
        return 130
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
        if reason and not reason.startswith("Import path"):  # e.g. a scorer's own check of its init_args
            print(f"plantnseek: error: {reason}", file=sys.stderr)
            return 2
        if lightning_refusal(e):  # a trainer setting Lightning refuses
            print(f"plantnseek: error: trainer: {clip_line(str(e))}", file=sys.stderr)
            return 2
        if isinstance(e, MemoryError):
            print(f"plantnseek: run failed: out of memory ({clip_line(str(e))}); use smaller data or network",
                  file=sys.stderr)
            return 1
        if type(e).__name__ == "ArgumentError" and type(e).__module__.startswith(("jsonargparse", "argparse")):
            print(f"plantnseek: error: {clip_line(str(e))} (see 'plantnseek {command} --help')", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
