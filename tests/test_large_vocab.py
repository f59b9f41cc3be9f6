"""linear_cross_entropy against a float64 NumPy closed form (value and the
gradients of hidden, weight, bias and the hyper-parameters), plus the structural
promises: no [N, V] array anywhere in the value-and-gradient program, and a
program whose size does not depend on the number of chunks.

vocab_parallel_cross_entropy needs several devices; it is checked by
tests/multidevice_check.py (run from tests/test_multidevice.py).
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import central_diff, reduce_ref, reduce_ref_grad
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

import jaxloss

LCE = jaxloss.linear_cross_entropy
V, D = 37, 8
LEAD = (2, 5)  # hidden [2, 5, D], labels [2, 5]
IGNORE = -100


# ---------------------------------------------------------------------------
# float64 NumPy reference (written here, independent of jaxloss)
# ---------------------------------------------------------------------------


def ref_terms(h, w, y, b=None, eps=0.0, zl=0.0, cap=None, ignore_index=None, cw=None):
    """Per-token loss, intrinsic weight (0 = ignored) and d loss_i / d raw-logit_i
    (with class weights ``cw``: PyTorch's weighted cross-entropy, see
    :func:`ref_weighted`)."""
    if cw is not None:
        return ref_weighted(h, w, y, b, eps, zl, cap, ignore_index, cw)
    h = np.asarray(h, np.float64).reshape(-1, np.shape(w)[1])
    w = np.asarray(w, np.float64)
    y = np.asarray(y).reshape(-1)
    vocab = w.shape[0]
    logits = h @ w.T + (0.0 if b is None else np.asarray(b, np.float64))
    z = logits if cap is None else cap * np.tanh(logits / cap)
    mx = z.max(axis=1, keepdims=True)
    lse = (mx + np.log(np.exp(z - mx).sum(axis=1, keepdims=True)))[:, 0]
    ignored = np.zeros(y.shape, bool) if ignore_index is None else y == ignore_index
    yc = np.where(ignored, 0, y)
    onehot = np.eye(vocab)[yc]
    logp = z - lse[:, None]
    loss = (1 - eps) * -(onehot * logp).sum(1) + (eps / vocab) * -logp.sum(1) + zl * lse**2
    dz = (1 + 2 * zl * lse)[:, None] * np.exp(logp) - (1 - eps) * onehot - eps / vocab
    dl = dz if cap is None else dz * (1 - np.tanh(logits / cap) ** 2)
    loss[ignored] = 0.0
    dl[ignored] = 0.0
    return loss, (~ignored).astype(np.float64), dl


def ref_weighted(h, w, y, b, eps, zl, cap, ignore_index, cw):
    """PyTorch's class-weighted cross-entropy with smoothing, plus the z-loss scaled
    by the label's weight: w_y [(1-eps)(lse - z_y) + zl lse^2] + eps/V sum_c w_c (lse - z_c).
    Returns (loss, count weight w_y (0 = ignored), d loss / d raw logit)."""
    h = np.asarray(h, np.float64).reshape(-1, np.shape(w)[1])
    cw = np.asarray(cw, np.float64)
    y = np.asarray(y).reshape(-1)
    vocab = np.shape(w)[0]
    logits = h @ np.asarray(w, np.float64).T + (0.0 if b is None else np.asarray(b, np.float64))
    z = logits if cap is None else cap * np.tanh(logits / cap)
    lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    ignored = np.zeros(y.shape, bool) if ignore_index is None else y == ignore_index
    yc = np.where(ignored, 0, y)
    onehot = np.eye(vocab)[yc]
    p = np.exp(z - lse[:, None])
    wy = cw[yc]
    main = (1 - eps) * (lse - z[np.arange(len(yc)), yc]) + zl * lse**2
    loss = wy * main + eps / vocab * (cw * (lse[:, None] - z)).sum(1)
    dz = wy[:, None] * ((1 - eps) * (p - onehot) + 2 * zl * lse[:, None] * p) + eps / vocab * (cw.sum() * p - cw)
    dl = dz if cap is None else dz * (1 - np.tanh(logits / cap) ** 2)
    loss[ignored] = 0.0
    dl[ignored] = 0.0
    return loss, np.where(ignored, 0.0, wy), dl


def _flat(a):
    return None if a is None else np.asarray(a).reshape(-1)


def ref_all(h, w, y, b, opts, reduction="mean", weights=None, where=None, cot=None):
    """Reduced value and its gradients in hidden, weight and bias (for 'none',
    the gradients of sum(value * cot))."""
    cw = opts.get("class_weights")
    loss, wi, dl = ref_terms(
        h, w, y, b, opts.get("label_smoothing", 0.0), opts.get("z_loss", 0.0),
        opts.get("logit_softcap"), opts.get("ignore_index"), None if cw is None else np.asarray(cw),
    )
    reduce_args = (reduction, _flat(weights), _flat(where))
    counted = wi > 0 if cw is None else ~np.isin(np.asarray(y).reshape(-1), [opts.get("ignore_index")])
    count = None if cw is None else wi
    value = reduce_ref(loss, *reduce_args, counted=counted, count=count)
    c = reduce_ref_grad(loss.shape, *reduce_args, counted=counted, count=count)  # d value / d loss_i
    if reduction == "none":
        c = c * cot.reshape(-1)
    g = c[:, None] * dl
    h2 = np.asarray(h, np.float64).reshape(-1, np.shape(w)[1])
    dh = (g @ np.asarray(w, np.float64)).reshape(np.shape(h))
    dw = g.T @ h2
    db = g.sum(0)
    if reduction == "none":
        value = value.reshape(np.shape(y))
    return value, dh, dw, db


def make(seed=0, lead=LEAD, vocab=V, dim=D, scale=1.0, ignore=None, n_ignored=3):
    rng = np.random.default_rng(seed)
    h = rng.normal(size=lead + (dim,)) * scale
    w = rng.normal(size=(vocab, dim)) * 0.5
    b = rng.normal(size=(vocab,)) * 0.3
    y = rng.integers(0, vocab, size=lead)
    if ignore is not None and n_ignored:
        flat = y.reshape(-1)
        flat[rng.choice(flat.size, size=min(n_ignored, flat.size), replace=False)] = ignore
    return h, w, b, y.astype(np.int32)


def run(h, w, y, b, opts, dtype, reduction="mean", weights=None, where=None, cot=None, **extra):
    """jaxloss value and gradients (hidden, weight, bias), from one compiled program."""
    h, w = jnp.asarray(h, dtype), jnp.asarray(w, dtype)
    b = None if b is None else jnp.asarray(b, dtype)
    y = jnp.asarray(y)

    def f(h, w, b):
        out = LCE(h, w, y, bias=b, reduction=reduction, weights=weights, where=where, **opts, **extra)
        scalar = out if reduction != "none" else jnp.sum(out * jnp.asarray(cot, out.dtype))
        return scalar, out

    argnums = (0, 1) if b is None else (0, 1, 2)
    (_, value), grads = jax.jit(jax.value_and_grad(f, argnums=argnums, has_aux=True))(h, w, b)
    return (value, *grads) + ((None,) if b is None else ())


def assert_matches(got, want, rtol, atol, bias=True):
    value, gh, gw, gb = got
    rv, rh, rw, rb = want
    np.testing.assert_allclose(np.asarray(value, np.float64), rv, rtol=rtol, atol=atol, err_msg="value")
    np.testing.assert_allclose(np.asarray(gh, np.float64), rh, rtol=rtol, atol=atol, err_msg="d hidden")
    np.testing.assert_allclose(np.asarray(gw, np.float64), rw, rtol=rtol, atol=atol, err_msg="d weight")
    if bias:
        np.testing.assert_allclose(np.asarray(gb, np.float64), rb, rtol=rtol, atol=atol, err_msg="d bias")


OPTION_SETS = {
    "plain": {},
    "bias": {"_bias": True},
    "ignore": {"ignore_index": IGNORE},
    "smoothing": {"label_smoothing": 0.1},
    "z_loss": {"z_loss": 1e-2},
    "softcap": {"logit_softcap": 2.0},
    "all": {"_bias": True, "ignore_index": IGNORE, "label_smoothing": 0.2, "z_loss": 1e-3, "logit_softcap": 3.0},
    "all_ignore_in_range": {"_bias": True, "ignore_index": 3, "label_smoothing": 0.05, "z_loss": 1e-2,
                            "logit_softcap": 1.5},
}


def split(opts):
    opts = dict(opts)
    return opts.pop("_bias", False), opts


# ---------------------------------------------------------------------------
# Value and gradients against the closed form
# ---------------------------------------------------------------------------


CASES = [(name, "none", 5) for name in OPTION_SETS] + [
    (name, reduction, chunk) for name in ("ignore", "all") for reduction in ("mean", "sum") for chunk in (5, None)
]


@pytest.mark.parametrize("name, reduction, chunk_size", CASES)
def test_matches_reference_float64(name, reduction, chunk_size):
    """'none' with a random cotangent per token is the most general backward
    case; 'mean'/'sum' check the intrinsic weight of ignored tokens."""
    use_bias, opts = split(OPTION_SETS[name])
    h, w, b, y = make(seed=1, ignore=opts.get("ignore_index"))
    b = b if use_bias else None
    cot = np.random.default_rng(2).normal(size=y.shape)
    want = ref_all(h, w, y, b, opts, reduction, cot=cot)
    with jax.enable_x64(True):
        got = run(h, w, y, b, opts, jnp.float64, reduction, cot=cot, chunk_size=chunk_size)
        assert got[0].dtype == jnp.float64
        assert_matches(got, want, 1e-10, 1e-12, bias=use_bias)


@pytest.mark.parametrize("chunk_size", [1, 5, 36, 37, 64])
def test_chunk_sizes_float32(chunk_size):
    # V=37 is prime: no chunk size but 1 and 37 divides it.
    _, opts = split(OPTION_SETS["all"])
    h, w, b, y = make(seed=3, ignore=IGNORE)
    want = ref_all(h, w, y, b, opts)
    got = run(h, w, y, b, opts, jnp.float32, chunk_size=chunk_size)
    assert got[0].dtype == jnp.float32
    assert_matches(got, want, 2e-5, 2e-6)


@pytest.mark.parametrize("mode, reduction", [("weights", "mean"), ("where", "mean"), ("both", "sum"), ("both", "none")])
def test_weights_and_where(mode, reduction):
    use_bias, opts = split(OPTION_SETS["all"])
    h, w, b, y = make(seed=4, ignore=IGNORE)
    rng = np.random.default_rng(5)
    weights = rng.uniform(0.0, 2.0, size=y.shape) if mode in ("weights", "both") else None
    where = rng.uniform(size=y.shape) < 0.6 if mode in ("where", "both") else None
    cot = rng.normal(size=y.shape)
    want = ref_all(h, w, y, b, opts, reduction, weights, where, cot)
    with jax.enable_x64(True):
        got = run(h, w, y, b, opts, jnp.float64, reduction,
                  weights=None if weights is None else jnp.asarray(weights),
                  where=None if where is None else jnp.asarray(where), cot=cot, chunk_size=6)
        assert_matches(got, want, 1e-10, 1e-12)


def test_hyperparameter_gradients():
    """label_smoothing, z_loss and logit_softcap are traced and differentiable."""
    h, w, b, y = make(seed=6)

    def ref(eps, zl, cap):
        loss, wi, _ = ref_terms(h, w, y, b, eps, zl, cap)
        return loss.mean()

    x0 = np.array([0.1, 1e-2, 2.5])
    num = central_diff(lambda x: ref(*x), x0)
    with jax.enable_x64(True):
        g = jax.grad(
            lambda eps, zl, cap: LCE(jnp.asarray(h), jnp.asarray(w), jnp.asarray(y), bias=jnp.asarray(b),
                                     label_smoothing=eps, z_loss=zl, logit_softcap=cap, chunk_size=7),
            argnums=(0, 1, 2),
        )(*map(jnp.float64, x0))
    np.testing.assert_allclose(np.array(g), np.array(num), rtol=1e-6, atol=1e-8)


def test_second_order_reverse_mode():
    """Reverse over reverse works (the backward pass is itself differentiable)."""
    h, w, b, y = make(seed=7)
    with jax.enable_x64(True):
        f = lambda h, w: LCE(h, w, jnp.asarray(y), bias=jnp.asarray(b), label_smoothing=0.1, z_loss=1e-2,  # noqa: E731
                             logit_softcap=2.0, chunk_size=6)
        check_grads(f, (jnp.asarray(h), jnp.asarray(w)), order=2, modes=("rev",))


def test_forward_mode_is_a_clear_error():
    h, w, b, y = make(seed=7)
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jvp(lambda h: LCE(h, jnp.asarray(w), jnp.asarray(y)), (jnp.asarray(h),), (jnp.ones(h.shape),))


# ---------------------------------------------------------------------------
# Edges
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_all_labels_ignored(reduction):
    h, w, b, y = make(seed=8)
    y = np.full(y.shape, IGNORE, np.int32)
    out, gh, gw, gb = run(h, w, y, b, {"ignore_index": IGNORE, "label_smoothing": 0.1, "z_loss": 1e-3},
                          jnp.float32, reduction, cot=np.ones(y.shape), chunk_size=5)
    assert np.all(np.asarray(out) == 0) and np.all(np.isfinite(np.asarray(out)))
    for g in (gh, gw, gb):
        assert np.all(np.asarray(g) == 0)


def test_empty_batch():
    h, w, b, y = make(seed=8, lead=(0,))
    out, gh, gw, gb = run(h, w, y, b, {}, jnp.float32)
    assert float(out) == 0.0 and gh.shape == (0, D) and np.all(np.asarray(gw) == 0)


@pytest.mark.parametrize("scale, cap", [(1e3, None), (1e15, None), (1e6, 30.0)])
def test_extreme_hidden_states_finite(scale, cap):
    opts = {"label_smoothing": 0.1, "z_loss": 1e-4, "ignore_index": IGNORE}
    if cap is not None:
        opts["logit_softcap"] = cap
    h, w, b, y = make(seed=9, scale=scale, ignore=IGNORE)
    got = run(h, w, y, b, opts, jnp.float32, chunk_size=5)
    for x in got:
        assert np.all(np.isfinite(np.asarray(x)))
    want = ref_all(h, w, y, b, opts)
    # float32 logits of size ~scale: compare relative to the magnitude.
    np.testing.assert_allclose(float(got[0]), want[0], rtol=1e-4)
    np.testing.assert_allclose(np.asarray(got[2], np.float64), want[2], rtol=1e-3,
                               atol=1e-4 * np.abs(want[2]).max())


def test_where_keeps_nan_rows_out_of_the_gradient():
    h, w, b, y = make(seed=10)
    h = h.copy()
    h[0, 1] = np.nan
    h[1, 3] = np.inf
    where = np.ones(y.shape, bool)
    where[0, 1] = where[1, 3] = False
    got = run(h, w, y, b, {"label_smoothing": 0.1}, jnp.float32, where=jnp.asarray(where), chunk_size=5)
    for x in got:
        assert np.all(np.isfinite(np.asarray(x)))
    hc = np.where(where[..., None], h, 0.0)
    want = ref_all(hc, w, y, b, {"label_smoothing": 0.1}, where=where)
    assert_matches(got, want, 2e-5, 2e-6)


@pytest.mark.parametrize("bad", [V, -1])
def test_out_of_range_label_is_an_error(bad):
    h, w, b, y = make(seed=11)
    y = y.copy()
    y[0, 0] = bad
    with pytest.raises(ValueError, match=rf"linear_cross_entropy: labels must lie in \[0, 37\), got \[{bad}\]"):
        LCE(jnp.asarray(h, jnp.float32), jnp.asarray(w, jnp.float32), jnp.asarray(y))


def test_out_of_range_labels_are_nan_under_jit():
    h, w, b, y = make(seed=11)
    bad = y.copy()
    bad[0, 0] = V
    bad[1, 2] = -1
    out = jax.jit(lambda y: LCE(jnp.asarray(h, jnp.float32), jnp.asarray(w, jnp.float32), y, reduction="none"))(
        jnp.asarray(bad))
    out = np.asarray(out)
    assert np.isnan(out[0, 0]) and np.isnan(out[1, 2])
    assert np.isfinite(np.delete(out.reshape(-1), [0, 7])).all()


def test_out_of_range_ignore_index_is_accepted():
    h, w, b, y = make(seed=11)
    y = y.copy()
    y[0, 0] = V  # ignored, although not a class
    got = LCE(jnp.asarray(h, jnp.float32), jnp.asarray(w, jnp.float32), jnp.asarray(y), ignore_index=V)
    np.testing.assert_allclose(float(got), ref_all(h, w, y, None, {"ignore_index": V})[0], rtol=2e-5)


def test_bfloat16_inputs():
    h, w, b, y = make(seed=12)
    hb, wb = jnp.asarray(h, jnp.bfloat16), jnp.asarray(w, jnp.bfloat16)
    val, (gh, gw) = jax.value_and_grad(lambda h, w: LCE(h, w, jnp.asarray(y), chunk_size=5), argnums=(0, 1))(hb, wb)
    assert val.dtype == jnp.float32 and gh.dtype == jnp.bfloat16 and gw.dtype == jnp.bfloat16
    want = ref_all(np.asarray(hb, np.float64), np.asarray(wb, np.float64), y, None, {})
    np.testing.assert_allclose(float(val), want[0], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(gw, np.float64), want[2], rtol=2e-2, atol=2e-3)


def test_kernel_accepts_bfloat16_natively():
    """The kernel itself takes bf16 hidden/weight (bf16 products, float32
    accumulation, bf16 weight gradient), ready for a dtype policy that does not
    upcast them; through the public function the core computes bf16 in float32."""
    kernel = LCE.__wrapped_kernel__
    h, w, b, y = make(seed=12, lead=(9,))
    hb, wb = jnp.asarray(h, jnp.bfloat16), jnp.asarray(w, jnp.bfloat16)
    val, (gh, gw) = jax.value_and_grad(
        lambda h, w: jnp.mean(kernel(h, w, jnp.asarray(y), chunk_size=5).loss), argnums=(0, 1))(hb, wb)
    assert val.dtype == jnp.float32 and gh.dtype == jnp.bfloat16 and gw.dtype == jnp.bfloat16
    want = ref_all(np.asarray(hb, np.float64), np.asarray(wb, np.float64), y, None, {})
    np.testing.assert_allclose(float(val), want[0], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(gw, np.float64), want[2], rtol=3e-2, atol=3e-3)
    np.testing.assert_allclose(np.asarray(gh, np.float64), want[1], rtol=3e-2, atol=3e-3)


@pytest.mark.parametrize(
    "change, exc, match",
    [
        pytest.param(lambda h, w, y: (h, w.T, y), ValueError,
                     r"linear_cross_entropy: hidden \(2, 5, 8\) and weight \(8, 37\) must share the last "
                     r"\(feature\) dimension D", id="weight-transposed"),
        pytest.param(lambda h, w, y: (h, w, y[:, :4]), ValueError,
                     r"linear_cross_entropy: labels.* must have the shape of hidden .*\(2, 5", id="labels-shape"),
        pytest.param(lambda h, w, y: (h, w[0], y), ValueError,
                     r"linear_cross_entropy: weight must have shape \[V, D\], got \(8,\)", id="weight-1d"),
        pytest.param(lambda h, w, y: (h, w, y.astype(np.float32)), TypeError,
                     r"linear_cross_entropy: labels must hold integer class labels, got dtype float32",
                     id="float-labels"),
        pytest.param(lambda h, w, y: (h.astype(np.int32), w, y), TypeError,
                     r"linear_cross_entropy: hidden must be a floating-point array, got dtype int32",
                     id="integer-hidden"),
    ],
)
def test_bad_inputs(change, exc, match):
    h, w, b, y = make(seed=13)
    h, w, y = change(h.astype(np.float32), w.astype(np.float32), y)
    with pytest.raises(exc, match=match):
        LCE(h, w, y)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        pytest.param({"label_smoothing": 1.0}, ValueError,
                     r"linear_cross_entropy: label_smoothing must lie in \[0, 1\), got 1\.0", id="label_smoothing-one"),
        pytest.param({"z_loss": -1.0}, ValueError,
                     r"linear_cross_entropy: z_loss must lie in \[0, inf\), got -1\.0", id="z_loss-negative"),
        pytest.param({"logit_softcap": 0.0}, ValueError,
                     r"linear_cross_entropy: logit_softcap must lie in \(0, inf\), got 0\.0", id="logit_softcap-zero"),
        pytest.param({"chunk_size": 0}, ValueError,
                     r"linear_cross_entropy: chunk_size must be a positive int or None, got 0", id="chunk_size-zero"),
        pytest.param({"bias": np.zeros(36, np.float32)}, ValueError,
                     r"linear_cross_entropy: bias must have shape \(37,\) = \[V\], got \(36,\)", id="bias-shape"),
        pytest.param({"precision": "fastest"}, ValueError,
                     r"linear_cross_entropy: precision must be None, a jax\.lax\.Precision or one of .*, got 'fastest'",
                     id="precision-unknown"),
        pytest.param({"reduction": "avg"}, ValueError,
                     r"linear_cross_entropy: reduction must be one of 'mean', 'sum', 'none'.*, got 'avg'",
                     id="reduction-unknown"),
    ],
)
def test_bad_options(kwargs, exc, match):
    h, w, b, y = make(seed=13)
    with pytest.raises(exc, match=match):
        LCE(h.astype(np.float32), w.astype(np.float32), y, **kwargs)


def test_precision_option():
    h, w, b, y = make(seed=14)
    want = ref_all(h, w, y, None, {})
    for p in ("highest",):
        got = run(h, w, y, None, {}, jnp.float32, precision=p, chunk_size=8)
        assert_matches(got, want, 2e-5, 2e-6, bias=False)


# ---------------------------------------------------------------------------
# Class weights, the token-chunk route, return_stats
# ---------------------------------------------------------------------------

ROUTES = {"vocab-chunks": {"chunk_size": 5}, "token-chunks": {"token_chunk_size": 3}, "default": {}}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_class_weights_float64(route, reduction):
    """PyTorch's weighted cross-entropy (weighted mean over the labels' weights,
    smoothing over every class's weight), with every other option on, by each route."""
    use_bias, opts = split(OPTION_SETS["all"])
    h, w, b, y = make(seed=21, ignore=IGNORE)
    rng = np.random.default_rng(22)
    cw = rng.uniform(0.0, 2.0, size=V)
    cw[y.reshape(-1)[0]] = 0.0  # a used class of weight 0
    opts["class_weights"] = cw
    weights = rng.uniform(0.5, 2.0, size=y.shape)
    cot = rng.normal(size=y.shape)
    want = ref_all(h, w, y, b, opts, reduction, weights=weights, cot=cot)
    with jax.enable_x64(True):
        got = run(h, w, y, b, {**opts, "class_weights": jnp.asarray(cw)}, jnp.float64, reduction,
                  weights=jnp.asarray(weights), cot=cot, **ROUTES[route])
        assert_matches(got, want, 1e-10, 1e-12)


