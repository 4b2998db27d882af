"""Elementwise rules: NumPy's differentiable ufuncs.

``apply`` hands every rule here tangents already expanded to the output's rank, so
each formula is the scalar derivative times ``dx`` and broadcasting does the rest.
Kinks, ties and NaN follow dualjac's own conventions, stated once in
docs/concepts/conventions.md (and in the comment above the kink rules below).
"""

from __future__ import annotations

import math

from ..dual import value
from .table import defrule, select


def _dpow_dx(xp, x, y):
    # d(x**y)/dx = y * x**(y-1), and 0 where y == 0 (torch's convention, avoids 0 * inf at x=0)
    if isinstance(y, (int, float)):
        return y * x ** (y - 1) if y != 0 else 0 * x
    return xp.where(y == 0, 0, y * x ** (y - 1))


def _dpow_dy(xp, ans, x, y):
    # d(x**y)/dy = x**y * log(x), and 0 where x == 0 and y >= 0 (torch's convention)
    return xp.where((x == 0) & (y >= 0), 0, ans * xp.log(x))


# --8<-- [start:elementwise]  (shown in docs/concepts/writing-rules.md)
def _elementwise(name, *jvp, primal=None):
    defrule(name, jvp=jvp, primal=primal, elementwise=True)
# --8<-- [end:elementwise]


# --- arithmetic -------------------------------------------------------------------
_elementwise("add", lambda xp, ans, dx, x, y: dx, lambda xp, ans, dy, x, y: dy)
_elementwise("subtract", lambda xp, ans, dx, x, y: dx, lambda xp, ans, dy, x, y: -dy)
_elementwise("multiply", lambda xp, ans, dx, x, y: dx * y, lambda xp, ans, dy, x, y: x * dy)
# d(x/y) = dx/y - (x/y) dy/y
_elementwise("divide", lambda xp, ans, dx, x, y: dx / y, lambda xp, ans, dy, x, y: -ans * dy / y)
_elementwise("negative", lambda xp, ans, dx, x: -dx)
_elementwise("positive", lambda xp, ans, dx, x: dx)
_elementwise(
    "power",
    lambda xp, ans, dx, x, y: _dpow_dx(xp, x, y) * dx,
    lambda xp, ans, dy, x, y: _dpow_dy(xp, ans, x, y) * dy,
)
_elementwise(
    "float_power",  # computes in float64 whatever the inputs, so x is promoted first
    lambda xp, ans, dx, x, y: _dpow_dx(xp, xp.float_power(x, 1.0), y) * dx,
    lambda xp, ans, dy, x, y: _dpow_dy(xp, ans, x, y) * dy,
)
_elementwise("square", lambda xp, ans, dx, x: 2 * x * dx)
_elementwise("sqrt", lambda xp, ans, dx, x: dx / (2 * ans))
_elementwise("cbrt", lambda xp, ans, dx, x: dx / (3 * ans * ans))
_elementwise("reciprocal", lambda xp, ans, dx, x: -(ans * ans) * dx)
# x mod y = x - floor(x/y) * y, so d = dx - floor(x/y) dy (fmod truncates instead)
_elementwise(
    "remainder",
    lambda xp, ans, dx, x, y: dx,
    lambda xp, ans, dy, x, y: -xp.floor_divide(x, y) * dy,
)
_elementwise(
    "fmod",
    lambda xp, ans, dx, x, y: dx,
    lambda xp, ans, dy, x, y: -xp.trunc(x / y) * dy,
)

