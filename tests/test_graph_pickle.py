"""Graphs travel to workers: pickle and cloudpickle keep the nodes and the parameters, and a
Graph built from a torch model unpickles and runs in a process that never imports torch."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dualjac as dj
from dualjac.graph import Graph, Node, Ref

ROOT = Path(__file__).resolve().parent.parent

# Reads a pickled (graph, x) from stdin, prints the batch Jacobian's bytes, and fails if torch came in.
NO_TORCH = """
import pickle, sys
import numpy as np
import dualjac as dj
g, x = pickle.loads(sys.stdin.buffer.read())[:2]
J = dj.batch_jacobian(g, x)
assert "torch" not in sys.modules, "unpickling or running the graph imported torch"
sys.stdout.buffer.write(pickle.dumps(J))
"""


def hand_built(rng, dtype):
    return Graph(
        inputs=("x",),
        nodes=[
            Node("h", "matmul", (Ref("input", "x"), Ref("param", "w"))),
            Node("a", "add", (Ref("node", "h"), Ref("const", "b"))),
            Node("y", "tanh", (Ref("node", "a"),)),
        ],
        outputs=Ref("node", "y"),
        params={"w": rng.standard_normal((3, 2)).astype(dtype)},
        constants={"b": rng.standard_normal(2).astype(dtype)},
    )


def from_torch_mlp(dtype):
    torch = pytest.importorskip("torch")
    from dualjac.torch import from_torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.GELU(), torch.nn.Linear(8, 2)).eval()
    return from_torch(model, torch.zeros(2, 3), dtype=dtype)


def graphs(rng, dtype):
    return [hand_built(rng, dtype), from_torch_mlp(dtype)]


def same_graph(g, h):
    assert str(g) == str(h) and g.inputs == h.inputs and g.outputs == h.outputs
    for a, b in [(g.params, h.params), (g.constants, h.constants)]:
        assert a.keys() == b.keys()
        for k in a:
            assert a[k].dtype == b[k].dtype
            np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dumps", ["pickle", "cloudpickle"])
def test_graphs_round_trip_with_their_parameters(rng, dtype, dumps):
    lib = pickle if dumps == "pickle" else pytest.importorskip("cloudpickle")
    x = rng.standard_normal((5, 3)).astype(dtype)
    for g in graphs(rng, dtype):
        h = pickle.loads(lib.dumps(g))
        same_graph(g, h)
        np.testing.assert_array_equal(dj.batch_jacobian(h, x), dj.batch_jacobian(g, x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_torch_built_graph_runs_where_torch_is_never_imported(rng, dtype):
    x = rng.standard_normal((6, 3)).astype(dtype)
    for g in graphs(rng, dtype):
        proc = subprocess.run(
            [sys.executable, "-c", NO_TORCH], input=pickle.dumps((g, x)), capture_output=True, cwd=ROOT, timeout=60
        )
        assert proc.returncode == 0, proc.stderr.decode()
        np.testing.assert_array_equal(pickle.loads(proc.stdout), dj.batch_jacobian(g, x))


def test_the_no_torch_check_has_power(rng):
    """The subprocess check fails when the pickle does pull torch in."""
    torch = pytest.importorskip("torch")
    proc = subprocess.run(
        [sys.executable, "-c", NO_TORCH],
        input=pickle.dumps((hand_built(rng, np.float64), np.ones((2, 3)), torch.ones(1))),
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode != 0 and b"imported torch" in proc.stderr


def test_a_graph_with_static_shape_nodes_runs_without_torch(rng):
    torch = pytest.importorskip("torch")
    from dualjac.torch import from_torch

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(8, 3)).eval()
    x = rng.standard_normal((2, 1, 4, 4)).astype(np.float32)
    g = from_torch(model, torch.from_numpy(x))
    proc = subprocess.run(
        [sys.executable, "-c", NO_TORCH], input=pickle.dumps((g, x)), capture_output=True, cwd=ROOT, timeout=60
    )
    assert proc.returncode == 0, proc.stderr.decode()
