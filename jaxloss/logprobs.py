r"""Log-probabilities of label tokens for post-training (DPO, ORPO, SimPO, GRPO inputs).

:func:`sequence_logprobs` sums (or averages) per-token log-probabilities of
materialised logits over each sequence; :func:`linear_sequence_logprobs` does
the same from the hidden states and the head's weight, streamed over
vocabulary chunks so that the ``[B, T, V]`` logits are never built.
:func:`token_logprobs` and :func:`linear_token_logprobs` return the per-token
log-probabilities themselves (GRPO's inputs) and, on request, the entropy of
each token's distribution. All four take a sampling ``temperature``. Plain
differentiable functions, not registry losses (no ``reduction``): their outputs
are the inputs of :mod:`jaxloss.preference`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._checks import check_labels, is_concrete
from ._core import compute_dtype
from ._streaming import Config, chunk_start, default_chunk_size, outer_axes, project, split_stats

__all__ = ["sequence_logprobs", "linear_sequence_logprobs", "token_logprobs", "linear_token_logprobs"]


def _linear(cap, raw, chunk, cols, labels):
    """The logits of one chunk of a linear head: the products themselves."""
    return raw


def _scaled(inv_t, raw, chunk, cols, labels):
    """The logits of one chunk at a temperature: the products times ``1 / T``."""
    return raw * inv_t


def _unit(temperature) -> bool:
    """A temperature that is the Python number 1 (the program then has no scaling)."""
    return isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and temperature == 1


def _check_temperature(name, temperature):
    """The temperature as given; ``ValueError`` for a concrete value that is not > 0."""
    if isinstance(temperature, bool) or not (isinstance(temperature, (int, float)) or hasattr(temperature, "dtype")):
        raise TypeError(f"{name}: temperature must be a number or a scalar array, got {temperature!r}")
    if jnp.ndim(temperature) != 0:
        raise ValueError(f"{name}: temperature must be a scalar, got shape {jnp.shape(temperature)}")
    if is_concrete(temperature) and not float(np.asarray(temperature)) > 0:
        raise ValueError(f"{name}: temperature must lie in (0, inf), got {float(np.asarray(temperature))}")
    return temperature


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


def sequence_logprobs(logits, labels, *, mask=None, average=False, temperature=1.0):
    r"""Per-sequence log-probability of the label tokens under ``logits``.

    .. math::
       s_b = \sum_t m_{bt} \log \operatorname{softmax}(z_{bt} / \tau)_{y_{bt}}
           = \sum_t m_{bt} \bigl(z_{bt y_{bt}} / \tau - \log\textstyle\sum_v e^{z_{btv} / \tau}\bigr),
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
      temperature: :math:`\tau > 0`, the sampling temperature the logits are
        divided by (a number or a scalar array, differentiable; TRL's
        ``temperature``: pass the one the completions were sampled at).

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
    _check_temperature(name, temperature)
    if not jnp.issubdtype(jnp.result_type(logits), jnp.floating):
        raise TypeError(f"{name}: logits must be floating point, got dtype {jnp.result_type(logits)}")
    if logits.ndim < 2:
        raise ValueError(f"{name}: logits must have shape [B, T, V], got {tuple(logits.shape)}")
    _check_sequence_inputs(name, logits.shape[:-1], labels, mask, "logits")
    vocab = logits.shape[-1]
    y = labels.astype(jnp.int32) if mask is None else jnp.where(mask, labels, 0).astype(jnp.int32)
    check_labels(name, y, vocab)
    z = logits.astype(compute_dtype(logits))
    if not _unit(temperature):
        z = z / jnp.asarray(temperature, z.dtype)
    lse = jax.nn.logsumexp(z, axis=-1)
    picked = jnp.take_along_axis(z, jnp.clip(y, 0, vocab - 1)[..., None], axis=-1)[..., 0]
    return _per_sequence(picked - lse, y, mask, vocab, average)


