"""Label-map segmentation losses (multi-class Dice, generalized Dice, Lovász)
against NumPy float64 references written here with the anchors' semantics:
segmentation_models_pytorch ``DiceLoss(mode="multiclass")`` and ``LovaszLoss``,
MONAI ``GeneralizedDiceLoss(softmax=True, to_onehot_y=True)``. The references
loop over classes and images as those libraries do; jaxloss does not."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import assert_close, reduce_ref

import jaxloss

close = functools.partial(assert_close, rtol=2e-5, atol=2e-6)
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


def fd_grad(f, x, h=1e-6):
    """Central finite differences of a NumPy float64 function."""
    x = np.asarray(x, np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        g[i] = (f(up) - f(down)) / (2 * h)
    return g


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
    close64(g, fd_grad(lambda a: np_smp_dice(a, y, smooth=0.3, ignore=9).mean(), f64(x)))


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
    close64(g, fd_grad(lambda a: np_monai_gdl(a, y, w_type="simple").mean(), f64(x)))


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
            close64(g, fd_grad(lambda a, p=per_image: np_lovasz_softmax(a, y, per_image=p).mean(), f64(x)))


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
    close64(g, fd_grad(lambda a: np_lovasz_hinge(a, t).mean(), x))
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
