"""Convolution runs im2col + GEMM over cache-sized batch chunks (``kernels.conv.COLS_BYTES``); the spec
shapes are too small to be split, so here the chunks are forced down to one row each."""

from __future__ import annotations

import numpy as np
import pytest

import dualjac as dj
from dualjac.kernels import conv as conv_kernels
from dualjac.rules import apply

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("kw", [{}, {"stride": 2, "padding": 1}, {"padding": "same", "dilation": 2, "groups": 2}])
def test_conv_split_into_one_row_chunks_matches_torch(monkeypatch, rng, kw):
    x = rng.standard_normal((3, 4, 7, 6))
    w = rng.standard_normal((6, 4 // kw.get("groups", 1), 3, 3))
    b = rng.standard_normal(6)
    monkeypatch.setattr(conv_kernels, "COLS_BYTES", 1)
    J = dj.jacfwd(lambda x, w, b: apply("conv", x, w, b, **kw), argnums=(0, 1, 2))(x, w, b)
    conv = lambda x, w, b: torch.nn.functional.conv2d(x, w, b, **kw)
    ref = torch.autograd.functional.jacobian(conv, tuple(map(torch.from_numpy, (x, w, b))))
    for got, want in zip(J, ref):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-12, atol=1e-12)
