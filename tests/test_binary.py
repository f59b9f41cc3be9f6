"""Binary losses against NumPy float64 closed forms, worked examples, edges and properties."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _reference import (
    REDUCTIONS,
    assert_close,
    central_diff,
    check_reductions,
    f32,
    grad_of,
    reduce_ref,
    sigmoid,
    softplus,
)
from _samples import M_ROW, T01, TPM, TSOFT, W_ROW, M, W, X
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import expit

import jaxloss


def np_softplus(x):
    return np.logaddexp(0.0, x)


def np_bce_logits(x, t, pos_weight=None, eps=0.0):
    t = t * (1 - eps) + 0.5 * eps
    pw = 1.0 if pos_weight is None else pos_weight
    return pw * t * np_softplus(-x) + (1 - t) * np_softplus(x)


def np_bce_probs(p, t):
    with np.errstate(divide="ignore"):
        return -(t * np.maximum(np.log(p), -100) + (1 - t) * np.maximum(np.log1p(-p), -100))


def np_focal(x, t, alpha=0.25, gamma=2.0):
    one_minus_pt = t * expit(-x) + (1 - t) * expit(x)  # no cancellation for confident logits
    out = one_minus_pt**gamma * np_bce_logits(x, t)
    if alpha is not None:
        out = (alpha * t + (1 - alpha) * (1 - t)) * out
    return out


def np_hinge(s, t, squared=False):
    y = np.where(t > 0, 1.0, -1.0)
    m = np.maximum(0.0, 1 - y * s)
    return m**2 if squared else m


def _data(seed=0, shape=(6, 5)):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape) * 3
    t = (rng.uniform(size=shape) < 0.4).astype(float)
    return x.astype(np.float32).astype(float), t


CASES = {
    "bce_logits": (jaxloss.binary_cross_entropy_with_logits, {}, np_bce_logits),
    "bce_logits_pw": (jaxloss.binary_cross_entropy_with_logits, {"pos_weight": 3.0},
                      lambda x, t: np_bce_logits(x, t, 3.0)),
    "bce_logits_pw_vec": (jaxloss.binary_cross_entropy_with_logits,
                          {"pos_weight": np.array([1.0, 2.0, 0.5, 4.0, 1.5], np.float32)},
                          lambda x, t: np_bce_logits(x, t, np.array([1.0, 2.0, 0.5, 4.0, 1.5]))),
    "bce_logits_ls": (jaxloss.binary_cross_entropy_with_logits, {"label_smoothing": 0.1},
                      lambda x, t: np_bce_logits(x, t, eps=0.1)),
    "bce_logits_ls_pw": (jaxloss.binary_cross_entropy_with_logits, {"label_smoothing": 0.2, "pos_weight": 2.0},
                         lambda x, t: np_bce_logits(x, t, 2.0, eps=0.2)),
    "bce_probs": (lambda x, t, **k: jaxloss.binary_cross_entropy(jax.nn.sigmoid(x), t, **k), {},
                  lambda x, t: np_bce_probs(np.asarray(jax.nn.sigmoid(jnp.float32(x)), np.float64), t)),
    "focal": (jaxloss.sigmoid_focal_loss, {}, np_focal),
    "focal_a5_g05": (jaxloss.sigmoid_focal_loss, {"alpha": 0.5, "gamma": 0.5},
                     lambda x, t: np_focal(x, t, 0.5, 0.5)),
    "focal_none_g3": (jaxloss.sigmoid_focal_loss, {"alpha": None, "gamma": 3.0},
                      lambda x, t: np_focal(x, t, None, 3.0)),
    "hinge": (jaxloss.hinge_loss, {}, np_hinge),
    "squared_hinge": (jaxloss.squared_hinge_loss, {}, lambda s, t: np_hinge(s, t, True)),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("variant", ["plain", "weights", "where", "both"])
def test_against_closed_form(case, reduction, variant):
    fn, hp, ref = CASES[case]
    x, t = _data()
    rng = np.random.default_rng(2)
    weights = rng.uniform(0, 2, size=(6, 1)) if variant in ("weights", "both") else None
    where = rng.uniform(size=(6, 5)) < 0.7 if variant in ("where", "both") else None
    out = fn(jnp.float32(x), jnp.float32(t), **hp, reduction=reduction,
             weights=None if weights is None else jnp.float32(weights),
             where=None if where is None else jnp.asarray(where))
    assert_close(out, reduce_ref(ref(x, t), reduction, weights, where), rtol=2e-5, atol=2e-6)


def test_soft_targets():
    rng = np.random.default_rng(3)
    x = rng.normal(size=20).astype(np.float32)
    t = rng.uniform(size=20)
    assert_close(jaxloss.binary_cross_entropy_with_logits(x, np.float32(t), reduction="none"),
                 np_bce_logits(x.astype(float), np.float32(t).astype(float)), rtol=1e-5, atol=1e-6)
    assert_close(jaxloss.sigmoid_focal_loss(x, np.float32(t), reduction="none"),
                 np_focal(x.astype(float), np.float32(t).astype(float)), rtol=1e-4, atol=1e-6)


# ---- worked examples ------------------------------------------------------------------


def test_bce_with_logits_worked_example():
    x = jnp.array([2.3, -1.5, 0.8, -0.3, 1.7])
    t = jnp.array([1.0, 0.0, 1.0, 0.0, 1.0])
    assert_close(jaxloss.binary_cross_entropy_with_logits(x, t), 0.278040136, rtol=1e-6)
    g = jax.grad(jaxloss.binary_cross_entropy_with_logits)(x, t)
    assert_close(g, (1 / (1 + np.exp(-np.asarray(x, np.float64))) - np.asarray(t)) / 5, rtol=1e-5)


def test_bce_probs_worked_example():
    t = jnp.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1], jnp.float32)
    p = jnp.array([0.1, 0.2, 0.15, 0.1, 0.05, 0.12, 0.08, 0.11, 0.85, 0.9])
    assert_close(jaxloss.binary_cross_entropy(p, t), 0.124330505, rtol=1e-6)


# ---- edges ------------------------------------------------------------------------------


def test_bce_probs_at_zero_and_one():
    p = jnp.array([0.0, 1.0, 0.0, 1.0])
    t = jnp.array([1.0, 0.0, 0.0, 1.0])
    value, g = jax.value_and_grad(lambda q: jaxloss.binary_cross_entropy(q, t, reduction="sum"))(p)
    assert_close(value, 200.0)  # two entries clamped at -log = 100, two exact zeros
    g = np.asarray(g)
    assert np.all(np.isfinite(g))
    assert g[0] < 0 and g[1] > 0  # still points the right way: up for t=1, down for t=0
    assert_close(g, [-1e12, 1e12, 0.0, 0.0], rtol=1e-3)  # PyTorch's (p - t) / max(p(1-p), 1e-12)
    h = jax.hessian(lambda q: jaxloss.binary_cross_entropy(q, t))(jnp.array([0.3, 0.6, 0.2, 0.9]))
    assert np.all(np.isfinite(np.asarray(h)))


@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.5, 0.99, 1.0, 2.0])
def test_focal_extreme_logits_finite_to_second_order(gamma):
    x = jnp.array([100.0, -100.0, 100.0, -100.0, 1e4, -1e4, 0.0, 30.0])
    t = jnp.array([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    f = lambda z: jaxloss.sigmoid_focal_loss(z, t, gamma=gamma, reduction="sum")  # noqa: E731
    value = f(x)
    g = jax.grad(f)(x)
    h = jax.hessian(f)(x)
    for arr in (value, g, h):
        assert np.all(np.isfinite(np.asarray(arr))), (gamma, arr)
    ref = np_focal(np.array([100.0, -100.0, 100.0, -100.0, 30.0]), np.array([1.0, 0, 0, 1, 1]), gamma=gamma)
    assert_close(jaxloss.sigmoid_focal_loss(jnp.array([100.0, -100.0, 100.0, -100.0, 30.0]),
                                            jnp.array([1.0, 0, 0, 1, 1]), gamma=gamma, reduction="none"),
                 ref, rtol=1e-5, atol=1e-30)


@pytest.mark.parametrize("fn", [jaxloss.binary_cross_entropy_with_logits, jaxloss.hinge_loss,
                                jaxloss.squared_hinge_loss, jaxloss.sigmoid_focal_loss])
def test_extreme_logits_finite(fn):
    x = jnp.array([1e4, -1e4, 88.0, -88.0, 1e30, -1e30])
    t = jnp.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    value, g = jax.value_and_grad(lambda z: fn(z, t))(x)
    assert np.isfinite(float(value))
    assert np.all(np.isfinite(np.asarray(g)))


def test_bce_logits_exact_for_large_logits():
    x = jnp.array([-50.0, 50.0, 1e4])
    t = jnp.array([1.0, 0.0, 0.0])
    assert_close(jaxloss.binary_cross_entropy_with_logits(x, t, reduction="none"), [50.0, 50.0, 1e4], rtol=1e-7)


@pytest.mark.parametrize("fn", [jaxloss.binary_cross_entropy_with_logits, jaxloss.sigmoid_focal_loss,
                                jaxloss.hinge_loss, jaxloss.binary_cross_entropy])
def test_nan_target_in_masked_entry_is_finite(fn):
    # (A NaN prediction in a masked entry is checked for every loss in test_registry.py.)
    x = jnp.array([1.0, -0.5, 2.0])
    t = jnp.array([1.0, 0.0, jnp.nan])
    mask = jnp.array([True, True, False])
    xin = jax.nn.sigmoid(x) if fn is jaxloss.binary_cross_entropy else x
    value, g = jax.value_and_grad(lambda z: fn(z, t, where=mask))(xin)
    assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(g)))
    assert_close(value, fn(xin[:2], t[:2]))


# ---- errors -------------------------------------------------------------------------------


BCE = jaxloss.binary_cross_entropy_with_logits

ERRORS = [
    pytest.param(lambda: BCE(jnp.zeros((8, 1)), jnp.zeros(8)), ValueError,
                 r"binary_cross_entropy_with_logits: logits and targets must have the same shape, "
                 r"got logits \(8, 1\), targets \(8,\)",
                 id="bce-shape-mismatch"),
    pytest.param(lambda: BCE(jnp.zeros(3, jnp.int32), jnp.zeros(3)), TypeError,
                 r"binary_cross_entropy_with_logits: logits must be a floating-point array, got dtype int32",
                 id="bce-integer-logits"),
    pytest.param(lambda: BCE(jnp.zeros(3), jnp.zeros(3), label_smoothing=-0.1), ValueError,
                 r"binary_cross_entropy_with_logits: label_smoothing must lie in \[0, 1\), got -0\.1",
                 id="bce-label_smoothing-negative"),
    pytest.param(lambda: BCE(jnp.zeros(3), jnp.zeros(3), label_smoothing=1.0), ValueError,
                 r"binary_cross_entropy_with_logits: label_smoothing must lie in \[0, 1\), got 1\.0",
                 id="bce-label_smoothing-one"),
    pytest.param(lambda: BCE(jnp.zeros((3, 4)), jnp.zeros((3, 4)), pos_weight=jnp.ones(3)), ValueError,
                 r"binary_cross_entropy_with_logits: pos_weight of shape \(3,\) must broadcast "
                 r"to the unreduced loss of shape \(3, 4\)",
                 id="bce-pos_weight-shape"),
    pytest.param(lambda: jaxloss.sigmoid_focal_loss(jnp.zeros(3), jnp.zeros(3), gamma=-1.0), ValueError,
                 r"sigmoid_focal_loss: gamma must lie in \[0, inf\), got -1\.0",
                 id="focal-gamma-negative"),
    pytest.param(lambda: jaxloss.sigmoid_focal_loss(jnp.zeros(3), jnp.zeros(3), alpha=1.5), ValueError,
                 r"sigmoid_focal_loss: alpha must lie in \[0, 1\], got 1\.5",
                 id="focal-alpha-above-one"),
    pytest.param(lambda: jaxloss.hinge_loss(jnp.zeros(3), jnp.array([0.0, 2.0, 1.0])), ValueError,
                 r"hinge_loss: targets must be in \{0, 1\} or \{-1, \+1\}",
                 id="hinge-targets-not-binary"),
]


@pytest.mark.parametrize(("call", "error", "match"), ERRORS)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---- properties -----------------------------------------------------------------------------

logits = arrays(np.float32, st.integers(1, 16), elements=st.floats(-30, 30, width=32))


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_focal_gamma0_alpha_none_is_bce(data):
    x = data.draw(logits)
    t = data.draw(arrays(np.float32, x.shape, elements=st.sampled_from([0.0, 1.0])))
    assert_close(jaxloss.sigmoid_focal_loss(x, t, alpha=None, gamma=0.0, reduction="none"),
                 jaxloss.binary_cross_entropy_with_logits(x, t, reduction="none"), rtol=1e-5, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_hinge_01_equals_pm1(data):
    s = data.draw(logits)
    t01 = data.draw(arrays(np.float32, s.shape, elements=st.sampled_from([0.0, 1.0])))
    tpm = 2 * t01 - 1
    for fn in (jaxloss.hinge_loss, jaxloss.squared_hinge_loss):
        assert_close(fn(s, t01, reduction="none"), fn(s, tpm, reduction="none"), rtol=0, atol=0)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_random_mask_on_any_length_equals_slicing(data):
    # Any length from 1 to 16 and any mask, the empty one included (then the mean is 0).
    x = data.draw(logits)
    t = data.draw(arrays(np.float32, x.shape, elements=st.sampled_from([0.0, 1.0])))
    m = data.draw(arrays(np.bool_, x.shape))
    for fn in (jaxloss.binary_cross_entropy_with_logits, jaxloss.sigmoid_focal_loss):
        expected = fn(x[m], t[m]) if m.any() else 0.0
        assert_close(fn(x, t, where=m), expected, rtol=1e-5, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_mean_and_sum_reduce_the_unreduced_loss(data):
    x = data.draw(logits)
    t = data.draw(arrays(np.float32, x.shape, elements=st.sampled_from([0.0, 1.0])))
    for fn in (jaxloss.binary_cross_entropy_with_logits, jaxloss.sigmoid_focal_loss):
        none = np.asarray(fn(x, t, reduction="none"), np.float64)
        assert_close(fn(x, t), none.mean(), rtol=1e-5, atol=1e-6)
        assert_close(fn(x, t, reduction="sum"), none.sum(), rtol=1e-5, atol=1e-5)


# ---- optax interplay -----------------------------------------------------------------------


def test_same_value_and_gradient_as_optax():
    rng = np.random.default_rng(9)
    x = jnp.asarray(rng.normal(size=128) * 4, jnp.float32)
    t = jnp.asarray(rng.uniform(size=128) < 0.3, jnp.float32)
    pairs = [
        (lambda z: jaxloss.binary_cross_entropy_with_logits(z, t),
         lambda z: jnp.mean(optax.losses.sigmoid_binary_cross_entropy(z, t))),
        (lambda z: jaxloss.sigmoid_focal_loss(z, t, alpha=0.25, gamma=2.0),
         lambda z: jnp.mean(optax.losses.sigmoid_focal_loss(z, t, alpha=0.25, gamma=2.0))),
        (lambda z: jaxloss.hinge_loss(z, t),
         lambda z: jnp.mean(optax.losses.hinge_loss(z, 2 * t - 1))),
    ]
    for ours, theirs in pairs:
        assert_close(ours(x), theirs(x), rtol=1e-5)
        assert_close(jax.grad(ours)(x), jax.grad(theirs)(x), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_gradient_and_hessian_at_a_zero_logit(gamma):
    # A zero-initialised head gives logits of exactly 0: the kinks of max(x, 0) and |x| must cancel.
    x = jnp.zeros(4)
    t = jnp.array([1.0, 0.0, 0.3, 1.0])
    g = jax.grad(lambda z: jaxloss.binary_cross_entropy_with_logits(z, t, reduction="sum"))(x)
    assert_close(g, 0.5 - np.asarray(t), rtol=1e-6)
    h = jax.hessian(lambda z: jaxloss.binary_cross_entropy_with_logits(z, t, reduction="sum"))(x)
    assert_close(np.diag(np.asarray(h)), 0.25, rtol=1e-6)
    f = lambda z: jaxloss.sigmoid_focal_loss(z, t, alpha=None, gamma=gamma, reduction="sum")  # noqa: E731
    eps = 1e-3
    numeric = central_diff(lambda z: np_focal(z, np.asarray(t, float), None, gamma).sum(), np.zeros(4), eps)
    assert_close(jax.grad(f)(x), numeric, rtol=1e-4, atol=1e-6)
    pw = jax.grad(lambda z: jaxloss.binary_cross_entropy_with_logits(z, t, pos_weight=2.0, reduction="sum"))(x)
    assert_close(pw, 0.5 * (1 - np.asarray(t)) - 2.0 * 0.5 * np.asarray(t), rtol=1e-6)


# ---------------------------------------------------------------------------
# soft margin, multi-label soft margin, sparsemax, perceptron, ASL, focal with soft targets
# (issue 14: the rest of PyTorch, Keras and optax; samples in _samples.py)
# ---------------------------------------------------------------------------


def np_sparse_plus(x):
    return np.where(x <= -1, 0.0, np.where(x >= 1, x, (x + 1) ** 2 / 4))


def test_soft_margin_loss_against_numpy():
    y = np.array([1.0, -1.0, 0.5, -2.0], np.float32)[None].repeat(5, 0)  # real-valued targets, as PyTorch
    x = f32(X)
    check_reductions(jaxloss.soft_margin_loss, (X, y), softplus(-y * x), weights=W, where=M)
    g = grad_of(jaxloss.soft_margin_loss, (X, y))
    assert_close(g, -y * sigmoid(-y * x), rtol=1e-5, atol=1e-6)
    big = jaxloss.soft_margin_loss(jnp.array([200.0, -200.0]), jnp.array([1.0, 1.0]), reduction="none")
    assert_close(big, [0.0, 200.0])


def test_multilabel_soft_margin_loss_against_numpy():
    x, t = f32(X), f32(TSOFT)
    cw = np.array([0.5, 1.0, 2.0, 0.0])
    for weights in (None, cw):
        w = 1.0 if weights is None else weights
        ref = (w * (softplus(x) - t * x)).mean(-1)  # -1/C sum_c w_c [t log s(x) + (1-t) log s(-x)]
        check_reductions(jaxloss.multilabel_soft_margin_loss, (X, TSOFT), ref, weights=W_ROW, where=M_ROW,
              class_weights=None if weights is None else jnp.asarray(cw, jnp.float32))
    g = grad_of(jaxloss.multilabel_soft_margin_loss, (X, TSOFT), class_weights=jnp.asarray(cw, jnp.float32))
    assert_close(g, cw * (sigmoid(x) - t) / 4, rtol=1e-5, atol=1e-6)
    # the class weights multiply, and "mean" is the plain mean over examples (PyTorch)
    mean = jaxloss.multilabel_soft_margin_loss(X, TSOFT, class_weights=jnp.asarray(cw, jnp.float32))
    assert_close(mean, (cw * (softplus(x) - t * x)).mean(-1).mean(), rtol=1e-5)
    with pytest.raises(ValueError, match="multilabel_soft_margin_loss: class_weights"):
        jaxloss.multilabel_soft_margin_loss(X, TSOFT, class_weights=jnp.ones(3))


def test_sparsemax_loss_against_numpy():
    x = f32(X)
    hard = np_sparse_plus(np.where(T01 > 0, -x, x))  # optax's form
    check_reductions(jaxloss.sparsemax_loss, (X, T01), hard, weights=W, where=M)
    t = f32(TSOFT)
    soft = np_sparse_plus(x) - x * t - t * (1 - t)  # the Fenchel-Young loss, unfactored
    check_reductions(jaxloss.sparsemax_loss, (X, TSOFT), soft, rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(jaxloss.sparsemax_loss(X, TSOFT, reduction="none")) >= -1e-6)
    for targets in (T01, TSOFT):
        g = grad_of(jaxloss.sparsemax_loss, (X, targets))
        assert_close(g, np.clip((x + 1) / 2, 0, 1) - f32(targets), rtol=1e-5, atol=1e-6)
    # exact for confident correct predictions (no cancellation), 0 at the sparse sigmoid
    out = jaxloss.sparsemax_loss(jnp.array([1e6, -1e6, 0.2]), jnp.array([1.0, 0.0, 0.6]), reduction="none")
    assert_close(out, [0.0, 0.0, 0.0], atol=1e-7)


def test_perceptron_loss_against_numpy():
    x = f32(X)
    ref = np.maximum(0.0, -TPM * x)
    check_reductions(jaxloss.perceptron_loss, (X, TPM), ref, weights=W, where=M)
    assert_close(jaxloss.perceptron_loss(X, T01, reduction="none"), ref)  # {0, 1} means the same
    assert_close(grad_of(jaxloss.perceptron_loss, (X, TPM)), np.where(-TPM * x > 0, -TPM, 0.0))
    assert float(jax.grad(lambda s: jaxloss.perceptron_loss(s, jnp.ones(1)))(jnp.zeros(1))[0]) == 0.0
    with pytest.raises(ValueError, match="perceptron_loss: targets must be in"):
        jaxloss.perceptron_loss(X, TSOFT)


def np_asl(x, y, gamma_pos=0.0, gamma_neg=4.0, clip=0.05):
    """timm's AsymmetricLossMultiLabel, elementwise (its eps clamp is never reached here)."""
    xs_pos = sigmoid(x)
    xs_neg = 1 - xs_pos
    if clip > 0:
        xs_neg = np.minimum(xs_neg + clip, 1.0)
    loss = y * np.log(np.maximum(xs_pos, 1e-8)) + (1 - y) * np.log(np.maximum(xs_neg, 1e-8))
    pt = xs_pos * y + xs_neg * (1 - y)
    gamma = gamma_pos * y + gamma_neg * (1 - y)
    return -loss * (1 - pt) ** gamma


