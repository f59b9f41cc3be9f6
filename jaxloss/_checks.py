"""What a loss checks, in one place: ranges of numeric hyper-parameters,
types of static options, input dtypes and shapes (at trace time), and the
values of traced data inside :func:`value_checks` (under ``jit``, with
:mod:`jax.experimental.checkify`).

Every message starts with the name of the loss (or of its class) and says what
was expected and what was received.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

Array = jax.Array

# ---------------------------------------------------------------------------
# Numeric hyper-parameters: allowed ranges
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Interval:
    """An allowed range for a numeric hyper-parameter.

    Checked (``ValueError``) when the value is concrete, and inside
    :func:`value_checks` also when it is traced. ``Interval(0, None,
    lo_open=True)`` is ``(0, inf)``; ``Interval(0, 1, hi_open=True)`` is
    ``[0, 1)``. ``None`` as a value is always accepted (it means "disabled" for
    the hyper-parameters that allow it).
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def describe(self) -> str:
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        left = "(" if self.lo_open or self.lo is None else "["
        right = ")" if self.hi_open or self.hi is None else "]"
        return f"{left}{lo}, {hi}{right}"

    def test(self, v: Any) -> Any:
        """Elementwise membership (NumPy or JAX arrays); NaN is outside."""
        ok = v == v
        if self.lo is not None:
            ok = ok & ((v > self.lo) if self.lo_open else (v >= self.lo))
        if self.hi is not None:
            ok = ok & ((v < self.hi) if self.hi_open else (v <= self.hi))
        return ok

    def contains(self, values: Any) -> bool:
        return bool(np.all(self.test(np.asarray(values, dtype=np.float64))))


POSITIVE = Interval(0.0, None, lo_open=True)
NONNEGATIVE = Interval(0.0, None)
UNIT = Interval(0.0, 1.0)
UNIT_HALF_OPEN = Interval(0.0, 1.0, hi_open=True)


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds a known value (not a tracer under jit/vmap/grad)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


def _short(value: Any) -> str:
    arr = np.asarray(value)
    return repr(arr.item()) if arr.ndim == 0 else f"array of shape {arr.shape} {np.array2string(arr, threshold=6)}"


def check_range(loss_name: str, hparam: str, value: Any, interval: Interval) -> None:
    """``ValueError`` when a concrete ``value`` lies outside ``interval``."""
    if value is None or not is_concrete(value):
        return
    if not interval.contains(value):
        raise ValueError(f"{loss_name}: {hparam} must lie in {interval.describe()}, got {_short(value)}")


# ---------------------------------------------------------------------------
# Static (structural) options: typed
# ---------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


@dataclasses.dataclass(frozen=True)
class Static:
    """The type of a static option, checked when the loss is called or its
    object is built. ``annotation`` is what a type checker is shown."""

    annotation: str
    accepts: Callable[[Any], bool]
    expected: str
    error: type[Exception] = TypeError

    def check(self, loss_name: str, option: str, value: Any) -> None:
        if not self.accepts(value):
            raise self.error(f"{loss_name}: {option} must be {self.expected}, got {value!r}")


ANY = Static("Any", lambda v: True, "anything")
FLAG = Static("bool", lambda v: isinstance(v, bool), "True or False")
INT = Static("int", _is_int, "an int")
AXIS = INT  # a class or feature axis; its range is checked against the input by the layout
OPTIONAL_INT = Static("int | None", lambda v: v is None or _is_int(v), "an int or None")
POSITIVE_INT_OR_NONE = Static(
    "int | None", lambda v: v is None or (_is_int(v) and v >= 1), "a positive int or None", ValueError
)
AXES = Static(
    "int | tuple[int, ...] | None",
    lambda v: v is None or _is_int(v) or (isinstance(v, tuple) and all(_is_int(a) for a in v)),
    "None, an int or a tuple of ints",
)


def choice(*values: str) -> Static:
    """A static option taking one of ``values`` (``ValueError`` otherwise)."""
    listed = ", ".join(map(repr, values))
    return Static(
        f"Literal[{listed}]", lambda v: isinstance(v, str) and v in values, f"one of {listed}", ValueError
    )


# ---------------------------------------------------------------------------
# Input validation (shared by the layouts and the families' validators)
# ---------------------------------------------------------------------------


