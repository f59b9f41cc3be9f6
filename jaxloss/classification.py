r"""Classification losses.

Binary losses take predictions and targets of the same shape (every entry is an
independent binary problem) and return per-element losses for
``reduction="none"``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._core import NONNEGATIVE, UNIT, UNIT_HALF_OPEN, is_concrete, loss

__all__ = [
    "binary_cross_entropy", "BinaryCrossEntropy",
    "binary_cross_entropy_with_logits", "BinaryCrossEntropyWithLogits",
    "hinge_loss", "HingeLoss",
    "sigmoid_focal_loss", "SigmoidFocalLoss",
    "squared_hinge_loss", "SquaredHingeLoss",
    # multi-class
    "cross_entropy", "CrossEntropy",
    "multiclass_hinge_loss", "MulticlassHingeLoss",
    "nll_loss", "NLLLoss",
    "softmax_focal_loss", "SoftmaxFocalLoss",
    "sparse_cross_entropy", "SparseCrossEntropy",
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


@loss(family="binary", sample=_prob_sample)
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
      reduction, weights, where: as for every jaxloss loss.

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


def _pos(x):
    """``max(x, 0)`` whose derivative at 0 is 1, the same side as ``jnp.abs``'s.

    ``max(x, 0) + log1p(exp(-|x|))`` is smooth only if both kinks at 0 take their
    derivative from the same side: ``jnp.maximum`` (1/2 at 0) with ``jnp.abs`` (1)
    would give a gradient of ``-t`` instead of ``1/2 - t`` at a zero logit."""
    return jnp.where(x >= 0, x, 0.0)


def _softplus(x):
    """``log(1 + e^x)``, exact for every finite ``x``."""
    return _pos(x) + jnp.log1p(jnp.exp(-jnp.abs(x)))


def _bce_logits(x, t):
    """``softplus(x) - t x``, grouped as ``(max(x, 0) - t x) + log1p(e^{-|x|})`` so
    the first part is exactly 0 for a confident correct hard target (no cancellation)."""
    return (_pos(x) - t * x) + jnp.log1p(jnp.exp(-jnp.abs(x)))


def _bce_logits_validate(name, logits, targets, *, pos_weight, **_):
    if pos_weight is not None:
        from ._core import check_broadcastable

        check_broadcastable(name, "pos_weight", jnp.shape(pos_weight), logits.shape)
        if is_concrete(pos_weight) and np.any(np.asarray(pos_weight) < 0):
            raise ValueError(f"{name}: pos_weight must be >= 0")


@loss(family="binary", checks={"label_smoothing": UNIT_HALF_OPEN}, validate=_bce_logits_validate,
      sample=_logit_sample, sweep=("label_smoothing", (0.0, 0.05, 0.1, 0.2)),
      optax="sigmoid_binary_cross_entropy")
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
      reduction, weights, where: as for every jaxloss loss.

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
    return pos_weight * t * _softplus(-logits) + (1.0 - t) * _softplus(logits)


@loss(family="binary", checks={"alpha": UNIT, "gamma": NONNEGATIVE}, sample=_logit_sample,
      sweep=("gamma", (0.0, 0.5, 1.0, 2.0)), optax="sigmoid_focal_loss")
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
      reduction, weights, where: as for every jaxloss loss.

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
    ce = (_pos(logits) - targets * logits) + l
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


@loss(family="binary", validate=_hinge_validate, sample=_sign_sample, grad_order=1, optax="hinge_loss")
def hinge_loss(scores, targets):
    r"""Hinge loss (binary SVM).

    .. math:: \ell_i = \max(0,\ 1 - y_i s_i),\qquad y_i = +1 \text{ if } t_i > 0 \text{ else } -1

    Targets may be in ``{0, 1}`` or in ``{-1, +1}``; both give the same loss
    (0 and -1 are the negative class). Other values raise ``ValueError`` when
    the targets are concrete. At the kink the gradient is 0.

    Args:
      scores: real-valued scores (not probabilities), any shape.
      targets: ``{0, 1}`` or ``{-1, +1}`` labels (floating point), the same shape.
      reduction, weights, where: as for every jaxloss loss.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-element losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> float(jaxloss.hinge_loss(jnp.array([0.5, -2.0]), jnp.array([1.0, 0.0])))
      0.25
    """
    return _hinge(scores, targets)


@loss(family="binary", validate=_hinge_validate, sample=_sign_sample, grad_order=1)
def squared_hinge_loss(scores, targets):
    r"""Squared hinge loss.

    .. math:: \ell_i = \max(0,\ 1 - y_i s_i)^2,\qquad y_i = +1 \text{ if } t_i > 0 \text{ else } -1

    Targets may be in ``{0, 1}`` or in ``{-1, +1}`` (see :func:`hinge_loss`).

    Args:
      scores: real-valued scores, any shape.
      targets: ``{0, 1}`` or ``{-1, +1}`` labels (floating point), the same shape.
      reduction, weights, where: as for every jaxloss loss.

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
# Multi-class
# ---------------------------------------------------------------------------
#
# Conventions shared by the multi-class losses (documented in each docstring):
# * the class axis is ``axis`` (default -1, static); any other axis gives what
#   moving that axis last gives, without a transpose;
# * integer labels have the logits' shape without ``axis``; a label equal to
#   ``ignore_index`` contributes 0 to the value and the gradient and is left
#   out of the mean; any other label outside ``[0, C)`` raises ``ValueError``
#   when concrete and gives NaN for that example under ``jit``;
# * integer-label losses never build a one-hot or a log-softmax of the logits'
#   size: the target logit is gathered, and the gather's derivative is written
#   as a compare-and-select that XLA fuses into the softmax gradient (not a
#   scatter into a zero array);
# * a per-example quantity of an ignored or out-of-range example is replaced by
#   0 before any non-linear operation (the double ``where``), so such examples
#   get exactly zero gradient even when their logits are all -inf.

