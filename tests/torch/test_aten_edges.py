"""Edge cases of the Core ATen op table against torch itself, in float64: kinks, NaN ordering, bad ids."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import dualjac as dj  # noqa: E402
from dualjac.torch import from_torch  # noqa: E402


def _jac(f, x):
    """torch's Jacobian of f at x (reverse mode), as NumPy."""
    return torch.autograd.functional.jacobian(f, x).numpy()


@pytest.mark.parametrize("f", [F.hardswish, F.hardsigmoid, torch.nn.Hardswish(), torch.nn.Hardsigmoid()])
def test_hard_activations_kinks_follow_torch(f):
    # at exactly +-3 torch takes the outer branch: hardswish' = 0 at -3, 1 at 3; hardsigmoid' = 0 at both
    x = torch.tensor([[-3.0, 3.0, -3.5, -2.9, 0.0, 2.9, 3.5]], dtype=torch.float64)
    g = from_torch(f, x)
    np.testing.assert_allclose(g(x.numpy()), f(x).numpy(), rtol=1e-15)
    # torch's hardsigmoid slope is the float32 constant 1/6: agreement to float32 there
    np.testing.assert_allclose(np.asarray(dj.jacfwd(g)(x.numpy())), _jac(f, x), rtol=1e-7, atol=0)
