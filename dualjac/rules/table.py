"""The one rules table: every differentiable op, defined once, reached only through ``apply``.

A rule is data: the op's primal function and its tangent (JVP) rule. NumPy
dispatch (``numpy_api``), the op graph (``graph``) and the torch adapter all call
``apply(op, *args, **params)``; none of them knows a derivative.

Forms of tangent rules (argument order is always ``(xp, ans, d<arg>, *primals, **params)``):

* ``jvp=(rule_for_arg0, rule_for_arg1, ...)``: one rule per argument. ``apply``
  calls only the rules of arguments that are Duals and sums the contributions
  (constants are symbolic zeros). ``None`` marks an argument with no derivative
  (an integer index, say); passing a Dual there raises.
* ``joint=f(xp, ans, tangents, *primals, **params)``: one rule for all arguments,
  ``tangents[i]`` being ``None`` for a constant. For ops over a variable number of
  arrays (concatenate, stack, einsum) or with several outputs.
* ``nondiff=True``: piecewise-constant ops (comparisons, floor, sign): the result
  is a plain array, the symbolic zero tangent.
* ``diagonal=(handler_for_arg0, ...)`` (optional, next to ``jvp=``): for a non-elementwise
  op that can use implicit identity lanes (``lanes.Diagonal``) without writing them out.
  ``handler(xp, ans, diag, *primals, **params)`` returns argument i's contribution
  ``(K, *ans.shape)``, or None where its shortcut does not apply; ``apply`` then passes
  ``diag.dense()`` to the ordinary rule. No other rule ever sees a ``Diagonal``.

Lane discipline: a tangent has shape ``(K, *x.shape)``. For ``elementwise`` rules,
``apply`` first reshapes each tangent to ``(K, 1, ..., *x.shape)`` with the output's
rank, so ``xp.cos(x) * dx`` broadcasts correctly for any mix of argument shapes,
and broadcasts the summed result to ``(K, *ans.shape)``. Other rules receive the
raw ``(K, *x.shape)`` tangents and handle the lane axis themselves (axis
parameters are made negative so they mean the same axis for primal and tangent).

An elementwise rule must be linear and pointwise in its tangent and must not look at
the tangent's shape: ``apply`` may run it on a single lane of implicit identity lanes, or,
for big lane arrays, on ``dx = 1.0`` to get the factor it then writes as ``factor * dx``
into a reused buffer (``dualjac/buffers.py``). A rule that *selects* tangents
(``where(mask, dx, 0)``: where, clip, maximum, relu, ...) declares ``selects=True`` and never
takes that path: a selection gives 0 where an untaken tangent is inf or NaN, a product
``0 * inf`` would give NaN.

Before an op's tangent is computed, ``budget.check`` compares its size with the memory
budget of the pass it belongs to (``dualjac/budget.py``): a pass that would exceed it stops
there and the transform re-plans with fewer lanes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from .. import budget, buffers
from ..backend import array_namespace
from ..dual import Dual, value
from ..errors import ComplexValueError, UnsupportedOpError
from ..lanes import Diagonal, dense
from ..levels import ACTIVE, escaped


class Rule(NamedTuple):
    name: str
    primal: Callable[..., Any]
    jvp: tuple[Callable[..., Any] | None, ...] = ()
    joint: Callable[..., Any] | None = None
    elementwise: bool = False
    nondiff: bool = False
    diagonal: tuple[Callable[..., Any] | None, ...] = ()
    selects: bool = False


RULES: dict[str, Rule] = {}
# Reverse mode (dualjac/tape.py) registers here the joint rules whose tangent numerics are not NumPy
# calls (conv's im2col): given a symbolic tangent, ``apply`` calls this entry instead, which records the
# whole tangent map as one linear op. Empty until dualjac.tape is imported; never used for arrays.
SYMBOLIC: dict[str, Callable[..., Any]] = {}


def _xp_function(name: str) -> Callable[..., Any]:
    def primal(xp, *args, **params):
        return getattr(xp, name)(*args, **params)

    primal.__name__ = name
    return primal


def defrule(
    name: str,
    *,
    primal: Callable[..., Any] | None = None,
    jvp: tuple[Callable[..., Any] | None, ...] = (),
    joint: Callable[..., Any] | None = None,
    elementwise: bool = False,
    nondiff: bool = False,
    diagonal: tuple[Callable[..., Any] | None, ...] = (),
    selects: bool = False,
) -> Rule:
    """Add op ``name`` to the table. ``primal`` defaults to ``xp.<name>``.

    >>> from dualjac.rules import RULES
    >>> RULES["sin"].elementwise
    True
    """
    if name in RULES:
        raise ValueError(f"rule {name!r} is defined twice")
    if sum((bool(jvp), joint is not None, nondiff)) != 1:
        raise ValueError(f"rule {name!r} needs exactly one of jvp=, joint=, nondiff=True")
    if diagonal and not jvp:
        raise ValueError(f"rule {name!r}: diagonal= handlers go with per-argument jvp= rules")
    rule = Rule(name, primal or _xp_function(name), tuple(jvp), joint, elementwise, nondiff, tuple(diagonal), selects)
    RULES[name] = rule
    return rule


def lanes_to_rank(dx: Any, ndim: int) -> Any:
    """Reshape a ``(K, *S)`` tangent to ``(K, 1, ..., *S)`` with ``1 + ndim`` axes."""
    missing = ndim - (dx.ndim - 1)
    if missing <= 0:
        return dx
    return dx.reshape((dx.shape[0],) + (1,) * missing + tuple(dx.shape[1:]))


def as_dtype(ans: Any, w: Any) -> Any:
    """A weight or mask (bool or float64) cast to the result's dtype, so float32 stays float32."""
    return w.astype(ans.dtype)


