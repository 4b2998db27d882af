"""ATen emitters of the elementwise ops: unary and binary math, comparisons, logical and bitwise ops,
clamps, ``where``, and the activations export keeps whole (gelu, elu, softplus, prelu, ...).

Most are a renaming (``aten.sub.Tensor`` -> ``subtract``), done by the ``_UNARY``/``_BINARY`` tables;
the rest pin torch's conventions (alpha scaling, rounding modes, branches at kinks). ``aten.py``
merges ``OPS`` into ``ATEN_OPS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def _unary(op: str, **settings: Any) -> Callable[..., Any]:
    def emit(b, x, *args, **kwargs):
        return b.emit(op, x, **{**settings, **dict(zip(settings, args)), **kwargs})

    return emit


def _binary(op: str) -> Callable[..., Any]:
    def emit(b, x, y, alpha=1):
        if alpha != 1:
            y = b.emit("multiply", y, alpha)
        return b.emit(op, x, y)

    return emit


def _rsub(b, x, y, alpha=1):  # y - alpha * x
    return b.emit("subtract", y, b.emit("multiply", x, alpha) if alpha != 1 else x)


def _div_mode(b, x, y, rounding_mode=None):
    if rounding_mode == "floor":
        return b.emit("floor_divide", x, y)
    if rounding_mode == "trunc":
        return b.emit("trunc", b.emit("divide", x, y))
    return b.emit("divide", x, y)


def _pow_scalar(b, base, exponent):
    return b.emit("power", base, exponent)


def _rsqrt(b, x):
    return b.emit("reciprocal", b.emit("sqrt", x))


def _clamp(b, x, min=None, max=None):
    return b.emit("clip", x, min, max)


def _elu(b, x, alpha=1.0, scale=1.0, input_scale=1.0):
    if input_scale == 1:
        y = b.emit("elu", x, alpha=alpha)
        return y if scale == 1 else b.emit("multiply", y, scale)
    # celu: x > 0 ? scale*x : scale*alpha*(exp(x*input_scale) - 1), with torch's branch at 0
    neg = b.emit("multiply", b.emit("expm1", b.emit("multiply", x, input_scale)), scale * alpha)
    return b.emit("where", b.emit("greater", x, 0), b.emit("multiply", x, scale) if scale != 1 else x, neg)


def _prelu_kernel(b, x, w):
    # torch's jvp takes the x branch at 0, as the prelu rule does
    return b.emit("where", b.emit("greater_equal", x, 0), x, b.emit("multiply", w, x))


def _log_sigmoid_forward(b, x):
    return b.emit("log_sigmoid", x), None


def _where(b, cond, x, y):
    return b.emit("where", cond, x, y)


def _masked_fill(b, x, mask, value):
    return b.emit("where", mask, value, x)


def _logical(fn: Callable[..., Any]) -> Callable[..., Any]:
    return lambda b, *args: b.emit(fn, *args)


_UNARY = {
    "abs": "absolute", "neg": "negative", "exp": "exp", "exp2": "exp2", "expm1": "expm1", "log": "log",
    "log2": "log2", "log10": "log10", "log1p": "log1p", "sqrt": "sqrt", "reciprocal": "reciprocal", "sin": "sin",
    "cos": "cos", "tan": "tan", "sinh": "sinh", "cosh": "cosh", "tanh": "tanh", "asin": "arcsin",
    "acos": "arccos", "atan": "arctan", "asinh": "arcsinh", "acosh": "arccosh", "atanh": "arctanh",
    "sigmoid": "sigmoid", "relu": "relu", "silu": "silu", "mish": "mish", "hardswish": "hardswish",
    "hardsigmoid": "hardsigmoid", "erf": "erf", "sign": "sign", "floor": "floor", "ceil": "ceil", "round": "rint",
    "trunc": "trunc", "isnan": "isnan", "isinf": "isinf", "isfinite": "isfinite", "signbit": "signbit",
    "logical_not": "logical_not",
}  # fmt: skip
_BINARY = {
    "add": "add", "sub": "subtract", "mul": "multiply", "div": "divide", "maximum": "maximum",
    "minimum": "minimum", "fmax": "fmax", "fmin": "fmin", "atan2": "arctan2", "hypot": "hypot",
    "remainder": "remainder", "fmod": "fmod", "floor_divide": "floor_divide", "eq": "equal", "ne": "not_equal",
    "gt": "greater", "ge": "greater_equal", "lt": "less", "le": "less_equal", "logical_and": "logical_and",
    "logical_or": "logical_or", "logical_xor": "logical_xor",
}  # fmt: skip
_BITWISE = {"bitwise_not": np.invert, "bitwise_and": np.bitwise_and, "bitwise_or": np.bitwise_or,
            "bitwise_xor": np.bitwise_xor}  # fmt: skip


def _overloads(name: str, *candidates: str) -> list[str]:
    """The overloads among ``candidates`` that ``aten.<name>`` has (``add.Tensor``, ``add.Scalar``)."""
    return [o for o in candidates if o in getattr(torch.ops.aten, name).overloads()]


# the elementwise ops, and the activations torch keeps whole
OPS: dict[str, Callable[..., Any]] = {
    **{f"aten.{k}.default": _unary(v) for k, v in _UNARY.items()},
    **{f"aten.{k}.{o}": _binary(v) for k, v in _BINARY.items() for o in _overloads(k, "Tensor", "Scalar", "default")},
    **{f"aten.{k}.{o}": _logical(f) for k, f in _BITWISE.items() for o in _overloads(k, "Tensor", "Scalar", "default")},
    "aten.rsub.Scalar": _rsub, "aten.rsub.Tensor": _rsub, "aten.div.Tensor_mode": _div_mode,
    "aten.div.Scalar_mode": _div_mode, "aten.pow.Tensor_Scalar": _pow_scalar, "aten.pow.Tensor_Tensor": _pow_scalar,
    "aten.pow.Scalar": _pow_scalar, "aten.rsqrt.default": _rsqrt, "aten.where.self": _where,
    "aten.clamp.default": _clamp, "aten.clamp.Tensor": _clamp,
    "aten.clamp_min.default": lambda b, x, min: _clamp(b, x, min, None),
    "aten.clamp_max.default": lambda b, x, max: _clamp(b, x, None, max),
    "aten.masked_fill.Scalar": _masked_fill, "aten.masked_fill.Tensor": _masked_fill,
    # activations
    "aten.gelu.default": _unary("gelu", approximate="none"), "aten.elu.default": _elu,
    "aten.hardtanh.default": _unary("hardtanh", min_val=-1.0, max_val=1.0),
    "aten.leaky_relu.default": _unary("leaky_relu", negative_slope=0.01),
    "aten.softplus.default": _unary("softplus", beta=1.0, threshold=20.0),
    "aten.log_sigmoid_forward.default": _log_sigmoid_forward, "aten._prelu_kernel.default": _prelu_kernel,
    "aten.prelu.default": _prelu_kernel,
}  # fmt: skip
