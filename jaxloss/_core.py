"""The one place for what every jaxloss loss shares.

A loss is written once, as a *kernel*: a function of its input arrays
(positional) and its options (keyword-only, with defaults) that returns the
unreduced loss, or an :class:`Unreduced` with an intrinsic weight and count.
:func:`loss` turns the kernel into the public function and its class in five
steps, each a small function below:

1. :meth:`Signature.parse` reads the kernel's signature: inputs, numeric
   hyper-parameters (traced), static options (typed by :class:`Static`);
2. :func:`_make_compute` builds the one jitted program: dtype policy, masking of
   inputs, the kernel, the optional value checks, :func:`reduce_loss`;
3. :func:`_make_public` builds the function users call: it binds any binding of
   the advertised signature, validates at trace time (:func:`_validate_call`)
   and calls the program;
4. ``_objects.make_loss_class`` builds the class (``HuberLoss``);
5. ``register=True`` puts a :class:`LossSpec` in :data:`REGISTRY`.

How the inputs relate to the unreduced loss (which inputs are labels, which axis
is reduced, how ``where`` is laid onto inputs) is one :class:`Layout` per loss.
Nothing about reduction, masking, weighting, validation or dtypes lives in the
family modules.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import (
    ANY,
    Domain,
    Interval,
    Static,
    broadcasts_to,
    check_broadcastable,
    check_float,
    check_int,
    check_labels,
    check_range,
    check_real,
    check_same_shape,
    checking,
    normalize_axis,
    value_check,
)
from ._numerics import safe_div

__all__ = [
    "REGISTRY",
    "Domain",
    "Example",
    "Interval",
    "Layout",
    "LossSpec",
    "Static",
    "Unreduced",
    "loss",
]

Array = jax.Array
ArrayLike = jax.Array | np.ndarray | float | int
Reduction = Literal["mean", "sum", "none", "sum_and_weight"]
REDUCTIONS = ("mean", "sum", "none", "sum_and_weight")
_COMMON = ("reduction", "weights", "where")
_ELEMENT_WEIGHTS = "element_weights"  # the kernel parameter of dense layouts
_ELEMENT_WHERE = "element_where"  # optional second one: the per-element mask alone (validity, not weight)
_LOSS_WHERE = "loss_where"  # the kernel parameter of kernels that see the ``where`` mask

# ---------------------------------------------------------------------------
# dtype policy
# ---------------------------------------------------------------------------


def compute_dtype(*arrays: Array) -> jnp.dtype:
    """The dtype a loss is computed and returned in: float32, or float64 when an
    input is float64 (x64 enabled). bf16/f16 inputs are computed in float32."""
    dts = [jnp.promote_types(a.dtype, jnp.float32) for a in arrays if jnp.issubdtype(a.dtype, jnp.floating)]
    return functools.reduce(jnp.promote_types, dts, jnp.dtype(jnp.float32))


# ---------------------------------------------------------------------------
# Layouts: how the inputs relate to the unreduced loss
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Layout:
    """How a loss's positional inputs are laid out against its unreduced loss.

    Attributes:
      floats: inputs that must be floating point (default: every input that is
        not in ``labels`` or ``per_example``). Others must be real numeric or bool.
      labels: inputs holding integer class labels (``TypeError`` otherwise).
      same_shape: inputs that must share one shape (default: every input not in
        ``per_example``).
      reduced_axis: the axis of the inputs the loss reduces (a class or feature
        axis), as an int or as the name of a static option (``"axis"``). The
        unreduced loss is then shaped like the inputs without it.
      per_example: inputs shaped like the unreduced loss (the first input
        without ``reduced_axis``), such as integer labels or pair labels.
      class_labels: whether ``labels`` index ``reduced_axis`` of the first input
        (then the core checks them against its size, with ``ignore_index``).
      mask_inputs: whether ``where`` zeroes the masked entries of the inputs laid
        out like the loss (with ``reduced_axis``), before the kernel runs (the
        first half of the double ``where``). ``False`` for in-batch losses, where
        a masked example is still seen by the others.
      native: floating inputs handed to the kernel in their own dtype (kernels
        that accumulate in float32 themselves and must not copy a large bf16 input).
      dense: ``where``/``weights`` may also be given per input element (a pixel
        mask): one that broadcasts to the unreduced loss applies per loss entry;
        otherwise one that broadcasts to the inputs reaches the kernel as
        ``element_weights`` (its masked elements zeroed in the inputs first). A
        kernel that also takes ``element_where=None`` gets the per-element mask
        on its own (boolean, or ``None``), for losses where a masked element
        differs from one of weight 0 (a ranking list's padding leaves the
        softmax; an item of weight 0 stays in it).
      trailing: every input extends the unreduced loss's shape by trailing axes
        (ensemble members ``[..., M, D]`` and a target ``[..., D]`` of a loss
        ``[...]``): a ``where`` of the loss's shape masks them along their
        leading axes. Their shapes are then checked by the loss's ``validate``.
      values: domains of input values, checked inside :func:`value_checks`.
      batch_axis_name: the name of a static option that holds a ``shard_map``
        mesh axis (or tuple of axes) over which the batch -- the unreduced
        loss's first axis -- is split. When that option is not ``None``, the sum
        and the weight of ``"mean"``, ``"sum"`` and ``"sum_and_weight"`` are
        all-reduced (``psum``) over it before ``"mean"`` divides, so every
        device returns the global value; ``"none"`` stays per device.
      per_sequence: the unreduced loss is one entry per sequence of a batch of
        padded sequences (shape ``[B]``, inputs of different shapes: logits,
        labels, lengths); only words the shared ``weights``/``where`` arguments.
    """

    floats: tuple[str, ...] | None = None
    labels: tuple[str, ...] = ()
    same_shape: tuple[str, ...] | None = None
    reduced_axis: int | str | None = None
    per_example: tuple[str, ...] = ()
    class_labels: bool = False
    mask_inputs: bool = True
    native: tuple[str, ...] = ()
    dense: bool = False
    trailing: bool = False
    values: Mapping[str, Domain] = dataclasses.field(default_factory=dict)
    batch_axis_name: str | None = None
    per_sequence: bool = False

    def axis(self, options: Mapping[str, Any]) -> int | None:
        """The reduced axis for these static options (may be negative)."""
        return options[self.reduced_axis] if isinstance(self.reduced_axis, str) else self.reduced_axis

    def float_inputs(self, inputs: Sequence[str]) -> tuple[str, ...]:
        if self.floats is not None:
            return self.floats
        return tuple(i for i in inputs if i not in self.labels and i not in self.per_example)

    def shared_shape(self, inputs: Sequence[str]) -> tuple[str, ...]:
        if self.same_shape is not None:
            return self.same_shape
        return tuple(i for i in inputs if i not in self.per_example)

    def check(self, loss_name: str, arrays: Mapping[str, Array], options: Mapping[str, Any]) -> None:
        """The trace-time checks of dtypes, shapes, the axis and the labels."""
        inputs = tuple(arrays)
        floats = self.float_inputs(inputs)
        for n in inputs:
            if n in floats:
                check_float(loss_name, n, arrays[n])
            elif n in self.labels:
                check_int(loss_name, n, arrays[n])
            else:
                check_real(loss_name, n, arrays[n])
        same = self.shared_shape(inputs)
        if len(same) > 1:
            check_same_shape(loss_name, same, [arrays[n] for n in same])
        axis = self.axis(options)
        if axis is None:
            return
        first = arrays[inputs[0]]
        if first.ndim == 0:
            raise ValueError(f"{loss_name}: {inputs[0]} must have an axis {axis} to reduce, got a scalar")
        ax = normalize_axis(loss_name, axis, first.ndim)
        expected = first.shape[:ax] + first.shape[ax + 1:]
        for n in self.per_example:
            if tuple(arrays[n].shape) != tuple(expected):
                raise ValueError(
                    f"{loss_name}: {n} must have the shape of {inputs[0]} without axis {axis}: "
                    f"{inputs[0]} {tuple(first.shape)} needs {n} {tuple(expected)}, got {n} {tuple(arrays[n].shape)}"
                )
        if self.class_labels:
            if first.shape[ax] == 0:
                raise ValueError(
                    f"{loss_name}: {inputs[0]} has no classes along axis {axis} (shape {tuple(first.shape)})"
                )
            for n in self.labels:
                check_labels(loss_name, arrays[n], first.shape[ax], options.get("ignore_index"), arg=n)

    def mask(self, x: Array, mask: Array, options: Mapping[str, Any]) -> Array:
        """``x`` with masked entries replaced by 0, when ``x`` is laid out like the
        mask (possibly with the reduced axis, or with trailing axes after the
        mask's when the layout is ``trailing``); ``x`` unchanged otherwise."""
        axis = self.axis(options)
        if x.shape == mask.shape:
            m = mask
        elif axis is not None and x.ndim == mask.ndim + 1:
            m = jnp.expand_dims(mask, axis % x.ndim)
            if not broadcasts_to(m.shape, x.shape):
                return x
        elif self.trailing and x.ndim > mask.ndim and x.shape[:mask.ndim] == mask.shape:
            m = mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim))
        else:
            return x
        return jnp.where(m, x, jnp.zeros_like(x))


