"""Multi-class losses against NumPy float64 closed forms, worked examples, edges and properties.

The references below follow PyTorch's documented formulas (cross_entropy with
class weights and label smoothing, nll_loss) and are written here in NumPy,
independently of jaxloss.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _reference import (
    REDUCTIONS,
    assert_close,
    central_diff,
    check_reductions,
    extras,
    f32,
    grad_of,
    log_softmax,
    reduce_ref,
)
from _samples import CW_MARGIN, ME, WE, S, Y
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxloss

C = 5
N = 8

# ---- float64 references ---------------------------------------------------------


def np_lse(x, axis=-1):
    x = np.asarray(x, np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m, axis)


def np_log_softmax(x):
    x = np.asarray(x, np.float64)
    return x - np_lse(x)[..., None]


def reduce_pair(num, den, counted, reduction, weights=None, where=None):
    """PyTorch's weighted mean: sum(u num) / sum(u den) over the counted examples."""
    return reduce_ref(num, reduction, weights, where, counted=counted, count=den)


def np_sparse_ce(x, y, *, class_weights=None, ignore_index=None, label_smoothing=0.0, z_loss=0.0):
    """Per-example numerator, mean-denominator weight and counted mask, PyTorch's
    formula: (1-eps) w_y (-log p_y) + eps/C sum_c w_c (-log p_c) + z w_y lse^2."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y)
    c = x.shape[-1]
    w = np.ones(c) if class_weights is None else np.asarray(class_weights, np.float64)
    counted = np.ones(y.shape, bool) if ignore_index is None else y != ignore_index
    ys = np.where(counted, y, 0)
    lsm = np_log_softmax(x)
    nll = -np.take_along_axis(lsm, ys[..., None], -1)[..., 0]
    w_y = w[ys]
    num = (1 - label_smoothing) * w_y * nll + z_loss * w_y * np_lse(x) ** 2
    if label_smoothing > 0:
        with np.errstate(invalid="ignore"):
            terms = np.where(w == 0, 0.0, -w * lsm)
        num = num + label_smoothing / c * terms.sum(-1)
    return np.where(counted, num, 0.0), np.where(counted, w_y, 0.0), counted


def np_dense_ce(x, t, *, class_weights=None, label_smoothing=0.0):
    x = np.asarray(x, np.float64)
    t = np.asarray(t, np.float64)
    c = x.shape[-1]
    w = np.ones(c) if class_weights is None else np.asarray(class_weights, np.float64)
    ts = (1 - label_smoothing) * t + label_smoothing / c
    coef = w * ts
    lsm = np_log_softmax(x)
    with np.errstate(invalid="ignore"):
        num = np.where(coef == 0, 0.0, -coef * lsm).sum(-1)
    return num, (w * t).sum(-1)


def np_focal(x, y, *, alpha=None, gamma=2.0, ignore_index=None):
    x = np.asarray(x, np.float64)
    counted = np.ones(y.shape, bool) if ignore_index is None else y != ignore_index
    ys = np.where(counted, y, 0)
    log_p = np.take_along_axis(np_log_softmax(x), ys[..., None], -1)[..., 0]
    p = np.exp(log_p)
    out = -((1 - p) ** gamma) * log_p
    if alpha is not None:
        a = np.asarray(alpha, np.float64)
        out = (a if a.ndim == 0 else a[ys]) * out
    return np.where(counted, out, 0.0), counted


def np_hinge_cs(s, y, margin=1.0):
    s = np.asarray(s, np.float64)
    sy = np.take_along_axis(s, y[..., None], -1)[..., 0]
    other = np.where(np.arange(s.shape[-1]) == y[..., None], -np.inf, s).max(-1)
    return np.maximum(0.0, margin + other - sy)


# ---- inputs -------------------------------------------------------------------------


def make(seed=0, n=N, c=C, scale=2.0):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, c)) * scale).astype(np.float32)
    y = rng.integers(0, c, size=(n,)).astype(np.int32)
    return x, y


CW = np.array([0.5, 2.0, 1.0, 0.0, 3.0], np.float32)  # includes a zero-weight class
USER_W = np.linspace(0.5, 2.0, N).astype(np.float32)
WHERE = np.array([True, False, True, True, False, True, True, True])
EXTRAS = extras(USER_W, WHERE)
IGNORED_ROWS = [2, 4]  # row 4 is also masked by WHERE, row 2 is not

SPARSE_OPTIONS = {
    "plain": {},
    "class_weights": {"class_weights": CW},
    "ignore_index": {"ignore_index": -100},
    "ignore_in_range": {"ignore_index": 2},
    "label_smoothing": {"label_smoothing": 0.15},
    "z_loss": {"z_loss": 1e-2},
    "weights+smoothing": {"class_weights": CW, "label_smoothing": 0.2},
    "all": {"class_weights": CW, "label_smoothing": 0.1, "z_loss": 1e-3, "ignore_index": -100},
}


def option_cases(options, richest):
    """(option set, extra) pairs: each option set alone, then the richest one
    with per-example weights and with a mask."""
    alone = [pytest.param(name, "plain", id=name) for name in options]
    return alone + [pytest.param(richest, extra, id=f"{richest}-{extra}") for extra in ("weights", "where")]


def mark_ignored(y, ignore_index):
    """The labels with rows IGNORED_ROWS set to ignore_index (unchanged if it is None)."""
    if ignore_index is None:
        return y
    y = y.copy()
    y[IGNORED_ROWS] = ignore_index
    return y


# ---- sparse_cross_entropy -----------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("name", "extra"), option_cases(SPARSE_OPTIONS, richest="all"))
def test_sparse_ce_matches_reference(name, reduction, extra):
    options = SPARSE_OPTIONS[name]
    x, y = make(1)
    y = mark_ignored(y, options.get("ignore_index"))
    num, den, counted = np_sparse_ce(x, y, **options)
    expected = reduce_pair(num, den, counted, reduction, **EXTRAS[extra])
    got = jaxloss.sparse_cross_entropy(x, y, **options, reduction=reduction, **EXTRAS[extra])
    assert got.dtype == jnp.float32
    assert_close(got, expected, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name", ["plain", "class_weights", "ignore_index", "all"])
def test_sparse_ce_gradient_closed_form(name):
    """d mean / dx_i = [(1-eps) w_y (p - e_y) + eps/C (sum(w) p - w) + 2 z w_y lse p] / sum w_y."""
    options = SPARSE_OPTIONS[name]
    x, y = make(2)
    y = mark_ignored(y, options.get("ignore_index"))
    eps = options.get("label_smoothing", 0.0)
    z = options.get("z_loss", 0.0)
    w = np.ones(C) if "class_weights" not in options else CW.astype(np.float64)
    counted = y != options.get("ignore_index", -12345)
    ys = np.where(counted, y, 0)
    x64 = x.astype(np.float64)
    p = np.exp(np_log_softmax(x64))
    onehot = np.eye(C)[ys]
    w_y = w[ys][:, None]
    g = (1 - eps) * w_y * (p - onehot) + eps / C * (w.sum() * p - w) + 2 * z * w_y * np_lse(x64)[:, None] * p
    g = np.where(counted[:, None], g, 0.0) / np.where(counted, w[ys], 0).sum()
    got = jax.grad(lambda a: jaxloss.sparse_cross_entropy(a, y, **options))(jnp.asarray(x))
    assert_close(got, g, rtol=1e-4, atol=1e-6)
    assert np.all(np.asarray(got)[~counted] == 0.0)  # ignored targets: exactly zero gradient


def test_sparse_ce_hessian():
    x, y = make(3, n=3, c=4)
    h = jax.hessian(lambda a: jaxloss.sparse_cross_entropy(a, y, reduction="sum"))(jnp.asarray(x))
    p = np.exp(np_log_softmax(x))
    for i in range(3):
        assert_close(h[i, :, i, :], np.diag(p[i]) - np.outer(p[i], p[i]), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["plain", "class_weights", "label_smoothing", "weights+smoothing"])
def test_integer_labels_equal_one_hot(name, reduction):
    options = SPARSE_OPTIONS[name]
    x, y = make(4)
    onehot = jax.nn.one_hot(y, C)
    sparse = lambda a: jaxloss.sparse_cross_entropy(a, y, **options, reduction=reduction)  # noqa: E731
    dense = lambda a: jaxloss.cross_entropy(a, onehot, **options, reduction=reduction)  # noqa: E731
    if reduction == "none":
        assert_close(sparse(x), dense(x), rtol=1e-5, atol=1e-6)
        return
    (v_sparse, g_sparse), (v_dense, g_dense) = jax.value_and_grad(sparse)(x), jax.value_and_grad(dense)(x)
    assert_close(v_sparse, v_dense, rtol=1e-5, atol=1e-6)
    assert_close(g_sparse, g_dense, rtol=1e-5, atol=1e-6)


def test_sparse_ce_matches_optax():
    x, y = make(5, n=16, c=7)
    assert_close(
        jaxloss.sparse_cross_entropy(x, y, reduction="none"),
        optax.losses.softmax_cross_entropy_with_integer_labels(x, y),
        rtol=1e-6, atol=1e-6,
    )


def test_sparse_ce_worked_example():
    # design.md section 6: the blog's 5x3 probabilities as logits (their logs)
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7], [0.2, 0.6, 0.2], [0.8, 0.1, 0.1], [0.3, 0.3, 0.4]])
    y = np.array([0, 2, 1, 0, 2])
    got = jaxloss.sparse_cross_entropy(jnp.log(jnp.asarray(probs, jnp.float32)), y)
    assert_close(got, 0.472721959, rtol=1e-6, atol=1e-7)
    assert_close(jaxloss.nll_loss(np.log(probs).astype(np.float32), y), 0.472721959, rtol=1e-6, atol=1e-7)


# ---- cross_entropy (probability targets) -------------------------------------------


DENSE_OPTIONS = {
    "plain": {},
    "class_weights": {"class_weights": CW},
    "label_smoothing": {"label_smoothing": 0.1},
    "weights+smoothing": {"class_weights": CW, "label_smoothing": 0.3},
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("name", "extra"), option_cases(DENSE_OPTIONS, richest="weights+smoothing"))
def test_cross_entropy_matches_reference(name, reduction, extra):
    options = DENSE_OPTIONS[name]
    x, _ = make(6)
    rng = np.random.default_rng(7)
    t = rng.dirichlet(np.ones(C), size=N).astype(np.float32)
    num, den = np_dense_ce(x, t, **options)
    if "class_weights" not in options:
        den = np.ones(N)
    expected = reduce_pair(num, den, np.ones(N, bool), reduction, **EXTRAS[extra])
    got = jaxloss.cross_entropy(x, t, **options, reduction=reduction, **EXTRAS[extra])
    assert_close(got, expected, rtol=2e-5, atol=2e-6)


def test_cross_entropy_worked_example():
    # design.md section 6: one-hot "cat", predicted probabilities as logits (their logs)
    probs = jnp.array([[0.8, 0.15, 0.05], [0.2, 0.5, 0.3]])
    cat = jnp.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    got = jaxloss.cross_entropy(jnp.log(probs), cat, reduction="none")
    assert_close(got, [0.223144, 1.609438], rtol=1e-6, atol=1e-6)
    assert_close(got, [-np.log(0.8), -np.log(0.2)], rtol=1e-6, atol=1e-7)


def test_cross_entropy_matches_optax_soft_targets():
    x, _ = make(8)
    t = np.random.default_rng(9).dirichlet(np.ones(C), size=N).astype(np.float32)
    assert_close(jaxloss.cross_entropy(x, t, reduction="none"), optax.losses.softmax_cross_entropy(x, t), rtol=1e-6)


# ---- nll_loss -----------------------------------------------------------------------


NLL_OPTIONS = {
    "plain": {},
    "cw": {"class_weights": CW},
    "ignore": {"ignore_index": -100},
    "cw+ignore": {"class_weights": CW, "ignore_index": 1},
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("name", "extra"), option_cases(NLL_OPTIONS, richest="cw+ignore"))
def test_nll_matches_reference(name, reduction, extra):
    options = NLL_OPTIONS[name]
    x, y = make(10)
    y = mark_ignored(y, options.get("ignore_index"))
    log_p = np_log_softmax(x).astype(np.float32)
    num, den, counted = np_sparse_ce(x, y, **options)
    expected = reduce_pair(num, den, counted, reduction, **EXTRAS[extra])
    got = jaxloss.nll_loss(log_p, y, **options, reduction=reduction, **EXTRAS[extra])
    assert_close(got, expected, rtol=2e-5, atol=2e-6)
    # nll_loss(log_softmax(x)) == sparse_cross_entropy(x)
    same = jaxloss.sparse_cross_entropy(x, y, **options, reduction=reduction, **EXTRAS[extra])
    assert_close(got, same, rtol=1e-5, atol=1e-6)


def test_nll_is_not_renormalised():
    log_p = jnp.array([[-1.0, -2.0, -3.0]])
    assert float(jaxloss.nll_loss(log_p, jnp.array([1]))) == 2.0


# ---- softmax_focal_loss ----------------------------------------------------------------


FOCAL_OPTIONS = {
    "default": {},
    "gamma_half": {"gamma": 0.5},
    "alpha_scalar": {"alpha": 0.25, "gamma": 1.5},
    "alpha_per_class": {"alpha": CW, "gamma": 2.0},
    "ignore": {"ignore_index": -100, "gamma": 3.0},
    "alpha+ignore": {"alpha": CW, "gamma": 0.7, "ignore_index": -100},
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("name", "extra"), option_cases(FOCAL_OPTIONS, richest="alpha+ignore"))
def test_focal_matches_reference(name, reduction, extra):
    options = FOCAL_OPTIONS[name]
    x, y = make(11)
    y = mark_ignored(y, options.get("ignore_index"))
    full = {"alpha": None, "gamma": 2.0, **options}
    num, counted = np_focal(x, y, **full)
    expected = reduce_pair(num, np.ones(N), counted, reduction, **EXTRAS[extra])
    got = jaxloss.softmax_focal_loss(x, y, **options, reduction=reduction, **EXTRAS[extra])
    assert_close(got, expected, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("ignore", [None, -100])
def test_focal_gamma_zero_is_cross_entropy(reduction, ignore):
    x, y = make(12)
    y = mark_ignored(y, ignore)
    f = lambda a: jaxloss.softmax_focal_loss(a, y, gamma=0.0, ignore_index=ignore, reduction=reduction)  # noqa: E731
    g = lambda a: jaxloss.sparse_cross_entropy(a, y, ignore_index=ignore, reduction=reduction)  # noqa: E731
    if reduction == "none":
        assert_close(f(x), g(x), rtol=1e-6, atol=1e-7)
        return
    (v_f, g_f), (v_g, g_g) = jax.value_and_grad(f)(x), jax.value_and_grad(g)(x)
    assert_close(v_f, v_g, rtol=1e-6, atol=1e-7)
    assert_close(g_f, g_g, rtol=1e-5, atol=1e-7)


def test_focal_confident_and_small_gamma_edges():
    # p_y == 1 to float precision, and 0 < gamma < 1 (infinite slope of u^gamma at 0)
    x = jnp.array([[60.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    y = jnp.array([0, 1])
    for gamma in (0.0, 0.3, 2.0):
        v, g = jax.value_and_grad(lambda a: jaxloss.softmax_focal_loss(a, y, gamma=gamma))(x)
        assert np.isfinite(float(v)) and np.all(np.isfinite(np.asarray(g)))
        num, _ = np_focal(np.asarray(x), np.asarray(y), gamma=gamma)
        assert_close(v, num.mean(), rtol=1e-6, atol=1e-7)
    # only one finite class: p_y = 1 exactly, log(1 - p_y) = -inf
    x = jnp.array([[1.0, -jnp.inf, -jnp.inf]])
    for gamma in (0.0, 0.5, 2.0):
        v, g = jax.value_and_grad(lambda a: jaxloss.softmax_focal_loss(a, jnp.array([0]), gamma=gamma))(x)
        assert float(v) == 0.0 and np.all(np.isfinite(np.asarray(g)))


# ---- multiclass_hinge_loss -------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("margin", "extra"),
                         [(0.0, "plain"), (1.0, "plain"), (2.5, "plain"), (2.5, "weights"), (2.5, "where")])
def test_hinge_matches_reference(margin, reduction, extra):
    x, y = make(13)
    num = np_hinge_cs(x, y, margin)
    expected = reduce_pair(num, np.ones(N), np.ones(N, bool), reduction, **EXTRAS[extra])
    got = jaxloss.multiclass_hinge_loss(x, y, margin=margin, reduction=reduction, **EXTRAS[extra])
    assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_hinge_is_optax_crammer_singer():
    x, y = make(14, n=16, c=7)
    assert_close(jaxloss.multiclass_hinge_loss(x, y, reduction="none"), optax.losses.multiclass_hinge_loss(x, y))


def test_hinge_gradient():
    s = jnp.array([[2.0, 1.5, -1.0], [0.0, 3.0, 1.0], [5.0, 0.0, 0.0]])
    y = jnp.array([0, 2, 0])
    g = jax.grad(lambda a: jaxloss.multiclass_hinge_loss(a, y, reduction="sum"))(s)
    assert_close(g, [[-1.0, 1.0, 0.0], [0.0, 1.0, -1.0], [0.0, 0.0, 0.0]])


# ---- shared semantics: masked == sliced, axis, ignored batches, -inf, bf16, labels -----


LABEL_LOSSES = {
    "sparse_cross_entropy": (jaxloss.sparse_cross_entropy, {"label_smoothing": 0.1, "class_weights": CW}),
    "nll_loss": (jaxloss.nll_loss, {"class_weights": CW}),
    "softmax_focal_loss": (jaxloss.softmax_focal_loss, {"alpha": CW}),
    "multiclass_hinge_loss": (jaxloss.multiclass_hinge_loss, {"margin": 0.5}),
}


@pytest.mark.parametrize("name", ["sparse_cross_entropy", "nll_loss", "softmax_focal_loss", "cross_entropy"])
def test_mask_with_class_weights_equals_slicing(name):
    """A mask combined with per-class weights (class_weights; alpha for the focal
    loss): value and gradient equal slicing the masked rows out. (With default
    options, masked == sliced is checked for every loss in test_registry.py.)"""
    x, y = make(15)
    x[1] = np.nan  # masked rows may hold anything
    if name == "cross_entropy":
        fn, options, target = jaxloss.cross_entropy, {"class_weights": CW, "label_smoothing": 0.1}, jax.nn.one_hot(y, C)
    else:
        (fn, options), target = LABEL_LOSSES[name], y
    keep = WHERE
    assert_close(fn(x, target, **options, reduction="sum", where=keep),
                 fn(x[keep], target[keep], **options, reduction="sum"), rtol=1e-5, atol=1e-6)
    masked = lambda a: fn(a, target, **options, where=keep)  # noqa: E731
    sliced = lambda a: fn(a[keep], target[keep], **options)  # noqa: E731
    v_masked, g_masked = jax.value_and_grad(masked)(x)
    v_sliced, g_sliced = jax.value_and_grad(sliced)(x)
    assert_close(v_masked, v_sliced, rtol=1e-5, atol=1e-6)
    g_masked, g_sliced = np.asarray(g_masked), np.asarray(g_sliced)
    assert np.all(g_masked[~keep] == 0.0)
    assert_close(g_masked[keep], g_sliced[keep], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("name", "axis"), [(name, 0) for name in [*LABEL_LOSSES, "cross_entropy"]]
                         + [("sparse_cross_entropy", 1), ("cross_entropy", 1)])
def test_axis_equals_moving_it_last(name, axis):
    rng = np.random.default_rng(16)
    x = rng.normal(size=(3, 4, C)).astype(np.float32) * 2
    y = rng.integers(0, C, size=(3, 4)).astype(np.int32)
    if name == "cross_entropy":
        fn, options, target = jaxloss.cross_entropy, {"class_weights": CW, "label_smoothing": 0.1}, jax.nn.one_hot(y, C)
        target_moved = jnp.moveaxis(target, -1, axis)
    else:
        (fn, options), target = LABEL_LOSSES[name], y
        target_moved = target
    x_moved = np.moveaxis(x, -1, axis)
    weights = np.arange(12.0).reshape(3, 4)  # per-example weights expose any mix-up of examples
    v_axis, g_axis = jax.value_and_grad(lambda a: fn(a, target_moved, axis=axis, **options, weights=weights))(x_moved)
    v_last, g_last = jax.value_and_grad(lambda a: fn(a, target, **options, weights=weights))(x)
    assert_close(v_axis, v_last, rtol=1e-6, atol=1e-6)
    assert_close(g_axis, np.moveaxis(np.asarray(g_last), -1, axis), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("name", "options"), [
    ("sparse_cross_entropy", {}),
    ("sparse_cross_entropy", {"class_weights": CW, "label_smoothing": 0.1, "z_loss": 1e-3}),
    ("nll_loss", {"class_weights": CW}),
    ("softmax_focal_loss", {"alpha": CW, "gamma": 0.5}),
], ids=["sparse", "sparse-all", "nll-cw", "focal-alpha"])
def test_fully_ignored_batch_is_zero_with_zero_gradient(name, options, reduction):
    fn = getattr(jaxloss, name)
    x, _ = make(17)
    x[0] = -np.inf  # an all -inf row among the ignored ones
    y = np.full((N,), -100, np.int32)

    def f(a):
        out = fn(a, y, ignore_index=-100, **options, reduction=reduction)
        return jnp.sum(out)

    value, g = jax.value_and_grad(f)(x)
    assert float(value) == 0.0
    assert np.all(np.asarray(g) == 0.0)
    assert not np.any(np.isnan(np.asarray(fn(x, y, ignore_index=-100, **options, reduction=reduction))))


def test_zero_weight_batch_is_zero():
    x, _ = make(18)
    y = np.full((N,), 3, np.int32)  # class 3 has weight 0
    for fn in (jaxloss.sparse_cross_entropy, jaxloss.nll_loss):
        value, g = jax.value_and_grad(lambda a: fn(a, y, class_weights=CW))(x)
        assert float(value) == 0.0 and np.all(np.asarray(g) == 0.0)


def test_neg_inf_logits_are_finite_and_equal_removing_the_class():
    x, y = make(19)
    y = np.where(y == 3, 0, y)  # never the masked class
    x_masked = x.copy()
    x_masked[:, 3] = -np.inf
    keep_cols = [0, 1, 2, 4]
    y_removed = np.searchsorted(keep_cols, y)
    onehot = np.asarray(jax.nn.one_hot(y, C))
    cases = {
        "sparse": (lambda a: jaxloss.sparse_cross_entropy(a, y, ignore_index=-100, z_loss=1e-3),
                   lambda a: jaxloss.sparse_cross_entropy(a, y_removed, ignore_index=-100, z_loss=1e-3)),
        "sparse_cw": (lambda a: jaxloss.sparse_cross_entropy(a, y, class_weights=CW),
                      lambda a: jaxloss.sparse_cross_entropy(a, y_removed, class_weights=CW[keep_cols])),
        "one_hot": (lambda a: jaxloss.cross_entropy(a, onehot),
                    lambda a: jaxloss.cross_entropy(a, onehot[:, keep_cols])),
        "focal": (lambda a: jaxloss.softmax_focal_loss(a, y, gamma=0.5),
                  lambda a: jaxloss.softmax_focal_loss(a, y_removed, gamma=0.5)),
        "hinge": (lambda a: jaxloss.multiclass_hinge_loss(a, y),
                  lambda a: jaxloss.multiclass_hinge_loss(a, y_removed)),
    }
    for name, (masked, removed) in cases.items():
        v, g = jax.value_and_grad(masked)(x_masked)
        v_ref, g_ref = jax.value_and_grad(removed)(x[:, keep_cols])
        assert np.isfinite(float(v)) and np.all(np.isfinite(np.asarray(g))), name
        assert_close(v, v_ref, rtol=1e-6, atol=1e-6)
        assert_close(np.asarray(g)[:, keep_cols], g_ref, rtol=1e-5, atol=1e-7)
        assert np.all(np.asarray(g)[:, 3] == 0.0), name
    # optax gives NaN for the one-hot case; jaxloss does not
    assert np.isnan(float(optax.losses.softmax_cross_entropy(x_masked, onehot).mean()))
    # nll_loss with -inf log-probabilities of other classes
    log_p = np_log_softmax(x_masked).astype(np.float32)
    v, g = jax.value_and_grad(lambda a: jaxloss.nll_loss(a, y))(log_p)
    assert np.isfinite(float(v)) and np.all(np.isfinite(np.asarray(g)))


def test_neg_inf_logit_with_label_smoothing_is_inf_with_finite_gradient():
    x, y = make(20)
    y = np.where(y == 3, 0, y)
    x[:, 3] = -np.inf
    for fn, target in ((jaxloss.sparse_cross_entropy, y), (jaxloss.cross_entropy, jax.nn.one_hot(y, C))):
        v, g = jax.value_and_grad(lambda a: fn(a, target, label_smoothing=0.1))(x)
        assert float(v) == np.inf  # every class has target mass eps/C (as PyTorch)
        assert np.all(np.isfinite(np.asarray(g)))
    # a zero-weight masked class contributes nothing, even with smoothing
    v, g = jax.value_and_grad(lambda a: jaxloss.sparse_cross_entropy(a, y, label_smoothing=0.1, class_weights=CW))(x)
    num, den, counted = np_sparse_ce(x, y, label_smoothing=0.1, class_weights=CW)
    assert_close(v, reduce_pair(num, den, counted, "mean"), rtol=1e-5)
    assert np.all(np.isfinite(np.asarray(g)))


@pytest.mark.parametrize("name", list(LABEL_LOSSES) + ["cross_entropy"])
def test_huge_logits_finite_and_exact(name):
    rng = np.random.default_rng(21)
    x = (rng.choice([-1e4, 1e4], size=(N, C)) + rng.normal(size=(N, C))).astype(np.float32)
    y = rng.integers(0, C, size=(N,)).astype(np.int32)
    if name == "cross_entropy":
        fn, target = jaxloss.cross_entropy, jax.nn.one_hot(y, C)
    else:
        fn, target = getattr(jaxloss, name), y
    v, g = jax.value_and_grad(lambda a: fn(a, target))(x)
    assert np.isfinite(float(v)) and np.all(np.isfinite(np.asarray(g)))
    if name in ("sparse_cross_entropy", "cross_entropy"):
        num, _, _ = np_sparse_ce(x, y)
        assert_close(v, num.mean(), rtol=1e-5)


@pytest.mark.parametrize("name", ["plain", "all"])
def test_bf16_computed_in_float32(name):
    options = SPARSE_OPTIONS[name]
    x, y = make(22, n=64, c=33)
    options = dict(options)
    if "class_weights" in options:
        options["class_weights"] = np.linspace(0.0, 2.0, 33).astype(np.float32)
    y = mark_ignored(y, options.get("ignore_index"))
    x_bf16 = jnp.asarray(x * 4, jnp.bfloat16)
    for reduction in (REDUCTIONS if name == "all" else ("mean",)):
        low = jaxloss.sparse_cross_entropy(x_bf16, y, **options, reduction=reduction)
        high = jaxloss.sparse_cross_entropy(x_bf16.astype(jnp.float32), y, **options, reduction=reduction)
        assert low.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(low), np.asarray(high), rtol=1e-6, atol=0)
    g = jax.grad(lambda a: jaxloss.sparse_cross_entropy(a, y, **options))(x_bf16)
    assert g.dtype == jnp.bfloat16 and np.all(np.isfinite(np.asarray(g, np.float32)))
    # optax returns the loss rounded to bf16
    assert optax.losses.softmax_cross_entropy_with_integer_labels(x_bf16, np.abs(y) % 33).dtype == jnp.bfloat16


@pytest.mark.parametrize("bad", [C, -1])
@pytest.mark.parametrize("name", list(LABEL_LOSSES))
def test_out_of_range_label_is_an_error(name, bad):
    fn = getattr(jaxloss, name)
    x, y = make(23)
    y = y.copy()
    y[2] = bad
    with pytest.raises(ValueError, match=rf"{name}: labels must lie in \[0, 5\), got \[{bad}\]"):
        fn(x, y)


@pytest.mark.parametrize("name", list(LABEL_LOSSES))
def test_out_of_range_label_is_nan_under_jit(name):
    fn = getattr(jaxloss, name)
    x, y = make(23)
    bad = y.copy()
    bad[2] = -1
    per = jax.jit(lambda a, b: fn(a, b, reduction="none"))(x, bad)
    per = np.asarray(per)
    assert np.isnan(per[2]) and np.all(np.isfinite(np.delete(per, 2)))
    assert np.isnan(float(jax.jit(fn)(x, bad)))
    g = np.asarray(jax.grad(lambda a: jax.jit(lambda u, v: fn(u, v, reduction="sum"))(a, bad))(x))
    assert np.all(np.isfinite(np.delete(g, 2, axis=0)))
    g_ref = np.asarray(jax.grad(lambda a: fn(a, y, reduction="sum"))(x))
    assert_close(np.delete(g, 2, axis=0), np.delete(g_ref, 2, axis=0), rtol=1e-6, atol=1e-7)


def test_ignore_index_is_not_out_of_range():
    x, y = make(24)
    y = y.copy()
    y[0] = -100
    with pytest.raises(ValueError, match=r"sparse_cross_entropy: labels must lie in \[0, 5\)"):
        jaxloss.sparse_cross_entropy(x, y)
    v = jaxloss.sparse_cross_entropy(x, y, ignore_index=-100)
    assert_close(v, jaxloss.sparse_cross_entropy(x[1:], y[1:]), rtol=1e-6)
    # uint8 labels with an ignore_index that does not fit in uint8
    y8 = np.where(y < 0, 0, y).astype(np.uint8)
    assert_close(jaxloss.sparse_cross_entropy(x, y8, ignore_index=-100), jaxloss.sparse_cross_entropy(x, y8), rtol=1e-6)


SCE = jaxloss.sparse_cross_entropy

ERRORS = [
    pytest.param(lambda x, y: SCE(x, y[:, None]), ValueError,
                 r"sparse_cross_entropy: labels must have the shape of logits without .*axis -1: "
                 r"logits \(8, 5\) needs labels \(8,\), got labels \(8, 1\)",
                 id="sparse-labels-shape"),
    pytest.param(lambda x, y: SCE(x, y.astype(np.float32)), TypeError,
                 r"sparse_cross_entropy: labels must hold integer class labels, got dtype float32",
                 id="sparse-float-labels"),
    pytest.param(lambda x, y: SCE(x.astype(np.int32), y), TypeError,
                 r"sparse_cross_entropy: logits must be a floating-point array, got dtype int32",
                 id="sparse-integer-logits"),
    pytest.param(lambda x, y: SCE(x, y, class_weights=np.ones(4)), ValueError,
                 r"sparse_cross_entropy: class_weights must be one value per class, shape \(5,\), got shape \(4,\)",
                 id="sparse-class_weights-length"),
    pytest.param(lambda x, y: jaxloss.cross_entropy(x, x, class_weights=np.ones(4)), ValueError,
                 r"cross_entropy: class_weights must be one value per class, shape \(5,\), got shape \(4,\)",
                 id="dense-class_weights-length"),
    pytest.param(lambda x, y: SCE(x, y, label_smoothing=1.0), ValueError,
                 r"sparse_cross_entropy: label_smoothing must lie in \[0, 1\), got 1\.0",
                 id="sparse-label_smoothing-one"),
    pytest.param(lambda x, y: SCE(x, y, z_loss=-1.0), ValueError,
                 r"sparse_cross_entropy: z_loss must lie in \[0, inf\), got -1\.0",
                 id="sparse-z_loss-negative"),
    pytest.param(lambda x, y: SCE(x, y, class_weights=-np.ones(C)), ValueError,
                 r"sparse_cross_entropy: class_weights must lie in \[0, inf\)",
                 id="sparse-class_weights-negative"),
    pytest.param(lambda x, y: SCE(x, y, ignore_index=-100.0), TypeError,
                 r"sparse_cross_entropy: ignore_index must be an int or None",
                 id="sparse-ignore_index-float"),
    pytest.param(lambda x, y: jaxloss.softmax_focal_loss(x, y, gamma=-1.0), ValueError,
                 r"softmax_focal_loss: gamma must lie in \[0, inf\), got -1\.0",
                 id="focal-gamma-negative"),
    pytest.param(lambda x, y: jaxloss.softmax_focal_loss(x, y, alpha=np.ones(3)), ValueError,
                 r"softmax_focal_loss: alpha must be a scalar or one value per class, shape \(5,\), got shape \(3,\)",
                 id="focal-alpha-length"),
    pytest.param(lambda x, y: SCE(x, y, axis=2), ValueError,
                 r"sparse_cross_entropy: axis 2 is out of range for an input of rank 2",
                 id="sparse-axis-out-of-range"),
    pytest.param(lambda x, y: jaxloss.cross_entropy(x, x[:, :4]), ValueError,
                 r"cross_entropy: logits and targets must have the same shape, got logits \(8, 5\), targets \(8, 4\)",
                 id="dense-targets-shape"),
]


@pytest.mark.parametrize(("call", "error", "match"), ERRORS)
def test_errors(call, error, match):
    x, y = make(25)
    with pytest.raises(error, match=match):
        call(x, y)


def test_loss_objects_are_traced_pytrees():
    x, y = make(26)
    y = mark_ignored(y, -100)
    crit = jaxloss.SparseCrossEntropy(ignore_index=-100, label_smoothing=0.1, class_weights=CW)
    assert "ignore_index=-100" in repr(crit)
    traces = []

    @jax.jit
    def f(c, a):
        traces.append(1)
        return c(a, y)

    for eps in (0.0, 0.1, 0.2):
        c = jaxloss.SparseCrossEntropy(ignore_index=-100, label_smoothing=eps, class_weights=CW)
        assert_close(f(c, x), jaxloss.sparse_cross_entropy(x, y, ignore_index=-100, label_smoothing=eps,
                                                            class_weights=CW), rtol=1e-6)
    assert len(traces) == 1
    combo = jaxloss.SparseCrossEntropy() + 0.5 * jaxloss.SoftmaxFocalLoss(gamma=1.0)
    assert_close(combo(x, np.abs(y) % C),
                 jaxloss.sparse_cross_entropy(x, np.abs(y) % C)
                 + 0.5 * jaxloss.softmax_focal_loss(x, np.abs(y) % C, gamma=1.0))


# ---- properties ------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    eps=st.sampled_from([0.0, 0.05, 0.5]),
    weighted=st.booleans(),
    ignore=st.booleans(),
)
def test_sparse_ce_property(seed, eps, weighted, ignore):
    n, c = 6, 5  # fixed shapes: one compilation per option set
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, c)) * 3).astype(np.float32)
    y = rng.integers(0, c, size=(n,)).astype(np.int32)
    options = {"label_smoothing": eps}
    if weighted:
        options["class_weights"] = rng.uniform(0.0, 2.0, size=(c,)).astype(np.float32)
    if ignore:
        options["ignore_index"] = -1
        y = np.where(rng.uniform(size=n) < 0.3, -1, y).astype(np.int32)
    num, den, counted = np_sparse_ce(x, y, **options)
    for reduction in REDUCTIONS:
        got = jaxloss.sparse_cross_entropy(x, y, **options, reduction=reduction)
        assert_close(got, reduce_pair(num, den, counted, reduction), rtol=5e-5, atol=5e-6)
    # shift invariance of the logits
    shifted = jaxloss.sparse_cross_entropy(x + 7.0, y, **options, reduction="none")
    assert_close(shifted, jaxloss.sparse_cross_entropy(x, y, **options, reduction="none"), rtol=1e-4, atol=1e-4)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), gamma=st.floats(0.0, 4.0))
def test_focal_is_at_most_cross_entropy(seed, gamma):
    x, y = make(seed % 1000, n=6, c=4)
    focal = np.asarray(jaxloss.softmax_focal_loss(x, y, gamma=gamma, reduction="none"))
    ce = np.asarray(jaxloss.sparse_cross_entropy(x, y, reduction="none"))
    assert np.all(focal <= ce + 1e-6) and np.all(focal >= 0)


def test_all_option_combinations_compile_and_agree_under_jit():
    x, y = make(27)
    y = mark_ignored(y, -100)
    for cw, eps, z in itertools.product([None, CW], [0.0, 0.1], [0.0, 1e-3]):
        eager = jaxloss.sparse_cross_entropy(x, y, class_weights=cw, label_smoothing=eps, z_loss=z, ignore_index=-100)
        jitted = jax.jit(lambda a, b: jaxloss.sparse_cross_entropy(
            a, b, class_weights=cw, label_smoothing=eps, z_loss=z, ignore_index=-100))(x, y)
        assert_close(eager, jitted, rtol=1e-6)
        num, den, counted = np_sparse_ce(x, y, class_weights=cw, label_smoothing=eps, z_loss=z, ignore_index=-100)
        assert_close(eager, reduce_pair(num, den, counted, "mean"), rtol=2e-5)


def test_single_class_and_single_example():
    x = np.array([[3.0]], np.float32)
    y = np.array([0], np.int32)
    for fn in (jaxloss.sparse_cross_entropy, jaxloss.softmax_focal_loss, jaxloss.multiclass_hinge_loss):
        v, g = jax.value_and_grad(lambda a: fn(a, y))(x)
        assert float(v) == 0.0 and np.all(np.asarray(g) == 0.0)
    assert float(jaxloss.sparse_cross_entropy(x, y, label_smoothing=0.5)) == 0.0


# ---- the gradient with respect to probability targets (PyTorch's, also at a target of 0) ----


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "class-weights"])
def test_cross_entropy_target_gradient_is_minus_log_p_also_at_zero(label_smoothing, weighted):
    rng = np.random.default_rng(21)
    logits = rng.normal(size=(4, 5))
    targets = np.zeros((4, 5))
    targets[np.arange(4), [0, 2, 4, 1]] = 1.0  # one-hot: most targets are exactly 0
    w = rng.uniform(0.5, 2.0, size=5) if weighted else np.ones(5)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    # d/dt_c of sum_i -sum_c w_c ((1 - eps) t_ic + eps / C) log p_ic, float64 by hand
    expected = -(1.0 - label_smoothing) * w * log_p
    opts = {"label_smoothing": label_smoothing, "class_weights": jnp.asarray(w, jnp.float32) if weighted else None}
    g = jax.grad(lambda t: jaxloss.cross_entropy(jnp.asarray(logits, jnp.float32), t, reduction="sum", **opts))(
        jnp.asarray(targets, jnp.float32))
    assert_close(g, expected, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(g)[targets == 0] != 0)


def test_cross_entropy_target_gradient_is_finite_where_a_masked_class_has_target_0():
    logits = jnp.array([[0.0, -jnp.inf, 1.0]])
    targets = jnp.array([[1.0, 0.0, 0.0]])
    value, g = jax.value_and_grad(lambda t: jaxloss.cross_entropy(logits, t), argnums=0)(targets)
    assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(g)))
    log_p = np.array([0.0, -np.inf, 1.0]) - np.log(1 + np.e)
    assert_close(np.asarray(g)[0, [0, 2]], -log_p[[0, 2]])
    assert float(g[0, 1]) == 0.0  # log p = -inf there: the term is defined as 0


# ---- logit soft-capping (Gemma 2) ------------------------------------------------------------


@pytest.mark.parametrize("cap", [0.5, 3.0, 30.0])
@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.1, "z_loss": 1e-3, "ignore_index": 2}],
                         ids=["plain", "smoothing-zloss-ignore"])
def test_sparse_cross_entropy_logit_softcap_against_float64(cap, options):
    x, y = make(31, scale=8.0)
    capped = cap * np.tanh(np.asarray(x, np.float64) / cap)
    num, den, counted = np_sparse_ce(capped, y, **options)
    out = jaxloss.sparse_cross_entropy(jnp.asarray(x, jnp.float32), jnp.asarray(y), logit_softcap=cap, **options)
    assert_close(out, reduce_pair(num, den, counted, "mean"), rtol=2e-5)
    # the gradient is the capped one: softmax-minus-label times 1 - tanh^2(x / c)
    g = jax.grad(lambda z: jaxloss.sparse_cross_entropy(z, jnp.asarray(y), logit_softcap=cap, reduction="sum"))(
        jnp.asarray(x, jnp.float64) if jax.config.jax_enable_x64 else jnp.asarray(x, jnp.float32))
    p = np.exp(capped - np_lse(capped)[..., None])
    onehot = np.eye(x.shape[-1])[np.asarray(y)]
    expected = (p - onehot) * (1.0 - np.tanh(np.asarray(x, np.float64) / cap) ** 2)
    if not options:
        assert_close(g, expected, rtol=1e-4, atol=1e-6)


def test_logit_softcap_keeps_masked_classes_masked():
    x = jnp.array([[2.0, -jnp.inf, 40.0]])
    value, g = jax.value_and_grad(lambda z: jaxloss.sparse_cross_entropy(z, jnp.array([0]), logit_softcap=30.0))(x)
    capped = 30.0 * np.tanh(np.array([2.0, 40.0]) / 30.0)
    assert_close(value, np_lse(capped) - capped[0])
    assert np.all(np.isfinite(np.asarray(g))) and float(g[0, 1]) == 0.0


def test_logit_softcap_equals_the_fused_head():
    rng = np.random.default_rng(32)
    h = jnp.asarray(rng.normal(size=(6, 4)) * 3, jnp.float32)
    w = jnp.asarray(rng.normal(size=(9, 4)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 9, size=6))
    assert_close(jaxloss.sparse_cross_entropy(h @ w.T, y, logit_softcap=2.0),
                 jaxloss.linear_cross_entropy(h, w, y, logit_softcap=2.0), rtol=1e-5)


def test_logit_softcap_must_be_positive():
    with pytest.raises(ValueError, match=r"sparse_cross_entropy: logit_softcap must lie in \(0, inf\), got 0.0"):
        jaxloss.sparse_cross_entropy(jnp.zeros((2, 3)), jnp.array([0, 1]), logit_softcap=0.0)


# ---------------------------------------------------------------------------
# multi-margin, multi-label margin, GCE, poly-1, sparsemax, perceptron
# (issue 14: the rest of PyTorch, Keras and optax; samples in _samples.py)
# ---------------------------------------------------------------------------


def np_multi_margin(s, y, p=1, margin=1.0, w=None):
    n, c = s.shape
    out = np.zeros(n)
    for i in range(n):
        for k in range(c):
            if k != y[i]:
                out[i] += max(0.0, margin - s[i, y[i]] + s[i, k]) ** p
        out[i] *= (1.0 if w is None else w[y[i]]) / c
    return out


@pytest.mark.parametrize("p", [1, 2])
def test_multi_margin_loss_against_numpy(p):
    s = f32(S)
    for margin, cw in ((1.0, None), (0.4, CW_MARGIN)):
        options = {"p": p, "margin": margin, "class_weights": None if cw is None else jnp.asarray(cw)}
        check_reductions(jaxloss.multi_margin_loss, (S, Y), np_multi_margin(s, Y, p, margin, cw), weights=WE, where=ME,
              **options)
        # class weights multiply; "mean" stays the plain mean (PyTorch)
        assert_close(jaxloss.multi_margin_loss(S, Y, **options), np_multi_margin(s, Y, p, margin, cw).mean())
    # gradient: d/ds_k = w_y/C * p * v_k^(p-1) for violating k != y, minus their sum at y
    v = np.maximum(0.0, 1.0 - s[np.arange(6), Y][:, None] + s)
    v[np.arange(6), Y] = 0.0
    dk = (p * v ** (p - 1) * (v > 0)) / 5 * CW_MARGIN[Y][:, None]
    dk[np.arange(6), Y] = -dk.sum(-1)
    assert_close(grad_of(jaxloss.multi_margin_loss, (S, Y), p=p, class_weights=jnp.asarray(CW_MARGIN)), dk,
                 rtol=1e-5, atol=1e-6)
    # PyTorch's documented example
    assert_close(jaxloss.multi_margin_loss(jnp.array([[0.1, 0.2, 0.4, 0.8]]), jnp.array([3])), 0.325)
    # class axis elsewhere equals moving it last
    assert_close(jaxloss.multi_margin_loss(S.T, Y, p=p, axis=0, reduction="none"),
                 np_multi_margin(s, Y, p))


def test_multi_margin_loss_errors():
    with pytest.raises(ValueError, match="multi_margin_loss: p must be 1 or 2"):
        jaxloss.multi_margin_loss(S, Y, p=3)
    with pytest.raises(ValueError, match="multi_margin_loss: labels must lie in"):
        jaxloss.multi_margin_loss(S, Y + 1)
    with pytest.raises(ValueError, match="multi_margin_loss: class_weights"):
        jaxloss.multi_margin_loss(S, Y, class_weights=jnp.ones(4))


def np_multilabel_margin(s, y):
    """PyTorch's algorithm: mark the targets up to the first -1, then loop over them."""
    n, c = s.shape
    out = np.zeros(n)
    for i in range(n):
        targets = []
        for j in y[i]:
            if j < 0:
                break
            targets.append(j)
        is_target = np.zeros(c, bool)
        is_target[targets] = True
        for j in targets:
            for k in range(c):
                if not is_target[k]:
                    out[i] += max(0.0, 1 - (s[i, j] - s[i, k]))
        out[i] /= c
    return out