def linear_sequence_logprobs(hidden, weight, labels, *, mask=None, average=False, chunk_size=None,
                             temperature=1.0, axis_name=None):
    r"""Per-sequence log-probabilities of a linear head, streamed over the vocabulary.

    Equal, in value and in the gradients of ``hidden`` and ``weight``, to
    ``sequence_logprobs(hidden @ weight.T, labels, mask=mask, average=average)``,
    without building the ``[B, T, V]`` logits in the forward or the backward
    pass:

    .. math::
       s_b = \sum_t m_{bt} \bigl(h_{bt} \cdot w_{y_{bt}} / \tau - \log\textstyle\sum_v e^{h_{bt} \cdot w_v / \tau}\bigr)

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
      temperature: :math:`\tau > 0`, the sampling temperature (a number or a
        scalar array, differentiable), as for :func:`sequence_logprobs`.
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
    tok, y, vocab = _linear_tokens(name, hidden, weight, labels, mask, chunk_size, temperature, axis_name)
    return _per_sequence(tok, y, mask, vocab, average)


def _check_head_inputs(name, hidden, weight, labels, mask, chunk_size, temperature):
    _check_temperature(name, temperature)
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
    y = labels.astype(jnp.int32) if mask is None else jnp.where(mask, labels, 0).astype(jnp.int32)
    check_labels(name, y, weight.shape[0])
    return y


def _head_setup(hidden, weight, y, mask, chunk_size, temperature):
    """Flat hidden states (masked rows zeroed), the engine's config and ``1 / T`` (None at T = 1)."""
    acc = compute_dtype(hidden, weight)
    h2 = hidden.reshape((-1, hidden.shape[-1]))
    if mask is not None:
        h2 = jnp.where(mask.reshape((-1, 1)), h2, jnp.zeros_like(h2))
    vocab = weight.shape[0]
    chunk = default_chunk_size(h2.shape[0], vocab) if chunk_size is None else min(int(chunk_size), vocab)
    inv_t = None if _unit(temperature) else 1.0 / jnp.asarray(temperature, acc)
    return h2, Config(chunk, None, acc), inv_t


def _linear_tokens(name, hidden, weight, labels, mask, chunk_size, temperature, axis_name=None):
    """Per-token log-probabilities ``[B, T]`` of a linear head (streamed), the labels
    used and the (global) vocabulary size. With the vocabulary split over mesh axes
    (``axis_name``, or an explicit mesh's row split of ``weight``), each device
    streams only its slice: inside ``shard_map`` (``weight`` is the local slice) or
    in a ``shard_map`` of its own under plain ``jit`` (no gather of ``weight``)."""
    outer = outer_axes(weight, axis_name)
    inner = None if outer else axis_name  # inside shard_map: weight is this device's slice
    if inner is None:
        y = _check_head_inputs(name, hidden, weight, labels, mask, chunk_size, temperature)
        vocab = weight.shape[0]
    else:  # labels are global ids: only the local slice's size is known here
        y = labels.astype(jnp.int32) if mask is None else jnp.where(mask, labels, 0).astype(jnp.int32)
        _check_temperature(name, temperature)
        _check_sequence_inputs(name, hidden.shape[:-1], labels, mask, "hidden")
        vocab = weight.shape[0] * lax.axis_size(inner)
    h2, cfg, inv_t = _head_setup(hidden, weight, y, mask, chunk_size, temperature)
    transform = _linear if inv_t is None else _scaled
    stats = split_stats(cfg, transform, inv_t, h2, (weight,), None, y.reshape((-1,)), inner, outer=outer)
    return (stats.target - stats.lse).reshape(y.shape), y, vocab


# ---------------------------------------------------------------------------
# Per-token log-probabilities and entropies
# ---------------------------------------------------------------------------


