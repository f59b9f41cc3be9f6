r"""Image-quality losses: SSIM, MS-SSIM and total variation, channels-last.

Images are ``[..., H, W, C]`` (JAX's and dm_pix's layout; PyTorch's ``[N, C, H, W]`` is
``jnp.moveaxis(x, 1, -1)``), and ``reduction="none"`` returns one loss per image, the
leading shape ``[...]``; ``where`` and ``weights`` are per image too.

SSIM is computed as dm_pix's ``ssim``: a normalised Gaussian window of ``filter_size``
taps and width ``filter_sigma`` applied separably with no padding ("valid"), constants
:math:`c_1 = (k_1 L)^2`, :math:`c_2 = (k_2 L)^2` for the dynamic range :math:`L` =
``max_val``, and the local variances clipped to be non-negative (so identical and
constant images are exact and finite). MS-SSIM follows pytorch-msssim's ``ms_ssim``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ._checks import POSITIVE, Static
from ._core import Example, Layout, Role, builtin
from ._numerics import abs0
from ._sharding import explicit_spec

__all__ = [
    "ssim_loss", "SSIMLoss",
    "ms_ssim_loss", "MSSSIMLoss",
    "total_variation_loss", "TotalVariationLoss",
]

image = builtin("image")

_HIGHEST = lax.Precision.HIGHEST
# inputs [..., H, W, C]; one loss per image, [...]
_IMAGES = Layout({n: Role(shape="trailing") for n in ("pred", "target", "images")})
_FILTER = Static("int", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "a positive int",
                 ValueError)
_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, pytorch-msssim's default


def _is_factors(v):
    return (isinstance(v, tuple) and len(v) >= 1
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0 for x in v))


_FACTORS = Static("tuple[float, ...]", _is_factors, "a non-empty tuple of non-negative numbers", ValueError)


def _gaussian(size, sigma, dtype):
    """dm_pix's window: ``size`` taps centred on the middle (symmetric for even sizes), summing to 1."""
    half = size // 2
    shift = (2 * half - size + 1) / 2
    x = (jnp.arange(size, dtype=dtype) - half + shift) / sigma
    g = jnp.exp(-0.5 * x * x)
    return g / jnp.sum(g)


def _filter(x, g):
    """Separable 'valid' filtering of ``[..., H, W, C]`` by the 1-D window ``g`` along H and W
    (two depthwise convolutions, each channel on its own, channels-last). Only the leading
    axes are merged (the first of them may be split over devices on an explicit mesh; a
    reshape that merged a split axis into a minor position would not be allowed)."""
    lead, (h, w, c) = x.shape[:-3], x.shape[-3:]
    flat = x.reshape((-1, h, w, c)) if len(lead) != 1 else x  # [M, H, W, C]
    size = g.shape[0]
    for kernel in (g.reshape(size, 1, 1, 1), g.reshape(1, size, 1, 1)):
        kernel = jnp.broadcast_to(kernel.astype(flat.dtype), (*kernel.shape[:2], 1, c))  # HWIO, one per channel
        flat = lax.conv_general_dilated(flat, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=c, precision=_HIGHEST)
    h2, w2 = flat.shape[-3:-1]
    return flat.reshape((*lead, h2, w2, c)) if len(lead) != 1 else flat


def _ssim_maps(a, b, *, max_val, filter_size, filter_sigma, k1, k2):
    """The SSIM map and the contrast-structure map, both ``[..., H', W', C]`` (dm_pix's ssim)."""
    g = _gaussian(filter_size, filter_sigma, a.dtype)
    # The moments are formed about each image's mean level (the variances do not depend on it):
    # E[x^2] - E[x]^2 then cancels far less in float32.
    level = lax.stop_gradient(0.5 * jnp.mean(a + b, axis=(-3, -2), keepdims=True))
    a0, b0 = a - level, b - level
    # one pass, the five maps side by side along the channels (the batch stays the leading axis)
    m_a, m_b, e_aa, e_bb, e_ab = jnp.split(
        _filter(jnp.concatenate([a0, b0, a0 * a0, b0 * b0, a0 * b0], axis=-1), g), 5, axis=-1)
    tiny = jnp.finfo(a.dtype).eps ** 2
    s_aa = jnp.maximum(e_aa - m_a * m_a, tiny)
    s_bb = jnp.maximum(e_bb - m_b * m_b, tiny)
    s_ab = e_ab - m_a * m_b
    mu_a, mu_b = m_a + level, m_b + level
    mu_aa, mu_bb, mu_ab = mu_a * mu_a, mu_b * mu_b, mu_a * mu_b
    s_ab = jnp.sign(s_ab) * jnp.minimum(jnp.sqrt(s_aa * s_bb), abs0(s_ab))  # |cov| <= sqrt(var var)
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    cs = (2.0 * s_ab + c2) / (s_aa + s_bb + c2)
    return (2.0 * mu_ab + c1) / (mu_aa + mu_bb + c1) * cs, cs


