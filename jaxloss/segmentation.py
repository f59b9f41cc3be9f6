r"""Segmentation losses: overlap scores of predicted probabilities against targets.

Two kinds of input:

* **label maps** (:func:`multiclass_dice_loss`, :func:`generalized_dice_loss`,
  :func:`lovasz_softmax_loss`): channels-last logits ``[..., C]`` (any class
  ``axis``) against integer labels ``[...]``, with a softmax over the classes
  and ``ignore_index`` where the anchor library has one; :func:`lovasz_hinge_loss`
  takes binary logits and ``{0, 1}`` targets of one shape. Each docstring gives
  its anchor's semantics (segmentation_models_pytorch, MONAI), what
  ``reduction="none"`` returns, and how a pixel mask (a ``where``/``weights``
  shaped like the labels) applies. The guide page "Dense prediction" says when
  to use which.
* **probabilities and targets of one shape** (:func:`dice_loss`,
  :func:`jaccard_loss`, :func:`tversky_loss`, :func:`focal_tversky_loss`),
  described in the rest of this page.

The second kind takes ``probs`` (probabilities in ``[0, 1]``, or logits with
``from_logits=True``) and ``targets`` of the same shape (hard ``{0, 1}`` masks or
soft targets in ``[0, 1]``; float, int or bool) and computes soft overlap counts

.. math::
   \mathrm{TP} = \sum_i p_i t_i, \qquad
   \mathrm{FP} = \sum_i p_i (1 - t_i), \qquad
   \mathrm{FN} = \sum_i (1 - p_i)\, t_i

over the summed axes, then one loss per score. The losses are written in the
complementary form (``1 - score`` as one fraction, e.g. Dice
:math:`(\mathrm{FP} + \mathrm{FN}) / (2\mathrm{TP} + \mathrm{FP} + \mathrm{FN} + s)`),
so they stay exact when the loss is small.

Which axes are summed (static ``axis``):

* ``axis=None`` (default): one global score over every element, as Keras and
  the worked example of the tutorial. The unreduced loss is then a scalar, so
  ``reduction="none"`` also returns a 0-d array, and ``weights``/``where`` must be
  scalars.
* an int or a tuple of ints: one score per index of the remaining axes, reduced
  by ``reduction`` (``"none"`` returns them, shaped like the input with the
  summed axes removed). For ``probs`` of shape ``[N, H, W, C]``,
  ``axis=(1, 2)`` gives one score per image and class, ``[N, C]``; a
  ``weights`` of shape ``[C]`` is then a per-class weight and ``"mean"`` the
  class-weighted mean score loss.

``weights`` and ``where`` apply per *pixel* or per *score*:

* one that broadcasts to the unreduced loss (the scores) applies per score:
  ``where`` excludes whole scores from the mean, and a ``weights`` of shape
  ``[C]`` with ``axis=(1, 2)`` on ``[N, H, W, C]`` is a per-class weight;
* otherwise one of the inputs' shape (or broadcastable to it) applies per
  pixel, before the counts are formed: a masked pixel leaves TP, FP and FN
  (also with ``from_logits=True``), a pixel of weight ``k`` counts ``k`` times,
  and a score whose pixels are all masked leaves the mean (with ``"none"`` it
  is 0). So ``DiceLoss(from_logits=True) + BinaryCrossEntropyWithLogits()``
  takes one void-pixel mask for both terms. When a shape fits both readings
  (with ``axis=None`` a scalar; a shape that broadcasts to the scores), the
  per-score reading wins.

An empty prediction against an empty target (all counts 0) is a perfect score,
loss 0, for every ``smooth >= 0``; at ``smooth = 0`` the 0/0 there is defined as
0 with a zero gradient, never NaN.

``from_logits=True`` (static) applies a sigmoid to ``probs`` first (with
:math:`1 - p = \sigma(-x)` computed directly), so
``DiceLoss(from_logits=True) + BinaryCrossEntropyWithLogits()`` composes on one
array of logits. For a multi-class softmax on integer labels use
:func:`multiclass_dice_loss`; these losses take ``jax.nn.softmax(logits)`` and
one-hot targets with the default ``from_logits=False`` (per-image scores with
``axis``).
"""

from __future__ import annotations

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import (
    AXES,
    AXIS,
    FLAG,
    NONNEGATIVE,
    OPTIONAL_INT,
    POSITIVE,
    PROBABILITIES,
    choice,
    is_concrete,
    normalize_axis,
)
from ._core import Example, Layout, Role, Unreduced, builtin, element_parts
from ._numerics import safe_div, where_safe
from ._sharding import explicit_spec, unsplit

__all__ = [
    "dice_loss", "DiceLoss",
    "focal_tversky_loss", "FocalTverskyLoss",
    "generalized_dice_loss", "GeneralizedDiceLoss",
    "jaccard_loss", "JaccardLoss",
    "lovasz_hinge_loss", "LovaszHingeLoss",
    "lovasz_softmax_loss", "LovaszSoftmaxLoss",
    "multiclass_dice_loss", "MulticlassDiceLoss",
    "tversky_loss", "TverskyLoss",
]


