"""Pictures: what a run learned (task figure), what it kept (masks against the ticket), how it scored
(score histograms), and the sweep figure that answers "can pruning find the winning ticket?".

Every function returns a matplotlib Figure; :func:`save` writes the PNG and logs it to TensorBoard.
"""
from __future__ import annotations

import math
import os
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from plantnseek.core.tasks import CIRCLE_BOUNDS, HELIX_FUNCS  # noqa: E402

CLASS_COLORS = ["#4c72b0", "#55a868", "#dd8452", "#c44e52"]


def fixed_layout(fig: Figure, top: float, bottom: float, hspace: float = 0.3) -> None:
    """Margins in inches (titles above, labels and the legend below) for a grid of small panels: set, not
    measured. ``tight_layout`` draws the whole figure once more to measure its text, a third of the masks
    and score pictures' time, and those pictures are what a run waits for at its end."""
    height = fig.get_figheight()
    fig.subplots_adjust(left=0.06, right=0.98, bottom=bottom / height, top=1 - top / height, wspace=0.3,
                        hspace=hspace)


def save(fig: Figure, path: str, loggers: Sequence[Any] = (), tag: str | None = None, step: int = 0) -> str:
    """Render ``fig`` once; write it as a PNG and, for TensorBoard loggers, add it as an image."""
    from PIL import Image

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.set_dpi(100)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    Image.fromarray(rgb).save(path, compress_level=1)
    for logger in loggers:
        writer = getattr(logger, "experiment", None)
        if writer is not None and hasattr(writer, "add_image"):
            writer.add_image(tag or os.path.splitext(os.path.basename(path))[0], rgb, global_step=step,
                             dataformats="HWC")
    plt.close(fig)
    return path


@torch.no_grad()
def task_figure(run: Any, x_test: torch.Tensor, y_test: torch.Tensor) -> Figure:
    """circle: decision regions and test points; relu: fitted curve; helix: fitted 3-D curve; user and
    ``run:`` tasks: :func:`generic_task_figure`."""
    name = run.task.name
    if not run.task.builtin:
        return generic_task_figure(run, x_test, y_test)
    if name == "circle":
        fig, ax = plt.subplots(figsize=(5.5, 5))
        g = torch.linspace(-1, 1, 201)
        xx, yy = torch.meshgrid(g, g, indexing="xy")
        pred = run(torch.stack([xx.flatten(), yy.flatten()], dim=1)).argmax(dim=1).reshape(xx.shape)
        ax.imshow(pred.numpy(), origin="lower", extent=(-1, 1, -1, 1), cmap=ListedColormap(CLASS_COLORS),
                  alpha=0.35, vmin=0, vmax=3, interpolation="nearest")
        ax.scatter(x_test[:, 0], x_test[:, 1], c=[CLASS_COLORS[int(c)] for c in y_test], s=6, edgecolors="none")
        for r2 in CIRCLE_BOUNDS:
            ax.add_patch(plt.Circle((0, 0), math.sqrt(r2), fill=False, ls="--", lw=1, color="black"))
        acc = float((run(x_test).argmax(dim=1) == y_test).double().mean())
        ax.set(xlim=(-1, 1), ylim=(-1, 1), aspect="equal", xlabel="x1", ylabel="x2",
               title=f"circle: network decision regions (test accuracy {acc:.3f})")
        ax.legend(handles=[Patch(color=c, alpha=0.6, label=f"class {i}") for i, c in enumerate(CLASS_COLORS)]
                  + [plt.Line2D([], [], ls="--", color="black", label="true boundaries")], loc="upper right",
                  fontsize=7)
        return fig
    xs = torch.linspace(-1, 1, 400)[:, None]
    out = run(xs).double()
    scale = rescale(run(x_test).double(), y_test.double())
    if name == "relu":
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.scatter(x_test[:, 0], y_test[:, 0], s=4, alpha=0.4, color="gray", label="test data")
        ax.plot(xs[:, 0], np.maximum(xs[:, 0], 0), color="black", lw=1, ls="--", label="target max(0, x)")
        ax.plot(xs[:, 0], out[:, 0], color="C0", lw=2, label="network")
        ax.plot(xs[:, 0], out[:, 0] * scale[0], color="C1", lw=1, ls=":", label="network, rescaled")
        ax.set(xlabel="x", ylabel="y", title="relu: fitted curve")
        ax.legend(fontsize=8)
        return fig
    fig = plt.figure(figsize=(6, 5))
    ax = fig.add_subplot(projection="3d")
    target = np.concatenate([f(xs.double().numpy()) for f in HELIX_FUNCS], axis=1)
    ax.plot(*target.T, color="black", lw=1, ls="--", label="target helix")
    ax.plot(*(out * scale).numpy().T, color="C0", lw=2, label="network, rescaled")
    ax.scatter(*y_test.numpy().T, s=2, alpha=0.3, color="gray", label="test data")
    ax.set(title="helix: fitted 3-D curve")
    legend = ax.legend(fontsize=8)
    for handle in legend.legend_handles:
        handle.set_alpha(1)
    return fig


