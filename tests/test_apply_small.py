"""``rules.apply_small``, the door of Dual's arithmetic operators for a few NumPy scalars: the same
derivatives as torch (or finite differences) wherever it runs, and ``apply`` (with its errors)
wherever it does not. Each case also says which of the two ran, so a test cannot pass by taking
the general path where the fast one was meant to be checked."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import dualjac as dj
from dualjac import budget
from dualjac.dual import Dual
from dualjac.levels import close_level, open_level
from dualjac.rules import table

torch = pytest.importorskip("torch")


@pytest.fixture
def general(monkeypatch):
    """Counts the operator calls that went on to ``apply`` (the fallback) instead of the fast path."""
    calls = []
    real = table.apply

    def spy(name, *args, **params):
        calls.append(name)
        return real(name, *args, **params)

    monkeypatch.setattr(table, "apply", spy)
    return calls


def _ops(a, b, c):
    """Every operator apply_small serves, with Duals, Python numbers and NumPy scalars on either side."""
    return (
        a + b, a - c, c * a, a / b, b**3, 2.0 * a - 1, 3 - b, 1.5 / c, a**2.5, 2.0**c,
        a * np.float64(0.5), np.float32(2.0) * b, (a * b) ** 2 / c,
    )  # fmt: skip


def _torch_ops(a, b, c):
    return (
        a + b, a - c, c * a, a / b, b**3, 2.0 * a - 1, 3 - b, 1.5 / c, a**2.5, 2.0**c,
        a * 0.5, 2.0 * b, (a * b) ** 2 / c,
    )  # fmt: skip


def _check_against_torch(J, xs, rtol, forward=False):
    ts = tuple(torch.as_tensor(x) for x in xs)
    if forward:  # forward mode, as dualjac: the same IEEE arithmetic at a NaN
        ref = torch.func.jacfwd(_torch_ops, argnums=(0, 1, 2))(*ts)
    else:
        ref = torch.autograd.functional.jacobian(_torch_ops, ts)
    for row, ref_row in zip(J, ref):
        for block, r in zip(row, ref_row):
            np.testing.assert_allclose(block, r.numpy(), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_scalars_match_torch_on_the_fast_path(general, rng, dtype):
    xs = tuple(np.asarray(v, dtype=dtype) for v in rng.uniform(0.5, 2.0, 3))
    J = dj.jacobian(_ops, xs)
    assert general == []  # every operator took apply_small
    for row, value in zip(J, _ops(*xs)):
        for block in row:  # float32 stays float32, except where NumPy promotes (times a np.float64)
            assert type(block) is np.ndarray and block.shape == () and block.dtype == np.asarray(value).dtype
    assert np.asarray(_ops(*xs)[0]).dtype == dtype
    _check_against_torch(J, xs, 1e-5 if dtype == np.float32 else 1e-12)


def test_arrays_match_torch_on_the_fast_path(general, rng):
    """1-d inputs (two leaves: written-out lanes), broadcasting against a constant row."""
    x, y = rng.uniform(0.5, 2.0, 3), rng.uniform(0.5, 2.0, 3)
    row = rng.standard_normal((2, 1))
    f = lambda x, y: (x * y - x / y) ** 2 + row * x  # noqa: E731
    J = dj.jacobian(f, (x, y))
    assert general == []
    tf = lambda x, y: (x * y - x / y) ** 2 + torch.as_tensor(row) * x  # noqa: E731
    ref = torch.autograd.functional.jacobian(tf, (torch.as_tensor(x), torch.as_tensor(y)))
    for got, r in zip(J, ref):
        assert got.shape == (2, 3, 3)
        np.testing.assert_allclose(got, r.numpy(), rtol=1e-12)


def test_mixed_float32_and_float64_follow_numpy(general):
    """A float32 Dual meets float64 constants: the value's dtype is NumPy's, the lanes follow it."""
    a32, b32 = np.asarray(1.5, dtype=np.float32), np.asarray(0.25, dtype=np.float32)
    c64 = np.array(2.0)
    for f, want in [
        (lambda a, b: a * b + 1.0, np.float32),  # Python float: weak, float32 stays
        (lambda a, b: a * c64 + b, np.float64),  # a 0-d float64 array promotes
        (lambda a, b: a * np.float64(2.0) - b, np.float64),
    ]:
        v = f(a32, b32)
        J = dj.jacobian(f, (a32, b32))
        assert np.asarray(v).dtype == want and all(j.dtype == want for j in J)
        # finite differences in float64 at the same point
        h = 1e-6
        for i, j in enumerate(J):
            lo = [np.float64(a32), np.float64(b32)]
            hi = list(lo)
            lo[i] -= h
            hi[i] += h
            fd = (f(*hi) - f(*lo)) / (2 * h)
            np.testing.assert_allclose(j, fd, rtol=1e-5)
    assert general == []


def test_float32_and_float64_inputs_together(general):
    """Inputs of two dtypes take the general entry; their operators still the fast path."""
    J = dj.jacobian(lambda a, b: a * b + b**2, (np.float32(2.0), np.array(3.0)))
    assert general == []
    assert J[0].dtype == np.float64 and float(J[0]) == 3.0 and float(J[1]) == 2.0 + 6.0


def test_python_floats_as_inputs():
    J = dj.jacobian(lambda a, b: a / b - b**2, (2.0, 4.0))
    np.testing.assert_allclose([float(j) for j in J], [1 / 4.0, -2.0 / 16.0 - 8.0], rtol=1e-15)


def test_lists_and_views_go_to_apply(general, rng):
    """A list operand, and a view of a Dual (which may need re-reading its base), take ``apply``."""
    x = rng.uniform(0.5, 2.0, 3)

    def f(x):
        v = x[:2]  # a view of x
        return (x * [1.0, 2.0, 3.0]).sum() + (v * v).sum()

    J = dj.jacfwd(f)(x)
    assert "multiply" in general
    tf = lambda x: (x * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)).sum() + (x[:2] * x[:2]).sum()  # noqa: E731
    np.testing.assert_allclose(J, torch.func.jacfwd(tf)(torch.as_tensor(x)).numpy(), rtol=1e-14)


def test_in_place_writes_through_a_view_are_seen():
    """``y = x * 1`` then ``y[0] += ...`` through a view: the later product reads the written value."""

    def f(a, b):
        y = np.stack([a, b]) * 1.0
        v = y[:1]
        v += a * b  # writes through to y
        return y[0] * b

    J = dj.jacobian(f, (np.array(2.0), np.array(3.0)))
    # y0 = a + a b, out = (a + a b) b: d/da = (1 + b) b, d/db = a b + (a + a b)
    np.testing.assert_allclose([float(j) for j in J], [(1 + 3.0) * 3.0, 2.0 * 3.0 + 2.0 + 6.0], rtol=1e-15)


def test_hessian_of_scalars_nests_through_apply():
    """Under dj.hessian the inner Duals hold outer Duals: the inner operators take ``apply``, the
    outer ones on plain values the fast path; the Hessian is the closed form's."""
    f = lambda x: x[0] ** 3 * x[1] - 2.0 * x[1] ** 2 / x[0]  # noqa: E731
    x = np.array([1.5, 0.5])
    H = dj.hessian(f)(x)
    a, b = x
    want = [[6 * a * b - 4 * b**2 / a**3, 3 * a**2 + 4 * b / a**2], [3 * a**2 + 4 * b / a**2, -4 / a]]
    np.testing.assert_allclose(H, want, rtol=1e-13)
    g = lambda a, b: a**3 * b - 2.0 * b**2 / a  # noqa: E731
    Hs = dj.jacobian(lambda a, b: dj.jacobian(g, (a, b)), (np.array(a), np.array(b)))
    np.testing.assert_allclose(np.array(Hs, dtype=float), want, rtol=1e-13)


