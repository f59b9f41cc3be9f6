"""Box-regression losses against NumPy float64 references written here with
torchvision's semantics (generalized_box_iou_loss, distance_box_iou_loss,
complete_box_iou_loss), and the edge cases where torchvision is not finite."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import assert_close, central_diff, reduce_ref

import jaxloss

close = functools.partial(assert_close, rtol=2e-5, atol=2e-6)
close64 = functools.partial(assert_close, rtol=1e-5, atol=1e-7)

# ---------------------------------------------------------------------------
# NumPy float64 references (torchvision's formulas)
# ---------------------------------------------------------------------------


def _parts(b1, b2, eps):
    b1, b2 = np.asarray(b1, np.float64), np.asarray(b2, np.float64)
    x1, y1, x2, y2 = np.moveaxis(b1, -1, 0)
    x1g, y1g, x2g, y2g = np.moveaxis(b2, -1, 0)
    xk1, yk1, xk2, yk2 = np.maximum(x1, x1g), np.maximum(y1, y1g), np.minimum(x2, x2g), np.minimum(y2, y2g)
    mask = (yk2 > yk1) & (xk2 > xk1)
    inter = np.where(mask, (xk2 - xk1) * (yk2 - yk1), 0.0)
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    iou = inter / (union + eps)
    xc1, yc1, xc2, yc2 = np.minimum(x1, x1g), np.minimum(y1, y1g), np.maximum(x2, x2g), np.maximum(y2, y2g)
    return (x1, y1, x2, y2), (x1g, y1g, x2g, y2g), union, iou, (xc1, yc1, xc2, yc2)


def np_giou(b1, b2, eps=1e-7):
    _, _, union, iou, (xc1, yc1, xc2, yc2) = _parts(b1, b2, eps)
    area_c = (xc2 - xc1) * (yc2 - yc1)
    return 1 - (iou - (area_c - union) / (area_c + eps))


def np_diou(b1, b2, eps=1e-7):
    (x1, y1, x2, y2), (x1g, y1g, x2g, y2g), _, iou, (xc1, yc1, xc2, yc2) = _parts(b1, b2, eps)
    diag = (xc2 - xc1) ** 2 + (yc2 - yc1) ** 2 + eps
    dist = ((x2 + x1) / 2 - (x1g + x2g) / 2) ** 2 + ((y2 + y1) / 2 - (y1g + y2g) / 2) ** 2
    return 1 - iou + dist / diag


def np_ciou(b1, b2, eps=1e-7, alpha=None):
    """``alpha``: a fixed value of torchvision's no-grad alpha (for the gradient reference)."""
    (x1, y1, x2, y2), (x1g, y1g, x2g, y2g), _, iou, _ = _parts(b1, b2, eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = (4 / np.pi**2) * (np.arctan((x2g - x1g) / (y2g - y1g)) - np.arctan((x2 - x1) / (y2 - y1))) ** 2
    a = v / (1 - iou + v + eps) if alpha is None else alpha
    return np_diou(b1, b2, eps) + a * v


REFS = {"giou_loss": np_giou, "diou_loss": np_diou, "ciou_loss": np_ciou}
NAMES = sorted(REFS)


def boxes(seed, shape=(2, 3)):
    """Overlapping, disjoint and nested pairs with distinct coordinates."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 6, size=shape + (2,))
    wh = rng.uniform(0.5, 4, size=shape + (2,))
    pred = np.concatenate([xy, xy + wh], -1)
    xy2 = xy + rng.uniform(-3, 3, size=xy.shape)
    wh2 = rng.uniform(0.5, 4, size=shape + (2,))
    target = np.concatenate([xy2, xy2 + wh2], -1)
    return pred.astype(np.float32), target.astype(np.float32)


def f64(x):
    return np.asarray(x, np.float32).astype(np.float64)


# ---------------------------------------------------------------------------
# Values, reductions, gradients
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_against_torchvision_reference(name):
    fn, ref = getattr(jaxloss, name), REFS[name]
    p, t = boxes(0)
    nested = np.array([[[1.0, 1.0, 5.0, 4.0], [0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 3.0, 3.0]]], np.float32)
    outer = np.array([[[2.0, 1.5, 3.0, 3.5], [3.0, 3.0, 4.0, 5.0], [2.0, 2.0, 3.0, 3.0]]], np.float32)
    p, t = np.concatenate([p, nested]), np.concatenate([t, outer])  # inside, disjoint, identical
    rng = np.random.default_rng(1)
    w, m = rng.uniform(0.5, 2, size=p.shape[:-1]), rng.uniform(size=p.shape[:-1]) < 0.7
    expected = ref(f64(p), f64(t))
    close(fn(p, t, reduction="none"), expected)
    for reduction in ("mean", "sum"):
        close(fn(p, t, reduction=reduction, weights=w, where=m), reduce_ref(expected, reduction, w, m))
    close(fn(p, t, eps=0.5, reduction="none"), ref(f64(p), f64(t), eps=0.5))


@pytest.mark.parametrize("name", NAMES)
def test_gradient_against_finite_differences(name):
    """CIoU's reference holds alpha at its value (torchvision computes it under no_grad)."""
    fn, ref = getattr(jaxloss, name), REFS[name]
    p, t = (f64(b) for b in boxes(2, shape=(4,)))
    kw = {}
    if name == "ciou_loss":
        (x1, y1, x2, y2), (x1g, y1g, x2g, y2g), _, iou, _ = _parts(p, t, 1e-7)
        v = (4 / np.pi**2) * (np.arctan((x2g - x1g) / (y2g - y1g)) - np.arctan((x2 - x1) / (y2 - y1))) ** 2
        assert np.all(v > 1e-4)  # the aspect term is active here
        kw = {"alpha": v / (1 - iou + v + 1e-7)}
    with jax.enable_x64(True):
        g = jax.grad(lambda a: fn(a, jnp.asarray(t), reduction="sum"))(p)
    close64(g, central_diff(lambda a: ref(a, t, **kw).sum(), p))


def test_ciou_alpha_is_a_constant_for_the_gradient():
    p, t = (f64(b) for b in boxes(3, shape=(3,)))
    with jax.enable_x64(True):
        g = jax.grad(lambda a: jaxloss.ciou_loss(a, jnp.asarray(t), reduction="sum"))(p)
    assert not np.allclose(g, central_diff(lambda a: np_ciou(a, t).sum(), p), rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------
# Edge cases: identical and zero-area boxes
# ---------------------------------------------------------------------------


def _value_and_grad(name, p, t, eps=1e-7):
    fn = getattr(jaxloss, name)
    return jax.value_and_grad(lambda a: fn(a, t, eps=eps, reduction="sum"))(jnp.asarray(p, jnp.float32))


@pytest.mark.parametrize("name", NAMES)
def test_identical_boxes(name):
    b = np.array([[1.0, 2.0, 4.0, 3.0], [0.0, 0.0, 2.0, 5.0]], np.float32)
    value, g = _value_and_grad(name, b, b)
    close(value, REFS[name](f64(b), f64(b)).sum())  # 1 - A / (A + eps) per box
    assert float(value) < 1e-6 and np.all(np.isfinite(np.asarray(g)))
    value, g = _value_and_grad(name, b, b, eps=0.0)
    assert float(value) == 0.0 and np.all(np.isfinite(np.asarray(g)))


@pytest.mark.parametrize("name", NAMES)
def test_zero_area_boxes_finite_values_and_gradients(name):
    target = np.array([[0.0, 0.0, 2.0, 2.0]] * 4 + [[1.0, 1.0, 1.0, 1.0]], np.float32)
    pred = np.array([[1.0, 1.0, 1.0, 1.0],     # a point inside the target
                     [0.0, 1.0, 3.0, 1.0],     # a horizontal line (height 0)
                     [1.0, 0.0, 1.0, 3.0],     # a vertical line (width 0)
                     [3.0, 3.0, 3.0, 3.0],     # a point outside
                     [1.0, 1.0, 1.0, 1.0]],    # a point on the same point: every area 0
                    np.float32)
    for eps in (1e-7, 0.0):
        value, g = _value_and_grad(name, pred, target, eps)
        assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(g))), (name, eps)
    none = getattr(jaxloss, name)(pred, target, reduction="none")
    expected = REFS[name](f64(pred), f64(target))
    # torchvision's values where they are finite (CIoU's aspect ratio of a point box is 0/0 there)
    finite = np.isfinite(expected)
    close(np.asarray(none)[finite], expected[finite])
    if name == "ciou_loss":
        assert list(finite) == [False, True, True, False, False]
        # a point box's angle is taken as 0: v = (4 / pi^2) (pi/4)^2 against the square target
        close(none[0], np_diou(f64(pred[:1]), f64(target[:1]))[0] + (0.25 / (1 + 0.25 + 1e-7)) * 0.25)
        close(none[4], 1.0)


