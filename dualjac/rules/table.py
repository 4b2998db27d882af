"""The one rules table: every differentiable op, defined once, reached only through ``apply``.

A rule is data: the op's primal function and its tangent rule, in the form a textbook gives it.
NumPy dispatch (``numpy_api``), the op graph (``graph``) and the torch adapter all call
``apply(op, *args, **params)``; none of them knows a derivative. A tangent has shape
``(K, *x.shape)``: K lanes, K directions pushed forward at once.

The forms (``defrule`` takes exactly one; ``xp`` is the array namespace, ``ans`` the result):

* ``factors=(f0, f1, ...)``, elementwise ops: ``f_i(xp, ans, *primals, **params)`` is the
  partial derivative of the result in argument i, pointwise (``sin``: ``cos(x)``). ``apply``
  multiplies each by its tangent: ``d ans = sum_i f_i * d_i``. ``None``: not differentiable there.
* ``linear=lanes``, ops linear in their first argument (reshape, transpose, indexing, sum):
  the tangent map is the op itself, ``lanes(xp, dx, *primals, **params)`` applying it to all K
  lanes of ``dx`` at once (axes made negative, ``neg_axes``, so they name the same axis).
* ``bilinear=(left, right)``, ops linear in each of two arguments (matmul, tensordot, outer):
  ``d(x * y) = dx * y + x * dy``, ``left(xp, dx, y, **params)`` and ``right(xp, x, dy, **params)``
  being the op with one argument carrying lanes (folded into one GEMM where they can be).
* ``jvp=(rule0, rule1, ...)``, everything else: one rule per argument,
  ``rule_i(xp, ans, d_i, *primals, **params)``. With ``elementwise=True`` the rule is pointwise
  in the tangent but not a product (a selection: ``where``, ``maximum``, ``relu``).
* ``joint=f(xp, ans, tangents, *primals, **params)``: one rule for all arguments, for ops over a
  variable number of arrays (concatenate, einsum) or with several outputs; ``tangents[i]`` is
  None for a constant.
* ``nondiff=True``: piecewise-constant ops (comparisons, floor): the result is a plain array.

``apply`` calls the rules of the arguments that are Duals only (a constant's contribution is a
symbolic zero), sums the contributions and broadcasts the sum to ``(K, *ans.shape)``. For
elementwise forms (factors, and ``jvp`` with ``elementwise=True``) it first reshapes each tangent
to ``(K, 1, ..., *x.shape)`` with the result's rank, so a rule broadcasts like its primal.

Strategies that make this loop fast live beside it, each in one named function:
``common_diagonal`` (implicit identity lanes: an elementwise chain on a freshly seeded input
runs on one lane, ``lanes.Diagonal``), ``scale`` (a big ``factor * dx`` written into reused
memory, ``buffers``), a rule's own ``diagonal=`` handlers (``x @ W`` on seeded lanes is
rows of ``W``), and ``apply_small``, the door of Dual's arithmetic operators: an elementwise op
on a few NumPy scalars of one transform takes apply's steps without the cases it cannot meet.
Before a tangent is computed, ``budget.check`` stops a pass that would exceed its memory budget,
and the transform re-plans with fewer lanes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .. import budget, buffers
from ..backend import array_namespace
from ..dual import Dual, value
from ..errors import ComplexValueError, UnsupportedOpError
from ..lanes import Diagonal, dense
from ..levels import ACTIVE, escaped

POINTWISE = frozenset(("factors", "pointwise"))  # forms whose tangents are aligned to the result's rank


class Rule(NamedTuple):
    """One op of the table: its primal, the form of its tangent rule (module docstring), and the
    per-argument factors or rules (``linear=``/``bilinear=`` declarations become these)."""

    name: str
    primal: Callable[..., Any]
    form: str  # "factors", "pointwise", "linear", "bilinear", "jvp", "joint" or "nondiff"
    per_arg: tuple[Callable[..., Any] | None, ...] = ()  # factors, or tangent rules, one per argument
    joint: Callable[..., Any] | None = None
    diagonal: tuple[Callable[..., Any] | None, ...] = ()


RULES: dict[str, Rule] = {}
# Reverse mode (dualjac/transposes.py) registers here the joint rules whose tangent numerics are not NumPy
# calls (conv's im2col): given a symbolic tangent, ``apply`` calls this entry instead, which records the
# whole tangent map as one linear op. Filled when dualjac.transposes is imported; never used for arrays.
SYMBOLIC: dict[str, Callable[..., Any]] = {}


def _xp_function(name: str) -> Callable[..., Any]:
    def primal(xp, *args, **params):
        return getattr(xp, name)(*args, **params)

    primal.__name__ = name
    primal.numpy = getattr(np, name, None)  # apply_small's shortcut: NumPy values call it directly
    return primal


def _linear_rule(lanes: Callable[..., Any]) -> Callable[..., Any]:
    def rule(xp, ans, t, /, *primals, **params):  # positional-only: a parameter may be named dx
        return lanes(xp, t, *primals, **params)

    return rule


def _bilinear_rules(left: Callable[..., Any], right: Callable[..., Any]) -> tuple[Callable[..., Any], ...]:
    def rule_x(xp, ans, t, x, y, /, **params):
        return left(xp, t, y, **params)

    def rule_y(xp, ans, t, x, y, /, **params):
        return right(xp, x, t, **params)

    return rule_x, rule_y


def defrule(
    name: str,
    *,
    primal: Callable[..., Any] | None = None,
    factors: tuple[Callable[..., Any] | None, ...] = (),
    linear: Callable[..., Any] | None = None,
    bilinear: tuple[Callable[..., Any], Callable[..., Any]] | None = None,
    jvp: tuple[Callable[..., Any] | None, ...] = (),
    joint: Callable[..., Any] | None = None,
    nondiff: bool = False,
    elementwise: bool = False,
    diagonal: tuple[Callable[..., Any] | None, ...] = (),
) -> Rule:
    """Add op ``name`` to the table, its tangent rule in one of the forms of ``dualjac.rules.table``.
    ``primal(xp, *args, **params)`` defaults to ``xp.<name>``.

    >>> import numpy as np, dualjac as dj
    >>> _ = dj.defrule("sinh_", primal=lambda xp, x: xp.sinh(x), factors=(lambda xp, ans, x: xp.cosh(x),))
    >>> dj.jacfwd(lambda x: dj.rules.apply("sinh_", x))(np.array([0.0, 1.0])).round(4).tolist()
    [[1.0, 0.0], [0.0, 1.5431]]
    >>> _ = dj.RULES.pop("sinh_")
    """
    if name in RULES:
        raise ValueError(f"rule {name!r} is defined twice")
    given = {"factors": bool(factors), "linear": linear is not None, "bilinear": bilinear is not None,
             "jvp": bool(jvp), "joint": joint is not None, "nondiff": nondiff}  # fmt: skip
    if sum(given.values()) != 1:
        raise ValueError(f"rule {name!r} needs exactly one of factors=, linear=, bilinear=, jvp=, joint=, nondiff=True")
    form = next(f for f, on in given.items() if on)
    if elementwise and form != "jvp":
        raise ValueError(f"rule {name!r}: elementwise=True goes with jvp= (factors= are elementwise already)")
    if diagonal and form in ("joint", "nondiff"):
        raise ValueError(f"rule {name!r}: diagonal= handlers go with per-argument rules")
    per_arg = {"factors": tuple(factors), "jvp": tuple(jvp), "linear": (linear and _linear_rule(linear),),
               "bilinear": bilinear and _bilinear_rules(*bilinear)}.get(form, ())  # fmt: skip
    form = "pointwise" if elementwise else form
    rule = Rule(name, primal or _xp_function(name), form, per_arg, joint, tuple(diagonal))
    RULES[name] = rule
    return rule


# --- helpers for writing rules ---------------------------------------------------------
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



# --- apply: the one door ----------------------------------------------------------------
# --8<-- [start:apply]  (shown in docs/concepts/writing-rules.md)
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
    args, level = _arguments(args)  # the innermost transform among them; lower levels are constants
    if level == 0:
        return rule.primal(array_namespace(*args), *args, **params)
    primals = tuple([a.primal if type(a) is Dual and a.level == level else a for a in args])
    xp = array_namespace(*primals)
    ans = rule.primal(xp, *primals, **params)
    if rule.form == "nondiff":
        return ans
    _real(name, ans)
    tangents = [a.tangent if type(a) is Dual and a.level == level else None for a in args]
    if rule.joint is not None:
        budget.check(level, ans)
        tangents = [dense(t) for t in tangents]
        joint = _joint(name, rule, tangents)
        return _wrap(ans, joint(xp, ans, tangents, *primals, **params), level)

    diag = common_diagonal(tangents, ans) if rule.form in POINTWISE else None
    if diag is None:
        budget.check(level, ans)
    total = None
    for i, t in enumerate(tangents):
        if t is not None:  # None: a constant, whose contribution is a symbolic zero
            t = t.values[None] if diag is not None else t  # one lane of the diagonal stands for all
            part = contribution(rule, i, xp, ans, t, primals, params)
            total = part if total is None else total + part
    if diag is not None:
        return Dual(ans, diag.with_values(_as_result(total[0], ans)), level)
    return Dual(ans, _as_result(total, ans, xp), level)
# --8<-- [end:apply]


_NUMPY = frozenset((np.ndarray, np.float64, np.float32, float, int))  # operands apply_small takes as they are
_SMALL = buffers.MIN_BYTES // 8  # lane elements below which ``scale`` multiplies in place of ``buffers``


_PLANS: dict[str, tuple] = {}  # name -> what apply_small reads of its rule (``_plan``)


def _plan(name: str, rule: Rule | None) -> tuple | None:
    """What ``apply_small`` reads of a two-argument elementwise rule, read once: the rule, its default
    primal's NumPy function (called directly) or None, whether its form is factors, and its two
    per-argument factors or rules. None for any other rule."""
    if rule is None or rule.form not in POINTWISE or len(rule.per_arg) != 2:
        return None
    plan = _PLANS[name] = (rule, getattr(rule.primal, "numpy", None), rule.form == "factors", *rule.per_arg)
    return plan


def apply_small(name: str, x: Any, y: Any) -> Any:
    """``apply(name, x, y)`` for Dual's arithmetic operators on small NumPy values (a few scalars):
    an elementwise rule of two arguments, each a NumPy value or a Dual of the one active level with a
    NumPy value and written-out lanes too small for ``buffers``. There ``apply`` would take exactly
    these steps (no list, view, lower level, ``Diagonal`` or workspace to consider); anything else,
    or a result that is not real floating point, goes to ``apply``. (The two arguments' checks, the
    factor product and ``_as_result`` are written out, not calls of a shared helper, ``scale`` and
    ``_as_result``: the calls cost 2-5% of a three-op ``jacobian``, measured in one process.)"""
    level, tx, ty = 0, None, None
    if type(x) is Dual:
        if x.view is not None:
            return apply(name, x, y)
        px, tx, level = x.primal, x.tangent, x.level
        if type(tx) is not np.ndarray or tx.size >= _SMALL or type(px) not in _NUMPY:
            return apply(name, x, y)
    elif type(x) in _NUMPY:
        px = x
    else:
        return apply(name, x, y)
    if type(y) is Dual:
        if y.view is not None or (level and y.level != level):
            return apply(name, x, y)
        py, ty, level = y.primal, y.tangent, y.level
        if type(ty) is not np.ndarray or ty.size >= _SMALL or type(py) not in _NUMPY:
            return apply(name, x, y)
    elif type(y) in _NUMPY:
        py = y
    else:
        return apply(name, x, y)
    rule, plan = RULES.get(name), _PLANS.get(name)
    if plan is None or plan[0] is not rule:
        plan = _plan(name, rule)
        if plan is None:
            return apply(name, x, y)
    _, f, factors, dx, dy = plan
    if level not in ACTIVE or level == 0 or (tx is not None and dx is None) or (ty is not None and dy is None):
        return apply(name, x, y)  # (apply raises for an escaped Dual, or one where there is no derivative)
    ans = f(px, py) if f is not None else rule.primal(np, px, py)
    # a NumPy float scalar is a 0-d result: both arguments are 0-d, their lanes (K,), as the result's
    scalar = type(ans) is np.float64 or type(ans) is np.float32
    if not scalar and ans.dtype.kind != "f":  # complex (apply raises) or not floating
        return apply(name, x, y)
    budget.check(level, ans)
    total = None
    for t, d in ((tx, dx), (ty, dy)):
        if t is not None:
            if not scalar and t.ndim <= ans.ndim:
                t = lanes_to_rank(t, ans.ndim)
            if factors:
                factor = d(np, ans, px, py)
                part = t if (type(factor) is int or type(factor) is float) and factor == 1 else factor * t
            else:
                part = d(np, ans, t, px, py)
            total = part if total is None else total + part
    if total.dtype != ans.dtype:  # _as_result, written out
        total = total.astype(ans.dtype)
    if not scalar and total.shape[1:] != ans.shape:
        total = np.broadcast_to(total, total.shape[:1] + ans.shape)
    return Dual(ans, total, level)


def contribution(rule: Rule, i: int, xp: Any, ans: Any, t: Any, primals: tuple, params: dict) -> Any:
    """Argument i's part of the result's tangent, given its tangent ``t``."""
    f = rule.per_arg[i] if i < len(rule.per_arg) else None
    if f is None:
        raise UnsupportedOpError(
            f"{rule.name} (argument {i})", f"argument {i} of {rule.name} is not differentiable; pass a constant there"
        )
    if type(t) is Diagonal:
        handler = rule.diagonal[i] if i < len(rule.diagonal) else None
        part = handler(xp, ans, t, *primals, **params) if handler is not None else None
        if part is not None:  # the handler's shortcut applied
            return part
        t = t.dense()
    if rule.form in POINTWISE and t.ndim <= ans.ndim:
        t = lanes_to_rank(t, ans.ndim)
    if rule.form == "factors":
        return scale(xp, f(xp, ans, *primals, **params), t, ans)
    return f(xp, ans, t, *primals, **params)


def scale(xp: Any, factor: Any, t: Any, ans: Any) -> Any:
    """``factor * t``; a big product of full-size lanes goes into reused memory (``buffers``)."""
    if (type(factor) is int or type(factor) is float) and factor == 1:  # add, positive: t passes as it is
        return t
    if t.shape[1:] == ans.shape:  # out_for refuses small products, Duals and no workspace
        out = buffers.out_for(t.shape, factor, t, dtype=ans.dtype)
        if out is not None:
            return xp.multiply(factor, t, out=out)
    return factor * t


def common_diagonal(tangents: list, ans: Any) -> Diagonal | None:
    """The implicit identity lanes all differentiated arguments share, if each has them at the
    result's shape (no broadcasting): an elementwise op then runs on one lane, ``values``."""
    diag = None
    for t in tangents:
        if t is not None:
            if type(t) is not Diagonal or t.values.shape != ans.shape or (diag is not None and not diag.like(t)):
                return None
            diag = t
    return diag


