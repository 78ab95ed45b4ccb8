"""A sweep config as a list of runs: loading, grid expansion, and each run's identity.

A run's identity is its whole resolved configuration (every constructor argument with its default
filled in, the seed, the trainer settings, whether pictures are drawn, and a format tag), not its
folder name: a stored result counts for a run only when the identities match, so editing ``base``
can never leave results of the old configuration in ``results.csv``.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from plantnseek.errors import UsageError

# Short axis names and where they go in a run's configuration.
AXES = {
    "dataset": ("data", "dataset"),
    "seed": ("seed", None),
    "depth": ("model", "depth"),
    "width": ("model", "width"),
    "pruner": ("pruning", "pruner"),
    "sparsity": ("pruning", "sparsity"),
    "levels": ("pruning", "levels"),
}
SECTIONS = ("data", "model", "pruning", "trainer")
TOP_KEYS = ("name", "base", "grid", "pictures", "stack")
# Bump when the meaning of a stored configuration changes, so older results are redone.
IDENTITY_FORMAT = "plantnseek-sweep-run/1"
DENSE_EPOCHS = 10  # trainer.max_epochs of a run without pruning, unless the config sets it


@dataclass
class RunSpec:
    """One run of the grid: its axis values and the full configuration they produce."""

    name: str
    values: dict[str, Any]
    seed: int
    data: dict[str, Any]
    model: dict[str, Any]
    pruning: dict[str, Any] | None
    trainer: dict[str, Any] = field(default_factory=dict)
    pictures: bool = True
    stack: bool = True

    @property
    def point(self) -> str:
        """The run's grid values as one would write them: ``pruner=mag,seed=1``."""
        return ",".join(f"{a}={v}" for a, v in self.values.items())

    @property
    def label(self) -> str:
        return str(self.pruning.get("pruner", "dense")) if self.pruning else "dense"

    @functools.cached_property
    def identity(self) -> dict[str, Any]:
        """The resolved configuration (``config``) and its hash: what a stored result must match."""
        config = resolved_config(self)
        text = json.dumps(config, sort_keys=True, separators=(",", ":"))
        return {"hash": hashlib.sha256(text.encode()).hexdigest()[:20], "config": config}


@functools.lru_cache(maxsize=None)
def defaults(section: str) -> tuple[tuple[str, Any], ...]:
    """The constructor defaults of the class that takes a section's keys."""
    from plantnseek.callbacks.pruning import Pruning
    from plantnseek.data import PlantedDataModule
    from plantnseek.module import PlantedMLP

    cls = {"data": PlantedDataModule, "model": PlantedMLP, "pruning": Pruning}[section]
    return tuple((k, p.default) for k, p in inspect.signature(cls.__init__).parameters.items()
                 if p.default is not inspect.Parameter.empty and k not in ("seed", "dataset" if section == "model" else ""))


def canonical(value: Any) -> Any:
    """JSON-stable form: tuples as lists, anything unusual as its repr."""
    return json.loads(json.dumps(value, sort_keys=True, default=repr))


def resolved_config(spec: RunSpec) -> dict[str, Any]:
    trainer = dict(spec.trainer)
    if spec.pruning is None:
        trainer.setdefault("max_epochs", DENSE_EPOCHS)
    return canonical({
        "format": IDENTITY_FORMAT,
        "seed": spec.seed,
        "data": {**dict(defaults("data")), **spec.data},
        "model": {**dict(defaults("model")), **spec.model},
        "pruning": None if spec.pruning is None else {**dict(defaults("pruning")), **spec.pruning},
        "trainer": trainer,
        "pictures": spec.pictures,
    })


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


