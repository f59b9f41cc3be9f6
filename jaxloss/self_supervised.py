r"""Self-supervised objectives: VICReg, Barlow Twins, BYOL/SimSiam, KoLeo, DINO, SwAV.

The values follow lightly (``lightly.loss``), solo-learn where lightly has none.
Inputs are embeddings ``[N, D]`` of two augmented views (VICReg, Barlow Twins,
the negative cosine), one batch of embeddings (KoLeo), or logits of several
views ``[V, B, K]`` (DINO, SwAV). ``reduction="none"`` returns one loss per
sample, ``[N]`` (``[B]``), chosen so that ``"mean"`` is lightly's value: a
term that is a batch statistic (VICReg's variance and covariance, all of Barlow
Twins) is the same for every sample and is added to each sample's loss, so
``"sum"`` is ``N`` times it.

**Masks.** ``where`` (shape ``[N]``) removes samples from the batch: a masked
sample leaves the batch statistics (means, variances, cross-correlations,
nearest neighbours, Sinkhorn marginals) as if it had been sliced away, leaves
the mean, and gets a zero gradient; a masked batch equals the sliced batch.
``weights`` (``[N]``) weight the per-sample losses in the mean; they do not
weight the batch statistics, which count every unmasked sample once.

**Many devices.** Each loss takes ``axis_name``: inside ``jax.shard_map`` with
the batch split over that mesh axis, the batch statistics are formed from
``psum``-med sums (KoLeo's nearest neighbours from an all-gather), so the value
is the one-device value of the global batch, on every device, and ``jax.grad``
taken from outside the ``shard_map`` is the one-device gradient. ``"none"``
returns each device's own rows. (lightly's multi-GPU Barlow Twins standardises
each device's batch on its own and averages the cross-correlations; here the
standardisation is over the global batch, the same value as one device.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ._checks import ANY, NONNEGATIVE, POSITIVE, POSITIVE_INT_OR_NONE, UNIT, Static
from ._core import Example, Layout, Role, Unreduced, builtin
from ._numerics import safe_div, safe_sqrt
from ._sharding import explicit_spec, replicated, rows_like

__all__ = [
    "vicreg_loss", "VICRegLoss",
    "barlow_twins_loss", "BarlowTwinsLoss",
    "negative_cosine_loss", "NegativeCosineLoss",
    "koleo_loss", "KoLeoLoss",
    "dino_loss", "DINOLoss",
    "dino_center_update",
    "swav_loss", "SwAVLoss",
]

self_supervised = builtin("self_supervised")

_BN_EPS = 1e-5  # torch.nn.functional.batch_norm's default, which lightly's Barlow Twins uses
_HIGHEST = lax.Precision.HIGHEST  # the batch statistics are small [D, D] products: keep them exact on TPU/GPU

# Embeddings [N, D]: one loss per sample; ``where`` [N] zeroes masked rows and the kernel also
# sees it (the "kernel" where mode) to leave them out of the batch statistics.
_ROWS = Layout(axis=-1, where="kernel", axis_name="axis_name")
# Logits of several views [V, B, K]: the batch is axis 1, so ``where`` [B] is handed to the
# kernel only (it zeroes the masked samples itself).
_VIEWS = Layout({n: Role(shape="free") for n in ("student_logits", "teacher_logits", "center", "scores")},
                where="kernel", axis_name="axis_name")
_AXIS_NAME = {"axis_name": ANY}


def _psum(x, axis_name):
    return x if axis_name is None else lax.psum(x, axis_name)


def _valid(where, n, like=None):
    """``where``, or all ``n`` samples (split like ``like``'s rows on an explicit mesh)."""
    if where is not None:
        return where
    return jnp.ones((n,), bool, out_sharding=None if like is None else rows_like(like, 1))


def _off_diagonal_squares(c):
    """``sum_{i != j} c_ij^2`` (the diagonal masked, not subtracted: no cancellation)."""
    eye = jnp.eye(c.shape[-1], dtype=bool)
    return jnp.sum(jnp.where(eye, 0.0, c * c))


def _gram(x, y):
    # ``[D, D]`` from a contraction over the batch: on an explicit mesh with the batch
    # split, the (small) result is replicated, a psum of each device's rows
    out = None if explicit_spec(x) is None and explicit_spec(y) is None else jax.sharding.PartitionSpec()
    return jnp.matmul(x.T, y, precision=_HIGHEST, out_sharding=out)


def _validate_pair(name, z_a, z_b, *, axis_name=None, **_):
    if z_a.ndim != 2:
        raise ValueError(f"{name}: z_a must have shape [N, D], got {tuple(z_a.shape)}")
    if tuple(z_b.shape) != tuple(z_a.shape):
        raise ValueError(f"{name}: z_a {tuple(z_a.shape)} and z_b {tuple(z_b.shape)} must have the same shape [N, D]")
    if axis_name is None and z_a.shape[0] < 2:
        raise ValueError(f"{name}: needs a batch of at least 2 samples for its batch statistics, "
                         f"got N = {z_a.shape[0]}")


def _pair_sample(rng):
    a = 0.5 * rng.normal(size=(8, 5))
    b = a + 0.3 * rng.normal(size=(8, 5))
    return a.astype("float32"), b.astype("float32")


# ---------------------------------------------------------------------------
# VICReg
# ---------------------------------------------------------------------------


def _centered_cov(x, valid, n, axis_name):
    """Unbiased covariance ``[D, D]`` of the valid rows of ``x`` over the (global) batch."""
    mean = _psum(jnp.sum(x, axis=0), axis_name) / jnp.maximum(n, 1.0)
    xc = jnp.where(valid[:, None], x - mean, 0.0)
    return _psum(_gram(xc, xc), axis_name) / jnp.maximum(n - 1.0, 1.0)


@self_supervised(
    static=_AXIS_NAME,
    checks={"sim_coeff": NONNEGATIVE, "std_coeff": NONNEGATIVE, "cov_coeff": NONNEGATIVE, "eps": POSITIVE},
    layout=_ROWS,
    validate=_validate_pair,
    example=Example(_pair_sample, sweep=("cov_coeff", (0.5, 1.0, 2.0, 4.0)), differentiable=(0, 1)),
    class_name="VICRegLoss",
)
def vicreg_loss(z_a, z_b, *, sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0, eps=1e-4, axis_name=None,
                where=None):
    r"""VICReg: invariance, variance and covariance terms of two views' embeddings (lightly's ``VICRegLoss``).

    With :math:`\bar z` the batch mean, :math:`C(z) = \frac{1}{N-1} \sum_i (z_i - \bar z)(z_i - \bar z)^\top`
    the unbiased covariance and :math:`s_d(z) = \sqrt{C_{dd}(z) + \epsilon}`:

    .. math::
        \ell_i = \frac{\lambda}{D} \lVert a_i - b_i \rVert^2
          + \frac{\mu}{2D} \sum_d \big[(1 - s_d(a))_+ + (1 - s_d(b))_+\big]
          + \frac{\nu}{D} \sum_{d \ne e} \big[C_{de}(a)^2 + C_{de}(b)^2\big]

    with :math:`\lambda, \mu, \nu` = ``sim_coeff``, ``std_coeff``, ``cov_coeff``. The mean over
    the batch is lightly's loss (``F.mse_loss`` for the invariance, ``var(dim=0)`` unbiased).

    Args:
      z_a: embeddings of the first view, ``[N, D]``, floating point; ``N >= 2``.
      z_b: embeddings of the second view, ``[N, D]``.
      sim_coeff: weight of the invariance term, ``>= 0`` (lightly's ``lambda_param``; traced).
      std_coeff: weight of the variance term, ``>= 0`` (``mu_param``; traced).
      cov_coeff: weight of the covariance term, ``>= 0`` (``nu_param``; traced).
      eps: added to the variance under the square root, ``> 0`` (traced).
      axis_name: static; ``None`` on one device, or inside ``jax.shard_map`` the mesh axis
        (or tuple of axes) the batch is split over: the mean and covariance are global.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-sample losses ``[N]`` (each
      sample's invariance term plus the batch's variance and covariance terms). A constant
      batch (zero variance) is finite: :math:`s_d = \sqrt{\epsilon}`.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> z_a = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
      >>> round(float(jaxloss.vicreg_loss(z_a, z_a)), 4)   # var 2/3: 25 * (1 - sqrt(2/3 + 1e-4))
      4.5861
    """
    n_local, dim = z_a.shape
    valid = _valid(where, n_local)
    n = _psum(jnp.sum(valid).astype(z_a.dtype), axis_name)
    invariance = jnp.sum((z_a - z_b) ** 2, axis=-1) / dim
    regulariser = 0.0
    for z in (z_a, z_b):
        cov = _centered_cov(z, valid, n, axis_name)
        std = jnp.sqrt(jnp.diagonal(cov) + eps)
        regulariser = regulariser + 0.5 * std_coeff * jnp.mean(jnp.maximum(1.0 - std, 0.0))
        regulariser = regulariser + cov_coeff * _off_diagonal_squares(cov) / dim
    return sim_coeff * invariance + regulariser


# ---------------------------------------------------------------------------
# Barlow Twins
# ---------------------------------------------------------------------------


@self_supervised(
    static=_AXIS_NAME,
    checks={"lambda_param": NONNEGATIVE},
    layout=_ROWS,
    validate=_validate_pair,
    example=Example(_pair_sample, sweep=("lambda_param", (0.005, 0.05, 0.2, 1.0)), differentiable=(0, 1)),
)
def barlow_twins_loss(z_a, z_b, *, lambda_param=5e-3, axis_name=None, where=None):
    r"""Barlow Twins: the cross-correlation of two views' standardised embeddings pulled to the identity.

    Each feature is standardised over the batch as lightly does, by one training-mode batch
    norm over both views stacked (``2N`` rows; biased variance, :math:`\epsilon = 10^{-5}`):
    :math:`\hat z = (z - \bar z) / \sqrt{\sigma^2 + \epsilon}`, with :math:`\bar z, \sigma^2`
    the mean and variance of feature :math:`d` over the rows of ``z_a`` and ``z_b``. With
    :math:`c = \frac1N \hat a^\top \hat b` (``[D, D]``):

    .. math::
        L = \sum_d (1 - c_{dd})^2 + \lambda \sum_{d \ne e} c_{de}^2

    Args:
      z_a: embeddings of the first view, ``[N, D]``, floating point; ``N >= 2``.
      z_b: embeddings of the second view, ``[N, D]``.
      lambda_param: weight of the redundancy-reduction (off-diagonal) term, ``>= 0`` (traced).
      axis_name: static; ``None`` on one device, or inside ``jax.shard_map`` the mesh axis
        (or tuple of axes) the batch is split over: the standardisation and :math:`c` are global.

    Returns:
      The reduced loss: ``"mean"`` is :math:`L`. The loss is a batch statistic, so with
      ``reduction="none"`` every sample carries :math:`L` (shape ``[N]``) and ``"sum"`` is
      :math:`N L`. A constant feature standardises to 0 (finite, :math:`c_{dd} = 0`).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> z = jnp.array([[1.0, 2.0], [-1.0, 0.0], [2.0, -1.0], [-2.0, 1.0]])
      >>> round(float(jaxloss.barlow_twins_loss(z, z)), 6)  # c_dd ~ 1, c_01 = -0.2828: 0.005 * 2 * 0.08
      0.0008
    """
    n_local = z_a.shape[0]
    valid = _valid(where, n_local)[:, None]
    n = _psum(jnp.sum(valid).astype(z_a.dtype), axis_name)
    rows = jnp.maximum(2.0 * n, 1.0)
    mean = _psum(jnp.sum(z_a, axis=0) + jnp.sum(z_b, axis=0), axis_name) / rows
    ca = jnp.where(valid, z_a - mean, 0.0)
    cb = jnp.where(valid, z_b - mean, 0.0)
    var = _psum(jnp.sum(ca * ca, axis=0) + jnp.sum(cb * cb, axis=0), axis_name) / rows
    scale = lax.rsqrt(var + _BN_EPS)
    c = _psum(_gram(ca * scale, cb * scale), axis_name) / jnp.maximum(n, 1.0)
    total = jnp.sum((jnp.diagonal(c) - 1.0) ** 2) + lambda_param * _off_diagonal_squares(c)
    # split like the batch on an explicit mesh (a where mask [N] is), as on one device elsewhere
    return jnp.broadcast_to(total, (n_local,), out_sharding=rows_like(z_a, 1))


# ---------------------------------------------------------------------------
# BYOL / SimSiam
# ---------------------------------------------------------------------------


def _unit(x, eps):
    r""":math:`x / \max(\lVert x \rVert, \epsilon)` over the last axis (``torch.nn.functional.normalize``);
    a zero row stays 0 with a finite gradient."""
    return x * lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps * eps))


