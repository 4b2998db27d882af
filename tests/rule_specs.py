"""One record per rule (or NumPy entry point): how to call it and on which inputs.

A ``Spec`` calls NumPy (``fn``), so each check exercises both the dispatch from
NumPy and the rule behind it. ``test_rules`` checks every spec's full Jacobian
against float64 central differences, and its JVP against ``torch.func.jvp``
where ``torch`` names the equivalent torch function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

UNARY = [(), (3,), (2, 3)]
BINARY = [((), ()), ((3,), (3,)), ((3, 1), (1, 4)), ((), (4,)), ((2, 3), (3,))]


@dataclass
class Spec:
    name: str
    fn: Callable[..., Any]
    shapes: list = field(default_factory=lambda: list(UNARY))  # one shape (1 arg) or a tuple of shapes
    domain: tuple[float, float] = (-2.0, 2.0)
    diff: tuple[int, ...] | None = None  # which args to differentiate (default: all)
    torch: Callable[..., Any] | None = None  # same signature, on tensors
    gen: Callable[..., tuple] | None = None  # gen(rng, shape, dtype) -> args, replaces uniform draws
    float32: bool = True  # also check in float32
    noncontig: bool = True  # also check with strided views as inputs
    fd: bool = True  # False at kinks (ties): finite differences are meaningless there, torch decides

    def args_for(self, rng: np.random.Generator, shape: Any, dtype: Any) -> tuple:
        if self.gen is not None:
            return tuple(self.gen(rng, shape, dtype))
        shapes = (shape,) if is_shape(shape) else tuple(shape)
        lo, hi = self.domain
        return tuple(rng.uniform(lo, hi, size=s).astype(dtype) for s in shapes)


def is_shape(s: Any) -> bool:
    return isinstance(s, tuple) and all(isinstance(n, int) for n in s)


def all_specs() -> list[Spec]:
    from specs import (
        compositions,
        decompositions,
        elementwise,
        inspection,
        linalg,
        nn,
        reductions,
        shape,
        signal,
        special,
    )

    out: list[Spec] = []
    for mod in (elementwise, inspection, reductions, linalg, shape, nn, decompositions, signal, special, compositions):
        out.extend(mod.SPECS)
    names = [s.name for s in out]
    dup = {n for n in names if names.count(n) > 1}
    assert not dup, f"duplicate spec names: {dup}"
    return out


def draw(rng: np.random.Generator, shape: Any, dtype: Any, lo: float = -2.0, hi: float = 2.0) -> np.ndarray:
    return rng.uniform(lo, hi, size=shape).astype(dtype)


def on(x: Any, c: np.ndarray) -> Any:
    """The constant ``c`` in the array library of ``x``, as a CuPy user would pass it (the
    backend test runs specs with the differentiated inputs in a CuPy-like namespace)."""
    import dualjac as dj
    from dualjac.backend import array_namespace

    while type(x) is dj.Dual:
        x = x.primal
    xp = array_namespace(x)
    return c if xp is np else xp.asarray(c.tolist(), dtype=c.dtype)  # an explicit host-to-device copy