def test_multilabel_margin_loss_against_pytorch_algorithm():
    labels = np.array([[3, 0, -1, 1, 4],      # junk after the first -1
                       [1, 1, -1, 0, 0],      # a repeated target counts twice
                       [-1, 2, 3, 0, 0],      # empty list
                       [0, 1, 2, 3, 4],       # every class a target: 0
                       [4, -1, -1, -1, -1],
                       [2, 0, 4, -1, 7]],     # out of range but after the -1: ignored
                      np.int32)
    ref = np_multilabel_margin(f32(S), labels)
    assert ref[2] == 0 and ref[3] == 0 and ref[0] > 0
    check_reductions(jaxloss.multilabel_margin_loss, (S, labels), ref, weights=WE, where=ME)
    # gradient against central differences of the reference
    fd = central_diff(lambda s: np_multilabel_margin(s, labels).sum(), f32(S), 1e-4)
    assert_close(grad_of(jaxloss.multilabel_margin_loss, (S, labels)), fd, rtol=1e-3, atol=1e-4)
    # PyTorch's documented example
    out = jaxloss.multilabel_margin_loss(jnp.array([[0.1, 0.2, 0.4, 0.8]]), jnp.array([[3, 0, -1, 1]]))
    assert_close(out, 0.85)


def test_multilabel_margin_loss_bad_labels():
    bad = np.array([[0, 5, -1, 0, 0]] * 6, np.int32)
    with pytest.raises(ValueError, match=r"multilabel_margin_loss: labels before the first -1 of a row must lie"):
        jaxloss.multilabel_margin_loss(S, bad)
    out = jax.jit(lambda s, y: jaxloss.multilabel_margin_loss(s, y, reduction="none"))(S, bad)
    assert np.all(np.isnan(np.asarray(out)))
    with pytest.raises(TypeError, match="multilabel_margin_loss: labels must hold integer"):
        jaxloss.multilabel_margin_loss(S, bad.astype(np.float32))
    with pytest.raises(ValueError, match="multilabel_margin_loss: scores and labels must have the same shape"):
        jaxloss.multilabel_margin_loss(S, bad[:, :4])


