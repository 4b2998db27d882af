"""What the batch_jacobian tests share (test_row_blocks, test_row_check): a call-recording wrapper,
an MLP that runs on NumPy and torch alike, and torch.func's per-sample Jacobian as the reference."""

from __future__ import annotations

import numpy as np


class Spy:
    """``f``, recording the number of rows of every call."""

    def __init__(self, f):
        self.f, self.rows = f, []

    def __call__(self, x):
        self.rows.append(np.shape(x)[0])
        return self.f(x)


def mlp(rng, dtype, n_in=6, width=64, n_out=5):
    """``tanh(x @ W1 + b) @ W2``; ``f(x, torch)`` runs it on torch tensors."""
    W1 = (rng.standard_normal((n_in, width)) / np.sqrt(n_in)).astype(dtype)
    W2 = (rng.standard_normal((width, n_out)) / np.sqrt(width)).astype(dtype)
    b = (0.1 * rng.standard_normal(width)).astype(dtype)

    def f(x, lib=np):
        w1, w2, bb = (lib.as_tensor(a) for a in (W1, W2, b)) if lib is not np else (W1, W2, b)
        return lib.tanh(x @ w1 + bb) @ w2

    return f


def torch_per_sample(f, x):
    """Per-sample Jacobians of ``f`` (an ``mlp``) by ``torch.func.vmap(jacrev)``."""
    import torch

    tf = torch.func
    return tf.vmap(tf.jacrev(lambda s: f(s[None], torch)[0]))(torch.as_tensor(x)).numpy()
