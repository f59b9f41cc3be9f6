"""Wrong uses of jaxloss: a type checker must report each marked line."""

import jax.numpy as jnp

import jaxloss
from jaxloss import HuberLoss

p = jnp.zeros(3)
jaxloss.huber_loss(p, p, dleta=1.0)  # E: misspelled option
HuberLoss(dleta=1.0)  # E: misspelled constructor option
jaxloss.mse_loss(p, p, reduction="average")  # E: no such reduction
jaxloss.batch_triplet_loss(p, p, mining="hardest")  # E: not a mining strategy
jaxloss.dice_loss(p, p, from_logits="yes")  # E: a flag is a bool
jaxloss.no_such_loss(p, p)  # E: not in jaxloss
