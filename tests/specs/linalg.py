"""Specs for rules/linalg.py: matmul, dot, vdot, inner, outer, tensordot, einsum, trace, diagonal,
tril, triu and np.linalg's solve, inv, det, slogdet, pinv, cholesky (each NumPy entry point of
numpy_api.FUNCTIONS, and the Dual methods ``x.dot``, ``x.trace``, ``x.diagonal``).

Inputs of np.linalg functions come from generators that keep them well conditioned (``R + n I``,
``B B^T + n I`` for cholesky). cholesky and ``pinv(hermitian=True)`` read one triangle of their
input, while their rules take the perturbation to be symmetric (as torch does): their
finite-difference specs symmetrize the input first, and a spec on a symmetric input compares
against torch only.
"""

from __future__ import annotations

import numpy as np
import torch

from rule_specs import Spec, is_shape, on


# --- generators ----------------------------------------------------------------------------
def _square(rng, s):
    """Well conditioned: ``R + n I`` with R uniform in [-1, 1]."""
    return rng.uniform(-1, 1, size=s) + s[-1] * np.eye(s[-1])


def _spd(rng, s):
    b = rng.uniform(-1, 1, size=s)
    return b @ np.swapaxes(b, -1, -2) + s[-1] * np.eye(s[-1])


def _full_rank(rng, s):
    """A rectangular (or square) matrix with singular values near max(m, n)."""
    m, n = s[-2:]
    return rng.uniform(-1, 1, size=s) + max(m, n) * np.eye(m, n)


def _negative_det(rng, s):
    a = _square(rng, s)
    a[..., 0, :] *= -1  # det < 0: slogdet's sign is -1
    return a


def _singular(rank):
    """``U diag(s) V^T`` with ``n - rank`` zero singular values: det is 0 (the adjugate is not,
    when rank = n - 1)."""

    def make(rng, s):
        n = s[-1]
        u, _ = np.linalg.qr(rng.standard_normal(s))
        v, _ = np.linalg.qr(rng.standard_normal(s))
        sv = np.where(np.arange(n) < rank, rng.uniform(1, 2, size=s[:-1]), 0.0)
        return (u * sv[..., None, :]) @ np.swapaxes(v, -1, -2)

    return make


def _uniform(rng, s):
    return rng.uniform(-2, 2, size=s)


def _gen(*makers):
    """gen for a spec whose arguments are drawn by ``makers`` (one per argument, shapes in order)."""

    def gen(rng, shapes, dtype):
        shapes = (shapes,) if is_shape(shapes) else shapes
        return tuple(np.asarray(m(rng, s)).astype(dtype) for m, s in zip(makers, shapes))

    return gen


def _sym(a):
    return (a + np.swapaxes(a, -1, -2)) / 2


def _sym_t(a):
    return (a + a.mT) / 2


# --- torch twins of NumPy semantics ------------------------------------------------------------
def _dot_t(a, b):
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    return torch.tensordot(a, b, dims=([a.ndim - 1], [max(b.ndim - 2, 0)]))


def _inner_t(a, b):
    return a * b if a.ndim == 0 or b.ndim == 0 else torch.inner(a, b)


def _solve_t(a, b):
    return torch.linalg.solve(a, b[..., None])[..., 0] if b.ndim == 1 else torch.linalg.solve(a, b)


def _trace_t(x, offset=0, axis1=0, axis2=1):
    return torch.diagonal(x, offset, axis1, axis2).sum(-1)


def _square_1d_t(x):
    """np.tril/triu broadcast a 1-D input to the rows of a square matrix."""
    return x.expand(x.shape[0], x.shape[0]) if x.ndim == 1 else x


# --- functions calling several forms ---------------------------------------------------------
def _matmul_forms(x, y):
    return np.matmul(x, y), x @ y, np.linalg.matmul(x, y)


def _matmul_forms_t(x, y):
    return torch.matmul(x, y), x @ y, torch.linalg.matmul(x, y)


def _tensordots(a, b):
    return (
        np.tensordot(a, b, axes=([0, 2], [1, 0])),
        np.tensordot(a, b, axes=(-1, 0)),
        np.tensordot(a, b, axes=[[2], [-3]]),
        np.tensordot(a, b, axes=0),
    )