def _validate_same(name, p, z, **_):
    if p.ndim < 1:
        raise ValueError(f"{name}: p must have a feature axis [..., D], got a scalar")
    if tuple(z.shape) != tuple(p.shape):
        raise ValueError(f"{name}: p {tuple(p.shape)} and z {tuple(z.shape)} must have the same shape")


@self_supervised(
    static=_AXIS_NAME,
    checks={"eps": POSITIVE},
    layout=Layout(axis=-1, axis_name="axis_name"),  # no batch statistics: where zeroes masked rows only
    validate=_validate_same,
    example=Example(_pair_sample, differentiable=(0, 1)),
)
def negative_cosine_loss(p, z, *, eps=1e-8, axis_name=None):
    r"""Negative cosine similarity of predictions and targets (BYOL, SimSiam; lightly's
    ``NegativeCosineSimilarity``).

    .. math::
        \ell_i = -\frac{p_i \cdot z_i}{\max(\lVert p_i \rVert, \epsilon)\, \max(\lVert z_i \rVert, \epsilon)}

    (``torch.nn.functional.cosine_similarity``). The stop-gradient on the target branch is
    the caller's: pass ``jax.lax.stop_gradient(z)``. For SimSiam's symmetrised loss add the
    two halves, ``0.5 * (loss(p1, sg(z2)) + loss(p2, sg(z1)))``.

    Args:
      p: predictions, ``[..., D]``, floating point.
      z: targets, the same shape.
      eps: the floor of each norm, ``> 0`` (traced); a zero vector gives 0 with a finite gradient.
      axis_name: static; inside ``jax.shard_map`` the mesh axis the batch is split over (the
        mean is then global; there are no other batch statistics).

    Returns:
      The reduced loss in ``[-1, 1]``; with ``reduction="none"`` one value per row, ``p``'s
      shape without its last axis.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> p = jnp.array([[1.0, 0.0], [1.0, 1.0]])
      >>> z = jnp.array([[2.0, 0.0], [-1.0, -1.0]])
      >>> jaxloss.negative_cosine_loss(p, z, reduction="none").round(4)
      Array([-1.,  1.], dtype=float32)
    """
    return -jnp.sum(_unit(p, eps) * _unit(z, eps), axis=-1)


