"""An optax training step around any jaxloss loss."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

__all__ = ["make_train_step"]


def make_train_step(
    apply_fn: Callable[[Any, Any], Any],
    loss: Callable[..., jax.Array],
    optimizer: optax.GradientTransformation,
    *,
    jit: bool = True,
) -> Callable[[Any, Any, Any, Any], tuple[Any, Any, jax.Array]]:
    r"""Build ``step(params, opt_state, inputs, targets) -> (params, opt_state, loss_value)``.

    One step is: forward ``pred = apply_fn(params, inputs)``, the loss
    :math:`L = \mathrm{loss}(\mathrm{pred}, \mathrm{targets})`, its gradient
    :math:`\nabla_\theta L`, and the optax update
    :math:`\theta \leftarrow \theta + \mathrm{optimizer.update}(\nabla_\theta L)`.

    Args:
      apply_fn: ``apply_fn(params, inputs) -> predictions`` (e.g. a Flax
        ``model.apply`` or a plain function of a parameter pytree).
      loss: a jaxloss loss object (``HuberLoss(delta=2.0)``, a composition such as
        ``DiceLoss() + BinaryCrossEntropyWithLogits()``) or any function
        ``loss(pred, targets) -> scalar``. It must reduce to a scalar
        (``reduction="none"`` raises ``ValueError`` when the step is traced).
      optimizer: any ``optax.GradientTransformation``.
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
    """

    def objective(params: Any, inputs: Any, targets: Any) -> jax.Array:
        value = loss(apply_fn(params, inputs), targets)
        if jax.numpy.ndim(value) != 0:
            raise ValueError(
                f"make_train_step: the loss must return a scalar, got shape {jax.numpy.shape(value)}; "
                "use reduction='mean' or 'sum'"
            )
        return value

    def step(params: Any, opt_state: Any, inputs: Any, targets: Any):
        value, grads = jax.value_and_grad(objective)(params, inputs, targets)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, value

    return jax.jit(step) if jit else step
