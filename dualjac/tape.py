"""Linearize once, transpose: reverse mode from the forward rules (JAX's "You only linearize once").

``linearize`` runs a function once on Duals whose tangent is a ``Linear``: a symbolic tangent that
speaks NumPy's protocols but computes nothing. The ordinary tangent rules (``xp.cos(x) * dx``,
``dx @ W``, ``xp.sum(dx, axis)``) then *record* a tape of linear primitives with their constant
operands instead of computing. That tape is the Jacobian as a program: replaying it forward is a
JVP, and running it backwards with each primitive's **transpose** is a VJP. No second rules table:
transposes exist only for the handful of linear primitives the tangent rules use (below).

A ``Linear`` stands for one tangent direction and has the Dual tangent's shape ``(1, *S)`` (one
lane). A cotangent carries ``K`` output directions at once, one more leading axis:
``(K, *node.shape)``, so one backward pass yields K rows of the Jacobian (cotangent lanes).

Errors: a product of two tangents (``dx * dy``), or a tangent plus a non-zero constant, is not
linear: ``NonLinearError``. A NumPy function with no transpose here: ``NoTransposeError``. Both say
to use forward mode (``mode="forward"``, ``jacfwd``) for that function.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from . import numpy_api
from .backend import array_namespace
from .errors import NonLinearError, NoTransposeError, TangentLossError, TapeTooLargeError
from .rules import SYMBOLIC, apply
from .settings import config

Transpose = Callable[[Any], Sequence[Any]]  # cotangent (K, *out) -> one cotangent per linear input


class Node(NamedTuple):
    """One linear primitive: ``out = fwd(*inputs)``; ``transpose(ct)`` gives the inputs' cotangents."""

    inputs: tuple[int, ...]
    fwd: Callable[..., Any] | None  # None for a tape input
    transpose: Transpose | None
    shape: tuple
    dtype: Any
    what: str


