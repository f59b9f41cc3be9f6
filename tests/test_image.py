"""SSIM, MS-SSIM and total variation against NumPy float64 references.

SSIM as pytorch-msssim's ``_ssim`` (which equals dm_pix's ``ssim`` away from its variance
clipping): a normalised Gaussian window, 'valid' separable filtering, per-channel means.
MS-SSIM as pytorch-msssim's ``ms_ssim``: torch's ``avg_pool2d(kernel 2, padding = side % 2,
count_include_pad=True)`` between scales, ReLU on each scale's term, the product per
channel, then the mean over channels. Total variation as ``tf.image.total_variation``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import assert_close, central_diff, reduce_ref

import jaxloss


def np_window(size, sigma):
    coords = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(coords ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def np_blur(x, g):
    """'valid' Gaussian filtering of [N, H, W, C] along H, then W."""
    def along(v, axis):  # windows of len(g) along axis, weighted by g
        windows = np.lib.stride_tricks.sliding_window_view(v, len(g), axis=axis)
        return windows @ g
    return along(along(x, 1), 2)


def np_ssim_cs(x, y, max_val=1.0, size=11, sigma=1.5, k1=0.01, k2=0.03):
    """Per-channel SSIM and contrast-structure means, [N, C] each."""
    g = np_window(size, sigma)
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    mx, my = np_blur(x, g), np_blur(y, g)
    sxx = np_blur(x * x, g) - mx ** 2
    syy = np_blur(y * y, g) - my ** 2
    sxy = np_blur(x * y, g) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ssim = (2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1) * cs
    return ssim.mean(axis=(1, 2)), cs.mean(axis=(1, 2))


def np_avg_pool(x):
    """torch.nn.functional.avg_pool2d(kernel_size=2, padding=[H % 2, W % 2]) on [N, H, W, C]."""
    ph, pw = x.shape[1] % 2, x.shape[2] % 2
    xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    oh, ow = (xp.shape[1] - 2) // 2 + 1, (xp.shape[2] - 2) // 2 + 1
    out = np.zeros((x.shape[0], oh, ow, x.shape[3]))
    for i in range(oh):
        for j in range(ow):
            out[:, i, j] = xp[:, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean(axis=(1, 2))
    return out


def np_ms_ssim(x, y, weights=(0.0448, 0.2856, 0.3001, 0.2363, 0.1333), **kw):
    terms = []
    for j in range(len(weights)):
        ssim, cs = np_ssim_cs(x, y, **kw)
        if j < len(weights) - 1:
            terms.append(np.maximum(cs, 0))
            x, y = np_avg_pool(x), np_avg_pool(y)
    terms.append(np.maximum(ssim, 0))
    val = np.prod([t ** w for t, w in zip(terms, weights)], axis=0)  # [N, C]
    return val.mean(axis=1)


def np_tv(x):
    return np.abs(np.diff(x, axis=-3)).sum(axis=(-3, -2, -1)) + np.abs(np.diff(x, axis=-2)).sum(axis=(-3, -2, -1))




RNG = np.random.default_rng(0)
T = RNG.uniform(size=(3, 20, 19, 2)).astype(np.float32)
Pd = np.clip(T + 0.2 * RNG.normal(size=T.shape), 0, 1).astype(np.float32)
T64, P64 = T.astype(np.float64), Pd.astype(np.float64)


def test_ssim_matches_pytorch_msssim_and_dm_pix_formula():
    per = 1 - np_ssim_cs(P64, T64)[0].mean(1)
    w, m = RNG.uniform(0.5, 2, size=3), np.array([True, False, True])
    for reduction in ("mean", "sum", "none"):
        out = jaxloss.ssim_loss(jnp.asarray(Pd), jnp.asarray(T), reduction=reduction)
        assert_close(out, reduce_ref(per, reduction), rtol=1e-5, atol=1e-6)
    assert_close(jaxloss.ssim_loss(jnp.asarray(Pd), jnp.asarray(T), weights=w, where=m),
                 reduce_ref(per, "mean", w, m), rtol=1e-5, atol=1e-6)
    opts = dict(max_val=2.0, filter_size=7, filter_sigma=1.0, k1=0.02, k2=0.05)
    per = 1 - np_ssim_cs(2 * P64, 2 * T64, max_val=2.0, size=7, sigma=1.0, k1=0.02, k2=0.05)[0].mean(1)
    assert_close(jaxloss.ssim_loss(jnp.asarray(2 * Pd), jnp.asarray(2 * T), **opts, reduction="none"), per,
                 rtol=1e-5, atol=1e-6)


def test_ms_ssim_matches_pytorch_msssim():
    t = RNG.uniform(size=(2, 163, 161, 1)).astype(np.float32)  # odd sides: the padded pooling
    p = np.clip(t + 0.1 * RNG.normal(size=t.shape), 0, 1).astype(np.float32)
    out = jaxloss.ms_ssim_loss(jnp.asarray(p), jnp.asarray(t), reduction="none")
    assert_close(out, 1 - np_ms_ssim(p.astype(np.float64), t.astype(np.float64)), rtol=1e-5, atol=1e-5)
    opts = dict(filter_size=5, filter_sigma=1.2, power_factors=(0.2, 0.3, 0.5))
    small_t, small_p = t[:, :23, :21], p[:, :23, :21]
    out = jaxloss.ms_ssim_loss(jnp.asarray(small_p), jnp.asarray(small_t), **opts, reduction="none")
    ref = 1 - np_ms_ssim(small_p.astype(np.float64), small_t.astype(np.float64), weights=(0.2, 0.3, 0.5),
                         size=5, sigma=1.2)
    assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_total_variation_matches_tf():
    x = RNG.normal(size=(2, 3, 5, 4, 3)).astype(np.float32)
    assert_close(jaxloss.total_variation_loss(jnp.asarray(x), reduction="none"), np_tv(x.astype(np.float64)),
                 rtol=1e-5)
    assert jaxloss.total_variation_loss(jnp.asarray(x)).shape == ()


def test_gradients_match_central_differences():
    with jax.enable_x64(True):
        t = RNG.uniform(size=(1, 7, 8, 1))
        p = np.clip(t + 0.2 * RNG.normal(size=t.shape), 0, 1)
        g = jax.grad(lambda x: jaxloss.ssim_loss(x, jnp.asarray(t), filter_size=3))(jnp.asarray(p))
        ref = central_diff(lambda x: 1 - np_ssim_cs(x, t, size=3)[0].mean(), p.copy())
        assert_close(g, ref, rtol=1e-5, atol=1e-8)
        g = jax.grad(lambda x: jaxloss.ms_ssim_loss(x, jnp.asarray(t), filter_size=3, power_factors=(0.4, 0.6)))(
            jnp.asarray(p))
        ref = central_diff(lambda x: 1 - np_ms_ssim(x, t, weights=(0.4, 0.6), size=3).mean(), p.copy())
        assert_close(g, ref, rtol=1e-5, atol=1e-8)
        x = RNG.normal(size=(1, 4, 5, 2))
        g = jax.grad(lambda x: jaxloss.total_variation_loss(x))(jnp.asarray(x))
        assert_close(g, central_diff(lambda v: np_tv(v).mean(), x.copy()), rtol=1e-6, atol=1e-8)


def test_identical_and_constant_images_are_exact_and_finite():
    x = jnp.asarray(T[:1])
    same = jnp.concatenate([x, jnp.full_like(x, 0.5), jnp.zeros_like(x)])  # textured, constant, black
    for fn, kw in ((jaxloss.ssim_loss, {}), (jaxloss.ms_ssim_loss, {"filter_size": 3, "power_factors": (0.5, 0.5)})):
        value, g = jax.value_and_grad(lambda a, fn=fn, kw=kw: fn(a, same, **kw, reduction="sum"))(same)
        assert abs(float(value)) < 1e-5, (fn.__name__, float(value))
        assert np.all(np.isfinite(np.asarray(g))) and float(jnp.max(jnp.abs(g))) < 1e-3
        # anti-correlated contrast (cs < 0 at a scale): ReLU'd, still a finite gradient
        value, g = jax.value_and_grad(lambda a, fn=fn, kw=kw: fn(a, 1.0 - same, **kw))(same)
        assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(g)))
    flat = jnp.ones((1, 4, 4, 1))
    value, g = jax.value_and_grad(jaxloss.total_variation_loss)(flat)
    assert float(value) == 0.0 and np.all(np.asarray(g) == 0)


def test_errors_name_the_loss():
    x = jnp.zeros((1, 8, 8, 1))
    with pytest.raises(ValueError, match=r"ssim_loss: images of 8x8 are smaller than the filter"):
        jaxloss.ssim_loss(x, x)
    with pytest.raises(ValueError, match=r"ms_ssim_loss: .* for 5 scales .* at least 161"):
        jaxloss.ms_ssim_loss(jnp.zeros((1, 100, 100, 1)), jnp.zeros((1, 100, 100, 1)))
    with pytest.raises(ValueError, match="ssim_loss: images must be channels-last"):
        jaxloss.ssim_loss(jnp.zeros((16, 16)), jnp.zeros((16, 16)))
    with pytest.raises(ValueError, match="ssim_loss: pred .* must have the same shape"):
        jaxloss.ssim_loss(jnp.zeros((1, 16, 16, 1)), jnp.zeros((1, 16, 16, 2)))
    with pytest.raises(ValueError, match="ssim_loss: max_val must lie in"):
        jaxloss.ssim_loss(jnp.zeros((1, 16, 16, 1)), jnp.zeros((1, 16, 16, 1)), max_val=0.0)
    with pytest.raises(ValueError, match="ms_ssim_loss: power_factors must be"):
        jaxloss.ms_ssim_loss(x, x, filter_size=3, power_factors=())
