"""Segmentation losses against NumPy float64 references written here."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import assert_close, central_diff, reduce_ref
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxloss

RTOL, ATOL = 2e-5, 2e-6

close = functools.partial(assert_close, rtol=RTOL, atol=ATOL)

# ---------------------------------------------------------------------------
# NumPy float64 references (the textbook "1 - score" forms)
# ---------------------------------------------------------------------------


def np_counts(p, t, axis, w=None):
    """Soft TP, sum p, sum t over ``axis``; pixel weights ``w`` count a pixel w times."""
    p = np.asarray(p, np.float64)
    t = np.asarray(t, np.float64)
    w = np.ones_like(p) if w is None else np.broadcast_to(np.asarray(w, np.float64), p.shape)
    ax = tuple(range(p.ndim)) if axis is None else axis
    return (w * p * t).sum(ax), (w * p).sum(ax), (w * t).sum(ax)


def np_dice(p, t, smooth=1.0, axis=None, w=None):
    tp, ps, ts = np_counts(p, t, axis, w)
    return 1.0 - (2.0 * tp + smooth) / (ps + ts + smooth)


def np_jaccard(p, t, smooth=1.0, axis=None, w=None):
    tp, ps, ts = np_counts(p, t, axis, w)
    return 1.0 - (tp + smooth) / (ps + ts - tp + smooth)


def np_tversky(p, t, alpha=0.3, beta=0.7, smooth=1.0, axis=None, w=None):
    tp, ps, ts = np_counts(p, t, axis, w)
    return 1.0 - (tp + smooth) / (tp + alpha * (ps - tp) + beta * (ts - tp) + smooth)


def np_focal_tversky(p, t, alpha=0.3, beta=0.7, gamma=0.75, smooth=1.0, axis=None, w=None):
    return np_tversky(p, t, alpha, beta, smooth, axis, w) ** gamma


LOSSES = {
    "dice_loss": (jaxloss.dice_loss, np_dice, {"smooth": 0.5}),
    "jaccard_loss": (jaxloss.jaccard_loss, np_jaccard, {"smooth": 0.5}),
    "tversky_loss": (jaxloss.tversky_loss, np_tversky, {"alpha": 0.2, "beta": 0.8, "smooth": 0.5}),
    "focal_tversky_loss": (jaxloss.focal_tversky_loss, np_focal_tversky,
                           {"alpha": 0.4, "beta": 0.6, "gamma": 1.5, "smooth": 0.5}),
}


def _data(seed=0, shape=(3, 5, 4, 2)):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.0, 1.0, size=shape).astype(np.float32)
    t = (rng.uniform(size=shape) < 0.3).astype(np.float32)
    return p, t


# ---------------------------------------------------------------------------
# Worked examples (the tutorial's, with the correct values)
# ---------------------------------------------------------------------------

Y_TRUE = np.array([[0, 0, 1, 1], [0, 1, 1, 0]], np.float64)
Y_GOOD = np.array([[0.1, 0.1, 0.9, 0.8], [0.2, 0.8, 0.9, 0.1]], np.float64)
Y_BAD = np.array([[0.9, 0.8, 0.1, 0.2], [0.9, 0.1, 0.2, 0.8]], np.float64)


def test_dice_worked_example():
    assert np_dice(Y_GOOD, Y_TRUE) == pytest.approx(0.123595506, abs=1e-9)
    assert np_dice(Y_BAD, Y_TRUE) == pytest.approx(0.755555556, abs=1e-9)
    for red in ("mean", "sum", "none"):
        close(jaxloss.dice_loss(Y_GOOD, Y_TRUE, reduction=red), 0.123595506, atol=1e-6)
        close(jaxloss.dice_loss(Y_BAD, Y_TRUE, reduction=red), 0.755555556, atol=1e-6)
    # integer and boolean masks are accepted as targets
    close(jaxloss.dice_loss(Y_GOOD, Y_TRUE.astype(np.int32)), 0.123595506, atol=1e-6)
    close(jaxloss.dice_loss(Y_GOOD, Y_TRUE.astype(bool)), 0.123595506, atol=1e-6)


def test_worked_example_float64():
    with jax.enable_x64(True):
        out = jaxloss.dice_loss(Y_GOOD.astype(np.float64), Y_TRUE.astype(np.float64))
        assert out.dtype == jnp.float64
        assert float(out) == pytest.approx(0.123595506, abs=1e-9)


# ---------------------------------------------------------------------------
# Every loss, every reduction, axis None / tuple, weights and where
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_global_score_is_a_scalar_for_every_reduction(name):
    fn, ref, hp = LOSSES[name]
    p, t = _data()
    expected = ref(p, t, **hp)
    for red in ("mean", "sum", "none", None):
        out = fn(p, t, **hp, reduction=red)
        assert out.shape == ()
        close(out, expected)
    # scalar weights / where act on the one score
    close(fn(p, t, **hp, weights=2.0, reduction="sum"), 2 * expected)
    close(fn(p, t, **hp, weights=2.0), expected)
    assert float(fn(p, t, **hp, where=jnp.array(False))) == 0.0


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("axis", [(1, 2), 1, (-4, -3, -2)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_per_score_against_reference(name, axis, reduction):
    fn, ref, hp = LOSSES[name]
    p, t = _data(1)
    ax = (axis,) if isinstance(axis, int) else tuple(a % p.ndim for a in axis)
    per = ref(p, t, **hp, axis=ax)
    close(fn(p, t, **hp, axis=axis, reduction=reduction), reduce_ref(per, reduction))
    # class weights along the remaining last axis, and a mask over the scores
    w = np.array([0.25, 2.0], np.float32)
    where = np.ones(per.shape, bool)
    where.flat[0] = False
    close(fn(p, t, **hp, axis=axis, reduction=reduction, weights=w, where=where),
          reduce_ref(per, reduction, w, where))


def test_none_shape_is_remaining_axes():
    p, t = _data(2, (2, 3, 4, 5))
    assert jaxloss.dice_loss(p, t, axis=(1, 2), reduction="none").shape == (2, 5)
    assert jaxloss.dice_loss(p, t, axis=3, reduction="none").shape == (2, 3, 4)
    assert jaxloss.jaccard_loss(p, t, axis=(), reduction="none").shape == (2, 3, 4, 5)


# ---------------------------------------------------------------------------
# Identities between the losses
# ---------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 20))
def test_tversky_half_half_is_dice_at_smooth_zero(seed, n):
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=(n,)).astype(np.float32)
    t = (rng.uniform(size=(n,)) < 0.5).astype(np.float32)
    close(jaxloss.tversky_loss(p, t, alpha=0.5, beta=0.5, smooth=0.0),
          jaxloss.dice_loss(p, t, smooth=0.0), rtol=1e-5, atol=1e-6)
    close(jaxloss.tversky_loss(p, t, alpha=1.0, beta=1.0, smooth=0.7),
          jaxloss.jaccard_loss(p, t, smooth=0.7), rtol=1e-5, atol=1e-6)
    d = float(jaxloss.dice_loss(p, t))
    assert 0.0 <= d <= 1.0


def test_focal_tversky_gamma_one_is_tversky():
    p, t = _data(3)
    close(jaxloss.focal_tversky_loss(p, t, gamma=1.0, axis=(1, 2), reduction="none"),
          jaxloss.tversky_loss(p, t, axis=(1, 2), reduction="none"))


def test_tversky_defaults_weigh_false_negatives_more():
    # alpha (false positives) = 0.3, beta (false negatives) = 0.7
    t = np.array([1.0, 1.0, 0.0, 0.0], np.float32)
    fp_only = np.array([1.0, 1.0, 1.0, 0.0], np.float32)
    fn_only = np.array([1.0, 0.0, 0.0, 0.0], np.float32)
    close(jaxloss.tversky_loss(fp_only, t, smooth=0.0), 1 - 2 / (2 + 0.3))
    close(jaxloss.tversky_loss(fn_only, t, smooth=0.0), 1 - 1 / (1 + 0.7))


# ---------------------------------------------------------------------------
# from_logits and composition with BCE
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_from_logits_is_sigmoid_first(name):
    fn, ref, hp = LOSSES[name]
    rng = np.random.default_rng(4)
    x = (rng.normal(size=(2, 6, 6)) * 3).astype(np.float32)
    t = (rng.uniform(size=x.shape) < 0.3).astype(np.float32)
    probs = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    for axis in (None, (1, 2)):
        close(fn(x, t, **hp, axis=axis, from_logits=True, reduction="none"), ref(probs, t, **hp, axis=axis))


def test_dice_plus_bce_on_one_array_of_logits():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 8, 8)).astype(np.float32)
    t = (rng.uniform(size=x.shape) < 0.3).astype(np.float32)
    combo = jaxloss.DiceLoss(from_logits=True) + 0.5 * jaxloss.BinaryCrossEntropyWithLogits()
    xd = x.astype(np.float64)
    bce = np.mean(np.maximum(xd, 0) - xd * t + np.log1p(np.exp(-np.abs(xd))))
    expected = np_dice(1 / (1 + np.exp(-xd)), t) + 0.5 * bce
    close(combo(x, t), expected)
    value, g = jax.jit(jax.value_and_grad(lambda z: combo(z, t)))(x)
    close(value, expected)
    assert np.all(np.isfinite(np.asarray(g)))


# ---------------------------------------------------------------------------
# Edge inputs: empty prediction and target, perfect predictions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("smooth", [0.0, 1e-6, 1.0])
@pytest.mark.parametrize("axis", [None, (1,)])
def test_empty_prediction_and_target_is_perfect(name, smooth, axis):
    fn, _, hp = LOSSES[name]
    hp = {**hp, "smooth": smooth}
    z = jnp.zeros((3, 7))
    value, g = jax.value_and_grad(lambda p: fn(p, z, **hp, axis=axis))(z)
    assert float(value) == 0.0
    assert np.all(np.isfinite(np.asarray(g)))
    # one empty image among non-empty ones: its score is 0, the others unaffected
    p, t = _data(6, (3, 7))
    p[1] = 0.0
    t[1] = 0.0
    per = fn(p, t, **hp, axis=1, reduction="none")
    assert float(per[1]) == 0.0
    g = jax.grad(lambda q: fn(q, t, **hp, axis=1))(p)
    assert np.all(np.isfinite(np.asarray(g)))


@pytest.mark.parametrize("gamma", [0.3, 0.75, 1.0, 2.0])
def test_focal_tversky_perfect_prediction_finite_gradient(gamma):
    t = jnp.array([[1.0, 0.0, 1.0, 0.0]])
    value, g = jax.value_and_grad(lambda p: jaxloss.focal_tversky_loss(p, t, gamma=gamma))(t)
    assert float(value) == 0.0
    assert np.all(np.isfinite(np.asarray(g)))
    # gradient with respect to gamma is finite too
    gg = jax.grad(lambda c: jaxloss.focal_tversky_loss(t, t, gamma=c))(gamma)
    assert np.isfinite(float(gg))


def test_extreme_logits_finite():
    x = jnp.array([[-1e4, 1e4, -50.0, 50.0]])
    t = jnp.array([[0.0, 1.0, 1.0, 0.0]])
    for fn in (jaxloss.dice_loss, jaxloss.jaccard_loss, jaxloss.tversky_loss, jaxloss.focal_tversky_loss):
        value, g = jax.value_and_grad(lambda z: fn(z, t, from_logits=True, smooth=0.0))(x)
        assert np.isfinite(float(value))
        assert np.all(np.isfinite(np.asarray(g)))


def test_gradient_matches_float64_finite_differences():
    p, t = _data(7, (2, 3, 4))
    with jax.enable_x64(True):
        p64 = p.astype(np.float64)
        g = np.asarray(jax.grad(lambda q: jaxloss.tversky_loss(q, t.astype(np.float64), axis=(1, 2)))(p64))
        num = central_diff(lambda q: np.mean(np_tversky(q, t, axis=(1, 2))), p64)
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-9)


def test_hyperparameters_are_traced():
    p, t = _data(8)
    f = jax.jit(lambda a, b: jaxloss.tversky_loss(p, t, alpha=a, beta=b))
    close(f(0.2, 0.8), np_tversky(p, t, 0.2, 0.8))
    close(f(0.6, 0.1), np_tversky(p, t, 0.6, 0.1))
    swept = jax.vmap(lambda s: jaxloss.dice_loss(p, t, smooth=s))(jnp.array([0.0, 1.0, 10.0]))
    close(swept, [np_dice(p, t, s) for s in (0.0, 1.0, 10.0)])


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Per-pixel where and weights
# ---------------------------------------------------------------------------


def _pixel_mask(shape, seed=3):
    return np.random.default_rng(seed).uniform(size=shape) < 0.7


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("axis", [None, (1, 2)])
def test_pixel_mask_leaves_the_counts(name, axis):
    fn, ref, hp = LOSSES[name]
    p, t = _data(11)
    m = _pixel_mask(p.shape)
    close(fn(p, t, **hp, axis=axis, where=jnp.asarray(m), reduction="none"), ref(p, t, **hp, axis=axis, w=m))
    # the same as dropping the masked pixels from both inputs by hand
    close(fn(p, t, **hp, axis=axis, where=jnp.asarray(m), reduction="none"),
          fn(p * m, t * m, **hp, axis=axis, reduction="none"))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_pixel_weight_k_counts_a_pixel_k_times(name):
    fn, ref, hp = LOSSES[name]
    p, t = _data(12, (2, 6))
    w = np.array([[1.0, 2.0, 1.0, 3.0, 1.0, 0.0]] * 2)
    doubled_p = np.concatenate([p, p[:, 1:2], p[:, 3:4], p[:, 3:4]], axis=1)[:, [0, 1, 2, 3, 4, 6, 7, 8]]
    doubled_t = np.concatenate([t, t[:, 1:2], t[:, 3:4], t[:, 3:4]], axis=1)[:, [0, 1, 2, 3, 4, 6, 7, 8]]
    close(fn(p, t, **hp, axis=1, weights=jnp.asarray(w), reduction="none"),
          fn(doubled_p, doubled_t, **hp, axis=1, reduction="none"))
    close(fn(p, t, **hp, axis=1, weights=jnp.asarray(w), reduction="none"), ref(p, t, **hp, axis=1, w=w))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_score_whose_pixels_are_all_masked_leaves_the_mean(reduction):
    p, t = _data(13, (3, 8))
    m = np.ones(p.shape, bool)
    m[1] = False  # every pixel of sample 1
    per_sample = np_dice(p, t, 0.5, axis=(1,), w=m)
    out = jaxloss.dice_loss(p, t, smooth=0.5, axis=1, where=jnp.asarray(m), reduction=reduction)
    close(out, reduce_ref(per_sample, reduction, counted=np.array([True, False, True])))


def test_nan_in_a_masked_pixel_reaches_neither_value_nor_gradient():
    p, t = _data(14, (2, 6))
    m = _pixel_mask(p.shape, seed=5)
    bad_p = np.where(m, p, np.nan).astype(np.float32)
    bad_t = np.where(m, t, np.nan).astype(np.float32)
    value, g = jax.value_and_grad(lambda x: jaxloss.dice_loss(x, bad_t, axis=1, where=jnp.asarray(m)))(bad_p)
    close(value, np.mean(np_dice(p, t, 1.0, axis=(1,), w=m)))
    assert np.all(np.isfinite(np.asarray(g))) and np.all(np.asarray(g)[~m] == 0)


def test_pixel_mask_with_logits_excludes_the_pixel_not_a_half():
    rng = np.random.default_rng(15)
    x = rng.normal(size=(2, 10)).astype(np.float32)
    t = (rng.uniform(size=x.shape) < 0.4).astype(np.float32)
    m = _pixel_mask(x.shape, seed=6)
    probs = 1 / (1 + np.exp(-x.astype(np.float64)))
    close(jaxloss.dice_loss(x, t, from_logits=True, where=jnp.asarray(m)), np_dice(probs, t, w=m))


def test_dice_plus_bce_take_one_pixel_mask():
    rng = np.random.default_rng(16)
    x = rng.normal(size=(2, 8, 8)).astype(np.float32)
    t = (rng.uniform(size=x.shape) < 0.3).astype(np.float32)
    m = _pixel_mask(x.shape, seed=7)
    combo = jaxloss.DiceLoss(from_logits=True) + jaxloss.BinaryCrossEntropyWithLogits()
    xd = x.astype(np.float64)
    bce = np.maximum(xd, 0) - xd * t + np.log1p(np.exp(-np.abs(xd)))
    expected = np_dice(1 / (1 + np.exp(-xd)), t, w=m) + bce[m].mean()
    close(combo(x, t, where=jnp.asarray(m)), expected)
    g = jax.grad(lambda z: combo(z, t, where=jnp.asarray(m)))(x)
    assert np.all(np.asarray(g)[~m] == 0)


def test_per_score_reading_wins_when_a_shape_fits_both():
    # [N, H, W, C] with axis=(1, 2): scores are [N, C]; weights of shape [C] broadcast to
    # the scores and to the pixels alike, and are read per score (per-class weights).
    p, t = _data(17)
    w = np.array([1.0, 3.0])
    scores = np_dice(p, t, 1.0, axis=(1, 2))
    close(jaxloss.dice_loss(p, t, axis=(1, 2), weights=jnp.asarray(w)),
          (scores * w).sum() / (np.ones_like(scores) * w).sum())


def test_per_score_where_of_the_scores_shape():
    p, t = _data(18)
    keep = np.array([[True, False], [True, True], [False, True]])
    scores = np_dice(p, t, 1.0, axis=(1, 2))
    close(jaxloss.dice_loss(p, t, axis=(1, 2), where=jnp.asarray(keep)), scores[keep].mean())


# ---------------------------------------------------------------------------
# Errors: one behaviour per test
# ---------------------------------------------------------------------------

_P, _T = _data(9, (2, 3))

ERRORS = [
    pytest.param(lambda: jaxloss.dice_loss(_P, _T[:, :1]), ValueError,
                 r"dice_loss: probs and targets .*\(2, 3\).*\(2, 1\)", id="shape-mismatch"),
    pytest.param(lambda: jaxloss.dice_loss(_P, _T, axis=2), ValueError, r"dice_loss: axis 2 is out of range",
                 id="axis-out-of-range"),
    pytest.param(lambda: jaxloss.dice_loss(_P, _T, axis=(1, -1)), ValueError, r"dice_loss: axis \(1, -1\) repeats",
                 id="axis-repeats"),
    pytest.param(lambda: jaxloss.jaccard_loss(_P, _T, axis=[1]), TypeError,
                 r"jaccard_loss: axis must be None, an int or a tuple of ints", id="axis-list"),
    pytest.param(lambda: jaxloss.dice_loss(_P, _T, from_logits=1), TypeError,
                 r"dice_loss: from_logits must be True or False", id="from-logits-not-bool"),
    pytest.param(lambda: jaxloss.dice_loss(_P, _T, smooth=-1.0), ValueError,
                 r"dice_loss: smooth must lie in \[0, inf\)", id="smooth-negative"),
    pytest.param(lambda: jaxloss.tversky_loss(_P, _T, alpha=-0.1), ValueError, r"tversky_loss: alpha must lie in",
                 id="alpha-negative"),
    pytest.param(lambda: jaxloss.focal_tversky_loss(_P, _T, gamma=0.0), ValueError,
                 r"focal_tversky_loss: gamma must lie in \(0, inf\)", id="gamma-zero"),
    pytest.param(lambda: jaxloss.dice_loss(_T.astype(np.int32), _T), TypeError,
                 r"dice_loss: probs must be a floating-point array", id="integer-probs"),
    pytest.param(lambda: jaxloss.dice_loss(_P, _T, weights=np.ones(2)), ValueError,
                 r"dice_loss: weights of shape \(2,\) must broadcast to the unreduced loss \(\) or the inputs "
                 r"of shape \(2, 3\)", id="weights-neither-per-score-nor-per-pixel"),
    pytest.param(lambda: jaxloss.dice_loss(_P, _T, where=np.ones((3, 2), bool)), ValueError,
                 r"dice_loss: where of shape \(3, 2\) must broadcast to", id="where-neither"),
]


@pytest.mark.parametrize("call, error, match", ERRORS)
def test_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ===========================================================================
# Label-map losses: multiclass_dice_loss, generalized_dice_loss, lovasz_softmax_loss,
# lovasz_hinge_loss (formerly tests/test_segmentation_multiclass.py)
#
# Label-map segmentation losses (multi-class Dice, generalized Dice, Lovász)
# against NumPy float64 references written here with the anchors' semantics:
# segmentation_models_pytorch ``DiceLoss(mode="multiclass")`` and ``LovaszLoss``,
# MONAI ``GeneralizedDiceLoss(softmax=True, to_onehot_y=True)``. The references
# loop over classes and images as those libraries do; jaxloss does not.
# ===========================================================================

# close: rtol 2e-5, atol 2e-6, as above
close64 = functools.partial(assert_close, rtol=1e-5, atol=1e-7)

# ---------------------------------------------------------------------------
# NumPy float64 references
# ---------------------------------------------------------------------------


def np_softmax(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_one_hot(y, c):
    return (np.asarray(y)[..., None] == np.arange(c)).astype(np.float64)


def np_smp_dice(logits, labels, smooth=0.0, eps=1e-7, ignore=None, from_logits=True, pixel_w=None):
    """segmentation_models_pytorch DiceLoss(mode="multiclass") before its mean: ``[C]``.

    ``pixel_w`` weighs pixels (a pixel of weight k counts k times)."""
    p = np_softmax(logits) if from_logits else np.asarray(logits, np.float64)
    c = p.shape[-1]
    p, y = p.reshape(-1, c), np.asarray(labels).reshape(-1)
    if ignore is not None:  # as SMP: predictions times the mask, one-hot of (y * mask) times the mask
        mask = (y != ignore).astype(np.float64)
        p = p * mask[:, None]
        t = np_one_hot(y * (y != ignore), c) * mask[:, None]
    else:
        t = np_one_hot(y, c)
    w = np.ones(len(y)) if pixel_w is None else np.asarray(pixel_w, np.float64).reshape(-1)
    inter = (w[:, None] * p * t).sum(0)
    card = (w[:, None] * (p + t)).sum(0)
    score = (2.0 * inter + smooth) / np.maximum(card + smooth, eps)
    return (1.0 - score) * ((w[:, None] * t).sum(0) > 0)


def np_monai_gdl_sample(p, y, w, smooth_nr, smooth_dr, w_type, include_background):
    """MONAI GeneralizedDiceLoss for one sample: ``p [P, C]`` probabilities, ``y [P]``, pixel weights ``w [P]``."""
    t = np_one_hot(y, p.shape[-1])
    if not include_background:
        p, t = p[:, 1:], t[:, 1:]
    w = np.asarray(w, np.float64)[:, None]
    inter, ground, pred = (w * p * t).sum(0), (w * t).sum(0), (w * p).sum(0)
    with np.errstate(divide="ignore"):
        wc = {"square": 1.0 / ground**2, "simple": 1.0 / ground, "uniform": np.ones_like(ground)}[w_type]
    infs = np.isinf(wc)
    wc[infs] = 0.0
    wc[infs] = wc.max()
    return 1.0 - (2.0 * (inter * wc).sum() + smooth_nr) / (((ground + pred) * wc).sum() + smooth_dr)


def np_monai_gdl(logits, labels, smooth_nr=1e-5, smooth_dr=1e-5, w_type="square", include_background=True,
                 pixel_w=None):
    p = np_softmax(logits)
    n, c = p.shape[0], p.shape[-1]
    p, y = p.reshape(n, -1, c), np.asarray(labels).reshape(n, -1)
    w = np.ones(y.shape) if pixel_w is None else np.asarray(pixel_w, np.float64).reshape(n, -1)
    return np.array([np_monai_gdl_sample(p[i], y[i], w[i], smooth_nr, smooth_dr, w_type, include_background)
                     for i in range(n)])


def np_lovasz_grad(gt_sorted):
    gts = gt_sorted.sum()
    inter = gts - np.cumsum(gt_sorted)
    union = gts + np.cumsum(1.0 - gt_sorted)
    jac = 1.0 - inter / union
    jac[1:] = jac[1:] - jac[:-1]
    return jac


def np_lovasz_softmax_flat(p, y):
    """SMP's flat Lovász-softmax, classes="present": ``p [P, C]``, ``y [P]``."""
    if p.size == 0:
        return 0.0
    losses = []
    for c in range(p.shape[1]):
        fg = (y == c).astype(np.float64)
        if fg.sum() == 0:
            continue
        errors = np.abs(fg - p[:, c])
        order = np.argsort(-errors, kind="stable")
        losses.append(errors[order] @ np_lovasz_grad(fg[order]))
    return float(np.mean(losses)) if losses else 0.0


