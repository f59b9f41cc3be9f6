"""arcface_loss and cosface_loss against a float64 NumPy reference written here
(values; gradients of embeddings, centres, scale and margin by central
differences of the reference), by both routes of the streaming engine, with
sub-centres, at cos = +-1 and for all-zero vectors. The class-sharded form is
checked on 8 devices by tests/multidevice_check.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import central_diff

import jaxloss

N, C, D = 5, 7, 4
LOSSES = {"arc": jaxloss.arcface_loss, "cos": jaxloss.cosface_loss}
ROUTES = {"class-chunks": {"chunk_size": 3}, "default": {}}


def ref_loss(e, w, y, s, m, kind):
    """Per-example loss, float64."""
    e = np.asarray(e, np.float64)
    w = np.asarray(w, np.float64)
    unit = lambda x: x / np.where(np.linalg.norm(x, axis=-1, keepdims=True) == 0, np.inf,  # noqa: E731
                                  np.linalg.norm(x, axis=-1, keepdims=True))  # a zero vector stays zero
    eh, wh = unit(e), unit(w)
    cos = np.einsum("nd,ckd->nck", eh, wh).max(-1) if w.ndim == 3 else eh @ wh.T
    cos = np.clip(cos, -1.0, 1.0)
    rows = np.arange(len(y))
    ct = cos[rows, y]
    if kind == "arc":
        theta = np.arccos(ct)
        phi = np.where(theta > np.pi - m, ct - m * np.sin(m), np.cos(theta + m))
    else:
        phi = ct - m
    z = s * cos
    z[rows, y] = s * phi
    top = z.max(1)
    return top + np.log(np.exp(z - top[:, None]).sum(1)) - z[rows, y]


def data(seed=0, subcentres=None):
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(N, D))
    w = rng.normal(size=(C, D) if subcentres is None else (C, subcentres, D))
    y = rng.integers(0, C, size=N)
    return e, w, y


@pytest.mark.parametrize("kind", LOSSES)
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("subcentres", [None, 3])
def test_value_and_gradients_float64(kind, route, subcentres):
    e, w, y = data(seed=1, subcentres=subcentres)
    s, m = 8.0, 0.4
    fn = LOSSES[kind]
    want = ref_loss(e, w, y, s, m, kind)
    g_e = central_diff(lambda x: ref_loss(x, w, y, s, m, kind).mean(), e)
    g_w = central_diff(lambda x: ref_loss(e, x, y, s, m, kind).mean(), w)
    g_s = central_diff(lambda x: ref_loss(e, w, y, float(x), m, kind).mean(), np.float64(s))
    g_m = central_diff(lambda x: ref_loss(e, w, y, s, float(x), kind).mean(), np.float64(m))
    with jax.enable_x64(True):
        args = (jnp.asarray(e), jnp.asarray(w), jnp.asarray(y))
        none = fn(*args, scale=s, margin=m, reduction="none", **ROUTES[route])
        np.testing.assert_allclose(np.asarray(none), want, rtol=1e-10, atol=1e-12)
        grads = jax.grad(lambda e, w, s, m: fn(e, w, args[2], scale=s, margin=m, **ROUTES[route]),
                         argnums=(0, 1, 2, 3))(args[0], args[1], jnp.float64(s), jnp.float64(m))
    for got, ref, name in zip(grads, (g_e, g_w, g_s, g_m), ("embeddings", "weight", "scale", "margin")):
        np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-6, atol=1e-8, err_msg=name)


def test_per_example_cotangents_and_weights():
    """'none' with a random cotangent and 'mean' with per-example weights."""
    e, w, y = data(seed=2)
    rng = np.random.default_rng(3)
    cot = rng.normal(size=N)
    wts = rng.uniform(0.1, 2.0, size=N)
    ref_none = central_diff(lambda x: (ref_loss(x, w, y, 16.0, 0.5, "arc") * cot).sum(), e)
    ref_mean = central_diff(lambda x: (ref_loss(e, x, y, 16.0, 0.5, "arc") * wts).sum() / wts.sum(), w)
    with jax.enable_x64(True):
        f = jaxloss.arcface_loss
        g_none = jax.grad(lambda x: jnp.sum(f(x, jnp.asarray(w), jnp.asarray(y), scale=16.0, reduction="none")
                                            * jnp.asarray(cot)))(jnp.asarray(e))
        g_mean = jax.grad(lambda x: f(jnp.asarray(e), x, jnp.asarray(y), scale=16.0,
                                      weights=jnp.asarray(wts)))(jnp.asarray(w))
    np.testing.assert_allclose(np.asarray(g_none), ref_none, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(np.asarray(g_mean), ref_mean, rtol=1e-6, atol=1e-8)


def test_zero_margin_is_scaled_cosine_cross_entropy():
    e, w, y = data(seed=4)
    eh = e / np.linalg.norm(e, axis=1, keepdims=True)
    wh = w / np.linalg.norm(w, axis=1, keepdims=True)
    want = jaxloss.sparse_cross_entropy(jnp.asarray(10.0 * eh @ wh.T, jnp.float32), jnp.asarray(y))
    for fn in LOSSES.values():
        got = fn(jnp.asarray(e, jnp.float32), jnp.asarray(w, jnp.float32), jnp.asarray(y), scale=10.0, margin=0.0)
        np.testing.assert_allclose(float(got), float(want), rtol=1e-5)


@pytest.mark.parametrize("kind", LOSSES)
def test_cos_plus_minus_one_and_zero_vectors_are_finite(kind):
    """An embedding equal to its centre (cos = 1), opposite to it (cos = -1:
    ArcFace's fallback branch), an all-zero embedding and an all-zero centre."""
    e, w, y = data(seed=5)
    e[0] = w[y[0]] * 2.0
    e[1] = -w[y[1]]
    e[2] = 0.0
    w[(y[3] + 1) % C] = 0.0
    fn = LOSSES[kind]
    for route in ROUTES.values():
        val, grads = jax.value_and_grad(lambda e, w: fn(e, w, jnp.asarray(y), **route), argnums=(0, 1))(
            jnp.asarray(e, jnp.float32), jnp.asarray(w, jnp.float32))
        assert np.isfinite(float(val))
        for g in grads:
            assert np.all(np.isfinite(np.asarray(g)))
        assert np.all(np.asarray(grads[0])[2] == 0)  # the zero embedding stays put
    want = ref_loss(e, w, y, 64.0, 0.5 if kind == "arc" else 0.35, kind)
    with jax.enable_x64(True):
        got = np.asarray(fn(jnp.asarray(e), jnp.asarray(w), jnp.asarray(y), reduction="none"))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_fallback_branch_beyond_pi_minus_m():
    """theta > pi - m uses cos(theta) - m sin(m) (pytorch-metric-learning's fallback)."""
    m = 0.5
    e = np.array([[np.cos(np.pi - 0.2), np.sin(np.pi - 0.2)]])  # theta = pi - 0.2 > pi - m to class 0
    w = np.array([[1.0, 0.0], [0.0, 1.0]])
    with jax.enable_x64(True):
        got = float(jaxloss.arcface_loss(jnp.asarray(e), jnp.asarray(w), jnp.array([0]), scale=2.0, margin=m))
    np.testing.assert_allclose(got, ref_loss(e, w, np.array([0]), 2.0, m, "arc")[0], rtol=1e-12)


def test_bad_inputs():
    e, w, y = (jnp.asarray(x) for x in data(seed=6))
    with pytest.raises(ValueError, match=r"arcface_loss: weight must have shape \[C, D\]"):
        jaxloss.arcface_loss(e, w[None, None], y)
    with pytest.raises(ValueError, match="must share the last"):
        jaxloss.cosface_loss(e, w.T, y)
    with pytest.raises(ValueError, match=r"arcface_loss: margin must lie in \[0, 3.14159\)"):
        jaxloss.arcface_loss(e, w, y, margin=4.0)
    with pytest.raises(ValueError, match="labels must lie in"):
        jaxloss.arcface_loss(e, w, y + C)
