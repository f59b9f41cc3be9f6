r"""Knowledge distillation: a student's softmax matched to a teacher's.

:func:`distillation_loss` takes both heads' logits; :func:`linear_distillation_loss`
takes the hidden states and weights of both heads and streams them over
vocabulary chunks, so neither ``[N, V]`` logits array is built. Both share one
set of per-class divergence terms (forward KL, reverse KL, generalised JSD)
and the :math:`T^2` scaling of Hinton et al.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._checks import AXIS, POSITIVE, POSITIVE_INT_OR_NONE, Interval, choice
from ._core import Example, Layout, Role, builtin, compute_dtype
from ._sharding import to_varying
from ._streaming import (
    Config,
    chunk_start,
    default_chunk_size,
    explicit_sharding,
    outer_axes,
    project,
    split_stats,
)

distillation = builtin("distillation")

__all__ = [
    "distillation_loss", "DistillationLoss",
    "linear_distillation_loss", "LinearDistillationLoss",
]


def _logits_sample(rng: np.random.Generator) -> tuple:
    return (rng.normal(size=(6, 5)) * 1.5).astype(np.float32), (rng.normal(size=(6, 5)) * 1.5).astype(np.float32)


def _weighted_log_ratio(w, log_w, log_other):
    """``w (log_w - log_other)`` with 0 (value and gradient) where ``w == 0``."""
    zero = w == 0
    log_w = jnp.where(zero, jnp.zeros_like(log_w), log_w)
    log_other = jnp.where(zero, jnp.zeros_like(log_other), log_other)
    return jnp.where(zero, jnp.zeros_like(w), w * (log_w - log_other))


def _mixture_log(log_p, log_q, beta):
    """``log(beta p + (1 - beta) q)`` with ``-inf`` inputs allowed (not both)."""
    big_neg = jnp.asarray(jnp.finfo(log_p.dtype).min, log_p.dtype)
    a = jnp.where(log_p == -jnp.inf, big_neg, log_p + jnp.log(beta))
    b = jnp.where(log_q == -jnp.inf, big_neg, log_q + jnp.log1p(-beta))
    return jnp.logaddexp(a, b)


def distillation_terms(log_p, log_q, divergence, beta):
    """Per-class terms of the distillation divergence between the teacher's
    ``log p`` and the student's ``log q`` (both normalised): summing them over
    the classes gives ``KL(p||q)``, ``KL(q||p)`` or the generalised JSD. Shared
    with the streamed :func:`jaxloss.linear_distillation_loss`."""
    p, q = jnp.exp(log_p), jnp.exp(log_q)
    if divergence == "forward":
        return _weighted_log_ratio(p, log_p, log_q)
    if divergence == "reverse":
        return _weighted_log_ratio(q, log_q, log_p)
    log_m = _mixture_log(log_p, log_q, beta)
    return beta * _weighted_log_ratio(p, log_p, log_m) + (1.0 - beta) * _weighted_log_ratio(q, log_q, log_m)


@distillation(
    static={"divergence": choice("forward", "reverse", "jsd"), "axis": AXIS},
    checks={"temperature": POSITIVE, "beta": Interval(0.0, 1.0, lo_open=True, hi_open=True)},
    layout=Layout(axis="axis"),
    example=Example(_logits_sample, sweep=("temperature", (0.5, 1.0, 2.0, 4.0)), differentiable=(0, 1)),
)
def distillation_loss(student_logits, teacher_logits, *, temperature=1.0, divergence="forward", beta=0.5, axis=-1):
    r"""Knowledge-distillation loss between a student's and a teacher's logits.

    With temperature :math:`T`, :math:`p = \operatorname{softmax}(z_t / T)` (the
    teacher) and :math:`q = \operatorname{softmax}(z_s / T)` (the student), per
    example

    .. math::
       \ell = T^2 \cdot \begin{cases}
         \mathrm{KL}(p \,\|\, q) & \text{forward} \\
         \mathrm{KL}(q \,\|\, p) & \text{reverse} \\
         \beta\, \mathrm{KL}(p \,\|\, m) + (1 - \beta)\, \mathrm{KL}(q \,\|\, m),
           \quad m = \beta p + (1 - \beta) q & \text{jsd}
       \end{cases}

    ``"forward"`` is Hinton et al. (2015), "Distilling the Knowledge in a Neural
    Network" (the :math:`T^2` keeps the gradients' scale independent of
    :math:`T`); ``"reverse"`` the mode-seeking KL of MiniLLM (Gu et al., 2024);
    ``"jsd"`` the generalised Jensen-Shannon divergence of GKD (Agarwal et al.,
    2024, "On-Policy Distillation of Language Models"), TRL's
    ``GKDTrainer.generalized_jsd_loss`` with the same :math:`\beta`, times
    :math:`T^2`. The teacher is not stop-gradiented (wrap it in
    ``jax.lax.stop_gradient`` for the usual frozen teacher). A ``-inf`` teacher
    logit (a masked class) gives :math:`p = 0` there, whose terms are 0 in value
    and gradient for ``"forward"`` and ``"jsd"`` (``"reverse"`` is then ``+inf``
    unless the student also gives it probability 0). Classes along ``axis``.

    Args:
      student_logits: ``[..., V, ...]`` student logits, classes along ``axis``.
      teacher_logits: teacher logits of the same shape.
      temperature: :math:`T > 0` (traced), applied to both.
      divergence: ``"forward"``, ``"reverse"`` or ``"jsd"`` (static).
      beta: :math:`\beta \in (0, 1)`, the JSD's mixture weight (traced; used
        by ``"jsd"`` only; use ``"forward"``/``"reverse"`` for the limits).
      axis: the class axis (static).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-example divergences.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> s = jnp.log(jnp.array([[0.33, 0.33, 0.34]])); t = jnp.log(jnp.array([[0.5, 0.3, 0.2]]))
      >>> round(float(jaxloss.distillation_loss(s, t)), 6)  # KL(P||Q) of the worked example
      0.073039
    """
    ax = axis % student_logits.ndim
    log_q = jax.nn.log_softmax(student_logits / temperature, axis=ax)
    log_p = jax.nn.log_softmax(teacher_logits / temperature, axis=ax)
    return temperature * temperature * jnp.sum(distillation_terms(log_p, log_q, divergence, beta), axis=ax)


def _tempered(temperature, raw, chunk, cols, labels):
    """``z = raw / T`` for one chunk of a head (no bias)."""
    return raw / temperature


def _streamed_divergence(cfg, divergence, beta, temperature, hs, ws, ht, wt, lse_s, lse_t):
    """Pass 2: per-row sums of the divergence's terms over vocabulary chunks, given
    both (tempered) log-sum-exps. The chunk body is checkpointed, so reverse mode
    through the loop recomputes each chunk's logits instead of storing them."""
    vocab = ws.shape[0]
    chunk = cfg.chunk
    cols0 = lax.iota(jnp.int32, chunk)

    @jax.checkpoint
    def body(k, total):
        start = chunk_start(k, chunk, vocab)
        fresh = (start + cols0 >= k * chunk)[None, :]
        zs = project(cfg, hs, lax.dynamic_slice_in_dim(ws, start, chunk, axis=0)) / temperature
        zt = project(cfg, ht, lax.dynamic_slice_in_dim(wt, start, chunk, axis=0)) / temperature
        terms = distillation_terms(zt - lse_t[:, None], zs - lse_s[:, None], divergence, beta)
        return total + jnp.sum(jnp.where(fresh, terms, jnp.zeros_like(terms)), axis=1)

    return lax.fori_loop(0, -(-vocab // chunk), body, jnp.zeros_like(hs[:, 0], dtype=cfg.acc))


def _ld_sample(rng: np.random.Generator) -> tuple:
    hs = rng.normal(size=(4, 6)).astype(np.float32)
    ws = (rng.normal(size=(19, 6)) * 0.5).astype(np.float32)
    ht = rng.normal(size=(4, 5)).astype(np.float32)
    wt = (rng.normal(size=(19, 5)) * 0.5).astype(np.float32)
    return hs, ws, ht, wt


def _ld_validate(name, student_hidden, student_weight, teacher_hidden, teacher_weight, **_):
    for who, h, w in (("student", student_hidden, student_weight), ("teacher", teacher_hidden, teacher_weight)):
        if h.ndim < 1 or w.ndim != 2 or w.shape[1] != h.shape[-1]:
            raise ValueError(f"{name}: {who}_weight {tuple(w.shape)} must be [V, D] with the D of {who}_hidden "
                             f"{tuple(h.shape)}")
    if student_weight.shape[0] != teacher_weight.shape[0] or student_weight.shape[0] == 0:
        raise ValueError(f"{name}: student_weight {tuple(student_weight.shape)} and teacher_weight "
                         f"{tuple(teacher_weight.shape)} must share a non-empty vocabulary V (first axis)")
    if tuple(student_hidden.shape[:-1]) != tuple(teacher_hidden.shape[:-1]):
        raise ValueError(f"{name}: student_hidden {tuple(student_hidden.shape)} and teacher_hidden "
                         f"{tuple(teacher_hidden.shape)} must have the same leading (token) axes")


@distillation(
    static={"divergence": choice("forward", "reverse", "jsd"), "chunk_size": POSITIVE_INT_OR_NONE},
    checks={"temperature": POSITIVE, "beta": Interval(0.0, 1.0, lo_open=True, hi_open=True)},
    layout=Layout({
        "student_hidden": Role(shape="trailing", native=True), "student_weight": Role(shape="free", native=True),
        "teacher_hidden": Role(shape="trailing", native=True), "teacher_weight": Role(shape="free", native=True),
    }),
    validate=_ld_validate,
    example=Example(_ld_sample, sweep=("temperature", (0.5, 1.0, 2.0, 4.0)), differentiable=(0, 1, 2, 3)),
)
def linear_distillation_loss(student_hidden, student_weight, teacher_hidden, teacher_weight, *, temperature=1.0,
                             divergence="forward", beta=0.5, chunk_size=None):
    r"""Distillation loss between two linear heads, streamed over the vocabulary.

    Exactly :func:`jaxloss.distillation_loss` of the student logits
    :math:`z_s = h_s W_s^\top` and the teacher logits :math:`z_t = h_t W_t^\top`
    (value and the gradients of all four inputs), without building either
    ``[N, V]`` array. With :math:`p = \operatorname{softmax}(z_t / T)`,
    :math:`q = \operatorname{softmax}(z_s / T)`:

    .. math::
       \ell = T^2 \cdot \begin{cases}
         \sum_v p_v (\log p_v - \log q_v) & \text{forward} \\
         \sum_v q_v (\log q_v - \log p_v) & \text{reverse} \\
         \sum_v \beta p_v (\log p_v - \log m_v) + (1 - \beta) q_v (\log q_v - \log m_v),
           \ m = \beta p + (1-\beta) q & \text{jsd}
       \end{cases}

    Two passes over vocabulary chunks: the first streams both log-sum-exps
    (the engine of :func:`linear_cross_entropy`, whose backward pass recomputes
    each chunk); the second accumulates the divergence's terms chunk by chunk in
    a ``lax.fori_loop`` whose body is ``jax.checkpoint``-ed, so the backward pass
    recomputes each chunk's ``[N, chunk_size]`` logits instead of storing them.
    Temporary memory is a few ``[N, chunk_size]`` blocks plus the weights'
    gradients. The anchor is Liger-Kernel's fused-linear JSD/KL distillation
    (``LigerFusedLinearJSD``), with jaxloss's :math:`T^2` scaling and
    :math:`\beta` convention (:func:`distillation_loss`). The teacher is not
    stop-gradiented (wrap its inputs in ``jax.lax.stop_gradient``).

    Args:
      student_hidden: ``[..., Ds]`` student hidden states.
      student_weight: ``[V, Ds]`` student output embedding.
      teacher_hidden: ``[..., Dt]`` teacher hidden states (same leading axes).
      teacher_weight: ``[V, Dt]`` teacher output embedding (same ``V``).
      temperature: :math:`T > 0` (traced).
      divergence: ``"forward"``, ``"reverse"`` or ``"jsd"`` (static).
      beta: :math:`\beta \in (0, 1)`, the JSD's mixture weight (traced; ``"jsd"`` only).
      chunk_size: vocabulary columns per chunk (static); ``None`` picks
        ``default_chunk_size(4 * N, V)`` (2048 at ``N = 4096``).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-token divergences
      (the hidden states' leading shape).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> hs, ws = jnp.array([[1.0, 0.0]]), jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
      >>> ht, wt = jnp.array([[0.0, 2.0]]), ws
      >>> a = jaxloss.linear_distillation_loss(hs, ws, ht, wt, divergence="jsd", chunk_size=2)
      >>> b = jaxloss.distillation_loss(hs @ ws.T, ht @ wt.T, divergence="jsd")
      >>> bool(jnp.allclose(a, b))
      True
    """
    lead = student_hidden.shape[:-1]
    acc = compute_dtype(student_hidden, student_weight, teacher_hidden, teacher_weight)
    hs = student_hidden.reshape((-1, student_hidden.shape[-1]))
    ht = teacher_hidden.reshape((-1, teacher_hidden.shape[-1]))
    vocab = student_weight.shape[0]
    # a quarter of linear_cross_entropy's chunk: pass 2 holds several [N, chunk] blocks of both heads
    chunk = default_chunk_size(4 * hs.shape[0], vocab) if chunk_size is None else min(int(chunk_size), vocab)
    cfg = Config(chunk, None, acc)
    temp = jnp.asarray(temperature, acc)
    beta = jnp.asarray(beta, acc)
    outer = outer_axes(student_weight, None)
    if not outer:
        d = _divergence_rows(cfg, divergence, None, temp, beta, hs, student_weight, ht, teacher_weight)
    else:
        # both weights' rows split on an explicit mesh: each device streams its slice
        # in a shard_map (manual over the tokens' axes too), combined by psum
        if outer_axes(teacher_weight, None) != outer:
            raise ValueError(f"linear_distillation_loss: student_weight's rows are split over mesh axes {outer}; "
                             f"split teacher_weight's the same way (jax.sharding.reshard)")
        P = jax.sharding.PartitionSpec
        spec = getattr(explicit_sharding(hs), "spec", None)
        batch = tuple(spec[0]) if spec and isinstance(spec[0], tuple) else ((spec[0],) if spec and spec[0] else ())
        batch = () if set(batch) & set(outer) else batch
        tok, row = P(batch or None), P(outer)
        n_split = int(np.prod([jax.sharding.get_abstract_mesh().shape[a] for a in outer]))
        cfg = cfg._replace(chunk=max(1, min(cfg.chunk, vocab // n_split)))
        d = jax.shard_map(
            lambda *a: _divergence_rows(cfg, divergence, outer, *a),
            in_specs=(P(), P(), tok, row, tok, row), out_specs=tok, axis_names=frozenset(outer + batch),
        )(temp, beta, hs, student_weight, ht, teacher_weight)
    return (temp * temp * d).reshape(lead)


def _divergence_rows(cfg, divergence, axis_name, temp, beta, hs, ws, ht, wt):
    """Per-row divergence (before the T^2 factor): pass 1, both log-sum-exps, then
    pass 2; with ``axis_name`` the weights are this device's vocabulary slice."""
    labels = jnp.zeros_like(hs[:, 0], dtype=jnp.int32)
    lse_s = split_stats(cfg, _tempered, temp, hs, (ws,), None, labels, axis_name).lse
    lse_t = split_stats(cfg, _tempered, temp, ht, (wt,), None, labels, axis_name).lse
    if axis_name is not None:
        hs, ht, temp, beta = (to_varying(x, axis_name) for x in (hs, ht, temp, beta))
    d = _streamed_divergence(cfg, divergence, beta, temp, hs, ws, ht, wt, lse_s, lse_t)
    return d if axis_name is None else lax.psum(d, axis_name)


DistillationLoss = distillation_loss.Loss
LinearDistillationLoss = linear_distillation_loss.Loss