def np_lovasz_softmax(logits, labels, ignore=None, per_image=False, keep=None):
    """``keep``: a boolean pixel mask (the pixels a ``where`` leaves), removed like ignored ones."""
    p = np_softmax(logits)
    c = p.shape[-1]
    y = np.asarray(labels)
    k = np.ones(y.shape, bool) if keep is None else np.asarray(keep, bool)
    if ignore is not None:
        k = k & (y != ignore)
    groups = [(p[i], y[i], k[i]) for i in range(len(y))] if per_image else [(p, y, k)]
    out = [np_lovasz_softmax_flat(pg.reshape(-1, c)[kg.reshape(-1)], yg.reshape(-1)[kg.reshape(-1)])
           for pg, yg, kg in groups]
    return np.array(out) if per_image else np.array(out[0])


def np_lovasz_hinge_flat(x, t):
    if len(t) == 0:
        return 0.0
    signs = 2.0 * t - 1.0
    errors = 1.0 - x * signs
    order = np.argsort(-errors, kind="stable")
    return np.maximum(errors[order], 0.0) @ np_lovasz_grad(t[order])


def np_lovasz_hinge(logits, targets, ignore=None, per_image=True, keep=None):
    x = np.asarray(logits, np.float64)
    t = np.asarray(targets)
    k = np.ones(t.shape, bool) if keep is None else np.asarray(keep, bool)
    if ignore is not None:
        k = k & (t != ignore)
    groups = [(x[i], t[i], k[i]) for i in range(len(t))] if per_image else [(x, t, k)]
    out = [np_lovasz_hinge_flat(xg[kg].reshape(-1), tg[kg].reshape(-1).astype(np.float64)) for xg, tg, kg in groups]
    return np.array(out) if per_image else np.array(out[0])


