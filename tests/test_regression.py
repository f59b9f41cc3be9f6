"""Regression losses against NumPy float64 closed forms, worked examples, edges and properties."""

from __future__ import annotations

import math
from decimal import Decimal, getcontext

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _reference import assert_close, central_diff, check_reductions, f32, grad_of, reduce_ref
from _samples import COSINE, ME, WE
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import jaxloss

# ---- closed forms, float64 ----------------------------------------------------


def np_huber(p, t, delta=1.0):
    r = p - t
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r**2, delta * a - 0.5 * delta**2)


def np_smooth_l1(p, t, beta=1.0):
    a = np.abs(p - t)
    if beta == 0:
        return a
    return np.where(a < beta, 0.5 * a**2 / beta, a - 0.5 * beta)


def np_poisson(p, t, log_input=True, full=False, eps=1e-8):
    out = np.exp(p) - t * p if log_input else p - t * np.log(p + eps)
    if full:
        tt = np.where(t > 1, t, 1.0)
        out = out + np.where(t > 1, tt * np.log(tt) - tt + 0.5 * np.log(2 * np.pi * tt), 0.0)
    return out


def np_gaussian(p, t, var, full=False, eps=1e-6):
    v = np.maximum(var, eps)
    out = 0.5 * (np.log(v) + (p - t) ** 2 / v)
    return out + (0.5 * np.log(2 * np.pi) if full else 0.0)


CASES = {
    "mse_loss": ({}, lambda p, t: (p - t) ** 2),
    "mae_loss": ({}, lambda p, t: np.abs(p - t)),
    "huber_loss": ({"delta": 0.7}, lambda p, t: np_huber(p, t, 0.7)),
    "smooth_l1_loss": ({"beta": 0.5}, lambda p, t: np_smooth_l1(p, t, 0.5)),
    "log_cosh_loss": ({}, lambda p, t: np.log(np.cosh(p - t))),
    "quantile_loss": ({"quantile": 0.8}, lambda p, t: np.maximum(0.8 * (t - p), -0.2 * (t - p))),
    "poisson_nll_loss": ({}, lambda p, t: np_poisson(p, t)),
    "msle_loss": ({}, lambda p, t: (np.log1p(np.maximum(p, 0)) - np.log1p(np.maximum(t, 0))) ** 2),
    "mape_loss": ({}, lambda p, t: 100 * np.abs(p - t) / np.maximum(np.abs(t), 1e-7)),
}


def _data(name, seed=0, shape=(5, 7)):
    rng = np.random.default_rng(seed)
    if name in ("msle_loss", "mape_loss"):
        return rng.uniform(0.1, 3, shape), rng.uniform(0.1, 3, shape)
    if name == "poisson_nll_loss":
        return rng.normal(size=shape), rng.poisson(2.0, shape).astype(float)
    return rng.normal(size=shape) * 2, rng.normal(size=shape) * 2


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("variant", ["plain", "weights", "where", "both"])
def test_against_closed_form(name, reduction, variant):
    hp, ref = CASES[name]
    p, t = _data(name)
    rng = np.random.default_rng(1)
    weights = rng.uniform(0, 2, size=(1, 7)) if variant in ("weights", "both") else None
    where = rng.uniform(size=(5, 7)) < 0.6 if variant in ("where", "both") else None
    fn = getattr(jaxloss, name)
    out = fn(
        jnp.asarray(p, jnp.float32), jnp.asarray(t, jnp.float32), **hp, reduction=reduction,
        weights=None if weights is None else jnp.asarray(weights, jnp.float32),
        where=None if where is None else jnp.asarray(where),
    )
    expected = reduce_ref(ref(p.astype(np.float32).astype(np.float64), t.astype(np.float32).astype(np.float64)),
                          reduction, weights, where)
    assert_close(out, expected, rtol=2e-5, atol=1e-5)


@pytest.mark.parametrize("opts", [{}, {"full": True}, {"log_input": False}, {"log_input": False, "full": True}])
def test_poisson_options(opts):
    rng = np.random.default_rng(3)
    p = rng.uniform(0.1, 3, (6,)) if opts.get("log_input") is False else rng.normal(size=(6,))
    t = np.array([0.0, 1.0, 2.0, 3.0, 5.0, 9.0])
    out = jaxloss.poisson_nll_loss(jnp.asarray(p, jnp.float32), jnp.asarray(t, jnp.float32), reduction="none", **opts)
    assert_close(out, np_poisson(p.astype(np.float32).astype(float), t, **opts), rtol=1e-5, atol=1e-5)


