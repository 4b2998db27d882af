"""NumPy meets Dual: the protocols route to the rules, and nothing drops a tangent silently."""

from __future__ import annotations

import numpy as np
import pytest

import dualjac as dj
from dualjac import Dual, TangentLossError, UnsupportedOpError


def _dual(x, k=2):
    x = np.asarray(x, dtype=float)
    return Dual(x, np.ones((k,) + x.shape))


# --- tangents are never lost silently ------------------------------------------------------
@pytest.mark.parametrize(
    "convert",
    [np.asarray, np.array, float, int, complex, lambda d: d.tolist(), lambda d: d.item()],
    ids=["asarray", "array", "float", "int", "complex", "tolist", "item"],
)
def test_conversions_that_would_drop_the_tangent_raise(convert):
    with pytest.raises(TangentLossError, match="derivative|tangent"):
        convert(_dual(1.5))


def test_writing_a_dual_into_a_plain_array_raises():
    buf = np.zeros(3)
    # NumPy re-raises a scalar conversion error as ValueError "from" ours: both are shown.
    with pytest.raises((TangentLossError, ValueError)) as err:
        buf[0] = _dual(1.5)
    assert isinstance(err.value, TangentLossError) or isinstance(err.value.__cause__, TangentLossError)
    with pytest.raises(TangentLossError):
        buf[:] = _dual([1.0, 2.0, 3.0])


def test_out_argument_with_a_plain_array_raises():
    buf = np.zeros(3)
    with pytest.raises(UnsupportedOpError, match="out="):
        np.sin(_dual([1.0, 2.0, 3.0]), out=buf)
    with pytest.raises(UnsupportedOpError, match="out="):
        np.sum(_dual([1.0, 2.0, 3.0]), out=np.zeros(()))


def test_in_place_operators_on_duals_keep_the_tangent():
    def f(x):
        y = x * 1.0
        y += x**2
        y *= 3.0
        y -= 1.0
        y /= 2.0
        return y

    x = np.array([0.5, -1.0])
    np.testing.assert_allclose(dj.jacfwd(f)(x), np.diag(1.5 * (1 + 2 * x)))


def test_item_assignment_on_a_dual_is_functional_and_differentiable():
    def f(x):
        y = x * 2.0
        y[0] = x[1] ** 2
        return y

    J = dj.jacfwd(f)(np.array([1.0, 3.0]))
    np.testing.assert_allclose(J, [[0.0, 6.0], [0.0, 2.0]])


# --- errors name the problem ---------------------------------------------------------------
def test_numpy_function_without_a_rule_names_it():
    with pytest.raises(UnsupportedOpError, match=r"numpy\.fft\.fft"):
        dj.jacfwd(lambda x: np.fft.fft(x))(np.ones(3))
    with pytest.raises(UnsupportedOpError, match=r"numpy\.trapezoid"):
        dj.jacfwd(lambda x: np.trapezoid(x))(np.ones(3))


def test_ufunc_without_a_rule_and_unsupported_ufunc_methods_name_them():
    with pytest.raises(UnsupportedOpError, match="gcd|ldexp|spacing"):
        dj.jacfwd(lambda x: np.spacing(x))(np.ones(3))
    with pytest.raises(UnsupportedOpError, match=r"add\.at"):
        dj.jacfwd(lambda x: np.add.at(x, [0], 1.0))(np.ones(3))
    with pytest.raises(UnsupportedOpError, match="where="):
        dj.jacfwd(lambda x: np.sin(x, where=x > 0))(np.ones(3))


def test_ufunc_methods_with_rules():
    x = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(dj.jacfwd(lambda x: np.add.reduce(x))(x), np.ones(3))
    np.testing.assert_allclose(dj.jacfwd(lambda x: np.multiply.reduce(x))(x), [6.0, 3.0, 2.0])
    np.testing.assert_allclose(dj.jacfwd(lambda x: np.add.accumulate(x))(x), np.tril(np.ones((3, 3))))
    J = dj.jacfwd(lambda x: np.multiply.outer(x, x[:2]))(x)
    ref = np.zeros((3, 2, 3))
    for i in range(3):
        for j in range(2):
            ref[i, j, i] += x[j]
            ref[i, j, j] += x[i]
    np.testing.assert_allclose(J, ref)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.array([1, 2]), "cast"),
        (np.array([True]), "cast"),
        (3, "integer"),
        (np.array([1 + 2j]), "complex"),
        ("1.0", "not an array"),
        (object(), "not an array"),
    ],
)
def test_bad_inputs_get_a_type_error_that_says_what_to_do(bad, match):
    with pytest.raises(TypeError, match=match):
        dj.jacfwd(np.sin)(bad)