def data(seed=0, n=2, h=3, w=4, c=4, scale=2.0):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(n, h, w, c)) * scale).astype(np.float32)
    labels = rng.integers(0, c - 1, size=(n, h, w)).astype(np.int32)  # class c-1 absent
    return logits, labels


def f64(x):
    return np.asarray(x, np.float32).astype(np.float64)


# ---------------------------------------------------------------------------
# multiclass_dice_loss
# ---------------------------------------------------------------------------


def test_multiclass_dice_against_smp_every_reduction():
    x, y = data()
    rng = np.random.default_rng(1)
    class_w = rng.uniform(0.5, 2.0, size=4)
    ref = np_smp_dice(f64(x), y, smooth=0.5)
    assert ref[-1] == 0.0  # the absent class scores 0 ...
    close(jaxloss.multiclass_dice_loss(x, y, smooth=0.5), ref.mean())  # ... and counts in the mean over C
    for reduction in ("mean", "sum", "none"):
        out = jaxloss.multiclass_dice_loss(x, y, smooth=0.5, reduction=reduction, weights=class_w)
        close(out, reduce_ref(ref, reduction, class_w))


def test_multiclass_dice_ignore_index_eps_and_probabilities():
    x, y = data(2)
    y = np.where(np.random.default_rng(3).uniform(size=y.shape) < 0.3, 255, y).astype(np.int32)
    close(jaxloss.multiclass_dice_loss(x, y, ignore_index=255, reduction="none"), np_smp_dice(f64(x), y, ignore=255))
    # a large eps clamps the denominator
    close(jaxloss.multiclass_dice_loss(x, y, ignore_index=255, eps=30.0, smooth=1.0, reduction="none"),
          np_smp_dice(f64(x), y, ignore=255, eps=30.0, smooth=1.0))
    probs = np_softmax(f64(x)).astype(np.float32)
    close(jaxloss.multiclass_dice_loss(probs, y, ignore_index=255, from_logits=False, reduction="none"),
          np_smp_dice(f64(probs), y, ignore=255, from_logits=False))


