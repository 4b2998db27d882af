"""Per-sample Jacobians of a batch (``batch_jacobian``): one lane per input feature, shared by all
rows; blocks of rows that keep tangents in cache; and the check that the function keeps rows apart.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from . import buffers
from .backend import array_namespace, is_dask_array
from .dual import Dual
from .errors import NondeterministicFunctionError, RowMixingError
from .inputs import check_function, check_input, primal
from .lanes import Diagonal
from .numpy_api import value
from .passes import Inputs, fresh, run_lanes, same_values
from .settings import AUTO_MIN_INPUTS, config
from .transforms import jvp
from .tree import flatten, unflatten

_log = logging.getLogger("dualjac")


def batch_jacobian(
    f: Callable[[Any], Any],
    x: Any,
    *,
    chunk_size: int | None = None,
    mode: str = "auto",
    check_rows: bool = True,
) -> Any:
    """Per-sample Jacobians of a batch: shape ``(B, *out_item, *in_item)``.

    ``f`` maps a batch ``x`` of shape ``(B, *in_item)`` to outputs of shape
    ``(B, *out_item)`` and must treat rows independently (no batch statistics). The
    lanes are the ``in_item`` features, shared by all B rows, so a pass carries
    ``n = prod(in_item)`` lanes, not ``B * n`` (the zero blocks of the full
    ``(B, m, B, n)`` Jacobian are never computed). Outputs may be a pytree.

    A function that mixes rows (``X - X.mean(0)``, batch norm) would make the lanes sum
    blocks of different rows, so ``check_rows`` (default) verifies independence with a
    single-lane pass over the whole batch along a direction R that differs from row to row: its
    tangent in row b must be that row's block applied to ``R_b`` (to ``4 sqrt(eps)`` of the sizes
    involved, in the lowest precision of x, the blocks and the tangent), or ``RowMixingError`` is
    raised. ``check_rows=False`` skips that pass when you know f keeps rows apart, in its values too
    (no batch statistic, even a detached one, no ``len(x)``); it is skipped anyway where the lanes
    stayed implicit (elementwise functions, which cannot mix rows). A large batch is evaluated in
    blocks of rows whose tangents fit the cache (``config.block_bytes``, from the second call of
    ``f`` on this input shape); the check's pass sees the whole batch, so mixing across blocks shows,
    and values of the blocks unlike the whole batch's give the whole batch's answer.
    The big tangent arrays of one call reuse memory that earlier ops and blocks of the call are done
    with (a call-scoped ``dj.Workspace``, or the caller's if one is in effect).

    :param f: maps a batch ``(B, *in_item)`` to ``(B, *out_item)``, rows independently
    :param x: the batch (a NumPy or CuPy array, or a batch-chunked ``dask.array.Array``)
    :param chunk_size: lanes per pass (``None``: as many as ``config.tangent_bytes`` allows); the
        result does not depend on it, only time and memory do
    :param mode: ``"auto"`` (default), ``"forward"`` or ``"reverse"``; see above
    :param check_rows: verify that ``f`` does not mix rows (one more single-lane pass)

    >>> import numpy as np, dualjac as dj
    >>> W = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> J = dj.batch_jacobian(lambda x: np.tanh(x @ W), np.zeros((5, 2)))
    >>> J.shape, J[0].tolist()
    ((5, 2, 2), [[1.0, 3.0], [2.0, 4.0]])
    """
    check_function(f)
    # dispatch hook: a batch-chunked Dask array is mapped block by block, lazily (dualjac/dask.py)
    if type(x) is not np.ndarray and is_dask_array(x):
        from .dask import batch_jacobian as dask_batch_jacobian

        return dask_batch_jacobian(f, x, chunk_size=chunk_size, mode=mode, check_rows=check_rows)
    x = check_input(x, "x")
    if np.ndim(x) < 1:
        raise ValueError("batch_jacobian needs a batch: x must have a leading batch axis (B, ...)")
    B = np.shape(x)[0]
    if mode != "forward" and (mode != "auto" or np.size(x) > AUTO_MIN_INPUTS * B):
        from . import reverse

        n_in = int(np.size(value(x))) // max(B, 1)
        jac = reverse.auto_jacobian(f, (x,), (0,), True, n_in, reverse.check_mode(mode), chunk_size, nlead=1)
        if jac is not None:
            if check_rows and B > 1:
                _check_rows(f, x, None, flatten(jac)[0])
            return jac
    elif mode == "auto":
        _log.debug("dualjac mode=auto: forward (%d input elements <= %d)", np.size(x) // max(B, 1), AUTO_MIN_INPUTS)
    # a call-scoped workspace (unless the caller holds one): the big lane arrays of later ops and
    # blocks reuse the memory of dead earlier ones, still in cache, rather than fresh pages. It keeps
    # at most one tangent budget of dead arrays, so a small config.tangent_bytes still bounds memory
    with buffers.current() or buffers.Workspace(max_bytes=config.tangent_bytes):
        return _forward(f, x, B, chunk_size, check_rows)


def _forward(f: Callable[[Any], Any], x: Any, B: int, chunk_size: int | None, check_rows: bool) -> Any:
    """``batch_jacobian`` in forward mode: in blocks of rows where that pays, else the whole batch."""
    if type(x) is np.ndarray and chunk_size is None and config.block_bytes > 0 and B > 1:
        jac = _blocked(f, x, check_rows)
        if jac is not None:
            return jac
    out_leaves, out_def, lanes, blocks, widest = _rows(f, x, B, chunk_size)
    # implicit identity lanes that survived to the outputs went through elementwise ops alone, which
    # cannot mix rows: the check is needed only where a tangent was written out (a matmul, a sum)
    if check_rows and B > 1 and not all(t is None or type(t) is Diagonal for t in lanes):
        _check_rows(f, x, out_leaves, blocks)
    if chunk_size is None:  # (with a chunk size no budget is kept, so the widest value is not known)
        _learn(f, x, widest)  # after the check: an f that mixes rows gets no blocks to hide it in
    return unflatten(out_def, blocks)


def _rows(f: Callable[[Any], Any], x: Any, B: int, chunk_size: int | None = None, lo: int = 0):
    """Per-sample Jacobian blocks of ``f`` on the rows ``x`` (rows ``lo:`` of a batch of ``B``): the
    output leaves and structure, the lanes, the blocks, and the widest value met (``run_lanes``)."""
    n = x.shape[0]
    inputs = Inputs([x], lead=(n,))
    run = lambda seeds, level: f(Dual(x, seeds[0], level))  # noqa: E731
    out_leaves, out_def, lanes, widest = run_lanes(run, inputs, chunk_size)
    blocks = []
    for o, t in zip(out_leaves, fresh(lanes, set())):
        p = primal(o)  # same shape, and np.shape(p) need not dispatch to the rules as np.shape(o) does
        if np.ndim(p) < 1 or np.shape(p)[0] != n:
            raise ValueError(
                f"batch_jacobian: an output has shape {tuple(np.shape(p))}"
                + (f" for rows {lo}:{lo + n}" if n != B else "")
                + f", but every output must keep the batch axis of size {n} first"
            )
        (block,) = inputs.blocks(t, p)
        blocks.append(block)
    return out_leaves, out_def, lanes, blocks, widest


# --- row blocks ---------------------------------------------------------------------------
# batch_jacobian's lanes are shared by all B rows, so a hidden layer of width w makes tangents of
# K * B * w values, streamed through memory between a GEMM and the elementwise factor products. Rows
# being independent, the batch can be evaluated in blocks of rows small enough that a block's widest
# tangent stays in cache (config.block_bytes). How wide f's values get is known only by running f:
# the first call on an input shape runs unblocked and records the widest value per row; later calls
# of the same f on that shape are blocked if that tangent would be well over the cache.
_WIDTHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # f -> {(item shape, dtype): values per row}
_NEVER = -1  # the hint of an f whose blocks disagreed with its whole batch
_MIN_ROWS = 16  # fewer rows per block would make the per-call overhead (Python, per op) dominate


def _learn(f: Any, x: Any, widest: int) -> None:
    """Record the widest value per row that ``f`` met on a batch like ``x`` (the block-size hint)."""
    if type(x) is not np.ndarray or x.shape[0] < 1:
        return
    try:
        hints = _WIDTHS.setdefault(f, {})
    except TypeError:  # f cannot be weakly referenced: no hint, so no blocks
        return
    key = (x.shape[1:], x.dtype)
    if hints.get(key) != _NEVER:
        hints[key] = widest // x.shape[0]


def _never(f: Any, x: Any) -> None:
    """Blocks of ``f`` on batches like ``x`` disagreed with the whole batch: evaluate it whole from now on."""
    try:
        _WIDTHS.setdefault(f, {})[(x.shape[1:], x.dtype)] = _NEVER
    except TypeError:
        pass


def _block_rows(f: Any, x: Any) -> int:
    """Rows per block for ``batch_jacobian(f, x)``, or 0 for the whole batch in one block."""
    try:
        width = _WIDTHS.get(f, {}).get((x.shape[1:], x.dtype), 0)
    except TypeError:
        return 0
    K = math.prod(x.shape[1:])
    per_row = K * width * x.dtype.itemsize  # bytes of the widest tangent per row
    B = x.shape[0]
    if per_row <= 0 or B * per_row <= 2 * config.block_bytes:  # no written-out lanes, or cache-sized already
        return 0
    return max(_MIN_ROWS, config.block_bytes // per_row)


def _blocked(f: Callable[[Any], Any], x: np.ndarray, check_rows: bool) -> Any:
    """``batch_jacobian(f, x)`` evaluated in blocks of rows, or None where it is not (no hint that
    it pays, an f that gives other structures or non-NumPy results per block, or a check that
    disagrees: the caller then evaluates the whole batch at once, which raises what it must)."""
    rows = _block_rows(f, x)
    B = x.shape[0]
    if rows == 0 or rows >= B:
        return None
    try:
        parts = []
        start = 0
        while start < B:
            stop = B if B - start < rows + rows // 2 else start + rows  # no small last block
            parts.append(_rows(f, x[start:stop], B, lo=start))
            start = stop
    except Exception:  # noqa: BLE001  f may need the whole batch (a reshape to B rows): unblocked decides
        _never(f, x)
        return None
    out_def = parts[0][1]
    plain = all(
        p[1] == out_def
        and all(type(b) is np.ndarray for b in p[3])
        and all(type(primal(o)) is np.ndarray for o in p[0])
        for p in parts
    )  # else: another structure per block, or values of an outer transform (f closes over its Duals)
    blocks = plain and [np.concatenate([p[3][j] for p in parts]) for j in range(len(parts[0][3]))]
    if plain and check_rows:
        values = [np.concatenate([primal(p[0][j]) for p in parts]) for j in range(len(parts[0][0]))]
        plain = _row_check(f, x, values, blocks, blocked=True) is None
    if not plain:
        _never(f, x)
        return None
    return unflatten(out_def, blocks)


def _check_rows(f: Callable[[Any], Any], x: Any, out_leaves: list[Any] | None, blocks: list[Any]) -> None:
    """One pass along a random direction R: for row-independent f its tangent at row b is
    ``J_b R_b``; if f mixes rows the lanes' blocks (forward or reverse) are sums over rows and the
    two disagree. ``out_leaves``: the outputs of the pass that made ``blocks``, to compare values."""
    try:
        mixed = _row_check(f, x, out_leaves, blocks)
    except NondeterministicFunctionError as e:
        raise NondeterministicFunctionError(
            "batch_jacobian: f returned different values when called again for the row check (random "
            "numbers drawn inside it, such as a dropout mask). Draw them outside f and pass them in, or "
            "pass check_rows=False"
        ) from e
    if mixed is not None:
        raise RowMixingError(
            "batch_jacobian: the function mixes rows of the batch (batch statistics such as "
            "X - X.mean(0), batch norm in training mode, a sum over rows), so the result is not "
            "a per-sample Jacobian. For the full Jacobian use dj.jacfwd(f)(x) (shape "
            "(B, *out, B, *in)); if rows are independent and this is rounding, pass check_rows=False"
        )


def _row_check(f: Callable[[Any], Any], x: Any, out_leaves: list[Any] | None, blocks: list[Any],
               blocked: bool = False) -> str | None:  # fmt: skip
    """``_check_rows``'s pass over the whole batch: None if it agrees with ``blocks`` (and the values
    ``out_leaves``), else what disagreed. (A pass over a sample of rows would be cheaper, and would
    miss a function that mixes only rows outside the sample, or only on the whole batch.) ``blocked``:
    ``blocks`` and ``out_leaves`` come from blocks of rows, so a function that mixes rows only across
    blocks, or only in its values, shows there as values or tangents unlike the whole batch's; its
    values are compared to rounding, not exactly, and a disagreement is reported rather than raised."""
    xp = array_namespace(x)
    # a direction that differs from row to row, made in x's namespace (no host transfer on a GPU)
    R = xp.cos(xp.arange(x.size, dtype=x.dtype) * 2.399963 + 0.5).reshape(x.shape)
    out, t = jvp(f, (x,), (R,))
    if out_leaves is not None:
        later = flatten(out)[0]
        if not blocked:
            same_values(out_leaves, later)
        elif not _agree(xp, out_leaves, later):
            return "values"
    return _tangents(xp, blocks, flatten(t)[0], R)


def _agree(xp: Any, first: list[Any], later: list[Any]) -> bool:
    """Two passes' output values agree to rounding."""
    return len(later) == len(first) and all(_close(xp, value(a), value(b), values=True) for a, b in zip(first, later))


