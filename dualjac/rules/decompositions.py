"""Matrix decompositions: np.linalg's svd, eigh, eigvalsh, eig (real spectrum), qr and lstsq.

Each rule factors the primal once and applies the formula to all K lanes with folded products
(``left_product``/``right_product`` of ``linalg.py``). Formulas (``C = M^T dA M'`` the perturbation in the
decomposition's own basis; ``F_ij = 1 / (l_j - l_i)`` off the diagonal, 0 on it):

* ``eigh`` (``A = Q diag(l) Q^T``, A symmetric; dA taken symmetric, as torch does, since NumPy
  reads one triangle): ``dl = diag(Q^T dA Q)``, ``dQ = Q (F o Q^T dA Q)``.
* ``svd`` (``A = U diag(s) V^T``, reduced, ``k = min(m, n)``), with ``P = U^T dA V``:
  ``ds = diag(P)``, ``dU = U (F o (P S + S P^T)) + (I - U U^T) dA V S^{-1}``,
  ``dV = V (F o (S P + P^T S)) + (I - V V^T) dA^T U S^{-1}``, here ``F_ij = 1 / (s_j^2 - s_i^2)``.
* ``eig`` (``A V = V diag(l)``, V's columns of unit norm, as NumPy returns them), with
  ``C = V^{-1} dA V``: ``dl = diag(C)``, ``dV = W - V diag(diag(V^T W))`` for ``W = V (F o C)``.
* ``qr`` (``A = Q R``, m >= n): with ``C = Q^T dA R^{-1}`` and ``O = tril(C, -1) - tril(C, -1)^T``
  (``Q^T dQ``, skew): ``dR = (C - O) R``, ``dQ = dA R^{-1} - Q (C - O)``. For m < n, A = [X | Y]
  with X square: X's rule, then ``dR_Y = Q^T (dY - dQ R_Y)``.
* ``lstsq``: ``x = A^+ b``, so ``dx = dA^+ b + A^+ db`` (``dA^+`` from pinv's rule); the residuals
  ``|b - A x|^2`` have ``d = 2 r^T (db - dA x)`` (``A^T r = 0``); ``s`` as in svd; rank is constant.

Where the eigen/singular values tie (to within rounding, ``8 n eps max|v|``: the computed vectors are
noise there), the vectors are not unique and have no derivative (F is infinite): dualjac raises
``UnsupportedOpError`` naming the tie, rather than returning inf, NaN or noise. So does svd's U or V
of a non-square matrix with a zero singular value. The values alone (``eigvalsh``,
``svd(compute_uv=False)``) are fine there. Every step is a NumPy call that dispatches again on a
lower-level Dual, so the rules differentiate twice (Hessians).
"""

from __future__ import annotations

from ..errors import UnsupportedOpError
from .linalg import left_product, mT, pinv_dx, right_product
from .table import defrule


def _noise(xp, vals, n):
    """The level below which computed eigen/singular values cannot be told apart: ``8 n eps max|v|``
    (LAPACK gets them to about eps times the largest), kept as ``(..., 1, 1)``."""
    return 8 * n * xp.finfo(vals.dtype).eps * xp.max(xp.abs(vals), axis=-1)[..., None, None]


def _gaps(xp, vals, what, square=False):
    """``F_ij = 1 / (v_j - v_i)`` off the diagonal (``v**2`` when ``square``), 0 on it. Raises where two
    values tie to within rounding: the vectors computed there are noise, and so would be the tangent."""
    n = vals.shape[-1]
    off = ~xp.eye(n, dtype=bool)
    if bool(xp.any((xp.abs(vals[..., None, :] - vals[..., :, None]) <= _noise(xp, vals, n)) & off)):
        raise UnsupportedOpError(
            f"the derivative of the vectors of {what} at repeated values",
            "the eigen/singular vectors of a repeated value are not unique, so they have no derivative; "
            "differentiate only the values (np.linalg.eigvalsh, np.linalg.svd(a, compute_uv=False)) or "
            "perturb the input",
        )
    v = vals * vals if square else vals
    d = v[..., None, :] - v[..., :, None]
    return xp.where(off, 1 / xp.where(off, d, 1), 0)


