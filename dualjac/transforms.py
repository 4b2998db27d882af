"""Transforms: seed tangent lanes, run the function, read the lanes back out.

Nothing here knows a derivative. A transform makes its inputs Duals whose
tangent lanes are columns of the identity (one lane per input element), calls
the function, and reads each output's tangent lanes as Jacobian columns:

    x -> Dual(x, I)   ;   f(Dual(x, I)) = Dual(f(x), J_f(x) I) = Dual(f(x), J)

With K lanes per pass, a function with N input elements needs ceil(N / K) passes
(``chunk_size``); by default K is chosen so the largest tangent array stays under
``config.tangent_bytes``. Each call gets a fresh ``level``, so a transform nested
inside another only sees its own perturbations.
"""

from __future__ import annotations

import functools
import itertools
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import rules
from .backend import array_namespace, is_array, is_dask_array
from .dual import Dual
from .lanes import Diagonal
from .numpy_api import value
from .rules import _dense
from .tree import flatten, unflatten


@dataclass
class Config:
    """Global settings.

    ``tangent_bytes``: memory budget for one tangent array, which sets the default
    ``chunk_size`` (lanes per pass). ``progress``: called as ``progress(done, total)``
    after each pass of a multi-pass (chunked) run, e.g. to draw a progress bar.
    ``buffer_bytes``: how much memory ``dualjac.buffers`` may keep between calls to reuse for
    big lane arrays (NumPy only; 0 turns reuse off).

    >>> import numpy as np, dualjac as dj
    >>> seen = []
    >>> dj.config.tangent_bytes, dj.config.progress = 3 * 8, lambda done, total: seen.append(done)
    >>> J = dj.jacfwd(np.sin)(np.zeros(6))     # a lane is 6 float64 values: one lane per pass
    >>> seen
    [1, 2, 3, 4, 5, 6]
    >>> dj.config.tangent_bytes, dj.config.progress = 256 << 20, None   # the defaults
    """

    tangent_bytes: int = 256 << 20  # a pass holds a few arrays this size: peak memory is a small multiple
    progress: Callable[[int, int], None] | None = None
    buffer_bytes: int = 512 << 20


config = Config()
_levels = itertools.count(1)


# --- inputs ---------------------------------------------------------------------------
def _ready(x: Any) -> bool:
    """The common case, checked first: a NumPy floating array, or a Dual of an outer transform."""
    return type(x) is Dual or (type(x) is np.ndarray and x.dtype.kind == "f")


def _check_input(x: Any, what: str) -> Any:
    """A differentiable input: a floating array (or Python float, or a Dual of an outer transform)."""
    if _ready(x):
        return x
    if isinstance(x, float):
        return np.asarray(x, dtype=np.float64)
    if isinstance(x, (numbers.Integral, bool)):
        raise TypeError(
            f"{what} is the integer {x!r}: derivatives need floating-point inputs; pass {float(x)!r}"
        )
    if isinstance(x, numbers.Complex):
        raise TypeError(f"{what} is complex: dualjac differentiates real inputs only")
    if not is_array(x):
        if is_dask_array(x):  # only batch_jacobian maps over a Dask array's blocks (dualjac/dask.py)
            raise TypeError(
                f"{what} is a Dask array: only dj.batch_jacobian(f, x) works on Dask arrays (one call per block "
                "of rows); the Jacobian of a whole Dask array couples every element. Use batch_jacobian for "
                "per-sample Jacobians, or x.compute() if the array fits in memory"
            )
        hint = (
            " (for a torch.Tensor use dualjac.torch, or t.detach().numpy())"
            if "torch" in type(x).__module__
            else ""
        )
        raise TypeError(
            f"{what} is a {type(x).__name__}, not an array: pass a NumPy (or CuPy) floating array{hint}"
        )
    kind = x.dtype.kind
    if kind == "f":
        return x
    if kind == "c":
        raise TypeError(
            f"{what} has complex dtype {x.dtype}: dualjac differentiates real inputs only; "
            "split it into real and imaginary parts"
        )
    raise TypeError(
        f"{what} has dtype {x.dtype}: derivatives need floating-point inputs; "
        "cast it first, e.g. x.astype(np.float64)"
    )


