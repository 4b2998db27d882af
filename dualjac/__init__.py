"""dualjac: Jacobians by forward-mode automatic differentiation on dual numbers.

>>> import numpy as np, dualjac as dj
>>> dj.jacfwd(lambda x: np.sin(x) * x)(np.array([0.0, 1.0])).round(4).tolist()
[[0.0, 0.0], [0.0, 1.3818]]
"""

from . import nn, numpy_compose  # noqa: F401  (numpy_compose: the rest of NumPy's table)
from .batch import batch_jacobian
from .buffers import Workspace
from .custom import defrule, register_numpy, stop_gradient
from .dual import Dual
from .errors import (
    ComplexValueError,
    EscapedDualError,
    NondeterministicFunctionError,
    NonLinearError,
    NoTransposeError,
    RowMixingError,
    TangentLossError,
    TapeTooLargeError,
    UnsupportedOpError,
)
from .graph import Graph
from .reverse import grad, hvp, jacrev, linearize, vjp
from .rules import RULES
from .settings import config
from .transforms import hessian, jacfwd, jacobian, jvp

__all__ = [
    "ComplexValueError",
    "EscapedDualError",
    "NondeterministicFunctionError",
    "RowMixingError",
    "Dual",
    "Graph",
    "NoTransposeError",
    "NonLinearError",
    "RULES",
    "TangentLossError",
    "TapeTooLargeError",
    "UnsupportedOpError",
    "Workspace",
    "batch_jacobian",
    "config",
    "defrule",
    "grad",
    "hessian",
    "hvp",
    "jacfwd",
    "jacobian",
    "jacrev",
    "jvp",
    "nn",
    "register_numpy",
    "stop_gradient",
    "linearize",
    "vjp",
]
__version__ = "0.1.0"
