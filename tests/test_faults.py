"""Faults never hang a sweep, and never pass for results."""
import csv
import glob
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

import pytest
import torch

from plantnseek.engine import kernel

from plantnseek.engine import kernel_build
from plantnseek.cli.entry import main
from plantnseek.core.errors import UsageError

# ---------------------------------------------------------------------------------------------------------
# Dead workers and signals
#
# A real `plantnseek sweep` subprocess with two workers on tiny runs (relu, depth 3, width 4, 600 samples,
# one epoch). Its workers are killed from outside at a random moment, or end themselves in a named run
# (tests/fault_scorers.py); the sweep itself gets SIGTERM or Ctrl-C while a worker is stuck. Each sweep
# must end by itself (a generous deadline only guards against a hang), record what happened, and leave
# no process behind.
# ---------------------------------------------------------------------------------------------------------

FAULT_TESTS = os.path.dirname(os.path.abspath(__file__))
FAULT_EXE = os.path.join(os.path.dirname(sys.executable), "plantnseek")
FAULT_DEADLINE_S = 120  # a hung sweep fails the test; a healthy one takes seconds
FAULT_SWEEP = """
base:
  seed_everything: 1
  data: {{dataset: relu, n_samples: 600, prune_dataset_ratio: 5, train_batch_size: 64}}
  model: {{depth: 3, width: 4}}
  pruning: {{post_epochs: 1, sparsity: 0.5}}
pictures: false
grid:
  pruner: [{pruners}]
  seed: [{seeds}]
"""


class FaultSweep:
    """A sweep subprocess, and every process it started (collected while it runs, checked after)."""

    def __init__(self, tmp_path, pruners, seeds=(1,), extra=()):
        config = tmp_path / "faults.yaml"
        config.write_text(FAULT_SWEEP.format(pruners=", ".join(pruners), seeds=", ".join(map(str, seeds))))
        self.out, self.pids = tmp_path / "sw", tmp_path / "pids.txt"
        self.stdout, self.stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
        path = os.pathsep.join(p for p in [FAULT_TESTS, os.environ.get("PYTHONPATH")] if p)
        env = {**os.environ, "PYTHONPATH": path, "PLANTNSEEK_FAULT_PIDS": str(self.pids)}
        with open(self.stdout, "w") as out, open(self.stderr, "w") as err:
            self.proc = subprocess.Popen([FAULT_EXE, "sweep", "--config", str(config), "--out", str(self.out),
                                          "--workers", "2", "--max-stack", "1", *extra], cwd=tmp_path, env=env,
                                         stdout=out, stderr=err, start_new_session=True)
        self.seen: dict[int, str] = {}  # pid -> its start time, so a reused pid is not mistaken for it
        self.spawned: set[int] = set()  # those of them that are workers

    def __enter__(self) -> "FaultSweep":
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:  # a test that failed half-way leaves nothing running
            self.kill()

    def look(self) -> None:
        """Note every descendant of the sweep alive now."""
        todo = [self.proc.pid]
        while todo:
            for path in glob.glob(f"/proc/{todo.pop()}/task/*/children"):
                try:
                    kids = [int(p) for p in open(path).read().split()]
                except OSError:
                    continue
                for kid in kids:
                    self.seen.setdefault(kid, fault_start_time(kid))
                    if "spawn_main" in fault_cmdline(kid):  # (not yet, between its fork and its exec)
                        self.spawned.add(kid)
                    todo.append(kid)

    def workers(self) -> list[int]:
        self.look()
        return [p for p in self.spawned if fault_alive(p, self.seen[p])]

    def wait_for(self, condition, what: str) -> None:
        """Bounded poll (only so that a broken sweep cannot hang the test)."""
        deadline = time.monotonic() + FAULT_DEADLINE_S
        while not condition():
            self.look()
            if self.proc.poll() is not None:
                pytest.fail(f"the sweep ended (code {self.proc.returncode}) before {what}: {self.stderr.read_text()}")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"no {what} within {FAULT_DEADLINE_S} s")
            time.sleep(0.02)

    def finish(self) -> int:
        """The sweep's exit code once it ends by itself; then no process it started may be left."""
        deadline = time.monotonic() + FAULT_DEADLINE_S
        while self.proc.poll() is None:
            self.look()
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"the sweep hung: {self.stderr.read_text()[-2000:]}")
            time.sleep(0.05)
        deadline = time.monotonic() + 30
        while self.left() and time.monotonic() < deadline:  # the kernel needs a moment to take them down
            time.sleep(0.02)
        left = self.left()
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert not left, f"processes left behind: {[fault_cmdline(p)[:80] for p in left]}"
        return self.proc.returncode

    def left(self) -> list[int]:
        """Processes of the sweep still running, and workers it did not reap (still there as zombies)."""
        return [p for p, start in self.seen.items()
                if fault_alive(p, start) or (p in self.spawned and fault_start_time(p) == start)]

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the sweep and its workers
        self.proc.wait()

    def rows(self) -> dict[str, dict]:
        """results.csv by pruner/seed, each with its summary.json."""
        with open(self.out / "results.csv") as f:
            rows = list(csv.DictReader(f))
        for row in rows:
            with open(os.path.join(self.out.parent, row["run_dir"], "summary.json")) as f:
                row["summary"] = json.load(f)
        return {f"{r['pruner'].rsplit('.', 1)[-1]}/{r['seed']}": r for r in rows}