import functools  # noqa: E402

from ._core import check_labels, normalize_axis  # noqa: E402


def _class_iota(shape, axis):
    return jax.lax.broadcasted_iota(jnp.int32, shape, axis)


def _logsumexp(x, axis):
    r"""``log(sum(exp(x), axis))`` with a stop-gradient shift by the maximum.

    A slice whose entries are all ``-inf`` gives ``-inf`` with a zero (not NaN)
    gradient; ``jax.nn.logsumexp`` gives NaN gradients there.
    """
    m = jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    m = jnp.where(jnp.isfinite(m), m, jnp.zeros_like(m))
    s = jnp.sum(jnp.exp(x - m), axis=axis)
    pos = s > 0
    return jnp.where(pos, jnp.log(jnp.where(pos, s, 1.0)) + jnp.squeeze(m, axis), -jnp.inf)


def _as_index(labels):
    if labels.dtype.itemsize < 4 or not jnp.issubdtype(labels.dtype, jnp.signedinteger):
        return labels.astype(jnp.int32)
    return labels


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _pick(x, index, axis):
    """``x`` at class ``index`` (in range) along ``axis``: a gather whose
    derivative is a compare-and-select (fused by XLA), not a scatter."""
    return jnp.squeeze(
        jnp.take_along_axis(x, jnp.expand_dims(index, axis), axis=axis, mode="promise_in_bounds"), axis
    )


@_pick.defjvp
def _pick_jvp(axis, primals, tangents):
    x, index = primals
    dx, _ = tangents
    hit = _class_iota(x.shape, axis) == jnp.expand_dims(index, axis)
    return _pick(x, index, axis), jnp.sum(jnp.where(hit, dx, jnp.zeros_like(dx)), axis=axis)


class _Labels:
    """Integer labels against ``num_classes``: which examples are kept (not
    ``ignore_index``), which are in range, and an always-valid index."""

    def __init__(self, labels, num_classes, ignore_index):
        labels = _as_index(labels)
        self.in_range = (labels >= 0) & (labels < num_classes)
        self.keep = None if ignore_index is None else labels != ignore_index
        self.ok = self.in_range if self.keep is None else self.in_range & self.keep
        self.safe = jnp.where(self.in_range, labels, 0)

    def pick(self, x, axis):
        return _pick(x, self.safe, axis)

    def hit(self, shape, axis):
        """Boolean ``[..., C, ...]``: the label's class along ``axis`` (fused, never stored)."""
        return _class_iota(shape, axis) == jnp.expand_dims(self.safe, axis)

    def clean(self, value):
        """0 where not ``ok``: cuts the cotangent before a non-linear operation."""
        return jnp.where(self.ok, value, jnp.zeros_like(value))

    def finish(self, value):
        """NaN for out-of-range labels; ignored ones are multiplied by 0 (the
        kernels also give them intrinsic weight 0, which the core excludes from
        value and gradient even where the product is not finite).

        Written with products and a per-example NaN offset rather than a final
        ``where`` on the value: the result is the same, and XLA's CPU scheduler
        then keeps the backward pass free of an extra logits-sized buffer.
        """
        fine = self.in_range if self.keep is None else self.in_range | ~self.keep
        offset = jnp.where(fine, jnp.zeros_like(value), jnp.full_like(value, jnp.nan))
        return value * self.ok.astype(value.dtype) + offset

    def keep_weight(self, dtype):
        return None if self.keep is None else self.keep.astype(dtype)