@torch.no_grad()
def generic_task_figure(run: Any, x_test: torch.Tensor, y_test: torch.Tensor) -> Figure:
    """Any task, on the test split. Classification: test points in the first two inputs (or the first input
    against the class) coloured by predicted class, misclassified ones crossed, and the confusion matrix.
    Regression: outputs (rescaled) and targets against the first input, and rescaled prediction vs target."""
    task = run.task
    title = task.title if len(task.title) <= 48 else "..." + task.title[-45:]
    out = run(x_test).double()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    x = x_test.double().numpy()
    if task.classification:
        pred, true = out.argmax(dim=1).numpy(), y_test.numpy()
        wrong = pred != true
        ys, ylabel = (x[:, 1], "x2") if task.d_in >= 2 else (pred, "predicted class")
        colors = np.array([f"C{c % 10}" for c in pred])
        left.scatter(x[~wrong, 0], ys[~wrong], c=colors[~wrong], s=6, edgecolors="none")
        left.scatter(x[wrong, 0], ys[wrong], c=colors[wrong], s=14, marker="x", lw=0.8, label="misclassified")
        left.set(xlabel="x1", ylabel=ylabel, title=f"{title}: predicted class (colour)")
        if wrong.any():
            left.legend(fontsize=7, loc="upper right")
        confusion = np.zeros((task.d_out, task.d_out), dtype=int)
        np.add.at(confusion, (true, pred), 1)
        right.imshow(confusion, cmap="Blues", interpolation="nearest")
        if task.d_out <= 12:
            right.set_xticks(range(task.d_out))
            right.set_yticks(range(task.d_out))
            for (i, j), count in np.ndenumerate(confusion):
                right.text(j, i, str(count), ha="center", va="center", fontsize=8,
                           color="white" if count > confusion.max() / 2 else "black")
        right.set(xlabel="predicted class", ylabel="true class",
                  title=f"test accuracy {float((~wrong).mean()):.3f}")
        fig.tight_layout()
        return fig
    fitted = (out * rescale(out, y_test.double())).numpy()
    target = y_test.double().numpy()
    order = np.argsort(x[:, 0])
    for j in range(min(task.d_out, 5)):
        left.scatter(x[:, 0], target[:, j], s=3, alpha=0.3, color=f"C{j}")
        left.plot(x[order, 0], fitted[order, j], lw=1, color=f"C{j}", label=f"output {j}")
    left.set(xlabel="x1 (first input)", ylabel="target (dots), network rescaled (line)", title=title)
    left.legend(fontsize=7)
    lo, hi = float(min(target.min(), fitted.min())), float(max(target.max(), fitted.max()))
    right.plot([lo, hi], [lo, hi], color="black", ls="--", lw=1)
    for j in range(min(task.d_out, 5)):
        right.scatter(target[:, j], fitted[:, j], s=4, alpha=0.5, color=f"C{j}")
    mse = float(((fitted - target) ** 2).mean())
    right.set(xlabel="target", ylabel="network, rescaled", title=f"rescaled MSE {mse:.4g}")
    fig.tight_layout()
    return fig


