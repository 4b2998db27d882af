"""NumPy's door to the rules table: which NumPy ufunc or function is which rule.

``Dual.__array_ufunc__`` and ``Dual.__array_function__`` land here. This module
translates NumPy's call signatures into ``rules.apply(op, *arrays, **params)``
calls and holds no derivative: ``UFUNCS`` and ``FUNCTIONS`` are the whole map.
Anything not in them raises ``UnsupportedOpError`` naming the NumPy function,
never a generic ``TypeError``, and never a silent loss of tangents.
"""

from __future__ import annotations

import numbers
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from . import dual as _dual
from . import scipy_api
from .backend import array_namespace, is_array, namespace_of_type
from .dual import Dual, value
from .errors import UnsupportedOpError
from .rules import RULES, apply, as_array
from .rules.table import apply_small

# --- ufuncs ------------------------------------------------------------------------
# every rule named like a NumPy ufunc is that ufunc's rule (a new rule needs no entry here); the rest
# are NumPy's other names for a rule
UFUNCS: dict[np.ufunc, str] = {getattr(np, n): n for n in RULES if isinstance(getattr(np, n, None), np.ufunc)}
UFUNCS[np.radians] = "deg2rad"
UFUNCS[np.conjugate] = "conjugate"
UFUNCS[np.degrees] = "rad2deg"

_REDUCE = {np.add: "sum", np.multiply: "prod", np.maximum: "amax", np.minimum: "amin"}
_ACCUMULATE = {np.add: "cumsum", np.multiply: "cumprod"}


def _name(f: Any) -> str:
    """A NumPy or SciPy callable's public name (SciPy's ufuncs say they live in numpy)."""
    name = getattr(f, "__name__", repr(f))
    special = sys.modules.get("scipy.special")
    if isinstance(f, np.ufunc) and special is not None and getattr(special, name, None) is f:
        return f"scipy.special.{name}"
    mod = ".".join(p for p in (getattr(f, "__module__", None) or "numpy").split(".") if not p.startswith("_"))
    return f"{mod}.{name}"


_FAST = {Dual, np.ndarray, float, int, np.float64, np.float32}


def _known(x: Any) -> bool:
    return type(x) is Dual or isinstance(x, (numbers.Number, list, tuple)) or is_array(x)


def binary(ufunc: np.ufunc, a: Any, b: Any) -> Any:
    """``ufunc(a, b)`` for Dual's operators: straight to the rule when both operands are plain."""
    if type(a) in _FAST and type(b) in _FAST:
        name = UFUNCS.get(ufunc)
        if name is not None:
            return apply_small(name, a, b)
    return ufunc(a, b)


def array_ufunc(ufunc: np.ufunc, method: str, inputs: tuple, kwargs: dict) -> Any:
    if method in ("at", "reduceat"):
        raise UnsupportedOpError(
            f"{_name(ufunc)}.{method}",
            f"{method} updates in place, which cannot carry tangent lanes; build the result "
            "with np.where, indexing or a sum instead",
        )
    for x in inputs:
        if type(x) not in _FAST and not _known(x):
            return NotImplemented
    out = kwargs.pop("out", None) if kwargs else None
    if method == "__call__":
        name = UFUNCS.get(ufunc) or scipy_api.ufunc_rule(ufunc)
        if name is None:
            raise UnsupportedOpError(_name(ufunc))
        if kwargs:
            _no_kwargs(ufunc.__name__, kwargs)
        result = apply(name, *inputs)  # apply takes lists and tuples as arrays
    elif method == "reduce" and ufunc in _REDUCE:
        axis, keepdims = kwargs.pop("axis", 0), kwargs.pop("keepdims", False)
        a = _cast(as_array(inputs[0]), kwargs.pop("dtype", None))
        _no_kwargs(f"{ufunc.__name__}.reduce", kwargs)
        result = apply(_REDUCE[ufunc], a, axis=axis, keepdims=keepdims)
    elif method == "accumulate" and ufunc in _ACCUMULATE:
        axis = kwargs.pop("axis", 0)
        a = _cast(as_array(inputs[0]), kwargs.pop("dtype", None))
        _no_kwargs(f"{ufunc.__name__}.accumulate", kwargs)
        result = apply(_ACCUMULATE[ufunc], a, axis=axis)
    elif method == "outer" and (ufunc in UFUNCS or scipy_api.ufunc_rule(ufunc)):
        a, b = (as_array(v) for v in inputs)
        a = reshape(a, np.shape(a) + (1,) * np.ndim(b))
        result = apply(UFUNCS[ufunc], a, b)
    else:
        raise UnsupportedOpError(
            f"{_name(ufunc)}.{method}",
            f"the ufunc method {method!r} has no rule; write it with plain calls "
            "(e.g. np.add.at -> build the result with np.where or indexing)",
        )
    return _write_out(result, out, ufunc.__name__)


