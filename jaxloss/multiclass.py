r"""Multi-class classification losses: logits (or log-probabilities) along a class axis.

Conventions shared by the multi-class losses (documented in each docstring):

* the class axis is ``axis`` (default -1, static); any other axis gives what
  moving that axis last gives, without a transpose;
* integer labels have the logits' shape without ``axis``; a label equal to
  ``ignore_index`` contributes 0 to the value and the gradient and is left
  out of the mean; any other label outside ``[0, C)`` raises ``ValueError``
  when concrete and gives NaN for that example under ``jit`` (and is reported
  inside :func:`jaxloss.value_checks`);
* integer-label losses never build a one-hot or a log-softmax of the logits'
  size: the target logit is gathered, and the gather's derivative is written
  as a compare-and-select that XLA fuses into the softmax gradient (not a
  scatter into a zero array);
* a per-example quantity of an ignored or out-of-range example is replaced by
  0 before any non-linear operation (the double ``where``), so such examples
  get exactly zero gradient even when their logits are all -inf.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import (
    AXIS,
    NONNEGATIVE,
    OPTIONAL_INT,
    POSITIVE,
    PROBABILITIES,
    UNIT_HALF_OPEN,
    Interval,
    Static,
    check_class_vector,
    is_concrete,
    normalize_axis,
)
from ._core import Example, Layout, Mean, Role, Unreduced, builtin, optax_mean
from ._numerics import class_iota, logsumexp, pick, softcap

__all__ = [
    "cross_entropy", "CrossEntropy",
    "generalized_cross_entropy", "GeneralizedCrossEntropy",
    "multi_margin_loss", "MultiMarginLoss",
    "multiclass_hinge_loss", "MulticlassHingeLoss",
    "multiclass_perceptron_loss", "MulticlassPerceptronLoss",
    "multiclass_sparsemax_loss", "MulticlassSparsemaxLoss",
    "multilabel_margin_loss", "MultilabelMarginLoss",
    "nll_loss", "NLLLoss",
    "poly1_cross_entropy", "Poly1CrossEntropy",
    "softmax_focal_loss", "SoftmaxFocalLoss",
    "sparse_cross_entropy", "SparseCrossEntropy",
]

multiclass = builtin("multiclass")

# The layout of integer-label losses: labels are the inputs without the class axis.
_LABELS = Layout({"labels": Role("labels", "reduced", indexes=True, ignore="ignore_index")}, axis="axis")
_LABEL_OPTIONS = {"axis": AXIS, "ignore_index": OPTIONAL_INT}


def _as_index(labels):
    if labels.dtype.itemsize < 4 or not jnp.issubdtype(labels.dtype, jnp.signedinteger):
        return labels.astype(jnp.int32)
    return labels


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
        return pick(x, self.safe, axis)

    def hit(self, shape, axis):
        """Boolean ``[..., C, ...]``: the label's class along ``axis`` (fused, never stored)."""
        return class_iota(shape, axis) == jnp.expand_dims(self.safe, axis)

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


def _class_vectors(name, x, *_, axis=-1, class_weights=None, alpha=None, **__):
    """``class_weights`` (and a per-class ``alpha``) must have one value per class."""
    num_classes = x.shape[normalize_axis(name, axis, x.ndim)]
    check_class_vector(name, "class_weights", class_weights, num_classes)
    check_class_vector(name, "alpha", alpha, num_classes, allow_scalar=True)


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