def _sample(rng: np.random.Generator) -> tuple:
    probs = rng.uniform(0.05, 0.95, size=(2, 4, 4)).astype(np.float32)
    targets = (rng.uniform(size=(2, 4, 4)) < 0.4).astype(np.float32)
    return probs, targets


def _axes(axis, ndim: int, name: str) -> tuple[int, ...]:
    """The summed axes as a sorted tuple of non-negative ints."""
    if axis is None:
        return tuple(range(ndim))
    items = (axis,) if isinstance(axis, numbers.Integral) else axis
    out = tuple(normalize_axis(name, int(a), ndim) for a in items)
    if len(set(out)) != len(out):
        raise ValueError(f"{name}: axis {axis!r} repeats an axis")
    return tuple(sorted(out))


def _validate(name, probs, targets, *, axis=None, **_):
    _axes(axis, probs.ndim, name)


def _counts(probs, targets, axis, from_logits, weights, name):
    """Soft TP, FP, FN over ``axis`` (pixels weighted by ``weights``), and
    whether each score has any pixel left (a float 0/1, the score's weight)."""
    if from_logits:
        p = jax.nn.sigmoid(probs)
        q = jax.nn.sigmoid(-probs)
    else:
        p = probs
        q = 1.0 - probs
    t = targets.astype(p.dtype)
    axes = _axes(axis, probs.ndim, name)
    if weights is not None:  # w p t, w p (1 - t), w q t
        p, q = weights * p, weights * q
    tp = jnp.sum(p * t, axis=axes)
    fp = jnp.sum(p * (1.0 - t), axis=axes)
    fn = jnp.sum(q * t, axis=axes)
    present = None if weights is None else (jnp.sum(weights, axis=axes) > 0).astype(p.dtype)
    return tp, fp, fn, present


def _tversky_complement(tp, fp, fn, alpha, beta, smooth):
    r""":math:`1 - (TP + s)/(TP + \alpha FP + \beta FN + s)` as one fraction (0 for 0/0)."""
    err = alpha * fp + beta * fn
    return safe_div(err, tp + err + smooth)


segmentation = functools.partial(
    builtin("segmentation"),
    static={"axis": AXES, "from_logits": FLAG},
    layout=Layout({"probs": Role(domain=PROBABILITIES.but_not_when("from_logits")),
                   "targets": Role("real", domain=PROBABILITIES)}, where="elements"),
    validate=_validate,
)


@segmentation(checks={"smooth": NONNEGATIVE}, example=Example(_sample, sweep=("smooth", (0.0, 0.5, 1.0, 2.0))))
def dice_loss(probs, targets, *, smooth=1.0, axis=None, from_logits=False, where=None):
    r"""Soft Dice loss (Milletari et al., 2016, "V-Net").

    .. math::
       \ell = 1 - \frac{2\,\mathrm{TP} + s}{\sum_i p_i + \sum_i t_i + s}
            = \frac{\mathrm{FP} + \mathrm{FN}}{2\,\mathrm{TP} + \mathrm{FP} + \mathrm{FN} + s}

    with the soft counts of the module docstring summed over ``axis``
    (:math:`2\mathrm{TP} + \mathrm{FP} + \mathrm{FN} = \sum p + \sum t`). This is
    the Dice of the tutorial and of Keras/segmentation-models; it differs from
    ``optax.losses.dice_loss``, which is :func:`tversky_loss` with
    ``alpha = beta = 1/2`` (the same only for ``smooth = 0``).

    Args:
      probs: probabilities in ``[0, 1]`` (or logits with ``from_logits=True``), any shape.
      targets: targets in ``[0, 1]`` (float, int or bool), the same shape.
      smooth: :math:`s \ge 0`, added to numerator and denominator of the score.
      axis: static; ``None`` (one global score) or the int/tuple of axes summed
        per score (see the module docstring).
      from_logits: static; apply a sigmoid to ``probs`` first.

    Returns:
      The reduced loss. With ``reduction="none"``: a scalar for ``axis=None``
      (one global score), otherwise one loss per index of the remaining axes.
      Empty prediction against empty target gives 0 (with finite gradients).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> t = jnp.array([[0, 0, 1, 1], [0, 1, 1, 0]])
      >>> p = jnp.array([[0.1, 0.1, 0.9, 0.8], [0.2, 0.8, 0.9, 0.1]])
      >>> round(float(jaxloss.dice_loss(p, t)), 6)
      0.123596
      >>> jaxloss.dice_loss(p, t, axis=1, reduction="none").round(4)
      Array([0.102, 0.12 ], dtype=float32)
    """
    element_weights = element_parts(where)[0]
    tp, fp, fn, present = _counts(probs, targets, axis, from_logits, element_weights, "dice_loss")
    err = fp + fn
    return Unreduced(safe_div(err, 2.0 * tp + err + smooth), present)


