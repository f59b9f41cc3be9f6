"""The losses of issue 14 (the rest of PyTorch, Keras and optax) against NumPy float64
references written here: every option and reduction, gradients, and the edges
(ties in sparsemax, zero vectors in the cosine distance, -1-terminated label lists,
extreme logits), plus the callable ``distance_fn`` of ``triplet_loss``."""

from __future__ import annotations

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import assert_close, reduce_ref

import jaxloss

RNG = np.random.default_rng(14)


def f32(x):
    """The float32 values jaxloss sees, back in float64 for the references."""
    return np.asarray(x, np.float32).astype(np.float64)


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def softplus(x):
    return np.logaddexp(0.0, x)


def log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def check(fn, args, expected, *, weights=None, where=None, rtol=2e-5, atol=2e-6, counted=None, **options):
    """``fn`` against the reference per-example values: ``"none"`` as is, and
    ``"mean"``/``"sum"`` with the weights and the mask together (the reduction
    rule, ``reduce_ref``; the registry tests cover each reduction alone)."""
    jargs = [jnp.asarray(a) for a in args]
    assert_close(fn(*jargs, **options, reduction="none"), reduce_ref(expected, "none", counted=counted),
                 rtol=rtol, atol=atol)
    extra = {k: v for k, v in (("weights", weights), ("where", where)) if v is not None}
    for reduction in ("mean", "sum"):
        out = fn(*jargs, **options, reduction=reduction, **{k: jnp.asarray(v) for k, v in extra.items()})
        ref = reduce_ref(expected, reduction, extra.get("weights"), extra.get("where"), counted=counted)
        assert_close(out, ref, rtol=rtol, atol=atol)


def grad_of(fn, args, i=0, **options):
    return np.asarray(jax.grad(lambda x: fn(*[jnp.asarray(a) for a in args[:i]], x,
                                            *[jnp.asarray(a) for a in args[i + 1:]],
                                            reduction="sum", **options))(jnp.asarray(args[i])), np.float64)


# ---------------------------------------------------------------------------
# binary: soft margin, multi-label soft margin, sparsemax, perceptron, ASL, focal
# ---------------------------------------------------------------------------

X = (RNG.normal(size=(5, 4)) * 2.5).astype(np.float32)
T01 = (RNG.uniform(size=(5, 4)) < 0.4).astype(np.float32)
TPM = np.where(T01 > 0, 1.0, -1.0).astype(np.float32)
TSOFT = RNG.uniform(size=(5, 4)).astype(np.float32)
W = RNG.uniform(0.2, 2.0, size=(5, 4))
M = RNG.uniform(size=(5, 4)) < 0.7
W_ROW, M_ROW = W[:, 0], M[:, 0]


def test_soft_margin_loss_against_numpy():
    y = np.array([1.0, -1.0, 0.5, -2.0], np.float32)[None].repeat(5, 0)  # real-valued targets, as PyTorch
    x = f32(X)
    check(jaxloss.soft_margin_loss, (X, y), softplus(-y * x), weights=W, where=M)
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
        check(jaxloss.multilabel_soft_margin_loss, (X, TSOFT), ref, weights=W_ROW, where=M_ROW,
              class_weights=None if weights is None else jnp.asarray(cw, jnp.float32))
    g = grad_of(jaxloss.multilabel_soft_margin_loss, (X, TSOFT), class_weights=jnp.asarray(cw, jnp.float32))
    assert_close(g, cw * (sigmoid(x) - t) / 4, rtol=1e-5, atol=1e-6)
    # the class weights multiply, and "mean" is the plain mean over examples (PyTorch)
    mean = jaxloss.multilabel_soft_margin_loss(X, TSOFT, class_weights=jnp.asarray(cw, jnp.float32))
    assert_close(mean, (cw * (softplus(x) - t * x)).mean(-1).mean(), rtol=1e-5)
    with pytest.raises(ValueError, match="multilabel_soft_margin_loss: class_weights"):
        jaxloss.multilabel_soft_margin_loss(X, TSOFT, class_weights=jnp.ones(3))