@multiclass(static={"axis": AXIS}, layout=Layout({"targets": Role(domain=PROBABILITIES)}, axis="axis"),
            checks={"label_smoothing": UNIT_HALF_OPEN, "class_weights": NONNEGATIVE}, validate=_class_vectors,
            example=Example(_dense_sample, sweep=("label_smoothing", (0.0, 0.05, 0.1, 0.2)),
                            differentiable=(0, 1), optax="softmax_cross_entropy",
                            compare=optax_mean("softmax_cross_entropy")))
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
    finite). The gradient with respect to ``targets`` is PyTorch's,
    :math:`-(1 - \epsilon) w_c \log p_c`, everywhere, also where a target is
    exactly 0 (0 there only where :math:`\log p_c = -\infty`).

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
    lse = jnp.expand_dims(logsumexp(logits, ax), ax)
    t = (1.0 - label_smoothing) * targets + label_smoothing / num_classes
    coef = t if class_weights is None else _along(class_weights, logits.ndim, ax) * t
    # A term of coefficient 0 is 0 even where log p = -inf (0 log 0 = 0), yet its
    # derivative in the target is -log p wherever that is finite (PyTorch's).
    neg_log_p = lse - logits
    finite = jnp.isfinite(neg_log_p)
    safe = jnp.where(finite, neg_log_p, jnp.zeros_like(neg_log_p))
    zero = coef == 0
    kept = jnp.where(zero, jnp.zeros_like(neg_log_p), neg_log_p)
    value = jnp.sum(jnp.where(zero, coef * safe, coef * kept), axis=ax)
    if class_weights is None:
        return value
    mean_weight = jnp.sum(_along(class_weights, logits.ndim, ax) * targets, axis=ax)
    return Unreduced(value, mean=Mean(count=mean_weight))


@multiclass(static=_LABEL_OPTIONS, layout=_LABELS, validate=_class_vectors,
            checks={"label_smoothing": UNIT_HALF_OPEN, "z_loss": NONNEGATIVE, "class_weights": NONNEGATIVE,
                    "logit_softcap": POSITIVE},
            example=Example(_sparse_sample, sweep=("label_smoothing", (0.0, 0.05, 0.1, 0.2)),
                            optax="softmax_cross_entropy_with_integer_labels"))
