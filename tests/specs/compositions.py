"""Specs for the NumPy functions of numpy_compose.py that are compositions of other rules (diag,
kron, cross, rot90, linspace, diff, select, ...), for np.round, np.real/imag/conj, and for
einsum's interleaved form. Each is checked like a rule: its own derivative comes from the rules
it is built of, so the spec checks the composition."""

from __future__ import annotations

import numpy as np
import torch

from rule_specs import UNARY, Spec, draw


def _diags(v):
    if np.ndim(v) == 1:
        return np.diag(v), np.diag(v, 1), np.diag(v, k=-2)
    return np.diag(v), np.diag(v, 1), np.diag(v, -1)


def _diags_t(v):
    return torch.diag(v), torch.diag(v, 1), torch.diag(v, -2 if v.ndim == 1 else -1)


def _splits(x):
    out = np.hsplit(x, 2) + np.hsplit(x, [1])
    if x.ndim >= 2:
        out += np.vsplit(x, [1])
    if x.ndim >= 3:
        out += np.dsplit(x, 2)
    return tuple(out)


def _splits_t(x):
    out = torch.hsplit(x, 2) + torch.hsplit(x, [1])
    if x.ndim >= 2:
        out += torch.vsplit(x, [1])
    if x.ndim >= 3:
        out += torch.dsplit(x, 2)
    return tuple(out)


def _cross_t(a, b):
    a, b = torch.broadcast_tensors(a, b)
    return torch.linalg.cross(a, b)


def _rotations(x):
    return tuple(np.rot90(x, k) for k in (0, 1, 2, 3, -1)) + (np.rot90(x, 1, axes=(1, 0)),)


def _rotations_t(x):
    return tuple(torch.rot90(x, k, (0, 1)) for k in (0, 1, 2, 3, -1)) + (torch.rot90(x, 1, (1, 0)),)


def _rollaxes(x):
    return np.rollaxis(x, 2), np.rollaxis(x, 0, 3), np.rollaxis(x, -1, 1), np.rollaxis(x, 1, 1)


def _rollaxes_t(x):
    return torch.movedim(x, 2, 0), torch.movedim(x, 0, 2), torch.movedim(x, -1, 1), x


def _linspaces(a, b):
    y, step = np.linspace(a, b, 4, retstep=True)
    return y, step, np.linspace(a, b, 5, endpoint=False), np.linspace(a, b, 3, axis=-1), np.linspace(a, b, 1)


def _diffs(x):
    out = (np.diff(x), np.diff(x, 2), np.diff(x, prepend=0.5), np.diff(x, append=x[..., :1]))
    return out + ((np.diff(x, axis=0),) if x.ndim > 1 else ())


def _diffs_t(x):
    out = (
        torch.diff(x),
        torch.diff(torch.diff(x)),
        torch.diff(x, prepend=torch.full(x.shape[:-1] + (1,), 0.5, dtype=x.dtype)),
        torch.diff(x, append=x[..., :1]),
    )
    return out + ((torch.diff(x, dim=0),) if x.ndim > 1 else ())


def _nonfinite(rng, shape, dtype):
    x = draw(rng, shape, dtype)
    pick = rng.random(shape)
    return (
        np.where(pick < 0.2, np.nan, np.where(pick < 0.35, np.inf, np.where(pick < 0.5, -np.inf, x))).astype(dtype),
    )


def _nan_to_nums(x):
    return np.nan_to_num(x), np.nan_to_num(x, nan=1.0, posinf=2.0, neginf=-2.0)


def _selects(x):
    return np.select([x < -0.5, x < 0.5], [x * x, np.sin(x)], default=x), np.select([x > 0], [x], 0.0)


def _selects_t(x):
    return (
        torch.where(x < -0.5, x * x, torch.where(x < 0.5, torch.sin(x), x)),
        torch.where(x > 0, x, torch.zeros_like(x)),
    )


