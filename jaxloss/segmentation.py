r"""Segmentation losses: overlap scores of predicted probabilities against targets.

Every function here takes ``probs`` (probabilities in ``[0, 1]``, or logits with
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
array of logits. For a multi-class softmax, pass ``jax.nn.softmax(logits)``
and one-hot targets with the default ``from_logits=False``.
"""

from __future__ import annotations

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import AXES, FLAG, NONNEGATIVE, POSITIVE, PROBABILITIES, normalize_axis
from ._core import Example, Layout, Unreduced, builtin
from ._numerics import safe_div, where_safe

__all__ = [
    "dice_loss", "DiceLoss",
    "focal_tversky_loss", "FocalTverskyLoss",
    "jaccard_loss", "JaccardLoss",
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
    layout=Layout(floats=("probs",), dense=True,
                  values={"probs": PROBABILITIES.but_not_when("from_logits"), "targets": PROBABILITIES}),
    validate=_validate,
)


@segmentation(checks={"smooth": NONNEGATIVE}, example=Example(_sample, sweep=("smooth", (0.0, 0.5, 1.0, 2.0))))
def dice_loss(probs, targets, *, smooth=1.0, axis=None, from_logits=False, element_weights=None):
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
    tp, fp, fn, present = _counts(probs, targets, axis, from_logits, element_weights, "dice_loss")
    err = fp + fn
    return Unreduced(safe_div(err, 2.0 * tp + err + smooth), present)


@segmentation(checks={"smooth": NONNEGATIVE}, example=Example(_sample, sweep=("smooth", (0.0, 0.5, 1.0, 2.0))))
def jaccard_loss(probs, targets, *, smooth=1.0, axis=None, from_logits=False, element_weights=None):
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
    tp, fp, fn, present = _counts(probs, targets, axis, from_logits, element_weights, "jaccard_loss")
    err = fp + fn
    return Unreduced(safe_div(err, tp + err + smooth), present)


@segmentation(checks={"alpha": NONNEGATIVE, "beta": NONNEGATIVE, "smooth": NONNEGATIVE},
              example=Example(_sample, sweep=("alpha", (0.1, 0.3, 0.5, 0.9))))
def tversky_loss(probs, targets, *, alpha=0.3, beta=0.7, smooth=1.0, axis=None, from_logits=False,
                 element_weights=None):
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
    tp, fp, fn, present = _counts(probs, targets, axis, from_logits, element_weights, "tversky_loss")
    return Unreduced(_tversky_complement(tp, fp, fn, alpha, beta, smooth), present)


@segmentation(checks={"alpha": NONNEGATIVE, "beta": NONNEGATIVE, "smooth": NONNEGATIVE, "gamma": POSITIVE},
              example=Example(_sample, sweep=("gamma", (0.5, 0.75, 1.0, 2.0))))
def focal_tversky_loss(probs, targets, *, alpha=0.3, beta=0.7, gamma=0.75, smooth=1.0, axis=None,
                       from_logits=False, element_weights=None):
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
    tp, fp, fn, present = _counts(probs, targets, axis, from_logits, element_weights, "focal_tversky_loss")
    u = _tversky_complement(tp, fp, fn, alpha, beta, smooth)
    return Unreduced(where_safe(lambda v: jnp.power(v, gamma), u, u > 0), present)


DiceLoss = dice_loss.Loss
JaccardLoss = jaccard_loss.Loss
TverskyLoss = tversky_loss.Loss
FocalTverskyLoss = focal_tversky_loss.Loss
