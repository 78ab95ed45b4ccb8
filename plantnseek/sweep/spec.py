"""A sweep config as a list of runs: loading, grid expansion, and each run's identity.

A run's identity is its whole resolved configuration (every constructor argument with its default
filled in, the seed, the trainer settings, whether pictures are drawn, and a format tag), not its
folder name: a stored result counts for a run only when the identities match, so editing ``base``
can never leave results of the old configuration in ``results.csv``. The identity also holds what
makes a run's numbers outside its configuration (:class:`plantnseek.sweep.identity.Sources`): the
training engine and digests of the user code and checkpoints its task and scorer come from.
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

from plantnseek.core.errors import UsageError
from plantnseek.trainer import defaults
from plantnseek.core.runconfig import DENSE_EPOCHS
from plantnseek.sweep.identity import Sources

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
IDENTITY_FORMAT = "plantnseek-sweep-run/2"  # 2: summaries record dead and ticket.density


@dataclass
class RunSpec:
    """One run of the grid: its full configuration, and which settings are its grid axes.

    Its axis values, folder name and table labels are read from the configuration itself, so they can
    never disagree with what trains.
    """

    axes: tuple[str, ...]
    seed: int
    data: dict[str, Any]
    model: dict[str, Any]
    pruning: dict[str, Any] | None
    trainer: dict[str, Any] = field(default_factory=dict)
    pictures: bool = True
    stack: bool = True
    sources: Sources = field(default_factory=Sources, repr=False, compare=False)

    @property
    def values(self) -> dict[str, Any]:
        """Each axis's setting in this run, as written in a grid (``sparsity: ticket`` for -1); an axis of
        another part of a union grid reads the setting this run has (its default where not given)."""
        found = {}
        for axis in self.axes:
            section, key = axis_target(axis)
            if section == "seed":
                value = self.seed
            elif section == "trainer" or key in (getattr(self, section) or {}) or getattr(self, section) is None:
                value = (getattr(self, section) or {}).get(key)
            else:
                value = dict(defaults(section)).get(key)
            found[axis] = "ticket" if axis == "sparsity" and value == -1 else value
        return found

    @property
    def name(self) -> str:
        return run_name(self.values)

    @property
    def point(self) -> str:
        """The run's grid values as one would write them: ``pruner=mag,seed=1``."""
        return ",".join(f"{a}={v}" for a, v in self.values.items())

    @property
    def label(self) -> str:
        return str(self.pruning.get("pruner", "dense")) if self.pruning else "dense"

    @functools.cached_property
    def identity(self) -> dict[str, Any]:
        """The resolved configuration (``config``), what else makes the numbers (``code``: engine, user source
        and checkpoint digests) and a hash of both: what a stored result must match."""
        config = resolved_config(self)
        code = self.sources.of(config)
        text = json.dumps({"config": config, "code": code}, sort_keys=True, separators=(",", ":"))
        return {"hash": hashlib.sha256(text.encode()).hexdigest()[:20], "config": config, "code": code}


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
    grids = config["grid"] if isinstance(config["grid"], list) else [config["grid"]]
    if not grids or not all(isinstance(g, dict) for g in grids):
        raise UsageError("the sweep's 'grid' must be a mapping of axes to lists of values, or a list of such "
                         "mappings (the sweep runs their union)")
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


def check_one_value(grid: dict[str, list[Any]], overrides: dict[str, list[Any]]) -> None:
    """Refuse two axes that set one setting (``pruner`` and ``pruning.pruner``): the run would train with
    one value and be named after the other. A ``--grid`` of an axis's own name replaces it instead."""
    def given(axis: str) -> str:
        text = [("null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)) for v in grid[axis]]
        return f"--grid {axis}={','.join(text)}" if axis in overrides else f"the grid axis {axis} [{', '.join(text)}]"

    seen: dict[tuple[str, str | None], str] = {}
    for axis in sorted(grid, key=lambda a: a in overrides):  # the config's axes first, then --grid
        target = axis_target(axis)
        if target in seen:
            raise UsageError(f"{given(axis)} sets the same setting as {given(seen[target])}; give it once")
        seen[target] = axis


def grid_points(config: dict[str, Any], overrides: dict[str, list[Any]] | None = None) -> list[RunSpec]:
    """Every combination of the grid axes as a RunSpec (keys checked; values by :mod:`plantnseek.sweep.check`).

    ``grid`` may be a list of grids: the sweep is their union (e.g. singleshot pruners and an iterative
    schedule in one comparison). Every run then has every part's axes, read from its own settings; a run
    two parts share is run once; ``--grid`` overrides apply to each part.
    """
    grids = config.get("grid") or {}
    grids = grids if isinstance(grids, list) else [grids]
    axes = tuple(dict.fromkeys(a for g in grids for a in [*dict(g or {}), *(overrides or {})]))
    specs: list[RunSpec] = []
    names: dict[str, tuple[int, RunSpec]] = {}
    sources = Sources()
    for part, grid in enumerate(grids):
        for spec in _points(config, dict(grid or {}), overrides or {}, axes, sources):
            if spec.name in names:
                first_part, first = names[spec.name]
                if first_part != part and first.identity["hash"] == spec.identity["hash"]:
                    continue  # the same run in two parts of a union grid: once
                # two points in one folder would overwrite each other's results
                raise UsageError(f"two grid points share the run folder {spec.name!r}; give each axis distinct values")
            names[spec.name] = (part, spec)
            specs.append(spec)
    return specs


def _points(config: dict[str, Any], grid: dict[str, list[Any]], overrides: dict[str, list[Any]],
            axes: tuple[str, ...], sources: Sources) -> list[RunSpec]:
    """The runs of one grid (one part of a union grid), named by all the union's ``axes``."""
    grid.update(overrides)
    if not grid:
        raise UsageError("the sweep grid has no axes")
    for axis, values in grid.items():
        axis_target(axis)
        if not isinstance(values, list) or not values:
            raise UsageError(f"axis {axis!r} is empty; give a non-empty list of values")
    check_one_value(grid, overrides)
    base = base_run(config.get("base"))
    check_keys(base)
    for axis in grid:
        section, key = axis_target(axis)
        if key is not None:
            check_keys({section: {key: None}})
    specs = []
    for combo in itertools.product(*grid.values()):
        run = copy.deepcopy(base)
        for axis, value in zip(grid, combo):
            section, key = axis_target(axis)
            value = parse_value(axis, value)
            if section == "seed":
                run["seed"] = value
            else:
                if section == "pruning" and run["pruning"] is None:
                    run["pruning"] = {}
                run[section][key] = value
        specs.append(RunSpec(axes=axes, pictures=config.get("pictures", True), stack=config.get("stack", True),
                             sources=sources, **run))
    return specs
