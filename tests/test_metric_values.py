"""Metrics against hand computations, including the stacked (leading runs dimension) forms."""
import pytest
import torch

from plantnseek.core.metrics import RescaledMSE, RunsAccuracy, RunsMSE, SumMean


def test_rescaled_mse_by_hand():
    # one output, f = [1, 2], y = [2, 3]: s = (2 + 6) / (1 + 4) = 1.6; residuals 0.4, -0.2
    m = RescaledMSE(1)
    m.update(torch.tensor([[1.0]]), torch.tensor([[2.0]]))
    m.update(torch.tensor([[2.0]]), torch.tensor([[3.0]]))
    assert float(m.compute()) == pytest.approx((0.4**2 + 0.2**2) / 2, rel=1e-6)
    assert m.higher_is_better is False


def test_rescaled_mse_averages_over_outputs_and_takes_scale_one_for_a_zero_output():
    # output 0 fits exactly after scaling (s = 2); output 1 predicts zero, so s = 1 and the error is y^2
    f = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    y = torch.tensor([[2.0, 1.0], [6.0, 3.0]])
    m = RescaledMSE(2)
    m.update(f, y)
    assert float(m.compute()) == pytest.approx((0 + 0 + 1 + 9) / 4, rel=1e-6)


def test_rescaled_mse_with_runs_gives_one_value_per_run():
    f = torch.tensor([[[1.0], [2.0]], [[1.0], [-1.0]]])  # [R=2, n=2, d=1]
    y = torch.tensor([[[2.0], [4.0]], [[1.0], [2.0]]])
    m = RescaledMSE(1, runs=2)
    m.update(f[:, :1], y[:, :1])
    m.update(f[:, 1:], y[:, 1:])
    # run 0: exact multiple (s = 2) -> 0; run 1: s = (1 - 2) / 2 = -0.5, residuals 1.5 and 1.5
    assert m.compute().tolist() == pytest.approx([0.0, (1.5**2 + 1.5**2) / 2], abs=1e-6)


def test_runs_accuracy_by_hand():
    logits = torch.tensor([[[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]],
                           [[0.0, 1.0], [0.0, 3.0], [5.0, 0.0]]])  # [R=2, n=3, C=2]
    labels = torch.tensor([[0, 1, 1], [0, 0, 0]])
    m = RunsAccuracy(runs=2)
    m.update(logits[:, :2], labels[:, :2])
    m.update(logits[:, 2:], labels[:, 2:])
    assert m.compute().tolist() == pytest.approx([2 / 3, 1 / 3])
    assert m.higher_is_better is True


def test_runs_mse_by_hand():
    preds = torch.tensor([[[1.0, 2.0]], [[1.0, 0.5]]])  # [R=2, n=1, d=2]
    target = torch.tensor([[[0.5, 3.0]], [[3.0, -1.0]]])
    m = RunsMSE(runs=2)
    m.update(preds, target)
    m.update(preds, target)
    assert m.compute().tolist() == pytest.approx([(0.25 + 1) / 2, (4 + 2.25) / 2])
    assert m.higher_is_better is False


def test_sum_mean_is_total_over_count_in_float64():
    m = SumMean()
    m.update(torch.tensor(3.0), 2)
    m.update(torch.tensor(1e8, dtype=torch.float64), 1)
    m.update(torch.tensor(-1e8, dtype=torch.float64), 1)
    assert float(m.compute()) == pytest.approx(3.0 / 4)
    runs = SumMean(runs=2)
    runs.update(torch.tensor([1.0, 4.0]), 2)
    runs.update(torch.tensor([3.0, 0.0]), 2)
    assert runs.compute().tolist() == pytest.approx([1.0, 1.0])


def test_runs_mse_accumulates_in_float64():
    # 2^24 + 8 * 1: a float32 accumulator loses every +1 after 2^24
    m = RunsMSE(runs=1)
    m.update(torch.tensor([[[4096.0]]]), torch.zeros(1, 1, 1))
    for _ in range(8):
        m.update(torch.ones(1, 1, 1), torch.zeros(1, 1, 1))
    assert float(m.compute()) == pytest.approx((2**24 + 8) / 9, rel=1e-7)
