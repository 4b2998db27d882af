"""Reverse mode's transposes of the arithmetic linear primitives, and the table that wires them in.

Here: ufuncs on a ``Linear`` (add, subtract, scaling by a constant, negation, matmul), products with a
constant (tensordot, einsum, dot, solve) and reductions (sum, mean, cumsum). Each records one node on
a ``dualjac.tape.Tape`` with its transpose. Importing this module fills ``dualjac.tape.FUNCTIONS``
and ``METHODS`` with these, the element-moving ones of ``dualjac.transpose_indexing``, and registers
conv's symbolic rules (``dualjac.transpose_conv``) in ``rules.SYMBOLIC``: reverse mode imports it
before it traces. A NumPy function missing from the table raises ``NoTransposeError``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from . import transpose_conv, transpose_indexing
from .errors import NonLinearError, NoTransposeError
from .rules import SYMBOLIC
from .tape import FUNCTIONS, METHODS, Linear, dtype_of, is_linear, is_zero, kept, record, shape_of, unbroadcast
from .transpose_indexing import getitem, reshape, setitem


# --- ufuncs ------------------------------------------------------------------------------
def _ufunc(ufunc: np.ufunc, method: str, inputs: tuple, kwargs: dict) -> Any:
    if kwargs.get("out") is not None:
        raise NoTransposeError(f"numpy.{ufunc.__name__} with out=", "write `y = f(x)` instead")
    if method == "reduce" and ufunc is np.add:
        return _sum(inputs[0], axis=kwargs.get("axis", 0), keepdims=kwargs.get("keepdims", False))
    if method != "__call__":
        raise NoTransposeError(f"numpy.{ufunc.__name__}.{method}")
    name = ufunc.__name__
    if name in ("add", "subtract"):
        return _additive(name, *inputs)
    if name == "multiply":
        return _scale(*inputs)
    if name in ("divide", "true_divide"):
        x, c = inputs
        if is_linear(c):
            raise NonLinearError("dividing by a tangent", "1/dx is not linear in dx")
        return _scale(x, c, divide=True)
    if name in ("negative", "positive"):
        (x,) = inputs
        s = -1 if name == "negative" else 1
        return record([x], lambda v: v * s if s < 0 else v, lambda ct: (-ct if s < 0 else ct,), x.shape, x.dtype, name)
    if name == "matmul":
        return _matmul(*inputs)
    if name == "conjugate":
        return inputs[0]
    raise NoTransposeError(f"numpy.{name}")


def _additive(name: str, a: Any, b: Any) -> Linear:
    ins, signs, shapes = [], [], []
    for x, s in ((a, 1), (b, -1 if name == "subtract" else 1)):
        if is_linear(x):
            ins.append(x)
            signs.append(s)
            shapes.append(x.shape)
        elif not is_zero(x):
            raise NonLinearError(
                f"{name} of a tangent and a non-zero constant", "a tangent plus a constant is affine, not linear"
            )
    shape = np.broadcast_shapes(shape_of(a), shape_of(b))
    dtype = np.result_type(dtype_of(a), dtype_of(b))

    def fwd(*vs):
        out = vs[0] if signs[0] > 0 else -vs[0]
        for v, s in zip(vs[1:], signs[1:]):
            out = out + v if s > 0 else out - v
        return np.broadcast_to(out, shape) if tuple(np.shape(out)) != shape else out

    def transpose(ct):
        return [unbroadcast(ct if s > 0 else -ct, sh) for s, sh in zip(signs, shapes)]

    return record(ins, fwd, transpose, shape, dtype, name)


def _scale(a: Any, b: Any, divide: bool = False) -> Linear:
    """``x * c`` or ``x / c`` for a tangent x and a constant c (either order for *)."""
    if is_linear(a) and is_linear(b):
        raise NonLinearError("a product of two tangents", "dx * dy is not linear (it is second order)")
    x, c = (a, b) if is_linear(a) else (b, a)
    c = kept(c)
    shape = np.broadcast_shapes(x.shape, shape_of(c))
    dtype = np.result_type(x.dtype, dtype_of(c))
    xs = x.shape
    if divide:
        return record([x], lambda v: v / c, lambda ct: (unbroadcast(ct / c, xs),), shape, dtype, "divide")
    return record([x], lambda v: v * c, lambda ct: (unbroadcast(ct * c, xs),), shape, dtype, "multiply")


# --- products ----------------------------------------------------------------------------
def _swap(m: Any) -> Any:
    return np.swapaxes(m, -1, -2)


def _matmul(a: Any, b: Any) -> Linear:
    if is_linear(a) and is_linear(b):
        raise NonLinearError("a matrix product of two tangents", "dx @ dy is not linear (it is second order)")
    sa, sb = shape_of(a), shape_of(b)
    shape = _matmul_shape(sa, sb)
    dtype = np.result_type(dtype_of(a), dtype_of(b))
    if is_linear(a):
        c = kept(b)

        def transpose(ct):  # ct (K, ..., m, p) against c: the cotangent of a
            if len(sb) == 1:
                if len(sa) == 1:
                    return (ct[..., None] * c,)
                return (unbroadcast(ct[..., :, None] * c, sa),)
            if len(sa) == 1:
                return (unbroadcast((ct[..., None, :] @ _swap(c))[..., 0, :], sa),)
            if getattr(c, "ndim", 0) == 2 and type(c) is not Linear and type(ct) is np.ndarray:
                return (unbroadcast((ct.reshape(-1, ct.shape[-1]) @ c.T).reshape(ct.shape[:-1] + (sb[0],)), sa),)
            return (unbroadcast(ct @ _swap(c), sa),)

        return record([a], lambda v: v @ c, transpose, shape, dtype, "matmul")
    c = kept(a)

    def transpose_b(ct):  # the cotangent of b
        if len(sa) == 1:
            if len(sb) == 1:
                return (ct[..., None] * c,)
            return (unbroadcast(c[:, None] * ct[..., None, :], sb),)
        if len(sb) == 1:
            return (unbroadcast((ct[..., None, :] @ c)[..., 0, :], sb),)
        return (unbroadcast(_swap(c) @ ct, sb),)

    return record([b], lambda v: c @ v, transpose_b, shape, dtype, "matmul")


def _matmul_shape(sa: tuple, sb: tuple) -> tuple:
    """The shape of ``a @ b`` (NumPy's rules for 1-D operands; the primal has checked the sizes)."""
    if len(sa) == 1 or len(sb) == 1:
        return tuple(sb[:-2] + sb[-1:]) if len(sb) > 1 else tuple(sa[:-1])
    return tuple(np.broadcast_shapes(sa[:-2], sb[:-2])) + (sa[-2], sb[-1])


def _tensordot(a: Any, b: Any, axes: Any = 2) -> Linear:
    if is_linear(a) and is_linear(b):
        raise NonLinearError("tensordot of two tangents", "it is not linear (it is second order)")
    from .rules.linalg import tensordot_axes

    sa, sb = shape_of(a), shape_of(b)
    aa, ab = tensordot_axes(len(sa), len(sb), axes)
    afree = [i for i in range(len(sa)) if i not in aa]
    bfree = [j for j in range(len(sb)) if j not in ab]
    shape = tuple(sa[i] for i in afree) + tuple(sb[j] for j in bfree)
    dtype = np.result_type(dtype_of(a), dtype_of(b))
    na = len(afree)
    if is_linear(a):
        c = kept(b)

        def transpose(ct):  # (K, *a_free, *b_free) . c over b_free -> (K, *a_free, *[b's contracted, sorted])
            r = np.tensordot(ct, c, axes=(list(range(1 + na, ct.ndim)), bfree))
            order = afree + [aa[ab.index(j)] for j in sorted(ab)]  # r's axes (after K) as axes of a
            return (np.transpose(r, (0,) + tuple(1 + order.index(i) for i in range(len(sa)))),)

        return record([a], lambda v: np.tensordot(v, c, axes=(aa, ab)), transpose, shape, dtype, "tensordot")
    c = kept(a)

    def transpose_b(ct):  # c over a_free with ct -> (*[a's contracted, sorted], K, *b_free)
        r = np.tensordot(c, ct, axes=(afree, list(range(1, 1 + na))))
        r = np.moveaxis(r, len(aa), 0)
        order = [ab[aa.index(i)] for i in sorted(aa)] + bfree
        return (np.transpose(r, (0,) + tuple(1 + order.index(j) for j in range(len(sb)))),)

    return record([b], lambda v: np.tensordot(c, v, axes=(aa, ab)), transpose_b, shape, dtype, "tensordot")


def _einsum(subscripts: str, *ops: Any, optimize: Any = False, **kw: Any) -> Linear:
    from .rules.linalg import einsum_parts

    lin = [i for i, o in enumerate(ops) if is_linear(o)]
    if len(lin) != 1:
        raise NonLinearError("einsum of several tangents", "it is not linear (it is second order)")
    (i,) = lin
    ins, out = einsum_parts(subscripts)
    ins, out = _expand_ellipsis(ins, out, [shape_of(o) for o in ops])
    if len(set(ins[i])) != len(ins[i]):
        raise NoTransposeError("einsum with a repeated index on a tangent (a diagonal)", "use mode='forward'")
    t = ops[i]
    ops = tuple(o if k == i else kept(o) for k, o in enumerate(ops))
    res = np.einsum(subscripts, *[np.zeros(shape_of(o), dtype=dtype_of(o)) if k == i else o for k, o in enumerate(ops)])
    shape, dtype = res.shape, res.dtype
    z = next(c for c in "ZYXWVUTSRQPONMLKJIHGFEDCBA" if c not in "".join(ins) + out)
    sizes: dict[str, int] = {}
    for lab, o in zip(ins, ops):
        for c, n in zip(lab, shape_of(o)):
            sizes[c] = max(n, sizes.get(c, 1))  # a label of size 1 on one operand broadcasts
    labels = "".join(c for c in ins[i] if c in out or any(c in s for k, s in enumerate(ins) if k != i))
    spec = ",".join([z + out] + [s for k, s in enumerate(ins) if k != i]) + "->" + z + labels
    others = [o for k, o in enumerate(ops) if k != i]

    def transpose(ct):
        r = np.einsum(spec, ct, *others, optimize=optimize)
        if labels != ins[i]:  # labels summed only on the tangent's side: the transpose broadcasts over them
            r = r.reshape(r.shape[:1] + tuple(sizes[c] if c in labels else 1 for c in ins[i]))
            r = np.broadcast_to(r, r.shape[:1] + tuple(sizes[c] for c in ins[i]))
        return (unbroadcast(r, t.shape),)

    def fwd(v):
        return np.einsum(subscripts, *[v if k == i else o for k, o in enumerate(ops)], optimize=optimize)

    return record([t], fwd, transpose, shape, dtype, "einsum")


def _expand_ellipsis(ins: list[str], out: str, shapes: list[tuple]) -> tuple[list[str], str]:
    if "..." not in "".join(ins) + out:
        return ins, out
    free = [c for c in "abcdefghijklmnopqrstuvwxyz" if c not in "".join(ins) + out]
    n = max(len(s) - len(i.replace("...", "")) for i, s in zip(ins, shapes) if "..." in i)
    ell = "".join(free[:n])
    new = []
    for i, s in zip(ins, shapes):
        k = len(s) - len(i.replace("...", ""))
        new.append(i.replace("...", ell[n - k :]) if "..." in i else i)
    return new, out.replace("...", ell)


# --- reductions --------------------------------------------------------------------------
def _axes_of(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(-ndim, 0))
    axis = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    return tuple(sorted(a - ndim if a >= 0 else a for a in axis))


def _sum(x: Linear, axis: Any = None, keepdims: bool = False, dtype: Any = None, out: Any = None, **kw) -> Linear:
    ax = _axes_of(axis, x.ndim)
    dims = tuple(1 if i - x.ndim in ax else n for i, n in enumerate(x.shape))
    shape = dims if keepdims else tuple(n for i, n in enumerate(x.shape) if i - x.ndim not in ax)
    xs = x.shape

    def transpose(ct):
        return (np.broadcast_to(ct.reshape(ct.shape[:1] + dims), ct.shape[:1] + xs),)

    return record([x], lambda v: np.sum(v, axis=ax, keepdims=keepdims), transpose, shape, x.dtype, "sum")


def _mean(x: Linear, axis: Any = None, keepdims: bool = False, dtype: Any = None, out: Any = None, **kw) -> Linear:
    n = math.prod(x.shape[a] for a in _axes_of(axis, x.ndim))
    return _scale(_sum(x, axis=axis, keepdims=keepdims), 1.0 / n if n else math.nan)


def _cumsum(x: Linear, axis: Any = None, dtype: Any = None, out: Any = None) -> Linear:
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    a = _axes_of(axis, x.ndim)[0]

    def transpose(ct):  # the transpose of a running sum is the running sum from the other end
        return (np.flip(np.cumsum(np.flip(ct, axis=a), axis=a), axis=a),)

    return record([x], lambda v: np.cumsum(v, axis=a), transpose, x.shape, x.dtype, "cumsum")


def _solve(a: Any, b: Any) -> Linear:
    if is_linear(a):
        raise NoTransposeError("np.linalg.solve with a tangent matrix", "dA enters solve's rule as dA @ X first")
    a = kept(a)
    sb = b.shape
    vec = len(sb) == 1

    def transpose(ct):  # X = A^-1 B: the cotangent of B is A^-T ct
        if vec:
            return (np.swapaxes(np.linalg.solve(_swap(a), np.swapaxes(ct, 0, -1)), 0, -1),)
        return (unbroadcast(np.linalg.solve(_swap(a), ct), sb),)

    sa = shape_of(a)
    shape = sa[:-2] + sa[-1:] if vec else tuple(np.broadcast_shapes(sa[:-2], sb[:-2])) + sb[-2:]
    return record([b], lambda v: np.linalg.solve(a, v), transpose, shape, np.result_type(dtype_of(a), b.dtype), "solve")


def _copy(x: Linear, *a: Any, **k: Any) -> Linear:
    return x.copy()


def _zeros_like(a: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None) -> Any:
    return np.zeros(shape_of(a) if shape is None else shape, dtype=dtype or dtype_of(a))


def _result_type(*xs: Any) -> Any:
    return np.result_type(*[dtype_of(x) for x in xs])


def _dot(a: Any, b: Any) -> Linear:
    na, nb = len(shape_of(a)), len(shape_of(b))
    if na == 0 or nb == 0:
        return _scale(a, b)
    return _tensordot(a, b, axes=([na - 1], [max(nb - 2, 0)]))


FUNCTIONS.update(transpose_indexing.FUNCTIONS)
FUNCTIONS.update(
    {
        np.sum: _sum,
        np.mean: _mean,
        np.cumsum: _cumsum,
        np.tensordot: _tensordot,
        np.einsum: _einsum,
        np.linalg.solve: _solve,
        np.copy: _copy,
        np.zeros_like: _zeros_like,
        np.result_type: _result_type,
        np.trace: lambda a, offset=0, axis1=0, axis2=1, dtype=None, out=None: _sum(
            np.diagonal(a, offset, axis1, axis2), axis=-1
        ),
        np.dot: lambda a, b, out=None: _dot(a, b),
        np.size: lambda a, axis=None: math.prod(shape_of(a)) if axis is None else shape_of(a)[axis],
    }
)
METHODS.update(ufunc=_ufunc, getitem=getitem, setitem=setitem)
SYMBOLIC["conv"] = transpose_conv.conv_symbolic
SYMBOLIC["conv_transpose"] = transpose_conv.conv_transpose_symbolic