def _along(vector, ndim, axis):
    """A ``(C,)`` vector shaped to broadcast along ``axis`` of a rank-``ndim`` array."""
    return jnp.reshape(vector, (-1,) + (1,) * (ndim - 1 - axis))


def _check_class_vector(name, arg, value, num_classes, allow_scalar=False):
    if value is None:
        return
    shape = tuple(np.shape(value))
    if shape == (num_classes,) or (allow_scalar and shape == ()):
        return
    allowed = "a scalar or " if allow_scalar else ""
    raise ValueError(f"{name}: {arg} must be {allowed}one value per class, shape ({num_classes},), got shape {shape}")


def _check_ignore_index(name, ignore_index):
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer))):
        raise TypeError(f"{name}: ignore_index must be an int or None (it is static), got {ignore_index!r}")


def _label_validate(pred_name):
    def validate(name, x, labels, *, axis=-1, ignore_index=None, class_weights=None, alpha=None, **_):
        ax = normalize_axis(name, axis, x.ndim)
        expected = x.shape[:ax] + x.shape[ax + 1:]
        if tuple(labels.shape) != tuple(expected):
            raise ValueError(
                f"{name}: labels must have the shape of {pred_name} without the class axis {axis}: "
                f"{pred_name} {tuple(x.shape)} needs labels {tuple(expected)}, got labels {tuple(labels.shape)}"
            )
        num_classes = x.shape[ax]
        if num_classes == 0:
            raise ValueError(f"{name}: {pred_name} has no classes along axis {axis} (shape {tuple(x.shape)})")
        _check_ignore_index(name, ignore_index)
        _check_class_vector(name, "class_weights", class_weights, num_classes)
        _check_class_vector(name, "alpha", alpha, num_classes, allow_scalar=True)
        check_labels(name, labels, num_classes, ignore_index)

    return validate


def _dense_validate(name, x, targets, *, axis=-1, class_weights=None, **_):
    ax = normalize_axis(name, axis, x.ndim)
    _check_class_vector(name, "class_weights", class_weights, x.shape[ax])


def _sparse_sample(rng: np.random.Generator) -> tuple:
    logits = (rng.normal(size=(6, 5)) * 2.0).astype(np.float32)
    labels = rng.integers(0, 5, size=(6,)).astype(np.int32)
    return logits, labels


def _log_prob_sample(rng: np.random.Generator) -> tuple:
    logits, labels = _sparse_sample(rng)
    log_probs = logits - np.log(np.sum(np.exp(logits), axis=-1, keepdims=True))
    return log_probs.astype(np.float32), labels


def _dense_sample(rng: np.random.Generator) -> tuple:
    logits = (rng.normal(size=(6, 5)) * 2.0).astype(np.float32)
    raw = rng.uniform(0.05, 1.0, size=(6, 5))
    return logits, (raw / raw.sum(-1, keepdims=True)).astype(np.float32)


@loss(family="multiclass", static=("axis",), reduced_axis="axis",
      checks={"label_smoothing": UNIT_HALF_OPEN, "class_weights": NONNEGATIVE},
      validate=_dense_validate, sample=_dense_sample, differentiable=(0, 1),
      sweep=("label_smoothing", (0.0, 0.05, 0.1, 0.2)), optax="softmax_cross_entropy")
