"""Specs for rules/shape.py: every NumPy shape-and-selection function of numpy_api.FUNCTIONS,
the Dual methods that reach them, and indexing (``x[key]``, ``y[key] = v``).

Several NumPy functions (flip, split, squeeze, moveaxis, ...) are translated by numpy_api into
reshape/transpose/getitem/concatenate, so their specs check the translation as well as the rule.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dualjac.rules import apply
from rule_specs import UNARY, Spec, draw, on


# --- generators for specs with constant (boolean / integer) arguments --------------------
def _cond_xy(rng, shapes, dtype):
    """(cond, x, y): cond boolean of shapes[0], x and y floats of shapes[1], shapes[2]."""
    cs, xs, ys = shapes
    return rng.random(cs) < 0.5, draw(rng, xs, dtype), draw(rng, ys, dtype)


def _clip_ties(rng, shape, dtype):
    """x with entries exactly at lo and hi (and lo, hi arrays): the kinks of clip."""
    lo = draw(rng, shape, dtype, -1.0, -0.2)
    hi = draw(rng, shape, dtype, 0.2, 1.0)
    x = draw(rng, shape, dtype)
    u = rng.random(shape)
    x = np.where(u < 0.3, lo, np.where(u > 0.7, hi, x)).astype(dtype)
    return x, lo, hi


def _sort_ties(rng, shape, dtype):
    return (rng.integers(-2, 2, size=shape).astype(dtype) * 0.5,)


def _with_indices(lo, hi, ishape):
    def gen(rng, shape, dtype):
        return draw(rng, shape, dtype), rng.integers(lo, hi, size=ishape)

    return gen


def _along(axis):
    """(x, indices) for take_along_axis: indices of x's shape (with repeats) along ``axis``."""

    def gen(rng, shape, dtype):
        x = draw(rng, shape, dtype)
        n = x.size if axis is None else shape[axis]
        ishape = (x.size,) if axis is None else shape
        return x, rng.integers(0, n, size=ishape)

    return gen


# --- functions of several shape ops (each with its torch twin) ------------------------------
def _reshape_methods(x):
    return np.concatenate([x.reshape(3, 2).ravel(), x.flatten(), np.ravel(x), x.reshape((1, -1))[0]])


def _reshape_methods_t(x):
    return torch.cat([x.reshape(3, 2).ravel(), x.flatten(), torch.ravel(x), x.reshape((1, -1))[0]])


def _transpose_methods(x):
    return x.T, x.transpose(), x.transpose(1, 0), x.transpose((1, 0)), x.mT, x.swapaxes(0, 1)


def _transpose_methods_t(x):
    return x.T, x.permute(1, 0), x.permute(1, 0), x.permute((1, 0)), x.mT, x.swapaxes(0, 1)


def _axes_moves(x):
    return (
        np.swapaxes(x, 0, -1),
        x.swapaxes(1, 2),
        np.moveaxis(x, 0, -1),
        np.moveaxis(x, [0, 1], [-1, 0]),
        np.transpose(x, (1, 2, 0)),
        np.transpose(x, (-1, 0, 1)),
        np.permute_dims(x, (2, 0, 1)),
    )


def _axes_moves_t(x):
    return (
        torch.swapaxes(x, 0, -1),
        x.swapaxes(1, 2),
        torch.movedim(x, 0, -1),
        torch.movedim(x, (0, 1), (-1, 0)),
        torch.permute(x, (1, 2, 0)),
        torch.permute(x, (-1, 0, 1)),
        torch.permute(x, (2, 0, 1)),
    )


def _squeezes(x):
    return (
        np.squeeze(x),
        np.squeeze(x, axis=-1),
        x.squeeze(0),
        np.expand_dims(x, 1),
        np.expand_dims(x, (0, -1)),
    )


def _squeezes_t(x):
    return x.squeeze(), x.squeeze(-1), x.squeeze(0), x.unsqueeze(1), x.unsqueeze(0).unsqueeze(-1)


def _atleast(x):
    return np.atleast_1d(x), np.atleast_2d(x), np.atleast_3d(x), *np.atleast_1d(x, 2 * x)


def _atleast_t(x):
    return torch.atleast_1d(x), torch.atleast_2d(x), torch.atleast_3d(x), *torch.atleast_1d(x, 2 * x)


def _flips(x):
    return np.flip(x), np.flip(x, 0), np.flip(x, (0, -1)), np.fliplr(x), np.flipud(x)