def np_var_like_torch(var, shape):
    """PyTorch's GaussianNLLLoss reading of ``var`` against an input of ``shape``,
    written independently: one dimension fewer means ``var[..., None]``."""
    var = np.asarray(var, np.float64)
    if var.ndim == len(shape) - 1 and var.shape == tuple(shape[:-1]):
        var = var[..., None]
    return np.broadcast_to(var, shape)


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("var_shape", [(4, 5), (4, 1), (1, 5), (4,), ()],
                         ids=["same", "trailing-1", "leading-1", "one-per-row", "scalar"])
def test_gaussian_nll_var_shapes_as_pytorch(full, var_shape):
    rng = np.random.default_rng(4)
    p, t = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    var32 = np.asarray(rng.uniform(0.2, 2.0, size=var_shape), np.float32)
    out = jaxloss.gaussian_nll_loss(jnp.float32(p), jnp.float32(t), jnp.asarray(var32), full=full, reduction="none")
    expected = np_gaussian(np.float32(p).astype(float), np.float32(t).astype(float),
                           np_var_like_torch(var32, (4, 5)), full=full)
    assert out.shape == (4, 5)
    assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_gaussian_nll_one_variance_per_row_is_not_a_broadcast_along_rows():
    # var of shape (4,) against pred (4, 4): PyTorch reads it as var[:, None] (one per row);
    # NumPy broadcasting would read it as one per column. The two differ.
    rng = np.random.default_rng(7)
    p, t = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    var = np.array([0.5, 1.0, 2.0, 4.0])
    out = jaxloss.gaussian_nll_loss(jnp.asarray(p, jnp.float32), jnp.asarray(t, jnp.float32),
                                    jnp.asarray(var, jnp.float32), reduction="none")
    assert_close(out, np_gaussian(p, t, var[:, None]), rtol=1e-5)
    assert not np.allclose(np.asarray(out), np_gaussian(p, t, var[None, :]), rtol=1e-3)


def test_gaussian_nll_python_scalar_variance():
    p, t = jnp.array([1.0, 2.0]), jnp.array([0.0, 0.0])
    assert_close(jaxloss.gaussian_nll_loss(p, t, 2.0, reduction="none"), np_gaussian(np.array([1.0, 2.0]), 0.0, 2.0))


@pytest.mark.parametrize("var_shape", [(5, 4), (4, 5, 1), (2, 5), (4, 1, 1), (1, 1), (5,)],
                         ids=["transposed", "extra-dim", "wrong-rows", "too-many-dims", "two-ones", "columns"])
def test_gaussian_nll_rejects_other_var_shapes(var_shape):
    with pytest.raises(ValueError, match=r"gaussian_nll_loss: var of shape .* does not fit pred of shape \(4, 5\)"):
        jaxloss.gaussian_nll_loss(jnp.zeros((4, 5)), jnp.zeros((4, 5)), jnp.ones(var_shape))


# ---- worked examples (the correct values of the seed tutorials, float64, checked against PyTorch) ----


def test_huber_worked_examples():
    p = jnp.array([[1.5, 2.0, 3.5, 4.0]])
    t = jnp.array([[1.0, 2.5, 3.0, 5.0]])
    value, grad = jax.value_and_grad(jaxloss.huber_loss)(p, t)
    assert_close(value, 0.21875)
    assert_close(grad, [[0.125, -0.125, 0.125, -0.25]])
    p2 = jnp.array([[2.0, 1.0, 3.0, 4.0]])
    t2 = jnp.array([[1.0, 2.0, 2.0, 5.0]])
    value, grad = jax.value_and_grad(lambda x: jaxloss.HuberLoss(reduction="sum", delta=1.0)(x, t2))(p2)
    assert_close(value, 2.0)
    assert_close(grad, [[1.0, -1.0, 1.0, -1.0]])


