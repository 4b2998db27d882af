"""Transforms against references: torch.func / torch.autograd.functional, closed forms,
and K lanes == K single-lane runs."""

from __future__ import annotations

import numpy as np
import pytest

import dualjac as dj

torch = pytest.importorskip("torch")


def _mlp_params(rng, sizes, dtype=np.float64):
    return {
        f"{i}.weight": (rng.standard_normal((m, n)) / np.sqrt(n)).astype(dtype)
        for i, (n, m) in enumerate(zip(sizes[:-1], sizes[1:]))
    } | {f"{i}.bias": rng.standard_normal(m).astype(dtype) for i, m in enumerate(sizes[1:])}


def _mlp(p, x, lib=np):
    n = len(p) // 2
    for i in range(n):
        x = x @ p[f"{i}.weight"].T + p[f"{i}.bias"]
        if i < n - 1:
            x = lib.tanh(x)
    return x


def _t(tree):
    if isinstance(tree, dict):
        return {k: torch.as_tensor(v) for k, v in tree.items()}
    return torch.as_tensor(tree)


def test_seed_001_example_prints_the_forum_answer():
    f = lambda x1, x2, x3: (x1 + x2, x3 * x1, x2**3)
    J = dj.jacobian(f, (np.array(3.0), np.array(4.0), np.array(5.0)))
    assert [[float(v) for v in row] for row in J] == [[1, 1, 0], [5, 0, 3], [0, 48, 0]]
    ref = torch.autograd.functional.jacobian(f, (torch.tensor(3.0), torch.tensor(4.0), torch.tensor(5.0)))
    assert [[float(v) for v in row] for row in ref] == [[1, 1, 0], [5, 0, 3], [0, 48, 0]]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_jacfwd_of_mlp_matches_torch_jacrev(rng, dtype):
    p = _mlp_params(rng, [5, 7, 3], dtype)
    x = rng.standard_normal(5).astype(dtype)
    J = dj.jacfwd(lambda x: _mlp(p, x))(x)
    ref = torch.func.jacrev(lambda x: _mlp(_t(p), x, torch))(_t(x))
    assert J.dtype == dtype and J.shape == (3, 5)
    np.testing.assert_allclose(J, ref.numpy(), rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)


def test_jacfwd_wrt_parameter_dict_comes_back_as_dict(rng):
    p = _mlp_params(rng, [4, 6, 2])
    x = rng.standard_normal((3, 4))
    J = dj.jacfwd(lambda p: _mlp(p, x))(p)
    ref = torch.func.jacrev(lambda p: _mlp(p, _t(x), torch))(_t(p))
    assert list(J) == list(p)
    for k in p:
        assert J[k].shape == (3, 2) + p[k].shape
        np.testing.assert_allclose(J[k], ref[k].numpy(), rtol=1e-12, atol=1e-14)


def test_pytree_inputs_and_outputs_follow_torch_func_jacfwd(rng):
    a, b = rng.standard_normal(3), rng.standard_normal((2, 2))

    def f(x, pair):
        u, v = pair
        return {"s": np.sin(x) * u.sum(), "m": [v @ v, x[:2] * v[0]]}

    J = dj.jacfwd(f, argnums=(0, 1))(a, (b[0], b))
    tf = lambda x, pair: {"s": torch.sin(x) * pair[0].sum(), "m": [pair[1] @ pair[1], x[:2] * pair[1][0]]}
    ref = torch.func.jacfwd(tf, argnums=(0, 1))(_t(a), (_t(b[0]), _t(b)))
    got_leaves = [J["s"][0], J["s"][1][0], J["s"][1][1], J["m"][0][0], J["m"][0][1][1], J["m"][1][1][0]]
    ref_leaves = [ref["s"][0], ref["s"][1][0], ref["s"][1][1], ref["m"][0][0], ref["m"][0][1][1], ref["m"][1][1][0]]
    for g, r in zip(got_leaves, ref_leaves):
        np.testing.assert_allclose(g, r.numpy(), rtol=1e-12, atol=1e-14)


def test_argnums_negative_and_has_aux(rng):
    x, y = rng.standard_normal(3), rng.standard_normal(3)
    J, aux = dj.jacfwd(lambda x, y: (x * y, {"norm": (x * y).sum()}), argnums=-1, has_aux=True)(x, y)
    np.testing.assert_allclose(J, np.diag(x))
    assert isinstance(aux["norm"], float | np.floating | np.ndarray) and not isinstance(aux["norm"], dj.Dual)
    assert aux["norm"] == pytest.approx(float((x * y).sum()))


def test_k_lanes_equal_k_single_lane_runs(rng):
    """jacfwd == the columns of K separate jvp calls (vmap(jvp))."""
    p = _mlp_params(rng, [4, 5, 3])
    f = lambda x: np.sin(_mlp(p, x)) * x[:3]
    x = rng.standard_normal(4)
    J = dj.jacfwd(f)(x)
    cols = [dj.jvp(f, (x,), (np.eye(4)[i],))[1] for i in range(4)]
    np.testing.assert_allclose(J, np.stack(cols, axis=-1), rtol=1e-14, atol=0)


