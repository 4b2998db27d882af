"""Pytrees: nested tuples, lists and dicts of arrays, flattened to a list of leaves.

Dicts keep their insertion order, so a parameter dict comes back in the order of
``module.named_parameters()``. ``None`` is an empty subtree (it has no leaves).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from typing import Any

# A treedef is None for a leaf, or (type, keys, children) for a container.
TreeDef = Any


def flatten(tree: Any) -> tuple[list[Any], TreeDef]:
    """Leaves of ``tree`` in order, and the structure to rebuild it.

    >>> flatten({"a": 1, "b": (2, 3)})[0]
    [1, 2, 3]
    """
    if type(tree) is tuple or type(tree) is list:  # a flat sequence of leaves (most arguments and outputs)
        for t in tree:
            if t is None or isinstance(t, (dict, tuple, list)):
                break
        else:
            return list(tree), (type(tree), None, [None] * len(tree))
    leaves: list[Any] = []
    return leaves, _flatten(tree, leaves)


def _flatten(tree: Any, leaves: list[Any]) -> TreeDef:
    if isinstance(tree, dict):
        keys = list(tree)
        kind = type(tree)
        if isinstance(tree, defaultdict):  # rebuilt with its default factory
            kind = _defaultdict_of(tree.default_factory)
        return (kind, keys, _children([tree[k] for k in keys], leaves))
    if isinstance(tree, (tuple, list)):
        return (type(tree), None, _children(tree, leaves))
    if tree is None:
        return (type(None), None, [])
    leaves.append(tree)
    return None


@functools.cache
def _defaultdict_of(factory: Any) -> Any:
    """A maker of defaultdicts with ``factory``: one per factory, so equal trees have equal treedefs."""
    return functools.partial(defaultdict, factory)


def _children(items: Any, leaves: list[Any]) -> list[TreeDef]:
    # Leaves are handled inline, not by a call each: transforms flatten their arguments and
    # outputs (usually a flat tuple of arrays) on every call, and a call per leaf adds up.
    defs: list[TreeDef] = []
    for t in items:
        if t is None or isinstance(t, (dict, tuple, list)):
            defs.append(_flatten(t, leaves))
        else:
            leaves.append(t)
            defs.append(None)
    return defs


def unflatten(treedef: TreeDef, leaves: list[Any]) -> Any:
    """Inverse of ``flatten``: rebuild the structure from ``leaves``."""
    if treedef is not None and (treedef[0] is tuple or treedef[0] is list):
        children = treedef[2]
        if len(children) == len(leaves) and not any(children):  # flat (children all None): no walk
            return treedef[0](leaves)
    it = iter(leaves)
    return _unflatten(treedef, it)


def _unflatten(treedef: TreeDef, it: Any) -> Any:
    if treedef is None:
        return next(it)
    kind, keys, children = treedef
    if kind is type(None):
        return None
    items = [next(it) if c is None else _unflatten(c, it) for c in children]  # no call per leaf
    if kind is tuple or kind is list:
        return kind(items)
    if keys is not None:
        return kind(zip(keys, items))
    if hasattr(kind, "_fields"):  # namedtuple
        return kind(*items)
    return kind(items)
