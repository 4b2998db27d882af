"""Memory budgets of transform passes: each pass (one level) holds its own.

A pass with K lanes makes ``(K, *S)`` tangents for every value S it computes, and which
values a function computes is known only by running it: a 16-feature input can meet a
4096-wide hidden layer. So a transform states, per pass, how many tangent elements one
array may hold (``config.tangent_bytes``), and ``rules.apply`` calls ``check`` before it
computes a tangent: a pass that would go over stops *before* allocating (``OverBudget``),
and the transform re-plans with fewer lanes from the size it was told. Each level has its
own entry, so nested transforms budget their own passes.
"""

from __future__ import annotations

from typing import Any

_LIMITS: dict[int, list[float]] = {}  # level -> [largest value (elements) its lanes may carry, widest seen, stopped at]


class OverBudget(BaseException):
    """Internal: the pass of ``level`` would make a tangent of ``size * lanes`` elements. A
    BaseException, like KeyboardInterrupt, so that an ``except Exception`` in the user's function
    lets it through; a bare ``except:`` that swallows it still cannot hide it (``stop``)."""

    def __init__(self, level: int, size: int) -> None:
        super().__init__(level, size)
        self.level, self.size = level, size


def start(level: int, max_elements: int, lanes: int) -> None:
    """A pass of ``lanes`` lanes whose tangent arrays may hold ``max_elements`` elements each (one
    lane always may: a single lane cannot be split)."""
    _LIMITS[level] = [max_elements // lanes if lanes > 1 else float("inf"), 0, 0]


def stop(level: int) -> tuple[int, int]:
    """End the pass: the widest value (elements) it computed, and the size of the value it was
    stopped at (0: none). The caller re-plans on the second even if the function caught the stop
    and went on (its values after that are not the function's)."""
    entry = _LIMITS.pop(level, None)
    return (0, 0) if entry is None else (entry[1], entry[2])


def check(level: int, ans: Any) -> None:
    """Before ``ans``'s tangent is computed: stop the pass if it would go over its budget."""
    entry = _LIMITS.get(level)
    if entry is None:
        return
    size = getattr(ans, "size", None)  # an array (the common case, first), or a tuple of outputs
    if size is None:
        size = sum(getattr(a, "size", 0) for a in ans) if isinstance(ans, (tuple, list)) else 0
    if size > entry[1]:
        if size > entry[0]:
            entry[2] = size
            raise OverBudget(level, size)
        entry[1] = size