def rescale(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-output least-squares factor (as the rescaled MSE uses)."""
    ff = (f * f).sum(dim=0)
    return torch.where(ff > 0, (f * y).sum(dim=0) / ff.clamp_min(1e-300), torch.ones_like(ff))


def mask_figure(weight_masks: Sequence[torch.Tensor], ticket_masks: Sequence[torch.Tensor]) -> Figure:
    """Per layer: kept and in the ticket (green), ticket but pruned (red), kept outside the ticket (grey)."""
    n = len(weight_masks)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.4), squeeze=False)
    cmap = ListedColormap(["white", OTHER_KEPT, TICKET_PRUNED, TICKET_KEPT])
    for i, (ax, m, t) in enumerate(zip(axes[0], weight_masks, ticket_masks)):
        kept, tk = (m > 0).numpy(), (t > 0).numpy()
        code = np.where(kept & tk, 3, np.where(tk, 2, np.where(kept, 1, 0)))
        ax.imshow(code, cmap=cmap, vmin=0, vmax=3, interpolation="nearest", aspect="auto")
        hit = int((kept & tk).sum())
        ax.set_title(f"layer {i} {m.shape[0]}x{m.shape[1]}\nticket kept {hit}/{int(tk.sum())}, kept {int(kept.sum())}",
                     fontsize=8)
        ax.set_xlabel("input unit", fontsize=7)
        ax.set_ylabel("output unit", fontsize=7)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.tick_params(labelsize=6)
    fig.legend(handles=[Patch(color=TICKET_KEPT, label="ticket, kept"), Patch(color=TICKET_PRUNED, label="ticket, pruned"),
                        Patch(color=OTHER_KEPT, label="kept, not ticket")], loc="lower center", ncol=3, fontsize=8)
    fixed_layout(fig, top=0.5, bottom=0.85)
    return fig


# The same colours for the same meaning in masks.png and the score histograms.
TICKET_KEPT, TICKET_PRUNED, OTHER_KEPT, OTHER_PRUNED = "#2ca02c", "#d62728", "#b0b0b0", "#f0f0f0"


def score_histogram_figure(scores: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], title: str,
                           ticket: dict[str, torch.Tensor] | None = None) -> Figure:
    """Per prunable tensor: stacked histogram of log10 |score| by kept/pruned and ticket/not ticket."""
    names = list(scores)
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        s = scores[name].double().abs().flatten()
        keep = masks[name].flatten() > 0
        in_ticket = ticket[name].flatten() > 0 if ticket is not None and name in ticket else torch.zeros_like(keep)
        finite = torch.isfinite(s) & (s > 0)
        vals = torch.log10(s[finite])
        bins = np.linspace(float(vals.min()), float(vals.max()) + 1e-9, 40) if vals.numel() else np.linspace(0, 1, 41)
        keep, in_ticket = keep[finite], in_ticket[finite]
        groups = ((~keep & ~in_ticket, OTHER_PRUNED, "pruned"), (keep & ~in_ticket, OTHER_KEPT, "kept, not ticket"),
                  (~keep & in_ticket, TICKET_PRUNED, "ticket, pruned"), (keep & in_ticket, TICKET_KEPT, "ticket, kept"))
        base = np.zeros(len(bins) - 1)
        for sel, color, label in groups:  # stacked, so the ticket's share of each bin is visible
            counts, edges = np.histogram(vals[sel].numpy(), bins=bins)
            if counts.any():
                ax.stairs(base + counts, edges, baseline=base, fill=True, color=color, ec="#606060", lw=0.3,
                          label=label)
            base = base + counts
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("log10 |score|", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.legend(handles=[Patch(color=c, label=l) for c, l in ((TICKET_KEPT, "ticket, kept"), (TICKET_PRUNED, "ticket, pruned"),
                                                            (OTHER_KEPT, "kept, not ticket"), (OTHER_PRUNED, "pruned"))],
               loc="lower center", ncol=4, fontsize=7)
    fig.suptitle(title, fontsize=10)
    fixed_layout(fig, top=0.65, bottom=0.8, hspace=0.65)
    return fig


ROWS = (("pruned_metric", "after pruning (strong ticket)"), ("final_metric", "after training (weak ticket)"),
        ("recall", "ticket recall"))
DEAD_OF_ROW = {"pruned_metric": ("dead_pruned",), "final_metric": ("dead_final",), "recall": ("dead_pruned", "dead_final")}


def sweep_figure(rows: list[dict[str, Any]]) -> Figure:
    """One column per task, against the kept fraction (log x), a line per pruner (mean, min-max band over
    seeds). Rows: the test metric right after pruning (strong ticket), the final test metric after
    training (weak ticket), ticket recall. The ticket's own metric is dashed, its density (of the prunable
    parameters, where ``sparsity: ticket`` runs sit) dotted and labelled "ticket". A point whose group has a
    dead network (at that row's moment; recall: either) is crossed."""
    done = [r for r in rows if r.get("status") == "completed"]
    tasks = sorted({r["dataset"] for r in done}) or ["(no completed runs)"]
    fig, axes = plt.subplots(len(ROWS), len(tasks), figsize=(4.6 * len(tasks), 10), squeeze=False, sharex="col")
    for col, task in enumerate(tasks):
        sel = [r for r in done if r["dataset"] == task]
        column = axes[:, col]
        lines: dict[str, dict[float, list[dict]]] = {}
        for r in sel:
            lines.setdefault(r["label"], {}).setdefault(float(r["sparsity_target"]), []).append(r)
        any_dead = False
        for i, (label, points) in enumerate(sorted(lines.items())):
            xs = sorted(points)
            dens = [np.mean([p["param_sparsity"] for p in points[x]]) for x in xs]
            for ax, (key, _) in zip(column, ROWS):
                vals = [[p[key] for p in points[x] if p.get(key) is not None] for x in xs]
                keep = [j for j, v in enumerate(vals) if v]
                if not keep:
                    continue
                d = [dens[j] for j in keep]
                mean = [np.mean(vals[j]) for j in keep]
                ax.plot(d, mean, marker="o", ms=3, color=f"C{i}", label=label)
                ax.fill_between(d, [min(vals[j]) for j in keep], [max(vals[j]) for j in keep], color=f"C{i}", alpha=0.15)
                dead = [n for n, j in enumerate(keep)
                        if any(p.get(k) is True for p in points[xs[j]] for k in DEAD_OF_ROW[key])]
                if dead:
                    any_dead = True
                    ax.plot([d[n] for n in dead], [mean[n] for n in dead], ls="none", marker="x", ms=9, mew=2,
                            color="black", zorder=5)
        metric_name = sel[0]["metric_name"] if sel else "metric"
        if sel:
            t_metric = np.mean([r["ticket_metric"] for r in sel])
            t_density = np.mean([r["ticket_density"] for r in sel])
            for ax in column[:2]:
                ax.axhline(t_metric, color="black", ls="--", lw=1, label="ticket alone")
            for ax in column:
                ax.axvline(t_density, color="gray", ls=":", lw=1)
            column[1].lines[-1].set_label(f"ticket's density {t_density:.4g}")
            column[-1].text(t_density, 1.0, " ticket", rotation=90, va="top", ha="right", fontsize=8, color="gray")
            xs = [float(r["param_sparsity"]) for r in sel] + [t_density]
            if max(xs) < 2 * min(xs):  # one density (float32 noise apart): a readable range, not a 1e-8 wide one
                column[-1].set_xlim(min(xs) / 2, max(xs) * 2)
        for ax, (key, title) in zip(column, ROWS):
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.grid(alpha=0.3, which="major")
            if key != "recall":
                ax.set_ylabel(f"{title}\ntest {metric_name}", fontsize=9)
                if metric_name != "accuracy":
                    ax.set_yscale("log")
        column[0].set_title(task)
        column[-1].set_ylim(-0.02, 1.02)
        column[-1].set_xlabel("kept fraction of prunable parameters")
        column[-1].set_ylabel("ticket recall")
        handles, labels = column[1].get_legend_handles_labels()
        if any_dead:
            handles.append(plt.Line2D([], [], ls="none", marker="x", ms=9, mew=2, color="black"))
            labels.append("dead network")
        if handles:
            column[1].legend(handles, labels, fontsize=7)
    fig.suptitle("Can pruning find the winning ticket?")
    fig.tight_layout()
    return fig