def test_jvp_matches_torch_func_jvp(rng):
    x, v = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    f = lambda x: (np.tanh(x) @ x.T, np.exp(x).sum(axis=0))
    out, t = dj.jvp(f, (x,), (v,))
    tf = lambda x: (torch.tanh(x) @ x.T, torch.exp(x).sum(dim=0))
    ref_out, ref_t = torch.func.jvp(tf, (_t(x),), (_t(v),))
    for a, b in zip(out + t, ref_out + ref_t):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-12)


@pytest.mark.parametrize("item_in,item_out", [((4,), (3,)), ((2, 3), (2, 2)), ((5,), ())])
def test_batch_jacobian_matches_vmap_jacrev(rng, item_in, item_out):
    B, n = 6, int(np.prod(item_in))
    m = int(np.prod(item_out)) if item_out else 1
    W = rng.standard_normal((n, m))

    def f(x, lib=np):
        y = lib.tanh(x.reshape(x.shape[0], n) @ W) ** 2
        return y.reshape((x.shape[0],) + item_out)

    x = rng.standard_normal((B,) + item_in)
    J = dj.batch_jacobian(f, x)
    Wt = torch.as_tensor(W)

    def tf(x):  # one sample
        return (torch.tanh(x.reshape(1, n) @ Wt) ** 2).reshape(item_out)

    ref = torch.func.vmap(torch.func.jacrev(tf))(_t(x))
    assert J.shape == (B,) + item_out + item_in
    np.testing.assert_allclose(J, ref.numpy(), rtol=1e-12, atol=1e-14)


def test_batch_jacobian_uses_features_as_lanes_not_batch_times_features(rng, monkeypatch):
    seen = []
    real = dj.Dual.__init__

    def spy(self, primal, tangent, level=1):
        seen.append(tangent.shape[0])
        real(self, primal, tangent, level)

    monkeypatch.setattr(dj.Dual, "__init__", spy)
    dj.batch_jacobian(lambda x: np.sin(x), rng.standard_normal((100, 3)), check_rows=False)
    assert set(seen) == {3}
    dj.batch_jacobian(lambda x: np.sin(x), rng.standard_normal((100, 3)))
    assert set(seen) == {3}  # elementwise: implicit lanes to the end, which cannot mix rows (no check)
    seen.clear()  # where a tangent is written out, the row-independence check is one single-lane pass
    dj.batch_jacobian(lambda x: np.sin(x) @ np.ones((3, 2)), rng.standard_normal((100, 3)))
    assert set(seen) == {1, 3}


def test_hessian_matches_torch(rng):
    A = rng.standard_normal((3, 3))
    f = lambda x, A=A, lib=np: lib.sin(x @ A @ x) + (x**3).sum()
    x = rng.standard_normal(3)
    H = dj.hessian(f)(x)
    ref = torch.func.hessian(lambda x: f(x, _t(A), torch))(_t(x))
    np.testing.assert_allclose(H, ref.numpy(), rtol=1e-11, atol=1e-12)


def test_data_dependent_control_flow_works():
    def f(x):
        if x.sum() > 0:  # comparisons give plain booleans of the primal
            return x * 2
        return x * 3

    np.testing.assert_allclose(dj.jacfwd(f)(np.array([1.0, 2.0])), 2 * np.eye(2))
    np.testing.assert_allclose(dj.jacfwd(f)(np.array([-1.0, -2.0])), 3 * np.eye(2))


def test_output_independent_of_input_gives_zeros():
    J = dj.jacfwd(lambda x, y: y * 2, argnums=0)(np.ones(3), np.ones(2))
    assert J.shape == (2, 3) and not J.any()


def test_python_float_input():
    assert dj.jacfwd(lambda x: x**2)(3.0) == 6.0


def test_elementwise_chains_keep_identity_lanes_implicit(rng, monkeypatch):
    """An elementwise chain on a seeded input carries O(|x|) tangent data, not O(K |x|),
    and mixing it with a dense branch gives the same Jacobian as K single-lane runs."""
    from dualjac.lanes import Diagonal

    kinds = []
    real = dj.Dual.__init__

    def spy(self, primal, tangent, level=1):
        kinds.append(type(tangent) is Diagonal)
        real(self, primal, tangent, level)

    f = lambda x: x * np.sin(x) + np.exp(-(x**2)) * np.cos(3 * x) + np.log1p(x**2)
    x = rng.standard_normal((5, 4))
    monkeypatch.setattr(dj.Dual, "__init__", spy)
    J = dj.batch_jacobian(f, x, check_rows=False)
    monkeypatch.undo()
    assert all(kinds)
    d = np.sin(x) + x * np.cos(x) - 2 * x * np.exp(-(x**2)) * np.cos(3 * x)
    d += -3 * np.exp(-(x**2)) * np.sin(3 * x) + 2 * x / (1 + x**2)
    np.testing.assert_allclose(J, np.einsum("bi,ij->bij", d, np.eye(4)), rtol=1e-12, atol=1e-14)

    W = rng.standard_normal((4, 4))
    g = lambda x: np.tanh(x) * (x @ W) + np.sin(x)  # Diagonal meets a dense branch
    J = dj.jacfwd(g)(x[0])
    cols = [dj.jvp(g, (x[0],), (np.eye(4)[i],))[1] for i in range(4)]
    np.testing.assert_allclose(J, np.stack(cols, axis=-1), rtol=1e-14)


