"""Small calls (a few input elements, every argument differentiated) take a one-pass path with
cached seeds and layouts (transforms._one_pass): the same answers and guarantees as the planned
passes, checked against torch.func and closed forms."""

from __future__ import annotations

import numpy as np
import pytest

import dualjac as dj
from dualjac.tree import flatten

torch = pytest.importorskip("torch")


def _torch_jac(tf, xs):
    return torch.autograd.functional.jacobian(tf, tuple(torch.as_tensor(x) for x in xs))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scalar_inputs_match_torch(rng, dtype):
    xs = tuple(np.asarray(v, dtype=dtype) for v in rng.uniform(0.5, 2.0, 3))
    f = lambda a, b, c: (a + b, c * a, b**3, np.sin(a * b) / c)  # noqa: E731
    tf = lambda a, b, c: (a + b, c * a, b**3, torch.sin(a * b) / c)  # noqa: E731
    for _ in range(3):  # later calls reuse the cached layout and seeds
        J = dj.jacobian(f, xs)
        ref = _torch_jac(tf, xs)
        for row, ref_row in zip(J, ref):
            for b, r in zip(row, ref_row):
                assert type(b) is np.ndarray and b.shape == () and b.dtype == dtype
                np.testing.assert_allclose(b, r.numpy(), rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_small_arrays_and_non_contiguous_inputs_match_closed_forms(rng):
    base = rng.standard_normal((4, 6))
    x, w = base[::2, ::3], rng.standard_normal(3)  # x: a (2, 2) strided view
    assert not x.flags.c_contiguous
    J = dj.jacobian(lambda x, w: (x * x).sum() * w, (x, w))
    np.testing.assert_allclose(J[0], 2 * w[:, None, None] * x[None], rtol=1e-14)
    np.testing.assert_allclose(J[1], np.eye(3) * (x * x).sum(), rtol=1e-14)


def test_mixed_dtypes_and_python_floats():
    J = dj.jacobian(lambda a, b: a * b, (np.float32(2.0), np.array(3.0)))
    assert J[0].dtype == np.float64 and float(J[0]) == 3.0 and float(J[1]) == 2.0
    J = dj.jacobian(lambda a, b: a * b, (2.0, 3.0))
    assert float(J[0]) == 3.0 and float(J[1]) == 2.0
    # the same shapes in another dtype: a layout of its own
    J32 = dj.jacobian(lambda a, b: a * b, (np.float32(2.0), np.float32(3.0)))
    assert J32[0].dtype == np.float32


@pytest.mark.parametrize(
    "f",
    [
        lambda a, b: (a, b),  # the outputs' lanes are the cached seeds themselves
        lambda a, b: (a + 0.0, b, a),
        lambda a, b: {"p": a, "q": [b, a * b]},
    ],
    ids=["passthrough", "repeat", "pytree-out"],
)
def test_small_call_results_are_fresh_and_writeable(f):
    xs = (np.array(1.5), np.array(-2.0))
    want = [np.array(b, copy=True) for b in _leaves(dj.jacobian(f, xs))]
    blocks = _leaves(dj.jacobian(f, xs))
    for b in blocks:
        assert b.flags.writeable
        b[...] = 7.0  # the user's edit
    for g, w in zip(_leaves(dj.jacobian(f, xs)), want):
        np.testing.assert_array_equal(g, w)
    for i, a in enumerate(blocks):  # no block shares memory with another, nor with an input
        assert not any(np.shares_memory(a, b) for b in blocks[i + 1 :] + list(xs))


def _leaves(t):
    return flatten(t)[0]


def test_small_inputs_with_a_wide_intermediate_keep_the_budget(monkeypatch, rng):
    """Three scalars meeting a 4096-wide value: the one-pass path stops before the tangent that
    would go over the budget and the planned passes take over."""
    xs = tuple(np.asarray(v) for v in rng.standard_normal(3))
    grid = np.linspace(0.0, 1.0, 4096)
    f = lambda a, b, c: np.tanh(a * grid + b * grid**2 + c).sum()  # noqa: E731
    full = dj.jacobian(f, xs, chunk_size=3)
    budget = 2 * 4096 * 8  # two lanes of the widest value
    sizes = []
    real = dj.Dual.__init__

    def spy(self, primal, tangent, level=1):
        sizes.append(tangent.shape[0] * int(np.prod(np.shape(primal))) * 8)
        real(self, primal, tangent, level)

    monkeypatch.setattr(dj.config, "tangent_bytes", budget)
    monkeypatch.setattr(dj.Dual, "__init__", spy)
    got = dj.jacobian(f, xs)
    assert max(sizes) <= budget
    s = 1 - np.tanh(xs[0] * grid + xs[1] * grid**2 + xs[2]) ** 2
    for g, want, closed in zip(got, full, (s @ grid, s @ grid**2, s.sum())):
        np.testing.assert_allclose(g, want, rtol=1e-13)
        np.testing.assert_allclose(g, closed, rtol=1e-12)


def test_escaped_dual_from_a_small_call_raises():
    kept = []
    dj.jacobian(lambda a, b: kept.append(a * b) or a + b, (np.array(1.0), np.array(2.0)))
    with pytest.raises(dj.EscapedDualError):
        dj.jacobian(lambda a, b: kept[0] + a * b, (np.array(1.0), np.array(2.0)))


def test_nested_small_calls_give_the_hessian():
    """jacobian inside jacobian: the inner small call's levels see the outer's Duals as constants."""

    def grad(a, b):
        ga, gb = dj.jacobian(lambda a, b: a**2 * b + np.sin(b), (a, b))
        return ga, gb

    H = dj.jacobian(grad, (np.array(1.5), np.array(0.5)))
    a, b = 1.5, 0.5
    want = [[2 * b, 2 * a], [2 * a, -np.sin(b)]]
    np.testing.assert_allclose(np.array(H, dtype=float), want, rtol=1e-14)


def test_kwargs_and_argnums_still_take_the_general_path():
    f = lambda a, b, scale=1.0: (a * b * scale,)  # noqa: E731
    J = dj.jacfwd(f, argnums=1)(np.array(2.0), np.array(3.0), scale=4.0)
    assert float(J[0]) == 8.0
    J = dj.jacfwd(lambda pair: pair[0] * pair[1])((np.array(2.0), np.array(3.0)))
    assert [float(v) for v in J] == [3.0, 2.0]
