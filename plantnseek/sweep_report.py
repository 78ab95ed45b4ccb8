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
    """Runs done out of ``total``: a bar on a terminal, a line every ``every`` percent elsewhere."""

    def __init__(self, total: int, stream: TextIO | None = None, every: float = 5.0) -> None:
        self.total, self.done, self.failed = total, 0, 0
        self.stream = stream or sys.stdout
        self.every, self.next_percent = every, every
        self.start = time.perf_counter()
        self.bar = None
        if total and self.stream.isatty():
            from tqdm import tqdm

            # smoothing=0: the rate is the average since the start, so a landing batch cannot make it jump
            self.bar = tqdm(total=total, unit="run", desc="sweep", dynamic_ncols=True, smoothing=0, file=self.stream)

    def note(self, text: str) -> None:
        (self.bar.write if self.bar is not None else lambda t: print(t, file=self.stream, flush=True))(text)

    def update(self, rows: list[dict[str, Any]]) -> None:
        """Runs that finished together (a stacked batch): one update, so the rate and ETA do not jump."""
        self.done += len(rows)
        for row in rows:
            if row.get("status") != "completed":
                self.failed += 1
                self.note(f"failed: {row.get('run_dir', '?')}: {row.get('error', '')}")
        if self.bar is not None:
            self.bar.set_postfix(failed=self.failed, refresh=False)
            self.bar.update(len(rows))
            return
        percent = 100.0 * self.done / self.total
        if percent + 1e-9 >= self.next_percent or self.done == self.total:
            elapsed = time.perf_counter() - self.start
            eta = elapsed / self.done * (self.total - self.done)
            print(f"sweep: {self.done}/{self.total} runs ({percent:.0f}%), {self.failed} failed, "
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
    recall, and how many runs collapsed. Densities are the achieved kept fractions' targets."""
    done = [r for r in rows if r.get("status") == "completed"]
    if not done:
        return "no completed runs"
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for r in done:
        groups.setdefault((str(r["dataset"]), str(r.get("label", r.get("pruner", "dense"))),
                           float(r["sparsity_target"])), []).append(r)
    has_pruned = any(r.get("pruned_metric") not in (None, "") for r in done)
    header = ["task", "pruner", "density", "runs", "final metric", *(["after pruning"] if has_pruned else []),
              "recall", "collapsed"]
    lines = []
    for (task, label, density), sel in sorted(groups.items()):
        metric = str(sel[0].get("metric_name", ""))
        cells = [task, label, f"{density:.4g}", str(len(sel)),
                 f"{metric} {_spread([float(r['final_metric']) for r in sel if r.get('final_metric') is not None])}"]
        if has_pruned:
            cells.append(_spread([float(r["pruned_metric"]) for r in sel if r.get("pruned_metric") not in (None, "")]))
        cells += [_spread([float(r["recall"]) for r in sel]), f"{sum(bool(r['collapsed']) for r in sel)}/{len(sel)}"]
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*c) for c in lines])
