import json
import os
import subprocess
import sys

import pytest

from plantnseek.cli.entry import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")
TINY = ["--data.n_samples", "600", "--data.prune_dataset_ratio", "5", "--trainer.enable_progress_bar", "false"]


def summaries(root):
    found = []
    for dirpath, _, files in os.walk(root):
        if "summary.json" in files:
            with open(os.path.join(dirpath, "summary.json")) as f:
                found.append(json.load(f))
    return found


@pytest.mark.parametrize("task", ["circle", "relu", "helix"])
def test_fit_fast_dev_run(task, in_tmp):
    assert main(["fit", "--config", f"{CONFIGS}/{task}.yaml", "--trainer.fast_dev_run", "true", *TINY]) == 0


@pytest.mark.parametrize("config", ["circle.yaml", "synflow_singleshot.yaml"])
def test_fit_writes_tensorboard_config_and_summary(config, in_tmp):
    extra = ["--trainer.callbacks.init_args.post_epochs", "1"] if "synflow" in config else ["--trainer.max_epochs", "1"]
    assert main(["fit", "--config", f"{CONFIGS}/{config}", "--model.width", "20", *extra, *TINY]) == 0
    name = "circle/d5w20/synflow/0.1/seed1" if "synflow" in config else "circle/d5w20/dense/seed1"
    run = in_tmp / "lightning_logs" / name / "version_0"  # the run's TensorBoard name says what it is
    assert (run / "config.yaml").exists() and (run / "summary.json").exists()
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(run))
    s = json.loads((run / "summary.json").read_text())
    assert s["epochs"] == 1 and s["width"] == 20
    if "synflow" in config:
        assert s["pruner"] == "synflow" and s["param_sparsity"] == pytest.approx(0.1, abs=0.001)
    # a second run never overwrites the first
    assert main(["fit", "--config", f"{CONFIGS}/circle.yaml", "--model.width", "20", "--trainer.max_epochs", "1", *TINY]) == 0
    version = "version_0" if "synflow" in config else "version_1"
    assert (in_tmp / "lightning_logs" / "circle/d5w20/dense/seed1" / version / "summary.json").exists()


def test_user_scorer_by_config(in_tmp):
    config = in_tmp / "mine.yaml"
    config.write_text("""
seed_everything: 3
data: {dataset: relu, n_samples: 600, prune_dataset_ratio: 5}
model: {depth: 4, width: 8}
trainer:
  enable_progress_bar: false
  callbacks:
    - class_path: plantnseek.callbacks.Pruning
      init_args:
        pruner: {class_path: my_scorers.SmallestMagnitude}
        sparsity: 0.25
        post_epochs: 1
""")
    assert main(["fit", "--config", str(config)]) == 0
    (s,) = summaries(in_tmp)
    assert s["pruner"] == "smallestmagnitude" and s["seed"] == 3
    assert s["param_kept"] == round(0.25 * s["param_prunable"])


