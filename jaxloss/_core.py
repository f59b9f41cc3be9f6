"""The one place for what every jaxloss loss shares.

A loss is written once, as a *kernel*: a function of its input arrays and its
hyper-parameters that returns the unreduced loss (optionally with an intrinsic
per-entry weight, such as a class weight or a 0 for an ignored label).  The
:func:`loss` decorator turns the kernel into

* the public function ``name(*inputs, **hparams, reduction="mean", weights=None,
  where=None)``, which validates its inputs (at trace time), applies the dtype
  policy, masks and weights the unreduced loss and reduces it;
* a class ``CamelCaseName(**hparams, reduction=...)`` -- an immutable pytree whose
  numeric hyper-parameters are leaves and whose structural options are static;
* an entry in :data:`REGISTRY`, which the shared tests, the benchmarks and
  ``python -m jaxloss`` iterate over.

Nothing about reduction, masking, weighting, validation or dtypes lives anywhere
else.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import numbers
import re
import sys
from typing import Any, Callable, Literal, Mapping, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "REGISTRY",
    "Interval",
    "Loss",
    "LossSpec",
    "WeightedSum",
    "loss",
]

Array = jax.Array
ArrayLike = Union[jax.Array, np.ndarray, float, int]
Reduction = Literal["mean", "sum", "none"]
REDUCTIONS = ("mean", "sum", "none")

# ---------------------------------------------------------------------------
# Hyper-parameter ranges
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Interval:
    """An allowed range for a numeric hyper-parameter, checked when concrete.

    ``Interval(0, None, lo_open=True)`` is ``(0, inf)``; ``Interval(0, 1,
    hi_open=True)`` is ``[0, 1)``. ``None`` as a value is always accepted (it
    means "disabled" for the hyper-parameters that allow it).
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

    def contains(self, values: np.ndarray) -> bool:
        v = np.asarray(values, dtype=np.float64)
        ok = ~np.isnan(v)
        if self.lo is not None:
            ok &= (v > self.lo) if self.lo_open else (v >= self.lo)
        if self.hi is not None:
            ok &= (v < self.hi) if self.hi_open else (v <= self.hi)
        return bool(np.all(ok))


POSITIVE = Interval(0.0, None, lo_open=True)
NONNEGATIVE = Interval(0.0, None)
UNIT = Interval(0.0, 1.0)
UNIT_OPEN = Interval(0.0, 1.0, lo_open=True, hi_open=True)
UNIT_HALF_OPEN = Interval(0.0, 1.0, hi_open=True)


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds a known value (not a tracer under jit/vmap/grad)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


def check_range(loss_name: str, hparam: str, value: Any, interval: Interval) -> None:
    """Raise ``ValueError`` when a concrete ``value`` lies outside ``interval``."""
    if value is None or not is_concrete(value):
        return
    if not interval.contains(np.asarray(value)):
        raise ValueError(
            f"{loss_name}: {hparam} must lie in {interval.describe()}, got {_short(value)}"
        )


def _short(value: Any) -> str:
    arr = np.asarray(value)
    return repr(arr.item()) if arr.ndim == 0 else f"array of shape {arr.shape} {np.array2string(arr, threshold=6)}"


# ---------------------------------------------------------------------------
# Input validation helpers (shared by the decorator and by kernels' validators)
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
        raise TypeError(
            f"{loss_name}: {arg} must hold integer class labels, got dtype {x.dtype}"
        )


def check_same_shape(loss_name: str, names: Sequence[str], arrays: Sequence[Array]) -> None:
    """``ValueError`` unless every array has the first one's shape (no broadcasting)."""
    shapes = [tuple(a.shape) for a in arrays]
    if any(s != shapes[0] for s in shapes[1:]):
        listed = ", ".join(f"{n} {s}" for n, s in zip(names, shapes))
        raise ValueError(
            f"{loss_name}: {' and '.join(names)} must have the same shape, got {listed}; "
            f"jaxloss never broadcasts them implicitly (reshape one, e.g. x[..., 0] or x[:, None])"
        )


