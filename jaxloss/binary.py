r"""Binary classification losses.

Every loss here takes predictions and targets of the same shape (every entry is
an independent binary problem) and returns per-element losses for
``reduction="none"``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import NONNEGATIVE, PROBABILITIES, SIGNS, UNIT, UNIT_HALF_OPEN, check_broadcastable, is_concrete
from ._core import Example, Layout, builtin
from ._numerics import pos, softplus

binary = builtin("binary")

__all__ = [
    "binary_cross_entropy", "BinaryCrossEntropy",
    "binary_cross_entropy_with_logits", "BinaryCrossEntropyWithLogits",
    "hinge_loss", "HingeLoss",
    "sigmoid_focal_loss", "SigmoidFocalLoss",
    "squared_hinge_loss", "SquaredHingeLoss",
]

# ---------------------------------------------------------------------------
# Binary
# ---------------------------------------------------------------------------

_LOG_FLOOR = -100.0  # PyTorch's clamp of log(p) in binary_cross_entropy
_GRAD_EPS = 1e-12  # PyTorch's floor of p (1 - p) in its gradient


def _logit_sample(rng: np.random.Generator) -> tuple:
    logits = (rng.normal(size=(4, 6)) * 2.0).astype(np.float32)
    targets = (rng.uniform(size=(4, 6)) < 0.4).astype(np.float32)
    return logits, targets


def _prob_sample(rng: np.random.Generator) -> tuple:
    probs = rng.uniform(0.05, 0.95, size=(4, 6)).astype(np.float32)
    targets = (rng.uniform(size=(4, 6)) < 0.4).astype(np.float32)
    return probs, targets


def _sign_sample(rng: np.random.Generator) -> tuple:
    scores = (rng.normal(size=(4, 6)) * 2.0).astype(np.float32)
    targets = np.where(rng.uniform(size=(4, 6)) < 0.5, 1.0, -1.0).astype(np.float32)
    return scores, targets


@jax.custom_jvp
def _bce_probs(p, t):
    log_p = jnp.maximum(jnp.log(p), _LOG_FLOOR)
    log_q = jnp.maximum(jnp.log1p(-p), _LOG_FLOOR)
    return -(t * log_p + (1.0 - t) * log_q)


@_bce_probs.defjvp
def _bce_probs_jvp(primals, tangents):
    p, t = primals
    dp, dt = tangents
    log_p = jnp.maximum(jnp.log(p), _LOG_FLOOR)
    log_q = jnp.maximum(jnp.log1p(-p), _LOG_FLOOR)
    value = -(t * log_p + (1.0 - t) * log_q)
    dvalue_dp = (p - t) / jnp.maximum(p * (1.0 - p), _GRAD_EPS)
    return value, dvalue_dp * dp + (log_q - log_p) * dt


@binary(layout=Layout(values={"probs": PROBABILITIES, "targets": PROBABILITIES}), example=Example(_prob_sample))
def binary_cross_entropy(probs, targets):
    r"""Binary cross-entropy on probabilities (PyTorch's ``BCELoss``).

    .. math:: \ell_i = -\bigl(t_i \max(\log p_i, -100) + (1 - t_i)\max(\log(1 - p_i), -100)\bigr)

    The logs are clamped at -100 as in PyTorch, so probabilities of exactly 0 and
    1 give a finite loss; the gradient is
    :math:`(p - t) / \max(p(1 - p), 10^{-12})`, also PyTorch's, so it is finite
    there too and still points the right way. Prefer
    :func:`binary_cross_entropy_with_logits` when you have logits: it is exact
    where this one clamps.

    Args:
      probs: predicted probabilities in ``[0, 1]``, any shape.
      targets: targets in ``[0, 1]`` (hard or soft), the same shape.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-element losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> round(float(jaxloss.binary_cross_entropy(jnp.array([0.8, 0.1]), jnp.array([1.0, 0.0]))), 6)
      0.164252
    """
    return _bce_probs(probs, targets)


def _smooth(targets, label_smoothing):
    return targets * (1.0 - label_smoothing) + 0.5 * label_smoothing


def _bce_logits(x, t):
    """``softplus(x) - t x``, grouped as ``(max(x, 0) - t x) + log1p(e^{-|x|})`` so
    the first part is exactly 0 for a confident correct hard target (no cancellation)."""
    return (pos(x) - t * x) + jnp.log1p(jnp.exp(-jnp.abs(x)))


def _bce_logits_validate(name, logits, targets, *, pos_weight, **_):
    if pos_weight is not None:
        check_broadcastable(name, "pos_weight", jnp.shape(pos_weight), logits.shape)


_TARGETS = Layout(values={"targets": PROBABILITIES})


@binary(checks={"label_smoothing": UNIT_HALF_OPEN, "pos_weight": NONNEGATIVE}, layout=_TARGETS,
        validate=_bce_logits_validate,
        example=Example(_logit_sample, sweep=("label_smoothing", (0.0, 0.05, 0.1, 0.2)),
                        optax="sigmoid_binary_cross_entropy"))
def binary_cross_entropy_with_logits(logits, targets, *, pos_weight=None, label_smoothing=0.0):
    r"""Binary cross-entropy on logits (PyTorch's ``BCEWithLogitsLoss``).

    With :math:`\tilde t = t(1 - \epsilon) + \epsilon/2` (label smoothing
    :math:`\epsilon`, as Keras and optax) and positive-class weight :math:`w_+`:

    .. math:: \ell_i = w_+ \tilde t_i \operatorname{softplus}(-x_i) + (1 - \tilde t_i)\operatorname{softplus}(x_i)

    which for :math:`w_+ = 1` is :math:`\operatorname{softplus}(x) - \tilde t x`,
    computed as :math:`(\max(x, 0) - \tilde t x) + \operatorname{log1p}(e^{-|x|})`:
    finite for any finite logit and accurate to the last bit even for a confident
    correct prediction (``x = 30, t = 1`` gives ``9.4e-14``, not 0). The gradient is
    :math:`\sigma(x) - \tilde t` (for :math:`w_+ = 1`).

    Args:
      logits: any shape, floating point.
      targets: targets in ``[0, 1]`` (hard or soft), the same shape.
      pos_weight: ``None`` or a weight ``>= 0`` for the positive term, broadcastable
        to ``logits`` (e.g. one per class along the last axis, as PyTorch).
      label_smoothing: :math:`\epsilon` in ``[0, 1)``.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-element losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x = jnp.array([2.3, -1.5, 0.8, -0.3, 1.7]); t = jnp.array([1.0, 0, 1, 0, 1])
      >>> round(float(jaxloss.binary_cross_entropy_with_logits(x, t)), 6)
      0.27804
    """
    t = _smooth(targets, label_smoothing)
    if pos_weight is None:
        return _bce_logits(logits, t)
    return pos_weight * t * softplus(-logits) + (1.0 - t) * softplus(logits)


@binary(checks={"alpha": UNIT, "gamma": NONNEGATIVE}, layout=_TARGETS,
        example=Example(_logit_sample, sweep=("gamma", (0.0, 0.5, 1.0, 2.0)), optax="sigmoid_focal_loss"))
def sigmoid_focal_loss(logits, targets, *, alpha=0.25, gamma=2.0):
    r"""Sigmoid focal loss (Lin et al., 2017, "Focal Loss for Dense Object Detection").

    .. math:: \ell_i = \alpha_t (1 - p_t)^\gamma\,\mathrm{BCE}(x_i, t_i),\quad
              p_t = p t + (1 - p)(1 - t),\quad \alpha_t = \alpha t + (1 - \alpha)(1 - t),
              \quad p = \sigma(x)

    The modulating factor is computed in log space,
    :math:`(1 - p_t)^\gamma = \exp(\gamma \log(1 - p_t))` with
    :math:`\log(1 - p_t) = \log(a + b e^{-|x|}) - \operatorname{log1p}(e^{-|x|})`,
    :math:`(a, b) = (1 - t, t)` for :math:`x \ge 0` and :math:`(t, 1 - t)` otherwise
    (one ``exp`` and two logs in all, shared with the cross-entropy),
    so value, gradient and Hessian stay finite for every ``gamma >= 0``
    (including ``0 < gamma < 1``, where :math:`u^\gamma` has an infinite slope at
    0) and logits of :math:`\pm 100` and beyond.

    Args:
      logits: any shape, floating point.
      targets: targets in ``[0, 1]``, the same shape.
      alpha: weight of the positive class in ``[0, 1]`` (RetinaNet's
        :math:`\alpha_t`), or ``None`` to disable the weighting.
      gamma: focusing parameter ``>= 0``; ``gamma=0, alpha=None`` is
        :func:`binary_cross_entropy_with_logits`.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-element losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x = jnp.array([2.0, -1.0]); t = jnp.array([1.0, 1.0])
      >>> round(float(jaxloss.sigmoid_focal_loss(x, t, alpha=None, gamma=0.0)), 6)
      0.720095
    """
    # One exp and two logs serve the cross-entropy and the modulating factor:
    # with E = exp(-|x|) and L = log1p(E), softplus(+-x) = max(+-x, 0) + L and
    # 1 - p_t = exp(-L) * (a + b E), (a, b) = (1 - t, t) for x >= 0, (t, 1 - t) below.
    ax = jnp.abs(logits)
    e = jnp.exp(-ax)
    l = jnp.log1p(e)
    ce = (pos(logits) - targets * logits) + l
    nonneg = logits >= 0
    inner = jnp.where(nonneg, (1.0 - targets) + targets * e, targets + (1.0 - targets) * e)
    positive = inner > 0
    # inner underflows to 0 only when a = 0 (a confident, correct hard target), where log(a + bE) = -|x|.
    log_inner = jnp.where(positive, jnp.log(jnp.where(positive, inner, 1.0)), -ax)
    log_one_minus_pt = log_inner - l
    out = jnp.exp(gamma * log_one_minus_pt) * ce
    if alpha is not None:
        out = (alpha * targets + (1.0 - alpha) * (1.0 - targets)) * out
    return out


def _hinge(scores, targets):
    """``max(0, 1 - y s)`` with ``y = +1`` where ``targets > 0`` and -1 elsewhere, so
    {0, 1} and {-1, +1} targets give the same value; gradient 0 at the kink.
    (Two selects: measured faster than ``jax.nn.relu`` or ``jnp.maximum``.)"""
    m = jnp.where(targets > 0, scores, -scores)
    return jnp.where(m < 1.0, 1.0 - m, 0.0)


def _hinge_validate(name, scores, targets, **_):
    if is_concrete(targets):
        t = np.asarray(targets)
        t = t[~np.isnan(t)]  # NaN may sit in masked-out entries
        if not np.all(np.isin(t, (-1, 0, 1))):
            raise ValueError(f"{name}: targets must be in {{0, 1}} or {{-1, +1}}, got values {np.unique(t)[:5]}")


_SIGNED = Layout(values={"targets": SIGNS})


@binary(layout=_SIGNED, validate=_hinge_validate, example=Example(_sign_sample, grad_order=1, optax="hinge_loss"))
def hinge_loss(scores, targets):
    r"""Hinge loss (binary SVM).

    .. math:: \ell_i = \max(0,\ 1 - y_i s_i),\qquad y_i = +1 \text{ if } t_i > 0 \text{ else } -1

    Targets may be in ``{0, 1}`` or in ``{-1, +1}``; both give the same loss
    (0 and -1 are the negative class). Other values raise ``ValueError`` when
    the targets are concrete. At the kink the gradient is 0.

    Args:
      scores: real-valued scores (not probabilities), any shape.
      targets: ``{0, 1}`` or ``{-1, +1}`` labels (floating point), the same shape.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-element losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> float(jaxloss.hinge_loss(jnp.array([0.5, -2.0]), jnp.array([1.0, 0.0])))
      0.25
    """
    return _hinge(scores, targets)


@binary(layout=_SIGNED, validate=_hinge_validate, example=Example(_sign_sample, grad_order=1))
def squared_hinge_loss(scores, targets):
    r"""Squared hinge loss.

    .. math:: \ell_i = \max(0,\ 1 - y_i s_i)^2,\qquad y_i = +1 \text{ if } t_i > 0 \text{ else } -1

    Targets may be in ``{0, 1}`` or in ``{-1, +1}`` (see :func:`hinge_loss`).

    Args:
      scores: real-valued scores, any shape.
      targets: ``{0, 1}`` or ``{-1, +1}`` labels (floating point), the same shape.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-element losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> float(jaxloss.squared_hinge_loss(jnp.array([0.5, -2.0]), jnp.array([1.0, 0.0])))
      0.125
    """
    m = _hinge(scores, targets)
    return m * m


BinaryCrossEntropy = binary_cross_entropy.Loss
BinaryCrossEntropyWithLogits = binary_cross_entropy_with_logits.Loss
SigmoidFocalLoss = sigmoid_focal_loss.Loss
HingeLoss = hinge_loss.Loss
SquaredHingeLoss = squared_hinge_loss.Loss
