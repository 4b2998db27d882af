"""What ``dualjac.torch.check`` reports, and the comparisons that fill the report.

``PairReport`` (one Jacobian block), ``Culprit`` (the module a mismatch comes from) and
``CheckReport``; ``compare_block`` judges one block against tolerances relative to its scale and
says whether the comparison had power (``RESOLVE``), ``projections`` turns both engines' outputs
into comparable ``Uᵀ J V`` values, ``compare_values`` the forward values, ``verdict`` the whole
check. Separate from computing the Jacobians (``check_engines``) and from ``check`` itself, which
runs them: this part needs no torch import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RESOLVE = 0.01  # a value is resolved when an error of this fraction of it would fail the check


@dataclass
class PairReport:
    """One block of the Jacobian, d(output) / d(input or parameters).

    ``shape``: the block's shape (full mode) or the projections' ``(K_u, K_v[, B])``.
    ``scale``: what tolerances are relative to (largest entry / largest projection size).
    ``resolved``: the fraction of values in which a 1% error would fail the check.
    ``worst``: the largest error / tolerance ratio (at most 1 passes).
    ``status``: ``"ok"``, ``"mismatch"``, ``"no power"`` or ``"zero"`` (exactly zero on both sides).
    """

    output: str
    wrt: str
    shape: tuple
    max_abs_error: float
    max_rel_error: float
    ok: bool
    scale: float = 0.0
    resolved: float = 0.0
    worst: float = 0.0
    status: str = "ok"


@dataclass
class Culprit:
    """Where a mismatch comes from: the innermost module call whose local backward disagrees."""

    module: str
    kind: str
    defined_at: str
    called_at: str
    error: float
    node: str = ""  # the module's first graph node of its own code, and its ATen op
    source: str = ""  # the user's line that node comes from
    unchecked: list = field(default_factory=list)  # children that could not be checked on their own

    def __str__(self) -> str:
        where = f"module '{self.module}' ({self.kind})" if self.module else f"the top module ({self.kind})"
        off = f", local backward off by {self.error:.3g} of its scale" if np.isfinite(self.error) else ""
        lines = [f"first failing node: {where}{off}"]
        if self.node:
            lines.append(f"    graph node {self.node}" + (f" from {self.source}" if self.source else ""))
        if self.called_at:
            lines.append(f"    called at {self.called_at}")
        if self.defined_at:
            lines.append(f"    forward defined at {self.defined_at}")
        if self.unchecked:
            lines.append(f"    (or in its submodules {', '.join(self.unchecked)}, which could not be checked alone)")
        return "\n".join(lines)


@dataclass
class CheckReport:
    """The outcome of ``check``: ``.ok``, ``.status`` and ``.reason``, one row per block, timings.

    ``status``: ``"ok"``, ``"mismatch"`` or ``"no power"`` (``ok`` is True only for ``"ok"``).
    ``time_lower``: the call to ``lower`` (an export on the first call, ``lower_cached`` after); ``time_torch`` and
    ``time_dualjac``: each engine's Jacobian (or projections); ``time_locate``: the search
    for the culprit after a mismatch.
    """

    ok: bool
    rows: list[PairReport]
    rtol: float
    atol: float
    dtype: str
    wrt: str
    batched: bool
    time_torch: float
    time_dualjac: float
    notes: list[str] = field(default_factory=list)
    status: str = "ok"
    reason: str = ""
    mode: str = "full"
    directions: int = 0
    seed: int = 0
    value_error: float = 0.0
    time_lower: float = 0.0
    lower_cached: bool = False
    time_locate: float = 0.0
    culprit: Culprit | None = None

    @property
    def max_abs_error(self) -> float:
        return max((r.max_abs_error for r in self.rows), default=0.0)

    @property
    def max_rel_error(self) -> float:
        return max((r.max_rel_error for r in self.rows), default=0.0)

    def raise_for_failure(self) -> None:
        """Raise ``AssertionError`` with the table if a block disagrees or the check had no power."""
        if not self.ok:
            raise AssertionError(f"torch.autograd and dualjac disagree or were not compared:\n{self}")

    def __str__(self) -> str:
        mode = f"projection, {self.directions}x{self.directions} directions, seed {self.seed}"
        head = (
            f"dualjac.torch.check: {self.status.upper()} "
            f"(model dtype {self.dtype}, wrt={self.wrt}{', batched' if self.batched else ''}, "
            f"{mode if self.mode == 'projection' else 'full Jacobian'}, rtol={self.rtol:g}, "
            f"atol={self.atol:g} x scale)"
        )
        width = max([len(r.output) + len(r.wrt) + 4 for r in self.rows] + [20])
        lines = [head]
        if self.reason:
            lines.append(f"  {self.reason}")
        lines.append(
            f"  {'block':<{width}} {'shape':<18} {'scale':>9} {'max abs err':>11} {'max rel err':>11} "
            f"{'resolved':>8}  status"
        )
        for r in self.rows:
            name = f"d{r.output} / d{r.wrt}"
            lines.append(
                f"  {name:<{width}} {str(r.shape):<18} {r.scale:9.2e} {r.max_abs_error:11.3e} "
                f"{r.max_rel_error:11.3e} {r.resolved:8.0%}  {r.status}"
            )
        lower = f"{self.time_lower * 1e3:.1f} ms ({'cached' if self.lower_cached else 'export, first call'})"
        lines.append(
            f"  time: lowering {lower}, torch.autograd {self.time_torch * 1e3:.2f} ms, "
            f"dualjac {self.time_dualjac * 1e3:.2f} ms"
            + (f", locating {self.time_locate * 1e3:.0f} ms" if self.time_locate else "")
        )
        if self.culprit is not None:
            lines.append("  " + str(self.culprit).replace("\n", "\n  "))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    __repr__ = __str__


def projections(
    u: np.ndarray, jv: np.ndarray, grads: list[np.ndarray], vs: list[np.ndarray], batched: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``Uᵀ(J V)`` (dualjac) and ``(Uᵀ J) V`` (torch), (k_u, k_v[, B]), and each one's scale
    ``max(||U_iᵀ J||, ||J V_j||)``, the typical size of a projection with unit-variance U, V."""
    lead = 1 if batched else 0  # batched: one projection per sample (rows are independent)

    def dot(a, b):  # a (k_a, *S), b (k_b, *S) -> (k_a, k_b[, B]), summing over S (after B)
        a2 = a.reshape(a.shape[: 1 + lead] + (-1,))
        b2 = b.reshape(b.shape[: 1 + lead] + (-1,))
        return np.einsum("i...n,j...n->ij...", a2, b2)

    def norms(arrays):  # (k[, B]) over all leaves
        return np.sqrt(sum((a.reshape(a.shape[: 1 + lead] + (-1,)) ** 2).sum(-1) for a in arrays))

    s_d = dot(u, jv)
    s_t = sum(dot(g, v) for g, v in zip(grads, vs))
    g_norm, jv_norm = norms(grads), norms([jv])
    scale = np.maximum(g_norm[:, None], jv_norm[None, :])
    return s_t, s_d, scale


