"""dualjac: Jacobians by forward-mode automatic differentiation on dual numbers.

>>> import numpy as np, dualjac as dj
>>> dj.jacfwd(lambda x: np.sin(x) * x)(np.array([0.0, 1.0])).round(4).tolist()
[[0.0, 0.0], [0.0, 1.3818]]
"""

from .dual import Dual
from .errors import NonLinearError, NoTransposeError, TangentLossError, UnsupportedOpError
from .graph import Graph
from .reverse import grad, hvp, jacrev, linearize, vjp
from .rules import RULES
from .transforms import batch_jacobian, config, hessian, jacfwd, jacobian, jvp

__all__ = [
    "Dual",
    "Graph",
    "NoTransposeError",
    "NonLinearError",
    "RULES",
    "TangentLossError",
    "UnsupportedOpError",
    "batch_jacobian",
    "config",
    "grad",
    "hessian",
    "hvp",
    "jacfwd",
    "jacobian",
    "jacrev",
    "jvp",
    "linearize",
    "vjp",
]
__version__ = "0.1.0"
