"""batch_jacobian of Dask arrays, on the synchronous scheduler: results against the in-memory
batch_jacobian (itself tested against finite differences and torch), lazy graphs with the right
chunks, dtype and meta, and the edge cases (feature chunks, empty or unknown-size batches, wrong
inputs). The same code on a process cluster: test_dask_cluster.py."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import dualjac as dj

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
djd = pytest.importorskip("dualjac.dask")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


def mlp(rng, dtype, n=3, m=4):
    W1, W2 = rng.standard_normal((n, 8)).astype(dtype), rng.standard_normal((8, m)).astype(dtype)
    return lambda x: np.tanh(x @ W1) @ W2


def assert_rounding(got, ref):
    """Equal to rounding: a block of rows may take another BLAS kernel than the whole batch, whose
    sums round differently (1-2 ulp, seen on AMD EPYC)."""
    assert got.dtype == ref.dtype and got.shape == ref.shape
    eps = np.finfo(ref.dtype).eps
    np.testing.assert_allclose(got, ref, rtol=0, atol=16 * eps * np.abs(ref).max())


def _no_compute(shape, chunks, dtype=np.float64):
    """A Dask array that raises if any of its blocks is computed."""

    def boom(block):
        raise AssertionError("the input was computed while building the Jacobian")

    return da.zeros(shape, chunks=chunks, dtype=dtype).map_blocks(boom, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocks_equal_the_in_memory_jacobian(rng, dtype):
    f = mlp(rng, dtype)
    xn = rng.standard_normal((23, 3)).astype(dtype)
    J = dj.batch_jacobian(f, da.from_array(xn, chunks=(5, 3)))
    assert isinstance(J, da.Array)
    assert J.shape == (23, 4, 3) and J.chunks == ((5, 5, 5, 5, 3), (4,), (3,))
    assert J.dtype == dtype and type(J._meta) is np.ndarray and J._meta.dtype == dtype
    out = J.compute()
    assert out.dtype == dtype
    assert_rounding(out, dj.batch_jacobian(f, xn))


def test_building_the_jacobian_computes_nothing():
    f = lambda x: np.sin(x) * 2
    J = dj.batch_jacobian(f, _no_compute((10, 3), (4, 3)))
    assert J.shape == (10, 3, 3)
    with pytest.raises(AssertionError, match="was computed"):
        J.compute()


def test_one_dualjac_call_per_block(rng):
    calls = []

    def f(x):
        calls.append(x.shape[0])
        return np.sin(x)

    x = da.from_array(rng.standard_normal((10, 2)), chunks=(4, 2))
    J = dj.batch_jacobian(f, x, check_rows=False)  # (the row check is one more call per block)
    probe = list(calls)
    J.compute()
    assert probe == [0]  # the empty-batch probe, for shapes and meta
    assert sorted(calls[1:]) == [2, 4, 4]


def test_f_is_one_graph_key_not_part_of_every_task():
    """Weights f closes over reach each worker once as data, not inside each task's pickle."""
    cloudpickle = pytest.importorskip("cloudpickle")
    W = np.ones((256, 256))  # 512 KiB
    J = dj.batch_jacobian(lambda x: x @ W[:3, :3], da.ones((40, 3), chunks=(10, 3)))
    graph = dict(J.__dask_graph__())
    tasks = [v for k, v in graph.items() if k[0] == J.name]
    assert len(tasks) == 4 and all(len(cloudpickle.dumps(t)) < 16_000 for t in tasks)
    assert sum(len(cloudpickle.dumps(v)) > W.nbytes for v in graph.values()) == 1  # f's own key


def test_multi_axis_items_and_chunk_size(rng):
    xn = rng.standard_normal((7, 2, 3))
    f = lambda x: np.sin(x).sum(axis=2) * x[:, :, 0]  # (B, 2) from (B, 2, 3)
    J = dj.batch_jacobian(f, da.from_array(xn, chunks=(3, 2, 3)), chunk_size=2)
    assert J.shape == (7, 2, 2, 3) and J.numblocks == (3, 1, 1, 1)
    np.testing.assert_array_equal(J.compute(), dj.batch_jacobian(f, xn))


def test_pytree_outputs_one_call_per_block(rng):
    xn = rng.standard_normal((9, 3)).astype(np.float32)
    calls = []

    def f(x):
        calls.append(x.shape[0])
        return {"y": np.sin(x), "parts": (x.sum(axis=1), x[:, :2] ** 2)}

    out = dj.batch_jacobian(f, da.from_array(xn, chunks=4), check_rows=False)
    ref = dj.batch_jacobian(f, xn)
    assert set(out) == {"y", "parts"} and isinstance(out["parts"], tuple)
    calls.clear()
    got = dask.compute(out)[0]
    assert sorted(calls) == [1, 4, 4]  # all three leaves from one call per block
    for a, b in [(got["y"], ref["y"]), (got["parts"][0], ref["parts"][0]), (got["parts"][1], ref["parts"][1])]:
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_array_equal(a, b)