@segmentation(checks={"smooth": NONNEGATIVE}, example=Example(_sample, sweep=("smooth", (0.0, 0.5, 1.0, 2.0))))
def jaccard_loss(probs, targets, *, smooth=1.0, axis=None, from_logits=False, where=None):
    r"""Soft Jaccard (intersection-over-union) loss.

    .. math::
       \ell = 1 - \frac{\mathrm{TP} + s}{\sum_i p_i + \sum_i t_i - \mathrm{TP} + s}
            = \frac{\mathrm{FP} + \mathrm{FN}}{\mathrm{TP} + \mathrm{FP} + \mathrm{FN} + s}

    It equals :func:`tversky_loss` with ``alpha = beta = 1``.

    Args:
      probs: probabilities in ``[0, 1]`` (or logits with ``from_logits=True``), any shape.
      targets: targets in ``[0, 1]`` (float, int or bool), the same shape.
      smooth: :math:`s \ge 0`.
      axis: static; ``None`` (one global score) or the int/tuple of summed axes.
      from_logits: static; apply a sigmoid to ``probs`` first.

    Returns:
      The reduced loss; with ``reduction="none"`` a scalar for ``axis=None``,
      else one loss per index of the remaining axes.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> p = jnp.array([1.0, 0.5, 0.0]); t = jnp.array([1.0, 1.0, 0.0])
      >>> float(jaxloss.jaccard_loss(p, t, smooth=0.0))
      0.25
    """
    element_weights = element_parts(where)[0]
    tp, fp, fn, present = _counts(probs, targets, axis, from_logits, element_weights, "jaccard_loss")
    err = fp + fn
    return Unreduced(safe_div(err, tp + err + smooth), present)


@segmentation(checks={"alpha": NONNEGATIVE, "beta": NONNEGATIVE, "smooth": NONNEGATIVE},
              example=Example(_sample, sweep=("alpha", (0.1, 0.3, 0.5, 0.9))))
def tversky_loss(probs, targets, *, alpha=0.3, beta=0.7, smooth=1.0, axis=None, from_logits=False,
                 where=None):
    r"""Tversky loss (Salehi et al., 2017, "Tversky loss function for image segmentation").

    .. math::
       \ell = 1 - \frac{\mathrm{TP} + s}{\mathrm{TP} + \alpha\,\mathrm{FP} + \beta\,\mathrm{FN} + s}
            = \frac{\alpha\,\mathrm{FP} + \beta\,\mathrm{FN}}
                    {\mathrm{TP} + \alpha\,\mathrm{FP} + \beta\,\mathrm{FN} + s}

    ``alpha`` weighs false positives and ``beta`` false negatives (as optax and
    segmentation-models-pytorch); ``beta > alpha`` favours recall. The defaults
    ``alpha=0.3, beta=0.7`` are the paper's recommended setting. With
    ``alpha = beta = 1/2`` and ``smooth = 0`` this is :func:`dice_loss`; with
    ``alpha = beta = 1`` it is :func:`jaccard_loss` (any ``smooth``). It is
    ``optax.losses.dice_loss`` on probabilities (``apply_softmax=False``) before
    optax's reduction over the class axis.

    Args:
      probs: probabilities in ``[0, 1]`` (or logits with ``from_logits=True``), any shape.
      targets: targets in ``[0, 1]`` (float, int or bool), the same shape.
      alpha: weight of false positives, ``>= 0``.
      beta: weight of false negatives, ``>= 0``.
      smooth: :math:`s \ge 0`.
      axis: static; ``None`` (one global score) or the int/tuple of summed axes.
      from_logits: static; apply a sigmoid to ``probs`` first.

    Returns:
      The reduced loss; with ``reduction="none"`` a scalar for ``axis=None``,
      else one loss per index of the remaining axes.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> p = jnp.array([1.0, 1.0, 0.0]); t = jnp.array([1.0, 0.0, 1.0])
      >>> float(jaxloss.tversky_loss(p, t, alpha=0.25, beta=0.75, smooth=0.0))
      0.5
    """
    element_weights = element_parts(where)[0]
    tp, fp, fn, present = _counts(probs, targets, axis, from_logits, element_weights, "tversky_loss")
    return Unreduced(_tversky_complement(tp, fp, fn, alpha, beta, smooth), present)


@segmentation(checks={"alpha": NONNEGATIVE, "beta": NONNEGATIVE, "smooth": NONNEGATIVE, "gamma": POSITIVE},
              example=Example(_sample, sweep=("gamma", (0.5, 0.75, 1.0, 2.0))))