def select(xp: Any, ans: Any, mask: Any, d: Any, nan_where: Any = None) -> Any:
    """``d`` where ``mask``, else 0, in the result's dtype: a selection, not ``mask * d``, so an
    inf or NaN tangent where the mask is off gives 0, not NaN (``where``, ``relu``, ``clip``).
    Where ``nan_where`` is NaN the tangent is NaN (a NaN value has no derivative)."""
    other = xp.zeros((), dtype=ans.dtype)
    if nan_where is not None:
        nan = xp.isnan(nan_where)
        mask, other = mask & ~nan, xp.where(nan, xp.asarray(xp.nan, dtype=ans.dtype), other)
    return xp.where(mask, d, other)


def sum_parts(parts: Any) -> Any:
    """The sum of a rule's tangent contributions, skipping None (a constant argument's symbolic
    zero); None when every part is None."""
    out = None
    for p in parts:
        if p is not None:
            out = p if out is None else out + p
    return out


def neg_axis(axis: int, ndim: int) -> int:
    """``axis`` as a negative index, so it names the same axis of primal and tangent."""
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of bounds for an array of dimension {ndim}")
    return axis - ndim if axis >= 0 else axis


def neg_axes(axis: Any, ndim: int) -> Any:
    """``neg_axis`` for None (all axes), an int, or a tuple of ints."""
    if axis is None:
        return tuple(range(-ndim, 0))
    if isinstance(axis, (tuple, list)):
        return tuple(neg_axis(a, ndim) for a in axis)
    return neg_axis(axis, ndim)


def apply(name: str, *args: Any, **params: Any) -> Any:
    """Evaluate op ``name`` on arrays or Duals: the one door to the rules table.

    >>> import numpy as np
    >>> x = Dual(np.array(0.0), np.array([1.0]))
    >>> y = apply("sin", x)        # sin(0) = 0, tangent cos(0) * 1 = 1
    >>> float(y.primal), y.tangent.tolist()
    (0.0, [1.0])
    """
    rule = RULES.get(name)
    if rule is None:
        raise UnsupportedOpError(name)
    level = 0  # the innermost transform among the arguments; lower levels are constants here
    for a in args:
        t = type(a)
        if t is Dual:
            if a.view is not None:
                a.refresh()
            if a.level > level:
                level = a.level
        elif t is list or t is tuple:  # array-likes, as NumPy takes them
            args = _as_arrays(args)
            return apply(name, *args, **params)
    if level == 0:
        return rule.primal(array_namespace(*args), *args, **params)
    if level not in ACTIVE:  # (a lower-level escaped Dual is caught when the primal applies it)
        raise escaped(level)

    primals = tuple([a.primal if type(a) is Dual and a.level == level else a for a in args])
    xp = array_namespace(*primals)
    ans = rule.primal(xp, *primals, **params)
    if rule.nondiff:
        return ans
    if getattr(getattr(ans, "dtype", None), "kind", "f") == "c":
        raise ComplexValueError(
            f"{name} gave a complex result from a differentiated value: dualjac carries real tangents "
            "only, and dropping the imaginary part would give a wrong derivative. Keep real and "
            "imaginary parts as separate real arrays (e.g. cos(x) and sin(x) for exp(1j * x))"
        )

    if rule.joint is not None:
        budget.check(level, ans)
        tangents = [dense(a.tangent) if type(a) is Dual and a.level == level else None for a in args]
        joint = rule.joint
        if name in SYMBOLIC and any(getattr(t, "_dualjac_symbolic", False) for t in tangents):
            joint = SYMBOLIC[name]
        return _wrap(ans, joint(xp, ans, tangents, *primals, **params), level)

    diag = _common_diagonal(args, level, ans) if rule.elementwise else None
    if diag is None:
        budget.check(level, ans)
    tangent = None
    ndim = ans.ndim if rule.elementwise else -1
    for i, a in enumerate(args):
        if type(a) is not Dual or a.level != level:
            continue  # a constant: its contribution is a symbolic zero
        jvp_i = rule.jvp[i] if i < len(rule.jvp) else None
        if jvp_i is None:
            raise UnsupportedOpError(
                f"{name} (argument {i})",
                f"argument {i} of {name} is not differentiable; pass a constant there",
            )
        t, contrib = a.tangent, None
        if type(t) is Diagonal and diag is None and i < len(rule.diagonal) and rule.diagonal[i] is not None:
            contrib = rule.diagonal[i](xp, ans, t, *primals, **params)  # opted in: None if it does not apply
        if contrib is None:
            dx = t.values[None] if diag is not None else dense(t)  # one lane stands for all
            if dx.ndim <= ndim:
                dx = lanes_to_rank(dx, ndim)
            big = not rule.selects and diag is None and ndim >= 0 and ans.size * dx.shape[0] * 8 >= buffers.MIN_BYTES
            contrib = _times_factor(xp, ans, dx, jvp_i, primals, params) if big else None
            if contrib is None:
                contrib = jvp_i(xp, ans, dx, *primals, **params)
        tangent = contrib if tangent is None else tangent + contrib
    if tangent.dtype != ans.dtype:  # a float32 Dual meeting a float64 constant: the result's dtype wins
        tangent = tangent.astype(ans.dtype)
    if diag is not None:
        return Dual(ans, diag.with_values(tangent[0]), level)
    if rule.elementwise and tangent.shape[1:] != ans.shape:
        tangent = xp.broadcast_to(tangent, tangent.shape[:1] + ans.shape)
    return Dual(ans, tangent, level)