def test_multiclass_dice_channels_first_axis():
    x, y = data(4)
    close(jaxloss.multiclass_dice_loss(np.moveaxis(x, -1, 1), y, axis=1, reduction="none"),
          np_smp_dice(f64(x), y))


def test_multiclass_dice_pixel_mask_and_weights_shaped_like_labels():
    x, y = data(5)
    rng = np.random.default_rng(6)
    keep = rng.uniform(size=y.shape) < 0.7
    close(jaxloss.multiclass_dice_loss(x, y, where=keep, reduction="none"), np_smp_dice(f64(x), y, pixel_w=keep))
    k = rng.integers(0, 3, size=y.shape)  # a pixel of weight k counts k times
    counts = k.reshape(-1)
    repeated = np_smp_dice(np.repeat(f64(x).reshape(-1, 4), counts, axis=0), np.repeat(y.reshape(-1), counts))
    close(jaxloss.multiclass_dice_loss(x, y, weights=k.astype(np.float32), reduction="none"), repeated)


def test_multiclass_dice_all_pixels_ignored_is_zero_with_zero_gradient():
    x, _ = data(7)
    y = np.full(x.shape[:-1], -1, np.int32)
    value, g = jax.value_and_grad(lambda a: jaxloss.multiclass_dice_loss(a, y, ignore_index=-1))(x)
    assert float(value) == 0.0 and np.all(np.asarray(g) == 0.0)
    assert float(np_smp_dice(f64(x), y, ignore=-1).mean()) == 0.0  # the anchor's value too