def test_ticket_json(capsys):
    assert main(["ticket", "--dataset", "circle", "--depth", "5", "--width", "100", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["nonzero"] == 108 and report["total"] == 20600
    assert report["sparsity"] == 108 / 20600 and report["metric_name"] == "accuracy"
    assert 0.97 <= report["metric"] <= 1.0


def test_ticket_table(capsys):
    assert main(["ticket", "--dataset", "helix", "--width", "30"]) == 0
    out = capsys.readouterr().out
    assert "120/1920" in out  # depth 5, width 30: 30 + 900 + 900 + 90 weights
    assert "minimum width 30" in out


def test_console_script_is_installed():
    exe = os.path.join(os.path.dirname(sys.executable), "plantnseek")
    out = subprocess.run([exe, "ticket", "--dataset", "relu", "--json"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["nonzero"] == 4
    bad = subprocess.run([exe, "ticket", "--width", "5"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "minimum width is 20" in bad.stderr


SEED_EXAMPLE_1 = ("--dataset circle --model planted-model --model-class lottery --train-batch-size 32 "
                  "--test-batch-size 512 --pruner synflow --prune-bias True --no-cuda --verbose --post-epochs 10 "
                  "--sparsity 0.1 --lr 0.001 --result-dir results/test --depth 5 --width 50 --exp-suffix circle_test")
SEED_EXAMPLE_2 = ("--dataset circle --model planted-model --model-class lottery --train-batch-size 32 "
                  "--test-batch-size 512 --pruner synflow --prune-bias True --no-cuda --verbose --post-epochs 20 "
                  "--sparsity 0.1 --lr 0.001 --result-dir results/test --depth 5 --width 50 --level 5 "
                  "--pre-epochs 10 --exp-suffix circle_test_multishot")


def test_main_short_run_prints_the_reference_lines(in_tmp, capsys):
    argv = SEED_EXAMPLE_1.replace("--post-epochs 10", "--post-epochs 1").split()
    result = main(["main", *argv])
    out = capsys.readouterr().out
    assert result == 0
    for line in ("Parameter Sparsity: 545/5454 (0.0999)", "FLOP Sparsity:", "Sparsity of ticket: 0.0203773",
                 "Accuracy of ticket: 0.98", "Train results:", "Final"):
        assert line in out
    assert (in_tmp / "results/test/circle_test/version_0/summary.json").exists()
    assert main(["main", *argv]) == 0
    assert (in_tmp / "results/test/circle_test/version_1/summary.json").exists()


@pytest.mark.slow
def test_seed_readme_example_1(in_tmp, capsys):
    assert main(["main", *SEED_EXAMPLE_1.split()]) == 0
    (s,) = summaries(in_tmp)
    assert s["final"]["accuracy"] > 0.8 and s["param_kept"] == 545 and s["epochs"] == 10


@pytest.mark.slow
def test_seed_readme_example_2(in_tmp, capsys):
    assert main(["main", *SEED_EXAMPLE_2.split()]) == 0
    (s,) = summaries(in_tmp)
    densities = [round(e["density_target"], 3) for e in s["prune_events"]]
    assert densities == [0.631, 0.398, 0.251, 0.158, 0.1]
    assert s["epochs"] == 70 and s["final"]["accuracy"] > 0.85


@pytest.mark.parametrize("pruner, scope", [("itersnip", "global"), ("force", "erk"), ("prospr", "balanced"),
                                           ("phew", "pyramidal"), ("rand", "erk")])
def test_main_runs_every_new_method_and_budget(in_tmp, capsys, pruner, scope):
    argv = (f"--dataset circle --depth 4 --width 20 --prune-dataset-ratio 5 --post-epochs 0 "
            f"--pruner {pruner} --mask-scope {scope} --sparsity 0.2 --prune-bias true --result-dir r --exp-suffix x")
    assert main(["main", *argv.split()]) == 0
    import json

    s = json.loads((in_tmp / "r/x/version_0/summary.json").read_text())
    assert s["pruner"] == pruner and s["budget"] == ("global" if scope == "global" else scope)
    assert s["param_kept"] == round(0.2 * s["param_prunable"])  # every budget keeps exactly the target count


def test_main_bool_flags_parse_false(in_tmp, capsys):
    argv = SEED_EXAMPLE_1.replace("--post-epochs 10", "--post-epochs 0").replace("--prune-bias True", "--prune-bias False")
    assert main(["main", *argv.split()]) == 0
    (s,) = summaries(in_tmp)
    assert s["prune_bias"] is False and s["param_prunable"] == 5300


@pytest.mark.parametrize("argv,message", [
    (["main", "--model", "fc"], "--model 'fc' is not supported"),
    (["main", "--mask-scope", "flow"], "--mask-scope 'flow' is not supported; allowed: global, local, uniform, erk"),
    (["main", "--dataset", "mnist"], "unknown dataset 'mnist'; allowed: circle, relu, helix"),
    (["main", "--prune-bias", "maybe"], "'maybe' is not a boolean"),
    (["main", "--pruner", "magic"], "unknown pruner 'magic'"),
    (["main", "--optimizer", "lbfgs"], "unknown optimizer 'lbfgs'"),
    (["main", "--depth", "2"], "minimum depth is 3"),
    (["main", "--width", "10"], "minimum width is 20"),
    (["main", "--sparsity", "0.00001"], "keeps no parameter"),
    (["main", "--compression", "-1"], "compression -1"),
    (["main", "--level", "0"], "levels 0"),
    (["ticket", "--dataset", "spiral"], "unknown dataset 'spiral'"),
    (["frobnicate"], "unknown command 'frobnicate'"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, in_tmp, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert not (in_tmp / "results").exists() and not (in_tmp / "Results").exists()


def test_readme_scorer_example_runs(in_tmp, monkeypatch):
    """The README's bring-your-own-pruner example, as printed, plugs into the callback."""
    import re
    import types

    text = open(os.path.join(ROOT, "README.md")).read()
    code = re.search(r"```python\n# mypkg/scorers.py\n(.*?)```", text, re.S).group(1)
    pkg, mod = types.ModuleType("mypkg"), types.ModuleType("mypkg.scorers")
    exec(compile(code, "mypkg/scorers.py", "exec"), mod.__dict__)
    pkg.scorers = mod
    monkeypatch.setitem(sys.modules, "mypkg", pkg)
    monkeypatch.setitem(sys.modules, "mypkg.scorers", mod)
    assert main(["main", "--pruner", "mypkg.scorers.GradNorm", "--sparsity", "0.05", "--post-epochs", "1",
                 "--width", "20", "--exp-suffix", "mine"]) == 0
    (s,) = summaries(in_tmp)
    assert s["pruner"] == "gradnorm" and s["param_kept"] == round(0.05 * s["param_prunable"])


def test_pruning_schedule_sets_the_epochs_and_a_contradicting_max_epochs_is_refused(in_tmp, capsys):
    schedule = ["fit", "--config", f"{CONFIGS}/synflow_multishot.yaml", "--model.width", "20", *TINY,
                "--trainer.callbacks.init_args.pre_epochs", "1", "--trainer.callbacks.init_args.levels", "2",
                "--trainer.callbacks.init_args.post_epochs", "1"]
    assert main([*schedule, "--trainer.max_epochs", "7"]) == 2
    err = capsys.readouterr().err.strip()
    assert "trainer.max_epochs 7 contradicts the Pruning schedule" in err and "\n" not in err
    assert not (in_tmp / "lightning_logs").exists() or not list((in_tmp / "lightning_logs").rglob("summary.json"))
    assert main([*schedule, "--trainer.max_epochs", "3"]) == 0  # the schedule's own count is fine
    (s,) = summaries(in_tmp)
    assert s["epochs"] == 3 and s["levels"] == 2


def test_the_working_directory_imports_user_modules_but_shadows_no_package(tmp_path):
    """A yaml.py (or any module named like an installed package) next to your configs must not replace the
    real package; your own task module there still imports."""
    import shutil

    exe = os.path.join(os.path.dirname(sys.executable), "plantnseek")
    (tmp_path / "yaml.py").write_text("raise ImportError('the working directory shadowed the real yaml')\n")
    shutil.copy(os.path.join(os.path.dirname(__file__), "..", "examples", "xor_task.py"), tmp_path / "xor_task.py")
    done = subprocess.run([exe, "ticket", "--dataset", "xor_task.Xor", "--depth", "4", "--width", "20"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Planted" in done.stdout
    (tmp_path / "sweep.yaml").write_text("grid: {seed: [1]}\nbase: {data: {n_samples: -3}}\n")
    done = subprocess.run([exe, "sweep", "--config", "sweep.yaml"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and "n_samples -3" in done.stderr and "shadowed" not in done.stderr, done.stderr


def test_the_core_and_the_ticket_command_import_no_lightning():
    """The core (tasks, tickets, run: tasks, the registry, planting, layers, masking, metrics, sampling, the
    engine's kernel) and `plantnseek ticket` never import Lightning: a ticket table needs only planting."""
    code = """
import json, sys
import plantnseek.core.tasks, plantnseek.core.tickets, plantnseek.core.runtask, plantnseek.core.registry, plantnseek.core.planting
import plantnseek.core.planted, plantnseek.core.layers, plantnseek.core.masking, plantnseek.core.metrics, plantnseek.core.sampling
import plantnseek.core.run, plantnseek.engine.kernel, plantnseek.engine.kernel_build, plantnseek.memory
from plantnseek.cli.entry import main
code = main(["ticket", "--dataset", "helix", "--width", "30", "--json"])
print(json.dumps({"code": code, "lightning": sorted(m for m in sys.modules
                                                    if m.split(".")[0] in ("pytorch_lightning", "lightning_fabric"))}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert last == {"code": 0, "lightning": []}
    assert json.loads(done.stdout.strip().splitlines()[0])["nonzero"] == 120


def test_one_module_builds_every_trainer():
    """main, sweeps, stacks and the validation of trainer settings build their Trainer in plantnseek/trainer.py
    (LightningCLI builds its own from trainer.cli_defaults); no other module constructs one."""
    import re

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    builders = []
    for folder in ("plantnseek", "callbacks"):
        for name in sorted(os.listdir(os.path.join(root, folder))):
            if name.endswith(".py"):
                with open(os.path.join(root, folder, name)) as f:
                    if re.search(r"\bTrainer\(", f.read()):
                        builders.append(f"{folder}/{name}")
    assert builders == ["plantnseek/trainer.py"]