def np_sparse_plus(x):
    return np.where(x <= -1, 0.0, np.where(x >= 1, x, (x + 1) ** 2 / 4))


def test_sparsemax_loss_against_numpy():
    x = f32(X)
    hard = np_sparse_plus(np.where(T01 > 0, -x, x))  # optax's form
    check(jaxloss.sparsemax_loss, (X, T01), hard, weights=W, where=M)
    t = f32(TSOFT)
    soft = np_sparse_plus(x) - x * t - t * (1 - t)  # the Fenchel-Young loss, unfactored
    check(jaxloss.sparsemax_loss, (X, TSOFT), soft, rtol=1e-5, atol=1e-5)
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
    check(jaxloss.perceptron_loss, (X, TPM), ref, weights=W, where=M)
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
        check(jaxloss.asymmetric_loss, (xs, targets), np_asl(x, f32(targets), **options),
              weights=W, where=M, rtol=3e-5, atol=3e-6, **options)
        # the gradient flows through the focusing weight: central differences of the float64 formula
        h = 1e-6
        fd = (np_asl(x + h, f32(targets), **options) - np_asl(x - h, f32(targets), **options)) / (2 * h)
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
    check(jaxloss.sigmoid_focal_loss, (xs, TSOFT), ref, weights=W, where=M, rtol=3e-5, atol=3e-6, **options)
    h = 1e-6
    t = f32(TSOFT)
    kw = dict(alpha=alpha if alpha is not None else 0.25, gamma=options.get("gamma", 2.0),
              smoothing=options.get("label_smoothing", 0.0), balance=alpha is not None)
    fd = (np_keras_focal(x + h, t, **kw) - np_keras_focal(x - h, t, **kw)) / (2 * h)
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


# ---------------------------------------------------------------------------
# multi-class: multi-margin, multi-label margin, GCE, poly-1, sparsemax, perceptron
# ---------------------------------------------------------------------------

S = (RNG.normal(size=(6, 5)) * 1.5).astype(np.float32)
Y = np.array([0, 3, 1, 4, 2, 3], np.int32)
WE, ME = RNG.uniform(0.2, 2.0, size=6), RNG.uniform(size=6) < 0.7
CW = np.array([0.5, 1.0, 2.0, 0.0, 1.5], np.float32)


def np_multi_margin(s, y, p=1, margin=1.0, w=None):
    n, c = s.shape
    out = np.zeros(n)
    for i in range(n):
        for k in range(c):
            if k != y[i]:
                out[i] += max(0.0, margin - s[i, y[i]] + s[i, k]) ** p
        out[i] *= (1.0 if w is None else w[y[i]]) / c
    return out


@pytest.mark.parametrize("p", [1, 2])
def test_multi_margin_loss_against_numpy(p):
    s = f32(S)
    for margin, cw in ((1.0, None), (0.4, CW)):
        options = {"p": p, "margin": margin, "class_weights": None if cw is None else jnp.asarray(cw)}
        check(jaxloss.multi_margin_loss, (S, Y), np_multi_margin(s, Y, p, margin, cw), weights=WE, where=ME,
              **options)
        # class weights multiply; "mean" stays the plain mean (PyTorch)
        assert_close(jaxloss.multi_margin_loss(S, Y, **options), np_multi_margin(s, Y, p, margin, cw).mean())
    # gradient: d/ds_k = w_y/C * p * v_k^(p-1) for violating k != y, minus their sum at y
    v = np.maximum(0.0, 1.0 - s[np.arange(6), Y][:, None] + s)
    v[np.arange(6), Y] = 0.0
    dk = (p * v ** (p - 1) * (v > 0)) / 5 * CW[Y][:, None]
    dk[np.arange(6), Y] = -dk.sum(-1)
    assert_close(grad_of(jaxloss.multi_margin_loss, (S, Y), p=p, class_weights=jnp.asarray(CW)), dk,
                 rtol=1e-5, atol=1e-6)
    # PyTorch's documented example
    assert_close(jaxloss.multi_margin_loss(jnp.array([[0.1, 0.2, 0.4, 0.8]]), jnp.array([3])), 0.325)
    # class axis elsewhere equals moving it last
    assert_close(jaxloss.multi_margin_loss(S.T, Y, p=p, axis=0, reduction="none"),
                 np_multi_margin(s, Y, p))