def cross_entropy(logits, targets, *, axis=-1, label_smoothing=0.0, class_weights=None):
    r"""Softmax cross-entropy with probability (or one-hot) targets.

    With :math:`\log p_c = x_c - \operatorname{logsumexp}(x)`, smoothed targets
    :math:`\tilde t_c = (1 - \epsilon) t_c + \epsilon / C` (PyTorch's label
    smoothing) and class weights :math:`w_c` (1 when not given):

    .. math:: \ell_i = -\sum_c w_c \tilde t_{ic} \log p_{ic}

    A term whose coefficient :math:`w_c \tilde t_c` is 0 is 0 even when its
    logit is ``-inf`` (a masked class), so masked classes give a finite loss and
    finite gradients; optax's ``softmax_cross_entropy`` gives NaN there. With
    ``label_smoothing > 0`` every class has target mass :math:`\epsilon / C`,
    so a ``-inf`` logit then gives ``+inf`` (as PyTorch; the gradient stays
    finite).

    ``"mean"`` without ``class_weights`` is the mean over examples. With
    ``class_weights`` it is PyTorch's weighted mean,
    :math:`\sum_i \ell_i / \sum_i \sum_c w_c t_{ic}` -- each example counts with
    the class weight of its (unsmoothed) target -- so one-hot targets give
    exactly :func:`sparse_cross_entropy` on their integer labels, option for
    option. (PyTorch divides by the number of examples for probability targets
    but by :math:`\sum_i w_{y_i}` for class indices; jaxloss uses the latter for
    both so the two forms agree.)

    Args:
      logits: ``[..., C, ...]`` floating point, classes along ``axis``.
      targets: probabilities of the same shape (rows summing to 1; one-hot or soft).
      axis: the class axis (static). Any axis equals moving it last.
      label_smoothing: :math:`\epsilon \in [0, 1)`.
      class_weights: ``None`` or ``(C,)`` non-negative weights.
      reduction, weights, where: as for every jaxloss loss; ``weights`` and
        ``where`` have the per-example shape (``logits`` without ``axis``).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-example losses
      (``logits.shape`` without ``axis``).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> probs = jnp.array([[0.8, 0.15, 0.05], [0.2, 0.5, 0.3]])
      >>> cat = jnp.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
      >>> jaxloss.cross_entropy(jnp.log(probs), cat, reduction="none").round(6)
      Array([0.223144, 1.609438], dtype=float32)

    References: PyTorch ``torch.nn.functional.cross_entropy`` (probability
    targets); optax ``softmax_cross_entropy``.
    """
    ax = axis % logits.ndim
    num_classes = logits.shape[ax]
    lse = jnp.expand_dims(_logsumexp(logits, ax), ax)
    t = (1.0 - label_smoothing) * targets + label_smoothing / num_classes
    coef = t if class_weights is None else _along(class_weights, logits.ndim, ax) * t
    zero = coef == 0
    neg_log_p = jnp.where(zero, jnp.zeros_like(logits), lse - logits)
    value = jnp.sum(jnp.where(zero, jnp.zeros_like(logits), coef * neg_log_p), axis=ax)
    if class_weights is None:
        return value
    mean_weight = jnp.sum(_along(class_weights, logits.ndim, ax) * targets, axis=ax)
    return value, jnp.ones_like(value), mean_weight


@loss(family="multiclass", static=("axis", "ignore_index"), reduced_axis="axis",
      label_inputs=("labels",), same_shape=(),
      checks={"label_smoothing": UNIT_HALF_OPEN, "z_loss": NONNEGATIVE, "class_weights": NONNEGATIVE},
      validate=_label_validate("logits"), sample=_sparse_sample,
      sweep=("label_smoothing", (0.0, 0.05, 0.1, 0.2)),
      optax="softmax_cross_entropy_with_integer_labels")
