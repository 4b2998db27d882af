"""Linearize once, transpose: reverse mode from the forward rules (JAX's "You only linearize once").

``linearize`` runs a function once on Duals whose tangent is a ``Linear``: a symbolic tangent that
speaks NumPy's protocols but computes nothing. The ordinary tangent rules (``xp.cos(x) * dx``,
``dx @ W``, ``xp.sum(dx, axis)``) then *record* a tape of linear primitives with their constant
operands instead of computing. That tape is the Jacobian as a program: replaying it forward is a
JVP, and running it backwards with each primitive's **transpose** is a VJP. No second rules table:
transposes exist only for the handful of linear primitives the tangent rules use.

A ``Linear`` stands for one tangent direction and has the Dual tangent's shape ``(1, *S)`` (one
lane). A cotangent carries ``K`` output directions at once, one more leading axis:
``(K, *node.shape)``, so one backward pass yields K rows of the Jacobian (cotangent lanes).

Errors: a product of two tangents (``dx * dy``), or a tangent plus a non-zero constant, is not
linear: ``NonLinearError``. A NumPy function with no transpose here: ``NoTransposeError``. Both say
to use forward mode (``mode="forward"``, ``jacfwd``) for that function.

This module holds the tape and the symbolic tangent. What each NumPy call records, and its
transpose, is in ``dualjac.transposes`` (arithmetic, products, reductions; it assembles the table),
``dualjac.transpose_indexing`` (reshapes, indexing, joins) and ``dualjac.transpose_conv``. Those build
on ``Linear``, so they fill ``FUNCTIONS`` and ``METHODS`` here when imported, rather than this
module importing them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from . import numpy_api
from .backend import is_array
from .dual import Dual
from .errors import NonLinearError, NoTransposeError, TangentLossError, TapeTooLargeError
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
        return METHODS["ufunc"](ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        handler = FUNCTIONS.get(func)
        if handler is not None:
            return handler(*args, **kwargs)
        if func not in _RESHAPING:
            raise NoTransposeError(numpy_api._name(func))
        return numpy_api.FUNCTIONS[func](*args, **kwargs)  # NumPy's spellings of reshape/transpose/getitem

    def __getitem__(self, key: Any) -> Linear:
        return METHODS["getitem"](self, key)

    def __setitem__(self, key: Any, value: Any) -> None:
        new = METHODS["setitem"](self, key, value)
        self.id, self.shape, self.dtype = new.id, new.shape, new.dtype  # the slot now holds the new node

    def zeros(self, c: Any) -> Linear:
        """A tangent of this tape that is the constant zero ``c`` (an array to write tangents into)."""
        if not is_zero(c):
            raise NonLinearError("writing a tangent into a non-zero constant", "the result is affine, not linear")
        shape, dtype = shape_of(c), np.result_type(dtype_of(c), self.dtype)
        return self.tape.add(Node((), lambda: np.zeros(shape, dtype=dtype), None, shape, dtype, "zeros"))

    def reshape(self, *shape: Any, order: str = "C") -> Linear:
        if len(shape) == 1 and not isinstance(shape[0], numbers.Integral):
            shape = shape[0]
        return FUNCTIONS[np.reshape](self, shape)

    def astype(self, dtype: Any, copy: bool = True) -> Linear:
        dtype = np.dtype(dtype)
        if dtype == self.dtype and not copy:
            return self
        src = self.dtype
        return record([self], lambda v: v.astype(dtype), lambda ct: (ct.astype(src),), self.shape, dtype, "astype")

    def copy(self, order: str = "C") -> Linear:
        return self.astype(self.dtype, copy=True)

    def transpose(self, *axes: Any) -> Linear:
        if len(axes) == 1 and not isinstance(axes[0], numbers.Integral):
            axes = axes[0]
        return FUNCTIONS[np.transpose](self, axes or None)

    def swapaxes(self, a: int, b: int) -> Linear:
        return np.swapaxes(self, a, b)

    def sum(self, axis: Any = None, keepdims: bool = False, **kw: Any) -> Linear:
        return FUNCTIONS[np.sum](self, axis=axis, keepdims=keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False, **kw: Any) -> Linear:
        return FUNCTIONS[np.mean](self, axis=axis, keepdims=keepdims)

    def ravel(self) -> Linear:
        return FUNCTIONS[np.reshape](self, (-1,))

    def squeeze(self, axis: Any = None) -> Linear:
        return np.squeeze(self, axis=axis)


# NumPy functions that numpy_api turns into reshape, transpose, getitem or concatenate calls
_RESHAPING = {
    np.moveaxis, np.swapaxes, np.squeeze, np.expand_dims, np.atleast_1d, np.atleast_2d, np.atleast_3d,
    np.flip, np.fliplr, np.flipud, np.split, np.array_split, np.hstack, np.vstack, np.ravel, np.permute_dims,
    np.shape, np.ndim,
}  # fmt: skip


# Filled by dualjac.transposes on import (it builds on Linear, so this module cannot import it).
FUNCTIONS: dict[Callable[..., Any], Callable[..., Any]] = {}  # NumPy function -> its recording on Linears
METHODS: dict[str, Callable[..., Any]] = {}  # "ufunc", "getitem", "setitem": Linear's own protocol methods


# --- recording ---------------------------------------------------------------------------
def is_linear(x: Any) -> bool:
    return type(x) is Linear


def record(
    ins: list[Linear], fwd: Callable[..., Any], transpose: Transpose, shape: tuple, dtype: Any, what: str
) -> Linear:
    """Add the node ``fwd(*ins)`` (with its transpose) to the tape of ``ins``."""
    tape = ins[0].tape
    if any(t.tape is not tape for t in ins):
        raise NonLinearError(what, "tangents of two different linearizations met in one op (a dualjac bug)")
    return tape.add(Node(tuple(t.id for t in ins), fwd, transpose, tuple(shape), np.dtype(dtype), what))


def kept(c: Any) -> Any:
    """A constant operand the tape keeps for later, copied if it is an array: NumPy lets f write into
    its arrays after an op used them (``A *= 2`` on a work buffer, a reused mask), which forward mode
    never sees, but the tape runs after f returned. (A node already budgets about one value of its
    size, ``Tape.add``.)"""
    return c.copy() if type(c) is Dual or is_array(c) else c


def dtype_of(x: Any) -> Any:
    """A dtype (or Python scalar) for np.result_type: a Linear's dtype, a Dual's value."""
    if type(x) is Linear:
        return x.dtype
    v = numpy_api.value(x)
    return v.dtype if hasattr(v, "dtype") else v


def shape_of(x: Any) -> tuple:
    return x.shape if type(x) is Linear else tuple(np.shape(numpy_api.value(x)))


def is_zero(c: Any) -> bool:
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


# --- linearize -----------------------------------------------------------------------------
def trace(
    f: Callable[..., Any], leaves: list[Any], rebuild: Callable[[list[Any]], Any], level: int
) -> tuple[Any, Tape, list[int]]:
    """Run ``f`` once with symbolic tangents on ``leaves`` (``rebuild`` turns the list of Duals
    into ``f``'s result): the output, the tape, and the ids of the inputs' nodes."""
    from .dual import Dual

    tape = Tape()
    ins = [tape.input((1,) + tuple(np.shape(numpy_api.value(x))), dtype_of(x)) for x in leaves]
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