def check_float(loss_name: str, arg: str, x: Array) -> None:
    """``TypeError`` unless ``x`` has a floating dtype."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{loss_name}: {arg} must be a floating-point array, got dtype {x.dtype}; "
            f"cast it with .astype(jnp.float32)"
        )


def check_int(loss_name: str, arg: str, x: Array) -> None:
    """``TypeError`` unless ``x`` holds integer class labels."""
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(f"{loss_name}: {arg} must hold integer class labels, got dtype {x.dtype}")


def check_real(loss_name: str, arg: str, x: Array) -> None:
    """``TypeError`` unless ``x`` is a real numeric or boolean array."""
    if not (jnp.issubdtype(x.dtype, jnp.number) or x.dtype == jnp.bool_) or jnp.issubdtype(
        x.dtype, jnp.complexfloating
    ):
        raise TypeError(f"{loss_name}: {arg} must be a real numeric or boolean array, got dtype {x.dtype}")


def check_same_shape(loss_name: str, names: Sequence[str], arrays: Sequence[Array]) -> None:
    """``ValueError`` unless every array has the first one's shape (no broadcasting)."""
    shapes = [tuple(a.shape) for a in arrays]
    if any(s != shapes[0] for s in shapes[1:]):
        listed = ", ".join(f"{n} {s}" for n, s in zip(names, shapes))
        raise ValueError(
            f"{loss_name}: {' and '.join(names)} must have the same shape, got {listed}; "
            f"jaxloss never broadcasts them implicitly (reshape one, e.g. x[..., 0] or x[:, None])"
        )


def broadcasts_to(shape: tuple, to: tuple) -> bool:
    """Whether ``shape`` broadcasts to ``to`` without changing ``to``."""
    try:
        return tuple(np.broadcast_shapes(tuple(shape), tuple(to))) == tuple(to)
    except ValueError:
        return False


def check_broadcastable(loss_name: str, arg: str, shape: tuple, to: tuple, what: str = "the unreduced loss") -> None:
    """``ValueError`` unless ``shape`` broadcasts to ``to`` without changing ``to``."""
    if not broadcasts_to(shape, to):
        raise ValueError(f"{loss_name}: {arg} of shape {tuple(shape)} must broadcast to {what} of shape {tuple(to)}")


def normalize_axis(loss_name: str, axis: int, ndim: int) -> int:
    """``axis`` as a non-negative index into a rank-``ndim`` input; ``ValueError``
    naming the loss when it is out of range."""
    if not -ndim <= axis < ndim:
        raise ValueError(f"{loss_name}: axis {axis} is out of range for an input of rank {ndim}")
    return axis % ndim


def check_labels(
    loss_name: str, labels: Array, num_classes: int, ignore_index: int | None = None, arg: str = "labels"
) -> None:
    """``ValueError`` when concrete labels fall outside ``[0, num_classes)``.

    Labels equal to ``ignore_index`` are allowed. Traced labels are not checked
    here (kernels turn out-of-range labels into NaN losses; :func:`value_checks`
    reports them under ``jit``).
    """
    if not is_concrete(labels):
        return
    lab = np.asarray(labels)
    bad = (lab < 0) | (lab >= num_classes)
    if ignore_index is not None:
        bad &= lab != ignore_index
    if bad.any():
        raise ValueError(
            f"{loss_name}: {arg} must lie in [0, {num_classes})"
            + ("" if ignore_index is None else f" or equal ignore_index={ignore_index}")
            + f", got {lab[bad][:5].tolist()}"
        )


def check_class_vector(loss_name: str, arg: str, value: Any, num_classes: int, allow_scalar: bool = False) -> None:
    """``ValueError`` unless ``value`` is None, shape ``(num_classes,)`` (or a scalar)."""
    if value is None:
        return
    shape = tuple(np.shape(value))
    if shape == (num_classes,) or (allow_scalar and shape == ()):
        return
    allowed = "a scalar or " if allow_scalar else ""
    raise ValueError(
        f"{loss_name}: {arg} must be {allowed}one value per class, shape ({num_classes},), got shape {shape}"
    )



