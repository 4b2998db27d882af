"""Lane passes: seed the differentiated inputs as tangent lanes, run the function over chunks of
lanes, and read the lanes back out as Jacobian columns.

``Inputs`` knows where each input element sits among the ``total`` lanes (its seeds are rows of the
identity, implicit where there is one input: ``lanes.Diagonal``); ``run_lanes`` runs one pass per
chunk of lanes, sized by ``config.tangent_bytes`` (a pass that would go over it stops early,
``budget.OverBudget``, and runs again with fewer lanes); ``fresh`` makes results safe to edit.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from . import budget
from .backend import array_namespace
from .dual import Dual
from .errors import NondeterministicFunctionError
from .inputs import call_user, check_input, is_ready, lanes_of, primal
from .lanes import Diagonal, dense
from .levels import close_level, open_level
from .numpy_api import value
from .settings import Progress, config
from .tree import flatten


class Layout:
    """Where each input leaf's elements sit among the ``total`` lanes, for one combination of
    leaf shapes, dtype and batch axes: computed once and reused by every later call with the
    same shapes (``_layout``), since a small call is mostly this bookkeeping. It makes the
    seeds of a pass and cuts its output lanes into Jacobian blocks."""

    __slots__ = ("xp", "dtype", "nlead", "shapes", "items", "where", "total", "widest", "full", "scalars")

    def __init__(self, xp: Any, dtype: Any, shapes: tuple, nlead: int) -> None:
        # per leaf: its per-sample shape, and where its lanes sit on a lane axis: an int for a 0-d
        # leaf (indexing by it drops the axis with no reshape), else a slice whose columns are
        # reshaped to the item shape
        self.xp, self.dtype, self.nlead, self.shapes = xp, dtype, nlead, shapes
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
        self.scalars = nlead == 0 and all(item == () for item in self.items)  # every leaf 0-d: lane ``where``
        self.full = None  # all lanes' seeds of a small multi-leaf layout: read-only views, made once

    def one_pass(self) -> bool:
        """A small call: at most ``SMALL`` lanes, whose seeds fit ``config.tangent_bytes``, taken in
        one pass with no planning (``transforms._one_pass``)."""
        return 0 < self.total <= SMALL and self.total * self.widest * self.dtype.itemsize <= config.tangent_bytes

    def seeds(self, start: int, stop: int) -> list[Any]:
        """Tangents for lanes ``start:stop``: rows of the identity, split over the leaves."""
        if start == 0 and stop == self.total and self.full is not None:
            return self.full
        k = stop - start
        if len(self.items) == 1:  # one input (jacfwd of an array, batch_jacobian): implicit identity, lanes.py
            ones = self.xp.ones(self.shapes[0], dtype=self.dtype)
            return [Diagonal(ones, k, start, self.nlead, self.xp)]
        if self.total <= 256:  # small: slice a cached identity (most of a tiny call's time)
            eye = _identity(self.xp, self.total, self.dtype)[start:stop]
        else:
            eye = self.xp.eye(k, self.total, k=start, dtype=self.dtype)
        seeds = [
            eye[:, w] if type(w) is int else eye[:, w].reshape((k,) + item)
            for w, item in zip(self.where, self.items)
        ]
        if k == self.total and self.total <= 256:  # views of the read-only identity: safe to hand out again
            self.full = seeds
        return seeds

    def blocks(self, t: Any, o: Any) -> list[Any]:
        """Split the lanes ``t`` (N, *o.shape) of output ``o`` (a value, or a Dual of it) into Jacobian
        blocks ``o.shape + item`` per input leaf; ``t`` None (``o`` does not depend on the inputs)
        gives zeros."""
        if self.scalars and t is not None and type(t) is not Diagonal:  # each block is one lane
            cols = t.transpose(tuple(range(1, t.ndim)) + (0,)) if t.ndim > 1 else t
            return [cols[..., w] for w in self.where]
        o = primal(o)
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


SMALL = 64  # input elements up to which a call whose arguments are all arrays takes one pass of all lanes


_LAYOUTS: dict[tuple, Layout] = {}


def _layout(key: tuple, shapes: tuple, nlead: int) -> Layout:
    got = _LAYOUTS.get(key)
    if got is None:
        if len(_LAYOUTS) >= 256:  # many distinct shapes: start over rather than grow without bound
            _LAYOUTS.clear()
        got = _LAYOUTS[key] = Layout(key[0], key[1], shapes, nlead)
    return got


def small_layout(args: tuple) -> Layout | None:
    """The layout of a small call whose arguments are all differentiated and each a NumPy floating
    array, of one native dtype, together at most ``SMALL`` elements whose seeds fit
    ``config.tangent_bytes``: what ``Inputs(list(args)).layout`` would be, without the checks other
    inputs need. None for anything else."""
    d, shapes = None, []
    for x in args:
        if type(x) is not np.ndarray or (d is not None and x.dtype is not d):
            return None
        d = x.dtype
        shapes.append(x.shape)
    if d is None or d.kind != "f" or not d.isnative:
        return None
    key = (np, d, 0, tuple(shapes))
    layout = _LAYOUTS.get(key) or _layout(key, key[3], 0)
    return layout if layout.one_pass() else None


class Inputs:
    """The differentiated inputs of one transform call: their leaves and their ``Layout``."""

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
        self.seeds, self.blocks = self.layout.seeds, self.layout.blocks


@functools.lru_cache(maxsize=16)
def _identity(xp: Any, n: int, dtype: Any) -> Any:
    """The n x n identity, cached and read-only: seeds are slices of it, and a result that is
    still a view of it is copied before it is returned (``fresh``)."""
    eye = xp.eye(n, dtype=dtype)
    if hasattr(eye, "setflags"):
        eye.setflags(write=False)
    return eye


def root(a: Any) -> Any:
    while getattr(a, "base", None) is not None:
        a = a.base
    return a


def fresh(arrays: list[Any], taken: set[int]) -> list[Any]:
    """Results the caller may edit in place: a read-only array (a view of a cached seed, a
    broadcast) or one sharing memory with an input or an earlier result is copied. Tangent
    lanes pass through here before they are cut into Jacobian blocks (None and implicit
    lanes, which make fresh blocks, as they are)."""
    out = []
    for a in arrays:
        if a is None or type(a) is Diagonal:
            out.append(a)
            continue
        base = a
        while getattr(base, "base", None) is not None:  # root(a), written out: once per output
            base = base.base
        flags = getattr(a, "flags", None)
        if id(base) in taken or (flags is not None and not flags.writeable):
            a = a.copy()
            base = a
        taken.add(id(base))
        out.append(a)
    return out


def _chunk(chunk_size: int | None, total: int, widest: int, itemsize: int) -> int:
    if chunk_size is not None:
        if not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
        return min(int(chunk_size), max(total, 1))
    return max(1, min(total, config.tangent_bytes // max(1, widest * itemsize)))


# --- the lane loop ----------------------------------------------------------------------
def run_lanes(run: Callable[[list[Any], int], Any], inputs: Inputs, chunk_size: int | None):
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
            same_values(first[0], out_leaves)
        for j, t in enumerate(tangents):
            parts[j].append((t, (start, stop)))
        if limit is not None:  # resize from what this pass met
            k = max(1, min(total, limit // max(widest, inputs.widest, 1)))
        progress(stop)
        start = stop
    lanes = [_concat_lanes(p, o) for p, o in zip(parts, first[0])]
    return first[0], first[1], lanes, seen


def _pass(run: Callable[[list[Any], int], Any], inputs: Inputs, start: int, stop: int, limit: int | None):
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
        widest, over = budget.stop(level)
        close_level(level)
    if over:  # f caught the stop (a bare except) and went on
        return over
    return out_leaves, out_def, tangents, widest


def same_values(first: list[Any], later: list[Any]) -> None:
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
