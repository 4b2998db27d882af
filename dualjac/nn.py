"""Neural-network functions on arrays and Duals alike: ``dj.nn.relu(x)``, ``dj.nn.softmax(x)``, ...

NumPy has no ``relu`` or ``softmax`` to dispatch, so these are the doors to the rules of
``dualjac/rules/nn.py``: on plain arrays they return the plain value, on Duals they carry the
derivative. Their conventions at kinks are torch's (``relu'(0) = 0``); the names are those of
``jax.nn`` (``axis=-1`` for softmax), the defaults torch's where they differ (``gelu`` is exact).
``logsumexp``, ``softmax`` and ``log_softmax`` also stand in for ``scipy.special``'s, which convert their input with
``np.asarray`` and so cannot see a Dual (pass ``axis=None`` for SciPy's softmax default).

>>> import numpy as np, dualjac as dj
>>> dj.nn.relu(np.array([-1.0, 2.0])).tolist()
[0.0, 2.0]
>>> dj.jacfwd(dj.nn.relu)(np.array([-1.0, 2.0])).tolist()
[[0.0, 0.0], [0.0, 1.0]]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import is_array
from .dual import Dual
from .numpy_api import value
from .rules import apply, as_array

Axis = int | tuple[int, ...] | None


def _arr(x: Any) -> Any:
    """A Dual or array as it is; a list (Duals inside kept) or a Python number as a floating array."""
    x = as_array(x)
    return x if type(x) is Dual or is_array(x) else np.asarray(x, dtype=np.result_type(float, np.asarray(x)))


# --- activations (elementwise) ------------------------------------------------------------------
def relu(x: Any) -> Any:
    """``max(x, 0)``; derivative 0 at 0 (torch's convention).

    >>> relu(np.array([-2.0, 0.0, 3.0])).tolist()
    [0.0, 0.0, 3.0]
    """
    return apply("relu", _arr(x))


def leaky_relu(x: Any, negative_slope: float = 0.01) -> Any:
    """``x`` for ``x > 0``, else ``negative_slope * x``.

    >>> leaky_relu(np.array([-2.0, 3.0]), 0.5).tolist()
    [-1.0, 3.0]
    """
    return apply("leaky_relu", _arr(x), negative_slope=negative_slope)


def elu(x: Any, alpha: float = 1.0) -> Any:
    """``x`` for ``x > 0``, else ``alpha (e^x - 1)``.

    >>> elu(np.array([0.0, 2.0])).tolist()
    [0.0, 2.0]
    """
    return apply("elu", _arr(x), alpha=alpha)


def celu(x: Any, alpha: float = 1.0) -> Any:
    """``x`` for ``x > 0``, else ``alpha (e^(x/alpha) - 1)``.

    >>> celu(np.array([0.0, 2.0])).tolist()
    [0.0, 2.0]
    """
    return apply("celu", _arr(x), alpha=alpha)


def selu(x: Any) -> Any:
    """The scaled ELU of Klambauer et al. (2017), torch's constants.

    >>> round(float(selu(np.array(1.0))), 4)
    1.0507
    """
    return apply("selu", _arr(x))


def gelu(x: Any, approximate: bool = False) -> Any:
    """``x Phi(x)`` (``approximate=True``: the tanh form).

    >>> round(float(gelu(np.array(1.0))), 4)
    0.8413
    """
    return apply("gelu", _arr(x), approximate="tanh" if approximate else "none")


def sigmoid(x: Any) -> Any:
    """The logistic function ``1 / (1 + e^-x)``, stable for any x.

    >>> sigmoid(np.array([0.0, -1000.0])).tolist()
    [0.5, 0.0]
    """
    return apply("sigmoid", _arr(x))


def silu(x: Any) -> Any:
    """``x sigmoid(x)`` (also called swish).

    >>> silu(np.array([0.0])).tolist()
    [0.0]
    """
    return apply("silu", _arr(x))


def mish(x: Any) -> Any:
    """``x tanh(softplus(x))``.

    >>> mish(np.array([0.0])).tolist()
    [0.0]
    """
    return apply("mish", _arr(x))


def softplus(x: Any, beta: float = 1.0, threshold: float = 20.0) -> Any:
    """``log(1 + e^(beta x)) / beta``, linear above ``threshold`` (torch's form).

    >>> round(float(softplus(np.array(0.0))), 4)
    0.6931
    """
    return apply("softplus", _arr(x), beta=beta, threshold=threshold)


def log_sigmoid(x: Any) -> Any:
    """``log(sigmoid(x))``, stable for any x.

    >>> log_sigmoid(np.array([-1000.0])).tolist()
    [-1000.0]
    """
    return apply("log_sigmoid", _arr(x))


def hard_tanh(x: Any, min_val: float = -1.0, max_val: float = 1.0) -> Any:
    """``clip(x, min_val, max_val)``; no derivative at the bounds (torch's convention).

    >>> hard_tanh(np.array([-3.0, 0.5])).tolist()
    [-1.0, 0.5]
    """
    return apply("hardtanh", _arr(x), min_val=min_val, max_val=max_val)


def hard_swish(x: Any) -> Any:
    """``x relu6(x + 3) / 6``.

    >>> hard_swish(np.array([3.0])).tolist()
    [3.0]
    """
    return apply("hardswish", _arr(x))


def hard_sigmoid(x: Any) -> Any:
    """``relu6(x + 3) / 6``.

    >>> hard_sigmoid(np.array([0.0])).tolist()
    [0.5]
    """
    return apply("hardsigmoid", _arr(x))


def soft_sign(x: Any) -> Any:
    """``x / (1 + |x|)``.

    >>> soft_sign(np.array([1.0])).tolist()
    [0.5]
    """
    return apply("softsign", _arr(x))


def tanh_shrink(x: Any) -> Any:
    """``x - tanh(x)``.

    >>> tanh_shrink(np.array([0.0])).tolist()
    [0.0]
    """
    return apply("tanhshrink", _arr(x))


# --- along an axis --------------------------------------------------------------------------------
def softmax(x: Any, axis: Axis = -1) -> Any:
    """``exp(x) / sum(exp(x))`` along ``axis`` (None: over all entries, SciPy's default).

    >>> softmax(np.log(np.array([1.0, 3.0]))).round(6).tolist()
    [0.25, 0.75]
    """
    return apply("softmax", _arr(x), axis=axis)


def log_softmax(x: Any, axis: Axis = -1) -> Any:
    """``x - logsumexp(x)`` along ``axis``, stable for any x.

    >>> log_softmax(np.array([0.0, 0.0])).round(4).tolist()
    [-0.6931, -0.6931]
    """
    return apply("log_softmax", _arr(x), axis=axis)


def logsumexp(x: Any, axis: Axis = None, keepdims: bool = False, b: Any = None) -> Any:
    """``log(sum(b * exp(x)))`` over ``axis`` (all entries by default), stable for any x; ``b``
    (weights, ``>= 0``) as in ``scipy.special.logsumexp``.

    >>> round(float(logsumexp(np.array([0.0, 0.0]))), 4)
    0.6931
    >>> round(float(logsumexp(np.array([0.0, 5.0]), b=np.array([2.0, 0.0]))), 4)
    0.6931
    """
    x = _arr(x)
    if b is not None:  # log sum b e^x = log sum e^(x + log b); b = 0 gives -inf, which drops out
        b = _arr(b)
        if np.any(np.asarray(value(b)) < 0):
            raise ValueError("logsumexp: negative weights b need a sign (scipy's return_sign=True), which has no rule")
        x = x + np.log(b)
    return apply("logsumexp", x, axis=axis, keepdims=keepdims)


__all__ = [
    "celu",
    "elu",
    "gelu",
    "hard_sigmoid",
    "hard_swish",
    "hard_tanh",
    "leaky_relu",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "mish",
    "relu",
    "selu",
    "sigmoid",
    "silu",
    "soft_sign",
    "softmax",
    "softplus",
    "tanh_shrink",
]