def test_multiclass_dice_gradient_against_finite_differences():
    x, y = data(8, n=1, h=2, w=3, c=3)
    y[0, 0, 0] = 9
    with jax.enable_x64(True):
        g = jax.grad(lambda a: jaxloss.multiclass_dice_loss(a, jnp.asarray(y), smooth=0.3, ignore_index=9))(f64(x))
    close64(g, central_diff(lambda a: np_smp_dice(a, y, smooth=0.3, ignore=9).mean(), f64(x)))


def test_multiclass_dice_out_of_range_labels():
    x, y = data(9)
    bad = y.copy()
    bad[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"multiclass_dice_loss: labels must lie in \[0, 4\)"):
        jaxloss.multiclass_dice_loss(x, bad)
    assert np.all(np.isnan(jax.jit(jaxloss.multiclass_dice_loss)(x, bad)))


# ---------------------------------------------------------------------------
# generalized_dice_loss
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("weighting", ["square", "simple", "uniform"])
def test_generalized_dice_against_monai(weighting):
    x, y = data(10)
    y[1] = np.where(y[1] == 1, 0, y[1])  # class 1 absent from the second sample: its weight is the largest
    for include_background in (True, False):
        ref = np_monai_gdl(f64(x), y, 1e-5, 1e-5, weighting, include_background)
        out = jaxloss.generalized_dice_loss(x, y, weighting=weighting, include_background=include_background,
                                            reduction="none")
        close(out, ref)
    ref = np_monai_gdl(f64(x), y, 0.5, 2.0, weighting, True)
    w = np.array([0.3, 1.7])
    for reduction in ("mean", "sum"):
        out = jaxloss.generalized_dice_loss(x, y, smooth_nr=0.5, smooth_dr=2.0, weighting=weighting,
                                            reduction=reduction, weights=w)
        close(out, reduce_ref(ref, reduction, w))