@pytest.mark.parametrize("options", [{}, {"gamma_pos": 1.0, "gamma_neg": 2.0, "clip": 0.0},
                                     {"gamma_pos": 0.5, "gamma_neg": 0.3, "clip": 0.2}])
def test_asymmetric_loss_against_timm_formula(options):
    x = f32(X) / 2  # timm clamps log-probabilities below 1e-8; keep away from it
    xs = x.astype(np.float32)
    for targets in (T01, TSOFT):
        check_reductions(jaxloss.asymmetric_loss, (xs, targets), np_asl(x, f32(targets), **options),
              weights=W, where=M, rtol=3e-5, atol=3e-6, **options)
        # the gradient flows through the focusing weight: central differences of the float64 formula
        h = 1e-6
        fd = central_diff(lambda z: np_asl(z, f32(targets), **options), x, h, elementwise=True)
        assert_close(grad_of(jaxloss.asymmetric_loss, (xs, targets), **options), fd, rtol=2e-4, atol=2e-5)
    # "sum" is timm's value (a sum over examples and classes), "mean" its mean
    s = float(jaxloss.asymmetric_loss(xs, T01, reduction="sum", **options))
    assert_close(s, np_asl(x, f32(T01), **options).sum(), rtol=3e-5)
    assert_close(jaxloss.asymmetric_loss(xs, T01, **options), s / x.size, rtol=3e-5)