def test_generalized_cross_entropy_against_numpy():
    s = f32(S)
    log_p = log_softmax(s)[np.arange(6), Y]
    p_y = np.exp(log_p)
    for q in (0.3, 0.5, 1.0):
        check_reductions(jaxloss.generalized_cross_entropy, (S, Y), (1 - p_y**q) / q, weights=WE, where=ME, q=q)
        p = np.exp(log_softmax(s))
        onehot = np.eye(5)[Y]
        g = -(p_y**q)[:, None] * (onehot - p)  # d/dx of (1 - p_y^q)/q
        assert_close(grad_of(jaxloss.generalized_cross_entropy, (S, Y), q=q), g, rtol=1e-5, atol=1e-6)
    assert_close(jaxloss.generalized_cross_entropy(S, Y, q=1.0, reduction="none"), 1 - p_y)  # MAE
    assert_close(jaxloss.generalized_cross_entropy(S, Y, q=1e-4, reduction="none"), -log_p, rtol=1e-3)  # -> CE
    y_ign = np.where(np.arange(6) % 3 == 0, -100, Y).astype(np.int32)
    out = jaxloss.generalized_cross_entropy(S, y_ign, ignore_index=-100, reduction="none")
    assert_close(out, np.where(y_ign == -100, 0.0, (1 - np.sqrt(p_y)) / 0.5), rtol=2e-5, atol=1e-6)
    assert_close(jaxloss.generalized_cross_entropy(S, y_ign, ignore_index=-100),
                 ((1 - np.sqrt(p_y)) / 0.5)[y_ign != -100].mean(), rtol=2e-5)
    # an underflowed label probability: 1/q, finite gradient
    x = jnp.array([[-200.0, 0.0, 0.0]])
    v, g = jax.value_and_grad(lambda z: jaxloss.generalized_cross_entropy(z, jnp.array([0])))(x)
    assert_close(v, 2.0) and np.all(np.isfinite(np.asarray(g)))
    with pytest.raises(ValueError, match=r"generalized_cross_entropy: q must lie in \(0, 1\]"):
        jaxloss.generalized_cross_entropy(S, Y, q=0.0)


