"""Reductions: sum, mean, prod, max/min, std/var, cumulative sums and products, norm.

``axis`` is normalised to negative form (``neg_axes``), so the same value names the
same axis of the primal ``x`` and of its tangent ``dx`` with the lane axis in front.
Most rules reduce with ``keepdims=True`` and reshape the result to ``(K, *ans.shape)``,
which serves ``keepdims`` True and False alike.

Kinks and zeros follow torch's forward AD (``torch.func.jvp``), so that
``dualjac.torch.check`` agrees with it:

* ``amax``/``amin`` (and ``np.max``, ``np.maximum.reduce``, the inf-norms) split the
  tangent evenly among tied extrema, as ``torch.amax`` and ``torch.max(x)`` do (not
  ``torch.max(x, dim)``, which gives it all to one index).
* ``prod`` and ``cumprod`` are exact with one or several zeros in ``x``.
* ``std`` at zero variance has tangent 0 (torch's choice; the limit does not exist).
* ``norm``: the tangent at a zero vector is 0 (a subgradient), and entries equal to 0
  contribute 0 for every ``ord`` (torch's convention, also for ``ord < 1``). The matrix norms
  ``ord=2, -2, 'nuc'`` go through an SVD, which has no rule: they have first derivatives only
  (under ``dj.hessian`` they raise UnsupportedOpError).
"""

from __future__ import annotations

import math

from ..dual import Dual
from ..errors import UnsupportedOpError
from .table import defrule, neg_axes, neg_axis


def _axes(axis, ndim):
    """``axis`` (None, int or tuple) as a tuple of negative axes."""
    ax = neg_axes(axis, ndim)
    return ax if isinstance(ax, tuple) else (ax,)


def _kept(xp, ans, x, ax):
    """``ans`` reshaped as if reduced over ``ax`` with ``keepdims=True`` (broadcasts against ``x``)."""
    shape = tuple(1 if i - x.ndim in ax else n for i, n in enumerate(x.shape))
    return xp.reshape(ans, shape)


def _out(xp, ans, t):
    """A reduced tangent ``(K, ...)`` in the result's shape (and dtype)."""
    return xp.reshape(t, t.shape[:1] + tuple(ans.shape)).astype(ans.dtype, copy=False)


def _count(x, ax):
    return math.prod(x.shape[a] for a in ax)


def _safe(xp, d):
    """``d`` with zeros replaced by 1, to divide by where the quotient is masked anyway."""
    return xp.where(d == 0, 1, d)


def _even(xp, hit, ax):
    """``1/n`` at each of the ``n`` positions ``hit`` of every slice over ``ax``: torch's tie rule
    (the tangent of an extremum is split evenly among tied entries)."""
    return hit / xp.sum(hit, axis=ax, keepdims=True)


def _dot(xp, ans, w, dx, ax):
    """``sum(w dx)`` over ``ax``: the tangent of a reduction with weights ``w`` (shaped like x)."""
    return _out(xp, ans, xp.sum(w.astype(ans.dtype, copy=False) * dx, axis=ax, keepdims=True))


def _last(xp, x, ax):
    """Move axes ``ax`` of ``x`` to the end and flatten them into one (``x`` may carry lanes)."""
    k = len(ax)
    moved = xp.moveaxis(x, ax, tuple(range(-k, 0)))
    return xp.reshape(moved, moved.shape[: moved.ndim - k] + (-1,))


# --- sum, mean, prod ---------------------------------------------------------------
def _sum_lanes(xp, dx, x, axis=None, keepdims=False):
    return xp.sum(dx, axis=neg_axes(axis, x.ndim), keepdims=keepdims)


def _mean_lanes(xp, dx, x, axis=None, keepdims=False):
    return xp.mean(dx, axis=neg_axes(axis, x.ndim), keepdims=keepdims)


def _exclusive_cumprod(xp, x):
    """``prod(x[..., :k])`` for each ``k`` along the last axis (1 at ``k = 0``): no division."""
    ones = xp.ones(x.shape[:-1] + (1,), dtype=x.dtype)
    return xp.concatenate([ones, xp.cumprod(x[..., :-1], axis=-1)], axis=-1)


def _prod_jvp(xp, ans, dx, x, axis=None, keepdims=False):
    # d prod(x) = sum_i prod_{j != i} x_j dx_i; the product of the others is the product of
    # those before i times those after i (exclusive cumprods from both ends), exact with zeros
    ax = _axes(axis, x.ndim)
    if not ax:
        return dx
    xm = _last(xp, x, ax)
    after = xp.flip(_exclusive_cumprod(xp, xp.flip(xm, axis=-1)), axis=-1)
    others = _exclusive_cumprod(xp, xm) * after
    return _out(xp, ans, xp.sum(others * _last(xp, dx, ax), axis=-1))


