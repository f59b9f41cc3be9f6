"""Self-supervised losses against NumPy float64 references of lightly's formulas.

VICReg (unbiased variance and covariance), Barlow Twins (one batch norm over both views,
biased variance, eps 1e-5), the negative cosine (torch's cosine_similarity), KoLeo
(torch's PairwiseDistance), DINO (every teacher view against every other student view)
with its centre update, and SwAV (lightly's Sinkhorn-Knopp, swapped prediction). Also:
where == sliced (masked samples leave the batch statistics), gradients against central
differences, finite values and gradients at constant embeddings, errors naming the loss.
The 8-device ``axis_name`` checks run in tests/multidevice_ssl.py, started below.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import assert_close, central_diff, reduce_ref

import jaxloss

# ---------------------------------------------------------------------------
# NumPy float64 references (written from the published formulas)
# ---------------------------------------------------------------------------


def np_vicreg(a, b, lam=25.0, mu=25.0, nu=1.0, eps=1e-4):
    n, d = a.shape
    inv = ((a - b) ** 2).sum(1) / d  # per sample; its mean is F.mse_loss

    def var_term(x):
        return np.mean(np.maximum(1.0 - np.sqrt(x.var(axis=0, ddof=1) + eps), 0.0))

    def cov_term(x):
        c = np.cov(x, rowvar=False, ddof=1)
        return (c ** 2).sum() - (np.diag(c) ** 2).sum()

    reg = mu * 0.5 * (var_term(a) + var_term(b)) + nu * (cov_term(a) + cov_term(b)) / d
    return lam * inv + reg


def np_barlow(a, b, lam=5e-3):
    both = np.concatenate([a, b])
    mean, var = both.mean(0), both.var(0)  # batch norm: biased variance over the 2N rows
    an, bn = (a - mean) / np.sqrt(var + 1e-5), (b - mean) / np.sqrt(var + 1e-5)
    c = an.T @ bn / a.shape[0]
    off = ~np.eye(c.shape[0], dtype=bool)
    return ((np.diag(c) - 1) ** 2).sum() + lam * (c[off] ** 2).sum()


def np_negcos(p, z, eps=1e-8):
    np_ = np.maximum(np.linalg.norm(p, axis=-1), eps)
    nz = np.maximum(np.linalg.norm(z, axis=-1), eps)
    return -(p * z).sum(-1) / (np_ * nz)


def np_koleo(z, eps=1e-8):
    x = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), eps)
    out = []
    for i in range(len(x)):
        sims = [x[i] @ x[j] if j != i else -np.inf for j in range(len(x))]
        j = int(np.argmax(sims))
        out.append(-np.log(np.linalg.norm(x[i] - x[j] + eps) + eps))
    return np.array(out)


def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_dino(s, t, c, ts=0.1, tt=0.04):
    p = np_softmax((t - c) / tt)
    logq = np.log(np_softmax(s / ts))
    total, terms = np.zeros(s.shape[1]), 0
    for i in range(t.shape[0]):
        for j in range(s.shape[0]):
            if i == j:
                continue
            total += -(p[i] * logq[j]).sum(-1)
            terms += 1
    return total / terms


def np_sinkhorn(out, iterations=3, epsilon=0.05):
    q = np.exp(out / epsilon).T  # [K, B], as lightly
    q /= q.sum()
    k, b = q.shape
    for _ in range(iterations):
        q /= q.sum(1, keepdims=True)
        q /= k
        q /= q.sum(0, keepdims=True)
        q /= b
    return (q * b).T


def np_swav(scores, temperature=0.1, iterations=3, epsilon=0.05, high=None, codes=None):
    v = scores.shape[0]
    high = v if high is None else high
    logp = np.log(np_softmax(scores / temperature))
    total = np.zeros(scores.shape[1])
    for i in range(high):
        q = np_sinkhorn(scores[i], iterations, epsilon) if codes is None else codes[i]
        total += sum(-(q * logp[j]).sum(-1) for j in range(v) if j != i) / (v - 1)
    return total / high




RNG = np.random.default_rng(0)
A = 0.6 * RNG.normal(size=(10, 6))
B = A + 0.4 * RNG.normal(size=(10, 6))
KEEP = np.arange(10) < 7
f32 = np.float32


def _j(x):
    return jnp.asarray(np.asarray(x, f32))


# ---------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------

PAIRS = {
    "vicreg_loss": (np_vicreg, {"sim_coeff": 2.0, "std_coeff": 3.0, "cov_coeff": 0.7}, (2.0, 3.0, 0.7)),
    "barlow_twins_loss": (np_barlow, {"lambda_param": 0.05}, (0.05,)),
}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_pair_losses_match_lightly_and_masked_equals_sliced(name):
    ref, opts, args = PAIRS[name]
    fn = getattr(jaxloss, name)
    a, b = A.astype(f32).astype(np.float64), B.astype(f32).astype(np.float64)
    per = np.broadcast_to(ref(a, b, *args), (10,))
    for reduction in ("mean", "sum", "none"):
        assert_close(fn(_j(a), _j(b), **opts, reduction=reduction), reduce_ref(per, reduction), rtol=2e-5, atol=2e-5)
    # where: the masked samples leave the statistics too (== the sliced batch)
    sliced = np.broadcast_to(ref(a[KEEP], b[KEEP], *args), (7,))
    assert_close(fn(_j(a), _j(b), **opts, where=jnp.asarray(KEEP)), sliced.mean(), rtol=2e-5, atol=2e-5)
    w = RNG.uniform(0.5, 2.0, size=10)
    assert_close(fn(_j(a), _j(b), **opts, weights=_j(w)), reduce_ref(per, "mean", w), rtol=2e-5, atol=2e-5)
    poisoned = np.where(KEEP[:, None], a, np.nan)
    g = jax.grad(lambda x: fn(x, _j(b), **opts, where=jnp.asarray(KEEP)))(_j(poisoned))
    assert np.all(np.isfinite(g)) and np.all(np.asarray(g)[~KEEP] == 0)


def test_vicreg_lightly_defaults():
    a, b = A.astype(f32).astype(np.float64), B.astype(f32).astype(np.float64)
    assert_close(jaxloss.vicreg_loss(_j(a), _j(b)), np_vicreg(a, b).mean(), rtol=2e-5)


def test_negative_cosine_and_koleo_match_references():
    a, b = A.astype(f32).astype(np.float64), B.astype(f32).astype(np.float64)
    assert_close(jaxloss.negative_cosine_loss(_j(a), _j(b), reduction="none"), np_negcos(a, b), rtol=1e-5)
    assert_close(jaxloss.koleo_loss(_j(a), reduction="none"), np_koleo(a), rtol=1e-5, atol=1e-5)
    # a masked sample is nobody's neighbour: where == sliced
    assert_close(jaxloss.koleo_loss(_j(a), where=jnp.asarray(KEEP)), np_koleo(a[KEEP]).mean(), rtol=1e-5)
    one = np.arange(10) == 3  # a lone valid sample has no neighbour: it leaves the mean
    assert float(jaxloss.koleo_loss(_j(a), where=jnp.asarray(one))) == 0.0


def test_dino_matches_lightly_and_center_update():
    s, t, c = RNG.normal(size=(4, 5, 7)), RNG.normal(size=(2, 5, 7)), 0.1 * RNG.normal(size=7)
    s, t, c = (x.astype(f32).astype(np.float64) for x in (s, t, c))
    per = np_dino(s, t, c, 0.2, 0.05)
    out = jaxloss.dino_loss(_j(s), _j(t), _j(c), student_temp=0.2, teacher_temp=0.05, reduction="none")
    assert_close(out, per, rtol=2e-5, atol=2e-5)
    keep = np.arange(5) < 3
    assert_close(jaxloss.dino_loss(_j(s), _j(t), _j(c[None, None]), student_temp=0.2, teacher_temp=0.05,
                                   where=jnp.asarray(keep)), per[keep].mean(), rtol=2e-5)
    new = jaxloss.dino_center_update(_j(t), _j(c), momentum=0.8)
    assert_close(new, 0.8 * c + 0.2 * t.mean(axis=(0, 1)), rtol=1e-5, atol=1e-6)
    masked = jaxloss.dino_center_update(_j(t), _j(c), momentum=0.8, where=jnp.asarray(keep))
    assert_close(masked, 0.8 * c + 0.2 * t[:, keep].mean(axis=(0, 1)), rtol=1e-5, atol=1e-6)


def test_swav_matches_lightly():
    scores = np.tanh(RNG.normal(size=(4, 6, 5))).astype(f32).astype(np.float64)
    assert_close(jaxloss.swav_loss(_j(scores), reduction="none"), np_swav(scores), rtol=2e-5, atol=2e-5)
    out = jaxloss.swav_loss(_j(scores), temperature=0.2, epsilon=0.1, sinkhorn_iterations=5,
                            high_resolution_views=2, reduction="none")
    assert_close(out, np_swav(scores, 0.2, 5, 0.1, high=2), rtol=2e-5, atol=2e-5)
    keep = np.arange(6) < 4  # masked samples leave the Sinkhorn marginals: == sliced
    assert_close(jaxloss.swav_loss(_j(scores), where=jnp.asarray(keep)), np_swav(scores[:, keep]).mean(),
                 rtol=2e-5, atol=2e-5)


# ---------------------------------------------------------------------------
# Gradients against central differences (float64)
# ---------------------------------------------------------------------------


def test_gradients_match_central_differences():
    with jax.enable_x64(True):
        a, b = A[:6, :4], B[:6, :4]
        for fn, ref in ((jaxloss.vicreg_loss, lambda x: np_vicreg(x, b).mean()),
                        (jaxloss.barlow_twins_loss, lambda x: np_barlow(x, b)),
                        (jaxloss.negative_cosine_loss, lambda x: np_negcos(x, b).mean()),
                        (jaxloss.koleo_loss, lambda x: np_koleo(x).mean())):
            args = (jnp.asarray(b),) if fn is not jaxloss.koleo_loss else ()
            g = jax.grad(lambda x, fn=fn, args=args: fn(x, *args))(jnp.asarray(a))
            assert_close(g, central_diff(ref, a.copy()), rtol=1e-5, atol=1e-7)
        s, t, c = RNG.normal(size=(3, 4, 5)), RNG.normal(size=(2, 4, 5)), RNG.normal(size=5) * 0.1
        g = jax.grad(lambda x: jaxloss.dino_loss(x, jnp.asarray(t), jnp.asarray(c)))(jnp.asarray(s))
        assert_close(g, central_diff(lambda x: np_dino(x, t, c).mean(), s.copy()), rtol=1e-5, atol=1e-7)
        # SwAV's codes are under stop-gradient: the derivative with the codes held fixed
        scores = np.tanh(RNG.normal(size=(3, 4, 5)))
        codes = [np_sinkhorn(scores[i]) for i in range(3)]
        g = jax.grad(lambda x: jaxloss.swav_loss(x))(jnp.asarray(scores))
        assert_close(g, central_diff(lambda x: np_swav(x, codes=codes).mean(), scores.copy()), rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------
# Edge cases and errors
# ---------------------------------------------------------------------------


def test_constant_embeddings_are_finite():
    const = jnp.ones((6, 4))
    zero = jnp.zeros((6, 4))
    for fn, args in ((jaxloss.vicreg_loss, (const, const)), (jaxloss.barlow_twins_loss, (const, const)),
                     (jaxloss.negative_cosine_loss, (zero, zero)), (jaxloss.koleo_loss, (const,)),
                     (jaxloss.swav_loss, (jnp.zeros((2, 6, 4)),)),
                     (jaxloss.dino_loss, (jnp.zeros((2, 6, 4)), jnp.zeros((2, 6, 4)), jnp.zeros(4)))):
        value, g = jax.value_and_grad(lambda x, fn=fn, args=args: fn(x, *args[1:]))(args[0])
        assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(g))), fn.__name__
    # zero variance: VICReg's std is sqrt(eps); Barlow's standardised features are 0, so c = 0
    assert_close(jaxloss.vicreg_loss(const, const), 25.0 * (1 - np.sqrt(1e-4)), rtol=1e-6)
    assert_close(jaxloss.barlow_twins_loss(const, const), 4.0, rtol=1e-6)


def test_errors_name_the_loss():
    a = jnp.ones((4, 3))
    with pytest.raises(ValueError, match="vicreg_loss: z_a .* must have the same shape"):
        jaxloss.vicreg_loss(a, jnp.ones((4, 2)))
    with pytest.raises(ValueError, match="barlow_twins_loss: needs a batch of at least 2"):
        jaxloss.barlow_twins_loss(a[:1], a[:1])
    with pytest.raises(ValueError, match="vicreg_loss: eps must lie in"):
        jaxloss.vicreg_loss(a, a, eps=0.0)
    with pytest.raises(ValueError, match="koleo_loss: z must have shape"):
        jaxloss.koleo_loss(jnp.ones(3))
    with pytest.raises(ValueError, match="dino_loss: center must have K = 3"):
        jaxloss.dino_loss(jnp.ones((2, 4, 3)), jnp.ones((2, 4, 3)), jnp.ones(4))
    with pytest.raises(ValueError, match="dino_loss: .* must share the batch"):
        jaxloss.dino_loss(jnp.ones((2, 4, 3)), jnp.ones((2, 5, 3)), jnp.ones(3))
    with pytest.raises(ValueError, match="swav_loss: needs at least 2 views"):
        jaxloss.swav_loss(jnp.ones((1, 4, 3)))
    with pytest.raises(ValueError, match="swav_loss: high_resolution_views"):
        jaxloss.swav_loss(jnp.ones((2, 4, 3)), high_resolution_views=3)
    with pytest.raises(ValueError, match="dino_center_update: momentum"):
        jaxloss.dino_center_update(jnp.ones((2, 4, 3)), jnp.ones(3), momentum=1.5)


SCRIPT = pathlib.Path(__file__).with_name("multidevice_ssl.py")


@pytest.mark.slow
def test_axis_name_on_8_devices_equals_one_device():
    root = SCRIPT.parents[1]
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run([sys.executable, str(SCRIPT)], env=env, cwd=root, capture_output=True, text=True,
                          timeout=300)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"multi-device self-supervised checks failed:\n{report[-20000:]}"
    assert " 0 failed" in proc.stdout and "swav_loss" in proc.stdout, report