def _flips_t(x):
    return (
        torch.flip(x, (0, 1)),
        torch.flip(x, (0,)),
        torch.flip(x, (0, -1)),
        torch.fliplr(x),
        torch.flipud(x),
    )


def _rolls(x):
    return np.roll(x, 1), np.roll(x, -1, axis=1), np.roll(x, (1, 2), axis=(0, 1)), np.roll(x, -4, axis=-1)


def _rolls_t(x):
    return torch.roll(x, 1), torch.roll(x, -1, 1), torch.roll(x, (1, 2), (0, 1)), torch.roll(x, -4, -1)


def _tiles(x):
    return np.tile(x, 2), np.tile(x, (2, 1)), np.tile(x, (2, 1, 2))


def _tiles_t(x):
    return torch.tile(x, (2,)), torch.tile(x, (2, 1)), torch.tile(x, (2, 1, 2))


def _repeats(x):
    return np.repeat(x, 2), x.repeat(3), np.repeat(x, 2, axis=-1), np.repeat(x, [1, 0, 2], axis=1)


def _repeats_t(x):
    r = torch.tensor([1, 0, 2])
    return (
        torch.repeat_interleave(x, 2),
        torch.repeat_interleave(x, 3),
        torch.repeat_interleave(x, 2, dim=-1),
        torch.repeat_interleave(x, r, dim=1),
    )


def _pad_last(mode, tmode):
    """Pad the last axis (1 before, 2 after) with ``mode``; torch's ``F.pad`` names it ``tmode``."""
    return Spec(
        f"pad-{mode}",
        lambda x: np.pad(x, ((0, 0), (1, 2)), mode=mode),
        [(2, 3), (3, 4)],
        torch=None if tmode is None else (lambda x: F.pad(x, (1, 2), mode=tmode)),
    )


def _basic_indexing(x):
    return x[1:, ::-1], x[0], x[-1, 1:3], x[..., 0], x[None, :, None], x[::-2, ...], x[:, -1:0:-1], x[()]


def _basic_indexing_t(x):
    return (
        x[1:].flip(1),
        x[0],
        x[-1, 1:3],
        x[..., 0],
        x[None, :, None],
        x.flip(0)[::2, ...],
        x[:, 1:].flip(1),
        x[()],
    )


def _advanced_indexing(x):
    i = np.array([[0, 1], [1, 0]])
    return (
        x[[0, 0, 1]],
        x[[1, 0], [2, 2]],
        x[x > 0.5],
        x[np.array([True, False]), 1:],
        x[i, :],
        x[i, -1],
        x[..., [2, 0, 2]],
        x[1, [0, 2]],
    )


def _advanced_indexing_t(x):
    i = torch.tensor([[0, 1], [1, 0]])
    return (
        x[[0, 0, 1]],
        x[[1, 0], [2, 2]],
        x[x > 0.5],
        x[torch.tensor([True, False]), 1:],
        x[i, :],
        x[i, -1],
        x[..., [2, 0, 2]],
        x[1, [0, 2]],
    )


def _separated_indexing(x):
    # advanced indices separated by a slice, Ellipsis or None: NumPy puts their dims first
    i = np.array([[0, 1], [1, 1]])
    return (
        x[[0, 1], :, [1, 0]],
        x[i, ..., [0, 1]],
        x[[1], None, [0]],
        x[0, :, [1, 0, 1]],
        x[:, [2, 0], None][[1, 0], :, 0],
    )


def _setitem(x, v):
    y = x * v[1]  # a Dual whenever x or v is
    y[1:] = v * 2
    y[0, ::-1] = v[0]
    return y


def _setitem_t(x, v):
    y = x * v[1]
    y[1:] = v * 2
    y[0] = v[0]
    return y


MASK = np.array([[[1, 0], [0, 0]], [[0, 1], [1, 0]], [[0, 0], [0, 1]]], dtype=bool)


def _setitem_advanced(x, v):
    y = x * v[0, 1]
    y[[0, 2], 1] = v[0, :2]  # integer array
    y[MASK] = -1.0  # boolean mask, a constant value
    y[..., 0] = v[:1].reshape(1, 1, 2)  # broadcast, with an extra leading axis of length 1
    y[[2, 1], :, [0, 1]] = v * 3  # separated advanced indices: their dim comes first
    y[[0, 1], ..., 1] = v[1, 0]
    y[None, 0, 1:, None] = v[:1, None, :2]
    return y


