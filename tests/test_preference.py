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


# ---- GRPO, second edition: TRL's loss types, GSPO, delta, SAPO, bias-corrected KL -------------------

GRPO_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo")
TYPE_NORM = {"grpo": "sequence", "sapo": "sequence", "bnpo": "token", "dapo": "token", "cispo": "token",
             "dr_grpo": "constant"}


def np_grpo2_tokens(lp, old, ref, adv, mask, *, loss_type, level="token", beta=0.0, el=0.2, eh=0.2, delta=None,
                    tpos=1.0, tneg=1.05, klbc=False, frozen=None):
    """Per-token losses of TRL's GRPOTrainer, float64. ``frozen``: the log-probs at
    which CISPO's stopped weight is evaluated (the value's own ``lp`` when None)."""
    a = adv if adv.ndim == 2 else adv[:, None]
    m = mask.astype(np.float64)

    def log_is(x):
        lr = x - old
        if level == "sequence":
            return ((lr * m).sum(1) / np.maximum(m.sum(1), 1.0))[:, None]
        return lr

    r = np.exp(log_is(lp))
    if loss_type == "cispo":
        w = np.minimum(np.exp(log_is(lp if frozen is None else frozen)), eh)
        pg = -w * a * lp
    elif loss_type == "sapo":
        tau = np.where(a > 0, tpos, tneg)
        pg = -(1.0 / (1.0 + np.exp(-tau * (r - 1.0)))) * 4.0 / tau * a
    else:
        capped = r if delta is None else np.minimum(r, delta)
        pg = -np.minimum(capped * a, np.clip(r, 1 - el, 1 + eh) * a)
    d = ref - lp
    kl = np.exp(d) - d - 1.0
    if klbc:
        kl = kl * r
    return np.broadcast_to(pg, lp.shape) + beta * kl


def np_grpo2(tok, mask, norm, reduction, weights=None):
    """TRL's aggregation of per-token losses: ``(sum, weight)`` pairs as jaxloss's ``"sum_and_weight"``."""
    m = mask.astype(np.float64)
    w = np.ones_like(tok) if weights is None else np.broadcast_to(weights, tok.shape)
    if reduction == "none":
        return np.where(mask, w * tok, 0.0)
    total = (m * w * tok).sum()
    if reduction == "sum":
        return total
    B, T = tok.shape
    if norm == "token":
        s, den = total, (m * w).sum()
    elif norm == "constant":
        s, den = total, float(B * T) if m.sum() > 0 else 0.0
    else:  # mean over sequences of each sequence's token mean; an empty sequence adds 0 and counts
        per = m.sum(1)
        s, den = np.sum((m * tok).sum(1) / np.maximum(per, 1.0)), float(B) if m.sum() > 0 else 0.0
    if reduction == "sum_and_weight":
        return s, den
    return 0.0 if den == 0 else s / den


RNG_W = np.random.default_rng(5)
WTS = RNG_W.uniform(0.5, 2.0, size=(B, T))
GRPO_OPTIONS = {  # the options each case runs with, beside loss_type and importance_sampling_level
    "plain": {},
    "kl": {"beta": 0.05, "epsilon_high": 0.28},
    "kl_bias_delta_sapo": {"beta": 0.1, "kl_bias_correction": True, "delta": 1.3, "sapo_temperature_pos": 0.8,
                           "sapo_temperature_neg": 1.5, "epsilon_high": 0.28},
}
_NP_NAMES = {"beta": "beta", "epsilon_low": "el", "epsilon_high": "eh", "delta": "delta",
             "sapo_temperature_pos": "tpos", "sapo_temperature_neg": "tneg", "kl_bias_correction": "klbc"}


def _np_opts(opts, loss_type):
    out = {_NP_NAMES[k]: v for k, v in opts.items()}
    if loss_type == "cispo":
        out["eh"] = 1.1  # the ratio cap itself: some ratios above it, some below
    return out


