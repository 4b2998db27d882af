"""Implicit identity lanes through matmul (``diagonal=`` handlers in rules/linalg.py): ``x @ W``
on a seeded input is W's rows times the lanes' values, with no ``Diagonal.dense()`` and no GEMM.
Checked against torch.func references, and against the dense path (the handler switched off)."""

import numpy as np
import pytest

import dualjac as dj
from dualjac import rules
from dualjac.lanes import Diagonal

torch = pytest.importorskip("torch")
from torch.func import hessian, jacrev, vmap  # noqa: E402

DTYPES = [(np.float64, dict(rtol=1e-12, atol=1e-12)), (np.float32, dict(rtol=2e-5, atol=2e-6))]


@pytest.fixture
def no_dense(monkeypatch):
    """Fail if any Diagonal is written out."""

    def boom(self):
        raise AssertionError("Diagonal.dense() called: the implicit-lane fast path was not taken")

    monkeypatch.setattr(Diagonal, "dense", boom)


def _t(a):
    return torch.from_numpy(np.asarray(a))


def _mlp_np(Ws, bs):
    def f(x):
        h = np.tanh(x @ Ws[0] + bs[0])
        return h @ Ws[1] + bs[1]

    return f


def _mlp_t(Ws, bs):
    Wt, bt = [_t(W) for W in Ws], [_t(b) for b in bs]

    def f(x):
        h = torch.tanh(x @ Wt[0] + bt[0])
        return h @ Wt[1] + bt[1]

    return f


def _assert_jacfwd_matches_jacrev(f, f_t, x, tol, chunk_size):
    """``dj.jacfwd`` of ``f`` (several outputs) against torch's ``jacrev`` of its twin ``f_t``."""
    J = dj.jacfwd(f, chunk_size=chunk_size)(x)
    ref = jacrev(f_t)(_t(x))
    for a, b in zip(J, ref, strict=True):
        np.testing.assert_allclose(a, b.numpy(), **tol)


def _params(rng, dtype, n=7, h=5, m=3):
    Ws = [rng.standard_normal((n, h)).astype(dtype), rng.standard_normal((h, m)).astype(dtype)]
    bs = [rng.standard_normal(h).astype(dtype), rng.standard_normal(m).astype(dtype)]
    return Ws, bs


# --- the fast path is taken -------------------------------------------------------------
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_seeded_matmul_never_densifies(rng, no_dense, chunk_size):
    W = rng.standard_normal((7, 4))
    x1, xb = rng.standard_normal(7), rng.standard_normal((5, 7))
    J = dj.jacfwd(lambda x: x @ W, chunk_size=chunk_size)(x1)
    np.testing.assert_allclose(J, W.T, rtol=1e-15)
    J = dj.jacfwd(lambda x: np.tanh(np.sin(x) @ W), chunk_size=chunk_size)(x1)  # elementwise first
    ref = (1 - np.tanh(np.sin(x1) @ W) ** 2)[:, None] * W.T * np.cos(x1)
    np.testing.assert_allclose(J, ref, rtol=1e-13)
    Jb = dj.batch_jacobian(lambda x: np.exp(x) @ W, xb, chunk_size=chunk_size)
    np.testing.assert_allclose(Jb, np.exp(xb)[:, None, :] * W.T, rtol=1e-13)
    A = rng.standard_normal((4, 7))
    np.testing.assert_allclose(dj.jacfwd(lambda x: A @ (2 * x), chunk_size=chunk_size)(x1), 2 * A, rtol=1e-15)
    w = rng.standard_normal(7)
    np.testing.assert_allclose(dj.batch_jacobian(lambda x: x @ w, xb, chunk_size=chunk_size), np.tile(w, (5, 1)))


def test_fallback_still_densifies(rng, monkeypatch):
    """Where the shortcut does not apply (a 2-D item, a batched W) the dense rule runs."""
    calls = []
    dense = Diagonal.dense

    def spy(self):
        calls.append(self.shape)
        return dense(self)

    monkeypatch.setattr(Diagonal, "dense", spy)
    W = rng.standard_normal((4, 3))
    x = rng.standard_normal((2, 5, 4))  # batch of 2, item (5, 4)
    J = dj.batch_jacobian(lambda x: x @ W, x)
    assert calls
    ref = np.einsum("pq,jm->pmqj", np.eye(5), W)  # d(x W)[p, m] / dx[q, j]
    np.testing.assert_allclose(J, np.broadcast_to(ref, (2,) + ref.shape), rtol=1e-15)
    W3 = rng.standard_normal((2, 4, 3))
    x1 = rng.standard_normal(4)
    np.testing.assert_allclose(dj.jacfwd(lambda x: x @ W3)(x1), np.swapaxes(W3, -1, -2), rtol=1e-15)