def test_ciou_line_box_gradient_is_torchvisions_limit():
    """At height 0, atan(w/h) = pi/2 with the derivative -w/(w^2 + h^2) in h: the
    aspect term's gradient (CIoU's minus DIoU's) is the limit of torchvision's
    from h > 0 (torchvision's own is NaN there). The intersection has a kink at
    h = 0, so the whole gradient is one-sided there."""
    t = jnp.array([[0.0, 0.0, 2.0, 2.0]])
    p = np.array([[0.0, 1.0, 3.0, 1.0]])

    def aspect_grad(a):
        g = jax.grad(lambda b: jaxloss.ciou_loss(b, t, reduction="sum") - jaxloss.diou_loss(b, t, reduction="sum"))
        return np.asarray(g(a))

    with jax.enable_x64(True):
        g, g_near = aspect_grad(p), aspect_grad(p + np.array([[0.0, 0.0, 0.0, 1e-9]]))
    assert np.all(np.isfinite(g)) and abs(g[0, 3]) > 0.01
    close(g, g_near)


# ---------------------------------------------------------------------------
# Errors, masks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_errors(name):
    fn = getattr(jaxloss, name)
    p, t = boxes(4)
    with pytest.raises(ValueError, match=f"{name}: boxes must have a last axis of size 4"):
        fn(p[..., :3], t[..., :3])
    with pytest.raises(ValueError, match=f"{name}: pred_boxes and target_boxes must have the same shape"):
        fn(p, t[:1])
    with pytest.raises(TypeError, match=f"{name}: pred_boxes must be a floating-point array"):
        fn(p.astype(np.int32), t)


def test_masked_box_with_nan_reaches_neither_value_nor_gradient():
    p, t = boxes(5, shape=(3,))
    p[1] = np.nan
    keep = np.array([True, False, True])
    for name in NAMES:
        fn = getattr(jaxloss, name)
        value, g = jax.value_and_grad(lambda a, f=fn: f(a, t, where=keep))(p)
        close(value, REFS[name](f64(p[keep]), f64(t[keep])).mean())
        assert np.all(np.asarray(g)[1] == 0.0) and np.all(np.isfinite(np.asarray(g)))
