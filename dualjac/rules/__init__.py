"""The one rules table (``table.py``: ``Rule``, ``defrule``, ``apply``) and its families, one per file.

Importing the package fills ``RULES``: each family module declares its ops with ``defrule``.
An op's derivative is found by grepping its name under ``dualjac/rules/``.
"""

from . import decompositions, elementwise, linalg, nn, reductions, shape, signal, special  # noqa: F401
from .table import (
    RULES,
    SYMBOLIC,
    Rule,
    apply,
    as_array,
    as_dtype,
    defrule,
    lanes_to_rank,
    neg_axes,
    neg_axis,
    select,
    sum_parts,
)

__all__ = [
    "RULES",
    "SYMBOLIC",
    "Rule",
    "apply",
    "as_array",
    "as_dtype",
    "defrule",
    "lanes_to_rank",
    "neg_axes",
    "neg_axis",
    "select",
    "sum_parts",
]