def np_poly1(s, y, epsilon=2.0, smoothing=0.0):
    """optax's poly_loss_cross_entropy on optax.smooth_labels(one_hot(y), smoothing)."""
    c = s.shape[-1]
    t = (1 - smoothing) * np.eye(c)[y] + smoothing / c
    log_p = log_softmax(s)
    return -(t * log_p).sum(-1) + epsilon * (t * (1 - np.exp(log_p))).sum(-1)


def test_poly1_cross_entropy_against_numpy():
    s = f32(S)
    for epsilon, smoothing in ((2.0, 0.0), (-1.0, 0.1), (0.5, 0.3)):
        options = {"epsilon": epsilon, "label_smoothing": smoothing}
        check_reductions(jaxloss.poly1_cross_entropy, (S, Y), np_poly1(s, Y, epsilon, smoothing), weights=WE, where=ME,
              **options)
        t = (1 - smoothing) * np.eye(5)[Y] + smoothing / 5
        p = np.exp(log_softmax(s))
        p_y = p[np.arange(6), Y][:, None]
        onehot = np.eye(5)[Y]
        g = (p - t) + epsilon * (1 - smoothing) * (-p_y * (onehot - p))
        assert_close(grad_of(jaxloss.poly1_cross_entropy, (S, Y), **options), g, rtol=1e-5, atol=1e-6)
    y_ign = np.where(np.arange(6) % 2 == 0, 7, Y).astype(np.int32)
    out = jaxloss.poly1_cross_entropy(S, y_ign, ignore_index=7, reduction="none")
    assert_close(out, np.where(y_ign == 7, 0.0, np_poly1(s, np.where(y_ign == 7, 0, y_ign))), rtol=2e-5)
    with pytest.raises(ValueError, match=r"poly1_cross_entropy: epsilon must lie in \[-1, inf\)"):
        jaxloss.poly1_cross_entropy(S, Y, epsilon=-2.0)