class _Inputs:
    """The differentiated inputs of one transform call: their leaves and where each
    leaf's elements sit among the ``total`` lanes (computed once per call)."""

    def __init__(self, leaves: list[Any], lead: tuple = ()) -> None:
        self.leaves, self.lead = leaves, lead
        plain = [x if type(x) is not Dual else value(x) for x in leaves]
        if not plain:
            raise ValueError("nothing to differentiate: the differentiated arguments contain no arrays")
        self.xp = array_namespace(*plain)
        dtypes = [p.dtype for p in plain]
        d = dtypes[0]
        # np.result_type costs ~0.5 us; inputs usually share one native dtype, which it would return
        same = len(dtypes) == 1 or (d.isnative and dtypes.count(d) == len(dtypes))
        self.dtype = d if same else np.result_type(*dtypes)
        # per leaf: its per-sample shape, its number of lanes, and where those lanes sit on a
        # lane axis: an int for a 0-d leaf (indexing by it drops the axis with no reshape: a
        # scalar-inputs call is mostly this bookkeeping), else a slice whose columns are
        # reshaped to the item shape. One loop, not a comprehension each: ~0.7 us less per call.
        nlead = len(lead)
        self.items, self.where = [], []
        total = widest = 0
        for p in plain:
            item, size = p.shape[nlead:], p.size
            n = math.prod(item)
            self.items.append(item)
            self.where.append(total if item == () else slice(total, total + n))
            total += n
            widest = max(widest, size)
        self.total, self.widest = total, max(widest, 1)

    def seeds(self, start: int, stop: int) -> list[Any]:
        """Tangents for lanes ``start:stop``: rows of the identity, split over the leaves."""
        k = stop - start
        if len(self.items) == 1:  # one input (jacfwd of an array, batch_jacobian): implicit identity, lanes.py
            ones = self.xp.ones(self.lead + self.items[0], dtype=self.dtype)
            return [Diagonal(ones, k, start, len(self.lead), self.xp)]
        if self.total <= 256:  # small: slice a cached identity (most of a tiny call's time)
            eye = _identity(self.xp, self.total, self.dtype)[start:stop]
        else:
            eye = self.xp.eye(k, self.total, k=start, dtype=self.dtype)
        return [
            eye[:, w] if type(w) is int else eye[:, w].reshape((k,) + item)
            for w, item in zip(self.where, self.items)
        ]

    def blocks(self, t: Any, o: Any) -> list[Any]:
        """Split output lanes ``t`` (N, *o.shape) into Jacobian blocks ``o.shape + item``
        per input leaf; ``t`` None (``o`` does not depend on the inputs) gives zeros."""
        o_shape = tuple(o.shape) if hasattr(o, "shape") else tuple(np.shape(o))
        if t is None:
            return [self.xp.zeros(o_shape + item, dtype=self.dtype) for item in self.items]
        if type(t) is Diagonal:
            if t.lanes == self.total and type(t.values) is not Dual:
                return [t.jacobian(o_shape)]
            t = t.dense()
        cols = t.transpose(tuple(range(1, t.ndim)) + (0,)) if t.ndim > 1 else t  # (*o.shape, N)
        if len(self.items) == 1:
            return [cols.reshape(o_shape + self.items[0])]
        return [
            cols[..., w] if type(w) is int else cols[..., w].reshape(o_shape + item)
            for w, item in zip(self.where, self.items)
        ]


@functools.lru_cache(maxsize=16)
def _identity(xp: Any, n: int, dtype: Any) -> Any:
    """The n x n identity, cached: seeds are read-only slices of it (never written)."""
    return xp.eye(n, dtype=dtype)


