"""Your own derivatives: a rule for your function or ufunc, its route from NumPy, and stop_gradient.

``defrule`` adds an op to the one rules table (see ``dualjac/rules/table.py`` for the forms of
a rule); ``register_numpy`` makes NumPy's dispatch reach it, so that plain NumPy code calling the
ufunc or function works on Duals; ``dualjac.testing.check_jacobian`` then checks the rule against
central differences. A plain Python function of your own is not seen by NumPy's dispatch: give it
a rule with ``primal=`` your function and call it as ``dualjac.rules.apply(name, x)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .numpy_api import FUNCTIONS, UFUNCS
from .rules import RULES, apply, defrule


def register_numpy(func: Any, rule: str | Callable[..., Any]) -> None:
    """Route NumPy's calls of ``func`` on Duals to a rule of ``dj.RULES``.

    ``func`` is a ufunc (NumPy's, SciPy's, numba's ``@vectorize`` with signatures...), whose inputs are
    the rule's arguments, or a function that NumPy dispatches (``__array_function__``: NumPy's own,
    or one decorated with ``numpy.lib.array_function_dispatch``-style overrides). ``rule`` is a
    rule name (the function's arrays are then its positional arguments and the rest its keyword
    parameters) or, for a function, an adapter with the function's signature that calls
    ``dualjac.rules.apply``. Registering again replaces the route.

    >>> import numpy as np, dualjac as dj
    >>> _ = dj.defrule("copysign_x", primal=lambda xp, x, y: xp.copysign(x, y),  # d/dx: sign(x) sign(y)
    ...                jvp=(lambda xp, ans, dx, x, y: xp.sign(x) * xp.sign(y) * dx, None), elementwise=True)
    >>> dj.register_numpy(np.copysign, "copysign_x")
    >>> dj.jacfwd(lambda x: np.copysign(x, -1.0))(np.array([2.0])).tolist()
    [[-1.0]]
    >>> _ = dj.RULES.pop("copysign_x"), dj.numpy_api.UFUNCS.pop(np.copysign)  # (leave no trace)
    """
    if isinstance(rule, str) and rule not in RULES:
        raise ValueError(f"there is no rule named {rule!r}: define it first with dualjac.defrule({rule!r}, ...)")
    if isinstance(func, np.ufunc):
        if not isinstance(rule, str):
            raise TypeError("a ufunc is routed to a rule name: its inputs are the rule's arguments")
        UFUNCS[func] = rule
    elif hasattr(func, "_implementation"):  # NumPy's marker of a function that dispatches
        FUNCTIONS[func] = rule if callable(rule) else _by_name(rule)
    else:
        raise TypeError(
            f"{getattr(func, '__qualname__', func)!r} is neither a ufunc nor a function NumPy dispatches, "
            "so NumPy never hands it a Dual: call your rule where you call the function, "
            f"dualjac.rules.apply({rule!r}, ...)"
        )


def _by_name(rule: str) -> Callable[..., Any]:
    def adapter(*arrays: Any, **params: Any) -> Any:
        return apply(rule, *arrays, **params)

    return adapter


def stop_gradient(x: Any) -> Any:
    """``x``'s value, with no derivative (for every enclosing transform): torch's ``detach()``,
    JAX's ``lax.stop_gradient``. On a plain array, the array itself.

    >>> import numpy as np, dualjac as dj
    >>> dj.jacfwd(lambda x: x * dj.stop_gradient(x))(np.array([3.0])).tolist()  # d(x c)/dx = c = 3
    [[3.0]]
    """
    return apply("stop_gradient", x)


__all__ = ["defrule", "register_numpy", "stop_gradient"]
