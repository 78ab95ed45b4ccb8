"""A sweep never reports a result of another configuration, a half-written run, or a run it cannot start.

Each test here attacks one way a sweep could present wrong numbers as right ones, or hang, or leave
workers behind; sweep configs are tiny (relu, depth 3, width 4: 8 prunable weights) so they run in seconds.
"""
import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from plantnseek.sweep import execute as sweep_exec
from plantnseek.cli.entry import main
from plantnseek.sweep.command import expand, load_config, result_row
from plantnseek.sweep.store import OutLock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))

TINY = """
base:
  seed_everything: {seed}
  data: {{dataset: relu, n_samples: {n_samples}, prune_dataset_ratio: 5, train_batch_size: 64}}
  model: {{depth: 3, width: {width}}}
  pruning: {{post_epochs: {epochs}, sparsity: 0.5}}
pictures: {pictures}
grid:
  pruner: [mag, rand]
"""


def write_config(path, seed=1, n_samples=600, width=4, epochs=1, pictures="false"):
    path.write_text(TINY.format(seed=seed, n_samples=n_samples, width=width, epochs=epochs, pictures=pictures))
    return str(path)


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def run_names(out):
    """Every run folder under <out>/runs (folders are the grid values, nested: runs/mag/seed1)."""
    root = os.path.join(out, "runs")
    return sorted(os.path.relpath(d, root) for d, dirs, files in os.walk(root)
                  if "config.yaml" in files or "summary.json" in files)


def summaries(out):
    found = {}
    for name in run_names(out):
        path = os.path.join(out, "runs", name, "summary.json")
        if os.path.exists(path):
            with open(path) as f:
                found[name] = json.load(f)
    return found