def sparse_cross_entropy(logits, labels, *, axis=-1, class_weights=None, ignore_index=None,
                         label_smoothing=0.0, z_loss=0.0):
    r"""Softmax cross-entropy with integer class labels.

    With :math:`L_i = \operatorname{logsumexp}_c(x_{ic})`, label :math:`y_i`,
    class weights :math:`w_c` (1 when not given), label smoothing
    :math:`\epsilon` and z-loss coefficient :math:`\lambda_z`:

    .. math::
       \ell_i = (1 - \epsilon)\, w_{y_i} (L_i - x_{i y_i})
              + \frac{\epsilon}{C} \sum_c w_c (L_i - x_{ic})
              + \lambda_z\, w_{y_i} L_i^2

    which is PyTorch's ``cross_entropy(..., weight=w, label_smoothing=eps)``
    plus the PaLM z-loss :math:`\lambda_z L_i^2`, computed without materialising
    the smoothed targets, a one-hot or a log-softmax: only per-example
    reductions of the logits are formed (:math:`L_i`, the gathered target logit
    :math:`x_{iy_i}` and, for smoothing, :math:`\sum_c w_c x_{ic}`), and the
    gradient is one fused elementwise pass (softmax minus the label's select),
    with no scatter. Its compiled temporary memory is below optax's (see
    ``benchmarks/bench_cross_entropy.py``).
    ``"mean"`` is PyTorch's weighted mean :math:`\sum_i \ell_i / \sum_i w_{y_i}`
    over the examples that are not ignored (the plain mean over them without
    class weights); the class weight scales an example's cross-entropy and
    z-loss (the smoothing term carries the weights of all classes, as in
    PyTorch). All examples ignored, masked or of zero weight gives 0 with zero
    gradients (PyTorch gives NaN).

    Edges: a ``-inf`` logit (a masked class) gives a finite loss and finite
    gradients whenever the label's own logit is finite (with
    ``label_smoothing > 0`` the loss is ``+inf``, as PyTorch, because every
    class then has target mass :math:`\epsilon / C`); a class of weight 0 with a
    ``-inf`` logit contributes 0. bf16/f16 logits are computed and accumulated
    in float32 and the loss is float32. Out-of-range labels (other than
    ``ignore_index``) raise ``ValueError`` when concrete and give NaN for that
    example under ``jit``, with zero gradient for it and unaffected gradients
    for the others.

    Args:
      logits: ``[..., C, ...]`` floating point, classes along ``axis``.
      labels: integer labels in ``[0, C)`` (or ``ignore_index``), of the shape
        of ``logits`` without ``axis``.
      axis: the class axis (static). Any axis equals moving it last.
      class_weights: ``None`` or ``(C,)`` non-negative weights.
      ignore_index: ``None`` or an int (static; PyTorch's default is -100):
        examples with this label contribute 0 and are left out of the mean.
      label_smoothing: :math:`\epsilon \in [0, 1)`.
      z_loss: :math:`\lambda_z \ge 0` (PaLM uses ``1e-4``).
      reduction, weights, where: as for every jaxloss loss; ``weights`` and
        ``where`` have the labels' shape.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-example losses
      (labels' shape; 0 for ignored examples).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> probs = jnp.array([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7], [0.2, 0.6, 0.2],
      ...                    [0.8, 0.1, 0.1], [0.3, 0.3, 0.4]])
      >>> round(float(jaxloss.sparse_cross_entropy(jnp.log(probs), jnp.array([0, 2, 1, 0, 2]))), 6)
      0.472722

    References: PyTorch ``torch.nn.functional.cross_entropy`` (class indices);
    optax ``softmax_cross_entropy_with_integer_labels``; Chowdhery et al., 2022,
    "PaLM" (z-loss).
    """
    ax = axis % logits.ndim
    num_classes = logits.shape[ax]
    lab = _Labels(labels, num_classes, ignore_index)
    lse = lab.clean(_logsumexp(logits, ax))
    picked = lab.pick(logits, ax)
    eps = label_smoothing
    if class_weights is None:
        smooth = num_classes * lse - jnp.sum(logits, axis=ax)  # sum_c (L - x_c)
        w_y = None
    else:
        w = _along(class_weights, logits.ndim, ax)
        wx = jnp.sum(jnp.where(w == 0, jnp.zeros_like(logits), w * logits), axis=ax)
        smooth = jnp.sum(class_weights) * lse - wx  # sum_c w_c (L - x_c)
        w_y = jnp.take(class_weights, lab.safe)
    smooth = jnp.where(eps > 0, smooth, jnp.zeros_like(smooth))
    main = (1.0 - eps) * (lse - picked) + z_loss * lse * lse
    if w_y is not None:
        main = w_y * main
    value = lab.finish(main + (eps / num_classes) * smooth)
    if w_y is None:
        keep = lab.keep_weight(value.dtype)
        return value if keep is None else (value, keep)
    keep = jnp.ones_like(value) if lab.keep is None else lab.keep.astype(value.dtype)
    return value, keep, keep * w_y


