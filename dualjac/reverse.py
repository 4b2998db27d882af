"""Reverse mode: ``linearize``, ``vjp``, ``jacrev``, ``grad``, ``hvp``, and the ``mode="auto"`` choice.

Every transform here linearizes ``f`` once (``dualjac.tape``: the forward rules record a tape
of linear primitives) and transposes the tape. **Cotangent lanes** are the transposed picture of
tangent lanes: a backward pass carries K output directions at once, cotangents of shape
``(K, *shape)``, and yields K rows of the Jacobian. ``jacrev`` needs ``ceil(M / K)`` backward passes
for M output elements, all over the one tape, with K chosen so one cotangent stays under
``config.tangent_bytes`` (or ``chunk_size``). For per-sample Jacobians the lanes are the output
*features*, shared by all B rows (rows are independent), not B times the outputs.

Which mode is faster depends on the shapes: forward mode costs one lane per input element, reverse
mode one lane per output element plus the tape. ``mode="auto"`` (``jacobian``, ``batch_jacobian``)
therefore picks **forward** when the input has at most ``AUTO_MIN_INPUTS`` elements (per sample),
and otherwise linearizes, then picks **reverse** when the output has at most ``1/AUTO_RATIO`` as
many elements as the input (per sample), forward otherwise (or when a step has no transpose). The
pick is logged at debug level on the ``"dualjac"`` logger.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import transposes  # noqa: F401  (fills the tape's table of transposes before any trace)
from .backend import array_namespace
from .errors import NoTransposeError, TapeTooLargeError
from .inputs import argnum_tuple, call_user, check_input, is_ready, lanes_of, primal, strip
from .levels import close_level, open_level
from .numpy_api import value
from .passes import fresh, root
from .settings import AUTO_MIN_INPUTS, Progress, config
from .tape import output_ids, trace
from .tree import flatten, unflatten

log = logging.getLogger("dualjac")
AUTO_RATIO = 4  # reverse when outputs <= inputs / AUTO_RATIO (a backward lane costs more than a forward lane)
MODES = ("auto", "forward", "reverse")


class Linearized:
    """``f`` linearized at one point w.r.t. some of its arguments: output, tape, and the ids of
    the inputs' and outputs' tape nodes."""

    def __init__(self, f: Callable[..., Any], args: Sequence[Any], nums: tuple[int, ...], has_aux: bool = False):
        self.level = level = open_level()
        try:
            self._trace(f, args, nums, has_aux, level)
        finally:
            close_level(level)  # the tape holds the linear map; no Dual of this level lives on

    def _trace(self, f: Callable[..., Any], args: Sequence[Any], nums: tuple[int, ...], has_aux: bool, level: int):
        wrt = tuple(args[a] for a in nums)
        leaves, self.in_def = flatten(wrt)
        self.leaves = [
            x if is_ready(x) else check_input(x, f"argument {nums} (leaf {i})") for i, x in enumerate(leaves)
        ]
        if not self.leaves:
            raise ValueError("nothing to differentiate: the differentiated arguments contain no arrays")
        if array_namespace(*[value(x) for x in self.leaves]) is not np:
            raise NoTransposeError(
                "arrays that are not NumPy arrays (CuPy)", "reverse mode runs on NumPy arrays so far"
            )
        self.aux = None

        def rebuild(duals: list[Any]) -> Any:
            call = list(args)
            for a, sub in zip(nums, unflatten(self.in_def, duals)):
                call[a] = sub
            out = call_user(f, *call)
            if has_aux:
                if not (isinstance(out, tuple) and len(out) == 2):
                    raise TypeError("has_aux=True: f must return a pair (output, aux)")
                out, aux = out
                self.aux = strip(aux, level)
            return out

        out, self.tape, self.in_ids = trace(f, self.leaves, rebuild, level)
        o_leaves, self.out_def = flatten(out)
        for o in o_leaves:
            lanes_of(o, level)  # re-reads a view written after it was taken; an escaped Dual raises
        self.out_ids = output_ids(o_leaves, level)
        self.outs = [primal(o, level) for o in o_leaves]
        self.out = unflatten(self.out_def, self.outs)

    def in_shapes(self) -> list[tuple]:
        return [tuple(np.shape(value(x))) for x in self.leaves]

    def out_shapes(self) -> list[tuple]:
        return [tuple(np.shape(value(o))) for o in self.outs]

    def backward(self, cts: list[Any]) -> list[Any]:
        """Cotangents ``(K, *out.shape)`` per output leaf (None: zero) to ``(K, *in.shape)`` per input leaf."""
        seeds = {}
        for i, c in zip(self.out_ids, cts):
            if i is not None and c is not None:
                seeds[i] = c[:, None] if i not in seeds else seeds[i] + c[:, None]
        res = self.tape.backward(seeds, self.in_ids)
        K = next((c.shape[0] for c in cts if c is not None), 1)
        out = []
        for r, x in zip(res, self.leaves):
            p = value(x)
            if r is None:
                r = array_namespace(p).zeros((K,) + tuple(np.shape(p)), dtype=p.dtype)
            else:
                r = r[:, 0]
                if r.dtype != p.dtype:
                    r = r.astype(p.dtype)
            out.append(r)
        return out

    def lanes(self, itemsize: int, chunk_size: int | None, total: int) -> int:
        if chunk_size is not None:
            if not isinstance(chunk_size, int) or chunk_size < 1:
                raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
            return min(chunk_size, max(total, 1))
        return max(1, min(total, config.tangent_bytes // max(1, self.tape.widest * itemsize)))


# --- linearize, vjp ------------------------------------------------------------------------
def linearize(f: Callable[..., Any], *primals: Any) -> tuple[Any, Callable[..., Any]]:
    """``(f(*primals), f_jvp)``: ``f`` run once, its linear map kept as a tape; ``f_jvp(*tangents)``
    replays it (``jax.linearize``). The same tape, transposed, is what ``vjp`` runs backwards.

    >>> import numpy as np, dualjac as dj
    >>> out, f_jvp = dj.linearize(np.sin, np.array([0.0, np.pi]))
    >>> f_jvp(np.array([1.0, 1.0])).round(6).tolist()
    [1.0, -1.0]
    """
    lin = Linearized(f, primals, tuple(range(len(primals))))

    def f_jvp(*tangents: Any) -> Any:
        t_leaves, t_def = flatten(tuple(tangents))
        if t_def != lin.in_def:
            raise ValueError("f_jvp: tangents must have the structure of the primals")
        seeds = {}
        for i, (t, s) in enumerate(zip(t_leaves, lin.in_shapes())):
            if tuple(np.shape(t)) != s:
                raise ValueError(f"tangent {i} has shape {tuple(np.shape(t))}, but its primal has shape {s}")
            seeds[lin.in_ids[i]] = t[None]
        res = lin.tape.forward(seeds, lin.out_ids)
        outs = [_zeros(o) if r is None else r[0] for r, o in zip(res, lin.outs)]
        return unflatten(lin.out_def, _own(outs, t_leaves, lin.leaves))

    return lin.out, f_jvp


def _own(results: list[Any], *callers: list[Any]) -> list[Any]:
    """Results the caller may edit: a read-only view (a broadcast cotangent), one sharing memory with
    another result (an add passes one cotangent to both arguments) or with the caller's arrays
    (the tangents or cotangents given, the primals) is copied."""
    return fresh(results, {id(root(a)) for c in callers for a in c})


def _zeros(o: Any) -> Any:
    p = value(o)
    return array_namespace(p).zeros(np.shape(p), dtype=getattr(p, "dtype", np.float64))


def vjp(f: Callable[..., Any], *primals: Any, has_aux: bool = False) -> tuple:
    """``(f(*primals), vjp_fn)`` as ``torch.func.vjp``: ``vjp_fn(cotangents)`` (the output's structure)
    returns a tuple with one cotangent per primal (each in that primal's structure).

    >>> import numpy as np, dualjac as dj
    >>> out, vjp_fn = dj.vjp(lambda x: x ** 2, np.array([1.0, 2.0]))
    >>> vjp_fn(np.array([1.0, 10.0]))[0].tolist()
    [2.0, 40.0]
    """
    lin = Linearized(f, primals, tuple(range(len(primals))), has_aux)

    def vjp_fn(cotangents: Any) -> tuple:
        c_leaves, c_def = flatten(cotangents)
        if c_def != lin.out_def and not (len(c_leaves) == 1 == len(lin.outs)):
            raise ValueError("vjp_fn: cotangents must have the structure of f's output")
        cts = []
        for i, (c, s) in enumerate(zip(c_leaves, lin.out_shapes())):
            c = check_input(c, f"cotangent {i}")
            if tuple(np.shape(c)) != s:
                raise ValueError(f"cotangent {i} has shape {tuple(np.shape(c))}, but the output has shape {s}")
            cts.append(c[None])
        res = [r[0] for r in lin.backward(cts)]
        return tuple(unflatten(lin.in_def, _own(res, c_leaves, lin.leaves)))

    return (lin.out, vjp_fn, lin.aux) if has_aux else (lin.out, vjp_fn)


# --- Jacobians by cotangent lanes ------------------------------------------------------------
def _rows(lin: Linearized, chunk_size: int | None, nlead: int = 0) -> list[list[Any]]:
    """Per output leaf, per input leaf, the Jacobian block ``out.shape + in_item`` (per sample when
    ``nlead = 1``: ``(B, *out_item, *in_item)``), from backward passes of K cotangent lanes."""
    o_shapes = lin.out_shapes()
    items = [s[nlead:] for s in o_shapes]
    sizes = [math.prod(i) for i in items]
    offs = np.cumsum([0] + sizes).tolist()
    total = offs[-1]
    # (a Python number among the outputs, a constant, takes part as NumPy's weak scalar)
    dtype = np.result_type(*[getattr(v, "dtype", v) for v in map(value, lin.outs)]) if lin.outs else np.float64
    xp = array_namespace(*[value(x) for x in lin.leaves])
    k = lin.lanes(np.dtype(dtype).itemsize, chunk_size, total)
    parts: list[list[Any]] = [[] for _ in lin.leaves]
    progress = Progress(total, "cotangent lanes")
    for start in range(0, max(total, 1), k):
        stop = min(total, start + k)
        eye = xp.eye(stop - start, total, k=start, dtype=dtype)
        cts = []
        for j, (shape, item) in enumerate(zip(o_shapes, items)):
            if lin.out_ids[j] is None or offs[j + 1] <= start or offs[j] >= stop:
                cts.append(None)
                continue
            c = eye[:, offs[j] : offs[j + 1]].reshape((stop - start,) + (1,) * nlead + item)
            cts.append(xp.broadcast_to(c, (stop - start,) + shape) if nlead else c)
        if all(c is None for c in cts):
            for i, x in enumerate(lin.leaves):
                p = value(x)
                parts[i].append(xp.zeros((stop - start,) + tuple(np.shape(p)), dtype=p.dtype))
        else:
            for i, r in enumerate(lin.backward(cts)):
                parts[i].append(r)
        if k < total:
            progress(stop)
    # (M, *in.shape) per input; copied where a backward pass left a read-only view (a broadcast cotangent)
    rows = fresh([p[0] if len(p) == 1 else xp.concatenate(p, axis=0) for p in parts], set())
    blocks = []
    for j, (shape, item) in enumerate(zip(o_shapes, items)):
        per_in = []
        for r, x in zip(rows, lin.leaves):
            r = r[offs[j] : offs[j + 1]]  # (m_j, *lead, *in_item)
            if nlead:
                r = xp.moveaxis(r, 0, 1)  # (B, m_j, *in_item)
                r = r.reshape(shape[:nlead] + item + tuple(r.shape[2:]))
            else:
                r = r.reshape(shape + tuple(np.shape(value(x))))
            per_in.append(r)
        blocks.append(per_in)
    return blocks


def _assemble(lin: Linearized, blocks: list[list[Any]], single: bool) -> Any:
    out = []
    for per_in in blocks:
        tree = unflatten(lin.in_def, per_in)
        out.append(tree[0] if single else tree)
    return unflatten(lin.out_def, out)


def jacrev(
    f: Callable[..., Any],
    argnums: int | tuple[int, ...] = 0,
    *,
    has_aux: bool = False,
    chunk_size: int | None = None,
) -> Callable[..., Any]:
    """The Jacobian of ``f`` w.r.t. argument(s) ``argnums`` by reverse mode (``torch.func.jacrev``).

    Same shapes and pytree conventions as ``jacfwd``: ``out.shape + in.shape`` per leaf. ``f`` is
    linearized once; each backward pass over the tape carries ``chunk_size`` cotangent lanes (by
    default as many as ``config.tangent_bytes`` allows: usually all outputs in one pass).

    :param f: the function: arrays (or pytrees of arrays) in, arrays (or a pytree) out, written with ``np.*``
    :param argnums: which positional argument(s) to differentiate; a tuple gives a tuple of Jacobians
    :param has_aux: ``f`` returns ``(output, aux)``: only ``output`` is differentiated, and the result is
        ``(jacobian, aux)`` with ``aux`` as plain arrays (as in ``torch.func``)
    :param chunk_size: cotangent lanes per backward pass (``None``: as the budget allows)

    >>> import numpy as np, dualjac as dj
    >>> J = dj.jacrev(lambda x: np.sum(x ** 2))(np.array([1.0, 2.0]))
    >>> J.tolist()
    [2.0, 4.0]
    """

    def jac_f(*args: Any) -> Any:
        nums = argnum_tuple(argnums, len(args))
        lin = Linearized(f, args, nums, has_aux)
        jac = _assemble(lin, _rows(lin, chunk_size), isinstance(argnums, numbers.Integral))
        return (jac, lin.aux) if has_aux else jac

    return jac_f


def grad(f: Callable[..., Any], argnums: int | tuple[int, ...] = 0, *, has_aux: bool = False) -> Callable[..., Any]:
    """The gradient of a scalar-valued ``f`` (``torch.func.grad``): one backward pass.

    :param f: a scalar-valued function
    :param argnums: which positional argument(s) to differentiate; a tuple gives a tuple of Jacobians
    :param has_aux: ``f`` returns ``(output, aux)``: only ``output`` is differentiated, and the result is
        ``(gradient, aux)`` with ``aux`` as plain arrays (as in ``torch.func``)

    >>> import numpy as np, dualjac as dj
    >>> dj.grad(lambda x: np.sum(np.sin(x)))(np.array([0.0, np.pi])).round(6).tolist()
    [1.0, -1.0]
    """

    def grad_f(*args: Any) -> Any:
        nums = argnum_tuple(argnums, len(args))
        lin = Linearized(f, args, nums, has_aux)
        if len(lin.outs) != 1 or np.shape(value(lin.outs[0])) != ():
            shapes = [tuple(np.shape(value(o))) for o in lin.outs]
            raise ValueError(
                f"grad needs f to return one scalar (a 0-d array), not outputs of shapes {shapes}; "
                "use jacrev for a Jacobian, or vjp for a vector-Jacobian product"
            )
        o = value(lin.outs[0])
        seed = array_namespace(o).ones((1,), dtype=getattr(o, "dtype", np.float64))
        res = [r[0] for r in lin.backward([seed])]
        g = unflatten(lin.in_def, _own(res, lin.leaves))
        g = g[0] if isinstance(argnums, numbers.Integral) else g
        return (g, lin.aux) if has_aux else g

    return grad_f


def hvp(f: Callable[..., Any], primals: Any, tangents: Any) -> tuple[Any, Any]:
    """``(f(primals), H v)`` like ``torch.autograd.functional.hvp``: forward-over-reverse (the JVP of
    the gradient), never forming H. ``primals`` and ``tangents``: an array or a tuple of arrays.

    >>> import numpy as np, dualjac as dj
    >>> out, hv = dj.hvp(lambda x: np.sum(x ** 3), np.array([1.0, 2.0]), np.array([1.0, 0.0]))
    >>> float(out), hv.tolist()
    (9.0, [6.0, 0.0])
    """
    from .transforms import jvp

    single = not isinstance(primals, tuple)
    ps = (primals,) if single else tuple(primals)
    ts = (tangents,) if single else tuple(tangents)
    value_too = lambda *xs: (lambda y: (y, y))(f(*xs))  # noqa: E731  f's value rides along as aux
    g = grad(value_too, argnums=tuple(range(len(ps))), has_aux=True)
    (_, out), (hv, _) = jvp(g, ps, ts)
    return out, (hv[0] if single else hv)


# --- mode="auto" ------------------------------------------------------------------------------
def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    return mode


def auto_jacobian(f: Callable[..., Any], args: tuple, nums: tuple, single: bool, n_in: int, mode: str,
                  chunk_size: int | None, nlead: int = 0) -> Any:  # fmt: skip
    """The Jacobian by reverse mode, or None where ``mode="auto"`` picks forward (see the module doc)."""
    if mode == "auto" and n_in <= AUTO_MIN_INPUTS:
        log.debug("dualjac mode=auto: forward (%d input elements <= %d)", n_in, AUTO_MIN_INPUTS)
        return None
    try:
        lin = Linearized(f, args, nums)
    except (NoTransposeError, TapeTooLargeError) as e:  # forward mode needs neither transposes nor a tape
        if mode == "reverse":
            raise
        log.debug("dualjac mode=auto: forward (%s)", e)
        return None
    n_out = sum(math.prod(s[nlead:]) for s in lin.out_shapes())
    if mode == "auto" and n_out * AUTO_RATIO > n_in:
        log.debug("dualjac mode=auto: forward (%d outputs > %d inputs / %d)", n_out, n_in, AUTO_RATIO)
        return None
    log.debug("dualjac mode=%s: reverse (%d outputs, %d inputs)", mode, n_out, n_in)
    if nlead:
        for s in lin.out_shapes():
            if len(s) < 1 or s[0] != np.shape(value(lin.leaves[0]))[0]:
                raise ValueError(
                    f"batch_jacobian: an output has shape {s}, but every output must keep the batch axis "
                    f"of size {np.shape(value(lin.leaves[0]))[0]} first"
                )
    return _assemble(lin, _rows(lin, chunk_size, nlead), single)


def hessian_inner(f: Callable[..., Any], argnums: Any, mode: str, args: tuple) -> Callable[..., Any]:
    """The inner Jacobian of ``hessian``: reverse (forward-over-reverse) for wide inputs under ``auto``."""
    from .transforms import jacfwd

    if mode == "auto":
        nums = argnum_tuple(argnums, len(args))
        n_in = sum(int(np.size(value(x))) for a in nums for x in flatten(args[a])[0])
        mode = "reverse" if n_in > AUTO_MIN_INPUTS else "forward"
        log.debug("dualjac hessian mode=auto: %s-over-forward/reverse (%d inputs)", mode, n_in)
    return jacrev(f, argnums) if mode == "reverse" else jacfwd(f, argnums)