def test_editing_base_reruns_the_changed_runs_and_never_reports_old_numbers(in_tmp, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sweep_exec, "available_cores", lambda: 1)  # in-process: quick, and the cap is said
    cfg = tmp_path / "tiny.yaml"
    args = ["sweep", "--config", write_config(cfg), "--out", "sw", "--workers", "64"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "--workers 64 capped to 1: 1 core(s)" in out
    first = read_csv(in_tmp / "sw/results.csv")
    assert [r["param_prunable"] for r in first] == ["8", "8"]  # relu d3 w4: 1x4 + 4x1 weights

    assert main(args) == 0  # unchanged: skipped
    assert "2 already done, 0 to run" in capsys.readouterr().out

    # Each edit of base re-runs both runs, says what changed, and the results show the new configuration.
    for edit, change, check in [
        ({"width": 6}, "model.width 4 -> 6", lambda s: s["width"] == 6 and s["param_prunable"] == 12),
        ({"width": 6, "epochs": 2}, "pruning.post_epochs 1 -> 2", lambda s: s["epochs"] == 2 and len(s["history"]) == 2),
        ({"width": 6, "epochs": 2, "seed": 3}, "seed 1 -> 3", lambda s: s["seed"] == 3),
        ({"width": 6, "epochs": 2, "seed": 3, "n_samples": 800}, "data.n_samples 600 -> 800",
         lambda s: s["identity"]["config"]["data"]["n_samples"] == 800),
    ]:
        before = summaries(in_tmp / "sw")
        write_config(cfg, **edit)
        assert main(args) == 0
        out = capsys.readouterr().out
        assert f"2 run(s) changed since the last sweep ({change}): re-running them" in out
        assert "0 already done, 2 to run" in out
        after = summaries(in_tmp / "sw")
        assert all(check(s) for s in after.values())
        assert any(after[k]["history"] != before[k]["history"] for k in after)  # new numbers, not the old ones
        rows = read_csv(in_tmp / "sw/results.csv")
        finals = sorted(float(s["final"]["rescaled_mse"]) for s in after.values())
        assert sorted(float(r["final_metric"]) for r in rows) == pytest.approx(finals)
        assert main(args) == 0
        assert "2 already done, 0 to run" in capsys.readouterr().out


def test_a_result_of_another_configuration_is_never_a_row(in_tmp, tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    assert main(["sweep", "--config", write_config(cfg), "--out", "sw", "--workers", "1"]) == 0
    edited = expand(load_config(write_config(cfg, width=5)))
    rows = [result_row("sw", s) for s in edited]
    assert [r["status"] for r in rows] == ["stale", "stale"]
    assert all(r.get("final_metric") is None and r.get("param_sparsity") is None for r in rows)


CRASH = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {tests!r})
    from plantnseek.callbacks import pictures
    from plantnseek.cli.entry import main
    real, calls = pictures.draw_run_pictures, []

    def crash_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os._exit(3)  # as kill -9 would: no cleanup, no exception handler
        return real(*args, **kwargs)

    pictures.draw_run_pictures = crash_on_second
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.parametrize("max_stack", ["1", "64"])  # the single-run path and the stacked path
def test_a_run_killed_between_its_artifacts_is_not_complete_and_is_redone(max_stack, in_tmp, tmp_path, capsys):
    cfg = write_config(tmp_path / "tiny.yaml", pictures="true")
    script = tmp_path / "crash.py"
    script.write_text(CRASH.format(tests=TESTS))
    args = ["sweep", "--config", cfg, "--out", "sw", "--workers", "1", "--max-stack", max_stack]
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr
    runs = in_tmp / "sw/runs"
    states = {}
    for name in run_names(in_tmp / "sw"):
        summary = summaries(in_tmp / "sw").get(name, {})
        pictures = all((runs / name / f).exists() for f in ("task.png", "masks.png"))
        states[name] = (summary.get("status"), pictures)
        if summary.get("status") == "completed":
            assert pictures and (runs / name / "config.yaml").exists()
            assert any(f.startswith("events.out.tfevents") for f in os.listdir(runs / name))
    # one by one, the first run finished before the crash; a stack completes its runs only after all of
    # their artifacts, so a crash in any run's pictures leaves none of them marked complete
    expected = ["None", "completed"] if max_stack == "1" else ["None", "None"]
    assert sorted(str(s) for s, _ in states.values()) == expected, states

    assert main(args) == 0
    out = capsys.readouterr().out
    left = expected.count("None")
    assert f"{left} run(s) were left incomplete (no completed summary): redoing them" in out
    assert f"{2 - left} already done, {left} to run" in out
    for name, summary in summaries(in_tmp / "sw").items():
        assert summary["status"] == "completed" and (runs / name / "task.png").exists()
        assert not (runs / name / "summary.partial.json").exists()


def test_summary_writing_is_atomic(tmp_path, monkeypatch):
    from plantnseek.core import files

    files.write_summary(str(tmp_path), {"status": "completed", "value": 1})
    real_write = files.open if hasattr(files, "open") else open

    class Torn:
        """A file whose write stops half-way, as on a full disk."""

        def __init__(self, *args, **kwargs):
            self.f = real_write(*args, **kwargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, text):
            self.f.write(text[: len(text) // 2])
            raise OSError("disk full")

    monkeypatch.setattr(files, "open", Torn, raising=False)
    with pytest.raises(OSError):
        files.write_summary(str(tmp_path), {"status": "failed"})
    with open(tmp_path / "summary.json") as f:
        assert json.load(f) == {"status": "completed", "value": 1}


HOLDER = textwrap.dedent("""
    import sys
    from plantnseek.sweep.store import OutLock
    with OutLock(sys.argv[1], ["--config", "other.yaml"]):
        print("locked", flush=True)
        sys.stdin.read()  # hold the lock until the test closes our stdin
""")


def test_a_second_sweep_into_a_locked_folder_names_the_holder_and_exits_2(in_tmp, tmp_path, capsys):
    cfg = write_config(tmp_path / "tiny.yaml")
    os.makedirs("sw")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, "sw"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["sweep", "--config", cfg, "--out", "sw", "--workers", "1"]) == 2
        err = capsys.readouterr().err.strip()
        assert f"pid {holder.pid}: plantnseek sweep --config other.yaml" in err and "another sweep" in err
        assert "\n" not in err
        assert not (in_tmp / "sw/runs").exists()
    finally:
        holder.kill()
        holder.wait(timeout=60)
    with OutLock("sw", []):  # the lock died with its process
        pass


@pytest.mark.parametrize("text,flags,message", [
    ('pictures: "false"\ngrid: {seed: [1]}', [], "pictures 'false' is invalid; allowed: true or false"),
    ("pictures: 0\ngrid: {seed: [1]}", [], "pictures 0 is invalid"),
    ("stack: 'no'\ngrid: {seed: [1]}", [], "stack 'no' is invalid"),
    ("base:\n  trainer:\n    callbacks:\n    - {class_path: plantnseek.callbacks.Pruning, init_args: {pruner: mag}}\n"
     "    - {class_path: plantnseek.callbacks.Pruning, init_args: {pruner: snip}}\ngrid: {seed: [1]}", [],
     "gives the pruning settings 2 times"),
    ("base:\n  pruning: {pruner: mag}\n  trainer:\n    callbacks:\n"
     "    - {class_path: plantnseek.callbacks.Pruning}\ngrid: {seed: [1]}", [], "gives the pruning settings 2 times"),
    ("base: {model: [1]}\ngrid: {seed: [1]}", [], "base.model [1] is invalid"),
    ("grid: {pruner: [mag, rand]}", ["--grid", "seed=1,2,-1"], "run pruner=mag,seed=-1: seed -1"),
    ("grid: {pruner: [mag]}", ["--grid", "seed=1,2,3", "--grid", "model.lr=0.1,-1"], "run pruner=mag,seed=1,model.lr=-1"),
    ("grid: {pruner: [mag]}", ["--grid", "model.lr=.inf"], "lr inf"),
    ("grid: {pruner: [mag]}", ["--grid", "model.lr=inf"], "lr 'inf' is invalid"),
    ("grid: {pruner: [mag]}", ["--grid", "model.weight_decay=.nan"], "weight_decay nan"),
    ("base: {model: {lr_drops: [1]}}\ngrid: {model.lr_drop_rate: [0.1, -1]}", [], "run model.lr_drop_rate=-1: lr_drop_rate -1"),
    ("grid: {seed: [1, 1]}", [], "share the run folder 'seed1'"),
    ("base: {trainer: {max_epochs: -1}}\ngrid: {seed: [1]}", [], "trainer.max_epochs -1 is invalid (-1 means forever)"),
    ("grid: {trainer.max_epochs: [2, -1]}", [], "run trainer.max_epochs=-1: trainer.max_epochs -1"),
    ("base: {trainer: {max_epochs: null}}\ngrid: {seed: [1]}", [], "trainer.max_epochs null gives a run without pruning no end"),
    ("base: {trainer: {max_epochs: null, max_steps: -1}}\ngrid: {seed: [1]}", [], "no end"),
    ("base: {trainer: {max_steps: 0}}\ngrid: {seed: [1]}", [], "trainer.max_steps 0 is invalid"),
    ("base: {trainer: {precision: banana}}\ngrid: {seed: [1]}", [], "trainer settings"),
])
def test_bad_values_anywhere_in_the_grid_fail_up_front(text, flags, message, tmp_path, in_tmp, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["sweep", "--config", str(path), "--out", "x", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("plantnseek: error: ") and message in err and "\n" not in err, err
    assert not (in_tmp / "x").exists()


def test_bounded_runs_are_accepted():
    from plantnseek.sweep.check import check_bounded

    check_bounded({}, dense=True)
    check_bounded({"max_epochs": -1, "max_steps": 5}, dense=True)  # the step count bounds it
    check_bounded({"max_epochs": None, "max_steps": 5}, dense=True)
    check_bounded({}, dense=False)  # the pruning schedule sets the epochs


def test_paper_grid_is_checked_point_by_point_and_fast():
    start = time.process_time()
    specs = expand(load_config(os.path.join(ROOT, "configs/sweeps/paper_singleshot.yaml")))
    assert len(specs) == 1875 and len({s.identity["hash"] for s in specs}) == 1875
    assert time.process_time() - start < 20  # generous; checking every seed must not plant every network


@pytest.mark.parametrize("out,message", [
    ("afile", "--out 'afile' is a file; give a folder"),
    ("afile/sub", "cannot be created: "),
    ("/proc/plantnseek-sweep", "is not writable"),
])
def test_bad_out_folders(out, message, in_tmp, tmp_path, capsys):
    (in_tmp / "afile").write_text("keep me")
    assert main(["sweep", "--config", write_config(tmp_path / "tiny.yaml"), "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert (in_tmp / "afile").read_text() == "keep me" and sorted(os.listdir(in_tmp)) == ["afile", "tiny.yaml"]


def test_workers_are_capped_by_cores_and_memory(monkeypatch):
    monkeypatch.setattr(sweep_exec, "available_cores", lambda: 2)
    monkeypatch.setattr(sweep_exec, "available_memory", lambda: 64 * 2**30)
    from plantnseek.memory import BASELINE

    assert sweep_exec.cap_workers(64) == (2, "--workers 64 capped to 2: 2 core(s), 64.0 GB available memory "
                                             f"at ~{BASELINE // 2**20} MB per worker")  # no runs given: a worker's own
    assert sweep_exec.cap_workers(2) == (2, None)
    monkeypatch.setattr(sweep_exec, "available_memory", lambda: 900 * 2**20)  # room for two workers
    workers, message = sweep_exec.cap_workers(64)
    assert workers == 2 and "0.9 GB available memory" in message
    monkeypatch.setattr(sweep_exec, "available_memory", lambda: 100 * 2**20)
    assert sweep_exec.cap_workers(2)[0] == 1  # always at least one


PARENT = textwrap.dedent("""
    import multiprocessing as mp, os, sys
    from plantnseek.sweep.workers import worker_init
    if __name__ == "__main__":
        pool = mp.get_context("spawn").Pool(1, initializer=worker_init, initargs=(os.getpid(),))
        print(pool.apply(os.getpid), flush=True)
        sys.stdin.read()
""")


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_dies_when_the_sweep_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    assert alive(worker)
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=60)
    deadline = time.monotonic() + 30
    while alive(worker) and time.monotonic() < deadline:  # bounded poll: the kernel kills it promptly
        time.sleep(0.01)
    if alive(worker):
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the worker outlived its killed parent")


@pytest.mark.parametrize("grid,max_stack,done", [
    (["--grid", "pruner=mag,sweep_scorers.Interrupt"], "1", 1),  # single runs: the first one completed
    (["--grid", "pruner=sweep_scorers.Interrupt", "--grid", "seed=1,2"], "64", 0),  # one stacked batch
    (["--grid", "pruner=mag,sweep_scorers.Terminate"], "1", 1),  # kill (SIGTERM) stops it the same way
])
def test_ctrl_c_says_what_was_kept_and_how_to_resume(grid, max_stack, done, in_tmp, tmp_path, capsys):
    args = ["--config", write_config(tmp_path / "tiny.yaml"), "--out", "sw", "--workers", "1",
            "--max-stack", max_stack, *grid]
    assert main(["sweep", *args]) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"plantnseek: interrupted: {done}/2 runs completed and kept in sw; resume with: "
                   f"{shlex.join(['plantnseek', 'sweep', *args])}")
    assert not (in_tmp / "sw/results.csv").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C works again afterwards
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    if done:
        assert main(["sweep", *args[:-2], "--grid", "pruner=mag"]) == 0
        assert "1 already done, 0 to run" in capsys.readouterr().out


@pytest.mark.slow  # two worker processes start torch: ~15 s on an idle 2-core machine
@pytest.mark.parametrize("scorer", ["InterruptSweep", "InterruptSweepIgnoringTerm"])
def test_ctrl_c_stops_the_parallel_workers(in_tmp, tmp_path, scorer):
    """Ctrl-C ends the sweep and its workers, even a worker that would not end on SIGTERM (before, the
    sweep waited for such a worker forever; a SIGTERM that the kernel hands to another thread of a
    worker waiting in pause() is the same case)."""
    pids = tmp_path / "pids.txt"
    args = ["sweep", "--config", write_config(tmp_path / "tiny.yaml"), "--out", "sw", "--workers", "2",
            "--max-stack", "1", "--grid", f"pruner=sweep_scorers.{scorer}", "--grid", "seed=1,2"]
    env = {**os.environ, "PLANTNSEEK_TEST_PIDS": str(pids), "PYTHONPATH": TESTS}
    proc = subprocess.run([sys.executable, "-m", "plantnseek.cli.entry", *args], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("plantnseek: interrupted: 0/2 runs completed and kept in sw")
    workers = [int(p) for p in pids.read_text().split()]
    deadline = time.monotonic() + 30
    while any(alive(w) for w in workers) and time.monotonic() < deadline:  # bounded poll
        time.sleep(0.01)
    assert workers and not any(alive(w) for w in workers)
