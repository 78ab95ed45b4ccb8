"""``plantnseek ticket``: show the planted ticket of a (dataset, depth, width, seed).

Planting and the task's data are all it needs, so it imports no Lightning (tests/test_cli.py checks).
"""
from __future__ import annotations

import argparse
import json

from plantnseek.core.argparsing import CleanArgumentParser
from plantnseek.core.errors import check_number, check_seed
from plantnseek.memory import check_planting
from plantnseek.core.planted import Ticket, plant_network, ticket_report
from plantnseek.core.registry import get_task
from plantnseek.core.sampling import N_SAMPLES, PRUNE_RATIO, TRAIN_FRACTION, make_splits, split_sizes, validate_data_args


def build_parser() -> argparse.ArgumentParser:
    p = CleanArgumentParser(prog="plantnseek ticket", description="Show the ticket planted in the MLP.")
    p.add_argument("--dataset", default="circle",
                   help="circle, relu, helix, a module.Class task or run:<run dir or checkpoint> (default: circle)")
    p.add_argument("--depth", type=int, default=5, help="layers including input and output (default: 5)")
    p.add_argument("--width", type=int, default=50, help="hidden width (default: 50)")
    p.add_argument("--seed", type=int, default=1, help="seed of initialisation, planting and data (default: 1)")
    p.add_argument("--noise", type=float, default=0.01, help="data noise for the test metric (default: 0.01)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return p


def report(dataset: str, depth: int, width: int, seed: int, noise: float) -> dict:
    """The planted ticket and its own metric on the test split a run of these settings would use."""
    task = get_task(dataset)
    check_seed(seed)
    for name, value in (("depth", depth), ("width", width)):
        check_number(name, value, integer=True)
    validate_data_args(task, noise, N_SAMPLES, TRAIN_FRACTION, 1, 1, PRUNE_RATIO, 1)
    check_planting(task, depth, width, N_SAMPLES)  # before planting allocates the network
    ticket = Ticket(plant_network(dataset, depth, width, seed))
    n_train, n_prune = split_sizes(N_SAMPLES, TRAIN_FRACTION, PRUNE_RATIO)
    x, y = make_splits(task, N_SAMPLES, n_train, n_prune, noise, seed)["test"]
    return ticket_report(task, ticket, dataset, depth, width, seed, x, y)


def run(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    r = report(args.dataset, args.depth, args.width, args.seed, args.noise)
    if args.json:
        print(json.dumps(r))
        return
    print(f"Planted {r['dataset']} ticket, depth {r['depth']}, width {r['width']}, seed {r['seed']}")
    print(f"  sparsity      {r['nonzero']}/{r['total']} = {r['sparsity']:.6f} (weights; biases not counted)")
    print(f"  biases        {r['bias_nonzero']} non-zero ticket biases")
    print(f"  minimum width {r['min_width']}")
    print(f"  {r['metric_name']:<13} {r['metric']:.6g} (the ticket alone, scale-corrected, on the test split)")
    print("  layer  shape        ticket weights  units")
    for row in r["layers"]:
        shape = "x".join(map(str, row["shape"]))
        print(f"  {row['layer']:>5}  {shape:<12} {row['nonzero']:>6}/{row['total']:<8} {row['units']:>5}")