def test_class_weights_gradient():
    """class_weights are traced: their gradient matches central differences of the reference."""
    h, w, b, y = make(seed=23)
    cw = np.random.default_rng(24).uniform(0.5, 1.5, size=V)

    def ref(c):
        loss, wi, _ = ref_terms(h, w, y, b, 0.1, 1e-2, None, None, c)
        return loss.sum() / wi.sum()

    num = central_diff(ref, cw)
    with jax.enable_x64(True):
        for route in ("vocab-chunks", "token-chunks"):
            g = jax.grad(lambda c: LCE(jnp.asarray(h), jnp.asarray(w), jnp.asarray(y), bias=jnp.asarray(b),
                                       class_weights=c, label_smoothing=0.1, z_loss=1e-2, **ROUTES[route]))(
                jnp.asarray(cw))
            np.testing.assert_allclose(np.asarray(g), num, rtol=1e-6, atol=1e-8, err_msg=route)


@pytest.mark.parametrize("token_chunk", [1, 4, 10, 64])
def test_token_chunks_with_weights_where_and_sum_and_weight(token_chunk):
    """The token-chunk route for any chunk (N=10 is not a multiple of 4; 64 > N),
    with per-token weights, a mask, ignored tokens and every option."""
    use_bias, opts = split(OPTION_SETS["all"])
    h, w, b, y = make(seed=25, ignore=IGNORE)
    rng = np.random.default_rng(26)
    weights = rng.uniform(0.0, 2.0, size=y.shape)
    where = rng.uniform(size=y.shape) < 0.7
    want = ref_all(h, w, y, b, opts, "sum", weights, where)
    wsum = reduce_ref(np.ones(y.size), "sum", weights.reshape(-1), where.reshape(-1),
                      counted=y.reshape(-1) != IGNORE)
    with jax.enable_x64(True):
        got = run(h, w, y, b, opts, jnp.float64, "sum", weights=jnp.asarray(weights), where=jnp.asarray(where),
                  token_chunk_size=token_chunk)
        assert_matches(got, want, 1e-10, 1e-12)
        s, d = LCE(jnp.asarray(h), jnp.asarray(w), jnp.asarray(y), bias=jnp.asarray(b), reduction="sum_and_weight",
                   weights=jnp.asarray(weights), where=jnp.asarray(where), token_chunk_size=token_chunk, **opts)
        np.testing.assert_allclose([float(s), float(d)], [want[0], wsum], rtol=1e-12)


