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

import itertools
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from . import rules
from .backend import array_namespace, is_array
from .dual import Dual
from .numpy_api import value
from .tree import flatten, unflatten


@dataclass
class Config:
    """Global settings. ``tangent_bytes``: memory budget for one tangent array, which
    sets the default ``chunk_size`` (lanes per pass)."""

    tangent_bytes: int = 1 << 30


config = Config()
_levels = itertools.count(1)


# --- inputs ---------------------------------------------------------------------------
def _check_input(x: Any, what: str) -> Any:
    """A differentiable input: a floating array (or Python float, or a Dual of an outer transform)."""
    if type(x) is Dual:
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
        hint = " (for a torch.Tensor use dualjac.torch, or t.detach().numpy())" if "torch" in type(x).__module__ else ""
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


def _seeds(leaves: list[Any], start: int, stop: int, total: int) -> list[Any]:
    """Tangents of lanes ``start:stop`` of the identity, split over the input leaves."""
    plain = [value(x) for x in leaves]
    xp = array_namespace(*plain)
    dtype = np.result_type(*[p.dtype for p in plain])
    k = stop - start
    eye = xp.zeros((k, total), dtype=dtype)
    eye[xp.arange(k), xp.arange(start, stop)] = 1
    seeds, offset = [], 0
    for x in plain:
        seeds.append(eye[:, offset : offset + x.size].reshape((k,) + tuple(x.shape)))
        offset += x.size
    return seeds


def _chunk(chunk_size: int | None, total: int, widest: int, itemsize: int) -> int:
    if chunk_size is not None:
        if not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
        return min(int(chunk_size), total)
    return max(1, min(total, config.tangent_bytes // max(1, widest * itemsize)))


# --- the lane loop ----------------------------------------------------------------------
def _lanes(run: Callable[[list[Any], int], Any], leaves: list[Any], total: int, chunk_size, seeder):
    """Run ``run(seeds, level)`` over chunks of lanes; return (outputs of the first pass,
    per output leaf: its tangent lanes for all ``total`` lanes, or None if constant)."""
    itemsize = max((value(x).dtype.itemsize for x in leaves), default=8)
    widest = max((value(x).size for x in leaves), default=1)
    k = _chunk(chunk_size, total, widest, itemsize)
    first_out, parts, start = None, None, 0
    while start < total:
        stop = min(total, start + k)
        level = next(_levels)
        rules.PEAK[0] = 0
        out = run(seeder(start, stop), level)
        out_leaves, out_def = flatten(out)
        if first_out is None:
            first_out = (out_leaves, out_def)
            parts = [[] for _ in out_leaves]
        for j, o in enumerate(out_leaves):
            parts[j].append(o.tangent if type(o) is Dual and o.level == level else None)
        if chunk_size is None and start == 0 and stop < total:  # resize from what we saw
            k = _chunk(None, total, max(widest, rules.PEAK[0]), itemsize)
        start = stop
    lanes = [None if p[0] is None else (p[0] if len(p) == 1 else np.concatenate(p, axis=0)) for p in parts]
    out_leaves, out_def = first_out
    return out_leaves, out_def, lanes


def _primal(o: Any, level: int | None = None) -> Any:
    return o.primal if type(o) is Dual and (level is None or o.level == level) else o


def _columns(t: Any, o: Any, leaves: list[Any], lead: tuple = ()) -> list[Any]:
    """Split lanes ``t`` of shape (N, *o.shape) into per-input Jacobian blocks
    of shape ``o.shape + x.shape`` (``lead`` batch axes excluded from x)."""
    o_shape = tuple(np.shape(o))
    if t is None:
        xp = array_namespace(value(o))
        dtype = np.result_type(*[value(x).dtype for x in leaves])
        return [xp.zeros(o_shape + tuple(np.shape(x))[len(lead) :], dtype=dtype) for x in leaves]
    cols = np.moveaxis(t, 0, -1)  # (*o.shape, N)
    blocks, offset = [], 0
    for x in leaves:
        item = tuple(np.shape(x))[len(lead) :]
        n = math.prod(item)
        block = cols if len(leaves) == 1 else cols[..., offset : offset + n]
        blocks.append(block.reshape(o_shape + item))
        offset += n
    return blocks


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
    tans = [
        o.tangent[0] if type(o) is Dual and o.level == level else _zeros_like(o) for o in o_leaves
    ]
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
        nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
        for a in nums:
            if not -len(args) <= a < len(args):
                raise ValueError(f"argnums {a} is out of range for {len(args)} positional argument(s)")
        nums = tuple(a % len(args) for a in nums)
        wrt = tuple(args[a] for a in nums)
        leaves, in_def = flatten(wrt)
        leaves = [_check_input(x, f"argument {nums[0] if len(nums) == 1 else nums} (leaf {i})") for i, x in enumerate(leaves)]
        total = sum(value(x).size for x in leaves)
        aux_box = []

        def run(seeds: list[Any], level: int) -> Any:
            duals = [Dual(x, s, level) for x, s in zip(leaves, seeds)]
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

        seeder = lambda start, stop: _seeds(leaves, start, stop, total)  # noqa: E731
        out_leaves, out_def, lanes = _lanes(run, leaves, max(total, 1), chunk_size, seeder) if total else _no_lanes(run, leaves)
        blocks = []
        for o, t in zip(out_leaves, lanes):
            per_input = unflatten(in_def, _columns(t, o, leaves))
            blocks.append(per_input[0] if isinstance(argnums, int) else per_input)
        jac = unflatten(out_def, blocks)
        return (jac, aux_box[0]) if has_aux else jac

    return jac_f


def _no_lanes(run, leaves):
    out = run([], next(_levels)) if not leaves else run([_empty_seed(x) for x in leaves], next(_levels))
    out_leaves, out_def = flatten(out)
    return out_leaves, out_def, [None] * len(out_leaves)


def _empty_seed(x):
    v = value(x)
    return array_namespace(v).zeros((0,) + tuple(v.shape), dtype=v.dtype)


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
    x = _check_input(x, "x")
    if np.ndim(x) < 1:
        raise ValueError("batch_jacobian needs a batch: x must have a leading batch axis (B, ...)")
    B, item = np.shape(x)[0], tuple(np.shape(x))[1:]
    total = math.prod(item)

    def seeder(start: int, stop: int) -> list[Any]:
        (e,) = _seeds([value(x)[0]], start, stop, total)  # (k, *item)
        k = stop - start
        # the same seed for every row: a zero-stride view, never materialised
        return [array_namespace(e).broadcast_to(e.reshape((k, 1) + item), (k, B) + item)]

    def run(seeds: list[Any], level: int) -> Any:
        return f(Dual(x, seeds[0], level))

    out_leaves, out_def, lanes = _lanes(run, [x], total, chunk_size, seeder) if total else _no_lanes(run, [x])
    blocks = []
    for o, t in zip(out_leaves, lanes):
        if np.ndim(o) < 1 or np.shape(o)[0] != B:
            raise ValueError(
                f"batch_jacobian: an output has shape {tuple(np.shape(o))}, but every output must "
                f"keep the batch axis of size {B} first"
            )
        (block,) = _columns(t, _primal(o), [x], lead=(B,))
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
