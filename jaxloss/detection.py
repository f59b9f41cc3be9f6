r"""Box-regression losses: overlap losses of predicted boxes against target boxes.

Every function here takes ``pred_boxes`` and ``target_boxes`` of one shape
``[..., 4]``, each box ``(x1, y1, x2, y2)`` with ``x1 <= x2`` and ``y1 <= y2``
(torchvision's ``xyxy`` format), and returns one loss per box: ``"none"`` gives
the shape ``[...]``, and ``weights``/``where`` broadcast to it (a ``where`` that
masks a box zeroes both of its boxes before the math, so a NaN there reaches
neither the value nor the gradient).

With :math:`I` the intersection area, :math:`U` the union area,
:math:`\mathrm{IoU} = I / (U + \epsilon)` and :math:`C` the smallest box
enclosing both, the losses are torchvision's ``generalized_box_iou_loss``,
``distance_box_iou_loss`` and ``complete_box_iou_loss``, value for value. Where
torchvision divides by zero (the aspect ratio of a box of zero width and
height, with CIoU's values and gradients NaN), jaxloss is finite: every
division is a safe one and every kink of ``max``/``min`` has a finite one-sided
(averaged) derivative, so identical boxes and zero-area boxes give finite
values and gradients.

``eps`` (``>= 0``, traced) is torchvision's small constant, added where it adds
it; with ``eps = 0`` a 0/0 is defined as 0 with a zero gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import NONNEGATIVE
from ._core import Example, Layout, builtin
from ._numerics import safe_div, where_safe

__all__ = [
    "ciou_loss", "CIoULoss",
    "diou_loss", "DIoULoss",
    "giou_loss", "GIoULoss",
]

detection = builtin("detection")


def _boxes(rng: np.random.Generator) -> tuple:
    """Overlapping and disjoint pairs whose aspect ratios agree, so that CIoU's
    aspect term ``v`` is 0 there: at such points CIoU's constant-``alpha``
    gradient (torchvision's) equals the true derivative the shared
    finite-difference checks compare with. ``tests/test_detection.py`` checks
    the gradient where ``v > 0``."""
    centre = rng.uniform(2.0, 8.0, size=(5, 2))
    size = rng.uniform(1.0, 4.0, size=(5, 2))
    target = np.concatenate([centre - size / 2, centre + size / 2], axis=-1)
    shift = rng.uniform(-3.0, 3.0, size=(5, 2))
    scale = rng.uniform(0.6, 1.5, size=(5, 1))
    pred = np.concatenate([centre + shift - scale * size / 2, centre + shift + scale * size / 2], axis=-1)
    return pred.astype(np.float32), target.astype(np.float32)


def _validate(name, pred_boxes, target_boxes, **_):
    if pred_boxes.ndim == 0 or pred_boxes.shape[-1] != 4:
        raise ValueError(
            f"{name}: boxes must have a last axis of size 4, (x1, y1, x2, y2), got shape {tuple(pred_boxes.shape)}"
        )


_BOXES = Layout(axis=-1)


def _geometry(pred_boxes, target_boxes, eps):
    """IoU, the union, and the enclosing box's width and height."""
    x1, y1, x2, y2 = (pred_boxes[..., k] for k in range(4))
    x1g, y1g, x2g, y2g = (target_boxes[..., k] for k in range(4))
    iw = jnp.minimum(x2, x2g) - jnp.maximum(x1, x1g)
    ih = jnp.minimum(y2, y2g) - jnp.maximum(y1, y1g)
    inter = jnp.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    iou = safe_div(inter, union + eps)
    cw = jnp.maximum(x2, x2g) - jnp.minimum(x1, x1g)
    ch = jnp.maximum(y2, y2g) - jnp.minimum(y1, y1g)
    return iou, union, cw, ch


def _centre_penalty(pred_boxes, target_boxes, cw, ch, eps):
    r""":math:`\rho^2 / (c^2 + \epsilon)`: squared centre distance over the enclosing box's squared diagonal."""
    dx = (pred_boxes[..., 0] + pred_boxes[..., 2] - target_boxes[..., 0] - target_boxes[..., 2]) / 2
    dy = (pred_boxes[..., 1] + pred_boxes[..., 3] - target_boxes[..., 1] - target_boxes[..., 3]) / 2
    return safe_div(dx * dx + dy * dy, cw * cw + ch * ch + eps)


def _aspect_angle(w, h):
    r""":math:`\arctan(w / h)` as torchvision computes it, finite with a finite
    gradient also at ``h = 0`` (the limit :math:`\pm\pi/2`, as ``atan(±inf)``
    there) and 0 with a zero gradient for a point box (``w = h = 0``, where
    torchvision's ``atan(0/0)`` is NaN)."""
    s = jnp.where(h < 0, -1.0, 1.0).astype(w.dtype)  # atan(w/h) = atan2(s w, s h): the same branch for h < 0
    ok = (w != 0) | (h != 0)
    return where_safe(lambda a: jnp.arctan2(a[0], a[1]), jnp.stack([s * w, s * h]), ok[None], safe=1.0)[0]


@detection(layout=_BOXES, validate=_validate, checks={"eps": NONNEGATIVE}, class_name="GIoULoss",
           example=Example(_boxes, sweep=("eps", (0.0, 0.001, 0.1, 1.0))))
def giou_loss(pred_boxes, target_boxes, *, eps=1e-7):
    r"""Generalized IoU loss (Rezatofighi et al., 2019).

    .. math::
       \ell = 1 - \mathrm{IoU} + \frac{|C| - U}{|C| + \epsilon}, \qquad
       \mathrm{IoU} = \frac{I}{U + \epsilon}

    with :math:`|C|` the area of the smallest box enclosing both. In
    :math:`[0, 2)`; it keeps a gradient when the boxes do not overlap. The
    semantics of torchvision ``generalized_box_iou_loss``.

    Args:
      pred_boxes: predicted boxes ``[..., 4]`` as ``(x1, y1, x2, y2)``, floating point.
      target_boxes: target boxes, the same shape.
      eps: :math:`\epsilon \ge 0`, torchvision's guard against division by zero.

    Returns:
      The reduced loss; with ``reduction="none"`` one loss per box, shape ``[...]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> pred = jnp.array([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
      >>> target = jnp.array([[1.0, 1.0, 3.0, 3.0], [2.0, 0.0, 3.0, 1.0]])
      >>> jaxloss.giou_loss(pred, target, reduction="none").round(4)
      Array([1.0794, 1.3333], dtype=float32)
    """
    iou, union, cw, ch = _geometry(pred_boxes, target_boxes, eps)
    area_c = cw * ch
    return 1.0 - iou + safe_div(area_c - union, area_c + eps)


@detection(layout=_BOXES, validate=_validate, checks={"eps": NONNEGATIVE}, class_name="DIoULoss",
           example=Example(_boxes, sweep=("eps", (0.0, 0.001, 0.1, 1.0))))
def diou_loss(pred_boxes, target_boxes, *, eps=1e-7):
    r"""Distance IoU loss (Zheng et al., 2020).

    .. math::
       \ell = 1 - \mathrm{IoU} + \frac{\rho^2}{c^2 + \epsilon}

    with :math:`\rho` the distance between the boxes' centres and :math:`c` the
    diagonal of the smallest box enclosing both. The semantics of torchvision
    ``distance_box_iou_loss``.

    Args:
      pred_boxes: predicted boxes ``[..., 4]`` as ``(x1, y1, x2, y2)``, floating point.
      target_boxes: target boxes, the same shape.
      eps: :math:`\epsilon \ge 0`, added to the IoU's and the diagonal's denominators.

    Returns:
      The reduced loss; with ``reduction="none"`` one loss per box, shape ``[...]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> pred = jnp.array([[0.0, 0.0, 2.0, 2.0]]); target = jnp.array([[1.0, 1.0, 3.0, 3.0]])
      >>> round(float(jaxloss.diou_loss(pred, target)), 4)
      0.9683
    """
    iou, _, cw, ch = _geometry(pred_boxes, target_boxes, eps)
    return 1.0 - iou + _centre_penalty(pred_boxes, target_boxes, cw, ch, eps)


@detection(layout=_BOXES, validate=_validate, checks={"eps": NONNEGATIVE}, class_name="CIoULoss",
           example=Example(_boxes, sweep=("eps", (0.0, 0.001, 0.1, 1.0))))
def ciou_loss(pred_boxes, target_boxes, *, eps=1e-7):
    r"""Complete IoU loss (Zheng et al., 2020).

    .. math::
       \ell = 1 - \mathrm{IoU} + \frac{\rho^2}{c^2 + \epsilon} + \alpha v, \qquad
       v = \frac{4}{\pi^2} \Bigl(\arctan\frac{w_t}{h_t} - \arctan\frac{w_p}{h_p}\Bigr)^2, \qquad
       \alpha = \frac{v}{1 - \mathrm{IoU} + v + \epsilon}

    :func:`diou_loss` plus an aspect-ratio term. As in torchvision
    ``complete_box_iou_loss`` (whose semantics this follows), :math:`\alpha` is a
    constant for the gradient (``stop_gradient``). Where torchvision is NaN (the
    aspect ratio of a box with zero width and height), the box's angle
    :math:`\arctan(w/h)` is taken as 0 with a zero gradient; a box of zero
    height and positive width has the angle :math:`\pi/2` (torchvision's value)
    with a finite gradient (torchvision's is NaN).

    Args:
      pred_boxes: predicted boxes ``[..., 4]`` as ``(x1, y1, x2, y2)``, floating point.
      target_boxes: target boxes, the same shape.
      eps: :math:`\epsilon \ge 0`, added to the denominators as in torchvision.

    Returns:
      The reduced loss; with ``reduction="none"`` one loss per box, shape ``[...]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> pred = jnp.array([[0.0, 0.0, 2.0, 1.0]]); target = jnp.array([[0.0, 0.0, 1.0, 2.0]])
      >>> round(float(jaxloss.ciou_loss(pred, target)), 4)
      0.7629
    """
    iou, _, cw, ch = _geometry(pred_boxes, target_boxes, eps)
    w_p = pred_boxes[..., 2] - pred_boxes[..., 0]
    h_p = pred_boxes[..., 3] - pred_boxes[..., 1]
    w_t = target_boxes[..., 2] - target_boxes[..., 0]
    h_t = target_boxes[..., 3] - target_boxes[..., 1]
    d = _aspect_angle(w_t, h_t) - _aspect_angle(w_p, h_p)
    v = (4.0 / np.pi**2) * d * d
    alpha = jax.lax.stop_gradient(safe_div(v, 1.0 - iou + v + eps))
    return 1.0 - iou + _centre_penalty(pred_boxes, target_boxes, cw, ch, eps) + alpha * v


GIoULoss = giou_loss.Loss
DIoULoss = diou_loss.Loss
CIoULoss = ciou_loss.Loss