def test_mse_mae_huber_worked_examples():
    t = jnp.array([2.5, 1.0, 3.2, 0.5, 4.1])
    p = jnp.array([2.3, 1.2, 3.0, 0.8, 3.9])
    assert_close(jaxloss.mse_loss(p, t), 0.05, rtol=1e-5)
    t = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0])
    p = jnp.array([1.1, 2.2, 2.9, 4.1, 15.0])
    assert_close(jaxloss.mse_loss(p, t), 20.014, rtol=1e-5)
    assert_close(jaxloss.mae_loss(p, t), 2.1, rtol=1e-5)
    assert_close(jaxloss.huber_loss(p, t), 1.907, rtol=1e-5)


# ---- edges ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES) + ["gaussian_nll_loss"])
def test_zero_residual_subgradient_is_zero(name):
    x = jnp.array([0.5, 1.0, 2.0])
    extra = (jnp.ones(3),) if name == "gaussian_nll_loss" else ()
    fn = getattr(jaxloss, name)
    if name == "poisson_nll_loss":
        return  # no residual: its minimum is at exp(pred) = target, checked below
    g = jax.grad(lambda p: fn(p, x, *extra))(x)
    assert np.all(np.asarray(g) == 0.0), g


def test_poisson_gradient_zero_at_optimum():
    t = jnp.array([0.5, 1.0, 2.0])
    g = jax.grad(lambda p: jaxloss.poisson_nll_loss(p, t))(jnp.log(t))
    assert_close(g, 0.0, atol=1e-7)


@pytest.mark.parametrize("name", ["mse_loss", "mae_loss", "huber_loss", "smooth_l1_loss", "log_cosh_loss",
                                  "quantile_loss"])
def test_huge_residuals_finite(name):
    p = jnp.array([1e30, -1e30, 1e4, -1e4], jnp.float32)
    t = jnp.zeros(4)
    fn = getattr(jaxloss, name)
    value, g = jax.value_and_grad(lambda x: fn(x, t, reduction="sum"))(p)
    assert np.all(np.isfinite(np.asarray(g)))
    if name != "mse_loss":  # (1e30)^2 overflows float32 by definition
        assert np.isfinite(float(value))


def test_log_cosh_large_and_small():
    r = np.array([1e-4, 0.5, 30.0, 1e4, 1e30])
    out = jaxloss.log_cosh_loss(jnp.asarray(r, jnp.float32), jnp.zeros(5), reduction="none")
    expected = np.abs(r) + np.log1p(np.exp(-2 * np.abs(r))) - np.log(2)
    assert_close(out, expected, rtol=1e-5, atol=1e-12)
    g = jax.grad(lambda x: jaxloss.log_cosh_loss(x, jnp.zeros(5), reduction="sum"))(jnp.asarray(r, jnp.float32))
    assert_close(g, np.tanh(r), rtol=1e-5)


def test_smooth_l1_beta_zero_is_l1():
    rng = np.random.default_rng(5)
    p, t = jnp.asarray(rng.normal(size=20), jnp.float32), jnp.asarray(rng.normal(size=20), jnp.float32)
    assert_close(jaxloss.smooth_l1_loss(p, t, beta=0.0), jaxloss.mae_loss(p, t))
    g = jax.grad(lambda x: jaxloss.smooth_l1_loss(x, t, beta=0.0))(p)
    assert_close(g, np.sign(np.asarray(p) - np.asarray(t)) / 20)


def test_zero_weights_give_zero_not_nan():
    p, t = jnp.array([1.0, 2.0]), jnp.array([0.0, 0.0])
    assert float(jaxloss.mse_loss(p, t, weights=jnp.zeros(2))) == 0.0
    g = jax.grad(lambda x: jaxloss.mse_loss(x, t, weights=jnp.zeros(2)))(p)
    assert np.all(np.asarray(g) == 0)


# ---- errors: one behaviour per test -------------------------------------------------------

_Z3 = jnp.zeros(3)

