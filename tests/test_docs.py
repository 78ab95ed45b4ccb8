"""docs/paper.md is generated: docs/generate.py run on the committed results (docs/results/*.csv.gz) gives
the committed doc, so no number in it is typed by hand or left over from an older run."""
import importlib.util
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def generate():
    spec = importlib.util.spec_from_file_location("generate", ROOT / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_paper_doc_is_what_the_script_makes_of_the_committed_results(generate):
    assert generate.render() == (ROOT / "docs" / "paper.md").read_text(), \
        "docs/paper.md is out of date: run `python docs/generate.py` and commit the result"


def test_every_committed_sweep_is_complete_and_every_figure_exists(generate):
    names = [p.name[:-len(".csv.gz")] for p in (ROOT / "docs" / "results").glob("*.csv.gz")]
    assert set(names) == set(generate.SWEEPS) == {"paper_singleshot", "paper_multishot", "paper_edgepopup",
                                                  "paper_noise", "paper_synflow100", "methods"}
    for name in names:
        done, total = generate.count(name)
        assert done == total > 0, f"{name}: {done}/{total} runs completed"
    doc = (ROOT / "docs" / "paper.md").read_text()
    for picture in re.findall(r"!\[[^]]*\]\(([^)]+)\)", doc):
        assert (ROOT / "docs" / picture).is_file(), picture


def test_the_numbers_and_rules_the_doc_uses(generate):
    acc = [{"metric_name": "accuracy", "final_metric": v, "pruned_metric": p, "ticket_metric": 0.98, "recall": r}
           for v, p, r in ((0.90, 0.94, 0.96), (0.92, 0.92, 0.86))]
    assert generate.mean(acc, "final_metric") == pytest.approx(0.91)
    assert generate.cell(acc, "final_metric", interval=False) == "0.910"
    assert generate.cell(acc[:1], "final_metric") == "0.900"  # one seed: no interval
    assert generate.strong(acc) is True  # 0.93 >= 0.98 - 0.05
    assert generate.strong([dict(a, pruned_metric=0.9) for a in acc]) is False
    assert generate.found(acc) is True and generate.found(acc[1:]) is False  # mean recall 0.91, then 0.86
    dense = [{"metric_name": "accuracy", "final_metric": 0.915}]
    assert generate.weak(acc, dense) is True and generate.weak(acc[:1], dense) is False  # 0.91 vs 0.90 >= 0.905
    mse = [{"metric_name": "rescaled_mse", "pruned_metric": 3e-4, "ticket_metric": 1e-4, "final_metric": 1e-4}]
    assert generate.strong(mse) is False and generate.strong([dict(mse[0], pruned_metric=2e-4)]) is True
    assert generate.weak(mse, [{"metric_name": "rescaled_mse", "final_metric": 0.5e-4}]) is True  # 1e-4 <= 2 x 0.5e-4
    assert generate.weak(mse, [{"metric_name": "rescaled_mse", "final_metric": 0.4e-4}]) is False
    rows = [{"dataset": "relu", "sparsity": "0.1"}, {"dataset": "circle", "sparsity": "ticket"}]
    assert generate.select(rows, dataset="relu") == rows[:1]
    template = "{{ fmt(0.12345, True) }} and {{ fmt(0.000123, False) }}"
    assert generate.render(template) == "0.123 and 0.00012"
