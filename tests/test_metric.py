"""Metric-learning losses against NumPy float64 references written here
(brute-force loops over every pair and triplet for the batch losses)."""

from __future__ import annotations

import functools
import itertools
import math
import pickle

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _reference import REDUCTIONS, assert_close, central_diff, check_reductions, f32, grad_of, reduce_ref
from _samples import ME, T01, TPM, TRIPLET, WE, M, W, X
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxloss

RTOL, ATOL = 5e-5, 5e-6
MINING = ("batch_all", "batch_hard", "semi_hard")
close = functools.partial(assert_close, rtol=RTOL, atol=ATOL)


def finite(tree):
    return all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves(tree))


def np_reduce_batch(sums, counts, reduction, weights=None, where=None):
    """Per-anchor sums S_a over counts n_a: "mean" is sum w S / sum w n."""
    return reduce_ref(sums, reduction, weights, where, count=counts)


# ---------------------------------------------------------------------------
# NumPy references
# ---------------------------------------------------------------------------


def np_dist(x, y, p=2):
    diff = np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))
    if math.isinf(p):
        return diff.max(-1)
    return (diff**p).sum(-1) ** (1.0 / p)


def np_contrastive(x1, x2, y, margin=1.0):
    d = np_dist(x1, x2)
    y = np.asarray(y, np.float64)
    return 0.5 * (y * d**2 + (1 - y) * np.maximum(0.0, margin - d) ** 2)


def np_triplet(a, pos, neg, margin=1.0, p=2, swap=False, squared=False):
    d_ap, d_an, d_pn = np_dist(a, pos, p), np_dist(a, neg, p), np_dist(pos, neg, p)
    if squared:
        d_ap, d_an, d_pn = d_ap**2, d_an**2, d_pn**2
    if swap:
        d_an = np.minimum(d_an, d_pn)
    return np.maximum(0.0, d_ap - d_an + margin)


def np_batch_triplet(x, labels, margin=1.0, mining="batch_all", squared=False):
    """Brute force over every (anchor, positive, negative): per-anchor sums and counts."""
    x = np.asarray(x, np.float64)
    B = len(labels)
    d = np.array([[np_dist(x[i], x[j]) for j in range(B)] for i in range(B)])
    if squared:
        d = d**2
    sums, counts = np.zeros(B), np.zeros(B)
    for a in range(B):
        positives = [p for p in range(B) if p != a and labels[p] == labels[a]]
        negatives = [n for n in range(B) if labels[n] != labels[a]]
        if not positives or not negatives:
            continue
        if mining == "batch_all":
            for p, n in itertools.product(positives, negatives):
                loss = max(0.0, d[a, p] - d[a, n] + margin)
                sums[a] += loss
                counts[a] += loss > 0
        elif mining == "batch_hard":
            sums[a] = max(0.0, max(d[a, p] for p in positives) - min(d[a, n] for n in negatives) + margin)
            counts[a] = 1
        else:
            for p in positives:
                farther = [d[a, n] for n in negatives if d[a, n] > d[a, p]]
                d_an = min(farther) if farther else max(d[a, n] for n in negatives)
                sums[a] += max(0.0, d[a, p] - d_an + margin)
                counts[a] += 1
    return sums, counts


def np_cos_matrix(x):
    x = np.asarray(x, np.float64)
    z = x / np.sqrt(np.maximum((x * x).sum(1, keepdims=True), np.finfo(np.float32).eps))
    return z @ z.T


def np_ntxent(x, labels, temperature=0.07):
    """Per anchor: sum over its positives j of -log(e^{s_ij} / (e^{s_ij} + sum_neg e^{s_ik}))."""
    s = np_cos_matrix(x) / temperature
    B = len(labels)
    sums, counts = np.zeros(B), np.zeros(B)
    for i in range(B):
        negs = [k for k in range(B) if labels[k] != labels[i]]
        for j in range(B):
            if j == i or labels[j] != labels[i]:
                continue
            den = np.exp(s[i, j]) + sum(np.exp(s[i, k]) for k in negs)
            sums[i] += -np.log(np.exp(s[i, j]) / den)
            counts[i] += 1
    return sums, counts


def np_supcon(x, labels, temperature=0.1):
    s = np_cos_matrix(x) / temperature
    B = len(labels)
    out, has = np.zeros(B), np.zeros(B)
    for i in range(B):
        P = [p for p in range(B) if p != i and labels[p] == labels[i]]
        if not P:
            continue
        den = sum(np.exp(s[i, a]) for a in range(B) if a != i)
        out[i] = -np.mean([np.log(np.exp(s[i, p]) / den) for p in P])
        has[i] = 1
    return out, has


def np_cosine_embedding(x1, x2, y, margin=0.0):
    # PyTorch's formula (EPSILON = 1e-12 on the squared norms)
    x1 = np.asarray(x1, np.float64)
    x2 = np.asarray(x2, np.float64)
    cos = (x1 * x2).sum(-1) / np.sqrt(((x1 * x1).sum(-1) + 1e-12) * ((x2 * x2).sum(-1) + 1e-12))
    return np.where(np.asarray(y) == 1, 1 - cos, np.maximum(0.0, cos - margin))


def np_margin_ranking(x1, x2, y, margin=0.0):
    return np.maximum(0.0, -np.asarray(y, np.float64) * (np.asarray(x1, np.float64) - x2) + margin)


def _batch(seed, B=10, D=3, classes=3, scale=1.0):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(B, D)) * scale).astype(np.float32)
    labels = rng.integers(0, classes, size=B).astype(np.int32)
    return x, labels


# ---------------------------------------------------------------------------
# Contrastive (worked example, reductions, weights, where)
# ---------------------------------------------------------------------------

E1 = np.array([[1.0, 2.0, 3.0]], np.float32)
E_SIM = np.array([[1.1, 2.1, 2.9]], np.float32)
E_DIS = np.array([[5.0, 6.0, 7.0]], np.float32)


