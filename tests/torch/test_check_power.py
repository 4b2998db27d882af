"""dualjac.torch.check has power at every output scale, in full and projection mode, and says where.

The reference for "wrong" is a custom autograd.Function whose backward is 1% off: its forward is
correct (dualjac differentiates the forward), its backward is what torch.autograd uses.
"""

from __future__ import annotations

import functools

import pytest

torch = pytest.importorskip("torch")
from zoo import WrongTanh  # noqa: E402

import dualjac.torch as djt  # noqa: E402
from dualjac import UnsupportedOpError  # noqa: E402

nn = torch.nn
SCALES = [1.0, 1e-6, 1e-11]


class OffTanh(nn.Module):
    def forward(self, x):
        return WrongTanh.apply(x)


class Scale(nn.Module):
    def __init__(self, s: float):
        super().__init__()
        self.s = s

    def forward(self, x):
        return x * self.s


@functools.cache
def _layers(wrong: bool, dtype):
    """Shared by the models of every scale, so each layer is lowered once (the lowering is cached per module)."""
    torch.manual_seed(0)
    act = OffTanh() if wrong else nn.Tanh()
    return tuple(m.to(dtype) for m in (nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 10), act, nn.Linear(10, 3)))


@functools.cache
def _model(scale: float, wrong: bool, dtype=torch.float64):
    return nn.Sequential(*_layers(wrong, dtype), Scale(scale)).eval()


CASES = [
    {"mode": "full"},
    {"mode": "projection"},
    {"mode": "full", "batched": True},
    {"mode": "projection", "batched": True},
    {"mode": "full", "wrt": "params"},
    {"mode": "projection", "wrt": "params"},
]


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("kwargs", CASES, ids=lambda k: "-".join(map(str, k.values())))
def test_a_one_percent_wrong_backward_is_caught_at_every_scale(scale, kwargs):
    x = torch.randn(4, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    report = djt.check(_model(scale, wrong=True), x, **kwargs)
    assert report.status == "mismatch" and not report.ok, str(report)
    # the error is about 1% of the scale (less in projections, where the wrong layer is one path of several)
    assert 1e-3 < report.max_rel_error < 0.05, str(report)
    assert report.culprit is not None and report.culprit.module == "3", str(report)
    assert report.culprit.kind == "OffTanh" and "test_check_power.py" in report.culprit.defined_at
    # the graph node of that module's own code, and the line it comes from (WrongTanh.forward's tanh)
    assert "aten.tanh" in report.culprit.node and "zoo.py" in report.culprit.source


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("kwargs", CASES, ids=lambda k: "-".join(map(str, k.values())))
def test_a_correct_model_passes_at_every_scale(scale, kwargs):
    x = torch.randn(4, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    report = djt.check(_model(scale, wrong=False), x, **kwargs)
    assert report.ok and report.status == "ok", str(report)
    assert all(r.resolved > 0 and r.status == "ok" for r in report.rows), str(report)
    assert report.max_rel_error < 1e-9  # float64 against float64: rounding only
    assert all(r.scale < 10 * scale for r in report.rows)  # the tolerances followed the scale


def test_float32_models_are_checked_at_float32_precision():
    x = torch.randn(4, 12, generator=torch.Generator().manual_seed(1))
    for scale in (1.0, 1e-11):
        assert djt.check(_model(scale, False, torch.float32), x, mode="projection").ok
        assert djt.check(_model(scale, True, torch.float32), x, mode="projection").status == "mismatch"


def test_projection_catches_what_gradcheck_fast_mode_misses():
    model = _model(1e-6, wrong=True)
    x = torch.randn(4, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    # gradcheck compares with finite differences at atol=1e-5, rtol=1e-3: a 1% error of 1e-6 passes
    assert torch.autograd.gradcheck(model, (x,), fast_mode=True, raise_exception=False)
    report = djt.check(model, x.detach(), mode="projection")
    assert report.status == "mismatch", str(report)


def test_a_comparison_without_power_is_never_ok():
    x = -torch.rand(4, 12, dtype=torch.float64) - 0.1
    dead = nn.Sequential(nn.ReLU(), nn.Linear(12, 3)).double().eval()  # relu(x < 0) = 0: J is exactly 0
    for mode in ("full", "projection"):
        report = djt.check(dead, x, mode=mode)
        assert report.status == "no power" and not report.ok, str(report)
        assert "exactly zero" in report.reason and [r.status for r in report.rows] == ["zero"]
        with pytest.raises(AssertionError, match="not compared"):
            report.raise_for_failure()
    # tolerances so loose that a 1% error passes: refused, not OK
    report = djt.check(_model(1.0, False), x.abs(), mode="full", atol=0.5)
    assert report.status == "no power" and "1% error" in report.reason and report.rows[0].resolved == 0
    # a zero block beside blocks with power is fine (d out / d an unused input)
    two = lambda a, b: torch.tanh(a) + 0 * b
    report = djt.check(two, x, x.clone())
    assert report.ok and [r.status for r in report.rows] == ["ok", "zero"], str(report)
    with pytest.raises(ValueError, match="rtol"):
        djt.check(dead, x, rtol=1.0)


def test_the_culprit_can_be_the_top_modules_own_code():
    class Top(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(5, 4)

        def forward(self, x):
            return WrongTanh.apply(self.lin(x))

    torch.manual_seed(0)
    report = djt.check(Top().double().eval(), torch.randn(3, 5, dtype=torch.float64), mode="projection")
    assert report.culprit is not None and report.culprit.module == "" and report.culprit.kind == "Top"
    assert "first failing node: the top module (Top)" in str(report)


def test_the_culprit_in_a_residual_block_with_in_place_relus():
    class Block(nn.Module):
        def __init__(self, off: bool):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 3, 3, padding=1)
            self.relu = nn.ReLU(inplace=True)
            self.act = OffTanh() if off else nn.Tanh()
            self.conv2 = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            return self.relu(self.conv2(self.act(self.relu(self.conv1(x)))) + x)

    torch.manual_seed(0)
    model = nn.Sequential(Block(False), Block(True), nn.Flatten(), nn.Linear(3 * 5 * 5, 2)).double().eval()
    report = djt.check(model, torch.randn(2, 3, 5, 5, dtype=torch.float64))
    assert report.mode == "projection" and report.status == "mismatch", str(report)
    assert report.culprit.module == "1.act", str(report)
    assert "self.act(self.relu(self.conv1(x)))" in report.culprit.called_at


def test_training_mode_is_refused_before_torch_runs_the_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 2)).double()
    before = model[1].running_mean.clone(), model[1].num_batches_tracked.clone()
    with pytest.raises(UnsupportedOpError, match=r"model\.eval\(\)"):
        djt.check(model, torch.randn(8, 4, dtype=torch.float64))
    assert torch.equal(model[1].running_mean, before[0]) and torch.equal(model[1].num_batches_tracked, before[1])
    model[1].eval()  # dropout still trains
    with pytest.raises(UnsupportedOpError, match=r"Dropout.*model\.eval\(\)"):
        djt.check(model, torch.randn(8, 4, dtype=torch.float64))
    assert djt.check(model.eval(), torch.randn(8, 4, dtype=torch.float64)).ok


def test_a_second_check_reuses_the_lowering_and_sees_changed_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 10), nn.Tanh(), nn.Linear(10, 3)).double().eval()
    x = torch.randn(4, 12, dtype=torch.float64)
    first = djt.check(model, x, mode="projection")
    second = djt.check(model, x, mode="projection")
    assert first.ok and second.ok and second.time_lower < first.time_lower / 5
    with torch.no_grad():
        model[0].weight.mul_(3.0)  # in place: the cached graph must read the new weight
    third = djt.check(model, x, mode="projection")
    assert third.ok and third.value_error < 1e-12, str(third)