def _as_arrays(args: tuple) -> tuple:
    """Lists and tuples among an op's array arguments as arrays (a nested list holding Duals is
    stacked, so its tangents are kept)."""
    return tuple(as_array(a) if type(a) is list or type(a) is tuple else a for a in args)


def as_array(a: Any, like: Any = None) -> Any:
    """An array-like (nested lists/tuples of numbers, arrays or Duals) as one array or Dual, of the
    arrays' library or ``like``'s (a list next to a CuPy array becomes a CuPy array)."""
    if type(a) is not list and type(a) is not tuple:
        return a
    items = [as_array(e, like) for e in a]
    if any(type(e) is Dual for e in items):
        return apply("stack", *items, axis=0)
    return array_namespace(*items, value(like)).asarray(items)


def _times_factor(xp: Any, ans: Any, dx: Any, jvp_i: Callable[..., Any], primals: tuple, params: dict) -> Any:
    """``factor * dx`` written into a reused buffer (``dualjac/buffers.py``), for the big dense lanes
    of an elementwise op: its rule is linear and pointwise in the tangent, so applied to a unit
    tangent it gives the factor. None where this does not apply: the caller runs the rule on dx."""
    out = buffers.out_for((dx.shape[0],) + ans.shape, dx, dtype=ans.dtype)
    if out is None:  # no pool here (CuPy, a Dual tangent, reuse turned off): the rule as written
        return None
    try:
        factor = jvp_i(xp, ans, 1.0, *primals, **params)
    except (ZeroDivisionError, OverflowError):  # Python-scalar arithmetic (1.0 / 0): NumPy's order gives inf
        return None
    if type(factor) is float and factor == 1.0:
        return dx  # ``out`` is dropped unused, and so is free again
    # a Dual of an outer transform (nested) cannot go into out=; an inf/nan factor may be finite in the
    # rule's own order of operations (-ans * dy / y against (-ans / y) * dy), so the rule decides
    if not buffers.plain(factor) or not xp.isfinite(factor).all():
        return None
    return xp.multiply(factor, dx, out=out)


def _common_diagonal(args: tuple, level: int, ans: Any) -> Diagonal | None:
    """The shared implicit-identity structure of all differentiated arguments, if every one
    has it and none is broadcast up to ``ans`` (elementwise ops then keep it)."""
    diag = None
    for a in args:
        if type(a) is Dual and a.level == level:
            t = a.tangent
            if type(t) is not Diagonal or a.primal.shape != ans.shape or (diag is not None and not diag.like(t)):
                return None
            diag = t
    return diag


def _wrap(ans: Any, tangent: Any, level: int) -> Any:
    """Pair outputs with tangents; a ``None`` tangent (symbolic zero) leaves a plain array."""
    if isinstance(ans, (tuple, list)):
        items = [_wrap(a, t, level) for a, t in zip(ans, tangent)]
        return type(ans)(*items) if hasattr(ans, "_fields") else type(ans)(items)
    if tangent is None:
        return ans
    return Dual(ans, tangent if tangent.dtype == ans.dtype else tangent.astype(ans.dtype), level)