def test_batched_hidden_equals_flattened():
    h, w, b, y = make(seed=27, lead=(2, 3, 4))
    for route in ROUTES.values():
        a = LCE(jnp.asarray(h), jnp.asarray(w), jnp.asarray(y), reduction="none", **route)
        f = LCE(jnp.asarray(h.reshape(-1, D)), jnp.asarray(w), jnp.asarray(y.reshape(-1)), reduction="none", **route)
        assert a.shape == (2, 3, 4)
        np.testing.assert_allclose(np.asarray(a).reshape(-1), np.asarray(f), rtol=1e-6)


def _stats_ref(h, w, y, counted):
    z = np.asarray(h, np.float64).reshape(-1, D) @ np.asarray(w, np.float64).T
    lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    hit = np.argmax(z, axis=1) == np.asarray(y).reshape(-1)  # NumPy's argmax: first maximum
    c = np.asarray(counted).reshape(-1)
    n = max(c.sum(), 1)
    return lse.reshape(np.shape(y)), (lse**2)[c].sum() / n, hit[c].sum() / n


@pytest.mark.parametrize("route", ROUTES)
def test_return_stats(route):
    """lse per token, the unscaled mean of lse^2 and the argmax accuracy over the
    counted tokens (mask, zero weight and ignored labels leave them); argmax ties
    go to the lowest class, also across chunks (classes 2 and 30 tie)."""
    h, w, b, y = make(seed=28, ignore=IGNORE)
    w[2] *= 4.0  # the longest row, so hidden states along it pick it
    w[30] = w[2]
    y.reshape(-1)[:4] = [30, 2, 30, 2]
    h.reshape(-1, D)[:4] = w[2] * 3.0  # tokens whose largest logits are the tie 2 == 30
    assert np.argmax(h.reshape(-1, D)[:4] @ w.T, axis=1).tolist() == [2, 2, 2, 2]
    where = np.ones(y.shape, bool)
    where.reshape(-1)[5] = False
    weights = np.ones(y.shape)
    weights.reshape(-1)[6] = 0.0
    counted = where & (weights != 0) & (y != IGNORE)
    want_lse, want_z, want_acc = _stats_ref(h, w, y, counted)
    with jax.enable_x64(True):
        for reduction in ("mean", "none"):
            loss, stats = LCE(jnp.asarray(h), jnp.asarray(w), jnp.asarray(y), ignore_index=IGNORE, z_loss=0.5,
                              reduction=reduction, where=jnp.asarray(where), weights=jnp.asarray(weights),
                              return_stats=True, **ROUTES[route])
            assert set(stats) == {"lse", "z_loss", "accuracy"}
            np.testing.assert_allclose(np.asarray(stats["lse"]), want_lse, rtol=1e-12)
            np.testing.assert_allclose(float(stats["z_loss"]), want_z, rtol=1e-12)
            np.testing.assert_allclose(float(stats["accuracy"]), want_acc, rtol=1e-12)
            plain = LCE(jnp.asarray(h), jnp.asarray(w), jnp.asarray(y), ignore_index=IGNORE, z_loss=0.5,
                        reduction=reduction, where=jnp.asarray(where), weights=jnp.asarray(weights), **ROUTES[route])
            # two compiled programs (with and without the statistics): equal up to float64 rounding
            np.testing.assert_allclose(np.asarray(loss), np.asarray(plain), rtol=1e-12, atol=1e-12)


