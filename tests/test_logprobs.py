"""token_logprobs and linear_token_logprobs (log-probs and entropies at a temperature), and the
temperature of sequence_logprobs / linear_sequence_logprobs, against NumPy float64.

The per-sequence functions' other tests are in tests/test_sequence_logprobs.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import assert_close

import jaxloss


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


def num_grad(f, x, h=1e-6):
    x = np.array(x, np.float64)
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        up, dn = x.copy(), x.copy()
        up[idx] += h
        dn[idx] -= h
        g[idx] = (f(up) - f(dn)) / (2 * h)
    return g


RNG = np.random.default_rng(0)
B, T, D, V = 2, 3, 5, 37
HIDDEN = RNG.normal(size=(B, T, D)).astype(np.float32)
WEIGHT = (RNG.normal(size=(V, D)) * 0.8).astype(np.float32)
LABELS = RNG.integers(0, V, size=(B, T)).astype(np.int32)
G_LP = RNG.normal(size=(B, T))
G_H = RNG.normal(size=(B, T))
TEMP = 0.7
H64, W64 = HIDDEN.astype(np.float64), WEIGHT.astype(np.float64)
Z64 = np.einsum("btd,vd->btv", H64, W64)


def _objective(fn):
    def f(*args):
        lp, ent = fn(*args)
        return jnp.sum(lp * G_LP) + jnp.sum(ent * G_H)
    return f


@pytest.mark.parametrize("temp", [1.0, TEMP])
def test_token_logprobs_values_and_gradients_against_numpy(temp):
    z32 = jnp.asarray(Z64, jnp.float32)
    lp, ent = jaxloss.token_logprobs(z32, LABELS, temperature=temp, return_entropy=True)
    ref_lp, ref_ent = np_token(Z64, LABELS, temp)
    assert_close(lp, ref_lp, rtol=1e-5, atol=1e-5)
    assert_close(ent, ref_ent, rtol=1e-5, atol=1e-5)
    assert_close(jaxloss.token_logprobs(z32, LABELS, temperature=temp), ref_lp, rtol=1e-5, atol=1e-5)
    f = _objective(lambda z, t: jaxloss.token_logprobs(z, LABELS, temperature=t, return_entropy=True))
    gz, gt = jax.grad(f, argnums=(0, 1))(z32, jnp.float32(temp))
    assert_close(gz, num_grad(lambda z: np_objective(z, LABELS, temp, G_LP, G_H), Z64), rtol=1e-3, atol=1e-5)
    num_t = (np_objective(Z64, LABELS, temp + 1e-6, G_LP, G_H) - np_objective(Z64, LABELS, temp - 1e-6, G_LP, G_H))
    assert_close(gt, num_t / 2e-6, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("chunk", [8, None])
def test_linear_token_logprobs_equals_materialised_in_value_and_gradients(chunk):
    """At T != 1: logp and entropy, and the gradients of hidden, weight and temperature through
    both outputs, equal the materialised log-softmax's (and NumPy's)."""
    def streamed(h, w, t):
        return jaxloss.linear_token_logprobs(h, w, LABELS, temperature=t, return_entropy=True, chunk_size=chunk)

    def materialised(h, w, t):
        return jaxloss.token_logprobs(jnp.einsum("btd,vd->btv", h, w), LABELS, temperature=t, return_entropy=True)

    args = (jnp.asarray(HIDDEN), jnp.asarray(WEIGHT), jnp.float32(TEMP))
    out, ref = streamed(*args), materialised(*args)
    np_lp, np_ent = np_token(Z64, LABELS, TEMP)
    for o, r, n in zip(out, ref, (np_lp, np_ent)):
        assert_close(o, r, rtol=1e-5, atol=1e-5)
        assert_close(o, n, rtol=1e-5, atol=1e-5)
    # each output on its own and both together
    for pick in (lambda o: jnp.sum(o[0] * G_LP), lambda o: jnp.sum(o[1] * G_H), lambda o: _objective(lambda x: x)(o)):
        gs = jax.grad(lambda *a: pick(streamed(*a)), argnums=(0, 1, 2))(*args)
        gm = jax.grad(lambda *a: pick(materialised(*a)), argnums=(0, 1, 2))(*args)
        for a, b in zip(gs, gm):
            assert_close(a, b, rtol=1e-4, atol=1e-5)
    # and against float64 central differences of NumPy in hidden
    gh = jax.grad(_objective(streamed))(*args)
    num = num_grad(lambda h: np_objective(np.einsum("btd,vd->btv", h, W64), LABELS, TEMP, G_LP, G_H), H64)
    assert_close(gh, num, rtol=1e-3, atol=1e-5)
    # without the entropy: the engine of linear_cross_entropy, the same logp and gradients
    lp_only = jaxloss.linear_token_logprobs(*args[:2], LABELS, temperature=TEMP, chunk_size=chunk)
    assert_close(lp_only, np_lp, rtol=1e-5, atol=1e-5)
    g1 = jax.grad(lambda h, w, t: jnp.sum(G_LP * jaxloss.linear_token_logprobs(h, w, LABELS, temperature=t,
                                                                             chunk_size=chunk)), argnums=(0, 1, 2))
    g2 = jax.grad(lambda h, w, t: jnp.sum(G_LP * materialised(h, w, t)[0]), argnums=(0, 1, 2))
    for a, b in zip(g1(*args), g2(*args)):
        assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_entropy_of_a_peaked_distribution_is_exact():
    """The entropy is a sum of non-negative terms: no cancellation of lse and E[u] (each ~100)
    when the distribution is nearly one-hot."""
    h = HIDDEN * 12.0
    z = np.einsum("btd,vd->btv", h.astype(np.float64), W64)
    _, ref = np_token(z, LABELS, 0.5)
    assert ref.min() < 1e-4  # some tokens are nearly certain
    _, ent = jaxloss.linear_token_logprobs(h, WEIGHT, LABELS, temperature=0.5, return_entropy=True, chunk_size=8)
    _, ent_m = jaxloss.token_logprobs(jnp.asarray(z, jnp.float32), LABELS, temperature=0.5, return_entropy=True)
    assert_close(ent, ref, rtol=1e-4, atol=2e-6)
    assert_close(ent_m, ref, rtol=1e-4, atol=2e-6)
    assert np.all(np.asarray(ent) >= 0)


def test_linear_token_logprobs_rows_without_cotangent_get_no_gradient_even_nan():
    """Padding rows whose outputs are masked downstream: zero gradient, even with NaN hidden states."""
    mask = np.array([[True, True, False], [True, False, False]])
    bad = HIDDEN.copy()
    bad[~mask] = np.nan

    def f(h, w):
        lp, ent = jaxloss.linear_token_logprobs(h, w, LABELS, temperature=TEMP, return_entropy=True, chunk_size=8)
        return jnp.sum(jnp.where(mask, lp * G_LP + 0.1 * ent, 0.0))

    gh, gw = jax.jit(jax.grad(f, argnums=(0, 1)))(bad, WEIGHT)
    clean = jax.grad(f, argnums=(0, 1))(HIDDEN, WEIGHT)
    assert np.all(np.isfinite(gh)) and np.all(np.isfinite(gw)) and np.all(np.asarray(gh)[~mask] == 0)
    assert_close(gw, clean[1], rtol=1e-5, atol=1e-6)


def test_linear_token_logprobs_flat_inputs_bf16_and_no_vocabulary_sized_buffer():
    # [N, D] inputs: a flat batch of tokens
    lp, ent = jaxloss.linear_token_logprobs(HIDDEN.reshape(-1, D), WEIGHT, LABELS.reshape(-1), return_entropy=True)
    ref_lp, ref_ent = np_token(Z64, LABELS, 1.0)
    assert lp.shape == (B * T,)
    assert_close(lp, ref_lp.reshape(-1), rtol=1e-5, atol=1e-5)
    assert_close(ent, ref_ent.reshape(-1), rtol=1e-5, atol=1e-5)
    # bf16 in: float32 out, gradients in bf16
    hb, wb = jnp.asarray(HIDDEN, jnp.bfloat16), jnp.asarray(WEIGHT, jnp.bfloat16)
    lp, ent = jaxloss.linear_token_logprobs(hb, wb, LABELS, temperature=TEMP, return_entropy=True, chunk_size=8)
    assert lp.dtype == jnp.float32 and ent.dtype == jnp.float32
    gh, gw = jax.grad(_objective(lambda h, w: jaxloss.linear_token_logprobs(h, w, LABELS, temperature=TEMP,
                                                                            return_entropy=True, chunk_size=8)),
                      argnums=(0, 1))(hb, wb)
    assert gh.dtype == jnp.bfloat16 and gw.dtype == jnp.bfloat16 and np.all(np.isfinite(np.asarray(gw, np.float32)))
    # the compiled value and gradient hold a few [N, chunk] blocks, never an [N, V] one
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
    tok, _ = np_token(Z64, LABELS, TEMP)
    ref = np.where(mask, tok, 0).sum(-1)
    z32 = jnp.asarray(Z64, jnp.float32)
    assert_close(jaxloss.sequence_logprobs(z32, LABELS, mask=mask, temperature=TEMP), ref, rtol=1e-5, atol=1e-5)
    lin = jaxloss.linear_sequence_logprobs(HIDDEN, WEIGHT, LABELS, mask=mask, temperature=TEMP, chunk_size=8)
    assert_close(lin, ref, rtol=1e-5, atol=1e-5)
    assert_close(jaxloss.linear_sequence_logprobs(HIDDEN, WEIGHT, LABELS, mask=mask, temperature=TEMP, average=True,
                                                  chunk_size=8), ref / mask.sum(-1), rtol=1e-5, atol=1e-5)

    def np_sum(h, t):
        lp, _ = np_token(np.einsum("btd,vd->btv", h, W64), LABELS, t)
        return float((np.where(mask, lp, 0).sum(-1) * G_LP[:, 0]).sum())

    gh, gt = jax.grad(lambda h, t: jnp.sum(G_LP[:, 0] * jaxloss.linear_sequence_logprobs(
        h, WEIGHT, LABELS, mask=mask, temperature=t, chunk_size=8)), argnums=(0, 1))(HIDDEN, jnp.float32(TEMP))
    assert_close(gh, num_grad(lambda h: np_sum(h, TEMP), H64), rtol=1e-3, atol=1e-5)
    assert_close(gt, (np_sum(H64, TEMP + 1e-6) - np_sum(H64, TEMP - 1e-6)) / 2e-6, rtol=1e-3, atol=1e-5)
    # T = 1 is today's program
    assert_close(jaxloss.sequence_logprobs(z32, LABELS, temperature=1.0), jaxloss.sequence_logprobs(z32, LABELS),
                 rtol=0, atol=0)


def test_token_logprobs_errors():
    z = jnp.asarray(Z64, jnp.float32)
    with pytest.raises(ValueError, match=r"token_logprobs: temperature must lie in \(0, inf\)"):
        jaxloss.token_logprobs(z, LABELS, temperature=0.0)
    with pytest.raises(ValueError, match=r"linear_token_logprobs: temperature must lie in \(0, inf\)"):
        jaxloss.linear_token_logprobs(HIDDEN, WEIGHT, LABELS, temperature=-1.0, return_entropy=True)
    with pytest.raises(ValueError, match=r"sequence_logprobs: temperature"):
        jaxloss.linear_sequence_logprobs(HIDDEN, WEIGHT, LABELS, temperature=0)
    with pytest.raises(ValueError, match=r"token_logprobs: labels must lie in \[0, 37\)"):
        jaxloss.token_logprobs(z, jnp.where(LABELS == LABELS[0, 0], -100, LABELS))
    with pytest.raises(ValueError, match=r"linear_token_logprobs: labels must lie in \[0, 37\)"):
        jaxloss.linear_token_logprobs(HIDDEN, WEIGHT, LABELS + V, return_entropy=True)
    with pytest.raises(TypeError, match="linear_token_logprobs: return_entropy"):
        jaxloss.linear_token_logprobs(HIDDEN, WEIGHT, LABELS, return_entropy=1)
    with pytest.raises(ValueError, match="token_logprobs: labels"):
        jaxloss.token_logprobs(z, LABELS[:, :2])
    # under jit an out-of-range label gives NaN for its token only
    bad = jnp.asarray(LABELS).at[0, 0].set(V)
    lp, ent = jax.jit(lambda y: jaxloss.linear_token_logprobs(HIDDEN, WEIGHT, y, return_entropy=True,
                                                              chunk_size=8))(bad)
    assert np.isnan(lp[0, 0]) and np.isfinite(np.asarray(lp)[1:]).all() and np.isfinite(ent).all()
