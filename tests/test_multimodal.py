"""clip_loss and siglip_loss against NumPy float64 references written here.

Values for every option and reduction (with weights and where), gradients of the
embeddings, ``scale`` and ``bias`` against central differences of the NumPy
reference, where/weights semantics (masked == sliced, a masked example is no
one's negative and gets zero gradient, NaN in masked rows), cos = +-1 and zero
rows finite, errors. The multi-device forms (8 simulated devices, both gather
modes) run in tests/multidevice_contrastive.py, started by the slow test below.
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

B, D = 6, 4


def np_unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def np_lse(z, axis):
    m = z.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def np_clip(a, b, scale=1 / 0.07, eps=0.0, normalize=True, keep=None):
    """Per-example CLIP losses [B]: the batch is the kept rows only; 0 elsewhere."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    keep = np.ones(len(a), bool) if keep is None else np.asarray(keep, bool)
    out = np.zeros(len(a))
    x, y = a[keep], b[keep]
    if normalize:
        x, y = np_unit(x), np_unit(y)
    z = scale * x @ y.T
    diag = np.diag(z)
    rows = np_lse(z, 1) - (1 - eps) * diag - eps * z.mean(1)
    cols = np_lse(z, 0) - (1 - eps) * diag - eps * z.mean(0)
    out[keep] = 0.5 * (rows + cols)
    return out


def np_siglip(a, b, scale=10.0, bias=-10.0, normalize=True, keep=None):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    keep = np.ones(len(a), bool) if keep is None else np.asarray(keep, bool)
    out = np.zeros(len(a))
    x, y = a[keep], b[keep]
    if normalize:
        x, y = np_unit(x), np_unit(y)
    z = scale * x @ y.T + bias
    labels = 2 * np.eye(len(x)) - 1
    out[keep] = np.logaddexp(0.0, -labels * z).sum(1)
    return out


def inputs(seed=0, n=B):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, D))
    b = a + 0.9 * rng.normal(size=(n, D))
    w = rng.uniform(0.5, 2.0, size=n)
    m = np.ones(n, bool)
    m[[1, 4]] = False
    return a.astype(np.float32), b.astype(np.float32), w.astype(np.float32), m


CLIP_OPTIONS = [
    {"scale": 1 / 0.07},
    {"scale": 3.0, "label_smoothing": 0.1},
    {"scale": 5.0, "label_smoothing": 0.2, "normalize": False},
]
SIGLIP_OPTIONS = [
    {},
    {"scale": 3.0, "bias": 1.5},
    {"scale": 2.0, "bias": -1.0, "normalize": False},
]


def _ref_args(opts, names):
    return {names.get(k, k): v for k, v in opts.items()}


@pytest.mark.parametrize("name", ["clip", "siglip"])
def test_values_against_numpy(name):
    fn, ref, options = ((jaxloss.clip_loss, np_clip, CLIP_OPTIONS) if name == "clip"
                        else (jaxloss.siglip_loss, np_siglip, SIGLIP_OPTIONS))
    a, b, w, m = inputs()
    scale_down = 0.3  # unnormalised rows: keep the logits moderate
    for opts in options:
        x, y = (a * scale_down, b * scale_down) if opts.get("normalize") is False else (a, b)
        r = _ref_args(opts, {"label_smoothing": "eps"})
        full = ref(x, y, **r)
        sliced = ref(x, y, keep=m, **r)
        for reduction in ("mean", "sum", "none"):
            assert_close(fn(x, y, **opts, reduction=reduction), reduce_ref(full, reduction), rtol=2e-5, atol=1e-5)
            # where removes examples from the batch: the reference is the sliced batch
            out = fn(x, y, **opts, reduction=reduction, weights=w, where=m)
            assert_close(out, reduce_ref(sliced, reduction, w, m), rtol=2e-5, atol=1e-5)
        s, d = fn(x, y, **opts, reduction="sum_and_weight", weights=w, where=m)
        assert_close(s, reduce_ref(sliced, "sum", w, m), rtol=2e-5, atol=1e-5)
        assert_close(d, w[m].sum(), rtol=1e-6)


