r"""Additive-margin softmax losses for recognition over many classes.

ArcFace and CosFace compare L2-normalised embeddings with L2-normalised class
centres and add a margin to the target class only, which makes the classes
compact and far apart on the hypersphere (face, speaker and product
recognition). With a million identities the cosine logits ``[N, C]`` and their
gradient are 8 GB at N = 1024, and even a normalised copy of the centres
``[C, D]`` is 2 GB: both losses run on the streaming engine of
:func:`jaxloss.linear_cross_entropy` (``jaxloss/_streaming.py``), whose
per-chunk ``transform`` here normalises each chunk of centres, takes the max
over sub-centres and puts the margin on the target column -- so neither
``[N, C]`` nor any ``[C, D]``-sized temporary is built, and with ``axis_name``
the centres can be class-sharded inside ``jax.shard_map``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import lax

from ._checks import ANY, POSITIVE, POSITIVE_INT_OR_NONE, Interval
from ._core import Example, Layout, Role, builtin, compute_dtype
from ._numerics import safe_sqrt, where_safe
from ._streaming import check_head, head_cross_entropy

__all__ = ["arcface_loss", "ArcFaceLoss", "cosface_loss", "CosFaceLoss"]

margin_softmax = builtin("margin_softmax")

_ARC_MARGIN = Interval(0.0, math.pi, hi_open=True)
_COS_MARGIN = Interval(0.0, None)


def unit_rows(x):
    """Rows of ``x`` scaled to unit L2 norm along the last axis; an all-zero row
    stays zero and a NaN row NaN, both with a zero gradient (never NaN)."""
    n2 = jnp.sum(x * x, axis=-1, keepdims=True)
    ok = n2 > 0
    fill = jnp.where(jnp.isnan(n2), jnp.nan, 0.0).astype(x.dtype)
    return jnp.where(ok, where_safe(lambda v: v * lax.rsqrt(jnp.sum(v * v, axis=-1, keepdims=True)), x, ok), fill)


class _MarginTransform(NamedTuple):
    """Per-chunk logits ``s * cos`` with the margin on the target column.

    ``raw`` holds ``e_i . w_{jk}`` for unit embeddings ``e``; each centre is
    normalised here (chunk by chunk), sub-centres are reduced by their max,
    and the target's cosine is replaced by ``cos(theta + m)`` (ArcFace) or
    ``cos(theta) - m`` (CosFace)."""

    arc: bool

    def __call__(self, theta, raw, chunk, cols, labels):
        scale, margin = theta
        w = chunk[0].astype(raw.dtype)
        n2 = jnp.sum(w * w, axis=-1)  # [c] or [c, K]
        cos = raw.reshape((raw.shape[0],) + n2.shape) * where_safe(lax.rsqrt, n2, n2 > 0)[None]
        if cos.ndim == 3:
            cos = jnp.max(cos, axis=-1)
        cos = jnp.clip(cos, -1.0, 1.0)
        if self.arc:
            # cos(theta + m) = cos cos m - sin theta sin m, with sin theta = sqrt(1 - cos^2)
            # (gradient 0, not infinite, at cos = +-1); beyond theta = pi - m, where
            # theta + m would wrap past pi, the usual fallback cos - m sin m.
            sin = safe_sqrt(1.0 - cos * cos)
            phi = jnp.where(cos > -jnp.cos(margin), cos * jnp.cos(margin) - sin * jnp.sin(margin),
                            cos - margin * jnp.sin(margin))
        else:
            phi = cos - margin
        target = cols[None, :] == labels[:, None]
        return scale * jnp.where(target, phi, cos)


def _sample(rng: np.random.Generator) -> tuple:
    emb = rng.normal(size=(6, 8)).astype(np.float32)
    weight = rng.normal(size=(11, 8)).astype(np.float32)
    labels = rng.integers(0, 11, size=(6,)).astype(np.int32)
    return emb, weight, labels


def _validate(name, embeddings, weight, labels, *, chunk_size, precision, axis_name, **_):
    check_head(
        name, embeddings, weight, labels, hidden_arg="embeddings", ranks=(2, 3),
        shapes="[C, D] (class centres) or [C, K, D] (K sub-centres per class)",
        transpose="[C, D] or [C, K, D] (transpose a [D, C] kernel)",
        empty=lambda shape: f"weight must have at least one class and sub-centre, got {shape}",
        sharded=lambda arg, split, weight_split: (
            f"{arg} is split over the classes along mesh axes {split} of an explicit mesh and weight along "
            f"{weight_split}; split both the same way"
        ),
        precision=precision, axis_name=axis_name,
    )


def _margin_loss(arc, embeddings, weight, labels, scale, margin, chunk_size, precision, axis_name):
    acc = compute_dtype(embeddings, weight)
    theta = (jnp.asarray(scale, acc), jnp.asarray(margin, acc))
    hp = (jnp.zeros((), acc), jnp.zeros((), acc), None)  # plain cross-entropy of the margin logits
    return head_cross_entropy(
        unit_rows(embeddings.astype(acc)), (weight,), labels, _MarginTransform(arc), theta, hp,
        chunk_size=chunk_size, precision=precision, axis_name=axis_name,
        columns_per_class=1 if weight.ndim == 2 else weight.shape[1],
    )


_OPTIONS = dict(
    static={"chunk_size": POSITIVE_INT_OR_NONE, "precision": ANY, "axis_name": ANY},
    layout=Layout({
        "embeddings": Role(shape="free", native=True), "weight": Role(shape="free", native=True),
        "labels": Role("labels", "reduced"),
    }),
    validate=_validate,
)

def arcface_loss(embeddings, weight, labels, *, scale=64.0, margin=0.5, chunk_size=None, precision=None,
                 axis_name=None):
    r"""ArcFace: softmax cross-entropy with an additive angular margin.

    With :math:`\cos\theta_{ij} = \hat e_i \cdot \hat w_j` between the unit
    embedding :math:`\hat e_i` and unit class centre :math:`\hat w_j` (for
    sub-centres, the max over the class's centres), scale :math:`s` and margin
    :math:`m` (radians),

    .. math::
       \ell_i = -\log \frac{e^{s\,\phi(\theta_{iy_i})}}
                {e^{s\,\phi(\theta_{iy_i})} + \sum_{j \ne y_i} e^{s \cos\theta_{ij}}},
       \qquad
       \phi(\theta) = \begin{cases} \cos(\theta + m) & \theta \le \pi - m \\
                                     \cos\theta - m \sin m & \theta > \pi - m \end{cases}

    Semantics of pytorch-metric-learning's ``ArcFaceLoss`` (and
    ``SubCenterArcFaceLoss`` for ``[C, K, D]`` centres) with the reduction
    applied to the per-example cross-entropy, except that the margin is in
    radians (pml's ``margin=28.6`` degrees is our default 0.5). Deng et al.,
    "ArcFace: Additive Angular Margin Loss for Deep Face Recognition" (2019);
    Deng et al., "Sub-center ArcFace" (2020).


    The cosine logits are never materialised: the loss streams over chunks of
    ``chunk_size`` classes (normalising each chunk of centres as it goes) like
    :func:`jaxloss.linear_cross_entropy`, with a ``jax.custom_vjp`` backward
    pass that recomputes each chunk, so temporary memory is a few
    ``[N, chunk_size]`` blocks -- neither ``[N, C]`` nor a ``[C, D]``-sized copy
    of ``weight`` (``benchmarks/bench_contrastive.py`` measures C = 10**6). For
    a small float32 ``weight`` (``C * K <= 131072``) and a scalar reduction the
    gradients are formed in the forward pass over chunks of examples instead,
    as there. Gradients are finite everywhere, including ``cos = +-1``
    (``d sin / d cos`` is taken as 0 there) and all-zero embeddings or centres
    (which stay at cosine 0).

    Args:
      embeddings: ``[..., D]`` floating point; L2-normalised inside.
      weight: class centres ``[C, D]``, or ``[C, K, D]`` with ``K`` sub-centres
        per class (the class cosine is the max over its sub-centres:
        pytorch-metric-learning's ``SubCenterArcFaceLoss``); normalised inside.
        Note the layout: pytorch-metric-learning stores ``[D, C]``.
      labels: ``[...]`` integer class ids in ``[0, C)`` (global ids with
        ``axis_name``).
      scale: :math:`s > 0`, traced and differentiable (pml's default 64).
      margin: :math:`m \in [0, \pi)` in radians, traced and differentiable.
      chunk_size: classes per chunk (static); ``None`` picks
        :func:`jaxloss.default_chunk_size` of ``(N * K, C)``.
      precision: ``lax.dot_general`` precision of the products (static).
      axis_name: ``None``, or inside ``jax.shard_map`` the mesh axis (or axes)
        over which the classes are split: ``weight`` is then this device's
        contiguous slice of classes, ``labels`` are global, and the per-example
        statistics are combined with one ``pmax`` and one ``psum`` of ``[N]``
        vectors; the loss is the same on every device. Static.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-example losses
      (``labels``' shape).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> e = jnp.array([[1.0, 0.0], [0.0, 2.0]]); w = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
      >>> y = jnp.array([0, 1])
      >>> unit = e / jnp.linalg.norm(e, axis=1, keepdims=True)
      >>> bool(jnp.allclose(jaxloss.arcface_loss(e, w, y, scale=4.0, margin=0.0),
      ...                   jaxloss.sparse_cross_entropy(4.0 * unit @ w.T, y)))
      True
      >>> round(float(jaxloss.arcface_loss(e, w, y, scale=4.0, margin=0.5)), 4)
      0.044
    """
    return _margin_loss(True, embeddings, weight, labels, scale, margin, chunk_size, precision, axis_name)


arcface_loss = margin_softmax(checks={"scale": POSITIVE, "margin": _ARC_MARGIN}, example=Example(
    _sample, sweep=("margin", (0.1, 0.2, 0.35, 0.5)), differentiable=(0, 1), grad_order=1), **_OPTIONS)(arcface_loss)


def cosface_loss(embeddings, weight, labels, *, scale=64.0, margin=0.35, chunk_size=None, precision=None,
                 axis_name=None):
    r"""CosFace: softmax cross-entropy with an additive cosine margin.

    With :math:`\cos\theta_{ij} = \hat e_i \cdot \hat w_j` between unit
    embeddings and unit class centres (the max over sub-centres for
    ``[C, K, D]``), scale :math:`s` and margin :math:`m`,

    .. math::
       \ell_i = -\log \frac{e^{s(\cos\theta_{iy_i} - m)}}
                {e^{s(\cos\theta_{iy_i} - m)} + \sum_{j \ne y_i} e^{s \cos\theta_{ij}}}

    Semantics of pytorch-metric-learning's ``CosFaceLoss`` (large margin cosine
    loss), reduction applied to the per-example cross-entropy. Wang et al.,
    "CosFace: Large Margin Cosine Loss for Deep Face Recognition" (2018).


    The cosine logits are never materialised: the loss streams over chunks of
    ``chunk_size`` classes (normalising each chunk of centres as it goes) like
    :func:`jaxloss.linear_cross_entropy`, with a ``jax.custom_vjp`` backward
    pass that recomputes each chunk, so temporary memory is a few
    ``[N, chunk_size]`` blocks -- neither ``[N, C]`` nor a ``[C, D]``-sized copy
    of ``weight`` (``benchmarks/bench_contrastive.py`` measures C = 10**6). For
    a small float32 ``weight`` (``C * K <= 131072``) and a scalar reduction the
    gradients are formed in the forward pass over chunks of examples instead,
    as there. Gradients are finite everywhere, including ``cos = +-1``
    (``d sin / d cos`` is taken as 0 there) and all-zero embeddings or centres
    (which stay at cosine 0).

    Args:
      embeddings: ``[..., D]`` floating point; L2-normalised inside.
      weight: class centres ``[C, D]``, or ``[C, K, D]`` with ``K`` sub-centres
        per class (the class cosine is the max over its sub-centres:
        pytorch-metric-learning's ``SubCenterArcFaceLoss``); normalised inside.
        Note the layout: pytorch-metric-learning stores ``[D, C]``.
      labels: ``[...]`` integer class ids in ``[0, C)`` (global ids with
        ``axis_name``).
      scale: :math:`s > 0`, traced and differentiable (pml's default 64).
      margin: :math:`m \ge 0`, traced and differentiable (pml's default 0.35).
      chunk_size: classes per chunk (static); ``None`` picks
        :func:`jaxloss.default_chunk_size` of ``(N * K, C)``.
      precision: ``lax.dot_general`` precision of the products (static).
      axis_name: ``None``, or inside ``jax.shard_map`` the mesh axis (or axes)
        over which the classes are split: ``weight`` is then this device's
        contiguous slice of classes, ``labels`` are global, and the per-example
        statistics are combined with one ``pmax`` and one ``psum`` of ``[N]``
        vectors; the loss is the same on every device. Static.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-example losses
      (``labels``' shape).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> e = jnp.array([[1.0, 0.0], [0.0, 2.0]]); w = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
      >>> round(float(jaxloss.cosface_loss(e, w, jnp.array([0, 1]), scale=4.0, margin=0.35)), 4)
      0.1057
    """
    return _margin_loss(False, embeddings, weight, labels, scale, margin, chunk_size, precision, axis_name)


cosface_loss = margin_softmax(checks={"scale": POSITIVE, "margin": _COS_MARGIN}, example=Example(
    _sample, sweep=("margin", (0.0, 0.1, 0.2, 0.35)), differentiable=(0, 1), grad_order=1), **_OPTIONS)(cosface_loss)


ArcFaceLoss = arcface_loss.Loss
CosFaceLoss = cosface_loss.Loss