def test_return_stats_nothing_counted_and_gradient():
    h, w, b, y = make(seed=29)
    y = np.full(y.shape, IGNORE, np.int32)

    def f(h):
        loss, stats = LCE(h, jnp.asarray(w), jnp.asarray(y), ignore_index=IGNORE, return_stats=True)
        return loss + stats["z_loss"] + stats["accuracy"], stats

    (v, stats), g = jax.value_and_grad(f, has_aux=True)(jnp.asarray(h, jnp.float32))
    assert float(v) == 0 and float(stats["accuracy"]) == 0 and float(stats["z_loss"]) == 0
    assert np.all(np.asarray(g) == 0)


def test_bad_new_options():
    h, w, b, y = (jnp.asarray(x) for x in make(seed=30))
    with pytest.raises(ValueError, match=r"class_weights must be one value per class, shape \(37,\)"):
        LCE(h, w, y, class_weights=jnp.ones(5))
    with pytest.raises(ValueError, match="token_chunk_size .* cannot be combined with chunk_size"):
        LCE(h, w, y, token_chunk_size=4, chunk_size=4)
    with pytest.raises(ValueError, match="class_weights"):
        LCE(h, w, y, class_weights=-jnp.ones(V))


def test_class_and_sweep():
    h, w, b, y = make(seed=15)
    h, w = jnp.asarray(h, jnp.float32), jnp.asarray(w, jnp.float32)
    crit = jaxloss.LinearCrossEntropy(chunk_size=5, label_smoothing=0.1, ignore_index=IGNORE)
    assert "chunk_size=5" in repr(crit)
    np.testing.assert_allclose(crit(h, w, jnp.asarray(y)),
                               LCE(h, w, y, chunk_size=5, label_smoothing=0.1, ignore_index=IGNORE), rtol=1e-6)
    eps = jnp.array([0.0, 0.1, 0.2])
    swept = jax.vmap(lambda e: LCE(h, w, jnp.asarray(y), label_smoothing=e, chunk_size=5))(eps)
    for e, s in zip([0.0, 0.1, 0.2], np.asarray(swept)):
        np.testing.assert_allclose(s, ref_all(np.asarray(h), np.asarray(w), y, None, {"label_smoothing": e})[0],
                                   rtol=2e-5)


