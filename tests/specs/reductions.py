"""Specs for rules/reductions.py: sum, mean, prod, max/min, std/var, cumsum/cumprod and
np.linalg.norm, reached through NumPy functions, ufunc methods (``np.add.reduce``, ...)
and Dual methods (``x.mean()``, ...), over ranks 0 to 3, int/negative/tuple axes and
keepdims. Ties (amax/amin, inf-norms) are checked against torch only; zeros in prod and
cumprod and std at zero variance against finite differences too (both are exact there).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rule_specs import Spec

RANKS = [(), (3,), (2, 3), (2, 3, 4)]
INF = math.inf


def _ties(rng, shape, dtype):
    """Values in {-1, -0.5, 0, 0.5}: many exact ties in every slice."""
    return (rng.integers(-2, 2, size=shape).astype(dtype) * 0.5,)


def _zeros(rng, shape, dtype):
    """(2, 3, 4) with, along the last axis, slices holding 0, 1, 2 and 4 zeros; along the first
    and middle axes, slices with one and several zeros too."""
    x = rng.uniform(0.5, 1.5, size=shape).astype(dtype) * rng.choice([-1, 1], size=shape).astype(dtype)
    x[0, 1, 2] = 0
    x[0, 2, [0, 3]] = 0
    x[1, 0, :] = 0
    return (x,)


def _zeros_flat(k):
    """``k`` zeros at random positions (for reductions over all axes)."""

    def gen(rng, shape, dtype):
        x = rng.uniform(0.5, 1.5, size=shape).astype(dtype)
        x.reshape(-1)[rng.choice(x.size, size=k, replace=False)] = 0
        return (x,)

    return gen


def _constant(rng, shape, dtype):
    """A constant array whose mean is exact (so its std is exactly 0, not rounding noise)."""
    return (np.full(shape, rng.integers(-4, 4) * 0.5 + 0.25, dtype=dtype),)


def _vector_zeros(rng, shape, dtype):
    """Rows: all zeros, one zero, no zeros (norms at 0 and at a zero entry)."""
    x = rng.uniform(-2, 2, size=shape).astype(dtype)
    x[0] = 0
    x[1, 1] = 0
    return (x,)


# --- sum, mean, prod, max, min, std, var over axes ------------------------------------------
def _over_axes(f):
    """``f(x, axis=..., keepdims=...)`` for int, negative, tuple and None axes on a (2, 3, 4) array."""
    return lambda x: (
        f(x, axis=0),
        f(x, axis=-1),
        f(x, axis=(0, 2)),
        f(x, axis=(-1, 0), keepdims=True),
        f(x, axis=1, keepdims=True),
        f(x, keepdims=True),
        f(x, axis=()),
    )


def _over_dims(f):
    """torch twin of ``_over_axes`` (``f(x, dim, keepdim)``, ``dim=None`` for all)."""
    return lambda x: (
        f(x, 0, False),
        f(x, -1, False),
        f(x, (0, 2), False),
        f(x, (-1, 0), True),
        f(x, 1, True),
        f(x, None, True),
        x,
    )


def _torch_prod(x, dim, keepdim):
    dims = range(x.ndim) if dim is None else (dim,) if isinstance(dim, int) else dim
    for d in sorted((d % x.ndim for d in dims), reverse=True):  # torch.prod takes one dim
        x = torch.prod(x, d, keepdim=keepdim)
    return x


def _all_dims(f):
    """A torch reduction ``f(x, dim, keepdim=...)`` with ``dim=None`` meaning every axis."""
    return lambda x, dim, keepdim: f(x, tuple(range(x.ndim)) if dim is None else dim, keepdim=keepdim)


_torch_sum, _torch_mean = _all_dims(torch.sum), _all_dims(torch.mean)
_torch_amax, _torch_amin = _all_dims(torch.amax), _all_dims(torch.amin)


def _axes_spec(name, f, tf):
    return Spec(f"{name}-axes", _over_axes(f), [(2, 3, 4)], torch=None if tf is None else _over_dims(tf))


def _std_axes(f):
    """std/var with ddof: reductions over at least two elements (ddof=1 needs n > 1)."""
    return lambda x: (
        f(x, axis=0, ddof=1),
        f(x, axis=-1),
        f(x, axis=(0, 2), ddof=1),
        f(x, axis=(-1, 0), keepdims=True, ddof=2),
        f(x, axis=1, keepdims=True),
        f(x, keepdims=True, ddof=1),
    )


def _std_dims(f):
    return lambda x: (
        f(x, 0, correction=1),
        f(x, -1, correction=0),
        f(x, (0, 2), correction=1),
        f(x, (-1, 0), keepdim=True, correction=2),
        f(x, 1, keepdim=True, correction=0),
        f(x, None, keepdim=True, correction=1),
    )


# --- ufunc methods and Dual methods ------------------------------------------------------
def _ufunc_reduce(x):
    return (
        np.add.reduce(x),
        np.add.reduce(x, axis=1, keepdims=True),
        np.multiply.reduce(x, axis=-1),
        np.multiply.reduce(x, axis=None),
        np.maximum.reduce(x),
        np.maximum.reduce(x, axis=(0, 1)),
        np.minimum.reduce(x, axis=1),
        np.add.accumulate(x),
        np.add.accumulate(x, axis=1),
        np.multiply.accumulate(x, axis=-1),
    )


def _ufunc_reduce_t(x):
    return (
        torch.sum(x, 0),
        torch.sum(x, 1, keepdim=True),
        torch.prod(x, -1),
        torch.prod(x),
        torch.amax(x, 0),
        torch.amax(x, (0, 1)),
        torch.amin(x, 1),
        torch.cumsum(x, 0),
        torch.cumsum(x, 1),
        torch.cumprod(x, -1),
    )


def _methods(x):
    return (
        x.sum(),
        x.mean(),
        x.mean(axis=0),
        x.prod(axis=-1, keepdims=True),
        x.max(axis=0),
        x.min(),
        x.max(),
        x.std(ddof=1),
        x.var(axis=1),
        x.std(axis=-1, keepdims=True),
        x.cumsum(),
        x.cumprod(axis=1),
    )


def _methods_t(x):
    return (
        x.sum(),
        x.mean(),
        x.mean(0),
        x.prod(-1, keepdim=True),
        x.amax(0),
        x.amin(),
        x.amax(),
        x.std(correction=1),
        x.var(1, correction=0),
        x.std(-1, correction=0, keepdim=True),
        x.flatten().cumsum(0),
        x.cumprod(1),
    )


def _aliases(x):
    return np.max(x), np.amax(x, axis=1), np.min(x, axis=0), np.amin(x), np.mean(x, dtype=np.float64)


def _aliases_t(x):
    return x.amax(), x.amax(1), x.amin(0), x.amin(), x.to(torch.float64).mean()


# --- cumulative ------------------------------------------------------------------------------
def _cumulative(f):
    return lambda x: (f(x), f(x, axis=0), f(x, axis=-1), f(x, axis=1))


def _cumulative_t(f):
    return lambda x: (f(x.flatten(), 0), f(x, 0), f(x, -1), f(x, 1))


# --- norms -------------------------------------------------------------------------------------
VECTOR_ORDS = [None, 2, 1, INF, -INF, 3, 0.5, -1, 0]
MATRIX_ORDS = [None, "fro", "nuc", 1, -1, INF, -INF, 2, -2]


def _vector_norms(x):
    return tuple(np.linalg.norm(x, ord=o, axis=-1) for o in VECTOR_ORDS) + (
        np.linalg.norm(x, 3, axis=0, keepdims=True),
        np.linalg.norm(x, axis=(-1,)),
    )


def _vector_norms_t(x):
    return tuple(torch.linalg.vector_norm(x, 2 if o is None else o, dim=-1) for o in VECTOR_ORDS) + (
        torch.linalg.vector_norm(x, 3, dim=0, keepdim=True),
        torch.linalg.vector_norm(x, dim=(-1,)),
    )


def _ords(norm, ords):
    """``norm(x, ord)`` for each ord (np.linalg.norm or its twin torch.linalg.norm)."""
    return lambda x: tuple(norm(x, o) for o in ords)


def _batched_matrix_norms(x):
    return tuple(np.linalg.norm(x, o, axis=(0, 2)) for o in MATRIX_ORDS) + tuple(
        np.linalg.norm(x, o, axis=(-1, 0), keepdims=True) for o in ("fro", 1, INF, 2, "nuc")
    )


def _batched_matrix_norms_t(x):
    return tuple(torch.linalg.norm(x, o, dim=(0, 2)) for o in MATRIX_ORDS) + tuple(
        torch.linalg.matrix_norm(x, o, dim=(-1, 0), keepdim=True) for o in ("fro", 1, INF, 2, "nuc")
    )


# (ord, axis) on a matrix: vector inf-norms along an axis, then the matrix norms that pick a row or column
INF_NORMS = [(INF, -1), (-INF, 0), (INF, None), (1, None), (-1, None), (-INF, None)]


def _inf_norms(x):
    return tuple(np.linalg.norm(x, o, axis=a) for o, a in INF_NORMS)


def _inf_norms_t(x):
    return tuple(torch.linalg.norm(x, o, dim=a) for o, a in INF_NORMS)


SPECS = [
    # over all axes, every rank
    Spec("sum", np.sum, list(RANKS), torch=torch.sum),
    Spec("mean", np.mean, list(RANKS), torch=torch.mean),
    Spec("prod", np.prod, list(RANKS), torch=torch.prod),
    Spec("amax", np.amax, list(RANKS), torch=torch.amax),
    Spec("amin", np.amin, list(RANKS), torch=torch.amin),
    Spec("std", np.std, list(RANKS), torch=lambda x: torch.std(x, correction=0)),
    Spec("var", np.var, list(RANKS), torch=lambda x: torch.var(x, correction=0)),
    Spec("std-ddof1", lambda x: np.std(x, ddof=1), RANKS[1:], torch=torch.std),
    Spec("var-ddof1", lambda x: np.var(x, ddof=1), RANKS[1:], torch=torch.var),
    Spec(
        "keepdims",
        lambda x: (np.sum(x, keepdims=True), np.mean(x, keepdims=True), np.prod(x, keepdims=True)),
        list(RANKS),
        torch=lambda x: (
            torch.sum(x, tuple(range(x.ndim)), keepdim=True),
            torch.mean(x, tuple(range(x.ndim)), keepdim=True),
            torch.prod(x).reshape((1,) * x.ndim),
        ),
    ),
    # axes: int, negative, tuple, keepdims
    _axes_spec("sum", np.sum, _torch_sum),
    _axes_spec("mean", np.mean, _torch_mean),
    _axes_spec("prod", np.prod, _torch_prod),
    _axes_spec("amax", np.amax, _torch_amax),
    _axes_spec("amin", np.amin, _torch_amin),
    _axes_spec("std", np.std, None),  # std over 0 axes is 0, torch's dim=() means all
    _axes_spec("var", np.var, None),
    Spec("std-axes-ddof", _std_axes(np.std), [(2, 3, 4)], torch=_std_dims(torch.std)),
    Spec("var-axes-ddof", _std_axes(np.var), [(2, 3, 4)], torch=_std_dims(torch.var)),
    Spec(
        "reductions-axis-2d",
        lambda x: (np.sum(x, 0), np.mean(x, -1), np.prod(x, 1), np.amax(x, -2), np.amin(x, 1), np.std(x, 0)),
        [(2, 3), (3, 1)],
        torch=lambda x: (
            torch.sum(x, 0),
            torch.mean(x, -1),
            torch.prod(x, 1),
            torch.amax(x, -2),
            torch.amin(x, 1),
            torch.std(x, 0, correction=0),
        ),
    ),
    Spec(
        "reductions-axis-1d",
        lambda x: (np.sum(x, 0), np.prod(x, -1, keepdims=True), np.amax(x, 0), np.var(x, -1, keepdims=True)),
        [(3,)],
        torch=lambda x: (
            torch.sum(x, 0),
            torch.prod(x, -1, keepdim=True),
            torch.amax(x, 0),
            torch.var(x, -1, correction=0, keepdim=True),
        ),
    ),
    # ufunc methods, Dual methods, aliases
    Spec("ufunc-reduce-accumulate", _ufunc_reduce, [(2, 3)], torch=_ufunc_reduce_t),
    Spec("dual-reduction-methods", _methods, [(2, 3)], torch=_methods_t),
    Spec("max-min-aliases", _aliases, [(2, 3)], torch=_aliases_t),
    # ties: the tangent is split evenly among tied extrema (torch.amax's rule)
    Spec("amax-ties", np.amax, [(4,), (2, 3)], gen=_ties, fd=False, torch=torch.amax),
    Spec("amin-ties", np.amin, [(4,), (2, 3)], gen=_ties, fd=False, torch=torch.amin),
    Spec("amax-ties-axes", _over_axes(np.amax), [(2, 3, 4)], gen=_ties, fd=False, torch=_over_dims(_torch_amax)),
    Spec("amin-ties-axes", _over_axes(np.amin), [(2, 3, 4)], gen=_ties, fd=False, torch=_over_dims(_torch_amin)),
    Spec(
        "max-min-ties-ufunc",
        lambda x: (np.maximum.reduce(x), np.minimum.reduce(x, axis=1), x.max(axis=1), np.max(x)),
        [(2, 3)],
        gen=_ties,
        fd=False,
        torch=lambda x: (torch.amax(x, 0), torch.amin(x, 1), torch.amax(x, 1), torch.max(x)),
    ),
    # zeros: prod and cumprod are polynomials, exact with any number of zeros
    Spec("prod-one-zero", np.prod, [(3,), (2, 3), (2, 3, 4)], gen=_zeros_flat(1), torch=torch.prod),
    Spec("prod-two-zeros", np.prod, [(3,), (2, 3, 4)], gen=_zeros_flat(2), torch=torch.prod),
    Spec("prod-zeros-axes", _over_axes(np.prod), [(2, 3, 4)], gen=_zeros, torch=_over_dims(_torch_prod)),
    Spec(
        "cumprod-zeros",
        lambda x: (np.cumprod(x, axis=-1), np.cumprod(x, axis=0), np.cumprod(x, axis=1), np.cumprod(x)),
        [(2, 3, 4)],
        gen=_zeros,
        torch=lambda x: (torch.cumprod(x, -1), torch.cumprod(x, 0), torch.cumprod(x, 1), torch.cumprod(x.flatten(), 0)),
    ),
    Spec("cumprod-two-zeros", np.cumprod, [(5,)], gen=_zeros_flat(2), torch=lambda x: torch.cumprod(x, 0)),
    # std/var at zero variance: torch's tangent is 0 there (central differences agree: std is even)
    Spec(
        "std-constant",
        lambda x: (np.std(x), np.std(x, axis=0, ddof=1), np.var(x)),
        [(3, 2)],
        gen=_constant,
        torch=lambda x: (torch.std(x, correction=0), torch.std(x, 0), torch.var(x, correction=0)),
    ),
    # cumulative
    Spec("cumsum", _cumulative(np.cumsum), [(2, 3), (3, 4)], torch=_cumulative_t(torch.cumsum)),
    Spec("cumprod", _cumulative(np.cumprod), [(2, 3), (3, 4)], torch=_cumulative_t(torch.cumprod)),
    Spec(
        "cumulative-flat",
        lambda x: (np.cumsum(x), np.cumprod(x)),
        list(RANKS),
        torch=lambda x: (torch.cumsum(x.flatten(), 0), torch.cumprod(x.flatten(), 0)),
    ),
    Spec(
        "cumulative-3d",
        lambda x: (np.cumsum(x, axis=1), np.cumprod(x, axis=-3)),
        [(2, 3, 4)],
        torch=lambda x: (torch.cumsum(x, 1), torch.cumprod(x, -3)),
    ),
    # norms
    Spec("norm", np.linalg.norm, list(RANKS), torch=torch.linalg.norm),
    Spec(
        "norm-keepdims",
        lambda x: np.linalg.norm(x, keepdims=True),
        list(RANKS),
        torch=lambda x: torch.linalg.vector_norm(x, keepdim=True).reshape((1,) * x.ndim),
    ),
    Spec("norm-vector-ords", _vector_norms, [(3,), (2, 3)], torch=_vector_norms_t),
    Spec("norm-1d-ords", _ords(np.linalg.norm, VECTOR_ORDS), [(3,)], torch=_ords(torch.linalg.norm, VECTOR_ORDS)),
    Spec(
        "norm-matrix-ords",
        _ords(np.linalg.norm, MATRIX_ORDS),
        [(2, 3), (3, 3), (3, 2)],
        torch=_ords(torch.linalg.norm, MATRIX_ORDS),
    ),
    Spec("norm-matrix-axes", _batched_matrix_norms, [(2, 3, 4)], torch=_batched_matrix_norms_t),
    # the norm at a zero vector and at a zero entry: tangent 0 there (torch; central differences agree)
    Spec(
        "norm-at-zero",
        lambda x: tuple(np.linalg.norm(x, o, axis=-1) for o in (None, 1, INF, 3, 0.5, 0)),
        [(3, 3)],
        gen=_vector_zeros,
        torch=lambda x: tuple(torch.linalg.vector_norm(x, o, dim=-1) for o in (2, 1, INF, 3, 0.5, 0)),
    ),
    Spec("norm-inf-ties", _inf_norms, [(3, 4)], gen=_ties, fd=False, torch=_inf_norms_t),
]