def test_contrastive_worked_example():
    assert np_contrastive(np.float64(E1), np.float64([[1.1, 2.1, 2.9]]), [1.0])[0] == pytest.approx(0.015, abs=1e-12)
    assert np_contrastive(E1, E_DIS, [0.0])[0] == 0.0
    for red in REDUCTIONS:
        close(jaxloss.contrastive_loss(E1, E_SIM, np.array([1.0]), reduction=red), 0.015 if red != "none" else [0.015])
        close(jaxloss.contrastive_loss(E1, E_DIS, np.array([0.0]), reduction=red), 0.0 if red != "none" else [0.0])
    # int and bool labels are accepted
    close(jaxloss.contrastive_loss(E1, E_SIM, np.array([True])), 0.015)
    close(jaxloss.contrastive_loss(E1, E_SIM, np.array([1])), 0.015)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_contrastive_against_reference(reduction):
    rng = np.random.default_rng(0)
    x1 = rng.normal(size=(4, 5, 3)).astype(np.float32) * 0.5
    x2 = rng.normal(size=(4, 5, 3)).astype(np.float32) * 0.5
    y = (rng.uniform(size=(4, 5)) < 0.5).astype(np.float32)
    per = np_contrastive(x1, x2, y, margin=1.5)
    close(jaxloss.contrastive_loss(x1, x2, y, margin=1.5, reduction=reduction), reduce_ref(per, reduction))
    w = rng.uniform(0.5, 2.0, size=(4, 5)).astype(np.float32)
    where = rng.uniform(size=(4, 5)) < 0.7
    close(jaxloss.contrastive_loss(x1, x2, y, margin=1.5, reduction=reduction, weights=w, where=where),
          reduce_ref(per, reduction, w, where))


# ---------------------------------------------------------------------------
# Triplet (p = 1, 2, 3, inf, swap, squared)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("p", [1, 2, 3, math.inf])
@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("squared", [False, True])
def test_triplet_against_reference(p, swap, squared):
    rng = np.random.default_rng(1)
    a, pos, neg = (rng.normal(size=(12, 4)).astype(np.float32) for _ in range(3))
    per = np_triplet(a, pos, neg, margin=0.7, p=p, swap=swap, squared=squared)
    assert per.min() == 0.0 and per.max() > 0.0  # both sides of the hinge are exercised
    w = rng.uniform(0.5, 2.0, size=12).astype(np.float32)
    where = np.arange(12) % 4 != 0
    opts = dict(margin=0.7, p=p, swap=swap, squared=squared)
    close(jaxloss.triplet_loss(a, pos, neg, **opts, reduction="none"), per)
    close(jaxloss.triplet_loss(a, pos, neg, **opts, weights=w, where=where), reduce_ref(per, "mean", w, where))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_triplet_every_reduction(reduction):
    rng = np.random.default_rng(11)
    a, pos, neg = (rng.normal(size=(3, 5, 4)).astype(np.float32) for _ in range(3))
    per = np_triplet(a, pos, neg, margin=1.2, p=3, swap=True)
    w = rng.uniform(0.5, 2.0, size=(3, 5)).astype(np.float32)
    where = rng.uniform(size=(3, 5)) < 0.7
    opts = dict(margin=1.2, p=3, swap=True, reduction=reduction)
    close(jaxloss.triplet_loss(a, pos, neg, **opts), reduce_ref(per, reduction))
    close(jaxloss.triplet_loss(a, pos, neg, **opts, weights=w, where=where), reduce_ref(per, reduction, w, where))


def test_triplet_odd_p_uses_absolute_values():
    a = np.zeros((1, 2), np.float32)
    pos = np.array([[1.0, -2.0]], np.float32)  # |1|^3 + |-2|^3 = 9, not 1 - 8 = -7
    neg = np.array([[3.0, 0.0]], np.float32)
    close(jaxloss.triplet_loss(a, pos, neg, p=3, margin=1.0), 9 ** (1 / 3) - 3 + 1)


def test_triplet_large_p_does_not_overflow():
    a = np.zeros((1, 3), np.float32)
    pos = np.array([[1e3, 2e3, -3e3]], np.float32)
    neg = np.array([[1e-3, 0.0, 0.0]], np.float32)
    out = jaxloss.triplet_loss(a, pos, neg, p=40, margin=0.0, reduction="none")
    close(out, np_triplet(a, pos, neg, margin=0.0, p=40), rtol=1e-5)


def test_triplet_matches_optax_for_p2():
    rng = np.random.default_rng(2)
    a, pos, neg = (rng.normal(size=(16, 8)).astype(np.float32) for _ in range(3))
    # optax adds eps=1e-6 under the root; with eps=0 it is the same formula
    ref = optax.losses.triplet_margin_loss(a, pos, neg, margin=1.0, eps=0.0)
    close(jaxloss.triplet_loss(a, pos, neg, reduction="none"), ref, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# Batch triplet mining against a brute-force loop over all triplets
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("mining", MINING)
@pytest.mark.parametrize("squared", [False, True])
def test_batch_triplet_against_brute_force(mining, squared):
    margin = 0.8 if not squared else 2.0
    for seed in (0, 1):
        x, labels = _batch(seed, B=11, D=3, classes=3 + seed)
        sums, counts = np_batch_triplet(x, labels, margin, mining, squared)
        assert counts.sum() > 0
        opts = dict(margin=margin, mining=mining, squared=squared)
        for red in REDUCTIONS if not squared else ("none",):
            close(jaxloss.batch_triplet_loss(x, labels, **opts, reduction=red), np_reduce_batch(sums, counts, red),
                  rtol=1e-4, atol=1e-5)
        w = np.random.default_rng(seed + 100).uniform(0.5, 2.0, size=len(labels)).astype(np.float32)
        close(jaxloss.batch_triplet_loss(x, labels, **opts, weights=w), np_reduce_batch(sums, counts, "mean", w),
              rtol=1e-4, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 100_000), B=st.sampled_from([1, 4, 9]), classes=st.integers(1, 4),
       mining=st.sampled_from(MINING), margin=st.sampled_from([0.0, 0.3, 1.0, 3.0]))
