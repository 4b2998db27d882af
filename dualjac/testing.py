"""Check dualjac's derivatives against float64 central finite differences.

Public, like ``jax.test_util.check_grads``: use it to test a rule you add, or a
function of your own.

>>> import numpy as np
>>> from dualjac.testing import check_jacobian
>>> check_jacobian(lambda x, y: np.sin(x) * y, np.array([0.5, 1.0]), np.array(2.0))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .transforms import jacfwd
from .tree import flatten

# Tolerances for comparing against central differences, by the dtype dualjac computed in.
TOLERANCES = {np.dtype(np.float64): (1e-6, 1e-7), np.dtype(np.float32): (2e-3, 2e-4)}


def numerical_jacobian(
    f: Callable[..., Any], args: tuple, argnum: int, eps: float = 1e-6
) -> list[np.ndarray]:
    """Central differences ``(f(x + h e_j) - f(x - h e_j)) / 2h`` in float64, per output leaf."""
    args64 = [np.array(a, dtype=np.float64) if _is_float(a) else a for a in args]
    x = args64[argnum]
    cols: list[list[np.ndarray]] = []
    for j in range(x.size):
        h = eps * max(1.0, abs(x.flat[j]))
        outs = []
        for sign in (1, -1):
            xj = x.copy()
            xj.flat[j] += sign * h
            call = list(args64)
            call[argnum] = xj
            outs.append([np.asarray(o, dtype=np.float64) for o in flatten(f(*call))[0]])
        cols.append([(p - m) / (2 * h) for p, m in zip(*outs)])
    base = [np.asarray(o) for o in flatten(f(*args64))[0]]
    return [
        np.stack([c[i] for c in cols], axis=-1).reshape(o.shape + x.shape)
        if cols
        else np.zeros(o.shape + x.shape)
        for i, o in enumerate(base)
    ]


def _is_float(a: Any) -> bool:
    return isinstance(a, float) or (isinstance(a, np.ndarray | np.generic) and a.dtype.kind == "f")


def check_jacobian(
    f: Callable[..., Any],
    *args: Any,
    argnums: tuple[int, ...] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
) -> None:
    """Assert that ``jacfwd(f)`` matches central differences for each argument in ``argnums``
    (default: every floating argument), and that Jacobians keep the output's dtype.
    Raises ``AssertionError`` naming the argument, output and worst element."""
    if argnums is None:
        argnums = tuple(i for i, a in enumerate(args) if _is_float(a))
    for i in argnums:
        J = flatten(jacfwd(f, argnums=i)(*args))[0]
        ref = numerical_jacobian(f, args, i)
        outs = flatten(f(*args))[0]
        for k, (got, want, out) in enumerate(zip(J, ref, outs)):
            got = np.asarray(got)
            dt = np.result_type(np.asarray(out).dtype, np.float32)
            r, a = TOLERANCES.get(dt, TOLERANCES[np.dtype(np.float64)])
            r, a = rtol if rtol is not None else r, atol if atol is not None else a
            where = f"d(output {k}) / d(argument {i})"
            assert got.shape == want.shape, f"{where}: shape {got.shape}, expected {want.shape}"
            if np.asarray(out).dtype.kind == "f":
                assert got.dtype == np.asarray(out).dtype, f"{where}: dtype {got.dtype}, expected {out.dtype}"
            err = np.abs(got.astype(np.float64) - want)
            bad = ~(err <= a + r * np.abs(want))
            if bad.any():
                idx = np.unravel_index(np.argmax(np.where(bad, err, -1)), err.shape)
                raise AssertionError(
                    f"{where}: {bad.sum()} of {bad.size} entries differ from central differences; "
                    f"worst at {idx}: dualjac {got[idx]!r}, numerical {want[idx]!r} (rtol={r}, atol={a})"
                )
