"""Reusable lane buffers: big ``(K, *S)`` tangent arrays are written into memory kept from
earlier calls, instead of freshly mapped memory.

Why: the lane arrays of a transform are large (tens of MiB), so the C allocator maps them
afresh for every op of every call and the kernel faults in every page on first touch. On
small VMs that costs as much as the arithmetic (benchmark W1: 44-84 ms with fresh memory
against 32 ms with reused memory). ``empty`` hands out views of pooled arrays instead.

When is a pooled array free? Every view of a NumPy array holds a reference to the array
that owns the memory, so the owner's reference count is exactly its baseline (the pool's
own references, measured once below) when no tangent, Jacobian or other view of it is
alive anywhere. A buffer still referenced by anything is never handed out again. (Memory
reached only through a raw address, e.g. ``x.ctypes.data`` kept by C code, holds no
reference: copy such a result, or set ``buffer_bytes = 0``.)

NumPy only: CuPy has its own memory pool. ``dj.config.buffer_bytes`` caps what the pool
keeps (0 disables it and frees what it holds).
"""

from __future__ import annotations

import math
import sys
import threading
from typing import Any

import numpy as np

from .settings import config

MIN_BYTES = 1 << 20  # smaller arrays come from the allocator's own free lists: nothing to gain
_POOL: dict[tuple[int, Any], list[np.ndarray]] = {}  # (nbytes, dtype) -> owner arrays, 1-D
_LOCK = threading.Lock()  # finding a free array and taking a view of it is one step for all threads
# free-threaded CPython counts references per thread, so the count below is not reliable there
_ENABLED = getattr(sys, "_is_gil_enabled", lambda: True)()


def _free_count() -> int:
    """The reference count ``_free`` sees for a pooled array that nothing else references."""
    probe = [np.empty(1)]
    return _count(probe)


def _count(owners: list[np.ndarray]) -> int:
    for a in owners:
        return sys.getrefcount(a)
    return 0


def _free(owners: list[np.ndarray]) -> np.ndarray | None:
    for a in owners:
        if sys.getrefcount(a) == _FREE:  # same access pattern as _count: only the pool holds it
            return a
    return None


_FREE = _free_count()


def out_for(shape: tuple, *operands: Any, dtype: Any = None) -> np.ndarray | None:
    """A pooled output array for an op on ``operands`` giving ``shape``, or None where ``out=``
    is not worth it or not possible: small results, CuPy arrays, Duals (nested transforms)."""
    if math.prod(shape) * 8 < MIN_BYTES:  # first, as cheaply as possible: small ops are the latency
        return None
    if config.buffer_bytes <= 0:
        clear()
        return None
    if not _ENABLED or not all(plain(a) for a in operands):
        return None
    dtype = np.result_type(*operands) if dtype is None else np.dtype(dtype)
    nbytes = dtype.itemsize * math.prod(shape)
    with _LOCK:
        if held() > config.buffer_bytes:  # the budget was lowered: start again
            _POOL.clear()
        owners = _POOL.setdefault((nbytes, dtype), [])
        a = _free(owners)
        if a is None:
            a = np.empty(nbytes // dtype.itemsize, dtype=dtype)
            if nbytes + held() <= config.buffer_bytes:
                owners.append(a)
        return a.reshape(shape)  # the view holds a reference before another thread can look


def plain(x: Any) -> bool:
    """A NumPy array or Python float: something ``out=`` arithmetic can take (not a Dual)."""
    return type(x) is np.ndarray or type(x) is float


def held() -> int:
    """Bytes the pool keeps."""
    return sum(n * len(owners) for (n, _), owners in _POOL.items())


def clear() -> None:
    """Forget every pooled array (memory still in use by live tangents stays alive with them)."""
    with _LOCK:
        _POOL.clear()
