"""Specs for rules/decompositions.py: np.linalg's svd (and svdvals), eigh, eigvalsh, eig, qr, lstsq.

Eigen- and singular vectors are defined up to sign: each spec fixes the sign of every vector by
its first entry (``np.sign`` is piecewise constant, so it carries no tangent), which makes the
outputs comparable with finite differences of NumPy itself and with torch's factors. Symmetric
inputs are symmetrized inside the function (eigh reads one triangle; its rule, like torch's,
takes the perturbation symmetric). Random inputs have distinct eigen/singular values.
"""

from __future__ import annotations

import numpy as np
import torch

from rule_specs import Spec, is_shape


def _gen(*makers):
    def gen(rng, shapes, dtype):
        shapes = (shapes,) if is_shape(shapes) else shapes
        return tuple(np.asarray(m(rng, s)).astype(dtype) for m, s in zip(makers, shapes))

    return gen


def _uniform(rng, s):
    return rng.uniform(-2, 2, size=s)


def _full_rank(rng, s):
    m, n = s[-2:]
    return rng.uniform(-1, 1, size=s) + max(m, n) * np.eye(m, n)


def _real_spectrum(rng, s):
    """``S diag(d) S^{-1}`` with well separated real d and a well conditioned S."""
    n = s[-1]
    S = rng.uniform(-0.5, 0.5, size=s) + np.eye(n)
    d = np.arange(1, n + 1) + rng.uniform(-0.2, 0.2, size=s[:-1])
    return (S * d[..., None, :]) @ np.linalg.inv(S)


def _sym(a):
    return (a + np.swapaxes(a, -1, -2)) / 2


def _sym_t(a):
    return (a + a.mT) / 2


def _signs(v, lib=np):
    """Columns of ``v`` with the sign making their first entry positive, as a row to multiply by."""
    return lib.sign(v[..., :1, :])


# --- svd --------------------------------------------------------------------------------------------
def _svd(a, **kw):
    u, s, vh = np.linalg.svd(a, full_matrices=False, **kw)
    c = _signs(u)
    return u * c, s, vh * np.swapaxes(c, -1, -2)


def _svd_t(a):
    u, s, vh = torch.linalg.svd(a, full_matrices=False)
    c = _signs(u, torch)
    return u * c, s, vh * c.mT


def _svd_square_default(a):
    u, s, vh = np.linalg.svd(a)  # full_matrices=True: the same factors for a square matrix
    c = _signs(u)
    return u * c, s, vh * np.swapaxes(c, -1, -2)


def _svdvals(a):
    return (
        np.linalg.svd(a, compute_uv=False),
        np.linalg.svdvals(a),
        np.linalg.svd(a, full_matrices=True, compute_uv=False),
    )


def _svdvals_t(a):
    s = torch.linalg.svdvals(a)
    return s, s, s


# --- eigh, eig ------------------------------------------------------------------------------------------
def _eigh(a, UPLO="L"):
    w, q = np.linalg.eigh(_sym(a), UPLO=UPLO)
    return w, q * _signs(q)


def _eigh_t(a, UPLO="L"):
    w, q = torch.linalg.eigh(_sym_t(a), UPLO=UPLO)
    return w, q * _signs(q, torch)


def _eig(a):
    w, v = np.linalg.eig(a)
    return w, v * _signs(v)


# --- qr -----------------------------------------------------------------------------------------------
def _qr_modes(a):
    q, r = np.linalg.qr(a)
    out = (q, r, np.linalg.qr(a, mode="r"))
    if a.shape[-2] <= a.shape[-1]:  # 'complete' is the same as 'reduced' unless A is tall
        out += tuple(np.linalg.qr(a, mode="complete"))
    return out


def _qr_modes_t(a):
    q, r = torch.linalg.qr(a)
    out = (q, r, r)
    if a.shape[-2] <= a.shape[-1]:
        out += tuple(torch.linalg.qr(a, mode="complete"))
    return out


FULL, SPD_LIKE = _gen(_full_rank), _gen(_uniform)
MATRICES = [(3, 3), (4, 2), (2, 4), (2, 3, 2), (1, 1)]

SPECS = [
    Spec("svd", _svd, MATRICES, gen=FULL, torch=_svd_t),
    Spec("svd-random", _svd, [(3, 3), (3, 2)], gen=SPD_LIKE, torch=_svd_t),
    Spec("svd-square-default", _svd_square_default, [(3, 3), (2, 2, 2)], gen=FULL, torch=_svd_t),
    Spec(
        "svd-hermitian",
        lambda a: _svd(_sym(a), hermitian=True)[1],
        [(3, 3)],
        gen=FULL,
        torch=lambda a: torch.linalg.svdvals(_sym_t(a)),
    ),
    Spec("svd-values", _svdvals, MATRICES, gen=SPD_LIKE, torch=_svdvals_t),
    Spec("eigh", _eigh, [(3, 3), (2, 3, 3), (1, 1)], gen=SPD_LIKE, torch=_eigh_t),
    Spec("eigh-upper", lambda a: _eigh(a, "U"), [(3, 3)], gen=SPD_LIKE, torch=lambda a: _eigh_t(a, "U")),
    Spec(
        "eigvalsh",
        lambda a: (np.linalg.eigvalsh(_sym(a)), np.linalg.eigvalsh(_sym(a), UPLO="U")),
        [(3, 3), (2, 3, 3)],
        gen=SPD_LIKE,
        torch=lambda a: (torch.linalg.eigvalsh(_sym_t(a)),) * 2,
    ),
    Spec("eig-real", _eig, [(3, 3), (2, 3, 3), (1, 1)], gen=_gen(_real_spectrum)),  # torch's eig is complex
    Spec("qr", _qr_modes, MATRICES, gen=FULL, torch=_qr_modes_t),
    Spec(
        "lstsq",
        lambda a, b: np.linalg.lstsq(a, b),
        [((4, 2), (4,)), ((4, 2), (4, 3)), ((3, 3), (3,)), ((2, 3), (2, 2))],
        gen=_gen(_full_rank, _uniform),
    ),
    Spec(
        "lstsq-constant-b",
        lambda a, b: np.linalg.lstsq(a, b.tolist(), rcond=None)[0],
        [((4, 2), (4,))],
        gen=_gen(_full_rank, _uniform),
        diff=(0,),
        torch=lambda a, b: torch.linalg.pinv(a) @ b,
    ),
]
