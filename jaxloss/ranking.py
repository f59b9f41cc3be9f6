r"""Ranking losses: scores of the items of a list against their relevance.

Every function here takes ``scores`` ``[..., L]`` (floating point; one list of
``L`` items per index of the leading axes) and ``relevance`` of the same shape
(graded labels, float or int; higher is more relevant), and follows rax (the
JAX ranking library) in its values, gradients and default reduction:

* ``reduction="none"`` returns one loss per list, shape ``[...]``;
* the listwise losses' ``"mean"`` (:func:`ranking_softmax_loss`,
  :func:`listmle_loss`, :func:`approx_ndcg_loss`) is the mean over the lists
  that have at least one valid item;
* the pairwise losses' ``"mean"`` (:func:`pairwise_hinge_loss`,
  :func:`pairwise_logistic_loss`) is the mean over every valid pair of the
  batch (pairs :math:`(i, j)` of valid items with :math:`y_i > y_j`), and
  ``"none"`` the sum over each list's pairs; ``"sum_and_weight"`` returns that
  sum and the number of pairs.

``where`` and ``weights`` apply per item when they have the inputs' shape
``[..., L]``:

* a masked item (``where`` False; padding of a short list) is left out of its
  list as if it were not there: it leaves the softmax's normaliser, the
  Plackett-Luce sums, the pairs and the approximate ranks. A list with no valid
  item leaves the mean (its ``"none"`` entry is 0);
* an item's weight multiplies its terms, as rax's per-item ``weights`` do: its
  label in the softmax cross-entropy, its gain in the NDCG (and the ideal
  DCG), the pairs in which it is the more relevant item, its term of the
  Plackett-Luce likelihood (rax's ListMLE has no weights; this is jaxloss's
  extension). An item of weight 0 stays in the list (it still competes in
  the softmax and in the ranks), unlike a masked one.

A ``where`` or ``weights`` of the per-list shape ``[...]`` (or broadcastable to
it) applies per list instead, with the usual weighted mean. When a shape fits
both readings (a ``[L]`` mask for ``L`` lists), the per-list reading wins, so
give per-item masks the full ``[..., L]`` shape.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._checks import FINITE, POSITIVE
from ._core import Example, Layout, Mean, Role, Unreduced, builtin, element_parts
from ._numerics import logsumexp, masked_logsumexp, softplus

__all__ = [
    "approx_ndcg_loss", "ApproxNDCGLoss",
    "listmle_loss", "ListMLELoss",
    "pairwise_hinge_loss", "PairwiseHingeLoss",
    "pairwise_logistic_loss", "PairwiseLogisticLoss",
    "ranking_softmax_loss", "RankingSoftmaxLoss",
]

_LISTS = Layout({"relevance": Role("real", domain=FINITE)}, axis=-1, where="items")
ranking = functools.partial(builtin("ranking"), layout=_LISTS)


def _sample(rng: np.random.Generator) -> tuple:
    scores = rng.normal(size=(3, 5)).astype(np.float32)
    relevance = rng.integers(0, 3, size=(3, 5)).astype(np.float32)
    relevance[:, 0] = 2.0  # every list has a relevant item and at least one pair
    relevance[:, 1] = 0.0
    return scores, relevance


def _list_weight(valid, dtype):
    """Lists with at least one valid item count in the listwise means (rax)."""
    return None if valid is None else jnp.any(valid, axis=-1).astype(dtype)


def _labels(scores, relevance, element_weights):
    y = relevance.astype(scores.dtype)
    return y if element_weights is None else y * element_weights


@ranking(example=Example(_sample, optax="ranking_softmax_loss"))
def ranking_softmax_loss(scores, relevance, *, where=None):
    r"""Softmax cross-entropy of a list's scores against its relevance labels.

    .. math:: \ell = -\sum_{i \in V} y_i \log \frac{e^{s_i}}{\sum_{j \in V} e^{s_j}}

    over the valid items :math:`V` of the list; the labels are not normalised
    (rax's default ``label_fn``), so a list whose labels are all 0 has loss 0.
    The same as ``rax.softmax_loss`` and ``optax.losses.ranking_softmax_loss``
    (both with their default ``reduce_fn=jnp.mean``); an item's weight
    multiplies its label.

    Args:
      scores: ``[..., L]`` floating point, one list per leading index.
      relevance: ``[..., L]`` relevance labels (float or int), the same shape;
        non-negative for a cross-entropy.

    Returns:
      The mean over lists with a valid item; with ``reduction="none"`` one loss
      per list, shape ``[...]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> scores = jnp.array([[2.0, 1.0, 3.0], [1.0, 0.5, 1.5]])
      >>> relevance = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
      >>> jaxloss.ranking_softmax_loss(scores, relevance, reduction="none")
      Array([1.4076059, 0.6802697], dtype=float32)
      >>> where = jnp.array([[True, True, False], [True, True, True]])   # item 3 of list 1 is padding
      >>> round(float(jaxloss.ranking_softmax_loss(scores, relevance, where=where)), 6)
      0.496766
    """
    element_weights, element_where = element_parts(where)
    y = _labels(scores, relevance, element_weights)
    if element_where is None:
        terms = y * (scores - logsumexp(scores, axis=-1)[..., None])
    else:
        lse = masked_logsumexp(scores, element_where)
        terms = jnp.where(element_where, y * (scores - lse[..., None]), 0.0)
    return Unreduced(-jnp.sum(terms, axis=-1), _list_weight(element_where, scores.dtype))


@ranking(example=Example(_sample))
def listmle_loss(scores, relevance, *, where=None):
    r"""ListMLE: the negative Plackett-Luce log-likelihood of the ideal ordering.

    With :math:`\pi` the valid items sorted by decreasing relevance (ties kept
    in their order in the list, as ``rax.listmle_loss`` without a ``key``):

    .. math:: \ell = -\sum_{k=1}^{|V|} w_{\pi_k} \Big(s_{\pi_k}
              - \log \sum_{m \ge k} e^{s_{\pi_m}}\Big)

    (:math:`w = 1` without weights). The same as ``rax.listmle_loss`` with its
    default ``reduce_fn=jnp.mean``; the per-item weights (one per term) are a
    jaxloss extension. The cumulative log-sum-exp is computed by a stable scan,
    so scores of any magnitude give finite values and gradients.

    Args:
      scores: ``[..., L]`` floating point, one list per leading index.
      relevance: ``[..., L]`` relevance labels (float or int), the same shape.

    Returns:
      The mean over lists with a valid item; with ``reduction="none"`` one loss
      per list, shape ``[...]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> scores = jnp.array([0.0, 3.0, 1.0])
      >>> relevance = jnp.array([2.0, 1.0, 0.0])   # the ideal order is items 1, 2, 3
      >>> round(float(jaxloss.listmle_loss(scores, relevance)), 5)
      3.29677
    """
    element_weights, element_where = element_parts(where)
    length = scores.shape[-1]
    valid = jnp.ones_like(scores, dtype=bool) if element_where is None else element_where
    y = relevance.astype(scores.dtype)
    # (built from scores, so it carries their sharding: sort needs equal shardings)
    position = jnp.zeros_like(scores, dtype=jnp.int32) + jnp.arange(length, dtype=jnp.int32)
    # valid items first, then by decreasing relevance, ties by position: a total order
    order = lax.sort((jnp.logical_not(valid).astype(jnp.int32), -y, position), dimension=scores.ndim - 1,
                     num_keys=3)[2]
    s = jnp.take_along_axis(scores, order, axis=-1)
    v = jnp.take_along_axis(valid, order, axis=-1)
    lse = lax.cumlogsumexp(jnp.where(v, s, -jnp.inf), axis=scores.ndim - 1, reverse=True)
    terms = s - jnp.where(v, lse, 0.0)
    if element_weights is not None:
        terms = terms * jnp.take_along_axis(element_weights, order, axis=-1)
    loss = -jnp.sum(jnp.where(v, terms, 0.0), axis=-1)
    return Unreduced(loss, _list_weight(element_where, scores.dtype))


def _pairs(scores, relevance, element_weights, element_where):
    """``(s_i - s_j, valid pairs, pair weights)``, pairs ``[..., i, j]`` with ``y_i > y_j``."""
    y = relevance.astype(scores.dtype)
    diff = scores[..., :, None] - scores[..., None, :]
    pair = y[..., :, None] > y[..., None, :]
    if element_where is not None:
        pair = pair & element_where[..., :, None] & element_where[..., None, :]
    weight = None if element_weights is None else element_weights[..., :, None]
    return diff, pair, weight


def _pair_total(values, pair, weight):
    """Each list's sum over its valid pairs, with the number of pairs as the mean's count."""
    if weight is not None:
        values = values * weight
    total = jnp.sum(jnp.where(pair, values, 0.0), axis=(-2, -1))
    return Unreduced(total, mean=Mean(count=jnp.sum(pair, axis=(-2, -1)).astype(total.dtype)))


@ranking(checks={"margin": POSITIVE},
         example=Example(_sample, sweep=("margin", (0.5, 1.0, 2.0, 3.0)), grad_order=1))
def pairwise_hinge_loss(scores, relevance, *, margin=1.0, where=None):
    r"""Pairwise hinge loss over the pairs a list orders by relevance.

    .. math:: \ell = \sum_{i, j \in V:\ y_i > y_j} w_i \max(0,\ m - (s_i - s_j))

    which is :math:`m` times rax's hinge on the scores divided by :math:`m`
    (``rax.pairwise_hinge_loss`` is :math:`m = 1`). The derivative at the kink is
    0 (as ``jax.nn.relu``). A pair's weight is the weight of its more relevant
    item, as rax's.

    Args:
      scores: ``[..., L]`` floating point, one list per leading index.
      relevance: ``[..., L]`` relevance labels (float or int), the same shape.
      margin: :math:`m > 0` (traced).

    Returns:
      The mean over all valid pairs of the batch (rax's default); with
      ``reduction="none"`` each list's sum over its pairs, shape ``[...]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> scores = jnp.array([[2.0, 1.0, 0.0], [1.0, 0.5, 1.5]])
      >>> relevance = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
      >>> where = jnp.array([[True, True, False], [True, True, True]])
      >>> jaxloss.pairwise_hinge_loss(scores, relevance, where=where)   # 3 pairs
      Array(0.16666667, dtype=float32)
      >>> jaxloss.pairwise_hinge_loss(scores, relevance, where=where, reduction="none")
      Array([0. , 0.5], dtype=float32)
    """
    element_weights, element_where = element_parts(where)
    diff, pair, weight = _pairs(scores, relevance, element_weights, element_where)
    gap = margin - diff
    return _pair_total(jnp.where(gap > 0, gap, 0.0), pair, weight)


@ranking(example=Example(_sample))
def pairwise_logistic_loss(scores, relevance, *, where=None):
    r"""Pairwise logistic loss (RankNet) over the pairs a list orders by relevance.

    .. math:: \ell = \sum_{i, j \in V:\ y_i > y_j} w_i \log\big(1 + e^{-(s_i - s_j)}\big)

    The same as ``rax.pairwise_logistic_loss``; computed as a softplus, exact
    for every finite score difference.

    Args:
      scores: ``[..., L]`` floating point, one list per leading index.
      relevance: ``[..., L]`` relevance labels (float or int), the same shape.

    Returns:
      The mean over all valid pairs of the batch (rax's default); with
      ``reduction="none"`` each list's sum over its pairs, shape ``[...]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> scores = jnp.array([[2.0, 1.0, 0.0], [1.0, 0.5, 1.5]])
      >>> relevance = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
      >>> where = jnp.array([[True, True, False], [True, True, True]])
      >>> jaxloss.pairwise_logistic_loss(scores, relevance, where=where)
      Array(0.3668668, dtype=float32)
    """
    element_weights, element_where = element_parts(where)
    diff, pair, weight = _pairs(scores, relevance, element_weights, element_where)
    return _pair_total(softplus(-diff), pair, weight)


@ranking(checks={"temperature": POSITIVE},
         example=Example(_sample, sweep=("temperature", (0.5, 1.0, 2.0, 4.0))))
def approx_ndcg_loss(scores, relevance, *, temperature=1.0, where=None):
    r"""The negative approximate NDCG of a list: NDCG with sigmoid-smoothed ranks.

    With gains :math:`g_i = w_i (2^{y_i} - 1)` and the approximate ranks

    .. math:: \hat r_i = 1 + \sum_{j \in V,\, j \ne i} \sigma\!\Big(\frac{s_j - s_i}{T}\Big),
              \qquad
              \ell = -\frac{\sum_{i \in V} g_i / \log_2(1 + \hat r_i)}
                           {\sum_{k=1}^{|V|} g_{(k)} / \log_2(1 + k)}

    where :math:`g_{(k)}` are the valid gains in decreasing order (the ideal
    DCG). A list whose ideal DCG is 0 (no relevant item) has loss 0 (but still
    counts in the mean). The same as rax's ``approx_t12n(ndcg_metric,
    temperature=T)`` with its default ``reduce_fn=jnp.mean``. The loss lies in
    :math:`[-1, 0]` for non-negative labels; it uses all ``L^2`` pairs of each list.

    Args:
      scores: ``[..., L]`` floating point, one list per leading index.
      relevance: ``[..., L]`` relevance labels (float or int), the same shape.
      temperature: :math:`T > 0` (traced); smaller is closer to the true ranks.

    Returns:
      The mean over lists with a valid item; with ``reduction="none"`` one loss
      per list, shape ``[...]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> scores = jnp.array([0.0, 1.0, 3.0, 2.0])
      >>> relevance = jnp.array([0.0, 0.0, 1.0, 2.0])
      >>> round(float(jaxloss.approx_ndcg_loss(scores, relevance)), 5)
      -0.71789
    """
    element_weights, element_where = element_parts(where)
    length = scores.shape[-1]
    y = relevance.astype(scores.dtype)
    gains = jnp.exp2(y) - 1.0
    if element_weights is not None:
        gains = gains * element_weights
    others = jnp.logical_not(jnp.eye(length, dtype=bool))
    if element_where is not None:
        others = others & element_where[..., None, :]
    step = jax.nn.sigmoid((scores[..., None, :] - scores[..., :, None]) / temperature)
    ranks = 1.0 + jnp.sum(jnp.where(others, step, 0.0), axis=-1)
    terms = gains / jnp.log2(1.0 + ranks)
    ideal_gains = gains if element_where is None else jnp.where(element_where, gains, -jnp.inf)
    ideal_gains = -jnp.sort(-ideal_gains, axis=-1)
    discounts = 1.0 / jnp.log2(2.0 + jnp.arange(length, dtype=scores.dtype))
    ideal = jnp.sum(jnp.where(jnp.isfinite(ideal_gains), ideal_gains * discounts, 0.0), axis=-1)
    if element_where is not None:
        terms = jnp.where(element_where, terms, 0.0)
    dcg = jnp.sum(terms, axis=-1)
    ideal = lax.stop_gradient(jnp.where(ideal == 0.0, 1.0, ideal))
    return Unreduced(-dcg / ideal, _list_weight(element_where, scores.dtype))


RankingSoftmaxLoss = ranking_softmax_loss.Loss
ListMLELoss = listmle_loss.Loss
PairwiseHingeLoss = pairwise_hinge_loss.Loss
PairwiseLogisticLoss = pairwise_logistic_loss.Loss
ApproxNDCGLoss = approx_ndcg_loss.Loss
