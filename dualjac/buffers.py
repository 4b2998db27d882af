"""Workspaces: memory that big ``(K, *S)`` lane arrays reuse across calls, held by the caller.

Why: the lane arrays of a transform are large (tens of MiB). With glibc's default settings the
C allocator maps each one afresh and the kernel faults in every page on first touch, which on a
small VM can cost as much as the arithmetic. Inside ``with dj.Workspace():`` the big products
(elementwise ``factor * dx``, lane GEMMs) are written with ``out=`` into arrays the workspace
keeps instead. Outside one, dualjac keeps nothing between calls (``batch_jacobian`` holds a
workspace of its own for the length of one call, so its later ops and row blocks reuse the memory of
earlier ones): a process that sets glibc to keep freed memory (``M_MMAP_MAX=0``,
``M_TRIM_THRESHOLD=-1``) gets reuse across calls from the allocator itself.

When is a kept array free? Every view of a NumPy array holds a reference to the array that owns
the memory, so the owner's reference count is exactly its baseline (the workspace's own
references, measured once below) when no tangent, Jacobian or other view of it is alive anywhere.
An array still referenced by anything is never handed out again, so a returned Jacobian is never
overwritten. (Memory reached only through a raw address, e.g. ``x.ctypes.data`` kept by C code,
holds no reference: copy such a result.) NumPy only: CuPy has its own memory pool.
"""

from __future__ import annotations

import contextvars
import math
import sys
import threading
from typing import Any

import numpy as np

MIN_BYTES = 1 << 20  # smaller arrays come from the allocator's own free lists: nothing to gain
# free-threaded CPython counts references per thread, so the count below is not reliable there
_ENABLED = getattr(sys, "_is_gil_enabled", lambda: True)()
_CURRENT: contextvars.ContextVar[Workspace | None] = contextvars.ContextVar("dualjac_workspace", default=None)


def _count(owners: list[np.ndarray]) -> int:
    for a in owners:
        return sys.getrefcount(a)
    return 0


def _free(owners: list[np.ndarray]) -> np.ndarray | None:
    for a in owners:
        if sys.getrefcount(a) == _FREE:  # same access pattern as _count: only the list holds it
            return a
    return None


_FREE = _count([np.empty(1)])  # the count _free sees for an array that nothing else references


class Workspace:
    """Memory reused by the big lane arrays of every transform run inside ``with workspace:``.

    Hold one across repeated calls (a training loop, a benchmark) when freshly mapped memory is
    slow; ``max_bytes`` caps what it keeps. It may be entered again and from several threads.

    >>> import numpy as np, dualjac as dj
    >>> ws = dj.Workspace()
    >>> W = np.ones((16, 256))
    >>> with ws:
    ...     J = dj.batch_jacobian(lambda x: np.tanh(x @ W), np.zeros((1024, 16)))
    >>> J.shape, ws.held > 0
    ((1024, 256, 16), True)
    >>> ws.clear()
    """

    def __init__(self, max_bytes: int = 512 << 20) -> None:
        self.max_bytes = max_bytes
        self._arrays: dict[tuple[int, Any], list[np.ndarray]] = {}  # (nbytes, dtype) -> 1-D owners
        self._lock = threading.Lock()  # finding a free array and viewing it is one step for all threads
        self._tokens = threading.local()

    def __enter__(self) -> Workspace:
        self._tokens.__dict__.setdefault("stack", []).append(_CURRENT.set(self))
        return self

    def __exit__(self, *exc: Any) -> None:
        _CURRENT.reset(self._tokens.stack.pop())

    @property
    def held(self) -> int:
        """Bytes the workspace keeps."""
        return sum(n * len(owners) for (n, _), owners in self._arrays.items())

    def clear(self) -> None:
        """Forget every kept array (memory still in use by live results stays alive with them)."""
        with self._lock:
            self._arrays.clear()

    def take(self, shape: tuple, dtype: Any) -> np.ndarray:
        """A free ``shape`` array of ``dtype``: a kept one nothing references, or a new one kept
        while ``max_bytes`` allows."""
        nbytes = dtype.itemsize * math.prod(shape)
        with self._lock:
            owners = self._arrays.setdefault((nbytes, dtype), [])
            a = _free(owners)
            if a is None:
                a = np.empty(nbytes // dtype.itemsize, dtype=dtype)
                if nbytes + self.held <= self.max_bytes:
                    owners.append(a)
            return a.reshape(shape)  # the view holds a reference before another thread can look


def current() -> Workspace | None:
    """The workspace of the innermost ``with workspace:`` in this context, or None."""
    return _CURRENT.get()


def out_for(shape: tuple, *operands: Any, dtype: Any = None) -> np.ndarray | None:
    """An output array from the current workspace for an op on ``operands`` giving ``shape``, or
    None: no workspace, a small result, CuPy arrays, Duals (nested transforms)."""
    if math.prod(shape) * 8 < MIN_BYTES:  # first, as cheaply as possible: small ops are the latency
        return None
    ws = _CURRENT.get()
    if ws is None or not _ENABLED or not all(plain(a) for a in operands):
        return None
    return ws.take(shape, np.result_type(*operands) if dtype is None else np.dtype(dtype))


def plain(x: Any) -> bool:
    """A NumPy array or Python float: something ``out=`` arithmetic can take (not a Dual)."""
    return type(x) is np.ndarray or type(x) is float