def test_asymmetric_loss_extreme_logits_and_small_gamma():
    x = jnp.array([-100.0, -30.0, 0.0, 30.0, 100.0, 300.0])
    for t in (jnp.zeros(6), jnp.ones(6), jnp.full(6, 0.3)):
        for options in ({"gamma_pos": 0.5, "gamma_neg": 0.5}, {"clip": 0.0}, {}):
            v, g = jax.value_and_grad(lambda z: jaxloss.asymmetric_loss(z, t, reduction="sum", **options))(x)
            assert np.isfinite(float(v)) and np.all(np.isfinite(np.asarray(g)))
    # exact -log p for a very negative positive logit (timm's clamp would give 18.42)
    assert_close(jaxloss.asymmetric_loss(jnp.array([-30.0]), jnp.ones(1)), 30.0, rtol=1e-6)
    # a negative below the clip costs nothing
    assert float(jaxloss.asymmetric_loss(jnp.array([-4.0]), jnp.zeros(1))) == 0.0


def np_keras_focal(x, t, alpha=0.25, gamma=2.0, smoothing=0.0, balance=True):
    """Keras's binary_focal_crossentropy(from_logits=True) per element, float64."""
    t = t * (1 - smoothing) + 0.5 * smoothing
    p = sigmoid(x)
    bce = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    p_t = t * p + (1 - t) * (1 - p)
    out = (1 - p_t) ** gamma * bce
    if balance:
        out = (t * alpha + (1 - t) * (1 - alpha)) * out
    return out


