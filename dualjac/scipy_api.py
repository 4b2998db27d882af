"""SciPy's door to the rules table: ``scipy.special``'s ufuncs, without depending on SciPy.

A SciPy ufunc is a NumPy ufunc, so ``scipy.special.expit(dual)`` arrives at
``Dual.__array_ufunc__`` like ``np.exp(dual)``. Only a program that has imported SciPy can
call one, so this module never imports SciPy: it looks in ``sys.modules`` when a ufunc that
``numpy_api.UFUNCS`` does not know first arrives, and adds SciPy's there and then.

``scipy.special.logsumexp``, ``softmax`` and ``log_softmax`` are Python functions that convert
their input with ``np.asarray`` before any NumPy call: NumPy never hands them to dualjac, and
they raise ``TangentLossError``. Their dualjac twins are ``dualjac.nn.logsumexp``,
``dualjac.nn.softmax`` and ``dualjac.nn.log_softmax`` (same arguments, same values).
"""

from __future__ import annotations

import sys
from typing import Any

# scipy.special ufunc name -> rule name (rules/special.py)
SPECIAL = {name: name for name in "expit logit erf erfc erfinv gammaln digamma psi xlogy xlog1py log_ndtr ndtr".split()}
SPECIAL["psi"] = "digamma"  # scipy.special.psi is digamma under its other name

def ufunc_rule(ufunc: Any) -> str | None:
    """The rule of a ``scipy.special`` ufunc (None for any other), remembered in ``numpy_api.UFUNCS``."""
    special = sys.modules.get("scipy.special")
    if special is None:
        return None
    for name, rule in SPECIAL.items():
        if getattr(special, name, None) is ufunc:
            from .numpy_api import UFUNCS

            UFUNCS[ufunc] = rule
            return rule
    return None

