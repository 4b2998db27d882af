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


_nan, _inf = float("nan"), float("inf")
_SORTS = {
    "sort_desc": lambda x: torch.sort(x, 1, descending=True).values,
    "sort_asc": lambda x: torch.sort(x, 1).values,
    "sort_desc_stable_idx": lambda x: torch.sort(x, dim=1, descending=True, stable=True).indices,
    "sort_asc_stable_idx": lambda x: torch.sort(x, dim=1, stable=True).indices,
    "sort_dim0_desc": lambda x: torch.sort(x, 0, descending=True).values,
    "topk_largest": lambda x: torch.topk(x, 3, 1).values,
    "topk_smallest": lambda x: torch.topk(x, 3, 1, largest=False).values,
}


@pytest.mark.parametrize("name", list(_SORTS))
def test_sort_topk_nan_largest_and_stable_like_torch(name):
    # torch: NaN sorts as the largest value (first when descending, last ascending); ties keep their order
    f = _SORTS[name]
    rows = [[0.0, _nan, 5.0, 1.0, _inf, 5.0, -_inf], [2.0, 1.0, 2.0, _nan, 0.5, _nan, 3.0]]
    if "topk" in name:  # which of tied values topk picks is torch's kernel's choice: no ties here
        rows = [[0.0, _nan, 5.0, 1.0, _inf, 4.0, -_inf], [2.0, 1.0, 2.5, _nan, 0.5, -1.0, 3.0]]
    x = torch.tensor(rows, dtype=torch.float64)
    g = from_torch(f, x)
    np.testing.assert_array_equal(g(x.numpy()), f(x).numpy())
    if "idx" not in name:  # the Jacobian follows the permutation (a NaN's row is its one-hot, as torch)
        np.testing.assert_array_equal(np.asarray(dj.jacfwd(g)(x.numpy())), torch.func.jacrev(f)(x).numpy())


@pytest.mark.parametrize("bad", [-1, 10, -11])
def test_embedding_out_of_range_id_raises_like_torch(bad):
    # torch raises on an id outside [0, num_embeddings); NumPy's take would wrap a negative one
    torch.manual_seed(0)
    emb = torch.nn.Embedding(10, 2).double().eval()
    ids = torch.tensor([[1, 2], [3, 4]])
    g = from_torch(emb, ids)
    np.testing.assert_allclose(g(ids.numpy()), emb(ids).detach().numpy(), rtol=1e-15)
    bad_ids = torch.tensor([[bad, 2], [3, 4]])
    with pytest.raises(IndexError):
        emb(bad_ids)
    with pytest.raises(IndexError, match=rf"id {bad}\b.*10 rows"):
        g(bad_ids.numpy())


_EYE = torch.eye(3, dtype=torch.float64)
_LINALG = {
    "inv": lambda x: torch.linalg.inv(x[:, :3] + 3 * _EYE),
    "inverse": lambda x: torch.inverse(x[:, :3] + 3 * _EYE),
    "cholesky": lambda x: torch.linalg.cholesky(x[:, :3] @ x[:, :3].T + _EYE),
    "cholesky_upper": lambda x: torch.linalg.cholesky(x[:, :3] @ x[:, :3].T + _EYE, upper=True),
    "solve": lambda x: torch.linalg.solve(x[:, :3] + 3 * _EYE, x),
}


@pytest.mark.parametrize("name", list(_LINALG))
def test_linalg_with_error_checks_lowers(name):
    # torch.linalg.inv/cholesky/solve export their singularity check as a side effect (a token input)
    f = _LINALG[name]
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    g = from_torch(f, x)
    np.testing.assert_allclose(g(x.numpy()), f(x).numpy(), rtol=1e-12, atol=1e-14)
    jac = np.asarray(dj.jacfwd(g)(x.numpy()))
    np.testing.assert_allclose(jac, torch.func.jacrev(f)(x).numpy(), rtol=1e-10, atol=1e-12)


def test_linalg_singular_matrix_raises_like_torch():
    # the dropped check's job: NumPy's LinAlgError where torch raises its own
    f = lambda x: torch.linalg.inv(x)  # noqa: E731
    g = from_torch(f, torch.eye(3, dtype=torch.float64).repeat(2, 1, 1))
    with pytest.raises(RuntimeError):
        f(torch.zeros(2, 3, 3, dtype=torch.float64))
    with pytest.raises(np.linalg.LinAlgError):
        g(np.zeros((2, 3, 3)))


def test_other_side_effects_are_named():
    f = lambda x: (torch.ops.aten._print("hi"), x * 2)[1]  # noqa: E731
    with pytest.raises(dj.UnsupportedOpError, match="side-effecting op aten._print"):
        from_torch(f, torch.ones(2, 3, dtype=torch.float64))
