r"""Sequence losses: CTC and the RNN-Transducer, over a batch of padded sequences.

Conventions shared by the sequence losses (documented in each docstring):

* inputs are batch-first: ``logits [B, T, C]`` (CTC) or ``[B, T, U+1, C]``
  (RNN-T), integer ``labels [B, S]`` and integer lengths ``[B]``; the unreduced
  loss is one negative log-likelihood per sequence, shape ``[B]``, and
  ``weights``/``where`` are per sequence;
* the class axis is last and a log-softmax is applied inside (log-probabilities
  work too: the log-softmax leaves them unchanged), computed so that the
  probability of a confident class keeps its float32 accuracy (see
  :func:`_log_normalizer`);
* everything past the lengths is replaced before any arithmetic (the double
  ``where``): a frame past ``logit_lengths`` or a label past ``label_lengths``
  may hold anything, NaN or an out-of-range label included, and never reaches
  the value or the gradient;
* a sequence that no alignment can produce is *infeasible*: its loss is
  ``+inf`` (CTC: 0 with ``zero_infinity=True``) and its gradient exactly 0,
  never NaN;
* the recursions run in log space in one ``lax.scan`` (CTC: over time; RNN-T:
  over the anti-diagonals of the lattice), each step shifted by its maximum
  with the shifts summed separately (compensated), so float32 keeps its
  relative accuracy for thousands of frames and a loss is never negative.

:func:`lengths_from_paddings` turns optax-style padding indicators into the
lengths these losses take.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._checks import FLAG, INT, is_concrete
from ._core import Example, Layout, builtin

__all__ = [
    "ctc_loss", "CTCLoss",
    "rnnt_loss", "RNNTLoss",
    "lengths_from_paddings",
]

sequence = builtin("sequence")

Array = jax.Array
_NEG = -jnp.inf
_UNROLL = 1


# ---------------------------------------------------------------------------
# Numerics: an accurate log-softmax and a NaN-free log-add-exp
# ---------------------------------------------------------------------------


@jax.custom_jvp
def _log_normalizer(x: Array) -> tuple[Array, Array]:
    r"""``(m, r)`` with ``log_softmax(x)[..., k] == (x[..., k] - m) - r`` (last axis).

    ``m`` is the row maximum and ``r = log1p(sum of exp(x_j - m) over every entry
    but one maximum)``: the 1 contributed by the maximum is never added to the
    small terms, so a confident class (``x = [0, 17]``: log-probability
    ``-4.1e-8``) keeps its float32 accuracy; ``x - logsumexp(x)`` rounds it to 0
    (``17 + 4.1e-8 == 17``). A row of ``-inf`` gives ``-inf`` log-probabilities.

    Differentiate only through ``(x - m) - r`` (``m`` has tangent 0 and ``r``
    carries the whole derivative, ``softmax . dx``), which is exact.
    """
    m = jnp.max(x, axis=-1, keepdims=True)
    finite = jnp.isfinite(m)
    m = jnp.where(finite, m, jnp.zeros_like(m))
    z = x - m
    top = z == 0
    rest = jnp.sum(jnp.where(top, 0.0, jnp.exp(z)), axis=-1, keepdims=True)
    rest = rest + (jnp.sum(top, axis=-1, keepdims=True).astype(x.dtype) - 1)
    rest = jnp.where(finite, rest, jnp.zeros_like(rest))
    return m, jnp.where(finite, jnp.log1p(rest), jnp.full_like(rest, jnp.inf))


@_log_normalizer.defjvp
def _log_normalizer_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    m, r = _log_normalizer(x)
    p = jnp.exp((x - m) - r)
    return (m, r), (jnp.zeros_like(m), jnp.sum(p * dx, axis=-1, keepdims=True))


def _log_softmax(x: Array) -> Array:
    """The accurate log-softmax over the last axis (see :func:`_log_normalizer`)."""
    m, r = _log_normalizer(x)
    return (x - m) - r


@jax.custom_jvp
def _lae(a: Array, b: Array) -> Array:
    """``log(exp(a) + exp(b))``: ``-inf`` when both are, with a zero (not NaN)
    derivative there; ``log1p`` keeps a small second term exact."""
    hi = jnp.maximum(a, b)
    lo = jnp.minimum(a, b)
    safe = jnp.where(jnp.isfinite(hi), hi, jnp.zeros_like(hi))
    return hi + jnp.log1p(jnp.exp(lo - safe))


@_lae.defjvp
def _lae_jvp(primals, tangents):
    (a, b), (da, db) = primals, tangents
    out = _lae(a, b)
    live = jnp.isfinite(out)
    base = jnp.where(live, out, jnp.zeros_like(out))
    wa = jnp.where(live, jnp.exp(jnp.where(live, a, 0.0) - base), 0.0)
    wb = jnp.where(live, jnp.exp(jnp.where(live, b, 0.0) - base), 0.0)
    return out, wa * da + wb * db


@jax.custom_jvp
def _lse3(a: Array, b: Array, c: Array) -> Array:
    """``log(exp(a) + exp(b) + exp(c))``: ``-inf`` when all are, with a zero (not
    NaN) derivative there. The two terms below the maximum go through ``log1p``
    without the maximum's 1 added to them, so small contributions stay exact."""
    m = jnp.maximum(jnp.maximum(a, b), c)
    base = jnp.where(jnp.isfinite(m), m, jnp.zeros_like(m))
    ia = a == m
    ib = (b == m) & ~ia
    ic = (c == m) & ~ia & ~ib
    rest = (jnp.where(ia, 0.0, jnp.exp(a - base)) + jnp.where(ib, 0.0, jnp.exp(b - base))
            + jnp.where(ic, 0.0, jnp.exp(c - base)))
    return m + jnp.log1p(rest)