def test_multi_margin_loss_errors():
    with pytest.raises(ValueError, match="multi_margin_loss: p must be 1 or 2"):
        jaxloss.multi_margin_loss(S, Y, p=3)
    with pytest.raises(ValueError, match="multi_margin_loss: labels must lie in"):
        jaxloss.multi_margin_loss(S, Y + 1)
    with pytest.raises(ValueError, match="multi_margin_loss: class_weights"):
        jaxloss.multi_margin_loss(S, Y, class_weights=jnp.ones(4))


def np_multilabel_margin(s, y):
    """PyTorch's algorithm: mark the targets up to the first -1, then loop over them."""
    n, c = s.shape
    out = np.zeros(n)
    for i in range(n):
        targets = []
        for j in y[i]:
            if j < 0:
                break
            targets.append(j)
        is_target = np.zeros(c, bool)
        is_target[targets] = True
        for j in targets:
            for k in range(c):
                if not is_target[k]:
                    out[i] += max(0.0, 1 - (s[i, j] - s[i, k]))
        out[i] /= c
    return out


def test_multilabel_margin_loss_against_pytorch_algorithm():
    labels = np.array([[3, 0, -1, 1, 4],      # junk after the first -1
                       [1, 1, -1, 0, 0],      # a repeated target counts twice
                       [-1, 2, 3, 0, 0],      # empty list
                       [0, 1, 2, 3, 4],       # every class a target: 0
                       [4, -1, -1, -1, -1],
                       [2, 0, 4, -1, 7]],     # out of range but after the -1: ignored
                      np.int32)
    ref = np_multilabel_margin(f32(S), labels)
    assert ref[2] == 0 and ref[3] == 0 and ref[0] > 0
    check(jaxloss.multilabel_margin_loss, (S, labels), ref, weights=WE, where=ME)
    # gradient against central differences of the reference
    h = 1e-4
    fd = np.zeros(S.shape)
    for i in range(6):
        for k in range(5):
            e = np.zeros(S.shape)
            e[i, k] = h
            fd[i, k] = (np_multilabel_margin(f32(S) + e, labels).sum()
                        - np_multilabel_margin(f32(S) - e, labels).sum()) / (2 * h)
    assert_close(grad_of(jaxloss.multilabel_margin_loss, (S, labels)), fd, rtol=1e-3, atol=1e-4)
    # PyTorch's documented example
    out = jaxloss.multilabel_margin_loss(jnp.array([[0.1, 0.2, 0.4, 0.8]]), jnp.array([[3, 0, -1, 1]]))
    assert_close(out, 0.85)


def test_multilabel_margin_loss_bad_labels():
    bad = np.array([[0, 5, -1, 0, 0]] * 6, np.int32)
    with pytest.raises(ValueError, match=r"multilabel_margin_loss: labels before the first -1 of a row must lie"):
        jaxloss.multilabel_margin_loss(S, bad)
    out = jax.jit(lambda s, y: jaxloss.multilabel_margin_loss(s, y, reduction="none"))(S, bad)
    assert np.all(np.isnan(np.asarray(out)))
    with pytest.raises(TypeError, match="multilabel_margin_loss: labels must hold integer"):
        jaxloss.multilabel_margin_loss(S, bad.astype(np.float32))
    with pytest.raises(ValueError, match="multilabel_margin_loss: scores and labels must have the same shape"):
        jaxloss.multilabel_margin_loss(S, bad[:, :4])