def focal_tversky_loss(probs, targets, *, alpha=0.3, beta=0.7, gamma=0.75, smooth=1.0, axis=None,
                       from_logits=False, where=None):
    r"""Focal Tversky loss (Abraham & Khan, 2019).

    .. math:: \ell = \bigl(1 - \mathrm{TI}\bigr)^{\gamma}, \qquad
              1 - \mathrm{TI} = \frac{\alpha\,\mathrm{FP} + \beta\,\mathrm{FN}}
                                     {\mathrm{TP} + \alpha\,\mathrm{FP} + \beta\,\mathrm{FN} + s}

    i.e. :func:`tversky_loss` raised to ``gamma``. The exponent is ``gamma``
    itself, as in segmentation-models-pytorch and most Keras code; the paper
    writes :math:`(1 - \mathrm{TI})^{1/\gamma}`, so its recommended
    :math:`\gamma = 4/3` is the default ``gamma=0.75`` here. ``gamma < 1``
    focuses on hard (low-overlap) examples. At a perfect score (``1 - TI = 0``)
    the loss is 0 with a zero gradient, also for ``gamma < 1`` where
    :math:`u^\gamma` has an infinite slope at 0.

    Args:
      probs: probabilities in ``[0, 1]`` (or logits with ``from_logits=True``), any shape.
      targets: targets in ``[0, 1]`` (float, int or bool), the same shape.
      alpha: weight of false positives, ``>= 0``.
      beta: weight of false negatives, ``>= 0``.
      gamma: exponent, ``> 0``; ``gamma=1`` is :func:`tversky_loss`.
      smooth: :math:`s \ge 0`.
      axis: static; ``None`` (one global score) or the int/tuple of summed axes.
      from_logits: static; apply a sigmoid to ``probs`` first.

    Returns:
      The reduced loss; with ``reduction="none"`` a scalar for ``axis=None``,
      else one loss per index of the remaining axes.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> p = jnp.array([1.0, 1.0, 0.0]); t = jnp.array([1.0, 0.0, 1.0])
      >>> float(jaxloss.focal_tversky_loss(p, t, alpha=0.25, beta=0.75, gamma=2.0, smooth=0.0))
      0.25
    """
    element_weights = element_parts(where)[0]
    tp, fp, fn, present = _counts(probs, targets, axis, from_logits, element_weights, "focal_tversky_loss")
    u = _tversky_complement(tp, fp, fn, alpha, beta, smooth)
    return Unreduced(where_safe(lambda v: jnp.power(v, gamma), u, u > 0), present)


# ---------------------------------------------------------------------------
# Label maps: channels-last logits [..., C] against integer labels [...]
# ---------------------------------------------------------------------------


def _label_map_sample(rng: np.random.Generator) -> tuple:
    logits = (rng.normal(size=(2, 3, 3, 3)) * 1.5).astype(np.float32)
    labels = rng.integers(0, 3, size=(2, 3, 3)).astype(np.int32)
    return logits, labels


def _binary_map_sample(rng: np.random.Generator) -> tuple:
    logits = (rng.normal(size=(2, 4, 4)) * 1.5).astype(np.float32)
    targets = (rng.uniform(size=(2, 4, 4)) < 0.4).astype(np.int32)
    return logits, targets


class _LabelMap:
    """Channels-last probabilities ``p [..., C]``, the one-hot targets ``t``, the
    pixel weights ``w`` (0 at ``ignore_index`` pixels and masked elements) and a
    NaN offset for labels outside ``[0, C)`` that are not ignored."""

    def __init__(self, logits, labels, axis, ignore_index, element_weights, from_logits=True):
        x = jnp.moveaxis(logits, axis, -1)
        self.num_classes = x.shape[-1]
        self.p = jax.nn.softmax(x, axis=-1) if from_logits else x
        labels = labels.astype(jnp.int32) if labels.dtype.itemsize < 4 else labels
        keep = None if ignore_index is None else labels != ignore_index
        in_range = (labels >= 0) & (labels < self.num_classes)
        self.bad = ~in_range if keep is None else keep & ~in_range
        classes = jax.lax.broadcasted_iota(labels.dtype, (1,) * labels.ndim + (self.num_classes,), labels.ndim)
        self.t = (labels[..., None] == classes).astype(self.p.dtype)
        w = None if element_weights is None else jnp.moveaxis(element_weights, axis, -1)
        if keep is not None:
            k = keep[..., None].astype(self.p.dtype)
            w = k if w is None else w * k
        self.w = w
        self.element_weights = None if element_weights is None else jnp.moveaxis(element_weights, axis, -1)

    def weighted(self, v):
        return v if self.w is None else self.w * v

    def nan_if_bad(self, value, axes):
        """``value`` plus NaN where a group (summed over ``axes`` of the labels) has a bad label."""
        bad = jnp.any(self.bad, axis=axes) if axes else self.bad
        return value + jnp.where(bad, jnp.nan, 0.0).astype(value.dtype)


def _label_map_axes(name, logits, labels, *, axis=-1, **_):
    """The class axis (the layout checks its range and the labels' shape)."""
    if logits.ndim < 1:
        raise ValueError(f"{name}: logits must have a class axis, got a scalar")


def _per_sample(name, logits, labels, *, axis=-1, include_background=True, **_):
    """Per-sample losses need a sample axis besides the class axis."""
    if logits.ndim < 2:
        raise ValueError(
            f"{name}: logits must have a sample axis and a class axis ([N, ..., C]), got shape {tuple(logits.shape)}"
        )
    c = logits.shape[normalize_axis(name, axis, logits.ndim)]
    if not include_background and c < 2:
        raise ValueError(f"{name}: include_background=False needs at least 2 classes, got {c}")


