"""Elementwise work on big NumPy arrays, split over threads.

A forward pass alternates lane GEMMs, which BLAS spreads over every core, with elementwise work
(an op's values, its derivative factors, their products with the lanes), which NumPy runs on one
core. On big arrays the elementwise part is then where the pass waits. It splits exactly: each
element of a pointwise op depends on the same element of its operands alone, so computing slices
of the result in separate threads (NumPy releases the GIL inside a ufunc's loop) gives the same
bits as one call. Only NumPy arrays of at least ``MIN_ELEMENTS`` elements are split, along one
axis; everything else runs as one call. ``config.threads`` sets how many threads (1: never split).
"""

from __future__ import annotations

import contextvars
import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .settings import config

MIN_ELEMENTS = 1 << 16  # below this a thread hand-off costs about what it saves
_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_LOCK = threading.Lock()


def _pool(n: int) -> ThreadPoolExecutor:
    global _POOL, _POOL_SIZE
    with _LOCK:
        if _POOL is None or _POOL_SIZE != n:
            if _POOL is not None:
                _POOL.shutdown(wait=False)
            _POOL, _POOL_SIZE = ThreadPoolExecutor(n, thread_name_prefix="dualjac"), n
        return _POOL


def _forget_pool() -> None:  # a forked child has the pool object but none of its threads
    global _POOL
    _POOL = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def parts(shape: tuple) -> tuple[int, list[slice]] | None:
    """The axis of ``shape`` to split and its slices, one per thread; None where the result is too
    small to split or threads are off."""
    n = config.threads
    if n < 2 or len(shape) == 0 or math.prod(shape) < MIN_ELEMENTS:
        return None
    axis = 0 if shape[0] >= n or len(shape) == 1 else 1
    if shape[axis] < 2:
        return None
    n = min(n, shape[axis])
    edges = [shape[axis] * i // n for i in range(n + 1)]
    return axis, [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def _cut(a: Any, axis: int, s: slice, ndim: int) -> Any:
    """Operand ``a``'s part for the slice ``s`` of the result's ``axis`` under NumPy broadcasting
    (operands align at the right; an axis of length 1, or a missing one, is shared by every slice)."""
    if type(a) is not np.ndarray:
        return a
    own = axis - (ndim - a.ndim)
    if own < 0 or a.shape[own] == 1:
        return a
    return a[(slice(None),) * own + (s,)]


def split(fn: Callable[..., Any], shape: tuple, *operands: Any, out: Any = None) -> Any:
    """``fn(*operands)`` (with ``out=out`` if given) for a pointwise ``fn`` whose result has
    ``shape``, computed in slices on ``config.threads`` threads: into ``out``, or concatenated."""
    plan = parts(shape)
    if plan is None:
        return fn(*operands) if out is None else fn(*operands, out=out)
    axis, slices = plan
    ndim = len(shape)
    ctx = contextvars.copy_context()  # NumPy's errstate (and dualjac's workspace) for every thread

    def piece(s: slice) -> Any:
        args = [_cut(a, axis, s, ndim) for a in operands]
        if out is None:
            return fn(*args)
        return fn(*args, out=out[(slice(None),) * axis + (s,)])

    pool = _pool(len(slices) - 1)
    later = [pool.submit(ctx.copy().run, piece, s) for s in slices[1:]]
    try:
        first = piece(slices[0])
    finally:  # every slice is done (or failed) before the caller sees ``out`` or an error
        for f in later:
            f.exception()
    rest = [f.result() for f in later]  # a thread's error is raised here
    if out is not None:
        return out
    return np.concatenate([first, *rest], axis=axis)
