"""DPO, ORPO, SimPO and GRPO against NumPy float64 closed forms written here."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import REDUCTIONS, assert_close, central_diff, reduce_ref

import jaxloss


def np_log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def np_dpo(pc, pr, rc, rr, beta, eps, kind):
    h = (pc - pr) - (rc - rr)
    z = beta * h
    if kind == "sigmoid":
        return -(1 - eps) * np_log_sigmoid(z) - eps * np_log_sigmoid(-z)
    if kind == "hinge":
        return np.maximum(0.0, 1.0 - z)
    if kind == "ipo":
        return (h - 1.0 / (2.0 * beta)) ** 2
    return (-(1 - eps) * np_log_sigmoid(z) + eps * np_log_sigmoid(-z)) / (1 - 2 * eps)


def np_orpo(c, r, beta):
    lo = lambda x: x - np.log(1.0 - np.exp(x))  # noqa: E731
    return -beta * np_log_sigmoid(lo(c) - lo(r))


def np_simpo(c, r, beta, gamma, eps):
    z = beta * (c - r) - gamma
    return -(1 - eps) * np_log_sigmoid(z) - eps * np_log_sigmoid(-z)


def _f32(*xs):
    return tuple(np.asarray(x, np.float32) for x in xs)


def _num_grad(f, xs, i):
    """Central differences of a float64 NumPy function in input ``i`` (the others fixed)."""
    x = [np.array(a, np.float64) for a in xs]
    return central_diff(lambda v: f(*x[:i], v, *x[i + 1:]), x[i])


RNG = np.random.default_rng(0)
PAIRS = _f32(*(-RNG.uniform(5, 15, size=(6,)) for _ in range(4)))
WEIGHTS = RNG.uniform(0.5, 2.0, size=(6,))
WHERE = np.array([True, False, True, True, False, True])


@pytest.mark.parametrize("kind", ["sigmoid", "hinge", "ipo", "robust"])
def test_dpo_every_type_reduction_and_grad(kind):
    beta, eps = 0.3, 0.1
    x64 = [a.astype(np.float64) for a in PAIRS]
    ref = np_dpo(*x64, beta, eps, kind)
    for reduction in REDUCTIONS:
        for kw in ({}, {"weights": WEIGHTS}, {"where": WHERE}):
            out = jaxloss.dpo_loss(*map(jnp.asarray, PAIRS), beta=beta, label_smoothing=eps, loss_type=kind,
                                   reduction=reduction, **{k: jnp.asarray(v) for k, v in kw.items()})
            assert_close(out, reduce_ref(ref, reduction, kw.get("weights"), kw.get("where")), rtol=2e-5, atol=1e-5)
    grads = jax.grad(lambda *a: jaxloss.dpo_loss(*a, beta=beta, label_smoothing=eps, loss_type=kind,
                                                 reduction="sum"), argnums=(0, 1, 2, 3))(*map(jnp.asarray, PAIRS))
    for i, g in enumerate(grads):
        expected = _num_grad(lambda *a: np_dpo(*a, beta, eps, kind).sum(), x64, i)
        assert_close(g, expected, rtol=1e-3, atol=1e-4)


def test_dpo_label_smoothing_matters_only_where_documented():
    args = tuple(map(jnp.asarray, PAIRS))
    for kind in ("hinge", "ipo"):
        assert_close(jaxloss.dpo_loss(*args, loss_type=kind, label_smoothing=0.3),
                     jaxloss.dpo_loss(*args, loss_type=kind))
    # conservative DPO at eps = 0 is plain DPO; robust at eps = 0 too
    assert_close(jaxloss.dpo_loss(*args, loss_type="robust"), jaxloss.dpo_loss(*args))
    assert not np.isclose(float(jaxloss.dpo_loss(*args, label_smoothing=0.2)), float(jaxloss.dpo_loss(*args)))


def test_dpo_extreme_margins_finite():
    big = jnp.array([1e4, -1e4, 0.0])
    z = jnp.zeros(3)
    for kind in ("sigmoid", "robust"):
        out = jaxloss.dpo_loss(big, z, z, z, beta=1.0, label_smoothing=0.1, loss_type=kind, reduction="none")
        g = jax.grad(lambda a: jaxloss.dpo_loss(a, z, z, z, beta=1.0, label_smoothing=0.1, loss_type=kind))(big)
        assert np.all(np.isfinite(out)) and np.all(np.isfinite(g))
    # -log sigmoid(1e4) = 0 and -log sigmoid(-1e4) = 1e4 exactly in float32
    assert_close(jaxloss.dpo_loss(big, z, z, z, beta=1.0, reduction="none"), [0.0, 1e4, np.log(2)])


def test_dpo_rejects_bad_hyperparameters():
    args = tuple(map(jnp.asarray, PAIRS))
    with pytest.raises(ValueError, match="dpo_loss: beta"):
        jaxloss.dpo_loss(*args, beta=0.0)
    with pytest.raises(ValueError, match="dpo_loss: label_smoothing"):
        jaxloss.dpo_loss(*args, label_smoothing=0.5)
    with pytest.raises(ValueError, match="dpo_loss: loss_type"):
        jaxloss.dpo_loss(*args, loss_type="kto")
    with pytest.raises(ValueError, match="dpo_loss"):
        jaxloss.dpo_loss(args[0], args[1][:3], args[2], args[3])


def test_orpo_and_simpo_against_numpy():
    c, r = _f32(-RNG.uniform(0.2, 3, size=6), -RNG.uniform(0.2, 3, size=6))
    c64, r64 = c.astype(np.float64), r.astype(np.float64)
    for reduction in REDUCTIONS:
        assert_close(jaxloss.orpo_loss(c, r, beta=0.7, reduction=reduction, where=WHERE),
                     reduce_ref(np_orpo(c64, r64, 0.7), reduction, where=WHERE), rtol=2e-5, atol=1e-6)
        assert_close(jaxloss.simpo_loss(c, r, beta=2.5, gamma=0.8, label_smoothing=0.1, reduction=reduction,
                                        weights=WEIGHTS),
                     reduce_ref(np_simpo(c64, r64, 2.5, 0.8, 0.1), reduction, WEIGHTS), rtol=2e-5, atol=1e-6)
    go = jax.grad(lambda a, b: jaxloss.orpo_loss(a, b, beta=0.7, reduction="sum"), argnums=(0, 1))(c, r)
    gs = jax.grad(lambda a, b: jaxloss.simpo_loss(a, b, beta=2.5, gamma=0.8, label_smoothing=0.1,
                                                  reduction="sum"), argnums=(0, 1))(c, r)
    for i in range(2):
        assert_close(go[i], _num_grad(lambda a, b: np_orpo(a, b, 0.7).sum(), (c64, r64), i), rtol=1e-3, atol=1e-5)
        assert_close(gs[i], _num_grad(lambda a, b: np_simpo(a, b, 2.5, 0.8, 0.1).sum(), (c64, r64), i),
                     rtol=1e-3, atol=1e-5)
    # the paper's odds: p_c = 0.5 (odds 1), p_r = 0.2 (odds 1/4): -log sigmoid(log 4)
    assert_close(jaxloss.orpo_loss(jnp.log(jnp.array([0.5])), jnp.log(jnp.array([0.2])), beta=1.0),
                 -np_log_sigmoid(np.log(4.0)))


# ---- GRPO -----------------------------------------------------------------------------


def np_grpo_tokens(lp, old, ref, adv, beta, el, eh):
    a = adv if adv.ndim == 2 else adv[:, None]
    r = np.exp(lp - old)
    pg = -np.minimum(r * a, np.clip(r, 1 - el, 1 + eh) * a)
    d = ref - lp
    return pg + beta * (np.exp(d) - d - 1)


def np_grpo(lp, old, ref, adv, mask, beta, el, eh, norm, reduction):
    tok = np_grpo_tokens(lp, old, ref, adv, beta, el, eh)
    m = mask.astype(np.float64)
    if reduction == "none":
        return np.where(mask, tok, 0.0)
    if reduction == "sum":
        return (m * tok).sum()
    if norm == "token":
        return (m * tok).sum() / max(m.sum(), 1)
    if norm == "constant":
        return (m * tok).sum() / tok.size
    per = m.sum(1)
    return np.mean(np.where(per > 0, (m * tok).sum(1) / np.maximum(per, 1), 0.0))


B, T = 4, 5
LP = -RNG.uniform(0.2, 3, size=(B, T))
OLD = LP + RNG.normal(size=(B, T)) * 0.3  # some ratios outside [0.8, 1.28]: both clips active
REF = LP + RNG.normal(size=(B, T)) * 0.5
ADV = RNG.normal(size=(B,))
MASK = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [1, 1, 0, 0, 0]], bool)  # row 2 empty
GRPO_ARGS = _f32(LP, OLD, REF, ADV)


@pytest.mark.parametrize("norm", ["token", "sequence", "constant"])
def test_grpo_normalizations_values_and_grads(norm):
    x64 = [a.astype(np.float64) for a in GRPO_ARGS]
    hp = dict(beta=0.05, epsilon_low=0.2, epsilon_high=0.28)
    r = np.exp(x64[0] - x64[1])
    assert (r < 0.8).any() and (r > 1.28).any()  # both clip bounds are exercised
    for reduction in REDUCTIONS:
        out = jaxloss.grpo_loss(*GRPO_ARGS, **hp, normalization=norm, reduction=reduction, where=MASK)
        assert_close(out, np_grpo(*x64, MASK, 0.05, 0.2, 0.28, norm, reduction), rtol=2e-5, atol=1e-6)
    s, w = jaxloss.grpo_loss(*GRPO_ARGS, **hp, normalization=norm, reduction="sum_and_weight", where=MASK)
    assert_close(s / w, np_grpo(*x64, MASK, 0.05, 0.2, 0.28, norm, "mean"), rtol=2e-5, atol=1e-6)
    assert float(w) == {"token": MASK.sum(), "sequence": B, "constant": B * T}[norm]
    g = jax.grad(lambda lp, ref: jaxloss.grpo_loss(lp, GRPO_ARGS[1], ref, GRPO_ARGS[3], **hp, normalization=norm,
                                                   where=MASK), argnums=(0, 1))(GRPO_ARGS[0], GRPO_ARGS[2])
    for i, j in ((0, 0), (1, 2)):
        num = _num_grad(lambda *a: np_grpo(*a, MASK, 0.05, 0.2, 0.28, norm, "mean"), x64, j)
        assert_close(g[i], num, rtol=1e-3, atol=1e-5)
        assert np.all(np.asarray(g[i])[~MASK] == 0)


def test_grpo_per_token_advantages_no_mask_and_nan_in_masked_tokens():
    adv_t = np.repeat(ADV[:, None], T, axis=1).astype(np.float32)
    x64 = [a.astype(np.float64) for a in GRPO_ARGS]
    full = np.ones((B, T), bool)
    for norm in ("token", "sequence", "constant"):
        out = jaxloss.grpo_loss(*GRPO_ARGS[:3], adv_t, beta=0.1, normalization=norm)
        assert_close(out, np_grpo(*x64, full, 0.1, 0.2, 0.2, norm, "mean"), rtol=2e-5, atol=1e-6)
    bad = GRPO_ARGS[0].copy()
    bad[~MASK] = np.nan
    val, g = jax.value_and_grad(lambda lp: jaxloss.grpo_loss(lp, *GRPO_ARGS[1:], beta=0.1, normalization="sequence",
                                                             where=MASK))(jnp.asarray(bad))
    assert np.isfinite(val) and np.all(np.isfinite(g)) and np.all(np.asarray(g)[~MASK] == 0)
    # fully masked: 0 and a zero gradient
    none = np.zeros((B, T), bool)
    val, g = jax.value_and_grad(lambda lp: jaxloss.grpo_loss(lp, *GRPO_ARGS[1:], normalization="sequence",
                                                             where=none))(jnp.asarray(GRPO_ARGS[0]))
    assert float(val) == 0 and np.all(np.asarray(g) == 0)


def test_grpo_on_policy_gradient_is_minus_advantage():
    lp = jnp.asarray(GRPO_ARGS[0])
    g = jax.grad(lambda x: jaxloss.grpo_loss(x, jax.lax.stop_gradient(x), x, GRPO_ARGS[3], beta=0.3,
                                             reduction="sum"))(lp)
    assert_close(g, -np.broadcast_to(ADV[:, None], (B, T)), rtol=1e-6, atol=1e-6)


def test_grpo_shape_errors():
    with pytest.raises(ValueError, match="grpo_loss: advantages"):
        jaxloss.grpo_loss(*GRPO_ARGS[:3], np.zeros(T, np.float32))
    with pytest.raises(ValueError, match="grpo_loss: logps"):
        jaxloss.grpo_loss(*(a[0] for a in GRPO_ARGS[:3]), np.zeros(T, np.float32))
    with pytest.raises(ValueError, match="grpo_loss: normalization"):
        jaxloss.grpo_loss(*GRPO_ARGS, normalization="batch")
