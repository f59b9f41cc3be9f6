"""The one place for what every jaxloss loss shares.

A loss is written once, as a *kernel*: a function of its input arrays
(positional) and its options (keyword-only, with defaults) that returns the
unreduced loss, or an :class:`Unreduced` with an intrinsic weight, a mean rule
or a stream route. :func:`loss` turns the kernel into the public function and
its class, each step in a module of its own:

1. ``_signature``: the kernel's inputs, numeric hyper-parameters (traced) and
   static options (typed by :class:`Static`), and the binding of calls;
2. ``_layout``: how the inputs relate to the unreduced loss (input roles, the
   reduced axis, the where mode, the ``shard_map`` axis option);
3. ``_program``: the one jitted program (dtype policy, ``where``/``weights``
   laid out by the where mode, the kernel, the optional value checks, the
   reduction of ``_reduce``) and the public function (binding, trace-time
   validation); ``_docs`` appends the shared arguments to its docstring;
4. ``_objects``: the class (``HuberLoss``);
5. ``register=True`` puts a :class:`LossSpec` in :data:`REGISTRY`.

Nothing about reduction, masking, weighting, validation or dtypes lives in the
family modules.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from ._checks import Domain, Interval, Static
from ._layout import ELEMENTWISE, WHERE_MODES, Elements, Layout, Role, element_parts
from ._objects import make_loss_class
from ._program import make_public
from ._reduce import REDUCTIONS, Mean, Reduction, Stream, Unreduced, check_reduction, compute_dtype, reduce_loss
from ._signature import Signature, did_you_mean

__all__ = [
    "ELEMENTWISE",
    "REDUCTIONS",
    "REGISTRY",
    "WHERE_MODES",
    "Domain",
    "Elements",
    "Example",
    "Interval",
    "Layout",
    "LossSpec",
    "Mean",
    "Reduction",
    "Role",
    "Static",
    "Stream",
    "Unreduced",
    "builtin",
    "check_reduction",
    "class_name_for",
    "compute_dtype",
    "did_you_mean",
    "element_parts",
    "loss",
    "optax_mean",
    "reduce_loss",
]


def optax_mean(name: str, *, target: Callable[[Any], Any] | None = None, one_hot: bool = False,
               **options: Any) -> Callable[..., Any]:
    """``(pred, target) -> mean of optax.losses.<name>(pred, target, **options)``, for
    :attr:`Example.compare` (optax is imported on the first call, not with jaxloss).
    ``target`` maps the loss's target to optax's convention (``2 t - 1`` for a
    hinge's signs); ``one_hot`` turns integer labels into one-hot targets."""

    def call(p: Any, t: Any) -> Any:
        fn = getattr(importlib.import_module("optax").losses, name)
        if one_hot:
            t = jnp.eye(p.shape[-1], dtype=p.dtype)[t]
        return jnp.mean(fn(p, t if target is None else target(t), **options))

    call.__name__ = f"optax_{name}"
    return call


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
      compare: the mean loss as the anchor library computes it (``optax``'s
        function called so that it gives the same mean, see :func:`optax_mean`;
        or a plain formulation where optax has none), taking the loss's
        positional inputs; the benchmarks time the loss against it.
    """

    sample: Callable[[np.random.Generator], tuple] | None = None
    sweep: tuple[str, tuple] | None = None
    differentiable: tuple[int, ...] = (0,)
    grad_order: int = 2
    optax: str | None = None
    compare: Callable[..., Any] | None = None


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

    What ``where`` means is the layout's where mode (:data:`WHERE_MODES`): by
    default masked inputs are zeroed and the reduction leaves them out; a
    layout whose mode hands the mask to the kernel (``"elements"``,
    ``"items"``, ``"kernel"``) requires the kernel to take ``where=None`` (not
    part of its options), for losses in which a masked example must also leave
    the other examples' terms (an in-batch negative that is padding).

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
    sig = Signature.parse(kernel, name or kernel.__name__, static, takes_where=layout.kernel_takes_where)
    checks = dict(checks or {})
    public = make_public(kernel, sig, layout, checks, validate)
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