def load_config(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise UsageError(f"sweep config {path!r} does not exist")
    try:
        with open(path) as f:
            config = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise UsageError(f"sweep config {path!r} is not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(config, dict) or "grid" not in config:
        raise UsageError(f"sweep config {path!r} needs a 'grid' mapping of axes (and a 'base' run)")
    unknown = set(config) - set(TOP_KEYS)
    if unknown:
        raise UsageError(f"unknown key {sorted(unknown)[0]!r} in sweep config; allowed: {', '.join(TOP_KEYS)}")
    for key in ("pictures", "stack"):
        if key in config and not isinstance(config[key], bool):
            raise UsageError(f"{key} {config[key]!r} is invalid; allowed: true or false (unquoted YAML booleans)")
    if not isinstance(config["grid"], dict):
        raise UsageError("the sweep's 'grid' must be a mapping of axes to lists of values")
    return config


def mapping(where: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"{where} {value!r} is invalid; it must be a mapping of settings")
    return dict(value)


def base_run(base: dict[str, Any] | None) -> dict[str, Any]:
    """The base run's sections, from fit-config keys (a Pruning callback in trainer.callbacks) or ``pruning``."""
    base = copy.deepcopy(mapping("base", base))
    unknown = set(base) - {"seed_everything", *SECTIONS}
    if unknown:
        raise UsageError(f"unknown key {sorted(unknown)[0]!r} in the sweep's base run; "
                         f"allowed: seed_everything, {', '.join(SECTIONS)}")
    trainer = mapping("base.trainer", base.get("trainer"))
    prunings = [] if base.get("pruning") is None else [mapping("base.pruning", base["pruning"])]
    others = []
    for cb in trainer.pop("callbacks", None) or []:
        path = cb.get("class_path", "") if isinstance(cb, dict) else str(cb)
        if path.endswith("Pruning"):
            prunings.append(mapping(f"the init_args of {path}", cb.get("init_args")))
        else:
            others.append(path)
    if others:
        raise UsageError(f"sweep runs take no extra callbacks (found {others[0]!r}); pictures and summaries are built in")
    if len(prunings) > 1:
        raise UsageError(f"the sweep's base run gives the pruning settings {len(prunings)} times (counting base.pruning "
                         "and each Pruning callback in base.trainer.callbacks); give them once")
    return {"seed": base.get("seed_everything", 1), "data": mapping("base.data", base.get("data")),
            "model": mapping("base.model", base.get("model")), "pruning": prunings[0] if prunings else None,
            "trainer": trainer}


def axis_target(axis: str) -> tuple[str, str | None]:
    if axis in AXES:
        return AXES[axis]
    section, _, key = axis.partition(".")
    if section in SECTIONS and key and "." not in key:
        return section, key
    raise UsageError(f"unknown axis {axis!r}; allowed: {', '.join(AXES)}, or data.X, model.X, pruning.X, trainer.X")


def parse_value(axis: str, value: Any) -> Any:
    if axis == "sparsity" and isinstance(value, str):
        if value != "ticket":
            raise UsageError(f"sparsity {value!r} is invalid; allowed: a kept fraction in (0, 1], or ticket")
        return -1
    return value


@functools.lru_cache(maxsize=None)
def allowed_keys(section: str) -> frozenset[str]:
    """The keyword arguments a sweep may set in each section (those of the class that takes them)."""
    import pytorch_lightning as pl

    from plantnseek.callbacks.pruning import Pruning
    from plantnseek.data import PlantedDataModule
    from plantnseek.module import PlantedMLP

    cls = {"data": PlantedDataModule, "model": PlantedMLP, "pruning": Pruning, "trainer": pl.Trainer}[section]
    keys = set(inspect.signature(cls.__init__).parameters) - {"self", "args", "kwargs"}
    return frozenset(keys - {"seed"} - ({"dataset"} if section == "model" else set()) - (
        {"callbacks", "logger", "enable_checkpointing", "accelerator", "devices"} if section == "trainer" else set()))


def check_keys(run: dict[str, Any]) -> None:
    for section in SECTIONS:
        if run.get(section) is None:
            continue
        unknown = sorted(set(run[section]) - allowed_keys(section))
        if unknown:
            raise UsageError(f"unknown {section} key {unknown[0]!r}; allowed: {', '.join(sorted(allowed_keys(section)))}")


PREFIXES = {"seed": "seed", "depth": "d", "width": "w", "levels": "L"}


def run_name(values: dict[str, Any]) -> str:
    """A run's folder under ``runs/``, and its TensorBoard name: its grid values as path components,
    e.g. ``circle/synflow/ticket/seed1`` (other axes as ``model.lr=0.01``)."""
    parts = []
    for axis, value in values.items():
        text = f"{PREFIXES[axis]}{value}" if axis in PREFIXES else str(value) if axis in AXES else f"{axis}={value}"
        parts.append(re.sub(r"[^A-Za-z0-9=,._-]", "_", text))
    return "/".join(parts)


def grid_points(config: dict[str, Any], overrides: dict[str, list[Any]] | None = None) -> list[RunSpec]:
    """Every combination of the grid axes as a RunSpec (keys checked; values by :mod:`plantnseek.sweep_check`)."""
    grid = dict(config.get("grid") or {})
    grid.update(overrides or {})
    if not grid:
        raise UsageError("the sweep grid has no axes")
    for axis, values in grid.items():
        axis_target(axis)
        if not isinstance(values, list) or not values:
            raise UsageError(f"axis {axis!r} is empty; give a non-empty list of values")
    base = base_run(config.get("base"))
    check_keys(base)
    for axis in grid:
        section, key = axis_target(axis)
        if key is not None:
            check_keys({section: {key: None}})
    specs, names = [], set()
    axes = list(grid)
    for combo in itertools.product(*(grid[a] for a in axes)):
        run = copy.deepcopy(base)
        values = dict(zip(axes, combo))
        for axis, value in values.items():
            section, key = axis_target(axis)
            value = parse_value(axis, value)
            if section == "seed":
                run["seed"] = value
            else:
                if section == "pruning" and run["pruning"] is None:
                    run["pruning"] = {}
                run[section][key] = value
        name = run_name(values)
        if name in names:  # two points in one folder would overwrite each other's results
            raise UsageError(f"two grid points share the run folder {name!r}; give each axis distinct values")
        names.add(name)
        specs.append(RunSpec(name=name, values=values, pictures=config.get("pictures", True),
                             stack=config.get("stack", True), **run))
    return specs
