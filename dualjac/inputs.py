"""What forward and reverse transforms share at their edges: checking and preparing the
differentiated inputs, calling the user's function, and reading a pass's outputs back out
(their lanes, their primal values, ``has_aux``'s auxiliary values without lanes)."""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from .backend import is_array, is_dask_array
from .dual import Dual
from .errors import TangentLossError
from .levels import ACTIVE, escaped
from .tree import flatten, unflatten


def argnum_tuple(argnums: Any, n: int) -> tuple[int, ...]:
    """``argnums`` (an integer, NumPy's too, or a tuple of them) as nonnegative positions among ``n``
    positional arguments, each named once."""
    integer = lambda a: isinstance(a, numbers.Integral) and not isinstance(a, bool)  # noqa: E731
    items = (argnums,) if integer(argnums) else argnums
    if not isinstance(items, (tuple, list)) or not all(integer(a) for a in items):
        raise TypeError(f"argnums must be an integer or a tuple of integers, not {argnums!r}")
    nums = tuple(int(a) for a in items)
    for a in nums:
        if not -n <= a < n:
            raise ValueError(f"argnums {a} is out of range for {n} positional argument(s)")
    nums = tuple(a % n for a in nums)
    if len(set(nums)) != len(nums):
        raise ValueError(f"argnums {argnums} names an argument twice: each argument is differentiated once")
    return nums


def is_ready(x: Any) -> bool:
    """The common case, checked first: a NumPy floating array, or a Dual of an outer transform."""
    return type(x) is Dual or (type(x) is np.ndarray and x.dtype.kind == "f")


def check_input(x: Any, what: str) -> Any:
    """A differentiable input: a floating array (or Python float, or a Dual of an outer transform)."""
    if isinstance(x, np.matrix):  # ndarray subclasses whose operators differ (is_array would take them)
        raise TypeError(
            f"{what} is an np.matrix, whose * is a matrix product and whose values stay 2-D, unlike the "
            "arrays dualjac computes with: pass np.asarray(x)"
        )
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"{what} is a masked array, whose mask dualjac's arrays cannot carry: pass x.filled(v) for "
            "a fill value v, or np.asarray(x) for the data under the mask"
        )
    if is_ready(x):
        return x
    if isinstance(x, float):
        return np.asarray(x, dtype=np.float64)
    if isinstance(x, np.floating):  # np.float32(0.5): a 0-d array of its own dtype
        return np.asarray(x)
    if isinstance(x, (numbers.Integral, bool)):
        raise TypeError(
            f"{what} is the integer {x!r}: derivatives need floating-point inputs; pass {float(x)!r}"
        )
    if isinstance(x, numbers.Complex):
        raise TypeError(f"{what} is complex: dualjac differentiates real inputs only")
    if not is_array(x):
        if is_dask_array(x):  # only batch_jacobian maps over a Dask array's blocks (dualjac/dask.py)
            raise TypeError(
                f"{what} is a Dask array: only dj.batch_jacobian(f, x) works on Dask arrays (one call per block "
                "of rows); the Jacobian of a whole Dask array couples every element. Use batch_jacobian for "
                "per-sample Jacobians, or x.compute() if the array fits in memory"
            )
        hint = (
            " (for a torch.Tensor use dualjac.torch, or t.detach().numpy())"
            if "torch" in type(x).__module__
            else ""
        )
        raise TypeError(
            f"{what} is a {type(x).__name__}, not an array: pass a NumPy (or CuPy) floating array{hint}"
        )
    kind = x.dtype.kind
    if kind == "f":
        return x
    if kind == "c":
        raise TypeError(
            f"{what} has complex dtype {x.dtype}: dualjac differentiates real inputs only; "
            "split it into real and imaginary parts"
        )
    raise TypeError(
        f"{what} has dtype {x.dtype}: derivatives need floating-point inputs; "
        "cast it first, e.g. x.astype(np.float64)"
    )


def call_user(run: Callable[..., Any], *args: Any) -> Any:
    """``run(*args)``, with NumPy's error for a Dual assigned into a plain array (``y[0] = x``)
    replaced by the TangentLossError behind it, which names where it happened."""
    try:
        return run(*args)
    except ValueError as e:
        if isinstance(e.__cause__, TangentLossError):
            raise TangentLossError(f"{e.__cause__} (NumPy: {e})") from e
        raise


def lanes_of(o: Any, level: int) -> Any:
    """An output's tangent lanes for the pass of ``level`` (None: it does not depend on them)."""
    if type(o) is not Dual:
        _constant_output(o)
        return None
    if o.view is not None:
        o.refresh()
    if o.level == level:
        return o.tangent
    if o.level not in ACTIVE:
        raise escaped(o.level)
    return None


def _constant_output(o: Any) -> None:
    """An output that is not a Dual is a constant (zero Jacobian blocks): a number or a numeric
    array. Anything else (an object array, which may hold Duals; a string; a torch tensor; an
    object holding a Dual) would silently give zeros, so it raises."""
    kind = getattr(getattr(o, "dtype", None), "kind", None)
    if kind in ("b", "i", "u", "f", "c") or (kind is None and isinstance(o, numbers.Number)):
        return
    what = f"an array of dtype {o.dtype}" if kind is not None else f"a {type(o).__module__}.{type(o).__qualname__}"
    raise TypeError(
        f"an output of f is {what}, which cannot carry derivatives (an object array or an object that "
        "holds a Dual would lose them silently): return arrays or numbers, or tuples, lists and dicts of them"
    )


def primal(o: Any, level: int | None = None) -> Any:
    """``o`` without the lanes of ``level`` (of any level when None); anything else as it is."""
    return o.primal if type(o) is Dual and (level is None or o.level == level) else o


def strip(tree: Any, level: int) -> Any:
    """``has_aux``'s auxiliary values without this level's lanes (called while the pass runs)."""
    leaves, treedef = flatten(tree)
    for x in leaves:
        lanes_of(x, level)  # a view re-reads its base
    return unflatten(treedef, [primal(x, level) for x in leaves])


def check_function(f: Any) -> None:
    """A torch module or function cannot run on Duals: say how to lower it first."""
    if _is_torch(type(f)):
        raise TypeError(
            f"{type(f).__name__} is a torch module or function, which cannot run on dualjac's dual "
            "arrays: lower it first with g = dualjac.torch.from_torch(module, example_input), then "
            "differentiate g (dj.jacfwd(g), dj.batch_jacobian(g, x))"
        )


@functools.lru_cache(maxsize=256)
def _is_torch(kind: type) -> bool:
    # per type, not per call: walking the MRO of every function passed in is a tiny call's cost
    return any(c.__module__.startswith("torch") for c in kind.__mro__[:-1])