def fault_stat(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return []


def fault_start_time(pid: int) -> str:
    stat = fault_stat(pid)
    return stat[19] if stat else ""


def fault_alive(pid: int, start: str) -> bool:
    """Running (not a zombie: that one has exited) and the same process (same start time)."""
    stat = fault_stat(pid)
    return bool(stat) and stat[19] == start and stat[0] != "Z"


def fault_cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            return f.read().replace("\0", " ")
    except OSError:
        return ""


def assert_fault_row(row: dict, status: str, reason: str) -> None:
    assert row["status"] == status and reason in row["error"], row
    assert row["summary"]["status"] == status and reason in row["summary"]["reason"], row["summary"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_worker_that_crashes_fails_exactly_its_run(tmp_path):
    """A segfault and an exit(3) in two named runs: those fail with the cause, the others complete."""
    with FaultSweep(tmp_path, ["mag", "fault_scorers.Segfault", "fault_scorers.Exit3", "rand"]) as sweep:
        assert sweep.finish() == 1
    rows = sweep.rows()
    assert_fault_row(rows["Segfault/1"], "failed", "worker killed by signal 11 (SIGSEGV)")
    assert_fault_row(rows["Exit3/1"], "failed", "worker exited with code 3")
    assert rows["mag/1"]["status"] == rows["rand/1"]["status"] == "completed"
    assert "2/4 runs completed, 2 failed" in sweep.stdout.read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_killed_from_outside_at_a_random_moment(tmp_path):
    """kill -9 one worker and kill (SIGTERM) the other, each at a random moment once runs are under way."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    with FaultSweep(tmp_path, ["mag", "rand"], seeds=range(1, 13)) as sweep:
        sweep.wait_for(lambda: glob.glob(str(sweep.out / "runs/*/*/config.yaml")), "run started")
        first, second = rng.sample(sweep.workers(), 2)
        time.sleep(rng.uniform(0, 0.4))  # the random moment (not a wait for anything)
        os.kill(first, signal.SIGKILL)
        time.sleep(rng.uniform(0, 0.4))
        os.kill(second, signal.SIGTERM)
        code = sweep.finish()
    rows = sweep.rows().values()
    failed = [r for r in rows if r["status"] != "completed"]
    # Each killed worker held one run (--max-stack 1), unless the kill fell in the instant between two.
    killed = {"worker killed by signal 9 (SIGKILL)": 0, "worker killed by signal 15 (SIGTERM)": 0}
    for row in failed:
        reason = next((k for k in killed if k in row["error"]), None)
        assert reason and row["status"] == "failed" and reason in row["summary"]["reason"], (seed, row)
        killed[reason] += 1
    assert failed and max(killed.values()) == 1, (seed, killed)
    assert len(rows) == 24 and code == 1, seed
    assert f"{24 - len(failed)}/24 runs completed, {len(failed)} failed" in sweep.stdout.read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("signals", [[signal.SIGTERM], [signal.SIGINT, signal.SIGINT]], ids=["term", "int-int"])
def test_sigterm_or_ctrl_c_stop_the_sweep_and_every_worker(tmp_path, signals):
    """After a worker died (its run recorded as failed) and while another is stuck deaf to SIGTERM,
    `kill` or Ctrl-C (twice: the second arrives during shutdown) ends the sweep with 130."""
    with FaultSweep(tmp_path, ["fault_scorers.Segfault", "fault_scorers.Hang", "mag"]) as sweep:
        crashed = sweep.out / "runs/fault_scorers.Segfault/seed1/summary.json"
        sweep.wait_for(lambda: sweep.pids.exists() and sweep.pids.read_text().strip(), "stuck worker")
        sweep.wait_for(crashed.exists, "crashed run recorded")
        for signum in signals:  # Ctrl-C as a terminal sends it: to the sweep's whole process group
            (os.killpg if signum == signal.SIGINT else os.kill)(sweep.proc.pid, signum)
        assert sweep.finish() == 130
    assert "Traceback" not in sweep.stderr.read_text()  # not even from a worker still starting up
    last = sweep.stderr.read_text().strip().splitlines()[-1]
    assert last.startswith("plantnseek: interrupted: 0/3 runs completed") and "resume with: plantnseek sweep" in last
    assert "worker killed by signal 11 (SIGSEGV)" in json.loads(crashed.read_text())["reason"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_fail_fast_stops_at_the_first_failed_run(tmp_path):
    pruners = ["fault_scorers.Exit3", "mag", "rand"]
    with FaultSweep(tmp_path, pruners, seeds=(1, 2, 3), extra=["--fail-fast"]) as sweep:
        assert sweep.finish() == 1
    rows = sweep.rows().values()
    statuses = [r["status"] for r in rows]
    assert len(rows) == 9 and set(statuses) <= {"completed", "failed", "not run"}
    failed = [r for r in rows if r["status"] == "failed"]
    assert failed and all("worker exited with code 3" in r["error"] for r in failed)
    not_run = [r for r in rows if r["status"] == "not run"]
    assert not_run  # two workers cannot have started all nine runs before the first one failed
    for row in not_run:
        assert_fault_row(row, "not run", "--fail-fast")
    assert "--fail-fast" in sweep.stderr.read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_are_recycled_and_every_one_is_reaped(tmp_path, monkeypatch):
    """With a fresh worker after every batch, three runs on two workers start three workers; when the
    sweep returns, none of them is still this process's child (not even a zombie)."""
    from plantnseek.sweep import workers as sweep_workers
    def children() -> set[int]:
        paths = glob.glob(f"/proc/{os.getpid()}/task/*/children")
        return {int(p) for path in paths for p in open(path).read().split()}

    started = []
    start_worker = sweep_workers.start_worker
    monkeypatch.setattr(sweep_workers, "RECYCLE_AFTER", 1)
    monkeypatch.setattr(sweep_workers, "start_worker", lambda ctx: started.append(start_worker(ctx)) or started[-1])
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "faults.yaml"
    config.write_text(FAULT_SWEEP.format(pruners="mag, rand, snip", seeds="1"))
    assert main(["sweep", "--config", str(config), "--out", "sw", "--workers", "2", "--max-stack", "1"]) == 0
    assert not {w.process.pid for w in started} & children()  # first: reading an exit code would reap it
    assert len(started) == 3 and all(w.process.exitcode == 0 for w in started)  # each left when its pipe closed


def test_fail_fast_in_one_process_and_its_refusals(tmp_path, monkeypatch, capsys):
    """--workers 1 runs in the sweep's own process: the same stop, the same record."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "faults.yaml"
    config.write_text(FAULT_SWEEP.format(pruners="my_scorers.Broken, mag", seeds="1"))
    args = ["sweep", "--config", str(config), "--out", "sw", "--workers", "1", "--max-stack", "1"]
    assert main([*args, "--fail-fast"]) == 1
    with open(tmp_path / "sw/results.csv") as f:
        rows = {r["pruner"]: r for r in csv.DictReader(f)}
    assert rows["my_scorers.Broken"]["status"] == "failed" and "broken scorer" in rows["my_scorers.Broken"]["error"]
    assert rows["mag"]["status"] == "not run" and "--fail-fast" in rows["mag"]["error"]
    assert "0/2 runs completed, 1 failed, 1 not run" in capsys.readouterr().out
    assert main([*args, "--fail-fast", "--executor", "submitit"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--fail-fast" in err and "\n" not in err


# ---------------------------------------------------------------------------------------------------------
# Kernel library
#
# The native kernel is loaded only after checks: a damaged library in the cache (truncated, empty, garbage,
# another shared library copied over it, one byte changed, no recorded digest, writable by others) is
# rebuilt once, and then trains; one that cannot be rebuilt, or a folder others can write, sends training
# to the PyTorch path with one line naming the problem (PLANTNSEEK_KERNEL=native: exit 2). A crash in
# native code still leaves a summary and a message, and the process ends with its signal. Each case has
# its own cache and temporary folder; the genuine library is built once and copied.
# ---------------------------------------------------------------------------------------------------------
KERNEL_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def genuine_kernel(tmp_path_factory):
    """A library built by kernel_build itself, with its digest (a build takes about a second)."""
    cache = tmp_path_factory.mktemp("genuine-kernel")
    path = kernel_build.library_path(cache)
    kernel_build._build(path)
    return path


@pytest.fixture
def kernel_cache(tmp_path, monkeypatch, genuine_kernel):
    """A private cache holding a copy of the genuine library, and no library loaded in this process."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("PLANTNSEEK_CACHE", str(cache))
    monkeypatch.setenv("PLANTNSEEK_KERNEL", "auto")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the fallback folder, if any, lands here
    monkeypatch.setattr(kernel_build, "_library", None)
    monkeypatch.setattr(kernel_build, "_failure", None)
    cache.mkdir(mode=0o700)
    for src in (genuine_kernel, kernel_build.digest_path(genuine_kernel)):
        shutil.copy(src, cache / src.name)
    return cache


def foreign_library() -> str:
    """Another valid shared library: an extension module this process has loaded."""
    return next(m.__file__ for m in list(sys.modules.values())
                if (getattr(m, "__file__", None) or "").endswith(".so"))


def kernel_trains() -> None:
    """One real optimizer step in the loaded kernel: the library is whole and is this kernel."""
    torch.manual_seed(0)
    from plantnseek.core.layers import StackedMLP

    stack = StackedMLP(1, [2, 8, 3]).double()
    params = list(stack.parameters())
    with torch.no_grad():
        for p in params:
            p.copy_(torch.randn(p.shape, dtype=p.dtype))  # the stack's storage starts uninitialised
    opt = torch.optim.SGD(params, lr=0.5)
    assert kernel.usable(params, opt)
    before = [p.detach().clone() for p in params]
    x, y = torch.randn(1, 16, 2, dtype=torch.float64), torch.randint(0, 3, (1, 16))
    total, count = kernel.train(*stack.tensors(), opt, [(x, y)], True)
    assert count == 16 and float(total[0]) > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, params))


