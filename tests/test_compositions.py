"""Random compositions of rules (hypothesis), checked against torch.func.jacrev.

Each program is a random chain of unary and binary steps on a small vector; the same
program is built once on NumPy (differentiated by dualjac) and once on torch
(differentiated in reverse mode), and the Jacobians must agree to rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

import dualjac as dj

torch = pytest.importorskip("torch")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# (numpy, torch) pairs, all smooth on the whole real line
UNARY = {
    "sin": (np.sin, torch.sin),
    "tanh": (np.tanh, torch.tanh),
    "exp-ish": (lambda x: np.exp(-(x**2)), lambda x: torch.exp(-(x**2))),
    "log1p-sq": (lambda x: np.log1p(x * x), lambda x: torch.log1p(x * x)),
    "arctan": (np.arctan, torch.atan),
    "square": (np.square, torch.square),
    "softplus": (lambda x: np.logaddexp(x, 0.0), lambda x: torch.logaddexp(x, torch.zeros_like(x))),
    "cumsum": (lambda x: np.cumsum(x, axis=-1), lambda x: torch.cumsum(x, dim=-1)),
    "flip": (lambda x: x[..., ::-1], lambda x: torch.flip(x, dims=(-1,))),
    "normalize": (lambda x: x / np.sqrt(1 + (x * x).sum()), lambda x: x / torch.sqrt(1 + (x * x).sum())),
}
BINARY = {
    "add": (np.add, torch.add),
    "mul": (np.multiply, torch.mul),
    "sub": (np.subtract, torch.sub),
    "div": (lambda a, b: a / (1.5 + b * b), lambda a, b: a / (1.5 + b * b)),
    "hypot1": (lambda a, b: np.hypot(a, 1 + b * b), lambda a, b: torch.hypot(a, 1 + b * b)),
}

step = st.one_of(
    st.tuples(st.just("u"), st.sampled_from(sorted(UNARY)), st.integers(0, 10)),
    st.tuples(st.just("b"), st.sampled_from(sorted(BINARY)), st.integers(0, 10)),
)


def _run(program, x, lib):
    """Values are a growing list; each step reads earlier values and appends one."""
    vals = [x]
    mix = x[::-1] if lib == 0 else torch.flip(x, dims=(0,))
    vals.append(mix)
    for kind, name, j in program:
        a = vals[j % len(vals)]
        b = vals[(j * 7 + 1) % len(vals)]
        fn = (UNARY if kind == "u" else BINARY)[name][lib]
        vals.append(fn(a) if kind == "u" else fn(a, b))
    return vals[-1]


@settings(max_examples=60, deadline=None, derandomize=True)
@given(program=st.lists(step, min_size=1, max_size=8), seed=st.integers(0, 2**16))
def test_random_compositions_match_torch_jacrev(program, seed):
    x = np.random.default_rng(seed).uniform(-1.5, 1.5, size=4)
    J = dj.jacfwd(lambda x: _run(program, x, 0))(x)
    ref = torch.func.jacrev(lambda x: _run(program, x, 1))(torch.as_tensor(x))
    np.testing.assert_allclose(J, ref.numpy(), rtol=1e-10, atol=1e-12, err_msg=str(program))
