"""What a sweep prints: the closing table (values by hand) and plain progress lines when piped."""
import io

from plantnseek.sweep.progress import Progress, summary_table


def row(task, pruner, density, final, recall, collapsed=False, pruned=None, status="completed", dead=(False, False)):
    return {"dataset": task, "label": pruner, "sparsity_target": density, "final_metric": final, "recall": recall,
            "collapsed": collapsed, "pruned_metric": pruned, "metric_name": "accuracy", "status": status,
            "dead_pruned": dead[0], "dead_final": dead[1]}


def test_table_is_mean_and_min_max_over_seeds_per_task_pruner_density():
    rows = [row("circle", "synflow", 0.1, 0.9, 0.5, pruned=0.2), row("circle", "synflow", 0.1, 0.7, 0.3, pruned=0.4),
            row("circle", "mag", 0.1, 0.6, 0.1, collapsed=True, pruned=0.1, dead=(True, True)),
            row("circle", "mag", 0.1, 0.0, 0.0, status="failed")]
    lines = summary_table(rows).splitlines()
    assert lines[0].split() == ["task", "pruner", "density", "runs", "final", "metric", "after", "pruning", "recall",
                                "collapsed", "dead"]
    mag, synflow = lines[2].split(), lines[3].split()  # sorted by task, pruner, density; failed runs left out
    assert mag == ["circle", "mag", "0.1", "1", "accuracy", "0.6", "0.1", "0.1", "1/1", "1/1"]
    assert synflow[:6] == ["circle", "synflow", "0.1", "2", "accuracy", "0.8"] and synflow[6] == "(0.7-0.9)"
    assert synflow[7:] == ["0.3", "(0.2-0.4)", "0.4", "(0.3-0.5)", "0/2", "0/2"]


def test_piped_progress_prints_one_line_per_batch_that_crosses_a_step():
    out = io.StringIO()  # not a terminal
    progress = Progress(100, stream=out, every=10.0)
    progress.update([{"status": "completed"}] * 64)  # a stacked batch lands at once: one line, not six
    progress.update([{"status": "completed"}] * 4)  # 68 %: no new step crossed
    progress.update([{"status": "failed", "run_dir": "r", "error": "boom"}] * 32)
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines if line.startswith("sweep:")] == [
        "sweep: 64/100 runs (64%)", "sweep: 100/100 runs (100%)"]
    assert sum(line == "failed: r: boom" for line in lines) == 32 and "32 failed" in lines[-1]