ERRORS = [
    pytest.param(lambda: jaxloss.mse_loss(jnp.zeros((4, 1)), jnp.zeros(4)), ValueError,
                 r"mse_loss: pred and target must have the same shape.*\(4, 1\).*\(4,\)", id="no-implicit-broadcast"),
    pytest.param(lambda: jaxloss.mae_loss(_Z3, _Z3, reduction="average"), ValueError,
                 r"mae_loss: reduction must be one of", id="unknown-reduction"),
    pytest.param(lambda: jaxloss.huber_loss(jnp.zeros(3, jnp.int32), _Z3), TypeError,
                 r"huber_loss: pred must be a floating-point array, got dtype int32", id="integer-pred"),
    pytest.param(lambda: jaxloss.huber_loss(jnp.zeros(3, bool), _Z3), TypeError,
                 r"huber_loss: pred must be a floating-point array, got dtype bool", id="bool-pred"),
    pytest.param(lambda: jaxloss.huber_loss(_Z3, _Z3, delta=0.0), ValueError,
                 r"huber_loss: delta must lie in \(0, inf\), got 0.0", id="delta-zero"),
    pytest.param(lambda: jaxloss.huber_loss(_Z3, _Z3, delta=-1.0), ValueError,
                 r"huber_loss: delta must lie in \(0, inf\), got -1.0", id="delta-negative"),
    pytest.param(lambda: jaxloss.HuberLoss(delta=-2.0), ValueError,
                 r"HuberLoss: delta must lie in \(0, inf\)", id="class-names-itself"),
    pytest.param(lambda: jaxloss.smooth_l1_loss(_Z3, _Z3, beta=-0.1), ValueError,
                 r"smooth_l1_loss: beta must lie in \[0, inf\)", id="beta-negative"),
    pytest.param(lambda: jaxloss.quantile_loss(_Z3, _Z3, quantile=-0.1), ValueError,
                 r"quantile_loss: quantile must lie in \[0, 1\]", id="quantile-below-0"),
    pytest.param(lambda: jaxloss.quantile_loss(_Z3, _Z3, quantile=1.5), ValueError,
                 r"quantile_loss: quantile must lie in \[0, 1\]", id="quantile-above-1"),
    pytest.param(lambda: jaxloss.mse_loss(jnp.zeros((4, 3)), jnp.zeros((4, 3)), weights=jnp.ones(4)), ValueError,
                 r"mse_loss: weights of shape \(4,\) must broadcast to the unreduced loss of shape \(4, 3\)",
                 id="weights-shape"),
    pytest.param(lambda: jaxloss.mse_loss(_Z3, _Z3, where=jnp.ones(3, jnp.complex64)), TypeError,
                 r"mse_loss: where must be a boolean mask or a 0/1 integer or float mask", id="complex-where"),
    pytest.param(lambda: jaxloss.mse_loss(_Z3, _Z3, delta=1.0), TypeError,
                 r"mse_loss: unexpected keyword argument 'delta'", id="option-of-another-loss"),
    pytest.param(lambda: jaxloss.huber_loss(_Z3, _Z3, dleta=1.0), TypeError,
                 r"huber_loss: unexpected keyword argument 'dleta'; did you mean 'delta'\?", id="did-you-mean"),
    pytest.param(lambda: jaxloss.HuberLoss(dleta=1.0), TypeError,
                 r"HuberLoss: unexpected keyword argument 'dleta'; did you mean 'delta'\?", id="class-did-you-mean"),
    pytest.param(lambda: jaxloss.poisson_nll_loss(_Z3, _Z3, full=1), TypeError,
                 r"poisson_nll_loss: full must be True or False, got 1", id="flag-not-bool"),
    pytest.param(lambda: jaxloss.PoissonNLLLoss(log_input="yes"), TypeError,
                 r"PoissonNLLLoss: log_input must be True or False", id="class-flag-not-bool"),
    pytest.param(lambda: jaxloss.mse_loss(_Z3, _Z3, _Z3), TypeError,
                 r"mse_loss: takes 2 positional inputs \(pred, target\), got 3", id="too-many-inputs"),
    pytest.param(lambda: jaxloss.mse_loss(_Z3, pred=_Z3), TypeError,
                 r"mse_loss: got multiple values for input 'pred'", id="input-twice"),
    pytest.param(lambda: jaxloss.mse_loss(_Z3), TypeError, r"mse_loss: missing input\(s\) 'target'",
                 id="missing-input"),
]


@pytest.mark.parametrize("call, error, match", ERRORS)
def test_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_traced_hyper_parameters_are_not_checked_at_trace_time():
    # No error under jit: the formula is evaluated as written (delta (|r| - delta / 2) = -0.5 here).
    value = jax.jit(lambda d: jaxloss.huber_loss(jnp.zeros(3), jnp.zeros(3), delta=d))(-1.0)
    assert_close(value, -0.5)


