"""Errors raised by dualjac. Each message names the problem and the fix."""

from __future__ import annotations


class UnsupportedOpError(TypeError):
    """An operation has no forward-mode rule, so its derivative cannot be carried.

    Raised instead of silently dropping tangents: for a NumPy function or ufunc
    method without a rule, for ``out=`` arguments that cannot hold a tangent, and
    (in ``dualjac.torch``) for an fx node whose target has no mapping.

    >>> import numpy as np, dualjac as dj
    >>> try:
    ...     dj.jacfwd(lambda x: np.fft.fft(x))(np.ones(3))
    ... except dj.UnsupportedOpError as e:
    ...     print("fft" in str(e))
    True
    """

    def __init__(self, op: str, hint: str = "") -> None:
        self.op = op
        msg = f"dualjac has no forward-mode rule for {op}"
        if hint:
            msg += f": {hint}"
        else:
            msg += (
                ". Rewrite this step with supported operations (see dualjac.RULES), "
                "or add a rule with dualjac.rules.defrule."
            )
        super().__init__(msg)


class TangentLossError(TypeError):
    """A Dual with live tangents was turned into a plain array or Python number.

    >>> import numpy as np, dualjac as dj
    >>> try:
    ...     dj.jacfwd(lambda x: np.asarray(x) * 2)(np.ones(2))
    ... except dj.TangentLossError as e:
    ...     print("derivative" in str(e))
    True
    """


class EscapedDualError(TypeError):
    """A Dual was used after the transform that made it returned (a leaked perturbation).

    >>> import numpy as np, dualjac as dj
    >>> kept = []
    >>> _ = dj.jacfwd(lambda x: kept.append(x * 2) or x)(np.ones(2))
    >>> try:
    ...     kept[0] + 1
    ... except dj.EscapedDualError as e:
    ...     print("escaped" in str(e))
    True
    """


class NondeterministicFunctionError(ValueError):
    """A function gave different values in the passes of one transform (random numbers drawn
    inside it, or state that changes between calls), so its Jacobian columns would not belong
    together."""


class RowMixingError(ValueError):
    """``batch_jacobian`` found that the function mixes rows of the batch (batch statistics,
    ``X - X.mean(0)``), so per-sample Jacobians are not defined by its lanes."""


class ComplexValueError(TypeError):
    """A differentiated value became complex: dualjac carries real tangents only."""


class NoTransposeError(UnsupportedOpError):
    """Reverse mode met a NumPy function on a tangent that has no transpose in ``dualjac.transposes``.

    Reverse mode (``vjp``, ``jacrev``, ``grad``, ``mode="reverse"``) records the tangent rules as
    linear primitives and transposes them; forward mode needs no transposes, so it still works.
    """

    def __init__(self, op: str, hint: str = "") -> None:
        self.op = op
        msg = (
            f"dualjac's reverse mode has no transpose for {op}"
            + (f": {hint}" if hint else "")
            + ". Use forward mode for this function (dj.jacfwd, or mode='forward')."
        )
        TypeError.__init__(self, msg)


class NonLinearError(NoTransposeError):
    """A tangent was used non-linearly while reverse mode linearized a function (``dx * dy``,
    ``dx + 1``): a rule that is not linear in its tangent, which only forward mode can run."""

    def __init__(self, op: str, hint: str = "") -> None:
        self.op = op
        msg = f"reverse mode found a non-linear use of a tangent: {op}" + (f" ({hint})" if hint else "")
        TypeError.__init__(self, msg + ". Use forward mode for this function (dj.jacfwd, or mode='forward').")


class TapeTooLargeError(MemoryError):
    """Reverse mode's tape grew past ``dj.config.tape_bytes`` while a function was linearized."""