def test_generalized_dice_sample_with_no_foreground():
    x, y = data(11)
    y[0] = 0  # only background: with include_background=False every weight is 0
    out = jaxloss.generalized_dice_loss(x, y, include_background=False, smooth_nr=0.1, smooth_dr=0.4,
                                        reduction="none")
    ref = np_monai_gdl(f64(x), y, 0.1, 0.4, "square", False)
    close(out, ref)
    close(ref[0], 1.0 - 0.1 / 0.4)


def test_generalized_dice_pixel_mask_and_a_fully_masked_sample():
    x, y = data(12, n=3)
    keep = np.random.default_rng(13).uniform(size=y.shape) < 0.6
    keep[2] = False  # every pixel of sample 2 masked: it leaves the mean
    ref = np_monai_gdl(f64(x), y, pixel_w=keep)
    close(jaxloss.generalized_dice_loss(x, y, where=keep), ref[:2].mean())
    close(jaxloss.generalized_dice_loss(x, y, where=keep, reduction="none")[:2], ref[:2])


def test_generalized_dice_gradient_against_finite_differences():
    x, y = data(14, n=2, h=2, w=2, c=3)
    with jax.enable_x64(True):
        g = jax.grad(lambda a: jaxloss.generalized_dice_loss(a, jnp.asarray(y), weighting="simple"))(f64(x))
    close64(g, central_diff(lambda a: np_monai_gdl(a, y, w_type="simple").mean(), f64(x)))


