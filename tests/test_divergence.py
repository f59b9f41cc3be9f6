"""KL and JS divergences against NumPy float64 closed forms, worked example, edges and properties."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _reference import REDUCTIONS, assert_close, check_reductions, extras, f32, grad_of, reduce_ref
from _samples import GKL, ME, WE
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxloss

N, C = 6, 5
USER_W = np.linspace(0.5, 2.0, N).astype(np.float32)
WHERE = np.array([True, False, True, True, False, True])
EXTRAS = extras(USER_W, WHERE)


def np_kl(log_q, p):
    """sum_c p (log p - log q) with 0 log 0 = 0, float64."""
    p = np.asarray(p, np.float64)
    log_q = np.asarray(log_q, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p == 0, 0.0, p * (np.log(np.where(p == 0, 1.0, p)) - log_q))
    return terms.sum(-1)


def np_js(log_q, p):
    q = np.exp(np.asarray(log_q, np.float64))
    p = np.asarray(p, np.float64)
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(p == 0, 0.0, p * np.log(np.where(p == 0, 1.0, p) / np.where(m == 0, 1.0, m)))
        b = np.where(q == 0, 0.0, q * np.log(np.where(q == 0, 1.0, q) / np.where(m == 0, 1.0, m)))
    return 0.5 * (a + b).sum(-1)


def distributions(seed=0, n=N, c=C):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(c), size=n).astype(np.float32)
    q = rng.dirichlet(np.ones(c), size=n)
    return np.log(q).astype(np.float32), p


FNS = {"kl_divergence": (jaxloss.kl_divergence, np_kl), "js_divergence": (jaxloss.js_divergence, np_js)}


@pytest.mark.parametrize("extra", list(EXTRAS))
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("log_target", [False, True])
@pytest.mark.parametrize("name", list(FNS))
def test_matches_reference(name, log_target, reduction, extra):
    fn, ref = FNS[name]
    log_q, p = distributions(1)
    target = np.log(p) if log_target else p
    got = fn(log_q, target, log_target=log_target, reduction=reduction, **EXTRAS[extra])
    assert got.dtype == jnp.float32
    assert_close(got, reduce_ref(ref(log_q, p), reduction, **EXTRAS[extra]), rtol=2e-5, atol=2e-6)


def test_kl_worked_example():
    # design.md section 6: KL(P || Q), P = [0.5, 0.3, 0.2], Q = [0.33, 0.33, 0.34]
    p = jnp.array([0.5, 0.3, 0.2])
    q = jnp.array([0.33, 0.33, 0.34])
    assert_close(jaxloss.kl_divergence(jnp.log(q), p), 0.073039018, rtol=1e-6, atol=1e-8)
    assert_close(jaxloss.kl_divergence(jnp.log(q), jnp.log(p), log_target=True), 0.073039018, rtol=1e-6, atol=1e-8)
    assert_close(jaxloss.kl_divergence(jnp.log(p), p), 0.0, atol=1e-7)  # KL(P || P) = 0


def test_kl_matches_optax_and_gradients():
    log_q, p = distributions(2)
    assert_close(jaxloss.kl_divergence(log_q, p, reduction="none"), optax.losses.kl_divergence(log_q, p), rtol=1e-6)
    g_q, g_p = jax.grad(lambda a, b: jaxloss.kl_divergence(a, b, reduction="sum"), argnums=(0, 1))(log_q, p)
    assert_close(g_q, -p, rtol=1e-6)
    assert_close(g_p, np.log(p.astype(np.float64)) + 1 - log_q, rtol=1e-5, atol=1e-6)


def test_js_properties():
    log_q, p = distributions(3)
    q = np.exp(log_q.astype(np.float64)).astype(np.float32)
    forward = jaxloss.js_divergence(log_q, p, reduction="none")
    backward = jaxloss.js_divergence(np.log(p), q, reduction="none")
    assert_close(forward, backward, rtol=1e-5, atol=1e-7)  # symmetric
    assert np.all(np.asarray(forward) >= 0) and np.all(np.asarray(forward) <= math.log(2) + 1e-6)
    # disjoint supports: log 2, finite gradients
    log_a = jnp.log(jnp.array([[0.5, 0.5, 0.0, 0.0]]))
    b = jnp.array([[0.0, 0.0, 0.25, 0.75]])
    v, (ga, gb) = jax.value_and_grad(lambda x, y: jaxloss.js_divergence(x, y), argnums=(0, 1))(log_a, b)
    assert_close(v, math.log(2), rtol=1e-6)
    assert np.all(np.isfinite(np.asarray(ga))) and np.all(np.isfinite(np.asarray(gb)))


@pytest.mark.parametrize("log_target", [False, True])
@pytest.mark.parametrize("name", list(FNS))
def test_zero_probabilities_and_neg_inf(name, log_target):
    fn, ref = FNS[name]
    log_q, p = distributions(4)
    p = p.copy()
    p[:, 2] = 0.0
    p /= p.sum(-1, keepdims=True)
    log_q = log_q.copy()
    log_q[:, 2] = -np.inf  # the prediction masks the class the target does not use
    with np.errstate(divide="ignore"):
        target = np.log(p) if log_target else p
    v, (g_q, g_t) = jax.value_and_grad(
        lambda a, b: fn(a, b, log_target=log_target), argnums=(0, 1))(jnp.asarray(log_q), jnp.asarray(target))
    assert np.isfinite(float(v))
    assert np.all(np.isfinite(np.asarray(g_q)))
    # the target's derivative at a zero probability is -inf in theory (p log p); jaxloss gives 0 there
    assert np.all(np.isfinite(np.asarray(g_t)))
    assert_close(v, ref(log_q, p).mean(), rtol=1e-5, atol=1e-7)
    # equals removing the class
    keep = [0, 1, 3, 4]
    assert_close(v, fn(log_q[:, keep], target[:, keep], log_target=log_target), rtol=1e-5, atol=1e-7)


def test_kl_missing_support_is_inf_with_finite_gradient():
    log_q = jnp.log(jnp.array([[0.0, 0.5, 0.5]]))
    p = jnp.array([[0.2, 0.4, 0.4]])
    v, g = jax.value_and_grad(lambda a: jaxloss.kl_divergence(a, p))(log_q)
    assert float(v) == np.inf
    assert_close(g, -p)


@pytest.mark.parametrize("name", list(FNS))
def test_axis_0_equals_transposing(name):
    # (Masked == sliced is checked for every loss in test_registry.py.)
    fn, _ = FNS[name]
    log_q, p = distributions(6)
    assert_close(fn(log_q.T, p.T, axis=0, reduction="none"), fn(log_q, p, reduction="none"), rtol=1e-6)


@pytest.mark.parametrize("name", list(FNS))
def test_bf16(name):
    fn, _ = FNS[name]
    log_q, p = distributions(7, n=16, c=33)
    lq, pb = jnp.asarray(log_q, jnp.bfloat16), jnp.asarray(p, jnp.bfloat16)
    low = fn(lq, pb)
    assert low.dtype == jnp.float32
    np.testing.assert_allclose(float(low), float(fn(lq.astype(jnp.float32), pb.astype(jnp.float32))), rtol=1e-6)
    g = jax.grad(lambda a: fn(a, pb))(lq)
    assert g.dtype == jnp.bfloat16 and np.all(np.isfinite(np.asarray(g, np.float32)))


ERRORS = [
    pytest.param(lambda log_q, p: jaxloss.kl_divergence(log_q, p[:, :4]), ValueError,
                 r"kl_divergence: log_pred and target must have the same shape, "
                 r"got log_pred \(6, 5\), target \(6, 4\)",
                 id="kl-target-shape"),
    pytest.param(lambda log_q, p: jaxloss.js_divergence(log_q.astype(np.int32), p), TypeError,
                 r"js_divergence: log_pred must be a floating-point array, got dtype int32",
                 id="js-integer-log_pred"),
    pytest.param(lambda log_q, p: jaxloss.kl_divergence(log_q, p, axis=3), ValueError,
                 r"kl_divergence: axis 3 is out of range for an input of rank 2",
                 id="kl-axis-out-of-range"),
]


@pytest.mark.parametrize(("call", "error", "match"), ERRORS)
def test_errors(call, error, match):
    log_q, p = distributions(8)
    with pytest.raises(error, match=match):
        call(log_q, p)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), zeros=st.integers(0, 3))
def test_nonnegative_and_matches_reference(seed, zeros):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(C), size=N)
    q = rng.dirichlet(np.ones(C), size=N)
    if zeros:  # zero out some target probabilities (the prediction keeps full support)
        p[:, :zeros] = 0.0
        p[:, -1] += 1e-3
        p /= p.sum(-1, keepdims=True)
    log_q, p = np.log(q).astype(np.float32), p.astype(np.float32)
    for name, (fn, ref) in FNS.items():
        got = np.asarray(fn(log_q, p, reduction="none"))
        assert np.all(got >= -1e-6), name
        assert_close(got, ref(log_q, p), rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------
# generalized KL (issue 14; samples in _samples.py)
# ---------------------------------------------------------------------------


def test_generalized_kl_divergence_against_numpy():
    q, p = (a.copy() for a in GKL)
    p[0, :2] = 0.0  # zero target mass: the term is q
    lq, pt = np.log(q).astype(np.float32), p.astype(np.float32)
    qd, pd = np.exp(f32(lq)), f32(pt)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(pd > 0, pd * (np.log(np.where(pd > 0, pd, 1)) - f32(lq)), 0.0) - pd + qd
    check_reductions(jaxloss.generalized_kl_divergence, (lq, pt), terms.sum(-1), weights=WE, where=ME,
                     rtol=3e-5, atol=3e-6)
    with np.errstate(divide="ignore"):
        log_pt = np.log(pt)
    assert_close(jaxloss.generalized_kl_divergence(lq, log_pt, log_target=True, reduction="none"),
                 terms.sum(-1), rtol=3e-5, atol=3e-6)
    assert_close(grad_of(jaxloss.generalized_kl_divergence, (lq, pt)), qd - pd, rtol=1e-5, atol=1e-6)
    # normalised inputs: the KL divergence; -inf log-predictions where the target is 0 are fine
    lq_n = np.log(q / q.sum(-1, keepdims=True)).astype(np.float32)
    pn = (p / p.sum(-1, keepdims=True)).astype(np.float32)
    assert_close(jaxloss.generalized_kl_divergence(lq_n, pn), jaxloss.kl_divergence(lq_n, pn), atol=2e-6)
    masked = lq_n.copy()
    masked[0, :2] = -np.inf
    v, g = jax.value_and_grad(lambda z: jaxloss.generalized_kl_divergence(z, pn))(jnp.asarray(masked))
    assert np.isfinite(float(v)) and np.all(np.isfinite(np.asarray(g)))

