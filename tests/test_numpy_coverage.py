"""The NumPy and SciPy functions a user reaches in the first hour: same values as NumPy's on the same
inputs (lists, scalars, dtype=), derivatives against references, and named errors where a derivative
does not exist. (The derivatives of every entry are checked generically by tests/specs/.)"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import dualjac as dj
from dualjac import TangentLossError, UnsupportedOpError
from dualjac.testing import check_jacobian, numerical_jacobian

R = np.random.default_rng(7)
X = R.uniform(-2, 2, size=5)
M = R.uniform(-2, 2, size=(3, 4))
T3 = R.uniform(-2, 2, size=(2, 3, 4))
SQ = R.uniform(-1, 1, size=(3, 3)) + 3 * np.eye(3)
SYM = SQ + SQ.T
TALL = R.uniform(-1, 1, size=(4, 2)) + 4 * np.eye(4, 2)

# (id, f, x): f(x) on a plain array is NumPy's value; f on a Dual must give the same primal
SAME_AS_NUMPY = [
    ("diag-1d", lambda x: np.diag(x, -1), X),
    ("diag-2d", lambda x: np.diag(x, 1), M),
    ("column_stack-list", lambda x: np.column_stack([x[:3], [1.0, 2.0, 3.0], [4, 5, 6]]), X),
    ("hsplit", lambda x: np.hsplit(x, [1, 3]), M),
    ("vsplit", lambda x: np.vsplit(x, 3), M),
    ("dsplit", lambda x: np.dsplit(x, [1]), T3),
    ("append-scalar", lambda x: np.append(x, 1), X),
    ("append-list-axis", lambda x: np.append(x, [[1.0, 2, 3, 4]], axis=0), M),
    ("kron-list", lambda x: np.kron(x, [1, 2]), M),
    ("kron-scalar", lambda x: np.kron(2.5, x), X),
    ("cross-list", lambda x: np.cross(x[:3], [0.0, 1.0, 0.5]), X),
    ("cross-axis", lambda x: np.cross(x, np.ones((3, 4)), axis=0), M[:3]),
    ("rot90", lambda x: np.rot90(x, 3, axes=(2, 0)), T3),
    ("rollaxis", lambda x: np.rollaxis(x, 2, 1), T3),
    ("linspace", lambda x: np.linspace(x[0], 2.0, 6), X),
    ("linspace-list-stop", lambda x: np.linspace(x[:2], [1, 5], 4, axis=1), X),
    ("linspace-dtype", lambda x: np.linspace(0, x[1], 4, dtype=np.float32), X),
    ("linspace-int", lambda x: np.linspace(x[0], 9, 5, dtype=int), X),
    ("linspace-retstep", lambda x: np.linspace(x[0], x[1], 5, endpoint=False, retstep=True), X),
    ("linspace-one", lambda x: np.linspace(x[0], x[1], 1), X),
    ("nan_to_num", lambda x: np.nan_to_num(x / np.array([0.0, 1, 1, 0, 1]) * np.array([0.0, 1, 1, 1, 1])), X),
    ("select", lambda x: np.select([x > 1, x < -1], [x**2, [0.0] * 5], default=-1), X),
    ("sinc", np.sinc, np.array([0.0, 1e-9, 0.5, -1.0, 2.0])),
    ("round", lambda x: np.round(x, 1), X),
    ("around", np.around, X),
    ("partition", lambda x: np.partition(x, 2), X),
    ("partition-axis-none", lambda x: np.partition(x, (1, 3), axis=None), M),
    ("diff", lambda x: np.diff(x, 2, prepend=0, append=[1.0, 2.0]), X),
    ("diff-axis0", lambda x: np.diff(x, axis=0), M),
    ("gradient", lambda x: np.gradient(x, [0.0, 0.5, 1.5, 1.7, 3.0]), X),
    ("gradient-2d", lambda x: np.gradient(x, 0.5, 2.0, edge_order=2), M),
    ("interp", lambda x: np.interp(x, [-1, 0, 1.5], [1.0, 3.0, 2.0]), X),
    ("interp-left-right", lambda x: np.interp(x, [-1, 0, 1.5], [1.0, 3.0, 2.0], left=0, right=9), X),
    ("interp-period", lambda x: np.interp(x, [0.2, 1.1, 2.5], [1.0, 3.0, 2.0], period=3), X),
    ("convolve-list", lambda x: np.convolve(x, [1, 2, 3], "same"), X),
    ("correlate", lambda x: np.correlate([1.0, 2.0], x, "full"), X),
    ("einsum-interleaved", lambda x: np.einsum(x, [0, 1], np.ones((4, 2)), [1, 2], [2, 0]), M),
    ("real-imag-conj", lambda x: (np.real(x), np.imag(x), np.conj(x), np.real_if_close(x)), X),
    ("svd", lambda x: np.linalg.svd(x, full_matrices=False), M),
    ("svd-values", lambda x: np.linalg.svd(x, compute_uv=False), M),
    ("eigh", np.linalg.eigh, SYM),
    ("eigvalsh", lambda x: np.linalg.eigvalsh(x, UPLO="U"), SYM),
    ("eig", np.linalg.eig, SYM),
    ("qr", np.linalg.qr, M),
    ("qr-r", lambda x: np.linalg.qr(x, mode="r"), TALL),
    ("lstsq-list", lambda x: np.linalg.lstsq(x, [1.0, 2.0, 3.0, 4.0]), TALL),
]


def _leaves(out):
    return list(out) if isinstance(out, tuple | list) else [out]


@pytest.mark.parametrize("f,x", [pytest.param(f, x, id=i) for i, f, x in SAME_AS_NUMPY])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_primal_is_numpys(f, x, dtype):
    x = x.astype(dtype)
    want = _leaves(f(x))
    got, _ = dj.jvp(f, (x,), (np.ones_like(x),))
    got = _leaves(got)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert np.shape(g) == np.shape(w) and np.result_type(g) == np.result_type(w), (np.shape(g), np.result_type(g))
        np.testing.assert_allclose(np.asarray(g, dtype=float), np.asarray(w, dtype=float), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("f,x", [pytest.param(f, x, id=i) for i, f, x in SAME_AS_NUMPY if i.startswith("linspace")])
def test_linspace_is_numpys_to_the_last_bit(f, x):
    got, _ = dj.jvp(f, (x,), (np.ones_like(x),))
    for g, w in zip(_leaves(got), _leaves(f(x))):
        np.testing.assert_array_equal(g, w)


def test_linspace_derivative_is_the_interpolation_weight():
    # y_i = a + t_i (b - a): dy/da = 1 - t_i, dy/db = t_i; the last point is exactly b
    t = np.arange(5) / 4
    Ja, Jb = dj.jacfwd(lambda a, b: np.linspace(a, b, 5), argnums=(0, 1))(np.array(0.3), np.array(2.0))
    np.testing.assert_allclose(Ja, 1 - t, atol=1e-15)
    np.testing.assert_allclose(Jb, t, atol=1e-15)


def test_diff_gradient_kron_against_closed_forms():
    x = np.arange(1.0, 5.0)
    np.testing.assert_array_equal(dj.jacfwd(np.diff)(x), np.eye(4)[1:] - np.eye(4)[:-1])
    g = dj.jacfwd(np.gradient)(x)  # edges one-sided, interior central
    np.testing.assert_allclose(g[0], [-1, 1, 0, 0])
    np.testing.assert_allclose(g[1], [-0.5, 0, 0.5, 0])
    b = np.array([1.0, 2.0])
    np.testing.assert_array_equal(dj.jacfwd(lambda a: np.kron(a, b))(np.ones(2)), np.kron(np.eye(2), b[:, None]))


def test_sinc_derivative_at_and_near_zero():
    # sinc'(0) = 0 and sinc''(0) = -pi^2/3 (Taylor), against finite differences away from 0
    np.testing.assert_allclose(dj.jacfwd(np.sinc)(np.array([0.0])), [[0.0]], atol=1e-15)
    np.testing.assert_allclose(dj.hessian(lambda x: np.sinc(x).sum())(np.array([0.0])), [[-np.pi**2 / 3]], rtol=1e-12)
    check_jacobian(np.sinc, np.array([1e-3, -0.02, 0.4]))


def test_interp_slope_and_edges():
    xs, fp = np.array([0.0, 1.0, 3.0]), np.array([1.0, 3.0, 2.0])
    x = np.array([-1.0, 0.5, 2.0, 3.0, 4.0])
    J = np.diagonal(dj.jacfwd(lambda x: np.interp(x, xs, fp))(x))
    np.testing.assert_allclose(J, [0.0, 2.0, -0.5, -0.5, 0.0])  # flat outside, the left segment at the last knot
    Jfp = dj.jacfwd(lambda fp: np.interp(x, xs, fp, left=0.0))(fp)
    np.testing.assert_allclose(Jfp, [[0, 0, 0], [0.5, 0.5, 0], [0, 0.5, 0.5], [0, 0, 1], [0, 0, 1]])
    with pytest.raises(UnsupportedOpError, match=r"interp \(argument 1\)"):
        dj.jacfwd(lambda k: np.interp(0.5, k, fp))(xs)


def test_convolve_is_bilinear():
    a, v = R.uniform(-1, 1, 6), R.uniform(-1, 1, 3)
    for mode in ("full", "same", "valid"):
        check_jacobian(lambda a, v: np.convolve(a, v, mode), a, v)
        check_jacobian(lambda a, v: np.correlate(v, a, mode), a, v)


# --- decompositions: named errors where there is no derivative --------------------------------------
def test_svd_needs_reduced_factors_for_a_non_square_matrix():
    with pytest.raises(UnsupportedOpError, match="full_matrices=False"):
        dj.jacfwd(lambda a: np.linalg.svd(a)[0])(M)
    dj.jacfwd(lambda a: np.linalg.svd(a)[0])(SQ)  # square: full and reduced agree


def test_vectors_at_repeated_values_raise_and_values_do_not():
    eye = np.eye(3)
    with pytest.raises(UnsupportedOpError, match="repeated values"):
        dj.jacfwd(lambda a: np.linalg.eigh(a)[1])(eye)
    with pytest.raises(UnsupportedOpError, match="repeated values"):
        dj.jacfwd(lambda a: np.linalg.svd(a)[0])(eye)
    rank_one = np.outer([1.0, 2.0, 3.0], [1.0, 0.0, 1.0])  # two zero singular values, equal only to rounding
    with pytest.raises(UnsupportedOpError, match="repeated values"):
        dj.jacfwd(lambda a: np.linalg.svd(a)[2])(rank_one)
    with pytest.raises(UnsupportedOpError, match="rank-deficient"):
        dj.jacfwd(lambda a: np.linalg.svd(a, full_matrices=False)[0])(rank_one[:, :2] + [0.0, 1e-300])
    # the values alone: d lambda_i = (Q^T dA Q)_ii, with any orthonormal Q of the eigenspace
    J = dj.jacfwd(np.linalg.eigvalsh)(2 * eye)
    assert np.isfinite(J).all()
    np.testing.assert_allclose(J.sum(axis=0), eye, atol=1e-12)  # d(trace) = tr(dA)
    assert np.isfinite(dj.jacfwd(lambda a: np.linalg.svd(a, compute_uv=False))(eye)).all()


def test_eig_of_a_matrix_with_complex_eigenvalues_raises():
    rotation = np.array([[0.0, -1.0], [1.0, 0.0]])
    with pytest.raises(UnsupportedOpError, match="complex eigenvalues"):
        dj.jacfwd(lambda a: np.linalg.eig(a)[0])(rotation)


def test_qr_modes_without_a_derivative_raise():
    with pytest.raises(UnsupportedOpError, match="mode='complete'"):
        dj.jacfwd(lambda a: np.linalg.qr(a, mode="complete")[0])(TALL)
    with pytest.raises(UnsupportedOpError, match="mode='raw'"):
        dj.jacfwd(lambda a: np.linalg.qr(a, mode="raw")[0])(TALL)


def test_eigh_against_torch():
    torch = pytest.importorskip("torch")
    dA = R.standard_normal((3, 3))
    dA = dA + dA.T
    (w, q), (dw, dq) = dj.jvp(np.linalg.eigh, (SYM,), (dA,))
    (tw, tq), (tdw, tdq) = torch.func.jvp(torch.linalg.eigh, (torch.as_tensor(SYM),), (torch.as_tensor(dA),))
    s = np.sign(q[0]) * np.sign(tq.numpy()[0])  # the same eigenvectors up to sign
    np.testing.assert_allclose(dw, tdw.numpy(), rtol=1e-10)
    np.testing.assert_allclose(dq * s, tdq.numpy(), rtol=1e-9, atol=1e-12)


# --- SciPy ------------------------------------------------------------------------------------------
def test_scipy_ufuncs_dispatch_and_errors_name_scipy():
    sp = pytest.importorskip("scipy.special")
    x = np.array([0.2, 0.7])
    np.testing.assert_allclose(np.diagonal(dj.jacfwd(sp.expit)(x)), sp.expit(x) * (1 - sp.expit(x)))
    with pytest.raises(UnsupportedOpError, match=r"scipy\.special\.i0\b"):
        dj.jacfwd(sp.i0)(x)
    with pytest.raises(UnsupportedOpError, match=r"scipy\.special\.xlogy\.accumulate"):
        dj.jacfwd(lambda x: sp.xlogy.accumulate(x))(x)


def test_scipy_softmax_family_twins():
    sp = pytest.importorskip("scipy.special")
    x = R.uniform(-3, 3, size=(2, 4))
    b = R.uniform(0, 2, size=(2, 4))
    np.testing.assert_allclose(dj.nn.logsumexp(x), sp.logsumexp(x), rtol=1e-14)
    np.testing.assert_allclose(dj.nn.logsumexp(x, axis=1, b=b), sp.logsumexp(x, axis=1, b=b), rtol=1e-14)
    np.testing.assert_allclose(dj.nn.softmax(x, axis=None), sp.softmax(x), rtol=1e-14)
    np.testing.assert_allclose(dj.nn.log_softmax(x, axis=0), sp.log_softmax(x, axis=0), rtol=1e-14)
    for f in (lambda x: dj.nn.logsumexp(x, axis=0, b=b), lambda x: dj.nn.softmax(x, axis=None)):
        check_jacobian(f, x)
    J = dj.jacfwd(lambda b: dj.nn.logsumexp(x, b=b))(b)  # d/db log sum b e^x = e^x / sum b e^x
    np.testing.assert_allclose(J, np.exp(x) / np.sum(b * np.exp(x)), rtol=1e-12)
    # SciPy's own converts its input with np.asarray: never a silent loss
    for name in ("logsumexp", "softmax", "log_softmax"):
        with pytest.raises(TangentLossError, match=rf"scipy\.special\.{name} .*call dualjac\.nn\.{name} instead"):
            dj.jacfwd(getattr(sp, name))(x)


def test_dualjac_never_imports_scipy():
    code = (
        "import sys, numpy as np, dualjac as dj\n"
        "dj.jacfwd(lambda x: np.sinc(x) + dj.nn.softmax(x))(np.ones(3))\n"
        "try:\n    dj.jacfwd(np.spacing)(np.ones(2))\nexcept dj.UnsupportedOpError:\n    pass\n"
        "assert 'scipy' not in sys.modules, 'dualjac imported scipy'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- dj.nn and stop_gradient -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["relu", "sigmoid", "gelu", "silu", "softplus", "log_sigmoid", "elu", "softmax", "log_softmax", "logsumexp"]
)
def test_nn_functions_on_arrays_lists_and_duals(name):
    f = getattr(dj.nn, name)
    x = R.uniform(-2, 2, size=(2, 3))
    plain = f(x)
    assert isinstance(plain, np.ndarray | np.floating)
    np.testing.assert_array_equal(f(x.tolist()), plain)
    out, _ = dj.jvp(f, (x,), (np.ones_like(x),))
    np.testing.assert_array_equal(out, plain)
    check_jacobian(f, x)


def test_nn_functions_against_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = R.uniform(-3, 3, size=(2, 5))
    pairs = [
        (dj.nn.relu, F.relu), (dj.nn.gelu, F.gelu), (dj.nn.sigmoid, torch.sigmoid), (dj.nn.silu, F.silu),
        (lambda v: dj.nn.gelu(v, approximate=True), lambda t: F.gelu(t, approximate="tanh")),
        (dj.nn.softmax, lambda t: F.softmax(t, -1)), (dj.nn.log_softmax, lambda t: F.log_softmax(t, -1)),
        (lambda v: dj.nn.logsumexp(v, axis=1), lambda t: torch.logsumexp(t, 1)), (dj.nn.mish, F.mish),
        (dj.nn.hard_swish, F.hardswish), (dj.nn.soft_sign, F.softsign), (dj.nn.selu, F.selu),
    ]  # fmt: skip
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours(x), theirs(torch.as_tensor(x)).numpy(), rtol=1e-12, atol=1e-14)


def test_stop_gradient_stops_every_level():
    x = np.array([1.5, -0.5])
    assert dj.stop_gradient(x) is x
    np.testing.assert_allclose(dj.jacfwd(lambda x: x * dj.stop_gradient(x))(x), np.diag(x))
    # under hessian, f = sum(x * sg(x)^2): the outer transform must not see through sg either
    H = dj.hessian(lambda x: (x * dj.stop_gradient(x) ** 2).sum())(x)
    np.testing.assert_array_equal(H, np.zeros((2, 2)))


def test_numerical_reference_helper_is_float64():
    J = numerical_jacobian(np.sinc, (np.array([0.25], dtype=np.float32),), 0)[0]
    assert J.dtype == np.float64
