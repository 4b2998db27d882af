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
import logging
import math
import numbers
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import budget
from .backend import array_namespace, is_dask_array
from .dual import Dual
from .errors import NondeterministicFunctionError, RowMixingError
from .inputs import argnum_tuple, call_user, check_input, is_ready, lanes_of, primal, strip
from .lanes import Diagonal, dense
from .levels import close_level, open_level
from .numpy_api import value
from .settings import Progress, config
from .tree import flatten, unflatten

AUTO_MIN_INPUTS = 64  # mode="auto": up to this many input elements (per sample), forward mode (dualjac/reverse.py)
_log = logging.getLogger("dualjac")


# --- inputs ---------------------------------------------------------------------------
def _check_function(f: Any) -> None:
    if _is_torch(type(f)):
        raise TypeError(
            f"{type(f).__name__} is a torch module or function, which cannot run on dualjac's dual "
            "arrays: lower it first with g = dualjac.torch.from_torch(module, example_input), then "
            "differentiate g (dj.jacfwd(g), dj.batch_jacobian(g, x))"
        )


@functools.lru_cache(maxsize=256)
def _is_torch(kind: type) -> bool:
    # per type, not per call: walking the MRO of every function passed in is a tiny call's cost
    return any(c.__module__.startswith("torch") for c in kind.__mro__[:-1])


class _Layout:
    """Where each input leaf's elements sit among the ``total`` lanes, for one combination of
    leaf shapes, dtype and batch axes: computed once and reused by every later call with the
    same shapes (``_layout``), since a small call is mostly this bookkeeping."""

    __slots__ = ("items", "where", "total", "widest", "seeds")

    def __init__(self, shapes: tuple, nlead: int) -> None:
        # per leaf: its per-sample shape, and where its lanes sit on a lane axis: an int for a 0-d
        # leaf (indexing by it drops the axis with no reshape), else a slice whose columns are
        # reshaped to the item shape
        self.items, self.where = [], []
        total = widest = 0
        for shape in shapes:
            item = shape[nlead:]
            n = math.prod(item)
            self.items.append(item)
            self.where.append(total if item == () else slice(total, total + n))
            total += n
            widest = max(widest, math.prod(shape))
        self.total, self.widest = total, max(widest, 1)
        self.seeds = None  # all lanes' seeds of a small multi-leaf layout: read-only views, made once


_LAYOUTS: dict[tuple, _Layout] = {}


def _layout(key: tuple, shapes: tuple, nlead: int) -> _Layout:
    got = _LAYOUTS.get(key)
    if got is None:
        if len(_LAYOUTS) >= 256:  # many distinct shapes: start over rather than grow without bound
            _LAYOUTS.clear()
        got = _LAYOUTS[key] = _Layout(shapes, nlead)
    return got


class _Inputs:
    """The differentiated inputs of one transform call: their leaves and where each
    leaf's elements sit among the ``total`` lanes."""

    def __init__(self, leaves: list[Any], lead: tuple = (), nums: tuple | None = None) -> None:
        """``nums``: the argnums the leaves come from, when they are yet to be checked (``check_input``)."""
        if not leaves:
            raise ValueError("nothing to differentiate: the differentiated arguments contain no arrays")
        d = None
        for x in leaves:  # the common case, checked first: NumPy floating arrays of one native dtype
            if type(x) is not np.ndarray or (d is not None and x.dtype != d):
                d = None
                break
            d = x.dtype
        if d is not None and d.kind == "f" and d.isnative:
            self.xp, self.dtype = np, d
            plain = leaves
        else:
            if nums is not None:
                leaves = [
                    x if is_ready(x) else check_input(x, f"argument {nums} (leaf {i})") for i, x in enumerate(leaves)
                ]
            plain = [x if type(x) is not Dual else value(x) for x in leaves]
            self.xp = array_namespace(*plain)
            self.dtype = np.result_type(*[p.dtype for p in plain])
        self.leaves, self.lead = leaves, lead
        shapes = tuple([p.shape for p in plain])
        self.layout = _layout((self.xp, self.dtype, len(lead), shapes), shapes, len(lead))
        self.items, self.where = self.layout.items, self.layout.where
        self.total, self.widest = self.layout.total, self.layout.widest

    def seeds(self, start: int, stop: int) -> list[Any]:
        """Tangents for lanes ``start:stop``: rows of the identity, split over the leaves."""
        k = stop - start
        if len(self.items) == 1:  # one input (jacfwd of an array, batch_jacobian): implicit identity, lanes.py
            ones = self.xp.ones(self.lead + self.items[0], dtype=self.dtype)
            return [Diagonal(ones, k, start, len(self.lead), self.xp)]
        full = start == 0 and stop == self.total
        if full and self.layout.seeds is not None:
            return self.layout.seeds
        if self.total <= 256:  # small: slice a cached identity (most of a tiny call's time)
            eye = _identity(self.xp, self.total, self.dtype)[start:stop]
        else:
            eye = self.xp.eye(k, self.total, k=start, dtype=self.dtype)
        seeds = [
            eye[:, w] if type(w) is int else eye[:, w].reshape((k,) + item)
            for w, item in zip(self.where, self.items)
        ]
        if full and self.total <= 256:  # views of the read-only identity: safe to hand out again
            self.layout.seeds = seeds
        return seeds

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
    """The n x n identity, cached and read-only: seeds are slices of it, and a result that is
    still a view of it is copied before it is returned (``_fresh``)."""
    eye = xp.eye(n, dtype=dtype)
    if hasattr(eye, "setflags"):
        eye.setflags(write=False)
    return eye