def test_nan_values_give_the_lanes_of_torchs_forward_mode(general):
    xs = (np.array(np.nan), np.array(2.0), np.array(0.5))
    J = dj.jacobian(_ops, xs)
    assert general == []
    _check_against_torch(J, xs, 1e-12, forward=True)


def test_escaped_dual_raises_through_an_operator():
    kept = []
    dj.jacobian(lambda a, b: kept.append(a * b) or a + b, (np.array(1.0), np.array(2.0)))
    with pytest.raises(dj.EscapedDualError):
        dj.jacobian(lambda a, b: a * b + kept[0], (np.array(1.0), np.array(2.0)))
    with pytest.raises(dj.EscapedDualError):
        dj.jacobian(lambda a, b: kept[0] * 2.0 + a, (np.array(1.0), np.array(2.0)))


def test_complex_result_raises_through_an_operator():
    with pytest.raises(dj.ComplexValueError):
        dj.jacobian(lambda a, b: a * (1 + 2j) + b, (np.array(1.0), np.array(2.0)))
    with pytest.raises(dj.ComplexValueError):
        dj.jacobian(lambda a, b: a * np.array(1j) + b, (np.array(1.0), np.array(2.0)))


def test_a_non_differentiable_argument_raises_as_apply_does():
    dj.defrule("scaled_", primal=lambda xp, x, y: x * y, factors=(lambda xp, ans, x, y: y, None))
    try:
        level = open_level()
        try:
            x, y = Dual(np.array(2.0), np.array([1.0]), level), Dual(np.array(3.0), np.array([1.0]), level)
            assert float(table.apply_small("scaled_", x, 3.0).tangent[0]) == 3.0
            with pytest.raises(dj.UnsupportedOpError) as fast:
                table.apply_small("scaled_", x, y)
            with pytest.raises(dj.UnsupportedOpError) as slow:
                table.apply("scaled_", x, y)
            assert str(fast.value) == str(slow.value)
        finally:
            close_level(level)
    finally:
        dj.RULES.pop("scaled_")