@pytest.mark.parametrize("call", [
    lambda p, t: jaxloss.mse_loss(pred=p, target=t),
    lambda p, t: jaxloss.mse_loss(p, target=t),
    lambda p, t: jaxloss.mse_loss(target=t, pred=p),
    lambda p, t: jaxloss.MSELoss()(p, t),
], ids=["both-by-name", "target-by-name", "reversed-names", "object"])
def test_any_binding_of_the_signature(call):
    p, t = jnp.array([1.0, 2.0, 4.0]), jnp.array([0.0, 2.0, 2.0])
    assert_close(call(p, t), 5.0 / 3.0)


# ---- properties (hypothesis) ----------------------------------------------------------------

finite = st.floats(-50, 50, allow_nan=False, width=32)
vec = arrays(np.float32, st.integers(1, 12), elements=finite)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_reductions_consistent(data):
    p = data.draw(vec)
    t = data.draw(arrays(np.float32, p.shape, elements=finite))
    m = data.draw(arrays(np.bool_, p.shape))
    name = data.draw(st.sampled_from(["mse_loss", "mae_loss", "huber_loss", "log_cosh_loss", "quantile_loss"]))
    fn = getattr(jaxloss, name)
    none = np.asarray(fn(p, t, reduction="none"), np.float64)
    assert_close(fn(p, t, reduction="sum"), none.sum(), rtol=1e-5, atol=1e-4)
    assert_close(fn(p, t, reduction="mean"), none.mean(), rtol=1e-5, atol=1e-4)
    assert_close(fn(p, t, where=m), fn(p[m], t[m]) if m.any() else 0.0, rtol=1e-5, atol=1e-4)
    assert_close(fn(p, t, where=m, reduction="sum"), fn(p[m], t[m], reduction="sum"), rtol=1e-5, atol=1e-4)
    assert_close(fn(p, t, weights=np.ones_like(p), reduction="none"), none, rtol=1e-6, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(vec, st.floats(0.05, 20))
def test_smooth_l1_is_huber_over_beta(p, beta):
    t = np.zeros_like(p)
    assert_close(jaxloss.smooth_l1_loss(p, t, beta=beta, reduction="none"),
                 np.asarray(jaxloss.huber_loss(p, t, delta=beta, reduction="none")) / np.float32(beta),
                 rtol=1e-4, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(arrays(np.float32, st.integers(1, 12), elements=st.floats(-10, 10, width=32)))
def test_huber_tends_to_half_mse(p):
    t = np.zeros_like(p)
    assert_close(jaxloss.huber_loss(p, t, delta=1e3), 0.5 * np.asarray(jaxloss.mse_loss(p, t)), rtol=1e-6, atol=1e-6)


# ---- optax interplay ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,optax_fn",
    [
        ("huber_loss", lambda p, t: optax.losses.huber_loss(p, t, delta=1.0)),
        ("mse_loss", lambda p, t: optax.losses.squared_error(p, t)),
        ("mse_loss", lambda p, t: 2.0 * optax.losses.l2_loss(p, t)),
        ("log_cosh_loss", lambda p, t: optax.losses.log_cosh(p, t)),
    ],
)
def test_same_gradient_as_optax(name, optax_fn):
    rng = np.random.default_rng(7)
    p, t = jnp.asarray(rng.normal(size=64) * 2, jnp.float32), jnp.asarray(rng.normal(size=64), jnp.float32)
    ours = jax.grad(lambda x: getattr(jaxloss, name)(x, t))(p)
    theirs = jax.grad(lambda x: jnp.mean(optax_fn(x, t)))(p)
    assert_close(ours, theirs, rtol=1e-5, atol=1e-7)


def test_train_step_cuts_regression_loss_1000_fold():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(256, 3)), jnp.float32)
    w_true = jnp.array([1.5, -2.0, 0.5])
    y = x @ w_true + 0.3
    params = {"w": jnp.zeros(3), "b": jnp.zeros(())}
    apply_fn = lambda p, x: x @ p["w"] + p["b"]  # noqa: E731
    opt = optax.adam(0.05)
    step = jaxloss.make_train_step(apply_fn, jaxloss.MSELoss(), opt)
    state = opt.init(params)
    first = None
    for _ in range(500):
        params, state, value = step(params, state, x, y)
        first = float(value) if first is None else first
    final = float(jaxloss.mse_loss(apply_fn(params, x), y))
    assert final < first / 1000, (first, final)