@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.1},
                                     {"alpha": None, "gamma": 0.5, "label_smoothing": 0.3}])
def test_focal_soft_targets_and_label_smoothing_are_keras(options):
    x = f32(X) / 2  # where Keras's float64 formula is itself accurate
    xs = x.astype(np.float32)
    alpha = options.get("alpha", 0.25)
    ref = np_keras_focal(x, f32(TSOFT), alpha=alpha if alpha is not None else 0.25,
                         gamma=options.get("gamma", 2.0), smoothing=options.get("label_smoothing", 0.0),
                         balance=alpha is not None)
    check_reductions(jaxloss.sigmoid_focal_loss, (xs, TSOFT), ref, weights=W, where=M, rtol=3e-5, atol=3e-6, **options)
    h = 1e-6
    t = f32(TSOFT)
    kw = dict(alpha=alpha if alpha is not None else 0.25, gamma=options.get("gamma", 2.0),
              smoothing=options.get("label_smoothing", 0.0), balance=alpha is not None)
    fd = central_diff(lambda z: np_keras_focal(z, t, **kw), x, h, elementwise=True)
    assert_close(grad_of(jaxloss.sigmoid_focal_loss, (xs, TSOFT), **options), fd, rtol=2e-4, atol=2e-5)


def test_focal_hard_targets_unchanged_without_smoothing():
    x = f32(X)
    one_minus_pt = T01 * sigmoid(-x) + (1 - T01) * sigmoid(x)
    ref = (0.25 * T01 + 0.75 * (1 - T01)) * one_minus_pt**2 * (softplus(x) - T01 * x)
    out = jaxloss.sigmoid_focal_loss(X, T01, reduction="none")
    assert_close(out, ref, rtol=2e-5, atol=1e-7)
    assert np.array_equal(np.asarray(out), np.asarray(jaxloss.sigmoid_focal_loss(X, T01, label_smoothing=0.0,
                                                                                   reduction="none")))
    with pytest.raises(ValueError, match="sigmoid_focal_loss: label_smoothing must lie in"):
        jaxloss.sigmoid_focal_loss(X, T01, label_smoothing=1.0)



def test_sparsemax_and_perceptron_losses_match_optax():
    x, t = jnp.asarray(X), jnp.asarray(T01)
    assert_close(jaxloss.sparsemax_loss(x, t, reduction="none"), optax.losses.sparsemax_loss(x, t), atol=1e-6)
    assert_close(jaxloss.perceptron_loss(x, 2 * t - 1, reduction="none"),
                 optax.losses.perceptron_loss(x, 2 * t - 1))
