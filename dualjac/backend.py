"""The only module that knows NumPy from CuPy: which array namespace values belong to.

Rules never import numpy or cupy for math on values; ``rules.apply`` hands them
``xp = array_namespace(*primals)``. Three cases:

* plain NumPy arrays and scalars -> ``numpy``;
* CuPy arrays -> ``cupy`` (imported lazily, so NumPy-only installs never touch it);
* a lower-level ``Dual`` (nested transforms) -> ``numpy``: NumPy functions are the
  door through which a Dual reaches the rules table again, via ``__array_function__``.

``register_namespace`` lets tests plug in a stand-in namespace so the CuPy code
path (no implicit conversion to NumPy) is exercised on machines without a GPU.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

_BY_TYPE: dict[type, Any] = {}


def register_namespace(array_type: type, xp: Any) -> None:
    """Declare that arrays of ``array_type`` use the namespace ``xp`` (numpy-like API)."""
    _BY_TYPE[array_type] = xp


def namespace_of_type(t: type) -> Any:
    xp = _BY_TYPE.get(t)
    if xp is None:
        mod = t.__module__ or ""
        if mod.startswith("cupy"):
            xp = importlib.import_module("cupy")
        elif issubclass(t, (np.ndarray, np.generic)):
            xp = np
        else:
            return None
        _BY_TYPE[t] = xp
    return xp


_PLAIN = {np.ndarray, np.float64, np.float32, np.float16, np.bool_, float, int, bool, type(None)}


def array_namespace(*xs: Any) -> Any:
    """The namespace of the arrays among ``xs`` (Python scalars and None are skipped)."""
    found = np
    for x in xs:
        t = type(x)
        if t in _PLAIN:
            continue
        if getattr(t, "_dualjac_dispatches_through_numpy", False):
            return np  # a nested Dual: only numpy functions reach its rules
        xp = _BY_TYPE.get(t) or namespace_of_type(t)
        if xp is not None and xp is not np:
            found = xp
    return found


def is_array(x: Any) -> bool:
    """True for arrays of a known namespace (NumPy, CuPy, registered) — not Python scalars."""
    t = type(x)
    return (_BY_TYPE.get(t) or namespace_of_type(t)) is not None


def is_dask_array(x: Any) -> bool:
    """True for a ``dask.array.Array``, told by its type so that dask is imported only when one is passed."""
    t = type(x)
    return t.__name__ == "Array" and t.__module__.startswith("dask.array")
