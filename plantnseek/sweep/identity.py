"""What a sweep run's identity holds besides its configuration, and how two identities differ.

A stored result counts for a run only when its identity matches (:mod:`plantnseek.sweep.spec`): the
resolved configuration, and what else makes the numbers, :class:`Sources` (the training engine, digests
of the user code and checkpoints its task and scorer come from). :func:`changes` names what differs, for
the one-line re-run message.
"""
from __future__ import annotations

import hashlib
from typing import Any

from plantnseek.core.errors import UsageError


class Sources:
    """What makes a run's numbers besides its configuration: the training engine (``kernel`` or ``torch``),
    and a digest of each user module defining its task or scorer and of a ``run:`` task's checkpoint.

    One per sweep, shared by its runs: each file is read once, however many runs use it. Built-in tasks
    and scorers have none (the package and :data:`IDENTITY_FORMAT` cover them).
    """

    def __init__(self) -> None:
        self.digests: dict[str, str] = {}
        self._engine: str | None = None

    def engine(self) -> str:
        if self._engine is None:
            from plantnseek.engine import kernel_build
            self._engine = "torch" if kernel_build.mode() == "torch" or kernel_build.load() is None else "kernel"
        return self._engine

    def digest(self, what: str, path: str) -> str:
        if path not in self.digests:
            try:
                with open(path, "rb") as f:
                    self.digests[path] = hashlib.sha256(f.read()).hexdigest()[:20]
            except OSError as e:
                raise UsageError(f"cannot read {path!r} ({what}): {e.strerror}; a sweep digests it to tell "
                                 f"when it changes") from None
        return self.digests[path]

    def of(self, config: dict[str, Any]) -> dict[str, str]:
        """``engine`` and ``<what> <file>: digest`` for a resolved configuration."""
        from plantnseek.core.registry import scorer_sources, task_sources

        files = task_sources(config["data"]["dataset"])
        if config["pruning"] is not None:
            files += scorer_sources(config["pruning"]["pruner"])
        return {"engine": self.engine(), **{what: self.digest(what, path) for what, path in files}}


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(config, dict):
        return {prefix: config}
    flat: dict[str, Any] = {}
    for k, v in config.items():
        flat.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return flat


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Settings that differ between two resolved configurations, as ``key old -> new``."""
    a, b = flatten(old), flatten(new)
    return [f"{k} {a.get(k, '(unset)')} -> {b.get(k, '(unset)')}" for k in sorted(set(a) | set(b))
            if a.get(k, "(unset)") != b.get(k, "(unset)")]


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between a stored identity and the current one, as the re-run message names it."""
    if not old.get("config"):
        return ["made before run identities"]
    found = differences(old["config"], new["config"])
    if "code" not in old:
        return found + ["made before engine and source digests were recorded"]
    a, b = old["code"], new["code"]
    if a.get("engine") != b["engine"]:
        found.append(f"engine {a.get('engine')} -> {b['engine']}")
    found += [f"{what} changed" for what in sorted(set(a) & set(b) - {"engine"}) if a[what] != b[what]]
    return found or ["identity differs"]