ELEMENTWISE = Layout()


# ---------------------------------------------------------------------------
# The kernel's result and the one safe reduction
# ---------------------------------------------------------------------------


class Aux(NamedTuple):
    """Per-element side results of a kernel and how to summarise them.

    Attributes:
      per_element: a pytree of arrays shaped like the unreduced loss (e.g. the
        per-token log-sum-exp).
      summarize: ``summarize(per_element, counted) -> stats``, where ``counted``
        is the boolean mask of the entries the reduction counts (``where`` True,
        non-zero weight, not ignored); what it returns is handed to the caller
        beside the loss, as ``(loss, stats)``.
    """

    per_element: Any
    summarize: Callable[[Any, Array], Any]


class Unreduced(NamedTuple):
    """What a kernel may return instead of a bare array of losses.

    Attributes:
      loss: the unreduced loss (per element, per example, per score or per anchor).
      weight: intrinsic weight broadcastable to ``loss``, multiplying it in the
        value and in the ``"mean"`` denominator (a class weight; 0 for an
        ignored label, which also leaves the mean).
      count: replaces ``weight`` in the ``"mean"`` denominator only (the number
        of pairs an anchor's sum covers; PyTorch's class-weighted mean with label
        smoothing, whose value is not a multiple of its denominator weight).
      fused: optional ``fused(coef) -> (total, per_element_aux)`` computing
        ``sum(coef * loss)`` by the kernel's own route, for kernels that can form
        their gradients in the forward pass once the per-entry coefficients of a
        scalar reduction are known. ``coef`` is shaped like ``loss``, 0 for
        entries that are not counted (whose loss, even NaN, must not reach the
        total or the gradients). Used for ``"mean"``, ``"sum"`` and
        ``"sum_and_weight"``; ``loss`` is then not evaluated (XLA drops it).
        ``per_element_aux`` replaces ``aux.per_element`` (or is None).
      aux: optional :class:`Aux`; the loss then returns ``(loss, stats)``.
      mean_weight: optional per-entry factor (broadcastable to ``loss``) on the
        numerator of ``"mean"`` and ``"sum_and_weight"`` only, for a mean that
        is not ``sum / count``: CTC's ``nll / max(label_length, 1)`` averaged
        over sequences, ``grpo_loss``'s mean over sequences of per-sequence
        token means; ``"sum"`` and ``"none"`` do not see it.
    """

    loss: Array
    weight: Array | None = None
    count: Array | None = None
    fused: Callable[[Array], tuple[Array, Any]] | None = None
    aux: Aux | None = None
    mean_weight: Array | None = None


