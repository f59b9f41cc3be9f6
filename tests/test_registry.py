"""Shared checks run on every registered loss (the registry drives this file).

A new loss registered with ``@jaxloss.loss(sample=..., sweep=...)`` gets all of
these for free: jit equals eager, vmap equals a loop, finite-difference
gradient checks, traced hyper-parameters (one compilation for four values, vmap
over a hyper-parameter), the bf16 dtype policy, class equals function, and the
class passing through ``jit`` as a pytree.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxloss
from jaxloss._core import REGISTRY

SPECS = sorted(REGISTRY.values(), key=lambda s: s.name)
IDS = [s.name for s in SPECS]


def _inputs(spec, seed=0):
    assert spec.sample is not None, f"{spec.name} has no sample inputs in the registry"
    return tuple(jnp.asarray(a) for a in spec.sample(np.random.default_rng(seed)))


def _close(a, b, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol)


def test_registry_is_populated():
    assert {"mse_loss", "huber_loss", "binary_cross_entropy_with_logits"} <= set(REGISTRY)
    for spec in SPECS:
        assert spec.fn.__doc__ and ".. math::" in spec.fn.__doc__, f"{spec.name}: docstring needs a formula"
        assert "Example" in spec.fn.__doc__, f"{spec.name}: docstring needs an example"
        assert getattr(jaxloss, spec.name) is spec.fn
        assert getattr(jaxloss, spec.cls.__name__) is spec.cls


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_jit_equals_eager(spec, reduction):
    args = _inputs(spec)
    eager = spec.fn(*args, reduction=reduction)
    jitted = jax.jit(lambda *a: spec.fn(*a, reduction=reduction))(*args)
    assert np.all(np.isfinite(np.asarray(eager))), f"{spec.name}: non-finite loss on sample inputs"
    _close(eager, jitted)
    total = spec.fn(*args, reduction="sum")
    none = spec.fn(*args, reduction="none")
    _close(total, np.sum(np.asarray(none, np.float64)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_vmap_equals_loop(spec):
    batches = [_inputs(spec, seed) for seed in range(3)]
    stacked = tuple(jnp.stack(parts) for parts in zip(*batches))
    mapped = jax.vmap(lambda *a: spec.fn(*a))(*stacked)
    looped = [spec.fn(*b) for b in batches]
    _close(mapped, looped)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_check_grads(spec):
    args = _inputs(spec)
    diff = spec.differentiable

    def f(*xs):
        full = list(args)
        for i, x in zip(diff, xs):
            full[i] = x
        return spec.fn(*full, reduction="sum")

    primals = tuple(args[i].astype(jnp.float64) if jax.config.jax_enable_x64 else args[i] for i in diff)
    check_grads(f, primals, order=spec.grad_order, modes=("rev",), atol=5e-2, rtol=5e-2, eps=1e-3)
    grads = jax.grad(f, argnums=tuple(range(len(diff))))(*primals)
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g))), f"{spec.name}: non-finite gradient"


@pytest.mark.parametrize("spec", [s for s in SPECS if s.sweep], ids=[s.name for s in SPECS if s.sweep])
def test_hparam_traced_one_compilation(spec):
    args = _inputs(spec)
    name, values = spec.sweep
    traces = []

    @jax.jit
    def f(h, *a):
        traces.append(1)
        return spec.fn(*a, **{name: h})

    outs = [f(v, *args) for v in values]
    assert len(traces) == 1, f"{spec.name}: {name} recompiled ({len(traces)} traces)"
    eager = [spec.fn(*args, **{name: v}) for v in values]
    _close(outs, eager)
    swept = jax.vmap(lambda h: spec.fn(*args, **{name: h}))(jnp.asarray(values, jnp.float32))
    _close(swept, eager)
    assert len({round(float(o), 6) for o in eager}) > 1, f"{spec.name}: {name} has no effect"


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_bf16_policy(spec):
    args = _inputs(spec)
    low = tuple(a.astype(jnp.bfloat16) if jnp.issubdtype(a.dtype, jnp.floating) else a for a in args)
    value = spec.fn(*low)
    assert value.dtype == jnp.float32, f"{spec.name}: bf16 inputs gave a {value.dtype} loss"
    # The loss is computed in float32 from the bf16 values.
    up = tuple(a.astype(jnp.float32) if jnp.issubdtype(a.dtype, jnp.floating) else a for a in low)
    _close(value, spec.fn(*up), rtol=1e-5, atol=1e-6)
    i = spec.differentiable[0]

    def f(x):
        full = list(low)
        full[i] = x
        return spec.fn(*full)

    g = jax.grad(f)(low[i])
    assert g.dtype == jnp.bfloat16
    assert np.all(np.isfinite(np.asarray(g, np.float32)))


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_class_equals_function_and_is_a_pytree(spec):
    args = _inputs(spec)
    options = {}
    if spec.sweep:
        options[spec.sweep[0]] = spec.sweep[1][2]
    crit = spec.cls(**options, reduction="sum")
    expected = spec.fn(*args, **options, reduction="sum")
    _close(crit(*args), expected)
    assert repr(crit).startswith(spec.cls.__name__ + "(") and "reduction='sum'" in repr(crit)
    leaves, treedef = jax.tree_util.tree_flatten(crit)
    rebuilt = jax.tree_util.tree_unflatten(treedef, leaves)
    _close(rebuilt(*args), expected)
    traces = []

    @jax.jit
    def through(c, *a):
        traces.append(1)
        return c(*a)

    _close(through(crit, *args), expected)
    if spec.sweep:
        other = spec.cls(**{spec.sweep[0]: spec.sweep[1][3]}, reduction="sum")
        _close(through(other, *args), spec.fn(*args, **{spec.sweep[0]: spec.sweep[1][3]}, reduction="sum"))
        assert len(traces) == 1, "changing a numeric hyper-parameter of a loss object recompiled"
    with pytest.raises(Exception):
        crit.reduction = "mean"


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_fully_masked_is_zero_with_zero_gradient(spec):
    args = _inputs(spec)
    shape = jax.eval_shape(lambda *a: spec.fn(*a, reduction="none"), *args).shape
    mask = jnp.zeros(shape, bool)
    i = spec.differentiable[0]

    def f(x):
        full = list(args)
        full[i] = x
        return spec.fn(*full, where=mask)

    value, g = jax.value_and_grad(f)(args[i])
    assert float(value) == 0.0
    assert np.all(np.asarray(g) == 0.0)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_invalid_reduction_and_integer_predictions(spec):
    args = _inputs(spec)
    with pytest.raises(ValueError, match=spec.name):
        spec.fn(*args, reduction="avg")
    i = spec.differentiable[0]
    bad = list(args)
    bad[i] = args[i].astype(jnp.int32)
    with pytest.raises(TypeError, match=spec.name):
        spec.fn(*bad)