defrule("sum", linear=_sum_lanes)
defrule("mean", linear=_mean_lanes)
defrule("prod", jvp=(_prod_jvp,))


# --- max and min -------------------------------------------------------------------------
def _extremum_jvp(xp, ans, dx, x, axis=None, keepdims=False):
    # the tangent of the extremum, shared evenly among ties (a NaN result gets a NaN tangent, as in torch)
    ax = _axes(axis, x.ndim)
    return _dot(xp, ans, _even(xp, x == _kept(xp, ans, x, ax), ax), dx, ax)


defrule("amax", jvp=(_extremum_jvp,))
defrule("amin", jvp=(_extremum_jvp,))


# --- variance and standard deviation -------------------------------------------------------
def _var_dot(xp, dx, x, axis, ddof):
    """``sum((x - mean) dx) / (n - ddof)`` over ``axis``, kept dims (the mean's own tangent drops
    out since ``sum(x - mean) = 0``)."""
    ax = _axes(axis, x.ndim)
    centered = x - xp.mean(x, axis=ax, keepdims=True)
    return xp.sum(centered * dx, axis=ax, keepdims=True) / (_count(x, ax) - ddof)


def _var_jvp(xp, ans, dx, x, axis=None, keepdims=False, ddof=0):
    # var = sum((x - mean)^2) / (n - ddof): d var = 2 sum((x - mean) dx) / (n - ddof)
    return _out(xp, ans, 2 * _var_dot(xp, dx, x, axis, ddof))


def _std_jvp(xp, ans, dx, x, axis=None, keepdims=False, ddof=0):
    # d std = d var / (2 std), and 0 where std = 0 (torch's convention)
    s = _kept(xp, ans, x, _axes(axis, x.ndim))
    return _out(xp, ans, xp.where(s == 0, 0, _var_dot(xp, dx, x, axis, ddof) / _safe(xp, s)))


defrule("var", jvp=(_var_jvp,))
defrule("std", jvp=(_std_jvp,))


# --- cumulative sum and product ------------------------------------------------------------
def _cumsum_lanes(xp, dx, x, axis):
    return xp.cumsum(dx, axis=neg_axis(axis, x.ndim))


def _cumprod_jvp(xp, ans, dx, x, axis):
    # y_k = prod_{j<=k} x_j. With z the first zero of x along the axis (if any):
    #   k < z:  dy_k = y_k sum_{i<=k} dx_i / x_i            (no zero among x_0..x_k)
    #   k >= z: dy_k = prod_{j<z} x_j * prod_{z<j<=k} x_j * dx_z   (every other term has the
    #           factor x_z = 0; a second zero at or before k makes the second product 0)
    a = neg_axis(axis, x.ndim)
    xm, dxm, y = xp.moveaxis(x, a, -1), xp.moveaxis(dx, a, -1), xp.moveaxis(ans, a, -1)
    if type(x) is Dual:  # nested transforms: the zero masks below would hide x_z's own derivative
        return xp.moveaxis(_cumprod_poly(xp, xm, dxm), -1, a)
    zero = xm == 0
    seen = xp.cumsum(zero, axis=-1)
    before = seen == 0  # k < z
    first = zero & (seen == 1)  # k == z
    lead = xp.where(before, y * xp.cumsum(dxm / _safe(xp, xm), axis=-1), 0)
    at_zero = xp.sum(xp.where(first, _exclusive_cumprod(xp, xm) * dxm, 0), axis=-1, keepdims=True)
    rest = xp.cumprod(xp.where(before | first, 1, xm), axis=-1)  # prod_{z<j<=k} x_j
    tail = xp.where(before, 0, rest * at_zero)
    return xp.moveaxis((lead + tail).astype(ans.dtype, copy=False), -1, a)


def _cumprod_poly(xp, xm, dxm):
    """``dy_k = sum_{i<=k} prod_{j<i} x_j prod_{i<j<=k} x_j dx_i`` along the last axis: a polynomial
    in x (no masks that depend on zeros of x), so it differentiates again; O(n^2) per row."""
    n = xm.shape[-1]
    idx = xp.arange(n)
    later = idx[:, None] < idx[None, :]  # [i, j]: j > i
    after = xp.cumprod(xp.where(later, xm.reshape(xm.shape[:-1] + (1, n)), 1), axis=-1)  # [i, k]: prod_{i<j<=k}
    before = _exclusive_cumprod(xp, xm)  # [i]: prod_{j<i} x_j
    w = xp.where(idx[:, None] <= idx[None, :], before.reshape(before.shape + (1,)) * after, 0)  # [i, k], i <= k
    return xp.sum(w * dxm.reshape(dxm.shape + (1,)), axis=-2)