def test_batch_triplet_property(seed, B, classes, mining, margin):
    x, labels = _batch(seed, B=B, D=2, classes=classes)
    sums, counts = np_batch_triplet(x, labels, margin, mining)
    close(jaxloss.batch_triplet_loss(x, labels, margin=margin, mining=mining),
          np_reduce_batch(sums, counts, "mean"), rtol=1e-4, atol=1e-5)


def _naive_batch_triplet(x, labels, margin, mining):
    """A direct jnp formulation with a [B, B, B] tensor (test reference only)."""
    B = x.shape[0]
    eye = jnp.eye(B, dtype=bool)
    d2 = jnp.sum((x[:, None] - x[None]) ** 2, -1)
    d = jnp.where(eye, 0.0, jnp.sqrt(jnp.where(eye, 1.0, d2)))
    same = labels[:, None] == labels[None]
    pos, neg = same & ~eye, ~same
    if mining == "batch_all":
        valid = pos[:, :, None] & neg[:, None, :]
        t = jnp.where(valid, jax.nn.relu(d[:, :, None] - d[:, None, :] + margin), 0.0)
        return jnp.sum(t) / jnp.maximum(jnp.sum(valid & (t > 0)), 1)
    if mining == "batch_hard":
        valid = jnp.any(pos, 1) & jnp.any(neg, 1)
        hp = jnp.max(jnp.where(pos, d, 0.0), 1)
        hn = jnp.min(jnp.where(neg, d, 1e9), 1)
        return jnp.sum(jnp.where(valid, jax.nn.relu(hp - hn + margin), 0.0)) / jnp.maximum(valid.sum(), 1)
    farther = neg[:, None, :] & (d[:, None, :] > d[:, :, None])
    outside = jnp.min(jnp.where(farther, d[:, None, :], 1e9), -1)
    inside = jnp.max(jnp.where(neg, d, -1.0), -1)[:, None]
    chosen = jnp.where(jnp.any(farther, -1), outside, inside)
    valid = pos & jnp.any(neg, 1)[:, None]
    t = jnp.where(valid, jax.nn.relu(d - chosen + margin), 0.0)
    return jnp.sum(t) / jnp.maximum(valid.sum(), 1)


@pytest.mark.parametrize("mining", MINING)
def test_batch_triplet_gradient_matches_naive_b3(mining):
    x, labels = _batch(5, B=12, D=4, classes=3)
    with jax.enable_x64(True):
        x64 = x.astype(np.float64)
        got = jax.grad(lambda e: jaxloss.batch_triplet_loss(e, labels, margin=1.0, mining=mining))(x64)
        ref = jax.grad(lambda e: _naive_batch_triplet(e, jnp.asarray(labels), 1.0, mining))(x64)
        close(got, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("mining", MINING)
def test_batch_triplet_vmap_equals_loop(mining):
    batches = [_batch(s, B=9, D=3, classes=3) for s in range(4)]
    xs = jnp.stack([b[0] for b in batches])
    ls = jnp.stack([b[1] for b in batches])
    f = lambda x, y: jaxloss.batch_triplet_loss(x, y, mining=mining, reduction="none")  # noqa: E731
    vg = jax.value_and_grad(lambda x, y: jnp.mean(f(x, y)))
    one = jax.jit(lambda x, y: (f(x, y), vg(x, y)))
    out, (values, grads) = jax.jit(jax.vmap(lambda x, y: (f(x, y), vg(x, y))))(xs, ls)
    for i, (x, y) in enumerate(batches):
        ref_out, (ref_value, ref_grad) = one(x, y)
        close(out[i], ref_out)
        close(values[i], ref_value)
        close(grads[i], ref_grad)
        close(ref_out, np_reduce_batch(*np_batch_triplet(x, y, 1.0, mining), "none"), rtol=1e-4, atol=1e-5)


def test_row_sort_gradient_matches_jnp_sort_and_splits_ties():
    from jaxloss.metric import _sort_nonnegative_rows

    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.uniform(size=(4, 9)).astype(np.float32))
    x = x.at[1, 3].set(jnp.inf)
    w = jnp.asarray(rng.normal(size=(4, 9)).astype(np.float32))

    def f(sort):
        return lambda v: jnp.sum(jnp.where(jnp.isfinite(s := sort(v)), s, 0.0) * w)

    close(_sort_nonnegative_rows(x), jnp.sort(x, axis=-1), rtol=0, atol=0)
    close(jax.grad(f(_sort_nonnegative_rows))(x), jax.grad(f(lambda v: jnp.sort(v, axis=-1)))(x))
    # three equal entries share the gradient of the three positions they fill
    tied = jnp.array([[0.5, 0.0, 0.5, 0.5, 2.0]])
    g = jax.grad(lambda v: jnp.sum(_sort_nonnegative_rows(v) * jnp.arange(5.0)))(tied)
    close(g, [[2.0, 0.0, 2.0, 2.0, 4.0]])