def _root(a: Any) -> Any:
    while getattr(a, "base", None) is not None:
        a = a.base
    return a


def _fresh(arrays: list[Any], taken: set[int]) -> list[Any]:
    """Results the caller may edit in place: a read-only array (a view of a cached seed, a
    broadcast) or one sharing memory with an input or an earlier result is copied. Tangent
    lanes pass through here before they are cut into Jacobian blocks (None and implicit
    lanes, which make fresh blocks, as they are)."""
    out = []
    for a in arrays:
        if a is None or type(a) is Diagonal:
            out.append(a)
            continue
        root = _root(a)
        flags = getattr(a, "flags", None)
        if id(root) in taken or (flags is not None and not flags.writeable):
            a = a.copy()
            root = a
        taken.add(id(root))
        out.append(a)
    return out


def _chunk(chunk_size: int | None, total: int, widest: int, itemsize: int) -> int:
    if chunk_size is not None:
        if not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
        return min(int(chunk_size), max(total, 1))
    return max(1, min(total, config.tangent_bytes // max(1, widest * itemsize)))


# --- the lane loop ----------------------------------------------------------------------
def _lanes(run: Callable[[list[Any], int], Any], inputs: _Inputs, chunk_size: int | None):
    """Run ``run(seeds, level)`` over chunks of lanes. Returns the first pass's output
    leaves and structure, per output leaf its tangent lanes for all ``total``
    lanes (None where the output does not depend on the inputs), and the widest value
    (elements) given written-out lanes (0 where no budget was kept: ``chunk_size`` given).

    Without ``chunk_size``, a pass that would make a tangent over ``config.tangent_bytes``
    stops before allocating it (``budget.OverBudget``) and is run again with as many lanes
    as the widest value it met allows; later passes are sized by the widest value seen."""
    total, itemsize = inputs.total, inputs.dtype.itemsize
    limit = None if chunk_size is not None else max(1, config.tangent_bytes // itemsize)
    k = _chunk(chunk_size, total, inputs.widest, itemsize)
    first, parts, start, progress, seen = None, None, 0, None, 0
    while start < total:
        stop = min(total, start + k)
        done = _pass(run, inputs, start, stop, limit)
        if type(done) is int:  # over budget before a value of ``done`` elements: fewer lanes
            k = max(1, min(k - 1, limit // max(done, 1)))
            continue
        out_leaves, out_def, tangents, widest = done
        seen = max(seen, widest)
        if first is None:
            if stop == total:  # one pass: every small problem
                return out_leaves, out_def, tangents, seen
            first, parts, progress = (out_leaves, out_def), [[] for _ in out_leaves], Progress(total)
        else:
            _same_values(first[0], out_leaves)
        for j, t in enumerate(tangents):
            parts[j].append((t, (start, stop)))
        if limit is not None:  # resize from what this pass met
            k = max(1, min(total, limit // max(widest, inputs.widest, 1)))
        progress(stop)
        start = stop
    lanes = [_concat_lanes(p, o) for p, o in zip(parts, first[0])]
    return first[0], first[1], lanes, seen


def _pass(run: Callable[[list[Any], int], Any], inputs: _Inputs, start: int, stop: int, limit: int | None):
    """One pass over lanes ``start:stop``: the output leaves and structure, per output leaf its
    tangent lanes (None where it does not depend on this pass's inputs), and the widest value
    (elements) met; or, if the pass went over its budget, the size of the value it stopped at."""
    level = open_level()
    if limit is not None:
        budget.start(level, limit, stop - start)
    try:
        out_leaves, out_def = flatten(call_user(run, inputs.seeds(start, stop), level))
        tangents = [lanes_of(o, level) for o in out_leaves]  # (an output view re-reads its base first)
    except budget.OverBudget as e:
        if e.level != level:
            raise
        return e.size
    finally:
        widest = budget.stop(level)
        close_level(level)
    return out_leaves, out_def, tangents, widest


def _same_values(first: list[Any], later: list[Any]) -> None:
    """Every pass computes the same primal: a function whose values change between passes
    (random numbers drawn inside it) would mix columns of different Jacobians."""
    for a, b in zip(first, later):
        a, b = value(a), value(b)
        xp = array_namespace(a)
        if getattr(a, "shape", ()) != getattr(b, "shape", ()) or not bool(
            xp.all((a == b) | ((a != a) & (b != b)))
        ):
            raise NondeterministicFunctionError(
                "the function returned different values in the passes of one transform (random "
                "numbers drawn inside it, or state that changes between calls), so its Jacobian "
                "columns would come from different functions. Draw the random numbers outside "
                "and pass them in (or fix the generator's seed inside), or use one pass: "
                "chunk_size >= the number of input elements"
            )


def _concat_lanes(parts: list[tuple[Any, tuple[int, int]]], o: Any) -> Any:
    if all(t is None for t, _ in parts):
        return None
    p = primal(o)
    xp = array_namespace(p)
    # a pass whose output did not depend on its lanes (data-dependent code) contributes zero lanes
    return xp.concatenate(
        [dense(t) if t is not None else xp.zeros((b - a,) + p.shape, dtype=p.dtype) for t, (a, b) in parts],
        axis=0,
    )


# --- public transforms ------------------------------------------------------------------
def jvp(f: Callable[..., Any], primals: Sequence[Any], tangents: Sequence[Any]) -> tuple[Any, Any]:
    """Forward-mode Jacobian-vector product: ``(f(*primals), J_f(primals) @ tangents)``.

    Like ``torch.func.jvp`` / ``jax.jvp``: ``primals`` and ``tangents`` are tuples of
    the same structure (arrays or pytrees of arrays).

    :param f: the function: arrays (or pytrees of arrays) in, arrays (or a pytree) out, written with ``np.*``
    :param primals: the point: a tuple with one entry per argument of ``f``
    :param tangents: the direction: a tuple of the same structure and shapes as ``primals``

    >>> import numpy as np, dualjac as dj
    >>> out, t = dj.jvp(np.sin, (np.array(0.0),), (np.array(2.0),))
    >>> float(out), float(t)
    (0.0, 2.0)
    """
    _check_function(f)
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError("jvp expects primals and tangents as tuples, e.g. jvp(f, (x,), (v,))")
    p_leaves, p_def = flatten(tuple(primals))
    t_leaves, t_def = flatten(tuple(tangents))
    if len(p_leaves) != len(t_leaves) or p_def != t_def:
        raise ValueError("jvp: tangents must have the same structure as primals")
    level = open_level()
    try:
        duals = []
        for i, (p, t) in enumerate(zip(p_leaves, t_leaves)):
            p = check_input(p, f"primal {i}")
            t = check_input(t, f"tangent {i}")
            if tuple(np.shape(t)) != tuple(np.shape(p)):
                raise ValueError(
                    f"tangent {i} has shape {tuple(np.shape(t))} but its primal has shape "
                    f"{tuple(np.shape(p))}: each tangent must match its primal's shape"
                )
            duals.append(Dual(p, t.reshape((1,) + tuple(np.shape(t))), level))
        o_leaves, o_def = flatten(call_user(f, *unflatten(p_def, duals)))
        lanes = [lanes_of(o, level) for o in o_leaves]
    finally:
        close_level(level)
    outs = [primal(o, level) for o in o_leaves]
    tans = [dense(t)[0] if t is not None else _zeros_like(o) for o, t in zip(o_leaves, lanes)]
    return unflatten(o_def, outs), unflatten(o_def, _fresh(tans, {id(_root(t)) for t in t_leaves}))


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

    :param f: the function: arrays (or pytrees of arrays) in, arrays (or a pytree) out, written with ``np.*``
    :param argnums: which positional argument(s) to differentiate; a tuple gives a tuple of Jacobians
    :param has_aux: ``f`` returns ``(output, aux)``: only ``output`` is differentiated, and the result is
        ``(jacobian, aux)`` with ``aux`` as plain arrays (as in ``torch.func``)
    :param chunk_size: lanes per pass (``None``: as many as ``config.tangent_bytes`` allows); the
        result does not depend on it, only time and memory do

    >>> import numpy as np, dualjac as dj
    >>> J = dj.jacfwd(lambda x: x ** 2)(np.array([1.0, 2.0]))
    >>> J.tolist()
    [[2.0, 0.0], [0.0, 4.0]]
    """

    _check_function(f)
    single = isinstance(argnums, numbers.Integral)

    def jac_f(*args: Any, **kwargs: Any) -> Any:
        return _forward(f, args, kwargs, argnum_tuple(argnums, len(args)), single, has_aux, chunk_size)

    return jac_f


def _forward(
    f: Callable[..., Any], args: tuple, kwargs: dict, nums: tuple[int, ...], single: bool, has_aux: bool,
    chunk_size: int | None,
) -> Any:
    """``jacfwd(f, nums)(*args, **kwargs)`` (``single``: ``argnums`` was one integer)."""
    every = len(nums) == len(args) and nums == tuple(range(len(args)))
    leaves, in_def = flatten(args if every else tuple([args[a] for a in nums]))
    inputs = _Inputs(leaves, nums=nums)
    # every argument differentiated, each an array: the duals are the arguments (no tree walk per pass)
    flat = every and not kwargs and not has_aux and len(leaves) == len(args) and not any(in_def[2])
    if (
        flat and chunk_size is None and inputs.total <= _SMALL
        and inputs.total * inputs.widest * inputs.dtype.itemsize <= config.tangent_bytes  # the seeds fit
    ):
        jac = _one_pass(f, inputs, single)
        if jac is not None:
            return jac
    aux_box = []

    def run(seeds: list[Any], level: int) -> Any:
        duals = [Dual(x, s, level) for x, s in zip(inputs.leaves, seeds)]
        if flat:
            return f(*duals)
        call = list(args)
        for a, sub in zip(nums, unflatten(in_def, duals)):
            call[a] = sub
        out = f(*call, **kwargs)
        if has_aux:
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TypeError("has_aux=True: f must return a pair (output, aux)")
            out, aux = out
            if not aux_box:
                aux_box.append(strip(aux, level))
        return out

    out_leaves, out_def, lanes, _ = _lanes(run, inputs, chunk_size)
    jac = _assemble(inputs, in_def, out_leaves, out_def, lanes, single)
    return (jac, aux_box[0]) if has_aux else jac


_SMALL = 64  # input elements up to which a call with array arguments takes ``_one_pass``


def _one_pass(f: Callable[..., Any], inputs: _Inputs, single: bool) -> Any:
    """``jacfwd(f)(*inputs.leaves)`` in one pass of all lanes: ``_lanes`` without its planning, for
    the small calls whose time is mostly bookkeeping. None if the pass went over its budget (the
    caller then plans passes as usual)."""
    level = open_level()
    budget.start(level, config.tangent_bytes // inputs.dtype.itemsize, inputs.total)
    try:
        out = call_user(f, *[Dual(x, s, level) for x, s in zip(inputs.leaves, inputs.seeds(0, inputs.total))])
        out_leaves, out_def = flatten(out)
        lanes = [lanes_of(o, level) for o in out_leaves]
    except budget.OverBudget as e:
        if e.level != level:
            raise
        return None
    finally:
        budget.stop(level)
        close_level(level)
    return _assemble(inputs, None, out_leaves, out_def, lanes, single)


def _assemble(inputs: _Inputs, in_def: Any, out_leaves: list[Any], out_def: Any, lanes: list[Any], single: bool) -> Any:
    """The Jacobian from each output's lanes: per output leaf, its blocks in the inputs' structure
    ``in_def`` (None: a flat tuple of the leaves)."""
    blocks = []
    for o, t in zip(out_leaves, _fresh(lanes, set())):
        per_input = inputs.blocks(t, primal(o))
        if in_def is not None:
            per_input = unflatten(in_def, per_input)
        blocks.append(per_input[0] if single else tuple(per_input))
    return unflatten(out_def, blocks)


def jacobian(f: Callable[..., Any], inputs: Any, *, chunk_size: int | None = None, mode: str = "auto") -> Any:
    """The Jacobian with the nesting of ``torch.autograd.functional.jacobian``.

    ``inputs`` is an array or a tuple of arrays, passed as ``f(*inputs)``. With a
    single input and a single output the result is one array of shape
    ``out.shape + in.shape``; a tuple of inputs gives a tuple per output; a tuple of
    outputs gives a tuple over outputs (of tuples over inputs).

    ``mode``: ``"forward"`` (tangent lanes, one per input element), ``"reverse"`` (cotangent lanes,
    one per output element, ``dualjac.reverse``) or ``"auto"``: forward for at most 64 input
    elements, else reverse when the output has at most a quarter as many elements.

    :param f: the function: arrays (or pytrees of arrays) in, arrays (or a pytree) out, written with ``np.*``
    :param inputs: an array, or a tuple of arrays passed as ``f(*inputs)``
    :param chunk_size: lanes per pass (``None``: as many as ``config.tangent_bytes`` allows); the
        result does not depend on it, only time and memory do
    :param mode: ``"auto"`` (default), ``"forward"`` or ``"reverse"``; see above

    >>> import numpy as np, dualjac as dj
    >>> f = lambda x1, x2, x3: (x1 + x2, x3 * x1, x2 ** 3)
    >>> J = dj.jacobian(f, (np.array(3.0), np.array(4.0), np.array(5.0)))
    >>> [[float(v) for v in row] for row in J]
    [[1.0, 1.0, 0.0], [5.0, 0.0, 3.0], [0.0, 48.0, 0.0]]
    """
    single_in = not isinstance(inputs, tuple)
    args = (inputs,) if single_in else inputs
    n_in = 0
    if mode == "auto":
        for x in args:
            n_in += x.size if type(x) is np.ndarray else _size(x)
    if mode not in ("auto", "forward") or (mode == "auto" and n_in > AUTO_MIN_INPUTS):
        from . import reverse  # reverse mode, or auto's pick (it lives beside the forward transforms)

        nums = tuple(range(len(args)))
        n_in = _size(args)
        jac = reverse.auto_jacobian(f, args, nums, single_in, n_in, reverse.check_mode(mode), chunk_size)
        if jac is not None:
            return jac
    elif mode == "auto" and _log.isEnabledFor(logging.DEBUG):
        _log.debug("dualjac mode=auto: forward (%d input elements <= %d)", n_in, AUTO_MIN_INPUTS)
    _check_function(f)
    return _forward(f, args, {}, tuple(range(len(args))), single_in, False, chunk_size)


def _size(tree: Any) -> int:
    """The number of elements in a pytree of arrays (or Duals, or Python numbers)."""
    return sum(int(np.size(value(x))) for x in flatten(tree)[0])


def batch_jacobian(
    f: Callable[[Any], Any],
    x: Any,
    *,
    chunk_size: int | None = None,
    mode: str = "auto",
    check_rows: bool = True,
) -> Any:
    """Per-sample Jacobians of a batch: shape ``(B, *out_item, *in_item)``.

    ``f`` maps a batch ``x`` of shape ``(B, *in_item)`` to outputs of shape
    ``(B, *out_item)`` and must treat rows independently (no batch statistics). The
    lanes are the ``in_item`` features, shared by all B rows, so a pass carries
    ``n = prod(in_item)`` lanes, not ``B * n`` (the zero blocks of the full
    ``(B, m, B, n)`` Jacobian are never computed). Outputs may be a pytree.

    A function that mixes rows (``X - X.mean(0)``, batch norm) would make the lanes sum
    blocks of different rows, so ``check_rows`` (default) verifies independence with one
    more single-lane pass, seeded with a random direction per row: its result must equal
    each row's block applied to that row's direction, or ``RowMixingError`` is raised.
    ``check_rows=False`` skips that pass (about ``2 / (n + 1)`` of the cost) when you know;
    it is skipped anyway where the lanes stayed implicit (elementwise functions, which
    cannot mix rows). A large batch is evaluated in blocks of rows whose tangents fit the cache
    (``config.block_bytes``, from the second call of ``f`` on this input shape); the check then runs
    on the whole batch, so it also sees mixing across blocks.

    :param f: maps a batch ``(B, *in_item)`` to ``(B, *out_item)``, rows independently
    :param x: the batch (a NumPy or CuPy array, or a batch-chunked ``dask.array.Array``)
    :param chunk_size: lanes per pass (``None``: as many as ``config.tangent_bytes`` allows); the
        result does not depend on it, only time and memory do
    :param mode: ``"auto"`` (default), ``"forward"`` or ``"reverse"``; see above
    :param check_rows: verify that ``f`` does not mix rows (one more single-lane pass)

    >>> import numpy as np, dualjac as dj
    >>> W = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> J = dj.batch_jacobian(lambda x: np.tanh(x @ W), np.zeros((5, 2)))
    >>> J.shape, J[0].tolist()
    ((5, 2, 2), [[1.0, 3.0], [2.0, 4.0]])
    """
    _check_function(f)
    # dispatch hook: a batch-chunked Dask array is mapped block by block, lazily (dualjac/dask.py)
    if type(x) is not np.ndarray and is_dask_array(x):
        from .dask import batch_jacobian as dask_batch_jacobian

        return dask_batch_jacobian(f, x, chunk_size=chunk_size, mode=mode, check_rows=check_rows)
    x = check_input(x, "x")
    if np.ndim(x) < 1:
        raise ValueError("batch_jacobian needs a batch: x must have a leading batch axis (B, ...)")
    B = np.shape(x)[0]
    if mode != "forward" and (mode != "auto" or np.size(x) > AUTO_MIN_INPUTS * B):
        from . import reverse

        n_in = int(np.size(value(x))) // max(B, 1)
        jac = reverse.auto_jacobian(f, (x,), (0,), True, n_in, reverse.check_mode(mode), chunk_size, nlead=1)
        if jac is not None:
            if check_rows and B > 1:
                _check_rows(f, x, None, flatten(jac)[0])
            return jac
    elif mode == "auto":
        _log.debug("dualjac mode=auto: forward (%d input elements <= %d)", np.size(x) // max(B, 1), AUTO_MIN_INPUTS)
    if type(x) is np.ndarray and chunk_size is None and config.block_bytes > 0 and B > 1:
        jac = _blocked(f, x, check_rows)
        if jac is not None:
            return jac
    out_leaves, out_def, lanes, blocks, widest = _rows(f, x, B, chunk_size)
    if chunk_size is None:  # (with a chunk size no budget is kept, so the widest value is not known)
        _learn(f, x, widest)
    # implicit identity lanes that survived to the outputs went through elementwise ops alone, which
    # cannot mix rows: the check is needed only where a tangent was written out (a matmul, a sum)
    if check_rows and B > 1 and not all(t is None or type(t) is Diagonal for t in lanes):
        _check_rows(f, x, out_leaves, blocks)
    return unflatten(out_def, blocks)


def _rows(f: Callable[[Any], Any], x: Any, B: int, chunk_size: int | None = None, lo: int = 0):
    """Per-sample Jacobian blocks of ``f`` on the rows ``x`` (rows ``lo:`` of a batch of ``B``): the
    output leaves and structure, the lanes, the blocks, and the widest value met (``_lanes``)."""
    n = x.shape[0]
    inputs = _Inputs([x], lead=(n,))
    run = lambda seeds, level: f(Dual(x, seeds[0], level))  # noqa: E731
    out_leaves, out_def, lanes, widest = _lanes(run, inputs, chunk_size)
    blocks = []
    for o, t in zip(out_leaves, _fresh(lanes, set())):
        p = primal(o)  # same shape, and np.shape(p) need not dispatch to the rules as np.shape(o) does
        if np.ndim(p) < 1 or np.shape(p)[0] != n:
            raise ValueError(
                f"batch_jacobian: an output has shape {tuple(np.shape(p))}"
                + (f" for rows {lo}:{lo + n}" if n != B else "")
                + f", but every output must keep the batch axis of size {n} first"
            )
        (block,) = inputs.blocks(t, p)
        blocks.append(block)
    return out_leaves, out_def, lanes, blocks, widest


# --- row blocks ---------------------------------------------------------------------------
# batch_jacobian's lanes are shared by all B rows, so a hidden layer of width w makes tangents of
# K * B * w values, streamed through memory between a GEMM and the elementwise factor products. Rows
# being independent, the batch can be evaluated in blocks of rows small enough that a block's widest
# tangent stays in cache (config.block_bytes). How wide f's values get is known only by running f:
# the first call on an input shape runs unblocked and records the widest value per row; later calls
# of the same f on that shape are blocked if that tangent would be well over the cache.
_WIDTHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # f -> {(item shape, dtype): values per row}
_NEVER = -1  # the hint of an f whose blocks disagreed with its whole batch
_MIN_ROWS = 16  # fewer rows per block would make the per-call overhead (Python, per op) dominate


def _learn(f: Any, x: Any, widest: int) -> None:
    """Record the widest value per row that ``f`` met on a batch like ``x`` (the block-size hint)."""
    if type(x) is not np.ndarray or x.shape[0] < 1:
        return
    try:
        hints = _WIDTHS.setdefault(f, {})
    except TypeError:  # f cannot be weakly referenced: no hint, so no blocks
        return
    key = (x.shape[1:], x.dtype)
    if hints.get(key) != _NEVER:
        hints[key] = widest // x.shape[0]


def _never(f: Any, x: Any) -> None:
    """Blocks of ``f`` on batches like ``x`` disagreed with the whole batch: evaluate it whole from now on."""
    try:
        _WIDTHS.setdefault(f, {})[(x.shape[1:], x.dtype)] = _NEVER
    except TypeError:
        pass


def _block_rows(f: Any, x: Any) -> int:
    """Rows per block for ``batch_jacobian(f, x)``, or 0 for the whole batch in one block."""
    try:
        width = _WIDTHS.get(f, {}).get((x.shape[1:], x.dtype), 0)
    except TypeError:
        return 0
    K = math.prod(x.shape[1:])
    per_row = K * width * x.dtype.itemsize  # bytes of the widest tangent per row
    B = x.shape[0]
    if per_row <= 0 or B * per_row <= 2 * config.block_bytes:  # no written-out lanes, or cache-sized already
        return 0
    return max(_MIN_ROWS, config.block_bytes // per_row)


def _blocked(f: Callable[[Any], Any], x: np.ndarray, check_rows: bool) -> Any:
    """``batch_jacobian(f, x)`` evaluated in blocks of rows, or None where it is not (no hint that
    it pays, an f that gives other structures or non-NumPy results per block, or a check that
    disagrees: the caller then evaluates the whole batch at once, which raises what it must)."""
    rows = _block_rows(f, x)
    B = x.shape[0]
    if rows == 0 or rows >= B:
        return None
    try:
        parts = []
        start = 0
        while start < B:
            stop = B if B - start < rows + rows // 2 else start + rows  # no small last block
            parts.append(_rows(f, x[start:stop], B, lo=start))
            start = stop
    except Exception:  # noqa: BLE001  f may need the whole batch (a reshape to B rows): unblocked decides
        _never(f, x)
        return None
    out_def = parts[0][1]
    plain = all(
        p[1] == out_def
        and all(type(b) is np.ndarray for b in p[3])
        and all(type(primal(o)) is np.ndarray for o in p[0])
        for p in parts
    )  # else: another structure per block, or values of an outer transform (f closes over its Duals)
    blocks = plain and [np.concatenate([p[3][j] for p in parts]) for j in range(len(parts[0][3]))]
    if plain and check_rows:
        values = [np.concatenate([primal(p[0][j]) for p in parts]) for j in range(len(parts[0][0]))]
        plain = _row_check(f, x, values, blocks, blocked=True) is None
    if not plain:
        _never(f, x)
        return None
    return unflatten(out_def, blocks)


def _check_rows(f: Callable[[Any], Any], x: Any, out_leaves: list[Any] | None, blocks: list[Any]) -> None:
    """One pass along a random direction R: for row-independent f its tangent at row b is
    ``J_b R_b``; if f mixes rows the lanes' blocks (forward or reverse) are sums over rows and the
    two disagree. ``out_leaves``: the outputs of the pass that made ``blocks``, to compare values."""
    if _row_check(f, x, out_leaves, blocks) is not None:
        raise RowMixingError(
            "batch_jacobian: the function mixes rows of the batch (batch statistics such as "
            "X - X.mean(0), batch norm in training mode, a sum over rows), so the result is not "
            "a per-sample Jacobian. For the full Jacobian use dj.jacfwd(f)(x) (shape "
            "(B, *out, B, *in)); if rows are independent and this is rounding, pass check_rows=False"
        )


def _row_check(f: Callable[[Any], Any], x: Any, out_leaves: list[Any] | None, blocks: list[Any],
               blocked: bool = False) -> str | None:  # fmt: skip
    """``_check_rows``'s pass over the whole batch: None if it agrees with ``blocks`` (and the values
    ``out_leaves``), else what disagreed. ``blocked``: ``blocks`` and ``out_leaves`` come from
    blocks of rows, so a function that mixes rows only across blocks, or only in its values (a
    mask from a batch statistic), shows here as values or tangents unlike the whole batch's; the
    values are compared to rounding (another number of rows may take another GEMM kernel), not
    exactly, and a disagreement is reported rather than raised."""
    xp, B = array_namespace(x), x.shape[0]
    # a direction that differs from row to row, made in x's namespace (no host transfer on a GPU)
    R = xp.cos(xp.arange(x.size, dtype=x.dtype) * 2.399963 + 0.5).reshape(x.shape)
    out, t = jvp(f, (x,), (R,))
    tol = 4 * float(np.finfo(x.dtype).eps) ** 0.5  # far above rounding, far below a mixed-in row
    tiny = float(np.finfo(x.dtype).tiny)
    if out_leaves is not None:
        later = flatten(out)[0]
        if not blocked:
            _same_values(out_leaves, later)
        elif len(later) != len(out_leaves) or not all(
            _close(xp, value(a), value(b), tol, tiny, values=True) for a, b in zip(out_leaves, later)
        ):
            return "values"
    r = R.reshape(B, -1, 1)
    for J, tb in zip(blocks, flatten(t)[0]):
        expected = (J.reshape(B, -1, r.shape[1]) @ r)[..., 0]
        if not _close(xp, expected, tb.reshape(expected.shape), tol, tiny):
            return "rows"
    return None


def _close(xp: Any, a: Any, b: Any, tol: float, tiny: float, values: bool = False) -> bool:
    """``a`` and ``b`` agree to ``tol`` relative to each entry and to the largest. A NaN fails no
    tangent comparison (it carries no evidence of mixing); ``values`` must have NaNs in the same places."""
    if getattr(a, "shape", ()) != getattr(b, "shape", ()):
        return False
    scale = xp.abs(a) + xp.abs(b)
    if not values:
        top = scale.max() if scale.size else 0.0
        return not bool(xp.any(xp.abs(a - b) > tol * (scale + top) + tiny))
    nan_a = a != a
    if bool(xp.any(nan_a != (b != b))):
        return False
    top = xp.where(nan_a, 0, scale).max() if scale.size else 0.0  # NaNs (in both) take no part
    return bool(xp.all((xp.abs(a - b) <= tol * (scale + top) + tiny) | nan_a))


def hessian(f: Callable[..., Any], argnums: int | tuple[int, ...] = 0, mode: str = "auto") -> Callable[..., Any]:
    """The Hessian of ``f``: ``jacfwd(jacfwd(f))`` (``mode="forward"``) or forward-over-reverse
    ``jacfwd(jacrev(f))`` (``mode="reverse"``, the Autodiff Cookbook's choice for wide inputs).
    ``"auto"`` picks forward-over-reverse for more than 64 input elements.

    :param f: a scalar-valued function
    :param argnums: which positional argument(s) to differentiate; a tuple gives a tuple of Jacobians
    :param mode: ``"auto"`` (default), ``"forward"`` or ``"reverse"``; see above

    >>> import numpy as np, dualjac as dj
    >>> H = dj.hessian(lambda x: (x ** 3).sum())(np.array([1.0, 2.0]))
    >>> H.tolist()
    [[6.0, 0.0], [0.0, 12.0]]
    """
    if mode == "forward":
        return jacfwd(jacfwd(f, argnums), argnums)
    from . import reverse

    reverse.check_mode(mode)
    return lambda *args: jacfwd(reverse.hessian_inner(f, argnums, mode, args), argnums)(*args)
