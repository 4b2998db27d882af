"""The ATen op table: what each Core ATen op of an exported torch program becomes in a dualjac ``Graph``.

``ATEN_OPS`` maps an op overload's name (``"aten.addmm.default"``) to an *emitter* written
with ATen's signature: it receives the node's arguments with tensors replaced by graph
``Ref``s and appends ``rules.apply`` nodes through the ``Builder``. Torch names are
translated in the emitters, never in the rules; no derivative is written here. ``SYMBOLIC`` does the same
for the Python functions export records for shape arithmetic on a dynamic batch size
(``operator.mul`` on sizes, ``operator.getitem`` on multi-output ops): they become *static*
nodes, Python functions of values, never of tangents.

An op missing from the table, or one without a derivative (random sampling, in-place
accumulation), raises ``UnsupportedOpError`` naming the ATen op, the graph node, the module
path and the model's source line. The table covers the Core ATen ops where a derivative
makes sense plus the higher-level ops export keeps (``native_layer_norm``, ``convolution``,
``_native_batch_norm_legit_no_training``, ``max_pool2d_with_indices``, ``embedding``, ...).

The emitters live by op family, each module with its part of the table: ``aten_pointwise``
(elementwise math, activations), ``aten_reductions`` (reductions, softmax, sorting),
``aten_shapes`` (views, indexing, joins, creation) and ``aten_layers`` (linear algebra, conv,
pooling, norms, attention). ``aten_builder`` holds the ``Builder`` they append to. This module
assembles ``ATEN_OPS`` and ``SYMBOLIC`` and dispatches one fx node (``lower_node``).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import torch

from . import aten_layers, aten_pointwise, aten_reductions, aten_shapes
from .aten_builder import Builder, static_emitter


def lower_node(b: Builder, target: Any, args: tuple, kwargs: dict) -> Any:
    """Emit the graph nodes of one fx node: its ATen op's (or Python function's) emitter."""
    emit = ATEN_OPS.get(str(target)) if isinstance(target, torch._ops.OpOverload) else SYMBOLIC.get(target)
    if emit is None:
        if isinstance(target, torch._ops.OpOverload):
            raise b.unsupported()
        raise b.unsupported(f"the Python function {getattr(target, '__name__', target)!r}")
    return emit(b, *args, **kwargs)


# One table: each family's ops, in this order (no name is in two families)
ATEN_OPS: dict[str, Callable[..., Any]] = {
    **aten_pointwise.OPS,
    **aten_reductions.OPS,
    **aten_shapes.OPS,
    **aten_layers.OPS,
}


def _symbolic(fn: Callable[..., Any]) -> Callable[..., Any]:
    return static_emitter(fn)


def _getitem(b, x, i):
    if isinstance(x, (tuple, list)):
        return x[i]
    return static_emitter(operator.getitem)(b, x, i)


def _with_effects(b, token, op, *args, **kwargs):
    """An op export threads through an effect token. torch.linalg's error check (inv, cholesky, solve)
    is dropped: NumPy's linalg raises LinAlgError itself on a singular or not positive-definite matrix."""
    if str(op) != "aten._linalg_check_errors.default":
        raise b.unsupported(
            f"the side-effecting op {op} (export threads it through an effect token)",
            hint="a side effect (printing, a custom op with effects) is no function of the input; "
            "remove it from forward, or run it outside the model",
        )
    return (token,)


SYMBOLIC: dict[Any, Callable[..., Any]] = {
    operator.getitem: _getitem,
    torch.ops.higher_order.with_effects: _with_effects,
    **{
        f: _symbolic(f)
        for f in (
            operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv, operator.mod,
            operator.neg, operator.pow, operator.eq, operator.ne, operator.lt, operator.le, operator.gt,
            operator.ge, operator.and_, operator.or_, math.sqrt, math.ceil, math.floor,
        )
    },
    torch.sym_float: _symbolic(float), torch.sym_int: _symbolic(int), torch.sym_max: _symbolic(max),
    torch.sym_min: _symbolic(min), torch.sym_not: _symbolic(operator.not_),
}  # fmt: skip
