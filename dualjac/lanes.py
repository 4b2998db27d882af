"""Identity lanes kept implicit: the tangent of a freshly seeded input, and of anything
computed from it by elementwise ops alone.

A transform seeds an input ``x`` (shape ``S = lead + item``) with the identity: lane
``k`` is 1 at item position ``shift + k`` and 0 elsewhere. Written out that is a
``(K, *S)`` array that is almost all zeros, and an elementwise op ``y = g(x)`` would
multiply all of it by ``g'(x)``. Instead ``Diagonal`` stores only the diagonal,
``values`` of shape ``S``:

    T[k, *b, *i] = values[*b, *i] * (flat(i) == shift + k)

An elementwise rule is linear and pointwise in its tangent, so applying it to
``values`` (as a single lane) gives the next ``values``: a chain of elementwise ops
costs O(|S|) instead of O(K |S|). A rule may opt in to use the structure directly
(``diagonal=`` handlers: ``x @ W`` on a seeded 1-D item is ``W``'s rows ``shift:shift+K``
times the values, no GEMM); every other op that mixes positions (a sum, a reshape)
gets the written-out array from ``dense()``. ``rules.apply`` is the only place that
makes this choice; rules without a handler never see a ``Diagonal``.
"""

from __future__ import annotations

import math
from typing import Any


class Diagonal:
    """Implicit ``(K, *S)`` tangent lanes ``values[*b, *i] * (flat(i) == shift + k)``."""

    __slots__ = ("values", "lanes", "shift", "nlead", "xp")

    def __init__(self, values: Any, lanes: int, shift: int, nlead: int, xp: Any) -> None:
        self.values, self.lanes, self.shift, self.nlead, self.xp = values, lanes, shift, nlead, xp

    @property
    def shape(self) -> tuple:
        return (self.lanes,) + tuple(self.values.shape)

    @property
    def ndim(self) -> int:
        return 1 + self.values.ndim

    def like(self, other: Diagonal) -> bool:
        return (self.lanes, self.shift, self.nlead) == (other.lanes, other.shift, other.nlead)

    def with_values(self, values: Any) -> Diagonal:
        return Diagonal(values, self.lanes, self.shift, self.nlead, self.xp)

    def dense(self) -> Any:
        """The written-out ``(K, *S)`` tangent."""
        shape = tuple(self.values.shape)
        lead, item = shape[: self.nlead], shape[self.nlead :]
        n = math.prod(item)
        eye = self.xp.eye(self.lanes, n, k=self.shift, dtype=self.values.dtype)
        return eye.reshape((self.lanes,) + (1,) * len(lead) + item) * self.values

    def jacobian(self, shape: tuple) -> Any:
        """The Jacobian block ``lead + item + item`` these lanes stand for (one chunk
        covering every item position): zeros with ``values`` on the diagonal."""
        lead, item = shape[: self.nlead], shape[self.nlead :]
        n, b = math.prod(item), math.prod(lead)
        J = self.xp.zeros((b, n * n), dtype=self.values.dtype)
        J[:, :: n + 1] = self.values.reshape(b, n)  # the diagonal of each (n, n) block
        return J.reshape(lead + item + item)


def dense(t: Any) -> Any:
    """A tangent as a written-out array (a ``Diagonal``'s ``dense()``; anything else as it is)."""
    return t.dense() if type(t) is Diagonal else t
