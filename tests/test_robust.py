"""general_robust_loss (Barron's general loss) against a high-precision reference.

The reference is written here with Python's ``decimal`` module at 110 digits: the
closed form and its limits, and both derivatives by central differences with a
step of 1e-22 (truncation error ~1e-44), so it is exact to far below float64
rounding. jaxloss runs in float64 on one grid of (z, alpha) in a single jitted,
vmapped call per quantity.
"""

from __future__ import annotations

import math
from decimal import Decimal, getcontext

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import assert_close, reduce_ref

import jaxloss

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
    dz = (rho_dec(a, x + _H) - rho_dec(a, x - _H)) / (2 * _H)
    da = (rho_dec(a + _H, x) - rho_dec(a - _H, x)) / (2 * _H)
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
