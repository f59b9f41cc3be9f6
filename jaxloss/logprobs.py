r"""Log-probabilities of label tokens for post-training (DPO, ORPO, SimPO, GRPO inputs).

:func:`sequence_logprobs` sums (or averages) per-token log-probabilities of
materialised logits over each sequence; :func:`linear_sequence_logprobs` does
the same from the hidden states and the head's weight, streamed over
vocabulary chunks so that the ``[B, T, V]`` logits are never built. Plain
differentiable functions, not registry losses (no ``reduction``): their outputs
are the inputs of :mod:`jaxloss.preference`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ._checks import check_labels
from ._core import compute_dtype
from ._streaming import Config, default_chunk_size, outer_axes, split_stats

__all__ = ["sequence_logprobs", "linear_sequence_logprobs"]



def _linear(cap, raw, chunk, cols, labels):
    """The logits of one chunk of a linear head: the products themselves."""
    return raw


def _check_sequence_inputs(name, lead, labels, mask, what):
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        raise TypeError(f"{name}: labels must be integer token ids, got dtype {jnp.result_type(labels)}")
    if tuple(labels.shape) != tuple(lead) or len(lead) < 1:
        raise ValueError(f"{name}: labels {tuple(labels.shape)} must have the shape of {what} without its last "
                         f"axis, {tuple(lead)} ([B, T])")
    if mask is not None:
        if tuple(jnp.shape(mask)) != tuple(labels.shape):
            raise ValueError(f"{name}: mask {tuple(jnp.shape(mask))} must have the shape of labels "
                             f"{tuple(labels.shape)}")
        if jnp.result_type(mask) != jnp.bool_:
            raise TypeError(f"{name}: mask must be boolean, got dtype {jnp.result_type(mask)}")


def _per_sequence(tok, labels, mask, vocab, average):
    """Masked per-token log-probs summed (or averaged) over the last axis; NaN for
    an unmasked out-of-range label; 0 for a fully masked sequence."""
    keep = jnp.ones(labels.shape, bool) if mask is None else mask
    in_range = (labels >= 0) & (labels < vocab)
    tok = jnp.where(keep, jnp.where(in_range, tok, jnp.nan), jnp.zeros_like(tok))
    total = jnp.sum(tok, axis=-1)
    if not average:
        return total
    n = jnp.sum(keep, axis=-1).astype(total.dtype)
    return total / jnp.maximum(n, 1)


def sequence_logprobs(logits, labels, *, mask=None, average=False):
    r"""Per-sequence log-probability of the label tokens under ``logits``.

    .. math::
       s_b = \sum_t m_{bt} \log \operatorname{softmax}(z_{bt})_{y_{bt}}
           = \sum_t m_{bt} \bigl(z_{bt y_{bt}} - \log\textstyle\sum_v e^{z_{btv}}\bigr),
       \qquad \text{or } s_b / \max(1, \textstyle\sum_t m_{bt}) \text{ with } ``average=True``

    The quantity DPO-style losses take (TRL's ``get_batch_logps``; the labels
    are already shifted: ``labels[:, t]`` is the token that ``logits[:, t]``
    predicts). Only ``[B, T]`` per-token values are formed (a log-sum-exp and
    a gather), not a second ``[B, T, V]`` array of log-probabilities. A plain
    differentiable function, not a registry loss (no ``reduction``).

    Args:
      logits: ``[B, T, V]`` floating-point logits (any leading axes before ``T``).
      labels: ``[B, T]`` integer token ids in ``[0, V)``; entries where ``mask`` is
        False are ignored whatever they hold (e.g. ``-100``). An unmasked label
        outside ``[0, V)`` raises ``ValueError`` when concrete and gives NaN for
        its sequence under ``jit``.
      mask: optional ``[B, T]`` boolean mask of the counted tokens (the
        completion); ``None`` counts every token. Masked logits must be finite
        (their gradient is 0).
      average: when True, divide each sequence's sum by its number of counted
        tokens (IPO, ORPO, SimPO); a fully masked sequence gives 0 either way.

    Returns:
      ``[B]`` per-sequence log-probabilities (float32 for bf16/f32 logits).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> logits = jnp.log(jnp.array([[[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]]))
      >>> labels = jnp.array([[0, 1, -100]]); mask = jnp.array([[True, True, False]])
      >>> round(float(jaxloss.sequence_logprobs(logits, labels, mask=mask)[0]), 6)  # log 0.5 + log 0.1
      -2.995732
    """
    name = "sequence_logprobs"
    if not jnp.issubdtype(jnp.result_type(logits), jnp.floating):
        raise TypeError(f"{name}: logits must be floating point, got dtype {jnp.result_type(logits)}")
    if logits.ndim < 2:
        raise ValueError(f"{name}: logits must have shape [B, T, V], got {tuple(logits.shape)}")
    _check_sequence_inputs(name, logits.shape[:-1], labels, mask, "logits")
    vocab = logits.shape[-1]
    y = labels.astype(jnp.int32) if mask is None else jnp.where(mask, labels, 0).astype(jnp.int32)
    check_labels(name, y, vocab)
    z = logits.astype(compute_dtype(logits))
    lse = jax.nn.logsumexp(z, axis=-1)
    picked = jnp.take_along_axis(z, jnp.clip(y, 0, vocab - 1)[..., None], axis=-1)[..., 0]
    return _per_sequence(picked - lse, y, mask, vocab, average)


def linear_sequence_logprobs(hidden, weight, labels, *, mask=None, average=False, chunk_size=None, axis_name=None):
    r"""Per-sequence log-probabilities of a linear head, streamed over the vocabulary.

    Equal, in value and in the gradients of ``hidden`` and ``weight``, to
    ``sequence_logprobs(hidden @ weight.T, labels, mask=mask, average=average)``,
    without building the ``[B, T, V]`` logits in the forward or the backward
    pass:

    .. math::
       s_b = \sum_t m_{bt} \bigl(h_{bt} \cdot w_{y_{bt}} - \log\textstyle\sum_v e^{h_{bt} \cdot w_v}\bigr)

    The per-token log-sum-exp and target logit come from the streaming engine of
    :func:`linear_cross_entropy` (an online log-sum-exp over vocabulary chunks;
    the backward pass recomputes each chunk), so temporary memory is a few
    ``[B*T, chunk_size]`` blocks. Feed the result to :func:`dpo_loss` and the
    other preference losses. A plain differentiable function, not a registry
    loss. Products accumulate in float32 (float64 for float64 inputs).

    Args:
      hidden: ``[B, T, D]`` hidden states (any leading axes before ``T``).
      weight: ``[V, D]`` output embedding (pass ``kernel.T`` for a ``[D, V]`` kernel).
      labels: ``[B, T]`` integer token ids in ``[0, V)``; entries where ``mask`` is
        False are ignored whatever they hold.
      mask: optional ``[B, T]`` boolean mask of the counted tokens; masked tokens
        get exactly zero gradient (even when their hidden states are NaN).
      average: when True, the mean over counted tokens instead of the sum (0 for
        a fully masked sequence).
      chunk_size: vocabulary columns per chunk (static); ``None`` picks
        :func:`default_chunk_size`.
      axis_name: ``None``, or the mesh axis (or axes) the vocabulary is split
        over: inside ``jax.shard_map``, ``weight`` is this device's contiguous
        slice (labels stay global ids); under plain ``jit`` with ``jax.set_mesh``,
        ``weight`` is the global array with its rows split over that axis, and
        each device streams only its slice (on an explicit mesh that split is
        read from ``weight``'s type, no ``axis_name`` needed).

    Returns:
      ``[B]`` per-sequence log-probabilities.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> h = jnp.array([[[1.0, 0.0], [0.0, 2.0]]]); w = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
      >>> y = jnp.array([[0, 2]])
      >>> a = jaxloss.linear_sequence_logprobs(h, w, y, chunk_size=2)
      >>> b = jaxloss.sequence_logprobs(jnp.einsum("btd,vd->btv", h, w), y)
      >>> bool(jnp.allclose(a, b))
      True
    """
    name = "linear_sequence_logprobs"
    for arg, x in (("hidden", hidden), ("weight", weight)):
        if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
            raise TypeError(f"{name}: {arg} must be floating point, got dtype {jnp.result_type(x)}")
    if hidden.ndim < 2:
        raise ValueError(f"{name}: hidden must have shape [B, T, D], got {tuple(hidden.shape)}")
    if weight.ndim != 2 or weight.shape[1] != hidden.shape[-1] or weight.shape[0] == 0:
        raise ValueError(f"{name}: weight {tuple(weight.shape)} must be [V, D] with the D of hidden "
                         f"{tuple(hidden.shape)}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size <= 0):
        raise ValueError(f"{name}: chunk_size must be a positive int or None, got {chunk_size!r}")
    _check_sequence_inputs(name, hidden.shape[:-1], labels, mask, "hidden")
    outer = outer_axes(weight, axis_name)
    inner = None if outer else axis_name  # inside shard_map: weight is this device's slice
    vocab = weight.shape[0] * (1 if inner is None else lax.axis_size(inner))
    y = labels.astype(jnp.int32) if mask is None else jnp.where(mask, labels, 0).astype(jnp.int32)
    if inner is None:
        check_labels(name, y, vocab)
    acc = compute_dtype(hidden, weight)
    h2 = hidden.reshape((-1, hidden.shape[-1]))
    if mask is not None:
        h2 = jnp.where(mask.reshape((-1, 1)), h2, jnp.zeros_like(h2))
    chunk = default_chunk_size(h2.shape[0], vocab) if chunk_size is None else min(int(chunk_size), vocab)
    # a vocabulary split over mesh axes under plain jit: streamed by slice in a shard_map (no gather)
    stats = split_stats(Config(chunk, None, acc), _linear, None, h2, (weight,), None, y.reshape((-1,)), inner,
                        outer=outer)
    tok = (stats.target - stats.lse).reshape(y.shape)
    return _per_sequence(tok, y, mask, vocab, average)
