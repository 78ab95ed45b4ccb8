"""``plantnseek ticket``: show the planted ticket of a (dataset, depth, width, seed)."""
from __future__ import annotations

import argparse
import json

from plantnseek.argparsing import CleanArgumentParser
from plantnseek.data import PlantedDataModule
from plantnseek.memory import check_fits
from plantnseek.module import PlantedMLP
from plantnseek.planted import ticket_report


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


def run(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    check_fits({"dataset": args.dataset, "noise": args.noise}, {"depth": args.depth, "width": args.width}, None,
               "--width", checkpoints=False, pictures=False)  # before planting allocates the network
    module = PlantedMLP(dataset=args.dataset, depth=args.depth, width=args.width, seed=args.seed)
    dm = PlantedDataModule(dataset=args.dataset, noise=args.noise, seed=args.seed)
    report = ticket_report(module, *dm.split("test"))
    if args.json:
        print(json.dumps(report))
        return
    print(f"Planted {report['dataset']} ticket, depth {report['depth']}, width {report['width']}, seed {report['seed']}")
    print(f"  sparsity      {report['nonzero']}/{report['total']} = {report['sparsity']:.6f} (weights; biases not counted)")
    print(f"  biases        {report['bias_nonzero']} non-zero ticket biases")
    print(f"  minimum width {report['min_width']}")
    print(f"  {report['metric_name']:<13} {report['metric']:.6g} (the ticket alone, scale-corrected, on the test split)")
    print("  layer  shape        ticket weights  units")
    for row in report["layers"]:
        shape = "x".join(map(str, row["shape"]))
        print(f"  {row['layer']:>5}  {shape:<12} {row['nonzero']:>6}/{row['total']:<8} {row['units']:>5}")