def sparse_cross_entropy(logits, labels, *, axis=-1, class_weights=None, ignore_index=None,
                         label_smoothing=0.0, z_loss=0.0, logit_softcap=None):
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
      logit_softcap: ``None`` or :math:`c > 0` (Gemma 2 uses 30.0): every finite
        logit :math:`x` is replaced by :math:`c \tanh(x / c)` first, as
        :func:`linear_cross_entropy` does; a ``-inf`` logit stays ``-inf`` (a
        masked class stays masked).

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
    "PaLM" (z-loss); Gemma Team, 2024, "Gemma 2" (logit soft-capping).
    """
    ax = axis % logits.ndim
    num_classes = logits.shape[ax]
    if logit_softcap is not None:
        logits = softcap(logits, logit_softcap)
    lab = _Labels(labels, num_classes, ignore_index)
    lse = lab.clean(logsumexp(logits, ax))
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
        return Unreduced(value, lab.keep_weight(value.dtype))
    keep = jnp.ones_like(value) if lab.keep is None else lab.keep.astype(value.dtype)
    return Unreduced(value, keep, Mean(count=keep * w_y))


@multiclass(static=_LABEL_OPTIONS, layout=_LABELS, validate=_class_vectors, checks={"class_weights": NONNEGATIVE},
            example=Example(_log_prob_sample))
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
        return Unreduced(value, lab.keep_weight(value.dtype))
    w_y = jnp.take(class_weights, lab.safe)
    return Unreduced(value, w_y if lab.keep is None else jnp.where(lab.keep, w_y, jnp.zeros_like(w_y)))


@multiclass(static=_LABEL_OPTIONS, layout=_LABELS, validate=_class_vectors,
            checks={"alpha": NONNEGATIVE, "gamma": NONNEGATIVE},
            example=Example(_sparse_sample, sweep=("gamma", (0.0, 0.5, 1.0, 2.0))))
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
    lse = logsumexp(logits, ax)
    others = logsumexp(jnp.where(hit, -jnp.inf, logits), ax)
    log_p = lab.clean(lab.pick(logits, ax) - lse)
    log_q = lab.clean(others - lse)  # log(1 - p_y), -inf when p_y == 1
    finite = log_q > -jnp.inf
    safe_q = jnp.where(finite, log_q, jnp.zeros_like(log_q))
    factor = jnp.where(finite, jnp.exp(gamma * safe_q), jnp.where(gamma == 0, 1.0, 0.0).astype(log_q.dtype))
    value = -factor * log_p
    if alpha is not None:
        value = (alpha if jnp.ndim(alpha) == 0 else jnp.take(alpha, lab.safe)) * value
    value = lab.finish(value)
    return Unreduced(value, lab.keep_weight(value.dtype))


@multiclass(static={"axis": AXIS}, layout=_LABELS, checks={"margin": NONNEGATIVE},
            example=Example(_sparse_sample, sweep=("margin", (0.5, 1.0, 2.0, 3.0)), grad_order=1,
                            optax="multiclass_hinge_loss",
                            compare=optax_mean("multiclass_hinge_loss")))
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



# ---------------------------------------------------------------------------
# The rest of PyTorch, Keras and optax
# ---------------------------------------------------------------------------

_MARGIN_POWER = Static(
    "Literal[1, 2]", lambda v: isinstance(v, int) and not isinstance(v, bool) and v in (1, 2), "1 or 2", ValueError
)


def _margin_sample(rng: np.random.Generator) -> tuple:
    """Scores whose pairwise gaps stay away from the margin 1 (the hinge's kink)."""
    while True:
        scores = (rng.normal(size=(6, 5)) * 2.0).astype(np.float32)
        labels = rng.integers(0, 5, size=(6,)).astype(np.int32)
        gap = 1.0 - scores[np.arange(6), labels][:, None] + scores
        if np.min(np.abs(gap)) > 0.05:
            return scores, labels


@multiclass(static={"axis": AXIS, "p": _MARGIN_POWER}, layout=_LABELS, validate=_class_vectors,
            checks={"class_weights": NONNEGATIVE},
            example=Example(_margin_sample, sweep=("margin", (0.5, 1.0, 2.0, 3.0)), grad_order=1))
def multi_margin_loss(scores, labels, *, p=1, margin=1.0, class_weights=None, axis=-1):
    r"""Multi-class margin loss, Weston-Watkins form (PyTorch's ``MultiMarginLoss``).

    With :math:`C` classes, label :math:`y_i` and class weights :math:`w_c`
    (1 when not given):

    .. math:: \ell_i = \frac{w_{y_i}}{C} \sum_{c \ne y_i} \max\bigl(0,\ m - s_{i y_i} + s_{ic}\bigr)^p

    Every class that violates the margin counts (compare
    :func:`multiclass_hinge_loss`, Crammer-Singer, where only the largest
    violation counts), and the sum is divided by :math:`C` as PyTorch does.
    ``class_weights`` multiply each example's loss and ``"mean"`` stays the
    plain mean over examples, as in PyTorch (unlike the cross-entropies, whose
    ``"mean"`` divides by the summed class weights). The (sub)gradient at the
    kink is 0.

    Args:
      scores: ``[..., C, ...]`` real-valued class scores, classes along ``axis``.
      labels: integer labels in ``[0, C)``, of the shape of ``scores`` without ``axis``.
      p: static, 1 or 2 (the squared hinge), as PyTorch.
      margin: :math:`m` (PyTorch's default 1).
      class_weights: ``None`` or ``(C,)`` non-negative weights (PyTorch's ``weight``).
      axis: the class axis (static; PyTorch's is 1 for ``(N, C)``, the last).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-example losses
      (weighted by :math:`w_{y_i}`). Out-of-range labels: ``ValueError`` when
      concrete, NaN under ``jit``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> s = jnp.array([[0.1, 0.2, 0.4, 0.8]])
      >>> round(float(jaxloss.multi_margin_loss(s, jnp.array([3]))), 6)
      0.325

    References: Weston and Watkins, 1999, "Support Vector Machines for
    Multi-Class Pattern Recognition"; PyTorch ``torch.nn.MultiMarginLoss``.
    """
    ax = axis % scores.ndim
    num_classes = scores.shape[ax]
    lab = _Labels(labels, num_classes, None)
    hit = lab.hit(scores.shape, ax)
    gap = margin - jnp.expand_dims(lab.pick(scores, ax), ax) + scores
    viol = jnp.where(hit | (gap <= 0), jnp.zeros_like(gap), gap)
    if p == 2:
        viol = viol * viol
    value = jnp.sum(viol, axis=ax) / num_classes
    if class_weights is not None:
        value = jnp.take(class_weights, lab.safe) * value
    return lab.finish(value)


def _multilabel_margin_validate(name, scores, labels, **_):
    if (scores.ndim == 0 or scores.shape != labels.shape or not jnp.issubdtype(labels.dtype, jnp.integer)
            or not is_concrete(labels)):
        return  # the layout reports float labels and shape mismatches
    lab = np.asarray(labels)
    num_classes = scores.shape[-1]
    active = np.cumprod(lab != -1, axis=-1).astype(bool)
    bad = active & ((lab < 0) | (lab >= num_classes))
    if bad.any():
        raise ValueError(
            f"{name}: labels before the first -1 of a row must lie in [0, {num_classes}), got {lab[bad][:5].tolist()}"
        )


def _multilabel_margin_sample(rng: np.random.Generator) -> tuple:
    """Scores away from the kinks, and -1-terminated target lists (entries after
    the first -1 hold junk that must be ignored)."""
    while True:
        scores = (rng.normal(size=(4, 5)) * 2.0).astype(np.float32)
        diff = scores[:, :, None] - scores[:, None, :]
        if np.min(np.abs(np.abs(diff[:, ~np.eye(5, dtype=bool)]) - 1.0)) > 0.05:
            break
    labels = np.array([[3, 0, -1, 1, 4], [1, -1, 2, 2, 0], [0, 1, 2, 3, 4], [-1, 3, 0, 0, 0]], np.int32)
    return scores, labels


@multiclass(layout=Layout({"labels": Role("labels")}, axis=-1),
            validate=_multilabel_margin_validate, example=Example(_multilabel_margin_sample, grad_order=1))
def multilabel_margin_loss(scores, labels):
    r"""Multi-label margin loss (PyTorch's ``MultiLabelMarginLoss``).

    ``labels`` has the shape of ``scores`` and lists each example's target
    classes, ended by the first ``-1`` (entries after it are ignored, whatever
    they hold; a row without ``-1`` lists :math:`C` targets). With :math:`J_i`
    the listed targets and :math:`T_i` the set of target classes:

    .. math:: \ell_i = \frac{1}{C} \sum_{j \in J_i} \sum_{c \notin T_i} \max\bigl(0,\ 1 - (s_{ij} - s_{ic})\bigr)

    As in PyTorch, a class listed twice counts twice, and a row whose list is
    empty (starts with ``-1``) or covers every class gives 0. It takes
    :math:`O(C^2)` work per example, as PyTorch's. The (sub)gradient at the kink
    is 0.

    Args:
      scores: ``[..., C]`` real-valued class scores, classes along the last axis.
      labels: integer ``[..., C]``, target class indices in ``[0, C)`` up to the
        first ``-1``. Other values before it raise ``ValueError`` when concrete
        and give NaN for the example under ``jit``.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-example losses
      (``scores.shape[:-1]``).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> s = jnp.array([[0.1, 0.2, 0.4, 0.8]])
      >>> round(float(jaxloss.multilabel_margin_loss(s, jnp.array([[3, 0, -1, 1]]))), 6)
      0.85

    References: PyTorch ``torch.nn.MultiLabelMarginLoss``.
    """
    num_classes = scores.shape[-1]
    lab = _as_index(labels)
    listed = jnp.cumprod((lab != -1).astype(jnp.int32), axis=-1) > 0  # before the first -1
    in_range = (lab >= 0) & (lab < num_classes)
    counted = listed & in_range
    bad = jnp.any(listed & ~in_range, axis=-1)
    safe = jnp.where(counted, lab, 0)
    classes = jnp.arange(num_classes, dtype=safe.dtype)
    is_target = jnp.any((safe[..., :, None] == classes) & counted[..., :, None], axis=-2)
    target_scores = jnp.take_along_axis(scores, safe, axis=-1)
    gap = 1.0 - target_scores[..., :, None] + scores[..., None, :]  # [..., listed j, class c]
    use = counted[..., :, None] & ~is_target[..., None, :] & (gap > 0)
    value = jnp.sum(jnp.where(use, gap, jnp.zeros_like(gap)), axis=(-2, -1)) / num_classes
    return jnp.where(bad, jnp.full_like(value, jnp.nan), value)


@multiclass(static=_LABEL_OPTIONS, layout=_LABELS, checks={"q": Interval(0.0, 1.0, lo_open=True)},
            example=Example(_sparse_sample, sweep=("q", (0.25, 0.5, 0.7, 1.0))))
def generalized_cross_entropy(logits, labels, *, q=0.5, axis=-1, ignore_index=None):
    r"""Generalized cross-entropy (Zhang and Sabuncu, 2018), robust to noisy labels.

    .. math:: \ell_i = \frac{1 - p_{i y_i}^{\,q}}{q}, \qquad p_i = \operatorname{softmax}(x_i)

    computed as :math:`-\operatorname{expm1}(q \log p_{iy_i}) / q` with
    :math:`\log p_{iy} = x_{iy} - \operatorname{logsumexp}(x_i)`, so it is exact
    for :math:`p_y` near 1 and finite (:math:`1/q`) when :math:`p_y` underflows.
    :math:`q \to 0` gives the cross-entropy, :math:`q = 1` the mean absolute
    error :math:`1 - p_y`. Keras's ``CategoricalGeneralizedCrossEntropy`` takes
    probabilities and integer labels; jaxloss takes logits (apply ``jnp.log``
    to probabilities).

    Args:
      logits: ``[..., C, ...]`` floating point, classes along ``axis``.
      labels: integer labels in ``[0, C)`` (or ``ignore_index``), of the shape
        of ``logits`` without ``axis``.
      q: :math:`q \in (0, 1]` (Keras's default 0.5).
      axis: the class axis (static).
      ignore_index: ``None`` or an int (static): such examples give 0 and leave the mean.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-example losses (0 for
      ignored examples). Out-of-range labels: ``ValueError`` when concrete, NaN
      under ``jit``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x = jnp.log(jnp.array([[0.25, 0.25, 0.5]]))
      >>> round(float(jaxloss.generalized_cross_entropy(x, jnp.array([0]), q=0.5)), 6)
      1.0

    References: Zhang and Sabuncu, 2018, "Generalized Cross Entropy Loss for
    Training Deep Neural Networks with Noisy Labels"; Keras
    ``CategoricalGeneralizedCrossEntropy``.
    """
    ax = axis % logits.ndim
    lab = _Labels(labels, logits.shape[ax], ignore_index)
    log_p = lab.clean(lab.pick(logits, ax) - logsumexp(logits, ax))
    value = lab.finish(-jnp.expm1(q * log_p) / q)
    return Unreduced(value, lab.keep_weight(value.dtype))


@multiclass(static=_LABEL_OPTIONS, layout=_LABELS,
            checks={"epsilon": Interval(-1.0, None), "label_smoothing": UNIT_HALF_OPEN},
            example=Example(_sparse_sample, sweep=("epsilon", (-1.0, 0.5, 1.0, 2.0)),
                            optax="poly_loss_cross_entropy",
                            compare=optax_mean("poly_loss_cross_entropy", one_hot=True, epsilon=2.0)))
def poly1_cross_entropy(logits, labels, *, epsilon=2.0, label_smoothing=0.0, axis=-1, ignore_index=None):
    r"""Poly-1 cross-entropy (Leng et al., 2022, "PolyLoss"), integer labels.

    With smoothed targets :math:`\tilde t = (1 - \alpha)\,e_y + \alpha / C`
    (label smoothing :math:`\alpha`) and :math:`p = \operatorname{softmax}(x)`:

    .. math:: \ell_i = -\sum_c \tilde t_{ic} \log p_{ic} + \epsilon \sum_c \tilde t_{ic}(1 - p_{ic})
              = \mathrm{CE}_\alpha(x_i, y_i)
              + \epsilon\Bigl((1 - \alpha)(1 - p_{iy_i}) + \alpha\bigl(1 - \tfrac1C\bigr)\Bigr)

    optax's ``poly_loss_cross_entropy`` applied to the smoothed one-hot of the
    labels (``optax.smooth_labels``), computed from per-example reductions only
    (no one-hot, as :func:`sparse_cross_entropy`, whose smoothing term this
    shares), with :math:`1 - p_y = -\operatorname{expm1}(\log p_y)`.
    ``epsilon >= -1`` keeps the loss decreasing in :math:`p_y` (the paper uses
    2 for ImageNet, -1 for detection).

    Args:
      logits: ``[..., C, ...]`` floating point, classes along ``axis``.
      labels: integer labels in ``[0, C)`` (or ``ignore_index``), of the shape
        of ``logits`` without ``axis``.
      epsilon: :math:`\epsilon \ge -1`, the coefficient of the first polynomial term.
      label_smoothing: :math:`\alpha \in [0, 1)`.
      axis: the class axis (static).
      ignore_index: ``None`` or an int (static): such examples give 0 and leave the mean.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-example losses (0 for
      ignored examples). Out-of-range labels: ``ValueError`` when concrete, NaN
      under ``jit``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x = jnp.log(jnp.array([[0.5, 0.25, 0.25]]))
      >>> round(float(jaxloss.poly1_cross_entropy(x, jnp.array([0]), epsilon=2.0)), 6)
      1.693147

    References: Leng et al., 2022, "PolyLoss: A Polynomial Expansion
    Perspective of Classification Loss Functions"; optax ``poly_loss_cross_entropy``.
    """
    ax = axis % logits.ndim
    num_classes = logits.shape[ax]
    lab = _Labels(labels, num_classes, ignore_index)
    lse = lab.clean(logsumexp(logits, ax))
    neg_log_p = lse - lab.pick(logits, ax)
    smooth = num_classes * lse - jnp.sum(logits, axis=ax)  # sum_c (L - x_c)
    smooth = jnp.where(label_smoothing > 0, smooth, jnp.zeros_like(smooth))
    one_minus_p = -jnp.expm1(-neg_log_p)
    # sum_c t_c (1 - p_c) = 1 - (1 - a) p_y - a / C = (1 - a)(1 - p_y) + a (1 - 1/C)
    poly = (1.0 - label_smoothing) * one_minus_p + label_smoothing * (1.0 - 1.0 / num_classes)
    value = (1.0 - label_smoothing) * neg_log_p + epsilon * poly + (label_smoothing / num_classes) * smooth
    value = lab.finish(value)
    return Unreduced(value, lab.keep_weight(value.dtype))


def _sparsemax_sample(rng: np.random.Generator) -> tuple:
    """Scores whose sparsemax support is not at a switch (no score near the threshold)."""
    while True:
        scores = (rng.normal(size=(6, 5)) * 0.8).astype(np.float32)
        labels = rng.integers(0, 5, size=(6,)).astype(np.int32)
        z = np.sort(scores.astype(np.float64), axis=-1)[:, ::-1]
        k = np.arange(1, 6)
        support = 1 + k * z > np.cumsum(z, axis=-1)
        n = support.sum(-1)
        tau = (np.cumsum(z, axis=-1)[np.arange(6), n - 1] - 1) / n
        if np.min(np.abs(scores - tau[:, None])) > 0.05:
            return scores, labels


def _sparsemax_threshold(z):
    r"""The sparsemax threshold :math:`\tau` of each row of ``z`` (last axis, maximum 0):
    the root of the convex, decreasing :math:`f(\tau) = \sum_c \max(z_c - \tau, 0) - 1`
    in :math:`[-1, 0)`. A few bisection steps, then Newton's method from the left,
    :math:`\tau \leftarrow (\sum_{z_c > \tau} z_c - 1) / |\{z_c > \tau\}|`, which never
    overshoots and stops exactly when the support stops changing (Michelot's
    algorithm). Elementwise passes only: the loss's value and gradient took about a
    tenth of optax's sort-based time at ``[4096, 1024]`` on CPU
    (``benchmarks/bench_reduced.py``). Not differentiated (the caller recomputes
    :math:`\tau` from the support)."""
    lo = jnp.full_like(z[..., :1], -1.0)   # (from z: its sharding on an explicit mesh)

    def bisect(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        above = jnp.sum(jnp.maximum(z - mid, 0.0), axis=-1, keepdims=True) >= 1.0
        return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

    lo, _ = jax.lax.fori_loop(0, 8, bisect, (lo, jnp.zeros_like(lo)))

    def newton(tau):
        s = z > tau
        k = jnp.maximum(jnp.sum(s, axis=-1, keepdims=True), 1).astype(z.dtype)
        return (jnp.sum(jnp.where(s, z, 0.0), axis=-1, keepdims=True) - 1.0) / k

    def moving(state):
        tau, previous, i = state
        return jnp.any(tau != previous) & (i <= z.shape[-1])

    def step(state):
        tau, _, i = state
        return newton(tau), tau, i + 1

    first = newton(lo)
    tau, _, _ = jax.lax.while_loop(moving, step, (newton(first), first, 1))
    return tau


@multiclass(static={"axis": AXIS}, layout=_LABELS,
            example=Example(_sparsemax_sample, optax="multiclass_sparsemax_loss",
                            compare=optax_mean("multiclass_sparsemax_loss")))
def multiclass_sparsemax_loss(scores, labels, *, axis=-1):
    r"""Multi-class sparsemax loss (Martins and Astudillo, 2016), integer labels.

    With :math:`\pi = \operatorname{sparsemax}(s)`, the Euclidean projection of
    the scores onto the probability simplex (:math:`\pi_c = \max(s_c - \tau, 0)`,
    :math:`\sum_c \pi_c = 1`):

    .. math:: \ell_i = \sum_c \pi_{ic} s_{ic} - s_{i y_i} + \tfrac12\Bigl(1 - \sum_c \pi_{ic}^2\Bigr)

    the Fenchel-Young loss of the Gini entropy, optax's
    ``multiclass_sparsemax_loss``: 0 exactly when sparsemax puts all its mass
    on the label, and its gradient is :math:`\pi - e_y`. The threshold
    :math:`\tau` is found without sorting (a few bisection steps, then Newton's
    method from below, exact once the support stops changing; outside the
    derivative), and the support's scores then give :math:`\tau` and the loss
    differentiably, so the gradient needs neither a sort nor the iterations. Ties (equal scores, also at the edge of the
    support) are fine: tied scores are in or out of the support together, and
    value and gradient are continuous there. A ``-inf`` score of another class
    is outside the support and contributes nothing.

    Args:
      scores: ``[..., C, ...]`` real-valued class scores, classes along ``axis``.
      labels: integer labels in ``[0, C)``, of the shape of ``scores`` without ``axis``.
      axis: the class axis (static).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-example losses.
      Out-of-range labels: ``ValueError`` when concrete, NaN under ``jit``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> s = jnp.array([[1.0, 0.5, -1.0], [0.0, 2.0, 0.0]])
      >>> jaxloss.multiclass_sparsemax_loss(s, jnp.array([0, 0]), reduction="none")
      Array([0.0625, 2.    ], dtype=float32)

    References: Martins and Astudillo, 2016, "From Softmax to Sparsemax";
    Blondel, Martins and Niculae, 2020, "Learning with Fenchel-Young Losses";
    optax ``multiclass_sparsemax_loss``.
    """
    ax = axis % scores.ndim
    lab = _Labels(labels, scores.shape[ax], None)
    z = jnp.moveaxis(scores, ax, -1)
    top = jax.lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True))
    z = z - jnp.where(jnp.isfinite(top), top, jnp.zeros_like(top))
    tau = _sparsemax_threshold(jax.lax.stop_gradient(z))
    support = z > tau
    inside = jnp.where(support, z, jnp.zeros_like(z))
    k = jnp.maximum(jnp.sum(support, axis=-1, keepdims=True), 1).astype(z.dtype)
    tau = (jnp.sum(inside, axis=-1, keepdims=True) - 1.0) / k  # the same threshold, now differentiable
    pi = jnp.where(support, inside - tau, jnp.zeros_like(z))
    value = jnp.sum(pi * inside, axis=-1) - pick(z, lab.safe, z.ndim - 1) + 0.5 * (1.0 - jnp.sum(pi * pi, axis=-1))
    return lab.finish(value)