def np_sparsemax(z):
    zs = np.sort(z)[::-1]
    k = np.arange(1, z.size + 1)
    cs = np.cumsum(zs)
    n = np.max(k[1 + k * zs > cs])
    tau = (cs[n - 1] - 1) / n
    return np.maximum(z - tau, 0.0)


def np_multiclass_sparsemax(s, y):
    out = []
    for z, label in zip(s, y):
        p = np_sparsemax(z)
        out.append(p @ z - z[label] + 0.5 * (1 - p @ p))
    return np.array(out)


def test_multiclass_sparsemax_loss_against_numpy():
    s = f32(S)
    check_reductions(jaxloss.multiclass_sparsemax_loss, (S, Y), np_multiclass_sparsemax(s, Y), weights=WE, where=ME)
    probs = np.stack([np_sparsemax(z) for z in s])
    assert_close(grad_of(jaxloss.multiclass_sparsemax_loss, (S, Y)), probs - np.eye(5)[Y], rtol=1e-5, atol=1e-6)
    assert_close(jaxloss.multiclass_sparsemax_loss(S.T, Y, axis=0, reduction="none"), np_multiclass_sparsemax(s, Y))


def test_multiclass_sparsemax_loss_ties_and_masked_classes():
    s = np.array([[1.0, 1.0, 0.0, -3.0],      # tied top scores
                  [2.0, 2.0, 2.0, 2.0],       # all tied
                  [1.0, 0.5, 0.5, -1.0],      # tie inside the support
                  [1.0, 0.0, 0.0, -5.0],      # tie exactly at the edge of the support (tau = 0)
                  [5.0, 0.0, -1.0, -2.0]],    # one-hot projection
                 np.float32)
    y = np.array([0, 2, 1, 1, 0], np.int32)
    assert_close(jaxloss.multiclass_sparsemax_loss(s, y, reduction="none"), np_multiclass_sparsemax(f32(s), y))
    g = grad_of(jaxloss.multiclass_sparsemax_loss, (s, y))
    probs = np.stack([np_sparsemax(z) for z in f32(s)])
    assert_close(g, probs - np.eye(4)[y], atol=1e-6)
    assert float(jaxloss.multiclass_sparsemax_loss(s[4:], y[4:])) == 0.0
    # a -inf score of another class is outside the support: equal to removing the class
    masked = np.array([[1.0, 0.3, -np.inf, 0.1]], np.float32)
    v, g = jax.value_and_grad(lambda z: jaxloss.multiclass_sparsemax_loss(z, jnp.array([1])))(jnp.asarray(masked))
    assert_close(v, np_multiclass_sparsemax(f32(masked[:, [0, 1, 3]]), [1]))
    assert np.all(np.isfinite(np.asarray(g)))


