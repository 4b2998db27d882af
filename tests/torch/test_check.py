"""dualjac.torch.check: agrees on correct models, catches wrong derivatives."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from zoo import EmbeddingModel, WrongTanh  # noqa: E402

import dualjac.torch as djt  # noqa: E402
from dualjac.torch.check_report import compare_values  # noqa: E402

nn = torch.nn


def _mlp(dtype=torch.float64):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).to(dtype).eval()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_check_agrees_on_a_correct_model(dtype):
    x = torch.randn(5, 4, dtype=dtype)
    for kwargs in ({}, {"batched": True}, {"wrt": "params"}):
        report = djt.check(_mlp(dtype), x, **kwargs)
        assert report.ok, str(report)
        assert report.max_abs_error < (1e-12 if dtype == torch.float64 else 1e-5)
        report.raise_for_failure()
        assert "OK" in str(report) and len(report.rows) >= 1


def test_check_blocks_have_the_right_shapes():
    x = torch.randn(5, 4, dtype=torch.float64)
    assert [r.shape for r in djt.check(_mlp(), x).rows] == [(5, 3, 5, 4)]
    assert [r.shape for r in djt.check(_mlp(), x, batched=True).rows] == [(5, 3, 4)]
    params = djt.check(_mlp(), x, wrt="params")
    assert [r.wrt for r in params.rows] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert params.rows[0].shape == (5, 3, 6, 4)


class _Wrong(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3).double()

    def forward(self, x):
        return WrongTanh.apply(self.lin(x))


def test_check_catches_a_wrong_custom_backward():
    torch.manual_seed(0)
    x = torch.randn(5, 4, dtype=torch.float64)
    report = djt.check(_Wrong().eval(), x, batched=True)
    assert not report.ok
    assert report.max_rel_error == pytest.approx(0.01, rel=0.05) or report.max_rel_error > 0.005
    with pytest.raises(AssertionError, match="disagree"):
        report.raise_for_failure()


def test_check_tolerances_follow_the_dtype_and_can_be_set():
    x = torch.randn(2, 4)
    assert djt.check(_mlp(torch.float32), x).rtol == 1e-3
    assert djt.check(_mlp(torch.float32), x, rtol=1e-2, atol=0).rtol == 1e-2
    assert djt.check(_mlp(), x.double()).rtol == 1e-7


def test_check_bad_arguments():
    x = torch.randn(2, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="wrt"):
        djt.check(_mlp(), x, wrt="weights")
    with pytest.raises(ValueError, match="inputs"):
        djt.check(_mlp())
    assert np.isfinite(djt.check(_mlp(), x).time_dualjac)


def test_check_differentiates_only_the_floating_inputs():
    torch.manual_seed(0)
    model = EmbeddingModel(5, 3, 2).double().eval()
    idx, x = torch.randint(0, 5, (4, 2)), torch.randn(4, 3, dtype=torch.float64)
    report = djt.check(model, idx, x)
    assert report.ok, str(report)
    assert [(r.wrt, r.shape) for r in report.rows] == [("x1", (4, 2, 4, 3))]
    assert djt.check(model, idx, x, wrt="params").ok


def test_check_float32_model_wrt_params_with_a_custom_function():
    torch.manual_seed(0)
    model = _Wrong().float().eval()
    x = torch.randn(5, 4)
    assert not djt.check(model, x, wrt="params").ok  # the 1% error shows in d/dparams too
    assert djt.check(_mlp(torch.float32), x, wrt="params").ok


def test_check_a_plain_function_and_params_errors():
    x = torch.randn(3, 4, dtype=torch.float64)
    report = djt.check(lambda x: torch.tanh(x) * x, x)
    assert report.ok and report.dtype == "float64" and not report.notes
    with pytest.raises(ValueError, match="trainable parameters.*Tanh has none"):
        djt.check(nn.Tanh(), x, wrt="params")
    with pytest.raises(ValueError, match="plain function has none"):
        djt.check(lambda x: x * 2, x, wrt="params")


def test_check_notes_say_what_was_not_compared_tightly():
    torch.manual_seed(0)
    report = djt.check(_mlp(torch.float32), torch.randn(2, 4))
    assert report.ok and any("float32" in n and "tolerances" in n for n in report.notes)
    assert "note: torch ran the model in float32" in str(report)
    model = EmbeddingModel(5, 3, 2).double().eval()
    report = djt.check(model, torch.randint(0, 5, (4, 2)), torch.randn(4, 3, dtype=torch.float64))
    assert report.notes == ["not differentiated (not floating point): x0"]


class _NoneGrad(torch.autograd.Function):
    """sin whose backward returns None: torch then treats the derivative as zero, which is wrong."""

    @staticmethod
    def forward(ctx, x):
        return torch.sin(x)

    @staticmethod
    def backward(ctx, g):
        return None


class _NoneGradModule(nn.Module):
    def forward(self, x):
        return _NoneGrad.apply(x)


def test_a_backward_returning_none_is_reported_not_a_crash():
    torch.manual_seed(0)
    x = torch.randn(3, 4, dtype=torch.float64)
    for model, where in ((_NoneGradModule(), ""), (nn.Sequential(nn.Linear(4, 4), _NoneGradModule()).double(), "1")):
        report = djt.check(model.eval(), x)
        assert report.status == "mismatch" and not report.ok, str(report)
        assert report.culprit is not None and report.culprit.module == where, str(report)


def test_zero_size_inputs_are_refused_with_a_clear_error():
    for kwargs in ({}, {"batched": True}):
        with pytest.raises(ValueError, match="nothing to check"):
            djt.check(nn.Linear(3, 2).double(), torch.randn(0, 3, dtype=torch.float64), **kwargs)


class _MaskedLogits(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4).double()

    def forward(self, x):
        return self.lin(x).masked_fill(torch.tensor([False, False, True, True]), float("-inf"))


def test_equal_infinite_and_nan_outputs_agree():
    torch.manual_seed(0)
    x = torch.randn(3, 4, dtype=torch.float64)
    report = djt.check(_MaskedLogits().eval(), x, locate=False)
    assert report.ok and report.value_error < 1e-15, str(report)
    # NaNs in the same places agree too; one NaN or inf on one side only does not
    nan, inf = float("nan"), float("inf")
    t = [torch.tensor([1.0, nan, -inf, inf], dtype=torch.float64)]
    assert compare_values(t, [np.array([1.0, nan, -inf, inf])], 1e-7, 1e-10)[:2] == (0.0, True)
    assert not compare_values(t, [np.array([1.0, 0.0, -inf, inf])], 1e-7, 1e-10)[1]
    assert not compare_values(t, [np.array([1.0, nan, inf, inf])], 1e-7, 1e-10)[1]
