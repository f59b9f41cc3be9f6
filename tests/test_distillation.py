"""distillation_loss (and its streamed form) against NumPy float64 closed forms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import REDUCTIONS, assert_close, central_diff, reduce_ref

import jaxloss


def np_log_softmax(z):
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def np_xlogy_ratio(w, lw, lo):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(w == 0, 0.0, w * (lw - lo))


def np_distill(s, t, temp, kind, beta):
    lq, lp = np_log_softmax(s / temp), np_log_softmax(t / temp)
    p, q = np.exp(lp), np.exp(lq)
    if kind == "forward":
        d = np_xlogy_ratio(p, lp, lq).sum(-1)
    elif kind == "reverse":
        d = np_xlogy_ratio(q, lq, lp).sum(-1)
    else:
        with np.errstate(divide="ignore"):
            lm = np.log(beta * p + (1 - beta) * q)
        d = beta * np_xlogy_ratio(p, lp, lm).sum(-1) + (1 - beta) * np_xlogy_ratio(q, lq, lm).sum(-1)
    return temp**2 * d


RNG = np.random.default_rng(0)
N, V = 5, 7
S = (RNG.normal(size=(N, V)) * 2).astype(np.float32)
TCH = (RNG.normal(size=(N, V)) * 2).astype(np.float32)
WEIGHTS = RNG.uniform(0.5, 2, size=(N,))
WHERE = np.array([True, False, True, True, True])


@pytest.mark.parametrize("kind", ["forward", "reverse", "jsd"])
def test_distillation_against_numpy(kind):
    temp, beta = 2.0, 0.3
    s64, t64 = S.astype(np.float64), TCH.astype(np.float64)
    ref = np_distill(s64, t64, temp, kind, beta)
    for reduction in REDUCTIONS:
        for kw in ({}, {"weights": WEIGHTS}, {"where": WHERE}):
            out = jaxloss.distillation_loss(S, TCH, temperature=temp, divergence=kind, beta=beta,
                                            reduction=reduction, **kw)
            assert_close(out, reduce_ref(ref, reduction, kw.get("weights"), kw.get("where")), rtol=2e-5, atol=1e-6)
    gs, gt = jax.grad(lambda a, b: jaxloss.distillation_loss(a, b, temperature=temp, divergence=kind, beta=beta,
                                                             reduction="sum"), argnums=(0, 1))(S, TCH)
    assert_close(gs, central_diff(lambda a: np_distill(a, t64, temp, kind, beta).sum(), s64), rtol=1e-3, atol=1e-5)
    assert_close(gt, central_diff(lambda b: np_distill(s64, b, temp, kind, beta).sum(), t64), rtol=1e-3, atol=1e-5)


def test_distillation_class_axis_and_equal_inputs():
    st = jnp.asarray(S.T)
    assert_close(jaxloss.distillation_loss(st, jnp.asarray(TCH.T), axis=0, reduction="none"),
                 np_distill(S.astype(np.float64), TCH.astype(np.float64), 1.0, "forward", 0.5), rtol=2e-5)
    for kind in ("forward", "reverse", "jsd"):
        assert_close(jaxloss.distillation_loss(S, S, divergence=kind, reduction="none"), np.zeros(N), atol=1e-6)


def test_distillation_minus_inf_teacher_logit():
    t = TCH.copy()
    t[:, 2] = -np.inf  # a class the teacher masks out
    s64, t64 = S.astype(np.float64), t.astype(np.float64)
    for kind in ("forward", "jsd"):
        out, (gs, gt) = jax.value_and_grad(
            lambda a, b: jaxloss.distillation_loss(a, b, divergence=kind, temperature=1.5, reduction="sum"),
            argnums=(0, 1))(S, t)
        assert_close(out, np_distill(s64, t64, 1.5, kind, 0.5).sum(), rtol=2e-5)
        assert np.all(np.isfinite(gs)) and np.all(np.isfinite(gt)) and np.all(np.asarray(gt)[:, 2] == 0)
        assert_close(gs, central_diff(lambda a: np_distill(a, t64, 1.5, kind, 0.5).sum(), s64), rtol=1e-3, atol=1e-5)


def test_distillation_errors():
    with pytest.raises(ValueError, match="distillation_loss: beta"):
        jaxloss.distillation_loss(S, TCH, divergence="jsd", beta=1.0)
    with pytest.raises(ValueError, match="distillation_loss: temperature"):
        jaxloss.distillation_loss(S, TCH, temperature=0.0)
    with pytest.raises(ValueError, match="distillation_loss: divergence"):
        jaxloss.distillation_loss(S, TCH, divergence="tvd")
    with pytest.raises(ValueError, match="distillation_loss"):
        jaxloss.distillation_loss(S, TCH[:, :3])


# ---- linear_distillation_loss: the streamed form equals the materialised one ---------------

HS = RNG.normal(size=(N, 6)).astype(np.float32)
WS = (RNG.normal(size=(19, 6)) * 0.8).astype(np.float32)
HT = RNG.normal(size=(N, 4)).astype(np.float32)
WT = (RNG.normal(size=(19, 4)) * 0.8).astype(np.float32)


def test_linear_distillation_equals_materialised_values_and_grads():
    """All three divergences, a chunk that does not divide V, a mask and weights; the
    reference is the float64 NumPy closed form and its finite-difference gradient."""
    h64 = [a.astype(np.float64) for a in (HS, WS, HT, WT)]
    for kind in ("forward", "reverse", "jsd"):
        def np_loss(hs, ws, ht, wt, kind=kind):
            per = np_distill(hs @ ws.T, ht @ wt.T, 1.5, kind, 0.4)
            return reduce_ref(per, "mean", WEIGHTS, WHERE)

        def jx_loss(*a, kind=kind):
            return jaxloss.linear_distillation_loss(*a, temperature=1.5, divergence=kind, beta=0.4, chunk_size=8,
                                                    weights=WEIGHTS, where=WHERE)
        val, grads = jax.value_and_grad(jx_loss, argnums=(0, 1, 2, 3))(HS, WS, HT, WT)
        assert_close(val, np_loss(*h64), rtol=2e-5, atol=1e-6)
        for i, g in enumerate(grads):
            num = central_diff(lambda x, i=i: np_loss(*[x if j == i else h64[j] for j in range(4)]), h64[i])
            assert_close(g, num, rtol=1e-3, atol=1e-5)
        assert_close(jaxloss.linear_distillation_loss(HS, WS, HT, WT, divergence=kind, reduction="none"),
                     np_distill(h64[0] @ h64[1].T, h64[2] @ h64[3].T, 1.0, kind, 0.5), rtol=2e-5, atol=1e-6)


def test_linear_distillation_nan_in_masked_row_and_errors():
    bad = HS.copy()
    bad[1] = np.nan
    val, g = jax.value_and_grad(lambda h: jaxloss.linear_distillation_loss(h, WS, HT, WT, divergence="jsd",
                                                                           where=WHERE))(jnp.asarray(bad))
    assert np.isfinite(val) and np.all(np.isfinite(g)) and np.all(np.asarray(g)[1] == 0)
    with pytest.raises(ValueError, match="linear_distillation_loss: student_weight"):
        jaxloss.linear_distillation_loss(HS, WS[:5], HT, WT)
    with pytest.raises(ValueError, match="linear_distillation_loss: divergence"):
        jaxloss.linear_distillation_loss(HS, WS, HT, WT, divergence="tvd")
