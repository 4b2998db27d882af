"""Linear algebra: products (matmul, dot, tensordot, einsum, ...), traces and triangles, and
np.linalg's solve, inv, det, slogdet, pinv and cholesky.

Lanes are never looped over. A product's tangent folds the K lanes into a GEMM dimension
(``dA @ B`` stacks the lanes' rows, ``A @ dB`` their columns), so all lanes go through one
library call; np.linalg rules factor the primal once (one batched ``inv``/``solve``/``svd``) and
apply it to all lanes with folded products, or with an O(K n^2) contraction where the tangent
is a trace.

Formulas (``X = f(A)``; every one is applied lane by lane):

* products are bilinear: ``d(A B) = dA B + A dB`` for matmul, dot, vdot, inner, outer, tensordot;
  einsum sums, over the differentiated operands, the same einsum with that operand replaced by
  its tangent, carrying a fresh lane index.
* trace, diagonal, tril, triu are linear: the same op on the tangent.
* ``inv``: ``dX = -X dA X``.
* ``solve`` (``A X = B``): ``dX = A^{-1} (dB - dA X)``, one batched solve for all lanes.
* ``det``: ``d det = tr(adj(A) dA)``, with the adjugate from an SVD, so singular A is exact too
  (``adj(A) = det(U) det(V) V adj(S) U^T``, ``adj(S)_i = prod_{j != i} s_j``). Under nested
  transforms (``dj.hessian``, A a lower-level Dual) svd has no rule, so the adjugate is
  ``det(A) A^{-1}`` there: second derivatives of det need an invertible A.
* ``slogdet``: ``d logabsdet = tr(A^{-1} dA)``; ``sign`` is piecewise constant. A singular A
  (logabsdet = -inf) has no derivative: ``inv`` raises or returns non-finite values there.
* ``cholesky`` (``A = L L^T``): ``dL = L Phi(L^{-1} dA L^{-T})``, Phi keeping the lower
  triangle with its diagonal halved; ``upper=True`` returns ``U = L^T``, so ``dU = dL^T``. As in
  torch, dA is taken to be symmetric (a perturbation of an SPD matrix); for a non-symmetric dA
  this is torch's result, not NumPy's (which reads only one triangle of A).
* ``pinv`` (Golub & Pereyra 1973), ``P = A^+``:
  ``dP = -P dA P + P P^T dA^T (I - A P) + (I - P A) dA^T P^T P``. It is the derivative where the
  rank of A is locally constant (full-rank A, the usual case). At a rank-deficient A, np.linalg.pinv
  (which cuts singular values below rcond) is not differentiable; the formula then gives the
  derivative along rank-preserving perturbations. ``rcond``/``rtol`` go to the primal: the formula
  is exact where the singular values they cut are zero (the rank is locally constant); where they
  cut nonzero singular values it omits the coupling to the cut ones. ``hermitian=True`` uses the
  same formula (its primal reads one triangle, so, as with cholesky, dA is taken to be symmetric).
"""

from __future__ import annotations

import numbers
import string

from .. import buffers
from ..dual import Dual
from .table import defrule, lanes_to_rank, neg_axis, sum_parts


def _ndim(v):
    return getattr(v, "ndim", 0)  # a Python scalar constant is 0-d


def _flat(xp, v):
    return v.reshape(-1) if hasattr(v, "reshape") else xp.asarray(v).reshape(-1)


def mT(v):
    """Transpose of the last two axes (a view)."""
    return v.swapaxes(-1, -2)


# --- lane-folded matrix products -------------------------------------------------------
def left_product(xp, m, t):
    """``m @ t[k]`` for every lane k, in one product: the lanes are folded into the columns.

    ``m``: ``(..., p, n)``; ``t``: ``(K, ..., n, q)``; result ``(K, ..., p, q)`` (batch dims broadcast).
    """
    K, q = t.shape[0], t.shape[-1]
    if m.ndim == 2:  # one GEMM: (p, n) @ (n, K * ... * q)
        return xp.moveaxis(xp.tensordot(m, t, axes=([1], [t.ndim - 2])), 0, -2)
    tt = xp.moveaxis(t, 0, -2)  # (..., n, K, q)
    out = m @ tt.reshape(tt.shape[:-2] + (K * q,))  # (..., p, K*q)
    return xp.moveaxis(out.reshape(out.shape[:-1] + (K, q)), -2, 0)