def _arguments(args: tuple) -> tuple[tuple, int]:
    """The arguments as ``apply`` uses them, and the innermost level among them (0: no Dual).
    Lists become arrays, a view of a Dual written since re-reads its base, an escaped Dual raises."""
    level = 0
    for a in args:
        t = type(a)
        if t is Dual:
            if a.view is not None:
                a.refresh()
            if a.level > level:
                level = a.level
        elif t is list or t is tuple:  # array-likes, as NumPy takes them
            return _arguments(tuple(as_array(a) if type(a) in (list, tuple) else a for a in args))
    if level and level not in ACTIVE:  # (a lower-level escaped Dual is caught when the primal applies it)
        raise escaped(level)
    return args, level


def _real(name: str, ans: Any) -> None:
    if getattr(getattr(ans, "dtype", None), "kind", "f") == "c":
        raise ComplexValueError(
            f"{name} gave a complex result from a differentiated value: dualjac carries real tangents "
            "only, and dropping the imaginary part would give a wrong derivative. Keep real and "
            "imaginary parts as separate real arrays (e.g. cos(x) and sin(x) for exp(1j * x))"
        )


def _joint(name: str, rule: Rule, tangents: list) -> Callable[..., Any]:
    """The joint rule, or reverse mode's recording of it where a tangent is symbolic."""
    if name in SYMBOLIC and any(getattr(t, "_dualjac_symbolic", False) for t in tangents):
        return SYMBOLIC[name]
    return rule.joint


