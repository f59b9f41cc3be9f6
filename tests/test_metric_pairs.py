"""circle_loss and multi_similarity_loss against NumPy float64 references written here.

Per-anchor loops over the pairs (an independent formulation of the masked
log-sum-exps), every reduction with weights and where (a masked anchor leaves
the reduction but stays a positive/negative of the others), the counting rules
(Circle: anchors with a positive and a negative; Multi-Similarity: all
anchors), gradients (Circle's with its adaptive weights held constant, as the
stop-gradient defines it), cos = +-1 and zero vectors finite.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import assert_close, reduce_ref

import jaxloss


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


def _central_diff(f, x, h=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        g[idx] = (f(x + e) - f(x - e)) / (2 * h)
    return g


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

    assert_close(gc, _central_diff(circle_frozen, x64), rtol=1e-6, atol=1e-8)
    # and it is not the derivative through alpha
    full = _central_diff(lambda e: reduce_ref(np_circle(e, y, 0.3, 20.0)[0], "mean", w, m, counted=counted), x64)
    assert not np.allclose(gc, full, rtol=1e-3)
    ms = _central_diff(lambda e: reduce_ref(np_ms(e, y, beta=20.0), "mean", w, m), x64)
    assert_close(gm, ms, rtol=1e-6, atol=1e-8)
    assert_close(ghp, _central_diff(lambda b: np_ms(x64, y, base=float(b)).mean(), np.array(0.4)), rtol=1e-6)


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


def test_errors():
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