def right_product(xp, t, m):
    """``t[k] @ m`` for every lane k, in one product: the lanes are folded into the rows.

    ``t``: ``(K, ..., p, n)``; ``m``: ``(..., n, q)``; result ``(K, ..., p, q)`` (batch dims broadcast).
    """
    K, p, n = t.shape[0], t.shape[-2], t.shape[-1]
    if m.ndim == 2:  # one GEMM: (K * ... * p, n) @ (n, q), into a reused buffer when it is big
        t2 = t.reshape(-1, n)
        out = buffers.out_for((t2.shape[0], m.shape[1]), t2, m)
        return (t2 @ m if out is None else xp.matmul(t2, m, out=out)).reshape(t.shape[:-1] + m.shape[-1:])
    tt = xp.moveaxis(t, 0, -3)  # (..., K, p, n)
    out = tt.reshape(tt.shape[:-3] + (K * p, n)) @ m  # (..., K*p, q)
    return xp.moveaxis(out.reshape(out.shape[:-2] + (K, p, m.shape[-1])), -3, 0)


def _frobenius(xp, t, m):
    """``sum_ij t[k, ..., i, j] * m[..., i, j]`` for every lane: ``tr(m^T t[k])``, O(K n^2)."""
    if m.ndim == 2:  # one GEMV over all lanes
        return (t.reshape(-1, m.size) @ m.reshape(-1)).reshape(t.shape[:-2])
    return (t * m).sum(axis=(-2, -1))


# --- matmul ----------------------------------------------------------------------------
# --8<-- [start:matmul-jvp]  (shown in docs/concepts/writing-rules.md)
def _matmul_dx(xp, dx, y):
    # d(x @ y) = dx @ y + x @ dy; 1-D operands are a row (x) or column (y) vector
    if y.ndim == 1:  # (K, ..., n) @ (n,): one GEMV over all lanes and rows
        return (dx.reshape(-1, dx.shape[-1]) @ y).reshape(dx.shape[:-1])
    if dx.ndim == 2:  # x is 1-D: (K, n) @ (..., n, m) -> (..., K, m): the lanes are the rows
        return xp.moveaxis(dx @ y, -2, 0)
    return right_product(xp, dx, y)


def _matmul_dy(xp, x, dy):
    if dy.ndim == 2:  # y is 1-D: x @ dy^T: (..., m, n) @ (n, K) -> (..., m, K); or (n,) @ (n, K)
        return dy @ x if x.ndim == 1 else xp.moveaxis(x @ dy.T, -1, 0)
    if x.ndim == 1:  # x as a (1, n) row
        return left_product(xp, x[None], dy)[..., 0, :]
    return left_product(xp, x, dy)
# --8<-- [end:matmul-jvp]


def _c_product(xp, a, b):
    """``a * b`` in C order (a GEMM's layout) for a strided view ``a``: NumPy writes it straight into
    a C-order array (a reused buffer when it is big); elsewhere (CuPy, Duals) ``a`` is copied first."""
    if not (buffers.plain(a) and buffers.plain(b)):
        return a.copy() * b
    shape = xp.broadcast_shapes(a.shape, b.shape)
    out = buffers.out_for(shape, a, b)
    return xp.multiply(a, b, out=xp.empty(shape, dtype=xp.result_type(a, b)) if out is None else out)


def _matmul_diag_x(xp, ans, t, x, y):
    """``dx @ y`` for implicit identity lanes on x (``lanes.Diagonal``), no GEMM: with a 1-D
    item (x of shape ``lead + (n,)``), lane k of ``dx`` is ``values[..., s+k]`` at column
    ``s+k`` (``s = t.shift``), so lane k of ``dx @ y`` is that value times row ``s+k`` of y."""
    if x.ndim != t.nlead + 1 or y.ndim > 2:
        return None  # item not 1-D, or y batched: the dense rule
    K, s = t.lanes, t.shift
    v = xp.moveaxis(t.values[..., s : s + K], -1, 0)  # (K, *lead)
    rows = y[s : s + K].reshape((K,) + (1,) * t.nlead + y.shape[1:])  # (K, 1, ..., m), or (K, 1, ...) for a vector y
    if y.ndim == 2 and buffers.plain(v) and buffers.plain(y) and bool((v == 1).all()):
        # the seed itself (values all 1): every row of lane k is row s+k of y, a read-only broadcast
        # view, not written out; the next op that needs the lanes (a factor product) writes them once
        return xp.broadcast_to(rows, (K,) + v.shape[1:] + y.shape[1:])
    return _c_product(xp, v if y.ndim == 1 else v[..., None], rows)


