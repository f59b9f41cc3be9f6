r"""Probabilistic forecasting: proper scoring rules of a forecast distribution.

The continuous ranked probability score (CRPS) of a forecast distribution
:math:`F` and an observation :math:`y` is

.. math:: \mathrm{CRPS}(F, y) = \mathbb{E}|X - y| - \tfrac12 \mathbb{E}|X - X'|,
          \qquad X, X' \sim F \text{ independent},

in the units of :math:`y`; it is minimised in expectation by the true
distribution, and for a point forecast it is the absolute error. The energy
score is its multivariate form, with the Euclidean norm. Both are the losses
of ensemble weather and time-series forecasters (an ensemble of ``M`` members
trained with the *fair* CRPS spreads like the truth instead of collapsing to the
mean). jaxloss follows scoringrules (``crps_normal``, ``crps_ensemble`` with
``estimator="fair"`` or ``"nrg"``, ``es_ensemble``) in its values.

``reduction="none"`` returns one score per forecast: per element for
:func:`crps_gaussian_loss`, the ensemble's shape without the member axis for
:func:`crps_ensemble_loss`, and ``[...]`` for :func:`energy_score_loss`.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import erf

from ._checks import AXIS, FLAG, NONNEGATIVE_VALUES, normalize_axis
from ._core import Example, Layout, Role, builtin
from ._numerics import abs0, safe_sqrt

probabilistic = builtin("probabilistic")

__all__ = [
    "crps_ensemble_loss", "CRPSEnsembleLoss",
    "crps_gaussian_loss", "CRPSGaussianLoss",
    "energy_score_loss", "EnergyScoreLoss",
]

_SQRT_PI = math.sqrt(math.pi)
_SQRT_2 = math.sqrt(2.0)
_SQRT_2PI = math.sqrt(2.0 * math.pi)


def _gaussian_sample(rng: np.random.Generator) -> tuple:
    mean = rng.normal(size=(4, 6)).astype(np.float32)
    std = rng.uniform(0.5, 2.0, size=(4, 6)).astype(np.float32)
    target = rng.normal(size=(4, 6)).astype(np.float32)
    return mean, std, target


def _gaussian_validate(name, mean, std, target, **_):
    if tuple(std.shape) not in (tuple(mean.shape), ()):
        raise ValueError(f"{name}: std must have the shape of mean {tuple(mean.shape)} or be a scalar, "
                         f"got std {tuple(std.shape)}")


@probabilistic(layout=Layout({"std": Role(shape="broadcast", domain=NONNEGATIVE_VALUES)}),
               validate=_gaussian_validate, example=Example(_gaussian_sample, differentiable=(0, 1)))
def crps_gaussian_loss(mean, std, target):
    r"""CRPS of a Gaussian forecast :math:`\mathcal N(\mu, \sigma^2)`, in closed form.

    .. math:: \mathrm{CRPS} = \sigma \Big[ z \big(2\Phi(z) - 1\big) + 2\varphi(z)
              - \frac{1}{\sqrt\pi} \Big], \qquad z = \frac{y - \mu}{\sigma}

    with :math:`\Phi` and :math:`\varphi` the standard normal CDF and density
    (scoringrules ``crps_normal``). At :math:`\sigma = 0` it is the absolute
    error :math:`|y - \mu|`, with the one-sided derivative in :math:`\sigma`
    (:math:`-1/\sqrt\pi`, or :math:`(\sqrt2 - 1)/\sqrt\pi` where :math:`y = \mu`);
    the gradients in :math:`\mu` and :math:`\sigma` are finite everywhere.

    Args:
      mean: forecast means :math:`\mu`, any shape, floating point.
      std: forecast standard deviations :math:`\sigma \ge 0`, the shape of
        ``mean`` or a scalar (one for all).
      target: observations :math:`y`, the shape of ``mean``.

    Returns:
      The reduced score; with ``reduction="none"`` one score per element,
      shaped like ``mean``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> crps = jaxloss.crps_gaussian_loss(jnp.array([0.0, 0.0]), jnp.array([1.0, 2.0]),
      ...                                   jnp.array([0.0, 1.0]), reduction="none")
      >>> crps.round(6)
      Array([0.233695, 0.662807], dtype=float32)
    """
    sigma = jnp.broadcast_to(std, mean.shape)
    r = target - mean
    ok = sigma > 0
    s = jnp.where(ok, sigma, 1.0)
    z = r / s
    score = s * (z * erf(z / _SQRT_2) + 2.0 * jnp.exp(-0.5 * z * z) / _SQRT_2PI - 1.0 / _SQRT_PI)
    slope = jnp.where(r == 0, (_SQRT_2 - 1.0) / _SQRT_PI, -1.0 / _SQRT_PI)  # d CRPS / d sigma at 0+
    return jnp.where(ok, score, abs0(r) + sigma * slope)


def _members(name, ensemble, axis, fair):
    size = ensemble.shape[normalize_axis(name, axis, ensemble.ndim)] if ensemble.ndim else 0
    need = 2 if fair else 1
    if size < need:
        raise ValueError(f"{name}: the ensemble needs at least {need} member(s) along its member axis"
                         f"{' for fair=True (it divides by M(M-1))' if fair else ''}, got {size}")


def _ensemble_validate(name, ensemble, target, *, fair=True, axis=-1):
    if ensemble.ndim:
        _members(name, ensemble, axis, fair)


def _ensemble_sample(rng: np.random.Generator) -> tuple:
    ensemble = rng.normal(size=(4, 7)).astype(np.float32)
    target = rng.normal(size=(4,)).astype(np.float32)
    return ensemble, target


@probabilistic(static={"fair": FLAG, "axis": AXIS},
               layout=Layout({"target": Role(shape="reduced")}, axis="axis"),
               validate=_ensemble_validate,
               example=Example(_ensemble_sample, differentiable=(0, 1), grad_order=1))
def crps_ensemble_loss(ensemble, target, *, fair=True, axis=-1):
    r"""CRPS of an ensemble forecast of :math:`M` members, in :math:`O(M \log M)`.

    .. math:: \mathrm{CRPS} = \frac1M \sum_{i} |x_i - y|
              - \frac{1}{2 D} \sum_{i, j} |x_i - x_j|,
              \qquad D = M(M - 1) \text{ (fair) or } M^2

    The pairwise sum is computed from the sorted members,
    :math:`\sum_{i,j} |x_i - x_j| = 2 \sum_k (2k - M - 1)\, x_{(k)}`, in
    :math:`O(M \log M)` time and :math:`O(M)` memory (on members taken
    relative to :math:`y`, so a large common offset does not cost precision).
    ``fair=True`` is scoringrules' ``estimator="fair"``, unbiased for the CRPS of
    the distribution the members are drawn from (the training loss of ensemble
    forecasters: its minimiser is an ensemble as spread as the truth);
    ``fair=False`` is ``estimator="nrg"``, the CRPS of the empirical
    distribution of the members. Members that coincide have finite gradients:
    those of the linear piece on which tied members are ordered by position (a
    subgradient that pushes a collapsed ensemble apart); a member equal to the
    target gets 0 from :math:`|x_i - y|`.

    Args:
      ensemble: members along ``axis``, floating point; ``M >= 2`` with ``fair``.
      target: observations, the shape of ``ensemble`` without ``axis``.
      fair: static flag, the fair estimator (default) or the empirical one.
      axis: static, the member axis (default last).

    Returns:
      The reduced score; with ``reduction="none"`` one score per forecast
      (``ensemble.shape`` without ``axis``).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> members = jnp.array([0.0, 1.0, 2.0, 3.0])
      >>> round(float(jaxloss.crps_ensemble_loss(members, jnp.array(1.5))), 6)   # 1 - 10 / 12
      0.166667
      >>> float(jaxloss.crps_ensemble_loss(members, jnp.array(1.5), fair=False))   # 1 - 10 / 16
      0.375
    """
    x = jnp.moveaxis(ensemble, axis, -1)
    m = x.shape[-1]
    d = x - target[..., None]
    absolute = jnp.mean(abs0(d), axis=-1)
    rank = jnp.arange(1, m + 1, dtype=x.dtype)
    # the sorting permutation, then a gather: differentiable, and the index operand
    # carries d's sharding (lax.sort needs its operands equally sharded on explicit meshes)
    index = jnp.zeros_like(d, dtype=jnp.int32) + jnp.arange(m, dtype=jnp.int32)
    order = lax.sort((lax.stop_gradient(d), index), dimension=d.ndim - 1, num_keys=1)[1]
    d_sorted = jnp.take_along_axis(d, order, axis=-1)
    half_pairs = jnp.sum((2.0 * rank - m - 1.0) * d_sorted, axis=-1)  # (1/2) sum_ij |x_i - x_j|
    return absolute - half_pairs / (m * (m - 1) if fair else m * m)


def _energy_validate(name, ensemble, target, *, fair=True):
    if ensemble.ndim < 2:
        raise ValueError(f"{name}: ensemble must be [..., M, D] (members, then dimensions), "
                         f"got shape {tuple(ensemble.shape)}")
    expected = tuple(ensemble.shape[:-2]) + tuple(ensemble.shape[-1:])
    if tuple(target.shape) != expected:
        raise ValueError(f"{name}: target must be [..., D] for ensemble [..., M, D]: ensemble "
                         f"{tuple(ensemble.shape)} needs target {expected}, got target {tuple(target.shape)}")
    _members(name, ensemble, -2, fair)


def _energy_sample(rng: np.random.Generator) -> tuple:
    ensemble = rng.normal(size=(3, 5, 2)).astype(np.float32)
    target = rng.normal(size=(3, 2)).astype(np.float32)
    return ensemble, target


@probabilistic(static={"fair": FLAG},
               layout=Layout({"ensemble": Role(shape="trailing"), "target": Role(shape="trailing")}),
               validate=_energy_validate,
               example=Example(_energy_sample, differentiable=(0, 1), grad_order=1))
def energy_score_loss(ensemble, target, *, fair=True):
    r"""Energy score of an ensemble of :math:`M` vectors (the multivariate CRPS).

    .. math:: \mathrm{ES} = \frac1M \sum_i \lVert x_i - y \rVert
              - \frac{1}{2 D} \sum_{i \ne j} \lVert x_i - x_j \rVert,
              \qquad D = M(M - 1) \text{ (fair) or } M^2

    with the Euclidean norm over the last axis (scoringrules ``es_ensemble``,
    ``estimator="fair"`` or ``"nrg"``). With ``D = 1`` it is
    :func:`crps_ensemble_loss`. It forms all :math:`M^2` member pairs
    (:math:`O(M^2 D)` time and memory: there is no sorting shortcut for a norm);
    coinciding members have zero-gradient distances, never NaN.

    Args:
      ensemble: ``[..., M, D]`` members (then dimensions), floating point;
        ``M >= 2`` with ``fair``.
      target: ``[..., D]`` observations.
      fair: static flag, the fair estimator (default) or the empirical one.

    Returns:
      The reduced score; with ``reduction="none"`` one score per forecast,
      shape ``[...]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> members = jnp.array([[0.0, 0.0], [3.0, 4.0]])
      >>> float(jaxloss.energy_score_loss(members, jnp.array([0.0, 0.0])))   # (0 + 5)/2 - 10/4
      0.0
    """
    m = ensemble.shape[-2]
    absolute = jnp.mean(safe_sqrt(jnp.sum((ensemble - target[..., None, :]) ** 2, axis=-1)), axis=-1)
    diff = ensemble[..., :, None, :] - ensemble[..., None, :, :]
    distance = safe_sqrt(jnp.sum(diff * diff, axis=-1))
    others = jnp.logical_not(jnp.eye(m, dtype=bool))
    pairs = jnp.sum(jnp.where(others, distance, 0.0), axis=(-2, -1))
    return absolute - pairs / (2.0 * (m * (m - 1) if fair else m * m))


CRPSGaussianLoss = crps_gaussian_loss.Loss
CRPSEnsembleLoss = crps_ensemble_loss.Loss
EnergyScoreLoss = energy_score_loss.Loss
