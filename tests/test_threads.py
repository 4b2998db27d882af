"""Elementwise work split over threads (dualjac/threads.py): the same bits as one NumPy call, for
every broadcasting pattern the rules meet, with NumPy's error state and errors carried over, and
derivatives through the split path against finite differences."""

from __future__ import annotations

import multiprocessing
import sys

import numpy as np
import pytest

import dualjac as dj
from dualjac import threads
from dualjac.testing import check_jacobian, numerical_jacobian


@pytest.fixture
def two_threads(monkeypatch):
    monkeypatch.setattr(dj.config, "threads", 2)
    monkeypatch.setattr(threads, "MIN_ELEMENTS", 64)  # small arrays take the split path too


def big(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shapes",
    [
        [(300, 7)],  # unary
        [(300, 7), (300, 7)],
        [(300, 7), (7,)],  # a row broadcast over the split axis
        [(300, 1), (300, 7)],  # a column
        [(1, 300, 7), (300, 7)],  # one lane: split along axis 1
        [(5, 300, 7), (300, 7)],  # lanes times a factor
        [(300, 7), ()],
    ],
)
def test_split_gives_the_same_bits_as_one_call(rng, two_threads, shapes, dtype):
    ops = [big(rng, s, dtype) if s else np.array(1.5, dtype) for s in shapes]
    fn = np.tanh if len(ops) == 1 else np.multiply
    want = fn(*ops)
    got = threads.split(fn, want.shape, *ops)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    out = np.empty_like(want)
    assert threads.split(fn, want.shape, *ops, out=out) is out
    np.testing.assert_array_equal(out, want)


def test_non_contiguous_operands_and_python_scalars(rng, two_threads):
    a = big(rng, (7, 300)).T  # (300, 7), Fortran order
    b = big(rng, (300, 14))[:, ::2]
    np.testing.assert_array_equal(threads.split(np.add, (300, 7), a, b), a + b)
    np.testing.assert_array_equal(threads.split(np.multiply, (300, 7), a, 2.0), a * 2.0)


def test_nan_inf_and_the_callers_error_state(two_threads):
    x = np.linspace(-1, 1, 600).reshape(300, 2)
    x[5, 0], x[200, 1] = np.nan, np.inf
    np.testing.assert_array_equal(threads.split(np.log, x.shape, x), np.log(x))  # (warnings as NumPy's)
    with np.errstate(invalid="raise", divide="raise"), pytest.raises(FloatingPointError):
        threads.split(np.log, x.shape, x)  # the threads see the caller's errstate
    with np.errstate(all="ignore"):
        threads.split(np.log, x.shape, x)


def test_an_error_in_a_thread_reaches_the_caller(two_threads):
    def fail_late(a):
        if a[0, 0] > 0:
            raise ValueError("second half")
        return a

    x = np.linspace(-1, 1, 600).reshape(300, 2)
    with pytest.raises(ValueError, match="second half"):
        threads.split(fail_late, x.shape, x)


def test_one_thread_and_small_arrays_take_one_call(rng, monkeypatch):
    monkeypatch.setattr(dj.config, "threads", 1)
    assert threads.parts((10**6,)) is None
    monkeypatch.setattr(dj.config, "threads", 4)
    assert threads.parts((100,)) is None  # under MIN_ELEMENTS
    axis, slices = threads.parts((3, 10**5))
    assert axis == 1 and len(slices) == 4 and slices[-1].stop == 10**5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_jacobians_through_the_split_path(rng, two_threads, dtype):
    """Values, factors and lane products of elementwise rules, split, against finite differences
    (float64) and against the unsplit path (float32, which finite differences cannot resolve)."""
    W = big(rng, (6, 40), dtype)
    f = lambda x: np.sin(np.tanh(x @ W) * x[:, :1]) + np.log1p((x @ W) ** 2)  # noqa: E731
    x = big(rng, (30, 6), dtype)
    J = dj.batch_jacobian(f, x)
    assert J.dtype == dtype
    if dtype == np.float64:
        (full,) = numerical_jacobian(f, (x,), 0)  # (30, 40, 30, 6): the per-sample blocks on its diagonal
        np.testing.assert_allclose(J, np.stack([full[b, :, b] for b in range(30)]), rtol=1e-6, atol=1e-7)
        check_jacobian(lambda v: f(v.reshape(30, 6)), x.ravel())  # jacfwd's 180 lanes, split too
    with pytest.MonkeyPatch.context() as m:
        m.setattr(dj.config, "threads", 1)
        np.testing.assert_array_equal(dj.batch_jacobian(f, x), J)


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_a_forked_child_makes_its_own_threads(rng, two_threads):
    x = big(rng, (300, 7))
    threads.split(np.tanh, x.shape, x)  # the parent's pool exists before the fork
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.apply_async(_child_tanh, (x,)).get(timeout=60)
    np.testing.assert_array_equal(got, np.tanh(x))


def _child_tanh(x):
    import dualjac as dj
    from dualjac import threads

    dj.config.threads, threads.MIN_ELEMENTS = 2, 64
    return threads.split(np.tanh, x.shape, x)