def test_clip_worked_example_is_open_clip_mean_of_two_cross_entropies():
    # identical towers, two orthogonal pairs: logits s I, each CE = log(e^s + 1) - s
    a = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    s = 2.0
    assert_close(jaxloss.clip_loss(a, 3.0 * a, scale=s), np.log(np.exp(s) + 1.0) - s, rtol=1e-6)
    # label smoothing eps: (1-eps) CE + eps * mean_j (lse - z_j)
    eps = 0.1
    lse = np.log(np.exp(s) + 1.0)
    expected = (1 - eps) * (lse - s) + eps * 0.5 * ((lse - s) + lse)
    assert_close(jaxloss.clip_loss(a, a, scale=s, label_smoothing=eps), expected, rtol=1e-6)


def test_siglip_worked_example_is_big_vision_mean_of_row_sums():
    a = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    # z = 10 I - 10: diagonal 0 (log 2 each), off-diagonal -10 (softplus(-10))
    expected = np.log(2.0) + np.log1p(np.exp(-10.0))
    assert_close(jaxloss.siglip_loss(a, a), expected, rtol=1e-6)


@pytest.mark.parametrize("name", ["clip", "siglip"])
def test_gradients_against_numpy_differences(name):
    a, b, w, m = inputs(1)
    a, b, w = (np.asarray(v, np.float64) for v in (a, b, w))
    if name == "clip":
        fn, hp, extra = jaxloss.clip_loss, {"label_smoothing": 0.1}, {}
        ref = lambda a_, b_, s_, _: np_clip(a_, b_, s_, 0.1, keep=m)  # noqa: E731
    else:
        fn, hp, extra = jaxloss.siglip_loss, {}, {"bias": -2.0}
        ref = lambda a_, b_, s_, bias_: np_siglip(a_, b_, s_, bias_, keep=m)  # noqa: E731

    def np_mean(a_, b_, s_, bias_=-2.0):
        return reduce_ref(ref(a_, b_, s_, bias_), "mean", w, m)

    with jax.enable_x64(True):
        def f(a_, b_, s_, bias_):
            kw = {"bias": bias_} if extra else {}
            return fn(a_, b_, scale=s_, **hp, **kw, weights=w, where=m)

        grads = jax.grad(f, argnums=(0, 1, 2, 3))(jnp.asarray(a), jnp.asarray(b), jnp.float64(4.0),
                                                   jnp.float64(-2.0))
    ga, gb, gs, gbias = (np.asarray(g) for g in grads)
    assert_close(ga, central_diff(lambda x: np_mean(x, b, 4.0), a), rtol=1e-6, atol=1e-8)
    assert_close(gb, central_diff(lambda x: np_mean(a, x, 4.0), b), rtol=1e-6, atol=1e-8)
    assert_close(gs, central_diff(lambda s: np_mean(a, b, float(s)), np.array(4.0)), rtol=1e-6, atol=1e-8)
    if extra:
        assert_close(gbias, central_diff(lambda t: np_mean(a, b, 4.0, float(t)), np.array(-2.0)), rtol=1e-6,
                     atol=1e-8)
    # masked examples: exactly zero gradient
    assert np.all(ga[~m] == 0) and np.all(gb[~m] == 0)