def token_logprobs(logits, labels, *, temperature=1.0, return_entropy=False):
    r"""Per-token log-probability of the label tokens, and optionally the entropy, at a temperature.

    With :math:`u = z / \tau` and :math:`p = \operatorname{softmax}(u)` over the last axis:

    .. math::
       \log p_{y} = u_{y} - \log\textstyle\sum_v e^{u_v}, \qquad
       H = -\textstyle\sum_v p_v \log p_v = \log\textstyle\sum_v e^{u_v} - \sum_v p_v u_v

    TRL's ``selective_log_softmax`` and ``entropy_from_logits`` of
    ``logits / temperature`` (its GRPO trainer's per-token inputs). Both outputs
    are differentiable (an entropy bonus trains through :math:`H`). The
    ``[..., V]`` logits are materialised by the caller; for a linear head use
    :func:`linear_token_logprobs`, which never builds them.

    Args:
      logits: ``[..., V]`` floating-point logits (``[B, T, V]`` for completions).
      labels: ``[...]`` integer token ids in ``[0, V)`` (the logits' shape without
        its last axis). A concrete label outside ``[0, V)`` raises ``ValueError``;
        under ``jit`` its log-probability is NaN (its entropy is not affected).
        Give padding positions any valid id and mask the results downstream.
      temperature: :math:`\tau > 0` (a number or a scalar array, differentiable).
      return_entropy: when True, also return :math:`H` per token (static).

    Returns:
      ``logp`` of the labels' shape, or ``(logp, entropy)`` with
      ``return_entropy=True`` (float32 for bf16/f32 logits).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> logits = jnp.log(jnp.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]))
      >>> lp, ent = jaxloss.token_logprobs(logits, jnp.array([0, 2]), return_entropy=True)
      >>> [round(float(x), 6) for x in lp], round(float(ent[0]), 6)   # log 0.5, log 0.8; 1.5 log 2
      ([-0.693147, -0.223144], 1.039721)
    """
    name = "token_logprobs"
    _check_temperature(name, temperature)
    if not jnp.issubdtype(jnp.result_type(logits), jnp.floating):
        raise TypeError(f"{name}: logits must be floating point, got dtype {jnp.result_type(logits)}")
    if logits.ndim < 2:
        raise ValueError(f"{name}: logits must have shape [..., V] with at least one leading axis, "
                         f"got {tuple(logits.shape)}")
    if not isinstance(return_entropy, bool):
        raise TypeError(f"{name}: return_entropy must be True or False, got {return_entropy!r}")
    _check_sequence_inputs(name, logits.shape[:-1], labels, None, "logits")
    vocab = logits.shape[-1]
    y = labels.astype(jnp.int32)
    check_labels(name, y, vocab)
    u = logits.astype(compute_dtype(logits))
    if not _unit(temperature):
        u = u / jnp.asarray(temperature, u.dtype)
    lse = jax.nn.logsumexp(u, axis=-1)
    picked = jnp.take_along_axis(u, jnp.clip(y, 0, vocab - 1)[..., None], axis=-1)[..., 0]
    logp = jnp.where((y >= 0) & (y < vocab), picked - lse, jnp.nan)
    if not return_entropy:
        return logp
    # H = sum e^(u-m) (m - u) / s + log s with m the maximum: non-negative terms, no
    # cancellation of two large numbers when the distribution is peaked
    m = jax.lax.stop_gradient(jnp.max(u, axis=-1, keepdims=True))
    d = m - u
    e = jnp.exp(-d)
    s = jnp.sum(e, axis=-1)
    return logp, jnp.sum(e * d, axis=-1) / s + jnp.log(s)


