"""Per-sample Jacobians of Dask arrays: one dualjac call per block of rows, lazily.

Rows of a batch are independent, so the per-sample Jacobian of a batch chunked along
its first axis is the per-sample Jacobians of its blocks, side by side. ``batch_jacobian``
builds that as one ``map_blocks`` layer: nothing runs until the result is computed, each
task holds one block's rows and their ``(rows, *out_item, *in_item)`` Jacobian, and the
block function is ``dualjac.batch_jacobian`` itself (no second implementation).

``dj.batch_jacobian(f, x)`` comes here when ``x`` is a ``dask.array.Array``; this module,
and dask with it, is imported only then. The output's type follows the input's blocks
(NumPy blocks give NumPy blocks, CuPy blocks CuPy blocks): ``meta`` is the Jacobian of an
empty batch of the input's own array type, so no data moves to the client.

The reductions below (``frobenius_norms``, ``mean_jacobian``, ``slogdet``) work block-wise
on the lazy Jacobian, so ``(B, m, n)`` never exists in one place: a worker holds one
block's Jacobian at a time, and only ``(B,)`` or ``(m, n)`` results come back.

>>> import numpy as np, dask.array as da, dualjac as dj
>>> W = np.arange(6.0).reshape(3, 2) / 10
>>> x = da.ones((10, 3), chunks=(4, 3))
>>> J = dj.batch_jacobian(lambda x: np.tanh(x @ W), x)   # lazy: nothing computed yet
>>> J.shape, J.chunks[0], J.dtype
((10, 2, 3), (4, 4, 2), dtype('float64'))
>>> np.array_equal(J.compute(), dj.batch_jacobian(lambda x: np.tanh(x @ W), np.ones((10, 3))))
True
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.utils import parse_bytes

from . import batch
from .backend import array_namespace, is_dask_array
from .tree import flatten, unflatten


class FeatureChunksWarning(UserWarning):
    """A Dask array passed to ``batch_jacobian`` was chunked along a feature axis, and was rechunked.

    A block must hold whole rows (every feature of a sample), because each sample's
    Jacobian needs all its features as lanes. Chunk along the batch axis only
    (``x.rechunk({0: "auto", 1: -1})``) to avoid the rechunk and this warning.
    """


def batch_jacobian(f: Callable[[Any], Any], x: da.Array, **options: Any) -> Any:
    """``dualjac.batch_jacobian`` of a Dask array: lazy ``(B, *out_item, *in_item)`` Dask arrays.

    ``x`` is chunked along its first (batch) axis; feature axes chunked in pieces are
    rechunked to whole rows with a ``FeatureChunksWarning`` (batch blocks are made
    smaller if needed, to keep blocks under dask's ``array.chunk-size``). ``options``
    (``chunk_size``) are passed to each block's ``dualjac.batch_jacobian``. Outputs
    may be a pytree; each leaf comes back as its own Dask array, still one dualjac call
    per block. ``f`` must treat rows independently, as for in-memory batches.

    >>> import numpy as np, dask.array as da, dualjac as dj
    >>> x = da.from_array(np.linspace(0, 1, 12).reshape(6, 2), chunks=(2, 2))
    >>> out, total = dj.batch_jacobian(lambda x: (np.sin(x), x.sum(axis=1)), x)
    >>> out.shape, total.shape, out.numblocks
    ((6, 2, 2), (6, 2), (3, 1, 1))
    """
    if not is_dask_array(x):
        raise TypeError(f"x is a {type(x).__name__}: dualjac.dask.batch_jacobian takes a dask.array.Array")
    if x.ndim < 1:
        raise ValueError("batch_jacobian needs a batch: x must have a leading batch axis (B, ...)")
    x = _whole_rows(x)
    probe = _probe(f, x, options)
    leaves, treedef = flatten(probe)
    # f as one key of the graph, not an argument of every task: its weights (closures, a Graph's
    # params) then travel to each worker once, as data, instead of inside every task
    f = dask.delayed(f, pure=True, traverse=False)
    if treedef is None:  # one array out: one map_blocks layer
        return _map(x, _block_jacobian, probe, f, options)
    if not leaves:
        raise ValueError("batch_jacobian: f returned no arrays, so there is no Jacobian to compute")
    # a pytree out: each block's Jacobians packed side by side as (rows, total), then a view per leaf
    sizes = [math.prod(j.shape[1:]) for j in leaves]
    xp = array_namespace(*leaves)
    packed_meta = xp.zeros((0, sum(sizes)), dtype=np.result_type(*[j.dtype for j in leaves]))
    packed = _map(x, _block_packed, packed_meta, f, options)
    out, start = [], 0
    for j, n in zip(leaves, sizes):
        out.append(_map(packed[:, start : start + n], _unpack, j, j.shape[1:], j.dtype))
        start += n
    return unflatten(treedef, out)


def _whole_rows(x: da.Array) -> da.Array:
    """``x`` with every feature axis in one chunk (rechunked, with a warning, if it was not)."""
    if all(len(c) == 1 for c in x.chunks[1:]):
        return x
    if any(c != c for c in x.chunks[0]):  # NaN: row counts unknown, which dask cannot rechunk
        raise ValueError(
            "batch_jacobian: x is chunked along its feature axes and its blocks' row counts are unknown "
            "(NaN chunks, e.g. after boolean indexing), so it cannot be rechunked to whole rows: call "
            "x.compute_chunk_sizes() first, or rechunk the features whole before selecting rows"
        )
    whole = {i: -1 for i in range(1, x.ndim)}
    row_bytes = int(np.prod(x.shape[1:])) * x.dtype.itemsize
    limit = parse_bytes(dask.config.get("array.chunk-size"))
    biggest = max(x.chunks[0], default=0)
    if biggest * row_bytes > limit:  # whole rows would make blocks too big: fewer rows per block
        whole[0] = max(1, limit // max(row_bytes, 1))
    warnings.warn(
        f"batch_jacobian: x is chunked along its feature axes (chunks {_brief(x.chunks)}); each sample needs "
        f"all its features in one block, so x is rechunked to whole rows. Chunk along the batch axis only, "
        f'e.g. x.rechunk({{0: "auto", {", ".join(f"{i}: -1" for i in range(1, x.ndim))}}}), to avoid this.',
        FeatureChunksWarning,
        stacklevel=_outside_dualjac(),
    )
    return x.rechunk(whole)


def _outside_dualjac() -> int:
    """The ``stacklevel`` of the first caller outside dualjac (``dj.batch_jacobian`` or ``dualjac.dask``'s)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("dualjac."):
        frame, level = frame.f_back, level + 1
    return level


def _brief(chunks: tuple) -> str:
    return "(" + ", ".join(str(c) if len(c) <= 4 else f"({c[0]}, {c[1]}, ... {len(c)} chunks)" for c in chunks) + ")"


def _probe(f: Callable[[Any], Any], x: da.Array, options: dict) -> Any:
    """The Jacobian(s) of an empty batch ``(0, *item)`` of ``x``'s block type: the outputs' shapes,
    dtypes and ``meta``, learnt without computing ``x`` (and with the in-memory input errors)."""
    empty = array_namespace(x._meta).zeros((0, *x.shape[1:]), dtype=x.dtype)
    try:
        return batch.batch_jacobian(f, empty, **options)
    except Exception as e:
        if hasattr(e, "add_note"):  # Python >= 3.11
            e.add_note(
                "dualjac ran f on an empty batch of shape (0, ...) to learn its output shapes and dtypes "
                "without computing the Dask array: f must accept any number of rows"
            )
            if "dask" in str(e).lower():
                e.add_note("f runs on one block at a time: arrays it uses must be in memory (.compute() them)")
        raise


def _map(x: da.Array, block_fn: Callable[..., Any], meta: Any, *args: Any) -> da.Array:
    """``block_fn(block, *args)`` on every block of rows; ``meta`` is an empty result of the right shape."""
    chunks = (x.chunks[0], *meta.shape[1:])
    grow = len(chunks) - x.ndim  # new trailing axes (output and input item axes), or axes dropped
    return x.map_blocks(
        block_fn,
        *args,
        chunks=chunks,
        new_axis=list(range(x.ndim, len(chunks))) if grow > 0 else None,
        drop_axis=list(range(len(chunks), x.ndim)) if grow < 0 else None,
        dtype=meta.dtype,
        meta=meta,
    )


def _block_jacobian(block: Any, f: Callable[[Any], Any], options: dict) -> Any:
    return batch.batch_jacobian(f, block, **options)


def _block_packed(block: Any, f: Callable[[Any], Any], options: dict) -> Any:
    leaves, _ = flatten(batch.batch_jacobian(f, block, **options))
    xp = array_namespace(*leaves)
    return xp.concatenate([j.reshape(len(block), -1) for j in leaves], axis=1)


def _unpack(part: Any, item: tuple, dtype: Any) -> Any:
    return part.reshape((len(part), *item)).astype(dtype, copy=False)


# --- block-wise reductions of a lazy per-sample Jacobian ---------------------------------------
def frobenius_norms(J: da.Array) -> da.Array:
    """Per-sample Frobenius norms ``||J_i||_F`` of a ``(B, ...)`` Jacobian: a lazy ``(B,)`` array,
    each block reduced where it was computed.

    >>> import numpy as np, dask.array as da, dualjac as dj, dualjac.dask as djd
    >>> J = dj.batch_jacobian(lambda x: 3 * x, da.ones((5, 2), chunks=2))
    >>> djd.frobenius_norms(J).compute().round(4).tolist()
    [4.2426, 4.2426, 4.2426, 4.2426, 4.2426]
    """
    return da.sqrt((J * J).sum(axis=tuple(range(1, J.ndim))))


def mean_jacobian(J: da.Array) -> da.Array:
    """The mean of the per-sample Jacobians over the batch: a lazy array of one sample's Jacobian
    shape, summed block by block (a tree reduction), never holding ``(B, ...)``.

    >>> import numpy as np, dask.array as da, dualjac as dj, dualjac.dask as djd
    >>> x = da.from_array(np.array([[0.0], [1.0], [2.0]]), chunks=1)
    >>> djd.mean_jacobian(dj.batch_jacobian(lambda x: x ** 2, x)).compute().tolist()
    [[2.0]]
    """
    return J.mean(axis=0)


def slogdet(J: da.Array) -> tuple[da.Array, da.Array]:
    """Per-sample ``(sign, log|det J_i|)`` of a square ``(B, n, n)`` Jacobian, block by block:
    two lazy ``(B,)`` arrays (computed together, the Jacobian blocks are computed once).

    >>> import numpy as np, dask.array as da, dualjac as dj, dualjac.dask as djd
    >>> sign, logdet = djd.slogdet(dj.batch_jacobian(lambda x: 2 * x, da.ones((4, 3), chunks=(2, 3))))
    >>> sign.compute().tolist(), bool(np.allclose(logdet.compute(), 3 * np.log(2)))
    ([1.0, 1.0, 1.0, 1.0], True)
    """
    if J.ndim != 3 or J.shape[1] != J.shape[2]:
        raise ValueError(
            f"slogdet needs square per-sample Jacobians (B, n, n), got shape {J.shape}: "
            "reshape a multi-axis Jacobian to (B, m, n) first, with m == n"
        )
    meta = array_namespace(J._meta).zeros((0, 2), dtype=J.dtype)
    both = J.map_blocks(_slogdet_block, chunks=(J.chunks[0], (2,)), drop_axis=[2], dtype=J.dtype, meta=meta)
    return both[:, 0], both[:, 1]


def _slogdet_block(block: Any) -> Any:
    xp = array_namespace(block)
    sign, logdet = xp.linalg.slogdet(block)
    return xp.stack([sign, logdet], axis=1)
