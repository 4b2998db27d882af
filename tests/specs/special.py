"""Specs for rules/special.py: np.sinc and SciPy's special-function ufuncs (scipy.special.expit,
erf, gammaln, ...), which reach their rules through ``__array_ufunc__``. Without SciPy only the
sinc specs exist (the coverage test then skips the SciPy rules)."""

from __future__ import annotations

import numpy as np
import torch

from dualjac.rules import apply
from rule_specs import BINARY, Spec, draw


def _near_zero(rng, shape, dtype):
    """sinc's removable singularity: exact zeros and tiny values among ordinary ones."""
    x = draw(rng, shape, dtype)
    pick = rng.random(shape)
    return (np.where(pick < 0.3, 0.0, np.where(pick < 0.5, 1e-3 * x, x)).astype(dtype),)


SPECS = [
    Spec("sinc", np.sinc, domain=(-3.0, 3.0), torch=torch.sinc),
    # no torch twin: torch's sinc' is (cos(pi x) - sinc(x)) / x, which cancels near 0 (5e-8 off at x = 2e-5)
    Spec("sinc-near-zero", np.sinc, [(7,), (2, 5)], gen=_near_zero),
]

try:
    import scipy.special as sp
except ImportError:  # SciPy is optional: without it, only the sinc specs
    sp = None

if sp is not None:

    def _xlogy_zeros(rng, shapes, dtype):
        x = draw(rng, shapes[0], dtype)
        x[rng.random(shapes[0]) < 0.4] = 0  # the value is 0 there; d/dx is log y, d/dy is 0
        return x, draw(rng, shapes[1], dtype, 0.2, 3.0)

    POSITIVE = (0.2, 3.0)
    SPECS += [
        Spec("expit", sp.expit, domain=(-6.0, 6.0), torch=torch.special.expit),
        Spec("logit", sp.logit, domain=(0.05, 0.95), torch=torch.special.logit),
        Spec("scipy-erf", sp.erf, torch=torch.special.erf),  # scipy.special.erf reaches rules/nn.py's erf
        Spec("erfc", sp.erfc, torch=torch.special.erfc),
        Spec("erfinv", sp.erfinv, domain=(-0.9, 0.9), torch=torch.special.erfinv),
        Spec("gammaln", sp.gammaln, domain=POSITIVE, torch=torch.special.gammaln),
        Spec(
            "digamma",
            lambda x: (sp.digamma(x), sp.psi(x)),
            domain=POSITIVE,
            torch=lambda x: (torch.special.digamma(x),) * 2,
        ),
        Spec(
            "polygamma",
            lambda x: apply("polygamma", x, n=1),
            domain=POSITIVE,
            torch=lambda x: torch.special.polygamma(1, x),
        ),
        Spec("ndtr", sp.ndtr, torch=torch.special.ndtr),
        Spec("log_ndtr", sp.log_ndtr, domain=(-6.0, 3.0), torch=torch.special.log_ndtr),
        Spec(
            "xlogy",
            sp.xlogy,
            list(BINARY),
            gen=lambda rng, s, dt: (draw(rng, s[0], dt), draw(rng, s[1], dt, *POSITIVE)),
            torch=torch.special.xlogy,
        ),
        Spec("xlogy-at-zero", sp.xlogy, [((6,), (6,)), ((2, 3), (3,))], gen=_xlogy_zeros),
        Spec(
            "xlog1py",
            sp.xlog1py,
            list(BINARY),
            gen=lambda rng, s, dt: (draw(rng, s[0], dt), draw(rng, s[1], dt, -0.8, 2.0)),
            torch=torch.special.xlog1py,
        ),
        Spec(
            "scipy-outer",
            lambda x, y: sp.xlogy.outer(x, y),
            [((3,), (2,))],
            gen=lambda rng, s, dt: (draw(rng, s[0], dt), draw(rng, s[1], dt, *POSITIVE)),
            torch=lambda x, y: torch.special.xlogy(x[:, None], y),
        ),
    ]
