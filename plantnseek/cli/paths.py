"""Output folders checked before a run starts, so a bad one is one line rather than a failure mid-run."""
from __future__ import annotations

import os
import tempfile

from plantnseek.core.errors import UsageError


def check_writable_dir(path: str, name: str) -> None:
    """``path`` is, or can be created as, a folder we may write into; nothing is left behind by the check."""
    path = os.path.abspath(path)
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        what = "is a file" if existing == path else f"is inside {existing!r}, which is a file"
        raise UsageError(f"{name} {path!r} {what}; give a folder")
    try:
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".plantnseek-check-"))
    except OSError as e:
        raise UsageError(f"{name} {path!r} is not writable ({e.strerror} in {existing!r}); give a folder you can "
                         "write to") from None
