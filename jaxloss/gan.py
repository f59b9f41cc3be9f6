r"""Adversarial (GAN) objectives for the discriminator and the generator.

One function, :func:`gan_loss`, with the four usual kinds: the non-saturating logistic
loss of Goodfellow et al., the hinge loss (SAGAN, BigGAN), least squares (LSGAN) and the
Wasserstein critic loss (WGAN; its Lipschitz constraint, a gradient penalty or weight
clipping, is the caller's). The inputs are the discriminator's logits (its raw scores)
on a batch of real and of generated samples; ``reduction="none"`` returns the loss per
entry of those logits, whose mean is the objective.
"""

from __future__ import annotations

from ._checks import choice
from ._core import Example, builtin
from ._numerics import pos, softplus

__all__ = ["gan_loss", "GANLoss"]

gan = builtin("gan")

KINDS = ("non_saturating", "hinge", "least_squares", "wasserstein")
TARGETS = ("discriminator", "generator")


def _sample(rng):
    return rng.normal(size=(6, 1)).astype("float32") + 0.5, rng.normal(size=(6, 1)).astype("float32") - 0.5


@gan(static={"kind": choice(*KINDS), "target": choice(*TARGETS)},
     example=Example(_sample, differentiable=(0, 1), grad_order=1), class_name="GANLoss")
def gan_loss(real_logits, fake_logits, *, kind="non_saturating", target="discriminator"):
    r"""GAN losses of the discriminator or the generator, from the logits on real and generated samples.

    With :math:`r` the logits on real samples, :math:`f` on generated ones and
    :math:`\operatorname{sp}(x) = \log(1 + e^x)`, the per-entry losses are

    .. math::
        \begin{array}{lll}
        \text{kind} & \text{discriminator} & \text{generator} \\
        \texttt{non\_saturating} & \operatorname{sp}(-r) + \operatorname{sp}(f) & \operatorname{sp}(-f) \\
        \texttt{hinge} & (1 - r)_+ + (1 + f)_+ & -f \\
        \texttt{least\_squares} & \tfrac12 (r - 1)^2 + \tfrac12 f^2 & \tfrac12 (f - 1)^2 \\
        \texttt{wasserstein} & f - r & -f
        \end{array}

    and ``"mean"`` is the objective, e.g. :math:`\operatorname{mean} \operatorname{sp}(-r) +
    \operatorname{mean} \operatorname{sp}(f)` for the non-saturating discriminator.

    Args:
      real_logits: discriminator outputs on real samples, floating point, any shape.
      fake_logits: discriminator outputs on generated samples, the same shape (one real and
        one generated sample per entry). For ``target="generator"`` the real logits are not
        used (their gradient is 0): pass the batch's real logits, or ``fake_logits`` again.
      kind: static, ``"non_saturating"`` (default), ``"hinge"``, ``"least_squares"`` or
        ``"wasserstein"``.
      target: static, ``"discriminator"`` (default) or ``"generator"``: whose loss.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-entry losses, the inputs' shape.
      Differentiate the discriminator's loss for its parameters with the generated samples
      under ``jax.lax.stop_gradient``, and the generator's through ``fake_logits``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> r, f = jnp.array([2.0, 0.5]), jnp.array([-1.0, 0.0])
      >>> float(jaxloss.gan_loss(r, f, kind="hinge"))   # mean(relu(1 - r)) + mean(relu(1 + f))
      0.75
      >>> float(jaxloss.gan_loss(r, f, kind="wasserstein", target="generator"))   # -mean(f)
      0.5
    """
    if target == "generator":
        if kind == "non_saturating":
            return softplus(-fake_logits)
        if kind == "least_squares":
            return 0.5 * (fake_logits - 1.0) ** 2
        return -fake_logits  # hinge and wasserstein
    if kind == "non_saturating":
        return softplus(-real_logits) + softplus(fake_logits)
    if kind == "hinge":
        return pos(1.0 - real_logits) + pos(1.0 + fake_logits)
    if kind == "least_squares":
        return 0.5 * (real_logits - 1.0) ** 2 + 0.5 * fake_logits ** 2
    return fake_logits - real_logits


GANLoss = gan_loss.Loss
