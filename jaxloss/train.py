"""An optax training step around any jaxloss loss, with exact micro-batching."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from ._numerics import safe_div
from ._objects import FunctionLoss, WeightedSum
from ._sharding import check_axis_name, to_varying, vma

__all__ = ["make_train_step"]


def _terms(loss: Any, owner: str) -> list[tuple[Any, FunctionLoss, bool]]:
    """``(coefficient, loss object with reduction "sum_and_weight", divide)`` per
    term: ``divide`` is False for a term whose reduction is ``"sum"``."""
    pairs = loss.terms if isinstance(loss, WeightedSum) else ((1.0, loss),)
    out = []
    for c, term in pairs:
        if not isinstance(term, FunctionLoss) or term.reduction not in ("mean", "sum"):
            raise TypeError(
                f"{owner}: micro_batches > 1 and axis_name need a jaxloss loss object (or a composition of them) with "
                f"reduction 'mean' or 'sum', so the step can combine micro-batches exactly; got {term!r}"
            )
        out.append((c, term.replace(reduction="sum_and_weight"), term.reduction == "mean"))
    return out


_FORM = 'targets={"targets": t, "where": mask, "weights": w} (where and weights optional)'
_KEYS = ("targets", "where", "weights")


def _n_inputs(loss: Any) -> int | None:
    """The number of array inputs of a jaxloss loss object (of a composition's first term)."""
    term = loss.terms[0][1] if isinstance(loss, WeightedSum) and loss.terms else loss
    sig = getattr(type(term), "_sig", None)
    return None if sig is None else len(sig.inputs)


def _unpack(loss: Any, n_pred: int, targets: Any) -> tuple[tuple, dict]:
    """A jaxloss loss object's trailing inputs and its ``where``/``weights``."""
    options: dict = {}
    if isinstance(targets, Mapping):
        if "targets" not in targets or set(targets) - set(_KEYS):
            raise TypeError(f"make_train_step: a dict of targets must be {_FORM}; got the keys "
                            f"{sorted(map(str, targets))}")
        options = {k: targets[k] for k in ("where", "weights") if targets.get(k) is not None}
        targets = targets["targets"]
    n = _n_inputs(loss)
    if isinstance(targets, (tuple, list)) and n is not None:
        if n_pred + len(targets) != n:  # e.g. (advantages, mask): the mask belongs in the dict
            raise TypeError(
                f"make_train_step: {len(targets)} targets and {n_pred} prediction(s) do not make the {n} inputs "
                f"of {loss!r}; pass a mask or weights as {_FORM}"
            )
        return tuple(targets), options  # a multi-input loss's trailing inputs
    return (targets,), options


def _call(loss: Any, pred: Any, targets: Any) -> Any:
    """``loss(pred, targets)``, or ``loss(*pred, targets)`` when ``apply_fn``
    returns a tuple and ``loss`` is a jaxloss loss object (the leading inputs of a
    loss such as ``linear_cross_entropy``, whose predictions are ``(hidden,
    weight)``). For a loss object, a dict ``targets`` carries ``where`` and
    ``weights`` beside the targets, and a tuple of targets that makes up the
    loss's remaining inputs is spread over them. A plain function always gets
    ``pred`` and ``targets`` as they are."""
    if not isinstance(loss, (FunctionLoss, WeightedSum)):
        return loss(pred, targets)
    preds = pred if isinstance(pred, tuple) else (pred,)
    rest, options = _unpack(loss, len(preds), targets)
    return loss(*preds, *rest, **options)


def _names(axis_name: Any) -> tuple:
    return tuple(axis_name) if isinstance(axis_name, (tuple, list)) else (axis_name,)


def _split(tree: Any, k: int, owner: str) -> Any:
    """Every leaf ``[B, ...]`` as ``[k, B / k, ...]``."""
    def one(x):
        if x.shape[0] % k:
            raise ValueError(f"{owner}: the batch of {x.shape[0]} does not split into micro_batches={k} equal slices")
        return x.reshape((k, x.shape[0] // k) + x.shape[1:])
    return jax.tree_util.tree_map(one, tree)


def _accumulated_step(apply_fn, loss, k: int, axis_name: Any = None):
    """``(value, grads)`` of the full-batch loss from ``k`` micro-batches (and the
    devices of ``axis_name``): per term, the ``"sum_and_weight"`` parts and their
    gradients are summed over the slices (and devices) and divided once, so
    ``mean == sum(s) / sum(w)`` exactly."""
    terms = _terms(loss, "make_train_step")

    def value_and_grad(params, inputs, targets):
        check_axis_name("make_train_step", axis_name)

        def parts(p, x, y):
            pred = apply_fn(p, x)
            pairs = [_call(term, pred, y) for _, term, _ in terms]
            return jnp.stack([s for s, _ in pairs]), jnp.stack([w for _, w in pairs])

        batches = (_split(inputs, k, "make_train_step"), _split(targets, k, "make_train_step"))
        first = jax.tree_util.tree_map(lambda b: b[0], batches)
        s_shape, _ = jax.eval_shape(lambda p: parts(p, *first), params)
        # Inside shard_map with check_vma (the default), the gradient of a replicated
        # parameter of a device-varying value comes back already summed over the axis.
        summed = axis_name is not None and bool(vma(s_shape) & set(_names(axis_name)))

        def one(carry, batch):
            s, vjp, w = jax.vjp(lambda p: parts(p, *batch), params, has_aux=True)
            grads = [vjp(jnp.zeros_like(s).at[i].set(1.0))[0] for i in range(len(terms))]
            s_acc, w_acc, g_acc = carry
            return (s_acc + s, w_acc + w, jax.tree_util.tree_map(jnp.add, g_acc, grads)), None

        zeros = jnp.zeros(s_shape.shape, s_shape.dtype)
        if axis_name is not None and summed:
            zeros = to_varying(zeros, axis_name)
        g0 = [jax.tree_util.tree_map(jnp.zeros_like, params) for _ in terms]
        (s, w, g), _ = jax.lax.scan(one, (zeros, zeros, g0), batches)
        if axis_name is not None:
            s, w = jax.lax.psum((s, w), axis_name)
            if not summed:
                g = jax.lax.psum(g, axis_name)
        scale = [c * (safe_div(1.0, w[i]) if divide else 1.0) for i, (c, _, divide) in enumerate(terms)]
        value = sum(scale[i] * s[i] for i in range(len(terms)))
        grads = jax.tree_util.tree_map(lambda *gs: sum(a * b for a, b in zip(scale, gs)), *g)
        return value, grads

    return value_and_grad


def make_train_step(
    apply_fn: Callable[[Any, Any], Any],
    loss: Callable[..., jax.Array],
    optimizer: optax.GradientTransformation,
    *,
    micro_batches: int = 1,
    axis_name: Any = None,
    jit: bool = True,
) -> Callable[[Any, Any, Any, Any], tuple[Any, Any, jax.Array]]:
    r"""Build ``step(params, opt_state, inputs, targets) -> (params, opt_state, loss_value)``.

    One step is: forward ``pred = apply_fn(params, inputs)``, the loss
    :math:`L = \mathrm{loss}(\mathrm{pred}, \mathrm{targets})`, its gradient
    :math:`\nabla_\theta L`, and the optax update
    :math:`\theta \leftarrow \theta + \mathrm{optimizer.update}(\nabla_\theta L)`.

    For a jaxloss loss object ``targets`` may be a dict
    ``{"targets": t, "where": mask, "weights": w}`` (``where`` and ``weights``
    optional): the loss is called as ``loss(pred, t, where=mask, weights=w)``,
    every term of a composition gets the same mask and weights, and each leaf
    is sliced with the batch for ``micro_batches`` (and split with it over
    ``axis_name``), so a masked step (GRPO's or SFT's completion mask) can be
    micro-batched exactly. A tuple ``targets`` is spread over the loss's
    remaining inputs when it makes them up; any other structure is a
    ``TypeError`` showing the dict form.

    With ``micro_batches=k`` the batch (the leading axis of every leaf of
    ``inputs`` and ``targets``) is split into ``k`` equal slices, run one after
    the other (``lax.scan``: one slice's activations in memory at a time), and
    the update equals the full-batch update exactly, also when the slices carry
    very different masks (padding, ignored labels): each term's
    ``reduction="sum_and_weight"`` parts :math:`(s_j, w_j)` and the gradients
    of :math:`s_j` are summed over the slices and divided once,
    :math:`L = \sum_j s_j / \sum_j w_j`. (The mean of the slices' means is not
    the full-batch mean when their weights differ.) A composition
    ``c_1 L_1 + c_2 L_2`` is combined term by term, with one backward pass per
    term and slice.

    With ``axis_name`` the step runs inside ``jax.shard_map`` with the batch
    split over that mesh axis (parameters and optimizer state replicated) and
    the update equals the single-device full-batch update: the parts are also
    summed over the devices (``psum``). Under ``shard_map``'s default
    ``check_vma=True`` JAX already sums the gradients of the replicated
    parameters over the axis, so they are not summed a second time; with
    ``check_vma=False`` they are summed here. The returned loss is the global
    value on every device (``out_specs=P()``).

    Args:
      apply_fn: ``apply_fn(params, inputs) -> predictions`` (e.g. a Flax
        ``model.apply`` or a plain function of a parameter pytree). A tuple is
        spread over a jaxloss loss object's leading inputs: return ``(hidden,
        weight)`` for :class:`LinearCrossEntropy`, called as ``loss(hidden, weight,
        targets)`` (a plain function ``loss`` gets the tuple as it is).
      loss: a jaxloss loss object (``HuberLoss(delta=2.0)``, a composition such as
        ``DiceLoss() + BinaryCrossEntropyWithLogits()``) or, with
        ``micro_batches=1``, any function ``loss(pred, targets) -> scalar``. It
        must reduce to a scalar (``reduction="none"`` raises ``ValueError`` when
        the step is traced); with ``micro_batches > 1`` every term must be a
        jaxloss loss object with reduction ``"mean"`` or ``"sum"``.
      optimizer: any ``optax.GradientTransformation``.
      micro_batches: ``k >= 1``, the number of equal slices of the batch (of
        each device's batch, with ``axis_name``).
      axis_name: ``None``, or the ``shard_map`` mesh axis (or tuple of axes)
        the batch is split over.
      jit: wrap the step in ``jax.jit`` (default True).

    Returns:
      The step function; ``opt_state`` comes from ``optimizer.init(params)``.

    Example:
      >>> import jax.numpy as jnp, optax, jaxloss
      >>> opt = optax.sgd(0.1)
      >>> step = jaxloss.make_train_step(lambda w, x: x * w, jaxloss.MSELoss(), opt)
      >>> w = jnp.array(0.0); s = opt.init(w)
      >>> w, s, value = step(w, s, jnp.array([1.0, 2.0]), jnp.array([2.0, 4.0]))
      >>> float(value)
      10.0
      >>> step2 = jaxloss.make_train_step(lambda w, x: x * w, jaxloss.MSELoss(), opt, micro_batches=2)
      >>> float(step2(jnp.array(0.0), opt.init(w), jnp.array([1.0, 2.0]), jnp.array([2.0, 4.0]))[2])
      10.0
    """
    if isinstance(micro_batches, bool) or not isinstance(micro_batches, int) or micro_batches < 1:
        raise ValueError(f"make_train_step: micro_batches must be a positive int, got {micro_batches!r}")

    def objective(params: Any, inputs: Any, targets: Any) -> jax.Array:
        value = _call(loss, apply_fn(params, inputs), targets)
        if jnp.ndim(value) != 0:
            raise ValueError(
                f"make_train_step: the loss must return a scalar, got shape {jnp.shape(value)}; "
                "use reduction='mean' or 'sum'"
            )
        return value

    exact = micro_batches > 1 or axis_name is not None
    value_and_grad = (_accumulated_step(apply_fn, loss, micro_batches, axis_name) if exact
                      else jax.value_and_grad(objective))

    def step(params: Any, opt_state: Any, inputs: Any, targets: Any):
        value, grads = value_and_grad(params, inputs, targets)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, value

    return jax.jit(step) if jit else step