defrule("cumsum", primal=lambda xp, x, axis: xp.cumsum(x, axis=axis), linear=_cumsum_lanes)
defrule("cumprod", primal=lambda xp, x, axis: xp.cumprod(x, axis=axis), jvp=(_cumprod_jvp,))


# --- norm --------------------------------------------------------------------------------
def _vector_weight(xp, x, n, ord, ax):
    """``w`` with ``d||x||_ord = sum(w dx)`` over ``ax``; ``n`` is the norm with kept dims."""
    if ord is None or ord == 2:  # d||x|| = <x, dx> / ||x||, 0 at x = 0
        return x / _safe(xp, n)
    if ord == 1:
        return xp.sign(x)
    if ord in (math.inf, -math.inf):  # the largest (smallest) |x_i|, ties split evenly
        return xp.sign(x) * _even(xp, xp.abs(x) == n, ax)
    if ord == 0:  # the number of nonzeros: piecewise constant
        return xp.zeros_like(x)
    # (sum |x|^p)^(1/p): d = sum |x|^(p-1) sign(x) dx / ||x||^(p-1), 0 at x_i = 0 and at x = 0
    a = xp.abs(x)
    return xp.where((a == 0) | (n == 0), 0, xp.sign(x) * (_safe(xp, a) / _safe(xp, n)) ** (ord - 1))


def _matrix_weight(xp, x, n, ord, row, col):
    """``w`` (shaped like ``x``) with ``d||x||_ord = sum(w dx)`` over axes ``(row, col)``."""
    if ord in (None, "fro"):
        return x / _safe(xp, n)
    if ord in (1, -1, math.inf, -math.inf):
        # ord=+-1: max (min) over columns of the column sums of |x|; ord=+-inf: over rows, of row sums
        summed, picked = (row, col) if ord in (1, -1) else (col, row)
        s = xp.sum(xp.abs(x), axis=summed, keepdims=True)
        return xp.sign(x) * _even(xp, s == n, picked)
    if ord in (2, -2, "nuc"):
        # with x = U diag(s) V^T: d s_i = u_i^T dx v_i, so the weight is u_i v_i^T (summed over
        # i for the nuclear norm); the tangent is undefined where the singular value is repeated
        if type(x) is Dual:  # nested transforms: the weight's own derivative needs svd's
            raise UnsupportedOpError(
                f"second derivatives of norm(ord={ord!r})",
                "the matrix norms ord=2, -2 and 'nuc' differentiate through an SVD, which has no "
                "forward-mode rule, so they have first derivatives only (jacfwd, jvp), not under nested "
                "transforms (hessian); use ord='fro' or ord=None there",
            )
        u, _, vh = xp.linalg.svd(xp.moveaxis(x, (row, col), (-2, -1)), full_matrices=False)
        if ord == "nuc":
            w = u @ vh
        else:
            i = slice(0, 1) if ord == 2 else slice(-1, None)
            w = u[..., :, i] @ vh[..., i, :]
        return xp.moveaxis(w, (-2, -1), (row, col))
    raise ValueError(f"invalid norm order {ord!r} for matrices")


def _norm_jvp(xp, ans, dx, x, ord=None, axis=None, keepdims=False):
    ax = _axes(axis, x.ndim)
    if x.dtype.kind == "c":
        raise UnsupportedOpError("numpy.linalg.norm of a complex array", "only real inputs have a norm rule")
    n = _kept(xp, ans, x, ax)
    if len(ax) == 1:
        w = _vector_weight(xp, x, n, ord, ax)
    elif len(ax) == 2 and ord is not None:
        w = _matrix_weight(xp, x, n, ord, *ax)
    else:  # the Frobenius norm (axis=None, ord=None, any rank)
        w = _vector_weight(xp, x, n, None, ax)
    return _dot(xp, ans, w, dx, ax)


defrule(
    "norm",
    primal=lambda xp, x, ord=None, axis=None, keepdims=False: xp.linalg.norm(x, ord=ord, axis=axis, keepdims=keepdims),
    jvp=(_norm_jvp,),
)