class Tape:
    """The recorded linear map: nodes in the order they were computed (a DAG, inputs first)."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.widest = 1  # the largest node (elements), for the cotangent-lane budget
        self.nbytes = 0  # estimated memory the tape holds: a node keeps about one value of its size

    def add(self, node: Node) -> Linear:
        self.nodes.append(node)
        size = math.prod(node.shape)
        self.widest = max(self.widest, size)
        self.nbytes += size * node.dtype.itemsize
        if self.nbytes > config.tape_bytes:
            raise TapeTooLargeError(
                f"reverse mode's tape of linear operations passed dj.config.tape_bytes "
                f"({config.tape_bytes / 2**20:.0f} MiB) after {len(self.nodes)} operations, at {node.what}. "
                "Use forward mode (mode='forward', or dj.jacfwd with chunk_size), which keeps no tape, "
                "differentiate a smaller batch at a time, or raise dj.config.tape_bytes"
            )
        return Linear(self, len(self.nodes) - 1, node.shape, node.dtype)

    def input(self, shape: tuple, dtype: Any) -> Linear:
        return self.add(Node((), None, None, tuple(shape), np.dtype(dtype), "input"))

    def forward(self, seeds: dict[int, Any], outputs: Sequence[int | None]) -> list[Any]:
        """Replay the tape on values: ``seeds`` maps input ids to tangents (the JVP)."""
        vals: dict[int, Any] = dict(seeds)
        for i, node in enumerate(self.nodes):
            if node.fwd is not None:
                args = [vals[j] for j in node.inputs]
                vals[i] = node.fwd(*args)
        return [None if o is None else vals[o] for o in outputs]

    def backward(self, cts: dict[int, Any], inputs: Sequence[int]) -> list[Any]:
        """Transpose the tape: ``cts`` maps output ids to cotangents ``(K, *shape)``; returns the
        cotangents of ``inputs`` (None where an input does not reach any output)."""
        acc: dict[int, Any] = dict(cts)
        for i in range(len(self.nodes) - 1, -1, -1):
            node = self.nodes[i]
            if node.transpose is None or i not in acc:
                continue
            ct = acc.pop(i)  # freed as soon as it is used: memory follows the live cotangents
            for j, c in zip(node.inputs, node.transpose(ct)):
                if c is not None:
                    acc[j] = c if j not in acc else acc[j] + c
        return [acc.get(j) for j in inputs]


class Linear(NDArrayOperatorsMixin):
    """A symbolic tangent: a node of a ``Tape``. NumPy calls on it record linear primitives.

    >>> import numpy as np
    >>> tape = Tape()
    >>> v = tape.input((1, 3), np.float64)
    >>> y = np.sum(np.cos(np.arange(3.0)) * v, axis=-1)    # a linear map of v, recorded
    >>> [n.what for n in tape.nodes], y.shape
    (['input', 'multiply', 'sum'], (1,))
    """

    __slots__ = ("tape", "id", "shape", "dtype")
    __array_priority__ = 2000
    _dualjac_symbolic = True  # read by rules.apply (the SYMBOLIC hook)

    def __init__(self, tape: Tape, id: int, shape: tuple, dtype: Any) -> None:
        self.tape, self.id, self.shape, self.dtype = tape, id, tuple(shape), np.dtype(dtype)

    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: math.prod(self.shape))
    T = property(lambda self: np.transpose(self))
    mT = property(lambda self: np.swapaxes(self, -1, -2))

    def __repr__(self) -> str:
        return f"Linear(%{self.id}, shape={self.shape}, dtype={self.dtype})"

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        raise TangentLossError(
            "a symbolic tangent (reverse mode's linearize) cannot become a plain array: an op wrote a "
            "tangent into a NumPy array. Use mode='forward' (or jacfwd) for this function."
        )

    def __bool__(self) -> bool:
        raise NonLinearError("the truth value of a tangent", "control flow cannot depend on a tangent")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        handler = FUNCTIONS.get(func)
        if handler is not None:
            return handler(*args, **kwargs)
        if func not in _RESHAPING:
            raise NoTransposeError(numpy_api._name(func))
        return numpy_api.FUNCTIONS[func](*args, **kwargs)  # NumPy's spellings of reshape/transpose/getitem

    def __getitem__(self, key: Any) -> Linear:
        return _getitem(self, key)

    def __setitem__(self, key: Any, value: Any) -> None:
        new = _setitem(self, key, value)
        self.id, self.shape, self.dtype = new.id, new.shape, new.dtype  # the slot now holds the new node

    def zeros(self, c: Any) -> Linear:
        """A tangent of this tape that is the constant zero ``c`` (an array to write tangents into)."""
        if not _is_zero(c):
            raise NonLinearError("writing a tangent into a non-zero constant", "the result is affine, not linear")
        shape, dtype = _shape(c), np.result_type(_dtype(c), self.dtype)
        return self.tape.add(Node((), lambda: np.zeros(shape, dtype=dtype), None, shape, dtype, "zeros"))

    def reshape(self, *shape: Any, order: str = "C") -> Linear:
        if len(shape) == 1 and not isinstance(shape[0], numbers.Integral):
            shape = shape[0]
        return _reshape(self, shape)

    def astype(self, dtype: Any, copy: bool = True) -> Linear:
        dtype = np.dtype(dtype)
        if dtype == self.dtype and not copy:
            return self
        src = self.dtype
        return _record([self], lambda v: v.astype(dtype), lambda ct: (ct.astype(src),), self.shape, dtype, "astype")

    def copy(self, order: str = "C") -> Linear:
        return self.astype(self.dtype, copy=True)

    def transpose(self, *axes: Any) -> Linear:
        if len(axes) == 1 and not isinstance(axes[0], numbers.Integral):
            axes = axes[0]
        return _transpose(self, axes or None)

    def swapaxes(self, a: int, b: int) -> Linear:
        return np.swapaxes(self, a, b)

    def sum(self, axis: Any = None, keepdims: bool = False, **kw: Any) -> Linear:
        return _sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False, **kw: Any) -> Linear:
        return _mean(self, axis=axis, keepdims=keepdims)

    def ravel(self) -> Linear:
        return _reshape(self, (-1,))

    def squeeze(self, axis: Any = None) -> Linear:
        return np.squeeze(self, axis=axis)


# --- recording ---------------------------------------------------------------------------
def _is_linear(x: Any) -> bool:
    return type(x) is Linear


def _record(ins: list[Linear], fwd: Callable[..., Any], transpose: Transpose, shape: tuple, dtype: Any, what: str):
    tape = ins[0].tape
    if any(t.tape is not tape for t in ins):
        raise NonLinearError(what, "tangents of two different linearizations met in one op (a dualjac bug)")
    return tape.add(Node(tuple(t.id for t in ins), fwd, transpose, tuple(shape), np.dtype(dtype), what))


def _dtype(x: Any) -> Any:
    """A dtype (or Python scalar) for np.result_type: a Linear's dtype, a Dual's value."""
    if type(x) is Linear:
        return x.dtype
    v = numpy_api.value(x)
    return v.dtype if hasattr(v, "dtype") else v


def _shape(x: Any) -> tuple:
    return x.shape if type(x) is Linear else tuple(np.shape(numpy_api.value(x)))


def _is_zero(c: Any) -> bool:
    v = numpy_api.value(c)
    return not np.any(v)


def unbroadcast(ct: Any, shape: tuple) -> Any:
    """Sum a cotangent ``(K, *out)`` down to ``(K, *shape)`` (the transpose of broadcasting)."""
    extra = ct.ndim - 1 - len(shape)
    if extra > 0:
        ct = np.sum(ct, axis=tuple(range(1, 1 + extra)))
    axes = tuple(i + 1 for i, n in enumerate(shape) if n == 1 and ct.shape[i + 1] != 1)
    if axes:
        ct = np.sum(ct, axis=axes, keepdims=True)
    if tuple(ct.shape[1:]) != tuple(shape):  # a size-0 or broadcast-up ct: make the shape exact
        ct = np.broadcast_to(ct, ct.shape[:1] + tuple(shape))
    return ct


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
        if _is_linear(c):
            raise NonLinearError("dividing by a tangent", "1/dx is not linear in dx")
        return _scale(x, c, divide=True)
    if name in ("negative", "positive"):
        (x,) = inputs
        s = -1 if name == "negative" else 1
        return _record([x], lambda v: v * s if s < 0 else v, lambda ct: (-ct if s < 0 else ct,), x.shape, x.dtype, name)
    if name == "matmul":
        return _matmul(*inputs)
    if name == "conjugate":
        return inputs[0]
    raise NoTransposeError(f"numpy.{name}")


def _additive(name: str, a: Any, b: Any) -> Linear:
    ins, signs, shapes = [], [], []
    for x, s in ((a, 1), (b, -1 if name == "subtract" else 1)):
        if _is_linear(x):
            ins.append(x)
            signs.append(s)
            shapes.append(x.shape)
        elif not _is_zero(x):
            raise NonLinearError(
                f"{name} of a tangent and a non-zero constant", "a tangent plus a constant is affine, not linear"
            )
    shape = np.broadcast_shapes(_shape(a), _shape(b))
    dtype = np.result_type(_dtype(a), _dtype(b))

    def fwd(*vs):
        out = vs[0] if signs[0] > 0 else -vs[0]
        for v, s in zip(vs[1:], signs[1:]):
            out = out + v if s > 0 else out - v
        return np.broadcast_to(out, shape) if tuple(np.shape(out)) != shape else out

    def transpose(ct):
        return [unbroadcast(ct if s > 0 else -ct, sh) for s, sh in zip(signs, shapes)]

    return _record(ins, fwd, transpose, shape, dtype, name)


def _scale(a: Any, b: Any, divide: bool = False) -> Linear:
    """``x * c`` or ``x / c`` for a tangent x and a constant c (either order for *)."""
    if _is_linear(a) and _is_linear(b):
        raise NonLinearError("a product of two tangents", "dx * dy is not linear (it is second order)")
    x, c = (a, b) if _is_linear(a) else (b, a)
    shape = np.broadcast_shapes(x.shape, _shape(c))
    dtype = np.result_type(x.dtype, _dtype(c))
    xs = x.shape
    if divide:
        return _record([x], lambda v: v / c, lambda ct: (unbroadcast(ct / c, xs),), shape, dtype, "divide")
    return _record([x], lambda v: v * c, lambda ct: (unbroadcast(ct * c, xs),), shape, dtype, "multiply")


# --- products ----------------------------------------------------------------------------
def _swap(m: Any) -> Any:
    return np.swapaxes(m, -1, -2)


def _matmul(a: Any, b: Any) -> Linear:
    if _is_linear(a) and _is_linear(b):
        raise NonLinearError("a matrix product of two tangents", "dx @ dy is not linear (it is second order)")
    sa, sb = _shape(a), _shape(b)
    shape = _matmul_shape(sa, sb)
    dtype = np.result_type(_dtype(a), _dtype(b))
    if _is_linear(a):
        c = b

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

        return _record([a], lambda v: v @ c, transpose, shape, dtype, "matmul")
    c = a

    def transpose_b(ct):  # the cotangent of b
        if len(sa) == 1:
            if len(sb) == 1:
                return (ct[..., None] * c,)
            return (unbroadcast(c[:, None] * ct[..., None, :], sb),)
        if len(sb) == 1:
            return (unbroadcast((ct[..., None, :] @ c)[..., 0, :], sb),)
        return (unbroadcast(_swap(c) @ ct, sb),)

    return _record([b], lambda v: c @ v, transpose_b, shape, dtype, "matmul")


def _matmul_shape(sa: tuple, sb: tuple) -> tuple:
    """The shape of ``a @ b`` (NumPy's rules for 1-D operands; the primal has checked the sizes)."""
    if len(sa) == 1 or len(sb) == 1:
        return tuple(sb[:-2] + sb[-1:]) if len(sb) > 1 else tuple(sa[:-1])
    return tuple(np.broadcast_shapes(sa[:-2], sb[:-2])) + (sa[-2], sb[-1])


def _tensordot(a: Any, b: Any, axes: Any = 2) -> Linear:
    if _is_linear(a) and _is_linear(b):
        raise NonLinearError("tensordot of two tangents", "it is not linear (it is second order)")
    from .rules.linalg import tensordot_axes

    sa, sb = _shape(a), _shape(b)
    aa, ab = tensordot_axes(len(sa), len(sb), axes)
    afree = [i for i in range(len(sa)) if i not in aa]
    bfree = [j for j in range(len(sb)) if j not in ab]
    shape = tuple(sa[i] for i in afree) + tuple(sb[j] for j in bfree)
    dtype = np.result_type(_dtype(a), _dtype(b))
    na = len(afree)
    if _is_linear(a):
        c = b

        def transpose(ct):  # (K, *a_free, *b_free) . c over b_free -> (K, *a_free, *[b's contracted, sorted])
            r = np.tensordot(ct, c, axes=(list(range(1 + na, ct.ndim)), bfree))
            order = afree + [aa[ab.index(j)] for j in sorted(ab)]  # r's axes (after K) as axes of a
            return (np.transpose(r, (0,) + tuple(1 + order.index(i) for i in range(len(sa)))),)

        return _record([a], lambda v: np.tensordot(v, c, axes=(aa, ab)), transpose, shape, dtype, "tensordot")
    c = a

    def transpose_b(ct):  # c over a_free with ct -> (*[a's contracted, sorted], K, *b_free)
        r = np.tensordot(c, ct, axes=(afree, list(range(1, 1 + na))))
        r = np.moveaxis(r, len(aa), 0)
        order = [ab[aa.index(i)] for i in sorted(aa)] + bfree
        return (np.transpose(r, (0,) + tuple(1 + order.index(j) for j in range(len(sb)))),)

    return _record([b], lambda v: np.tensordot(c, v, axes=(aa, ab)), transpose_b, shape, dtype, "tensordot")


def _einsum(subscripts: str, *ops: Any, optimize: Any = False, **kw: Any) -> Linear:
    from .rules.linalg import einsum_parts

    lin = [i for i, o in enumerate(ops) if _is_linear(o)]
    if len(lin) != 1:
        raise NonLinearError("einsum of several tangents", "it is not linear (it is second order)")
    (i,) = lin
    ins, out = einsum_parts(subscripts)
    ins, out = _expand_ellipsis(ins, out, [_shape(o) for o in ops])
    if len(set(ins[i])) != len(ins[i]):
        raise NoTransposeError("einsum with a repeated index on a tangent (a diagonal)", "use mode='forward'")
    t = ops[i]
    res = np.einsum(subscripts, *[np.zeros(_shape(o), dtype=_dtype(o)) if k == i else o for k, o in enumerate(ops)])
    shape, dtype = res.shape, res.dtype
    z = next(c for c in "ZYXWVUTSRQPONMLKJIHGFEDCBA" if c not in "".join(ins) + out)
    sizes: dict[str, int] = {}
    for lab, o in zip(ins, ops):
        for c, n in zip(lab, _shape(o)):
            sizes[c] = max(n, sizes.get(c, 1))  # a label of size 1 on one operand broadcasts
    kept = "".join(c for c in ins[i] if c in out or any(c in s for k, s in enumerate(ins) if k != i))
    spec = ",".join([z + out] + [s for k, s in enumerate(ins) if k != i]) + "->" + z + kept
    others = [o for k, o in enumerate(ops) if k != i]

    def transpose(ct):
        r = np.einsum(spec, ct, *others, optimize=optimize)
        if kept != ins[i]:  # labels summed only on the tangent's side: the transpose broadcasts over them
            r = r.reshape(r.shape[:1] + tuple(sizes[c] if c in kept else 1 for c in ins[i]))
            r = np.broadcast_to(r, r.shape[:1] + tuple(sizes[c] for c in ins[i]))
        return (unbroadcast(r, t.shape),)

    def fwd(v):
        return np.einsum(subscripts, *[v if k == i else o for k, o in enumerate(ops)], optimize=optimize)

    return _record([t], fwd, transpose, shape, dtype, "einsum")


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
    kept = tuple(1 if i - x.ndim in ax else n for i, n in enumerate(x.shape))
    shape = kept if keepdims else tuple(n for i, n in enumerate(x.shape) if i - x.ndim not in ax)
    xs = x.shape

    def transpose(ct):
        return (np.broadcast_to(ct.reshape(ct.shape[:1] + kept), ct.shape[:1] + xs),)

    return _record([x], lambda v: np.sum(v, axis=ax, keepdims=keepdims), transpose, shape, x.dtype, "sum")


def _mean(x: Linear, axis: Any = None, keepdims: bool = False, dtype: Any = None, out: Any = None, **kw) -> Linear:
    n = math.prod(x.shape[a] for a in _axes_of(axis, x.ndim))
    return _scale(_sum(x, axis=axis, keepdims=keepdims), 1.0 / n if n else math.nan)


def _cumsum(x: Linear, axis: Any = None, dtype: Any = None, out: Any = None) -> Linear:
    if axis is None:
        x, axis = _reshape(x, (-1,)), 0
    a = _axes_of(axis, x.ndim)[0]

    def transpose(ct):  # the transpose of a running sum is the running sum from the other end
        return (np.flip(np.cumsum(np.flip(ct, axis=a), axis=a), axis=a),)

    return _record([x], lambda v: np.cumsum(v, axis=a), transpose, x.shape, x.dtype, "cumsum")


# --- moving elements -----------------------------------------------------------------------
def _reshape(x: Linear, shape: Any, order: str = "C", **kw: Any) -> Linear:
    if order != "C":
        raise NoTransposeError(f"reshape with order={order!r}")
    shape = kw.get("newshape", shape)
    shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
    new = np.broadcast_to(np.zeros((), dtype=np.int8), x.shape).reshape(shape).shape
    xs = x.shape
    return _record([x], lambda v: v.reshape(new), lambda ct: (ct.reshape(ct.shape[:1] + xs),), new, x.dtype, "reshape")


def _transpose(x: Linear, axes: Any = None) -> Linear:
    nd = x.ndim
    perm = tuple(range(nd))[::-1] if axes is None else tuple(int(a) % nd for a in axes)
    inv = tuple(int(i) for i in np.argsort(perm))
    shape = tuple(x.shape[p] for p in perm)
    return _record(
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
    return _record(
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


def _getitem(x: Linear, key: Any) -> Linear:
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

    return _record([x], lambda v: v[key], transpose, shape, x.dtype, "getitem")


def _setitem(x: Linear, key: Any, value: Any) -> Linear:
    """``x[key] = value`` as a new node: the slot takes ``value`` (a tangent, or a zero constant)."""
    key = key if isinstance(key, tuple) else (key,)
    key = tuple(numpy_api.value(k) for k in key)
    idx = np.arange(x.size).reshape(x.shape)[key]
    slot, flat = idx.shape, idx.reshape(-1)
    if np.unique(flat).size != flat.size:
        raise NoTransposeError("assignment to a tangent with repeated indices", "the last write wins")
    ins = [x]
    if _is_linear(value):
        ins.append(value)
    elif not _is_zero(value):
        raise NonLinearError("writing a non-zero constant into a tangent", "a constant slot is affine, not linear")
    vs, xs = _shape(value), x.shape

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

    return _record(ins, fwd, transpose, x.shape, x.dtype, "setitem")


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
            onehot = np.zeros((flat.size, n + 1), dtype=np.result_type(_dtype(ct)))
            onehot[np.arange(flat.size), flat] = 1
            return ((ct2 @ onehot[:, :n]).reshape((K,) + xs),)
        z = np.zeros((K, n + 1), dtype=np.result_type(_dtype(ct)))
        return (_put(z, (slice(None), flat), ct2)[:, :n].reshape((K,) + xs),)

    return _record([x], fwd, transpose, shape, x.dtype, what)


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
        arrays, axis = [a.reshape(-1) if _is_linear(a) else np.reshape(a, -1) for a in arrays], 0
    nd = len(_shape(arrays[0]))
    a = axis - nd if axis >= 0 else axis
    sizes = [_shape(x)[a] for x in arrays]
    bounds = np.cumsum([0] + sizes).tolist()
    ins = [x for x in arrays if _is_linear(x)]
    for x in arrays:
        if not _is_linear(x) and not _is_zero(x):
            raise NonLinearError("concatenating a tangent with a non-zero constant", "the result is affine")
    where = [i for i, x in enumerate(arrays) if _is_linear(x)]
    consts = {i: x for i, x in enumerate(arrays) if not _is_linear(x)}
    shape = list(_shape(ins[0]))
    shape[a] = bounds[-1]
    dtype = np.result_type(*[_dtype(x) for x in arrays])
    tail = (slice(None),) * (-a - 1)

    def fwd(*vs):
        it = iter(vs)
        return np.concatenate([next(it) if i in where else consts[i] for i in range(len(arrays))], axis=a)

    def transpose(ct):
        return [ct[(Ellipsis, slice(bounds[i], bounds[i + 1])) + tail] for i in where]

    return _record(ins, fwd, transpose, tuple(shape), dtype, "concatenate")


def _stack(arrays: Sequence[Any], axis: int = 0, **kw: Any) -> Linear:
    arrays = list(arrays)
    nd = len(_shape(arrays[0])) + 1
    a = axis - nd if axis >= 0 else axis
    return _concatenate([np.expand_dims(x, a) for x in arrays], axis=a)


def _where(cond: Any, x: Any, y: Any) -> Linear:
    cond = numpy_api.value(cond)
    ins, parts = [], []
    for v, pick in ((x, True), (y, False)):
        if _is_linear(v):
            ins.append(v)
            parts.append((pick, v.shape))
        elif not _is_zero(v):
            raise NonLinearError("where() between a tangent and a non-zero constant", "the result is affine")
    shape = np.broadcast_shapes(np.shape(cond), _shape(x), _shape(y))
    dtype = np.result_type(_dtype(x), _dtype(y))
    zero = np.zeros((), dtype=dtype)

    def fwd(*vs):
        it = iter(vs)
        a = next(it) if _is_linear(x) else zero
        b = next(it) if _is_linear(y) else zero
        return np.where(cond, a, b)

    def transpose(ct):
        return [unbroadcast(np.where(cond, ct, 0.0) if pick else np.where(cond, 0.0, ct), s) for pick, s in parts]

    return _record(ins, fwd, transpose, shape, dtype, "where")


def _solve(a: Any, b: Any) -> Linear:
    if _is_linear(a):
        raise NoTransposeError("np.linalg.solve with a tangent matrix", "dA enters solve's rule as dA @ X first")
    sb = b.shape
    vec = len(sb) == 1

    def transpose(ct):  # X = A^-1 B: the cotangent of B is A^-T ct
        if vec:
            return (np.swapaxes(np.linalg.solve(_swap(a), np.swapaxes(ct, 0, -1)), 0, -1),)
        return (unbroadcast(np.linalg.solve(_swap(a), ct), sb),)

    sa = _shape(a)
    shape = sa[:-2] + sa[-1:] if vec else tuple(np.broadcast_shapes(sa[:-2], sb[:-2])) + sb[-2:]
    return _record([b], lambda v: np.linalg.solve(a, v), transpose, shape, np.result_type(_dtype(a), b.dtype), "solve")


def _copy(x: Linear, *a: Any, **k: Any) -> Linear:
    return x.copy()


def _zeros_like(a: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None) -> Any:
    return np.zeros(_shape(a) if shape is None else shape, dtype=dtype or _dtype(a))


def _result_type(*xs: Any) -> Any:
    return np.result_type(*[_dtype(x) for x in xs])


FUNCTIONS: dict[Callable[..., Any], Callable[..., Any]] = {
    np.sum: _sum,
    np.mean: _mean,
    np.cumsum: _cumsum,
    np.reshape: _reshape,
    np.transpose: _transpose,
    np.broadcast_to: _broadcast_to,
    np.concatenate: _concatenate,
    np.stack: _stack,
    np.take: _take,
    np.take_along_axis: _take_along_axis,
    np.where: _where,
    np.pad: _pad,
    np.tensordot: _tensordot,
    np.einsum: _einsum,
    np.linalg.solve: _solve,
    np.copy: _copy,
    np.zeros_like: _zeros_like,
    np.result_type: _result_type,
    np.repeat: lambda a, repeats, axis=None: _gather(a, lambda ia: np.repeat(ia, repeats, axis=axis), "repeat"),
    np.tile: lambda A, reps: _gather(A, lambda ia: np.tile(ia, reps), "tile"),
    np.roll: lambda a, shift, axis=None: _gather(a, lambda ia: np.roll(ia, shift, axis=axis), "roll"),
    np.diagonal: lambda a, offset=0, axis1=0, axis2=1: _gather(
        a, lambda ia: np.diagonal(ia, offset, axis1, axis2), "diagonal"
    ),
    np.trace: lambda a, offset=0, axis1=0, axis2=1, dtype=None, out=None: _sum(
        np.diagonal(a, offset, axis1, axis2), axis=-1
    ),
    np.tril: lambda m, k=0: _masked(m, np.tril(np.ones(m.shape[-2:], dtype=bool), k), "tril"),
    np.triu: lambda m, k=0: _masked(m, np.triu(np.ones(m.shape[-2:], dtype=bool), k), "triu"),
    np.dot: lambda a, b, out=None: _dot(a, b),
    np.size: lambda a, axis=None: math.prod(_shape(a)) if axis is None else _shape(a)[axis],
}
# NumPy functions that numpy_api turns into reshape, transpose, getitem or concatenate calls
_RESHAPING = {
    np.moveaxis, np.swapaxes, np.squeeze, np.expand_dims, np.atleast_1d, np.atleast_2d, np.atleast_3d,
    np.flip, np.fliplr, np.flipud, np.split, np.array_split, np.hstack, np.vstack, np.ravel, np.permute_dims,
    np.shape, np.ndim,
}  # fmt: skip


def _dot(a: Any, b: Any) -> Linear:
    na, nb = len(_shape(a)), len(_shape(b))
    if na == 0 or nb == 0:
        return _scale(a, b)
    return _tensordot(a, b, axes=([na - 1], [max(nb - 2, 0)]))


def _masked(m: Linear, mask: Any, what: str) -> Linear:
    return _where(mask, m, np.zeros((), dtype=m.dtype))


# --- whole-op tangent maps for rules whose numerics are not NumPy calls (conv's im2col) ------
def _conv_symbolic(xp, ans, ts, x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    from .kernels.conv import conv_params
    from .rules import RULES

    dx, rest = ts[0], [None] + list(ts[1:])
    parts = []
    if any(t is not None for t in rest):  # dw, db: the rule's own (NumPy) numerics record them
        parts.append(RULES["conv"].joint(xp, ans, rest, x, w, b, stride, padding, dilation, groups))
    if dx is not None:
        if not _is_linear(dx):
            parts.append(RULES["conv"].joint(xp, ans, [dx, None, None], x, w, None, stride, padding, dilation, groups))
        else:
            parts.append(_conv_x(dx, ans, x, w, stride, padding, dilation, groups, conv_params))
    out = parts[0]
    for p in parts[1:]:
        out = out + p
    return out


def _conv_x(dx, ans, x, w, stride, padding, dilation, groups, conv_params):
    """``conv(dx, w)`` recorded as one node; its transpose is ``conv_transpose`` with the same weight."""
    _, _, k, st, pairs, dil = conv_params(x, w, stride, padding, dilation)
    nd = len(k)
    osp = tuple(ans.shape[-nd:])
    xsp = tuple(x.shape[-nd:])
    # conv_transpose (no padding) gives (o - 1) s + d (k - 1) + 1 (+ output_padding) per axis: grow it to the
    # padded input, then crop the padding
    extra = tuple(
        n + a + b - ((o - 1) * s + d * (kk - 1) + 1) for n, (a, b), o, s, d, kk in zip(xsp, pairs, osp, st, dil, k)
    )
    crop = (Ellipsis,) + tuple(slice(a, a + n) for (a, _), n in zip(pairs, xsp))
    xs, shape = dx.shape, (1,) + tuple(ans.shape)

    def fwd(v):
        return apply("conv", v.reshape((-1,) + tuple(x.shape[-nd - 1 :])), w, None, stride=stride, padding=padding,
                     dilation=dilation, groups=groups).reshape(shape)  # fmt: skip

    def transpose(ct):
        c = ct.reshape((-1,) + tuple(ans.shape[-nd - 1 :]))  # cotangent lanes (and batch) are one batch axis
        if type(c) is np.ndarray and type(w) is np.ndarray:
            y = _col2im(c, w, k, st, pairs, dil, groups, xsp)
        else:  # a Dual cotangent or weight (nested transforms): conv_transpose, through the rules
            y = apply("conv_transpose", c, w, None, stride=st, padding=0, output_padding=extra, groups=groups,
                      dilation=dil)[crop]  # fmt: skip
        return (y.reshape(ct.shape[:1] + xs),)

    return _record([dx], fwd, transpose, shape, dx.dtype, "conv")


def _col2im(c, w, k, stride, pairs, dil, groups, xsp):
    """The transpose of conv in x for a plain cotangent ``c`` (N, O, *out): ``cols = Wᵀ c`` (one GEMM
    per group), then each kernel offset's slab of cols added back where it was read from (col2im).
    Its columns have C·prod(k) rows, against O·prod(k) for conv_transpose's im2col."""
    N, O, out = c.shape[0], c.shape[1], c.shape[2:]  # noqa: E741
    C = w.shape[1] * groups
    # rows ordered (kernel offset, channel) so that each offset's slab of cols is contiguous
    wg = w.reshape((groups, O // groups, C // groups) + tuple(k))
    wt = np.moveaxis(wg, 1, -1).reshape(groups, C // groups, -1, O // groups)  # (G, C/G, prod(k), O/G)
    wt = np.swapaxes(wt, 1, 2).reshape(groups, -1, O // groups)  # (G, prod(k) * C/G, O/G)
    cols = np.matmul(wt, c.reshape(N, groups, O // groups, -1))  # (N, G, prod(k) * C/G, P)
    cols = cols.reshape((N, groups) + tuple(k) + (C // groups,) + tuple(out))
    padded = tuple(n + a + b for n, (a, b) in zip(xsp, pairs))
    y = np.zeros((N, C) + padded, dtype=cols.dtype)
    for off in np.ndindex(*k):
        idx = tuple(slice(i * d, i * d + (o - 1) * s + 1, s) for i, d, o, s in zip(off, dil, out, stride))
        y[(Ellipsis,) + idx] += cols[(slice(None), slice(None)) + off].reshape((N, C) + tuple(out))
    return y[(Ellipsis,) + tuple(slice(a, a + n) for (a, _), n in zip(pairs, xsp))]


def _conv_transpose_symbolic(xp, ans, ts, x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    from .kernels.conv import as_tuple, pad_spatial
    from .rules import RULES

    p = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)
    dx, rest = ts[0], [None] + list(ts[1:])
    joint = RULES["conv_transpose"].joint
    parts = [joint(xp, ans, rest, x, w, b, **p)] if any(t is not None for t in rest) else []
    if dx is not None and not _is_linear(dx):
        parts.append(joint(xp, ans, [dx, None, None], x, w, None, **p))
    elif dx is not None:
        nd = w.ndim - 2
        pad, opad = as_tuple(padding, nd, "padding"), as_tuple(output_padding, nd, "output_padding")
        st, dil = as_tuple(stride, nd, "stride"), as_tuple(dilation, nd, "dilation")
        xs, shape = dx.shape, (1,) + tuple(ans.shape)

        def fwd(v):
            return apply("conv_transpose", v.reshape((-1,) + tuple(x.shape[-nd - 1 :])), w, None, **p).reshape(shape)

        def transpose(ct):  # conv_transpose crops (p, p - o) from the full result: pad them back, then conv
            c = pad_spatial(
                np, ct.reshape((-1,) + tuple(ans.shape[-nd - 1 :])), tuple((a, a - o) for a, o in zip(pad, opad))
            )
            y = apply("conv", c, w, None, stride=st, padding=0, dilation=dil, groups=groups)
            return (y.reshape(ct.shape[:1] + xs),)

        parts.append(_record([dx], fwd, transpose, shape, dx.dtype, "conv_transpose"))
    out = parts[0]
    for q in parts[1:]:
        out = out + q
    return out


SYMBOLIC["conv"] = _conv_symbolic
SYMBOLIC["conv_transpose"] = _conv_transpose_symbolic


# --- linearize -----------------------------------------------------------------------------
def trace(f: Callable[..., Any], leaves: list[Any], rebuild: Callable[[list[Any]], Any], level: int):
    """Run ``f`` once with symbolic tangents on ``leaves`` (``rebuild`` turns the list of Duals
    into ``f``'s result): the output, the tape, and the ids of the inputs' nodes."""
    from .dual import Dual

    tape = Tape()
    ins = [tape.input((1,) + tuple(np.shape(numpy_api.value(x))), _dtype(x)) for x in leaves]
    out = rebuild([Dual(x, t, level) for x, t in zip(leaves, ins)])
    return out, tape, [t.id for t in ins]


def output_ids(o_leaves: list[Any], level: int) -> list[int | None]:
    """The tape node of each output leaf (None where it does not depend on the inputs)."""
    from .dual import Dual

    ids: list[int | None] = []
    for o in o_leaves:
        t = o.tangent if type(o) is Dual and o.level == level else None
        if t is not None and type(t) is not Linear and not bool(np.any(t)):
            t = None  # a rule's explicit zero tangent (lstsq's empty residuals): no dependence
        if t is not None and type(t) is not Linear:
            raise NonLinearError("an output whose tangent is not symbolic", "a dualjac bug: please report it")
        ids.append(None if t is None else t.id)
    return ids
