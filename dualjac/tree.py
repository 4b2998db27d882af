"""Pytrees: nested tuples, lists and dicts of arrays, flattened to a list of leaves.

Dicts keep their insertion order, so a parameter dict comes back in the order of
``module.named_parameters()``. ``None`` is an empty subtree (it has no leaves).
"""

from __future__ import annotations

from typing import Any

# A treedef is None for a leaf, or (type, keys, children) for a container.
TreeDef = Any


def flatten(tree: Any) -> tuple[list[Any], TreeDef]:
    """Leaves of ``tree`` in order, and the structure to rebuild it.

    >>> flatten({"a": 1, "b": (2, 3)})[0]
    [1, 2, 3]
    """
    leaves: list[Any] = []
    return leaves, _flatten(tree, leaves)


def _flatten(tree: Any, leaves: list[Any]) -> TreeDef:
    if isinstance(tree, dict):
        keys = list(tree)
        return (type(tree), keys, [_flatten(tree[k], leaves) for k in keys])
    if isinstance(tree, (tuple, list)):
        return (type(tree), None, [_flatten(t, leaves) for t in tree])
    if tree is None:
        return (type(None), None, [])
    leaves.append(tree)
    return None


def unflatten(treedef: TreeDef, leaves: list[Any]) -> Any:
    """Inverse of ``flatten``: rebuild the structure from ``leaves``."""
    it = iter(leaves)
    return _unflatten(treedef, it)


def _unflatten(treedef: TreeDef, it: Any) -> Any:
    if treedef is None:
        return next(it)
    kind, keys, children = treedef
    if kind is type(None):
        return None
    items = [_unflatten(c, it) for c in children]
    if keys is not None:
        return kind(zip(keys, items))
    if hasattr(kind, "_fields"):  # namedtuple
        return kind(*items)
    return kind(items)


def tree_map(f: Any, tree: Any) -> Any:
    leaves, treedef = flatten(tree)
    return unflatten(treedef, [f(x) for x in leaves])
