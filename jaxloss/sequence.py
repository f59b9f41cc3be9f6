r"""Sequence losses: CTC and the RNN-Transducer, over a batch of padded sequences.

Conventions shared by the sequence losses (documented in each docstring):

* inputs are batch-first: ``logits [B, T, C]`` (CTC) or ``[B, T, U+1, C]``
  (RNN-T), integer ``labels [B, S]`` and integer lengths ``[B]``; the unreduced
  loss is one negative log-likelihood per sequence, shape ``[B]``, and
  ``weights``/``where`` are per sequence;
* the class axis is last and a log-softmax is applied inside (log-probabilities
  work too: the log-softmax leaves them unchanged), computed so that the
  probability of a confident class keeps its float32 accuracy (the small
  probabilities go through ``log1p`` without the most likely class's 1);
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
from ._core import Example, Layout, Mean, Role, Unreduced, builtin
from ._numerics import pick
from ._sharding import rows_like

__all__ = [
    "ctc_loss", "CTCLoss",
    "rnnt_loss", "RNNTLoss",
    "lengths_from_paddings",
]

sequence = builtin("sequence")

Array = jax.Array
_NEG = -jnp.inf
_UNROLL = 4   # scan steps per loop iteration on long scans: measured faster and smaller than 1 (bench_sequence.py)


def _unroll(steps: int) -> int:
    """Scan steps per loop iteration: 4 for long scans, 1 for short ones (which
    gain nothing from it and compile faster)."""
    return _UNROLL if steps >= 64 else 1


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
    first = jnp.argmax(x, axis=-1)[..., None].astype(x.dtype)          # one maximum (the first of ties)
    # 0 at that maximum, 1 elsewhere, by arithmetic: a compare-and-select here takes XLA:CPU
    # off its fast reduction path (about 3x slower over [8, 200, 51, 128] logits)
    others = jnp.sign(jnp.abs(lax.broadcasted_iota(x.dtype, x.shape, x.ndim - 1) - first))
    rest = jnp.sum(jnp.exp(x - m) * others, axis=-1, keepdims=True)
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


def lengths_from_paddings(paddings: jax.typing.ArrayLike) -> jax.Array:
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
    # (built from e, so that they keep the batch's sharding on an explicit mesh)
    alpha0 = jnp.full_like(e[0], _NEG).at[:, 0].set(0.0)   # before the first frame: the first blank
    zero = jnp.zeros_like(e[0, :, 0])

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
    (alpha, total, comp), states = lax.scan(body, (alpha0, zero, zero), (e, ts), unroll=_unroll(num_t))
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
    _, betas = lax.scan(body, terminal, (e, ts), reverse=True, unroll=_unroll(num_t))
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
    ext = jnp.full((b, n), blank, jnp.int32, out_sharding=rows_like(lab, 2)).at[:, 1::2].set(lab)
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


# ---------------------------------------------------------------------------
# RNN-T: the lattice recursion along anti-diagonals
# ---------------------------------------------------------------------------


def _skew(x: Array) -> Array:
    """``[B, T, U1] -> [T + U1 - 1, B, U1]`` with ``out[n, b, u] = x[b, n - u, u]``
    (``-inf`` where ``n - u`` is outside ``[0, T)``): the lattice's anti-diagonals
    as rows, by a pad and two reshapes (no gather)."""
    b, num_t, u1 = x.shape
    length = num_t + u1
    y = jnp.pad(jnp.swapaxes(x, 1, 2), ((0, 0), (0, 0), (0, u1)), constant_values=_NEG)   # [B, U1, L]
    y = y.reshape(b, u1 * length)[:, : u1 * (length - 1)].reshape(b, u1, length - 1)
    return jnp.transpose(y, (2, 0, 1))


def _rnnt_log_likelihood(bl: Array, em: Array, t_len: Array, u_len: Array) -> Array:
    """log p(labels | logits) from the blank ``bl [B, T, U+1]`` and label
    ``em [B, T, U+1]`` (``-inf`` at u = U) emission log-probabilities.

    alpha(t, u) = logaddexp(alpha(t-1, u) + bl(t-1, u), alpha(t, u-1) + em(t, u-1)),
    alpha(0, 0) = 0; the likelihood is alpha(T_b, U_b), the lattice point after
    the final blank. The points with t + u = n (one anti-diagonal) depend only
    on the diagonal n - 1, so the scan runs over the T + U diagonals, each step
    a vector operation over u; each diagonal is shifted so that its maximum is
    0 and the shifts are summed with compensation."""
    b, num_t, u1 = bl.shape
    bls, ems = _skew(bl), _skew(em)                      # [T + U, B, U1]
    alpha0 = jnp.full_like(bl[:, 0], _NEG).at[:, 0].set(0.0)    # (from bl: the batch's sharding)
    zero = jnp.zeros_like(bl[:, 0, 0])
    target = t_len + u_len                               # the diagonal of (T_b, U_b)
    res0 = jnp.full_like(zero, _NEG)                     # T_b = 0: no frame, no alignment

    def body(carry, xs):
        alpha, total, comp, res = carry
        eb, ee, n = xs                                   # emissions on diagonal n - 1
        new = _lae(alpha + eb, _right(alpha + ee, 1))
        (new,), mx = _shift(new)
        total, comp = _kahan(total, comp, mx)
        here = jnp.take_along_axis(new, u_len[:, None], axis=1)[:, 0] + (total - comp)
        res = jnp.where((n == target) & (t_len > 0), here, res)
        return (new, total, comp, res), None

    ns = jnp.arange(1, num_t + u1, dtype=t_len.dtype)
    (_, _, _, res), _ = lax.scan(body, (alpha0, zero, zero, res0), (bls, ems, ns), unroll=_unroll(num_t + u1))
    return res


def _rnnt_nll(logits, labels, logit_lengths, label_lengths, *, blank=0):
    """Per-sequence RNN-T negative log-likelihood ``[B]`` (the kernel's math)."""
    b, num_t, u1, num_c = logits.shape
    u = labels.shape[1]
    t_len = jnp.clip(logit_lengths.astype(jnp.int32), 0, num_t)
    u_len = jnp.clip(label_lengths.astype(jnp.int32), 0, u)
    bad_len = (logit_lengths < 0) | (logit_lengths > num_t) | (label_lengths < 0) | (label_lengths > u)
    live_t = jnp.arange(num_t)[None, :] < t_len[:, None]                  # [B, T]
    live_u = jnp.arange(u1)[None, :] <= u_len[:, None]                   # [B, U1]
    live = live_t[:, :, None] & live_u[:, None, :]
    x = jnp.where(live[..., None], logits, jnp.zeros_like(logits))
    lab_valid = jnp.arange(u)[None, :] < u_len[:, None]
    lab_ok = (labels >= 0) & (labels < num_c) & (labels != blank)
    bad = bad_len | jnp.any(lab_valid & ~lab_ok, axis=1)
    lab = jnp.where(lab_valid & lab_ok, labels, blank).astype(jnp.int32)
    m, r = _log_normalizer(x)
    m, r = m[..., 0], r[..., 0]                                          # [B, T, U1]
    bl = (x[..., blank] - m) - r
    lab1 = jnp.broadcast_to(jnp.pad(lab, ((0, 0), (0, 1)), constant_values=blank)[:, None, :], (b, num_t, u1))
    em = (pick(x, lab1, 3) - m) - r
    bl = jnp.where(live, bl, _NEG)
    em = jnp.where(live & jnp.pad(lab_valid, ((0, 0), (0, 1)))[:, None, :], em, _NEG)
    ll = _rnnt_log_likelihood(bl, em, t_len, u_len)
    nll = jnp.where(ll >= 0, jnp.zeros_like(ll), -ll)
    return jnp.where(bad, jnp.full_like(nll, jnp.nan), nll)


# ---------------------------------------------------------------------------
# The public losses
# ---------------------------------------------------------------------------

_SEQUENCES = Layout({
    "logits": Role(shape="free"), "labels": Role("labels", "free"),
    "logit_lengths": Role("real", "reduced"), "label_lengths": Role("real", "reduced"),
})


def _validate(name, logits, labels, logit_lengths, label_lengths, *, blank, rank, **_):
    """Trace-time checks shared by the sequence losses (shapes, dtypes, blank) and,
    when the values are concrete, the lengths and the labels within them."""
    if logits.ndim != rank:
        shape = "[B, T, C]" if rank == 3 else "[B, T, U+1, C]"
        raise ValueError(f"{name}: logits must have shape {shape}, got shape {tuple(logits.shape)}")
    if labels.ndim != 2:
        raise ValueError(f"{name}: labels must have shape [B, {'S' if rank == 3 else 'U'}], got {tuple(labels.shape)}")
    b, num_t, num_c = logits.shape[0], logits.shape[1], logits.shape[-1]
    batch = labels.shape[0]
    if rank == 3 and b != batch and num_t == batch:
        raise ValueError(
            f"{name}: logits of shape {tuple(logits.shape)} look time-major [T, B, C] (PyTorch's layout) for "
            f"labels of batch {batch}; jaxloss is batch-first [B, T, C]: pass jnp.transpose(logits, (1, 0, 2))")
    for arg, x in (("logit_lengths", logit_lengths), ("label_lengths", label_lengths)):
        if not jnp.issubdtype(x.dtype, jnp.integer):
            raise TypeError(f"{name}: {arg} must be an integer array, got dtype {x.dtype}")
        if tuple(x.shape) != (b,):
            raise ValueError(f"{name}: {arg} must have shape (B,) = ({b},), got {tuple(x.shape)}")
    if labels.shape[0] != b:
        raise ValueError(f"{name}: labels must have the batch size of logits ({b}), got shape {tuple(labels.shape)}")
    if rank == 4 and logits.shape[2] != labels.shape[1] + 1:
        raise ValueError(f"{name}: logits [B, T, U+1, C] need labels [B, U]: got logits {tuple(logits.shape)} "
                         f"and labels {tuple(labels.shape)}")
    if not -num_c <= blank < num_c:
        raise ValueError(f"{name}: blank must lie in [-C, C) = [{-num_c}, {num_c}), got {blank}")
    blank %= num_c
    s = labels.shape[1]
    for arg, x, hi in (("logit_lengths", logit_lengths, num_t), ("label_lengths", label_lengths, s)):
        if is_concrete(x):
            v = np.asarray(x)
            if np.any((v < 0) | (v > hi)):
                raise ValueError(f"{name}: {arg} must lie in [0, {hi}], got {v.tolist()}")
    if is_concrete(labels) and is_concrete(label_lengths):
        lab = np.asarray(labels)
        inside = np.arange(s)[None, :] < np.asarray(label_lengths)[:, None]
        bad = inside & ((lab < 0) | (lab >= num_c) | (lab == blank))
        if bad.any():
            raise ValueError(f"{name}: labels within label_lengths must lie in [0, {num_c}) and differ from "
                             f"blank={blank}, got {lab[bad][:5].tolist()}")


def _ctc_validate(name, *inputs, **options):
    _validate(name, *inputs, rank=3, **options)


def _rnnt_validate(name, *inputs, **options):
    _validate(name, *inputs, rank=4, **options)


def _ctc_sample(rng: np.random.Generator) -> tuple:
    logits = rng.normal(size=(3, 6, 4)).astype(np.float32)
    labels = rng.integers(1, 4, size=(3, 2)).astype(np.int32)
    labels[2, 1] = -1                                    # past its label length: ignored
    return logits, labels, np.array([6, 5, 4], np.int32), np.array([2, 2, 1], np.int32)


def _rnnt_sample(rng: np.random.Generator) -> tuple:
    logits = rng.normal(size=(3, 4, 3, 4)).astype(np.float32)
    labels = rng.integers(1, 4, size=(3, 2)).astype(np.int32)
    labels[2, 1] = 7                                     # past its label length: ignored
    return logits, labels, np.array([4, 3, 2], np.int32), np.array([2, 1, 1], np.int32)


@sequence(static={"blank": INT, "zero_infinity": FLAG}, layout=_SEQUENCES, validate=_ctc_validate,
          example=Example(_ctc_sample, grad_order=1, optax="ctc_loss"), class_name="CTCLoss")
def ctc_loss(logits, labels, logit_lengths, label_lengths, *, blank=0, zero_infinity=False):
    r"""Connectionist temporal classification (CTC) loss, per sequence of a padded batch.

    With :math:`p_t = \mathrm{softmax}(z_{b,t})` over the classes and
    :math:`\mathcal{B}` the map that merges repeated symbols and then drops
    blanks, the loss of sequence :math:`b` is the negative log-likelihood of
    its labels over every alignment :math:`\pi` of its :math:`T_b` frames:

    .. math:: \ell_b = -\log \sum_{\pi \in \{1..C\}^{T_b} :\ \mathcal{B}(\pi) = y_{b,1:L_b}}
        \ \prod_{t=1}^{T_b} p_t(\pi_t),
        \qquad \text{"mean"} = \frac{\sum_b w_b\, \ell_b / \max(L_b, 1)}{\sum_b w_b}

    computed by the forward algorithm in log space (one ``lax.scan`` over time),
    its gradient by the forward-backward algorithm (a ``custom_vjp``: measured
    faster and smaller than reverse mode through the scan,
    ``benchmarks/bench_sequence.py``). Follows PyTorch's ``F.ctc_loss``, batch
    first: ``"none"`` is the per-sequence negative log-likelihood, ``"sum"``
    their sum, ``"mean"`` the mean of each one divided by its label length
    (at least 1), weighted by ``weights`` as above. Differences: the
    log-softmax is applied inside (log-probabilities pass through it unchanged,
    so PyTorch's inputs work too), and the float32 result is never negative
    (a probability is at most 1) and keeps its relative accuracy for thousands
    of frames (each frame's variables are shifted to a maximum of 0 and the
    shifts summed with compensation; the log-softmax keeps a confident class's
    log-probability exact).

    A sequence no alignment can produce (fewer frames than labels plus
    repeats, or a frame where every needed class has probability 0) is
    infeasible: its loss is ``+inf`` (0 with ``zero_infinity=True``, still
    counted in the mean) and its gradient exactly 0. Frames past
    ``logit_lengths`` and labels past ``label_lengths`` may hold anything (NaN,
    padding ids such as -1) and reach neither the value nor the gradient.

    From PyTorch: ``F.ctc_loss(log_probs, targets, input_lengths,
    target_lengths)`` takes time-major ``[T, B, C]`` log-probabilities; here
    they are batch-first, ``ctc_loss(jnp.transpose(log_probs, (1, 0, 2)),
    targets, input_lengths, target_lengths)`` (``input_lengths`` is
    ``logit_lengths``, ``target_lengths`` is ``label_lengths``). A time-major
    input whose ``T`` differs from ``B`` is refused with this hint; when
    ``T == B`` the shapes cannot tell, so check that ``logits.shape[0]`` is
    the batch.

    Args:
      logits: ``[B, T, C]`` unnormalised scores (or log-probabilities) per
        frame, floating point; class ``blank`` is the blank.
      labels: ``[B, S]`` integer labels; row b's first ``label_lengths[b]``
        entries must lie in ``[0, C)`` and differ from ``blank`` (checked when
        concrete; NaN loss for that sequence under ``jit``), the rest are ignored.
      logit_lengths: ``[B]`` integer number of frames of each sequence, in
        ``[0, T]`` (:func:`lengths_from_paddings` turns optax's
        ``logit_paddings`` into these).
      label_lengths: ``[B]`` integer number of labels of each sequence, in
        ``[0, S]``.
      blank: the blank class, an int in ``[-C, C)`` (negative counts from the
        end; static). Default 0, as PyTorch.
      zero_infinity: give infeasible sequences a loss of 0 instead of ``+inf``
        (static), as PyTorch's ``zero_infinity``.

    Returns:
      The reduced loss (float32 for bf16/f16/f32 logits); with
      ``reduction="none"`` the per-sequence negative log-likelihoods ``[B]``
      (not divided by the label lengths).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> logits = jnp.zeros((2, 3, 3))                # uniform over {blank, 1, 2}
      >>> labels = jnp.array([[1, 2], [1, 1]])
      >>> jaxloss.ctc_loss(logits, labels, jnp.array([3, 3]), jnp.array([2, 2]), reduction="none")
      Array([1.686399, 3.295837], dtype=float32)
      >>> # -log(5/27): 5 alignments of "1 2" in 3 frames; -log(1/27): only "1 blank 1"
      >>> jaxloss.ctc_loss(logits, labels, jnp.array([3, 2]), jnp.array([2, 2]), reduction="none")
      Array([1.686399,      inf], dtype=float32)
    """
    num_c = logits.shape[-1]
    nll, l_len = _ctc_nll(logits, labels, logit_lengths, label_lengths, blank=blank % num_c,
                          zero_infinity=zero_infinity)
    return Unreduced(nll, mean=Mean(scale=1.0 / jnp.maximum(l_len, 1).astype(nll.dtype)))


@sequence(static={"blank": INT}, layout=_SEQUENCES, validate=_rnnt_validate,
          example=Example(_rnnt_sample, grad_order=1), class_name="RNNTLoss")
def rnnt_loss(logits, labels, logit_lengths, label_lengths, *, blank=0):
    r"""RNN-Transducer loss, per sequence of a padded batch.

    With :math:`p_{t,u} = \mathrm{softmax}(z_{b,t,u})` the joint network's
    distribution after :math:`t` frames and :math:`u` labels, an alignment is a
    monotone path through the lattice :math:`(t, u)` from :math:`(0, 0)` that
    emits label :math:`y_{u+1}` (to :math:`(t, u+1)`) or the blank (to
    :math:`(t+1, u)`), ending with the blank from :math:`(T_b - 1, U_b)`:

    .. math:: \ell_b = -\log \alpha(T_b, U_b), \qquad
        \alpha(t, u) = \alpha(t-1, u)\, p_{t-1,u}(\varnothing) + \alpha(t, u-1)\, p_{t,u-1}(y_u),
        \quad \alpha(0, 0) = 1

    computed in log space along the lattice's anti-diagonals (one
    ``lax.scan`` over the :math:`T + U` diagonals, a vector operation over
    :math:`u` each), differentiated by reverse mode through it (the scan's
    residuals are ``O(B (T + U) U)``, a small fraction of the logits; the
    gradient itself has the logits' size). Follows torchaudio's
    ``rnnt_loss`` (``fused_log_softmax=True``) with the blank given
    explicitly: torchaudio's default is the last class, jaxloss's is 0
    (``blank=-1`` gives torchaudio's). ``"mean"`` is the (weighted) mean of the
    per-sequence negative log-likelihoods, ``"sum"`` their sum. A sequence with
    no frames (``logit_lengths == 0``) has no alignment: ``+inf`` with a zero
    gradient. Lattice points past either length, also when the arrays are
    padded beyond the longest sequence, may hold anything (NaN included) and
    reach neither the value nor the gradient.

    Args:
      logits: ``[B, T, U+1, C]`` joint-network scores (or log-probabilities),
        floating point; class ``blank`` is the blank.
      labels: ``[B, U]`` integer labels; row b's first ``label_lengths[b]``
        entries must lie in ``[0, C)`` and differ from ``blank`` (checked when
        concrete; NaN loss for that sequence under ``jit``), the rest are ignored.
      logit_lengths: ``[B]`` integer number of frames of each sequence, in ``[0, T]``.
      label_lengths: ``[B]`` integer number of labels of each sequence, in ``[0, U]``.
      blank: the blank class, an int in ``[-C, C)`` (negative counts from the
        end; static). Default 0.

    Returns:
      The reduced loss (float32 for bf16/f16/f32 logits); with
      ``reduction="none"`` the per-sequence negative log-likelihoods ``[B]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> logits = jnp.zeros((1, 2, 2, 3))   # uniform: 2 alignments of 3 steps, -log(2/27)
      >>> float(jaxloss.rnnt_loss(logits, jnp.array([[1]]), jnp.array([2]), jnp.array([1])))
      2.602689743041992
    """
    num_c = logits.shape[-1]
    return _rnnt_nll(logits, labels, logit_lengths, label_lengths, blank=blank % num_c)


CTCLoss = ctc_loss.Loss
RNNTLoss = rnnt_loss.Loss