@pytest.mark.parametrize(
    "f, want",
    [
        (lambda x: x + np.ones(3), np.float64),  # a float64 constant promotes, as in NumPy
        (lambda x: np.concatenate([x, np.ones(2)]), np.float64),
        (lambda x: x * np.float32(2.0) + 1.0, np.float32),  # Python floats do not
        (lambda x: np.tanh(x @ np.ones((3, 2), np.float32)), np.float32),
    ],
)
def test_jacobian_dtype_is_the_output_dtype(f, want):
    x = np.linspace(0.1, 0.3, 3, dtype=np.float32)
    J = dj.jacfwd(f)(x)
    out, t = dj.jvp(f, (x,), (np.ones(3, np.float32),))
    assert J.dtype == want and out.dtype == want and t.dtype == want


@pytest.mark.parametrize(
    "tree",
    [
        (1, 2, 3),
        [1, (2, None), {"b": 3, "a": [4]}],
        {"x": (1,), "y": None},
        None,
        5,
        (),
        [[]],
        __import__("collections").namedtuple("P", "a b")(1, (2, 3)),
    ],
)
def test_tree_round_trip(tree):
    from dualjac.tree import flatten, unflatten

    leaves, treedef = flatten(tree)
    back = unflatten(treedef, leaves)
    assert back == tree and type(back) is type(tree)
    if isinstance(tree, list):
        assert back is not tree  # a new container, never the leaves list itself


@pytest.mark.parametrize("chunk", [None, 1, 2])
def test_scalar_inputs_give_0d_array_blocks(chunk):
    f = lambda x1, x2, x3: (x1 + x2, x3 * x1, x2**3)
    J = dj.jacobian(f, (np.array(3.0), np.array(4.0), np.array(5.0)), chunk_size=chunk)
    assert all(type(b) is np.ndarray and b.shape == () for row in J for b in row)
    assert [[float(b) for b in row] for row in J] == [[1, 1, 0], [5, 0, 3], [0, 48, 0]]
    J = dj.jacfwd(lambda a, b: a * b.sum(), argnums=(0, 1), chunk_size=chunk)(np.array(2.0), np.ones((2, 2)))
    assert J[0].shape == () and J[1].shape == (2, 2) and float(J[0]) == 4.0 and (J[1] == 2).all()


def test_input_dtypes_promote_like_result_type():
    f = lambda a, b: a * b
    ones = lambda dt: np.ones(2, dt)
    assert dj.jacfwd(f, argnums=(0, 1))(ones(np.float32), ones(np.float64))[0].dtype == np.float64
    assert dj.jacfwd(f, argnums=(0, 1))(ones(np.float32), ones(np.float32))[0].dtype == np.float32
    J = dj.jacfwd(f, argnums=(0, 1))(ones(">f8"), ones(">f8"))
    assert J[0].dtype == np.result_type(np.dtype(">f8"), np.dtype(">f8"))


def test_batch_jacobian_names_an_output_without_the_batch_axis():
    with pytest.raises(ValueError, match=r"has shape \(2, 4\), but every output must keep the batch axis of size 4"):
        dj.batch_jacobian(lambda x: np.tanh(x).T, np.ones((4, 2)))


def test_an_empty_batch_gives_an_empty_stack_of_jacobians():
    assert dj.batch_jacobian(np.sin, np.ones((0, 3))).shape == (0, 3, 3)


def test_nothing_to_differentiate_is_a_clear_error():
    with pytest.raises(ValueError, match="nothing to differentiate"):
        dj.jacfwd(lambda p: 1.0)({})


def test_an_argument_named_twice_in_argnums_is_an_error():
    with pytest.raises(ValueError, match="twice"):
        dj.jacfwd(lambda x, y: x * y, argnums=(0, -2))(np.ones(2), np.ones(2))


def test_graph_params_with_an_unknown_name_are_an_error():
    from dualjac.graph import Graph, Node, Ref

    g = Graph(("x",), [Node("y", "matmul", (Ref("input", "x"), Ref("param", "0.weight")))], Ref("node", "y"),
              params={"0.weight": np.ones((2, 2))})
    with pytest.raises(KeyError, match="0.weight"):
        dj.jacfwd(lambda p: g(np.ones(2), params=p))({"weight": np.ones((2, 2))})
