"""``Graph``: dualjac's op graph, a list of rule applications with named parameters.

Each ``Node`` is one call ``rules.apply(op, *args, **attrs)``: ``op`` is a name
from ``dualjac.RULES``; ``args`` and ``attrs`` hold ``Ref``s to graph inputs,
earlier nodes, named parameters (``Graph.params``) or constants (buffers), and
plain Python values. Evaluating a graph is a loop over ``apply``, so a Graph
holds no derivative: ``jacfwd`` treats it as any other function, and the
Jacobian w.r.t. its parameters is ``jacfwd(lambda p: g(x, params=p))(g.params)``.

A node whose ``op`` is a plain Python function instead of a rule name computes a
*static* value (a shape, an axis tuple, integer indices) from the values of its
arguments, never their tangents; later nodes use it as an argument or attribute. The torch
adapter needs these for arithmetic on the batch size, which it exports as dynamic.

>>> import numpy as np, dualjac as dj
>>> from dualjac.graph import Graph, Node, Ref
>>> g = Graph(
...     inputs=("x",),
...     nodes=[Node("h", "matmul", (Ref("input", "x"), Ref("param", "w"))),
...            Node("y", "tanh", (Ref("node", "h"),))],
...     outputs=Ref("node", "y"),
...     params={"w": np.array([[1.0], [2.0]])},
... )
>>> g(np.array([[0.0, 0.0]])).tolist()
[[0.0]]
>>> dj.jacfwd(lambda p: g(np.array([[1.0, 0.0]]), params=p))(g.params)["w"].shape
(1, 1, 2, 1)
>>> print(g)
node  op      args   attrs
%h    matmul  x, @w
%y    tanh    %h
output: %y
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .dual import Dual
from .errors import TangentLossError
from .numpy_api import value
from .rules import apply


class Ref:
    """A reference to a value of the graph: ``kind`` is input, node, param or const."""

    __slots__ = ("kind", "name")

    def __init__(self, kind: str, name: str) -> None:
        self.kind, self.name = kind, name

    def __eq__(self, other: Any) -> bool:
        return type(other) is Ref and (self.kind, self.name) == (other.kind, other.name)

    def __hash__(self) -> int:
        return hash((self.kind, self.name))

    def __repr__(self) -> str:
        return {"input": "", "node": "%", "param": "@", "const": "$"}[self.kind] + self.name


class Node(NamedTuple):
    """``name = apply(op, *args, **attrs)``; ``op`` is a rule name or a static function, ``attrs``
    its settings (an axis, a stride), not to be confused with the graph's trainable ``params``.

    ``meta``: where the node came from, for error messages and comparisons (the torch
    adapter records ``"target"``, the ATen op; ``"module"``, the nn.Module path; ``"source"``,
    the model code's ``file:line``). Evaluation never reads it.
    """

    name: str
    op: str | Callable[..., Any]
    args: tuple = ()
    attrs: dict = {}
    meta: dict = {}


@dataclass
class Graph:
    """A straight-line program of rule applications: ``g(*inputs, params=None)``.

    ``params`` (trainable arrays, by name) can be replaced per call, in whole or in
    part, by a dict of arrays or Duals; ``constants`` (buffers) are fixed.
    """

    inputs: tuple
    nodes: list
    outputs: Any
    params: dict = field(default_factory=dict)
    constants: dict = field(default_factory=dict)
    backend: str = "numpy"

    @property
    def dtype(self) -> Any:
        """The dtype of the first floating parameter or constant (None if there is none)."""
        for a in (*self.params.values(), *self.constants.values()):
            if getattr(a, "dtype", None) is not None and a.dtype.kind == "f":
                return a.dtype
        return None

    def __call__(self, *inputs: Any, params: dict | None = None) -> Any:
        env = self._run(inputs, params)
        return _resolve(self.outputs, env)

    def values(self, *inputs: Any, params: dict | None = None) -> dict:
        """Every node's value by node name (arrays, or Duals under a transform), for node-by-node comparisons."""
        return dict(self._run(inputs, params)["node"])

    def _run(self, inputs: tuple, params: dict | None) -> dict:
        if len(inputs) != len(self.inputs):
            raise TypeError(f"this graph takes {len(self.inputs)} input(s) {self.inputs}, got {len(inputs)}")
        if params is not None and params is not self.params:
            unknown = params.keys() - self.params.keys()
            if unknown:  # a misspelt name would otherwise be ignored: a silently zero Jacobian
                raise KeyError(f"unknown parameter(s) {sorted(unknown)}; this graph's are {sorted(self.params)}")
            params = {**self.params, **params}
        env = {"input": dict(zip(self.inputs, inputs)), "node": {}, "const": self.constants}
        env["param"] = self.params if params is None else params
        get = lambda a: _resolve(a, env)
        for node in self.nodes:
            args = [get(a) for a in node.args]
            kwargs = {k: get(v) for k, v in node.attrs.items()}
            if isinstance(node.op, str):
                env["node"][node.name] = apply(node.op, *args, **kwargs)
            else:  # a static value: computed from values, never from tangents
                env["node"][node.name] = _static(node, args, kwargs)
        return env

    def __str__(self) -> str:
        rows = [("node", "op", "args", "attrs")]
        for n in self.nodes:
            op = n.op if isinstance(n.op, str) else f"<{n.op.__name__}>"
            rows.append(
                (f"%{n.name}", op, ", ".join(map(repr, n.args)), ", ".join(f"{k}={v!r}" for k, v in n.attrs.items()))
            )
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + ("  " + r[3] if r[3] else "") for r in rows]
        lines = [line.rstrip() for line in lines]
        return "\n".join(lines + [f"output: {self.outputs!r}"])

    __repr__ = __str__


def _static(node: Node, args: list, kwargs: dict) -> Any:
    out = node.op(*[value(a) for a in args], **kwargs)
    # shapes, indices and boolean masks have no derivative; a float result computed
    # from a differentiated value would silently drop its tangent
    if getattr(getattr(out, "dtype", None), "kind", "b") in "fc" and any(type(a) is Dual for a in args):
        raise TangentLossError(
            f"graph node %{node.name} ({node.op.__name__}) computes a floating value from a differentiated "
            "input without its derivative; pass that input as a constant (do not differentiate it), "
            "or as a boolean mask"
        )
    return out


def _resolve(a: Any, env: dict) -> Any:
    """Replace every ``Ref`` in ``a`` (also inside tuples, lists, dicts and slices) by its value."""
    t = type(a)
    if t is Ref:
        return env[a.kind][a.name]
    if t is tuple or t is list:
        return t(_resolve(x, env) for x in a)
    if t is dict:
        return {k: _resolve(v, env) for k, v in a.items()}
    if t is slice:
        return slice(_resolve(a.start, env), _resolve(a.stop, env), _resolve(a.step, env))
    return a