def test_multiclass_perceptron_loss_against_numpy():
    s = f32(S)
    check_reductions(jaxloss.multiclass_perceptron_loss, (S, Y), s.max(-1) - s[np.arange(6), Y], weights=WE, where=ME)
    g = grad_of(jaxloss.multiclass_perceptron_loss, (S, Y))
    assert_close(g, np.eye(5)[s.argmax(-1)] - np.eye(5)[Y])
    tied = grad_of(jaxloss.multiclass_perceptron_loss, (np.array([[1.0, 1.0, 0.0]], np.float32), np.array([2])))
    assert_close(tied, [[0.5, 0.5, -1.0]])  # the max's gradient split between the tied classes


def test_multiclass_losses_match_optax():
    s, y = jnp.asarray(S), jnp.asarray(Y)
    assert_close(jaxloss.multiclass_sparsemax_loss(s, y, reduction="none"),
                 optax.losses.multiclass_sparsemax_loss(s, y), atol=1e-6)
    assert_close(jaxloss.multiclass_perceptron_loss(s, y, reduction="none"),
                 optax.losses.multiclass_perceptron_loss(s, y), atol=1e-6)
    assert_close(jaxloss.poly1_cross_entropy(s, y, epsilon=1.5, reduction="none"),
                 optax.losses.poly_loss_cross_entropy(s, jax.nn.one_hot(y, 5), epsilon=1.5), rtol=1e-5)

