"""Special functions: NumPy's ``sinc`` and the SciPy ufuncs (``scipy.special.expit``, ``erf``, ...).

SciPy is optional. The primal is SciPy's own ufunc (``cupyx.scipy.special`` on CuPy arrays),
imported when a rule first runs, which only happens once the user has imported SciPy (its
ufuncs reach dualjac through ``__array_ufunc__``: see ``dualjac/scipy_api.py``) or calls a rule
directly. The derivatives follow torch's ``torch.special`` (so ``dualjac.torch.check`` agrees):

* ``xlogy(x, y) = x log y`` (0 where ``x == 0``, whatever ``y``): ``d/dx = log y``, and 0 at
  ``x == y == 0`` (no derivative there); ``d/dy = x / y``, and 0 where ``x == 0`` (the value is 0
  along that line). torch masks ``d/dx`` to 0 at every ``x == 0``; at ``x == 0, y > 0`` the
  derivative is ``log y``, which is what dualjac (and JAX) give. ``xlog1py`` likewise with
  ``log1p y`` and ``1 + y``.
* ``digamma' = polygamma(1, .)``, ``polygamma(n, .)' = polygamma(n + 1, .)``: each factor goes
  through ``apply``, so it differentiates again (Hessians).
"""

from __future__ import annotations

import importlib
import math

from ..dual import Dual
from .table import apply, defrule

SQRT_2PI = math.sqrt(2 * math.pi)


def special(xp):
    """SciPy's ``special`` module for arrays of namespace ``xp`` (CuPy's for CuPy)."""
    cupy = getattr(xp, "__name__", "").startswith("cupy")
    return importlib.import_module("cupyx.scipy.special" if cupy else "scipy.special")


def _ufunc(name):
    def primal(xp, *args):
        return getattr(special(xp), name)(*args)

    primal.__name__ = name
    return primal


def _elementwise(name, *factors):
    defrule(name, primal=_ufunc(name), factors=factors)


def _dsinc(xp, x):
    # sinc(x) = sin(pi x) / (pi x): sinc'(x) = (cos(pi x) - sinc(x)) / x, whose limit at 0 is 0. Near 0
    # (|x| < 0.01) its Taylor series -pi^2 x/3 + pi^4 x^3/30 - pi^6 x^5/840 + pi^8 x^7/45360 instead:
    # no cancellation, and exact second derivatives at 0 (-pi^2/3) under nested transforms.
    p2 = math.pi**2
    x2 = x * x
    series = x * (-p2 / 3 + x2 * (p2**2 / 30 + x2 * (-(p2**3) / 840 + x2 * p2**4 / 45360)))
    small = xp.abs(x) < 0.01
    direct = (xp.cos(math.pi * x) - xp.sinc(x)) / xp.where(small, 1.0, x)
    return xp.where(small, series, direct)


defrule("sinc", factors=(lambda xp, ans, x: _dsinc(xp, x),))
_elementwise("expit", lambda xp, ans, x: ans * (1 - ans))
_elementwise("logit", lambda xp, ans, x: 1 / (x * (1 - x)))
# erf is rules/nn.py's (no SciPy needed: the torch adapter's aten.erf uses it too); erfc' = -erf'
# and erfinv' = sqrt(pi)/2 e^{erfinv(x)^2}
_elementwise("erfc", lambda xp, ans, x: (-2 / math.sqrt(math.pi)) * xp.exp(-x * x))
_elementwise("erfinv", lambda xp, ans, x: (math.sqrt(math.pi) / 2) * xp.exp(ans * ans))
# ndtr = Phi, the normal CDF: Phi' = phi = e^{-x^2/2} / sqrt(2 pi); log_ndtr' = phi / Phi = e^{-x^2/2 - ans} / sqrt(2pi)
_elementwise("ndtr", lambda xp, ans, x: xp.exp(-0.5 * x * x) / SQRT_2PI)
_elementwise("log_ndtr", lambda xp, ans, x: xp.exp(-0.5 * x * x - ans) / SQRT_2PI)
_elementwise("gammaln", lambda xp, ans, x: apply("digamma", x))
_elementwise("digamma", lambda xp, ans, x: apply("polygamma", x, n=1))
defrule(
    # scipy.special.polygamma(n, x) is a Python function, not a ufunc: reach this rule with apply (a lower-level
    # Dual, under nested transforms, too)
    "polygamma",
    primal=lambda xp, x, n: apply("polygamma", x, n=n) if type(x) is Dual else special(xp).polygamma(n, x),
    factors=(lambda xp, ans, x, n: apply("polygamma", x, n=n + 1),),
)
_elementwise(
    "xlogy",
    lambda xp, ans, x, y: xp.where((x == 0) & (y == 0), 0 * y, xp.log(y)),
    lambda xp, ans, x, y: xp.where(x == 0, 0 * x, x / y),
)
_elementwise(
    "xlog1py",
    lambda xp, ans, x, y: xp.where((x == 0) & (y == -1), 0 * y, xp.log1p(y)),
    lambda xp, ans, x, y: xp.where(x == 0, 0 * x, x / (1 + y)),
)

# the rules whose primal is SciPy's (or CuPy's cupyx.scipy): usable once SciPy is installed
NEEDS_SCIPY = ("expit", "logit", "erfc", "erfinv", "ndtr", "log_ndtr", "gammaln", "digamma", "polygamma",
               "xlogy", "xlog1py")  # fmt: skip
