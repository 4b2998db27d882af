"""Shape and selection ops: what must raise, what must not be written, and NumPy's
argument conventions that the shape adapters of numpy_api reproduce."""

from __future__ import annotations

import numpy as np
import pytest

import dualjac as dj
from dualjac import Dual, TangentLossError, UnsupportedOpError


def _dual(x, k=2):
    x = np.asarray(x, dtype=float)
    return Dual(x, np.arange(k * x.size, dtype=float).reshape((k,) + x.shape))


# --- writing a Dual where its lanes cannot go ----------------------------------------------
def test_setitem_of_a_dual_into_an_ndarray_base_raises():
    def f(x):
        y = np.zeros(4)  # a plain array cannot hold x's tangent lanes
        y[1:] = x * 2
        return y

    with pytest.raises((TangentLossError, ValueError)) as err:
        dj.jacfwd(f)(np.ones(3))
    assert isinstance(err.value, TangentLossError) or isinstance(err.value.__cause__, TangentLossError)


def test_setitem_of_a_dual_scalar_into_an_ndarray_base_raises():
    def f(x):
        y = np.ones((2, 2))
        y[0, 1] = x[0]
        return y

    with pytest.raises((TangentLossError, ValueError)) as err:
        dj.jacfwd(f)(np.ones(3))
    assert isinstance(err.value, TangentLossError) or isinstance(err.value.__cause__, TangentLossError)


def test_the_fix_writes_into_a_dual_base():
    def f(x):
        y = np.zeros(4) + 0 * x[0]  # a Dual: the slot can take x's lanes
        y[1:] = x * 2
        return y

    np.testing.assert_array_equal(dj.jacfwd(f)(np.ones(3)), np.vstack([np.zeros(3), 2 * np.eye(3)]))


def test_indexing_with_a_dual_raises():
    x = _dual([1.0, 2.0, 3.0])
    with pytest.raises(UnsupportedOpError, match="indexing with a Dual"):
        x[_dual(1.0)]


def test_pad_modes_that_select_raise():
    with pytest.raises(UnsupportedOpError, match="maximum"):
        dj.jacfwd(lambda x: np.pad(x, 1, mode="maximum"))(np.ones(3))


# --- tangents are never written in place -----------------------------------------------------
def test_setitem_leaves_the_arrays_it_came_from_alone():
    primal = np.array([1.0, 2.0, 3.0])
    x = Dual(primal, np.ones((2, 3)))
    tangent = x.tangent
    with pytest.raises(ValueError, match="read-only"):  # as NumPy: a broadcast view is read-only
        np.broadcast_to(x, (2, 3))[0, 1] = 7.0
    y = np.broadcast_to(x, (2, 3)).copy()
    y[0, 1] = 7.0
    y[1] = x * 3
    np.testing.assert_array_equal(y.primal, [[1.0, 7.0, 3.0], [3.0, 6.0, 9.0]])
    np.testing.assert_array_equal(y.tangent, [[[1, 0, 1], [3, 3, 3]]] * 2)
    np.testing.assert_array_equal(primal, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(tangent, np.ones((2, 3)))
    z = x.copy()
    z[:2] = 0.0
    np.testing.assert_array_equal(x.primal, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(x.tangent, np.ones((2, 3)))


# --- lane placement with advanced indices -----------------------------------------------------
@pytest.mark.parametrize(
    "key",
    [
        ([0, 1], slice(None), [1, 0]),
        (0, slice(None), [1, 0, 1]),
        ([[0], [1]], Ellipsis, [0, 1]),
        ([1], None, [0]),
        (slice(None), [2, 0], [1, 1]),
        (np.array([True, False]), slice(1, None), 0),
        (Ellipsis, [1, 1]),
    ],
)
def test_getitem_keeps_lanes_first(key):
    p = np.arange(12.0).reshape(2, 3, 2)
    t = np.stack([p, 10 * p, 100 * p])
    y = Dual(p, t)[key]
    np.testing.assert_array_equal(y.primal, p[key])
    for k in range(3):
        np.testing.assert_array_equal(y.tangent[k], t[k][key])


@pytest.mark.parametrize(
    "key", [([0, 1], slice(None), [1, 0]), (0, slice(None), [1, 0, 1]), (slice(1, None), 0)]
)
def test_setitem_keeps_lanes_first(key):
    p = np.arange(12.0).reshape(2, 3, 2)
    t = np.stack([p, 10 * p, 100 * p])
    slot = p[key].shape
    vp = -np.arange(np.prod(slot), dtype=float).reshape(slot)
    vt = np.stack([vp, 2 * vp, 3 * vp])
    y = Dual(p, t)
    y[key] = Dual(vp, vt)
    for k, (want, w) in enumerate(zip(t, vt)):
        want = want.copy()
        want[key] = w
        np.testing.assert_array_equal(y.tangent[k], want)


# --- NumPy's conventions in numpy_api's shape adapters -----------------------------------------
def test_split_with_negative_and_out_of_range_indices():
    x = np.arange(6.0)
    for idx in ([1, -1], [-2], [4, 2], [2, 9]):
        got = [p.primal for p in np.split(_dual(x), idx)]
        want = np.split(x, idx)
        assert [g.tolist() for g in got] == [w.tolist() for w in want], idx


def test_axes_out_of_range_raise_like_numpy():
    x = _dual(np.ones((2, 3)))
    with pytest.raises(np.exceptions.AxisError):
        np.flip(x, 2)
    with pytest.raises(np.exceptions.AxisError):
        np.moveaxis(x, 0, 2)
    with pytest.raises(np.exceptions.AxisError):
        np.swapaxes(x, 0, -3)
    with pytest.raises(np.exceptions.AxisError):
        np.expand_dims(x, 3)
    with pytest.raises(ValueError):
        np.fliplr(_dual([1.0, 2.0]))
    with pytest.raises(ValueError):
        np.moveaxis(x, (0, 1), 0)


def test_atleast_of_several_arrays_returns_a_tuple():
    out = np.atleast_2d(_dual(1.0), _dual([1.0, 2.0]))
    assert type(out) is tuple and [o.shape for o in out] == [(1, 1), (1, 2)]


@pytest.mark.parametrize("mode", ["wrap", "clip"])
def test_take_modes(mode):
    x = np.arange(6.0).reshape(2, 3)
    got = np.take(_dual(x), [7, -8, 1], mode=mode)
    np.testing.assert_array_equal(got.primal, np.take(x, [7, -8, 1], mode=mode))
    got = np.take(_dual(x), [[4], [-4]], axis=1, mode=mode)
    np.testing.assert_array_equal(got.primal, np.take(x, [[4], [-4]], axis=1, mode=mode))