def check_broadcastable(loss_name: str, arg: str, shape: tuple, to: tuple) -> None:
    """``ValueError`` unless ``shape`` broadcasts to ``to`` without changing ``to``."""
    try:
        ok = tuple(np.broadcast_shapes(tuple(shape), tuple(to))) == tuple(to)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"{loss_name}: {arg} of shape {tuple(shape)} must broadcast to the "
            f"unreduced loss of shape {tuple(to)}"
        )


def check_labels(
    loss_name: str, labels: Array, num_classes: int, ignore_index: int | None = None, arg: str = "labels"
) -> None:
    """``ValueError`` when concrete labels fall outside ``[0, num_classes)``.

    Labels equal to ``ignore_index`` are allowed. Traced labels are not checked
    (kernels turn out-of-range labels into NaN losses instead).
    """
    if not is_concrete(labels):
        return
    lab = np.asarray(labels)
    bad = (lab < 0) | (lab >= num_classes)
    if ignore_index is not None:
        bad &= lab != ignore_index
    if bad.any():
        raise ValueError(
            f"{loss_name}: {arg} must lie in [0, {num_classes}) "
            + ("" if ignore_index is None else f"or equal ignore_index={ignore_index} ")
            + f"got {lab[bad][:5].tolist()}"
        )


def normalize_axis(loss_name: str, axis: int, ndim: int) -> int:
    """``axis`` as a non-negative index into a rank-``ndim`` input; ``ValueError``
    naming the loss when it is out of range."""
    if not -ndim <= axis < ndim:
        raise ValueError(f"{loss_name}: axis {axis} is out of range for an input of rank {ndim}")
    return axis % ndim


# ---------------------------------------------------------------------------
# dtype policy
# ---------------------------------------------------------------------------


def compute_dtype(*arrays: Array) -> jnp.dtype:
    """The dtype a loss is computed and returned in: float32, or float64 when an
    input is float64 (x64 enabled). bf16/f16 inputs are computed in float32."""
    dts = [jnp.promote_types(a.dtype, jnp.float32) for a in arrays if jnp.issubdtype(a.dtype, jnp.floating)]
    return functools.reduce(jnp.promote_types, dts, jnp.dtype(jnp.float32))


# ---------------------------------------------------------------------------
# Safe arithmetic shared by kernels
# ---------------------------------------------------------------------------


def safe_div(num: Array, den: Array) -> Array:
    """``num / den`` with 0 where ``den == 0``; zero gradient there, never NaN."""
    zero = den == 0
    return jnp.where(zero, jnp.zeros_like(num), num / jnp.where(zero, jnp.ones_like(den), den))


@jax.custom_jvp
def abs0(x: Array) -> Array:
    """``|x|`` whose derivative is ``sign(x)``, so 0 at 0 (the subgradient jaxloss
    uses; ``jnp.abs`` gives 1 there). Measured faster than ``max(x, -x)`` or
    ``x * sign(x)`` in value-and-gradient (benchmarks/bench_elementwise.py)."""
    return jnp.abs(x)


@abs0.defjvp
def _abs0_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return jnp.abs(x), jnp.sign(x) * dx


# ---------------------------------------------------------------------------
# Reduction, weights and where: the one safe-reduction helper
# ---------------------------------------------------------------------------


