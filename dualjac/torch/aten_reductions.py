"""ATen emitters of the ops that reduce along axes: sums, means, products, extrema and their
indices, any/all, variance, cumulative sums, sorting and top-k, norms, logsumexp, softmax.

They share one job, translating torch's ``dim``/``keepdim``/``correction`` into NumPy's ``axis``/
``keepdims``/``ddof``; indices (argmax, sort) are static nodes, never differentiated. ``aten.py``
merges ``OPS`` into ``ATEN_OPS``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from .. import static
from ..numpy_api import pos_axes
from .aten_builder import Builder, axis_of, key_along


def _dims(dim: Any) -> Any:
    if dim is None or (isinstance(dim, (list, tuple)) and not dim):
        return None
    return tuple(dim) if isinstance(dim, (list, tuple)) else dim


def _reduction(op: str) -> Callable[..., Any]:
    def emit(b, x, dim=None, keepdim=False, dtype=None):
        return b.emit(op, x, axis=_dims(dim), keepdims=bool(keepdim))

    return emit


def _full_reduction(op: str) -> Callable[..., Any]:
    return lambda b, x, dtype=None: b.emit(op, x, axis=None, keepdims=False)


def _extremum_dim(arg: str) -> Callable[..., Any]:
    """``max.dim``: (values, indices); the values gathered at torch's index, so ties follow torch."""

    def emit(b, x, dim, keepdim=False):
        d = axis_of(b, dim)
        idx = b.emit(static.arg_extremum, x, arg, d, True)
        values = b.emit("take_along_axis", x, idx, axis=d)
        if not keepdim:
            values, idx = b.emit("getitem", values, key=key_along(d, 0)), b.emit(operator.getitem, idx, key_along(d, 0))
        return values, idx

    return emit


def _arg(fn: str) -> Callable[..., Any]:
    return lambda b, x, dim=None, keepdim=False: b.emit(static.arg_extremum, x, fn, dim, bool(keepdim))


def _bool_reduction(fn: str) -> Callable[..., Any]:
    return lambda b, x, dim=None, keepdim=False: b.emit(static.reduce_bool, x, fn, _dims(dim), bool(keepdim))


def _var(op: str) -> Callable[..., Any]:
    def emit(b, x, dim=None, unbiased=None, keepdim=False, correction=None):
        ddof = correction if correction is not None else (0 if unbiased is False else 1)
        return b.emit(op, x, axis=_dims(dim), keepdims=bool(keepdim), ddof=ddof)

    return emit


def _cumulative(op: str) -> Callable[..., Any]:
    return lambda b, x, dim, dtype=None: b.emit(op, x, axis=dim)


def _var_mean(b, x, dim=None, correction=None, keepdim=False):
    return _var("var")(b, x, dim, correction=correction, keepdim=keepdim), _reduction("mean")(b, x, dim, keepdim)


def _sort(b, x, dim=-1, descending=False, stable=False):
    d = axis_of(b, dim)
    idx = b.emit(static.argsort, x, d, bool(descending))  # stable, as torch's stable sort
    return b.emit("take_along_axis", x, idx, axis=d), idx


def _topk(b, x, k, dim=-1, largest=True, sorted=True):
    d = axis_of(b, dim)
    idx = b.emit(static.first, b.emit(static.argsort, x, d, bool(largest)), d, k)
    return b.emit("take_along_axis", x, idx, axis=d), idx


def _diagonal(b, x, offset=0, dim1=0, dim2=1):
    a1, a2 = pos_axes((dim1, dim2), max(b.ndim(0), 1))
    return b.emit("diagonal", x, offset=offset, axis1=a1, axis2=a2)


def _logsumexp(b, x, dim, keepdim=False):
    return b.emit("logsumexp", x, axis=_dims(dim), keepdims=bool(keepdim))


def _vector_norm(b, x, ord=2, dim=None, keepdim=False, dtype=None):
    nd = b.ndim(0)
    dims = sorted(set(pos_axes(_dims(dim), max(nd, 1)))) if _dims(dim) is not None else list(range(nd))
    if len(dims) == 1:
        return b.emit("norm", x, ord=ord, axis=dims[0], keepdims=bool(keepdim))
    # several axes: move them last, flatten them into one, take one vector norm
    rest = [d for d in range(nd) if d not in dims]
    moved = b.emit("transpose", x, axes=tuple(rest + dims))
    flat = b.emit("reshape", moved, shape=b.emit(static.flat_last, moved, len(dims)))
    n = b.emit("norm", flat, ord=ord, axis=-1, keepdims=False)
    if not keepdim:
        return n
    return b.emit("getitem", n, key=tuple(None if d in dims else slice(None) for d in range(nd)))


def _softmax(op: str) -> Callable[..., Any]:
    return lambda b, x, dim, half_to_float=False: b.emit(op, x, axis=dim)


def safe_softmax(b: Builder, x: Any, dim: int, dtype: Any = None) -> Any:
    """torch's ``_safe_softmax``: softmax along ``dim``, 0 (not NaN) on a row masked entirely."""
    # torch: a row that is -inf everywhere (attention masked entirely) attends to nothing: 0, not NaN
    alive = b.emit(static.any_finite, x, dim)
    p = b.emit("softmax", b.emit("where", alive, x, 0.0), axis=dim)
    return b.emit("where", alive, p, 0.0)


# softmax and the reductions (sums, extrema, sorting, norms)
OPS: dict[str, Callable[..., Any]] = {
    "aten._softmax.default": _softmax("softmax"), "aten._log_softmax.default": _softmax("log_softmax"),
    "aten._safe_softmax.default": safe_softmax,
    # reductions
    "aten.sum.default": _full_reduction("sum"), "aten.sum.dim_IntList": _reduction("sum"),
    "aten.mean.default": _full_reduction("mean"), "aten.mean.dim": _reduction("mean"),
    "aten.prod.default": _full_reduction("prod"), "aten.prod.dim_int": _reduction("prod"),
    "aten.amax.default": _reduction("amax"), "aten.amin.default": _reduction("amin"),
    "aten.max.default": _full_reduction("amax"), "aten.min.default": _full_reduction("amin"),
    "aten.max.dim": _extremum_dim("argmax"), "aten.min.dim": _extremum_dim("argmin"),
    "aten.argmax.default": _arg("argmax"), "aten.argmin.default": _arg("argmin"),
    "aten.any.default": _bool_reduction("any"), "aten.any.dim": _bool_reduction("any"),
    "aten.any.dims": _bool_reduction("any"), "aten.all.default": _bool_reduction("all"),
    "aten.all.dim": _bool_reduction("all"), "aten.all.dims": _bool_reduction("all"),
    "aten.var.correction": _var("var"), "aten.var.dim": _var("var"), "aten.std.correction": _var("std"),
    "aten.std.dim": _var("std"), "aten.cumsum.default": _cumulative("cumsum"),
    "aten.cumprod.default": _cumulative("cumprod"), "aten.logsumexp.default": _logsumexp,
    "aten.linalg_vector_norm.default": _vector_norm, "aten.var_mean.correction": _var_mean,
    "aten.sort.default": _sort, "aten.sort.stable": _sort, "aten.topk.default": _topk,
    "aten.diagonal.default": _diagonal,
}  # fmt: skip