# --- against torch.func ----------------------------------------------------------------
@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_mlp_1d_matches_torch(rng, no_dense, dtype, tol, chunk_size):
    Ws, bs = _params(rng, dtype)
    x = rng.standard_normal(7).astype(dtype)
    J = dj.jacfwd(_mlp_np(Ws, bs), chunk_size=chunk_size)(x)
    ref = jacrev(_mlp_t(Ws, bs))(_t(x)).numpy()
    assert J.dtype == dtype
    np.testing.assert_allclose(J, ref, **tol)


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("chunk_size", [None, 2])
def test_mlp_batched_matches_torch(rng, no_dense, dtype, tol, chunk_size):
    Ws, bs = _params(rng, dtype)
    x = rng.standard_normal((6, 7)).astype(dtype)
    J = dj.batch_jacobian(_mlp_np(Ws, bs), x, chunk_size=chunk_size)
    ref = vmap(jacrev(_mlp_t(Ws, bs)))(_t(x)).numpy()
    assert J.dtype == dtype
    np.testing.assert_allclose(J, ref, **tol)


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("chunk_size", [None, 4])
def test_w_on_the_left_matches_torch(rng, no_dense, dtype, tol, chunk_size):
    A = rng.standard_normal((5, 7)).astype(dtype)
    A3 = rng.standard_normal((2, 3, 7)).astype(dtype)  # a stack of matrices on the left
    x = rng.standard_normal(7).astype(dtype)
    At, A3t = _t(A), _t(A3)

    def f(x):
        return np.tanh(A @ np.sin(x)), A3 @ x

    def f_t(x):
        return torch.tanh(At @ torch.sin(x)), A3t @ x

    _assert_jacfwd_matches_jacrev(f, f_t, x, tol, chunk_size)


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_both_operands_differentiated(rng, dtype, tol, chunk_size):
    """x @ M(x): x's lanes stay implicit, M's tangent goes through the ordinary rule;
    and x @ x, where both sides are implicit."""
    A = rng.standard_normal((7, 4)).astype(dtype)
    x = rng.standard_normal(7).astype(dtype)
    At = _t(A)

    def f(x):
        return np.sin(x) @ (np.cos(x)[:, None] * A), np.exp(x) @ x

    def f_t(x):
        return torch.sin(x) @ (torch.cos(x)[:, None] * At), torch.exp(x) @ x

    _assert_jacfwd_matches_jacrev(f, f_t, x, tol, chunk_size)


@pytest.mark.parametrize("dtype,tol", DTYPES)
def test_hessian_matches_torch(rng, dtype, tol):
    """Nested: the outer lanes' values reach the inner handler as plain arrays, the inner
    primal is a lower-level Dual whose own Diagonal goes through the handler too."""
    Ws, bs = _params(rng, dtype, m=1)
    A = rng.standard_normal((3, 7)).astype(dtype)
    x = rng.standard_normal(7).astype(dtype)
    f_np, f_t = _mlp_np(Ws, bs), _mlp_t(Ws, bs)
    At = _t(A)

    def g(x):
        return f_np(x)[0] + np.sum(np.tanh(A @ x) ** 2)

    def g_t(x):
        return f_t(x)[0] + torch.sum(torch.tanh(At @ x) ** 2)

    H = dj.hessian(g)(x)
    ref = hessian(g_t)(_t(x)).numpy()
    np.testing.assert_allclose(H, ref, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)


def test_matches_dense_path(rng, monkeypatch):
    """The same Jacobians as with the handlers switched off (the dense rule), both as torch's."""
    Ws, bs = _params(rng, np.float64)
    x, xb = rng.standard_normal(7), rng.standard_normal((4, 7))
    f, f_t = _mlp_np(Ws, bs), _mlp_t(Ws, bs)
    ref = jacrev(f_t)(_t(x)).numpy(), vmap(jacrev(f_t))(_t(xb)).numpy()
    on = dj.jacfwd(f, chunk_size=3)(x), dj.batch_jacobian(f, xb, chunk_size=3)
    monkeypatch.setitem(rules.RULES, "matmul", rules.RULES["matmul"]._replace(diagonal=()))
    off = dj.jacfwd(f, chunk_size=3)(x), dj.batch_jacobian(f, xb, chunk_size=3)
    for a, b, r in zip(on, off, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(b, r, rtol=1e-12, atol=1e-12)
