"""What a sweep prints: progress while it runs and, at the end, the table a researcher reads first.

Progress counts runs. Stacked batches finish many runs at once, so the rate is the average since the
start (not a moving average that jumps when a batch lands), and the ETA follows from it. On a terminal
it is a tqdm bar; otherwise (CI, nohup, a cluster job) a plain line every few percent.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO


class Progress:
    """Runs done out of ``total``: a bar on a terminal, a line every ``every`` percent elsewhere.

    A stacked batch finishes all its runs at once; while it trains, :meth:`advance` counts the fraction of
    its epochs done (in runs), so the count moves during a stack; its rows then replace that fraction."""

    def __init__(self, total: int, stream: TextIO | None = None, every: float = 5.0) -> None:
        self.total, self.done, self.failed = total, 0, 0
        self.partial: dict[str, float] = {}  # per batch still training (by its first run's folder): runs done
        self.stream = stream or sys.stdout
        self.every, self.next_percent = every, every
        self.start = time.perf_counter()
        self.bar = None
        if total and self.stream.isatty():
            from tqdm import tqdm

            # smoothing=0: the rate is the average since the start, so a landing batch cannot make it jump
            self.bar = tqdm(total=total, unit="run", desc="sweep", dynamic_ncols=True, smoothing=0, file=self.stream,
                            bar_format="{l_bar}{bar}| {n:.1f}/{total} [{elapsed}<{remaining}, {rate_fmt}{postfix}]")

    @property
    def count(self) -> float:
        """Runs done, counting the fraction of the batches still training."""
        return min(float(self.total), self.done + sum(self.partial.values()))

    def note(self, text: str) -> None:
        (self.bar.write if self.bar is not None else lambda t: print(t, file=self.stream, flush=True))(text)

    def advance(self, batch: str, runs: float) -> None:
        """Batch ``batch`` (its first run's folder) has trained the equivalent of ``runs`` of its runs."""
        self.partial[batch] = max(self.partial.get(batch, 0.0), runs)  # a batch retried run by run never goes back
        self.show()

    def update(self, rows: list[dict[str, Any]]) -> None:
        """Runs that finished together (a stacked batch): one update, so the rate and ETA do not jump."""
        self.done += len(rows)
        for row in rows:
            self.partial.pop(row.get("run_dir", ""), None)
            if row.get("status") != "completed":
                self.failed += 1
                self.note(f"failed: {row.get('run_dir', '?')}: {row.get('error', '')}")
        if self.bar is not None:
            self.bar.set_postfix(failed=self.failed, refresh=False)
        self.show()

    def show(self) -> None:
        count = self.count
        if self.bar is not None:
            self.bar.update(count - self.bar.n)
            return
        percent = 100.0 * count / max(self.total, 1)
        if percent + 1e-9 >= self.next_percent:  # once per step crossed, so also once at 100 %
            elapsed = time.perf_counter() - self.start
            eta = elapsed / count * (self.total - count) if count else math.nan
            shown = f"{count:.0f}" if count == int(count) else f"{count:.1f}"
            print(f"sweep: {shown}/{self.total} runs ({percent:.0f}%), {self.failed} failed, "
                  f"{elapsed:.0f} s elapsed, about {eta:.0f} s left", file=self.stream, flush=True)
            self.next_percent = (math.floor(percent / self.every) + 1) * self.every

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.4g}"
    return f"{mean:.4g} ({min(values):.3g}-{max(values):.3g})"


def summary_table(rows: list[dict[str, Any]]) -> str:
    """Per task x pruner x density: mean (min-max over seeds) of the final metric, after-pruning metric and
    recall, and how many runs collapsed and how many were dead (after pruning or at the end). Densities are
    the targets; runs asked for the ticket's density say ``ticket``."""
    done = [r for r in rows if r.get("status") == "completed"]
    if not done:
        return "no completed runs"
    groups: dict[tuple[str, str, float, bool], list[dict[str, Any]]] = {}
    for r in done:
        groups.setdefault((str(r["dataset"]), str(r.get("label", r.get("pruner", "dense"))),
                           float(r["sparsity_target"]), bool(r.get("at_ticket_density"))), []).append(r)
    has_pruned = any(r.get("pruned_metric") not in (None, "") for r in done)
    header = ["task", "pruner", "density", "runs", "final metric", *(["after pruning"] if has_pruned else []),
              "recall", "collapsed", "dead"]
    lines = []
    for (task, label, density, at_ticket), sel in sorted(groups.items()):
        metric = str(sel[0].get("metric_name", ""))
        cells = [task, label, "ticket" if at_ticket else f"{density:.4g}", str(len(sel)),
                 f"{metric} {_spread([float(r['final_metric']) for r in sel if r.get('final_metric') is not None])}"]
        if has_pruned:
            cells.append(_spread([float(r["pruned_metric"]) for r in sel if r.get("pruned_metric") not in (None, "")]))
        cells += [_spread([float(r["recall"]) for r in sel]), f"{sum(bool(r['collapsed']) for r in sel)}/{len(sel)}",
                  f"{sum(r.get('dead_pruned') is True or r.get('dead_final') is True for r in sel)}/{len(sel)}"]
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*c) for c in lines])
