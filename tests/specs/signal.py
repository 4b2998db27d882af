"""Specs for rules/signal.py (np.gradient, np.interp, np.convolve) and the NumPy functions built on
them (np.correlate). Interpolation points are drawn away from the knots, where interp has kinks."""

from __future__ import annotations

import numpy as np
import torch

from rule_specs import Spec, draw, on

KNOTS = np.array([-1.5, -0.5, 0.0, 0.7, 1.6])


def _flat(*outs):
    """One tuple of arrays: np.gradient and torch.gradient return a tuple for several axes."""
    return tuple(a for o in outs for a in (o if isinstance(o, tuple | list) else (o,)))


def _gradients(f):
    out = _flat(np.gradient(f), np.gradient(f, 0.5), np.gradient(f, edge_order=2), np.gradient(f, axis=-1))
    if np.ndim(f) == 1:
        out += (np.gradient(f, on(f, np.array([0.0, 0.3, 1.0, 1.2, 2.0]))),)
    return out


def _gradients_t(f):
    g = lambda *a, **k: torch.gradient(f, *a, **k)  # noqa: E731
    out = _flat(g(), g(spacing=0.5), g(edge_order=2), g(dim=-1))
    if f.ndim == 1:
        out += (g(spacing=(torch.tensor([0.0, 0.3, 1.0, 1.2, 2.0], dtype=f.dtype),))[0],)
    return out


def _interp_args(rng, shapes, dtype):
    xs, fps = shapes
    x = draw(rng, xs, dtype, -2.0, 2.0)
    near = np.abs(x[..., None] - KNOTS).min(axis=-1) < 0.02  # keep clear of the kinks
    x = np.where(near, x + 0.05, x).astype(dtype)
    return x, draw(rng, fps, dtype)


def _interps(x, fp):
    k = on(x, KNOTS)
    return (
        np.interp(x, k, fp),
        np.interp(x, k, fp, left=-3.0, right=3.0),
        np.interp(x, k.tolist(), fp),
        np.interp(x, k, fp, period=3.5),
    )


def _convolutions(a, v):
    return tuple(np.convolve(a, v, m) for m in ("full", "same", "valid")) + tuple(
        np.correlate(a, v, m) for m in ("full", "same", "valid")
    )


def _convolutions_t(a, v):
    full = lambda a, v: torch.nn.functional.conv1d(  # noqa: E731
        torch.nn.functional.pad(a, (v.numel() - 1, v.numel() - 1))[None, None], v.flip(0)[None, None]
    )[0, 0]
    n, m = a.numel(), v.numel()
    lo, hi = min(n, m), max(n, m)

    def modes(c):
        return c, c[(lo - 1) // 2 : (lo - 1) // 2 + hi], c[lo - 1 : hi]

    return modes(full(a, v)) + modes(full(a, v.flip(0)))


SPECS = [
    Spec("gradient", _gradients, [(5,), (3, 4)], torch=_gradients_t),
    Spec(
        "gradient-axes",
        lambda f: np.gradient(f, 2.0, axis=(0, 2)),
        [(3, 2, 4)],
        torch=lambda f: torch.gradient(f, spacing=2.0, dim=(0, 2)),
    ),
    Spec("interp", _interps, [((), (5,)), ((7,), (5,)), ((2, 3), (5,))], gen=_interp_args),
    Spec(
        "interp-x-only",
        lambda x, fp: np.interp(x, on(x, KNOTS), on(x, fp)),
        [((6,), (5,))],
        gen=_interp_args,
        diff=(0,),
    ),
    Spec("convolve", _convolutions, [((5,), (3,)), ((3,), (5,)), ((4,), (4,)), ((1,), (3,))], torch=_convolutions_t),
    Spec("convolve-scalar", lambda a, v: (np.convolve(a, v), np.convolve(v, a, "same")), [((), (3,))]),
]