def _tensordots_t(a, b):
    return (
        torch.tensordot(a, b, dims=([0, 2], [1, 0])),
        torch.tensordot(a, b, dims=([2], [0])),
        torch.tensordot(a, b, dims=([2], [0])),
        torch.tensordot(a, b, dims=0),
    )


def _traces(x):
    return np.trace(x), np.trace(x, 1), np.trace(x, -1, 1, 2), np.trace(x, axis1=-1, axis2=0), x.trace(offset=1)


def _traces_t(x):
    return _trace_t(x), _trace_t(x, 1), _trace_t(x, -1, 1, 2), _trace_t(x, 0, -1, 0), _trace_t(x, 1)


def _diagonals(x):
    return np.diagonal(x), np.diagonal(x, 1), np.diagonal(x, -1, 1, 2), np.diagonal(x, 0, -1, 0), x.diagonal(2, 2, 1)


def _diagonals_t(x):
    return (
        torch.diagonal(x),
        torch.diagonal(x, 1),
        torch.diagonal(x, -1, 1, 2),
        torch.diagonal(x, 0, -1, 0),
        torch.diagonal(x, 2, 2, 1),
    )


def _triangles(x):
    return np.tril(x), np.tril(x, 1), np.tril(x, k=-1), np.triu(x), np.triu(x, 1), np.triu(x, k=-2)


def _triangles_t(x):
    x = _square_1d_t(x)
    return torch.tril(x), torch.tril(x, 1), torch.tril(x, -1), torch.triu(x), torch.triu(x, 1), torch.triu(x, -2)


def _slogdet(a):
    sign, logabsdet = np.linalg.slogdet(a)
    return sign, logabsdet


def _slogdet_t(a):
    sign, logabsdet = torch.linalg.slogdet(a)
    return sign + 0 * logabsdet, logabsdet  # sign's tangent as a real zero tensor, not a ZeroTensor


def _einsum_spec(name, subscripts, shapes):
    return Spec(
        name, lambda *ops: np.einsum(subscripts, *ops), shapes, torch=lambda *ops: torch.einsum(subscripts, *ops)
    )


SQ, SPD, FULL = _gen(_square), _gen(_spd), _gen(_full_rank)