@loss(family="multiclass", static=("axis", "ignore_index"), reduced_axis="axis",
      label_inputs=("labels",), same_shape=(), checks={"class_weights": NONNEGATIVE},
      validate=_label_validate("log_probs"), sample=_log_prob_sample)
def nll_loss(log_probs, labels, *, class_weights=None, ignore_index=None, axis=-1):
    r"""Negative log-likelihood of integer labels given log-probabilities (PyTorch's ``NLLLoss``).

    .. math:: \ell_i = -w_{y_i} \log p_{i y_i}

    ``"mean"`` is PyTorch's weighted mean :math:`\sum_i \ell_i / \sum_i w_{y_i}`
    over the examples that are not ignored; all ignored (or of zero weight)
    gives 0 with zero gradients, not NaN. ``log_probs`` is used as given (it is
    not normalised); ``sparse_cross_entropy(x, y)`` equals
    ``nll_loss(jax.nn.log_softmax(x), y)``. The label is picked by a
    compare-and-sum (no one-hot). Out-of-range labels raise ``ValueError`` when
    concrete and give NaN for that example under ``jit``.

    Args:
      log_probs: ``[..., C, ...]`` log-probabilities, classes along ``axis``.
      labels: integer labels in ``[0, C)`` (or ``ignore_index``), of the shape
        of ``log_probs`` without ``axis``.
      class_weights: ``None`` or ``(C,)`` non-negative weights.
      ignore_index: ``None`` or an int (static; PyTorch's default is -100).
      axis: the class axis (static; PyTorch's is 1, jaxloss's default -1).
      reduction, weights, where: as for every jaxloss loss (labels' shape).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-example
      :math:`w_{y_i}`-weighted losses (0 for ignored examples).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> log_p = jnp.log(jnp.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]))
      >>> round(float(jaxloss.nll_loss(log_p, jnp.array([0, 1]), class_weights=jnp.array([1.0, 3.0, 1.0]))), 6)
      0.340644

    References: PyTorch ``torch.nn.functional.nll_loss``.
    """
    ax = axis % log_probs.ndim
    lab = _Labels(labels, log_probs.shape[ax], ignore_index)
    value = lab.finish(-lab.pick(log_probs, ax))
    if class_weights is None:
        keep = lab.keep_weight(value.dtype)
        return value if keep is None else (value, keep)
    w_y = jnp.take(class_weights, lab.safe)
    return value, w_y if lab.keep is None else jnp.where(lab.keep, w_y, jnp.zeros_like(w_y))


@loss(family="multiclass", static=("axis", "ignore_index"), reduced_axis="axis",
      label_inputs=("labels",), same_shape=(), checks={"alpha": NONNEGATIVE, "gamma": NONNEGATIVE},
      validate=_label_validate("logits"), sample=_sparse_sample,
      sweep=("gamma", (0.0, 0.5, 1.0, 2.0)))