def test_generalized_cross_entropy_against_numpy():
    s = f32(S)
    log_p = log_softmax(s)[np.arange(6), Y]
    p_y = np.exp(log_p)
    for q in (0.3, 0.5, 1.0):
        check(jaxloss.generalized_cross_entropy, (S, Y), (1 - p_y**q) / q, weights=WE, where=ME, q=q)
        p = np.exp(log_softmax(s))
        onehot = np.eye(5)[Y]
        g = -(p_y**q)[:, None] * (onehot - p)  # d/dx of (1 - p_y^q)/q
        assert_close(grad_of(jaxloss.generalized_cross_entropy, (S, Y), q=q), g, rtol=1e-5, atol=1e-6)
    assert_close(jaxloss.generalized_cross_entropy(S, Y, q=1.0, reduction="none"), 1 - p_y)  # MAE
    assert_close(jaxloss.generalized_cross_entropy(S, Y, q=1e-4, reduction="none"), -log_p, rtol=1e-3)  # -> CE
    y_ign = np.where(np.arange(6) % 3 == 0, -100, Y).astype(np.int32)
    out = jaxloss.generalized_cross_entropy(S, y_ign, ignore_index=-100, reduction="none")
    assert_close(out, np.where(y_ign == -100, 0.0, (1 - np.sqrt(p_y)) / 0.5), rtol=2e-5, atol=1e-6)
    assert_close(jaxloss.generalized_cross_entropy(S, y_ign, ignore_index=-100),
                 ((1 - np.sqrt(p_y)) / 0.5)[y_ign != -100].mean(), rtol=2e-5)
    # an underflowed label probability: 1/q, finite gradient
    x = jnp.array([[-200.0, 0.0, 0.0]])
    v, g = jax.value_and_grad(lambda z: jaxloss.generalized_cross_entropy(z, jnp.array([0])))(x)
    assert_close(v, 2.0) and np.all(np.isfinite(np.asarray(g)))
    with pytest.raises(ValueError, match=r"generalized_cross_entropy: q must lie in \(0, 1\]"):
        jaxloss.generalized_cross_entropy(S, Y, q=0.0)


def np_poly1(s, y, epsilon=2.0, smoothing=0.0):
    """optax's poly_loss_cross_entropy on optax.smooth_labels(one_hot(y), smoothing)."""
    c = s.shape[-1]
    t = (1 - smoothing) * np.eye(c)[y] + smoothing / c
    log_p = log_softmax(s)
    return -(t * log_p).sum(-1) + epsilon * (t * (1 - np.exp(log_p))).sum(-1)


def test_poly1_cross_entropy_against_numpy():
    s = f32(S)
    for epsilon, smoothing in ((2.0, 0.0), (-1.0, 0.1), (0.5, 0.3)):
        options = {"epsilon": epsilon, "label_smoothing": smoothing}
        check(jaxloss.poly1_cross_entropy, (S, Y), np_poly1(s, Y, epsilon, smoothing), weights=WE, where=ME,
              **options)
        t = (1 - smoothing) * np.eye(5)[Y] + smoothing / 5
        p = np.exp(log_softmax(s))
        p_y = p[np.arange(6), Y][:, None]
        onehot = np.eye(5)[Y]
        g = (p - t) + epsilon * (1 - smoothing) * (-p_y * (onehot - p))
        assert_close(grad_of(jaxloss.poly1_cross_entropy, (S, Y), **options), g, rtol=1e-5, atol=1e-6)
    y_ign = np.where(np.arange(6) % 2 == 0, 7, Y).astype(np.int32)
    out = jaxloss.poly1_cross_entropy(S, y_ign, ignore_index=7, reduction="none")
    assert_close(out, np.where(y_ign == 7, 0.0, np_poly1(s, np.where(y_ign == 7, 0, y_ign))), rtol=2e-5)
    with pytest.raises(ValueError, match=r"poly1_cross_entropy: epsilon must lie in \[-1, inf\)"):
        jaxloss.poly1_cross_entropy(S, Y, epsilon=-2.0)


def np_sparsemax(z):
    zs = np.sort(z)[::-1]
    k = np.arange(1, z.size + 1)
    cs = np.cumsum(zs)
    n = np.max(k[1 + k * zs > cs])
    tau = (cs[n - 1] - 1) / n
    return np.maximum(z - tau, 0.0)


def np_multiclass_sparsemax(s, y):
    out = []
    for z, label in zip(s, y):
        p = np_sparsemax(z)
        out.append(p @ z - z[label] + 0.5 * (1 - p @ p))
    return np.array(out)