def _tangents(xp: Any, blocks: list[Any], tangents: list[Any], R: Any) -> str | None:
    """None if each output's tangent along ``R`` is ``J_b R_b`` in every row b, else ``"rows"``."""
    B = R.shape[0]
    r = R.reshape(B, -1, 1)
    for J, tb in zip(blocks, tangents):
        Jb = J.reshape(B, -1, r.shape[1])
        expected = (Jb @ r)[..., 0]
        if getattr(tb, "shape", None) is None or math.prod(tb.shape) != math.prod(expected.shape):
            return "rows"
        sizes = (xp.abs(Jb) @ xp.abs(r))[..., 0]  # what the sum's rounding is relative to
        if not _close(xp, expected, tb.reshape(expected.shape), sizes, dtypes=(R.dtype, J.dtype, tb.dtype)):
            return "rows"
    return None


def _close(xp: Any, a: Any, b: Any, sizes: Any = 0, values: bool = False, dtypes: tuple = ()) -> bool:
    """``a`` and ``b`` (``(B, ...)``) agree to ``4 sqrt(eps)`` (far above rounding, far below a
    mixed-in row; eps of the lowest precision among theirs and ``dtypes``) relative to each entry's
    size (``|a| + |b| + sizes``) plus the largest size in its row or in its position over the rows,
    whichever is smaller: not the largest of the whole output, whose row or column may be far larger
    and would hide mixing in the others. Non-finite entries carry no evidence and set no scale;
    ``values`` must have NaNs in the same places."""
    if getattr(a, "shape", ()) != getattr(b, "shape", ()):
        return False
    if a.dtype.kind != "f" or b.dtype.kind != "f":  # integer or boolean values: exactly
        return bool(xp.all(a == b))
    floats = [np.finfo(d) for d in (a.dtype, b.dtype, *dtypes) if np.dtype(d).kind == "f"]
    tol, tiny = 4 * max(float(i.eps) for i in floats) ** 0.5, max(float(i.tiny) for i in floats)
    nan_a = a != a
    if values and bool(xp.any(nan_a != (b != b))):
        return False
    if a.size == 0:
        return True
    scale = xp.abs(a) + xp.abs(b) + sizes
    finite = xp.where(xp.isfinite(scale), scale, 0).reshape(a.shape[0], -1)
    top = xp.minimum(finite.max(axis=1, keepdims=True), finite.max(axis=0, keepdims=True)).reshape(a.shape)
    ok = (a == b) | (xp.abs(a - b) <= tol * (scale + top) + tiny)
    if not values:  # a NaN tangent fails no comparison (it carries no evidence of mixing)
        return not bool(xp.any(~ok & ~nan_a & ~(b != b)))
    return bool(xp.all(ok | nan_a))
