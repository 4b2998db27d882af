"""Static graph values: shapes, indices and masks a lowered graph computes from values, never tangents.

A node of ``dualjac.graph.Graph`` whose op is a plain function (not a rule name) computes one of
these when the graph runs (``Graph._static``). They live here, apart from ``dualjac.torch``, so a
graph lowered from torch unpickles and runs where torch is not installed (Dask workers).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def namespace(backend: str) -> Any:
    """NumPy, or CuPy for ``backend="cupy"`` (imported only then)."""
    if backend == "cupy":
        import cupy

        return cupy
    return np


def _of(x: Any) -> Any:
    return np if isinstance(x, (np.ndarray, np.generic)) else namespace("cupy")


def check_shape(x: Any, expected: tuple, name: str, ranges: tuple = ()) -> None:
    """A graph input's shape against the exported one (None: any size, the dynamic batch axis); ``ranges``:
    per axis None or (lo, hi), the sizes export's guards allow on a dynamic axis (hi None: no upper bound)."""
    shape = tuple(np.shape(x))
    want = "(" + ", ".join("B" if e is None else str(e) for e in expected) + ")"
    if len(shape) != len(expected) or any(e is not None and e != s for s, e in zip(shape, expected)):
        any_b = " (B: any batch size)" if None in expected and not any(ranges) else ""
        raise ValueError(
            f"input {name!r} has shape {shape}, but this graph was exported for {want}{any_b}; "
            "call from_torch with an example input of the shape you use"
        )
    for s, r in zip(shape, ranges):
        if not in_range(s, r):
            allowed = f"B >= {r[0]}" if r[1] is None else f"{r[0]} <= B <= {r[1]}"
            raise ValueError(
                f"input {name!r} has shape {shape}, but this graph was exported for {want} with {allowed} "
                "(export's guards: the model's code depends on the batch size); call from_torch with an "
                f"example input of batch size {s}"
            )


def in_range(n: int, r: tuple | None) -> bool:
    """Size ``n`` within export's guards ``r``: None (no guard) or (lo, hi), hi None for no upper bound."""
    return r is None or (r[0] <= n and (r[1] is None or n <= r[1]))


def check_value(x: Any, expected: Any, name: str) -> Any:
    """A Python-number (or None) input against the value export baked into the graph."""
    v = x if x is None else np.asarray(x)
    if (v is None) != (expected is None) or (v is not None and (v.ndim or v != expected)):
        raise ValueError(
            f"input {name!r} is {x if v is None else v.tolist()!r}, but this graph was lowered with {expected!r}, "
            "a constant of the program; call from_torch with that value, or pass it as a tensor (then it is an input)"
        )
    # a float: differentiating this input raises (TangentLossError) instead of a silently zero derivative
    return np.asarray(v, dtype=float) if isinstance(expected, (int, float)) else None


def full(shape: Any, value: Any, dtype: Any, backend: str) -> Any:
    return namespace(backend).full(tuple(int(s) for s in shape), value, dtype=dtype)


def arange(start: Any, end: Any, step: Any, dtype: Any, backend: str) -> Any:
    return namespace(backend).arange(start, end, step, dtype=dtype)


def astype(x: Any, dtype: Any) -> Any:
    return x.astype(dtype)


def size(x: Any, dim: int) -> int:
    return int(np.shape(x)[dim])


def numel(x: Any) -> int:
    return int(np.size(x))


def expand_shape(x: Any, sizes: tuple) -> tuple:
    """torch's ``expand`` sizes (-1: keep) as a full shape."""
    s = (1,) * (len(sizes) - np.ndim(x)) + tuple(np.shape(x))
    return tuple(n if int(t) == -1 else int(t) for n, t in zip(s, sizes))


def arg_extremum(x: Any, fn: str, axis: Any = None, keepdims: bool = False) -> Any:
    """``argmax``/``argmin`` (``fn``)."""
    return getattr(_of(x), fn)(x, axis=axis, keepdims=keepdims)


def reduce_bool(x: Any, fn: str, axis: Any = None, keepdims: bool = False) -> Any:
    """``any``/``all`` (``fn``)."""
    return getattr(_of(x), fn)(x, axis=axis, keepdims=keepdims)


def any_finite(x: Any, axis: int) -> Any:
    return _of(x).any(_of(x).isfinite(x), axis=axis, keepdims=True)


def argsort(x: Any, axis: int, descending: bool) -> Any:
    """Stable argsort with NaN the largest value, as torch's sort (NaN first when descending)."""
    xp = _of(x)
    if not descending:
        return xp.argsort(x, axis=axis, kind="stable")
    # descending = the ascending sort of the reversed array, reversed: NaN first, ties in their order
    # (no -x: that kept NaN last and overflows unsigned and minimum ints)
    return x.shape[axis] - 1 - xp.flip(xp.argsort(xp.flip(x, axis), axis=axis, kind="stable"), axis)


def first(idx: Any, axis: int, k: int) -> Any:
    return idx[(slice(None),) * axis + (slice(0, k),)]


def flat_last(x: Any, k: int) -> tuple:
    """The shape that merges the last ``k`` axes."""
    return tuple(np.shape(x)[: np.ndim(x) - k]) + (-1,)


def squeeze_key(x: Any, dims: tuple) -> tuple:
    return squeeze_key_for(np.shape(x), dims)


def squeeze_key_for(shape: tuple, dims: tuple) -> tuple:
    """The index that drops the size-1 axes among ``dims`` (torch's squeeze ignores the others)."""
    return tuple(0 if d in dims and shape[d] == 1 else slice(None) for d in range(len(shape)))


def embedding_ids(idx: Any, rows: int) -> Any:
    """``idx``, once every id is a row of an ``rows``-row table: torch raises, ``take`` would wrap a negative id."""
    bad = (idx < 0) | (idx >= rows)
    if bad.any():
        at = np.unravel_index(int(bad.argmax()), np.shape(idx))  # the first bad id (0-d ids too)
        raise IndexError(
            f"embedding id {int(idx[at])} (at position {tuple(int(k) for k in at)}) is out of range for a "
            f"table of {rows} rows: ids must be in [0, {rows}), as torch.nn.Embedding requires"
        )
    return idx


def padding_mask(idx: Any, padding_idx: int) -> Any:
    return (idx == padding_idx)[..., None]


def causal_mask(q: Any, k: Any) -> Any:
    xp, L, S = _of(q), np.shape(q)[-2], np.shape(k)[-2]
    return xp.tril(xp.ones((L, S), dtype=bool))
