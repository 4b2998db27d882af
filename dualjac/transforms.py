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

import logging
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import budget
from .backend import array_namespace
from .dual import Dual
from .inputs import argnum_tuple, call_user, check_function, check_input, lanes_of, primal, strip
from .lanes import dense
from .levels import close_level, open_level
from .numpy_api import value
from .passes import Inputs, Layout, fresh, root, run_lanes, small_layout
from .settings import AUTO_MIN_INPUTS, config
from .tree import flatten, unflatten

_log = logging.getLogger("dualjac")


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
    check_function(f)
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
    return unflatten(o_def, outs), unflatten(o_def, fresh(tans, {id(root(t)) for t in t_leaves}))


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

    check_function(f)
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
    inputs = Inputs(leaves, nums=nums)
    # every argument differentiated, each an array: the duals are the arguments (no tree walk per pass)
    flat = every and not kwargs and not has_aux and len(leaves) == len(args) and not any(in_def[2])
    if flat and chunk_size is None and inputs.layout.one_pass():
        jac = _one_pass(f, inputs.leaves, inputs.layout, single)
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

    out_leaves, out_def, lanes, _ = run_lanes(run, inputs, chunk_size)
    jac = _assemble(inputs.layout, in_def, out_leaves, out_def, lanes, single)
    return (jac, aux_box[0]) if has_aux else jac


def _one_pass(f: Callable[..., Any], leaves: list[Any], layout: Layout, single: bool) -> Any:
    """``jacfwd(f)(*leaves)`` in one pass of all lanes: ``run_lanes`` without its planning, for
    the small calls whose time is mostly bookkeeping. None if the pass went over its budget (the
    caller then plans passes as usual)."""
    level = open_level()
    budget.start(level, config.tangent_bytes // layout.dtype.itemsize, layout.total)
    try:
        out = call_user(f, *[Dual(x, s, level) for x, s in zip(leaves, layout.seeds(0, layout.total))])
        out_leaves, out_def = flatten(out)
        lanes = [  # lanes_of, its common case first
            o.tangent if type(o) is Dual and o.level == level and o.view is None else lanes_of(o, level)
            for o in out_leaves
        ]
    except budget.OverBudget as e:
        if e.level != level:
            raise
        return None
    finally:
        over = budget.stop(level)[1]
        close_level(level)
    if over:  # f caught the stop (a bare except) and went on
        return None
    return _assemble(layout, None, out_leaves, out_def, lanes, single)


def _assemble(layout: Layout, in_def: Any, out_leaves: list[Any], out_def: Any, lanes: list[Any], single: bool) -> Any:
    """The Jacobian from each output's lanes: per output leaf, its blocks in the inputs' structure
    ``in_def`` (None: a flat tuple of the leaves)."""
    blocks = []
    where = layout.where if layout.scalars and in_def is None else None  # 0-d inputs: a block is a lane
    for o, t in zip(out_leaves, fresh(lanes, set())):
        if where is not None and type(t) is np.ndarray and t.ndim == 1:  # and a 0-d output (layout.blocks)
            blocks.append(t[..., where[0]] if single else tuple([t[..., w] for w in where]))
            continue
        per_input = layout.blocks(t, o)
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
    small = small_layout(args) if mode == "auto" and chunk_size is None else None
    if small is not None and small.total <= AUTO_MIN_INPUTS:  # auto's pick is forward mode, in one pass
        check_function(f)
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("dualjac mode=auto: forward (%d input elements <= %d)", small.total, AUTO_MIN_INPUTS)
        jac = _one_pass(f, args, small, single_in)
        if jac is not None:
            return jac
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
    check_function(f)
    return _forward(f, args, {}, tuple(range(len(args))), single_in, False, chunk_size)


def _size(tree: Any) -> int:
    """The number of elements in a pytree of arrays (or Duals, or Python numbers)."""
    return sum(int(np.size(value(x))) for x in flatten(tree)[0])


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