def damage_library(path, how: str) -> str:
    """Damage the library at ``path`` as named; returns what kernel_build must say about it."""
    good = path.read_bytes()
    if how == "truncated":
        path.write_bytes(good[:30000])
        return f"is truncated (30000 of {len(good)} bytes)"
    if how == "empty":
        path.write_bytes(b"")
        return "is empty"
    if how == "garbage":
        path.write_bytes(b"not a shared library\n" * 100)
        return "is not the library built there (2100 bytes of garbage or another file copied over it)"
    if how == "foreign":
        shutil.copy(foreign_library(), path)
        return "bytes of garbage or another file copied over it)"
    if how == "one byte":
        path.write_bytes(good[:1000] + bytes([good[1000] ^ 1]) + good[1001:])
        return "does not match its recorded digest (damaged)"
    if how == "appended":
        path.write_bytes(good + b"\0")
        return f"has {len(good) + 1} bytes, not the {len(good)} built"
    if how == "no digest":
        kernel_build.digest_path(path).unlink()
        return "has no valid recorded digest"
    if how == "group-writable":
        path.chmod(0o775)
        return "is writable by group (mode 775)"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["truncated", "empty", "garbage", "foreign", "one byte", "appended", "no digest",
                                 "group-writable"])
def test_a_damaged_cached_library_is_rebuilt_before_it_is_loaded(kernel_cache, genuine_kernel, how, capsys):
    path = kernel_build.library_path()
    assert damage_library(path, how) in kernel_build.damage(path)
    kernel_trains()  # loads: the check came first (a truncated library loaded as is dies of SIGBUS)
    assert path.read_bytes() == genuine_kernel.read_bytes() and kernel_build.damage(path) is None
    assert stat.S_IMODE(path.stat().st_mode) & 0o022 == 0
    assert capsys.readouterr().err == ""  # repaired: nothing to say


