"""Shape and selection: ops that move, copy, pick or write elements.

Every op here is linear in each differentiable argument, so its tangent is the same
op applied to the tangent. What needs care is the lane axis: a tangent is
``(K, *x.shape)``, so each rule applies the op to all K lanes at once while keeping
the lane axis in front (axis parameters are made negative, a flattening op keeps
``K`` and flattens the rest, an index gets a leading ``slice(None)``).

Selections with ties or kinks follow torch: ``sort`` gathers the tangent with the
stable argsort permutation; ``clip`` passes ``x``'s tangent where
``lo <= x <= hi`` (inclusive), ``lo``'s where ``x < lo`` and ``hi``'s where the
result is ``hi`` and not ``x`` (so ``hi`` wins when ``lo > hi``, as in NumPy and torch).
"""

from __future__ import annotations

import numbers

from ..dual import Dual
from ..errors import UnsupportedOpError
from .table import defrule, lanes_to_rank, neg_axes, neg_axis, select

LANES = slice(None)  # the index that keeps the lane axis whole


def _flat(dx):
    """``(K, *S)`` to ``(K, prod(S))``: the tangent of a flattened array."""
    return dx.reshape(dx.shape[0], -1)


# --- reshaping and moving axes -----------------------------------------------------
defrule(
    "reshape",
    primal=lambda xp, x, shape: xp.reshape(x, shape),
    linear=lambda xp, dx, x, shape: xp.reshape(dx, dx.shape[:1] + xp.shape(xp.reshape(x, shape))),
)


def _transpose_dx(xp, dx, x, axes=None):
    axes = range(x.ndim)[::-1] if axes is None else axes
    return xp.transpose(dx, (0,) + tuple(1 + a % x.ndim for a in axes))  # lane axis stays 0


defrule("transpose", primal=lambda xp, x, axes=None: xp.transpose(x, axes), linear=_transpose_dx)


def _broadcast_to_dx(xp, dx, x, shape):
    dx = lanes_to_rank(dx, len(shape))  # (K, 1, ..., *x.shape): new axes go after the lanes
    return xp.broadcast_to(dx, dx.shape[:1] + tuple(shape))  # a read-only view: never written


defrule("broadcast_to", primal=lambda xp, x, shape: xp.broadcast_to(x, shape), linear=_broadcast_to_dx)


def _tile_dx(xp, dx, x, reps):
    nd = max(x.ndim, len(reps))  # NumPy pads the shorter of x.shape and reps with leading 1s
    return xp.tile(lanes_to_rank(dx, nd), (1,) * (1 + nd - len(reps)) + tuple(reps))


defrule("tile", primal=lambda xp, x, reps: xp.tile(x, reps), linear=_tile_dx)


def _repeat_dx(xp, dx, x, repeats, axis=None):
    if axis is None:  # NumPy repeats the flattened array
        return xp.repeat(_flat(dx), repeats, axis=-1)
    return xp.repeat(dx, repeats, axis=neg_axis(axis, x.ndim))


defrule(
    "repeat",
    primal=lambda xp, x, repeats, axis=None: xp.repeat(x, repeats, axis=axis),
    linear=_repeat_dx,
)


def _roll_dx(xp, dx, x, shift, axis=None):
    if axis is None:  # NumPy rolls the flattened array and restores the shape
        return xp.roll(_flat(dx), shift, axis=-1).reshape(dx.shape)
    return xp.roll(dx, shift, axis=neg_axes(axis, x.ndim))


defrule("roll", primal=lambda xp, x, shift, axis=None: xp.roll(x, shift, axis=axis), linear=_roll_dx)


# --- joining -----------------------------------------------------------------------
def _lane_tangents(xp, ans, ts, xs):
    """Each argument's tangent, with zeros (lanes first) for constant arguments."""
    K = next(t for t in ts if t is not None).shape[0]
    return [
        t.astype(ans.dtype, copy=False)
        if t is not None
        else xp.zeros((K,) + tuple(getattr(x, "shape", ())), dtype=ans.dtype)
        for t, x in zip(ts, xs)
    ]


defrule(
    "concatenate",
    primal=lambda xp, *xs, axis: xp.concatenate(xs, axis=axis),
    joint=lambda xp, ans, ts, *xs, axis: xp.concatenate(
        _lane_tangents(xp, ans, ts, xs), axis=neg_axis(axis, ans.ndim)
    ),
)
defrule(
    "stack",
    primal=lambda xp, *xs, axis=0: xp.stack(xs, axis=axis),
    joint=lambda xp, ans, ts, *xs, axis=0: xp.stack(
        _lane_tangents(xp, ans, ts, xs), axis=neg_axis(axis, ans.ndim)
    ),
)


