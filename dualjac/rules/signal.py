"""Sampled signals: np.gradient, np.interp, np.convolve (np.correlate and np.diff are compositions).

* ``gradient`` is linear in the samples (the spacing is a constant): the tangent is
  ``np.gradient`` of every lane, along the same axes shifted past the lane axis.
* ``interp(x, xp, fp)`` is piecewise linear: on the segment ``xp[j] <= x < xp[j+1]`` it is
  ``(1 - t) fp[j] + t fp[j+1]`` with ``t = (x - xp[j]) / (xp[j+1] - xp[j])``, so
  ``d/dx = (fp[j+1] - fp[j]) / (xp[j+1] - xp[j])`` (the segment to the right of a knot; at the
  last knot, the last segment; 0 outside ``[xp[0], xp[-1]]``, where the value is constant), and
  ``d/dfp`` takes the same weights. The knots ``xp`` are not differentiable (a named error).
* ``convolve(a, v)`` is bilinear: ``d = convolve(da, v) + convolve(a, dv)``, each lane's full
  convolution as one product of windows (``take`` of a padded lane array) with the reversed
  kernel, then the mode's slice.
"""

from __future__ import annotations

import numbers

from ..dual import value
from .table import defrule


# --- gradient -----------------------------------------------------------------------------------
def _gradient_axes(ndim, axis):
    axes = range(ndim) if axis is None else (axis,) if isinstance(axis, numbers.Integral) else axis
    return tuple(int(a) % ndim for a in axes)


def _gradient_joint(xp, ans, ts, f, spacing=(), axis=None, edge_order=1):
    lanes_axes = tuple(a + 1 for a in _gradient_axes(f.ndim, axis))
    return xp.gradient(ts[0], *spacing, axis=lanes_axes, edge_order=edge_order)


defrule(
    "gradient",
    primal=lambda xp, f, spacing=(), axis=None, edge_order=1: xp.gradient(
        f, *spacing, axis=axis, edge_order=edge_order
    ),
    joint=_gradient_joint,
)


# --- interp --------------------------------------------------------------------------------------
def _knots(xp, xs, period):
    """The knots NumPy interpolates between and, for each, the index of its value in ``fp``."""
    idx = xp.arange(xs.shape[-1])
    if period is None:
        return xs, idx
    order = xp.argsort(xs % period, kind="stable")
    k = (xs % period)[order]
    knots = xp.concatenate([k[-1:] - period, k, k[:1] + period])
    return knots, xp.concatenate([order[-1:], order, order[:1]])


def _segment(xp, x, knots, period):
    """(x as NumPy reads it, j, t): x in the segment ``knots[j] .. knots[j+1]`` at fraction t."""
    if period is not None:
        x = x % period
    n = knots.shape[-1]
    j = xp.clip(xp.searchsorted(knots, value(x), side="right") - 1, 0, max(n - 2, 0))
    h = knots[xp.minimum(j + 1, n - 1)] - knots[j]
    t = (x - knots[j]) / xp.where(h == 0, 1, h)
    return x, j, t, h


def _interp_dx(xp, ans, dx, x, xs, fp, left=None, right=None, period=None):
    knots, idx = _knots(xp, xs, period)
    if knots.shape[-1] < 2:
        return 0 * dx
    xr, j, _, h = _segment(xp, x, knots, period)
    slope = (fp[idx[j + 1]] - fp[idx[j]]) / xp.where(h == 0, 1, h)
    xr = value(xr)
    inside = (xr >= knots[0]) & (xr <= knots[-1]) & (h != 0)
    return xp.where(inside, slope, 0 * slope) * dx


def _interp_dfp(xp, ans, dfp, x, xs, fp, left=None, right=None, period=None):
    knots, idx = _knots(xp, xs, period)
    xr, j, t, _ = _segment(xp, x, knots, period)
    n = knots.shape[-1]
    lo, hi = dfp[:, idx[j]], dfp[:, idx[xp.minimum(j + 1, n - 1)]]
    d = (1 - t) * lo + t * hi
    zero = xp.zeros((), dtype=ans.dtype)
    if period is None:  # outside the knots the value is fp[0] (fp[-1]), or the constant left (right)
        first, last = dfp[:, idx[0]], dfp[:, idx[-1]]
        first = zero if left is not None else first.reshape(first.shape + (1,) * x.ndim)
        last = zero if right is not None else last.reshape(last.shape + (1,) * x.ndim)
        xr = value(xr)
        d = xp.where(xr < knots[0], first, xp.where(xr > knots[-1], last, d))
    return d


defrule(
    "interp",
    primal=lambda xp, x, xs, fp, left=None, right=None, period=None: xp.interp(
        x, xs, fp, left=left, right=right, period=period
    ),
    jvp=(_interp_dx, None, _interp_dfp),
)


# --- convolve ------------------------------------------------------------------------------------
def _full_lanes(xp, d, w):
    """The full convolution of every lane of ``d`` (``(K, n)``) with ``w`` (``(m,)``): ``(K, n+m-1)``."""
    d = d.reshape(d.shape[0], -1)
    w = w.reshape(-1)
    n, m = d.shape[-1], w.shape[-1]
    padded = xp.pad(d, ((0, 0), (m - 1, m - 1)))
    windows = xp.arange(n + m - 1)[:, None] + xp.arange(m)[None, :]  # (n+m-1, m) positions
    return padded[:, windows] @ w[::-1]


def _mode_slice(full, n, m, mode):
    """NumPy's ``mode`` cut of a full convolution of lengths ``n`` and ``m``."""
    if mode == "full":
        return full
    lo, hi = min(n, m), max(n, m)
    start, size = ((lo - 1) // 2, hi) if mode == "same" else (lo - 1, hi - lo + 1)
    return full[:, start : start + size]


def _convolve_da(xp, ans, da, a, v, mode="full"):
    return _mode_slice(_full_lanes(xp, da, v), a.size, v.size, mode)


def _convolve_dv(xp, ans, dv, a, v, mode="full"):
    return _mode_slice(_full_lanes(xp, dv, a), a.size, v.size, mode)


defrule(
    "convolve",
    primal=lambda xp, a, v, mode="full": xp.convolve(a, v, mode=mode),
    jvp=(_convolve_da, _convolve_dv),
)