def softmax_focal_loss(logits, labels, *, alpha=None, gamma=2.0, ignore_index=None, axis=-1):
    r"""Multi-class (softmax) focal loss (Lin et al., 2017), integer labels.

    .. math:: \ell_i = -\alpha_{y_i} (1 - p_{i y_i})^\gamma \log p_{i y_i},
              \qquad p_i = \operatorname{softmax}(x_i)

    :math:`\log(1 - p_y)` is computed as
    :math:`\operatorname{logsumexp}_{c \ne y}(x_c) - \operatorname{logsumexp}_c(x_c)`
    (no cancellation when :math:`p_y \to 1`) and the modulating factor as
    :math:`\exp(\gamma \log(1 - p_y))`, so value and gradient stay finite for
    every :math:`\gamma \ge 0` (including :math:`0 < \gamma < 1` and
    :math:`p_y = 1`), large logits and ``-inf`` logits of other classes.
    ``gamma=0, alpha=None`` is exactly :func:`sparse_cross_entropy`.

    ``alpha`` is a factor, not a normaliser: ``"mean"`` is the plain mean over
    the examples that are not ignored (as ``sigmoid_focal_loss`` and common
    multi-class focal implementations; use ``weights`` for a weighted mean).

    Args:
      logits: ``[..., C, ...]`` floating point, classes along ``axis``.
      labels: integer labels in ``[0, C)`` (or ``ignore_index``), of the shape
        of ``logits`` without ``axis``.
      alpha: ``None`` (no weighting), a scalar ``>= 0``, or ``(C,)``
        non-negative weights, one per class (:math:`\alpha_{y_i}`).
      gamma: focusing parameter ``>= 0``.
      ignore_index: ``None`` or an int (static).
      axis: the class axis (static).
      reduction, weights, where: as for every jaxloss loss (labels' shape).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-example losses (0 for
      ignored examples). Out-of-range labels: ``ValueError`` when concrete, NaN
      for that example under ``jit``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x = jnp.log(jnp.array([[0.5, 0.25, 0.25]]))
      >>> round(float(jaxloss.softmax_focal_loss(x, jnp.array([0]), gamma=2.0)), 6)
      0.173287

    References: Lin et al., 2017, "Focal Loss for Dense Object Detection".
    """
    ax = axis % logits.ndim
    lab = _Labels(labels, logits.shape[ax], ignore_index)
    hit = lab.hit(logits.shape, ax)
    lse = _logsumexp(logits, ax)
    others = _logsumexp(jnp.where(hit, -jnp.inf, logits), ax)
    log_p = lab.clean(lab.pick(logits, ax) - lse)
    log_q = lab.clean(others - lse)  # log(1 - p_y), -inf when p_y == 1
    finite = log_q > -jnp.inf
    safe_q = jnp.where(finite, log_q, jnp.zeros_like(log_q))
    factor = jnp.where(finite, jnp.exp(gamma * safe_q), jnp.where(gamma == 0, 1.0, 0.0).astype(log_q.dtype))
    value = -factor * log_p
    if alpha is not None:
        value = (alpha if jnp.ndim(alpha) == 0 else jnp.take(alpha, lab.safe)) * value
    value = lab.finish(value)
    keep = lab.keep_weight(value.dtype)
    return value if keep is None else (value, keep)


@loss(family="multiclass", static=("axis",), reduced_axis="axis",
      label_inputs=("labels",), same_shape=(), checks={"margin": NONNEGATIVE},
      validate=_label_validate("scores"), sample=_sparse_sample, grad_order=1,
      sweep=("margin", (0.5, 1.0, 2.0, 3.0)), optax="multiclass_hinge_loss")
def multiclass_hinge_loss(scores, labels, *, margin=1.0, axis=-1):
    r"""Multi-class hinge loss, Crammer-Singer formulation.

    .. math:: \ell_i = \max\Bigl(0,\ m + \max_{c \ne y_i} s_{ic} - s_{i y_i}\Bigr)
              = \max_c \bigl(s_{ic} + m [c \ne y_i]\bigr) - s_{i y_i}

    Crammer-Singer (only the most violating class counts) rather than
    Weston-Watkins (:math:`\sum_{c \ne y} \max(0, m + s_c - s_y)`; PyTorch's
    ``MultiMarginLoss`` is that divided by :math:`C`) because: it is
    ``optax.losses.multiclass_hinge_loss`` (same values for ``margin=1``), so it
    drops into optax code; it is the tighter convex upper bound of the 0-1 loss
    (scaled by ``m``), and its scale does not grow with the number of classes;
    and it costs one fused max per example. A ``-inf`` score of another class
    never violates the margin, so masked classes are fine. At the kink the
    (sub)gradient is split between the tied classes.

    Args:
      scores: ``[..., C, ...]`` real-valued class scores, classes along ``axis``.
      labels: integer labels in ``[0, C)``, of the shape of ``scores`` without
        ``axis``.
      margin: :math:`m \ge 0`.
      axis: the class axis (static).
      reduction, weights, where: as for every jaxloss loss (labels' shape).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-example losses.
      Out-of-range labels: ``ValueError`` when concrete, NaN under ``jit``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> s = jnp.array([[2.0, 1.5, -1.0], [0.0, 3.0, 1.0]])
      >>> jaxloss.multiclass_hinge_loss(s, jnp.array([0, 2]), reduction="none")
      Array([0.5, 3. ], dtype=float32)

    References: Crammer and Singer, 2001, "On the Algorithmic Implementation of
    Multiclass Kernel-based Vector Machines"; optax ``multiclass_hinge_loss``.
    """
    ax = axis % scores.ndim
    lab = _Labels(labels, scores.shape[ax], None)
    hit = lab.hit(scores.shape, ax)
    top = jnp.max(jnp.where(hit, scores, scores + margin), axis=ax)
    return lab.finish(top - lab.pick(scores, ax))
