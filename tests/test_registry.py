"""Shared checks run on every registered loss (the registry drives this file).

A new loss registered with an ``Example`` gets all of these for free: jit
equals eager, vmap equals a loop, float64 finite-difference gradient checks,
masked equals sliced, NaN in a masked entry, ``"sum_and_weight"``, traced
hyper-parameters (one compilation for four values, none for a change of Python
type, vmap over a hyper-parameter), the bf16 dtype policy, class equals
function, the class as a pytree, hashable, replaceable and picklable, and the
value checks under ``jit``.

The checks of transformed calls (``jit``, ``vmap``, ``grad``, every reduction,
``where``, ``weights``, bf16) read one compiled program per loss,
:func:`_program`, that computes them all at once; the eager calls they are
compared with share the loss's own compiled programs. The tests of one loss
run on one pytest-xdist worker (``xdist_group``), so each compiles once.
"""

from __future__ import annotations

import functools
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import assert_close
from jax.experimental import checkify
from jax.test_util import check_grads

import jaxloss
from jaxloss import REGISTRY

SPECS = sorted(REGISTRY.values(), key=lambda s: s.name)


# ---- the core's internals, read in one place (the core's third edition renames them) --------


def _dense_where(spec):
    """Whether the loss's ``where`` is laid out per element of its inputs (a dense score)."""
    return spec.layout.per_element


def _masks_inputs(spec):
    """Whether a masked entry leaves the loss as if sliced away along the inputs' first
    axis (every where mode but ``"anchors"``, whose masked anchors still serve the
    others; not where every input is free, laid out by the loss itself: DINO's views)."""
    return spec.layout.where != "anchors" and any(spec.layout.role(n).shape != "free" for n in spec.inputs)


def _mean_scaled(out):
    """Whether the kernel's result ``out`` scales the values of ``"mean"`` (then ``"mean"``
    is not ``"sum"`` / weight: CTC, GRPO; design §8)."""
    return getattr(getattr(out, "mean", None), "scale", None) is not None


def _kernel_mean_scaled(spec, args):
    """:func:`_mean_scaled` of the kernel's result on ``args``, found by tracing the
    kernel (nothing is computed)."""
    found = []
    jax.eval_shape(lambda *a: found.append(_mean_scaled(spec.fn.__wrapped_kernel__(*a, **spec.static))), *args)
    return found[0]


def _params(specs):
    """One ``pytest.param`` per loss, all of a loss's tests in one xdist group (one worker
    compiles its program)."""
    return [pytest.param(s, id=s.name, marks=pytest.mark.xdist_group(s.name)) for s in specs]


PARAMS = _params(SPECS)


def _inputs(spec, seed=0):
    assert spec.example.sample is not None, f"{spec.name} has no sample inputs in the registry"
    return tuple(jnp.asarray(a) for a in spec.example.sample(np.random.default_rng(seed)))


_close = assert_close


def _with(args, i, x):
    """``args`` with input ``i`` replaced by ``x``."""
    return args[:i] + (x,) + args[i + 1:]


def test_registry_is_populated():
    assert {"mse_loss", "huber_loss", "binary_cross_entropy_with_logits"} <= set(REGISTRY)
    for spec in SPECS:
        # a display formula: ``.. math::`` in the source, ``$$`` once help() shows plain text
        assert spec.fn.__doc__ and "$$" in spec.fn.__doc__, f"{spec.name}: docstring needs a formula"
        assert ".. math::" in (spec.fn.__wrapped_kernel__.__doc__ or ""), f"{spec.name}: docstring needs a formula"
        assert "Example" in spec.fn.__doc__, f"{spec.name}: docstring needs an example"
        assert getattr(jaxloss, spec.name) is spec.fn
        assert getattr(jaxloss, spec.cls.__name__) is spec.cls


def _row_mask(spec, args):
    """A mask over rows of axis 0 (the first rows kept), laid out per pixel for
    dense losses and per loss entry otherwise; None where rows cannot be sliced."""
    loss_shape = jax.eval_shape(lambda *a: spec.fn(*a, reduction="none"), *args).shape
    shape = args[0].shape if _dense_where(spec) else loss_shape
    if not _masks_inputs(spec) or len(shape) == 0 or shape[0] < 2:
        return None, None
    n = shape[0]
    keep = n // 2 + 1
    rows = np.arange(n) < keep
    mask = np.broadcast_to(rows.reshape((n,) + (1,) * (len(shape) - 1)), shape)
    sliced = tuple(a[:keep] if a.ndim and a.shape[0] == n else a for a in args)
    return jnp.asarray(mask), sliced