def _partitions(x):
    out = (np.partition(x, 1), np.partition(x, (0, 2), axis=-1), np.partition(x, 2, axis=None))
    return out + ((np.partition(x, 0, axis=0),) if x.ndim > 1 else ())


def _complex_parts(x):
    rounded = np.round(x, 1) + np.around(x) + x  # piecewise constant, plus x
    return np.real(x), np.imag(x) + x, np.conj(x), np.conjugate(x), np.real_if_close(x), rounded


def _complex_parts_t(x):
    return x, x, x, x, x, torch.round(x, decimals=1) + torch.round(x) + x


SPECS = [
    Spec("diag", _diags, [(3,), (3, 4)], torch=_diags_t),
    Spec(
        "column_stack",
        lambda x, y: np.column_stack([x, y, x]),
        [((3,), (3, 2)), ((), ())],
        torch=lambda x, y: torch.column_stack([x, y, x]),
    ),
    Spec("hsplit-vsplit-dsplit", _splits, [(4,), (2, 4), (2, 2, 4)], torch=_splits_t),
    Spec(
        "append",
        lambda x, y: (np.append(x, y), np.append(x, x, axis=0)),
        [((3,), (2,)), ((2, 3), (2,))],
    ),
    Spec("append-list", lambda x: np.append(x, [1.0] * x.shape[-1]), [(3,), (2, 3)]),
    Spec("kron", np.kron, [((2,), (3,)), ((2, 3), (2, 2)), ((), (3,)), ((2, 1, 2), (3, 2))], torch=torch.kron),
    Spec(
        "cross",
        lambda a, b: (np.cross(a, b), np.cross(b, a)),
        [((3,), (3,)), ((2, 3), (3,)), ((4, 1, 3), (2, 3))],
        torch=lambda a, b: (_cross_t(a, b), _cross_t(b, a)),
    ),
    Spec(
        "cross-axes",
        lambda a, b: np.cross(a, b, axisa=0, axisb=-1, axisc=0),
        [((3, 2), (2, 3))],
        torch=lambda a, b: torch.linalg.cross(a.T, b).T,
    ),
    Spec(
        "cross-2d",
        lambda a, b: (np.cross(a[..., :2], b), np.cross(a, b[..., :2]), np.cross(a[..., :2], b[..., :2])),
        [((3,), (3,)), ((2, 3), (2, 3))],
    ),
    Spec("rot90", _rotations, [(3, 4), (2, 3, 2)], torch=_rotations_t),
    Spec("rollaxis", _rollaxes, [(2, 3, 4)], torch=_rollaxes_t),
    Spec("linspace", _linspaces, [((), ()), ((3,), ()), ((2, 1), (3,))]),
    Spec(
        "nan_to_num",
        _nan_to_nums,
        [(), (6,), (2, 5)],
        gen=_nonfinite,
        torch=lambda x: (torch.nan_to_num(x), torch.nan_to_num(x, nan=1.0, posinf=2.0, neginf=-2.0)),
    ),
    Spec("select", _selects, list(UNARY), torch=_selects_t),
    Spec("partition", _partitions, [(5,), (3, 4)]),
    Spec("diff", _diffs, [(5,), (3, 4)], torch=_diffs_t),
    Spec("real-imag-conj-round", _complex_parts, list(UNARY), torch=_complex_parts_t),
    Spec(
        "einsum-interleaved",
        lambda x, y: (
            np.einsum(x, [0, 1], y, [1, 2], [0, 2]),
            np.einsum(x, [0, 1], y, [1, 2]),
            np.einsum(x, [Ellipsis, 1], [Ellipsis]),
        ),
        [((2, 3), (3, 4))],
        torch=lambda x, y: (
            torch.einsum(x, [0, 1], y, [1, 2], [0, 2]),
            torch.einsum(x, [0, 1], y, [1, 2]),
            torch.einsum(x, [Ellipsis, 1], [Ellipsis]),
        ),
    ),
]