@_lse3.defjvp
def _lse3_jvp(primals, tangents):
    out = _lse3(*primals)
    live = jnp.isfinite(out)
    base = jnp.where(live, out, jnp.zeros_like(out))
    ws = [jnp.where(live, jnp.exp(jnp.where(live, x, 0.0) - base), 0.0) for x in primals]
    return out, sum(w * d for w, d in zip(ws, tangents))


def _shift(*parts: Array) -> tuple[tuple[Array, ...], Array]:
    """The parts (``[B, n_i]``) shifted so that their joint maximum is 0, and the
    shift ``[B]`` (0 where every entry is ``-inf``), under stop_gradient: the
    shift only rescales, so it need not be differentiated."""
    mx = functools.reduce(jnp.maximum, [jnp.max(p, axis=-1) for p in parts])
    mx = lax.stop_gradient(jnp.where(jnp.isfinite(mx), mx, jnp.zeros_like(mx)))
    return tuple(p - mx[:, None] for p in parts), mx


def _kahan(total: Array, comp: Array, x: Array) -> tuple[Array, Array]:
    """One step of compensated summation: ``(total + x, its rounding error)``."""
    y = x - comp
    t = total + y
    return t, (t - total) - y


def _pad_left(x: Array, value: float) -> Array:
    return jnp.concatenate([jnp.full(x.shape[:-1] + (1,), value, x.dtype), x[..., :-1]], axis=-1)


def _pad_right(x: Array, value: float) -> Array:
    return jnp.concatenate([x[..., 1:], jnp.full(x.shape[:-1] + (1,), value, x.dtype)], axis=-1)


# ---------------------------------------------------------------------------
# Lengths
# ---------------------------------------------------------------------------


def lengths_from_paddings(paddings: jax.typing.ArrayLike) -> Array:
    r"""Sequence lengths ``[B]`` from optax-style padding indicators ``[B, T]``.

    optax's ``ctc_loss`` takes ``logit_paddings`` and ``label_paddings`` (1.0 at a
    padded position, 0.0 at a real one, padding at the end of each row); the
    jaxloss sequence losses take lengths. The length of a row is its number of
    non-padded positions, :math:`L_b = \sum_t (1 - \mathrm{pad}_{b,t})`, as an
    ``int32`` array.

    Args:
      paddings: ``[..., T]`` array of 0/1 (float, int or bool); right-padded.

    Returns:
      ``int32`` lengths of shape ``paddings.shape[:-1]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.lengths_from_paddings(jnp.array([[0., 0., 1.], [0., 0., 0.]]))
      Array([2, 3], dtype=int32)
    """
    p = jnp.asarray(paddings)
    if p.ndim == 0:
        raise ValueError("lengths_from_paddings: paddings must have a time axis, got a scalar")
    keep = p == 0 if p.dtype != jnp.bool_ else ~p
    return jnp.sum(keep, axis=-1, dtype=jnp.int32)


# ---------------------------------------------------------------------------
# CTC: the forward (alpha) and backward (beta) recursions
# ---------------------------------------------------------------------------
#
# The extended label sequence of l_1..l_L is blank, l_1, blank, l_2, ..., l_L,
# blank: N = 2S + 1 states for labels padded to S, state 2j+1 holding label
# j+1 and the even states the blanks. A state follows itself, the state before
# it, or (``skip``) the one two before when that is a different label.


def _right(x: Array, k: int) -> Array:
    """``x`` moved k places to the right along the last axis, ``-inf`` coming in."""
    return jnp.pad(x, ((0, 0), (k, 0)), constant_values=_NEG)[:, :x.shape[1]]