@multiclass(static={"axis": AXIS}, layout=_LABELS,
            example=Example(_margin_sample, grad_order=1, optax="multiclass_perceptron_loss",
                            compare=optax_mean("multiclass_perceptron_loss")))
def multiclass_perceptron_loss(scores, labels, *, axis=-1):
    r"""Multi-class perceptron loss (Collins, 2002; optax's ``multiclass_perceptron_loss``).

    .. math:: \ell_i = \max_c s_{ic} - s_{i y_i}

    0 when the label has the largest score; :func:`multiclass_hinge_loss` with
    ``margin=0``. Where several classes share the largest score the gradient of
    the maximum is split between them.

    Args:
      scores: ``[..., C, ...]`` real-valued class scores, classes along ``axis``.
      labels: integer labels in ``[0, C)``, of the shape of ``scores`` without ``axis``.
      axis: the class axis (static).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-example losses.
      Out-of-range labels: ``ValueError`` when concrete, NaN under ``jit``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> s = jnp.array([[2.0, 1.5, -1.0], [0.0, 3.0, 1.0]])
      >>> jaxloss.multiclass_perceptron_loss(s, jnp.array([0, 2]), reduction="none")
      Array([0., 2.], dtype=float32)

    References: Collins, 2002, "Discriminative Training Methods for Hidden
    Markov Models"; optax ``multiclass_perceptron_loss``.
    """
    ax = axis % scores.ndim
    lab = _Labels(labels, scores.shape[ax], None)
    return lab.finish(jnp.max(scores, axis=ax) - lab.pick(scores, ax))


CrossEntropy = cross_entropy.Loss
SparseCrossEntropy = sparse_cross_entropy.Loss
NLLLoss = nll_loss.Loss
SoftmaxFocalLoss = softmax_focal_loss.Loss
MulticlassHingeLoss = multiclass_hinge_loss.Loss
MultiMarginLoss = multi_margin_loss.Loss
MultilabelMarginLoss = multilabel_margin_loss.Loss
GeneralizedCrossEntropy = generalized_cross_entropy.Loss
Poly1CrossEntropy = poly1_cross_entropy.Loss
MulticlassSparsemaxLoss = multiclass_sparsemax_loss.Loss
MulticlassPerceptronLoss = multiclass_perceptron_loss.Loss
