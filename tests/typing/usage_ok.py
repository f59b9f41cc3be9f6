"""Correct uses of jaxloss: a type checker must accept every line."""

import jax
import jax.numpy as jnp
import optax

import jaxloss
from jaxloss import HuberLoss, SparseCrossEntropy

p = jnp.zeros((4, 3))
t = jnp.ones((4, 3))
labels = jnp.zeros(4, jnp.int32)

a: jax.Array = jaxloss.huber_loss(p, t, delta=2.0)
b: jax.Array = jaxloss.huber_loss(pred=p, target=t, reduction="sum", weights=t, where=t > 0)
s, w = jaxloss.mse_loss(p, t, reduction="sum_and_weight")
c: jax.Array = jaxloss.sparse_cross_entropy(p, labels, class_weights=jnp.ones(3), ignore_index=-100)
d: jax.Array = jaxloss.batch_triplet_loss(p, labels, mining="batch_hard", squared=True)
e: jax.Array = jaxloss.dice_loss(p, t, axis=(1,), from_logits=True)

crit = HuberLoss(delta=1.0, reduction="mean")
crit2: HuberLoss = crit.replace(delta=2.0)
delta = crit2.delta
combo: jaxloss.WeightedSum = jaxloss.DiceLoss(from_logits=True) + 0.5 * jaxloss.BinaryCrossEntropyWithLogits()
value = combo(p, t)
ce = SparseCrossEntropy(label_smoothing=0.1)
step = jaxloss.make_train_step(lambda params, x: x * params, crit, optax.sgd(0.1))
with jaxloss.value_checks():
    pass
