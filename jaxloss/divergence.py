r"""Divergences between discrete distributions along a class axis.

Both losses take a prediction in log space, ``log_pred`` (e.g. the output of
``jax.nn.log_softmax``), and a target distribution given as probabilities or,
with ``log_target=True``, as log-probabilities -- PyTorch's ``kl_div`` input
convention. They sum over the class axis ``axis`` (static, default -1) and
return per-example values for ``reduction="none"``; ``"mean"`` is the mean
over examples (PyTorch's ``reduction="batchmean"``, which is the mathematically
correct KL; PyTorch's own ``"mean"`` also divides by the number of classes).

Zero-probability classes follow the convention :math:`0 \log 0 = 0`: a term
whose target probability is 0 contributes 0 to the value and the gradient even
when the predicted log-probability there is ``-inf`` (a masked class), so the
divergence is finite whenever the prediction covers the target's support.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from ._checks import AXIS, FLAG, NONNEGATIVE_VALUES
from ._core import Example, Layout, Role, builtin, optax_mean

divergence = builtin("divergence")

__all__ = [
    "generalized_kl_divergence", "GeneralizedKLDivergence",
    "js_divergence", "JSDivergence",
    "kl_divergence", "KLDivergence",
]


def _distribution_sample(rng: np.random.Generator) -> tuple:
    q = rng.uniform(0.05, 1.0, size=(6, 5))
    p = rng.uniform(0.05, 1.0, size=(6, 5))
    log_q = np.log(q / q.sum(-1, keepdims=True))
    return log_q.astype(np.float32), (p / p.sum(-1, keepdims=True)).astype(np.float32)


def _target_terms(target, log_target):
    """``(p, log p, p == 0)`` of the target, with ``log p`` 0 (not -inf or NaN)
    where ``p == 0`` so that products stay finite in value and gradient."""
    if log_target:
        zero = target == -jnp.inf
        log_p = jnp.where(zero, jnp.zeros_like(target), target)
        return jnp.where(zero, jnp.zeros_like(target), jnp.exp(log_p)), log_p, zero
    zero = target == 0
    log_p = jnp.log(jnp.where(zero, jnp.ones_like(target), target))
    return target, log_p, zero


_OPTIONS = {"log_target": FLAG, "axis": AXIS}
_LAYOUT = Layout({"target": Role(domain=NONNEGATIVE_VALUES.but_not_when("log_target"))}, axis="axis")


@divergence(static=_OPTIONS, layout=_LAYOUT,
            example=Example(_distribution_sample, differentiable=(0, 1), optax="kl_divergence",
                            compare=optax_mean("kl_divergence")))
def kl_divergence(log_pred, target, *, log_target=False, axis=-1):
    r"""Kullback-Leibler divergence :math:`\mathrm{KL}(\text{target} \,\|\, \text{pred})`.

    With :math:`p` the target and :math:`\log q` the predicted log-probabilities:

    .. math:: \ell_i = \sum_c p_{ic} \bigl(\log p_{ic} - \log q_{ic}\bigr)

    PyTorch's ``kl_div(log_pred, target, log_target=...)`` summed over the class
    axis (its ``reduction="batchmean"`` is jaxloss's ``"mean"``). Terms with
    :math:`p_{ic} = 0` are 0 (also in the gradient, including when
    :math:`\log q_{ic} = -\infty`); a target class that the prediction gives
    probability 0 makes the divergence ``+inf`` (its gradient with respect to
    ``log_pred`` stays finite, :math:`-p`). Neither input is renormalised. A
    negative target probability gives NaN (it is not a distribution).

    Args:
      log_pred: ``[..., C, ...]`` predicted log-probabilities, classes along ``axis``.
      target: target probabilities of the same shape, or log-probabilities
        when ``log_target=True``.
      log_target: whether ``target`` is in log space (static).
      axis: the class axis (static).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-example divergences.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> p = jnp.array([0.5, 0.3, 0.2]); q = jnp.array([0.33, 0.33, 0.34])
      >>> round(float(jaxloss.kl_divergence(jnp.log(q), p)), 6)
      0.073039

    References: PyTorch ``torch.nn.functional.kl_div``; optax ``kl_divergence``.
    """
    ax = axis % log_pred.ndim
    p, log_p, zero = _target_terms(target, log_target)
    log_q = jnp.where(zero, jnp.zeros_like(log_pred), log_pred)
    terms = jnp.where(zero, jnp.zeros_like(log_pred), p * (log_p - log_q))
    return jnp.sum(terms, axis=ax)


@divergence(static=_OPTIONS, layout=_LAYOUT, example=Example(_distribution_sample, differentiable=(0, 1)))
def js_divergence(log_pred, target, *, log_target=False, axis=-1):
    r"""Jensen-Shannon divergence between the target and the prediction (in nats).

    With :math:`p` the target, :math:`q = e^{\log q}` the prediction and
    :math:`m = (p + q)/2`:

    .. math:: \ell_i = \tfrac12 \mathrm{KL}(p_i \,\|\, m_i) + \tfrac12 \mathrm{KL}(q_i \,\|\, m_i)
              = \tfrac12 \sum_c \Bigl(p_{ic} \log\frac{p_{ic}}{m_{ic}} + q_{ic} \log\frac{q_{ic}}{m_{ic}}\Bigr)

    Same input convention as :func:`kl_divergence` (``log_pred`` in log space,
    ``target`` as probabilities or, with ``log_target=True``, log-probabilities).
    Symmetric, bounded by :math:`\log 2`, and finite for any pair of
    distributions: :math:`\log m` is computed as
    ``logaddexp(log_p, log_q) - log 2``, and terms whose weight (:math:`p` or
    :math:`q`) is 0 are 0 in value and gradient, so disjoint supports and
    ``-inf`` log-probabilities are fine. Inputs are not renormalised.

    Args:
      log_pred: ``[..., C, ...]`` predicted log-probabilities, classes along ``axis``.
      target: target probabilities of the same shape, or log-probabilities
        when ``log_target=True``.
      log_target: whether ``target`` is in log space (static).
      axis: the class axis (static).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-example divergences.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> p = jnp.array([1.0, 0.0]); q = jnp.array([0.0, 1.0])
      >>> round(float(jaxloss.js_divergence(jnp.log(q), p)), 6)  # disjoint: log 2
      0.693147

    References: Lin, 1991, "Divergence measures based on the Shannon entropy".
    """
    ax = axis % log_pred.ndim
    p, log_p, p_zero = _target_terms(target, log_target)
    q_zero = log_pred == -jnp.inf
    log_q = jnp.where(q_zero, jnp.zeros_like(log_pred), log_pred)
    q = jnp.where(q_zero, jnp.zeros_like(log_pred), jnp.exp(log_q))
    # log m with each -inf input replaced by a finite stand-in that logaddexp ignores
    big_neg = jnp.asarray(jnp.finfo(log_pred.dtype).min, log_pred.dtype)
    log_m = jnp.logaddexp(jnp.where(p_zero, big_neg, log_p), jnp.where(q_zero, big_neg, log_q)) - math.log(2.0)
    both = p_zero & q_zero
    log_m = jnp.where(both, jnp.zeros_like(log_m), log_m)
    p_terms = jnp.where(p_zero, jnp.zeros_like(log_pred), p * (log_p - log_m))
    q_terms = jnp.where(q_zero, jnp.zeros_like(log_pred), q * (log_q - log_m))
    return 0.5 * jnp.sum(p_terms + q_terms, axis=ax)



def _measure_sample(rng: np.random.Generator) -> tuple:
    """Unnormalised positive measures: the generalized KL does not need distributions."""
    q = rng.uniform(0.05, 1.0, size=(6, 5))
    p = rng.uniform(0.05, 1.0, size=(6, 5))
    return np.log(q).astype(np.float32), p.astype(np.float32)


@divergence(static=_OPTIONS, layout=_LAYOUT,
            example=Example(_measure_sample, differentiable=(0, 1), optax="generalized_kl_divergence",
                            compare=optax_mean("generalized_kl_divergence")))
def generalized_kl_divergence(log_pred, target, *, log_target=False, axis=-1):
    r"""Generalized Kullback-Leibler divergence between unnormalised measures.

    With :math:`p` the target and :math:`q = e^{\log q}` the prediction (both
    non-negative, not necessarily summing to 1):

    .. math:: \ell_i = \sum_c \Bigl(p_{ic} \bigl(\log p_{ic} - \log q_{ic}\bigr) - p_{ic} + q_{ic}\Bigr)

    the Bregman divergence of :math:`x \log x - x`, which is
    :func:`kl_divergence` when both sum to 1. optax's
    ``generalized_kl_divergence`` (formerly ``convex_kl_divergence``); terms
    with :math:`p = 0` contribute :math:`q` (the convention :math:`0 \log 0 = 0`,
    with a finite gradient also where :math:`\log q = -\infty`). Non-negative,
    0 exactly when :math:`q = p`.

    Args:
      log_pred: ``[..., C, ...]`` log of the predicted measure, classes along ``axis``.
      target: the target measure (``>= 0``) of the same shape, or its log
        when ``log_target=True``.
      log_target: whether ``target`` is in log space (static).
      axis: the class axis (static).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-example divergences.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> round(float(jaxloss.generalized_kl_divergence(jnp.log(jnp.array([1.0, 2.0])), jnp.array([2.0, 2.0]))), 6)
      0.386294

    References: Boyd and Vandenberghe, 2004, "Convex Optimization" (p. 90);
    optax ``generalized_kl_divergence``.
    """
    ax = axis % log_pred.ndim
    p, log_p, zero = _target_terms(target, log_target)
    log_q = jnp.where(zero, jnp.zeros_like(log_pred), log_pred)
    kl = jnp.where(zero, jnp.zeros_like(log_pred), p * (log_p - log_q))
    return jnp.sum(kl - p + jnp.exp(log_pred), axis=ax)


KLDivergence = kl_divergence.Loss
JSDivergence = js_divergence.Loss
GeneralizedKLDivergence = generalized_kl_divergence.Loss