def _setitem_advanced_t(x, v):
    y = x * v[0, 1]
    y[[0, 2], 1] = v[0, :2]
    y[torch.as_tensor(MASK)] = -1.0
    y[..., 0] = v[:1].reshape(1, 1, 2)
    y[[2, 1], :, [0, 1]] = v * 3
    y[[0, 1], ..., 1] = v[1, 0]
    y[None, 0, 1:, None] = v[:1, None, :2]
    return y


def _setitem_const_value(x):
    y = x.copy()
    y[1:] = np.ones(3)
    y[0, 1] = 7.0
    return y


def _setitem_broadcast_tangent(x):
    y = x * on(x, np.ones((2, 3)))  # y's tangent is a read-only broadcast view of x's
    y[0, 1] = 5.0
    y[1] = y[1] * y[0]
    return y


def _setitem_broadcast_tangent_t(x):
    y = x * torch.ones((2, 3))
    y[0, 1] = 5.0
    y[1] = y[1] * y[0]
    return y


def _like_constants(x):
    return np.zeros_like(x) + x * np.ones_like(x) + np.full_like(x, 2.0) + 0 * np.empty_like(x).size


def _astypes(x):
    return (
        np.float64(1.5) * x.astype(np.float64),
        (3 * x).astype(np.int16) + x,
        x.astype("float64").astype(x.dtype),
    )


def _astypes_t(x):
    return 1.5 * x.to(torch.float64), (3 * x).to(torch.int16) + x, x.to(torch.float64).to(x.dtype)


def _clip_ref(x, lo, hi):
    """clip with x keeping its tangent at a bound, as a selection in torch (every release agrees on where)."""
    if lo is not None:
        x = torch.where(x >= lo, x, lo if torch.is_tensor(lo) else torch.full_like(x, lo))
    if hi is not None:
        x = torch.where(x <= hi, x, hi if torch.is_tensor(hi) else torch.full_like(x, hi))
    return x