def reduce_loss(
    values: Array,
    *,
    reduction: str,
    weights: Array | None = None,
    where: Array | None = None,
    mean_weights: Array | None = None,
) -> Array:
    """Weight, mask and reduce an unreduced loss.

    * ``"none"``: ``w * l`` with masked (and zero-weight) entries exactly 0.
    * ``"sum"``: ``sum(w * l)`` over unmasked entries.
    * ``"mean"``: ``sum(w * l) / sum(w)`` over unmasked entries (``w = 1`` when no
      weights are given, i.e. the plain mean over unmasked entries); 0 when
      nothing is counted.

    Entries whose mask is False or whose weight is 0 contribute exactly 0 to
    the value even when the loss there is inf or NaN.

    ``mean_weights`` (broadcastable to ``values``; default: ``weights``) replaces
    ``w`` in the ``"mean"`` denominator only: ``"mean"`` is then
    ``sum(w * l) / sum(mean_weights)`` over the counted entries. It is for losses
    whose value is not a multiple of its denominator weight (PyTorch's label
    smoothing with class weights).
    """
    if weights is None and where is None and mean_weights is None:
        if reduction == "none":
            return values
        total = jnp.sum(values)
        if reduction == "sum":
            return total
        return total / values.size if values.size else jnp.zeros_like(total)

    counted = None if where is None else jnp.broadcast_to(where, values.shape)
    if weights is None:
        w = None
    else:
        w = jnp.broadcast_to(weights.astype(values.dtype), values.shape)
        nonzero = w != 0
        counted = nonzero if counted is None else counted & nonzero
    weighted = values if w is None else w * values
    if counted is not None:
        weighted = jnp.where(counted, weighted, jnp.zeros_like(weighted))
    if reduction == "none":
        return weighted
    total = jnp.sum(weighted)
    if reduction == "sum":
        return total
    if mean_weights is not None:
        w = jnp.broadcast_to(mean_weights.astype(values.dtype), values.shape)
    if counted is None:
        den = jnp.sum(jnp.ones_like(values) if w is None else w)
    else:
        den = jnp.sum(jnp.where(counted, jnp.ones_like(values) if w is None else w, 0))
    return safe_div(total, den)


def check_reduction(loss_name: str, reduction: Any) -> str:
    """The reduction as ``"mean"``, ``"sum"`` or ``"none"`` (``None`` means
    ``"none"``); ``ValueError`` listing the choices otherwise."""
    if reduction is None:
        return "none"
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"{loss_name}: reduction must be one of 'mean', 'sum', 'none' (or None), got {reduction!r}"
        )
    return reduction