def _sizes(jaxpr):
    """Sizes of every intermediate in a jaxpr, sub-jaxprs included."""
    out = []
    for eqn in jaxpr.eqns:
        out += [math.prod(v.aval.shape) for v in eqn.outvars if hasattr(v.aval, "shape")]
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    out += _sizes(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    out += _sizes(sub)
    return out


@pytest.mark.parametrize("mining", MINING)
def test_batch_triplet_never_builds_b3(mining):
    B, D = 40, 3
    x, labels = _batch(0, B=B, D=D, classes=4)
    f = jax.value_and_grad(lambda e: jaxloss.batch_triplet_loss(e, labels, mining=mining))
    sizes = _sizes(jax.make_jaxpr(f)(x).jaxpr)
    assert max(sizes) <= 2 * B * B, f"{mining}: an intermediate of size {max(sizes)} (B^3 = {B**3})"
    # and the compiled program's scratch memory stays O(B^2)
    B = 512
    x, labels = _batch(0, B=B, D=16, classes=32)
    value_and_grad = jax.value_and_grad(lambda e: jaxloss.batch_triplet_loss(e, labels, mining=mining))
    compiled = jax.jit(value_and_grad).lower(x).compile()
    temp = compiled.memory_analysis().temp_size_in_bytes
    assert temp < 64 * B * B * 4, f"{mining}: {temp} bytes of temporaries at B={B}"


# ---------------------------------------------------------------------------
# NT-Xent and SupCon
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(2))
def test_ntxent_against_reference_and_optax(seed):
    x, labels = _batch(seed, B=12, D=5, classes=4)
    sums, counts = np_ntxent(x, labels, 0.07)
    assert counts.sum() > 0
    close(jaxloss.ntxent_loss(x, labels), optax.losses.ntxent(jnp.asarray(x), jnp.asarray(labels)), rtol=2e-5)
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.5, 2.0, size=12).astype(np.float32)
    for red in REDUCTIONS:
        close(jaxloss.ntxent_loss(x, labels, reduction=red), np_reduce_batch(sums, counts, red), rtol=2e-5, atol=2e-5)
        close(jaxloss.ntxent_loss(x, labels, reduction=red, weights=w),
              np_reduce_batch(sums, counts, red, w), rtol=2e-5, atol=2e-5)
    t = 0.5
    close(jaxloss.ntxent_loss(x, labels, temperature=t), optax.losses.ntxent(jnp.asarray(x), jnp.asarray(labels), t))


