"""Reductions: sum, mean, prod, max/min, std/var, cumulative sums and products, norm.

``axis`` is normalised to negative form (``neg_axes``), so the same value names the
same axis of the primal ``x`` and of its tangent ``dx`` with the lane axis in front.
"""

from __future__ import annotations

from . import defrule, neg_axes


def _sum_jvp(xp, ans, dx, x, axis=None, keepdims=False):
    return xp.sum(dx, axis=neg_axes(axis, x.ndim), keepdims=keepdims)


defrule("sum", jvp=(_sum_jvp,))