# ---------------------------------------------------------------------------
# KoLeo
# ---------------------------------------------------------------------------


def _validate_koleo(name, z, *, axis_name=None, **_):
    if z.ndim != 2:
        raise ValueError(f"{name}: z must have shape [N, D], got {tuple(z.shape)}")
    if axis_name is None and z.shape[0] < 2:
        raise ValueError(f"{name}: needs at least 2 samples (each sample's nearest neighbour), got N = {z.shape[0]}")


def _koleo_sample(rng):
    return (rng.normal(size=(8, 4)).astype("float32"),)


@self_supervised(
    static=_AXIS_NAME,
    checks={"eps": POSITIVE},
    layout=_ROWS,
    validate=_validate_koleo,
    example=Example(_koleo_sample, grad_order=1),
    class_name="KoLeoLoss",
)
def koleo_loss(z, *, eps=1e-8, axis_name=None, where=None):
    r"""KoLeo regulariser (DINOv2): spread the batch by pushing each sample from its nearest neighbour.

    The rows are L2-normalised, :math:`\hat z_i = z_i / \max(\lVert z_i \rVert, \epsilon)`;
    :math:`j(i)` is the other sample of highest cosine similarity, and

    .. math::
        \ell_i = -\log\big(\lVert \hat z_i - \hat z_{j(i)} + \epsilon \rVert + \epsilon\big)

    (the :math:`\epsilon` inside the norm is ``torch.nn.PairwiseDistance``'s, as in lightly's
    ``KoLeoLoss`` and DINOv2). Both :math:`\hat z_i` and its neighbour get gradients.

    Args:
      z: embeddings, ``[N, D]``, floating point; ``N >= 2``.
      eps: the norm floor and the distance offset, ``> 0`` (traced).
      axis_name: static; inside ``jax.shard_map`` the mesh axis the batch is split over: the
        neighbours are searched over the global batch (an all-gather of ``z``).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-sample losses ``[N]``. A sample
      with no other valid sample (all others masked) has weight 0 and leaves the mean.
      Identical samples are finite: their distance is :math:`\epsilon\sqrt{D}`.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> z = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
      >>> round(float(jaxloss.koleo_loss(z)), 4)   # -log(sqrt(2))
      -0.3466
    """
    n_local = z.shape[0]
    valid = _valid(where, n_local, z)
    x = _unit(z, eps)
    if axis_name is None:
        # the columns from a replicated copy: on an explicit mesh with the batch split,
        # the [N, N] similarities are split by rows only (a no-op elsewhere)
        x_all, valid_all, offset = replicated(x), replicated(valid), 0
    else:
        x_all, valid_all = lax.all_gather((x, valid), axis_name, tiled=True)
        offset = lax.axis_index(axis_name) * n_local
    sim = jnp.matmul(x, x_all.T, precision=_HIGHEST)
    shape, rows = (n_local, x_all.shape[0]), rows_like(x, 2)  # split by rows like sim on an explicit mesh
    self_pair = (lax.broadcasted_iota(jnp.int32, shape, 0, out_sharding=rows) + offset
                 == lax.broadcasted_iota(jnp.int32, shape, 1, out_sharding=rows))
    candidate = valid_all[None, :] & ~self_pair
    nearest = jnp.argmax(jnp.where(candidate, lax.stop_gradient(sim), -jnp.inf), axis=-1)
    diff = x - x_all.at[nearest].get(out_sharding=rows_like(x, 2)) + eps  # split by rows like x
    distance = safe_sqrt(jnp.sum(diff * diff, axis=-1))
    has = jnp.any(candidate, axis=-1) & valid
    loss = jnp.where(has, -jnp.log(distance + eps), 0.0)
    return Unreduced(loss, has.astype(z.dtype))