def _no_kwargs(what: str, kwargs: dict) -> None:
    kwargs = {k: v for k, v in kwargs.items() if v is not None and k != "casting"}
    if kwargs:
        raise UnsupportedOpError(
            f"numpy.{what} with {', '.join(k + '=' for k in kwargs)}",
            "these arguments are not supported on Duals; call it without them",
        )


def _write_out(result: Any, out: tuple | None, what: str) -> Any:
    """``out=``: a Dual target is rebound to the result (so ``x += y`` works); a plain
    array cannot hold tangent lanes, so writing a Dual there raises."""
    if out is None:
        return result
    (target,) = out
    if type(target) is Dual and type(result) is not Dual:  # e.g. a constant ufunc into a Dual
        raise UnsupportedOpError(f"numpy.{what} with out=", "write `y = f(x)` instead")
    if type(target) is Dual and type(result) is Dual:
        if isinstance(target.primal, np.generic):  # a NumPy scalar is immutable: `s += x` rebinds s, as in NumPy
            return result
        _writable(target)
        target.assign(result)  # in place, as NumPy: views of target see it, a view writes to its base
        return target
    if type(result) is not Dual and type(target) is not Dual:
        target[...] = result
        return target
    raise UnsupportedOpError(
        f"numpy.{what} with out=",
        "a plain array given as out= cannot hold the tangent lanes; write `y = f(x)` "
        "instead of `f(x, out=y)`",
    )


def _reject_out(what: str, out: Any) -> None:
    if out is not None:
        raise UnsupportedOpError(
            f"numpy.{what} with out=", "out= cannot hold tangent lanes; write `y = f(x)` instead"
        )


# --- helpers used by several entries ---------------------------------------------------
def reshape(x: Any, shape: Any, order: str = "C") -> Any:
    if order != "C":
        raise UnsupportedOpError(f"reshape with order={order!r}", "only order='C' is supported")
    shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
    out = apply("reshape", x, shape=shape)
    old = tuple(np.shape(x))
    return _as_view(out, x, lambda base: apply("reshape", base, shape=shape),
                    lambda base, v: base.assign(apply("reshape", v, shape=old)))


def transpose(x: Any, axes: Any = None) -> Any:
    axes = None if axes is None else tuple(axes)
    out = apply("transpose", x, axes=axes)
    back = None if axes is None else tuple(np.argsort(pos_axes(axes, len(axes))).tolist())
    return _as_view(out, x, lambda base: apply("transpose", base, axes=axes),
                    lambda base, v: base.assign(apply("transpose", v, axes=back)))


def getitem(x: Any, key: Any) -> Any:
    keys = key if isinstance(key, tuple) else (key,)
    if any(type(k) is Dual for k in keys):
        raise UnsupportedOpError(
            "indexing with a Dual", "index with integers, slices or plain integer/boolean arrays"
        )
    key = tuple(value(k) for k in keys)
    out = apply("getitem", x, key=key)
    return _as_view(out, x, lambda base: apply("getitem", base, key=key), lambda base, v: setitem(base, key, v))


def _as_view(out: Any, x: Any, read: Callable[[Dual], Any], write: Callable[[Dual, Dual], None]) -> Any:
    """Record that ``out`` is a NumPy view of ``x`` (basic indexing, reshape, transpose share
    memory), so writes through either side behave as in NumPy (see ``Dual.refresh``/``assign``)."""
    # (nested transforms: the values under every level share memory exactly where the outer ones do)
    if type(out) is Dual and type(x) is Dual and out.level == x.level and _shares(value(out), value(x)):
        out.view = (x, x.version, read, write)
    return out


