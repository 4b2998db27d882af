"""More of NumPy's door: functions that are compositions, and the adapters of the newer rules.

Most functions here (``diff``, ``kron``, ``cross``, ``rot90``, ``linspace``, ``select``, ...) are
written in plain NumPy calls on their Dual arguments, the way NumPy itself writes them, so each
step reaches an existing rule through dispatch: they need no derivative of their own. The rest
translate NumPy's signatures into ``apply`` calls of rules in ``rules/decompositions.py``,
``rules/signal.py`` and ``rules/special.py``. Imported by ``numpy_api``, whose tables these entries join.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from .backend import array_namespace
from .dual import Dual
from .errors import UnsupportedOpError
from .numpy_api import FUNCTIONS, value
from .rules import apply, as_array


def _arr(x: Any, like: Any = None) -> Any:
    """A Dual or an array as it is; anything else (lists, scalars) as an array of the library of
    ``like`` (NumPy without it): a list next to a CuPy array becomes a CuPy array."""
    if type(x) is Dual or hasattr(x, "shape"):
        return x
    if isinstance(x, (list, tuple)):
        return as_array(x, like)  # (Duals inside a list keep their tangents)
    return array_namespace(value(like)).asarray(x)


def _constant(what: str, **args: Any) -> None:
    for name, a in args.items():
        if type(a) is Dual:
            raise UnsupportedOpError(
                f"{what} with a Dual {name}",
                f"{name} is not differentiable here; pass a constant (read `.primal` if you mean its value)",
            )


def _axis(axis: int, nd: int) -> int:
    if not -nd <= axis < nd:
        raise np.exceptions.AxisError(axis, nd)
    return axis % nd


# --- building and joining -------------------------------------------------------------------
def _diag(v, k=0):
    nd = np.ndim(v)
    if nd == 2:
        return np.diagonal(v, k)
    if nd != 1:
        raise ValueError("Input must be 1- or 2-d.")
    n, xp = np.shape(v)[0], array_namespace(value(v))
    i = xp.arange(n)
    out = xp.zeros((n + abs(k), n + abs(k)), dtype=value(v).dtype)
    return apply("setitem", out, v, key=(i + max(-k, 0), i + max(k, 0)))


def _column_stack(tup):
    return np.concatenate([a if np.ndim(a) >= 2 else np.reshape(a, (-1, 1)) for a in tup], axis=1)


def _splitter(name: str, min_nd: int, axis_of: Callable[[int], int]):
    def f(ary, indices_or_sections):
        if np.ndim(ary) < min_nd:
            raise ValueError(f"{name} only works on arrays of {min_nd} or more dimensions")
        return np.split(ary, indices_or_sections, axis_of(np.ndim(ary)))

    return f


def _append(arr, values, axis=None):
    if axis is None:
        arr, values, axis = np.ravel(arr), np.ravel(_arr(values, like=arr)), 0
    else:
        values = _arr(values, like=arr)
    return np.concatenate((arr, values), axis=axis)


def _kron(a, b):
    # kron(a, b)[i * b.shape + j] = a[i] b[j]: an interleaved outer product, reshaped
    nd = max(np.ndim(a), np.ndim(b))
    sa = (1,) * (nd - np.ndim(a)) + np.shape(a)
    sb = (1,) * (nd - np.ndim(b)) + np.shape(b)
    a2 = np.reshape(a, tuple(n for s in sa for n in (s, 1)))
    b2 = np.reshape(b, tuple(n for s in sb for n in (1, s)))
    return np.reshape(a2 * b2, tuple(p * q for p, q in zip(sa, sb)))


def _cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None):
    if axis is not None:
        axisa = axisb = axisc = axis
    a, b = np.moveaxis(_arr(a), axisa, -1), np.moveaxis(_arr(b), axisb, -1)
    na, nb = np.shape(a)[-1], np.shape(b)[-1]
    if na not in (2, 3) or nb not in (2, 3):
        raise ValueError("incompatible dimensions for cross product\n(dimension must be 2 or 3)")
    a0, a1, b0, b1 = a[..., 0], a[..., 1], b[..., 0], b[..., 1]
    c2 = a0 * b1 - a1 * b0
    if na == 2 and nb == 2:
        return c2
    if na == 2:  # a2 = 0
        b2 = b[..., 2]
        c0, c1 = a1 * b2, -(a0 * b2)
    elif nb == 2:  # b2 = 0
        a2 = a[..., 2]
        c0, c1 = -(a2 * b1), a2 * b0
    else:
        a2, b2 = a[..., 2], b[..., 2]
        c0, c1 = a1 * b2 - a2 * b1, a2 * b0 - a0 * b2
    shape = np.broadcast_shapes(np.shape(c0), np.shape(c1), np.shape(c2))
    c = np.stack([np.broadcast_to(c, shape) for c in (c0, c1, c2)], axis=-1)
    return np.moveaxis(c, -1, axisc)


def _rot90(m, k=1, axes=(0, 1)):  # NumPy's own steps, on a Dual
    axes, nd = tuple(axes), np.ndim(m)
    if len(axes) != 2:
        raise ValueError("len(axes) must be 2.")
    if axes[0] == axes[1] or abs(axes[0] - axes[1]) == nd:
        raise ValueError("Axes must be different.")
    if not (-nd <= axes[0] < nd and -nd <= axes[1] < nd):
        raise ValueError(f"Axes={axes} out of range for array of ndim={nd}.")
    k %= 4
    if k == 0:
        return m[...]
    if k == 2:
        return np.flip(np.flip(m, axes[0]), axes[1])
    order = list(range(nd))
    order[axes[0]], order[axes[1]] = order[axes[1]], order[axes[0]]
    return np.transpose(np.flip(m, axes[1]), order) if k == 1 else np.flip(np.transpose(m, order), axes[1])


def _rollaxis(a, axis, start=0):
    n = np.ndim(a)
    axis = _axis(axis, n)
    if start < 0:
        start += n
    if not 0 <= start < n + 1:
        raise np.exceptions.AxisError(f"'start' arg requires {-n} <= start < {n + 1}, but {start} was passed in")
    if axis < start:
        start -= 1
    if axis == start:
        return a[...]
    order = [i for i in range(n) if i != axis]
    order.insert(start, axis)
    return np.transpose(a, order)


def _linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0, *, device=None):
    # NumPy's own steps (numpy/_core/function_base.py), on Duals: the values agree to the last bit
    num = operator.index(num)
    if num < 0:
        raise ValueError(f"Number of samples, {num}, must be non-negative.")
    div = (num - 1) if endpoint else num
    start, stop = (np.asarray(v) if isinstance(v, list | tuple) else v for v in (start, stop))
    dt = np.result_type(value(start), value(stop), 0.0)  # before _arr: Python scalars stay weak, as in NumPy
    start, stop = _arr(start, like=stop), _arr(stop, like=start)
    delta = np.subtract(stop, start).astype(dt)
    y = array_namespace(value(delta)).arange(0, num, dtype=dt).reshape((-1,) + (1,) * np.ndim(delta))
    if div > 0:
        step = delta / div
        y = (y / div) * delta if np.any(value(step) == 0) else y * step
    else:
        step, y = np.nan, y * delta
    y = y + start
    if endpoint and num > 1:
        y[-1, ...] = stop
    if axis != 0:
        y = np.moveaxis(y, 0, axis)
    if dtype is not None and np.issubdtype(dtype, np.integer):
        y = np.floor(value(y))
    if dtype is not None:
        y = y.astype(dtype)
    return (y, step) if retstep else y


# --- elementwise and selections --------------------------------------------------------------
def _nan_to_num(x, copy=True, nan=0.0, posinf=None, neginf=None):
    _constant("numpy.nan_to_num", nan=nan, posinf=posinf, neginf=neginf)
    v = value(x)
    if np.dtype(v.dtype).kind != "f":
        return x
    info = np.finfo(v.dtype)
    posinf = info.max if posinf is None else posinf
    neginf = info.min if neginf is None else neginf
    # a replaced entry is a constant: its tangent is 0
    return np.where(np.isnan(v), nan, np.where(np.isposinf(v), posinf, np.where(np.isneginf(v), neginf, x)))


def _select(condlist, choicelist, default=0):
    if len(condlist) != len(choicelist):
        raise ValueError("list of cases must be same length as list of conditions")
    if len(condlist) == 0:
        raise ValueError("select with an empty condition list is not possible")
    conds = [_arr(value(c), like=choicelist[0]) for c in condlist]
    for i, c in enumerate(conds):
        if c.dtype != bool:
            raise TypeError(f"invalid entry {i} in condlist: should be boolean ndarray")
    out = default
    for c, choice in zip(conds[::-1], list(choicelist)[::-1]):  # the first true condition wins
        out = np.where(c, choice, out)
    return out


def _partition(a, kth, axis=-1, kind="introselect", order=None):
    # partition(a) = a gathered by argpartition(a): the tangent follows its element
    if axis is None:
        a, axis = np.ravel(a), -1
    return np.take_along_axis(a, np.argpartition(value(a), kth, axis=axis, kind=kind), axis=axis)


def _diff(a, n=1, axis=-1, prepend=np._NoValue, append=np._NoValue):
    if n == 0:
        return a
    if n < 0:
        raise ValueError(f"order must be non-negative but got {n!r}")
    a = _arr(a)
    nd = np.ndim(a)
    if nd == 0:
        raise ValueError("diff requires input that is at least one dimensional")
    axis = _axis(axis, nd)
    parts = []
    for extra in (prepend, a, append):
        if extra is a:
            parts.append(a)
        elif extra is not np._NoValue:
            extra = _arr(extra, like=a)
            if np.ndim(extra) == 0:
                extra = np.broadcast_to(extra, np.shape(a)[:axis] + (1,) + np.shape(a)[axis + 1 :])
            parts.append(extra)
    if len(parts) > 1:
        a = np.concatenate(parts, axis)
    lo = (slice(None),) * axis + (slice(None, -1),)
    hi = (slice(None),) * axis + (slice(1, None),)
    for _ in range(n):
        a = a[hi] - a[lo]
    return a


def _gradient(f, *varargs, axis=None, edge_order=1):
    _constant("numpy.gradient", spacing=next((v for v in varargs if type(v) is Dual), None))
    return apply("gradient", _arr(f), spacing=varargs, axis=axis, edge_order=edge_order)


def _interp(x, xp, fp, left=None, right=None, period=None):
    _constant("numpy.interp", left=left, right=right, period=period)
    x = _arr(x, like=fp)
    return apply("interp", x, _arr(xp, like=x), _arr(fp, like=x), left=left, right=right, period=period)


def _convolve(a, v, mode="full"):
    a, v = _arr(a, like=v), _arr(v, like=a)
    a, v = (np.reshape(t, (1,)) if np.ndim(t) == 0 else t for t in (a, v))
    return apply("convolve", a, v, mode=mode)


def _correlate(a, v, mode="valid"):
    # correlate(a, v) = convolve(a, v[::-1]) for real arrays
    a, v = _arr(a, like=v), _arr(v, like=a)
    if np.ndim(a) == 0 or np.ndim(v) == 0:
        raise ValueError("object of too small depth for desired array")  # NumPy's error
    return _convolve(a, v[::-1], mode)


# --- decompositions ----------------------------------------------------------------------------
def _svd(a, full_matrices=True, compute_uv=True, hermitian=False):
    return apply("svd", a, full_matrices=full_matrices, compute_uv=compute_uv, hermitian=hermitian)


FUNCTIONS.update(
    {
        np.diag: _diag,
        np.column_stack: _column_stack,
        np.hsplit: _splitter("hsplit", 1, lambda nd: 1 if nd > 1 else 0),
        np.vsplit: _splitter("vsplit", 2, lambda nd: 0),
        np.dsplit: _splitter("dsplit", 3, lambda nd: 2),
        np.append: _append,
        np.kron: _kron,
        np.cross: _cross,
        np.rot90: _rot90,
        np.rollaxis: _rollaxis,
        np.linspace: _linspace,
        np.nan_to_num: _nan_to_num,
        np.select: _select,
        np.partition: _partition,
        np.diff: _diff,
        np.gradient: _gradient,
        np.interp: _interp,
        np.convolve: _convolve,
        np.correlate: _correlate,
        np.sinc: lambda x: apply("sinc", x),
        # a Dual is real (complex results raise): its real part is itself, its imaginary part zero
        np.real: lambda val: val.real,
        np.imag: lambda val: val.imag,
        np.real_if_close: lambda a, tol=100: a,
        np.linalg.svd: _svd,
        np.linalg.svdvals: lambda x: apply("svd", x, compute_uv=False),
        np.linalg.eigh: lambda a, UPLO="L": apply("eigh", a, UPLO=UPLO),
        np.linalg.eigvalsh: lambda a, UPLO="L": apply("eigvalsh", a, UPLO=UPLO),
        np.linalg.eig: lambda a: apply("eig", a),
        np.linalg.qr: lambda a, mode="reduced": apply("qr", a, mode=mode),
        np.linalg.lstsq: lambda a, b, rcond=None: apply("lstsq", _arr(a, like=b), _arr(b, like=a), rcond=rcond),
    }
)