def _counted(shape: tuple, weights: Array | None, where: Array | None) -> Array | None:
    """The entries a reduction counts: ``where`` True and weight non-zero (None: all)."""
    counted = None if where is None else jnp.broadcast_to(where, shape)
    if weights is not None:
        nonzero = jnp.broadcast_to(weights, shape) != 0
        counted = nonzero if counted is None else counted & nonzero
    return counted


def reduce_loss(
    values: Array,
    *,
    reduction: str,
    weights: Array | None = None,
    where: Array | None = None,
    count: Array | None = None,
    fused: Callable[[Array], tuple[Array, Any]] | None = None,
) -> Array | tuple[Array, Array]:
    """Weight, mask and reduce an unreduced loss.

    With ``w`` the weights (1 when not given) and the *counted* entries those
    with ``where`` True and ``w != 0``:

    * ``"none"``: ``w * l``, exactly 0 where not counted (even if ``l`` is inf/NaN);
    * ``"sum"``: ``s = sum(w * l)`` over counted entries;
    * ``"sum_and_weight"``: ``(s, d)`` with ``d = sum(w)`` (or ``sum(count * w)``)
      over counted entries, so that means over slices combine exactly as
      ``sum(s) / sum(d)``;
    * ``"mean"``: ``s / d``, 0 when nothing is counted.

    ``fused`` (see :class:`Unreduced`) computes ``s`` from the per-entry
    coefficients ``w`` (0 where not counted) instead of ``values``.
    """
    return _reduce(values, reduction, weights, where, count, fused)[0]


def _reduce(values, reduction, weights, where, count, fused):
    """``(reduced, per_element_aux from fused or None)``."""
    shape, dtype = values.shape, values.dtype
    w = None if weights is None else jnp.broadcast_to(weights.astype(dtype), shape)
    counted = _counted(shape, w, where)
    if reduction == "none":
        weighted = values if w is None else w * values
        if counted is not None:
            weighted = jnp.where(counted, weighted, jnp.zeros_like(weighted))
        return weighted, None
    aux = None
    if fused is not None:
        coef = jnp.ones(shape, dtype) if w is None else w
        if counted is not None:
            coef = jnp.where(counted, coef, jnp.zeros_like(coef))
        total, aux = fused(coef)
        total = total.astype(dtype)
    elif counted is None and w is None:
        total = jnp.sum(values)
    else:
        weighted = values if w is None else w * values
        total = jnp.sum(weighted if counted is None else jnp.where(counted, weighted, jnp.zeros_like(weighted)))
    if counted is None and w is None and count is None:
        den = jnp.asarray(np.prod(shape, dtype=np.int64), dtype)
    else:
        per = jnp.ones(shape, dtype) if w is None else w
        if count is not None:
            per = jnp.broadcast_to(count.astype(dtype), shape) * (1 if weights is None else per)
        den = jnp.sum(per if counted is None else jnp.where(counted, per, 0))
    if reduction == "sum":
        return total, aux
    if reduction == "sum_and_weight":
        return (total, den), aux
    return safe_div(total, den), aux


def check_reduction(loss_name: str, reduction: Any) -> str:
    """The reduction, with ``None`` read as ``"none"``; ``ValueError`` listing the
    choices otherwise."""
    if reduction is None:
        return "none"
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        listed = ", ".join(map(repr, REDUCTIONS))
        raise ValueError(f"{loss_name}: reduction must be one of {listed} (or None), got {reduction!r}")
    return reduction


