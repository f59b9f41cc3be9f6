"""CRPS (Gaussian, ensemble) and the energy score against NumPy/SciPy float64
references written here: scoringrules' closed forms and estimators, brute-force
O(M^2) sums, numerical integration of the CRPS definition, and analytic gradients.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import REDUCTIONS, assert_close, reduce_ref
from scipy import integrate, stats

import jaxloss

# ---- references ---------------------------------------------------------------------------


def np_crps_gaussian(mu, sigma, y):
    z = (y - mu) / sigma
    return sigma * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi))


def crps_by_integration(cdf, y, lo, hi):
    """The definition: the integral of (F(x) - 1{x >= y})^2 over the real line."""
    left = integrate.quad(lambda x: cdf(x) ** 2, lo, y, epsabs=1e-13, epsrel=1e-13, limit=200)[0]
    right = integrate.quad(lambda x: (1 - cdf(x)) ** 2, y, hi, epsabs=1e-13, epsrel=1e-13, limit=200)[0]
    return left + right


def np_crps_ensemble(x, y, fair):
    """Brute force over all member pairs, members on the last axis."""
    m = x.shape[-1]
    first = np.mean(np.abs(x - y[..., None]), axis=-1)
    pairs = np.sum(np.abs(x[..., :, None] - x[..., None, :]), axis=(-2, -1))
    return first - pairs / (2 * (m * (m - 1) if fair else m * m))


def np_crps_ensemble_grad(x, y, fair):
    """d/dx_k = sign(x_k - y)/M - sum_j sign(x_k - x_j)/D and d/dy = -sum_k sign(x_k - y)/M."""
    m = x.shape[-1]
    den = m * (m - 1) if fair else m * m
    gx = np.sign(x - y[..., None]) / m - np.sum(np.sign(x[..., :, None] - x[..., None, :]), axis=-1) / den
    gy = -np.sum(np.sign(x - y[..., None]), axis=-1) / m
    return gx, gy


def np_energy(x, y, fair):
    m = x.shape[-2]
    first = np.mean(np.linalg.norm(x - y[..., None, :], axis=-1), axis=-1)
    pairs = np.sum(np.linalg.norm(x[..., :, None, :] - x[..., None, :, :], axis=-1), axis=(-2, -1))
    return first - pairs / (2 * (m * (m - 1) if fair else m * m))


def _x64(*arrays):
    return tuple(jnp.asarray(a, jnp.float64) for a in arrays)


# ---- crps_gaussian_loss ---------------------------------------------------------------------


def test_crps_gaussian_closed_form_and_the_definition():
    rng = np.random.default_rng(0)
    mu, sigma, y = rng.normal(size=(4, 5)), rng.uniform(0.2, 3.0, size=(4, 5)), rng.normal(size=(4, 5)) * 2
    w, m = rng.uniform(0.5, 2, size=(4, 1)), rng.uniform(size=(4, 5)) < 0.7
    expected = np_crps_gaussian(mu, sigma, y)
    with jax.enable_x64(True):
        for reduction in REDUCTIONS:
            out = jaxloss.crps_gaussian_loss(*_x64(mu, sigma, y), reduction=reduction, weights=jnp.asarray(w),
                                             where=jnp.asarray(m))
            assert_close(out, reduce_ref(expected, reduction, w, m), rtol=1e-13, atol=1e-15)
        # the closed form is the integral of the squared CDF difference
        for mu0, s0, y0 in ((0.0, 1.0, 0.3), (1.0, 0.5, -2.0), (-3.0, 2.0, 4.0)):
            ref = crps_by_integration(stats.norm(mu0, s0).cdf, y0, mu0 - 40 * s0, mu0 + 40 * s0)
            assert_close(jaxloss.crps_gaussian_loss(*_x64(mu0, s0, y0)), ref, rtol=1e-9, atol=1e-12)
    # float32 inputs give the same values at float32 precision
    out32 = jaxloss.crps_gaussian_loss(*(jnp.asarray(a, jnp.float32) for a in (mu, sigma, y)), reduction="none")
    assert out32.dtype == jnp.float32
    assert_close(out32, expected, rtol=2e-5, atol=1e-6)


def test_crps_gaussian_gradients_are_the_analytic_ones():
    rng = np.random.default_rng(1)
    mu, sigma, y = rng.normal(size=6), rng.uniform(0.3, 2.0, size=6), rng.normal(size=6)
    z = (y - mu) / sigma
    with jax.enable_x64(True):
        gm, gs, gy = jax.grad(lambda *a: jaxloss.crps_gaussian_loss(*a, reduction="sum"), argnums=(0, 1, 2))(
            *_x64(mu, sigma, y))
    assert_close(gm, 1 - 2 * stats.norm.cdf(z), rtol=1e-12, atol=1e-14)
    assert_close(gs, 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi), rtol=1e-12, atol=1e-14)
    assert_close(gy, 2 * stats.norm.cdf(z) - 1, rtol=1e-12, atol=1e-14)


def test_crps_gaussian_at_zero_std_is_the_absolute_error_with_finite_gradients():
    mu, y = jnp.array([0.0, 1.0, 2.0]), jnp.array([1.5, 1.0, -1.0])
    sigma = jnp.zeros(3)
    assert_close(jaxloss.crps_gaussian_loss(mu, sigma, y, reduction="none"), [1.5, 0.0, 3.0])
    g = jax.grad(lambda m, s: jaxloss.crps_gaussian_loss(m, s, y, reduction="sum"), argnums=(0, 1))(mu, sigma)
    assert_close(g[0], [-1.0, 0.0, 1.0])
    # the one-sided derivative in sigma: the limit of 2 phi(z) - 1/sqrt(pi)
    assert_close(g[1], [-1 / math.sqrt(math.pi), (math.sqrt(2) - 1) / math.sqrt(math.pi), -1 / math.sqrt(math.pi)])
    # a scalar std is one std for every element
    assert_close(jaxloss.crps_gaussian_loss(mu, 2.0, y, reduction="none"),
                 np_crps_gaussian(np.asarray(mu), 2.0, np.asarray(y)), rtol=1e-5)


def test_crps_gaussian_errors():
    x = jnp.zeros(3)
    with pytest.raises(ValueError, match="crps_gaussian_loss: std must have the shape of mean"):
        jaxloss.crps_gaussian_loss(x, jnp.ones(2), x)
    with pytest.raises(ValueError, match="crps_gaussian_loss: mean and target must have the same shape"):
        jaxloss.crps_gaussian_loss(x, jnp.ones(3), jnp.zeros(4))


# ---- crps_ensemble_loss ---------------------------------------------------------------------


def test_crps_ensemble_fair_and_nrg_against_brute_force():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(5, 9)) * 2, rng.normal(size=(5,))
    w, m = rng.uniform(0.5, 2.0, size=(5,)), np.array([True, True, False, True, True])
    with jax.enable_x64(True):
        for fair in (True, False):
            expected = np_crps_ensemble(x, y, fair)
            for reduction in REDUCTIONS:
                out = jaxloss.crps_ensemble_loss(*_x64(x, y), fair=fair, reduction=reduction,
                                                 weights=jnp.asarray(w), where=jnp.asarray(m))
                assert_close(out, reduce_ref(expected, reduction, w, m), rtol=1e-13, atol=1e-14)
            # members on another axis
            out = jaxloss.crps_ensemble_loss(*_x64(x.T, y), fair=fair, axis=0, reduction="none")
            assert_close(out, expected, rtol=1e-13, atol=1e-14)


def test_crps_ensemble_of_a_point_forecast_and_of_a_sample():
    # one member, empirical estimator: the absolute error
    assert_close(jaxloss.crps_ensemble_loss(jnp.array([[2.0], [0.0]]), jnp.array([0.5, 1.0]), fair=False,
                                            reduction="none"), [1.5, 1.0])
    # a large ensemble drawn from N(0, 1) approaches the Gaussian closed form (fair is unbiased)
    rng = np.random.default_rng(3)
    members = rng.normal(size=(200, 400))
    y = np.full(200, 0.7)
    fair = float(jaxloss.crps_ensemble_loss(jnp.asarray(members), jnp.asarray(y)))
    assert abs(fair - float(np_crps_gaussian(0.0, 1.0, 0.7))) < 0.01


def test_crps_ensemble_gradients_with_coinciding_members():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(3, 6)), rng.normal(size=(3,))
    with jax.enable_x64(True):
        for fair in (True, False):
            gx, gy = jax.grad(lambda a, b: jaxloss.crps_ensemble_loss(a, b, fair=fair, reduction="sum"),
                              argnums=(0, 1))(*_x64(x, y))
            ex, ey = np_crps_ensemble_grad(x, y, fair)
            assert_close(gx, ex, rtol=1e-12, atol=1e-14)
            assert_close(gy, ey, rtol=1e-12, atol=1e-14)
    # coinciding members: finite values and gradients; the gradient is the one of the
    # linear piece where tied members are ordered by position (a Clarke subgradient, which
    # pushes a collapsed ensemble apart)
    tied = np.array([[1.0, 1.0, 1.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    target = np.array([0.5, 0.0])
    value, (gx, gy) = jax.value_and_grad(lambda a, b: jaxloss.crps_ensemble_loss(a, b, reduction="sum"),
                                         argnums=(0, 1))(jnp.asarray(tied), jnp.asarray(target))
    assert_close(value, np_crps_ensemble(tied, target, True).sum(), rtol=1e-6)
    assert np.all(np.isfinite(np.asarray(gx))) and np.all(np.isfinite(np.asarray(gy)))
    piece, _ = np_crps_ensemble_grad(tied[:1] + 1e-9 * np.arange(4), target[:1], True)
    assert_close(gx[0], piece[0], rtol=1e-6, atol=1e-7)
    # an ensemble collapsed on the target: a zero target gradient, member gradients summing to 0
    assert float(gy[1]) == 0.0 and abs(float(jnp.sum(gx[1]))) < 1e-7
    assert_close(gx[1], [0.25, 1 / 12, -1 / 12, -0.25], rtol=1e-6)


def test_crps_ensemble_is_exact_under_a_large_common_offset():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(4, 16)), rng.normal(size=(4,))
    with jax.enable_x64(True):
        shifted = jaxloss.crps_ensemble_loss(*_x64(x + 1e8, y + 1e8), reduction="none")
    assert_close(shifted, np_crps_ensemble(x, y, True), rtol=1e-8, atol=1e-9)


def test_crps_ensemble_errors():
    with pytest.raises(ValueError, match=r"crps_ensemble_loss: the ensemble needs at least 2 member"):
        jaxloss.crps_ensemble_loss(jnp.zeros((3, 1)), jnp.zeros(3))
    with pytest.raises(ValueError, match="crps_ensemble_loss: target must have the shape of ensemble without"):
        jaxloss.crps_ensemble_loss(jnp.zeros((3, 4)), jnp.zeros(4))
    with pytest.raises(TypeError, match="crps_ensemble_loss"):
        jaxloss.crps_ensemble_loss(jnp.zeros((3, 4), jnp.int32), jnp.zeros(3))


# ---- energy_score_loss ----------------------------------------------------------------------


def test_energy_score_against_brute_force_and_reductions():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(2, 3, 6, 4)), rng.normal(size=(2, 3, 4))
    w, m = rng.uniform(0.5, 2.0, size=(2, 3)), rng.uniform(size=(2, 3)) < 0.7
    with jax.enable_x64(True):
        for fair in (True, False):
            expected = np_energy(x, y, fair)
            for reduction in REDUCTIONS:
                out = jaxloss.energy_score_loss(*_x64(x, y), fair=fair, reduction=reduction,
                                                weights=jnp.asarray(w), where=jnp.asarray(m))
                assert_close(out, reduce_ref(expected, reduction, w, m), rtol=1e-13, atol=1e-14)
            # with one dimension it is the CRPS
            one = jaxloss.energy_score_loss(*_x64(x[..., :1], y[..., :1]), fair=fair, reduction="none")
            assert_close(one, np_crps_ensemble(x[..., 0], y[..., 0], fair), rtol=1e-13, atol=1e-14)


def test_energy_score_gradients_and_coinciding_members():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(3,))
    with jax.enable_x64(True):
        gx = jax.grad(lambda a: jaxloss.energy_score_loss(a, jnp.asarray(y)))(jnp.asarray(x))
    # d/dx_k = (x_k - y)/|x_k - y|/M - sum_j (x_k - x_j)/|x_k - x_j| / D
    m = 5
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    diff = x[:, None, :] - x[None, :, :]
    norm = np.linalg.norm(diff, axis=-1)
    np.fill_diagonal(norm, 1.0)
    expected = unit(x - y) / m - np.sum(diff / norm[..., None], axis=1) / (m * (m - 1))
    assert_close(gx, expected, rtol=1e-12, atol=1e-14)
    tied = jnp.array([[[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]]])
    value, g = jax.value_and_grad(lambda a: jaxloss.energy_score_loss(a, jnp.array([[1.0, 2.0]])))(tied)
    assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(g)))
    assert_close(value, np_energy(np.asarray(tied), np.array([[1.0, 2.0]]), True)[0], rtol=1e-6)


def test_energy_score_masked_forecasts_are_sliced_and_nan_safe():
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(4, 5, 2)).astype(np.float32), rng.normal(size=(4, 2)).astype(np.float32)
    x[3] = np.nan
    y[3] = np.nan
    keep = jnp.array([True, True, True, False])
    value, g = jax.value_and_grad(lambda a: jaxloss.energy_score_loss(a, jnp.asarray(y), where=keep))(jnp.asarray(x))
    assert_close(value, np_energy(x[:3].astype(np.float64), y[:3].astype(np.float64), True).mean(), rtol=1e-5)
    assert np.all(np.isfinite(np.asarray(g))) and np.all(np.asarray(g)[3] == 0)


def test_energy_score_errors():
    with pytest.raises(ValueError, match=r"energy_score_loss: target must be \[..., D\]"):
        jaxloss.energy_score_loss(jnp.zeros((3, 5, 2)), jnp.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"energy_score_loss: ensemble must be \[..., M, D\]"):
        jaxloss.energy_score_loss(jnp.zeros(5), jnp.zeros(5))
    with pytest.raises(ValueError, match="energy_score_loss: the ensemble needs at least 2"):
        jaxloss.energy_score_loss(jnp.zeros((3, 1, 2)), jnp.zeros((3, 2)))
    assert float(jaxloss.energy_score_loss(jnp.ones((3, 1, 2)), jnp.zeros((3, 2)), fair=False)) == pytest.approx(
        math.sqrt(2))
