"""argparse that reports errors as one line and exit code 2 (no usage dump)."""
from __future__ import annotations

import argparse

from plantnseek.core.errors import UsageError


def parse_bool(value: str) -> bool:
    """true/false/1/0/yes/no (any case): the reference's ``type=bool`` made ``False`` true."""
    v = value.strip().lower()
    if v in ("true", "1", "yes", "y", "on"):
        return True
    if v in ("false", "0", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{value!r} is not a boolean; allowed: true, false, 1, 0, yes, no")


class CleanArgumentParser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{self.prog.split()[-1]}: {message}")