def test_a_damaged_library_that_cannot_be_rebuilt_is_named_in_one_line(kernel_cache, genuine_kernel, monkeypatch,
                                                                        capsys):
    monkeypatch.setenv("CC", "false")  # a compiler that always fails (the library's name includes it)
    path = kernel_build.library_path()
    shutil.copy(genuine_kernel, path)
    shutil.copy(kernel_build.digest_path(genuine_kernel), kernel_build.digest_path(path))
    what = damage_library(path, "truncated")
    assert kernel_build.load() is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not be built" not in err, err
    assert f"the cached kernel library {path} {what} and could not be rebuilt (false failed: exit 1)" in err
    assert "training uses the PyTorch path" in err
    assert kernel_build.load() is None and capsys.readouterr().err == ""  # said once
    monkeypatch.setattr(kernel_build, "_failure", None)
    monkeypatch.setenv("PLANTNSEEK_KERNEL", "native")
    with pytest.raises(UsageError) as refused:
        kernel_build.load()
    assert str(refused.value).startswith(f"PLANTNSEEK_KERNEL=native but the cached kernel library {path} {what}")


@pytest.mark.parametrize("mode, who", [(0o770, "group"), (0o707, "others"), (0o777, "group and others")])
def test_a_cache_folder_others_can_write_is_refused(kernel_cache, mode, who, monkeypatch, capsys):
    kernel_cache.chmod(mode)
    before = sorted(p.name for p in kernel_cache.iterdir())
    assert kernel_build.load() is None  # the library there is the genuine one, and still not loaded
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "training uses the PyTorch path" in err, err
    assert f"{kernel_cache} is not a private folder of this user: it is writable by {who} (mode {mode:o})" in err
    assert sorted(p.name for p in kernel_cache.iterdir()) == before  # nothing built there either
    monkeypatch.setattr(kernel_build, "_failure", None)
    monkeypatch.setenv("PLANTNSEEK_KERNEL", "native")
    monkeypatch.chdir(kernel_cache.parent)
    assert main(["fit", "--config", os.path.join(KERNEL_ROOT, "configs", "circle.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("plantnseek: error: PLANTNSEEK_KERNEL=native but the kernel folder")
    assert f"writable by {who}" in err and err.count("\n") == 1, err
    assert not (kernel_cache.parent / "lightning_logs").exists()


def test_a_new_cache_folder_is_private_and_other_owners_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("PLANTNSEEK_CACHE", str(tmp_path / "new" / "cache"))
    monkeypatch.setenv("PLANTNSEEK_KERNEL", "native")
    monkeypatch.setattr(kernel_build, "_library", None)
    monkeypatch.setattr(kernel_build, "_failure", None)
    assert kernel_build.load() is not None
    assert stat.S_IMODE((tmp_path / "new" / "cache").stat().st_mode) == 0o700
    uid = os.getuid()  # another owner cannot be made without root's help: the check, on a stat made up
    for kind, folder in ((stat.S_IFDIR, True), (stat.S_IFREG, False)):
        fake = os.stat_result((kind | 0o700, 0, 0, 1, uid + 1, 0, 0, 0, 0, 0))
        assert kernel_build.untrusted(fake, folder) == f"belongs to uid {uid + 1}, not to this user (uid {uid})"
        own = os.stat_result((kind | 0o755, 0, 0, 1, uid, 0, 0, 0, 0, 0))
        assert kernel_build.untrusted(own, folder) is None
    link = os.stat_result((stat.S_IFLNK | 0o777, 0, 0, 1, uid, 0, 0, 0, 0, 0))
    assert kernel_build.untrusted(link, True) == "is not a folder (a link?)"


KERNEL_CRASH = """
import os, signal, sys
from plantnseek.engine import kernel
from plantnseek.cli.entry import main

def crash(*args, **kwargs):  # what a fault inside kernel.c does to the process
    os.kill(os.getpid(), signal.SIGBUS)

kernel.train = crash
sys.exit(main())
"""


def test_a_crash_in_the_kernel_leaves_a_summary_a_message_and_its_signal(tmp_path, genuine_kernel):
    (tmp_path / "crash.py").write_text(KERNEL_CRASH)
    env = {**os.environ, "PLANTNSEEK_CACHE": str(genuine_kernel.parent), "PLANTNSEEK_KERNEL": "native"}
    env.pop("PYTHONFAULTHANDLER", None)
    done = subprocess.run([sys.executable, "crash.py", "fit", "--config", os.path.join(KERNEL_ROOT, "configs/circle.yaml"),
                           "--model.depth", "3", "--model.width", "20", "--data.n_samples", "600",
                           "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGBUS, done.stderr[-2000:]  # a shell shows 135 (128 + 7)
    assert "Fatal Python error: Bus error" in done.stderr and "in crash" in done.stderr
    found = glob.glob(str(tmp_path / "lightning_logs/**/summary.json"), recursive=True)
    assert len(found) == 1, found
    with open(found[0]) as f:
        summary = json.load(f)
    assert summary["status"] == "failed" and "a crash in native code" in summary["reason"]
    assert summary["dataset"] == "circle" and summary["width"] == 20


def test_the_provisional_summary_is_replaced_by_the_end_and_removed_for_bad_input(tmp_path):
    """While a fit runs its summary says it did not finish; the end says how it ended, and bad input
    found during training leaves no summary (it is reported as bad input)."""
    import pytorch_lightning as pl

    from helpers import read_summary, tiny
    from plantnseek.callbacks import RunSummary

    seen = []

    class Look(pl.Callback):
        def __init__(self, error=None):
            self.error = error

        def on_train_start(self, trainer, pl_module):
            seen.append(read_summary(trainer))
            if self.error:
                raise self.error

    def fit(root, look):
        trainer = pl.Trainer(accelerator="cpu", devices=1, default_root_dir=str(root), max_epochs=1,
                             callbacks=[RunSummary(verbose=False), look], enable_progress_bar=False,
                             enable_model_summary=False, num_sanity_val_steps=0)
        model, dm = tiny(depth=3)
        trainer.fit(model, datamodule=dm)
        return trainer

    trainer = fit(tmp_path / "a", Look())
    assert seen[-1]["status"] == "failed" and "without finishing" in seen[-1]["reason"]
    assert read_summary(trainer)["status"] == "completed" and "reason" not in read_summary(trainer)
    with pytest.raises(UsageError):
        fit(tmp_path / "b", Look(UsageError("bad")))
    assert seen[-1]["status"] == "failed"
    assert not glob.glob(str(tmp_path / "b/**/summary.json"), recursive=True)