def _matmul_diag_y(xp, ans, t, x, y):
    """``x @ dy`` for implicit identity lanes on a vector y (one input, ``jacfwd``): lane k is
    column ``s+k`` of x times ``values[s+k]``."""
    if y.ndim != 1 or t.nlead != 0:
        return None
    K, s = t.lanes, t.shift
    cols = xp.moveaxis(x[..., s : s + K], -1, 0)  # (K, ..., m)
    return _c_product(xp, cols, t.values[s : s + K].reshape((K,) + (1,) * (cols.ndim - 1)))


# --8<-- [start:matmul]  (shown in docs/concepts/writing-rules.md)
defrule("matmul", bilinear=(_matmul_dx, _matmul_dy), diagonal=(_matmul_diag_x, _matmul_diag_y))
# --8<-- [end:matmul]


# --- dot, inner, tensordot, vdot, outer ---------------------------------------------------
def tensordot_axes(na, nb, axes=2):
    """NumPy's ``axes`` (n, or a pair of ints / sequences) as two lists of nonnegative axes."""
    if isinstance(axes, numbers.Integral):
        n = int(axes)
        return list(range(na - n, na)), list(range(n))
    aa, ab = axes
    aa = [aa] if isinstance(aa, numbers.Integral) else list(aa)
    ab = [ab] if isinstance(ab, numbers.Integral) else list(ab)
    return [int(i) % na if na else int(i) for i in aa], [int(i) % nb if nb else int(i) for i in ab]


def _dot_axes(na, nb):
    # dot(a, b) sums a's last axis against b's second-to-last (b's only, if b is 1-D)
    return None if na == 0 or nb == 0 else ([na - 1], [max(nb - 2, 0)])


def _inner_axes(na, nb):
    # inner(a, b) sums the last axes of both
    return None if na == 0 or nb == 0 else ([na - 1], [nb - 1])


def _contraction(axes_of):
    """The bilinear form of ``tensordot(a, b, axes_of(a.ndim, b.ndim, **params))``: one GEMM per
    differentiated operand, the lanes riding in a free dimension. ``axes_of`` gives None where the
    op is the product ``a * b`` (dot and inner with a 0-d operand)."""

    def da_rule(xp, da, b, **params):
        axes = axes_of(da.ndim - 1, _ndim(b), **params)
        if axes is None:
            return lanes_to_rank(da, _ndim(b)) * b
        return xp.tensordot(da, b, axes=([i + 1 for i in axes[0]], axes[1]))  # (K, a_free, b_free)

    def db_rule(xp, a, db, **params):
        axes = axes_of(_ndim(a), db.ndim - 1, **params)
        if axes is None:
            return a * lanes_to_rank(db, _ndim(a))
        axes_a, axes_b = axes
        tb = xp.tensordot(a, db, axes=(axes_a, [i + 1 for i in axes_b]))  # (a_free, K, b_free)
        return xp.moveaxis(tb, _ndim(a) - len(axes_a), 0)

    return da_rule, db_rule


def _vdot_da(xp, da, b):
    # vdot(a, b) = sum(a.ravel() * b.ravel()) (real inputs): symmetric in a and b
    return da.reshape(da.shape[0], -1) @ _flat(xp, b)


def _outer_da(xp, da, b):
    # outer(a, b)[i, j] = a.ravel()[i] * b.ravel()[j]
    return da.reshape(da.shape[0], -1, 1) * _flat(xp, b)


def _outer_db(xp, a, db):
    return _flat(xp, a)[:, None] * db.reshape(db.shape[0], 1, -1)


defrule("dot", bilinear=_contraction(_dot_axes))
defrule("inner", bilinear=_contraction(_inner_axes))
defrule("tensordot", bilinear=_contraction(tensordot_axes))
defrule("vdot", bilinear=(_vdot_da, lambda xp, a, db: _vdot_da(xp, db, a)))
defrule("outer", bilinear=(_outer_da, _outer_db))


