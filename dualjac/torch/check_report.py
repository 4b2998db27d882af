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
ZERO_WEIGHT = 1e-3  # projection mode: the least weight of a row of (nearly) zero, relative to a full row's
NOISE = 16  # torch's rounding allowance, in units of its dtype's eps (of the sizes the rounding is relative to)


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


def row_sizes(jv: np.ndarray) -> np.ndarray:
    """``||J_o||`` per output element from ``J V`` (k, *out): V has unit-variance entries."""
    return np.sqrt((jv**2).mean(0))


def projections(
    u: np.ndarray,
    jv: np.ndarray,
    grads: list[np.ndarray],
    vs: list[np.ndarray],
    batched: bool,
    w: np.ndarray,
    eps: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, tuple]:
    """``Uᵀ(J V)`` (dualjac) and ``(Uᵀ J) V`` (torch), (k_u, k_v[, B]), and what ``compare_block`` judges them by:
    each one's scale ``max(||U_iᵀ J||, ||w ∘ J V_j||)``, the typical size of a projection (``U`` has unit-variance
    entries times the per-output weights ``w``); an allowance for torch's rounding, ``NOISE * eps`` of the
    largest row in every row; and each output element's share of a projection,
    ``w_o ||J_o||``, which a 1% error in that row moves."""
    lead = 1 if batched else 0  # batched: one projection per sample (rows are independent)

    def dot(a, b):  # a (k_a, *S), b (k_b, *S) -> (k_a, k_b[, B]), summing over S (after B)
        a2 = a.reshape(a.shape[: 1 + lead] + (-1,))
        b2 = b.reshape(b.shape[: 1 + lead] + (-1,))
        return np.einsum("i...n,j...n->ij...", a2, b2)

    def norms(arrays):  # (k[, B]) over all leaves
        return np.sqrt(sum((a.reshape(a.shape[: 1 + lead] + (-1,)) ** 2).sum(-1) for a in arrays))

    s_d = dot(u, jv)
    s_t = sum(dot(g, v) for g, v in zip(grads, vs))
    scale = np.maximum(norms(grads)[:, None], norms([jv * w])[None, :])
    rows = row_sizes(jv)
    # torch's rounding, NOISE eps of the largest row (intermediates may be that large), in every row
    noise = NOISE * eps * float(rows.max(initial=0.0)) * norms([u])[:, None] * np.ones_like(scale)
    return s_t, s_d, (scale, noise, w * rows)


def compare_block(
    output: str,
    wrt: str,
    t: np.ndarray,
    d: np.ndarray,
    rtol: float,
    atol: float,
    eps: float = 0.0,
    row_dims: int = 0,
    projected: tuple | None = None,
) -> PairReport:
    """Compare torch's values ``t`` with dualjac's ``d``.

    Full mode (``projected`` None): a block (*rows, *inputs) whose first ``row_dims`` axes are the output
    elements; each entry is judged against the largest entry of its own row, so a wrong derivative of a
    small output is not hidden by a large output in the same block, plus ``NOISE * eps`` of the block's largest
    entry (torch's rounding, relative to intermediates that may be that large), and is resolved against itself.
    Projection mode: ``projected`` from ``projections``; a projection is judged against its scale, an output
    element is resolved when a 1% error in its row alone would fail a typical projection, and the block has
    power when a 1% error in every row would fail."""
    if t.shape != d.shape:
        raise AssertionError(f"block d{output}/d{wrt}: torch {t.shape} vs dualjac {d.shape}")
    finite = bool(np.isfinite(t).all() and np.isfinite(d).all())
    err = np.abs(t - d)
    if projected is None:
        size = np.maximum(np.abs(d), np.abs(t)) if finite else np.full(d.shape, np.inf)
        top = float(size.max(initial=0.0))
        rows = size.reshape(d.shape[:row_dims] + (-1,)).max(-1, initial=0.0)
        rows = rows.reshape(rows.shape + (1,) * (d.ndim - row_dims))
        # plus torch's rounding, relative to intermediates that may be as large as the block's largest entry
        tol = atol * rows + rtol * np.abs(d) + NOISE * eps * top
        magnitude = np.abs(d)
        resolved = power = RESOLVE * magnitude > tol
    else:
        scale, noise, share = projected
        top = float(scale.max(initial=0.0))
        tol = atol * scale + rtol * np.abs(d) + noise
        magnitude = scale
        resolved = RESOLVE * share > np.median(tol) if tol.size else np.zeros(0, bool)
        power = RESOLVE * scale > tol  # a 1% error in every row: what the verdict needs
    ok = finite and bool(np.all(err <= tol))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(RESOLVE * magnitude > tol, err / magnitude, 0.0)
        ratio = np.where(tol > 0, err / tol, np.where(err > 0, np.inf, 0.0))
    if not ok:
        status = "mismatch"
    elif top == 0:
        status = "zero"
    elif not power.any():
        status = "no power"
    else:
        status = "ok"
    return PairReport(
        output, wrt, tuple(d.shape), float(err.max(initial=0.0)), float(rel.max(initial=0.0)), ok,
        top, float(resolved.mean()) if resolved.size else 0.0, float(ratio.max(initial=0.0)), status,
    )  # fmt: skip


def compare_values(
    t_outs: Sequence[Any], d_outs: Sequence[Any], rtol: float, atol: float, eps: float = 0.0, conds: Any = None
) -> tuple[float, bool, bool]:
    """The forward values: the largest |torch - dualjac| relative to the output's largest value, whether they
    agree, and whether agreeing needed the allowance for torch's rounding. Equal values (equal infinities
    included) and NaNs in the same places agree. ``conds`` (per output, or None): ``sum_i |J_oi| |x_i|`` per
    output element, how far rounding the inputs (or intermediates of their size) by ``eps`` moves it: a value
    within ``NOISE * eps * cond`` of dualjac's differs by the model dtype's rounding, not by the lowering."""
    worst, ok, rounded = 0.0, True, False
    if len(t_outs) != len(d_outs):  # an output lost (or made up) by the lowering
        return np.inf, False, False
    for n, (t, d) in enumerate(zip(t_outs, d_outs)):
        if not hasattr(t, "is_floating_point") or not t.is_floating_point():
            continue
        t, d = numpy64(t), np.asarray(d, dtype=np.float64)
        if t.shape != d.shape:
            return np.inf, False, False
        same = (t == d) | (np.isnan(t) & np.isnan(d))
        with np.errstate(invalid="ignore"):
            err = np.where(same, 0.0, np.abs(t - d))
        err = np.where(np.isnan(err), np.inf, err)  # a NaN or inf on one side only
        top = max(np.abs(d[np.isfinite(d)]).max(initial=0.0), np.abs(t[np.isfinite(t)]).max(initial=0.0))
        tol = atol * top + np.where(np.isfinite(d), rtol * np.abs(d), 0.0)
        cond = 0.0 if conds is None or conds[n] is None else np.asarray(conds[n])
        ok &= bool(np.all(err <= tol + NOISE * eps * (cond + top)))
        rounded |= bool(np.any(err > tol))
        worst = max(worst, float(err.max(initial=0.0) / top) if top > 0 else float(err.max(initial=0.0)))
    return worst, ok, rounded and ok


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