def _jx_opts(opts, loss_type):
    out = dict(opts)
    if loss_type == "cispo":
        out["epsilon_high"] = 1.1
    return out


@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("loss_type", GRPO_TYPES)
def test_grpo_loss_types_values_every_reduction_and_option(loss_type, level):
    x64 = [a.astype(np.float64) for a in GRPO_ARGS]
    r = np.exp(x64[0] - x64[1])
    adv = x64[3]
    assert ((r > 1.3) & (adv[:, None] < 0)).any()  # delta=1.3 caps some ratios where A < 0
    norm = TYPE_NORM[loss_type]
    for case in ("plain", "kl_bias_delta_sapo"):
        opts = GRPO_OPTIONS[case]
        tok = np_grpo2_tokens(*x64, MASK, loss_type=loss_type, level=level, **_np_opts(opts, loss_type))
        for reduction in ("mean", "sum", "none", "sum_and_weight"):
            out = jaxloss.grpo_loss(*GRPO_ARGS, loss_type=loss_type, importance_sampling_level=level,
                                    reduction=reduction, where=MASK, **_jx_opts(opts, loss_type))
            expected = np_grpo2(tok, MASK, norm, reduction)
            if reduction == "sum_and_weight":  # the denominators: tokens, sequences (B), B*T
                assert float(out[1]) == {"token": MASK.sum(), "sequence": B, "constant": B * T}[norm]
                assert_close(out[0], expected[0], rtol=2e-5, atol=1e-5)
            else:
                assert_close(out, expected, rtol=2e-5, atol=1e-5)
            if reduction == "none":
                assert np.all(np.asarray(out)[2] == 0)  # the empty sequence
    # no mask; and weights (token types weigh the denominator too)
    opts = GRPO_OPTIONS["kl"]
    full = np.ones((B, T), bool)
    tok_full = np_grpo2_tokens(*x64, full, loss_type=loss_type, level=level, **_np_opts(opts, loss_type))
    assert_close(jaxloss.grpo_loss(*GRPO_ARGS, loss_type=loss_type, importance_sampling_level=level,
                                   **_jx_opts(opts, loss_type)),
                 np_grpo2(tok_full, full, norm, "mean"), rtol=2e-5, atol=1e-5)
    tok = np_grpo2_tokens(*x64, MASK, loss_type=loss_type, level=level, **_np_opts(opts, loss_type))
    reduction = "mean" if norm == "token" else "sum"
    out = jaxloss.grpo_loss(*GRPO_ARGS, loss_type=loss_type, importance_sampling_level=level,
                            reduction=reduction, where=MASK, weights=WTS, **_jx_opts(opts, loss_type))
    assert_close(out, np_grpo2(tok, MASK, norm, reduction, WTS), rtol=2e-5, atol=1e-5)




@pytest.mark.parametrize("norm", ["token", "sequence", "constant"])
@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "sapo", "dr_grpo"])
def test_grpo_normalization_overrides_the_loss_type(loss_type, norm):
    x64 = [a.astype(np.float64) for a in GRPO_ARGS]
    tok = np_grpo2_tokens(*x64, MASK, loss_type=loss_type, beta=0.05)
    out = jaxloss.grpo_loss(*GRPO_ARGS, loss_type=loss_type, beta=0.05, normalization=norm, where=MASK)
    assert_close(out, np_grpo2(tok, MASK, norm, "mean"), rtol=2e-5, atol=1e-6)


def test_grpo_default_is_dapo_and_today_s_default():
    """loss_type="dapo" (the default) is the token mean the default had before loss types existed."""
    x64 = [a.astype(np.float64) for a in GRPO_ARGS]
    hp = dict(beta=0.05, epsilon_low=0.2, epsilon_high=0.28)
    for reduction in ("mean", "sum", "none"):
        default = jaxloss.grpo_loss(*GRPO_ARGS, **hp, reduction=reduction, where=MASK)
        assert_close(default, jaxloss.grpo_loss(*GRPO_ARGS, **hp, loss_type="dapo", reduction=reduction, where=MASK),
                     rtol=0, atol=0)
        assert_close(default, jaxloss.grpo_loss(*GRPO_ARGS, **hp, normalization="token", reduction=reduction,
                                                where=MASK), rtol=0, atol=0)
        assert_close(default, np_grpo(*x64, MASK, 0.05, 0.2, 0.28, "token", reduction), rtol=2e-5, atol=1e-6)
    assert jaxloss.GRPOLoss().loss_type == "dapo"