# --- einsum ----------------------------------------------------------------------------
def einsum_parts(subscripts):
    """``'ij,jk->ik'`` as ``(['ij', 'jk'], 'ik')``, the implicit output (no ``->``) made explicit:
    the labels seen exactly once, in ASCII order, after ``...`` if any operand has one."""
    s = "".join(subscripts.split())
    if "->" in s:
        ins, out = s.split("->")
        return ins.split(","), out
    ins = s.split(",")
    labels = "".join(ins).replace("...", "")
    out = "".join(sorted(c for c in set(labels) if labels.count(c) == 1))
    return ins, ("..." if "..." in s else "") + out


def _einsum_joint(xp, ans, ts, *ops, subscripts):
    # d einsum(s, x_1, ..., x_n) = sum_i einsum(s with x_i's labels prefixed by a lane label z,
    # x_1, ..., dx_i, ..., x_n) -> output prefixed by z
    ins, out = einsum_parts(subscripts)
    z = next(c for c in string.ascii_letters if c not in subscripts)

    def term(i, t):
        spec = ",".join(z + s if j == i else s for j, s in enumerate(ins)) + "->" + z + out
        return xp.einsum(spec, *ops[:i], t, *ops[i + 1 :], optimize=len(ops) > 1)  # optimize: pairs go through BLAS

    return sum_parts(term(i, t) for i, t in enumerate(ts) if t is not None)


defrule(
    "einsum",
    primal=lambda xp, *ops, subscripts: xp.einsum(subscripts, *ops),
    joint=_einsum_joint,
)


# --- trace, diagonal, tril, triu: linear ---------------------------------------------------
def _on_axes(which):
    def dx_rule(xp, dx, x, offset=0, axis1=0, axis2=1):
        return getattr(xp, which)(dx, offset=offset, axis1=neg_axis(axis1, x.ndim), axis2=neg_axis(axis2, x.ndim))

    return dx_rule


def _triangle(which):
    def dx_rule(xp, dx, x, k=0):
        if x.ndim >= 2:
            return getattr(xp, which)(dx, k=k)
        # a 1-D x is broadcast to rows of a square matrix first (NumPy's mask is tri(n, n))
        n = x.shape[-1]
        mask = xp.tri(n, n, k=k if which == "tril" else k - 1, dtype=bool)
        if which == "triu":
            mask = ~mask
        return xp.where(mask, lanes_to_rank(dx, 2), xp.zeros((), dtype=dx.dtype))

    return dx_rule


defrule("trace", linear=_on_axes("trace"))
defrule("diagonal", linear=_on_axes("diagonal"))
defrule("tril", linear=_triangle("tril"))
defrule("triu", linear=_triangle("triu"))


# --- np.linalg ---------------------------------------------------------------------------
def _solve_lanes(xp, a, r):
    """``a^{-1} r[k]`` for every lane, in one batched solve: ``a`` ``(..., n, n)``,
    ``r`` ``(K, ..., n, m)`` with the full batch shape. The lanes join the right-hand sides."""
    n = a.shape[-1]
    if a.ndim == 2:  # one factorization for every lane and batch: (n, n) \ (n, K*...*m)
        rt = xp.moveaxis(r, -2, 0)
        return xp.moveaxis(xp.linalg.solve(a, rt.reshape(n, -1)).reshape(rt.shape), 0, -2)
    rt = xp.moveaxis(r, 0, -2)  # (..., n, K, m)
    x = xp.linalg.solve(a, rt.reshape(rt.shape[:-2] + (-1,)))
    return xp.moveaxis(x.reshape(rt.shape), -2, 0)


# --8<-- [start:solve-jvp]  (shown in docs/concepts/writing-rules.md)
def _solve_joint(xp, ans, ts, a, b):
    # A X = B: dX = A^{-1} (dB - dA X), one batched solve for both.
    # NumPy 2: b is a vector only when it is 1-D.
    da, db = ts
    vec = b.ndim == 1
    x = ans[..., None] if vec else ans  # (..., n, m)
    parts = (  # -(dA X): negate the small factor, not the K lanes
        None if db is None else lanes_to_rank(db[..., None] if vec else db, x.ndim),
        None if da is None else right_product(xp, da, -x),
    )
    r = sum_parts(parts)
    dx = _solve_lanes(xp, a, xp.broadcast_to(r, r.shape[:1] + x.shape))
    return dx[..., 0] if vec else dx
# --8<-- [end:solve-jvp]


def _inv_dx(xp, ans, da, a):
    # d(A^{-1}) = -A^{-1} dA A^{-1}
    return right_product(xp, left_product(xp, -ans, da), ans)