def test_feature_chunks_are_rechunked_with_a_warning(rng):
    xn = rng.standard_normal((8, 6))
    with pytest.warns(djd.FeatureChunksWarning, match=r"rechunk\(\{0: \"auto\", 1: -1\}\)"):
        J = dj.batch_jacobian(np.tanh, da.from_array(xn, chunks=(4, 2)))
    assert J.chunks[0] == (4, 4)
    np.testing.assert_array_equal(J.compute(), dj.batch_jacobian(np.tanh, xn))


def test_feature_rechunk_keeps_blocks_under_dasks_chunk_size(rng):
    xn = rng.standard_normal((64, 32))  # a row is 256 bytes
    with dask.config.set({"array.chunk-size": "2 KiB"}), pytest.warns(djd.FeatureChunksWarning):
        J = dj.batch_jacobian(np.tanh, da.from_array(xn, chunks=(64, 8)))
    assert max(J.chunks[0]) == 8  # 2 KiB / 256 B rows, not the 64 rows of the original blocks
    np.testing.assert_array_equal(J.compute(), dj.batch_jacobian(np.tanh, xn))


def test_batch_chunked_input_does_not_warn(rng):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dj.batch_jacobian(np.tanh, da.ones((8, 6), chunks=(3, 6)))


def test_empty_batch():
    J = dj.batch_jacobian(lambda x: np.sin(x[:, :2]), da.zeros((0, 3), chunks=(5, 3)))
    assert J.shape == (0, 2, 3)
    assert J.compute().shape == (0, 2, 3)


def test_unknown_batch_sizes(rng):
    xn = rng.standard_normal((20, 3))
    x = da.from_array(xn, chunks=(6, 3))
    keep = x[x[:, 0] > 0]  # row counts unknown until computed
    assert np.isnan(keep.shape[0])
    J = dj.batch_jacobian(np.sin, keep)
    np.testing.assert_array_equal(J.compute(), dj.batch_jacobian(np.sin, xn[xn[:, 0] > 0]))


def test_unknown_batch_sizes_and_feature_chunks_is_a_named_error(rng):
    x = da.from_array(rng.standard_normal((20, 4)), chunks=(6, 2))
    with pytest.raises(ValueError, match=r"row counts are unknown.*compute_chunk_sizes\(\)"):
        dj.batch_jacobian(np.sin, x[x[:, 0] > 0])


def test_a_graph_runs_per_block(rng):
    from dualjac.graph import Graph, Node, Ref

    g = Graph(
        inputs=("x",),
        nodes=[Node("h", "matmul", (Ref("input", "x"), Ref("param", "w"))), Node("y", "tanh", (Ref("node", "h"),))],
        outputs=Ref("node", "y"),
        params={"w": rng.standard_normal((3, 2))},
    )
    xn = rng.standard_normal((10, 3))
    J = dj.batch_jacobian(g, da.from_array(xn, chunks=3))
    assert_rounding(J.compute(), dj.batch_jacobian(g, xn))


# --- wrong inputs: the in-memory errors, raised when the graph is built ------------------------
def test_no_batch_axis():
    with pytest.raises(ValueError, match="needs a batch"):
        dj.batch_jacobian(np.sin, da.from_array(np.array(1.0)))


def test_integer_input():
    with pytest.raises(TypeError, match="dtype int64.*astype"):
        dj.batch_jacobian(np.sin, da.ones((4, 2), dtype=np.int64, chunks=2))


def test_output_without_the_batch_axis():
    with pytest.raises(ValueError, match="keep the batch axis"):
        dj.batch_jacobian(lambda x: x.sum(), _no_compute((6, 2), (3, 2)))


def test_f_that_fails_on_an_empty_batch_says_why():
    def f(x):
        if x.shape[0] == 0:
            raise ValueError("no rows")
        return x

    with pytest.raises(ValueError, match="no rows") as info:
        dj.batch_jacobian(f, da.ones((4, 2), chunks=2))
    if hasattr(info.value, "__notes__"):
        assert "empty batch" in info.value.__notes__[0]


