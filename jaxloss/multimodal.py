r"""Two-tower contrastive losses (CLIP, SigLIP), on one device and across many.

Both losses take two towers' embeddings ``a [B, D]`` and ``b [B, D]`` whose row
``i`` is a positive pair; every other row of the other tower is a negative. With
``â``, ``b̂`` the L2-normalised rows (``normalize=True``) the logits are
:math:`z_{ij} = s\, \hat a_i \cdot \hat b_j` (plus a bias for SigLIP), and
``reduction="none"`` returns one loss per example (per pair), ``[B]``.

``where`` (shape ``[B]``) removes examples from the batch altogether: a masked
example is neither an anchor nor anyone's negative, and its embeddings get a
zero gradient (big_vision's padding mask), so a masked batch equals the sliced
batch. ``weights`` (``[B]``) weight the per-example losses; an example of weight
0 leaves the mean but is still a negative of the others.

**Many devices.** Inside ``jax.shard_map`` with the batch split over a mesh axis
``axis_name`` (each device holds ``B/n`` rows of ``a`` and ``b``), the loss is
the single-device loss of the global batch. ``gather="all"`` all-gathers the
other tower; ``gather="ring"`` passes chunks of it around the ring
(``ppermute``): an online log-sum-exp (CLIP) or a running sum (SigLIP) over one
``[B/n, B/n]`` block of logits at a time, and a ``jax.custom_vjp`` backward
pass that sends the chunks around again (with their gradient accumulators)
instead of keeping them. ``"mean"``, ``"sum"`` and ``"sum_and_weight"`` return
the global value on every device (``out_specs=P()``); ``"none"`` the device's
own rows. ``jax.grad`` of the shard-mapped loss, taken from outside, equals the
single-device gradient for the embeddings and for ``scale`` and ``bias``
(under ``shard_map``'s default ``check_vma=True``).
See ``docs/contrastive.md`` for a complete data-parallel training step.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._checks import ANY, FLAG, POSITIVE, UNIT_HALF_OPEN, choice
from ._core import Example, Layout, builtin
from ._numerics import softplus
from ._sharding import replicated, to_varying

multimodal = builtin("multimodal")

__all__ = [
    "clip_loss", "CLIPLoss",
    "siglip_loss", "SigLIPLoss",
]

GATHER = ("all", "ring")


# ---------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------


def _unit(x):
    r""":math:`x / \sqrt{\max(\lVert x\rVert^2, \epsilon)}` over the last axis: a zero row stays 0
    with a finite gradient (the floor of ``optax``'s cosine similarity)."""
    eps = jnp.finfo(x.dtype).eps
    n2 = jnp.sum(x * x, axis=-1, keepdims=True)
    return x * lax.rsqrt(jnp.maximum(n2, eps))


def _mm(x, y):
    """``x @ y.T`` for ``[m, D]`` and ``[k, D]`` (``y`` gathered first when the batch is
    split over an explicit mesh axis: the ``[m, k]`` result keeps ``x``'s sharding)."""
    return lax.dot_general(x, replicated(y), (((1,), (1,)), ((), ())))


def _validate(name, a, b, *, axis_name=None, gather="all", **_):
    if a.ndim != 2:
        raise ValueError(f"{name}: a must have shape [B, D], got {tuple(a.shape)}")
    if tuple(b.shape) != tuple(a.shape):
        raise ValueError(f"{name}: a {tuple(a.shape)} and b {tuple(b.shape)} must have the same shape [B, D]")
    if axis_name is None and gather != "all":
        raise ValueError(
            f"{name}: gather={gather!r} needs axis_name= (the shard_map mesh axis the batch is split over); "
            f"on one device the whole batch is seen at once"
        )


def _prepare(a, b, normalize, where):
    valid = jnp.ones(a.shape[:1], bool) if where is None else where
    if normalize:
        a, b = _unit(a), _unit(b)
    return a, b, valid


def _n_devices(axis_name):
    return lax.axis_size(axis_name)


def _ring_perm(n):
    # device j sends to j - 1, so after t steps device k holds device (k + t)'s chunk
    return [(j, (j - 1) % n) for j in range(n)]


def _on_axis(tree, axis_name):
    """Every leaf marked varying over ``axis_name`` (ring carries must be, whatever
    the inputs were)."""
    return jax.tree_util.tree_map(lambda x: to_varying(x, axis_name), tree)


def _shift(x, axis_name, n):
    """Every leaf of ``x`` one step around the ring, in one ``ppermute``."""
    return lax.ppermute(x, axis_name, _ring_perm(n))


def _masked_lse_update(m, s, z, mask, axis):
    """One step of an online log-sum-exp over ``z`` (entries with ``mask``) along ``axis``."""
    zm = jnp.where(mask, z, -jnp.inf)
    m_new = jnp.maximum(m, jnp.max(zm, axis=axis))
    safe = jnp.where(jnp.isfinite(m_new), m_new, 0.0)
    e = jnp.exp(zm - jnp.expand_dims(safe, axis))
    s = s * jnp.exp(m - safe) + jnp.sum(e, axis=axis)
    return m_new, s


def _finish_lse(m, s):
    ok = s > 0
    return jnp.where(ok, m + jnp.log(jnp.where(ok, s, 1.0)), 0.0)


def _sample(rng):
    a = rng.normal(size=(6, 4))
    b = a + 0.8 * rng.normal(size=(6, 4))
    return a.astype(np.float32), b.astype(np.float32)


# ---------------------------------------------------------------------------
# CLIP
# ---------------------------------------------------------------------------


def _clip_dense(a, b, a_all, b_all, scale, eps, valid, valid_all):
    """Per-example CLIP losses of the rows ``a``, ``b`` against the whole batch
    ``a_all``, ``b_all`` (which contains them)."""
    n_valid = jnp.sum(valid_all).astype(a.dtype)
    cols = valid_all[None, :]
    target = scale * jnp.sum(a * b, axis=-1)

    # the column mask enters additively and multiplicatively (not through a select), so
    # that under an explicit mesh a row-sharded z and the replicated mask combine
    minus_inf = jnp.where(cols, 0.0, -jnp.inf).astype(a.dtype)
    ones = cols.astype(a.dtype)

    def ce(z):
        zm = z + minus_inf
        mx = lax.stop_gradient(jnp.max(zm, axis=-1, keepdims=True))
        mx = jnp.where(jnp.isfinite(mx), mx, 0.0)
        lse = _finish_lse(mx[:, 0], jnp.sum(jnp.exp(zm - mx), axis=-1))
        mean_z = jnp.sum(z * ones, axis=-1) / jnp.maximum(n_valid, 1.0)
        return lse - (1.0 - eps) * target - eps * mean_z

    rows = ce(scale * _mm(a, b_all))  # a_i against every b_j
    columns = ce(scale * _mm(b, a_all))  # b_i against every a_j
    return jnp.where(valid, 0.5 * (rows + columns), 0.0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _clip_ring(cfg, a, b, scale, eps, valid):
    return _clip_ring_fwd(cfg, a, b, scale, eps, valid)[0]


def _clip_ring_fwd(cfg, a, b, scale, eps, valid):
    axis_name = cfg
    n = _n_devices(axis_name)
    n_valid = lax.psum(jnp.sum(valid).astype(a.dtype), axis_name)
    row = jnp.zeros(a.shape[:1], a.dtype)

    def block(carry):
        (rm, rs, rz), (bc, vc, cm, cs, cz) = carry
        z = scale * _mm(a, bc)
        mask = valid[:, None] & vc[None, :]
        rm, rs = _masked_lse_update(rm, rs, z, mask, axis=1)
        cm, cs = _masked_lse_update(cm, cs, z, mask, axis=0)
        zm = jnp.where(mask, z, 0.0)
        return (rm, rs, rz + jnp.sum(zm, axis=1)), (bc, vc, cm, cs, cz + jnp.sum(zm, axis=0))

    def step(_, carry):
        own, travel = block(carry)
        return own, _shift(travel, axis_name, n)

    init = _on_axis(((row - jnp.inf, row, row), (b, valid, row - jnp.inf, row, row)), axis_name)
    carry = lax.fori_loop(0, n - 1, step, init)
    own, (_, _, cm, cs, cz) = block(carry)
    cm, cs, cz = _shift((cm, cs, cz), axis_name, n)  # the column statistics go home
    rm, rs, rz = own
    row_lse, col_lse = _finish_lse(rm, rs), _finish_lse(cm, cs)
    target = scale * jnp.sum(a * b, axis=-1)
    den = jnp.maximum(n_valid, 1.0)
    rows = row_lse - (1.0 - eps) * target - eps * rz / den
    columns = col_lse - (1.0 - eps) * target - eps * cz / den
    out = jnp.where(valid, 0.5 * (rows + columns), 0.0)
    return out, (a, b, scale, eps, valid, row_lse, col_lse, rz, cz, n_valid)


def _clip_ring_bwd(cfg, res, g):
    axis_name = cfg
    a, b, scale, eps, valid, row_lse, col_lse, rz, cz, n_valid = res
    n = _n_devices(axis_name)
    den = jnp.maximum(n_valid, 1.0)
    gv = jnp.where(valid, 0.5 * g, 0.0).astype(a.dtype)  # d loss_i / d (row CE_i) = d / d (column CE_i)
    u = eps / den

    def block(carry):
        (da, dscale), (bc, vc, lc, gc, dbc) = carry
        cos = _mm(a, bc)
        z = scale * cos
        mask = valid[:, None] & vc[None, :]
        p_row = jnp.exp(jnp.where(mask, z - row_lse[:, None], -jnp.inf))
        p_col = jnp.exp(jnp.where(mask, z - lc[None, :], -jnp.inf))
        dz = jnp.where(mask, gv[:, None] * (p_row - u) + gc[None, :] * (p_col - u), 0.0)
        da = da + scale * (dz @ bc)
        dbc = dbc + scale * (dz.T @ a)
        return (da, dscale + jnp.sum(dz * cos)), (bc, vc, lc, gc, dbc)

    def step(_, carry):
        own, travel = block(carry)
        return own, _shift(travel, axis_name, n)

    zeros = jnp.zeros_like(a)
    init = _on_axis(((zeros, jnp.zeros((), a.dtype)), (b, valid, col_lse, gv, zeros)), axis_name)
    carry = lax.fori_loop(0, n - 1, step, init)
    (da, dscale), (_, _, _, _, dbc) = block(carry)
    db = _shift(dbc, axis_name, n)  # each chunk's gradient goes home
    # the target logit z_ii = s a_i . b_i appears in both cross-entropies
    dt = -2.0 * (1.0 - eps) * gv
    cos_ii = jnp.sum(a * b, axis=-1)
    da = da + (dt * scale)[:, None] * b
    db = db + (dt * scale)[:, None] * a
    dscale = dscale + jnp.sum(dt * cos_ii)
    deps = jnp.sum(gv * (2.0 * scale * cos_ii - (rz + cz) / den))
    return da, db, dscale, deps, None


_clip_ring.defvjp(_clip_ring_fwd, _clip_ring_bwd)


@multimodal(
    static={"normalize": FLAG, "axis_name": ANY, "gather": choice(*GATHER)},
    checks={"scale": POSITIVE, "label_smoothing": UNIT_HALF_OPEN},
    layout=Layout(axis=-1, where="kernel", axis_name="axis_name"),
    validate=_validate,
    example=Example(_sample, sweep=("scale", (1.0, 5.0, 10.0, 1 / 0.07)), differentiable=(0, 1)),
    class_name="CLIPLoss",
)
def clip_loss(a, b, *, scale=1 / 0.07, label_smoothing=0.0, normalize=True, axis_name=None, gather="all",
              where=None):
    r"""CLIP's symmetric contrastive loss (Radford et al., 2021): InfoNCE over both towers.

    With logits :math:`z_{ij} = s\, \hat a_i \cdot \hat b_j` over the batch's
    :math:`B'` counted examples (not masked by ``where``),

    .. math:: \ell_i = \tfrac12\Bigl(\mathrm{CE}_\epsilon(z_{i\cdot},\, i)
                            + \mathrm{CE}_\epsilon(z_{\cdot i},\, i)\Bigr),
              \qquad
              \mathrm{CE}_\epsilon(z, i) = \log\sum_j e^{z_j} - (1 - \epsilon)\, z_i - \frac{\epsilon}{B'}\sum_j z_j

    the mean of the cross-entropy of row ``i`` of the logits (``a_i`` against
    every ``b_j``) and of column ``i`` (``b_i`` against every ``a_j``), both
    with target ``i``. ``"mean"`` is open_clip's ``ClipLoss`` (and big_vision's
    bidirectional contrastive loss) with ``logit_scale = s``; label smoothing is
    PyTorch's cross-entropy's (:math:`\epsilon / B'` to every column, the target
    included). ``scale`` is traced and differentiable: learn it as
    ``jnp.exp(log_scale)`` (open_clip clamps it at 100).

    With ``axis_name`` (inside ``jax.shard_map``, batch split over that axis):
    ``gather="all"`` all-gathers both towers and builds two ``[B/n, B]`` blocks
    of logits per device (open_clip's ``gather_with_grad``, ``local_loss``);
    ``gather="ring"`` streams one ``[B/n, B/n]`` block at a time (a row and a
    column online log-sum-exp; the column statistics travel with ``b``'s chunk
    and return to their device), and its backward pass recomputes the blocks
    while passing ``b``'s chunks and their gradient around the ring again.
    Both give the single-device value and gradients.

    Matrix products use the backend's default precision (full float32 on CPU
    and GPU without TF32; on TPU use ``jax.default_matmul_precision("highest")``
    for float32 products). Forward-mode differentiation of the ring form is not
    supported (a ``custom_vjp``).

    Args:
      a: ``[B, D]`` embeddings of the first tower (images), floating point.
      b: ``[B, D]`` embeddings of the second tower (texts); row ``i`` pairs with ``a[i]``.
      scale: the logit scale :math:`s > 0` (traced; CLIP's initial ``1/0.07``).
      label_smoothing: :math:`\epsilon \in [0, 1)`.
      normalize: static; L2-normalise the rows first (default). ``False`` takes
        ``a`` and ``b`` as they are (already normalised, or a dot-product loss).
      axis_name: static; ``None`` on one device, or -- inside ``jax.shard_map``
        -- the mesh axis (or tuple of axes) the batch is split over.
      gather: static, ``"all"`` (default) or ``"ring"`` (needs ``axis_name``).

    Returns:
      The reduced loss (the global one with ``axis_name``, on every device);
      with ``reduction="none"`` the ``[B]`` (per device: ``[B/n]``)
      per-example losses, 0 for masked examples.

    Example:
      >>> import jax.numpy as jnp, numpy as np, jaxloss
      >>> a = jnp.array([[1.0, 0.0], [0.0, 1.0]]); b = jnp.array([[2.0, 0.0], [0.0, 3.0]])
      >>> z = 2.0 * np.eye(2)                                    # s * cosines
      >>> ce = np.log(np.exp(z).sum(1)) - np.diag(z)
      >>> bool(np.isclose(jaxloss.clip_loss(a, b, scale=2.0), ce.mean(), rtol=1e-6))
      True
      >>> jaxloss.clip_loss(a, b, scale=2.0, where=jnp.array([True, False]))  # one example left
      Array(0., dtype=float32)
    """
    a, b, valid = _prepare(a, b, normalize, where)
    if axis_name is None:
        return _clip_dense(a, b, a, b, scale, label_smoothing, valid, replicated(valid))
    if gather == "all":
        a_all, b_all, valid_all = lax.all_gather((a, b, valid), axis_name, tiled=True)
        return _clip_dense(a, b, a_all, b_all, scale, label_smoothing, valid, valid_all)
    # Replicated hyper-parameters enter the ring as device-varying values, so their
    # (per-device) cotangents are summed over the axis by JAX.
    scale, eps = (to_varying(x, axis_name) for x in (scale, label_smoothing))
    return _clip_ring(axis_name, a, b, scale, eps, valid)


# ---------------------------------------------------------------------------
# SigLIP
# ---------------------------------------------------------------------------


def _siglip_dense(a, b_all, scale, bias, valid, valid_all, offset):
    z = scale * _mm(a, b_all) + bias
    labels = (jnp.arange(b_all.shape[0])[None, :] == (offset + jnp.arange(a.shape[0]))[:, None]).astype(z.dtype)
    terms = softplus(z - 2.0 * labels * z)  # -log sigmoid(y z) with y = 2 labels - 1 (+1 on the diagonal)
    mask = valid[:, None] & valid_all[None, :]
    return jnp.sum(jnp.where(mask, terms, 0.0), axis=-1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _siglip_ring(cfg, a, b, scale, bias, valid):
    return _siglip_ring_fwd(cfg, a, b, scale, bias, valid)[0]


def _siglip_block_z(a, bc, scale, bias, first):
    cos = _mm(a, bc)
    z = scale * cos + bias
    diag = first & (jnp.arange(a.shape[0])[:, None] == jnp.arange(bc.shape[0])[None, :])
    return cos, z, diag


def _siglip_ring_fwd(cfg, a, b, scale, bias, valid):
    axis_name = cfg
    n = _n_devices(axis_name)

    def block(t, acc, bc, vc):
        _, z, diag = _siglip_block_z(a, bc, scale, bias, t == 0)
        mask = valid[:, None] & vc[None, :]
        return acc + jnp.sum(jnp.where(mask, softplus(jnp.where(diag, -z, z)), 0.0), axis=1)

    def step(t, carry):
        acc, bc, vc = carry
        acc = block(t, acc, bc, vc)
        bc, vc = _shift((bc, vc), axis_name, n)
        return acc, bc, vc

    init = _on_axis((jnp.zeros(a.shape[:1], a.dtype), b, valid), axis_name)
    acc, bc, vc = lax.fori_loop(0, n - 1, step, init)
    out = block(n - 1, acc, bc, vc)
    return out, (a, b, scale, bias, valid)


def _siglip_ring_bwd(cfg, res, g):
    axis_name = cfg
    a, b, scale, bias, valid = res
    n = _n_devices(axis_name)
    gv = jnp.where(valid, g, 0.0).astype(a.dtype)

    def block(t, carry):
        (da, ds, dbias), (bc, vc, dbc) = carry
        cos, z, diag = _siglip_block_z(a, bc, scale, bias, t == 0)
        y = jnp.where(diag, 1.0, -1.0)
        mask = valid[:, None] & vc[None, :]
        # d/dz softplus(-y z) = -y sigmoid(-y z)
        dz = jnp.where(mask, gv[:, None] * (-y) * jax.nn.sigmoid(-y * z), 0.0)
        return ((da + scale * (dz @ bc), ds + jnp.sum(dz * cos), dbias + jnp.sum(dz)),
                (bc, vc, dbc + scale * (dz.T @ a)))

    def step(t, carry):
        own, travel = block(t, carry)
        return own, _shift(travel, axis_name, n)

    zero = jnp.zeros((), a.dtype)
    init = _on_axis(((jnp.zeros_like(a), zero, zero), (b, valid, jnp.zeros_like(b))), axis_name)
    carry = lax.fori_loop(0, n - 1, step, init)
    (da, ds, dbias), (_, _, dbc) = block(n - 1, carry)
    db = _shift(dbc, axis_name, n)
    return da, db, ds, dbias, None


_siglip_ring.defvjp(_siglip_ring_fwd, _siglip_ring_bwd)


@multimodal(
    static={"normalize": FLAG, "axis_name": ANY, "gather": choice(*GATHER)},
    checks={"scale": POSITIVE},
    layout=Layout(axis=-1, where="kernel", axis_name="axis_name"),
    validate=_validate,
    example=Example(_sample, sweep=("bias", (-10.0, -5.0, -1.0, 0.0)), differentiable=(0, 1)),
    class_name="SigLIPLoss",
)
def siglip_loss(a, b, *, scale=10.0, bias=-10.0, normalize=True, axis_name=None, gather="all", where=None):
    r"""SigLIP's pairwise sigmoid loss (Zhai et al., 2023).

    With logits :math:`z_{ij} = s\, \hat a_i \cdot \hat b_j + \beta` and labels
    :math:`y_{ii} = +1`, :math:`y_{ij} = -1` for :math:`i \ne j`, over the
    batch's counted examples (not masked by ``where``),

    .. math:: \ell_i = -\sum_j \log \sigma\bigl(y_{ij} z_{ij}\bigr)
                     = \sum_j \operatorname{softplus}\bigl(-y_{ij} z_{ij}\bigr)

    a row sum: every pair is an independent binary classification, so no
    softmax over the batch is needed. ``"mean"`` is the mean of the row sums,
    big_vision's ``sigmoid_loss`` (``-sum(log_sigmoid(labels * logits)) / B``).
    ``scale`` and ``bias`` are traced and differentiable (SigLIP learns
    ``scale = exp(t')`` from ``t' = log 10`` and ``bias`` from -10).

    With ``axis_name`` (inside ``jax.shard_map``, batch split over that axis):
    ``gather="all"`` all-gathers ``b`` (one ``[B/n, B]`` block of logits per
    device); ``gather="ring"`` is big_vision's chunked form: ``b``'s chunks go
    around the ring (``ppermute``), each device adds one ``[B/n, B/n]`` block's
    terms to its running row sums, and the backward pass passes the chunks and
    their gradient around again. Both give the single-device value and
    gradients.

    Args:
      a: ``[B, D]`` embeddings of the first tower (images), floating point.
      b: ``[B, D]`` embeddings of the second tower (texts); row ``i`` pairs with ``a[i]``.
      scale: the logit scale :math:`s > 0` (traced).
      bias: the logit bias :math:`\beta` (traced, any real number).
      normalize: static; L2-normalise the rows first (default).
      axis_name: static; ``None`` on one device, or -- inside ``jax.shard_map``
        -- the mesh axis (or tuple of axes) the batch is split over.
      gather: static, ``"all"`` (default) or ``"ring"`` (needs ``axis_name``).

    Returns:
      The reduced loss (the global one with ``axis_name``, on every device);
      with ``reduction="none"`` the ``[B]`` (per device: ``[B/n]``) row sums,
      0 for masked examples.

    Example:
      >>> import jax.numpy as jnp, numpy as np, jaxloss
      >>> a = jnp.array([[1.0, 0.0], [0.0, 1.0]]); b = jnp.array([[1.0, 0.0], [1.0, 1.0]])
      >>> cos = np.array([[1.0, 1.0], [0.0, 1.0]]) / np.array([1.0, np.sqrt(2)])
      >>> z = 10.0 * cos - 10.0; y = 2 * np.eye(2) - 1
      >>> ref = np.logaddexp(0, -y * z).sum(1).mean()
      >>> bool(np.isclose(jaxloss.siglip_loss(a, b), ref, rtol=1e-6))
      True
    """
    a, b, valid = _prepare(a, b, normalize, where)
    if axis_name is None:
        return _siglip_dense(a, b, scale, bias, valid, replicated(valid), 0)
    if gather == "all":
        b_all, valid_all = lax.all_gather((b, valid), axis_name, tiled=True)
        offset = lax.axis_index(axis_name) * a.shape[0]
        return _siglip_dense(a, b_all, scale, bias, valid, valid_all, offset)
    scale, bias = (to_varying(x, axis_name) for x in (scale, bias))
    return _siglip_ring(axis_name, a, b, scale, bias, valid)


CLIPLoss = clip_loss.Loss
SigLIPLoss = siglip_loss.Loss