def test_tangent_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)|\(2,\).*\(3,\)"):
        dj.jvp(np.sin, (np.ones(2),), (np.ones(3),))
    with pytest.raises(ValueError, match=r"\(2, 4\).*\(3,\)"):
        Dual(np.ones(3), np.ones((2, 4)))


def test_batch_jacobian_errors():
    with pytest.raises(ValueError, match="batch axis"):
        dj.batch_jacobian(lambda x: x.sum(), np.ones((3, 2)))
    with pytest.raises(ValueError, match="batch"):
        dj.batch_jacobian(np.sin, np.array(1.0))


def test_argnums_out_of_range():
    with pytest.raises(ValueError, match="argnums"):
        dj.jacfwd(np.sin, argnums=2)(np.ones(2))


# --- dispatch details ----------------------------------------------------------------------
def test_ndarray_op_dual_defers_to_dual_both_ways():
    d = _dual([1.0, 2.0])
    a = np.array([3.0, 4.0])
    for r in (a * d, d * a, a + d, d - a, a @ d, np.multiply(a, d)):
        assert isinstance(r, Dual)


def test_comparisons_give_plain_booleans():
    d = _dual([1.0, 2.0])
    assert type(d > 1.5) is np.ndarray and (d > 1.5).tolist() == [False, True]
    assert type(np.argmax(d)) is not Dual and int(np.argmax(d)) == 1


def test_array_attributes_and_len():
    d = _dual(np.ones((2, 3)), k=4)
    assert (d.shape, d.ndim, d.size, d.dtype, len(d), d.lanes) == ((2, 3), 2, 6, np.float64, 2, 4)
    assert d.T.shape == (3, 2) and [r.shape for r in d] == [(3,), (3,)]
    assert "lanes=4" in repr(d)


def test_integer_casts_are_piecewise_constant_and_float_casts_keep_lanes():
    d = _dual([1.7, 2.2])
    assert type(d.astype(np.int64)) is np.ndarray
    f32 = d.astype(np.float32)
    assert isinstance(f32, Dual) and f32.tangent.dtype == np.float32


def test_float32_is_preserved_end_to_end(rng):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    W = rng.standard_normal((3, 2)).astype(np.float32)
    f = lambda x: np.tanh(x @ W) * 2.0 + np.exp(-(x[:, :2] ** 2))
    assert dj.batch_jacobian(f, x).dtype == np.float32
    assert dj.jacfwd(f)(x).dtype == np.float32


# --- keyword arguments are honoured or refused, never dropped ---------------------------------
def test_pinv_passes_rcond_and_rtol_to_the_primal():
    u, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))
    v, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((3, 3)))
    s = np.array([3.0, 2.0, 1e-3])
    a = (u * s) @ v.T  # the smallest singular value is cut by rcond=rtol=1e-2, not by the default
    # along a perturbation of the singular values the rank stays 2 under the cutoff: the derivative exists
    ds = np.array([0.5, -1.0, 0.3])
    da = (u * ds) @ v.T
    for kw in ({"rcond": 1e-2}, {"rtol": 1e-2}):
        want = np.linalg.pinv(a, **kw)
        assert not np.allclose(want, np.linalg.pinv(a))
        out, t = dj.jvp(lambda x, kw=kw: np.linalg.pinv(x, **kw), (a,), (da,))
        np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
        h = 1e-6
        fd = (np.linalg.pinv(a + h * da, **kw) - np.linalg.pinv(a - h * da, **kw)) / (2 * h)
        np.testing.assert_allclose(t, fd, rtol=1e-6, atol=1e-8)


def test_trace_honours_dtype_and_refuses_out():
    x = _dual(np.arange(9.0).reshape(3, 3))
    with pytest.raises(UnsupportedOpError, match="trace with out="):
        np.trace(x, out=np.zeros(()))
    y = np.trace(x.astype(np.float64), dtype=np.float32)
    assert y.dtype == np.float32 and y.tangent.dtype == np.float32
    assert float(y.primal) == 12.0 and y.tangent.tolist() == [3.0, 3.0]


def test_einsum_honours_dtype_and_refuses_other_keywords():
    x = _dual(np.arange(6.0).reshape(2, 3))
    y = np.einsum("ij->i", x, dtype=np.float32)
    assert y.dtype == np.float32 and y.tangent.dtype == np.float32
    np.testing.assert_array_equal(y.primal, [3.0, 12.0])
    with pytest.raises(UnsupportedOpError, match="einsum with order="):
        np.einsum("ij->i", x, order="F")