def _left(x: Array, k: int) -> Array:
    """``x`` moved k places to the left along the last axis, ``-inf`` coming in."""
    return jnp.pad(x, ((0, 0), (0, k)), constant_values=_NEG)[:, k:]


def _ctc_forward(e: Array, skip: Array, t_len: Array, *, history: bool):
    """The forward variables over the ``T`` frames of time-major emissions
    ``e [T, B, N]``, each frame shifted so that its maximum is 0.

    Returns ``(alpha, log_scale, states)``: the last live frame's shifted
    variables ``[B, N]``, the summed shifts ``[B]`` (compensated summation;
    alpha = shifted + log_scale) and, with ``history``, every frame's shifted
    variables ``[T, B, N]`` (past ``t_len``: the last live frame's)."""
    num_t, b, n = e.shape
    alpha0 = jnp.full((b, n), _NEG, e.dtype).at[:, 0].set(0.0)   # before the first frame: the first blank
    zero = jnp.zeros((b,), e.dtype)

    def body(carry, xs):
        alpha, total, comp = carry
        et, t = xs
        new = _lse3(alpha, _right(alpha, 1), jnp.where(skip, _right(alpha, 2), _NEG)) + et
        (new,), mx = _shift(new)
        nt, nc = _kahan(total, comp, mx)
        live = t < t_len
        alpha = jnp.where(live[:, None], new, alpha)
        total, comp = jnp.where(live, nt, total), jnp.where(live, nc, comp)
        return (alpha, total, comp), (alpha if history else None)

    ts = jnp.arange(num_t, dtype=t_len.dtype)
    (alpha, total, comp), states = lax.scan(body, (alpha0, zero, zero), (e, ts), unroll=_UNROLL)
    return alpha, total - comp, states


def _ctc_final(alpha: Array, log_scale: Array, l_len: Array) -> Array:
    """log p(labels | logits): the last blank or the last label at the last frame."""
    last_blank = jnp.take_along_axis(alpha, (2 * l_len)[:, None], axis=1)[:, 0]
    last_label = jnp.take_along_axis(alpha, jnp.maximum(2 * l_len - 1, 0)[:, None], axis=1)[:, 0]
    last_label = jnp.where(l_len > 0, last_label, _NEG)
    return _lae(last_blank, last_label) + log_scale


def _ctc_betas(e: Array, skip: Array, t_len: Array, l_len: Array) -> Array:
    """The backward variables ``beta_t(s)`` (the log-probability of the rest of
    the labels from state s after frame t, excluding frame t's emission) of
    every frame, each frame shifted so that its maximum is 0 ``[T, B, N]``.
    The recursion starts at each sequence's last live frame from its final
    blank (or, through it, its last label)."""
    num_t, b, n = e.shape
    terminal = jnp.where(jnp.arange(n)[None, :] == 2 * l_len[:, None], 0.0, _NEG).astype(e.dtype)
    skip_next = jnp.pad(skip, ((0, 0), (0, 2)))[:, 2:]   # state s may skip to s + 2

    def body(q, xs):                        # q: beta_{t+1} + emission at t+1, shifted
        et, t = xs
        beta = _lse3(q, _left(q, 1), jnp.where(skip_next, _left(q, 2), _NEG))
        (nq,), _ = _shift(beta + et)
        return jnp.where((t < t_len)[:, None], nq, terminal), beta

    ts = jnp.arange(num_t, dtype=t_len.dtype)
    _, betas = lax.scan(body, terminal, (e, ts), reverse=True, unroll=_UNROLL)
    return betas


def _ctc_occupancy(alphas: Array, betas: Array, t_len: Array) -> Array:
    """The state occupancies ``gamma_t(s) = P(state s at frame t | labels)``
    ``[T, B, N]`` from the shifted forward and backward variables. Each frame's
    are normalised on their own (they sum to 1 over the states), so neither
    recursion's scale enters the gradient. 0 past ``t_len`` and for an
    infeasible sequence (no state of any frame lies on a complete path)."""
    g = alphas + betas
    mx = jnp.max(g, axis=-1, keepdims=True)
    p = jnp.exp(g - jnp.where(jnp.isfinite(mx), mx, 0.0))
    tot = jnp.sum(p, axis=-1, keepdims=True)
    ts = jnp.arange(g.shape[0], dtype=t_len.dtype)
    live = (ts[:, None, None] < t_len[None, :, None]) & (tot > 0)
    return p * jnp.where(live, 1.0 / jnp.where(live, tot, 1.0), 0.0)