SPECS = [
    # products
    Spec(
        "matmul",
        _matmul_forms,
        [
            ((3,), (3,)),
            ((2, 3), (3,)),
            ((3,), (3, 2)),
            ((2, 3), (3, 4)),
            ((2, 2, 3), (3, 4)),
            ((2, 3), (2, 3, 4)),
            ((2, 1, 2, 3), (3, 3, 2)),
            ((3,), (2, 3, 4)),
            ((2, 3, 4), (4,)),
        ],
        torch=_matmul_forms_t,
    ),
    Spec(
        "matmul-constant",
        lambda x, y: (x @ on(x, y), on(x, y).T @ x.mT),
        [((2, 3), (3, 2)), ((2, 2, 3), (3, 2))],
        diff=(0,),
        torch=lambda x, y: (x @ y, y.T @ x.mT),
    ),
    Spec(
        "dot",
        np.dot,
        [
            ((), ()),
            ((), (3,)),
            ((2, 3), ()),
            ((3,), (3,)),
            ((2, 3), (3,)),
            ((3,), (3, 2)),
            ((2, 3), (3, 4)),
            ((2, 2, 3), (3,)),
            ((3,), (2, 3, 4)),
            ((2, 2, 3), (2, 3, 2)),
        ],
        torch=_dot_t,
    ),
    Spec(  # ndarray.dot(Dual) does not dispatch: only the Dual's method is ours
        "dot-method",
        lambda x, y: x.dot(on(x, y)),
        [((3,), (3,)), ((2, 3), (3, 2)), ((2, 2, 3), (2, 3, 2))],
        diff=(0,),
        torch=_dot_t,
    ),
    Spec(
        "dot-constant",
        lambda x, y: (np.dot(x, on(x, y)), np.dot(on(x, y), x.T)),
        [((2, 3), (3, 3))],
        diff=(0,),
        torch=lambda x, y: (x @ y, y @ x.T),
    ),
    Spec(
        "vdot",
        np.vdot,
        [((3,), (3,)), ((2, 3), (3, 2)), ((), ())],
        torch=lambda a, b: torch.dot(a.flatten(), b.flatten()),
    ),
    Spec(
        "inner",
        np.inner,
        [((), ()), ((), (2, 3)), ((3,), ()), ((3,), (3,)), ((2, 3), (3,)), ((2, 3), (4, 3)), ((2, 2, 3), (2, 3))],
        torch=_inner_t,
    ),
    Spec(
        "outer",
        np.outer,
        [((), ()), ((), (3,)), ((3,), (2,)), ((2, 3), (2, 2))],
        torch=lambda a, b: torch.outer(a.flatten(), b.flatten()),
    ),
    Spec("tensordot", np.tensordot, [((3, 2, 4), (2, 4, 3)), ((2, 3), (2, 3))], torch=torch.tensordot),
    Spec(
        "tensordot-axes-int",
        lambda a, b: (np.tensordot(a, b, axes=1), np.tensordot(a, b, axes=0)),
        [((3, 2), (2, 4)), ((3,), (3,)), ((2, 3, 4), (4,))],
        torch=lambda a, b: (torch.tensordot(a, b, 1), torch.tensordot(a, b, 0)),
    ),
    Spec(
        "tensordot-0d",
        lambda a, b: np.tensordot(a, b, axes=0),
        [((), (3,)), ((2,), ()), ((), ())],
        torch=lambda a, b: torch.tensordot(a, b, 0),
    ),
    Spec("tensordot-axes-pairs", _tensordots, [((3, 2, 4), (4, 3, 5))], torch=_tensordots_t),
    Spec(
        "tensordot-constant",
        lambda a, b: np.tensordot(on(b, a), b, axes=([1], [0])),
        [((2, 3), (3, 4))],
        diff=(1,),
        torch=lambda a, b: torch.tensordot(a, b, dims=([1], [0])),
    ),
    # einsum
    _einsum_spec("einsum-matmul", "ij,jk->ik", [((2, 3), (3, 4))]),
    _einsum_spec("einsum-implicit", "ij,jk", [((2, 3), (3, 4))]),
    _einsum_spec("einsum-implicit-ascii-order", "Ba,aA", [((2, 3), (3, 4))]),
    _einsum_spec("einsum-implicit-transposes", "ji", [(2, 3)]),
    _einsum_spec("einsum-trace", "ii->", [(3, 3)]),
    _einsum_spec("einsum-trace-implicit", "ii", [(3, 3)]),
    _einsum_spec("einsum-diagonal", "ii->i", [(3, 3)]),
    _einsum_spec("einsum-transpose", "ij->ji", [(2, 3)]),
    _einsum_spec("einsum-batched", "...ij,...jk->...ik", [((2, 3), (3, 4)), ((2, 1, 2, 3), (3, 3, 4))]),
    _einsum_spec("einsum-batched-implicit", "...ij,...jk", [((2, 1, 2, 3), (3, 3, 4))]),
    _einsum_spec("einsum-ellipsis-moves", "i...->...i", [(2, 3, 4), (2,)]),
    _einsum_spec("einsum-vector-dot", "i,i", [((3,), (3,))]),
    _einsum_spec("einsum-vector-dot-explicit", "i,i->", [((3,), (3,))]),
    _einsum_spec("einsum-outer", "i,j->ij", [((3,), (2,))]),
    _einsum_spec("einsum-rowwise", "ij,ij->i", [((2, 3), (2, 3))]),
    _einsum_spec("einsum-scalar", ",ij->ij", [((), (2, 3))]),
    _einsum_spec("einsum-three", "ij,jk,kl->il", [((2, 3), (3, 4), (4, 2))]),
    _einsum_spec("einsum-three-implicit", "ij,jk,kl", [((2, 3), (3, 4), (4, 2))]),
    _einsum_spec("einsum-three-shared", "bi,bij,bj->b", [((2, 3), (2, 3, 4), (2, 4))]),
    Spec(
        "einsum-spaces-and-constant",
        lambda x, y: np.einsum(" ij , jk -> ik ", x, on(x, y)),
        [((2, 3), (3, 4))],
        diff=(0,),
        torch=lambda x, y: torch.einsum("ij,jk->ik", x, y),
    ),
    # trace, diagonal, tril, triu
    Spec("trace", np.trace, [(3, 3), (2, 3), (2, 3, 4)], torch=_trace_t),
    Spec("trace-arguments", _traces, [(3, 4, 3)], torch=_traces_t),
    Spec("trace-method", lambda x: (x.trace(), x.trace(-1)), [(3, 3)], torch=lambda x: (_trace_t(x), _trace_t(x, -1))),
    Spec("diagonal", np.diagonal, [(3, 3), (2, 3), (2, 3, 4)], torch=torch.diagonal),
    Spec("diagonal-arguments", _diagonals, [(3, 4, 3)], torch=_diagonals_t),
    Spec(
        "diagonal-method",
        lambda x: (x.diagonal(), x.diagonal(1)),
        [(3, 3)],
        torch=lambda x: (torch.diagonal(x), torch.diagonal(x, 1)),
    ),
    Spec("tril-triu", _triangles, [(3, 4), (4, 3), (2, 3, 3), (4,)], torch=_triangles_t),
    # np.linalg
    Spec(
        "solve",
        np.linalg.solve,
        [
            ((3, 3), (3,)),
            ((3, 3), (3, 2)),
            ((1, 1), (1,)),
            ((2, 3, 3), (3,)),  # NumPy 2: b is a vector only when 1-D
            ((2, 3, 3), (2, 3, 2)),
            ((3, 3), (2, 3, 2)),
            ((2, 1, 3, 3), (4, 3, 1)),
        ],
        gen=_gen(_square, _uniform),
        torch=_solve_t,
    ),
    Spec(
        "solve-constant-a",
        lambda a, b: np.linalg.solve(on(b, a), b),
        [((3, 3), (3,)), ((2, 3, 3), (3, 2))],
        gen=_gen(_square, _uniform),
        diff=(1,),
        torch=_solve_t,
    ),
    Spec(
        "solve-constant-b",
        lambda a, b: np.linalg.solve(a, on(a, b)),
        [((3, 3), (3,)), ((3, 3), (2, 3, 2))],
        gen=_gen(_square, _uniform),
        diff=(0,),
        torch=_solve_t,
    ),
    Spec("inv", np.linalg.inv, [(3, 3), (1, 1), (2, 3, 3)], gen=SQ, torch=torch.linalg.inv),
    Spec("det", np.linalg.det, [(3, 3), (1, 1), (2, 3, 3)], gen=SQ, torch=torch.linalg.det),
    Spec("det-negative", np.linalg.det, [(3, 3), (2, 3, 3)], gen=_gen(_negative_det), torch=torch.linalg.det),
    Spec(
        "det-singular",  # d det = tr(adj(A) dA): adj(A) != 0 at rank n-1, adj(A) = 0 at rank n-2
        lambda a, b: (np.linalg.det(a), np.linalg.det(b)),
        [((3, 3), (4, 4)), ((2, 3, 3), (3, 3))],
        gen=_gen(_singular(2), _singular(2)),  # 3x3: rank n-1; 4x4: rank n-2
    ),  # no torch twin: torch's det JVP is not reliable at singular matrices (it returns 0 at some)
    Spec("slogdet", _slogdet, [(3, 3), (1, 1), (2, 3, 3)], gen=SQ, torch=_slogdet_t),
    Spec("slogdet-negative", _slogdet, [(3, 3), (2, 3, 3)], gen=_gen(_negative_det), torch=_slogdet_t),
    Spec(
        "cholesky",
        lambda a: (np.linalg.cholesky(_sym(a)), np.linalg.cholesky(_sym(a), upper=True)),
        [(3, 3), (1, 1), (2, 3, 3)],
        gen=SPD,
        torch=lambda a: (torch.linalg.cholesky(_sym_t(a)), torch.linalg.cholesky(_sym_t(a), upper=True)),
    ),
    Spec(  # a symmetric input, any (non-symmetric) tangent: torch's convention, no finite differences
        "cholesky-symmetric-input",
        lambda a: (np.linalg.cholesky(a), np.linalg.cholesky(a, upper=True)),
        [(3, 3), (2, 3, 3)],
        gen=SPD,
        fd=False,
        torch=lambda a: (torch.linalg.cholesky(a), torch.linalg.cholesky(a, upper=True)),
    ),
    Spec("pinv", np.linalg.pinv, [(3, 3), (4, 2), (2, 4), (2, 3, 2), (1, 3)], gen=FULL, torch=torch.linalg.pinv),
    Spec(
        "pinv-hermitian",
        lambda a: np.linalg.pinv(_sym(a), hermitian=True),
        [(3, 3), (2, 3, 3)],
        gen=SQ,
        torch=lambda a: torch.linalg.pinv(_sym_t(a), hermitian=True),
    ),
]