def _shares(a: Any, b: Any) -> bool:
    if getattr(a, "base", None) is None:
        return False
    return np.may_share_memory(a, b) if type(a) is np.ndarray and type(b) is np.ndarray else True


def _writable(x: Dual) -> None:
    flags = getattr(x.primal, "flags", None)
    if flags is not None and not getattr(flags, "writeable", True):  # NumPy's read-only views
        raise ValueError("assignment destination is read-only")


def setitem(x: Dual, key: Any, val: Any) -> None:
    keys = key if isinstance(key, tuple) else (key,)
    _writable(x)
    new = apply("setitem", x, as_array(val), key=tuple(value(k) for k in keys))
    if type(new) is Dual:
        x.assign(new)
    else:  # x was a lower-level constant and val plain: nothing to carry
        x.primal = new
        x.version += 1


def astype(x: Any, dtype: Any) -> Any:
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return apply("astype", x, dtype=dtype)
    if dtype.kind == "c":
        raise TypeError("dualjac does not support complex values; keep real and imaginary parts apart")
    return value(x).astype(dtype)  # integer/bool casts are piecewise constant: zero derivative


def _moveaxis(a, source, destination):
    nd = np.ndim(a)
    src, dst = pos_axes(source, nd), pos_axes(destination, nd)
    if len(src) != len(dst):
        raise ValueError("`source` and `destination` arguments must have the same number of elements")
    order = [n for n in range(nd) if n not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return transpose(a, order)


def pos_axes(axis, nd):
    """``axis`` (int or sequence) as a tuple of nonnegative axes (``rules.neg_axes`` is the negative form)."""
    axis = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    for a in axis:
        if not -nd <= a < nd:
            raise np.exceptions.AxisError(a, nd)
    return tuple(a % nd for a in axis)


def _swapaxes(a, axis1, axis2):
    order = list(range(np.ndim(a)))
    i, j = pos_axes((axis1, axis2), len(order))
    order[i], order[j] = order[j], order[i]
    return transpose(a, order)


def _expand_dims(a, axis):
    axis = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    nd = np.ndim(a) + len(axis)
    axis = set(pos_axes(axis, nd))
    it = iter(np.shape(a))
    return reshape(a, tuple(1 if i in axis else next(it) for i in range(nd)))


def _squeeze(a, axis=None):
    shape = np.shape(a)
    if axis is None:
        axis = tuple(i for i, n in enumerate(shape) if n == 1)
    axis = set(pos_axes(axis, len(shape)))
    if any(shape[i] != 1 for i in axis):
        raise ValueError("cannot select an axis to squeeze out which has size not equal to one")
    return reshape(a, tuple(n for i, n in enumerate(shape) if i not in axis))


def _atleast(nd: int, where: Callable[[tuple], tuple]):
    def f(*arys):
        res = [a if np.ndim(a) >= nd else reshape(a, where(np.shape(a))) for a in arys]
        return res[0] if len(res) == 1 else tuple(res)

    return f


_atleast_1d = _atleast(1, lambda s: (1,) * (1 - len(s)) + s)
_atleast_2d = _atleast(2, lambda s: (1,) * (2 - len(s)) + s)
_atleast_3d = _atleast(3, lambda s: {0: (1, 1, 1), 1: (1,) + s + (1,), 2: s + (1,)}[len(s)])


def _flip(m, axis=None):
    nd = np.ndim(m)
    axes = set(range(nd)) if axis is None else set(pos_axes(axis, nd))
    return getitem(m, tuple(slice(None, None, -1) if i in axes else slice(None) for i in range(nd)))


def _split(ary, indices_or_sections, axis=0, *, strict=True):
    n = np.shape(ary)[axis]
    if isinstance(indices_or_sections, numbers.Integral):
        sections = int(indices_or_sections)
        if strict and n % sections:
            raise ValueError("array split does not result in an equal division")
        each, extra = divmod(n, sections)
        sizes = [each + 1] * extra + [each] * (sections - extra)
        bounds = np.cumsum([0] + sizes).tolist()
    else:
        bounds = [0] + [int(i) for i in indices_or_sections] + [n]
    pre = (slice(None),) * pos_axes(axis, np.ndim(ary))[0]
    return [getitem(ary, pre + (slice(a, b),)) for a, b in zip(bounds[:-1], bounds[1:])]


def _index_array(a: Any, indices: Any) -> Any:
    """Integer indices as an array of ``a``'s namespace (a list is accepted, as NumPy does)."""
    indices = value(indices)
    return array_namespace(value(a)).asarray(indices) if isinstance(indices, (list, tuple)) else indices


def _cast(a: Any, dtype: Any) -> Any:
    return a if dtype is None else astype(a, dtype)


def _concatenate(arrays, axis=0, out=None, dtype=None, casting=None):
    _reject_out("concatenate", out)
    arrays = tuple(_cast(as_array(a), dtype) for a in arrays)
    if axis is None:
        return apply("concatenate", *(reshape(a, (-1,)) for a in arrays), axis=0)
    return apply("concatenate", *arrays, axis=axis)


def _hstack(tup, dtype=None, casting=None):
    arrs = [_atleast_1d(as_array(a)) for a in tup]
    return _concatenate(arrs, axis=0 if np.ndim(arrs[0]) == 1 else 1, dtype=dtype)


def _vstack(tup, dtype=None, casting=None):
    return _concatenate([_atleast_2d(as_array(a)) for a in tup], axis=0, dtype=dtype)


def _stack(arrays, axis=0, out=None, dtype=None, casting=None):
    _reject_out("stack", out)
    return apply("stack", *(_cast(as_array(a), dtype) for a in arrays), axis=axis)


def _take(a, indices, axis=None, out=None, mode="raise"):
    _reject_out("take", out)
    indices = value(indices)
    if mode != "raise":  # out-of-range indices wrap or clip to a valid index first
        n = np.size(a) if axis is None else np.shape(a)[axis]
        xp = array_namespace(value(a))
        indices = xp.mod(xp.asarray(indices), n) if mode == "wrap" else xp.clip(xp.asarray(indices), 0, n - 1)
    return apply("take", a, indices=indices, axis=axis)


def _einsum_string(args: tuple) -> tuple[str, tuple]:
    """einsum's interleaved form ``(op, sublist, op, sublist, ..., [out])`` as ``(subscripts, ops)``."""
    n = len(args) // 2
    ops, subs = args[0 : 2 * n : 2], args[1 : 2 * n : 2]
    letters = lambda sub: "".join("..." if s is Ellipsis else _EINSUM_LETTERS[s] for s in sub)  # noqa: E731
    spec = ",".join(letters(s) for s in subs)
    return (spec + "->" + letters(args[-1]) if len(args) % 2 else spec), tuple(ops)


_EINSUM_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"  # NumPy's order for sublist ints


def _einsum(subscripts, *operands, out=None, optimize=False, dtype=None, **kwargs):
    _reject_out("einsum", out)
    _no_kwargs("einsum", kwargs)
    if not isinstance(subscripts, str):  # interleaved: einsum(x, [0, 1], y, [1, 2], [0, 2])
        subscripts, operands = _einsum_string((subscripts,) + operands)
    if dtype is not None:  # computed in dtype: the operands cast first
        operands = tuple(astype(o, dtype) for o in operands)
    return apply("einsum", *operands, subscripts=subscripts)


def _trace(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    _reject_out("trace", out)
    if dtype is not None:
        a = astype(a, dtype)
    return apply("trace", a, offset=offset, axis1=axis1, axis2=axis2)


def _pinv(a, rcond=None, hermitian=False, *, rtol=np._NoValue):
    # the cutoffs shape the primal; the rule's derivative holds where the rank is locally constant
    rtol = None if rtol is np._NoValue else rtol
    return apply("pinv", a, hermitian=hermitian, rcond=rcond, rtol=rtol)


def _reduction(name: str, *extra: str):
    def f(a, axis=None, dtype=None, out=None, keepdims=False, **kw):
        _reject_out(name, out)
        params = {k: kw.pop(k) for k in extra if k in kw}
        _no_kwargs(name, {k: v for k, v in kw.items() if v is not np._NoValue})
        return apply(name, _cast(as_array(a), dtype), axis=axis, keepdims=bool(keepdims), **params)

    return f


def _minmax(name: str):
    def f(a, axis=None, out=None, keepdims=False, **kw):
        _reject_out(name, out)
        _no_kwargs(name, {k: v for k, v in kw.items() if v is not np._NoValue})
        return apply(name, a, axis=axis, keepdims=bool(keepdims))

    return f


def _cumulative(name: str):
    def f(a, axis=None, dtype=None, out=None):
        _reject_out(name, out)
        a = _cast(as_array(a), dtype)
        if axis is None:
            a, axis = reshape(a, (-1,)), 0
        return apply(name, a, axis=axis)

    return f


def _clip(a, a_min=np._NoValue, a_max=np._NoValue, out=None, *, min=np._NoValue, max=np._NoValue, **kw):
    _reject_out("clip", out)
    lo = a_min if a_min is not np._NoValue else min
    hi = a_max if a_max is not np._NoValue else max
    lo = None if lo is np._NoValue else lo
    hi = None if hi is np._NoValue else hi
    return apply("clip", a, lo, hi)


def _norm(x, ord=None, axis=None, keepdims=False):
    return apply("norm", x, ord=ord, axis=axis, keepdims=keepdims)


def _like(fill: Callable[..., Any]):
    def f(a, dtype=None, order="K", subok=True, shape=None, **kw):
        v = value(a)
        return fill(v, dtype=dtype, shape=shape)

    return f


def _on_value(f: Callable[..., Any]):
    """Integer- or boolean-valued functions (argmax, argsort, isclose, ...) see only values."""

    def g(*args, **kwargs):
        return f(*(value(a) for a in args), **{k: value(v) for k, v in kwargs.items()})

    return g


# --- NumPy functions -------------------------------------------------------------------
# value: a rule name (NumPy's signature is the rule's) or an adapter that only translates arguments
FUNCTIONS: dict[Callable[..., Any], str | Callable[..., Any]] = {
    # reductions
    np.sum: _reduction("sum"),
    np.mean: _reduction("mean"),
    np.prod: _reduction("prod"),
    np.std: _reduction("std", "ddof"),
    np.var: _reduction("var", "ddof"),
    np.max: _minmax("amax"),
    np.amax: _minmax("amax"),
    np.min: _minmax("amin"),
    np.amin: _minmax("amin"),
    np.cumsum: _cumulative("cumsum"),
    np.cumprod: _cumulative("cumprod"),
    np.linalg.norm: _norm,
    # linear algebra
    np.dot: lambda a, b, out=None: (_reject_out("dot", out), apply("dot", a, b))[1],
    np.vdot: lambda a, b: apply("vdot", a, b),
    np.inner: lambda a, b: apply("inner", a, b),
    np.outer: lambda a, b, out=None: (_reject_out("outer", out), apply("outer", a, b))[1],
    np.tensordot: lambda a, b, axes=2: apply("tensordot", a, b, axes=axes),
    np.einsum: _einsum,
    np.trace: _trace,
    np.diagonal: lambda a, offset=0, axis1=0, axis2=1: apply(
        "diagonal", a, offset=offset, axis1=axis1, axis2=axis2
    ),
    np.linalg.solve: lambda a, b: apply("solve", a, b),
    np.linalg.inv: lambda a: apply("inv", a),
    np.linalg.det: lambda a: apply("det", a),
    np.linalg.slogdet: lambda a: apply("slogdet", a),
    np.linalg.pinv: _pinv,
    np.linalg.cholesky: lambda a, upper=False: apply("cholesky", a, upper=upper),
    np.linalg.matmul: lambda a, b: apply("matmul", a, b),
    np.tril: lambda m, k=0: apply("tril", m, k=k),
    np.triu: lambda m, k=0: apply("triu", m, k=k),
    # shape and selection
    np.reshape: lambda a, shape=None, order="C", **kw: reshape(a, kw.get("newshape", shape), order),
    np.ravel: lambda a, order="C": reshape(a, (-1,), order),
    np.transpose: transpose,
    np.permute_dims: transpose,
    np.swapaxes: _swapaxes,
    np.moveaxis: _moveaxis,
    np.squeeze: _squeeze,
    np.expand_dims: _expand_dims,
    np.atleast_1d: _atleast_1d,
    np.atleast_2d: _atleast_2d,
    np.atleast_3d: _atleast_3d,
    np.broadcast_to: lambda array, shape, subok=False: apply(
        "broadcast_to", array, shape=tuple(np.broadcast_shapes(tuple(shape)))
    ),
    np.concatenate: _concatenate,
    np.stack: _stack,
    np.hstack: _hstack,
    np.vstack: _vstack,
    np.split: _split,
    np.array_split: lambda ary, indices_or_sections, axis=0: _split(
        ary, indices_or_sections, axis, strict=False
    ),
    np.tile: lambda A, reps: apply("tile", A, reps=(reps,) if np.ndim(reps) == 0 else tuple(reps)),
    np.repeat: lambda a, repeats, axis=None: apply("repeat", a, repeats=value(repeats), axis=axis),
    np.flip: _flip,
    np.fliplr: lambda m: _flip(m, 1) if np.ndim(m) >= 2 else np.fliplr(value(m)),  # NumPy's error
    np.flipud: lambda m: _flip(m, 0) if np.ndim(m) >= 1 else np.flipud(value(m)),
    np.roll: lambda a, shift, axis=None: apply("roll", a, shift=shift, axis=axis),
    np.pad: lambda array, pad_width, mode="constant", **kw: apply(
        "pad", array, pad_width=pad_width, mode=mode, **kw
    ),
    np.where: lambda condition, *xy: (
        np.where(value(condition)) if not xy else apply("where", value(condition), *xy)
    ),
    np.clip: _clip,
    np.take: _take,
    np.take_along_axis: lambda arr, indices, axis=-1: apply(
        "take_along_axis", arr, indices=_index_array(arr, indices), axis=axis
    ),
    np.sort: lambda a, axis=-1, kind=None, order=None, stable=None: apply("sort", a, axis=axis),
    np.round: lambda a, decimals=0, out=None: (_reject_out("round", out), apply("round", a, decimals=decimals))[1],
    np.around: lambda a, decimals=0, out=None: (_reject_out("around", out), apply("round", a, decimals=decimals))[1],
    np.copy: lambda a, order="K", subok=False: apply("copy", a),
    # constants shaped like an array: no derivative to carry
    np.zeros_like: _like(np.zeros_like),
    np.ones_like: _like(np.ones_like),
    np.empty_like: _like(np.empty_like),
    np.full_like: lambda a, fill_value, dtype=None, order="K", subok=True, shape=None: np.full_like(
        value(a), fill_value, dtype=dtype, shape=shape
    ),
    # inspection and integer/boolean results: computed on values
    np.shape: lambda a: tuple(value(a).shape),
    np.ndim: lambda a: value(a).ndim,
    np.size: lambda a, axis=None: np.size(value(a), axis),
    np.result_type: _on_value(np.result_type),
    np.argmax: _on_value(np.argmax),
    np.argmin: _on_value(np.argmin),
    np.argsort: _on_value(np.argsort),
    np.nonzero: _on_value(np.nonzero),
    np.count_nonzero: _on_value(np.count_nonzero),
    np.all: _on_value(np.all),
    np.any: _on_value(np.any),
    np.isclose: _on_value(np.isclose),
    np.allclose: _on_value(np.allclose),
    np.array_equal: _on_value(np.array_equal),
    np.iscomplexobj: lambda x: False,
    np.isrealobj: lambda x: True,
}


def array_function(func: Callable[..., Any], types: tuple, args: tuple, kwargs: dict) -> Any:
    if not all(t is Dual or issubclass(t, np.ndarray) or is_array_type(t) for t in types):
        return NotImplemented
    handler = FUNCTIONS.get(func)
    if handler is None:
        raise UnsupportedOpError(_name(func))
    return handler(*args, **kwargs)


def is_array_type(t: type) -> bool:
    return namespace_of_type(t) is not None


# Dual's NumPy doors (``__array_ufunc__``, ``__array_function__``, indexing, ``astype``) lead here.
# The tables continue in numpy_compose (compositions, decompositions, signal functions, imported by
# the package) and, once SciPy is imported, scipy_api (scipy.special's ufuncs).
_dual._api = sys.modules[__name__]