def test_grpo_sum_and_weight_is_global_over_micro_batches():
    """Token-mean types: sum the pairs of micro-batches (and devices) and divide once; that is
    the mean of the whole batch, which the mean of the micro-batch means is not."""
    for loss_type in ("dapo", "bnpo", "cispo"):
        parts = [jaxloss.grpo_loss(*(a[i:i + 2] for a in GRPO_ARGS), loss_type=loss_type, where=MASK[i:i + 2],
                                   reduction="sum_and_weight", beta=0.05) for i in (0, 2)]
        s, w = (sum(float(p[k]) for p in parts) for k in (0, 1))
        whole = jaxloss.grpo_loss(*GRPO_ARGS, loss_type=loss_type, where=MASK, beta=0.05)
        assert_close(s / w, whole, rtol=1e-6, atol=1e-7)
        halves = np.mean([float(p[0]) / float(p[1]) for p in parts])
        assert not np.isclose(halves, float(whole))
    # grpo: the sequence means add up over micro-batches and the sequences count
    parts = [jaxloss.grpo_loss(*(a[i:i + 2] for a in GRPO_ARGS), loss_type="grpo", where=MASK[i:i + 2],
                               reduction="sum_and_weight") for i in (0, 2)]
    assert_close(sum(float(p[0]) for p in parts) / sum(float(p[1]) for p in parts),
                 jaxloss.grpo_loss(*GRPO_ARGS, loss_type="grpo", where=MASK), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo", "sapo"])
def test_grpo_gradients_against_central_differences(loss_type, level):
    x64 = [a.astype(np.float64) for a in GRPO_ARGS]
    opts = GRPO_OPTIONS["kl_bias_delta_sapo"]
    norm = TYPE_NORM[loss_type]

    def f(lp, old, ref):
        return jaxloss.grpo_loss(lp, old, ref, GRPO_ARGS[3], loss_type=loss_type, importance_sampling_level=level,
                                 where=MASK, **opts)

    g = jax.grad(f, argnums=(0, 1, 2))(*GRPO_ARGS[:3])
    for i in range(3):
        num = _num_grad(lambda *a: np_grpo2(np_grpo2_tokens(*a, x64[3], MASK, loss_type=loss_type, level=level,
                                                            **_np_opts(opts, loss_type)), MASK, norm, "mean"),
                        x64[:3], i)
        assert_close(g[i], num, rtol=2e-3, atol=2e-5)
        assert np.all(np.asarray(g[i])[~MASK] == 0)


@pytest.mark.parametrize("level", ["token", "sequence"])
def test_cispo_weight_is_a_stop_gradient(level):
    """CISPO's gradient is -sg(min(r, eps_high)) A grad log pi: the central differences of the
    loss with the weight frozen at the evaluation point, not those of the loss itself."""
    x64 = [a.astype(np.float64) for a in GRPO_ARGS]
    lp0 = x64[0]

    def np_loss(lp, frozen):
        return np_grpo2(np_grpo2_tokens(lp, *x64[1:], MASK, loss_type="cispo", level=level, eh=1.1, frozen=frozen),
                        MASK, "token", "mean")

    g = jax.grad(lambda lp: jaxloss.grpo_loss(lp, *GRPO_ARGS[1:], loss_type="cispo", epsilon_high=1.1,
                                              importance_sampling_level=level, where=MASK))(GRPO_ARGS[0])
    frozen = _num_grad(lambda lp: np_loss(lp, lp0), [lp0], 0)
    full = _num_grad(lambda lp: np_loss(lp, None), [lp0], 0)
    assert_close(g, frozen, rtol=2e-3, atol=2e-5)
    assert np.max(np.abs(full - frozen)) > 1e-2  # the weight's own derivative is left out
    # in closed form: -min(r, eps_high) A / sum(m) at the counted tokens
    r = np.exp(lp0 - x64[1]) if level == "token" else np.exp(
        ((lp0 - x64[1]) * MASK).sum(1) / np.maximum(MASK.sum(1), 1))[:, None]
    closed = np.where(MASK, -np.minimum(r, 1.1) * x64[3][:, None] / MASK.sum(), 0.0)
    assert_close(g, closed, rtol=1e-5, atol=1e-7)


def test_grpo_sequence_level_ratio_is_one_per_sequence_and_empty_sequence():
    lp, old = GRPO_ARGS[0], GRPO_ARGS[1]
    # the same mean log-ratio in every token of a sequence: the token and sequence levels agree
    shift = (RNG_W.normal(size=(B, 1)) * 0.2).astype(np.float32)
    old_u = lp - shift
    a = jaxloss.grpo_loss(lp, old_u, GRPO_ARGS[2], GRPO_ARGS[3], loss_type="grpo", reduction="none", where=MASK)
    b = jaxloss.grpo_loss(lp, old_u, GRPO_ARGS[2], GRPO_ARGS[3], loss_type="grpo", reduction="none", where=MASK,
                          importance_sampling_level="sequence")
    assert_close(a, b, rtol=1e-5, atol=1e-6)
    # masked tokens (even NaN) do not enter the sequence ratio; the empty sequence gives 0 and a zero gradient
    bad_old = old.copy()
    bad_old[~MASK] = np.nan
    val, g = jax.value_and_grad(lambda x: jaxloss.grpo_loss(x, bad_old, *GRPO_ARGS[2:], loss_type="grpo",
                                                            importance_sampling_level="sequence", where=MASK,
                                                            beta=0.1))(jnp.asarray(lp))
    ref = jaxloss.grpo_loss(lp, old, *GRPO_ARGS[2:], loss_type="grpo", importance_sampling_level="sequence",
                            where=MASK, beta=0.1)
    assert_close(val, ref, rtol=1e-6, atol=1e-7)
    assert np.all(np.isfinite(g)) and np.all(np.asarray(g)[~MASK] == 0)


def test_grpo_new_options_rejected_when_out_of_range():
    with pytest.raises(ValueError, match="grpo_loss: loss_type"):
        jaxloss.grpo_loss(*GRPO_ARGS, loss_type="ppo")
    with pytest.raises(ValueError, match="grpo_loss: importance_sampling_level"):
        jaxloss.grpo_loss(*GRPO_ARGS, importance_sampling_level="batch")
    with pytest.raises(ValueError, match="grpo_loss: delta"):
        jaxloss.grpo_loss(*GRPO_ARGS, delta=0.0)
    with pytest.raises(ValueError, match="grpo_loss: sapo_temperature_neg"):
        jaxloss.grpo_loss(*GRPO_ARGS, loss_type="sapo", sapo_temperature_neg=-1.0)
    with pytest.raises(TypeError, match="grpo_loss: kl_bias_correction"):
        jaxloss.grpo_loss(*GRPO_ARGS, kl_bias_correction=1)


# ---- DPO's further loss types, KTO and CPO ---------------------------------------------------------


def np_sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_dpo2(pc, pr, rc, rr, beta, eps, kind, tau=0.05, where=None):
    """TRL's per-pair DPO losses, float64; AOT's sorted terms at the entry holding the k-th
    smallest policy quantity, over the entries ``where`` keeps (elsewhere 0)."""
    c, r = pc - rc, pr - rr
    h = c - r
    if kind in ("sigmoid", "hinge", "ipo", "robust"):
        return np_dpo(pc, pr, rc, rr, beta, eps, kind)
    z = beta * h
    if kind == "exo_pair":
        return (np_sig(z) * (np_log_sigmoid(z) - np.log(1 - eps))
                + np_sig(-z) * (np_log_sigmoid(-z) - np.log(eps)))
    if kind == "nca_pair":
        return -np_log_sigmoid(beta * c) - 0.5 * np_log_sigmoid(-beta * c) - 0.5 * np_log_sigmoid(-beta * r)
    if kind == "bco_pair":
        return -np_log_sigmoid(beta * c) - np_log_sigmoid(-beta * r)
    if kind == "sppo_hard":
        return (c - 0.5 / beta) ** 2 + (r + 0.5 / beta) ** 2
    if kind == "apo_zero":
        return 1 - np_sig(beta * c) + np_sig(beta * r)
    if kind == "apo_down":
        return np_sig(beta * c) + 1 - np_sig(beta * h)
    if kind == "discopop":
        mod = np_sig(z / tau)
        return -np_log_sigmoid(z) * (1 - mod) + np.exp(-z) * mod
    keep = np.ones(h.shape, bool) if where is None else np.asarray(where, bool)
    a, b = ((pc - pr), (rc - rr)) if kind == "aot" else (c, r)
    idx = np.flatnonzero(keep)
    a_idx = idx[np.argsort(a[idx], kind="stable")]
    d = np.sort(a[idx]) - np.sort(b[idx])
    out = np.zeros(h.shape)
    out[a_idx] = -(1 - eps) * np_log_sigmoid(beta * d) - eps * np_log_sigmoid(-beta * d)
    return out


NEW_DPO = ("exo_pair", "nca_pair", "bco_pair", "sppo_hard", "aot", "aot_unpaired", "apo_zero", "apo_down",
           "discopop")


@pytest.mark.parametrize("kind", NEW_DPO)
def test_dpo_trl_loss_types_against_numpy_and_central_differences(kind):
    beta, eps, tau = 0.3, 0.1, 0.07
    x64 = [a.astype(np.float64) for a in PAIRS]
    hp = dict(beta=beta, label_smoothing=eps, loss_type=kind, discopop_tau=tau)
    for reduction in REDUCTIONS:
        for kw in ({}, {"weights": WEIGHTS}, {"where": WHERE}):
            ref = np_dpo2(*x64, beta, eps, kind, tau, kw.get("where"))
            out = jaxloss.dpo_loss(*PAIRS, **hp, reduction=reduction, **kw)
            assert_close(out, reduce_ref(ref, reduction, kw.get("weights"), kw.get("where")), rtol=2e-5, atol=1e-5)
    grads = jax.grad(lambda *a: jaxloss.dpo_loss(*a, **hp, where=WHERE), argnums=(0, 1, 2, 3))(*PAIRS)
    for i, g in enumerate(grads):
        expected = _num_grad(lambda *a: reduce_ref(np_dpo2(*a, beta, eps, kind, tau, WHERE), "mean", where=WHERE),
                             x64, i)
        assert_close(g, expected, rtol=1e-3, atol=1e-5)
        assert np.all(np.asarray(g)[~WHERE] == 0)


def test_dpo_aot_sorts_over_the_batch_and_masked_entries_leave_the_sort():
    x64 = [a.astype(np.float64) for a in PAIRS]
    for kind in ("aot", "aot_unpaired"):
        # a permutation of the batch does not change the mean; the sorted pairs differ from the paired ones
        perm = np.array([3, 0, 5, 1, 4, 2])
        a = jaxloss.dpo_loss(*PAIRS, loss_type=kind)
        b = jaxloss.dpo_loss(*(x[perm] for x in PAIRS), loss_type=kind)
        assert_close(a, b, rtol=1e-6, atol=1e-7)
        # masked entries (even NaN) neither enter the sort nor the gradient
        bad = [x.copy() for x in PAIRS]
        for x in bad:
            x[~WHERE] = np.nan
        val, g = jax.value_and_grad(lambda pc: jaxloss.dpo_loss(pc, *bad[1:], loss_type=kind, where=WHERE))(bad[0])
        assert_close(val, reduce_ref(np_dpo2(*x64, 0.1, 0.0, kind, where=WHERE), "mean", where=WHERE), rtol=2e-5)
        assert np.all(np.isfinite(g)) and np.all(np.asarray(g)[~WHERE] == 0)
    assert not np.isclose(float(jaxloss.dpo_loss(*PAIRS, loss_type="aot")), float(jaxloss.dpo_loss(*PAIRS)))


def test_dpo_new_types_edges():
    with pytest.raises(ValueError, match="dpo_loss: loss_type='exo_pair' needs label_smoothing > 0"):
        jaxloss.dpo_loss(*PAIRS, loss_type="exo_pair")
    # discopop: finite where exp(-beta h) alone overflows float32
    big = jnp.array([1e4, -1e4, 0.0])
    z = jnp.zeros(3)
    out = jaxloss.dpo_loss(big, z, z, z, beta=1.0, loss_type="discopop", reduction="none")
    g = jax.grad(lambda x: jaxloss.dpo_loss(x, z, z, z, beta=1.0, loss_type="discopop"))(big)
    assert np.all(np.isfinite(np.asarray(out)[[0, 2]])) and np.all(np.isfinite(g))
    assert_close(out[2], np.log(2) * 0.5 + 0.5)  # h = 0: mixing weight 1/2 of log 2 and e^0


def np_kto(pi, ref, desirable, kl, beta, wd, wu, kind):
    x = pi - ref
    z0 = max(kl, 0.0)
    if kind == "kto":
        good, bad = 1 - np_sig(beta * (x - z0)), 1 - np_sig(beta * (z0 - x))
    else:
        good, bad = 1 - np_sig(beta * x), np_sig(beta * x)
    return np.where(desirable, wd * good, wu * bad)


KTO_PI, KTO_REF = _f32(-RNG.uniform(5, 15, size=6), -RNG.uniform(5, 15, size=6))
DESIRABLE = np.array([True, True, False, True, False, False])


@pytest.mark.parametrize("kind", ["kto", "apo_zero_unpaired"])
def test_kto_against_numpy_and_central_differences(kind):
    x64 = [KTO_PI.astype(np.float64), KTO_REF.astype(np.float64)]
    for kl in (0.4, -0.3):  # a negative batch KL is clamped at 0
        hp = dict(kl=kl, beta=0.3, desirable_weight=1.5, undesirable_weight=0.7, loss_type=kind)
        ref = np_kto(*x64, DESIRABLE, kl, 0.3, 1.5, 0.7, kind)
        for reduction in REDUCTIONS:
            for kw in ({}, {"weights": WEIGHTS}, {"where": WHERE}):
                out = jaxloss.kto_loss(KTO_PI, KTO_REF, DESIRABLE, **hp, reduction=reduction, **kw)
                # "mean" is the plain mean of the weighted terms: lambda_D, lambda_U are not in the denominator
                assert_close(out, reduce_ref(ref, reduction, kw.get("weights"), kw.get("where")), rtol=2e-5,
                             atol=1e-6)
        g = jax.grad(lambda a, b, k: jaxloss.kto_loss(a, b, DESIRABLE, **{**hp, "kl": k}), argnums=(0, 1, 2))(
            KTO_PI, KTO_REF, jnp.float32(kl))
        for i in range(2):
            num = _num_grad(lambda *a: np_kto(*a, DESIRABLE, kl, 0.3, 1.5, 0.7, kind).mean(), x64, i)
            assert_close(g[i], num, rtol=1e-3, atol=1e-6)
        assert float(g[2]) == 0.0  # the KL reference point is stop-gradiented
    if kind == "kto":  # the reference point shifts the loss
        assert not np.isclose(float(jaxloss.kto_loss(KTO_PI, KTO_REF, DESIRABLE, kl=0.5)),
                              float(jaxloss.kto_loss(KTO_PI, KTO_REF, DESIRABLE)))
    else:  # apo_zero_unpaired ignores it
        assert_close(jaxloss.kto_loss(KTO_PI, KTO_REF, DESIRABLE, kl=0.5, loss_type=kind),
                     jaxloss.kto_loss(KTO_PI, KTO_REF, DESIRABLE, loss_type=kind), rtol=0, atol=0)


def test_kto_errors_and_class():
    with pytest.raises(TypeError, match="kto_loss: desirable must be boolean"):
        jaxloss.kto_loss(KTO_PI, KTO_REF, DESIRABLE.astype(np.float32))
    with pytest.raises(ValueError, match="kto_loss: desirable"):
        jaxloss.kto_loss(KTO_PI, KTO_REF, DESIRABLE[:3])
    with pytest.raises(ValueError, match="kto_loss: loss_type"):
        jaxloss.kto_loss(KTO_PI, KTO_REF, DESIRABLE, loss_type="bco")
    crit = jaxloss.KTOLoss(beta=0.2, desirable_weight=1.33)
    assert_close(crit(KTO_PI, KTO_REF, DESIRABLE), jaxloss.kto_loss(KTO_PI, KTO_REF, DESIRABLE, beta=0.2,
                                                                      desirable_weight=1.33))


def np_cpo(c, r, beta, eps, kind, gamma):
    h = c - r - (gamma / beta if kind == "simpo" else 0.0)
    z = beta * h
    if kind in ("sigmoid", "simpo"):
        return -(1 - eps) * np_log_sigmoid(z) - eps * np_log_sigmoid(-z)
    if kind == "hinge":
        return np.maximum(0.0, 1 - z)
    return (h - 1 / (2 * beta)) ** 2


@pytest.mark.parametrize("kind", ["sigmoid", "hinge", "ipo", "simpo"])
def test_cpo_against_numpy_and_central_differences(kind):
    c, r = PAIRS[0], PAIRS[1]
    x64 = [c.astype(np.float64), r.astype(np.float64)]
    hp = dict(beta=0.3, label_smoothing=0.1, loss_type=kind, simpo_gamma=0.4)
    ref = np_cpo(*x64, 0.3, 0.1, kind, 0.4)
    for reduction in REDUCTIONS:
        for kw in ({}, {"weights": WEIGHTS}, {"where": WHERE}):
            out = jaxloss.cpo_loss(c, r, **hp, reduction=reduction, **kw)
            assert_close(out, reduce_ref(ref, reduction, kw.get("weights"), kw.get("where")), rtol=2e-5, atol=1e-5)
    g = jax.grad(lambda a, b: jaxloss.cpo_loss(a, b, **hp, reduction="sum"), argnums=(0, 1))(c, r)
    for i in range(2):
        assert_close(g[i], _num_grad(lambda *a: np_cpo(*a, 0.3, 0.1, kind, 0.4).sum(), x64, i), rtol=1e-3,
                     atol=1e-5)


def test_cpo_simpo_is_simpo_and_cpo_is_reference_free_dpo():
    c, r = _f32(-RNG.uniform(0.2, 3, size=6), -RNG.uniform(0.2, 3, size=6))
    assert_close(jaxloss.cpo_loss(c, r, beta=2.0, loss_type="simpo", simpo_gamma=0.8, label_smoothing=0.1),
                 jaxloss.simpo_loss(c, r, beta=2.0, gamma=0.8, label_smoothing=0.1), rtol=1e-6)
    z = np.zeros(6, np.float32)
    for kind in ("sigmoid", "hinge", "ipo"):
        assert_close(jaxloss.cpo_loss(c, r, beta=0.4, loss_type=kind),
                     jaxloss.dpo_loss(c, r, z, z, beta=0.4, loss_type=kind), rtol=1e-6)
    assert jaxloss.CPOLoss.__name__ == "CPOLoss" and jaxloss.KTOLoss.__name__ == "KTOLoss"