def compare_block(
    output: str, wrt: str, t: np.ndarray, d: np.ndarray, scale: np.ndarray | None, rtol: float, atol: float
) -> PairReport:
    """Compare torch's values ``t`` with dualjac's ``d``: full mode (``scale`` None: the block's
    largest entry, and each entry is resolved against itself) or projections (each against its
    ``scale``)."""
    if t.shape != d.shape:
        raise AssertionError(f"block d{output}/d{wrt}: torch {t.shape} vs dualjac {d.shape}")
    finite = bool(np.isfinite(t).all() and np.isfinite(d).all())
    err = np.abs(t - d)
    if scale is None:
        top = float(max(np.abs(d).max(initial=0.0), np.abs(t).max(initial=0.0))) if finite else np.inf
        tol = atol * top + rtol * np.abs(d)
        magnitude = np.abs(d)
    else:
        top = float(scale.max(initial=0.0))
        tol = atol * scale + rtol * np.abs(d)
        magnitude = scale
    resolved = RESOLVE * magnitude > tol
    ok = finite and bool(np.all(err <= tol))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(resolved, err / magnitude, 0.0)
        ratio = np.where(tol > 0, err / tol, np.where(err > 0, np.inf, 0.0))
    if not ok:
        status = "mismatch"
    elif top == 0:
        status = "zero"
    elif not resolved.any():
        status = "no power"
    else:
        status = "ok"
    return PairReport(
        output, wrt, tuple(d.shape), float(err.max(initial=0.0)), float(rel.max(initial=0.0)), ok,
        top, float(resolved.mean()) if resolved.size else 0.0, float(ratio.max(initial=0.0)), status,
    )  # fmt: skip


def compare_values(t_outs: Sequence[Any], d_outs: Sequence[Any], rtol: float, atol: float) -> tuple[float, bool]:
    """The forward values: the largest |torch - dualjac| relative to the output's largest value."""
    worst, ok = 0.0, True
    if len(t_outs) != len(d_outs):  # an output lost (or made up) by the lowering
        return np.inf, False
    for t, d in zip(t_outs, d_outs):
        if not hasattr(t, "is_floating_point") or not t.is_floating_point():
            continue
        t, d = numpy64(t), np.asarray(d, dtype=np.float64)
        if t.shape != d.shape:
            return np.inf, False
        top = max(np.abs(d).max(initial=0.0), np.abs(t).max(initial=0.0))
        err = np.abs(t - d)
        ok &= bool(np.all(err <= atol * top + rtol * np.abs(d))) and bool(np.isfinite(err).all())
        worst = max(worst, float(err.max(initial=0.0) / top) if top > 0 else float(err.max(initial=0.0)))
    return worst, ok


def verdict(rows: list[PairReport], value_ok: bool, value_error: float) -> tuple[str, str]:
    """The check's status and the reason for it: forward values first, then mismatches, then power."""
    bad = [f"d{r.output}/d{r.wrt}" for r in rows if r.status == "mismatch"]
    if not value_ok:
        return "mismatch", (
            f"forward values differ (max error {value_error:.3g} of the output's scale): dualjac's lowering "
            "does not compute what torch computes (a dualjac bug, a model that is not deterministic, or a plain "
            "Python attribute changed since the model was first lowered: lowerings are cached per module)"
        )
    if bad:
        return "mismatch", f"Jacobians disagree in {', '.join(bad)}"
    weak = [f"d{r.output}/d{r.wrt}" for r in rows if r.status == "no power"]
    if weak:
        return "no power", (
            f"no power: a 1% error in {', '.join(weak)} would pass at these tolerances; tighten rtol/atol "
            "or cast the model to float64"
        )
    if all(r.status == "zero" for r in rows):
        return "no power", (
            "no power: every Jacobian block is exactly zero, so nothing was compared; choose inputs at which "
            "the outputs depend on what is differentiated"
        )
    return "ok", ""


def numpy64(t: Any) -> np.ndarray:
    return t.detach().cpu().double().numpy()
