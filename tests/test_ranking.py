"""Ranking losses against NumPy float64 references written here, list by list, with
rax's semantics: padding items (``where``) left out of their list, per-item weights,
listwise means over lists with a valid item, pairwise means over all valid pairs.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _reference import assert_close, central_diff

import jaxloss

# ---- references: one list at a time ---------------------------------------------------------


def ref_softmax(s, y, w):
    lse = np.log(np.sum(np.exp(s - s.max()))) + s.max()
    return -np.sum(w * y * (s - lse))


def ref_listmle(s, y, w):
    order = sorted(range(len(s)), key=lambda i: (-y[i], i))  # decreasing relevance, ties by position
    total = 0.0
    for k, i in enumerate(order):
        rest = [s[j] for j in order[k:]]
        total -= w[i] * (s[i] - np.log(np.sum(np.exp(rest))))
    return total


def ref_pairs(s, y, w, pair_loss):
    """(sum over pairs y_i > y_j of w_i * loss(s_i - s_j), number of pairs)."""
    total, count = 0.0, 0
    for i in range(len(s)):
        for j in range(len(s)):
            if y[i] > y[j]:
                total += w[i] * pair_loss(s[i] - s[j])
                count += 1
    return total, count


def hinge(m):
    return lambda d: max(0.0, m - d)


def logistic(d):
    return math.log1p(math.exp(-d)) if d > 0 else -d + math.log1p(math.exp(d))


def ref_approx_ndcg(s, y, w, t):
    gains = w * (2.0 ** y - 1)
    n = len(s)
    ranks = [1 + sum(1 / (1 + math.exp(-(s[j] - s[i]) / t)) for j in range(n) if j != i) for i in range(n)]
    dcg = sum(gains[i] / math.log2(1 + ranks[i]) for i in range(n))
    ideal = sum(g / math.log2(2 + k) for k, g in enumerate(sorted(gains, reverse=True)))
    return -dcg / (ideal if ideal != 0 else 1.0)


LISTWISE = {
    "ranking_softmax_loss": lambda s, y, w: ref_softmax(s, y, w),
    "listmle_loss": lambda s, y, w: ref_listmle(s, y, w),
    "approx_ndcg_loss": lambda s, y, w: ref_approx_ndcg(s, y, w, 0.7),
}
PAIRWISE = {"pairwise_hinge_loss": hinge(0.6), "pairwise_logistic_loss": logistic}
OPTIONS = {"approx_ndcg_loss": {"temperature": 0.7}, "pairwise_hinge_loss": {"margin": 0.6}}


def reference(name, scores, relevance, item_weights=None, item_mask=None, list_weights=None):
    """Every reduction of the loss, from the valid items of each list."""
    batch, length = scores.shape
    iw = np.ones((batch, length)) if item_weights is None else item_weights
    im = np.ones((batch, length), bool) if item_mask is None else item_mask
    lw = np.ones(batch) if list_weights is None else list_weights
    per_list, counts = np.zeros(batch), np.zeros(batch)
    for b in range(batch):
        keep = im[b]
        s, y, w = scores[b][keep], relevance[b][keep], iw[b][keep]
        if name in LISTWISE:
            per_list[b] = LISTWISE[name](s, y, w) if keep.any() else 0.0
            counts[b] = 1.0 if keep.any() else 0.0
        else:
            per_list[b], counts[b] = ref_pairs(s, y, w, PAIRWISE[name])
    counted = (lw != 0) & (counts > 0) if name in LISTWISE else (lw != 0)
    none = np.where(counted, lw * per_list, 0.0)
    den = np.sum(np.where(counted, lw * counts, 0.0))
    return {"none": none, "sum": none.sum(), "mean": 0.0 if den == 0 else none.sum() / den}


NAMES = sorted([*LISTWISE, *PAIRWISE])


def _batch(seed=0, batch=4, length=6):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(batch, length)) * 1.5
    relevance = rng.integers(0, 4, size=(batch, length)).astype(np.float64)
    mask = rng.uniform(size=(batch, length)) < 0.75
    mask[0] = True
    mask[1, 1:3] = False  # padding inside the list, not only at its end
    mask[2] = False  # a list with no valid item
    weights = rng.uniform(0.0, 2.0, size=(batch, length))
    weights[0, 0] = 0.0  # an item of weight 0 stays in its list
    return scores, relevance, mask, weights


# ---- values, every reduction, per-item masks and weights ------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_against_numpy_per_item_mask_and_weights(name):
    fn = getattr(jaxloss, name)
    scores, relevance, mask, weights = _batch()
    with jax.enable_x64(True):
        s, y = jnp.asarray(scores), jnp.asarray(relevance)
        for kwargs, ref in (
            ({}, reference(name, scores, relevance)),
            ({"where": mask}, reference(name, scores, relevance, item_mask=mask)),
            ({"weights": weights, "where": mask}, reference(name, scores, relevance, weights, mask)),
        ):
            for reduction in ("none", "mean"):  # "sum" below, with "sum_and_weight"
                out = fn(s, y, reduction=reduction, **OPTIONS.get(name, {}),
                         **{k: jnp.asarray(v) for k, v in kwargs.items()})
                assert_close(out, ref[reduction], rtol=1e-12, atol=1e-13)
        # per-list weights and mask (the per-list shape): the usual weighted mean of the lists
        lw = np.array([0.5, 2.0, 1.0, 0.0])
        out = fn(s, y, weights=jnp.asarray(lw), where=jnp.asarray(mask), **OPTIONS.get(name, {}))
        assert_close(out, reference(name, scores, relevance, item_mask=mask, list_weights=lw)["mean"], rtol=1e-12)
        # sum_and_weight: the pairwise count or the number of lists with a valid item
        total, den = fn(s, y, where=jnp.asarray(mask), reduction="sum_and_weight", **OPTIONS.get(name, {}))
        expected = reference(name, scores, relevance, item_mask=mask)
        assert_close(total, expected["sum"], rtol=1e-12)
        assert_close(total / den, expected["mean"], rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_masked_items_equal_sliced_lists_and_stay_out_of_the_gradient(name):
    fn = getattr(jaxloss, name)
    rng = np.random.default_rng(1)
    scores, relevance = rng.normal(size=(1, 7)), rng.integers(0, 4, size=(1, 7)).astype(np.float64)
    keep = np.array([True, False, True, True, False, True, True])
    poisoned = scores.copy()
    poisoned[0, ~keep] = np.nan
    opts = OPTIONS.get(name, {})
    with jax.enable_x64(True):
        masked, g = jax.value_and_grad(lambda x: fn(x, jnp.asarray(relevance), where=jnp.asarray(keep[None]),
                                                    reduction="sum", **opts))(jnp.asarray(poisoned))
        sliced, gs = jax.value_and_grad(lambda x: fn(x, jnp.asarray(relevance[:, keep]), reduction="sum",
                                                     **opts))(jnp.asarray(scores[:, keep]))
    assert_close(masked, sliced, rtol=1e-13, atol=1e-14)
    g = np.asarray(g)
    assert np.all(np.isfinite(g)) and np.all(g[0, ~keep] == 0.0)
    assert_close(g[0, keep], np.asarray(gs)[0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_against_finite_differences_of_the_reference(name):
    fn = getattr(jaxloss, name)
    scores, relevance, mask, weights = _batch(2)
    with jax.enable_x64(True):
        g = jax.grad(lambda x: fn(x, jnp.asarray(relevance), weights=jnp.asarray(weights), where=jnp.asarray(mask),
                                  **OPTIONS.get(name, {})))(jnp.asarray(scores))
    numeric = central_diff(lambda s: reference(name, s, relevance, weights, mask)["mean"], scores)
    assert_close(g, numeric, rtol=1e-6, atol=1e-8)
    assert np.all(np.asarray(g)[~mask] == 0.0)


# ---- rax's and optax's worked examples --------------------------------------------------------


def test_rax_documented_values():
    scores = jnp.array([[2.0, 1.0, 3.0], [1.0, 0.5, 1.5]])
    labels = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    where = jnp.array([[True, True, False], [True, True, True]])
    assert_close(jaxloss.ranking_softmax_loss(scores[0], labels[0]), 1.4076059)
    assert_close(jaxloss.ranking_softmax_loss(scores, labels, where=where), 0.49676564)
    assert_close(jaxloss.ranking_softmax_loss(scores, labels, reduction="none"), [1.4076059, 0.68026966])
    assert_close(jaxloss.pairwise_hinge_loss(scores[0], labels[0], reduction="sum"), 2.0)
    assert_close(jaxloss.pairwise_logistic_loss(scores[0], labels[0], reduction="sum"), 1.6265235)
    pair_scores = jnp.array([[2.0, 1.0, 0.0], [1.0, 0.5, 1.5]])
    assert_close(jaxloss.pairwise_hinge_loss(pair_scores, labels, where=where), 0.16666667)
    assert_close(jaxloss.pairwise_logistic_loss(pair_scores, labels, where=where), 0.3668668)
    grad = jax.grad(jaxloss.ranking_softmax_loss)(jnp.array([[0.0, 1.0, 3.0], [1.0, 2.0, 0.0]]),
                                                  jnp.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))
    assert_close(grad, [[0.02100503, 0.0570976, -0.07810265], [-0.37763578, 0.33262047, 0.04501529]])


def test_ranking_softmax_equals_optax():
    scores, relevance, mask, weights = _batch(3)
    s, y = jnp.asarray(scores, jnp.float32), jnp.asarray(relevance, jnp.float32)
    m, w = jnp.asarray(mask), jnp.asarray(weights, jnp.float32)
    assert_close(jaxloss.ranking_softmax_loss(s, y), optax.losses.ranking_softmax_loss(s, y), rtol=1e-6)
    assert_close(jaxloss.ranking_softmax_loss(s, y, where=m, weights=w),
                 optax.losses.ranking_softmax_loss(s, y, where=m, weights=w), rtol=1e-6)
    assert_close(jax.grad(lambda x: jaxloss.ranking_softmax_loss(x, y, where=m))(s),
                 jax.grad(lambda x: optax.losses.ranking_softmax_loss(x, y, where=m))(s), rtol=1e-5, atol=1e-7)


# ---- edge cases -----------------------------------------------------------------------------


def test_lists_without_relevant_items_or_pairs():
    scores = jnp.array([[0.3, -1.0, 2.0], [1.0, 2.0, 3.0]])
    flat = jnp.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    assert_close(jaxloss.approx_ndcg_loss(scores, flat, reduction="none"), [0.0, -1.0 * 0.0 + ref_approx_ndcg(
        np.array([1.0, 2.0, 3.0]), np.ones(3), np.ones(3), 1.0)], rtol=1e-5)
    assert_close(jaxloss.ranking_softmax_loss(scores[:1], flat[:1]), 0.0)
    for name in PAIRWISE:  # no pair: 0 with a zero gradient, never NaN
        value, g = jax.value_and_grad(lambda s: getattr(jaxloss, name)(s, flat))(scores)
        assert float(value) == 0.0 and np.all(np.asarray(g) == 0.0)


def test_listmle_ties_keep_list_order_and_large_scores_stay_finite():
    s = np.array([0.5, -0.2, 1.0, 0.0])
    y = np.array([1.0, 1.0, 0.0, 1.0])  # items 0, 1, 3 tie: kept in that order
    assert_close(jaxloss.listmle_loss(jnp.asarray(s), jnp.asarray(y)), ref_listmle(s, y, np.ones(4)), rtol=1e-6)
    big = jnp.array([[3e4, -3e4, 0.0, 1e4]])
    value, g = jax.value_and_grad(lambda x: jaxloss.listmle_loss(x, jnp.array([[3.0, 2.0, 1.0, 0.0]])))(big)
    assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(g)))
    assert_close(value, 5e4, rtol=1e-6)  # terms 0, -3e4 - 1e4, 0 - 1e4 and 0


def test_a_zero_weight_item_stays_in_the_list_but_a_masked_one_does_not():
    s, y = jnp.array([1.0, 2.0, 0.5]), jnp.array([1.0, 0.0, 2.0])
    w = jnp.array([1.0, 0.0, 1.0])
    weighted = jaxloss.ranking_softmax_loss(s, y, weights=w)
    masked = jaxloss.ranking_softmax_loss(s, y, where=w > 0)
    assert_close(weighted, ref_softmax(np.asarray(s), np.asarray(y), np.asarray(w)), rtol=1e-6)
    assert_close(masked, ref_softmax(np.array([1.0, 0.5]), np.array([1.0, 2.0]), np.ones(2)), rtol=1e-6)
    assert float(weighted) > float(masked)


def test_hinge_margin_is_m_times_the_hinge_of_scaled_scores():
    scores, relevance, mask, _ = _batch(4)
    s, y, m = jnp.asarray(scores, jnp.float32), jnp.asarray(relevance, jnp.float32), jnp.asarray(mask)
    for margin in (0.25, 3.0):
        assert_close(jaxloss.pairwise_hinge_loss(s, y, margin=margin, where=m, reduction="none"),
                     margin * jaxloss.pairwise_hinge_loss(s / margin, y, where=m, reduction="none"), rtol=1e-5)


def test_integer_relevance_and_errors():
    s = jnp.array([[0.1, 0.5, -0.3]])
    assert_close(jaxloss.listmle_loss(s, jnp.array([[2, 0, 1]])), jaxloss.listmle_loss(s, jnp.array([[2.0, 0, 1]])))
    with pytest.raises(ValueError, match="pairwise_hinge_loss: margin must lie in"):
        jaxloss.pairwise_hinge_loss(s, s, margin=0.0)
    with pytest.raises(ValueError, match="approx_ndcg_loss: temperature must lie in"):
        jaxloss.approx_ndcg_loss(s, s, temperature=-1.0)
    with pytest.raises(ValueError, match="listmle_loss: scores and relevance must have the same shape"):
        jaxloss.listmle_loss(s, jnp.zeros((1, 4)))
    with pytest.raises(TypeError, match="ranking_softmax_loss"):
        jaxloss.ranking_softmax_loss(jnp.array([[1, 2]]), jnp.array([[1, 0]]))