def test_generalized_dice_needs_a_sample_axis_and_classes():
    with pytest.raises(ValueError, match="generalized_dice_loss: logits must have a sample axis"):
        jaxloss.generalized_dice_loss(np.zeros(3, np.float32), np.array(0))
    with pytest.raises(ValueError, match="generalized_dice_loss: include_background=False needs at least 2"):
        jaxloss.generalized_dice_loss(np.zeros((2, 3, 1), np.float32), np.zeros((2, 3), np.int32),
                                      include_background=False)
    with pytest.raises(ValueError, match="generalized_dice_loss: weighting must be one of"):
        jaxloss.generalized_dice_loss(*data(), weighting="cubic")


# ---------------------------------------------------------------------------
# lovasz_softmax_loss
# ---------------------------------------------------------------------------


def test_lovasz_softmax_against_smp():
    x, y = data(20)
    ign = np.where(np.random.default_rng(21).uniform(size=y.shape) < 0.25, 255, y).astype(np.int32)
    for per_image in (False, True):
        close(jaxloss.lovasz_softmax_loss(x, y, per_image=per_image, reduction="none"),
              np_lovasz_softmax(f64(x), y, per_image=per_image))
        close(jaxloss.lovasz_softmax_loss(x, ign, per_image=per_image, ignore_index=255, reduction="none"),
              np_lovasz_softmax(f64(x), ign, 255, per_image=per_image))
    w = np.array([0.5, 2.0])
    ref = np_lovasz_softmax(f64(x), y, per_image=True)
    for reduction in ("mean", "sum"):
        close(jaxloss.lovasz_softmax_loss(x, y, per_image=True, weights=w, reduction=reduction),
              reduce_ref(ref, reduction, w))


def test_lovasz_softmax_channels_first_axis():
    x, y = data(22)
    close(jaxloss.lovasz_softmax_loss(np.moveaxis(x, -1, 1), y, axis=1), np_lovasz_softmax(f64(x), y))


def test_lovasz_softmax_all_pixels_ignored():
    x, y = data(23, n=3)
    y[1] = -1  # an image whose pixels are all ignored counts 0 in the per-image mean (as SMP)
    ref = np_lovasz_softmax(f64(x), y, -1, per_image=True)
    assert ref[1] == 0.0
    close(jaxloss.lovasz_softmax_loss(x, y, ignore_index=-1, per_image=True), ref.mean())
    everything = np.full_like(y, -1)
    for per_image in (False, True):
        value, g = jax.value_and_grad(
            lambda a, p=per_image: jaxloss.lovasz_softmax_loss(a, everything, ignore_index=-1, per_image=p))(x)
        assert float(value) == 0.0 and np.all(np.asarray(g) == 0.0)


