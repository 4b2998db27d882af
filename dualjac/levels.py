"""Levels: which transform a Dual belongs to, and which transforms are still running.

Every transform pass takes a fresh level (an integer that grows), so nested transforms
never mix their perturbations. A level is *active* while its pass runs. A Dual whose
level is no longer active escaped its transform (stored in a list inside one ``jacfwd``,
used in another): its lanes are columns of a Jacobian that is finished, and using them
would silently mix two computations, so ``rules.apply`` refuses it (JAX's leaked-tracer
check). Level 1 is for Duals built by hand (``Dual(x, t)``): always active.
"""

from __future__ import annotations

import itertools

from .errors import EscapedDualError

MANUAL = 1
ACTIVE: set[int] = {MANUAL}
_counter = itertools.count(MANUAL + 1)


def open_level() -> int:
    """A fresh level, active until ``close_level``."""
    level = next(_counter)
    ACTIVE.add(level)
    return level


def close_level(level: int) -> None:
    ACTIVE.discard(level)


def escaped(level: int) -> EscapedDualError:
    return EscapedDualError(
        f"a Dual of a transform that has already returned (level {level}) was used: it escaped "
        "its transform (kept in a list, a global or a closure inside one jacfwd/jvp call and used "
        "after it). Return the value from the function instead, or store `.primal` if you only "
        "need the value"
    )
