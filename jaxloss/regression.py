r"""Regression losses: per-element losses of a prediction against a target.

Every function here takes ``pred`` and ``target`` of the same shape (no implicit
broadcasting), returns the per-element loss for ``reduction="none"``, and
accepts ``weights`` and ``where`` broadcastable to that shape. Residuals are
``r = pred - target``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import lax

from ._checks import AXIS, FLAG, NONNEGATIVE, POSITIVE, UNIT, Interval
from ._core import Example, Layout, Role, builtin, optax_mean
from ._numerics import abs0

regression = builtin("regression")

__all__ = [
    "cosine_distance_loss", "CosineDistanceLoss",
    "gaussian_nll_loss", "GaussianNLLLoss",
    "general_robust_loss", "GeneralRobustLoss",
    "huber_loss", "HuberLoss",
    "log_cosh_loss", "LogCoshLoss",
    "mae_loss", "MAELoss",
    "mape_loss", "MAPELoss",
    "mse_loss", "MSELoss",
    "msle_loss", "MSLELoss",
    "poisson_nll_loss", "PoissonNLLLoss",
    "quantile_loss", "QuantileLoss",
    "smooth_l1_loss", "SmoothL1Loss",
]


def _pair(rng: np.random.Generator, n: int = 24, scale: float = 2.0) -> tuple:
    pred = rng.normal(size=(4, n // 4)).astype(np.float32) * scale
    target = rng.normal(size=(4, n // 4)).astype(np.float32) * scale
    return pred, target


def _positive_pair(rng: np.random.Generator) -> tuple:
    pred = rng.uniform(0.1, 3.0, size=(4, 6)).astype(np.float32)
    target = rng.uniform(0.1, 3.0, size=(4, 6)).astype(np.float32)
    return pred, target


@regression(example=Example(_pair, optax="squared_error", compare=optax_mean("squared_error")))
def mse_loss(pred, target):
    r"""Mean squared error.

    .. math:: \ell_i = (p_i - t_i)^2

    Args:
      pred: predictions, any shape, floating point.
      target: targets, the same shape as ``pred``.

    Returns:
      The reduced loss (float32 for bf16/f16/f32 inputs); with
      ``reduction="none"`` the per-element losses, shaped like ``pred``.

    The same as PyTorch's ``MSELoss``, Keras' ``MeanSquaredError`` and
    ``optax.losses.squared_error`` (twice ``optax.losses.l2_loss``, which has a 1/2).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> round(float(jaxloss.mse_loss(jnp.array([2.3, 1.2, 3.0, 0.8, 3.9]),
      ...                              jnp.array([2.5, 1.0, 3.2, 0.5, 4.1]))), 6)
      0.05
    """
    r = pred - target
    return r * r


def _plain_mae(pred, target):
    """jnp.mean(jnp.abs(p - t))"""
    return jnp.mean(jnp.abs(pred - target))


@regression(example=Example(_pair, grad_order=1, compare=_plain_mae))  # optax has no mean absolute error
def mae_loss(pred, target):
    r"""Mean absolute error (L1 loss).

    .. math:: \ell_i = |p_i - t_i|

    The gradient at a zero residual is 0 (the subgradient jaxloss uses
    everywhere), not ``sign(0) = 1``.

    Args:
      pred: predictions, any shape, floating point.
      target: targets, the same shape as ``pred``.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-element losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> float(jaxloss.mae_loss(jnp.array([1.0, 2.0]), jnp.array([0.0, 4.0])))
      1.5
    """
    return abs0(pred - target)


@regression(checks={"delta": POSITIVE},
            example=Example(_pair, sweep=("delta", (0.5, 1.0, 2.0, 3.0)), grad_order=1, optax="huber_loss",
                            compare=optax_mean("huber_loss", delta=1.0)))
def huber_loss(pred, target, *, delta=1.0):
    r"""Huber loss: quadratic for small residuals, linear for large ones.

    .. math::
       \ell_i = \begin{cases}
         \tfrac12 r_i^2 & |r_i| \le \delta \\
         \delta\,(|r_i| - \tfrac12\delta) & \text{otherwise}
       \end{cases}, \qquad r_i = p_i - t_i

    Its gradient is :math:`\mathrm{clip}(r_i, -\delta, \delta)`. Equals PyTorch's
    ``HuberLoss`` and ``optax.losses.huber_loss``; ``smooth_l1_loss(beta)`` is
    ``huber_loss(delta=beta) / beta``; as :math:`\delta \to \infty` it tends to
    ``0.5 * mse_loss``.

    Args:
      pred: predictions, any shape, floating point.
      target: targets, the same shape as ``pred``.
      delta: the threshold, ``delta > 0`` (traced: a sweep does not recompile).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-element losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> float(jaxloss.huber_loss(jnp.array([[1.5, 2.0, 3.5, 4.0]]),
      ...                          jnp.array([[1.0, 2.5, 3.0, 5.0]])))
      0.21875
    """
    r = pred - target
    a = jnp.abs(r)
    return jnp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


@regression(checks={"beta": NONNEGATIVE}, example=Example(_pair, sweep=("beta", (0.25, 0.5, 1.0, 2.0)), grad_order=1))
def smooth_l1_loss(pred, target, *, beta=1.0):
    r"""Smooth L1 loss (PyTorch's ``SmoothL1Loss``).

    .. math::
       \ell_i = \begin{cases}
         \tfrac{1}{2\beta} r_i^2 & |r_i| < \beta \\
         |r_i| - \tfrac12\beta & \text{otherwise}
       \end{cases}

    ``beta = 0`` is exactly the L1 loss (``mae_loss``), with finite gradients;
    for ``beta > 0`` it equals ``huber_loss(delta=beta) / beta``.

    Args:
      pred: predictions, any shape, floating point.
      target: targets, the same shape as ``pred``.
      beta: the threshold, ``beta >= 0``.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-element losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> float(jaxloss.smooth_l1_loss(jnp.array([0.5, 3.0]), jnp.zeros(2), beta=1.0))
      1.3125
    """
    r = pred - target
    a = abs0(r)
    quadratic = a < beta
    safe_beta = jnp.where(quadratic, beta, 1.0)
    return jnp.where(quadratic, 0.5 * r * r / safe_beta, a - 0.5 * beta)


_LOG_COSH_SWITCH = 0.6
# Taylor coefficients of log cosh in r^2 (from the Bernoulli numbers), lowest first.
_LOG_COSH_SERIES = (1 / 2, -1 / 12, 1 / 45, -17 / 2520, 31 / 14175, -691 / 935550, 10922 / 42567525)


@regression(example=Example(_pair, optax="log_cosh", compare=optax_mean("log_cosh")))
def log_cosh_loss(pred, target):
    r"""Log-cosh loss.

    .. math:: \ell_i = \log\cosh(r_i) = |r_i| + \operatorname{log1p}(e^{-2|r_i|}) - \log 2

    The right-hand form is used for :math:`|r_i| \ge 0.6`: it is finite for
    residuals of 1e4, 1e30 and more, where ``cosh`` overflows. Below 0.6, where
    it would cancel to a few correct digits (and to 0 for tiny residuals), the
    Taylor series :math:`\sum_{n=1}^{7} \frac{2^{2n}(2^{2n}-1)B_{2n}}{2n\,(2n)!} r^{2n}`
    is used (relative error below 2e-7). The gradient is :math:`\tanh(r_i)`.

    Args:
      pred: predictions, any shape, floating point.
      target: targets, the same shape as ``pred``.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-element losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> round(float(jaxloss.log_cosh_loss(jnp.array([1e4]), jnp.array([0.0]))), 2)
      9999.31
    """
    r = pred - target
    a = jnp.abs(r)
    small = a < _LOG_COSH_SWITCH
    r2 = jnp.square(jnp.where(small, r, 0.0))  # keeps inf out of the unused branch's gradient
    series = _LOG_COSH_SERIES[-1]
    for c in _LOG_COSH_SERIES[-2::-1]:
        series = series * r2 + c
    return jnp.where(small, series * r2, a + jnp.log1p(jnp.exp(-2.0 * a)) - math.log(2.0))


@regression(checks={"quantile": UNIT},
            example=Example(_pair, sweep=("quantile", (0.1, 0.25, 0.5, 0.9)), grad_order=1))
def quantile_loss(pred, target, *, quantile=0.5):
    r"""Quantile (pinball) loss for the ``quantile``-th conditional quantile.

    .. math:: \ell_i = \max\bigl(q\,(t_i - p_i),\ (q - 1)\,(t_i - p_i)\bigr)

    Under-prediction costs ``q`` per unit and over-prediction ``1 - q``;
    ``quantile=0.5`` is half the absolute error. The gradient at a zero residual
    is 0.

    Args:
      pred: predictions, any shape, floating point.
      target: targets, the same shape as ``pred``.
      quantile: ``q`` in ``[0, 1]``.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-element losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> float(jaxloss.quantile_loss(jnp.array([0.0, 0.0]), jnp.array([1.0, -1.0]), quantile=0.9))
      0.5
    """
    u = target - pred
    return jnp.where(u > 0, quantile * u, jnp.where(u < 0, (quantile - 1.0) * u, 0.0 * u))


def _poisson_sample(rng: np.random.Generator) -> tuple:
    pred = rng.normal(size=(4, 6)).astype(np.float32) * 0.5
    target = rng.poisson(2.0, size=(4, 6)).astype(np.float32)
    return pred, target


@regression(static={"log_input": FLAG, "full": FLAG}, checks={"eps": POSITIVE}, example=Example(_poisson_sample))
def poisson_nll_loss(pred, target, *, log_input=True, full=False, eps=1e-8):
    r"""Negative log-likelihood of a Poisson target (PyTorch's ``PoissonNLLLoss``).

    With ``log_input=True`` the prediction is the log-rate :math:`\log\lambda`:

    .. math:: \ell_i = e^{p_i} - t_i\,p_i

    with ``log_input=False`` it is the rate itself:

    .. math:: \ell_i = p_i - t_i \log(p_i + \varepsilon)

    ``full=True`` adds the Stirling term :math:`t\log t - t + \tfrac12\log(2\pi t)`
    for :math:`t > 1` (0 otherwise), as PyTorch does; the constant
    :math:`\log t!` is otherwise dropped.

    Args:
      pred: log-rates (``log_input=True``) or rates ``>= 0``; any shape.
      target: counts (floating point, ``>= 0``), the same shape as ``pred``.
      log_input: static flag, see above.
      full: static flag, add the Stirling approximation term.
      eps: ``> 0``, added inside the log when ``log_input=False``.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-element losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> float(jaxloss.poisson_nll_loss(jnp.array([0.0]), jnp.array([2.0])))
      1.0
    """
    if log_input:
        out = jnp.exp(pred) - target * pred
    else:
        out = pred - target * jnp.log(pred + eps)
    if full:
        big = target > 1
        t = jnp.where(big, target, 1.0)
        stirling = t * jnp.log(t) - t + 0.5 * jnp.log(2.0 * math.pi * t)
        out = out + jnp.where(big, stirling, 0.0)
    return out


def _gaussian_sample(rng: np.random.Generator) -> tuple:
    pred, target = _pair(rng)
    var = rng.uniform(0.5, 2.0, size=pred.shape).astype(np.float32)
    return pred, target, var


def _var_layout(pred_shape: tuple, var_shape: tuple) -> str | None:
    """How ``var`` lines up with ``pred`` (PyTorch's ``GaussianNLLLoss`` rules):
    ``"same"``, ``"scalar"``, ``"row"`` (one dimension fewer: one variance per
    row, ``var[..., None]``), ``"one"`` (the same shape but for one dimension of
    size 1), or None (any other shape is an error)."""
    if var_shape == pred_shape:
        return "same"
    if var_shape == ():
        return "scalar"
    if len(pred_shape) >= 1 and var_shape == pred_shape[:-1]:
        return "row"
    if len(var_shape) == len(pred_shape):
        differ = [i for i, (v, p) in enumerate(zip(var_shape, pred_shape)) if v != p]
        if len(differ) == 1 and var_shape[differ[0]] == 1:
            return "one"
    return None


def _gaussian_validate(name, pred, target, var, **_):
    if _var_layout(tuple(pred.shape), tuple(var.shape)) is None:
        p = tuple(pred.shape)
        raise ValueError(
            f"{name}: var of shape {tuple(var.shape)} does not fit pred of shape {p}: it must have pred's "
            f"shape, pred's shape with one dimension of size 1, pred's shape without its last dimension "
            f"{p[:-1]} (one variance per row), or be a scalar"
        )


@regression(static={"full": FLAG}, checks={"eps": POSITIVE}, layout=Layout({"var": Role(shape="broadcast")}),
            validate=_gaussian_validate, example=Example(_gaussian_sample, differentiable=(0, 2)))
def gaussian_nll_loss(pred, target, var, *, full=False, eps=1e-6):
    r"""Negative log-likelihood of a Gaussian target (PyTorch's ``GaussianNLLLoss``).

    .. math:: \ell_i = \tfrac12\Bigl(\log v_i + \frac{(p_i - t_i)^2}{v_i}\Bigr)
              \;[+\ \tfrac12 \log 2\pi \text{ if full}],
              \qquad v_i = \max(\mathrm{var}_i, \varepsilon)

    The variance is clamped from below at ``eps`` for stability (as PyTorch); where
    it is clamped its gradient is 0.

    Args:
      pred: predicted means, any shape, floating point.
      target: targets, the same shape as ``pred``.
      var: predicted variances, ``>= 0``, shaped as PyTorch allows (and no
        other way): the shape of ``pred``; that shape with one dimension of size
        1 (shared along it); that shape without its last dimension (one
        variance per row, read as ``var[..., None]``); or a scalar (one variance
        for all). Any other shape is a ``ValueError``, never a broadcast.
      full: static flag, add the constant :math:`\tfrac12\log 2\pi`.
      eps: ``> 0``, the variance floor.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-element losses, shaped
      like ``pred``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> float(jaxloss.gaussian_nll_loss(jnp.array([1.0]), jnp.array([3.0]), jnp.array([1.0])))
      2.0
    """
    if _var_layout(pred.shape, var.shape) == "row":
        var = var[..., None]
    v = jnp.maximum(var, eps)
    r = pred - target
    out = 0.5 * (jnp.log(v) + r * r / v)
    if full:
        out = out + 0.5 * math.log(2.0 * math.pi)
    return out


@regression(example=Example(_positive_pair))
def msle_loss(pred, target):
    r"""Mean squared logarithmic error (Keras' ``MeanSquaredLogarithmicError``).

    .. math:: \ell_i = \bigl(\log(1 + \max(p_i, 0)) - \log(1 + \max(t_i, 0))\bigr)^2

    Inputs are clamped at 0 from below, as Keras does, so negative predictions
    give a finite loss (and a zero gradient while negative) rather than NaN.

    Args:
      pred: predictions, any shape, floating point (meaningful for ``>= 0``).
      target: targets ``>= 0``, the same shape as ``pred``.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-element losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss, math
      >>> round(float(jaxloss.msle_loss(jnp.array([math.e - 1]), jnp.array([0.0]))), 6)
      1.0
    """
    d = jnp.log1p(jnp.maximum(pred, 0.0)) - jnp.log1p(jnp.maximum(target, 0.0))
    return d * d


@regression(checks={"eps": POSITIVE}, example=Example(_positive_pair, grad_order=1))
def mape_loss(pred, target, *, eps=1e-7):
    r"""Mean absolute percentage error (Keras' ``MeanAbsolutePercentageError``).

    .. math:: \ell_i = 100 \cdot \frac{|p_i - t_i|}{\max(|t_i|, \varepsilon)}

    In percent, as Keras. The denominator is floored at ``eps`` so a zero
    target gives a large finite loss rather than inf.

    Args:
      pred: predictions, any shape, floating point.
      target: targets, the same shape as ``pred``.
      eps: ``> 0``, the denominator floor.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-element losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> float(jaxloss.mape_loss(jnp.array([110.0, 90.0]), jnp.array([100.0, 100.0])))
      10.0
    """
    return 100.0 * abs0(pred - target) / jnp.maximum(jnp.abs(target), eps)


# ---- Barron's general robust loss --------------------------------------------------------

# expm1(u) / u = sum_k u^k / (k + 1)!, its Taylor series for |u| < 1/2 (terms to u^17: the
# truncation is below 1e-21, also in the derivative); expm1(u) / u itself elsewhere.
_EXPM1_OVER_U = tuple(1.0 / math.factorial(k + 1) for k in range(18))


def _expm1_over_u(u):
    small = jnp.abs(u) < 0.5
    us = jnp.where(small, u, 0.0)
    acc = jnp.full_like(u, _EXPM1_OVER_U[-1])
    for c in reversed(_EXPM1_OVER_U[:-1]):
        acc = acc * us + c
    ul = jnp.where(small, 1.0, u)
    return jnp.where(small, acc, jnp.expm1(ul) / ul)


def _robust_rho(z2, alpha):
    r""":math:`\rho` of a squared scaled residual ``z2``, for every ``alpha`` in
    ``[-inf, inf)``, in two exact forms that each avoid the other's cancellation:

    * (A) :math:`\tfrac{bL}{2} \cdot \frac{\operatorname{expm1}(\alpha L / 2)}{\alpha L / 2}`,
      :math:`b = |\alpha - 2|`, :math:`L = \operatorname{log1p}(z^2 / b)`: smooth
      through :math:`\alpha = 0` (a Taylor series there), used for :math:`\alpha \le 1`
      and wherever :math:`bL > 2`;
    * (B) :math:`\frac1\alpha \big[z^2 + (b + z^2) \operatorname{expm1}((\alpha - 2) L / 2)\big]`:
      no cancellation in the :math:`\alpha`-gradient as :math:`\alpha \to 2`, used for
      :math:`\alpha > 2` and for :math:`1 < \alpha < 2` with :math:`bL \le 2`;

    and the limits :math:`\tfrac12 z^2` at exactly 2 and :math:`1 - e^{-z^2/2}` at
    :math:`-\infty`, whose :math:`\alpha`-gradient is 0. Each form is evaluated at a
    safe ``alpha`` where the other is used (the double where)."""
    special = (alpha == 2.0) | jnp.isneginf(alpha)
    a = jnp.where(special, 1.0, alpha)
    b = jnp.abs(a - 2.0)
    log_term = jnp.log1p(z2 / b)
    use_b = (a > 2.0) | ((a > 1.0) & (b * log_term <= 2.0))
    form_a = 0.5 * b * log_term * _expm1_over_u(0.5 * a * log_term)
    ab = jnp.where(use_b, a, 3.0)
    bb = jnp.abs(ab - 2.0)
    form_b = (z2 + (bb + z2) * jnp.expm1(0.5 * (ab - 2.0) * jnp.log1p(z2 / bb))) / ab
    general = jnp.where(use_b, form_b, form_a)
    return jnp.where(alpha == 2.0, 0.5 * z2, jnp.where(jnp.isneginf(alpha), -jnp.expm1(-0.5 * z2), general))


@regression(checks={"alpha": Interval(-math.inf, math.inf, hi_open=True), "scale": POSITIVE},
            example=Example(_pair, sweep=("alpha", (-2.0, 0.0, 1.0, 2.0))))
def general_robust_loss(pred, target, *, alpha=1.0, scale=1.0):
    r"""Barron's general and adaptive robust loss, with a traced shape parameter.

    With :math:`z = (p - t) / c` and :math:`b = |\alpha - 2|`:

    .. math:: \rho(z, \alpha) = \frac{b}{\alpha}
              \Big[\Big(\frac{z^2}{b} + 1\Big)^{\alpha/2} - 1\Big]

    and its limits :math:`\tfrac12 z^2` at :math:`\alpha = 2`, :math:`\log(\tfrac12 z^2
    + 1)` at :math:`\alpha = 0` and :math:`1 - e^{-z^2/2}` as :math:`\alpha \to -\infty`.
    :math:`\alpha = 1` is the pseudo-Huber (Charbonnier) loss :math:`\sqrt{z^2 + 1} - 1`,
    :math:`\alpha = 0` Cauchy (Lorentzian), :math:`\alpha = -2` Geman-McClure and
    :math:`-\infty` Welsch; smaller :math:`\alpha` is more robust to outliers.
    (J. T. Barron, "A General and Adaptive Robust Loss Function", CVPR 2019.)

    ``alpha`` is traced and differentiable, so it can be learned with the model
    (Barron's adaptive loss adds the log of the partition function for that; this
    is the loss :math:`\rho` alone). It is computed in forms that are exact at and
    near the removable singularities: values and both gradients are accurate to
    float64 rounding at :math:`\alpha = \pm10^{-6}` and :math:`2 \pm 10^{-6}` (the
    :math:`\alpha`-gradient relative to the loss where it is much smaller than it,
    for :math:`|z| \ll 1`). The :math:`\alpha`-gradient is the true derivative, also at
    exactly 0; at exactly 2, where it is unbounded (:math:`\sim \log|\alpha - 2|`),
    and at :math:`-\infty` it is 0.

    Args:
      pred: predictions, any shape, floating point.
      target: targets, the same shape as ``pred``.
      alpha: the shape :math:`\alpha \in [-\infty, \infty)` (traced; a scalar or an
        array broadcastable to the inputs, e.g. one per output dimension).
      scale: the scale :math:`c > 0` of the quadratic bowl near 0 (traced).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-element losses, shaped
      like ``pred``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x = jnp.array([0.5, 1.0, 3.0])
      >>> jaxloss.general_robust_loss(x, jnp.zeros(3), alpha=1.0, reduction="none").round(6)   # sqrt(x^2 + 1) - 1
      Array([0.118034, 0.414214, 2.162278], dtype=float32)
      >>> jaxloss.general_robust_loss(x, jnp.zeros(3), alpha=2.0, reduction="none")   # x^2 / 2
      Array([0.125, 0.5  , 4.5  ], dtype=float32)
    """
    z = (pred - target) / scale
    return _robust_rho(z * z, alpha)

def _direction_pair(rng: np.random.Generator) -> tuple:
    pred = rng.normal(size=(6, 4)).astype(np.float32)
    target = rng.normal(size=(6, 4)).astype(np.float32)
    return pred, target


@regression(static={"axis": AXIS}, layout=Layout(axis="axis"),
            example=Example(_direction_pair, differentiable=(0, 1), optax="cosine_distance",
                            compare=optax_mean("cosine_distance")))
def cosine_distance_loss(pred, target, *, axis=-1):
    r"""Cosine distance between prediction and target vectors (optax's ``cosine_distance``).

    .. math:: \ell_i = 1 - \frac{\langle p_i, t_i\rangle}
              {\sqrt{\max(\lVert p_i\rVert^2, \varepsilon)}\,\sqrt{\max(\lVert t_i\rVert^2, \varepsilon)}}

    with :math:`\varepsilon` the machine epsilon of the compute dtype (optax's
    ``epsilon`` floor, there 0 by default). The loss lies in ``[0, 2]``; Keras's
    ``CosineSimilarity`` loss is this minus 1 (it returns :math:`-\cos`). A
    zero vector has cosine 0, so the loss is 1 there (optax gives NaN), and the
    gradient is finite: the floor makes the cosine linear in a vector whose
    squared norm is below :math:`\varepsilon`, with gradient
    :math:`\hat t / \sqrt{\varepsilon}` at the zero vector (:math:`\hat t` the
    other vector's direction); two zero vectors give zero gradients. Computed
    from three per-example sums (no normalised copies of the inputs). It lives
    with the regression losses, as in Keras and optax: a prediction against a
    target vector (see :func:`cosine_embedding_loss` for pairs with a
    similar/dissimilar label).

    Args:
      pred: ``[..., D, ...]`` predictions, floating point, vectors along ``axis``.
      target: targets, the same shape.
      axis: the vector axis (static).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-example distances
      (the inputs' shape without ``axis``).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> p = jnp.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]); t = jnp.array([[0.0, 2.0], [2.0, 2.0], [1.0, 0.0]])
      >>> jaxloss.cosine_distance_loss(p, t, reduction="none").round(6)
      Array([1., 0., 1.], dtype=float32)
    """
    eps = jnp.finfo(pred.dtype).eps
    dot = jnp.sum(pred * target, axis=axis)
    pp = jnp.sum(pred * pred, axis=axis)
    tt = jnp.sum(target * target, axis=axis)
    return 1.0 - dot * lax.rsqrt(jnp.maximum(pp, eps)) * lax.rsqrt(jnp.maximum(tt, eps))


MSELoss = mse_loss.Loss
MAELoss = mae_loss.Loss
HuberLoss = huber_loss.Loss
SmoothL1Loss = smooth_l1_loss.Loss
LogCoshLoss = log_cosh_loss.Loss
QuantileLoss = quantile_loss.Loss
PoissonNLLLoss = poisson_nll_loss.Loss
GaussianNLLLoss = gaussian_nll_loss.Loss
MSLELoss = msle_loss.Loss
MAPELoss = mape_loss.Loss
GeneralRobustLoss = general_robust_loss.Loss
CosineDistanceLoss = cosine_distance_loss.Loss