def _per_image_axis(name, logits, labels, *, axis=-1, per_image=False, **_):
    if per_image and logits.ndim < 2:
        raise ValueError(
            f"{name}: per_image=True needs an image axis besides the class axis, got logits of shape "
            f"{tuple(logits.shape)}"
        )


# The label-map Dice losses form FP + FN as sum(p) + sum(t) - 2 TP, as their anchors do:
# measured in value-and-gradient on [8, 128, 128, 21] logits, the complementary sums
# sum(p (1 - t) + (1 - p) t) took 1.6x the time and twice the temporary memory (of
# optax.losses.dice_loss, which this form matches). The gradient is exact either way; the
# value's relative precision at a loss l is about 1e-7 / l in float32.
_LABEL_MAP_LABELS = Role("labels", "reduced", indexes=True, ignore="ignore_index")
_LABEL_MAP = Layout({"logits": Role(domain=PROBABILITIES.but_not_when("from_logits")), "labels": _LABEL_MAP_LABELS},
                    axis="axis", where="elements")
_LOGITS_MAP = Layout({"labels": _LABEL_MAP_LABELS}, axis="axis", where="elements")


@segmentation(static={"axis": AXIS, "ignore_index": OPTIONAL_INT, "from_logits": FLAG}, layout=_LABEL_MAP,
              validate=_label_map_axes, checks={"smooth": NONNEGATIVE, "eps": NONNEGATIVE},
              example=Example(_label_map_sample, sweep=("smooth", (0.0, 0.5, 1.0, 2.0)), optax="dice_loss"))
def multiclass_dice_loss(logits, labels, *, smooth=0.0, eps=1e-7, ignore_index=None, from_logits=True, axis=-1,
                         where=None):
    r"""Multi-class soft Dice loss on integer label maps, one score per class.

    With :math:`p = \operatorname{softmax}(x)` over the class axis and the one-hot
    targets :math:`t_{ic} = [y_i = c]`, summed over every pixel :math:`i` of the
    batch (not per image):

    .. math::
       \ell_c = \Bigl(1 - \frac{2 \sum_i p_{ic} t_{ic} + s}
                               {\max\bigl(\sum_i (p_{ic} + t_{ic}) + s,\ \epsilon\bigr)}\Bigr)
                \cdot \bigl[\textstyle\sum_i t_{ic} > 0\bigr], \qquad
       \ell = \frac{1}{C} \sum_c \ell_c

    The semantics of segmentation_models_pytorch ``DiceLoss(mode="multiclass")``:
    a class absent from the labels scores 0 and still counts in the mean over the
    ``C`` classes, ``smooth`` is added to numerator and denominator, the
    denominator is clamped below at ``eps``, and ``ignore_index`` pixels leave
    both the predictions and the targets. jaxloss takes channels-last logits
    ``[..., C]`` (any ``axis``) and labels ``[...]``. It equals
    ``optax.losses.dice_loss(logits, one_hot(labels), axis=<all but the class
    axis>, reduction="none")`` at ``smooth=0`` when every class is present;
    optax scores an absent class :math:`1 - s / (\sum_i p_{ic} + s)` and adds
    its ``smooth`` in the Tversky form (twice the weight of this one).

    Args:
      logits: class logits ``[..., C]`` (probabilities with ``from_logits=False``), floating point.
      labels: integer class labels, the shape of ``logits`` without ``axis``.
      smooth: :math:`s \ge 0`, added to numerator and denominator (segmentation_models_pytorch's default 0).
      eps: :math:`\epsilon \ge 0`, the lower clamp of the denominator.
      ignore_index: static; pixels with this label leave every class's counts.
      from_logits: static; ``True`` (default) applies a softmax over ``axis``;
        ``False`` takes probabilities.
      axis: static; the class axis of ``logits``.

    Returns:
      The reduced loss; with ``reduction="none"`` the ``[C]`` per-class losses
      (0 for a class absent from the labels). A ``weights`` of shape ``[C]`` is a
      per-class weight; a ``where``/``weights`` shaped like ``labels`` is a pixel
      mask. Labels outside ``[0, C)`` (not ``ignore_index``) raise ``ValueError``
      when concrete and give NaN under ``jit``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> logits = jnp.array([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0], [4.0, 0.0, 0.0]])
      >>> labels = jnp.array([0, 1, 1, 0])            # class 2 is absent: it scores 0
      >>> jaxloss.multiclass_dice_loss(logits, labels, reduction="none").round(4)
      Array([0.0267, 0.3489, 0.    ], dtype=float32)
    """
    element_weights = element_parts(where)[0]
    m = _LabelMap(logits, labels, axis, ignore_index, element_weights, from_logits)
    pixels = tuple(range(m.p.ndim - 1))
    p, t = m.p, m.t
    tp = jnp.sum(m.weighted(p * t), axis=pixels)
    ground = jnp.sum(m.weighted(t), axis=pixels)
    card = jnp.sum(m.weighted(p), axis=pixels) + ground
    den = card + smooth
    # 1 - (2 TP + s) / max(den, eps) as one fraction; FP + FN = card - 2 TP (see the note above _LABEL_MAP)
    loss = safe_div(card - 2.0 * tp + jnp.maximum(eps - den, 0.0), jnp.maximum(den, eps))
    present = ground > 0
    loss = m.nan_if_bad(jnp.where(present, loss, 0.0), tuple(range(labels.ndim)))
    if m.w is None:
        return loss
    return Unreduced(loss, (jnp.sum(m.w, axis=pixels) > 0).astype(loss.dtype))