def test_lovasz_softmax_pixel_mask_removes_and_weight_repeats_pixels():
    x, y = data(24)
    keep = np.random.default_rng(25).uniform(size=y.shape) < 0.6
    keep[1] = False  # a fully masked image leaves the per-image mean
    close(jaxloss.lovasz_softmax_loss(x, y, where=keep), np_lovasz_softmax(f64(x), y, keep=keep))
    close(jaxloss.lovasz_softmax_loss(x, y, where=keep, per_image=True),
          np_lovasz_softmax(f64(x), y, per_image=True, keep=keep)[0])
    k = np.random.default_rng(26).integers(0, 3, size=y.shape)
    xr = np.repeat(f64(x).reshape(-1, 4), k.reshape(-1), axis=0)
    yr = np.repeat(y.reshape(-1), k.reshape(-1))
    close(jaxloss.lovasz_softmax_loss(x, y, weights=k.astype(np.float32)), np_lovasz_softmax_flat(np_softmax(xr), yr))


def test_lovasz_softmax_gradient_against_finite_differences():
    x, y = data(27, n=2, h=2, w=3, c=3)
    with jax.enable_x64(True):
        for per_image in (False, True):
            g = jax.grad(lambda a, p=per_image: jaxloss.lovasz_softmax_loss(a, jnp.asarray(y), per_image=p))(f64(x))
            assert np.all(np.isfinite(np.asarray(g)))
            close64(g, central_diff(lambda a, p=per_image: np_lovasz_softmax(a, y, per_image=p).mean(), f64(x)))


def test_lovasz_one_batched_sort_under_jit():
    """Every class of every image in one sort: no Python loop over classes or images."""
    x, y = data(28, n=3, c=5)
    for fn, args in ((jaxloss.lovasz_softmax_loss, (x, y)), (jaxloss.lovasz_hinge_loss, (x[..., 0], y > 1))):
        for per_image in (False, True):
            text = str(jax.make_jaxpr(lambda *a, f=fn, p=per_image: f(*a, per_image=p))(*args))
            assert text.count(" sort[") == 1, text


# ---------------------------------------------------------------------------
# lovasz_hinge_loss
# ---------------------------------------------------------------------------


def test_lovasz_hinge_against_smp():
    rng = np.random.default_rng(30)
    x = (rng.normal(size=(3, 4, 5)) * 2).astype(np.float32)
    t = (rng.uniform(size=x.shape) < 0.4).astype(np.int32)
    t[2] = 0  # an image without foreground
    ign = np.where(rng.uniform(size=t.shape) < 0.3, 255, t).astype(np.int32)
    ign[1] = 255  # an image whose pixels are all ignored counts 0
    for per_image in (True, False):
        close(jaxloss.lovasz_hinge_loss(x, t, per_image=per_image, reduction="none"),
              np_lovasz_hinge(f64(x), t, per_image=per_image))
        close(jaxloss.lovasz_hinge_loss(x, ign, per_image=per_image, ignore_index=255, reduction="none"),
              np_lovasz_hinge(f64(x), ign, 255, per_image=per_image))
    close(jaxloss.lovasz_hinge_loss(x, t.astype(bool)), np_lovasz_hinge(f64(x), t).mean())
    keep = rng.uniform(size=t.shape) < 0.5
    close(jaxloss.lovasz_hinge_loss(x, t.astype(np.float32), where=keep, per_image=False),
          np_lovasz_hinge(f64(x), t, per_image=False, keep=keep))


def test_lovasz_hinge_gradient_and_all_ignored():
    rng = np.random.default_rng(31)
    x = rng.normal(size=(2, 3, 3)) * 2
    t = (rng.uniform(size=x.shape) < 0.5).astype(np.int32)
    with jax.enable_x64(True):
        g = jax.grad(lambda a: jaxloss.lovasz_hinge_loss(a, jnp.asarray(t)))(x)
    close64(g, central_diff(lambda a: np_lovasz_hinge(a, t).mean(), x))
    none = np.full(t.shape, 255, np.int32)
    value, g = jax.value_and_grad(lambda a: jaxloss.lovasz_hinge_loss(a, none, ignore_index=255))(x.astype(np.float32))
    assert float(value) == 0.0 and np.all(np.asarray(g) == 0.0)


def test_lovasz_hinge_rejects_non_binary_targets():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"lovasz_hinge_loss: targets must be 0 or 1, got \[2\]"):
        jaxloss.lovasz_hinge_loss(x, np.array([[0, 1, 2], [1, 1, 0]]))
    with pytest.raises(ValueError, match=r"lovasz_hinge_loss: targets must be 0 or 1 or ignore_index=255, got \[3\]"):
        jaxloss.lovasz_hinge_loss(x, np.array([[0, 1, 255], [3, 1, 0]]), ignore_index=255)


# ---------------------------------------------------------------------------
# shared input errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [jaxloss.multiclass_dice_loss, jaxloss.generalized_dice_loss,
                                jaxloss.lovasz_softmax_loss], ids=lambda f: f.__name__)
def test_label_map_errors(fn):
    x, y = data()
    name = fn.__name__
    with pytest.raises(TypeError, match=f"{name}: labels must hold integer class labels"):
        fn(x, y.astype(np.float32))
    with pytest.raises(ValueError, match=f"{name}: labels must have the shape of logits without axis -1"):
        fn(x, y[:, :2])
    with pytest.raises(ValueError, match=f"{name}: where of shape"):
        fn(x, y, where=np.ones((5,), bool))