def test_train_step_rejects_unreduced_loss():
    step = jaxloss.make_train_step(lambda p, x: x * p, jaxloss.MSELoss(reduction="none"), optax.sgd(0.1))
    with pytest.raises(ValueError, match="scalar"):
        step(jnp.ones(()), optax.sgd(0.1).init(jnp.ones(())), jnp.ones(3), jnp.ones(3))


# ---------------------------------------------------------------------------
# cosine distance (issue 14; samples in _samples.py)
# ---------------------------------------------------------------------------


def test_cosine_distance_loss_against_numpy():
    x, t = COSINE
    xd, td = f32(x), f32(t)
    nx, nt = np.linalg.norm(xd, axis=-1), np.linalg.norm(td, axis=-1)
    cos = (xd * td).sum(-1) / nx / nt
    check_reductions(jaxloss.cosine_distance_loss, (x, t), 1 - cos, weights=WE, where=ME)
    gx = -(td / (nx * nt)[:, None] - cos[:, None] * xd / (nx**2)[:, None])
    assert_close(grad_of(jaxloss.cosine_distance_loss, (x, t)), gx, rtol=1e-5, atol=1e-6)
    assert_close(jaxloss.cosine_distance_loss(x.T, t.T, axis=0, reduction="none"), 1 - cos, atol=1e-6)