SPECS = [
    # reshaping
    Spec(
        "reshape", lambda x: np.reshape(x, (3, 2)), [(2, 3), (6,)], torch=lambda x: torch.reshape(x, (3, 2))
    ),
    Spec(
        "reshape-newshape-minus1",
        lambda x: np.reshape(x, (-1, 1)),
        list(UNARY),
        torch=lambda x: torch.reshape(x, (-1, 1)),
    ),
    Spec("reshape-methods", _reshape_methods, [(2, 3)], torch=_reshape_methods_t),
    Spec("ravel", np.ravel, list(UNARY), torch=torch.ravel),
    Spec(
        "transpose",
        np.transpose,
        [*UNARY, (2, 3, 4)],
        torch=lambda x: torch.permute(x, tuple(reversed(range(x.ndim)))),
    ),
    Spec("transpose-methods", _transpose_methods, [(2, 3)], torch=_transpose_methods_t),
    Spec("moveaxis-swapaxes-permute", _axes_moves, [(2, 3, 4)], torch=_axes_moves_t),
    Spec("squeeze-expand_dims", _squeezes, [(1, 3, 1), (1, 1)], torch=_squeezes_t),
    Spec("atleast", _atleast, list(UNARY), torch=_atleast_t),
    Spec(
        "broadcast_to",
        lambda x: np.broadcast_to(x, (2, 3)),
        [(), (3,), (1, 3), (2, 1)],
        torch=lambda x: torch.broadcast_to(x, (2, 3)),
    ),
    Spec(
        "broadcast_to-then-ops",
        lambda x: np.broadcast_to(x, (4, 3)).T @ np.broadcast_to(x, (4, 3)),
        [(3,)],
        torch=lambda x: torch.broadcast_to(x, (4, 3)).T @ torch.broadcast_to(x, (4, 3)),
    ),
    Spec("tile", _tiles, list(UNARY), torch=_tiles_t),
    Spec("repeat", _repeats, [(2, 3)], torch=_repeats_t),
    Spec("repeat-0d", lambda x: np.repeat(x, 3), [(), (3,)], torch=lambda x: torch.repeat_interleave(x, 3)),
    Spec("flip", _flips, [(2, 3)], torch=_flips_t),
    Spec(
        "flip-1d", lambda x: (np.flip(x), np.flipud(x)), [(3,)], torch=lambda x: (x.flip(0), torch.flipud(x))
    ),
    Spec("roll", _rolls, [(2, 3)], torch=_rolls_t),
    Spec("roll-flat", lambda x: np.roll(x, 1), list(UNARY), torch=lambda x: torch.roll(x, 1)),
    Spec("roll-shared-shift", lambda x: (np.roll(x, 2, axis=(0, 1)), np.roll(x, (1, 2))), [(2, 3)]),
    # joining and splitting
    Spec(
        "concatenate",
        lambda x, y: np.concatenate([x, y]),
        [((2, 3), (1, 3)), ((3,), (2,))],
        torch=lambda x, y: torch.cat([x, y]),
    ),
    Spec(
        "concatenate-axis",
        lambda x, y: np.concatenate((y, x, y), axis=-1),
        [((2, 3), (2, 2))],
        torch=lambda x, y: torch.cat((y, x, y), dim=-1),
    ),
    Spec(
        "concatenate-axis-none",
        lambda x, y: np.concatenate([x, y], axis=None),
        [((2, 3), (4,)), ((3,), ())],
        torch=lambda x, y: torch.cat([x.flatten(), y.flatten()]),
    ),
    Spec(
        "concatenate-constant",
        lambda x, y: np.concatenate([x, on(x, y), 2 * x], axis=1),
        [((2, 3), (2, 1))],
        diff=(0,),
        torch=lambda x, y: torch.cat([x, y, 2 * x], dim=1),
    ),
    Spec(
        "stack",
        lambda x, y: np.stack([x, y]),
        [((), ()), ((3,), (3,)), ((2, 3), (2, 3))],
        torch=lambda x, y: torch.stack([x, y]),
    ),
    Spec(
        "stack-axis",
        lambda x, y: (np.stack([x, y, x], axis=-1), np.stack((y, x), axis=1)),
        [((3,), (3,)), ((2, 3), (2, 3))],
        torch=lambda x, y: (torch.stack([x, y, x], dim=-1), torch.stack((y, x), dim=1)),
    ),
    Spec(
        "stack-constant",
        lambda x, y: np.stack([on(y, x), y], axis=-1),
        [((2, 3), (2, 3))],
        diff=(1,),
        torch=lambda x, y: torch.stack([x, y], dim=-1),
    ),
    Spec(
        "hstack",
        lambda x, y: np.hstack([x, y]),
        [((3,), (2,)), ((2, 3), (2, 1)), ((), ())],
        torch=lambda x, y: torch.hstack([x, y]),
    ),
    Spec(
        "vstack",
        lambda x, y: np.vstack((x, y)),
        [((3,), (3,)), ((2, 3), (1, 3)), ((), ())],
        torch=lambda x, y: torch.vstack((x, y)),
    ),
    Spec(
        "split",
        lambda x: (*np.split(x, 3), *np.split(x, [1, -1]), *np.split(x, [2, 9])),
        [(6,)],
        torch=lambda x: (
            *torch.tensor_split(x, 3),
            *torch.tensor_split(x, [1, -1]),
            *torch.tensor_split(x, [2, 9]),
        ),
    ),
    Spec(
        "split-axis",
        lambda x: np.split(x, 2, axis=-1),
        [(3, 4)],
        torch=lambda x: torch.tensor_split(x, 2, dim=-1),
    ),
    Spec(
        "array_split",
        lambda x: (*np.array_split(x, 4), *np.array_split(x, 2, axis=1)),
        [(5, 3)],
        torch=lambda x: (*torch.tensor_split(x, 4), *torch.tensor_split(x, 2, dim=1)),
    ),
    # padding (each mode)
    Spec(
        "pad-constant",
        lambda x: np.pad(x, 1, constant_values=3.0),
        [(3,), (2, 3)],
        torch=lambda x: F.pad(x, (1, 1) * x.ndim, value=3.0),
    ),
    Spec(
        "pad-constant-widths",
        lambda x: np.pad(x, ((1, 0), (0, 2))),
        [(2, 3)],
        torch=lambda x: F.pad(x, (0, 2, 1, 0)),
    ),
    _pad_last("edge", "replicate"),
    _pad_last("reflect", "reflect"),
    _pad_last("wrap", "circular"),
    _pad_last("symmetric", None),
    Spec(
        "pad-all-axes",
        lambda x: (
            np.pad(x, 2, mode="reflect"),
            np.pad(x, (1, 2), mode="symmetric"),
            np.pad(x, ((2,),), mode="edge"),
            np.pad(x, 2, mode="wrap"),
            np.pad(x, (1, 3), mode="reflect", reflect_type="odd"),
        ),
        [(3,), (3, 4)],
    ),
    Spec(
        "pad-linear_ramp-mean",
        lambda x: (
            np.pad(x, 2, mode="linear_ramp", end_values=(1.0, -2.0)),
            np.pad(x, (1, 2), mode="mean", stat_length=2),
        ),
        [(4,), (3, 4)],
    ),
    # selection by condition and bounds
    Spec(
        "where",
        lambda c, x, y: np.where(on(x, c), x, y),
        [((3,), (3,), (3,)), ((3, 1), (1, 4), ()), ((), (2, 3), (3,))],
        gen=_cond_xy,
        torch=torch.where,
    ),
    Spec(
        "where-y-constant",
        lambda c, x, y: np.where(on(x, c), x, on(x, y)),
        [((2, 3), (2, 3), (2, 3)), ((3,), (), (3,))],
        gen=_cond_xy,
        diff=(1,),
        torch=torch.where,
    ),
    Spec(
        "where-scalar",
        lambda c, x, y: np.where(on(x, c), x, 0.0) + np.where(on(x, c), 1.0, x),
        [((2, 3), (3,), ())],
        gen=_cond_xy,
        diff=(1,),
        torch=lambda c, x, y: torch.where(c, x, 0.0) + torch.where(c, 1.0, x),
    ),
    Spec(
        "clip-scalars",
        lambda x: (np.clip(x, -0.5, 0.7), x.clip(-1.0), np.clip(x, None, 0.5), np.clip(x, min=0.1, max=None)),
        list(UNARY),
        torch=lambda x: (
            torch.clamp(x, -0.5, 0.7),
            x.clamp(-1.0),
            torch.clamp(x, max=0.5),
            torch.clamp(x, 0.1),
        ),
    ),
    Spec(
        "clip-arrays",
        np.clip,
        [((3,), (3,), (3,)), ((2, 3), (3,), ()), ((), (4,), (4,))],
        domain=(-1.0, 1.0),
        torch=torch.clamp,
    ),
    Spec(
        "clip-constant-bounds",
        lambda x, lo, hi: x.clip(on(x, lo), on(x, hi)),
        [((2, 3), (2, 3), (3,))],
        diff=(0,),
        torch=lambda x, lo, hi: x.clamp(lo, hi),
    ),
    Spec(
        "clip-one-bound",
        lambda x, b: (np.clip(x, b, None), np.clip(x, None, b)),
        [((2, 3), (3,))],
        torch=lambda x, b: (torch.clamp_min(x, b), torch.clamp_max(x, b)),
    ),
    # ties: x at a bound keeps its tangent (docs/concepts/conventions.md). torch.clamp's own tie rule
    # changed between releases (2.13: x's; 2.14: none, or split with a tensor bound), so the reference is
    # that convention written with torch.where, whose selection is the same in every release
    Spec("clip-ties", np.clip, [(6,), (2, 3)], gen=_clip_ties, fd=False, torch=lambda x, lo, hi: _clip_ref(x, lo, hi)),
    Spec(
        "clip-ties-one-bound",
        lambda x, lo, hi: (np.clip(x, lo, None), np.clip(x, None, hi)),
        [(6,)],
        gen=_clip_ties,
        fd=False,
        torch=lambda x, lo, hi: (_clip_ref(x, lo, None), _clip_ref(x, None, hi)),
    ),
    Spec(
        "clip-ties-scalar",
        lambda x: np.clip(x, -0.5, 0.5),
        [(6,)],
        fd=False,
        gen=lambda r, s, d: (np.array([-0.5, 0.5, 0.0, -1.0, 1.0, 0.5], d),),
        torch=lambda x: _clip_ref(x, -0.5, 0.5),
    ),
    Spec(
        "clip-crossed-bounds",
        np.clip,
        [((4,), (4,), (4,))],
        gen=lambda r, s, d: (draw(r, 4, d), draw(r, 4, d, 0.5, 1.0), draw(r, 4, d, -1.0, 0.4)),
        torch=torch.clamp,
    ),
    # indexing
    Spec("getitem-basic", _basic_indexing, [(3, 4)], torch=_basic_indexing_t),
    Spec("getitem-0d", lambda x: (x[()], x[...], x[None]), [()], torch=lambda x: (x[()], x[...], x[None])),
    Spec("getitem-advanced", _advanced_indexing, [(2, 3)], torch=_advanced_indexing_t),
    Spec("getitem-separated", _separated_indexing, [(2, 3, 2)]),
    Spec(
        "getitem-separated-torch",
        lambda x: (x[[0, 1], :, [1, 0]], x[[[0], [1]], ..., [0, 1]]),
        [(2, 3, 2)],
        torch=lambda x: (x[[0, 1], :, [1, 0]], x[[[0], [1]], ..., [0, 1]]),
    ),
    Spec(
        "getitem-iterate",
        lambda x: sum(row * i for i, row in enumerate(x)),
        [(3,), (3, 2)],
        torch=lambda x: sum(row * i for i, row in enumerate(x)),
    ),
    Spec("setitem", _setitem, [((3, 2), (2,))], torch=_setitem_t),
    Spec("setitem-advanced", _setitem_advanced, [((3, 2, 2), (2, 2))], torch=_setitem_advanced_t),
    Spec("setitem-constant-value", _setitem_const_value, [(3, 3)]),
    Spec("setitem-broadcast-tangent", _setitem_broadcast_tangent, [(3,)], torch=_setitem_broadcast_tangent_t),
    Spec(
        "setitem-constant-base",
        lambda x, v: apply("setitem", on(v, x), 2 * v, key=(slice(1, None), 0)),
        [((3, 2), (2,))],
        diff=(1,),
    ),
    Spec(
        "take",
        lambda x, i: (np.take(x, on(x, i)), x.take(on(x, i[:2]))),
        [(3,), (2, 3)],
        gen=_with_indices(-3, 3, (4,)),
        torch=lambda x, i: (torch.take(x, i), torch.take(x, i[:2])),
    ),
    Spec(
        "take-axis",
        lambda x, i: np.take(x, on(x, i), axis=1),
        [(2, 3)],
        gen=_with_indices(0, 3, (2, 2)),
        torch=lambda x, i: x[:, i],
    ),
    Spec(
        "take-modes",
        lambda x: (np.take(x, [4, -5, 1], mode="wrap"), np.take(x, [[4], [-5]], axis=1, mode="clip")),
        [(2, 3)],
        torch=lambda x: (torch.take(x, torch.tensor([4, 1, 1])), x[:, [[2], [0]]]),
    ),
    Spec(
        "take_along_axis",
        lambda x, i: np.take_along_axis(x, on(x, i), axis=1),
        [(2, 3), (3, 2)],
        gen=_along(1),
        torch=lambda x, i: torch.take_along_dim(x, i, dim=1),
    ),
    Spec(
        "take_along_axis-0",
        lambda x, i: np.take_along_axis(x, on(x, i), axis=0),
        [(3,), (2, 3)],
        gen=_along(0),
        torch=lambda x, i: torch.take_along_dim(x, i, dim=0),
    ),
    Spec(
        "take_along_axis-none",
        lambda x, i: np.take_along_axis(x, on(x, i), axis=None),
        [(2, 3)],
        gen=_along(None),
        torch=lambda x, i: torch.take_along_dim(x, i),
    ),
    Spec(
        "sort",
        lambda x: (np.sort(x), np.sort(x, axis=0), np.sort(x, axis=None)),
        [(3,), (2, 3)],
        torch=lambda x: (torch.sort(x).values, torch.sort(x, dim=0).values, torch.sort(x.flatten()).values),
    ),
    Spec(
        "sort-ties",
        lambda x: (np.sort(x), np.sort(x, axis=None)),
        [(6,), (3, 4)],
        gen=_sort_ties,
        fd=False,
        torch=lambda x: (torch.sort(x, stable=True).values, torch.sort(x.flatten(), stable=True).values),
    ),
    # copies, casts and constants shaped like an array
    Spec("copy", lambda x: (np.copy(x), x.copy()), list(UNARY), torch=lambda x: (torch.clone(x), x.clone())),
    Spec("astype", _astypes, list(UNARY), torch=_astypes_t),
    # a float64 -> float32 cast rounds central differences, so torch alone checks it
    Spec(
        "astype-float32",
        lambda x: x.astype(np.float32) * 2,
        list(UNARY),
        fd=False,
        torch=lambda x: x.to(torch.float32) * 2,
    ),
    Spec(
        "like-constants",
        _like_constants,
        list(UNARY),
        torch=lambda x: torch.zeros_like(x) + x * torch.ones_like(x) + torch.full_like(x, 2.0),
    ),
]
