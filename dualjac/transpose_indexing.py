"""Reverse mode's transposes of the linear primitives that move elements: reshapes, transposes,
broadcasts, indexing and assignment, gathers (take, pad, repeat, roll, ...), joins and ``where``.

Each function records one node on a ``dualjac.tape.Tape`` (``record``) with its transpose; most
transposes scatter a cotangent back to where its elements came from. Separate from
``dualjac.transposes`` (the arithmetic primitives; it merges this module's ``FUNCTIONS`` into the
tape's table) because these share index bookkeeping (``gather``'s index arrays, basic keys) and
none of the products' algebra.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import numpy_api
from .backend import array_namespace
from .errors import NonLinearError, NoTransposeError
from .rules import apply
from .tape import Linear, dtype_of, is_linear, is_zero, kept, record, shape_of, unbroadcast


def reshape(x: Linear, shape: Any, order: str = "C", **kw: Any) -> Linear:
    if order != "C":
        raise NoTransposeError(f"reshape with order={order!r}")
    shape = kw.get("newshape", shape)
    shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
    new = np.broadcast_to(np.zeros((), dtype=np.int8), x.shape).reshape(shape).shape
    xs = x.shape
    return record([x], lambda v: v.reshape(new), lambda ct: (ct.reshape(ct.shape[:1] + xs),), new, x.dtype, "reshape")


def _transpose(x: Linear, axes: Any = None) -> Linear:
    nd = x.ndim
    perm = tuple(range(nd))[::-1] if axes is None else tuple(int(a) % nd for a in axes)
    inv = tuple(int(i) for i in np.argsort(perm))
    shape = tuple(x.shape[p] for p in perm)
    return record(
        [x],
        lambda v: np.transpose(v, perm),
        lambda ct: (np.transpose(ct, (0,) + tuple(1 + i for i in inv)),),
        shape,
        x.dtype,
        "transpose",
    )


def _broadcast_to(x: Linear, shape: Any, subok: bool = False) -> Linear:
    shape = tuple(shape)
    xs = x.shape
    return record(
        [x], lambda v: np.broadcast_to(v, shape), lambda ct: (unbroadcast(ct, xs),), shape, x.dtype, "broadcast_to"
    )


def _is_basic_key(key: tuple) -> bool:
    return all(k is None or k is Ellipsis or isinstance(k, (slice, numbers.Integral)) for k in key)


def _put(z: Any, key: tuple, v: Any) -> Any:
    """``z[key] = v`` for a fresh zero cotangent ``z``; through the rules when ``v`` is a Dual
    (forward-over-reverse), whose lanes a plain array cannot hold."""
    if type(v) is np.ndarray or not hasattr(v, "primal"):
        z[key] = v
        return z
    return apply("setitem", z, v, key=key)


def getitem(x: Linear, key: Any) -> Linear:
    key = key if isinstance(key, tuple) else (key,)
    if any(type(k) is Linear for k in key):
        raise NonLinearError("indexing with a tangent", "an index is not differentiable")
    key = tuple(numpy_api.value(k) for k in key)
    if not _is_basic_key(key):
        return _gather(x, lambda ia: ia[key], "getitem")
    shape = np.broadcast_to(np.zeros((), dtype=np.int8), x.shape)[key].shape
    xs, dtype = x.shape, x.dtype

    def transpose(ct):
        z = array_namespace(ct).zeros(ct.shape[:1] + xs, dtype=ct.dtype if hasattr(ct, "dtype") else dtype)
        return (_put(z, (slice(None),) + key, ct),)

    return record([x], lambda v: v[key], transpose, shape, x.dtype, "getitem")


def setitem(x: Linear, key: Any, value: Any) -> Linear:
    """``x[key] = value`` as a new node: the slot takes ``value`` (a tangent, or a zero constant)."""
    key = key if isinstance(key, tuple) else (key,)
    key = tuple(kept(numpy_api.value(k)) for k in key)
    idx = np.arange(x.size).reshape(x.shape)[key]
    slot, flat = idx.shape, idx.reshape(-1)
    if np.unique(flat).size != flat.size:
        raise NoTransposeError("assignment to a tangent with repeated indices", "the last write wins")
    ins = [x]
    if is_linear(value):
        ins.append(value)
    elif not is_zero(value):
        raise NonLinearError("writing a non-zero constant into a tangent", "a constant slot is affine, not linear")
    vs, xs = shape_of(value), x.shape

    def fwd(v, *w):
        out = v.copy()
        out[key] = w[0] if w else 0
        return out

    def transpose(ct):
        K = ct.shape[0]
        c2 = ct.reshape(K, -1)
        cx = c2.copy()
        cx[:, flat] = 0  # the slot's old contents were overwritten: no cotangent flows to them
        if len(ins) == 1:
            return (cx.reshape((K,) + xs),)
        cv = c2[:, flat].reshape((K,) + slot)
        cv = unbroadcast(cv, vs[-len(slot) :] if len(vs) > len(slot) else vs).reshape((K,) + vs)
        return (cx.reshape((K,) + xs), cv)

    return record(ins, fwd, transpose, x.shape, x.dtype, "setitem")


def _gather(x: Linear, select: Callable[[Any], Any], what: str) -> Linear:
    """An op that only picks (and repeats) elements of x, as ``select`` picks them from an index array:
    the transpose adds each cotangent element back into the position it came from (a scatter-add).
    ``select`` may also place the sentinel index ``x.size`` (a zero: constant padding)."""
    n = x.size
    idx = np.asarray(select(np.arange(n).reshape(x.shape)))
    shape, flat, xs = idx.shape, idx.reshape(-1), x.shape
    counts = np.bincount(flat, minlength=n + 1)
    injective = counts[:n].max(initial=0) <= 1

    def fwd(v):
        xp = array_namespace(v)
        ext = xp.concatenate([v.reshape(-1), xp.zeros(1, dtype=v.dtype)])
        return ext[xp.asarray(flat) if xp is not np else flat].reshape(shape)

    def transpose(ct):
        K = ct.shape[0]
        ct2 = ct.reshape(K, -1)
        if type(ct2) is np.ndarray:
            z = np.zeros((K, n + 1), dtype=ct2.dtype)
            if injective:
                z[:, flat] = ct2
            else:
                np.add.at(z, (slice(None), flat), ct2)
            return (z[:, :n].reshape((K,) + xs),)
        if not injective:  # a Dual cotangent (nested transforms): a product with the 0/1 selection matrix
            onehot = np.zeros((flat.size, n + 1), dtype=np.result_type(dtype_of(ct)))
            onehot[np.arange(flat.size), flat] = 1
            return ((ct2 @ onehot[:, :n]).reshape((K,) + xs),)
        z = np.zeros((K, n), dtype=np.result_type(dtype_of(ct)))
        real = np.flatnonzero(flat < n)  # the padding's positions (index n, repeated) take no cotangent
        return (_put(z, (slice(None), flat[real]), ct2[:, real]).reshape((K,) + xs),)

    return record([x], fwd, transpose, shape, x.dtype, what)


def _take(x: Linear, indices: Any, axis: Any = None, out: Any = None, mode: str = "raise") -> Linear:
    indices = numpy_api.value(indices)
    return _gather(x, lambda ia: np.take(ia, indices, axis=axis, mode=mode), "take")


def _take_along_axis(x: Linear, indices: Any, axis: Any = -1) -> Linear:
    indices = numpy_api.value(indices)
    return _gather(x, lambda ia: np.take_along_axis(ia, indices, axis=axis), "take_along_axis")


def _pad(x: Linear, pad_width: Any, mode: str = "constant", **kw: Any) -> Linear:
    if mode == "constant":
        if any(v for v in np.ravel(kw.get("constant_values", 0))):
            raise NonLinearError("padding a tangent with a non-zero constant", "the result is affine, not linear")
        return _gather(x, lambda ia: np.pad(ia, pad_width, mode="constant", constant_values=x.size), "pad")
    if mode in ("edge", "reflect", "symmetric", "wrap") and kw.get("reflect_type", "even") == "even":
        return _gather(x, lambda ia: np.pad(ia, pad_width, mode=mode, **kw), "pad")
    raise NoTransposeError(
        f"numpy.pad with mode={mode!r} {kw or ''}".strip(), "only padding by copies of elements has one"
    )


def _concatenate(arrays: Sequence[Any], axis: int = 0, **kw: Any) -> Linear:
    arrays = list(arrays)
    if axis is None:
        arrays, axis = [a.reshape(-1) if is_linear(a) else np.reshape(a, -1) for a in arrays], 0
    nd = len(shape_of(arrays[0]))
    a = axis - nd if axis >= 0 else axis
    sizes = [shape_of(x)[a] for x in arrays]
    bounds = np.cumsum([0] + sizes).tolist()
    ins = [x for x in arrays if is_linear(x)]
    for x in arrays:
        if not is_linear(x) and not is_zero(x):
            raise NonLinearError("concatenating a tangent with a non-zero constant", "the result is affine")
    where = [i for i, x in enumerate(arrays) if is_linear(x)]
    consts = {i: x for i, x in enumerate(arrays) if not is_linear(x)}
    shape = list(shape_of(ins[0]))
    shape[a] = bounds[-1]
    dtype = np.result_type(*[dtype_of(x) for x in arrays])
    tail = (slice(None),) * (-a - 1)

    def fwd(*vs):
        it = iter(vs)
        return np.concatenate([next(it) if i in where else consts[i] for i in range(len(arrays))], axis=a)

    def transpose(ct):
        return [ct[(Ellipsis, slice(bounds[i], bounds[i + 1])) + tail] for i in where]

    return record(ins, fwd, transpose, tuple(shape), dtype, "concatenate")


def _stack(arrays: Sequence[Any], axis: int = 0, **kw: Any) -> Linear:
    arrays = list(arrays)
    nd = len(shape_of(arrays[0])) + 1
    a = axis - nd if axis >= 0 else axis
    return _concatenate([np.expand_dims(x, a) for x in arrays], axis=a)


def _where(cond: Any, x: Any, y: Any) -> Linear:
    cond = kept(numpy_api.value(cond))
    ins, parts = [], []
    for v, pick in ((x, True), (y, False)):
        if is_linear(v):
            ins.append(v)
            parts.append((pick, v.shape))
        elif not is_zero(v):
            raise NonLinearError("where() between a tangent and a non-zero constant", "the result is affine")
    shape = np.broadcast_shapes(np.shape(cond), shape_of(x), shape_of(y))
    dtype = np.result_type(dtype_of(x), dtype_of(y))
    zero = np.zeros((), dtype=dtype)

    def fwd(*vs):
        it = iter(vs)
        a = next(it) if is_linear(x) else zero
        b = next(it) if is_linear(y) else zero
        return np.where(cond, a, b)

    def transpose(ct):
        return [unbroadcast(np.where(cond, ct, 0.0) if pick else np.where(cond, 0.0, ct), s) for pick, s in parts]

    return record(ins, fwd, transpose, shape, dtype, "where")


def _masked(m: Linear, mask: Any, what: str) -> Linear:
    return _where(mask, m, np.zeros((), dtype=m.dtype))


# NumPy functions recorded here; dualjac.transposes merges them into dualjac.tape.FUNCTIONS
FUNCTIONS: dict[Callable[..., Any], Callable[..., Any]] = {
    np.reshape: reshape,
    np.transpose: _transpose,
    np.broadcast_to: _broadcast_to,
    np.concatenate: _concatenate,
    np.stack: _stack,
    np.take: _take,
    np.take_along_axis: _take_along_axis,
    np.where: _where,
    np.pad: _pad,
    np.repeat: lambda a, repeats, axis=None: _gather(a, lambda ia: np.repeat(ia, repeats, axis=axis), "repeat"),
    np.tile: lambda A, reps: _gather(A, lambda ia: np.tile(ia, reps), "tile"),
    np.roll: lambda a, shift, axis=None: _gather(a, lambda ia: np.roll(ia, shift, axis=axis), "roll"),
    np.diagonal: lambda a, offset=0, axis1=0, axis2=1: _gather(
        a, lambda ia: np.diagonal(ia, offset, axis1, axis2), "diagonal"
    ),
    np.tril: lambda m, k=0: _masked(m, np.tril(np.ones(m.shape[-2:], dtype=bool), k), "tril"),
    np.triu: lambda m, k=0: _masked(m, np.triu(np.ones(m.shape[-2:], dtype=bool), k), "triu"),
}
