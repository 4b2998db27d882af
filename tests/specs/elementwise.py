"""Specs for rules/elementwise.py."""

from __future__ import annotations

import numpy as np
import torch

from dualjac.rules import apply
from rule_specs import BINARY, UNARY, Spec


def _ties(rng, shape, dtype):
    """Binary inputs where half the entries tie exactly (kinks of max/min)."""
    shapes = shape
    x = rng.uniform(-2, 2, size=shapes[0]).astype(dtype)
    y = rng.uniform(-2, 2, size=shapes[1]).astype(dtype)
    xb, yb = np.broadcast_arrays(x, y)
    if x.shape == np.broadcast_shapes(x.shape, y.shape):
        x = x.copy()
        m = rng.random(x.shape) < 0.5
        x[m] = np.broadcast_to(y, x.shape)[m]
    return x, y


def _with_zeros(rng, shape, dtype):
    x = rng.uniform(-2, 2, size=shape).astype(dtype)
    x[rng.random(shape) < 0.4] = 0
    return (x,)


def _operators(x, y):
    return (x + y) * x - y / (1.5 + x * x) + ((-x) ** 2 @ y.T) @ y + (+y) % 1.5


POS = (0.2, 3.0)
UNIT = (-0.9, 0.9)

unary = [
    # name, numpy, torch, domain
    ("negative", np.negative, torch.neg, None),
    ("positive", np.positive, torch.positive, None),
    ("square", np.square, torch.square, None),
    ("sqrt", np.sqrt, torch.sqrt, POS),
    ("cbrt", np.cbrt, None, POS),
    ("reciprocal", np.reciprocal, torch.reciprocal, POS),
    ("exp", np.exp, torch.exp, None),
    ("exp2", np.exp2, torch.exp2, None),
    ("expm1", np.expm1, torch.expm1, None),
    ("log", np.log, torch.log, POS),
    ("log2", np.log2, torch.log2, POS),
    ("log10", np.log10, torch.log10, POS),
    ("log1p", np.log1p, torch.log1p, POS),
    ("sin", np.sin, torch.sin, None),
    ("cos", np.cos, torch.cos, None),
    ("tan", np.tan, torch.tan, (-1.2, 1.2)),
    ("arcsin", np.arcsin, torch.asin, UNIT),
    ("arccos", np.arccos, torch.acos, UNIT),
    ("arctan", np.arctan, torch.atan, None),
    ("sinh", np.sinh, torch.sinh, None),
    ("cosh", np.cosh, torch.cosh, None),
    ("tanh", np.tanh, torch.tanh, None),
    ("arcsinh", np.arcsinh, torch.asinh, None),
    ("arccosh", np.arccosh, torch.acosh, (1.2, 3.0)),
    ("arctanh", np.arctanh, torch.atanh, UNIT),
    ("deg2rad", np.deg2rad, torch.deg2rad, None),
    ("rad2deg", np.rad2deg, torch.rad2deg, None),
    ("radians", np.radians, torch.deg2rad, None),
    ("degrees", np.degrees, torch.rad2deg, None),
    ("absolute", np.absolute, torch.abs, None),
    ("fabs", np.fabs, torch.abs, None),
]

binary = [
    ("add", np.add, torch.add, None),
    ("subtract", np.subtract, torch.sub, None),
    ("multiply", np.multiply, torch.mul, None),
    ("divide", np.divide, torch.div, POS),
    ("power", np.power, torch.pow, POS),
    ("float_power", np.float_power, torch.float_power, POS),
    ("remainder", np.remainder, torch.remainder, POS),
    ("fmod", np.fmod, torch.fmod, POS),
    ("arctan2", np.arctan2, torch.atan2, None),
    ("hypot", np.hypot, torch.hypot, None),
    ("maximum", np.maximum, torch.maximum, None),
    ("minimum", np.minimum, torch.minimum, None),
    ("fmax", np.fmax, torch.fmax, None),
    ("fmin", np.fmin, torch.fmin, None),
    ("logaddexp", np.logaddexp, torch.logaddexp, None),
    ("logaddexp2", np.logaddexp2, torch.logaddexp2, None),
]

SPECS = [Spec(n, f, list(UNARY), domain=d or (-2.0, 2.0), torch=t) for n, f, t, d in unary]
SPECS += [Spec(n, f, list(BINARY), domain=d or (-2.0, 2.0), torch=t) for n, f, t, d in binary]
SPECS += [
    # operators reach the same rules as the ufuncs
    Spec("operators", _operators, [((2, 3), (2, 3))], torch=_operators),
    Spec("power-int-exponent", lambda x: x**3, list(UNARY), torch=lambda x: x**3),
    Spec("power-zero-exponent", lambda x: x**0, list(UNARY), torch=lambda x: x**0),
    Spec("power-at-zero", lambda x, y: np.power(x, y), [((4,), (4,))],
         gen=lambda r, s, d: (np.array([0.0, 0.0, 1.5, 2.0], d), np.array([0.0, 2.0, 0.0, 1.5], d)),
         diff=(1,), torch=torch.pow, fd=False),
    Spec("absolute-at-zero", np.absolute, [(6,)], gen=_with_zeros, torch=torch.abs, fd=False),
    Spec("maximum-ties", np.maximum, [((6,), (6,)), ((2, 3), (3,))], gen=_ties, torch=torch.maximum, fd=False),
    Spec("minimum-ties", np.minimum, [((6,), (6,)), ((2, 3), (3,))], gen=_ties, torch=torch.minimum, fd=False),
    # dualjac splits every tie 1/2 : 1/2 (docs/concepts/conventions.md); without NaN, fmax is maximum, and
    # torch.maximum splits ties the same way (torch.fmax's tie convention changed between releases)
    Spec("fmax-ties", np.fmax, [((6,), (6,))], gen=_ties, torch=torch.maximum, fd=False),
    Spec("fmin-ties", np.fmin, [((6,), (6,))], gen=_ties, torch=torch.minimum, fd=False),
    Spec("conjugate", lambda x: np.conjugate(x) * 2 + x.conj(), list(UNARY), torch=lambda x: x.conj() * 3),
    Spec("round", lambda x: np.round(x, 1) + np.around(x) + round(x.sum()) + x, list(UNARY),
         torch=lambda x: torch.round(x, decimals=1) + torch.round(x) + torch.round(x.sum()) + x, fd=False),
    # piecewise constant: zero derivative, a plain (symbolic zero) result
    Spec("piecewise-constant",
         lambda x: x * 0.5 + np.floor(x) + np.ceil(x) + np.rint(x) + np.trunc(x) + np.sign(x)
         + np.floor_divide(x, 0.7) + np.signbit(x) + (x < 0.1) + (x <= 0.1) + (x > 0.1) + (x >= 0.1)
         + (x == 0.1) + (x != 0.1) + np.logical_and(x, x - 0.5) + np.logical_or(x, 0.0)
         + np.logical_xor(x, x - 0.5) + np.logical_not(x)
         + np.isfinite(x) + np.isinf(x) + np.isnan(x),
         list(UNARY)),
]

SPECS += [
    # stop_gradient: x * sg(x) has derivative sg(x) = x, not 2x (no finite differences: not f's derivative)
    Spec("stop_gradient", lambda x: x * apply("stop_gradient", x), list(UNARY), torch=lambda x: x * x.detach(),
         fd=False),
]