def _adjugate_t(xp, a):
    """``adj(A)^T`` from an SVD ``A = U S V^T``: ``det(U) det(V) U adj(S) V^T`` with
    ``adj(S)_i = prod_{j != i} s_j`` (prefix times suffix products: no division, so a
    singular A is fine)."""
    u, s, vt = xp.linalg.svd(a)
    one = xp.ones(s.shape[:-1] + (1,), dtype=s.dtype)
    before = xp.cumprod(xp.concatenate([one, s[..., :-1]], axis=-1), axis=-1)
    after = xp.flip(xp.cumprod(xp.flip(xp.concatenate([s[..., 1:], one], axis=-1), axis=-1), axis=-1), axis=-1)
    sign = xp.linalg.det(u) * xp.linalg.det(vt)
    return (sign[..., None, None] * (u * (before * after)[..., None, :])) @ vt


def _det_dx(xp, ans, da, a):
    # d det(A) = tr(adj(A) dA) = sum_ij adj(A)^T_ij dA_ij  (= det(A) tr(A^{-1} dA) when invertible)
    if type(a) is Dual:  # nested transforms (dj.hessian): svd has no rule, inv and det have
        return _frobenius(xp, da, ans[..., None, None] * mT(xp.linalg.inv(a)))
    return _frobenius(xp, da, _adjugate_t(xp, a))


def _slogdet_joint(xp, ans, ts, a):
    # d logabsdet = tr(A^{-1} dA) = sum_ij (A^{-T})_ij dA_ij; sign is piecewise constant
    return None, _frobenius(xp, ts[0], mT(xp.linalg.inv(a)))


def _cholesky_dx(xp, ans, da, a, upper=False):
    # A = L L^T: dL = L Phi(L^{-1} dA L^{-T}), Phi = lower triangle with the diagonal halved
    low = mT(ans) if upper else ans
    n = a.shape[-1]
    linv = xp.linalg.inv(low)
    s = right_product(xp, left_product(xp, linv, da), mT(linv))
    phi = xp.tri(n, dtype=ans.dtype) - 0.5 * xp.eye(n, dtype=ans.dtype)
    dl = left_product(xp, low, s * phi)
    return mT(dl) if upper else dl


def pinv_dx(xp, ans, da, a, hermitian=False, rcond=None, rtol=None):
    # Golub-Pereyra, P = A^+: dP = -P dA P + P P^T dA^T (I - A P) + (I - P A) dA^T P^T P.
    # hermitian, rcond and rtol only shape the primal P (already in ``ans``); the formula is the same.
    p = ans
    m, n = a.shape[-2], a.shape[-1]
    dat = mT(da)
    out = right_product(xp, left_product(xp, -p, da), p)
    out = out + right_product(xp, left_product(xp, p @ mT(p), dat), xp.eye(m, dtype=p.dtype) - a @ p)
    out = out + right_product(xp, left_product(xp, xp.eye(n, dtype=p.dtype) - p @ a, dat), mT(p) @ p)
    return out


def _cholesky_primal(xp, a, upper=False):
    # U reads A's upper triangle: it is the transposed lower factor of A^T (CuPy has no upper=)
    return mT(xp.linalg.cholesky(mT(a))) if upper else xp.linalg.cholesky(a)


def _pinv_primal(xp, a, hermitian=False, rcond=None, rtol=None):
    cut = {k: v for k, v in (("rcond", rcond), ("rtol", rtol)) if v is not None}  # CuPy has rcond only
    if not hermitian:
        return xp.linalg.pinv(a, **cut)
    try:
        return xp.linalg.pinv(a, hermitian=True, **cut)
    except TypeError:  # CuPy has no hermitian=: the general pinv agrees on a symmetric matrix
        return xp.linalg.pinv(a, **cut)


# --8<-- [start:solve]  (shown in docs/concepts/writing-rules.md)
defrule("solve", primal=lambda xp, a, b: xp.linalg.solve(a, b), joint=_solve_joint)
# --8<-- [end:solve]
defrule("inv", primal=lambda xp, a: xp.linalg.inv(a), jvp=(_inv_dx,))
defrule("det", primal=lambda xp, a: xp.linalg.det(a), jvp=(_det_dx,))
defrule("slogdet", primal=lambda xp, a: xp.linalg.slogdet(a), joint=_slogdet_joint)
defrule("cholesky", primal=_cholesky_primal, jvp=(_cholesky_dx,))
defrule("pinv", primal=_pinv_primal, jvp=(pinv_dx,))