def _diag(xp, m):
    return xp.diagonal(m, axis1=-2, axis2=-1)


def _in_basis(xp, left, d, right):
    """``left^T d[k] right`` for every lane."""
    return right_product(xp, left_product(xp, mT(left), d), right)


# --- eigh, eigvalsh -----------------------------------------------------------------------------
def _eigh_joint(xp, ans, ts, a, UPLO="L"):
    w, q = ans
    c = _in_basis(xp, q, ts[0], q)
    return _diag(xp, c), left_product(xp, q, _gaps(xp, w, "numpy.linalg.eigh") * c)


def _eigvalsh_dx(xp, ans, da, a, UPLO="L"):
    _, q = xp.linalg.eigh(a, UPLO=UPLO)
    return _diag(xp, _in_basis(xp, q, da, q))


defrule("eigh", primal=lambda xp, a, UPLO="L": xp.linalg.eigh(a, UPLO=UPLO), joint=_eigh_joint)
defrule("eigvalsh", primal=lambda xp, a, UPLO="L": xp.linalg.eigvalsh(a, UPLO=UPLO), jvp=(_eigvalsh_dx,))


# --- svd ----------------------------------------------------------------------------------------
def _svd_primal(xp, a, full_matrices=True, compute_uv=True, hermitian=False):
    return xp.linalg.svd(a, full_matrices=full_matrices, compute_uv=compute_uv, hermitian=hermitian)


def _svd_joint(xp, ans, ts, a, full_matrices=True, compute_uv=True, hermitian=False):
    da = ts[0]
    m, n = a.shape[-2:]
    if not compute_uv:
        u, _, vh = xp.linalg.svd(a, full_matrices=False)
        return _diag(xp, _in_basis(xp, u, da, mT(vh)))
    if full_matrices and m != n:
        raise UnsupportedOpError(
            "the derivative of U and Vh of numpy.linalg.svd with full_matrices=True on a non-square matrix",
            "the extra columns are not unique, so they have no derivative; pass full_matrices=False",
        )
    u, s, vh = ans
    v = mT(vh)
    p = _in_basis(xp, u, da, v)
    ds = _diag(xp, p)
    f = _gaps(xp, s, "numpy.linalg.svd", square=True)
    S = s[..., None, :]  # P diag(s) scales P's columns, diag(s) P its rows
    ps, sp = p * S, mT(S) * p
    du = left_product(xp, u, f * (ps + mT(ps)))
    dv = left_product(xp, v, f * (sp + mT(sp)))
    if m != n:
        if bool(xp.any(s[..., None, None] <= _noise(xp, s, max(m, n)))):  # a zero singular value
            raise UnsupportedOpError(
                "the derivative of U and Vh of numpy.linalg.svd of a rank-deficient non-square matrix",
                "U or V is not unique there; differentiate only the singular values (compute_uv=False)",
            )
        if m > n:  # (I - U U^T) dA V S^{-1}
            r = right_product(xp, da, v / S)
            du = du + r - left_product(xp, u, left_product(xp, mT(u), r))
        else:  # (I - V V^T) dA^T U S^{-1}
            r = right_product(xp, mT(da), u / S)
            dv = dv + r - left_product(xp, v, left_product(xp, vh, r))
    return du, ds, mT(dv)


defrule("svd", primal=_svd_primal, joint=_svd_joint)