def test_cosine_distance_loss_zero_vectors():
    x = jnp.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 2.0, 2.0]])
    t = jnp.array([[3.0, 0.0, 4.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    v = jaxloss.cosine_distance_loss(x, t, reduction="none")
    assert_close(v, [1.0, 1.0, 1.0])
    gx, gt = jax.grad(lambda a, b: jaxloss.cosine_distance_loss(a, b, reduction="sum"), argnums=(0, 1))(x, t)
    gx, gt = np.asarray(gx), np.asarray(gt)
    assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gt))
    eps = np.finfo(np.float32).eps
    assert_close(gx[0], -np.array([0.6, 0.0, 0.8]) / np.sqrt(eps), rtol=1e-5)  # documented: -t_hat / sqrt(eps)
    assert np.all(gx[1] == 0) and np.all(gt[1] == 0)  # two zero vectors
    assert_close(gt[2], -np.array([1.0, 2.0, 2.0]) / 3 / np.sqrt(eps), rtol=1e-5)


# ===========================================================================
# general_robust_loss (formerly tests/test_robust.py)
#
# general_robust_loss (Barron's general loss) against a high-precision reference.
#
# The reference is written here with Python's ``decimal`` module at 110 digits: the
# closed form and its limits, and both derivatives by central differences with a
# step of 1e-22 (truncation error ~1e-44), so it is exact to far below float64
# rounding. jaxloss runs in float64 on one grid of (z, alpha) in a single jitted,
# vmapped call per quantity.
# ===========================================================================

getcontext().prec = 110
_H = Decimal("1e-22")


def rho_dec(alpha: Decimal, z: Decimal) -> Decimal:
    """Barron's rho in 110-digit decimal arithmetic, with its limits at 0 and 2."""
    t = z * z
    if alpha == 0:
        return (t / 2 + 1).ln()
    if alpha == 2:
        return t / 2
    b = abs(alpha - 2)
    return b / alpha * (((alpha / 2) * (t / b + 1).ln()).exp() - 1)


def reference(alpha: float, z: float) -> tuple[float, float, float]:
    """(rho, d rho / dz, d rho / d alpha) at float64 inputs, to ~50 digits."""
    a, x = Decimal(alpha), Decimal(z)
    value = rho_dec(a, x)
    dz = central_diff(lambda v: rho_dec(a, v), x, _H, elementwise=True)
    da = central_diff(lambda v: rho_dec(v, x), a, _H, elementwise=True)
    return float(value), float(dz), float(da)


def _grid_fns():
    def f(z, a):
        return jaxloss.general_robust_loss(z, jnp.zeros_like(z), alpha=a, reduction="sum")

    value = jax.jit(jax.vmap(f))
    dz = jax.jit(jax.vmap(jax.grad(f, 0)))
    da = jax.jit(jax.vmap(jax.grad(f, 1)))
    return value, dz, da


ALPHAS = (-1e4, -2.0, -1.0, -1e-6, 0.0, 1e-6, 0.5, 1.0, 1.5, 1.9, 2 - 1e-6, 2 + 1e-6, 3.0, 10.0)
ZS = (0.5, 1.0, 3.0, 30.0)


def test_values_and_both_gradients_to_float64_rounding():
    with jax.enable_x64(True):
        value, dz, da = _grid_fns()
        grid = [(a, z) for a in ALPHAS for z in ZS]
        a = jnp.array([g[0] for g in grid], jnp.float64)
        z = jnp.array([g[1] for g in grid], jnp.float64)
        ours = np.stack([np.asarray(value(z, a)), np.asarray(dz(z, a)), np.asarray(da(z, a))], axis=1)
    ref = np.array([reference(*g) for g in grid])
    # the value: relative error at the level of float64 rounding (a few ulps)
    np.testing.assert_allclose(ours[:, 0], ref[:, 0], rtol=2e-15, atol=0)
    # the gradients: relative to themselves, or to the loss (rho / z for d/dz) where they
    # are much smaller than it (d/dz ~ z e^{-z^2/2} for alpha -> -inf, d/d alpha ~ z^4 near 0)
    assert_scaled(ours[:, 1], ref[:, 1], ref[:, 0] / np.asarray(z), 4e-15, grid)
    assert_scaled(ours[:, 2], ref[:, 2], ref[:, 0], 4e-15, grid)


def assert_scaled(actual, expected, loss_scale, tol, labels=None):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    scale = np.maximum(np.abs(expected), np.abs(np.asarray(loss_scale, np.float64)))
    err = np.abs(actual - expected) / np.maximum(scale, 1e-300)
    worst = np.argsort(err)[-3:]
    assert err.max() <= tol, [(None if labels is None else labels[i], actual[i], expected[i], err[i]) for i in worst]


def test_near_the_singularities_at_0_and_2():
    """At alpha = +-1e-6 and 2 +- 1e-6 every quantity is within a few ulps of the
    reference, and the forms on either side of the singularities meet."""
    with jax.enable_x64(True):
        value, dz, da = _grid_fns()
        for a0 in (0.0, 2.0):
            for z in (0.7, 2.0):
                alphas = jnp.array([a0 - 1e-6, a0 + 1e-6], jnp.float64)
                zs = jnp.full(2, z, jnp.float64)
                ref = np.array([reference(float(a), z) for a in alphas])
                assert_close(value(zs, alphas), ref[:, 0], rtol=2e-15, atol=0)
                assert_close(dz(zs, alphas), ref[:, 1], rtol=2e-15, atol=0)
                assert_scaled(da(zs, alphas), ref[:, 2], ref[:, 0], 2e-15)


def test_limits_at_exactly_0_2_and_minus_inf():
    z = np.array([0.0, 0.3, 1.0, 4.0])
    with jax.enable_x64(True):
        value, dz, da = _grid_fns()
        zz = jnp.asarray(z)
        for alpha, rho, drho in (
            (0.0, np.log1p(z * z / 2), z / (1 + z * z / 2)),
            (2.0, z * z / 2, z),
            (-np.inf, -np.expm1(-z * z / 2), z * np.exp(-z * z / 2)),
            (1.0, z * z / (np.sqrt(z * z + 1) + 1), z / np.sqrt(z * z + 1)),  # pseudo-Huber
            (-2.0, 2 * z * z / (z * z + 4), 16 * z / (z * z + 4) ** 2),  # Geman-McClure
        ):
            a = jnp.full(z.shape, alpha, jnp.float64)
            assert_close(value(zz, a), rho, rtol=2e-15, atol=1e-300)
            assert_scaled(dz(zz, a), drho, rho / np.maximum(z, 1e-300), 4e-15)
        # the alpha-gradient: the true derivative at exactly 0 (the reference's central
        # difference straddles 0), and 0 at exactly 2 (unbounded there) and at -inf
        at0 = np.asarray(da(zz, jnp.zeros(4, jnp.float64)))
        ref0 = np.array([reference(0.0, float(v))[2] for v in z])
        assert_scaled(at0, ref0, np.log1p(z * z / 2), 2e-15)
        assert np.all(np.asarray(da(zz, jnp.full(4, 2.0, jnp.float64))) == 0.0)
        assert np.all(np.asarray(da(zz, jnp.full(4, -jnp.inf, jnp.float64))) == 0.0)


def test_continuity_towards_the_limits():
    with jax.enable_x64(True):
        value, _, _ = _grid_fns()
        z = jnp.full(3, 1.5, jnp.float64)
        near2 = value(z, jnp.array([2 - 1e-12, 2.0, 2 + 1e-12]))
        assert_close(near2, 1.125, rtol=1e-10)
        very_negative = value(z, jnp.array([-1e8, -1e12, -jnp.inf]))
        assert_close(very_negative, -math.expm1(-1.125), rtol=1e-7)


def test_float32_gradients_finite_at_every_special_point():
    z = jnp.array([0.0, 1e-20, 0.5, 3.0, 30.0], jnp.float32)
    alphas = jnp.array([0.0, 2.0, -jnp.inf, 2.0 - 2.4e-7, 2.0 + 2.4e-7, 1e-30, -1e-30, -1e30, 50.0], jnp.float32)

    def value_and_grads(a):
        return jax.value_and_grad(
            lambda p, s: jaxloss.general_robust_loss(p, jnp.zeros_like(p), alpha=s, reduction="sum"),
            argnums=(0, 1))(z, a)

    v, (gp, ga) = jax.jit(jax.vmap(value_and_grads))(alphas)
    assert np.all(np.isfinite(np.asarray(v))) and np.all(np.isfinite(np.asarray(gp)))
    assert np.all(np.isfinite(np.asarray(ga)))


def test_reductions_scale_weights_and_where():
    rng = np.random.default_rng(0)
    p, t = rng.normal(size=(5, 4)) * 3, rng.normal(size=(5, 4))
    w, m = rng.uniform(0.5, 2.0, size=(5, 1)), rng.uniform(size=(5, 4)) < 0.7
    alpha, c = -0.5, 1.7
    z = (p - t) / c
    b = abs(alpha - 2)
    expected = b / alpha * ((z * z / b + 1) ** (alpha / 2) - 1)
    with jax.enable_x64(True):
        for reduction in ("none", "sum", "mean"):
            out = jaxloss.general_robust_loss(jnp.asarray(p), jnp.asarray(t), alpha=alpha, scale=c,
                                              reduction=reduction, weights=jnp.asarray(w), where=jnp.asarray(m))
            assert_close(out, reduce_ref(expected, reduction, w, m), rtol=1e-13, atol=1e-15)
        # alpha per output column, broadcast against the inputs
        alphas = jnp.array([-2.0, 0.0, 1.0, 2.0])
        out = jaxloss.general_robust_loss(jnp.asarray(p), jnp.asarray(t), alpha=alphas, reduction="none")
        zz = p - t
        cols = [2 * zz[:, 0] ** 2 / (zz[:, 0] ** 2 + 4), np.log1p(zz[:, 1] ** 2 / 2),
                np.sqrt(zz[:, 2] ** 2 + 1) - 1, zz[:, 3] ** 2 / 2]
        assert_close(out, np.stack(cols, axis=1), rtol=1e-13)


def test_alpha_is_learnable_under_jit_and_vmap():
    x = jnp.linspace(-4.0, 4.0, 9)

    @jax.jit
    def grad_alpha(a):
        return jax.grad(lambda s: jaxloss.general_robust_loss(x, jnp.zeros_like(x), alpha=s))(a)

    g = jax.vmap(grad_alpha)(jnp.array([-4.0, 0.0, 1.0, 2.0, 3.0]))
    assert np.all(np.isfinite(np.asarray(g)))
    assert np.all(np.asarray(g)[[0, 1, 2, 4]] > 0)  # rho increases with alpha at every z != 0
    assert float(g[3]) == 0.0


def test_invalid_hyper_parameters():
    x = jnp.ones(3)
    with pytest.raises(ValueError, match=r"general_robust_loss: scale must lie in \(0, inf\)"):
        jaxloss.general_robust_loss(x, x, scale=0.0)
    with pytest.raises(ValueError, match=r"general_robust_loss: alpha must lie in \[-inf, inf\)"):
        jaxloss.general_robust_loss(x, x, alpha=float("inf"))
    assert float(jaxloss.general_robust_loss(x, 0 * x, alpha=-float("inf"))) == pytest.approx(1 - math.exp(-0.5))