def test_over_budget_value_stops_the_pass_and_replans(monkeypatch, rng):
    """Two scalars meeting a wide constant: the product is over one lane's share of the budget, so the
    one-pass call stops there (budget.OverBudget inside apply_small) and passes of one lane follow."""
    grid = rng.standard_normal(512)
    xs = (np.array(0.3), np.array(-0.7))
    f = lambda a, b: (a * grid - b) ** 2  # noqa: E731
    stops = []
    real = budget.check

    def spy(level, ans):
        try:
            real(level, ans)
        except budget.OverBudget:
            stops.append(level)
            raise

    monkeypatch.setattr(budget, "check", spy)
    monkeypatch.setattr(dj.config, "tangent_bytes", 512 * 8)  # one lane of the wide value
    J = dj.jacobian(f, xs)
    assert stops  # the pass of two lanes did stop
    r = 2 * (xs[0] * grid - xs[1])
    np.testing.assert_allclose(J[0], r * grid, rtol=1e-14)
    np.testing.assert_allclose(J[1], -r, rtol=1e-14)


def test_threads_get_their_own_answers():
    """Concurrent small calls (levels and budgets are per call) each get their own Jacobian."""
    f = lambda a, b, c: (a + b, c * a, b**3)  # noqa: E731
    points = [tuple(np.array(float(v)) for v in (i, i + 1, i + 2)) for i in range(8)]
    got, errors = {}, []

    def work(i):
        try:
            for _ in range(50):
                got[i] = dj.jacobian(f, points[i])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, (a, b, c) in enumerate(points):
        want = [[1, 1, 0], [float(c), 0, float(a)], [0, 3 * float(b) ** 2, 0]]
        np.testing.assert_array_equal(np.array(got[i], dtype=float), want)


def test_a_rule_defined_again_is_read_again():
    """apply_small reads a rule once (its plan) and again when the table holds another rule of the name."""
    level = open_level()
    try:
        x, y = Dual(np.array(2.0), np.array([1.0, 0.0]), level), Dual(np.array(3.0), np.array([0.0, 1.0]), level)
        for scale in (1.0, 5.0):
            dj.defrule("scaled_", primal=lambda xp, x, y: scale * x * y,
                       factors=(lambda xp, ans, x, y: scale * y, lambda xp, ans, x, y: scale * x))  # fmt: skip
            try:
                out = table.apply_small("scaled_", x, y)
                assert float(out.primal) == scale * 6.0 and out.tangent.tolist() == [scale * 3.0, scale * 2.0]
            finally:
                dj.RULES.pop("scaled_")
        with pytest.raises(dj.UnsupportedOpError):
            table.apply_small("scaled_", x, y)
    finally:
        close_level(level)