def test_multiclass_sparsemax_loss_against_numpy():
    s = f32(S)
    check(jaxloss.multiclass_sparsemax_loss, (S, Y), np_multiclass_sparsemax(s, Y), weights=WE, where=ME)
    probs = np.stack([np_sparsemax(z) for z in s])
    assert_close(grad_of(jaxloss.multiclass_sparsemax_loss, (S, Y)), probs - np.eye(5)[Y], rtol=1e-5, atol=1e-6)
    assert_close(jaxloss.multiclass_sparsemax_loss(S.T, Y, axis=0, reduction="none"), np_multiclass_sparsemax(s, Y))


def test_multiclass_sparsemax_loss_ties_and_masked_classes():
    s = np.array([[1.0, 1.0, 0.0, -3.0],      # tied top scores
                  [2.0, 2.0, 2.0, 2.0],       # all tied
                  [1.0, 0.5, 0.5, -1.0],      # tie inside the support
                  [1.0, 0.0, 0.0, -5.0],      # tie exactly at the edge of the support (tau = 0)
                  [5.0, 0.0, -1.0, -2.0]],    # one-hot projection
                 np.float32)
    y = np.array([0, 2, 1, 1, 0], np.int32)
    assert_close(jaxloss.multiclass_sparsemax_loss(s, y, reduction="none"), np_multiclass_sparsemax(f32(s), y))
    g = grad_of(jaxloss.multiclass_sparsemax_loss, (s, y))
    probs = np.stack([np_sparsemax(z) for z in f32(s)])
    assert_close(g, probs - np.eye(4)[y], atol=1e-6)
    assert float(jaxloss.multiclass_sparsemax_loss(s[4:], y[4:])) == 0.0
    # a -inf score of another class is outside the support: equal to removing the class
    masked = np.array([[1.0, 0.3, -np.inf, 0.1]], np.float32)
    v, g = jax.value_and_grad(lambda z: jaxloss.multiclass_sparsemax_loss(z, jnp.array([1])))(jnp.asarray(masked))
    assert_close(v, np_multiclass_sparsemax(f32(masked[:, [0, 1, 3]]), [1]))
    assert np.all(np.isfinite(np.asarray(g)))


def test_multiclass_perceptron_loss_against_numpy():
    s = f32(S)
    check(jaxloss.multiclass_perceptron_loss, (S, Y), s.max(-1) - s[np.arange(6), Y], weights=WE, where=ME)
    g = grad_of(jaxloss.multiclass_perceptron_loss, (S, Y))
    assert_close(g, np.eye(5)[s.argmax(-1)] - np.eye(5)[Y])
    tied = grad_of(jaxloss.multiclass_perceptron_loss, (np.array([[1.0, 1.0, 0.0]], np.float32), np.array([2])))
    assert_close(tied, [[0.5, 0.5, -1.0]])  # the max's gradient split between the tied classes


def test_multiclass_losses_match_optax():
    import optax

    s, y = jnp.asarray(S), jnp.asarray(Y)
    assert_close(jaxloss.multiclass_sparsemax_loss(s, y, reduction="none"),
                 optax.losses.multiclass_sparsemax_loss(s, y), atol=1e-6)
    assert_close(jaxloss.multiclass_perceptron_loss(s, y, reduction="none"),
                 optax.losses.multiclass_perceptron_loss(s, y), atol=1e-6)
    assert_close(jaxloss.poly1_cross_entropy(s, y, epsilon=1.5, reduction="none"),
                 optax.losses.poly_loss_cross_entropy(s, jax.nn.one_hot(y, 5), epsilon=1.5), rtol=1e-5)
    x, t = jnp.asarray(X), jnp.asarray(T01)
    assert_close(jaxloss.sparsemax_loss(x, t, reduction="none"), optax.losses.sparsemax_loss(x, t), atol=1e-6)
    assert_close(jaxloss.perceptron_loss(x, 2 * t - 1, reduction="none"),
                 optax.losses.perceptron_loss(x, 2 * t - 1))


# ---------------------------------------------------------------------------
# metric: hinge embedding, triplet with a distance_fn; regression: cosine distance;
# divergence: generalized KL
# ---------------------------------------------------------------------------


