"""Segmentation losses against NumPy float64 references written here."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import assert_close, reduce_ref
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
        eps = 1e-6
        num = np.zeros_like(p64)
        for i in np.ndindex(p64.shape):
            up, dn = p64.copy(), p64.copy()
            up[i] += eps
            dn[i] -= eps
            num[i] = (np.mean(np_tversky(up, t, axis=(1, 2))) - np.mean(np_tversky(dn, t, axis=(1, 2)))) / (2 * eps)
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