# ---------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Example:
    """How tools exercise a loss (the shared tests, the self-check, benchmarks).

    Attributes:
      sample: ``sample(rng) -> tuple of numpy arrays``, example positional inputs.
      sweep: ``(hparam, values)`` used to show a hyper-parameter is traced.
      differentiable: indices of the inputs the shared tests differentiate.
      grad_order: highest order for ``check_grads`` (2 where the loss is smooth
        at the sample inputs, 1 otherwise; 0 where the gradient is by design not
        the derivative of the value -- stop-gradient weights, as Circle loss's --
        so no finite-difference check applies and the family's tests check the
        gradient against an independent reference).
      optax: name of the equivalent function in ``optax.losses``, or None.
    """

    sample: Callable[[np.random.Generator], tuple] | None = None
    sweep: tuple[str, tuple] | None = None
    differentiable: tuple[int, ...] = (0,)
    grad_order: int = 2
    optax: str | None = None


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """Everything jaxloss knows about one loss.

    Attributes:
      name: the public function name (``"huber_loss"``).
      fn: the public function.
      cls: the generated loss class (``HuberLoss``).
      family: the registry family, which is the module it lives in
        (``"regression"``, ``"binary"``, ``"multiclass"``, ...).
      inputs: names of the positional array inputs.
      hparams: numeric hyper-parameters and their defaults (traced; pytree leaves).
      static: structural options and their defaults (static; part of the treedef).
      static_types: the :class:`Static` type of each structural option.
      checks: allowed ranges of the numeric hyper-parameters.
      layout: the :class:`Layout` of the inputs.
      example: the :class:`Example` the shared tools use.
    """

    name: str
    fn: Callable[..., Any]
    cls: type
    family: str
    inputs: tuple[str, ...]
    hparams: Mapping[str, Any]
    static: Mapping[str, Any]
    static_types: Mapping[str, Static]
    checks: Mapping[str, Interval]
    layout: Layout
    example: Example


REGISTRY: dict[str, LossSpec] = {}
"""Every built-in loss by public name. Shared tests, benchmarks, the docs and
the self-check iterate over it."""


# ---------------------------------------------------------------------------
# Step 1: the kernel's signature, and binding calls to it
# ---------------------------------------------------------------------------

# Names users bring from PyTorch, Keras and optax, mapped to jaxloss's.
_ALIASES = {
    "weight": "class_weights", "size_average": "reduction", "reduce": "reduction",
    "sample_weight": "weights", "mask": "where", "margin_": "margin", "temp": "temperature",
    "tau": "temperature", "beta_": "beta",
}