def test_hinge_embedding_loss_against_numpy():
    d = np.abs(X)
    ref = np.where(TPM > 0, f32(d), np.maximum(0.0, 1.5 - f32(d)))
    check(jaxloss.hinge_embedding_loss, (d, TPM), ref, weights=W, where=M, margin=1.5)
    g = grad_of(jaxloss.hinge_embedding_loss, (d, TPM), margin=1.5)
    assert_close(g, np.where(TPM > 0, 1.0, np.where(f32(d) < 1.5, -1.0, 0.0)))
    assert_close(jaxloss.hinge_embedding_loss(d, TPM.astype(np.int32), margin=1.5, reduction="none"), ref)
    with pytest.raises(ValueError, match="hinge_embedding_loss: targets must take values in"):
        jaxloss.hinge_embedding_loss(d, T01)


def manhattan(x, y):
    """A module-level distance (hashable by identity, picklable)."""
    return jnp.sum(jnp.abs(x - y), axis=-1)


def test_triplet_loss_with_a_distance_fn():
    a, p, n = (RNG.normal(size=(6, 3)).astype(np.float32) for _ in range(3))
    d = lambda u, v: np.abs(f32(u) - f32(v)).sum(-1)  # noqa: E731
    ref = np.maximum(0.0, d(a, p) - d(a, n) + 0.7)
    check(jaxloss.triplet_loss, (a, p, n), ref, weights=WE, where=ME, margin=0.7, distance_fn=manhattan)
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


def test_cosine_distance_loss_against_numpy():
    x, t = (RNG.normal(size=(6, 4)).astype(np.float32) for _ in range(2))
    xd, td = f32(x), f32(t)
    nx, nt = np.linalg.norm(xd, axis=-1), np.linalg.norm(td, axis=-1)
    cos = (xd * td).sum(-1) / nx / nt
    check(jaxloss.cosine_distance_loss, (x, t), 1 - cos, weights=WE, where=ME)
    gx = -(td / (nx * nt)[:, None] - cos[:, None] * xd / (nx**2)[:, None])
    assert_close(grad_of(jaxloss.cosine_distance_loss, (x, t)), gx, rtol=1e-5, atol=1e-6)
    assert_close(jaxloss.cosine_distance_loss(x.T, t.T, axis=0, reduction="none"), 1 - cos, atol=1e-6)


def test_cosine_distance_loss_zero_vectors():
    x = jnp.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 2.0, 2.0]])
    t = jnp.array([[3.0, 0.0, 4.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    v = jaxloss.cosine_distance_loss(x, t, reduction="none")
    assert_close(v, [1.0, 1.0, 1.0])
    gx, gt = jax.grad(lambda a, b: jaxloss.cosine_distance_loss(a, b, reduction="sum"), argnums=(0, 1))(x, t)
    gx, gt = np.asarray(gx), np.asarray(gt)
    assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gt))
    eps = np.finfo(np.float32).eps
    assert_close(gx[0], -np.array([0.6, 0.0, 0.8]) / np.sqrt(eps), rtol=1e-5)  # documented: -t_hat / sqrt(eps)
    assert np.all(gx[1] == 0) and np.all(gt[1] == 0)  # two zero vectors
    assert_close(gt[2], -np.array([1.0, 2.0, 2.0]) / 3 / np.sqrt(eps), rtol=1e-5)


def test_generalized_kl_divergence_against_numpy():
    q = RNG.uniform(0.05, 2.0, size=(6, 5))
    p = RNG.uniform(0.0, 2.0, size=(6, 5))
    p[0, :2] = 0.0  # zero target mass: the term is q
    lq, pt = np.log(q).astype(np.float32), p.astype(np.float32)
    qd, pd = np.exp(f32(lq)), f32(pt)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(pd > 0, pd * (np.log(np.where(pd > 0, pd, 1)) - f32(lq)), 0.0) - pd + qd
    check(jaxloss.generalized_kl_divergence, (lq, pt), terms.sum(-1), weights=WE, where=ME, rtol=3e-5, atol=3e-6)
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
