"""Shape and selection: ops that move, copy, or pick elements. All are linear in
each differentiable argument, but the lane axis must be kept in front by hand."""

from __future__ import annotations

from . import defrule, neg_axis


def _reshape_primal(xp, x, shape):
    return xp.reshape(x, shape)


defrule(
    "reshape",
    primal=_reshape_primal,
    jvp=(lambda xp, ans, dx, x, shape: xp.reshape(dx, dx.shape[:1] + tuple(ans.shape)),),
)


def _transpose_dx(xp, ans, dx, x, axes=None):
    axes = tuple(range(x.ndim))[::-1] if axes is None else axes
    return xp.transpose(dx, (0,) + tuple(neg_axis(a, x.ndim) + x.ndim + 1 for a in axes))


defrule("transpose", primal=lambda xp, x, axes=None: xp.transpose(x, axes), jvp=(_transpose_dx,))
defrule(
    "getitem",
    primal=lambda xp, x, key: x[key],
    jvp=(lambda xp, ans, dx, x, key: dx[(slice(None),) + key],),
)
defrule(
    "broadcast_to",
    primal=lambda xp, x, shape: xp.broadcast_to(x, shape),
    jvp=(lambda xp, ans, dx, x, shape: xp.broadcast_to(
        dx.reshape(dx.shape[:1] + (1,) * (len(shape) - x.ndim) + tuple(dx.shape[1:])), dx.shape[:1] + tuple(shape)),),
)
defrule(
    "concatenate",
    primal=lambda xp, *xs, axis: xp.concatenate(xs, axis=axis),
    joint=lambda xp, ans, ts, *xs, axis: xp.concatenate(
        [t if t is not None else xp.zeros((ans_lanes(ts),) + tuple(x.shape), dtype=ans.dtype) for t, x in zip(ts, xs)],
        axis=neg_axis(axis, ans.ndim),
    ),
)


def ans_lanes(ts):
    return next(t for t in ts if t is not None).shape[0]


defrule("astype", primal=lambda xp, x, dtype: x.astype(dtype), jvp=(lambda xp, ans, dx, x, dtype: dx.astype(dtype),))
defrule("copy", primal=lambda xp, x: xp.copy(x), jvp=(lambda xp, ans, dx, x: xp.copy(dx),))