def _ctc_emissions(logp: Array, ext: Array, state_ok: Array) -> Array:
    """Time-major emission log-probabilities of the extended states ``[T, B, N]``
    (``-inf`` for the states past the label length)."""
    e = jnp.take_along_axis(jnp.transpose(logp, (1, 0, 2)), ext[None], axis=2, mode="promise_in_bounds")
    return jnp.where(state_ok[None], e, _NEG)


def _ctc_log_likelihood(x, ext, state_ok, skip, t_len, l_len):
    """log p(labels | x) per sequence, differentiable by autodiff."""
    e = _ctc_emissions(_log_softmax(x), ext, state_ok)
    alpha, scale, _ = _ctc_forward(e, skip, t_len, history=False)
    return _ctc_final(alpha, scale, l_len)


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def _ctc_log_likelihood_fb(x, ext, state_ok, skip, t_len, l_len, blank):
    """:func:`_ctc_log_likelihood` with the forward-backward gradient."""
    return _ctc_log_likelihood(x, ext, state_ok, skip, t_len, l_len)


def _ctc_fb_fwd(x, ext, state_ok, skip, t_len, l_len, blank):
    logp = _log_softmax(x)
    e = _ctc_emissions(logp, ext, state_ok)
    alpha, scale, alphas = _ctc_forward(e, skip, t_len, history=True)
    betas = _ctc_betas(e, skip, t_len, l_len)
    return _ctc_final(alpha, scale, l_len), (logp, ext, state_ok, t_len, alphas, betas)


def _ctc_fb_bwd(blank, res, g):
    logp, ext, state_ok, t_len, alphas, betas = res
    occ = _ctc_occupancy(alphas, betas, t_len)                   # [T, B, N]
    num_c = logp.shape[-1]
    labels = ext[:, 1::2]
    onehot = ((labels[:, :, None] == jnp.arange(num_c)) & state_ok[:, 1::2, None]).astype(logp.dtype)
    occ_class = jnp.einsum("tbs,bsc->btc", occ[:, :, 1::2], onehot, precision=lax.Precision.HIGHEST)
    occ_blank = jnp.sum(occ[:, :, 0::2], axis=-1).T              # [B, T]
    occ_class = occ_class + jnp.where(jnp.arange(num_c) == blank, occ_blank[:, :, None], 0.0)
    frame = jnp.sum(occ, axis=-1).T[:, :, None]                  # 1 on live frames, 0 elsewhere
    dx = g[:, None, None] * (occ_class - jnp.exp(logp) * frame)
    return dx, None, None, None, None, None


_ctc_log_likelihood_fb.defvjp(_ctc_fb_fwd, _ctc_fb_bwd)


def _ctc_nll(logits, labels, logit_lengths, label_lengths, *, blank=0, zero_infinity=False, gradient="fb"):
    """Per-sequence CTC negative log-likelihood ``[B]`` (the kernel's math).

    ``gradient``: ``"fb"`` (the forward-backward custom_vjp, the default) or
    ``"autodiff"`` (reverse mode through the scan); the benchmark compares them."""
    b, num_t, num_c = logits.shape
    s = labels.shape[1]
    t_len = jnp.clip(logit_lengths.astype(jnp.int32), 0, num_t)
    l_len = jnp.clip(label_lengths.astype(jnp.int32), 0, s)
    bad_len = (logit_lengths < 0) | (logit_lengths > num_t) | (label_lengths < 0) | (label_lengths > s)
    live_t = jnp.arange(num_t)[None, :] < t_len[:, None]
    x = jnp.where(live_t[:, :, None], logits, jnp.zeros_like(logits))
    lab_valid = jnp.arange(s)[None, :] < l_len[:, None]
    lab_ok = (labels >= 0) & (labels < num_c) & (labels != blank)
    bad = bad_len | jnp.any(lab_valid & ~lab_ok, axis=1)
    lab = jnp.where(lab_valid & lab_ok, labels, blank).astype(jnp.int32)
    n = 2 * s + 1
    ext = jnp.full((b, n), blank, jnp.int32).at[:, 1::2].set(lab)
    state_ok = jnp.arange(n)[None, :] <= 2 * l_len[:, None]
    skip = (ext != blank) & (ext != jnp.pad(ext, ((0, 0), (2, 0)), constant_values=blank)[:, :n])
    if gradient == "fb":
        ll = _ctc_log_likelihood_fb(x, ext, state_ok, skip, t_len, l_len, blank)
    else:
        ll = _ctc_log_likelihood(x, ext, state_ok, skip, t_len, l_len)
    nll = jnp.where(ll >= 0, jnp.zeros_like(ll), -ll)   # a probability is at most 1: never rounded below 0
    if zero_infinity:
        nll = jnp.where(jnp.isinf(nll), jnp.zeros_like(nll), nll)
    return jnp.where(bad, jnp.full_like(nll, jnp.nan), nll), l_len
