"""Elementwise rules: NumPy's differentiable ufuncs.

Each op is declared by its partial derivatives, one factor per argument, as a table of
derivatives gives them: ``d sin(x) = cos(x) dx`` is ``_elementwise("sin", cos(x))``. ``apply``
multiplies each factor by its argument's tangent (expanded to the result's rank, so broadcasting
does the rest). The kinks are selections instead, per-argument rules on the tangent itself.
Kinks, ties and NaN follow dualjac's own conventions, stated once in
docs/concepts/conventions.md (and in the comment above the kink rules below).
"""

from __future__ import annotations

import math

from ..dual import Dual, value
from .table import defrule, select


def _dpow_dx(xp, x, y):
    # d(x**y)/dx = y * x**(y-1), and 0 where y == 0 (torch's convention, avoids 0 * inf at x=0)
    if isinstance(y, (int, float)):
        return y * x ** (y - 1) if y != 0 else xp.zeros_like(x)  # (not 0 * x: x may be inf or NaN)
    return xp.where(y == 0, 0, y * x ** (y - 1))


def _dpow_dy(xp, ans, x, y):
    # d(x**y)/dy = x**y * log(x), and 0 where x == 0 and y >= 0 (torch's convention); log in the
    # result's precision (NumPy takes the log of a uint8 or float16 constant in float16; a Dual of
    # an outer transform, x**x under a hessian, is already of the result's)
    if type(x) is not Dual and getattr(x, "dtype", None) != getattr(ans, "dtype", None):
        x = xp.asarray(x, dtype=value(ans).dtype)
    return xp.where((x == 0) & (y >= 0), 0, ans * xp.log(x))


# --8<-- [start:elementwise]  (shown in docs/concepts/writing-rules.md)
def _elementwise(name, *factors, primal=None):
    """An elementwise op and its partial derivatives, one factor per argument."""
    defrule(name, factors=factors, primal=primal)
# --8<-- [end:elementwise]


# --- arithmetic -------------------------------------------------------------------
_elementwise("add", lambda xp, ans, x, y: 1, lambda xp, ans, x, y: 1)
_elementwise("subtract", lambda xp, ans, x, y: 1, lambda xp, ans, x, y: -1)
_elementwise("multiply", lambda xp, ans, x, y: y, lambda xp, ans, x, y: x)
# d(x/y) = dx/y - (x/y) dy/y, as tangent rules rather than factors: the factor -x/y^2 overflows
# float32 for |y| < 1e-19 where (-ans * dy) / y does not
defrule(
    "divide",
    jvp=(lambda xp, ans, dx, x, y: dx / y, lambda xp, ans, dy, x, y: -ans * dy / y),
    elementwise=True,
)
_elementwise("negative", lambda xp, ans, x: -1)
_elementwise("positive", lambda xp, ans, x: 1)
_elementwise("power", lambda xp, ans, x, y: _dpow_dx(xp, x, y), lambda xp, ans, x, y: _dpow_dy(xp, ans, x, y))
_elementwise(
    "float_power",  # computes in float64 whatever the inputs, so x is promoted first
    lambda xp, ans, x, y: _dpow_dx(xp, xp.float_power(x, 1.0), y),
    lambda xp, ans, x, y: _dpow_dy(xp, ans, x, y),
)
_elementwise("square", lambda xp, ans, x: 2 * x)
_elementwise("sqrt", lambda xp, ans, x: 1 / (2 * ans))
_elementwise("cbrt", lambda xp, ans, x: 1 / (3 * ans * ans))
_elementwise("reciprocal", lambda xp, ans, x: -(ans * ans))
# x mod y = x - floor(x/y) * y, so d = dx - floor(x/y) dy (fmod truncates instead)
_elementwise("remainder", lambda xp, ans, x, y: 1, lambda xp, ans, x, y: -xp.floor_divide(x, y))
_elementwise("fmod", lambda xp, ans, x, y: 1, lambda xp, ans, x, y: -xp.trunc(x / y))

# --- exponentials and logarithms ----------------------------------------------------
_elementwise("exp", lambda xp, ans, x: ans)
_elementwise("exp2", lambda xp, ans, x: math.log(2) * ans)
_elementwise("expm1", lambda xp, ans, x: ans + 1)
_elementwise("log", lambda xp, ans, x: 1 / x)
_elementwise("log2", lambda xp, ans, x: 1 / (math.log(2) * x))
_elementwise("log10", lambda xp, ans, x: 1 / (math.log(10) * x))
_elementwise("log1p", lambda xp, ans, x: 1 / (1 + x))
# logaddexp(x, y) = log(e^x + e^y): d = e^(x - ans) dx + e^(y - ans) dy
_elementwise("logaddexp", lambda xp, ans, x, y: xp.exp(x - ans), lambda xp, ans, x, y: xp.exp(y - ans))
_elementwise("logaddexp2", lambda xp, ans, x, y: xp.exp2(x - ans), lambda xp, ans, x, y: xp.exp2(y - ans))