# ---------------------------------------------------------------------------
# Value domains and the opt-in value checks under jit
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Domain:
    """The values an input may hold, checked inside :func:`value_checks`.

    ``unless`` names a static flag that turns the check off (``from_logits``:
    logits are not probabilities)."""

    describe: str
    test: Callable[[Array], Array]
    unless: str | None = None

    def but_not_when(self, flag: str) -> Domain:
        return dataclasses.replace(self, unless=flag)


PROBABILITIES = Domain("lie in [0, 1]", lambda x: (x >= 0) & (x <= 1))
NONNEGATIVE_VALUES = Domain("be >= 0", lambda x: x >= 0)
SIGNS = Domain("be -1, 0 or 1", lambda x: (x == -1) | (x == 0) | (x == 1))
PLUS_MINUS_ONE = Domain("be -1 or 1", lambda x: (x == -1) | (x == 1))
FINITE = Domain("be finite", jnp.isfinite)


def _checks_state():
    """A jax configuration state that is part of jit's cache key, so a function
    first traced without value checks is traced again inside
    :func:`value_checks`. Falls back to a thread-local flag (without the
    cache-key property) if the jax internals it uses move."""
    try:
        from jax._src import config as jax_config

        return jax_config.bool_state(
            "jaxloss_value_checks", False, "jaxloss: check data values with checkify (set by jaxloss.value_checks)",
            include_in_jit_key=True, include_in_trace_context=True,
        )
    except Exception:  # pragma: no cover - only on a jax whose internals changed
        return None


_CHECKS = _checks_state()
_CHECKS_FALLBACK = threading.local()


def checking() -> bool:
    """Whether the current trace is inside :func:`value_checks`."""
    if _CHECKS is not None:
        return bool(_CHECKS.value)
    return getattr(_CHECKS_FALLBACK, "on", False)


@contextlib.contextmanager
def value_checks() -> Iterator[None]:
    r"""Check data values under ``jit`` with :mod:`jax.experimental.checkify`.

    Inside the context every loss also checks, in the compiled program, what
    trace-time checks cannot see in traced data: integer labels in range
    (``ignore_index`` allowed), probabilities and binary targets in their
    domain, ``weights >= 0``, floating inputs finite (masked entries excluded),
    and the ranges of traced hyper-parameters. A failed check names the loss,
    the check and the first bad index. Wrap the function in
    ``checkify.checkify`` to receive the error (a check that is not
    functionalised by checkify raises when traced)::

        from jax.experimental import checkify
        with jaxloss.value_checks():
            err, value = checkify.checkify(jax.jit(step))(params, batch)
        err.throw()

    Outside the context the compiled program is unchanged (no cost). The
    setting is part of jit's cache key: a function compiled without checks is
    traced again, with them, inside the context.

    Example:
      >>> import jax, jax.numpy as jnp, jaxloss
      >>> from jax.experimental import checkify
      >>> f = jax.jit(lambda x, y: jaxloss.sparse_cross_entropy(x, y))
      >>> with jaxloss.value_checks():
      ...     err, _ = checkify.checkify(f)(jnp.zeros((2, 5)), jnp.array([1, 10]))
      >>> print(err.get().split(" (")[0])
      sparse_cross_entropy: labels must lie in [0, 5); first bad entry labels[1] = 10
    """
    if _CHECKS is not None:
        with _CHECKS(True):
            yield
        return
    previous = getattr(_CHECKS_FALLBACK, "on", False)  # pragma: no cover
    _CHECKS_FALLBACK.on = True  # pragma: no cover
    try:  # pragma: no cover
        yield
    finally:  # pragma: no cover
        _CHECKS_FALLBACK.on = previous


def value_check(ok: Array, loss_name: str, what: str, arg: str, x: Array) -> None:
    """One checkify check: ``ok`` (shaped like ``x``) must hold everywhere; the
    message names the loss, the check and the first bad index and value."""
    if x.size == 0:
        return
    ok = jnp.broadcast_to(ok, x.shape)
    first = jnp.argmin(ok.reshape(-1))
    index = jnp.unravel_index(first, x.shape) if x.ndim else ()
    fields = {f"i{k}": i for k, i in enumerate(index)}
    where = ", ".join("{" + k + "}" for k in fields)
    checkify.check(
        jnp.all(ok),
        f"{loss_name}: {arg} must {what}; first bad entry {arg}[{where}] = {{value}}",
        value=x.reshape(-1)[first],
        **fields,
    )
