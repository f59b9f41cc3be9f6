"""sequence_logprobs, linear_sequence_logprobs, token_logprobs and linear_token_logprobs against NumPy
float64 (values and gradients; log-probs and entropies at a temperature)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import assert_close, central_diff

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
    out, vjp = jax.vjp(
        lambda zz: jaxloss.sequence_logprobs(zz, jnp.asarray(LABELS_PAD), mask=jnp.asarray(MASK), average=average),
        jnp.asarray(z, jnp.float32),
    )
    assert_close(out, value, rtol=1e-5, atol=1e-5)
    assert out[2] == 0
    assert_close(vjp(jnp.asarray(G, jnp.float32))[0], np.einsum("b,btv->btv", G, dz), rtol=1e-4, atol=1e-6)
    # no mask: every token counts
    full = np.ones((B, T), bool)
    assert_close(
        jaxloss.sequence_logprobs(jnp.asarray(z, jnp.float32), jnp.asarray(LABELS), average=average),
        np_seq(z, LABELS, full, average)[0],
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize("average", [False, True])
def test_linear_sequence_logprobs_equals_materialised_and_numpy(average):
    h64, w64 = HIDDEN.astype(np.float64), WEIGHT.astype(np.float64)
    value, dz = np_seq(np.einsum("btd,vd->btv", h64, w64), LABELS, MASK, average)
    gdz = np.einsum("b,btv->btv", G, dz)
    dh, dw = np.einsum("btv,vd->btd", gdz, w64), np.einsum("btv,btd->vd", gdz, h64)

    def streamed(h, w):  # a chunk that does not divide V: the clamped last chunk is exercised
        return jaxloss.linear_sequence_logprobs(
            h, w, jnp.asarray(LABELS_PAD), mask=jnp.asarray(MASK), average=average, chunk_size=8
        )

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
    out, (gh, gw) = jax.value_and_grad(lambda h, w: jnp.sum(f(h, w)), argnums=(0, 1))(
        jnp.asarray(bad), jnp.asarray(WEIGHT)
    )
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


# -- per-token log-probabilities and entropies at a temperature --------------------


def np_token(z, y, temp):
    """(log p_y, H) of softmax(z / temp) over the last axis, float64."""
    u = np.asarray(z, np.float64) / temp
    m = u.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(u - m).sum(-1, keepdims=True)))[..., 0]
    logp_all = u - lse[..., None]
    logp = np.take_along_axis(logp_all, y[..., None], -1)[..., 0]
    return logp, -(np.exp(logp_all) * logp_all).sum(-1)


def np_objective(z, y, temp, g_lp, g_h):
    """A scalar that uses both outputs: sum(g_lp * logp + g_h * H)."""
    lp, ent = np_token(z, y, temp)
    return float((g_lp * lp).sum() + (g_h * ent).sum())




TOK_RNG = np.random.default_rng(0)
TOK_B, TOK_T, TOK_D, TOK_V = 2, 3, 5, 37
TOK_HIDDEN = TOK_RNG.normal(size=(TOK_B, TOK_T, TOK_D)).astype(np.float32)
TOK_WEIGHT = (TOK_RNG.normal(size=(TOK_V, TOK_D)) * 0.8).astype(np.float32)
TOK_LABELS = TOK_RNG.integers(0, TOK_V, size=(TOK_B, TOK_T)).astype(np.int32)
TOK_G_LP = TOK_RNG.normal(size=(TOK_B, TOK_T))
TOK_G_H = TOK_RNG.normal(size=(TOK_B, TOK_T))
TOK_TEMP = 0.7
H64, W64 = TOK_HIDDEN.astype(np.float64), TOK_WEIGHT.astype(np.float64)
Z64 = np.einsum("btd,vd->btv", H64, W64)


def _objective(fn):
    def f(*args):
        lp, ent = fn(*args)
        return jnp.sum(lp * TOK_G_LP) + jnp.sum(ent * TOK_G_H)

    return f


@pytest.mark.parametrize("temp", [1.0, TOK_TEMP])
def test_token_logprobs_values_and_gradients_against_numpy(temp):
    z32 = jnp.asarray(Z64, jnp.float32)
    lp, ent = jaxloss.token_logprobs(z32, TOK_LABELS, temperature=temp, return_entropy=True)
    ref_lp, ref_ent = np_token(Z64, TOK_LABELS, temp)
    assert_close(lp, ref_lp, rtol=1e-5, atol=1e-5)
    assert_close(ent, ref_ent, rtol=1e-5, atol=1e-5)
    assert_close(jaxloss.token_logprobs(z32, TOK_LABELS, temperature=temp), ref_lp, rtol=1e-5, atol=1e-5)
    f = _objective(lambda z, t: jaxloss.token_logprobs(z, TOK_LABELS, temperature=t, return_entropy=True))
    gz, gt = jax.grad(f, argnums=(0, 1))(z32, jnp.float32(temp))
    assert_close(
        gz, central_diff(lambda z: np_objective(z, TOK_LABELS, temp, TOK_G_LP, TOK_G_H), Z64), rtol=1e-3, atol=1e-5
    )
    num_t = np_objective(Z64, TOK_LABELS, temp + 1e-6, TOK_G_LP, TOK_G_H) - np_objective(
        Z64, TOK_LABELS, temp - 1e-6, TOK_G_LP, TOK_G_H
    )
    assert_close(gt, num_t / 2e-6, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("chunk", [8, None])
def test_linear_token_logprobs_equals_materialised_in_value_and_gradients(chunk):
    """At TOK_T != 1: logp and entropy, and the gradients of hidden, weight and temperature through
    both outputs, equal the materialised log-softmax's (and NumPy's)."""

    def streamed(h, w, t):
        return jaxloss.linear_token_logprobs(h, w, TOK_LABELS, temperature=t, return_entropy=True, chunk_size=chunk)

    def materialised(h, w, t):
        return jaxloss.token_logprobs(jnp.einsum("btd,vd->btv", h, w), TOK_LABELS, temperature=t, return_entropy=True)

    args = (jnp.asarray(TOK_HIDDEN), jnp.asarray(TOK_WEIGHT), jnp.float32(TOK_TEMP))
    out, ref = streamed(*args), materialised(*args)
    np_lp, np_ent = np_token(Z64, TOK_LABELS, TOK_TEMP)
    for o, r, n in zip(out, ref, (np_lp, np_ent)):
        assert_close(o, r, rtol=1e-5, atol=1e-5)
        assert_close(o, n, rtol=1e-5, atol=1e-5)
    # each output on its own and both together
    for pick in (
        lambda o: jnp.sum(o[0] * TOK_G_LP),
        lambda o: jnp.sum(o[1] * TOK_G_H),
        lambda o: _objective(lambda x: x)(o),
    ):
        gs = jax.grad(lambda *a: pick(streamed(*a)), argnums=(0, 1, 2))(*args)
        gm = jax.grad(lambda *a: pick(materialised(*a)), argnums=(0, 1, 2))(*args)
        for a, b in zip(gs, gm):
            assert_close(a, b, rtol=1e-4, atol=1e-5)
    # and against float64 central differences of NumPy in hidden
    gh = jax.grad(_objective(streamed))(*args)
    num = central_diff(
        lambda h: np_objective(np.einsum("btd,vd->btv", h, W64), TOK_LABELS, TOK_TEMP, TOK_G_LP, TOK_G_H), H64
    )
    assert_close(gh, num, rtol=1e-3, atol=1e-5)
    # without the entropy: the engine of linear_cross_entropy, the same logp and gradients
    lp_only = jaxloss.linear_token_logprobs(*args[:2], TOK_LABELS, temperature=TOK_TEMP, chunk_size=chunk)
    assert_close(lp_only, np_lp, rtol=1e-5, atol=1e-5)
    g1 = jax.grad(
        lambda h, w, t: jnp.sum(
            TOK_G_LP * jaxloss.linear_token_logprobs(h, w, TOK_LABELS, temperature=t, chunk_size=chunk)
        ),
        argnums=(0, 1, 2),
    )
    g2 = jax.grad(lambda h, w, t: jnp.sum(TOK_G_LP * materialised(h, w, t)[0]), argnums=(0, 1, 2))
    for a, b in zip(g1(*args), g2(*args)):
        assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_entropy_of_a_peaked_distribution_is_exact():
    """The entropy is a sum of non-negative terms: no cancellation of lse and E[u] (each ~100)
    when the distribution is nearly one-hot."""
    h = TOK_HIDDEN * 12.0
    z = np.einsum("btd,vd->btv", h.astype(np.float64), W64)
    _, ref = np_token(z, TOK_LABELS, 0.5)
    assert ref.min() < 1e-4  # some tokens are nearly certain
    _, ent = jaxloss.linear_token_logprobs(
        h, TOK_WEIGHT, TOK_LABELS, temperature=0.5, return_entropy=True, chunk_size=8
    )
    _, ent_m = jaxloss.token_logprobs(jnp.asarray(z, jnp.float32), TOK_LABELS, temperature=0.5, return_entropy=True)
    assert_close(ent, ref, rtol=1e-4, atol=2e-6)
    assert_close(ent_m, ref, rtol=1e-4, atol=2e-6)
    assert np.all(np.asarray(ent) >= 0)


def test_linear_token_logprobs_rows_without_cotangent_get_no_gradient_even_nan():
    """Padding rows whose outputs are masked downstream: zero gradient, even with NaN hidden states."""
    mask = np.array([[True, True, False], [True, False, False]])
    bad = TOK_HIDDEN.copy()
    bad[~mask] = np.nan

    def f(h, w):
        lp, ent = jaxloss.linear_token_logprobs(
            h, w, TOK_LABELS, temperature=TOK_TEMP, return_entropy=True, chunk_size=8
        )
        return jnp.sum(jnp.where(mask, lp * TOK_G_LP + 0.1 * ent, 0.0))

    gh, gw = jax.jit(jax.grad(f, argnums=(0, 1)))(bad, TOK_WEIGHT)
    clean = jax.grad(f, argnums=(0, 1))(TOK_HIDDEN, TOK_WEIGHT)
    assert np.all(np.isfinite(gh)) and np.all(np.isfinite(gw)) and np.all(np.asarray(gh)[~mask] == 0)
    assert_close(gw, clean[1], rtol=1e-5, atol=1e-6)


def test_linear_token_logprobs_flat_inputs_bf16_and_no_vocabulary_sized_buffer():
    # [N, TOK_D] inputs: a flat batch of tokens
    lp, ent = jaxloss.linear_token_logprobs(
        TOK_HIDDEN.reshape(-1, TOK_D), TOK_WEIGHT, TOK_LABELS.reshape(-1), return_entropy=True
    )
    ref_lp, ref_ent = np_token(Z64, TOK_LABELS, 1.0)
    assert lp.shape == (TOK_B * TOK_T,)
    assert_close(lp, ref_lp.reshape(-1), rtol=1e-5, atol=1e-5)
    assert_close(ent, ref_ent.reshape(-1), rtol=1e-5, atol=1e-5)
    # bf16 in: float32 out, gradients in bf16
    hb, wb = jnp.asarray(TOK_HIDDEN, jnp.bfloat16), jnp.asarray(TOK_WEIGHT, jnp.bfloat16)
    lp, ent = jaxloss.linear_token_logprobs(hb, wb, TOK_LABELS, temperature=TOK_TEMP, return_entropy=True, chunk_size=8)
    assert lp.dtype == jnp.float32 and ent.dtype == jnp.float32
    gh, gw = jax.grad(
        _objective(
            lambda h, w: jaxloss.linear_token_logprobs(
                h, w, TOK_LABELS, temperature=TOK_TEMP, return_entropy=True, chunk_size=8
            )
        ),
        argnums=(0, 1),
    )(hb, wb)
    assert gh.dtype == jnp.bfloat16 and gw.dtype == jnp.bfloat16 and np.all(np.isfinite(np.asarray(gw, np.float32)))
    # the compiled value and gradient hold a few [N, chunk] blocks, never an [N, TOK_V] one
    n, d, v, chunk = 256, 16, 8192, 256
    h = jax.ShapeDtypeStruct((n, d), jnp.float32)
    w = jax.ShapeDtypeStruct((v, d), jnp.float32)
    y = jax.ShapeDtypeStruct((n,), jnp.int32)

    def loss(h, w, y):
        lp, ent = jaxloss.linear_token_logprobs(h, w, y, temperature=0.9, return_entropy=True, chunk_size=chunk)
        return jnp.sum(lp) + 0.01 * jnp.sum(ent)

    mem = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(h, w, y).compile().memory_analysis()
    assert mem.temp_size_in_bytes < 0.25 * n * v * 4, mem.temp_size_in_bytes


def test_sequence_logprobs_temperature():
    mask = np.array([[True, True, False], [False, True, True]])
    tok, _ = np_token(Z64, TOK_LABELS, TOK_TEMP)
    ref = np.where(mask, tok, 0).sum(-1)
    z32 = jnp.asarray(Z64, jnp.float32)
    assert_close(jaxloss.sequence_logprobs(z32, TOK_LABELS, mask=mask, temperature=TOK_TEMP), ref, rtol=1e-5, atol=1e-5)
    lin = jaxloss.linear_sequence_logprobs(
        TOK_HIDDEN, TOK_WEIGHT, TOK_LABELS, mask=mask, temperature=TOK_TEMP, chunk_size=8
    )
    assert_close(lin, ref, rtol=1e-5, atol=1e-5)
    assert_close(
        jaxloss.linear_sequence_logprobs(
            TOK_HIDDEN, TOK_WEIGHT, TOK_LABELS, mask=mask, temperature=TOK_TEMP, average=True, chunk_size=8
        ),
        ref / mask.sum(-1),
        rtol=1e-5,
        atol=1e-5,
    )

    def np_sum(h, t):
        lp, _ = np_token(np.einsum("btd,vd->btv", h, W64), TOK_LABELS, t)
        return float((np.where(mask, lp, 0).sum(-1) * TOK_G_LP[:, 0]).sum())

    gh, gt = jax.grad(
        lambda h, t: jnp.sum(
            TOK_G_LP[:, 0]
            * jaxloss.linear_sequence_logprobs(h, TOK_WEIGHT, TOK_LABELS, mask=mask, temperature=t, chunk_size=8)
        ),
        argnums=(0, 1),
    )(TOK_HIDDEN, jnp.float32(TOK_TEMP))
    assert_close(gh, central_diff(lambda h: np_sum(h, TOK_TEMP), H64), rtol=1e-3, atol=1e-5)
    assert_close(gt, (np_sum(H64, TOK_TEMP + 1e-6) - np_sum(H64, TOK_TEMP - 1e-6)) / 2e-6, rtol=1e-3, atol=1e-5)
    # TOK_T = 1 is today's program
    assert_close(
        jaxloss.sequence_logprobs(z32, TOK_LABELS, temperature=1.0),
        jaxloss.sequence_logprobs(z32, TOK_LABELS),
        rtol=0,
        atol=0,
    )


def test_token_logprobs_errors():
    z = jnp.asarray(Z64, jnp.float32)
    with pytest.raises(ValueError, match=r"token_logprobs: temperature must lie in \(0, inf\)"):
        jaxloss.token_logprobs(z, TOK_LABELS, temperature=0.0)
    with pytest.raises(ValueError, match=r"linear_token_logprobs: temperature must lie in \(0, inf\)"):
        jaxloss.linear_token_logprobs(TOK_HIDDEN, TOK_WEIGHT, TOK_LABELS, temperature=-1.0, return_entropy=True)
    with pytest.raises(ValueError, match=r"sequence_logprobs: temperature"):
        jaxloss.linear_sequence_logprobs(TOK_HIDDEN, TOK_WEIGHT, TOK_LABELS, temperature=0)
    with pytest.raises(ValueError, match=r"token_logprobs: labels must lie in \[0, 37\)"):
        jaxloss.token_logprobs(z, jnp.where(TOK_LABELS == TOK_LABELS[0, 0], -100, TOK_LABELS))
    with pytest.raises(ValueError, match=r"linear_token_logprobs: labels must lie in \[0, 37\)"):
        jaxloss.linear_token_logprobs(TOK_HIDDEN, TOK_WEIGHT, TOK_LABELS + TOK_V, return_entropy=True)
    with pytest.raises(TypeError, match="linear_token_logprobs: return_entropy"):
        jaxloss.linear_token_logprobs(TOK_HIDDEN, TOK_WEIGHT, TOK_LABELS, return_entropy=1)
    with pytest.raises(ValueError, match="token_logprobs: labels"):
        jaxloss.token_logprobs(z, TOK_LABELS[:, :2])
    # under jit an out-of-range label gives NaN for its token only
    bad = jnp.asarray(TOK_LABELS).at[0, 0].set(TOK_V)
    lp, ent = jax.jit(
        lambda y: jaxloss.linear_token_logprobs(TOK_HIDDEN, TOK_WEIGHT, y, return_entropy=True, chunk_size=8)
    )(bad)
    assert np.isnan(lp[0, 0]) and np.isfinite(np.asarray(lp)[1:]).all() and np.isfinite(ent).all()
