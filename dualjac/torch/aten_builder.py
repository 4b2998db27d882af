"""What the ATen emitters build on: the ``Builder`` that collects a ``Graph``'s nodes, the torch to
NumPy dtype and array conversions, and the helpers every op family shares (axes, keys, static nodes).

Separate from the op families (``aten_pointwise``, ``aten_reductions``, ``aten_shapes``,
``aten_layers``) and from ``aten.py``, which assembles their tables: the families import this, and
``export.py`` uses the Builder and the conversions directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..errors import UnsupportedOpError
from ..graph import Node, Ref
from ..numpy_api import pos_axes


# --- dtypes and arrays -------------------------------------------------------------------------
def numpy_dtype(dtype: torch.dtype) -> np.dtype:
    """torch's dtype as NumPy's (bfloat16, which NumPy lacks, as float32)."""
    if dtype == torch.bfloat16:
        return np.dtype(np.float32)
    return torch.empty((), dtype=dtype).numpy().dtype


def to_array(t: torch.Tensor, dtype: Any, backend: str) -> Any:
    """A tensor as a NumPy (or CuPy) array; floating ones converted to ``dtype`` when given."""
    t = t.detach().to("cpu")
    a = t.numpy() if t.dtype != torch.bfloat16 else t.float().numpy()
    if t.is_floating_point() and dtype is not None:
        a = a.astype(dtype)
    a = a.copy()
    if backend == "cupy":
        import cupy

        a = cupy.asarray(a)
    return a


def training_error(what: str) -> UnsupportedOpError:
    """The error for a module that behaves differently in training mode (batch norm, dropout)."""
    return UnsupportedOpError(
        f"{what} in training mode",
        "batch statistics and random dropout masks are not a fixed function of the input; "
        "call model.eval() before from_torch / check",
    )


def guard_meta(name: str) -> dict:
    """The node metadata of export's input-shape guards (no op, module or source line)."""
    return {"target": "input shape", "module": "", "source": ""}


# --- the builder --------------------------------------------------------------------------------
class Builder:
    """Collects Graph nodes while the exported program is walked; emitters call ``emit``."""

    def __init__(self, module: torch.nn.Module, what: str, dtype: Any, backend: str) -> None:
        self.module, self.what, self.dtype, self.backend = module, what, dtype, backend
        self.inputs: list[str] = []
        self.nodes: list[Node] = []
        self.node: Any = None  # the fx node being lowered
        self.meta: dict = {}
        self.owner, self.count, self.start = "", 0, 0

    def begin(self, node: Any, meta: dict, owner: str = "") -> None:
        self.node, self.meta, self.owner, self.count, self.start = node, meta, owner, 0, len(self.nodes)

    def emit(self, op: str | Callable[..., Any], *args: Any, **attrs: Any) -> Ref:
        """Append ``apply(op, *args, **attrs)`` (``op`` a callable: a static node) as ``<fx name>.<k>``."""
        self.count += 1
        name = f"{self.node.name}.{self.count}"
        self.nodes.append(Node(name, op, args, attrs, self.meta))
        return Ref("node", name)

    def finish(self, out: Any) -> Any:
        """Name the node holding the fx node's value after the fx node."""
        if not (isinstance(out, Ref) and out.kind == "node"):
            return out
        for i in range(self.start, len(self.nodes)):
            if self.nodes[i].name == out.name:
                new = Ref("node", self.node.name)
                for j in range(i, len(self.nodes)):
                    n = self.nodes[j]
                    name = new.name if j == i else n.name
                    args, attrs = _rename(n.args, out, new), _rename(n.attrs, out, new)
                    self.nodes[j] = n._replace(name=name, args=args, attrs=attrs)
                return new
        return out

    def val(self, i: int = -1) -> Any:
        """The example value (a FakeTensor) of argument ``i`` of the current node; -1: of its output."""
        if i < 0:
            return self.node.meta.get("val")
        a = self.node.args[i]
        return a.meta.get("val") if isinstance(a, torch.fx.Node) else a

    def ndim(self, i: int = 0) -> int:
        return self.val(i).dim()

    def out_dtype(self) -> np.dtype:
        """The current node's output dtype as the graph computes it (floats: ``dtype`` if given)."""
        t = self.val(-1).dtype
        return self.float_dtype(t)

    def float_dtype(self, t: torch.dtype) -> np.dtype:
        return self.dtype if t.is_floating_point and self.dtype is not None else numpy_dtype(t)

    def unsupported(self, what: str = "", hint: str = "") -> UnsupportedOpError:
        m = self.meta
        where = f"graph node '{self.node.name}'" if self.node is not None else self.what
        if m.get("module"):
            where += f" in module '{m['module']}'" + (f" ({self.owner})" if self.owner else "")
        else:
            where += f" in the top module ({self.what})"
        if m.get("source"):
            where += f", called at {m['source']}"
        return UnsupportedOpError(
            f"{what or 'ATen op ' + m.get('target', '?')} at {where}",
            hint
            or "dualjac/torch/aten.py has no entry for this Core ATen op; rewrite this step of forward with "
            "supported torch operations, or add an emitter to ATEN_OPS",
        )

    def training(self, what: str) -> UnsupportedOpError:
        e = training_error(f"{what} at graph node '{self.node.name}' (module '{self.meta.get('module', '')}')")
        return e


def _rename(a: Any, old: Ref, new: Ref) -> Any:
    t = type(a)
    if t is Ref:
        return new if a == old else a
    if t is tuple or t is list:
        return t(_rename(x, old, new) for x in a)
    if t is dict:
        return {k: _rename(v, old, new) for k, v in a.items()}
    if t is slice:
        return slice(_rename(a.start, old, new), _rename(a.stop, old, new), _rename(a.step, old, new))
    return a


# --- static helpers: Python functions of values (shapes, indices, masks) -----------------------
def key_along(dim: int, k: Any) -> tuple:
    """An indexing key taking ``k`` along axis ``dim`` (nonnegative) and everything elsewhere."""
    return (slice(None),) * dim + (k,)


def axis_of(b: Builder, dim: int, i: int = 0, extra: int = 0) -> int:
    """Axis ``dim`` of argument ``i`` (``extra`` axes more: where unsqueeze inserts) as a nonnegative index."""
    return pos_axes(dim, max(b.ndim(i) + extra, 1))[0]


def is_ref(*xs: Any) -> bool:
    """Whether any of ``xs`` is a graph value (not known until the graph runs)."""
    return any(isinstance(x, Ref) for x in xs)


def static_emitter(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A Python function of sizes or masks: computed now when every argument is known, else a static node."""

    def emit(b, *args, **kwargs):
        if is_ref(*args, *kwargs.values()) or any(isinstance(a, (tuple, list)) and is_ref(*a) for a in args):
            return b.emit(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    return emit
