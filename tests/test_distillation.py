"""distillation_loss (and its streamed form) against NumPy float64 closed forms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import REDUCTIONS, assert_close, reduce_ref

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


def _num_grad(f, x, h=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        up, dn = x.copy(), x.copy()
        up[idx] += h
        dn[idx] -= h
        g[idx] = (f(up) - f(dn)) / (2 * h)
    return g


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
    assert_close(gs, _num_grad(lambda a: np_distill(a, t64, temp, kind, beta).sum(), s64), rtol=1e-3, atol=1e-5)
    assert_close(gt, _num_grad(lambda b: np_distill(s64, b, temp, kind, beta).sum(), t64), rtol=1e-3, atol=1e-5)


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
        assert_close(gs, _num_grad(lambda a: np_distill(a, t64, 1.5, kind, 0.5).sum(), s64), rtol=1e-3, atol=1e-5)


def test_distillation_errors():
    with pytest.raises(ValueError, match="distillation_loss: beta"):
        jaxloss.distillation_loss(S, TCH, divergence="jsd", beta=1.0)
    with pytest.raises(ValueError, match="distillation_loss: temperature"):
        jaxloss.distillation_loss(S, TCH, temperature=0.0)
    with pytest.raises(ValueError, match="distillation_loss: divergence"):
        jaxloss.distillation_loss(S, TCH, divergence="tvd")
    with pytest.raises(ValueError, match="distillation_loss"):
        jaxloss.distillation_loss(S, TCH[:, :3])