@segmentation(static={"weighting": choice("square", "simple", "uniform"), "include_background": FLAG, "axis": AXIS},
              layout=_LOGITS_MAP, validate=_per_sample,
              checks={"smooth_nr": NONNEGATIVE, "smooth_dr": NONNEGATIVE},
              example=Example(_label_map_sample, sweep=("smooth_nr", (0.0, 0.5, 1.0, 2.0))))
def generalized_dice_loss(logits, labels, *, smooth_nr=1e-5, smooth_dr=1e-5, weighting="square",
                          include_background=True, axis=-1, where=None):
    r"""Generalized Dice loss (Sudre et al., 2017), one score per sample.

    With :math:`p = \operatorname{softmax}(x)`, one-hot targets :math:`t`, and for
    sample :math:`n` and class :math:`c` the sums over its pixels
    :math:`I_{nc} = \sum_i p t`, :math:`G_{nc} = \sum_i t`, :math:`P_{nc} = \sum_i p`:

    .. math::
       \ell_n = 1 - \frac{2 \sum_c w_{nc} I_{nc} + s_{nr}}{\sum_c w_{nc} (G_{nc} + P_{nc}) + s_{dr}},
       \qquad w_{nc} = G_{nc}^{-2}\ (\text{square}),\ G_{nc}^{-1}\ (\text{simple}),\ 1\ (\text{uniform})

    The semantics of MONAI ``GeneralizedDiceLoss(softmax=True, to_onehot_y=True,
    w_type=weighting)``: the weight of a class absent from a sample (an infinite
    :math:`1/G`) is the largest weight of the sample's present classes (0 if none
    is present, which makes :math:`\ell_n = 1 - s_{nr}/s_{dr}`, 0 by default),
    the weights are constants for the gradient (they depend on the labels only),
    and ``"mean"`` averages over the samples. The sample axis is the first axis
    other than the class axis; jaxloss takes channels-last logits ``[N, ..., C]``.

    Args:
      logits: class logits ``[N, ..., C]``, floating point.
      labels: integer class labels ``[N, ...]``, the shape of ``logits`` without ``axis``.
      smooth_nr: :math:`s_{nr} \ge 0`, added to the numerator.
      smooth_dr: :math:`s_{dr} \ge 0`, added to the denominator.
      weighting: static; ``"square"`` (default), ``"simple"`` or ``"uniform"``.
      include_background: static; ``False`` leaves class 0 out of the score
        (the softmax still runs over every class).
      axis: static; the class axis of ``logits``.

    Returns:
      The reduced loss; with ``reduction="none"`` the ``[N]`` per-sample losses.
      Labels outside ``[0, C)`` raise ``ValueError`` when concrete and give NaN
      for that sample under ``jit``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> logits = jnp.array([[[3.0, 0.0], [0.0, 3.0], [0.0, 3.0]], [[3.0, 0.0], [3.0, 0.0], [0.0, 3.0]]])
      >>> labels = jnp.array([[0, 1, 1], [0, 0, 0]])
      >>> jaxloss.generalized_dice_loss(logits, labels, reduction="none").round(4)
      Array([0.0586, 0.3491], dtype=float32)
    """
    element_weights = element_parts(where)[0]
    m = _LabelMap(logits, labels, axis, None, element_weights)
    p, t = m.p, m.t
    start = 0 if include_background else 1
    if start:
        p, t = p[..., start:], t[..., start:]
    w_px = None if m.w is None else m.w[..., start:]
    weigh = (lambda v: v) if w_px is None else (lambda v: w_px * v)
    pixels = tuple(range(1, p.ndim - 1))
    tp = jnp.sum(weigh(p * t), axis=pixels)
    ground = jnp.sum(weigh(t), axis=pixels)
    errors = jnp.sum(weigh(p), axis=pixels) + ground - 2.0 * tp  # G + P - 2 I (see the note above _LABEL_MAP)
    present = ground > 0
    if weighting == "uniform":
        w = jnp.ones_like(ground)
    else:
        inverse = where_safe(lambda g: 1.0 / (g * g if weighting == "square" else g), ground, present)
        w = jnp.where(present, inverse, jnp.max(inverse, axis=-1, keepdims=True))
    w = jax.lax.stop_gradient(w)
    num_err = jnp.sum(w * errors, axis=-1)  # sum_c w (G + P) - 2 sum_c w I
    den = 2.0 * jnp.sum(w * tp, axis=-1) + num_err + smooth_dr
    # 1 - (2 sum w I + s_nr) / (sum w (G + P) + s_dr), as one fraction
    loss = m.nan_if_bad(safe_div(num_err + smooth_dr - smooth_nr, den), tuple(range(1, labels.ndim)))
    if m.element_weights is None:
        return loss
    return Unreduced(loss, (jnp.sum(m.element_weights, axis=tuple(range(1, p.ndim))) > 0).astype(loss.dtype))


