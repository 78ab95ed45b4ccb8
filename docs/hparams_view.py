"""Draw what TensorBoard's HParams tab shows for a sweep, from the sweep's event files (for the README).

    .venv/bin/python docs/hparams_view.py <sweep out folder> docs/hparams_view.png

Reads every run's HParams session (its settings) and outcome scalars under ``<out>/runs`` — exactly what
``tensorboard --logdir <out>`` lists in its HParams table — and renders the table, best final metric first per task.
"""
from __future__ import annotations

import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402

SETTINGS = ["dataset", "depth", "width", "pruner", "sparsity", "density", "seed", "pruning.levels",
            "pruning.prune_bias", "model.lr", "engine"]
OUTCOMES = ["outcome/final_accuracy", "outcome/final_rescaled_mse", "outcome/pruned_accuracy",
            "outcome/pruned_rescaled_mse", "outcome/recall", "outcome/collapsed", "outcome/dead_final"]


def read_run(directory: str) -> dict | None:
    events = EventAccumulator(directory, size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    content = events.PluginTagToContent("hparams")
    if "_hparams_/session_start_info" not in content:
        return None
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    row = {"run": os.path.relpath(directory)}
    for key, value in start.hparams.items():
        kind = value.WhichOneof("kind")
        row[key] = getattr(value, kind) if kind else ""
    for tag in OUTCOMES:
        if tag in events.Tags()["scalars"]:
            row[tag] = events.Scalars(tag)[-1].value
    return row


def main() -> None:
    out, png = sys.argv[1], sys.argv[2]
    rows = [r for d, _, files in os.walk(os.path.join(out, "runs"))
            if any(f.startswith("events.out") for f in files) for r in [read_run(d)] if r]
    # best first within a task: accuracy is higher-is-better, rescaled MSE lower-is-better (NaN: not this task's)
    rows.sort(key=lambda r: (str(r.get("dataset")), -r.get("outcome/final_accuracy", math.nan) if not math.isnan(
        r.get("outcome/final_accuracy", math.nan)) else r.get("outcome/final_rescaled_mse", 0.0)))
    columns = SETTINGS + OUTCOMES
    cells = [[("-" if isinstance(r.get(c), float) and math.isnan(r[c]) else f"{r[c]:.4g}" if isinstance(r.get(c), float)
               else str(r.get(c, ""))) for c in columns] for r in rows]
    fig, ax = plt.subplots(figsize=(15, 0.32 * len(rows) + 1.2))
    ax.axis("off")
    labels = [c.replace("outcome/", "").replace("rescaled_mse", "resc. MSE").replace("pruning.", "pruning.\n")
              .replace("_", "\n", 1) for c in columns]
    table = ax.table(cellText=cells, colLabels=labels, loc="upper center", cellLoc="left", colLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.25)
    for (row, _), cell in table.get_celld().items():
        if row == 0:
            cell.set_facecolor("#e8eef7")
            cell.set_text_props(weight="bold")
            cell.set_height(cell.get_height() * 2)  # two-line labels
    ax.set_title(f"TensorBoard HParams of the {len(rows)} runs of sweep {os.path.basename(os.path.normpath(out))!r} "
                 "(read from the event files; best final metric first per task)",
                 fontsize=10)
    fig.savefig(png, dpi=90, bbox_inches="tight")


if __name__ == "__main__":
    main()