def test_projection_rows_and_report_text():
    x = torch.randn(5, 12, dtype=torch.float64)
    report = djt.check(_model(1.0, False), x, mode="projection", directions=3, seed=7, batched=True)
    assert report.rows[0].shape == (3, 3, 5) and report.seed == 7 and report.directions == 3
    text = str(report)
    assert "projection, 3x3 directions, seed 7" in text and "resolved" in text and "lowering" in text
    report = djt.check(_model(1.0, False), x, wrt="params", mode="projection")
    assert [r.wrt for r in report.rows] == ["params (6 tensors)"]
    with pytest.raises(ValueError, match="mode"):
        djt.check(_model(1.0, False), x, mode="fast")


class _OffWeightLinear(torch.autograd.Function):
    """x @ w.T whose gradient w.r.t. w is 1% too large (the one w.r.t. x is right)."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x @ w.T

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g @ w, 1.01 * g.T @ x


class OffWeightLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 6))

    def forward(self, x):
        return _OffWeightLinear.apply(x, self.weight)


def test_a_wrong_parameter_gradient_is_located_and_grads_stay_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), OffWeightLinear(), nn.Linear(4, 2)).double().eval()
    x = torch.randn(3, 5, dtype=torch.float64)
    assert djt.check(model, x, mode="projection").ok  # d/dx is right
    report = djt.check(model, x, wrt="params", mode="projection")
    assert report.status == "mismatch" and report.culprit.module == "2", str(report)
    assert all(p.grad is None for p in model.parameters())  # the search used autograd.grad, not .backward


def test_a_float64_model_that_rounds_to_float32_inside_gets_float32_tolerances():
    class Rounding(nn.Module):  # as Llama's RMSNorm: computes in float32 whatever the model's dtype
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 6)

        def forward(self, x):
            return torch.tanh(self.lin(x).float()).to(x.dtype)

    torch.manual_seed(0)
    model, x = Rounding().double().eval(), torch.randn(3, 6, dtype=torch.float64)
    report = djt.check(model, x)
    assert report.ok and report.rtol == 1e-3, str(report)
    assert any("computes in float32 in places" in n and "_to_copy" in n for n in report.notes), report.notes
    assert djt.check(model, x, rtol=1e-7, atol=1e-10).status == "mismatch"  # float64 tolerances: it is not float64


class _OffIdentity(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * 1.01


class OffIdentity(nn.Module):
    def forward(self, x):
        return _OffIdentity.apply(x)


def test_the_culprit_inside_a_transformer_layer_called_with_keywords():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True).double().eval()
    layer.dropout2 = OffIdentity()  # after linear2; self_attn, checked before it, is called with keywords
    report = djt.check(layer, torch.randn(2, 5, 8, dtype=torch.float64))
    assert report.status == "mismatch" and report.culprit.module == "dropout2", str(report)


def test_inputs_must_be_tensors():
    with pytest.raises(TypeError, match="torch tensors"):
        djt.check(_model(1.0, False), torch.randn(2, 12, dtype=torch.float64).numpy())


_SHIFT = {"value": 1.0}  # a global forward reads: export bakes it in, and the lowering cache cannot see it


def test_forward_values_are_compared_so_a_stale_lowering_is_not_silent():
    class Shift(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x):
            return self.lin(x) + _SHIFT["value"]  # a Python float: a constant of the lowered graph

    torch.manual_seed(0)
    model, x = Shift().double().eval(), torch.randn(2, 3, dtype=torch.float64)
    try:
        assert djt.check(model, x).ok
        _SHIFT["value"] = 2.0  # the cached lowering still adds 1.0
        report = djt.check(model, x)
    finally:
        _SHIFT["value"] = 1.0
    assert report.status == "mismatch" and "forward values differ" in report.reason and report.culprit is None


class _Square(torch.autograd.Function):
    """x * x, with a backward 2x too large when ``wrong`` (set on the class by the test)."""

    wrong = True

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (4 if _Square.wrong else 2) * x


class _BigAndSmall(nn.Module):
    """One output block: a part 1e12 times larger than the part whose backward may be wrong."""

    def __init__(self, big):
        super().__init__()
        self.big = big

    def forward(self, x):
        return torch.cat([self.big * x[:, :1], _Square.apply(x[:, 1:])], 1)


@pytest.mark.parametrize("mode", ["full", "projection"])
@pytest.mark.parametrize("n", [4, 40])
def test_a_wrong_backward_of_a_small_output_beside_a_large_one_is_caught(mode, n):
    x = torch.randn(2, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    try:
        for big in (1.0, 1e12):
            _Square.wrong = True
            report = djt.check(_BigAndSmall(big), x, mode=mode, locate=False)
            assert report.status == "mismatch", str(report)
            _Square.wrong = False
            report = djt.check(_BigAndSmall(big), x, mode=mode)
            assert report.status == "ok", str(report)
            # full mode resolves the small outputs' entries; a projection sums every row's rounding allowance
            assert report.rows[0].resolved > 0 or (mode == "projection" and big > 1), str(report)
        # float32: down to outputs about 2e-4 of the largest (below, torch's rounding may be 1% of them)
        x32 = x.float()
        _Square.wrong = True
        assert djt.check(_BigAndSmall(1e3), x32, mode=mode, locate=False).status == "mismatch"
        _Square.wrong = False
        assert djt.check(_BigAndSmall(1e3), x32, mode=mode, locate=False).status == "ok"
    finally:
        _Square.wrong = True


def test_projection_resolved_means_a_one_percent_error_in_one_output_would_fail():
    x = torch.randn(4, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    report = djt.check(_model(1.0, False), x, mode="projection")
    assert report.ok and report.rows[0].resolved == 1, str(report)
    # rtol=0.2 hides a 1% error in any one output of twelve (a projection sums all of them)
    assert djt.check(_model(1.0, False), x, mode="projection", rtol=0.2).rows[0].resolved == 0
    # atol=0.5 hides a 1% error in all of them: no power
    assert djt.check(_model(1.0, False), x, mode="projection", atol=0.5).status == "no power"


@pytest.mark.parametrize("seed", [1, 3, 5])
def test_float32_rounding_amplified_by_the_model_is_not_blamed_on_the_lowering(seed):
    torch.manual_seed(seed)
    x = 1 + 1e-3 * torch.randn(4, 16)  # LayerNorm divides float32's rounding of x - mean by std = 1e-3
    report = djt.check(nn.LayerNorm(16).eval(), x, locate=False)
    assert report.ok and "forward values differ" not in report.reason, str(report)
    assert any("rounding" in n and "not the lowering" in n for n in report.notes), str(report)
    # the same model with forward values that really differ (a stale lowering) is still a mismatch
    class Shifted(nn.LayerNorm):
        def forward(self, x):
            return super().forward(x) + _SHIFT["value"]

    model = Shifted(16).eval()
    djt.check(model, x, locate=False)
    try:
        _SHIFT["value"] = 2.0  # a global: the cached lowering keeps 1.0
        assert "forward values differ" in djt.check(model, x, locate=False).reason
    finally:
        _SHIFT["value"] = 1.0