def _floating(a):
    return jnp.issubdtype(a.dtype, jnp.floating)


@functools.cache
def _program(name):
    """Every transformed call the shared checks compare, for one loss, from one compiled
    program: each reduction under ``jit``; ``vmap`` over three samples; ``where``
    against slicing, with a NaN in the masked rows (value and gradient); ``weights``
    and ``where`` with ``"sum_and_weight"``; everything masked; bf16 inputs; ``vmap``
    over the swept hyper-parameter. Returns ``(case, results)``: the inputs the checks
    use and the results as NumPy arrays."""
    spec = REGISTRY[name]
    args = _inputs(spec)
    i = spec.example.differentiable[0]
    loss_shape = jax.eval_shape(lambda *a: spec.fn(*a, reduction="none"), *args).shape
    mask, sliced = _row_mask(spec, args)
    rng = np.random.default_rng(1)
    case = {
        "args": args,
        "batches": [_inputs(spec, seed) for seed in range(3)],
        "mask": mask,
        "sliced": sliced,
        "loss_shape": loss_shape,
        "w": jnp.asarray(rng.uniform(0.5, 2.0, size=loss_shape), jnp.float32),
        "m": jnp.asarray(rng.uniform(size=loss_shape) < 0.8) if loss_shape else None,
        "sweep": None if spec.example.sweep is None else jnp.asarray(spec.example.sweep[1], jnp.float32),
    }
    stacked = tuple(jnp.stack(parts) for parts in zip(*case["batches"]))

    def everything(args, stacked, w, m, mask, sliced, sweep):
        out = {"jit": {r: spec.fn(*args, reduction=r) for r in ("mean", "sum", "none")},
               "vmap": jax.vmap(lambda *a: spec.fn(*a))(*stacked)}
        out["sum_and_weight"] = spec.fn(*args, weights=w, where=m, reduction="sum_and_weight")
        out["weighted"] = {r: spec.fn(*args, weights=w, where=m, reduction=r) for r in ("sum", "mean")}
        out["sum_and_weight_plain"] = spec.fn(*args, reduction="sum_and_weight")
        none_kept = jnp.zeros(loss_shape, bool)
        out["fully_masked"] = jax.value_and_grad(lambda x: spec.fn(*_with(args, i, x), where=none_kept))(args[i])
        low = tuple(a.astype(jnp.bfloat16) if _floating(a) else a for a in args)
        up = tuple(a.astype(jnp.float32) if _floating(a) else a for a in low)
        out["bf16"] = {"value": spec.fn(*low), "up": spec.fn(*up),
                       "grad": jax.grad(lambda x: spec.fn(*_with(low, i, x)))(low[i])}
        if mask is not None:
            out["masked"] = {r: spec.fn(*args, where=mask, reduction=r) for r in ("mean", "sum")}
            out["sliced"] = {r: spec.fn(*sliced, reduction=r) for r in ("mean", "sum")}
            keep = sliced[0].shape[0]
            rows = args[0].shape[:1]
            poisoned = tuple(a.at[keep:].set(jnp.nan) if _floating(a) and a.shape[:1] == rows else a for a in args)
            out["nan"] = jax.value_and_grad(lambda x: spec.fn(*_with(poisoned, i, x), where=mask))(poisoned[i])
            if args[i].shape[:1] == rows:
                out["sliced_grad"] = jax.grad(lambda x: spec.fn(*_with(sliced, i, x)))(sliced[i])
        if sweep is not None:
            out["sweep_vmap"] = jax.vmap(lambda h: spec.fn(*args, **{spec.example.sweep[0]: h}))(sweep)
        return out

    results = jax.jit(everything)(args, stacked, case["w"], case["m"], mask, sliced, case["sweep"])
    return case, jax.device_get(results)