def test_label_smoothing_gradient():
    a, b, _, _ = inputs(2)
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with jax.enable_x64(True):
        g = jax.grad(lambda e: jaxloss.clip_loss(a, b, scale=3.0, label_smoothing=e))(jnp.float64(0.1))
    expected = central_diff(lambda e: np_clip(a, b, 3.0, float(e)).mean(), np.array(0.1))
    assert_close(g, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("fn", [jaxloss.clip_loss, jaxloss.siglip_loss], ids=["clip", "siglip"])
def test_masked_is_no_ones_negative_and_nan_in_masked_rows_stays_out(fn):
    a, b, _, m = inputs(3)
    poisoned_a, poisoned_b = a.copy(), b.copy()
    poisoned_a[~m] = np.nan
    poisoned_b[~m] = 1e30
    value, (ga, gb) = jax.value_and_grad(lambda x, y: fn(x, y, where=m), argnums=(0, 1))(poisoned_a, poisoned_b)
    sliced, (sa, sb) = jax.value_and_grad(fn, argnums=(0, 1))(a[m], b[m])
    assert_close(value, sliced, rtol=1e-6)
    assert np.all(np.asarray(ga)[~m] == 0) and np.all(np.asarray(gb)[~m] == 0)
    assert_close(np.asarray(ga)[m], sa, rtol=1e-5, atol=1e-7)
    assert_close(np.asarray(gb)[m], sb, rtol=1e-5, atol=1e-7)
    # fully masked: 0 with zero gradients; one example left: CLIP 0, SigLIP its own pair term
    none = np.zeros(B, bool)
    v0, g0 = jax.value_and_grad(lambda x: fn(x, b, where=none))(a)
    assert float(v0) == 0.0 and np.all(np.asarray(g0) == 0)


def test_weights_weight_the_losses_but_a_zero_weight_is_still_a_negative():
    a, b, w, _ = inputs(4)
    w = w.copy()
    w[2] = 0.0
    full = np_clip(a, b)
    assert_close(jaxloss.clip_loss(a, b, weights=w), reduce_ref(full, "mean", w), rtol=2e-5)
    sliced = np_siglip(a, b, keep=w > 0)
    assert not np.allclose(reduce_ref(sliced, "mean", w), jaxloss.siglip_loss(a, b, weights=w))


@pytest.mark.parametrize("fn", [jaxloss.clip_loss, jaxloss.siglip_loss], ids=["clip", "siglip"])
def test_cos_plus_minus_one_and_zero_rows_are_finite(fn):
    rng = np.random.default_rng(5)
    a = rng.normal(size=(4, 3)).astype(np.float32)
    cases = {
        "identical (cos = 1)": (a, a.copy()),
        "opposite (cos = -1)": (a, -a),
        "all rows equal": (np.tile(a[:1], (4, 1)), np.tile(a[:1], (4, 1))),
        "zero rows": (np.where(np.arange(4)[:, None] == 0, 0.0, a).astype(np.float32), a),
    }
    for what, (x, y) in cases.items():
        for scale in (1.0, 100.0):
            v, g = jax.value_and_grad(lambda p, q: fn(p, q, scale=scale), argnums=(0, 1))(x, y)
            assert np.isfinite(float(v)), what
            assert all(np.all(np.isfinite(np.asarray(gi))) for gi in g), what
    # identical towers at cos = 1: the reference value
    assert_close(fn(a, a, scale=2.0), (np_clip if fn is jaxloss.clip_loss else np_siglip)(a, a, 2.0).mean(),
                 rtol=2e-5)


def test_errors():
    a = jnp.ones((4, 3))
    with pytest.raises(ValueError, match="clip_loss: gather='ring' needs axis_name"):
        jaxloss.clip_loss(a, a, gather="ring")
    with pytest.raises(ValueError, match="siglip_loss: a .* and b .* must have the same shape"):
        jaxloss.siglip_loss(a, jnp.ones((4, 2)))
    with pytest.raises(ValueError, match="clip_loss: a must have shape"):
        jaxloss.clip_loss(jnp.ones(3), jnp.ones(3))
    with pytest.raises(ValueError, match="clip_loss: label_smoothing must lie in"):
        jaxloss.clip_loss(a, a, label_smoothing=1.0)
    with pytest.raises(ValueError, match="gather must be one of"):
        jaxloss.siglip_loss(a, a, gather="tree")
    with pytest.raises(ValueError, match="scale must lie in"):
        jaxloss.siglip_loss(a, a, scale=0.0)


SCRIPT = pathlib.Path(__file__).with_name("multidevice_contrastive.py")


@pytest.mark.slow
def test_multidevice_clip_and_siglip_on_8_devices():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
    env["JAX_PLATFORMS"] = "cpu"
    # this checkout's jaxloss, not another installed copy
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SCRIPT.parents[1]), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, str(SCRIPT)], env=env, cwd=SCRIPT.parents[1], capture_output=True,
                          text=True, timeout=600)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"multi-device contrastive checks failed:\n{report[-20000:]}"
    assert " 0 failed" in proc.stdout and "ring" in proc.stdout, report