@pytest.mark.parametrize(
    "call",
    [
        lambda f, x: dj.jacfwd(f)(x),
        lambda f, x: dj.jacfwd(lambda x: (f(x), x), has_aux=True)(x),
        lambda f, x: dj.jacobian(f, x),
        lambda f, x: dj.jacobian(lambda a, b: f(a) * b, (x, x)),
        lambda f, x: dj.jvp(f, (x,), (x,)),
    ],
    ids=["jacfwd", "jacfwd-has_aux", "jacobian", "jacobian-tuple", "jvp"],
)
def test_whole_array_transforms_refuse_dask_arrays(call):
    with pytest.raises(TypeError, match=r"Dask array: only dj.batch_jacobian"):
        call(np.sin, da.ones((4, 2), chunks=2))


def test_import_dualjac_does_not_import_dask():
    code = (
        "import sys, numpy as np, dualjac as dj; "
        "dj.batch_jacobian(np.sin, np.ones((2, 2))); print('dask' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


# --- block-wise reductions ----------------------------------------------------------------------
def test_reductions_match_numpy(rng):
    f = mlp(rng, np.float64, n=3, m=3)
    xn = rng.standard_normal((17, 3))
    J = dj.batch_jacobian(f, da.from_array(xn, chunks=5))
    ref = dj.batch_jacobian(f, xn)
    np.testing.assert_allclose(djd.frobenius_norms(J).compute(), np.linalg.norm(ref, axis=(1, 2)), rtol=1e-14)
    np.testing.assert_allclose(djd.mean_jacobian(J).compute(), ref.mean(axis=0), rtol=1e-14)
    sign, logdet = djd.slogdet(J)
    assert sign.shape == logdet.shape == (17,) and sign.chunks == ((5, 5, 5, 2),)
    ref_sign, ref_logdet = np.linalg.slogdet(ref)
    s, ld = dask.compute(sign, logdet)
    np.testing.assert_array_equal(s, ref_sign)
    np.testing.assert_allclose(ld, ref_logdet, rtol=1e-14)


def test_reductions_hold_one_block_at_a_time():
    """Each per-sample result block needs one Jacobian block only: no task ever holds (B, m, n)."""
    from dask.core import get_deps

    J = dj.batch_jacobian(np.tanh, da.ones((12, 3), chunks=4))
    j_keys = {k for k in dict(J.__dask_graph__()) if k[0] == J.name}
    assert len(j_keys) == 3
    for r in (djd.frobenius_norms(J), djd.slogdet(J)[1]):
        dsk = dict(r.__dask_graph__())
        deps, _ = get_deps(dsk)

        def upstream(k):
            seen, todo = set(), [k]
            while todo:
                for d in deps.get(todo.pop(), ()):
                    if d not in seen:
                        seen.add(d)
                        todo.append(d)
            return seen

        assert r.numblocks == (3,)
        assert [len(upstream(k) & j_keys) for k in r.__dask_keys__()] == [1, 1, 1]


def test_slogdet_needs_square_jacobians():
    J = dj.batch_jacobian(lambda x: x[:, :2], da.ones((4, 3), chunks=(2, 3)))
    with pytest.raises(ValueError, match=r"square per-sample Jacobians \(B, n, n\), got shape \(4, 2, 3\)"):
        djd.slogdet(J)


def test_a_cupy_like_block_type_stays_that_type(rng):
    """Blocks of a non-NumPy array type (CuPy on a GPU) give a Jacobian of that type: its meta, its
    blocks, its reductions. ``StrictArray`` stands in for CuPy (it refuses conversion to NumPy)."""
    from test_backend import StrictArray, strict

    from dualjac import backend

    backend.register_namespace(StrictArray, strict)
    try:
        W = rng.standard_normal((3, 3))
        xn = rng.standard_normal((7, 3))
        x = da.from_array(xn, chunks=(3, 3)).map_blocks(StrictArray, meta=StrictArray(np.empty((0, 3))))
        J = dj.batch_jacobian(lambda x: np.tanh(x @ StrictArray(W)), x)
        assert type(J._meta) is StrictArray and J.dtype == np.float64
        ref = dj.batch_jacobian(lambda x: np.tanh(x @ W), xn)
        got = J.compute()
        assert type(got) is StrictArray
        assert_rounding(got.a, ref)
        norms, logdet = djd.frobenius_norms(J), djd.slogdet(J)[1]
        assert type(norms._meta) is type(logdet._meta) is StrictArray
        n, ld = dask.compute(norms, logdet)
        assert type(n) is type(ld) is StrictArray
        np.testing.assert_allclose(n.a, np.linalg.norm(ref, axis=(1, 2)), rtol=1e-14)
        np.testing.assert_allclose(ld.a, np.linalg.slogdet(ref)[1], rtol=1e-14)
    finally:
        backend._BY_TYPE.pop(StrictArray, None)