@pytest.mark.parametrize("spec", PARAMS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_jit_equals_eager(spec, reduction):
    case, out = _program(spec.name)
    args = case["args"]
    eager = spec.fn(*args, reduction=reduction)
    jitted = out["jit"][reduction]
    assert np.all(np.isfinite(np.asarray(eager))), f"{spec.name}: non-finite loss on sample inputs"
    _close(eager, jitted)
    total = spec.fn(*args, reduction="sum")
    none = spec.fn(*args, reduction="none")
    _close(total, np.sum(np.asarray(none, np.float64)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spec", PARAMS)
def test_vmap_equals_loop(spec):
    case, out = _program(spec.name)
    mapped = out["vmap"]
    looped = [spec.fn(*b) for b in case["batches"]]
    _close(mapped, looped)


@pytest.mark.parametrize("spec", PARAMS)
def test_check_grads_float64(spec):
    with jax.enable_x64(True):
        args = tuple(a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a for a in _inputs(spec))
        diff = spec.example.differentiable

        def f(*xs):
            full = list(args)
            for i, x in zip(diff, xs):
                full[i] = x
            return spec.fn(*full, reduction="sum")

        primals = tuple(args[i] for i in diff)
        if spec.example.grad_order:  # 0: a stop-gradient loss, checked in its family's tests
            check_grads(f, primals, order=spec.example.grad_order, modes=("rev",), eps=1e-6, atol=1e-6, rtol=1e-6)
        grads = jax.grad(f, argnums=tuple(range(len(diff))))(*primals)
        for g in grads:
            assert g.dtype == jnp.float64
            assert np.all(np.isfinite(np.asarray(g))), f"{spec.name}: non-finite gradient"


MASKABLE = [s for s in SPECS if _masks_inputs(s)]


@pytest.mark.parametrize("spec", _params(MASKABLE))
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_masked_equals_sliced(spec, reduction):
    case, out = _program(spec.name)
    if case["mask"] is None:
        pytest.skip(f"{spec.name}: its sample's unreduced loss has no rows to slice")
    _close(out["masked"][reduction], out["sliced"][reduction])


@pytest.mark.parametrize("spec", _params(MASKABLE))
def test_nan_in_a_masked_entry(spec):
    case, out = _program(spec.name)
    if case["mask"] is None:
        pytest.skip(f"{spec.name}: its sample's unreduced loss has no rows to slice")
    args, sliced = case["args"], case["sliced"]
    keep = sliced[0].shape[0]
    value, g = out["nan"]
    _close(value, out["sliced"]["mean"])
    g = np.asarray(g)
    assert np.all(np.isfinite(g)), f"{spec.name}: a NaN in a masked entry reached the gradient"
    if g.shape[:1] == args[0].shape[:1]:
        assert np.all(g[keep:] == 0)
        g_sliced = out["sliced_grad"]
        _close(g[:keep], g_sliced)


@pytest.mark.parametrize("spec", PARAMS)
def test_sum_and_weight_is_the_mean_s_numerator_and_denominator(spec):
    case, out = _program(spec.name)
    s, d = out["sum_and_weight"]
    if not _kernel_mean_scaled(spec, case["args"]):  # else "mean" is not "sum" / weight (CTC), see design §8
        _close(s, out["weighted"]["sum"])
    # "mean" is s / d, and 0 when nothing is counted (d == 0: a small sample's random mask)
    _close(s / d if float(d) != 0 else np.zeros_like(np.asarray(s)), out["weighted"]["mean"])
    s0, d0 = out["sum_and_weight_plain"]
    _close(s0 / d0, spec.fn(*case["args"]))


@pytest.mark.parametrize("spec", _params([s for s in SPECS if s.example.sweep]))
def test_hparam_traced_one_compilation(spec):
    case, out = _program(spec.name)
    args = case["args"]
    name, values = spec.example.sweep
    traces = []

    @jax.jit
    def f(h, *a):
        traces.append(1)
        return spec.fn(*a, **{name: h})

    outs = [f(v, *args) for v in values]
    assert len(traces) == 1, f"{spec.name}: {name} recompiled ({len(traces)} traces)"
    # Eagerly too: an int, then the same float, then another float share one program.
    whole = [v for v in values if float(v).is_integer()]
    before = spec.fn._compute._cache_size()
    for v in ([int(whole[-1]), float(whole[-1])] if whole else []) + [np.float64(values[3]), values[1]]:
        spec.fn(*args, **{name: v})
    assert spec.fn._compute._cache_size() - before <= 1, f"{spec.name}: eager calls recompiled"
    eager = [spec.fn(*args, **{name: v}) for v in values]
    _close(outs, eager)
    swept = out["sweep_vmap"]
    _close(swept, eager)
    assert len({round(float(o), 6) for o in eager}) > 1, f"{spec.name}: {name} has no effect"


@pytest.mark.parametrize("spec", PARAMS)
def test_bf16_policy(spec):
    case, out = _program(spec.name)
    value = out["bf16"]["value"]
    assert value.dtype == jnp.float32, f"{spec.name}: bf16 inputs gave a {value.dtype} loss"
    # The loss is computed in float32 from the bf16 values.
    _close(value, out["bf16"]["up"], rtol=1e-5, atol=1e-6)
    g = out["bf16"]["grad"]
    assert g.dtype == jnp.bfloat16
    assert np.all(np.isfinite(np.asarray(g, np.float32)))


@pytest.mark.parametrize("spec", PARAMS)
def test_class_equals_function_and_is_a_pytree(spec):
    args = _inputs(spec)
    options = {}
    if spec.example.sweep:
        options[spec.example.sweep[0]] = spec.example.sweep[1][2]
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
    if spec.example.sweep:
        changed = {spec.example.sweep[0]: spec.example.sweep[1][3]}
        other = spec.cls(**changed, reduction="sum")
        _close(through(other, *args), spec.fn(*args, **changed, reduction="sum"))
        assert len(traces) == 1, "changing a numeric hyper-parameter of a loss object recompiled"
    with pytest.raises(AttributeError, match="immutable"):
        crit.reduction = "mean"


@pytest.mark.parametrize("spec", PARAMS)
def test_fully_masked_is_zero_with_zero_gradient(spec):
    _, out = _program(spec.name)
    value, g = out["fully_masked"]
    assert float(value) == 0.0
    assert np.all(np.asarray(g) == 0.0)


@pytest.mark.parametrize("spec", PARAMS)
def test_invalid_reduction_and_integer_predictions(spec):
    args = _inputs(spec)
    with pytest.raises(ValueError, match=spec.name):
        spec.fn(*args, reduction="avg")
    i = spec.example.differentiable[0]
    bad = list(args)
    bad[i] = args[i].astype(jnp.int32)
    with pytest.raises(TypeError, match=spec.name):
        spec.fn(*bad)


@pytest.mark.parametrize("spec", PARAMS)
def test_loss_object_is_hashable_replaceable_and_picklable(spec):
    crit = spec.cls(reduction="sum")
    same = spec.cls(reduction="sum")
    assert crit == same and hash(crit) == hash(same)
    assert {crit: 1}[same] == 1
    assert crit != spec.cls(reduction="mean")
    if spec.example.sweep:
        name, values = spec.example.sweep
        other = next(v for v in values if v != spec.hparams[name])
        changed = crit.replace(**{name: other})
        assert getattr(changed, name) == other and changed.reduction == "sum"
        assert changed != crit
        whole = [v for v in values if float(v).is_integer()]
        if whole:
            as_int, as_float = spec.cls(**{name: int(whole[0])}), spec.cls(**{name: float(whole[0])})
            assert as_int == as_float and hash(as_int) == hash(as_float)
    assert pickle.loads(pickle.dumps(crit)) == crit
    with pytest.raises(TypeError, match=spec.cls.__name__ + ": unexpected keyword argument"):
        spec.cls(not_an_option=1)


@pytest.mark.parametrize("spec", PARAMS)
def test_value_checks_pass_on_valid_inputs_and_catch_a_nan(spec):
    args = _inputs(spec)
    f = jax.jit(lambda *a: spec.fn(*a))
    with jaxloss.value_checks():
        err, value = checkify.checkify(f)(*args)
    assert err.get() is None, f"{spec.name}: value checks fail on its own sample: {err.get()}"
    _close(value, spec.fn(*args))
    i = spec.example.differentiable[0]
    bad = args[i].reshape(-1).at[-1].set(jnp.nan).reshape(args[i].shape)
    with jaxloss.value_checks():
        err, _ = checkify.checkify(f)(*_with(args, i, bad))
    message = err.get()
    assert message is not None and message.startswith(f"{spec.name}: {spec.inputs[i]} must be finite"), message