# --- trigonometric and hyperbolic ------------------------------------------------------
# --8<-- [start:sin]  (shown in docs/concepts/writing-rules.md)
_elementwise("sin", lambda xp, ans, x: xp.cos(x))
# --8<-- [end:sin]
_elementwise("cos", lambda xp, ans, x: -xp.sin(x))
_elementwise("tan", lambda xp, ans, x: 1 + ans * ans)
_elementwise("arcsin", lambda xp, ans, x: 1 / xp.sqrt(1 - x * x))
_elementwise("arccos", lambda xp, ans, x: -1 / xp.sqrt(1 - x * x))
_elementwise("arctan", lambda xp, ans, x: 1 / (1 + x * x))
# arctan2(y, x): d = (x dy - y dx) / (x^2 + y^2)
_elementwise("arctan2", lambda xp, ans, y, x: x / (x * x + y * y), lambda xp, ans, y, x: -y / (x * x + y * y))
_elementwise("sinh", lambda xp, ans, x: xp.cosh(x))
_elementwise("cosh", lambda xp, ans, x: xp.sinh(x))
_elementwise("tanh", lambda xp, ans, x: 1 - ans * ans)
_elementwise("arcsinh", lambda xp, ans, x: 1 / xp.sqrt(x * x + 1))
_elementwise("arccosh", lambda xp, ans, x: 1 / xp.sqrt(x * x - 1))
_elementwise("arctanh", lambda xp, ans, x: 1 / (1 - x * x))
_elementwise("hypot", lambda xp, ans, x, y: x / ans, lambda xp, ans, x, y: y / ans)
_elementwise("deg2rad", lambda xp, ans, x: math.pi / 180)
_elementwise("rad2deg", lambda xp, ans, x: 180 / math.pi)

# --- kinks: dualjac's conventions (docs/concepts/conventions.md) ----------------------------
# abs'(0) = 0. maximum, minimum, fmax and fmin give each argument the tangent where it is the
# result and split a tie 1/2 : 1/2. A NaN result has a NaN tangent; fmax/fmin skip a NaN argument,
# so there the other argument's tangent passes. These are selections, not products: a tangent
# that is not taken (even inf or NaN) contributes 0.
_elementwise("absolute", lambda xp, ans, x: xp.sign(x))
_elementwise("fabs", lambda xp, ans, x: xp.sign(x))


def _pick(xp, ans, wins, ties, d):
    """``d`` where this argument wins, ``d / 2`` on a tie, 0 elsewhere; NaN where the result is NaN."""
    return select(xp, ans, wins, d, nan_where=ans) + select(xp, ans, ties, 0.5 * d)


def _elementwise_select(name, *jvp):
    """An elementwise op whose tangent rules select (not multiply): an untaken inf tangent gives 0."""
    defrule(name, jvp=jvp, elementwise=True)


_elementwise_select(
    "maximum",
    lambda xp, ans, dx, x, y: _pick(xp, ans, x > y, x == y, dx),
    lambda xp, ans, dy, x, y: _pick(xp, ans, x < y, x == y, dy),
)
_elementwise_select(
    "minimum",
    lambda xp, ans, dx, x, y: _pick(xp, ans, x < y, x == y, dx),
    lambda xp, ans, dy, x, y: _pick(xp, ans, x > y, x == y, dy),
)
_elementwise_select(
    "fmax",
    lambda xp, ans, dx, x, y: _pick(xp, ans, (x > y) | xp.isnan(y), x == y, dx),
    lambda xp, ans, dy, x, y: _pick(xp, ans, (x < y) | xp.isnan(x), x == y, dy),
)
_elementwise_select(
    "fmin",
    lambda xp, ans, dx, x, y: _pick(xp, ans, (x < y) | xp.isnan(y), x == y, dx),
    lambda xp, ans, dy, x, y: _pick(xp, ans, (x > y) | xp.isnan(x), x == y, dy),
)
# a real value is its own conjugate
_elementwise("conjugate", lambda xp, ans, x: 1)
# rounding is piecewise constant
defrule("round", primal=lambda xp, x, decimals=0: xp.round(x, decimals), nondiff=True)

# --- piecewise constant: the result is a plain array (a symbolic zero tangent) ------------
for _name in (
    "sign", "floor", "ceil", "rint", "trunc", "floor_divide", "signbit",
    "less", "less_equal", "greater", "greater_equal", "equal", "not_equal",
    "logical_and", "logical_or", "logical_xor", "logical_not",
    "isfinite", "isinf", "isnan",
):  # fmt: skip
    defrule(_name, nondiff=True)


# torch's detach() and jax.lax.stop_gradient: the value, declared constant (a deliberate zero tangent),
# for every enclosing transform too (under dj.hessian, not only the innermost one)
defrule("stop_gradient", primal=lambda xp, x: value(x), nondiff=True)