def _lovasz(errors, fg, w):
    r"""The Lovász extension of the Jaccard loss along the last axis.

    ``errors``, ``fg`` (0/1 ground truth) and ``w`` (pixel weights, 0 for a
    left-out pixel) of one shape ``[..., P]``; one sort per leading index
    (a batched sort, no loop). Pixels of weight 0 sort last and add 0; a pixel
    of weight ``k`` counts as ``k`` pixels of its error. The gradient flows
    through the sorted errors; the Jaccard increments are constants."""
    # Sorting the key with an iota and gathering the rest was 1.7x faster in value and gradient
    # (21 classes of 131072 pixels, CPU) than sorting all four arrays together.
    # On an explicit mesh the pixels (the sorted axis) may be split over devices: the sort
    # needs each row whole, and its index operand the sharding of its key.
    errors, fg, w = (unsplit(a, -1) for a in (errors, fg, w))
    key = jax.lax.stop_gradient(jnp.where(w > 0, -errors, jnp.inf))
    iota = jax.lax.broadcasted_iota(jnp.int32, errors.shape, errors.ndim - 1, out_sharding=explicit_spec(key))
    _, perm = jax.lax.sort((key, iota), dimension=-1, num_keys=1)
    e, g, v = (jnp.take_along_axis(a, perm, axis=-1) for a in (errors, fg, w))
    gts = jnp.sum(v * g, axis=-1, keepdims=True)
    union = gts + jnp.cumsum(v * (1.0 - g), axis=-1)
    # 1 - (gts - cumsum(v g)) / union, whose numerator is cumsum(v): exact, and 0 where nothing is counted
    jaccard = safe_div(jnp.cumsum(v, axis=-1), union)
    increments = jnp.diff(jaccard, axis=-1, prepend=jnp.zeros_like(jaccard[..., :1]))
    return jnp.sum(e * jax.lax.stop_gradient(increments), axis=-1)


@segmentation(static={"ignore_index": OPTIONAL_INT, "per_image": FLAG, "axis": AXIS}, layout=_LOGITS_MAP,
              validate=_per_image_axis, example=Example(_label_map_sample, grad_order=1))
def lovasz_softmax_loss(logits, labels, *, ignore_index=None, per_image=False, axis=-1, where=None):
    r"""Lovász-softmax loss (Berman et al., 2018): a convex surrogate of the mean IoU.

    With :math:`p = \operatorname{softmax}(x)`, for each class :math:`c` the
    errors :math:`e_{ic} = |[y_i = c] - p_{ic}|` sorted in decreasing order
    :math:`e_{\pi_1 c} \ge e_{\pi_2 c} \ge \dots`, and the Jaccard loss
    :math:`J_c(k)` of predicting the first :math:`k` sorted pixels wrongly:

    .. math::
       \ell = \frac{1}{|\mathcal{C}_+|} \sum_{c \in \mathcal{C}_+}
              \sum_k e_{\pi_k c}\,\bigl(J_c(k) - J_c(k - 1)\bigr), \qquad
       J_c(k) = 1 - \frac{|F_c| - |F_c \cap \{\pi_1..\pi_k\}|}{|F_c| + |\{\pi_1..\pi_k\} \setminus F_c|}

    over the classes :math:`\mathcal{C}_+` present in the labels (``classes="present"``),
    :math:`F_c` the pixels of class :math:`c`. The semantics of
    segmentation_models_pytorch ``LovaszLoss(mode="multiclass")``: softmax over
    the class axis, ``ignore_index`` pixels removed, all pixels of the batch in
    one sort (``per_image=False``, the default) or one loss per image
    (``per_image=True``, then the mean over images, an image whose pixels are all
    ignored counting 0). No present class gives 0. Under ``jit`` the classes
    (and images) are sorted in one batched sort; the gradient is the Lovász
    extension's, through the sorted errors.

    Args:
      logits: class logits ``[..., C]``, floating point.
      labels: integer class labels, the shape of ``logits`` without ``axis``.
      ignore_index: static; pixels with this label are left out.
      per_image: static; one loss per image (the first axis of ``labels``).
      axis: static; the class axis of ``logits``.

    Returns:
      The reduced loss; with ``reduction="none"`` a scalar (``per_image=False``)
      or the ``[N]`` per-image losses. A ``where``/``weights`` shaped like
      ``labels`` masks or weights pixels (a pixel of weight ``k`` counts ``k``
      times; an image whose pixels are all masked leaves the mean).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> logits = jnp.array([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
      >>> round(float(jaxloss.lovasz_softmax_loss(logits, jnp.array([0, 1, 1]))), 4)
      0.4251
    """
    element_weights = element_parts(where)[0]
    m = _LabelMap(logits, labels, axis, ignore_index, element_weights)
    c = m.num_classes
    lead = 1 if per_image else 0
    groups = m.p.shape[:lead]

    def flat(a):  # [groups..., pixels, C] -> [groups..., C, pixels]
        return jnp.swapaxes(a.reshape(groups + (-1, c)), -1, -2)

    fg = flat(m.t)
    w = flat(jnp.broadcast_to(m.w, m.p.shape)) if m.w is not None else jnp.ones_like(fg)
    per_class = _lovasz(jnp.abs(fg - flat(m.p)), fg, w)
    present = jnp.sum(w * fg, axis=-1) > 0
    loss = safe_div(jnp.sum(jnp.where(present, per_class, 0.0), axis=-1), jnp.sum(present, axis=-1).astype(fg.dtype))
    loss = m.nan_if_bad(loss, tuple(range(lead, labels.ndim)))
    if m.element_weights is None:
        return loss
    kept = jnp.sum(m.element_weights.reshape(groups + (-1,)), axis=-1) > 0
    return Unreduced(loss, kept.astype(loss.dtype))


