"""sequence_logprobs and linear_sequence_logprobs against NumPy float64 (values and gradients)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import assert_close

import jaxloss


def np_log_softmax(z):
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def np_seq(z, y, mask, average):
    """(value [B], d value . g / d z) in float64 for a cotangent g [B]."""
    lp = np_log_softmax(z)
    yy = np.where(mask, y, 0)
    tok = np.take_along_axis(lp, yy[..., None], -1)[..., 0]
    n = mask.sum(-1)
    scale = 1.0 / np.maximum(n, 1) if average else np.ones_like(n, dtype=np.float64)
    value = np.where(mask, tok, 0).sum(-1) * scale
    onehot = np.eye(z.shape[-1])[yy]
    dtok = mask * scale[:, None]  # d value_b / d tok_bt
    dz = dtok[..., None] * (onehot - np.exp(lp))
    return value, dz


RNG = np.random.default_rng(0)
B, T, D, V = 3, 5, 6, 37
HIDDEN = RNG.normal(size=(B, T, D)).astype(np.float32)
WEIGHT = (RNG.normal(size=(V, D)) * 0.7).astype(np.float32)
LABELS = RNG.integers(0, V, size=(B, T)).astype(np.int32)
MASK = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1], [0, 0, 0, 0, 0]], bool)  # last sequence fully masked
G = RNG.normal(size=(B,))
LABELS_PAD = np.where(MASK, LABELS, -100).astype(np.int32)


@pytest.mark.parametrize("average", [False, True])
def test_sequence_logprobs_value_and_grad(average):
    z = np.einsum("btd,vd->btv", HIDDEN.astype(np.float64), WEIGHT.astype(np.float64))
    value, dz = np_seq(z, LABELS, MASK, average)
    out, vjp = jax.vjp(lambda zz: jaxloss.sequence_logprobs(zz, jnp.asarray(LABELS_PAD), mask=jnp.asarray(MASK),
                                                              average=average), jnp.asarray(z, jnp.float32))
    assert_close(out, value, rtol=1e-5, atol=1e-5)
    assert out[2] == 0
    assert_close(vjp(jnp.asarray(G, jnp.float32))[0], np.einsum("b,btv->btv", G, dz), rtol=1e-4, atol=1e-6)
    # no mask: every token counts
    full = np.ones((B, T), bool)
    assert_close(jaxloss.sequence_logprobs(jnp.asarray(z, jnp.float32), jnp.asarray(LABELS), average=average),
                 np_seq(z, LABELS, full, average)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("average", [False, True])
def test_linear_sequence_logprobs_equals_materialised_and_numpy(average):
    h64, w64 = HIDDEN.astype(np.float64), WEIGHT.astype(np.float64)
    value, dz = np_seq(np.einsum("btd,vd->btv", h64, w64), LABELS, MASK, average)
    gdz = np.einsum("b,btv->btv", G, dz)
    dh, dw = np.einsum("btv,vd->btd", gdz, w64), np.einsum("btv,btd->vd", gdz, h64)

    def streamed(h, w):  # a chunk that does not divide V: the clamped last chunk is exercised
        return jaxloss.linear_sequence_logprobs(h, w, jnp.asarray(LABELS_PAD), mask=jnp.asarray(MASK),
                                                average=average, chunk_size=8)

    def materialised(h, w):
        lp = jax.nn.log_softmax(jnp.einsum("btd,vd->btv", h, w), axis=-1)
        tok = jnp.take_along_axis(lp, jnp.asarray(np.where(MASK, LABELS, 0))[..., None], -1)[..., 0]
        s = jnp.sum(jnp.where(MASK, tok, 0), -1)
        return s / jnp.maximum(MASK.sum(-1), 1) if average else s

    g = jnp.asarray(G, jnp.float32)
    for fn in (streamed, materialised):
        out, vjp = jax.vjp(fn, jnp.asarray(HIDDEN), jnp.asarray(WEIGHT))
        gh, gw = vjp(g)
        assert_close(out, value, rtol=1e-5, atol=1e-5)
        assert_close(gh, dh, rtol=1e-4, atol=1e-5)
        assert_close(gw, dw, rtol=1e-4, atol=1e-5)
        assert np.all(np.asarray(gh)[~MASK] == 0)


def test_linear_sequence_logprobs_default_chunk_jit_nan_masked_and_dpo():
    bad = HIDDEN.copy()
    bad[~MASK] = np.nan
    f = jax.jit(lambda h, w: jaxloss.linear_sequence_logprobs(h, w, LABELS_PAD, mask=MASK))
    out, (gh, gw) = jax.value_and_grad(lambda h, w: jnp.sum(f(h, w)), argnums=(0, 1))(jnp.asarray(bad),
                                                                                     jnp.asarray(WEIGHT))
    ref = jaxloss.sequence_logprobs(jnp.einsum("btd,vd->btv", HIDDEN, WEIGHT), LABELS_PAD, mask=MASK)
    assert_close(out, jnp.sum(ref), rtol=1e-5)
    assert np.all(np.isfinite(gh)) and np.all(np.isfinite(gw)) and np.all(np.asarray(gh)[~MASK] == 0)
    # composes with the preference losses (gradient reaches the head)
    pc = lambda w: jaxloss.linear_sequence_logprobs(HIDDEN[:2], w, LABELS[:2], chunk_size=16)  # noqa: E731
    g = jax.grad(lambda w: jaxloss.dpo_loss(pc(w)[:1], pc(w)[1:], jnp.zeros(1), jnp.zeros(1)))(jnp.asarray(WEIGHT))
    assert np.all(np.isfinite(g)) and np.any(g != 0)


def test_sequence_logprobs_errors():
    z = jnp.zeros((B, T, V))
    with pytest.raises(ValueError, match=r"sequence_logprobs: labels must lie in \[0, 37\)"):
        jaxloss.sequence_logprobs(z, LABELS_PAD)  # -100 unmasked
    with pytest.raises(TypeError, match="sequence_logprobs: labels must be integer"):
        jaxloss.sequence_logprobs(z, LABELS.astype(np.float32))
    with pytest.raises(ValueError, match="sequence_logprobs: mask"):
        jaxloss.sequence_logprobs(z, LABELS, mask=MASK[:, :2])
    with pytest.raises(ValueError, match="linear_sequence_logprobs: weight"):
        jaxloss.linear_sequence_logprobs(HIDDEN, WEIGHT[:, :2], LABELS)
    with pytest.raises(ValueError, match="linear_sequence_logprobs: labels"):
        jaxloss.linear_sequence_logprobs(HIDDEN, WEIGHT, LABELS[:, :2])
    # under jit an unmasked out-of-range label gives NaN for its sequence only
    out = jax.jit(jaxloss.sequence_logprobs)(z, jnp.asarray(LABELS).at[0, 0].set(V))
    assert np.isnan(out[0]) and np.all(np.isfinite(out[1:]))