# --- eig (real spectrum) ------------------------------------------------------------------------
def _eig_joint(xp, ans, ts, a):
    w, v = ans
    if w.dtype.kind == "c":
        raise UnsupportedOpError(
            "numpy.linalg.eig of a matrix with complex eigenvalues",
            "dualjac differentiates real results only; eig is supported where the spectrum is real "
            "(for a symmetric matrix use np.linalg.eigh)",
        )
    c = right_product(xp, left_product(xp, xp.linalg.inv(v), ts[0]), v)  # V^{-1} dA V
    wm = left_product(xp, v, _gaps(xp, w, "numpy.linalg.eig") * c)
    # keep the columns of unit norm: remove W's component along each v_i
    return _diag(xp, c), wm - v * xp.sum(v * wm, axis=-2, keepdims=True)


defrule("eig", primal=lambda xp, a: xp.linalg.eig(a), joint=_eig_joint)


# --- qr ----------------------------------------------------------------------------------------
def _qr_square(xp, q, r, dx):
    """(dQ, dR) of ``X = Q R`` for square or tall X (m >= n), reduced factors."""
    rinv = xp.linalg.inv(r)
    dar = right_product(xp, dx, rinv)  # dA R^{-1}
    c = left_product(xp, mT(q), dar)
    low = xp.tril(c, -1)
    up = c - low + mT(low)  # C - O, with O = tril(C, -1) - tril(C, -1)^T
    return dar - left_product(xp, q, up), right_product(xp, up, r)


def _qr_joint(xp, ans, ts, a, mode="reduced"):
    da = ts[0]
    m, n = a.shape[-2:]
    if mode not in ("reduced", "r", "complete") or (mode == "complete" and m > n):
        raise UnsupportedOpError(
            f"the derivative of numpy.linalg.qr with mode={mode!r}"
            + (" on a tall matrix" if mode == "complete" else ""),
            "the extra columns of the complete Q are not unique; use mode='reduced' (the default)",
        )
    q, r = ans if mode != "r" else xp.linalg.qr(a)
    if m >= n:
        dq, dr = _qr_square(xp, q, r, da)
    else:  # A = Q [R_X | R_Y]: X's rule, then R_Y = Q^T Y
        dq, drx = _qr_square(xp, q, r[..., :m], da[..., :m])
        dry = left_product(xp, mT(q), da[..., m:] - right_product(xp, dq, r[..., m:]))
        dr = xp.concatenate([drx, dry], axis=-1)
    return dr if mode == "r" else (dq, dr)


defrule("qr", primal=lambda xp, a, mode="reduced": xp.linalg.qr(a, mode=mode), joint=_qr_joint)


# --- lstsq -------------------------------------------------------------------------------------
def _lstsq_joint(xp, ans, ts, a, b, rcond=None):
    da, db = ts
    x, res, rank, s = ans
    vec = b.ndim == 1
    xm, bm = (x[:, None], b[:, None]) if vec else (x, b)
    p = xp.linalg.pinv(a)
    dx = dres = ds = None
    if da is not None:
        dx = right_product(xp, pinv_dx(xp, p, da, a), bm)
        r = bm - a @ xm  # d |r|^2 = 2 r^T (db - dA x): here the dA part
        dres = -2 * xp.sum(r * right_product(xp, da, xm), axis=-2) if res.size else None
        u, _, vh = xp.linalg.svd(a, full_matrices=False)
        ds = _diag(xp, _in_basis(xp, u, da, mT(vh)))
    if db is not None:
        dbm = db[..., None] if vec else db
        part = left_product(xp, p, dbm)
        dx = part if dx is None else dx + part
        if res.size:
            r = bm - a @ xm
            part = 2 * xp.sum(r * dbm, axis=-2)
            dres = part if dres is None else dres + part
    if dx is not None and vec:
        dx = dx[..., 0]
    if res.size == 0:
        K = (da if da is not None else db).shape[0]
        dres = xp.zeros((K,) + res.shape, dtype=res.dtype)
    elif dres is not None and vec:
        dres = dres.reshape((dres.shape[0],) + res.shape)
    return dx, dres, None, ds


defrule(
    "lstsq",
    primal=lambda xp, a, b, rcond=None: xp.linalg.lstsq(a, b, rcond=rcond),
    joint=_lstsq_joint,
)
