"""Linear algebra: products (matmul, dot, einsum, ...), and np.linalg's solve, inv, det, ..."""

from __future__ import annotations

from . import defrule, lanes_to_rank


def _matmul_dx(xp, ans, dx, x, y):
    # d(x @ y) = dx @ y + x @ dy, with the lanes riding along as a leading batch axis.
    if x.ndim == 1:  # (K, n) @ (..., n, m) -> (..., K, m) -> (K, ..., m)
        return xp.moveaxis(dx @ y, -2, 0) if y.ndim > 1 else dx @ y
    if y.ndim == 2:  # one GEMM for all K lanes: (K*..., n) @ (n, m)
        return (dx.reshape(-1, dx.shape[-1]) @ y).reshape(dx.shape[:-1] + y.shape[-1:])
    return lanes_to_rank(dx, max(ans.ndim, x.ndim)) @ y


def _matmul_dy(xp, ans, dy, x, y):
    if y.ndim == 1:  # (..., m, n) @ (n, K) -> (..., m, K) -> (K, ..., m); or (n,) @ (n, K)
        return xp.moveaxis(x @ xp.moveaxis(dy, 0, -1), -1, 0)
    return x @ lanes_to_rank(dy, ans.ndim)


defrule("matmul", jvp=(_matmul_dx, _matmul_dy))
