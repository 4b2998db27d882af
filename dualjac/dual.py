"""``Dual``: a primal array plus K tangent lanes.

``primal`` has shape S and ``tangent`` has shape ``(K, *S)``: lane ``k`` is the
directional derivative of this value along the k-th seed direction, so one
evaluation of a function on Duals yields K columns of its Jacobian.

``Dual`` holds no math. Operators come from NumPy's ``NDArrayOperatorsMixin``
(``x * y`` *is* ``np.multiply(x, y)``); NumPy calls arrive through
``__array_ufunc__`` / ``__array_function__`` and are routed by ``numpy_api`` to
the one rules table. ``__array__`` raises, so ``np.asarray(dual)`` can never
silently drop the tangent.

``level`` tags which transform a Dual belongs to. Nested transforms (Hessians)
use increasing levels, and an op only differentiates w.r.t. the highest level
among its arguments; lower-level Duals are constants to it. This is what keeps
perturbations of different transforms from mixing ("perturbation confusion").
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from .errors import TangentLossError

Axis = int | tuple[int, ...] | None  # an axis argument, as NumPy takes it


class Dual(NDArrayOperatorsMixin):
    """A value carrying ``K`` tangent lanes: ``primal`` (shape S), ``tangent`` (shape (K, *S)).

    Most users never build one: the transforms (``jvp``, ``jacfwd``, ...) seed
    Duals, run the function and read the lanes back out. Plain NumPy code works on
    Duals unchanged.

    >>> import numpy as np
    >>> x = Dual(np.array([1.0, 2.0]), np.array([[1.0, 0.0], [0.0, 1.0]]))
    >>> y = np.sin(x) * x
    >>> y.tangent.shape  # K=2 lanes, each of shape (2,)
    (2, 2)
    """

    __slots__ = ("primal", "tangent", "level", "view", "version")
    __array_priority__ = 1000  # win against ndarray in mixed binary operators
    _dualjac_dispatches_through_numpy = True  # read by backend.array_namespace

    def __init__(self, primal: Any, tangent: Any, level: int = 1) -> None:
        pshape = primal.shape if hasattr(primal, "shape") else np.shape(primal)
        if tangent.shape[1:] != pshape:
            raise ValueError(
                f"tangent of shape {tuple(tangent.shape)} does not match primal of shape "
                f"{tuple(pshape)}: a tangent must have shape (K, *primal.shape)"
            )
        self.primal = primal
        self.tangent = tangent
        self.level = level
        self.view = None  # (base Dual, base's version when read, read(base), write(base, self)) for views
        self.version = 0  # bumped by every in-place write, so views of this value know they are stale

    # --- NumPy's aliasing: views see writes to their base, writes to views reach the base -----
    # A Dual made by basic indexing, reshape or transpose of another shares its memory in NumPy.
    # Dual values are never written in place (rules are functional), so a view remembers how to
    # read itself from its base and how to write itself back; ``numpy_api`` fills ``view``.
    def refresh(self) -> None:
        """Re-read this view from its base if the base was written since (NumPy would show it)."""
        base, version, read, write = self.view
        if base.view is not None:
            base.refresh()
        if base.version != version:
            new = read(base)
            self.primal, self.tangent, self.level = new.primal, new.tangent, new.level
            self.version += 1  # this view's own views are stale now too
            self.view = (base, base.version, read, write)

    def assign(self, new: Dual) -> None:
        """Become ``new`` in place (``y[k] = v``, ``y *= 2``), writing through to the base of a view."""
        self.primal, self.tangent, self.level = new.primal, new.tangent, new.level
        self.version += 1
        if self.view is not None:
            base, _, read, write = self.view
            write(base, self)
            self.view = (base, base.version, read, write)

    # --- array attributes (of the primal) -------------------------------------
    shape = property(lambda self: tuple(self.primal.shape))
    dtype = property(lambda self: self.primal.dtype)
    ndim = property(lambda self: self.primal.ndim)
    size = property(lambda self: self.primal.size)
    nbytes = property(lambda self: self.primal.nbytes)
    itemsize = property(lambda self: self.primal.itemsize)
    lanes = property(lambda self: self.tangent.shape[0], doc="K, the number of tangent lanes.")
    # a Dual is real: its real part is itself (a view, as NumPy's), its imaginary part zero
    real = property(lambda self: self[...])
    imag = property(lambda self: np.zeros_like(self.primal))
    T = property(lambda self: np.transpose(self))
    mT = property(lambda self: np.swapaxes(self, -1, -2))

    def __len__(self) -> int:
        return len(self.primal)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"Dual(primal={self.primal!r}, lanes={self.lanes}, level={self.level})"

    # --- the doors to the rules table ------------------------------------------
    # The arithmetic operators go straight to the rule when both operands are plain (a Dual, an
    # ndarray, a Python or NumPy float, an int): the ufunc route (ufunc -> __array_ufunc__ -> rule)
    # gives the same result, but its dispatch is half the cost of a scalar op. Anything else takes
    # that route, so foreign operands still get NotImplemented.
    def __add__(self, other):
        return _api.binary(np.add, self, other)

    def __radd__(self, other):
        return _api.binary(np.add, other, self)

    def __sub__(self, other):
        return _api.binary(np.subtract, self, other)

    def __rsub__(self, other):
        return _api.binary(np.subtract, other, self)

    def __mul__(self, other):
        return _api.binary(np.multiply, self, other)

    def __rmul__(self, other):
        return _api.binary(np.multiply, other, self)

    def __truediv__(self, other):
        return _api.binary(np.divide, self, other)

    def __rtruediv__(self, other):
        return _api.binary(np.divide, other, self)

    def __pow__(self, other):
        return _api.binary(np.power, self, other)

    def __rpow__(self, other):
        return _api.binary(np.power, other, self)

    def __matmul__(self, other):
        return np.matmul(self, other)

    def __rmatmul__(self, other):
        return np.matmul(other, self)

    def __neg__(self):
        return np.negative(self)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _api.array_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return _api.array_function(func, types, args, kwargs)

    def __getitem__(self, key):
        return _api.getitem(self, key)

    def __setitem__(self, key, value) -> None:
        _api.setitem(self, key, value)

    # --- conversions that would lose the tangent raise --------------------------
    def __array__(self, dtype=None, copy=None):
        raise TangentLossError(
            f"cannot convert a Dual to a plain array{_where()}: its tangent lanes (the derivative) "
            "would be lost. Keep the value as a Dual (use np.* functions on it; to put it into an "
            "array, build the array with np.stack/np.concatenate/np.where instead of assigning into "
            "np.zeros), or read `.primal` explicitly if you really want the value without its derivative."
        )

    def _lossy(self, kind: str) -> NoReturn:
        raise TangentLossError(
            f"cannot convert a Dual to a Python {kind}{_where()}: its derivative would be lost. "
            "Keep it as a Dual, or read `.primal` explicitly."
        )

    def __float__(self) -> NoReturn:
        self._lossy("float (float(x), or x assigned into a plain array: y[i] = x)")

    def __int__(self) -> NoReturn:
        self._lossy("int")

    def __complex__(self) -> NoReturn:
        self._lossy("complex")

    def __index__(self) -> NoReturn:
        self._lossy("index")

    def tolist(self) -> NoReturn:
        self._lossy("list")

    def item(self, *args: Any) -> NoReturn:
        self._lossy("number (item())")

    def __bool__(self) -> bool:
        # Truth value is control flow, not a value: it cannot carry a derivative.
        return bool(self.primal)

    # --- methods users call on arrays: thin aliases of the NumPy functions -------
    def sum(self, axis: Axis = None, dtype: Any = None, out: None = None, keepdims: bool = False) -> Any:
        return np.sum(self, axis=axis, dtype=dtype, out=out, keepdims=keepdims)

    def mean(self, axis: Axis = None, dtype: Any = None, out: None = None, keepdims: bool = False) -> Any:
        return np.mean(self, axis=axis, dtype=dtype, out=out, keepdims=keepdims)

    def prod(self, axis: Axis = None, dtype: Any = None, out: None = None, keepdims: bool = False) -> Any:
        return np.prod(self, axis=axis, dtype=dtype, out=out, keepdims=keepdims)

    def max(self, axis: Axis = None, out: None = None, keepdims: bool = False) -> Any:
        return np.max(self, axis=axis, out=out, keepdims=keepdims)

    def min(self, axis: Axis = None, out: None = None, keepdims: bool = False) -> Any:
        return np.min(self, axis=axis, out=out, keepdims=keepdims)

    def std(
        self, axis: Axis = None, dtype: Any = None, out: None = None, ddof: float = 0, keepdims: bool = False
    ) -> Any:
        return np.std(self, axis=axis, dtype=dtype, out=out, ddof=ddof, keepdims=keepdims)

    def var(
        self, axis: Axis = None, dtype: Any = None, out: None = None, ddof: float = 0, keepdims: bool = False
    ) -> Any:
        return np.var(self, axis=axis, dtype=dtype, out=out, ddof=ddof, keepdims=keepdims)

    def cumsum(self, axis: int | None = None, dtype: Any = None, out: None = None) -> Any:
        return np.cumsum(self, axis=axis, dtype=dtype, out=out)

    def cumprod(self, axis: int | None = None, dtype: Any = None, out: None = None) -> Any:
        return np.cumprod(self, axis=axis, dtype=dtype, out=out)

    def reshape(self, *shape: Any, order: str = "C") -> Any:
        if len(shape) == 1 and not isinstance(shape[0], int):
            shape = shape[0]
        return np.reshape(self, shape, order=order)

    def transpose(self, *axes: Any) -> Any:
        if len(axes) == 1 and not isinstance(axes[0], int):
            axes = axes[0]
        return np.transpose(self, axes or None)

    def swapaxes(self, axis1: int, axis2: int) -> Any:
        return np.swapaxes(self, axis1, axis2)

    def squeeze(self, axis: Axis = None) -> Any:
        return np.squeeze(self, axis=axis)

    def ravel(self, order: str = "C") -> Any:
        return np.ravel(self, order=order)

    def flatten(self, order: str = "C") -> Any:
        return np.ravel(self, order=order)

    def clip(self, min: Any = None, max: Any = None, out: None = None) -> Any:
        return np.clip(self, min, max, out=out)

    def copy(self, order: str = "C") -> Any:
        return np.copy(self, order=order)

    def dot(self, other: Any) -> Any:
        return np.dot(self, other)

    def trace(self, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Any:
        return np.trace(self, offset=offset, axis1=axis1, axis2=axis2)

    def diagonal(self, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Any:
        return np.diagonal(self, offset=offset, axis1=axis1, axis2=axis2)

    def repeat(self, repeats: Any, axis: int | None = None) -> Any:
        return np.repeat(self, repeats, axis=axis)

    def take(self, indices: Any, axis: int | None = None) -> Any:
        return np.take(self, indices, axis=axis)

    def round(self, decimals: int = 0) -> Any:
        return np.round(self, decimals=decimals)

    def __round__(self, ndigits: int | None = None) -> Any:
        return np.round(self, decimals=ndigits or 0)

    def conj(self) -> Any:
        return np.conjugate(self)

    conjugate = conj

    def astype(self, dtype: Any, copy: bool = True) -> Any:
        return _api.astype(self, dtype)

    def argmax(self, axis: int | None = None, keepdims: bool = False) -> Any:
        return np.argmax(self, axis=axis, keepdims=keepdims)

    def argmin(self, axis: int | None = None, keepdims: bool = False) -> Any:
        return np.argmin(self, axis=axis, keepdims=keepdims)

    def argsort(self, axis: int | None = -1, kind: str | None = None) -> Any:
        return np.argsort(self, axis=axis, kind=kind)

    def nonzero(self) -> tuple:
        return np.nonzero(self)

    def all(self, axis: Axis = None, keepdims: bool = False) -> Any:
        return np.all(self, axis=axis, keepdims=keepdims)

    def any(self, axis: Axis = None, keepdims: bool = False) -> Any:
        return np.any(self, axis=axis, keepdims=keepdims)


def _where() -> str:
    """`` in <function> (<file>:<line>)``: the code that asked for the conversion. That is the first
    caller outside dualjac and NumPy, or, inside a library, the library function the user called
    (``scipy.special.logsumexp``, not the private helper that calls ``np.asarray``)."""
    frame, found, top = sys._getframe(2), None, None
    while frame is not None:
        mod = frame.f_globals.get("__name__", "")
        inside = mod.startswith(("dualjac", "numpy"))
        if found is None and not inside:
            found, top = frame, mod.split(".")[0]
        elif found is not None:
            if inside or mod.split(".")[0] != top or mod == "__main__":
                break
            found = frame
        frame = frame.f_back
    if found is None:
        return ""
    mod = found.f_globals.get("__name__", "")
    public = ".".join(p for p in mod.split(".") if not p.startswith("_")) or mod
    name = f"{public}.{getattr(found.f_code, 'co_qualname', found.f_code.co_name)}"
    twin = f"; call {_TWINS[name]} instead, which takes Duals" if name in _TWINS else ""
    return f" in {name} ({found.f_code.co_filename}:{found.f_lineno}){twin}"


# library functions that convert their input, and dualjac's functions that compute the same values on Duals
_TWINS = {f"scipy.special.{f}": f"dualjac.nn.{f}" for f in ("logsumexp", "softmax", "log_softmax")}


def value(x: Any) -> Any:
    """The plain value under any number of Dual levels (for integer/boolean results, masks, indices)."""
    while type(x) is Dual:
        x = x.primal
    return x


# The NumPy layer (``numpy_api``, which maps NumPy calls to rules) plugs itself in here when it is
# imported, so this module imports nothing above it.
_api: Any = None