# --- padding -----------------------------------------------------------------------
_LINEAR_PADS = ("constant", "edge", "reflect", "symmetric", "wrap", "linear_ramp", "mean")


def _pad_pairs(pad_width, ndim):
    """NumPy's ``pad_width`` (int, ``(n,)``, ``(before, after)`` or one pair per axis) as
    one ``(before, after)`` pair per axis."""
    pw = pad_width.tolist() if hasattr(pad_width, "tolist") else pad_width
    if isinstance(pw, numbers.Integral):
        return ((int(pw), int(pw)),) * ndim
    pw = list(pw)
    if all(isinstance(p, numbers.Integral) for p in pw):  # (n,) or (before, after) for every axis
        pw = [pw]
    pairs = [tuple(int(n) for n in p) * (2 // len(p)) for p in pw]
    return tuple(pairs) * ndim if len(pairs) == 1 else tuple(pairs)


def _pad_primal(xp, x, pad_width, mode="constant", **kw):
    if mode not in _LINEAR_PADS:
        raise UnsupportedOpError(
            f"numpy.pad with mode={mode!r}",
            f"the modes that are linear in the array are {', '.join(_LINEAR_PADS)}",
        )
    return xp.pad(x, pad_width, mode=mode, **kw)


def _pad_dx(xp, dx, x, pad_width, mode="constant", **kw):
    # Each mode is linear in x once its constants (constant_values, end_values) are zero:
    # pad every lane the same way, and pad the lane axis by nothing.
    kw = {k: (0 if k in ("constant_values", "end_values") else v) for k, v in kw.items()}
    return xp.pad(dx, ((0, 0),) + _pad_pairs(pad_width, x.ndim), mode=mode, **kw)


defrule("pad", primal=_pad_primal, linear=_pad_dx)


# --- selecting by condition or bounds (elementwise) ---------------------------------
defrule(
    "where",
    primal=lambda xp, cond, x, y: xp.where(cond, x, y),
    jvp=(
        None,
        lambda xp, ans, dx, cond, x, y: select(xp, ans, cond, dx),
        lambda xp, ans, dy, cond, x, y: select(xp, ans, ~cond, dy),
    ),
    elementwise=True,
)


def _clip_masks(xp, x, lo, hi):
    """Which argument the result of ``min(max(x, lo), hi)`` comes from: (x, lo, hi) masks. At a
    bound x keeps its tangent (torch's clamp); a NaN x takes no tangent from the bounds."""
    raised = xp.zeros(xp.shape(x), dtype=bool) if lo is None else x < lo
    at_hi = xp.zeros(xp.shape(x), dtype=bool) if hi is None else (x if lo is None else xp.maximum(x, lo)) > hi
    return ~(raised | at_hi), raised & ~at_hi, at_hi


defrule(
    "clip",
    primal=lambda xp, x, lo, hi: xp.clip(x, lo, hi),
    jvp=(
        lambda xp, ans, dx, x, lo, hi: select(xp, ans, _clip_masks(xp, x, lo, hi)[0], dx, nan_where=ans),
        lambda xp, ans, dlo, x, lo, hi: select(xp, ans, _clip_masks(xp, x, lo, hi)[1], dlo, nan_where=ans),
        lambda xp, ans, dhi, x, lo, hi: select(xp, ans, _clip_masks(xp, x, lo, hi)[2], dhi, nan_where=ans),
    ),
    elementwise=True,
)


# --- indexing ------------------------------------------------------------------------
def _is_basic(k):
    return k is None or k is Ellipsis or isinstance(k, slice)


def _lanes_move(key):
    """Whether ``dx[(LANES,) + key]`` would not keep the lanes first: NumPy moves the
    broadcast dims of advanced indices to the front when slices, Ellipsis or None
    separate them (integers count as advanced once any index is an array). Errs
    towards True, which only costs the slower lanes-last path."""
    is_int = lambda k: isinstance(k, numbers.Integral) and not isinstance(k, bool)  # noqa: E731
    if all(_is_basic(k) or is_int(k) for k in key):
        return False
    adv = [i for i, k in enumerate(key) if not _is_basic(k)]
    return adv[-1] - adv[0] + 1 != len(adv)


def _lanes_last(xp, dx, key):
    """``dx`` as a ``(*S, K)`` view and the key that indexes it with the lanes left last."""
    tail = (LANES,) if any(k is Ellipsis for k in key) else (Ellipsis, LANES)
    return xp.moveaxis(dx, 0, -1), key + tail


def _getitem_dx(xp, dx, x, key):
    if not _lanes_move(key):
        return dx[(LANES,) + key]
    view, lkey = _lanes_last(xp, dx, key)
    return xp.moveaxis(view[lkey], -1, 0)


defrule("getitem", primal=lambda xp, x, key: x[key], linear=_getitem_dx)


def _holding(xp, t, v):
    """``t``, able to take ``v`` in a slot: under nested transforms ``v`` may be a Dual of a
    lower level while ``t`` is a plain array, which is then a Dual with zero lanes."""
    if type(v) is Dual and type(t) is not Dual:
        return Dual(t, xp.zeros((v.lanes,) + tuple(t.shape), dtype=t.dtype), v.level)
    if getattr(v, "_dualjac_symbolic", False) and not getattr(t, "_dualjac_symbolic", False):
        return v.zeros(t)  # reverse mode's symbolic tangent (dualjac/tape.py): t is a zero to write into
    return t


def _setitem_primal(xp, x, value, key):
    out = _holding(xp, xp.copy(x), value)  # functional: x itself is never written
    out[key] = value
    return out


def _write_slot(xp, t, key, v, slot_nd):
    """``t[lanes, key] = v`` for a fresh lanes-first ``t`` and ``v`` of shape
    ``(K, *value.shape)`` (or 0), broadcasting ``value.shape`` against the slot's
    ``slot_nd`` axes as NumPy does."""
    if getattr(v, "ndim", 0) > 0:
        vshape = tuple(v.shape[1:])[max(0, v.ndim - 1 - slot_nd) :]  # NumPy drops extra leading 1s
        v = v.reshape(v.shape[:1] + (1,) * (slot_nd - len(vshape)) + vshape)
    t = _holding(xp, t, v)
    if not _lanes_move(key):
        t[(LANES,) + key] = v
        return t
    view, lkey = _lanes_last(xp, t, key)
    view[lkey] = xp.moveaxis(v, 0, -1) if getattr(v, "ndim", 0) > 0 else v
    return xp.moveaxis(view, -1, 0)  # t itself for arrays; the written copy for (nested) Duals


def _setitem_dx(xp, ans, dx, x, value, key):
    # the slot now holds value: x's tangent there is gone (copy first: dx may be a shared view)
    return _write_slot(xp, dx.astype(ans.dtype, copy=True), key, 0, 0)


def _setitem_dvalue(xp, ans, dv, x, value, key):
    return _write_slot(xp, xp.zeros(dv.shape[:1] + tuple(ans.shape), dtype=ans.dtype), key, dv, ans[key].ndim)


defrule("setitem", primal=_setitem_primal, jvp=(_setitem_dx, _setitem_dvalue))


def _take_dx(xp, dx, x, indices, axis=None):
    if axis is None:  # NumPy takes from the flattened array
        return xp.take(_flat(dx), indices, axis=-1)
    return xp.take(dx, indices, axis=neg_axis(axis, x.ndim))


defrule(
    "take",
    primal=lambda xp, x, indices, axis=None: xp.take(x, indices, axis=axis),
    linear=_take_dx,
)


def _along_axis(xp, dx, indices, axis, ndim):
    """``take_along_axis`` on every lane: the indices broadcast over the lane axis."""
    if axis is None:
        return xp.take_along_axis(_flat(dx), indices.reshape(1, -1), axis=-1)
    return xp.take_along_axis(dx, indices[None], axis=neg_axis(axis, ndim))


defrule(
    "take_along_axis",
    primal=lambda xp, x, indices, axis=-1: xp.take_along_axis(x, indices, axis=axis),
    linear=lambda xp, dx, x, indices, axis=-1: _along_axis(xp, dx, indices, axis, x.ndim),
)


def _sort_dx(xp, ans, dx, x, axis=-1):
    # sort(x) = x[argsort(x)]: gather the tangent with the same (stable, as torch) permutation
    perm = xp.argsort(x.reshape(-1) if axis is None else x, axis=-1 if axis is None else axis, kind="stable")
    return _along_axis(xp, dx, perm, axis, x.ndim)


defrule("sort", primal=lambda xp, x, axis=-1: xp.sort(x, axis=axis), jvp=(_sort_dx,))


# --- copies and casts ----------------------------------------------------------------
def _astype_joint(xp, ans, ts, x, dtype):
    if ans.dtype.kind == "c":
        raise TypeError("dualjac does not support complex values; keep real and imaginary parts apart")
    if ans.dtype.kind != "f":
        return None  # an integer or boolean cast is piecewise constant: a symbolic zero
    return ts[0].astype(dtype)


defrule("astype", primal=lambda xp, x, dtype: x.astype(dtype), joint=_astype_joint)
defrule("copy", primal=lambda xp, x: xp.copy(x), linear=lambda xp, dx, x: xp.copy(dx))