def _chunk(chunk_size: int | None, total: int, widest: int, itemsize: int) -> int:
    if chunk_size is not None:
        if not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
        return min(int(chunk_size), max(total, 1))
    return max(1, min(total, config.tangent_bytes // max(1, widest * itemsize)))


# --- the lane loop ----------------------------------------------------------------------
def _lanes(run: Callable[[list[Any], int], Any], inputs: _Inputs, chunk_size: int | None):
    """Run ``run(seeds, level)`` over chunks of lanes. Returns the first pass's output
    leaves and structure, and per output leaf its tangent lanes for all ``total``
    lanes (None where the output does not depend on the inputs)."""
    total, itemsize = inputs.total, inputs.dtype.itemsize
    k = _chunk(chunk_size, total, inputs.widest, itemsize)
    if chunk_size is None and 4 * k * inputs.widest * itemsize > config.tangent_bytes:
        # the inputs' lanes alone take a quarter of the budget: an intermediate a few times wider
        # would exceed it, so measure the widest value with a small first pass, then resize
        k = max(1, k // 16)
    if k >= total:  # one pass: every small problem, where the chunk bookkeeping below is overhead
        return _pass(run, inputs, 0, total)
    first, parts, start = None, None, 0
    while start < total:
        stop = min(total, start + k)
        out_leaves, out_def, tangents = _pass(run, inputs, start, stop)
        if first is None:
            first, parts = (out_leaves, out_def), [[] for _ in out_leaves]
        for j, t in enumerate(tangents):
            parts[j].append((t, (start, stop)))
        if chunk_size is None and start == 0:  # resize from what we saw
            k = _chunk(None, total, max(inputs.widest, rules.PEAK[0]), itemsize)
        if config.progress is not None:
            config.progress(stop, total)
        start = stop
    lanes = [_concat_lanes(p, o) for p, o in zip(parts, first[0])]
    return first[0], first[1], lanes


def _pass(run: Callable[[list[Any], int], Any], inputs: _Inputs, start: int, stop: int):
    """One pass over lanes ``start:stop``: the output leaves and structure, and per output
    leaf its tangent lanes (None where it does not depend on this pass's inputs)."""
    level = next(_levels)
    rules.PEAK[0] = 0
    out_leaves, out_def = flatten(run(inputs.seeds(start, stop), level))
    tangents = [o.tangent if type(o) is Dual and o.level == level else None for o in out_leaves]
    return out_leaves, out_def, tangents


def _concat_lanes(parts: list[tuple[Any, tuple[int, int]]], o: Any) -> Any:
    if all(t is None for t, _ in parts):
        return None
    primal = _primal(o)
    xp = array_namespace(primal)
    # a pass whose output did not depend on its lanes (data-dependent code) contributes zero lanes
    return xp.concatenate(
        [_dense(t) if t is not None else xp.zeros((b - a,) + primal.shape, dtype=primal.dtype) for t, (a, b) in parts],
        axis=0,
    )


def _primal(o: Any, level: int | None = None) -> Any:
    return o.primal if type(o) is Dual and (level is None or o.level == level) else o


# --- public transforms ------------------------------------------------------------------
def jvp(f: Callable[..., Any], primals: Sequence[Any], tangents: Sequence[Any]) -> tuple[Any, Any]:
    """Forward-mode Jacobian-vector product: ``(f(*primals), J_f(primals) @ tangents)``.

    Like ``torch.func.jvp`` / ``jax.jvp``: ``primals`` and ``tangents`` are tuples of
    the same structure (arrays or pytrees of arrays).

    >>> import numpy as np, dualjac as dj
    >>> out, t = dj.jvp(np.sin, (np.array(0.0),), (np.array(2.0),))
    >>> float(out), float(t)
    (0.0, 2.0)
    """
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError("jvp expects primals and tangents as tuples, e.g. jvp(f, (x,), (v,))")
    p_leaves, p_def = flatten(tuple(primals))
    t_leaves, t_def = flatten(tuple(tangents))
    if len(p_leaves) != len(t_leaves) or p_def != t_def:
        raise ValueError("jvp: tangents must have the same structure as primals")
    level = next(_levels)
    duals = []
    for i, (p, t) in enumerate(zip(p_leaves, t_leaves)):
        p = _check_input(p, f"primal {i}")
        t = _check_input(t, f"tangent {i}")
        if tuple(np.shape(t)) != tuple(np.shape(p)):
            raise ValueError(
                f"tangent {i} has shape {tuple(np.shape(t))} but its primal has shape "
                f"{tuple(np.shape(p))}: each tangent must match its primal's shape"
            )
        duals.append(Dual(p, t.reshape((1,) + tuple(np.shape(t))), level))
    out = f(*unflatten(p_def, duals))
    o_leaves, o_def = flatten(out)
    outs = [_primal(o, level) for o in o_leaves]
    tans = [o.tangent[0] if type(o) is Dual and o.level == level else _zeros_like(o) for o in o_leaves]
    return unflatten(o_def, outs), unflatten(o_def, tans)


def _zeros_like(o: Any) -> Any:
    v = value(o)
    return array_namespace(v).zeros(np.shape(v), dtype=getattr(v, "dtype", np.float64))


def jacfwd(
    f: Callable[..., Any],
    argnums: int | tuple[int, ...] = 0,
    *,
    has_aux: bool = False,
    chunk_size: int | None = None,
) -> Callable[..., Any]:
    """The Jacobian of ``f`` w.r.t. argument(s) ``argnums`` by forward mode.

    Returns a function with ``f``'s signature. For an output of shape O and an input
    of shape I the Jacobian has shape ``O + I``. Inputs and outputs may be pytrees
    (tuples, lists, dicts): the result has the output's structure, each leaf holding
    the input's structure (a tuple of them if ``argnums`` is a tuple), as in
    ``torch.func.jacfwd``. All input elements are seeded as lanes of one pass, or of
    several passes of ``chunk_size`` lanes.

    >>> import numpy as np, dualjac as dj
    >>> J = dj.jacfwd(lambda x: x ** 2)(np.array([1.0, 2.0]))
    >>> J.tolist()
    [[2.0, 0.0], [0.0, 4.0]]
    """

    def jac_f(*args: Any) -> Any:
        n = len(args)
        nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
        for a in nums:
            if not -n <= a < n:
                raise ValueError(f"argnums {a} is out of range for {n} positional argument(s)")
        nums = tuple([a % n for a in nums])
        if len(set(nums)) != len(nums):
            raise ValueError(f"argnums {argnums} names an argument twice: each argument is differentiated once")
        wrt = tuple([args[a] for a in nums])
        leaves, in_def = flatten(wrt)
        inputs = _Inputs(
            [x if _ready(x) else _check_input(x, f"argument {nums} (leaf {i})") for i, x in enumerate(leaves)]
        )
        aux_box = []

        def run(seeds: list[Any], level: int) -> Any:
            duals = [Dual(x, s, level) for x, s in zip(inputs.leaves, seeds)]
            call = list(args)
            for a, sub in zip(nums, unflatten(in_def, duals)):
                call[a] = sub
            out = f(*call)
            if has_aux:
                if not (isinstance(out, tuple) and len(out) == 2):
                    raise TypeError("has_aux=True: f must return a pair (output, aux)")
                out, aux = out
                if not aux_box:
                    aux_box.append(_strip(aux, level))
            return out

        out_leaves, out_def, lanes = _lanes(run, inputs, chunk_size)
        blocks, single = [], isinstance(argnums, int)
        for o, t in zip(out_leaves, lanes):
            per_input = unflatten(in_def, inputs.blocks(t, _primal(o)))
            blocks.append(per_input[0] if single else per_input)
        jac = unflatten(out_def, blocks)
        return (jac, aux_box[0]) if has_aux else jac

    return jac_f


def _strip(tree: Any, level: int) -> Any:
    leaves, treedef = flatten(tree)
    return unflatten(treedef, [_primal(x, level) for x in leaves])


def jacobian(f: Callable[..., Any], inputs: Any, *, chunk_size: int | None = None) -> Any:
    """The Jacobian with the nesting of ``torch.autograd.functional.jacobian``.

    ``inputs`` is an array or a tuple of arrays, passed as ``f(*inputs)``. With a
    single input and a single output the result is one array of shape
    ``out.shape + in.shape``; a tuple of inputs gives a tuple per output; a tuple of
    outputs gives a tuple over outputs (of tuples over inputs).

    >>> import numpy as np, dualjac as dj
    >>> f = lambda x1, x2, x3: (x1 + x2, x3 * x1, x2 ** 3)
    >>> J = dj.jacobian(f, (np.array(3.0), np.array(4.0), np.array(5.0)))
    >>> [[float(v) for v in row] for row in J]
    [[1.0, 1.0, 0.0], [5.0, 0.0, 3.0], [0.0, 48.0, 0.0]]
    """
    single_in = not isinstance(inputs, tuple)
    args = (inputs,) if single_in else inputs
    jac = jacfwd(f, argnums=0 if single_in else tuple(range(len(args))), chunk_size=chunk_size)(*args)
    return jac


def batch_jacobian(f: Callable[[Any], Any], x: Any, *, chunk_size: int | None = None) -> Any:
    """Per-sample Jacobians of a batch: shape ``(B, *out_item, *in_item)``.

    ``f`` maps a batch ``x`` of shape ``(B, *in_item)`` to outputs of shape
    ``(B, *out_item)`` and must treat rows independently (no batch statistics). The
    lanes are the ``in_item`` features, shared by all B rows, so a pass carries
    ``n = prod(in_item)`` lanes, not ``B * n`` (the zero blocks of the full
    ``(B, m, B, n)`` Jacobian are never computed). Outputs may be a pytree.

    >>> import numpy as np, dualjac as dj
    >>> W = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> J = dj.batch_jacobian(lambda x: np.tanh(x @ W), np.zeros((5, 2)))
    >>> J.shape, J[0].tolist()
    ((5, 2, 2), [[1.0, 3.0], [2.0, 4.0]])
    """
    # dispatch hook: a batch-chunked Dask array is mapped block by block, lazily (dualjac/dask.py)
    if type(x) is not np.ndarray and is_dask_array(x):
        from .dask import batch_jacobian as dask_batch_jacobian

        return dask_batch_jacobian(f, x, chunk_size=chunk_size)
    x = _check_input(x, "x")
    if np.ndim(x) < 1:
        raise ValueError("batch_jacobian needs a batch: x must have a leading batch axis (B, ...)")
    B = np.shape(x)[0]
    inputs = _Inputs([x], lead=(B,))
    run = lambda seeds, level: f(Dual(x, seeds[0], level))  # noqa: E731
    out_leaves, out_def, lanes = _lanes(run, inputs, chunk_size)
    blocks = []
    for o, t in zip(out_leaves, lanes):
        p = _primal(o)  # same shape, and np.shape(p) need not dispatch to the rules as np.shape(o) does
        if np.ndim(p) < 1 or np.shape(p)[0] != B:
            raise ValueError(
                f"batch_jacobian: an output has shape {tuple(np.shape(p))}, but every output must "
                f"keep the batch axis of size {B} first"
            )
        (block,) = inputs.blocks(t, p)
        blocks.append(block)
    return unflatten(out_def, blocks)


def hessian(f: Callable[..., Any], argnums: int | tuple[int, ...] = 0) -> Callable[..., Any]:
    """The Hessian of ``f`` by forward-over-forward: ``jacfwd(jacfwd(f))``.

    >>> import numpy as np, dualjac as dj
    >>> H = dj.hessian(lambda x: (x ** 3).sum())(np.array([1.0, 2.0]))
    >>> H.tolist()
    [[6.0, 0.0], [0.0, 12.0]]
    """
    return jacfwd(jacfwd(f, argnums), argnums)