def test_vmap_over_batch():
    h, w, b, y = make(seed=16, lead=(3, 4))
    h, w = jnp.asarray(h, jnp.float32), jnp.asarray(w, jnp.float32)
    out = jax.vmap(lambda h, y: LCE(h, w, y, chunk_size=5))(h, jnp.asarray(y))
    want = [ref_all(np.asarray(h[i]), np.asarray(w), y[i], None, {})[0] for i in range(3)]
    np.testing.assert_allclose(np.asarray(out), want, rtol=2e-5)


@settings(max_examples=12, deadline=None)
@given(
    n=st.integers(1, 9), vocab=st.integers(1, 40), dim=st.integers(1, 6), chunk=st.integers(1, 45),
    use_bias=st.booleans(), ignore=st.booleans(), eps=st.sampled_from([0.0, 0.3]), zl=st.sampled_from([0.0, 0.05]),
    cap=st.sampled_from([None, 1.0]), reduction=st.sampled_from(["mean", "sum", "none"]), seed=st.integers(0, 2**16),
)
def test_property_any_combination(n, vocab, dim, chunk, use_bias, ignore, eps, zl, cap, reduction, seed):
    """Random combinations of every option, any V and chunk size."""
    h, w, b, y = make(seed=seed, lead=(n,), vocab=vocab, dim=dim, ignore=IGNORE if ignore else None,
                      n_ignored=n // 2)
    opts = {"label_smoothing": eps, "z_loss": zl, "logit_softcap": cap}
    if ignore:
        opts["ignore_index"] = IGNORE
    b = b if use_bias else None
    cot = np.random.default_rng(seed).normal(size=y.shape)
    want = ref_all(h, w, y, b, opts, reduction, cot=cot)
    with jax.enable_x64(True):
        got = run(h, w, y, b, opts, jnp.float64, reduction, cot=cot, chunk_size=chunk)
        assert_matches(got, want, 1e-9, 1e-11, bias=use_bias)


# ---------------------------------------------------------------------------
# Vocabulary-parallel forms on a one-device mesh (8 devices: test_multidevice.py)
# ---------------------------------------------------------------------------


def _one_device_mesh():
    return jax.sharding.Mesh(np.array(jax.devices()[:1]), ("vocab",))


def test_vocab_parallel_forms_on_one_device():
    from jax.sharding import PartitionSpec as P

    use_bias, opts = split(OPTION_SETS["all"])
    h, w, b, y = make(seed=20, lead=(6,), ignore=IGNORE)
    want = ref_all(h, w, y, b, opts)
    f = jax.shard_map(
        lambda h, w, b, y: LCE(h, w, y, bias=b, axis_name="vocab", chunk_size=5, **opts),
        mesh=_one_device_mesh(), in_specs=(P(), P("vocab"), P("vocab"), P()), out_specs=P())
    value, grads = jax.jit(jax.value_and_grad(lambda h, w, b: f(h, w, b, jnp.asarray(y)), argnums=(0, 1, 2)))(
        *(jnp.asarray(x, jnp.float32) for x in (h, w, b)))
    assert_matches((value, *grads), want, 2e-5, 2e-6)

    vp_opts = {k: v for k, v in opts.items() if k != "logit_softcap"}
    z = h @ w.T
    # hidden = z and an identity weight make the logits z
    loss, wi, _ = ref_terms(z, np.eye(V), y, None, vp_opts["label_smoothing"], vp_opts["z_loss"], None, IGNORE)
    g = jax.jit(jax.shard_map(
        lambda z, y: jaxloss.vocab_parallel_cross_entropy(z, y, axis_name="vocab", **vp_opts),
        mesh=_one_device_mesh(), in_specs=(P(None, "vocab"), P()), out_specs=P()))
    np.testing.assert_allclose(g(jnp.asarray(z, jnp.float32), jnp.asarray(y)), reduce_ref(loss, "mean", counted=wi > 0),
                               rtol=1e-5)


def test_vocab_parallel_is_not_registered():
    assert "vocab_parallel_cross_entropy" not in jaxloss.REGISTRY
    assert "linear_cross_entropy" in jaxloss.REGISTRY
    assert jaxloss.VocabParallelCrossEntropy(axis_name="v").axis_name == "v"


@pytest.mark.parametrize(
    "labels, kwargs, exc, match",
    [
        pytest.param(np.zeros(3, np.int32), {}, TypeError,
                     r"vocab_parallel_cross_entropy: axis_name is required", id="no-axis_name"),
        pytest.param(np.zeros(4, np.int32), {"axis_name": "v"}, ValueError,
                     r"vocab_parallel_cross_entropy: labels.* must have the shape of local_logits .*\(3, 5\)",
                     id="labels-shape"),
        pytest.param(np.array([0, -1, 2]), {"axis_name": "v"}, ValueError,
                     r"vocab_parallel_cross_entropy: labels must be >= 0, got \[-1\]", id="negative-label"),
    ],
)
def test_vocab_parallel_bad_inputs(labels, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        jaxloss.vocab_parallel_cross_entropy(jnp.zeros((3, 5)), jnp.asarray(labels), **kwargs)


# ---------------------------------------------------------------------------
# Structure: no [N, V] array, and one loop body whatever the number of chunks
# ---------------------------------------------------------------------------


def _avals(jaxpr):
    """Every intermediate shape in a jaxpr, recursively (loops, custom rules, pjit)."""
    for eqn in jaxpr.eqns:
        for v in eqn.outvars:
            yield tuple(getattr(v.aval, "shape", ()))
        for p in eqn.params.values():
            for sub in p if isinstance(p, (tuple, list)) else (p,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _avals(inner)


def _count_eqns(jaxpr):
    n = 0
    for eqn in jaxpr.eqns:
        n += 1
        for p in eqn.params.values():
            for sub in p if isinstance(p, (tuple, list)) else (p,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    n += _count_eqns(inner)
    return n


def _vg_jaxpr(n, vocab, dim, chunk, **opts):
    h = jnp.zeros((n, dim), jnp.float32)
    w = jnp.zeros((vocab, dim), jnp.float32)
    b = jnp.zeros((vocab,), jnp.float32)
    y = jnp.zeros((n,), jnp.int32)
    f = jax.value_and_grad(lambda h, w, b: LCE(h, w, y, bias=b, chunk_size=chunk, **opts), argnums=(0, 1, 2))
    return jax.make_jaxpr(f)(h, w, b).jaxpr


def test_token_chunk_route_has_no_logits_sized_array():
    """The route that forms the gradients in the forward pass works on
    [token_chunk_size, V] blocks: nothing of size [N, V] either."""
    n, vocab, dim = 64, 1000, 16
    h, w, y = jnp.zeros((n, dim)), jnp.zeros((vocab, dim)), jnp.zeros((n,), jnp.int32)
    f = jax.value_and_grad(lambda h, w: LCE(h, w, y, token_chunk_size=8, label_smoothing=0.1), argnums=(0, 1))
    shapes = set(_avals(jax.make_jaxpr(f)(h, w).jaxpr))
    assert (8, vocab) in shapes and not {(n, vocab), (vocab, n)} & shapes


def test_no_logits_sized_array_forward_or_backward():
    n, vocab, dim, chunk = 64, 1000, 16, 96
    jaxpr = _vg_jaxpr(n, vocab, dim, chunk, label_smoothing=0.1, z_loss=1e-4, logit_softcap=30.0, ignore_index=-1)
    sizes = [int(np.prod(s)) for s in _avals(jaxpr)]
    assert max(sizes) == vocab * dim  # the weight gradient; nothing of size n * vocab = 64000
    assert not any(s in ((n, vocab), (vocab, n)) for s in _avals(jaxpr))
    assert (n, chunk) in set(_avals(jaxpr))


def test_program_size_independent_of_chunk_count():
    counts = {chunk: _count_eqns(_vg_jaxpr(16, 1000, 8, chunk, label_smoothing=0.1)) for chunk in (500, 64, 7)}
    assert len(set(counts.values())) == 1, counts  # 2, 16 and 143 chunks


# ---------------------------------------------------------------------------
# Against sparse_cross_entropy (the library's own materialised computation)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["plain", "all"])
def test_equals_sparse_cross_entropy_on_materialised_logits(name):
    use_bias, opts = split(OPTION_SETS[name])
    params = inspect.signature(jaxloss.sparse_cross_entropy).parameters
    cap = opts.pop("logit_softcap", None)
    opts = {k: v for k, v in opts.items() if k in params}
    h, w, b, y = make(seed=17, ignore=opts.get("ignore_index"))
    b = b if use_bias else np.zeros(V)
    h, w, b = (jnp.asarray(x, jnp.float32) for x in (h, w, b))

    def materialised(h, w, b):
        z = h @ w.T + b
        if cap is not None:
            z = cap * jnp.tanh(z / cap)
        return jaxloss.sparse_cross_entropy(z, jnp.asarray(y), **opts)

    def fused(h, w, b):
        return LCE(h, w, jnp.asarray(y), bias=b, logit_softcap=cap, chunk_size=5, **opts)

    a = jax.value_and_grad(materialised, argnums=(0, 1, 2))(h, w, b)
    f = jax.value_and_grad(fused, argnums=(0, 1, 2))(h, w, b)
    np.testing.assert_allclose(f[0], a[0], rtol=1e-5)
    for x, r in zip(f[1], a[1]):
        np.testing.assert_allclose(x, r, rtol=1e-4, atol=1e-6)


def test_vocab_parallel_logit_softcap_equals_sparse_cross_entropy():
    from jax.sharding import PartitionSpec as P

    rng = np.random.default_rng(33)
    z = jnp.asarray(rng.normal(size=(5, 7)) * 10, jnp.float32)
    y = jnp.asarray(rng.integers(0, 7, size=5))
    f = jax.jit(jax.shard_map(
        lambda z, y: jaxloss.vocab_parallel_cross_entropy(z, y, axis_name="vocab", logit_softcap=4.0),
        mesh=_one_device_mesh(), in_specs=(P(None, "vocab"), P()), out_specs=P()))
    capped = 4.0 * np.tanh(np.asarray(z, np.float64) / 4.0)
    lse = np.log(np.exp(capped).sum(-1))
    np.testing.assert_allclose(f(z, y), np.mean(lse - capped[np.arange(5), np.asarray(y)]), rtol=1e-5)
    np.testing.assert_allclose(f(z, y), jaxloss.sparse_cross_entropy(z, y, logit_softcap=4.0), rtol=1e-6)


def test_default_chunk_size():
    # the docstring's examples
    assert (jaxloss.default_chunk_size(8192, 256000), jaxloss.default_chunk_size(512, 32000),
            jaxloss.default_chunk_size(6, 37)) == (4096, 8192, 37)
    for n in (0, 1, 100, 4096, 4097, 8192, 50_000, 1 << 20):
        for vocab in (37, 128, 1000, 32000, 256000):
            c = jaxloss.default_chunk_size(n, vocab)
            p2 = max(min(8192, (1 << 25) // max(n, 1)), 128)
            p2 = 1 << (p2.bit_length() - 1)  # the largest power of two within the bounds, at least 128
            assert c == min(p2, vocab), (n, vocab, c)