@pytest.mark.parametrize("seed", range(2))
def test_supcon_against_reference(seed):
    x, labels = _batch(seed, B=12, D=5, classes=5)
    per, has = np_supcon(x, labels, 0.1)
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.5, 2.0, size=12).astype(np.float32)
    for red in REDUCTIONS:
        close(jaxloss.supcon_loss(x, labels, reduction=red), np_reduce_batch(per, has, red), rtol=2e-5, atol=2e-5)
        close(jaxloss.supcon_loss(x, labels, reduction=red, weights=w),
              np_reduce_batch(per, has, red, w), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("name", ["ntxent_loss", "supcon_loss"])
def test_contrastive_batch_vmap_equals_loop(name):
    fn = getattr(jaxloss, name)
    batches = [_batch(s, B=8, D=4, classes=3) for s in range(3)]
    xs = jnp.stack([b[0] for b in batches])
    ls = jnp.stack([b[1] for b in batches])
    close(jax.vmap(fn)(xs, ls), [fn(x, y) for x, y in batches])
    close(jax.vmap(lambda x, y: fn(x, y, reduction="none"))(xs, ls), [fn(x, y, reduction="none") for x, y in batches])


def test_small_temperature_stays_finite():
    x, labels = _batch(3, B=8, D=4, classes=3)
    for fn in (jaxloss.ntxent_loss, jaxloss.supcon_loss):
        value, g = jax.value_and_grad(lambda e: fn(e, labels, temperature=1e-3))(x)
        assert finite((value, g))


# ---------------------------------------------------------------------------
# Cosine embedding and margin ranking (PyTorch semantics)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cosine_embedding_against_reference(reduction):
    rng = np.random.default_rng(4)
    x1 = rng.normal(size=(10, 6)).astype(np.float32)
    x2 = rng.normal(size=(10, 6)).astype(np.float32)
    y = np.where(rng.uniform(size=10) < 0.5, 1, -1).astype(np.int32)
    per = np_cosine_embedding(x1, x2, y, margin=0.1)
    close(jaxloss.cosine_embedding_loss(x1, x2, y, margin=0.1, reduction=reduction), reduce_ref(per, reduction))
    w = rng.uniform(0.5, 2.0, size=10).astype(np.float32)
    where = np.arange(10) % 3 != 0
    close(jaxloss.cosine_embedding_loss(x1, x2, y, margin=0.1, reduction=reduction, weights=w, where=where),
          reduce_ref(per, reduction, w, where))
    # 0 is accepted as the dissimilar label
    close(jaxloss.cosine_embedding_loss(x1, x2, np.where(y > 0, 1, 0), margin=0.1, reduction=reduction),
          reduce_ref(per, reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_margin_ranking_against_reference(reduction):
    rng = np.random.default_rng(5)
    x1 = rng.normal(size=(3, 7)).astype(np.float32)
    x2 = rng.normal(size=(3, 7)).astype(np.float32)
    y = np.where(rng.uniform(size=(3, 7)) < 0.5, 1.0, -1.0).astype(np.float32)
    per = np_margin_ranking(x1, x2, y, 0.3)
    close(jaxloss.margin_ranking_loss(x1, x2, y, margin=0.3, reduction=reduction), reduce_ref(per, reduction))
    w = rng.uniform(0.5, 2.0, size=(3, 7)).astype(np.float32)
    where = rng.uniform(size=(3, 7)) < 0.6
    close(jaxloss.margin_ranking_loss(x1, x2, y, margin=0.3, reduction=reduction, weights=w, where=where),
          reduce_ref(per, reduction, w, where))


# ---------------------------------------------------------------------------
# Edge inputs: identical embeddings, zero vectors, empty masks, no positives
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("p, squared", [(1, False), (2, False), (2, True), (3, False), (3, True), (math.inf, False)])
def test_triplet_identical_and_zero_embeddings(p, squared):
    rng = np.random.default_rng(6)
    a = rng.normal(size=(3, 4)).astype(np.float32)
    f = jax.jit(jax.value_and_grad(
        lambda *xs: jaxloss.triplet_loss(*xs, p=p, swap=True, squared=squared, margin=0.5), argnums=(0, 1, 2)))
    for args in ((a, a, a), (np.zeros_like(a),) * 3, (a, a, a + 1.0), (a, a + 1.0, a)):
        value, grads = f(*args)
        assert finite((value, grads))
    close(f(a, a, a)[0], 0.5)


def test_pair_losses_identical_and_zero_embeddings():
    a = np.random.default_rng(7).normal(size=(4, 3)).astype(np.float32)
    z = np.zeros_like(a)
    for x1, x2 in ((a, a), (z, z), (z, a)):
        for y in (np.ones(4, np.float32), np.zeros(4, np.float32)):
            value, g = jax.value_and_grad(jaxloss.contrastive_loss, argnums=(0, 1))(x1, x2, y)
            assert finite((value, g))
        yy = np.array([1, -1, 1, -1], np.float32)
        value, g = jax.value_and_grad(jaxloss.cosine_embedding_loss, argnums=(0, 1))(x1, x2, yy)
        assert finite((value, g))
    # identical dissimilar pair: loss 0.5 m^2 per pair
    close(jaxloss.contrastive_loss(a, a, np.zeros(4), margin=2.0), 2.0)


# The batch losses with their default margin / temperature, and their references.
BATCH_LOSSES = {
    "batch_triplet_batch_all": functools.partial(jaxloss.batch_triplet_loss, mining="batch_all"),
    "batch_triplet_batch_hard": functools.partial(jaxloss.batch_triplet_loss, mining="batch_hard"),
    "batch_triplet_semi_hard": functools.partial(jaxloss.batch_triplet_loss, mining="semi_hard"),
    "batch_triplet_semi_hard_squared": functools.partial(jaxloss.batch_triplet_loss, mining="semi_hard", squared=True),
    "ntxent": jaxloss.ntxent_loss,
    "supcon": jaxloss.supcon_loss,
}

BATCH_REFS = {
    "batch_triplet_batch_all": functools.partial(np_batch_triplet, margin=1.0, mining="batch_all"),
    "batch_triplet_batch_hard": functools.partial(np_batch_triplet, margin=1.0, mining="batch_hard"),
    "batch_triplet_semi_hard": functools.partial(np_batch_triplet, margin=1.0, mining="semi_hard"),
    "ntxent": functools.partial(np_ntxent, temperature=0.07),
    "supcon": functools.partial(np_supcon, temperature=0.1),
}


@functools.cache
def _vg(name):
    """One compiled value-and-gradient per batch loss, shared by the edge tests
    (labels, weights and mask are traced arguments, so shapes alone decide
    recompilation)."""
    fn = BATCH_LOSSES[name]
    return jax.jit(jax.value_and_grad(lambda e, lab, w, m: fn(e, lab, weights=w, where=m)))


def _edge(name, emb, lab, w=None, m=None):
    B = emb.shape[0]
    w = np.ones(B, np.float32) if w is None else w
    m = np.ones(B, bool) if m is None else m
    return _vg(name)(emb, lab, w, m)


EDGE_NAMES = sorted(BATCH_LOSSES)


@pytest.mark.parametrize("name", EDGE_NAMES)
def test_batch_losses_edge_inputs_finite(name):
    x, labels = _batch(8, B=6, D=3, classes=2)
    for emb in (np.ones_like(x), np.zeros_like(x), np.concatenate([x[:3], x[:3]]), np.full_like(x, 1e-20)):
        assert finite(_edge(name, emb, labels)), name  # identical, zero, duplicated, tiny embeddings


@pytest.mark.parametrize("name", EDGE_NAMES)
def test_no_positive_pair_gives_zero_and_zero_gradient(name):
    x, _ = _batch(9, B=6, D=3)
    cases = [(x, np.arange(6, dtype=np.int32)), (x[:1], np.zeros(1, np.int32))]
    if name.startswith("batch_triplet") or name == "ntxent":
        # one class only: no negatives, so no triplet / every pair loss 0
        cases.append((x, np.zeros(6, np.int32)))
    for emb, lab in cases:
        value, g = _edge(name, emb, lab)
        assert float(value) == 0.0
        assert np.all(np.asarray(g) == 0.0)
    assert np.all(np.asarray(BATCH_LOSSES[name](x, np.arange(6), reduction="none")) == 0.0)


@pytest.mark.parametrize("name", EDGE_NAMES)
def test_fully_masked_or_zero_weight_batch(name):
    x, labels = _batch(11, B=6, D=3, classes=2)
    for w, m in ((None, np.zeros(6, bool)), (np.zeros(6, np.float32), None)):
        value, g = _edge(name, x, labels, w, m)
        assert float(value) == 0.0 and np.all(np.asarray(g) == 0.0)


def test_ntxent_no_positive_where_optax_is_nan():
    x, _ = _batch(10, B=5, D=3)
    labels = np.arange(5, dtype=np.int32)
    assert np.isnan(float(optax.losses.ntxent(jnp.asarray(x), jnp.asarray(labels))))
    assert float(jaxloss.ntxent_loss(x, labels)) == 0.0


@pytest.mark.parametrize("name", sorted(BATCH_REFS))
def test_zero_weight_leaves_anchor_out(name):
    # A zero-weight anchor leaves the value and the mean but still serves as a
    # positive or negative of the other anchors.
    fn, ref = BATCH_LOSSES[name], BATCH_REFS[name]
    x, labels = _batch(13, B=10, D=3, classes=3)
    sums, counts = ref(x, labels)
    w = np.where(np.arange(10) % 3 != 0, np.linspace(0.5, 2.0, 10), 0.0).astype(np.float32)
    close(fn(x, labels, weights=w), np_reduce_batch(sums, counts, "mean", w), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("name", sorted(BATCH_REFS))
def test_where_masks_anchors_only(name):
    # A masked anchor leaves the value and the mean but still serves as a
    # positive or negative of the other anchors (its label is not zeroed).
    fn, ref = BATCH_LOSSES[name], BATCH_REFS[name]
    x, labels = _batch(13, B=10, D=3, classes=3)
    sums, counts = ref(x, labels)
    where = np.arange(10) % 3 != 0
    w = np.linspace(0.5, 2.0, 10).astype(np.float32)
    for red in REDUCTIONS:
        close(fn(x, labels, where=where, weights=w, reduction=red), np_reduce_batch(sums, counts, red, w, where),
              rtol=2e-5, atol=2e-5)
    # the gradient of a masked anchor's own term is gone, not the anchor's
    # role in other terms
    g = jax.grad(lambda e: fn(e, labels, where=where))(x)
    assert finite(g) and np.any(np.asarray(g)[~where] != 0.0)


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


ERRORS = [
    pytest.param(lambda x, labels: jaxloss.batch_triplet_loss(x, labels, mining="hardest"), ValueError,
                 r"batch_triplet_loss: mining must be one of 'batch_all', 'batch_hard', 'semi_hard', got 'hardest'",
                 id="batch_triplet-unknown-mining"),
    pytest.param(lambda x, labels: jaxloss.batch_triplet_loss(x, labels[:5]), ValueError,
                 r"batch_triplet_loss: labels must have (the )?shape .*\(6,\).*, got (labels )?\(5,\)",
                 id="batch_triplet-labels-shape"),
    pytest.param(lambda x, labels: jaxloss.ntxent_loss(x[0], labels[:1]), ValueError,
                 r"ntxent_loss: embeddings must have shape \[B, D\], got \(3,\)",
                 id="ntxent-embeddings-not-2d"),
    pytest.param(lambda x, labels: jaxloss.supcon_loss(x, labels.astype(np.float32)), TypeError,
                 r"supcon_loss: labels must hold integer class labels, got dtype float32",
                 id="supcon-float-labels"),
    pytest.param(lambda x, labels: jaxloss.ntxent_loss(x, labels, temperature=0.0), ValueError,
                 r"ntxent_loss: temperature must lie in \(0, inf\), got 0\.0",
                 id="ntxent-temperature-zero"),
    pytest.param(lambda x, labels: jaxloss.triplet_loss(x, x, x, p=0), ValueError,
                 r"triplet_loss: p must be a positive Python number \(or math\.inf\), got 0",
                 id="triplet-p-zero"),
    pytest.param(lambda x, labels: jaxloss.triplet_loss(x, x, x, swap=1), TypeError,
                 r"triplet_loss: swap must be True or False, got 1",
                 id="triplet-swap-not-bool"),
    pytest.param(lambda x, labels: jaxloss.triplet_loss(x, x[:, :2], x), ValueError,
                 r"triplet_loss: anchor and positive and negative must have the same shape, "
                 r"got anchor \(6, 3\), positive \(6, 2\), negative \(6, 3\)",
                 id="triplet-shape-mismatch"),
    pytest.param(lambda x, labels: jaxloss.contrastive_loss(x, x, labels[:, None]), ValueError,
                 r"contrastive_loss: similar must have (the )?shape .*\(6,\).*, got (similar )?\(6, 1\)",
                 id="contrastive-similar-shape"),
    pytest.param(lambda x, labels: jaxloss.cosine_embedding_loss(x, x, np.full(6, 2)), ValueError,
                 r"cosine_embedding_loss: y must take values in \{0, 1, -1\}, got \[2\]",
                 id="cosine_embedding-y-values"),
    pytest.param(lambda x, labels: jaxloss.margin_ranking_loss(x, x, np.zeros_like(x)), ValueError,
                 r"margin_ranking_loss: y must take values in \{1, -1\}, got \[0\.0\]",
                 id="margin_ranking-y-values"),
    pytest.param(lambda x, labels: jaxloss.cosine_embedding_loss(x, x, np.ones(6), margin=1.5), ValueError,
                 r"cosine_embedding_loss: margin must lie in \[-1, 1\], got 1\.5",
                 id="cosine_embedding-margin-above-one"),
]


@pytest.mark.parametrize(("call", "error", "match"), ERRORS)
def test_errors(call, error, match):
    x, labels = _batch(12, B=6, D=3)
    with pytest.raises(error, match=match):
        call(x, labels)


# ---------------------------------------------------------------------------
# hinge embedding, triplet with a distance_fn (issue 14; samples in _samples.py)
# ---------------------------------------------------------------------------


def test_hinge_embedding_loss_against_numpy():
    d = np.abs(X)
    ref = np.where(TPM > 0, f32(d), np.maximum(0.0, 1.5 - f32(d)))
    check_reductions(jaxloss.hinge_embedding_loss, (d, TPM), ref, weights=W, where=M, margin=1.5)
    g = grad_of(jaxloss.hinge_embedding_loss, (d, TPM), margin=1.5)
    assert_close(g, np.where(TPM > 0, 1.0, np.where(f32(d) < 1.5, -1.0, 0.0)))
    assert_close(jaxloss.hinge_embedding_loss(d, TPM.astype(np.int32), margin=1.5, reduction="none"), ref)
    with pytest.raises(ValueError, match="hinge_embedding_loss: targets must take values in"):
        jaxloss.hinge_embedding_loss(d, T01)


def manhattan(x, y):
    """A module-level distance (hashable by identity, picklable)."""
    return jnp.sum(jnp.abs(x - y), axis=-1)


def test_triplet_loss_with_a_distance_fn():
    a, p, n = TRIPLET
    d = lambda u, v: np.abs(f32(u) - f32(v)).sum(-1)  # noqa: E731
    ref = np.maximum(0.0, d(a, p) - d(a, n) + 0.7)
    check_reductions(jaxloss.triplet_loss, (a, p, n), ref, weights=WE, where=ME, margin=0.7, distance_fn=manhattan)
    swapped = np.maximum(0.0, d(a, p) - np.minimum(d(a, n), d(p, n)) + 0.7)
    assert_close(jaxloss.triplet_loss(a, p, n, margin=0.7, swap=True, distance_fn=manhattan, reduction="none"),
                 swapped)
    # the built-in p=1 norm is the same distance
    assert_close(jaxloss.triplet_loss(a, p, n, margin=0.7, distance_fn=manhattan),
                 jaxloss.triplet_loss(a, p, n, margin=0.7, p=1))
    # one compilation per callable (static, by identity)
    before = jaxloss.triplet_loss._compute._cache_size()
    for m in (0.1, 0.2, 0.3):
        jaxloss.triplet_loss(a, p, n, margin=m, distance_fn=manhattan)
    assert jaxloss.triplet_loss._compute._cache_size() == before
    # the loss object hashes, compares and pickles by the callable
    crit = jaxloss.TripletLoss(distance_fn=manhattan, margin=0.7)
    assert crit == jaxloss.TripletLoss(distance_fn=manhattan, margin=0.7)
    assert hash(crit) == hash(jaxloss.TripletLoss(distance_fn=manhattan, margin=0.7))
    assert crit != jaxloss.TripletLoss(margin=0.7)
    assert pickle.loads(pickle.dumps(crit)) == crit
    assert_close(jax.jit(lambda c, *x: c(*x))(crit, a, p, n), ref.mean())
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        pickle.dumps(jaxloss.TripletLoss(distance_fn=lambda x, y: manhattan(x, y)))


def test_triplet_loss_distance_fn_errors():
    a = jnp.zeros((4, 3))
    with pytest.raises(ValueError, match="triplet_loss: p and squared choose the built-in distance"):
        jaxloss.triplet_loss(a, a, a, p=1, distance_fn=manhattan)
    with pytest.raises(ValueError, match=r"triplet_loss: distance_fn\(x, y\) must return one distance per triplet"):
        jaxloss.triplet_loss(a, a, a, distance_fn=lambda x, y: jnp.abs(x - y))
    with pytest.raises(TypeError, match="triplet_loss: distance_fn must be None or a callable"):
        jaxloss.triplet_loss(a, a, a, distance_fn="manhattan")


# ===========================================================================
# circle_loss and multi_similarity_loss (formerly tests/test_metric_pairs.py)
#
# circle_loss and multi_similarity_loss against NumPy float64 references written here.
#
# Per-anchor loops over the pairs (an independent formulation of the masked
# log-sum-exps), every reduction with weights and where (a masked anchor leaves
# the reduction but stays a positive/negative of the others), the counting rules
# (Circle: anchors with a positive and a negative; Multi-Similarity: all
# anchors), gradients (Circle's with its adaptive weights held constant, as the
# stop-gradient defines it), cos = +-1 and zero vectors finite.
# ===========================================================================

def np_cos(x):
    x = np.asarray(x, np.float64)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    return u @ u.T


def np_circle(x, labels, margin=0.4, gamma=80.0, alpha_from=None):
    """Per-anchor Circle losses and the counted anchors. ``alpha_from``: embeddings
    whose similarities give the adaptive weights (the stop-gradient point)."""
    s = np_cos(x)
    sa = s if alpha_from is None else np_cos(alpha_from)
    n = len(labels)
    out, counted = np.zeros(n), np.zeros(n, bool)
    for i in range(n):
        p = [j for j in range(n) if j != i and labels[j] == labels[i]]
        q = [j for j in range(n) if labels[j] != labels[i]]
        if not p or not q:
            continue
        counted[i] = True
        lp = [-gamma * max(1 + margin - sa[i, j], 0.0) * (s[i, j] - (1 - margin)) for j in p]
        ln = [gamma * max(sa[i, j] + margin, 0.0) * (s[i, j] - margin) for j in q]
        total = np.logaddexp.reduce(lp) + np.logaddexp.reduce(ln)
        out[i] = np.logaddexp(0.0, total)
    return out, counted


def np_ms(x, labels, alpha=2.0, beta=50.0, base=0.5):
    s = np_cos(x)
    n = len(labels)
    out = np.zeros(n)
    for i in range(n):
        p = [s[i, j] for j in range(n) if j != i and labels[j] == labels[i]]
        q = [s[i, j] for j in range(n) if labels[j] != labels[i]]
        pos = np.log1p(np.sum(np.exp(-alpha * (np.array(p) - base)))) / alpha if p else 0.0
        neg = np.log1p(np.sum(np.exp(beta * (np.array(q) - base)))) / beta if q else 0.0
        out[i] = pos + neg
    return out


def batch(seed=0, n=9, d=4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3])  # class 3 has no positive
    w = rng.uniform(0.5, 2.0, size=n)
    m = np.ones(n, bool)
    m[[1, 5]] = False
    return x.astype(np.float32), labels.astype(np.int32), w.astype(np.float32), m


CIRCLE_OPTIONS = [{}, {"margin": 0.25, "gamma": 256.0}, {"margin": 0.1, "gamma": 10.0}]
MS_OPTIONS = [{}, {"alpha": 1.0, "beta": 10.0, "base": 0.2}, {"alpha": 5.0, "beta": 40.0, "base": 0.7}]


def test_circle_against_numpy():
    x, y, w, m = batch()
    for opts in CIRCLE_OPTIONS:
        ref, counted = np_circle(x, y, **opts)
        assert not counted[-1]  # the anchor without a positive is not counted
        for extra in ({}, {"weights": w, "where": m}):
            for reduction in ("mean", "sum", "none"):
                out = jaxloss.circle_loss(x, y, **opts, reduction=reduction, **extra)
                expected = reduce_ref(ref, reduction, extra.get("weights"), extra.get("where"), counted=counted)
                assert_close(out, expected, rtol=2e-5, atol=1e-5)
    # "none" is 0 for the uncounted anchor; the mean divides by the counted anchors only
    assert float(jaxloss.circle_loss(x, y, reduction="none")[-1]) == 0.0
    ref, counted = np_circle(x, y)
    assert_close(jaxloss.circle_loss(x, y), ref.sum() / counted.sum(), rtol=2e-5)


def test_multi_similarity_against_numpy():
    x, y, w, m = batch(1)
    for opts in MS_OPTIONS:
        ref = np_ms(x, y, **opts)
        for extra in ({}, {"weights": w, "where": m}):
            for reduction in ("mean", "sum", "none"):
                out = jaxloss.multi_similarity_loss(x, y, **opts, reduction=reduction, **extra)
                expected = reduce_ref(ref, reduction, extra.get("weights"), extra.get("where"))
                assert_close(out, expected, rtol=2e-5, atol=1e-5)
    # the mean is over all anchors, also the one without a positive
    assert_close(jaxloss.multi_similarity_loss(x, y), np_ms(x, y).mean(), rtol=2e-5)


def test_masked_anchor_is_still_seen_by_the_others():
    x, y, _, m = batch(2)
    for fn, ref in ((jaxloss.circle_loss, lambda *a: np_circle(*a)[0]), (jaxloss.multi_similarity_loss, np_ms)):
        none = np.asarray(fn(x, y, where=m, reduction="none"))
        assert np.all(none[~m] == 0)
        # the kept anchors' losses are those of the full batch (masked rows still pair with them)
        assert_close(none[m], ref(x, y)[m], rtol=2e-5, atol=1e-6)


def test_gradients_against_numpy():
    x, y, w, m = batch(3)
    x64 = np.asarray(x, np.float64)
    with jax.enable_x64(True):
        gc = jax.grad(lambda e: jaxloss.circle_loss(e, y, margin=0.3, gamma=20.0, weights=w, where=m))(
            jnp.asarray(x64))
        gm = jax.grad(lambda e: jaxloss.multi_similarity_loss(e, y, beta=20.0, weights=w, where=m))(
            jnp.asarray(x64))
        ghp = jax.grad(lambda b: jaxloss.multi_similarity_loss(jnp.asarray(x64), y, base=b))(jnp.float64(0.4))
    _, counted = np_circle(x64, y)

    def circle_frozen(e):  # alpha_p, alpha_n held at x64: the stop-gradient gradient
        return reduce_ref(np_circle(e, y, 0.3, 20.0, alpha_from=x64)[0], "mean", w, m, counted=counted)

    assert_close(gc, central_diff(circle_frozen, x64), rtol=1e-6, atol=1e-8)
    # and it is not the derivative through alpha
    full = central_diff(lambda e: reduce_ref(np_circle(e, y, 0.3, 20.0)[0], "mean", w, m, counted=counted), x64)
    assert not np.allclose(gc, full, rtol=1e-3)
    ms = central_diff(lambda e: reduce_ref(np_ms(e, y, beta=20.0), "mean", w, m), x64)
    assert_close(gm, ms, rtol=1e-6, atol=1e-8)
    assert_close(ghp, central_diff(lambda b: np_ms(x64, y, base=float(b)).mean(), np.array(0.4)), rtol=1e-6)


@pytest.mark.parametrize("fn", [jaxloss.circle_loss, jaxloss.multi_similarity_loss], ids=["circle", "ms"])
def test_cos_plus_minus_one_and_zero_vectors_are_finite(fn):
    v = np.array([[1.0, 2.0, 0.5]], np.float32)
    cases = {
        "identical positives (cos = 1)": (np.concatenate([v, v, -v, -v]), [0, 0, 1, 1]),
        "opposite negatives (cos = -1)": (np.concatenate([v, 2 * v, -v, -3 * v]), [0, 0, 1, 1]),
        "identical negatives (cos = 1)": (np.concatenate([v, v, v, v]), [0, 1, 0, 1]),
        "a zero vector": (np.concatenate([v, 0 * v, -v, v]), [0, 0, 1, 1]),
        "one class (no negatives)": (np.concatenate([v, -v, v]), [0, 0, 0]),
    }
    for what, (x, y) in cases.items():
        y = np.asarray(y, np.int32)
        val, g = jax.value_and_grad(lambda e: fn(e, y))(jnp.asarray(x))
        assert np.isfinite(float(val)) and np.all(np.isfinite(np.asarray(g))), what
    # one class: Circle counts no anchor (0, zero gradient); MS keeps the positive terms
    x, y = cases["one class (no negatives)"]
    y = np.asarray(y, np.int32)
    if fn is jaxloss.circle_loss:
        val, g = jax.value_and_grad(lambda e: fn(e, y))(jnp.asarray(x))
        assert float(val) == 0.0 and np.all(np.asarray(g) == 0)
    else:
        assert_close(fn(x, y), np_ms(x, y).mean(), rtol=2e-5)
    # identical positives at cos = 1 and opposite negatives at cos = -1: reference values
    x, y = cases["identical positives (cos = 1)"]
    y = np.asarray(y, np.int32)
    ref = np_circle(x, y)[0].mean() if fn is jaxloss.circle_loss else np_ms(x, y).mean()
    assert_close(fn(x, y), ref, rtol=2e-5, atol=1e-6)


def test_circle_and_multi_similarity_errors():
    x = jnp.ones((4, 3))
    y = jnp.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match="circle_loss: margin must lie in"):
        jaxloss.circle_loss(x, y, margin=1.5)
    with pytest.raises(ValueError, match="multi_similarity_loss: beta must lie in"):
        jaxloss.multi_similarity_loss(x, y, beta=0.0)
    with pytest.raises(TypeError, match="circle_loss: labels must"):
        jaxloss.circle_loss(x, y.astype(jnp.float32))
    with pytest.raises(ValueError, match="multi_similarity_loss: embeddings must have shape"):
        jaxloss.multi_similarity_loss(jnp.ones((2, 4, 3)), jnp.zeros((2, 4), jnp.int32))
