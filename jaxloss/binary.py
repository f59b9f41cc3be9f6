r"""Binary classification losses.

Every loss here takes predictions and targets of the same shape (every entry is
an independent binary problem) and returns per-element losses for
``reduction="none"``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import (
    NONNEGATIVE,
    PROBABILITIES,
    SIGNS,
    UNIT,
    UNIT_HALF_OPEN,
    check_broadcastable,
    check_class_vector,
    is_concrete,
)
from ._core import Example, Layout, Role, builtin, optax_mean
from ._numerics import pos, softplus

binary = builtin("binary")

__all__ = [
    "asymmetric_loss", "AsymmetricLoss",
    "binary_cross_entropy", "BinaryCrossEntropy",
    "binary_cross_entropy_with_logits", "BinaryCrossEntropyWithLogits",
    "hinge_loss", "HingeLoss",
    "multilabel_soft_margin_loss", "MultilabelSoftMarginLoss",
    "perceptron_loss", "PerceptronLoss",
    "sigmoid_focal_loss", "SigmoidFocalLoss",
    "soft_margin_loss", "SoftMarginLoss",
    "sparsemax_loss", "SparsemaxLoss",
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


@binary(layout=Layout({"probs": Role(domain=PROBABILITIES), "targets": Role(domain=PROBABILITIES)}),
        example=Example(_prob_sample))
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


_TARGETS = Layout({"targets": Role(domain=PROBABILITIES)})


@binary(checks={"label_smoothing": UNIT_HALF_OPEN, "pos_weight": NONNEGATIVE}, layout=_TARGETS,
        validate=_bce_logits_validate,
        example=Example(_logit_sample, sweep=("label_smoothing", (0.0, 0.05, 0.1, 0.2)),
                        optax="sigmoid_binary_cross_entropy",
                        compare=optax_mean("sigmoid_binary_cross_entropy")))
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


@binary(checks={"alpha": UNIT, "gamma": NONNEGATIVE, "label_smoothing": UNIT_HALF_OPEN}, layout=_TARGETS,
        example=Example(_logit_sample, sweep=("gamma", (0.0, 0.5, 1.0, 2.0)), optax="sigmoid_focal_loss",
                        compare=optax_mean("sigmoid_focal_loss", alpha=0.25, gamma=2.0)))
def sigmoid_focal_loss(logits, targets, *, alpha=0.25, gamma=2.0, label_smoothing=0.0):
    r"""Sigmoid focal loss (Lin et al., 2017, "Focal Loss for Dense Object Detection").

    .. math:: \ell_i = \alpha_t (1 - p_t)^\gamma\,\mathrm{BCE}(x_i, t_i),\quad
              p_t = p t + (1 - p)(1 - t),\quad \alpha_t = \alpha t + (1 - \alpha)(1 - t),
              \quad p = \sigma(x)

    Soft targets in ``[0, 1]`` enter every term as they are, and label
    smoothing :math:`\epsilon` first replaces :math:`t` by
    :math:`\tilde t = t(1 - \epsilon) + \epsilon/2` in the cross-entropy,
    :math:`p_t` and :math:`\alpha_t` alike, as Keras's
    ``BinaryFocalCrossentropy(label_smoothing=...)`` (and optax's
    ``sigmoid_focal_loss`` on soft labels); hard targets without smoothing give
    the RetinaNet loss unchanged.

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
      label_smoothing: :math:`\epsilon` in ``[0, 1)``: targets become
        :math:`t(1 - \epsilon) + \epsilon/2` (Keras's smoothing).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-element losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x = jnp.array([2.0, -1.0]); t = jnp.array([1.0, 1.0])
      >>> round(float(jaxloss.sigmoid_focal_loss(x, t, alpha=None, gamma=0.0)), 6)
      0.720095
    """
    targets = _smooth(targets, label_smoothing)  # exactly the targets for label_smoothing = 0
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


_SIGNED = Layout({"targets": Role(domain=SIGNS)})


def _signs(targets):
    """{0, 1} or {-1, 1} targets as optax's {-1, 1} labels."""
    return jnp.where(targets > 0, 1.0, -1.0).astype(targets.dtype)


@binary(layout=_SIGNED, validate=_hinge_validate, example=Example(_sign_sample, grad_order=1, optax="hinge_loss",
                        compare=optax_mean("hinge_loss", target=_signs)))
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



# ---------------------------------------------------------------------------
# PyTorch's soft margins, optax's sparsemax and perceptron, asymmetric loss
# ---------------------------------------------------------------------------


def _real_sample(rng: np.random.Generator) -> tuple:
    pred = (rng.normal(size=(4, 6)) * 2.0).astype(np.float32)
    target = rng.choice([-1.0, 1.0, 0.5, -2.0], size=(4, 6)).astype(np.float32)
    return pred, target


@binary(example=Example(_real_sample))
def soft_margin_loss(pred, target):
    r"""Soft margin loss, the logistic loss of a signed margin (PyTorch's ``SoftMarginLoss``).

    .. math:: \ell_i = \log\bigl(1 + e^{-y_i x_i}\bigr) = \operatorname{softplus}(-y_i x_i)

    ``target`` holds :math:`y \in \{-1, 1\}`; any real value is accepted, as in
    PyTorch (it scales the margin). Computed as a stable softplus, so the value
    and the gradient :math:`-y\,\sigma(-y x)` are finite for every finite input.
    ``"mean"`` is the mean over all elements, as PyTorch's.

    Args:
      pred: real-valued scores, any shape, floating point.
      target: targets of the same shape, :math:`\pm 1` (or any real number).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-element losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> round(float(jaxloss.soft_margin_loss(jnp.array([2.0, -1.0]), jnp.array([1.0, 1.0]))), 6)
      0.720095

    References: PyTorch ``torch.nn.SoftMarginLoss``.
    """
    return softplus(-(target * pred))


def _class_weight_validate(name, logits, targets, *, class_weights=None, **_):
    if logits.ndim:
        check_class_vector(name, "class_weights", class_weights, logits.shape[-1])


def _multilabel_sample(rng: np.random.Generator) -> tuple:
    logits = (rng.normal(size=(4, 5)) * 2.0).astype(np.float32)
    targets = (rng.uniform(size=(4, 5)) < 0.4).astype(np.float32)
    return logits, targets


@binary(checks={"class_weights": NONNEGATIVE}, validate=_class_weight_validate,
        layout=Layout({"targets": Role(domain=PROBABILITIES)}, axis=-1), example=Example(_multilabel_sample))
def multilabel_soft_margin_loss(logits, targets, *, class_weights=None):
    r"""Multi-label soft margin loss (PyTorch's ``MultiLabelSoftMarginLoss``).

    With :math:`C` classes along the last axis and class weights :math:`w_c`
    (1 when not given), the mean over classes of the binary cross-entropy on
    logits:

    .. math:: \ell_i = -\frac{1}{C}\sum_c w_c\bigl(y_{ic}\log\sigma(x_{ic})
              + (1 - y_{ic})\log\sigma(-x_{ic})\bigr)

    computed as :math:`\operatorname{softplus}(x) - y x` (exact for every finite
    logit). ``class_weights`` multiply each class's term, and ``"mean"`` stays
    the plain mean over examples, as in PyTorch (unlike the cross-entropies'
    weighted mean); use ``weights=`` for a weighted mean over examples.
    Targets are usually in ``{0, 1}``; soft targets in ``[0, 1]`` work the same.

    Args:
      logits: ``[..., C]`` floating point, classes along the last axis.
      targets: the same shape, in ``[0, 1]``.
      class_weights: ``None`` or ``(C,)`` non-negative weights (PyTorch's ``weight``).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-example losses
      (``logits.shape[:-1]``).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x = jnp.array([[2.0, -1.0]]); y = jnp.array([[1.0, 1.0]])
      >>> round(float(jaxloss.multilabel_soft_margin_loss(x, y)), 6)
      0.720095

    References: PyTorch ``torch.nn.MultiLabelSoftMarginLoss``.
    """
    terms = _bce_logits(logits, targets)
    if class_weights is not None:
        terms = class_weights * terms
    return jnp.mean(terms, axis=-1)


@binary(layout=_TARGETS, example=Example(_logit_sample, grad_order=1, optax="sparsemax_loss",
                                                 compare=optax_mean("sparsemax_loss")))
def sparsemax_loss(scores, targets):
    r"""Binary sparsemax loss, the Fenchel-Young loss of the sparse sigmoid (optax's ``sparsemax_loss``).

    With :math:`\mu = \operatorname{clip}((x + 1)/2, 0, 1)` (the sparse sigmoid)
    and :math:`u = (x + 1)/2`:

    .. math:: \ell_i = \operatorname{sparse\_plus}(x_i) - x_i t_i - t_i(1 - t_i)
              = (\mu_i - t_i)(2u_i - \mu_i - t_i)

    For hard targets this is optax's ``sparsemax_loss``: :math:`t = 1` gives
    :math:`\operatorname{sparse\_plus}(-x)`, :math:`t = 0` gives
    :math:`\operatorname{sparse\_plus}(x)` (0 for :math:`x \le -1`, linear beyond
    1). Soft targets :math:`t \in [0, 1]` give the Fenchel-Young loss of the same
    regulariser, 0 exactly when :math:`\mu = t`. The factored form has no
    cancellation, and the gradient is :math:`\mu - t`.

    Args:
      scores: real-valued scores, any shape, floating point.
      targets: targets in ``[0, 1]`` (hard ``{0, 1}`` as optax, or soft), the same shape.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-element losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.sparsemax_loss(jnp.array([0.0, 2.0, -0.5]), jnp.array([1.0, 0.0, 0.0]), reduction="none")
      Array([0.25  , 2.    , 0.0625], dtype=float32)

    References: Blondel, Martins and Niculae, 2020, "Learning with Fenchel-Young
    Losses" (Sec. 4.4); optax ``sparsemax_loss``.
    """
    u = 0.5 * (scores + 1.0)
    mu = jnp.where(u <= 0.0, 0.0, jnp.where(u >= 1.0, 1.0, u))
    d = mu - targets
    return d * (2.0 * (u - mu) + d)


@binary(layout=_SIGNED, validate=_hinge_validate,
        example=Example(_sign_sample, grad_order=1, optax="perceptron_loss",
                        compare=optax_mean("perceptron_loss", target=_signs)))
def perceptron_loss(scores, targets):
    r"""Binary perceptron loss (optax's ``perceptron_loss``).

    .. math:: \ell_i = \max(0,\ -y_i s_i),\qquad y_i = +1 \text{ if } t_i > 0 \text{ else } -1

    The hinge without its margin: 0 for a correctly signed score. Targets may be
    in ``{-1, +1}`` (optax's) or ``{0, 1}``, with the same meaning as in
    :func:`hinge_loss`; other values raise ``ValueError`` when concrete. The
    gradient at the kink (:math:`s = 0`) is 0.

    Args:
      scores: real-valued scores, any shape.
      targets: ``{0, 1}`` or ``{-1, +1}`` labels (floating point), the same shape.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-element losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.perceptron_loss(jnp.array([0.5, 2.0]), jnp.array([1.0, -1.0]), reduction="none")
      Array([0., 2.], dtype=float32)

    References: Rosenblatt, 1958; optax ``perceptron_loss``.
    """
    m = jnp.where(targets > 0, scores, -scores)
    return jnp.where(m < 0.0, -m, 0.0)


def _asl_sample(rng: np.random.Generator) -> tuple:
    logits = (rng.normal(size=(4, 6)) * 2.0).astype(np.float32)
    # keep sigmoid(x) away from the clip 0.05 (the kink of the shifted probability)
    logits = np.where(np.abs(logits + 2.944) < 0.2, logits + 0.5, logits).astype(np.float32)
    targets = (rng.uniform(size=(4, 6)) < 0.4).astype(np.float32)
    return logits, targets


@binary(checks={"gamma_pos": NONNEGATIVE, "gamma_neg": NONNEGATIVE, "clip": UNIT}, layout=_TARGETS,
        example=Example(_asl_sample, sweep=("gamma_neg", (0.0, 1.0, 2.0, 4.0)), grad_order=1))
def asymmetric_loss(logits, targets, *, gamma_pos=0.0, gamma_neg=4.0, clip=0.05):
    r"""Asymmetric loss for multi-label classification (Ridnik et al., 2021, "ASL").

    With :math:`p = \sigma(x)`, the shifted probability of a negative
    :math:`p_m = \max(p - m, 0)` (clip :math:`m`), and for a target :math:`t`:

    .. math::
       \ell_i = -\bigl(t \log p + (1 - t)\log(1 - p_m)\bigr)\,(1 - p_t)^{\gamma_t},\qquad
       1 - p_t = t(1 - p) + (1 - t)\,p_m,\quad \gamma_t = t\gamma_+ + (1 - t)\gamma_-

    which for hard targets is :math:`-(1 - p)^{\gamma_+}\log p` on positives and
    :math:`-p_m^{\gamma_-}\log(1 - p_m)` on negatives. The semantics of timm's
    ``AsymmetricLossMultiLabel`` with the gradient flowing through the focusing
    weight (its ``disable_torch_grad_focal_loss=False``); soft targets mix the
    terms as timm does. ``"sum"`` is timm's value (a sum); ``"mean"`` is the
    mean over examples and classes. timm's default ``gamma_pos`` is 1, jaxloss's
    the paper's recommended 0. Where timm clamps the probabilities at
    :math:`10^{-8}` before the log, jaxloss uses the exact
    :math:`\log p = -\operatorname{softplus}(-x)` (the two agree for
    :math:`p > 10^{-8}`), and the weight is computed as
    :math:`\exp(\gamma \log(1 - p_t))` with 0 where :math:`1 - p_t = 0`, so the
    value and the gradient are finite for every :math:`\gamma \ge 0` and every
    finite logit.

    Args:
      logits: any shape, floating point (one logit per class and example).
      targets: targets in ``[0, 1]``, the same shape.
      gamma_pos: :math:`\gamma_+ \ge 0`, the focusing of positives.
      gamma_neg: :math:`\gamma_- \ge 0`, the focusing of negatives.
      clip: the probability margin :math:`m \in [0, 1]` of negatives (0 disables it).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-element losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x = jnp.array([[2.0, -1.0, 0.5]]); t = jnp.array([[1.0, 0.0, 0.0]])
      >>> round(float(jaxloss.asymmetric_loss(x, t, reduction="sum")), 6)
      0.218749

    References: Ridnik et al., 2021, "Asymmetric Loss For Multi-Label
    Classification"; timm ``AsymmetricLossMultiLabel``.
    """
    t = targets
    p = jax.nn.sigmoid(logits)
    q = jax.nn.sigmoid(-logits)  # 1 - p, without cancellation
    ce_pos = softplus(-logits)  # -log p
    # -log(1 - p_m) = -log(min(q + m, 1)); -log q = softplus(x) exactly when m = 0
    shifted = clip > 0
    inner = jnp.where(shifted, jnp.minimum(q + clip, 1.0), 1.0)
    ce_neg = jnp.where(shifted, -jnp.log(inner), softplus(logits))
    ce = t * ce_pos + (1.0 - t) * ce_neg
    p_m = jnp.where(p > clip, p - clip, 0.0)
    u = t * q + (1.0 - t) * p_m  # 1 - p_t
    gamma = t * gamma_pos + (1.0 - t) * gamma_neg
    positive = u > 0
    weight = jnp.where(positive, jnp.exp(gamma * jnp.log(jnp.where(positive, u, 1.0))),
                       jnp.where(gamma == 0, 1.0, 0.0))
    return ce * weight


BinaryCrossEntropy = binary_cross_entropy.Loss
BinaryCrossEntropyWithLogits = binary_cross_entropy_with_logits.Loss
SigmoidFocalLoss = sigmoid_focal_loss.Loss
HingeLoss = hinge_loss.Loss
SquaredHingeLoss = squared_hinge_loss.Loss
SoftMarginLoss = soft_margin_loss.Loss
MultilabelSoftMarginLoss = multilabel_soft_margin_loss.Loss
SparsemaxLoss = sparsemax_loss.Loss
PerceptronLoss = perceptron_loss.Loss
AsymmetricLoss = asymmetric_loss.Loss
