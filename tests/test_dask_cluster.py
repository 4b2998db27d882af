"""batch_jacobian of Dask arrays on a real process cluster (distributed.LocalCluster, 2 worker
processes): results equal the in-memory batch_jacobian, for NumPy functions and a from_torch Graph,
in float32 and float64, and the workers never import torch."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest

import dualjac as dj

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
djd = pytest.importorskip("dualjac.dask")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None, silence_logs=logging.ERROR
    ) as cluster, distributed.Client(cluster) as c:
        yield c


def _worker_state():
    import sys

    import dualjac

    return dualjac.__file__, "torch" in sys.modules


def assert_same(got, ref, dtype):
    """Equal to rounding: a block of rows may take another BLAS kernel than the whole batch, whose
    sums round differently (seen as 1-2 ulp on AMD EPYC for float32 and float64 alike)."""
    assert got.dtype == ref.dtype == dtype and got.shape == ref.shape
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(got, ref, rtol=0, atol=16 * eps * np.abs(ref).max())


def mlp(rng, dtype):
    W1, W2 = rng.standard_normal((16, 32)).astype(dtype), rng.standard_normal((32, 16)).astype(dtype) / 4
    b1 = rng.standard_normal(32).astype(dtype)
    return lambda x: np.tanh(x @ W1 + b1) @ W2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_function_on_the_cluster(client, rng, dtype):
    f = mlp(rng, dtype)
    xn = rng.standard_normal((3000, 16)).astype(dtype)
    J = dj.batch_jacobian(f, da.from_array(xn, chunks=(700, 16)))
    got = J.compute()
    assert_same(got, dj.batch_jacobian(f, xn), dtype)
    # and the block-wise reductions, with only (B,) coming back
    sign, logdet = djd.slogdet(J)
    norms, s, ld = client.compute([djd.frobenius_norms(J), sign, logdet], sync=True)
    np.testing.assert_allclose(norms, np.linalg.norm(got, axis=(1, 2)), rtol=1e-5 if dtype == np.float32 else 1e-14)
    ref_s, ref_ld = np.linalg.slogdet(got)
    np.testing.assert_array_equal(s, ref_s)
    np.testing.assert_array_equal(ld, ref_ld)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_graph_on_workers_without_torch(client, rng, dtype):
    torch = pytest.importorskip("torch")
    from dualjac.torch import from_torch

    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 32), torch.nn.GELU(), torch.nn.LayerNorm(32), torch.nn.Linear(32, 4)
    ).eval()
    g = from_torch(model, torch.zeros(2, 8), dtype=dtype)
    xn = rng.standard_normal((2000, 8)).astype(dtype)
    got = dj.batch_jacobian(g, da.from_array(xn, chunks=(512, 8))).compute()
    assert_same(got, dj.batch_jacobian(g, xn), dtype)
    states = client.run(_worker_state)
    assert len(states) == 2
    for where, has_torch in states.values():
        assert where == dj.__file__  # the workers run this checkout's dualjac
        assert not has_torch, "a worker imported torch to run a from_torch Graph"
    assert "torch" in sys.modules  # the client did (the check above is not vacuous)