def linear_token_logprobs(hidden, weight, labels, *, temperature=1.0, return_entropy=False, chunk_size=None):
    r"""Per-token log-probabilities (and entropies) of a linear head, streamed over the vocabulary.

    Equal, in value and in the gradients of ``hidden``, ``weight`` and
    ``temperature``, to ``token_logprobs(hidden @ weight.T, labels,
    temperature=temperature, return_entropy=return_entropy)``, without building
    the ``[N, V]`` logits in the forward or the backward pass. With
    :math:`u_v = h \cdot w_v / \tau`:

    .. math::
       \log p_y = u_y - \log\textstyle\sum_v e^{u_v}, \qquad
       H = \log\textstyle\sum_v e^{u_v} - \sum_v p_v u_v

    Without the entropy, the log-probabilities come from the streaming engine of
    :func:`linear_cross_entropy` (an online log-sum-exp over vocabulary
    chunks). With it, one pass over the chunks also carries
    :math:`\sum_v e^{u_v - m}(m - u_v)` (:math:`m` the running maximum), a sum of
    non-negative terms rescaled with the log-sum-exp, so
    :math:`H = a / s + \log s` has no cancellation even for a peaked
    distribution; the backward pass (a ``custom_vjp``) recomputes each chunk and
    applies :math:`\partial H / \partial u_v = -p_v(\log p_v + H)` and
    :math:`\partial \log p_y / \partial u_v = [v = y] - p_v`. Temporary memory is
    a few ``[N, chunk_size]`` blocks. A row whose outputs get no cotangent
    gets exactly zero gradient (padding with NaN hidden states is harmless once
    its results are masked downstream). Products accumulate in float32 (float64
    for float64 inputs).

    Args:
      hidden: ``[..., D]`` hidden states (``[B, T, D]`` for completions).
      weight: ``[V, D]`` output embedding (pass ``kernel.T`` for a ``[D, V]`` kernel).
      labels: ``[...]`` integer token ids in ``[0, V)`` (the hidden states' shape
        without its last axis); as for :func:`token_logprobs`.
      temperature: :math:`\tau > 0` (a number or a scalar array, differentiable).
      return_entropy: when True, also return :math:`H` per token (static).
      chunk_size: vocabulary columns per chunk (static); ``None`` picks
        :func:`default_chunk_size`.

    Returns:
      ``logp`` of the labels' shape, or ``(logp, entropy)`` with ``return_entropy=True``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> h = jnp.array([[[1.0, 0.0], [0.0, 2.0]]]); w = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
      >>> y = jnp.array([[0, 2]])
      >>> a = jaxloss.linear_token_logprobs(h, w, y, temperature=0.7, return_entropy=True, chunk_size=2)
      >>> b = jaxloss.token_logprobs(jnp.einsum("btd,vd->btv", h, w), y, temperature=0.7, return_entropy=True)
      >>> all(bool(jnp.allclose(x, x_ref, atol=1e-6)) for x, x_ref in zip(a, b))
      True
    """
    name = "linear_token_logprobs"
    if not isinstance(return_entropy, bool):
        raise TypeError(f"{name}: return_entropy must be True or False, got {return_entropy!r}")
    if not return_entropy:
        tok, y, _ = _linear_tokens(name, hidden, weight, labels, None, chunk_size, temperature)
        return jnp.where((y >= 0) & (y < weight.shape[0]), tok, jnp.nan)
    y = _check_head_inputs(name, hidden, weight, labels, None, chunk_size, temperature)
    h2, cfg, inv_t = _head_setup(hidden, weight, y, None, chunk_size, temperature)
    inv_t = jnp.ones((), cfg.acc) if inv_t is None else inv_t
    logp, ent = _token_entropy(cfg, h2, weight, inv_t, y.reshape((-1,)))
    valid = (y >= 0) & (y < weight.shape[0])
    return jnp.where(valid, logp.reshape(y.shape), jnp.nan), ent.reshape(y.shape)