# ---------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """Everything jaxloss knows about one loss.

    Attributes:
      name: the public function name (``"huber_loss"``).
      fn: the public function.
      cls: the generated :class:`Loss` subclass (``HuberLoss``).
      family: ``"regression"``, ``"binary"``, ... (the module it lives in).
      inputs: names of the positional array inputs.
      hparams: numeric hyper-parameters and their defaults (traced; pytree leaves).
      static: structural options and their defaults (static; part of the treedef).
      checks: allowed ranges of the numeric hyper-parameters.
      sample: ``sample(rng) -> tuple of numpy arrays``, example positional inputs.
      sweep: ``(hparam, values)`` used to show a hyper-parameter is traced.
      differentiable: indices of the inputs the shared tests differentiate.
      grad_order: highest order for ``check_grads`` (2 where the loss is smooth
        at the sample inputs, 1 otherwise).
      optax: name of the optax equivalent for benchmarks/tests, or None.
    """

    name: str
    fn: Callable[..., Array]
    cls: type
    family: str
    inputs: tuple[str, ...]
    hparams: Mapping[str, Any]
    static: Mapping[str, Any]
    checks: Mapping[str, Interval]
    sample: Callable[[np.random.Generator], tuple] | None
    sweep: tuple[str, tuple] | None
    differentiable: tuple[int, ...]
    grad_order: int
    optax: str | None


REGISTRY: dict[str, LossSpec] = {}
"""Every built-in loss by public name. Shared tests, benchmarks and the self-check
iterate over it."""


# ---------------------------------------------------------------------------
# The decorator
# ---------------------------------------------------------------------------

_ACRONYMS = {
    "mse": "MSE", "mae": "MAE", "msle": "MSLE", "mape": "MAPE", "nll": "NLL", "kl": "KL",
    "js": "JS", "ntxent": "NTXent", "supcon": "SupCon", "l1": "L1", "l2": "L2",
}


def class_name_for(name: str) -> str:
    """``huber_loss -> HuberLoss``, ``mse_loss -> MSELoss``, ``nll_loss -> NLLLoss``."""
    return "".join(_ACRONYMS.get(part, part.capitalize()) for part in name.split("_"))


_COMMON = ("reduction", "weights", "where")


def _is_numeric_default(value: Any) -> bool:
    return value is None or isinstance(value, (numbers.Number, np.ndarray, jax.Array))


def loss(
    kernel: Callable[..., Any] | None = None,
    *,
    family: str = "custom",
    static: Sequence[str] = (),
    checks: Mapping[str, Interval] | None = None,
    float_inputs: Sequence[str] | None = None,
    label_inputs: Sequence[str] = (),
    same_shape: Sequence[str] | None = None,
    reduced_axis: int | str | None = None,
    validate: Callable[..., None] | None = None,
    sample: Callable[[np.random.Generator], tuple] | None = None,
    sweep: tuple[str, tuple] | None = None,
    differentiable: Sequence[int] = (0,),
    grad_order: int = 2,
    optax: str | None = None,
    name: str | None = None,
    class_name: str | None = None,
    native_dtype: Sequence[str] = (),
    register: bool | None = None,
    masked_inputs: Sequence[str] | None = None,
) -> Any:
    r"""Turn a loss kernel into a public loss function and its class.

    The kernel takes its input arrays positionally and its hyper-parameters as
    keyword-only arguments with defaults, and returns the *unreduced* loss
    (per element, or per example for losses that reduce an axis), or a pair
    ``(loss, weight)`` where ``weight`` is an intrinsic weight broadcastable to
    the loss (class weights; 0 for an ignored label), or a triple ``(loss,
    weight, mean_weight)`` whose ``mean_weight`` replaces ``weight`` in the
    ``"mean"`` denominator (for losses whose weighted value is not a multiple of
    the denominator weight, e.g. PyTorch's label smoothing with class weights).
    It never reduces, masks, weights, validates or casts: the decorator does.

    The returned function has the kernel's signature plus ``reduction="mean"``
    (``"mean"``, ``"sum"``, ``"none"``/``None``), ``weights=None`` (broadcastable
    to the unreduced loss) and ``where=None`` (boolean mask of the same):
    ``"sum"`` is :math:`\sum_i w_i l_i` over unmasked entries and ``"mean"`` is
    :math:`\sum_i w_i l_i / \sum_i w_i` (0 when nothing is counted). Masked
    inputs are replaced by zeros before the kernel runs, so a NaN in a masked
    entry never reaches the value or the gradient.

    Args:
      kernel: the per-element (or per-example) math.
      family: registry family (``"regression"``, ``"binary"``, ...).
      static: names of structural keyword options (static under ``jit``); every
        other keyword hyper-parameter is numeric and traced.
      checks: allowed :class:`Interval` of numeric hyper-parameters, checked when
        their values are concrete (``ValueError``).
      float_inputs: inputs that must be floating point (default: all inputs not
        in ``label_inputs``). Integer or bool values raise ``TypeError``.
      label_inputs: inputs that must hold integer labels (``TypeError`` otherwise).
      same_shape: inputs that must share one shape (default: all inputs).
      reduced_axis: for losses that reduce an axis of their inputs, that axis
        (an int, or the name of a static option such as ``"axis"``); used to
        extend a per-example ``where`` mask onto the inputs.
      validate: extra trace-time checks, called as ``validate(name, *inputs,
        **options)`` with the full set of options.
      sample, sweep, differentiable, grad_order, optax: registry metadata (see
        :class:`LossSpec`).
      name, class_name: override the public names.
      native_dtype: floating inputs handed to the kernel in their own dtype
        instead of the compute dtype (for kernels that accumulate in float32
        themselves and must not copy a large bf16 input to float32, such as the
        weight of a language-model head). The returned loss still follows the
        dtype policy.
      masked_inputs: inputs laid out like the unreduced loss (possibly with the
        ``reduced_axis`` added) whose masked entries are zeroed before the kernel
        runs (default: every input whose shape allows it). Pass ``()`` for losses
        whose entries depend on other entries' inputs (in-batch mining): zeroing
        a masked example's label would change the other examples' losses.
      register: put the loss in :data:`REGISTRY` (default: built-in losses of
        ``jaxloss.*`` modules are registered, user losses are not; ``False``
        for losses the shared checks cannot call, e.g. ones needing a named
        mesh axis).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> @jaxloss.loss
      ... def cubic_loss(pred, target, *, scale=1.0):
      ...     "Cubic loss :math:`s |p - t|^3`."
      ...     return scale * jnp.abs(pred - target) ** 3
      >>> float(cubic_loss(jnp.array([1.0, 2.0]), jnp.array([0.0, 0.0])))
      4.5
      >>> cubic_loss.Loss(scale=2.0)
      CubicLoss(scale=2.0, reduction='mean')
    """
    if kernel is None:
        return functools.partial(
            loss, family=family, static=static, checks=checks, float_inputs=float_inputs,
            label_inputs=label_inputs, same_shape=same_shape, reduced_axis=reduced_axis,
            validate=validate, sample=sample, sweep=sweep, differentiable=differentiable,
            grad_order=grad_order, optax=optax, name=name, class_name=class_name,
            native_dtype=native_dtype, register=register, masked_inputs=masked_inputs,
        )

    fname = name or kernel.__name__
    sig = inspect.signature(kernel)
    inputs = tuple(
        p.name for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    )
    keywords = {p.name: p.default for p in sig.parameters.values() if p.kind == p.KEYWORD_ONLY}
    for k, v in keywords.items():
        if v is inspect.Parameter.empty:
            raise TypeError(f"{fname}: keyword option {k!r} needs a default")
        if k in _COMMON:
            raise TypeError(f"{fname}: {k!r} is provided by jaxloss.loss; remove it from the kernel")
    unknown = set(static) - set(keywords)
    if unknown:
        raise TypeError(f"{fname}: static options {sorted(unknown)} are not keyword arguments of the kernel")
    static_defaults = {k: keywords[k] for k in keywords if k in static}
    hparam_defaults = {k: v for k, v in keywords.items() if k not in static}
    for k, v in hparam_defaults.items():
        if not _is_numeric_default(v):
            raise TypeError(f"{fname}: option {k!r} has a non-numeric default {v!r}; list it in static=")
    checks = dict(checks or {})
    label_set = tuple(label_inputs)
    float_set = tuple(float_inputs) if float_inputs is not None else tuple(i for i in inputs if i not in label_set)
    same_set = tuple(same_shape) if same_shape is not None else inputs
    native = frozenset(native_dtype)
    masked = frozenset(inputs if masked_inputs is None else masked_inputs)
    unknown_inputs = (set(float_set) | set(label_set) | set(same_set) | native | masked) - set(inputs)
    if unknown_inputs:
        raise TypeError(f"{fname}: {sorted(unknown_inputs)} are not positional inputs of the kernel")

    @functools.partial(jax.jit, static_argnames=("reduction", "static_items"))
    def _compute(arrays, hparams, weights, where, *, reduction, static_items):
        opts = dict(static_items)
        dtype = compute_dtype(*arrays)
        arrays = tuple(
            a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) and n not in native else a
            for n, a in zip(inputs, arrays)
        )
        hparams = jax.tree_util.tree_map(
            lambda h: jnp.asarray(h, dtype) if jnp.issubdtype(jnp.result_type(h), jnp.floating) else h,
            hparams,
        )

        def run(*xs):
            out = kernel(*xs, **hparams, **opts)
            # (loss,) | (loss, weight) | (loss, weight, mean_weight): see reduce_loss
            out = out if isinstance(out, tuple) else (out,)
            return tuple(out) + (None,) * (3 - len(out))

        loss_shape = jax.eval_shape(run, *arrays)[0].shape
        if weights is not None:
            check_broadcastable(fname, "weights", weights.shape, loss_shape)
        if where is not None:
            check_broadcastable(fname, "where", where.shape, loss_shape)
            mask = jnp.broadcast_to(where, loss_shape)
            axis = opts.get(reduced_axis) if isinstance(reduced_axis, str) else reduced_axis
            arrays = tuple(
                _mask_input(a, mask, axis) if n in masked else a for n, a in zip(inputs, arrays)
            )
        values, intrinsic, mean_w = run(*arrays)
        values = values.astype(dtype)
        if intrinsic is not None:
            w = intrinsic if weights is None else intrinsic * weights
        else:
            w = weights
        if mean_w is not None and weights is not None:
            mean_w = mean_w * weights
        return reduce_loss(values, reduction=reduction, weights=w, where=where, mean_weights=mean_w)

    def public(*args: Any, **kwargs: Any) -> Array:
        if len(args) != len(inputs):
            raise TypeError(
                f"{fname}: expected {len(inputs)} positional inputs ({', '.join(inputs)}), got {len(args)}"
            )
        bad = set(kwargs) - set(keywords) - set(_COMMON)
        if bad:
            raise TypeError(f"{fname}: unexpected keyword arguments {sorted(bad)}")
        reduction = check_reduction(fname, kwargs.pop("reduction", "mean"))
        weights = kwargs.pop("weights", None)
        where = kwargs.pop("where", None)
        arrays = tuple(jnp.asarray(a) for a in args)
        by_name = dict(zip(inputs, arrays))
        for n in float_set:
            check_float(fname, n, by_name[n])
        for n in label_set:
            check_int(fname, n, by_name[n])
        if len(same_set) > 1:
            check_same_shape(fname, same_set, [by_name[n] for n in same_set])
        opts = {**static_defaults, **{k: v for k, v in kwargs.items() if k in static_defaults}}
        hps = {**hparam_defaults, **{k: v for k, v in kwargs.items() if k in hparam_defaults}}
        for k, interval in checks.items():
            check_range(fname, k, hps.get(k), interval)
        if validate is not None:
            validate(fname, *arrays, **hps, **opts)
        if weights is not None:
            weights = jnp.asarray(weights)
            if not jnp.issubdtype(weights.dtype, jnp.number) or jnp.issubdtype(weights.dtype, jnp.complexfloating):
                raise TypeError(f"{fname}: weights must be a real numeric array, got dtype {weights.dtype}")
        if where is not None:
            where = jnp.asarray(where)
            if where.dtype != jnp.bool_:
                raise TypeError(f"{fname}: where must be a boolean mask, got dtype {where.dtype}")
        hps = {k: (jnp.asarray(v) if isinstance(v, (list, tuple)) else v) for k, v in hps.items()}
        return _compute(
            arrays, hps, weights, where, reduction=reduction,
            static_items=tuple(sorted(opts.items())),
        )

    params = [p for p in sig.parameters.values()]
    params += [
        inspect.Parameter("reduction", inspect.Parameter.KEYWORD_ONLY, default="mean", annotation="Reduction"),
        inspect.Parameter("weights", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="ArrayLike | None"),
        inspect.Parameter("where", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="ArrayLike | None"),
    ]
    public.__signature__ = sig.replace(parameters=params, return_annotation="jax.Array")  # type: ignore[attr-defined]
    public.__name__ = fname
    public.__qualname__ = fname
    public.__doc__ = kernel.__doc__
    public.__module__ = kernel.__module__ or "__main__"
    public.__wrapped_kernel__ = kernel  # type: ignore[attr-defined]

    cname = class_name or class_name_for(fname)
    cls = _make_class(cname, fname, public, hparam_defaults, static_defaults, checks, kernel.__module__ or "__main__")
    public.Loss = cls  # type: ignore[attr-defined]

    spec = LossSpec(
        name=fname, fn=public, cls=cls, family=family, inputs=inputs,
        hparams=hparam_defaults, static=static_defaults, checks=checks, sample=sample,
        sweep=sweep, differentiable=tuple(differentiable), grad_order=grad_order, optax=optax,
    )
    public.spec = spec  # type: ignore[attr-defined]
    module_name = kernel.__module__ or ""
    builtin = module_name.startswith("jaxloss.")
    if builtin if register is None else register:
        REGISTRY[fname] = spec
    if builtin:  # the class is placed beside its function
        setattr(sys.modules[module_name], cname, cls)
    return public


def _mask_input(x: Array, mask: Array, axis: int | None) -> Array:
    """Replace masked entries of an input by 0 (the first half of the double
    ``where``), when the mask can be laid onto the input."""
    if x.shape == mask.shape:
        m = mask
    elif axis is not None and x.ndim == mask.ndim + 1:
        m = jnp.expand_dims(mask, axis % x.ndim)
        if tuple(np.broadcast_shapes(m.shape, x.shape)) != x.shape:
            return x
    else:
        return x
    return jnp.where(m, x, jnp.zeros_like(x))


# ---------------------------------------------------------------------------
# Loss objects
# ---------------------------------------------------------------------------


def _is_scalar(x: Any) -> bool:
    return isinstance(x, numbers.Number) or (hasattr(x, "shape") and getattr(x, "ndim", 1) == 0)


class Loss:
    """Base class of every loss object.

    Loss objects are immutable pytrees that are called like their function,
    ``crit(*inputs, weights=None, where=None)``, and compose into weighted sums
    with ``+``, ``-``, ``*`` and ``/`` by scalars::

        combo = DiceLoss(from_logits=True) + 0.5 * BinaryCrossEntropyWithLogits()
        combo(logits, masks)  # == dice(...) + 0.5 * bce(...)
    """

    def __call__(self, *inputs: Any, weights: Any = None, where: Any = None) -> Array:
        raise NotImplementedError

    def _terms(self) -> tuple[tuple[Any, "Loss"], ...]:
        return ((1.0, self),)

    def __add__(self, other: Any) -> "WeightedSum":
        if not isinstance(other, Loss):
            return NotImplemented
        return WeightedSum(self._terms() + other._terms())

    def __radd__(self, other: Any) -> "Loss":
        if isinstance(other, numbers.Number) and other == 0:  # sum([...]) starts at 0
            return self
        return NotImplemented

    def __sub__(self, other: Any) -> "WeightedSum":
        if not isinstance(other, Loss):
            return NotImplemented
        return self + (-1.0) * other

    def __mul__(self, scale: Any) -> "WeightedSum":
        if not _is_scalar(scale):
            return NotImplemented
        return WeightedSum(tuple((c * scale, l) for c, l in self._terms()))

    __rmul__ = __mul__

    def __truediv__(self, scale: Any) -> "WeightedSum":
        if not _is_scalar(scale):
            return NotImplemented
        return WeightedSum(tuple((c / scale, l) for c, l in self._terms()))

    def __neg__(self) -> "WeightedSum":
        return self * -1.0

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"{type(self).__name__} is immutable")


@jax.tree_util.register_pytree_node_class
class WeightedSum(Loss):
    """``sum_k c_k * loss_k(*inputs, weights=..., where=...)``: losses composed
    with ``+ - * /``. The coefficients are pytree leaves (traced under jit)."""

    def __init__(self, terms: Sequence[tuple[Any, Loss]]):
        object.__setattr__(self, "terms", tuple((c, l) for c, l in terms))

    def _terms(self) -> tuple[tuple[Any, Loss], ...]:
        return self.terms

    def __call__(self, *inputs: Any, weights: Any = None, where: Any = None) -> Array:
        total = None
        for c, term in self.terms:
            part = c * term(*inputs, weights=weights, where=where)
            total = part if total is None else total + part
        return total

    def __repr__(self) -> str:
        out = []
        for i, (c, term) in enumerate(self.terms):
            neg = _is_number(c) and c < 0
            mag = -c if neg else c
            body = repr(term) if _is_number(mag) and mag == 1 else f"{_fmt(mag)} * {term!r}"
            out.append(("- " if neg else "+ ") + body if i else ("-" if neg else "") + body)
        return " ".join(out)

    def tree_flatten(self):
        coefs = tuple(c for c, _ in self.terms)
        losses = tuple(l for _, l in self.terms)
        return (coefs, losses), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        coefs, losses = children
        obj = object.__new__(cls)
        object.__setattr__(obj, "terms", tuple(zip(coefs, losses)))
        return obj


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Number) or (is_concrete(x) and np.ndim(x) == 0 and hasattr(x, "dtype"))


def _fmt(x: Any) -> str:
    if isinstance(x, float) or (hasattr(x, "dtype") and is_concrete(x) and np.ndim(x) == 0):
        return f"{float(x):g}"
    return repr(x)


class FunctionLoss(Loss):
    """Base of the classes generated by :func:`loss` (one per loss function)."""

    _fn: Callable[..., Array]
    _hparam_defaults: Mapping[str, Any]
    _static_defaults: Mapping[str, Any]

    def __init__(self, **options: Any):
        cls = type(self)
        allowed = set(cls._hparam_defaults) | set(cls._static_defaults) | {"reduction"}
        bad = set(options) - allowed
        if bad:
            raise TypeError(f"{cls.__name__}: unexpected options {sorted(bad)}; allowed: {sorted(allowed)}")
        fname = cls._fn.__name__
        reduction = check_reduction(fname, options.pop("reduction", "mean"))
        hparams = {k: options.get(k, v) for k, v in cls._hparam_defaults.items()}
        static = {k: options.get(k, v) for k, v in cls._static_defaults.items()}
        for k, interval in cls._checks.items():
            check_range(fname, k, hparams.get(k), interval)
        object.__setattr__(self, "_hparams", hparams)
        object.__setattr__(self, "_static", {**static, "reduction": reduction})

    def __getattr__(self, name: str) -> Any:
        for store in ("_hparams", "_static"):
            values = self.__dict__.get(store, {})
            if name in values:
                return values[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __call__(self, *inputs: Any, weights: Any = None, where: Any = None) -> Array:
        return type(self)._fn(*inputs, **self._hparams, **self._static, weights=weights, where=where)

    def __repr__(self) -> str:
        items = {**self._hparams, **self._static}
        return f"{type(self).__name__}({', '.join(f'{k}={_repr_value(v)}' for k, v in items.items())})"

    def __eq__(self, other: Any) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        a, b = jax.tree_util.tree_flatten(self), jax.tree_util.tree_flatten(other)
        return a[1] == b[1] and all(
            x is y or (is_concrete(x) and is_concrete(y) and np.array_equal(np.asarray(x), np.asarray(y)))
            for x, y in zip(a[0], b[0])
        )

    __hash__ = None  # type: ignore[assignment]

    def tree_flatten(self):
        names = tuple(self._hparams)
        return tuple(self._hparams[k] for k in names), (names, tuple(self._static.items()))

    @classmethod
    def tree_unflatten(cls, aux, children):
        names, static = aux
        obj = object.__new__(cls)
        object.__setattr__(obj, "_hparams", dict(zip(names, children)))
        object.__setattr__(obj, "_static", dict(static))
        return obj


def _repr_value(v: Any) -> str:
    if hasattr(v, "shape") and np.ndim(v) > 0:
        return f"Array(shape={tuple(v.shape)}, dtype={v.dtype})"
    if hasattr(v, "dtype") and is_concrete(v):
        return repr(np.asarray(v).item())
    return repr(v)


def _make_class(cname, fname, fn, hparam_defaults, static_defaults, checks, module) -> type:
    doc_head = f"Loss object for :func:`jaxloss.{fname}`.\n\n"
    summary = (fn.__doc__ or "").strip().split("\n")[0]
    opts = ", ".join([*hparam_defaults, *static_defaults, "reduction"])
    doc = (
        doc_head
        + (summary + "\n\n" if summary else "")
        + f"``{cname}({opts})`` stores the options; calling it as ``crit(*inputs, weights=None, where=None)`` "
        f"equals ``{fname}(*inputs, **options, weights=weights, where=where)``. Numeric options are pytree "
        "leaves (traced under jit/vmap), structural ones are static. Compose with ``+ - * /``."
    )
    cls = type(
        cname,
        (FunctionLoss,),
        {
            "__doc__": doc,
            "__module__": module,
            "__qualname__": cname,
            "_fn": staticmethod(fn),
            "_hparam_defaults": dict(hparam_defaults),
            "_static_defaults": dict(static_defaults),
            "_checks": dict(checks),
        },
    )
    return jax.tree_util.register_pytree_node_class(cls)