# ---------------------------------------------------------------------------
# DINO
# ---------------------------------------------------------------------------


def _validate_dino(name, student_logits, teacher_logits, center, **_):
    if student_logits.ndim != 3 or teacher_logits.ndim != 3:
        raise ValueError(f"{name}: student_logits [S, B, K] and teacher_logits [T, B, K] must be 3-D (views, batch, "
                         f"prototypes), got {tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    if student_logits.shape[1:] != teacher_logits.shape[1:]:
        raise ValueError(f"{name}: student_logits {tuple(student_logits.shape)} and teacher_logits "
                         f"{tuple(teacher_logits.shape)} must share the batch and prototype axes [., B, K]")
    k = student_logits.shape[-1]
    if center.size != k or (center.ndim and center.shape[-1] != k):
        raise ValueError(f"{name}: center must have K = {k} entries ([K] or [1, 1, K]), got {tuple(center.shape)}")
    s, t = student_logits.shape[0], teacher_logits.shape[0]
    if s * t - min(s, t) == 0:
        raise ValueError(f"{name}: needs a pair of different views; with S = {s} and T = {t} every pair "
                         f"is a view against itself")


def _dino_sample(rng):
    return (rng.normal(size=(3, 5, 6)).astype("float32"), rng.normal(size=(2, 5, 6)).astype("float32"),
            (0.1 * rng.normal(size=(6,))).astype("float32"))


@self_supervised(
    static=_AXIS_NAME,
    checks={"student_temp": POSITIVE, "teacher_temp": POSITIVE},
    layout=_VIEWS,
    validate=_validate_dino,
    example=Example(_dino_sample, sweep=("student_temp", (0.05, 0.1, 0.2, 0.4))),
    class_name="DINOLoss",
)
def dino_loss(student_logits, teacher_logits, center, *, student_temp=0.1, teacher_temp=0.04, axis_name=None,
              where=None):
    r"""DINO: cross-entropy of the student's views against the centred, sharpened teacher's (lightly's ``DINOLoss``).

    With :math:`P_t = \mathrm{softmax}((g_t - c) / \tau_t)` (teacher view :math:`t`, under
    stop-gradient) and :math:`\log Q_s = \log\mathrm{softmax}(f_s / \tau_s)` (student view
    :math:`s`), every teacher view is paired with every student view except itself (the
    first :math:`T` student views are the teacher's global views):

    .. math::
        \ell_b = \frac{1}{ST - \min(S, T)} \sum_{t} \sum_{s \ne t} -P_{t,b} \cdot \log Q_{s,b}

    Update the centre after each step with :func:`dino_center_update`; lightly's teacher
    temperature warm-up is a schedule of ``teacher_temp`` (traced, so it does not recompile).

    Args:
      student_logits: student outputs ``[S, B, K]`` (views, batch, prototypes), floating point.
      teacher_logits: teacher outputs ``[T, B, K]`` (its views are the first ``T`` student views).
      center: the teacher centre ``[K]`` (or ``[1, 1, K]``).
      student_temp: the student temperature :math:`\tau_s`, ``> 0`` (traced).
      teacher_temp: the teacher temperature :math:`\tau_t`, ``> 0`` (traced).
      axis_name: static; inside ``jax.shard_map`` the mesh axis the batch (axis 1) is split
        over; the mean is then global (the centre's batch statistic is
        :func:`dino_center_update`'s).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-sample losses ``[B]``. ``where``
      ``[B]`` masks samples (their logits get a zero gradient, even if not finite).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> s = jnp.zeros((2, 3, 4)); t = jnp.zeros((2, 3, 4)); c = jnp.zeros(4)
      >>> round(float(jaxloss.dino_loss(s, t, c)), 4)   # uniform against uniform: log 4
      1.3863
    """
    views_s, batch, k = student_logits.shape
    views_t = teacher_logits.shape[0]
    valid = _valid(where, batch)[None, :, None]
    student = jnp.where(valid, student_logits, 0.0)
    teacher = lax.stop_gradient(jnp.where(valid, teacher_logits, 0.0))
    p = jax.nn.softmax((teacher - center.reshape(k)) / teacher_temp, axis=-1)
    log_q = jax.nn.log_softmax(student / student_temp, axis=-1)
    ce = -jnp.einsum("tbk,sbk->tsb", p, log_q, precision=_HIGHEST)
    same = jnp.arange(views_t)[:, None] == jnp.arange(views_s)[None, :]
    n_terms = views_s * views_t - min(views_s, views_t)
    return jnp.sum(jnp.where(same[:, :, None], 0.0, ce), axis=(0, 1)) / n_terms


def dino_center_update(teacher_logits, center, *, momentum=0.9, where=None, axis_name=None):
    r"""The moving average of DINO's teacher centre (lightly's ``DINOLoss.update_center``).

    .. math:: c \leftarrow m\, c + (1 - m)\, \frac{1}{T B} \sum_{t, b} g_{t, b}

    Args:
      teacher_logits: teacher outputs ``[T, B, K]`` (not centred).
      center: the current centre ``[K]`` (or ``[1, 1, K]``; the result has its shape).
      momentum: :math:`m \in [0, 1]` (traced).
      where: optional boolean ``[B]``: masked samples leave the batch mean.
      axis_name: inside ``jax.shard_map``, the mesh axis the batch is split over: the batch
        mean is global (a ``psum`` of sums), the same centre on every device.

    Returns:
      The new centre, under stop-gradient.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> t = jnp.ones((2, 3, 4)); c = jnp.zeros(4)
      >>> jaxloss.dino_center_update(t, c, momentum=0.75)
      Array([0.25, 0.25, 0.25, 0.25], dtype=float32)
    """
    name = "dino_center_update"
    teacher_logits, center = jnp.asarray(teacher_logits), jnp.asarray(center)
    if teacher_logits.ndim != 3:
        raise ValueError(f"{name}: teacher_logits must have shape [T, B, K], got {tuple(teacher_logits.shape)}")
    k = teacher_logits.shape[-1]
    if center.size != k:
        raise ValueError(f"{name}: center must have K = {k} entries, got {tuple(center.shape)}")
    if not jnp.issubdtype(teacher_logits.dtype, jnp.floating):
        raise TypeError(f"{name}: teacher_logits must be floating point, got {teacher_logits.dtype}")
    if isinstance(momentum, (int, float)) and not 0.0 <= momentum <= 1.0:
        raise ValueError(f"{name}: momentum must lie in {UNIT.describe()}, got {momentum}")
    dtype = jnp.promote_types(jnp.promote_types(teacher_logits.dtype, center.dtype), jnp.float32)
    g = teacher_logits.astype(dtype)
    valid = jnp.ones(g.shape[1], bool) if where is None else jnp.asarray(where, bool).reshape(g.shape[1])
    g = jnp.where(valid[None, :, None], g, 0.0)
    total = _psum(jnp.sum(g, axis=(0, 1)), axis_name)
    count = _psum(jnp.sum(valid).astype(dtype), axis_name) * g.shape[0]
    batch_center = safe_div(total, count)
    m = jnp.asarray(momentum, dtype)
    new = m * center.astype(dtype).reshape(k) + (1.0 - m) * batch_center
    return lax.stop_gradient(new.reshape(center.shape))


# ---------------------------------------------------------------------------
# SwAV
# ---------------------------------------------------------------------------


def _sinkhorn(scores, valid, epsilon, iterations, axis_name):
    """Sinkhorn-Knopp codes ``[B, K]`` of one view's scores over the (global) batch, as
    lightly's ``sinkhorn``: equal prototype marginals, each valid sample's codes sum to 1."""
    k = scores.shape[-1]
    shift = jnp.max(jnp.where(valid[:, None], scores, -jnp.inf))
    if axis_name is not None:
        shift = lax.pmax(shift, axis_name)
    shift = jnp.where(jnp.isfinite(shift), shift, 0.0)
    q = jnp.where(valid[:, None], jnp.exp((scores - shift) / epsilon), 0.0)  # a constant factor cancels below
    q = safe_div(q, _psum(jnp.sum(q), axis_name))
    b = _psum(jnp.sum(valid).astype(scores.dtype), axis_name)
    for _ in range(iterations):
        q = safe_div(q, _psum(jnp.sum(q, axis=0, keepdims=True), axis_name)) / k
        q = safe_div(q, jnp.sum(q, axis=1, keepdims=True)) / jnp.maximum(b, 1.0)
    return q * b


_ITERATIONS = Static("int", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                     "a non-negative int", ValueError)


def _validate_swav(name, scores, *, high_resolution_views=None, **_):
    if scores.ndim != 3:
        raise ValueError(f"{name}: scores must have shape [V, B, K] (views, batch, prototypes), got "
                         f"{tuple(scores.shape)}")
    if scores.shape[0] < 2:
        raise ValueError(f"{name}: needs at least 2 views to swap, got V = {scores.shape[0]}")
    if high_resolution_views is not None and high_resolution_views > scores.shape[0]:
        raise ValueError(f"{name}: high_resolution_views = {high_resolution_views} exceeds the V = "
                         f"{scores.shape[0]} views")


def _swav_sample(rng):
    return ((rng.normal(size=(3, 6, 5)) * 0.5).astype("float32"),)


@self_supervised(
    static={"sinkhorn_iterations": _ITERATIONS, "high_resolution_views": POSITIVE_INT_OR_NONE, **_AXIS_NAME},
    checks={"temperature": POSITIVE, "epsilon": POSITIVE},
    layout=_VIEWS,
    validate=_validate_swav,
    example=Example(_swav_sample, sweep=("temperature", (0.05, 0.1, 0.2, 0.5)), grad_order=0),
    class_name="SwAVLoss",
)
def swav_loss(scores, *, temperature=0.1, epsilon=0.05, sinkhorn_iterations=3, high_resolution_views=None,
              axis_name=None, where=None):
    r"""SwAV: predict each high-resolution view's Sinkhorn codes from every other view (lightly's ``SwaVLoss``).

    For each of the first :math:`H` views (the high-resolution crops), the codes
    :math:`q_i = \mathrm{Sinkhorn}(s_i / \epsilon)` (``[B, K]``, under stop-gradient:
    prototypes equally used over the batch, each sample's codes summing to 1) are the
    targets of the other :math:`V - 1` views' softmax predictions:

    .. math::
        \ell_b = \frac{1}{H} \sum_{i < H} \frac{1}{V - 1} \sum_{v \ne i}
          -q_{i,b} \cdot \log\mathrm{softmax}(s_{v,b} / \tau)

    Args:
      scores: prototype scores ``[V, B, K]`` (views, batch, prototypes), usually cosine
        similarities of normalised embeddings and prototypes; high-resolution views first.
      temperature: the softmax temperature :math:`\tau`, ``> 0`` (traced).
      epsilon: the Sinkhorn temperature, ``> 0`` (traced; lightly's ``sinkhorn_epsilon``).
      sinkhorn_iterations: static, the number of Sinkhorn-Knopp iterations (``>= 0``).
      high_resolution_views: static, :math:`H`, the number of leading views whose codes are
        computed (lightly's ``high_resolution_outputs``); ``None``: every view.
      axis_name: static; inside ``jax.shard_map`` the mesh axis the batch (axis 1) is split
        over: the Sinkhorn marginals are global (``psum`` of sums), as lightly's
        distributed Sinkhorn.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-sample losses ``[B]``. ``where``
      ``[B]`` removes samples from the Sinkhorn marginals and the mean.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> scores = jnp.zeros((2, 4, 3))
      >>> round(float(jaxloss.swav_loss(scores)), 4)   # uniform codes against uniform predictions: log 3
      1.0986
    """
    views, batch, _ = scores.shape
    high = views if high_resolution_views is None else high_resolution_views
    valid = _valid(where, batch)
    scores = jnp.where(valid[None, :, None], scores, 0.0)
    log_p = jax.nn.log_softmax(scores / temperature, axis=-1)
    # each view's codes take the whole view: on an explicit mesh the (static) view index
    # cannot slice a split axis, so the scores are replicated first (a no-op elsewhere)
    detached = replicated(lax.stop_gradient(scores))
    total = 0.0
    for i in range(high):
        q = _sinkhorn(detached[i], valid, epsilon, sinkhorn_iterations, axis_name)
        ce = -jnp.sum(q[None] * log_p, axis=-1)  # [V, B]
        others = jnp.arange(views)[:, None] != i
        total = total + jnp.sum(jnp.where(others, ce, 0.0), axis=0) / (views - 1)
    return total / high


VICRegLoss = vicreg_loss.Loss
BarlowTwinsLoss = barlow_twins_loss.Loss
NegativeCosineLoss = negative_cosine_loss.Loss
KoLeoLoss = koleo_loss.Loss
DINOLoss = dino_loss.Loss
SwAVLoss = swav_loss.Loss