def _entropy_forward(cfg, h, w, inv_t, labels):
    """``(log p_y, H, lse)`` per row, one pass over vocabulary chunks.

    Carries per row: the running maximum ``m`` of ``u``, ``s = sum e^(u-m)``,
    ``a = sum e^(u-m) (m - u)`` (non-negative terms) and the target ``u_y``."""
    vocab, chunk = w.shape[0], cfg.chunk
    cols0 = lax.iota(jnp.int32, chunk)

    def body(k, carry):
        m, s, a, uy = carry
        start = chunk_start(k, chunk, vocab)
        cols = start + cols0
        u = project(cfg, h, lax.dynamic_slice_in_dim(w, start, chunk, axis=0)) * inv_t
        fresh = (cols >= k * chunk)[None, :]
        m_new = jnp.maximum(m, jnp.max(jnp.where(fresh, u, -jnp.inf), axis=1))
        seen = jnp.isfinite(m)  # False before the first chunk: nothing to rescale
        scale = jnp.where(seen, jnp.exp(jnp.where(seen, m - m_new, 0)), 0)
        shift = jnp.where(seen, m_new - m, 0)
        d = m_new[:, None] - u  # >= 0 on fresh columns
        e = jnp.where(fresh, jnp.exp(-d), 0)
        # rescaled to the new maximum: sum e^(u-m_new) (m_new - u) = scale * (a + shift * s) + fresh terms
        a = scale * (a + shift * s) + jnp.sum(e * d, axis=1)
        s = scale * s + jnp.sum(e, axis=1)
        uy = uy + jnp.sum(jnp.where(fresh & (cols[None, :] == labels[:, None]), u, 0), axis=1)
        return m_new, s, a, uy

    row = jnp.zeros_like(h[:, 0], dtype=cfg.acc)
    m, s, a, uy = lax.fori_loop(0, -(-vocab // chunk), body, (row - jnp.inf, row, row, row))
    lse = m + jnp.log(s)
    return uy - lse, a / s + jnp.log(s), lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _token_entropy(cfg, h, w, inv_t, labels):
    logp, ent, _ = _entropy_forward(cfg, h, w, inv_t, labels)
    return logp, ent


def _token_entropy_fwd(cfg, h, w, inv_t, labels):
    logp, ent, lse = _entropy_forward(cfg, h, w, inv_t, labels)
    return (logp, ent), (h, w, inv_t, labels, lse, ent)


def _token_entropy_bwd(cfg, res, g):
    h, w, inv_t, labels, lse, ent = res
    g_lp, g_h = (gi.astype(cfg.acc) for gi in g)
    vocab, chunk = w.shape[0], cfg.chunk
    cols0 = lax.iota(jnp.int32, chunk)
    live = (g_lp != 0) | (g_h != 0)  # a row without cotangent gets none (a NaN row stays out)
    h0 = jnp.where(live[:, None], h, jnp.zeros_like(h))
    lse0, ent0 = jnp.where(live, lse, 0), jnp.where(live, ent, 0)

    def body(k, carry):
        dh, dw, dinv = carry
        start = chunk_start(k, chunk, vocab)
        cols = start + cols0
        wc = lax.dynamic_slice_in_dim(w, start, chunk, axis=0)
        raw = project(cfg, h0, wc)
        logp = raw * inv_t - lse0[:, None]
        p = jnp.exp(logp)
        hit = cols[None, :] == labels[:, None]
        du = g_lp[:, None] * (jnp.where(hit, 1.0, 0.0) - p) - g_h[:, None] * p * (logp + ent0[:, None])
        du = jnp.where((cols >= k * chunk)[None, :] & live[:, None], du, 0)
        dinv = dinv + jnp.sum(du * raw)
        dz = du * inv_t
        dzw = dz.astype(w.dtype) if w.dtype != cfg.acc else dz
        dh = dh + lax.dot_general(dzw, wc, (((1,), (0,)), ((), ())), preferred_element_type=cfg.acc)
        dwc = lax.dot_general(dzw, h0, (((0,), (0,)), ((), ())), preferred_element_type=cfg.acc)
        old = lax.dynamic_slice_in_dim(dw, start, chunk, axis=0)
        dw = lax.dynamic_update_slice_in_dim(dw, old + dwc.astype(dw.dtype), start, axis=0)
        return dh, dw, dinv

    # each column's gradient is written once (the clamped last chunk adds zeros), so it is
    # kept in the weight's dtype: no float32 copy of a bf16 weight
    init = (jnp.zeros_like(h, dtype=cfg.acc), jnp.zeros_like(w), jnp.zeros((), cfg.acc))
    dh, dw, dinv = lax.fori_loop(0, -(-vocab // chunk), body, init)
    return dh.astype(h.dtype), dw.astype(w.dtype), dinv.astype(jnp.result_type(inv_t)), None


_token_entropy.defvjp(_token_entropy_fwd, _token_entropy_bwd)
