r"""Cross-entropy for large vocabularies and vocabulary-sharded logits.

A language-model head turns hidden states ``[N, D]`` into logits ``[N, V]``; at
``N = 8192`` tokens and ``V = 256000`` that is 8 GB of float32 before the
backward pass doubles it. This module never builds that array:

* :func:`linear_cross_entropy` fuses the projection ``hidden @ weight.T (+ bias)``
  with the cross-entropy. The forward pass streams a log-sum-exp over chunks of
  the vocabulary inside one ``lax.fori_loop`` (so compile time does not depend on
  the number of chunks); a ``jax.custom_vjp`` backward pass recomputes each
  chunk's logits and accumulates the gradients of ``hidden``, ``weight`` and
  ``bias`` chunk by chunk. Peak temporary memory is a few ``[N, chunk]`` blocks.
  Inside ``jax.shard_map`` with ``axis_name=``, ``weight`` is a vocabulary
  slice and the per-token statistics are combined across devices, so tensor
  parallelism needs neither the logits nor a gathered weight.
* :func:`vocab_parallel_cross_entropy` is the cross-entropy for use inside
  ``jax.shard_map`` when each device holds a contiguous slice of the vocabulary:
  three small all-reduces (max, target logit, sum of exponentials) instead of an
  all-gather of the logits.

Both follow :func:`jaxloss.sparse_cross_entropy`'s semantics (label smoothing,
z-loss, ``ignore_index``, reduction, weights, where); see ``docs/large_vocab.md``
for data-parallel and tensor-parallel training steps. The head they share
(streamed statistics, routes, chunk sizes) is ``jaxloss._streaming``.

``vocab_parallel_cross_entropy`` only runs under a named mesh axis, so it is not
in :data:`jaxloss.REGISTRY` (whose shared checks call every loss on plain
arrays); the multi-device tests cover it.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from ._checks import (
    ANY,
    FLAG,
    NONNEGATIVE,
    OPTIONAL_INT,
    POSITIVE,
    POSITIVE_INT_OR_NONE,
    UNIT_HALF_OPEN,
    check_class_vector,
)
from ._core import Example, Layout, Role, Unreduced, builtin, compute_dtype, loss
from ._numerics import softcap
from ._sharding import check_axis_name
from ._streaming import check_head, check_nonnegative_labels, default_chunk_size, head_cross_entropy

__all__ = [
    "linear_cross_entropy", "LinearCrossEntropy",
    "vocab_parallel_cross_entropy", "VocabParallelCrossEntropy",
    "default_chunk_size",
]


# ---------------------------------------------------------------------------
# The linear head on the streaming engine (jaxloss/_streaming.py)
# ---------------------------------------------------------------------------


def _linear_transform(cap, raw, chunk, cols, labels):
    """``z = softcap(raw + bias)`` for one chunk (``chunk = (weight[, bias])``)."""
    z = raw if len(chunk) == 1 else raw + chunk[1].astype(raw.dtype)[None, :]
    return z if cap is None else cap * jnp.tanh(z / cap)



# ---------------------------------------------------------------------------
# linear_cross_entropy: the public loss
# ---------------------------------------------------------------------------


def _lce_sample(rng: np.random.Generator) -> tuple:
    hidden = rng.normal(size=(6, 8)).astype(np.float32)
    weight = (rng.normal(size=(37, 8)) * 0.5).astype(np.float32)
    labels = rng.integers(0, 37, size=(6,)).astype(np.int32)
    return hidden, weight, labels



def _lce_validate(name, hidden, weight, labels, *, bias, class_weights, ignore_index, chunk_size, token_chunk_size,
                  precision, axis_name, **_):
    check_head(
        name, hidden, weight, labels, hidden_arg="hidden", ranks=(2,), shapes="[V, D]",
        transpose="[V, D] (transpose a [D, V] kernel)", empty=lambda _: "weight must have at least one row "
        "(vocabulary of size 0)", sharded=_vocab_split, precision=precision, axis_name=axis_name,
        ignore_index=ignore_index, params=(("bias", bias),),
    )
    if bias is not None and tuple(jnp.shape(bias)) != (weight.shape[0],):
        raise ValueError(f"{name}: bias must have shape ({weight.shape[0]},) = [V], got {tuple(jnp.shape(bias))}")
    if bias is not None and not jnp.issubdtype(jnp.result_type(bias), jnp.floating):
        raise TypeError(f"{name}: bias must be a floating-point array, got dtype {jnp.result_type(bias)}")
    check_class_vector(name, "class_weights", class_weights, weight.shape[0])
    if class_weights is not None and axis_name is not None:
        raise ValueError(
            f"{name}: class_weights with axis_name is not supported (each device would need the weights of "
            f"the whole vocabulary); weight the tokens with weights=class_weights[labels] instead"
        )
    if token_chunk_size is not None and (chunk_size is not None or axis_name is not None):
        raise ValueError(
            f"{name}: token_chunk_size selects the route that forms the gradients in the forward pass over "
            f"chunks of tokens with the whole vocabulary; it cannot be combined with "
            f"{'chunk_size' if chunk_size is not None else 'axis_name'} (vocabulary chunks)"
        )


def _vocab_split(arg, split, weight_split):
    return (
        f"{arg} is split over the vocabulary along mesh axes {split} of an explicit mesh and weight along "
        f"{weight_split}; split both the same way (jax.sharding.reshard)"
    )


@builtin("large_vocab")(
    static={"ignore_index": OPTIONAL_INT, "chunk_size": POSITIVE_INT_OR_NONE,
            "token_chunk_size": POSITIVE_INT_OR_NONE, "precision": ANY, "axis_name": ANY, "return_stats": FLAG},
    checks={"label_smoothing": UNIT_HALF_OPEN, "z_loss": NONNEGATIVE, "logit_softcap": POSITIVE,
            "class_weights": NONNEGATIVE},
    layout=Layout({
        "hidden": Role(shape="free", native=True), "weight": Role(shape="free", native=True),
        "labels": Role("labels", "reduced"),
    }),
    validate=_lce_validate,
    example=Example(_lce_sample, sweep=("label_smoothing", (0.0, 0.05, 0.1, 0.2)), differentiable=(0, 1),
                    grad_order=1),
)
def linear_cross_entropy(
    hidden,
    weight,
    labels,
    *,
    bias=None,
    class_weights=None,
    ignore_index=None,
    label_smoothing=0.0,
    z_loss=0.0,
    logit_softcap=None,
    chunk_size=None,
    token_chunk_size=None,
    precision=None,
    axis_name=None,
    return_stats=False,
):
    r"""Cross-entropy of a linear head, without materialising the logits.

    With logits :math:`z = s(h W^\top + b)` for a hidden state :math:`h`, where
    :math:`s(x) = c \tanh(x / c)` is the optional soft-cap,
    :math:`\operatorname{lse} = \log \sum_{j=1}^{V} e^{z_j}` and class weights
    :math:`w_j` (1 when not given), the per-token loss is

    .. math::
       \ell = w_y \left[(1 - \epsilon)(\operatorname{lse} - z_y)
            + \lambda_z \operatorname{lse}^2\right]
            + \frac{\epsilon}{V}\sum_{j=1}^{V} w_j (\operatorname{lse} - z_j)

    i.e. exactly ``sparse_cross_entropy(s(hidden @ weight.T + bias), labels,
    class_weights=w, label_smoothing=eps, z_loss=lambda_z, ignore_index=...)``
    in value and in the gradients of ``hidden``, ``weight`` and ``bias``
    (PyTorch's ``F.linear_cross_entropy`` / ``cross_entropy(..., weight=w)``:
    ``"mean"`` divides by :math:`\sum_i w_{y_i}` over the counted tokens). The
    ``[N, V]`` logits are never built, in the forward or the backward pass.

    Two routes, both exact, chosen by the arguments:

    * **Gradients in the forward pass** (the default for ``"mean"``, ``"sum"``
      and ``"sum_and_weight"`` when ``weight`` is float32/float64, ``V <=
      131072`` and neither ``chunk_size`` nor ``axis_name`` is given; or
      whenever ``token_chunk_size`` is given): one ``lax.fori_loop`` over
      chunks of tokens, each meeting the whole vocabulary, so its log-sum-exp
      is exact at once and the gradients of ``hidden``, ``weight`` and ``bias``
      are formed right there; the backward pass only scales them. Three matrix
      products per token, as the naive program, and temporary memory of a few
      ``[token_chunk_size, V]`` blocks (``benchmarks/bench_large_vocab.py``:
      under 10% of the naive program at ``N=4096, V=32768``).
    * **Vocabulary chunks** (``"none"``, ``axis_name``, ``chunk_size``, a
      bf16/f16 weight or a larger vocabulary): the forward pass streams an
      online log-sum-exp (with the weighted sum of logits for label smoothing,
      the target logit and the argmax) over vocabulary chunks; a
      ``jax.custom_vjp`` backward pass recomputes each chunk, with
      :math:`\partial \ell / \partial z_j = (w_y(1 + 2\lambda_z
      \operatorname{lse}) + \epsilon\bar w) p_j - w_y(1 - \epsilon)[j = y] -
      \epsilon w_j / V` (:math:`\bar w = \sum_j w_j / V`). Temporary memory is
      a few ``[N, chunk_size]`` blocks plus ``[N, D]``.

    Either way the compiled program is the same size for any number of chunks,
    and ``V`` (or ``N``) need not be a multiple of the chunk: the last chunk is
    shifted to end at the array's end and its overlap is masked, so nothing is
    padded or copied.

    Under ``jit`` with the batch sharded (``NamedSharding``) it needs nothing
    special; with ``weight`` sharded over the vocabulary GSPMD gives the same
    result but gathers ``weight`` -- for tensor parallelism without that, call
    it inside ``shard_map`` with ``axis_name`` (see ``docs/large_vocab.md``).

    Matrix products accumulate in float32 (``preferred_element_type``), float64
    for float64 inputs; a bf16 ``weight`` is read chunk by chunk in bf16 (on the
    CPU backend XLA converts the whole bf16 weight to float32 before any
    dynamically sliced loop; TPU and GPU slice bf16 natively). Forward-mode
    differentiation (``jax.jvp``, ``jax.hessian``) is not supported (a
    ``custom_vjp``); reverse mode is.

    Args:
      hidden: ``[..., D]`` hidden states (floating point).
      weight: ``[V, D]`` output embedding (the layout of a tied embedding table;
        pass ``kernel.T`` for a ``[D, V]`` dense kernel -- XLA folds the
        transpose).
      labels: ``[...]`` integer labels in ``[0, V)`` (or ``ignore_index``).
        Out-of-range labels raise ``ValueError`` when concrete and give a NaN
        loss for that token under ``jit``.
      bias: optional ``[V]`` output bias; it is differentiable like ``hidden``.
      class_weights: ``None`` or ``[V]`` non-negative per-class weights
        (PyTorch's ``weight``): they scale a token's cross-entropy and z-loss
        by its label's weight, the smoothing term by every class's weight, and
        ``"mean"`` divides by the summed weights of the counted tokens' labels.
        Not with ``axis_name``.
      ignore_index: label value whose tokens contribute 0 and are left out of the
        mean (PyTorch's ``ignore_index``; e.g. ``-100``); all ignored gives 0 with
        zero gradients. Static.
      label_smoothing: :math:`\epsilon \in [0, 1)`, uniform over the ``V`` classes.
      z_loss: :math:`\lambda_z \ge 0`, the PaLM auxiliary loss on
        :math:`\operatorname{lse}^2` (e.g. ``1e-4``).
      logit_softcap: ``None`` or :math:`c > 0` (Gemma 2 uses 30.0).
      chunk_size: vocabulary columns per chunk of the vocabulary-chunk route
        (static); giving it selects that route. ``None`` picks
        :func:`default_chunk_size` (``N * chunk_size <= 2**25``, at most 8192)
        when that route is taken.
      token_chunk_size: tokens per chunk of the gradients-in-the-forward-pass
        route (static); giving it selects that route for scalar reductions.
        ``None`` picks the largest power of two up to 1024 whose
        ``[token_chunk_size, V]`` block holds at most ``2**22`` elements.
      precision: ``lax.dot_general`` precision of the products (static), e.g.
        ``"highest"`` for full float32 on TPU.
      axis_name: ``None`` (default), or -- inside ``jax.shard_map`` -- the mesh
        axis (or tuple of axes) over which the vocabulary is split: ``weight``
        (and ``bias``) are then this device's contiguous slice ``[V_local, D]``
        and ``labels`` are global. Each device streams over its slice and the
        per-token log-sum-exp, target logit and logit sum are combined with one
        ``pmax`` and one ``psum`` of ``[N]`` vectors: no logits and no weight
        are gathered. The result is the same on every device of the axis.
        Static.
      return_stats: when True (static) return ``(loss, stats)`` with
        ``stats["lse"]`` the per-token log-sum-exp (``labels``' shape),
        ``stats["z_loss"]`` the mean of :math:`\operatorname{lse}^2` over the
        counted tokens (``where`` True, non-zero weight, not ignored), unscaled
        whatever ``z_loss`` is, and ``stats["accuracy"]`` the fraction of the
        counted tokens whose largest logit is at the label (ties go to the
        lowest class index), all found while streaming and carrying no
        gradient. Both are 0 when nothing is counted.

    Returns:
      The reduced loss (float32 for bf16/f32 inputs); with ``reduction="none"``
      the per-token losses, shaped like ``labels`` (0 for ignored tokens); with
      ``return_stats=True`` the pair ``(loss, stats)``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxloss
      >>> h = jnp.array([[1.0, 0.0], [0.0, 2.0]]); w = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
      >>> y = jnp.array([0, 2])
      >>> round(float(jaxloss.linear_cross_entropy(h, w, y, chunk_size=2)), 6)
      0.810309
      >>> float(jaxloss.linear_cross_entropy(h, w, y, ignore_index=2, reduction="sum")) == float(
      ...     jaxloss.linear_cross_entropy(h[:1], w, y[:1], reduction="sum"))
      True
      >>> loss, stats = jaxloss.linear_cross_entropy(h, w, y, return_stats=True)
      >>> float(stats["accuracy"])  # token 2's logits tie at classes 1 and 2: argmax 1
      0.5

    References: Wijmans et al., "Cut Your Losses in Large-Vocabulary Language
    Models" (2024); Chowdhery et al., "PaLM" (2022) for the z-loss; Gemma 2 for
    the soft-cap. PyTorch equivalent: ``F.cross_entropy(F.linear(h, W, b), y)``.
    """
    acc = compute_dtype(hidden, weight)
    cap = None if logit_softcap is None else jnp.asarray(logit_softcap, acc)
    params = (weight,) if bias is None else (weight, bias)
    hp = (jnp.asarray(label_smoothing, acc), jnp.asarray(z_loss, acc), class_weights)
    return head_cross_entropy(
        hidden, params, labels, _linear_transform, cap, hp, smooth_weights=class_weights, ignore_index=ignore_index,
        chunk_size=chunk_size, token_chunk_size=token_chunk_size, precision=precision, axis_name=axis_name,
        return_stats=return_stats,
    )

# ---------------------------------------------------------------------------
# vocab_parallel_cross_entropy: for shard_map with a vocabulary-sharded axis
# ---------------------------------------------------------------------------


def _vp_validate(name, local_logits, labels, *, axis_name, ignore_index, **_):
    if axis_name is None:
        raise TypeError(
            f"{name}: axis_name is required: the shard_map mesh axis (or tuple of axes) over which "
            f"the vocabulary is split"
        )
    if local_logits.ndim < 1:
        raise ValueError(f"{name}: local_logits must have shape [..., V_local], got a scalar")
    check_nonnegative_labels(name, labels, ignore_index)


@loss(
    family="large_vocab",
    static={"axis_name": ANY, "ignore_index": OPTIONAL_INT},
    checks={"label_smoothing": UNIT_HALF_OPEN, "z_loss": NONNEGATIVE, "logit_softcap": POSITIVE},
    layout=Layout({"labels": Role("labels", "reduced")}, axis=-1),
    validate=_vp_validate,
    example=Example(grad_order=1),
    register=False,  # it needs a named mesh axis, so the shared checks cannot call it
)
def vocab_parallel_cross_entropy(
    local_logits, labels, *, axis_name=None, ignore_index=None, label_smoothing=0.0, z_loss=0.0,
    logit_softcap=None,
):
    r"""Sparse cross-entropy of logits whose vocabulary is split across devices.

    For use inside ``jax.shard_map`` where device :math:`k` of the mesh axis
    ``axis_name`` holds the contiguous vocabulary slice
    :math:`[k V_\ell, (k+1) V_\ell)` of the logits (``P(..., axis_name)`` on the
    last axis) and every device holds the same (global) ``labels``. With
    :math:`m = \max_j z_j` (all-reduced max, no gradient through it),

    .. math::
       \operatorname{lse} = m + \log \textstyle\sum_{\text{devices}} \sum_{j \in \text{slice}} e^{z_j - m},
       \qquad
       \ell = \operatorname{lse} - (1 - \epsilon) z_y - \frac{\epsilon}{V}\sum_j z_j + \lambda_z \operatorname{lse}^2

    where :math:`z_y` and :math:`\sum_j z_j` are all-reduced sums of the local
    parts. Value and gradients equal :func:`jaxloss.sparse_cross_entropy` on the
    gathered ``[..., V]`` logits, with one ``pmax`` and three ``psum`` of
    ``[...]``-shaped arrays instead of an all-gather of the logits. The result is
    the same on every device of ``axis_name`` (use ``out_specs=P()``).

    The reduction is over the tokens this call sees; if the batch is also split
    over a data axis, average across it (``jax.lax.pmean``) or let the caller
    combine per-device ``"sum"`` results. Not in :data:`jaxloss.REGISTRY`: it
    needs a named axis. A batch-sharded loss needs no special function:
    use :func:`linear_cross_entropy` or ``sparse_cross_entropy`` under ``jit``.

    Args:
      local_logits: ``[..., V_local]``, this device's slice of the logits.
      labels: ``[...]`` global integer labels in ``[0, V)`` with
        ``V = V_local * axis_size`` (or ``ignore_index``); out-of-range labels
        give a NaN loss for that token (they cannot be checked before the
        collectives run, except negative concrete ones).
      axis_name: the mesh axis name (or tuple of names) the vocabulary is split
        over. Required, static.
      ignore_index: label whose tokens contribute 0 and are left out of the mean.
      label_smoothing: :math:`\epsilon \in [0, 1)`, uniform over all ``V`` classes.
      z_loss: :math:`\lambda_z \ge 0`.
      logit_softcap: ``None`` or :math:`c > 0`: each device replaces its finite
        logits :math:`x` by :math:`c \tanh(x / c)` first (elementwise, so this
        equals capping the gathered logits), as :func:`sparse_cross_entropy`.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-token losses shaped
      like ``labels``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxloss
      >>> from jax.sharding import PartitionSpec as P
      >>> mesh = jax.make_mesh((1,), ("vocab",), axis_types=(jax.sharding.AxisType.Auto,))
      >>> f = jax.shard_map(
      ...     lambda z, y: jaxloss.vocab_parallel_cross_entropy(z, y, axis_name="vocab"),
      ...     mesh=mesh, in_specs=(P(None, "vocab"), P()), out_specs=P())
      >>> round(float(f(jnp.array([[2.0, 1.0, 0.1]]), jnp.array([0]))), 6)
      0.41703

    Reference: Megatron-LM's ``vocab_parallel_cross_entropy`` (Shoeybi et al.,
    2019).
    """
    v_local = local_logits.shape[-1]
    check_axis_name("vocab_parallel_cross_entropy", axis_name)  # after every shape check: at trace time
    n_dev = lax.axis_size(axis_name)
    vocab = v_local * n_dev
    offset = lax.axis_index(axis_name) * v_local
    z = local_logits if logit_softcap is None else softcap(local_logits, logit_softcap)
    y = labels.astype(jnp.int32)
    local = y - offset
    mine = (local >= 0) & (local < v_local)
    picked = jnp.take_along_axis(z, jnp.clip(local, 0, v_local - 1)[..., None], axis=-1)[..., 0]
    m = lax.pmax(lax.stop_gradient(jnp.max(z, axis=-1)), axis_name)
    # One all-reduce for the three sums: exponentials, target logit, all logits.
    s, zy, sz = lax.psum(
        (
            jnp.sum(jnp.exp(z - m[..., None]), axis=-1),
            jnp.where(mine, picked, jnp.zeros_like(picked)),
            jnp.sum(z, axis=-1),
        ),
        axis_name,
    )
    lse = m + jnp.log(s)
    value = lse - (1.0 - label_smoothing) * zy - label_smoothing * (sz / vocab) + z_loss * lse * lse
    in_range = (y >= 0) & (y < vocab)
    value = jnp.where(in_range, value, jnp.nan)
    if ignore_index is None:
        return value
    keep = labels != ignore_index
    return Unreduced(jnp.where(keep, value, jnp.zeros_like(value)), keep.astype(value.dtype))


LinearCrossEntropy = linear_cross_entropy.Loss
VocabParallelCrossEntropy = vocab_parallel_cross_entropy.Loss