# --- exponentials and logarithms ----------------------------------------------------
_elementwise("exp", lambda xp, ans, dx, x: ans * dx)
_elementwise("exp2", lambda xp, ans, dx, x: (math.log(2) * ans) * dx)
_elementwise("expm1", lambda xp, ans, dx, x: (ans + 1) * dx)
_elementwise("log", lambda xp, ans, dx, x: dx / x)
_elementwise("log2", lambda xp, ans, dx, x: dx / (math.log(2) * x))
_elementwise("log10", lambda xp, ans, dx, x: dx / (math.log(10) * x))
_elementwise("log1p", lambda xp, ans, dx, x: dx / (1 + x))
# logaddexp(x, y) = log(e^x + e^y): d = e^(x - ans) dx + e^(y - ans) dy
_elementwise(
    "logaddexp",
    lambda xp, ans, dx, x, y: xp.exp(x - ans) * dx,
    lambda xp, ans, dy, x, y: xp.exp(y - ans) * dy,
)
_elementwise(
    "logaddexp2",
    lambda xp, ans, dx, x, y: xp.exp2(x - ans) * dx,
    lambda xp, ans, dy, x, y: xp.exp2(y - ans) * dy,
)

# --- trigonometric and hyperbolic ------------------------------------------------------
# --8<-- [start:sin]  (shown in docs/concepts/writing-rules.md)
_elementwise("sin", lambda xp, ans, dx, x: xp.cos(x) * dx)
# --8<-- [end:sin]
_elementwise("cos", lambda xp, ans, dx, x: -xp.sin(x) * dx)
_elementwise("tan", lambda xp, ans, dx, x: (1 + ans * ans) * dx)
_elementwise("arcsin", lambda xp, ans, dx, x: dx / xp.sqrt(1 - x * x))
_elementwise("arccos", lambda xp, ans, dx, x: -dx / xp.sqrt(1 - x * x))
_elementwise("arctan", lambda xp, ans, dx, x: dx / (1 + x * x))
# arctan2(y, x): d = (x dy - y dx) / (x^2 + y^2)
_elementwise(
    "arctan2",
    lambda xp, ans, dy, y, x: (x / (x * x + y * y)) * dy,
    lambda xp, ans, dx, y, x: (-y / (x * x + y * y)) * dx,
)
_elementwise("sinh", lambda xp, ans, dx, x: xp.cosh(x) * dx)
_elementwise("cosh", lambda xp, ans, dx, x: xp.sinh(x) * dx)
_elementwise("tanh", lambda xp, ans, dx, x: (1 - ans * ans) * dx)
_elementwise("arcsinh", lambda xp, ans, dx, x: dx / xp.sqrt(x * x + 1))
_elementwise("arccosh", lambda xp, ans, dx, x: dx / xp.sqrt(x * x - 1))
_elementwise("arctanh", lambda xp, ans, dx, x: dx / (1 - x * x))
_elementwise("hypot", lambda xp, ans, dx, x, y: (x / ans) * dx, lambda xp, ans, dy, x, y: (y / ans) * dy)
_elementwise("deg2rad", lambda xp, ans, dx, x: (math.pi / 180) * dx)
_elementwise("rad2deg", lambda xp, ans, dx, x: (180 / math.pi) * dx)

# --- kinks: dualjac's conventions (docs/concepts/conventions.md) ----------------------------
# abs'(0) = 0. maximum, minimum, fmax and fmin give each argument the tangent where it is the
# result and split a tie 1/2 : 1/2. A NaN result has a NaN tangent; fmax/fmin skip a NaN argument,
# so there the other argument's tangent passes. These are selections, not products: a tangent
# that is not taken (even inf or NaN) contributes 0.
_elementwise("absolute", lambda xp, ans, dx, x: xp.sign(x) * dx)
_elementwise("fabs", lambda xp, ans, dx, x: xp.sign(x) * dx)


def _pick(xp, ans, wins, ties, d):
    """``d`` where this argument wins, ``d / 2`` on a tie, 0 elsewhere; NaN where the result is NaN."""
    return select(xp, ans, wins, d, nan_where=ans) + select(xp, ans, ties, 0.5 * d)


def _elementwise_select(name, *jvp):
    defrule(name, jvp=jvp, elementwise=True, selects=True)


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
_elementwise("conjugate", lambda xp, ans, dx, x: dx)
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
