"""Draw what TensorBoard's HParams tab shows for a sweep, from the sweep's event files (for the README).

    .venv/bin/python docs/hparams_view.py <sweep out folder> docs/hparams_view.png

Reads every run's HParams session (its settings) and outcome scalars under ``<out>/runs`` — exactly what
``tensorboard --logdir <out>`` lists in its HParams table — and renders the table, sorted by final metric.
"""
from __future__ import annotations

import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402

SETTINGS = ["dataset", "pruner", "sparsity", "seed", "levels", "prune_bias", "optimizer", "lr"]
OUTCOMES = ["outcome/final_metric", "outcome/recall", "outcome/precision", "outcome/collapsed", "outcome/param_sparsity"]


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
    rows.sort(key=lambda r: -r.get("outcome/final_metric", 0.0))
    columns = SETTINGS + OUTCOMES
    cells = [[(f"{r[c]:.4g}" if isinstance(r.get(c), float) else str(r.get(c, ""))) for c in columns] for r in rows]
    fig, ax = plt.subplots(figsize=(15, 0.32 * len(rows) + 1.2))
    ax.axis("off")
    table = ax.table(cellText=cells, colLabels=[c.replace("outcome/", "") for c in columns], loc="upper center",
                     cellLoc="left", colLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.25)
    for (row, _), cell in table.get_celld().items():
        if row == 0:
            cell.set_facecolor("#e8eef7")
            cell.set_text_props(weight="bold")
    ax.set_title(f"TensorBoard HParams of the {len(rows)} runs of sweep {os.path.basename(os.path.normpath(out))!r} "
                 "(read from the event files; sorted by final metric)",
                 fontsize=10)
    fig.savefig(png, dpi=90, bbox_inches="tight")


if __name__ == "__main__":
    main()
