"""gan_loss: the four kinds for both targets against NumPy float64 formulas (design §21)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import assert_close, reduce_ref

import jaxloss


def sp(x):
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)


REFS = {
    ("non_saturating", "discriminator"): lambda r, f: sp(-r) + sp(f),
    ("non_saturating", "generator"): lambda r, f: sp(-f),
    ("hinge", "discriminator"): lambda r, f: np.maximum(1 - r, 0) + np.maximum(1 + f, 0),
    ("hinge", "generator"): lambda r, f: -f,
    ("least_squares", "discriminator"): lambda r, f: 0.5 * (r - 1) ** 2 + 0.5 * f ** 2,
    ("least_squares", "generator"): lambda r, f: 0.5 * (f - 1) ** 2,
    ("wasserstein", "discriminator"): lambda r, f: f - r,
    ("wasserstein", "generator"): lambda r, f: -f,
}
RNG = np.random.default_rng(0)
R = (2.5 * RNG.normal(size=(5, 3))).astype(np.float32)
F = (2.5 * RNG.normal(size=(5, 3))).astype(np.float32)


@pytest.mark.parametrize("kind,target", sorted(REFS))
def test_formulas_and_gradients(kind, target):
    ref = REFS[kind, target](R.astype(np.float64), F.astype(np.float64))
    w, m = RNG.uniform(0.5, 2, size=(5, 1)), RNG.uniform(size=(5, 3)) < 0.7
    for reduction in ("mean", "sum", "none"):
        out = jaxloss.gan_loss(R, F, kind=kind, target=target, reduction=reduction, weights=w, where=m)
        assert_close(out, reduce_ref(ref, reduction, w, m), rtol=1e-5, atol=1e-6)
    with jax.enable_x64(True):
        r, f = R.astype(np.float64), F.astype(np.float64)
        gr, gf = jax.grad(lambda r, f: jaxloss.gan_loss(r, f, kind=kind, target=target), argnums=(0, 1))(r, f)
        for g, x, fn in ((gr, r, lambda v: REFS[kind, target](v, f).mean()),
                         (gf, f, lambda v: REFS[kind, target](r, v).mean())):
            num = np.zeros_like(x)
            for idx in np.ndindex(x.shape):
                up, dn = x.copy(), x.copy()
                up[idx] += 1e-6
                dn[idx] -= 1e-6
                num[idx] = (fn(up) - fn(dn)) / 2e-6
            assert_close(g, num, rtol=1e-6, atol=1e-8)
        if target == "generator":
            assert np.all(np.asarray(gr) == 0)


def test_large_logits_are_finite_and_errors():
    big = jnp.array([1e4, -1e4])
    for kind in ("non_saturating", "hinge", "least_squares", "wasserstein"):
        v, g = jax.value_and_grad(lambda f, kind=kind: jaxloss.gan_loss(big, f, kind=kind))(big)
        assert np.isfinite(float(v)) and np.all(np.isfinite(np.asarray(g)))
    with pytest.raises(ValueError, match="gan_loss: kind must be one of"):
        jaxloss.gan_loss(R, F, kind="relativistic")
    with pytest.raises(ValueError, match="gan_loss: target must be one of"):
        jaxloss.gan_loss(R, F, target="critic")
    with pytest.raises(ValueError, match="gan_loss"):
        jaxloss.gan_loss(R, F[:, :1])