def _binary_targets(name, logits, targets, *, ignore_index=None, per_image=True, **_):
    if per_image and logits.ndim < 1:
        raise ValueError(f"{name}: per_image=True needs an image axis, got a scalar")
    if is_concrete(targets):
        t = np.asarray(targets)
        bad = (t != 0) & (t != 1)
        if ignore_index is not None:
            bad &= t != ignore_index
        if bad.any():
            allowed = "0 or 1" + ("" if ignore_index is None else f" or ignore_index={ignore_index}")
            raise ValueError(f"{name}: targets must be {allowed}, got {np.unique(t[bad])[:5].tolist()}")


@segmentation(static={"ignore_index": OPTIONAL_INT, "per_image": FLAG},
              layout=Layout({"targets": Role("real")}, where="elements"), validate=_binary_targets,
              example=Example(_binary_map_sample, grad_order=1))
def lovasz_hinge_loss(logits, targets, *, ignore_index=None, per_image=True, where=None):
    r"""Binary Lovász hinge loss (Berman et al., 2018): a convex surrogate of the IoU.

    With signs :math:`s_i = 2 t_i - 1`, hinge errors :math:`e_i = 1 - s_i x_i`
    sorted in decreasing order and :math:`J(k)` the Jaccard loss of the
    foreground :math:`F = \{i : t_i = 1\}` when the first :math:`k` sorted pixels
    are wrong:

    .. math::
       \ell = \sum_k \max(e_{\pi_k}, 0)\,\bigl(J(k) - J(k - 1)\bigr), \qquad
       J(k) = 1 - \frac{|F| - |F \cap \{\pi_1..\pi_k\}|}{|F| + |\{\pi_1..\pi_k\} \setminus F|}

    The semantics of segmentation_models_pytorch's binary Lovász hinge
    (``LovaszLoss(mode="binary")``): the hinge on logits, ``ignore_index``
    pixels removed, one loss per image and their mean (``per_image=True``, the
    default here as in Berman's code; segmentation_models_pytorch's class
    defaults to ``False``) or one sort over the batch (``per_image=False``). An
    image whose pixels are all ignored counts 0. The images are sorted in one
    batched sort under ``jit``.

    Args:
      logits: logits ``[N, ...]``, floating point.
      targets: binary targets ``{0, 1}`` (or ``ignore_index``), the same shape; int, float or bool.
      ignore_index: static; pixels whose target equals it are left out.
      per_image: static; one loss per image (axis 0) and their mean.

    Returns:
      The reduced loss; with ``reduction="none"`` the ``[N]`` per-image losses
      (``per_image=True``) or a scalar. Concrete targets other than 0, 1 and
      ``ignore_index`` raise ``ValueError``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> logits = jnp.array([[3.0, -2.0, 0.5, -0.5]])
      >>> round(float(jaxloss.lovasz_hinge_loss(logits, jnp.array([[1, 0, 1, 0]]))), 4)
      0.3333
    """
    element_weights = element_parts(where)[0]
    keep = None if ignore_index is None else targets != ignore_index
    fg = jnp.where(targets == 1, 1.0, 0.0).astype(logits.dtype)
    w = element_weights
    if keep is not None:
        w = keep.astype(logits.dtype) if w is None else w * keep
    lead = 1 if per_image else 0
    groups = logits.shape[:lead]
    errors = 1.0 - logits * (2.0 * fg - 1.0)
    hinge = jnp.where(errors > 0, errors, 0.0)
    flat = (lambda a: a.reshape(groups + (-1,)))
    loss = _lovasz(flat(hinge), flat(fg), flat(w) if w is not None else jnp.ones_like(flat(fg)))
    if element_weights is None:
        return loss
    return Unreduced(loss, (jnp.sum(flat(element_weights), axis=-1) > 0).astype(loss.dtype))


DiceLoss = dice_loss.Loss
JaccardLoss = jaccard_loss.Loss
TverskyLoss = tversky_loss.Loss
FocalTverskyLoss = focal_tversky_loss.Loss
MulticlassDiceLoss = multiclass_dice_loss.Loss
GeneralizedDiceLoss = generalized_dice_loss.Loss
LovaszSoftmaxLoss = lovasz_softmax_loss.Loss
LovaszHingeLoss = lovasz_hinge_loss.Loss