def _validate_images(name, pred, target=None, *, filter_size=None, power_factors=None, **_):
    if pred.ndim < 3:
        raise ValueError(f"{name}: images must be channels-last [..., H, W, C], got shape {tuple(pred.shape)}")
    if target is not None and tuple(target.shape) != tuple(pred.shape):
        raise ValueError(f"{name}: pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    if filter_size is None:
        return
    h, w = pred.shape[-3], pred.shape[-2]
    scale = 1 if power_factors is None else 2 ** (len(power_factors) - 1)
    need = filter_size if power_factors is None else (filter_size - 1) * scale + 1
    if min(h, w) < need:
        where = "" if power_factors is None else f" for {len(power_factors)} scales (the coarsest is 1/{scale} size)"
        raise ValueError(f"{name}: images of {h}x{w} are smaller than the filter{where}: H and W must be at least "
                         f"{need} for filter_size={filter_size}")


def _image_pair(rng):
    target = rng.uniform(size=(3, 16, 16, 2))
    pred = (0.7 * target + 0.3 * rng.uniform(size=target.shape))
    return pred.astype("float32"), target.astype("float32")


_SSIM_CHECKS = {"max_val": POSITIVE, "filter_sigma": POSITIVE, "k1": POSITIVE, "k2": POSITIVE}


@image(static={"filter_size": _FILTER}, checks=_SSIM_CHECKS, layout=_IMAGES, validate=_validate_images,
       example=Example(_image_pair, sweep=("filter_sigma", (0.5, 1.0, 1.5, 3.0)), differentiable=(0, 1)),
       class_name="SSIMLoss")
def ssim_loss(pred, target, *, max_val=1.0, filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03):
    r"""One minus the structural similarity (SSIM) of two images (dm_pix's ``ssim``; Keras, pytorch-msssim).

    With local means :math:`\mu`, variances :math:`\sigma^2` and covariance
    :math:`\sigma_{pt}` from a Gaussian window (``filter_size`` taps, width ``filter_sigma``,
    no padding):

    .. math::
        \ell = 1 - \operatorname{mean}_{h,w,c}
          \frac{(2 \mu_p \mu_t + c_1)(2 \sigma_{pt} + c_2)}{(\mu_p^2 + \mu_t^2 + c_1)(\sigma_p^2 + \sigma_t^2 + c_2)},
        \qquad c_i = (k_i L)^2

    Args:
      pred: images ``[..., H, W, C]``, floating point, values in ``[0, max_val]``.
      target: reference images, the same shape; ``H, W >= filter_size``.
      max_val: the dynamic range :math:`L`, ``> 0`` (1 for images in [0, 1], 255 for 8-bit; traced).
      filter_size: static, the window's number of taps (11).
      filter_sigma: the window's standard deviation in pixels, ``> 0`` (traced).
      k1: the luminance constant, ``> 0`` (traced).
      k2: the contrast constant, ``> 0`` (traced).

    Returns:
      The reduced loss, in ``[0, 2]`` (0 for identical images); with ``reduction="none"``
      one loss per image, shape ``[...]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x = jnp.linspace(0.0, 1.0, 16 * 16 * 3).reshape(1, 16, 16, 3)
      >>> abs(round(float(jaxloss.ssim_loss(x, x)), 6))
      0.0
      >>> round(float(jaxloss.ssim_loss(x, 0.5 * x)), 4), round(float(jaxloss.ssim_loss(x, 1.0 - x)), 4)
      (0.3479, 1.8262)
    """
    ssim, _ = _ssim_maps(pred, target, max_val=max_val, filter_size=filter_size, filter_sigma=filter_sigma, k1=k1,
                         k2=k2)
    return 1.0 - jnp.mean(ssim, axis=(-3, -2, -1))


def _half(x):
    """pytorch-msssim's 2x2 average pool: an odd side gets a leading zero pad (counted in the mean)."""
    h, w = x.shape[-3], x.shape[-2]
    pad = [(0, 0)] * (x.ndim - 3) + [(h % 2, 0), (w % 2, 0), (0, 0)]
    x = jnp.pad(x, pad)
    lead, (h2, w2, c) = x.shape[:-3], x.shape[-3:]
    spec = explicit_spec(x)  # on an explicit mesh the leading (image) axes keep their split
    out = None if spec is None else jax.sharding.PartitionSpec(
        *(tuple(spec) + (None,) * x.ndim)[: len(lead)], *([None] * 5))
    return jnp.reshape(x, (*lead, h2 // 2, 2, w2 // 2, 2, c), out_sharding=out).mean(axis=(-4, -2))


def _power(x, p):
    """``max(x, 0) ** p`` with a finite (zero) gradient where ``x <= 0``."""
    ok = x > 0
    return jnp.where(ok, jnp.where(ok, x, 1.0) ** p, 0.0)


def _ms_sample(rng):
    target = rng.uniform(size=(1, 161, 161, 1))  # the defaults' smallest size (ssim_loss covers the masks)
    pred = 0.7 * target + 0.3 * rng.uniform(size=target.shape)
    return pred.astype("float32"), target.astype("float32")


@image(static={"filter_size": _FILTER, "power_factors": _FACTORS}, checks=_SSIM_CHECKS, layout=_IMAGES,
       validate=_validate_images,
       example=Example(_ms_sample, sweep=("filter_sigma", (0.5, 1.0, 1.5, 3.0)), differentiable=(0, 1), grad_order=1),
       class_name="MSSSIMLoss")
def ms_ssim_loss(pred, target, *, max_val=1.0, filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03,
                 power_factors=_MS_SSIM_WEIGHTS):
    r"""One minus the multi-scale SSIM of two images (pytorch-msssim's ``ms_ssim``).

    At scales :math:`j = 1..J` (``J = len(power_factors)``; each halves the image by a 2x2
    average pool, an odd side zero-padded first as ``avg_pool2d(padding=side % 2)``), the
    contrast-structure term :math:`cs_j` and, at the coarsest, the SSIM are averaged over
    each channel's map, clipped at 0 and combined per channel, then averaged over channels:

    .. math::
        \ell = 1 - \operatorname{mean}_c \Big[\mathrm{SSIM}_{J,c}^{\,\beta_J} \prod_{j<J} cs_{j,c}^{\,\beta_j}\Big]

    Args:
      pred: images ``[..., H, W, C]``, floating point, values in ``[0, max_val]``.
      target: reference images, the same shape; ``H, W >= (filter_size - 1) 2^{J-1} + 1``
        (at least 161 for the defaults; pytorch-msssim asks for more than 160).
      max_val: the dynamic range :math:`L`, ``> 0`` (traced).
      filter_size: static, the window's number of taps (11).
      filter_sigma: the window's standard deviation in pixels, ``> 0`` (traced).
      k1: the luminance constant, ``> 0`` (traced).
      k2: the contrast constant, ``> 0`` (traced).
      power_factors: static, the exponents :math:`\beta_j` from the finest scale to the
        coarsest (Wang et al.'s five by default).

    Returns:
      The reduced loss, in ``[0, 1]`` (0 for identical images); with ``reduction="none"``
      one loss per image, shape ``[...]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x = jnp.linspace(0.0, 1.0, 48 * 48).reshape(1, 48, 48, 1)
      >>> round(float(jaxloss.ms_ssim_loss(x, x, filter_size=3, power_factors=(0.5, 0.5))), 6)
      0.0
      >>> round(float(jaxloss.ms_ssim_loss(x, x ** 2, filter_size=3, power_factors=(0.5, 0.5))), 4)
      0.2078
    """
    opts = dict(max_val=max_val, filter_size=filter_size, filter_sigma=filter_sigma, k1=k1, k2=k2)
    value = 1.0
    for j, beta in enumerate(power_factors):
        ssim, cs = _ssim_maps(pred, target, **opts)
        if j == len(power_factors) - 1:
            value = value * _power(jnp.mean(ssim, axis=(-3, -2)), beta)
        else:
            value = value * _power(jnp.mean(cs, axis=(-3, -2)), beta)
            pred, target = _half(pred), _half(target)
    return 1.0 - jnp.mean(value, axis=-1)


def _tv_sample(rng):
    return (rng.uniform(size=(3, 5, 6, 2)).astype("float32"),)


@image(layout=_IMAGES, validate=_validate_images, example=Example(_tv_sample, grad_order=1))
def total_variation_loss(images):
    r"""Anisotropic total variation: the summed absolute differences of neighbouring pixels
    (``tf.image.total_variation``).

    .. math::
        \ell = \sum_{h,w,c} |x_{h+1,w,c} - x_{h,w,c}| + |x_{h,w+1,c} - x_{h,w,c}|

    Summed, not averaged, over each image (TensorFlow's convention; divide by ``H W C``
    for a per-pixel mean). The derivative of :math:`|\cdot|` at 0 is 0, so a flat image
    has a zero gradient.

    Args:
      images: ``[..., H, W, C]``, floating point.

    Returns:
      The reduced loss; with ``reduction="none"`` one value per image, shape ``[...]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x = jnp.array([[0.0, 1.0], [1.0, 3.0]])[..., None]   # one 2x2 image, 1 channel
      >>> float(jaxloss.total_variation_loss(x))   # |1-0| + |3-1| + |1-0| + |3-1|
      6.0
    """
    dh = abs0(images[..., 1:, :, :] - images[..., :-1, :, :])
    dw = abs0(images[..., :, 1:, :] - images[..., :, :-1, :])
    return jnp.sum(dh, axis=(-3, -2, -1)) + jnp.sum(dw, axis=(-3, -2, -1))


SSIMLoss = ssim_loss.Loss
MSSSIMLoss = ms_ssim_loss.Loss
TotalVariationLoss = total_variation_loss.Loss