def _as_result(tangent: Any, ans: Any, xp: Any = None) -> Any:
    """A tangent in the result's dtype (a float32 Dual meeting a float64 constant gives float32)
    and, given ``xp``, broadcast to ``(K, *ans.shape)``."""
    if tangent.dtype != ans.dtype:
        tangent = tangent.astype(ans.dtype)
    if xp is not None and tangent.shape[1:] != ans.shape:
        tangent = xp.broadcast_to(tangent, tangent.shape[:1] + ans.shape)
    return tangent


def as_array(a: Any, like: Any = None) -> Any:
    """An array-like (nested lists/tuples of numbers, arrays or Duals) as one array or Dual, of the
    arrays' library or ``like``'s (a list next to a CuPy array becomes a CuPy array)."""
    if type(a) is not list and type(a) is not tuple:
        return a
    items = [as_array(e, like) for e in a]
    if any(type(e) is Dual for e in items):
        return apply("stack", *items, axis=0)
    return array_namespace(*items, value(like)).asarray(items)


def _wrap(ans: Any, tangent: Any, level: int) -> Any:
    """Pair outputs with tangents; a ``None`` tangent (symbolic zero) leaves a plain array."""
    if isinstance(ans, (tuple, list)):
        items = [_wrap(a, t, level) for a, t in zip(ans, tangent)]
        return type(ans)(*items) if hasattr(ans, "_fields") else type(ans)(items)
    if tangent is None:
        return ans
    return Dual(ans, tangent if tangent.dtype == ans.dtype else tangent.astype(ans.dtype), level)