def did_you_mean(word: str, allowed: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for a misspelled or foreign option name, or ''."""
    alias = _ALIASES.get(word)
    if alias in allowed:
        return f"; did you mean {alias!r}?"
    close = difflib.get_close_matches(word, list(allowed), n=2, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(map(repr, close)) + "?"


def _unknown(owner: str, word: str, allowed: Sequence[str]) -> TypeError:
    return TypeError(
        f"{owner}: unexpected keyword argument {word!r}{did_you_mean(word, allowed)} "
        f"(allowed: {', '.join(allowed)})"
    )


def _is_numeric_default(value: Any) -> bool:
    return value is None or (
        isinstance(value, (numbers.Number, np.ndarray, jax.Array)) and not isinstance(value, bool)
    )


def _as_array(x: Any) -> Array:
    return x if isinstance(x, jax.Array) else jnp.asarray(x)


@dataclasses.dataclass(frozen=True)
class Signature:
    """A kernel's inputs and options, and the binding of calls to them."""

    name: str
    inputs: tuple[str, ...]
    hparams: Mapping[str, Any]
    static: Mapping[str, Any]
    static_types: Mapping[str, Static]
    dense: bool
    element_where: bool = False
    sees_where: bool = False

    @classmethod
    def parse(cls, kernel: Callable[..., Any], name: str, static: Mapping[str, Static] | Sequence[str]) -> Signature:
        """Read the kernel's signature; ``TypeError`` for a kernel jaxloss cannot wrap."""
        params = inspect.signature(kernel).parameters.values()
        inputs = tuple(p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
        keywords = {p.name: p.default for p in params if p.kind == p.KEYWORD_ONLY}
        dense = keywords.pop(_ELEMENT_WEIGHTS, inspect.Parameter.empty) is None
        element_where = keywords.pop(_ELEMENT_WHERE, inspect.Parameter.empty) is None
        if element_where and not dense:
            raise TypeError(f"{name}: a kernel taking element_where=None must also take element_weights=None")
        sees_where = keywords.pop(_LOSS_WHERE, inspect.Parameter.empty) is None
        types = dict(static) if isinstance(static, Mapping) else {k: ANY for k in static}
        for k, v in keywords.items():
            if v is inspect.Parameter.empty:
                raise TypeError(f"{name}: keyword option {k!r} needs a default")
            if k in _COMMON:
                raise TypeError(f"{name}: {k!r} is provided by jaxloss.loss; remove it from the kernel")
            if k not in types and not _is_numeric_default(v):
                raise TypeError(f"{name}: option {k!r} has a non-numeric default {v!r}; list it in static=")
        unknown = set(types) - set(keywords)
        if unknown:
            raise TypeError(f"{name}: static options {sorted(unknown)} are not keyword arguments of the kernel")
        return cls(
            name=name,
            inputs=inputs,
            hparams={k: v for k, v in keywords.items() if k not in types},
            static={k: v for k, v in keywords.items() if k in types},
            static_types=types,
            dense=dense,
            element_where=element_where,
            sees_where=sees_where,
        )

    @property
    def options(self) -> tuple[str, ...]:
        return (*self.hparams, *self.static)

    def bind(self, args: tuple, kwargs: dict) -> tuple[dict, dict, dict, dict]:
        """``(arrays, hparams, static, common)`` for one call; any binding of the
        advertised signature works (inputs by position or by name)."""
        if len(args) > len(self.inputs):
            raise TypeError(
                f"{self.name}: takes {len(self.inputs)} positional inputs ({', '.join(self.inputs)}), "
                f"got {len(args)}; options are keyword-only"
            )
        arrays = dict(zip(self.inputs, args))
        hparams, static, common = dict(self.hparams), dict(self.static), {}
        for k, v in kwargs.items():
            if k in self.hparams:
                hparams[k] = v
            elif k in self.static:
                static[k] = v
            elif k in _COMMON:
                common[k] = v
            elif k in self.inputs:
                if k in arrays:
                    raise TypeError(f"{self.name}: got multiple values for input {k!r}")
                arrays[k] = v
            else:
                raise _unknown(self.name, k, (*self.inputs, *self.options, *_COMMON))
        missing = [n for n in self.inputs if n not in arrays]
        if missing:
            raise TypeError(f"{self.name}: missing input(s) {', '.join(map(repr, missing))}")
        return {n: _as_array(arrays[n]) for n in self.inputs}, hparams, static, common

    def python_signature(self) -> inspect.Signature:
        """The signature users see: inputs, options, then ``reduction``, ``weights``, ``where``."""
        P = inspect.Parameter
        params = [P(n, P.POSITIONAL_OR_KEYWORD, annotation="ArrayLike") for n in self.inputs]
        for k, v in self.hparams.items():
            params.append(P(k, P.KEYWORD_ONLY, default=v, annotation="ArrayLike | None" if v is None else "ArrayLike"))
        for k, v in self.static.items():
            params.append(P(k, P.KEYWORD_ONLY, default=v, annotation=self.static_types[k].annotation))
        params += [
            P("reduction", P.KEYWORD_ONLY, default="mean", annotation="Reduction | None"),
            P("weights", P.KEYWORD_ONLY, default=None, annotation="ArrayLike | None"),
            P("where", P.KEYWORD_ONLY, default=None, annotation="ArrayLike | None"),
        ]
        return inspect.Signature(params, return_annotation="jax.Array")


# ---------------------------------------------------------------------------
# Step 2: the compiled program
# ---------------------------------------------------------------------------


def _run_kernel(kernel: Callable[..., Any], arrays: tuple, options: Mapping[str, Any]) -> Unreduced:
    out = kernel(*arrays, **options)
    return out if isinstance(out, Unreduced) else Unreduced(out)


def _split_dense(
    name: str, mask_like: Array | None, arg: str, loss_shape: tuple, input_shape: tuple, axis: int | None = None
) -> tuple[Array | None, Array | None]:
    """``(per loss entry, per input element)``: a dense layout's ``where`` or
    ``weights`` applies per loss entry when it broadcasts to the loss, else per
    element of the inputs. With a class ``axis`` (label maps), one that
    broadcasts to the pixels (the inputs without that axis, the labels' shape)
    applies to every class of its pixel."""
    if mask_like is None or broadcasts_to(mask_like.shape, loss_shape):
        return mask_like, None
    what = f"the unreduced loss {tuple(loss_shape)} or the inputs"
    if axis is not None:
        pixels = tuple(input_shape[:axis]) + tuple(input_shape[axis + 1:])
        if broadcasts_to(mask_like.shape, pixels):
            return None, jnp.broadcast_to(jnp.expand_dims(jnp.broadcast_to(mask_like, pixels), axis), input_shape)
        what = f"the unreduced loss {tuple(loss_shape)}, the pixels {pixels} or the inputs"
    check_broadcastable(name, arg, mask_like.shape, input_shape, what)
    return None, jnp.broadcast_to(mask_like, input_shape)


def _lay_dense(name: str, layout: Layout, arrays: tuple, weights: Array | None, where: Array | None,
               loss_shape: tuple, options: Mapping[str, Any], dtype: Any) -> tuple:
    """A dense layout's ``(arrays, weights, where, element_weights, element_where)``:
    ``where`` and ``weights`` that broadcast to the loss stay per loss entry; the
    others apply per input element (per pixel, shaped like the labels, with a class
    axis), whose masked entries are zeroed in the inputs (``element_where`` is that
    per-element mask alone, or None)."""
    input_shape = arrays[0].shape
    axis = layout.axis(options)
    axis = None if axis is None else axis % len(input_shape)
    where, element_where = _split_dense(name, where, "where", loss_shape, input_shape, axis)
    weights, element = _split_dense(name, weights, "weights", loss_shape, input_shape, axis)
    if element_where is not None:
        arrays = tuple(layout.mask(a, element_where, options) for a in arrays)
        element = element_where if element is None else jnp.where(element_where, element, 0)
    return arrays, weights, where, None if element is None else element.astype(dtype), element_where


def _check_values(sig: Signature, layout: Layout, checks: Mapping[str, Interval],
                  arrays: Mapping[str, Array], hparams: Mapping[str, Any], options: Mapping[str, Any],
                  *weights: Array | None) -> None:
    """The checkify checks of :func:`value_checks` (only traced inside it)."""
    name = sig.name
    for n in layout.float_inputs(sig.inputs):
        value_check(jnp.isfinite(arrays[n]), name, "be finite", n, arrays[n])
    for n, domain in layout.values.items():
        if domain.unless is None or not options.get(domain.unless):
            value_check(domain.test(arrays[n]), name, domain.describe, n, arrays[n])
    axis = layout.axis(options)
    if layout.class_labels and axis is not None:
        num = arrays[sig.inputs[0]].shape[axis]
        ignore = options.get("ignore_index")
        for n in layout.labels:
            lab = arrays[n]
            ok = (lab >= 0) & (lab < num)
            if ignore is not None:
                ok = ok | (lab == ignore)
            what = f"lie in [0, {num})" + ("" if ignore is None else " or equal ignore_index")
            value_check(ok, name, what, n, lab)
    for w in weights:
        if w is not None:
            value_check(w >= 0, name, "be >= 0", "weights", w)
    for k, interval in checks.items():
        h = hparams.get(k)
        if h is not None:
            h = jnp.asarray(h)
            value_check(interval.test(h), name, f"lie in {interval.describe()}", k, h)


def _make_compute(kernel: Callable[..., Any], sig: Signature, layout: Layout, checks: Mapping[str, Interval]):
    """The jitted program for one loss: cast, mask, run the kernel, check, reduce."""

    @functools.partial(jax.jit, static_argnames=("reduction", "static_items", "checked"))
    def compute(arrays, hparams, weights, where, *, reduction, static_items, checked):
        options = dict(static_items)
        dtype = compute_dtype(*arrays)
        arrays = tuple(
            a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) and n not in layout.native else a
            for n, a in zip(sig.inputs, arrays)
        )
        hparams = {k: (None if h is None else _cast_hparam(h, dtype)) for k, h in hparams.items()}
        kernel_options = {**hparams, **options}
        if sig.dense:
            kernel_options[_ELEMENT_WEIGHTS] = None
            if sig.element_where:
                kernel_options[_ELEMENT_WHERE] = None
        if sig.sees_where:
            kernel_options[_LOSS_WHERE] = None
        loss_shape = jax.eval_shape(lambda *xs: _run_kernel(kernel, xs, kernel_options).loss, *arrays).shape
        element = None
        if sig.dense:
            arrays, weights, where, element, element_where = _lay_dense(sig.name, layout, arrays, weights, where,
                                                                        loss_shape, options, dtype)
            kernel_options[_ELEMENT_WEIGHTS] = element
            if sig.element_where:
                kernel_options[_ELEMENT_WHERE] = element_where
        if weights is not None:
            check_broadcastable(sig.name, "weights", weights.shape, loss_shape)
        if where is not None:
            check_broadcastable(sig.name, "where", where.shape, loss_shape)
            if layout.mask_inputs and not layout.dense:  # a dense score shares its inputs with the others
                mask = jnp.broadcast_to(where, loss_shape)
                arrays = tuple(layout.mask(a, mask, options) for a in arrays)
            if sig.sees_where:
                kernel_options[_LOSS_WHERE] = jnp.broadcast_to(where, loss_shape)
        if checked:
            _check_values(sig, layout, checks, dict(zip(sig.inputs, arrays)), hparams, options, weights, element)
        out = _run_kernel(kernel, arrays, kernel_options)
        values = out.loss.astype(dtype)
        if out.mean_weight is not None and reduction in ("mean", "sum_and_weight"):
            values = values * out.mean_weight.astype(dtype)
        w = out.weight if weights is None else (weights if out.weight is None else out.weight * weights)
        axis_name = options.get(layout.batch_axis_name) if layout.batch_axis_name else None
        if axis_name is None or reduction == "none":
            reduced, fused_aux = _reduce(values, reduction, w, where, out.count, out.fused)
        else:  # the global sum and weight over the batch axis, on every device
            (total, den), fused_aux = _reduce(values, "sum_and_weight", w, where, out.count, out.fused)
            total, den = jax.lax.psum((total, den), axis_name)
            reduced = total if reduction == "sum" else (total, den) if reduction == "sum_and_weight" else safe_div(
                total, den)
        if out.aux is None:
            return reduced
        per_element = out.aux.per_element if fused_aux is None else fused_aux
        counted = _counted(values.shape, None if w is None else jnp.broadcast_to(w, values.shape), where)
        counted = jnp.ones(values.shape, bool) if counted is None else counted
        return reduced, out.aux.summarize(per_element, counted)

    return compute


def _cast_hparam(h: Any, dtype: Any) -> Any:
    return jax.tree_util.tree_map(
        lambda x: jnp.asarray(x, dtype) if jnp.issubdtype(jnp.result_type(x), jnp.floating) else x, h
    )


# ---------------------------------------------------------------------------
# Step 3: the public function
# ---------------------------------------------------------------------------


def _validate_call(sig: Signature, layout: Layout, checks: Mapping[str, Interval],
                   validate: Callable[..., None] | None, arrays: dict, hparams: dict, static: dict,
                   common: dict) -> tuple[str, Array | None, Array | None]:
    """Every trace-time check of one call; returns ``(reduction, weights, where)``."""
    name = sig.name
    reduction = check_reduction(name, common.get("reduction", "mean"))
    for k, v in static.items():
        sig.static_types[k].check(name, k, v)
        try:
            hash(v)
        except TypeError:
            raise TypeError(f"{name}: {k} is a static option and must be hashable, got {type(v).__name__}") from None
    if validate is not None:  # the loss's own checks first: they know its inputs' meaning
        validate(name, *arrays.values(), **hparams, **static)
    layout.check(name, arrays, static)
    for k, interval in checks.items():
        check_range(name, k, hparams.get(k), interval)
    weights, where = common.get("weights"), common.get("where")
    if weights is not None:
        weights = jnp.asarray(weights)
        if not jnp.issubdtype(weights.dtype, jnp.number) or jnp.issubdtype(weights.dtype, jnp.complexfloating):
            raise TypeError(f"{name}: weights must be a real numeric array, got dtype {weights.dtype}")
    if where is not None:
        where = jnp.asarray(where)
        if where.dtype != jnp.bool_:
            raise TypeError(f"{name}: where must be a boolean mask, got dtype {where.dtype}")
    return reduction, weights, where


def _as_traced(hparams: dict, dtype: Any) -> dict:
    """Python numbers become arrays of the compute dtype, so ``gamma=2`` and
    ``gamma=2.0`` (and ``gamma=3.0``) share one compiled program eagerly."""
    out = {}
    for k, v in hparams.items():
        if isinstance(v, (list, tuple)):
            v = jnp.asarray(v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            v = np.asarray(v, dtype)
        out[k] = v
    return out


def _make_public(kernel: Callable[..., Any], sig: Signature, layout: Layout, checks: Mapping[str, Interval],
                 validate: Callable[..., None] | None) -> Callable[..., Any]:
    compute = _make_compute(kernel, sig, layout, checks)

    def public(*args: Any, **kwargs: Any) -> Any:
        arrays, hparams, static, common = sig.bind(args, kwargs)
        reduction, weights, where = _validate_call(sig, layout, checks, validate, arrays, hparams, static, common)
        hparams = _as_traced(hparams, compute_dtype(*arrays.values()))
        return compute(
            tuple(arrays.values()), hparams, weights, where,
            reduction=reduction, static_items=tuple(static.items()), checked=checking(),
        )

    public.__signature__ = sig.python_signature()  # type: ignore[attr-defined]
    public.__name__ = public.__qualname__ = sig.name
    public.__doc__ = _document(kernel.__doc__, sig, layout)
    public.__module__ = kernel.__module__ or "__main__"
    public.__wrapped_kernel__ = kernel  # type: ignore[attr-defined]
    public._compute = compute  # type: ignore[attr-defined]  # the jitted program (tests read its cache)
    return public


_SHARED_ARGS = {
    "elementwise": "broadcastable to the inputs' shape (the unreduced loss)",
    "reduced": "broadcastable to the per-example shape (the inputs without the reduced axis)",
    "dense": (
        "per score when it broadcasts to the unreduced loss; otherwise per element of the inputs "
        "(a pixel mask or pixel weights: masked pixels leave the counts, a weight k counts a pixel k times, "
        "and a score whose pixels are all masked leaves the mean)"
    ),
    "items": (
        "per entry of the unreduced loss when it broadcasts to it; otherwise per element of the inputs "
        "(``where`` marks the valid elements: a masked one is left out as if sliced away, and an entry "
        "with no valid element leaves the mean; ``weights`` weight each element's terms as described above)"
    ),
    "batch": "per anchor, shape ``[B]`` (a masked anchor still serves as the others' positive or negative)",
    "sequence": "per sequence, shape ``[B]`` (a masked sequence is read as one of length 0)",
}


def _document(doc: str | None, sig: Signature, layout: Layout) -> str | None:
    """The kernel's docstring with the shared ``reduction``/``weights``/``where``
    arguments appended to its Args, written here once for every loss."""
    if not doc or "Args:" not in doc:
        return doc
    kind = ("items" if sig.element_where else "dense" if layout.dense else "sequence" if layout.per_sequence
            else "batch" if not layout.mask_inputs
            else "reduced" if layout.reduced_axis is not None or layout.per_example or layout.trailing
            else "elementwise")
    indent = " " * 4
    lines = [
        '  reduction: ``"mean"`` (default), ``"sum"``, ``"none"`` (or ``None``), or',
        f'{indent}``"sum_and_weight"``: the pair ``(s, w)`` with ``"mean" == s / w``, for',
        f"{indent}exact means over micro-batches and devices (``sum(s) / sum(w)``).",
        f"  weights: optional non-negative weights, {_SHARED_ARGS[kind]};",
        f"{indent}``\"mean\"`` is the weighted mean ``sum(w l) / sum(w)``.",
        "  where: optional boolean mask of the same shape as ``weights``; masked entries",
        f"{indent}contribute exactly 0 to the value and the gradient (0 if all are masked).",
    ]
    head, sep, tail = doc.partition("Args:")
    body = tail.split("\n\n", 1)
    base = " " * (len(head) - len(head.rstrip(" ")))
    extra = "\n".join(base + line for line in lines)
    body[0] = body[0].rstrip() + "\n" + extra
    return head + sep + "\n\n".join(body)


# ---------------------------------------------------------------------------
# The decorator
# ---------------------------------------------------------------------------


def loss(
    kernel: Callable[..., Any] | None = None,
    *,
    family: str = "custom",
    static: Mapping[str, Static] | Sequence[str] = (),
    checks: Mapping[str, Interval] | None = None,
    layout: Layout = ELEMENTWISE,
    validate: Callable[..., None] | None = None,
    example: Example | None = None,
    name: str | None = None,
    class_name: str | None = None,
    register: bool = False,
) -> Any:
    r"""Turn a loss kernel into a public loss function and its class.

    The kernel takes its input arrays positionally and its options as
    keyword-only arguments with defaults, and returns the *unreduced* loss (per
    element, or per example for losses that reduce an axis), or an
    :class:`Unreduced` carrying an intrinsic weight (class weights; 0 for an
    ignored label) and a count for the ``"mean"`` denominator. It never
    reduces, masks, weights, validates or casts: the decorator does.

    The returned function has the kernel's signature plus ``reduction="mean"``
    (``"mean"``, ``"sum"``, ``"none"``/``None``, ``"sum_and_weight"``),
    ``weights=None`` and ``where=None``: ``"sum"`` is :math:`\sum_i w_i l_i`
    over unmasked entries and ``"mean"`` is :math:`\sum_i w_i l_i / \sum_i w_i`
    (0 when nothing is counted). Masked inputs are replaced by zeros before the
    kernel runs, so a NaN in a masked entry never reaches the value or the
    gradient. Numeric options (every keyword option not in ``static``) are
    traced; Python numbers among them become arrays of the compute dtype, so
    they are floats inside the kernel (make an integer option static).

    A kernel with a keyword argument ``loss_where=None`` (not part of the public
    signature) receives the ``where`` mask broadcast to the unreduced loss's
    shape, or ``None``: for losses in which a masked example must also leave the
    other examples' terms (an in-batch negative that is padding).

    Args:
      kernel: the per-element (or per-example) math.
      family: registry family: the module of a built-in loss.
      static: the structural options, as ``{name: Static}`` (typed:
        ``FLAG``, ``OPTIONAL_INT``, ``choice("a", "b")``, ...) or a sequence of
        names (untyped); every other keyword option is numeric and traced.
      checks: allowed :class:`Interval` of numeric hyper-parameters, checked when
        their values are concrete (``ValueError``) and inside :func:`value_checks`.
      layout: how the inputs relate to the unreduced loss (:class:`Layout`);
        the default is elementwise (every input floating and of one shape).
      validate: extra trace-time checks, called as ``validate(name, *inputs,
        **options)`` with every option.
      example: how the shared tests, benchmarks and self-check exercise the loss.
      name, class_name: override the public names.
      register: put the loss in :data:`REGISTRY` (the built-in families do).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> @jaxloss.loss
      ... def cubic_loss(pred, target, *, scale=1.0):
      ...     "Cubic loss :math:`s |p - t|^3`."
      ...     return scale * jnp.abs(pred - target) ** 3
      >>> cubic_loss(jnp.array([1.0, 2.0]), jnp.array([0.0, 0.0]))
      Array(4.5, dtype=float32)
      >>> cubic_loss.Loss(scale=2.0)
      CubicLoss(scale=2.0, reduction='mean')
    """
    if kernel is None:
        return functools.partial(
            loss, family=family, static=static, checks=checks, layout=layout, validate=validate,
            example=example, name=name, class_name=class_name, register=register,
        )
    from ._objects import make_loss_class

    sig = Signature.parse(kernel, name or kernel.__name__, static)
    checks = dict(checks or {})
    public = _make_public(kernel, sig, layout, checks, validate)
    cls = make_loss_class(class_name or class_name_for(sig.name), public, sig, checks)
    public.Loss = cls  # type: ignore[attr-defined]
    spec = LossSpec(
        name=sig.name, fn=public, cls=cls, family=family, inputs=sig.inputs, hparams=sig.hparams,
        static=sig.static, static_types=sig.static_types, checks=checks, layout=layout,
        example=example or Example(),
    )
    public.spec = spec  # type: ignore[attr-defined]
    if register:
        REGISTRY[sig.name] = spec
    return public


def builtin(family: str) -> Callable[..., Any]:
    """The decorator of a built-in family: :func:`loss` with ``family`` set and
    ``register=True``."""
    return functools.partial(loss, family=family, register=True)


_ACRONYMS = {
    "mse": "MSE", "mae": "MAE", "msle": "MSLE", "mape": "MAPE", "nll": "NLL", "kl": "KL",
    "js": "JS", "ntxent": "NTXent", "supcon": "SupCon", "l1": "L1", "l2": "L2",
    "listmle": "ListMLE", "ndcg": "NDCG", "crps": "CRPS", "arcface": "ArcFace", "cosface": "CosFace",
}


def class_name_for(name: str) -> str:
    """``huber_loss -> HuberLoss``, ``mse_loss -> MSELoss``, ``nll_loss -> NLLLoss``."""
    return "".join(_ACRONYMS.get(part, part.capitalize()) for part in name.split("_"))
