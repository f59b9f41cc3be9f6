"""docs/frameworks.md: every ``python`` block of the page runs, and what the page says
about flax nnx, flax linen and equinox holds -- the training steps learn, the trace
counts are the ones written, loss objects are hashable linen attributes, and the
hyper-parameters get zero, nonzero or no gradients where the page says so.

The blocks run once, top to bottom, in one namespace (as a reader would run them); a
block that raises is recorded and the others still run, so a test fails only when a block
binding a name it checks failed. Nothing is skipped: flax and equinox are imported at the top, so a missing
dependency fails the module (``pip install -e ".[test]"`` installs them).
"""

from __future__ import annotations

import ast
import logging
import re
import traceback
from pathlib import Path

import equinox as eqx
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxloss

pytestmark = pytest.mark.slow

PAGE = Path(__file__).resolve().parents[1] / "docs" / "frameworks.md"


def page_blocks() -> list[str]:
    """The ```` ```python ```` blocks of the page, in order."""
    return re.findall(r"^```python\n(.*?)^```", PAGE.read_text(), flags=re.M | re.S)


def bound_names(code: str) -> set[str]:
    """The names a block binds at its top level (assignments, loops, defs, classes)."""
    names: set[str] = set()
    for node in ast.parse(code).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        targets = {ast.Assign: lambda n: n.targets, ast.AnnAssign: lambda n: [n.target],
                   ast.AugAssign: lambda n: [n.target], ast.For: lambda n: [n.target]}
        for kind, get in targets.items():
            if isinstance(node, kind):
                for target in get(node):
                    names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


@pytest.fixture(scope="module")
def page():
    """Run every block once, top to bottom, in one namespace. A block that raises is
    recorded and the rest still run. Returns, per block, the names it binds, the
    namespace after it and its error (None when it ran)."""
    blocks = page_blocks()
    assert len(blocks) >= 10, "docs/frameworks.md lost its code blocks"
    ns: dict = {"__name__": "docs_frameworks"}
    runs = []
    for i, code in enumerate(blocks):
        error = None
        try:
            exec(compile(code, f"docs/frameworks.md[block {i}]", "exec"), ns)  # noqa: S102
        except Exception:  # noqa: BLE001  (reported by the tests that need the block)
            error = traceback.format_exc()
        runs.append((bound_names(code), dict(ns), error))
    return runs


def names(page, *wanted: str) -> dict:
    """The page's namespace after the last block binding any of ``wanted``; fails when
    the setup block or a block binding one of them raised."""
    setup_error = page[0][2]
    assert setup_error is None, f"the setup block failed:\n{setup_error}"
    last = 0
    for name in wanted:
        binders = [i for i, (bound, _, _) in enumerate(page) if name in bound]
        assert binders, f"no block of docs/frameworks.md binds {name!r}"
        for i in binders:
            assert page[i][2] is None, f"block {i} (binding {name!r}) failed:\n{page[i][2]}"
        last = max(last, binders[-1])
    return page[last][1]


def decreased(losses, factor=0.6):
    return len(losses) == 50 and all(np.isfinite(losses)) and losses[-1] < factor * losses[0]


def count_compiles(fn) -> int:
    """The number of XLA compilations while ``fn()`` runs."""
    records: list[str] = []

    class Handler(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler, logger = Handler(level=logging.DEBUG), logging.getLogger("jax")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        with jax.log_compiles(True):
            fn()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    return sum(m.startswith("Compiling") for m in records)


# ---------------------------------------------------------------------------
# A training step in each framework
# ---------------------------------------------------------------------------


def test_versions_are_the_tested_ones_or_newer():
    assert tuple(int(v) for v in flax.__version__.split(".")[:2]) >= (0, 12)
    assert tuple(int(v) for v in eqx.__version__.split(".")[:2]) >= (0, 13)


def test_nnx_training_step_learns(page):
    ns = names(page, "nnx_losses")
    assert decreased(ns["nnx_losses"])
    # near the floor set by the 8 outliers (residual ~20, Huber 19.5 each)
    assert ns["nnx_losses"][-1] == pytest.approx(8 * 19.5 / 128, rel=0.05)


def test_linen_training_step_and_make_train_step_learn_and_agree(page):
    ns = names(page, "linen_losses", "step_losses")
    assert decreased(ns["linen_losses"], 0.4)
    np.testing.assert_allclose(ns["step_losses"], ns["linen_losses"], rtol=1e-5)
    assert 0.5 in jax.tree.leaves(ns["crit"])  # a composition's coefficients are leaves


def test_equinox_training_step_learns(page):
    ns = names(page, "eqx_losses")
    assert decreased(ns["eqx_losses"])


# ---------------------------------------------------------------------------
# Loss objects as module attributes
# ---------------------------------------------------------------------------


def test_linen_loss_attribute_is_not_a_param(page):
    ns = names(page, "Regressor", "regressor_vars", "regressor_value")
    assert jax.tree.structure(ns["regressor_vars"]) == jax.tree.structure(
        {"params": {"Dense_0": {"kernel": 0, "bias": 0}}})
    assert np.isfinite(float(ns["regressor_value"]))


def test_linen_loss_attribute_is_hashable(page):
    """Needs hashable loss objects (equal objects hash equal for Python-number
    hyper-parameters): a default attribute value, hash(module), a static jit argument
    and nn.jit."""
    ns = names(page, "DefaultRegressor", "linen_traces")
    assert len(ns["linen_traces"]) == 2
    regressor = ns["Regressor"]
    a, b = jaxloss.HuberLoss(delta=1.0), jaxloss.HuberLoss(delta=1.0)
    assert a == b and hash(a) == hash(b)
    assert hash(regressor(loss_fn=a)) == hash(regressor(loss_fn=b))
    x, y = ns["x"], ns["y"]
    jitted = nn.jit(regressor)(loss_fn=a)
    variables = jitted.init(jax.random.PRNGKey(0), x)
    assert np.isfinite(float(jitted.apply(variables, x, y, method="loss")))


def test_equinox_loss_field_python_float_is_left_out(page):
    ns = names(page, "eqx_regressor", "eqx_grads")
    model = ns["eqx_regressor"]
    assert ns["eqx_grads"].loss_fn.delta is None
    assert eqx.filter(model, eqx.is_array).loss_fn.delta is None
    assert ns["eqx_grads"].linear.weight is not None


def test_nnx_attribute_with_arrays_needs_nnx_data(page):
    ns = names(page, "nnx_value")
    assert np.isfinite(float(ns["nnx_value"]))

    class Plain(nnx.Module):
        def __init__(self, loss_fn):
            self.loss_fn = loss_fn

    Plain(jaxloss.HuberLoss(delta=1.0))  # Python floats: a static attribute is fine
    with pytest.raises(ValueError, match="nnx.data"):
        Plain(jaxloss.HuberLoss(delta=jnp.asarray(1.0)))


# ---------------------------------------------------------------------------
# Hyper-parameters under jit
# ---------------------------------------------------------------------------


def test_jaxloss_hyperparameters_are_traced(page):
    ns = names(page, "kernel_runs", "first", "sweep")
    runs, first = ns["kernel_runs"], ns["first"]
    assert first > 0 and len(runs) == first and all(runs)  # no new trace; scale a tracer
    p, t = ns["p"], ns["t"]
    np.testing.assert_allclose(
        ns["sweep"], [float(jaxloss.huber_loss(p, t, delta=d)) for d in (0.5, 1.0, 2.0)], rtol=1e-6)

    # the built-in losses: a new value compiles nothing, a None compiles once
    jaxloss.huber_loss(p, t, delta=0.7)
    assert count_compiles(lambda: [jaxloss.huber_loss(p, t, delta=d) for d in (0.1, 2.5, 9.0)]) == 0
    labels = jnp.array([0.0, 1.0, 1.0])
    jaxloss.sigmoid_focal_loss(p, labels, alpha=0.25)
    assert count_compiles(lambda: jaxloss.sigmoid_focal_loss(p, labels, alpha=0.5, gamma=3.0)) == 0
    assert count_compiles(lambda: jaxloss.sigmoid_focal_loss(p, labels, alpha=None)) >= 1
    jaxloss.huber_loss(p, t, delta=jnp.float32(0.3))
    assert count_compiles(lambda: jaxloss.huber_loss(p, t, delta=jnp.float32(0.6))) == 0


def test_jax_jit_closure_is_a_stale_constant_argument_is_traced(page):
    ns = names(page, "traces", "before", "after")
    traces = ns["traces"]
    assert traces.count("closed_over") == traces.count("as_argument") == traces.count("loss_as_argument") == 1
    p, t = ns["p"], ns["t"]
    assert float(ns["before"]) == float(ns["after"]) == pytest.approx(float(jaxloss.huber_loss(p, t, delta=1.0)))
    assert float(ns["after"]) != pytest.approx(float(jaxloss.huber_loss(p, t, delta=3.0)))


def test_make_train_step_closes_over_its_loss(page):
    ns = names(page, "traces")
    applied = []

    def apply_fn(w, x):
        applied.append(1)  # runs once per trace
        return x * w

    x, y = jnp.array([1.0, 2.0, 9.0]), jnp.array([2.0, 4.0, 6.0])
    tx = optax.sgd(0.01)
    for delta in (1.0, 2.0):
        step = jaxloss.make_train_step(apply_fn, jaxloss.HuberLoss(delta=delta), tx)
        w = jnp.zeros((), jnp.float32)  # not weakly typed, like the step's output
        s = tx.init(w)
        for _ in range(3):
            w, s, _ = step(w, s, x, y)
    assert len(applied) == 2  # one trace per step function, none per call

    # with the loss object as an argument, one compiled step serves every delta
    @jax.jit
    def swept_step(crit, w, s, x, y):
        applied.append(1)
        value, g = jax.value_and_grad(lambda w: crit(x * w, y))(w)
        updates, s = tx.update(g, s)
        return optax.apply_updates(w, updates), s, value

    for delta in (1.0, 2.0, 3.0):
        swept_step(jaxloss.HuberLoss(delta=delta), jnp.array(0.0), tx.init(jnp.array(0.0)), x, y)
    assert len(applied) == 3
    assert "loss_as_argument" in ns["traces"]


def test_equinox_filter_jit_python_floats_are_static(page):
    ns = names(page, "eqx_traces")
    seen = ns["eqx_traces"]
    assert len(seen) == 4
    assert [s.delta for s in seen[:3]] == [1.0, 2.0, 3.0]
    assert isinstance(seen[3].delta, jax.core.Tracer)

    calls = []

    @eqx.filter_jit
    def f(delta, p, t):
        calls.append(delta)
        return jaxloss.huber_loss(p, t, delta=delta)

    for d in (1.0, 2.0, 3.0):
        f(d, ns["p"], ns["t"])
    assert calls == [1.0, 2.0, 3.0]  # a Python-float argument is static too


def test_nnx_jit_traces(page):
    ns = names(page, "nnx_traces")
    seen = ns["nnx_traces"]
    assert len(seen) == 3
    assert [s.delta for s in seen[:2]] == [1.0, 2.0]

    calls = []

    @nnx.jit
    def f(delta, p, t):
        calls.append(delta)
        return jaxloss.huber_loss(p, t, delta=delta)

    for d in (1.0, 2.0, 3.0):
        f(d, ns["p"], ns["t"])
    assert len(calls) == 1  # Python-float arguments are traced, as under jax.jit


# ---------------------------------------------------------------------------
# Which hyper-parameters get gradients
# ---------------------------------------------------------------------------


def test_equinox_array_hyperparameter_is_trained_unless_kept_out(page):
    ns = names(page, "grads", "updates", "stopped", "decayed", "arrays", "trained", "filter_spec")
    assert float(ns["grads"].loss_fn.delta) == pytest.approx(2.2525, rel=1e-3) and float(ns["grads"].loss_fn.delta) > 0
    moved = eqx.apply_updates(ns["trained"], ns["updates"])
    assert float(moved.loss_fn.delta) == pytest.approx(0.99, abs=1e-6)
    # stop_gradient: exactly zero, but the optax state holds it and weight decay moves it
    assert float(ns["stopped"].loss_fn.delta) == 0.0
    assert ns["stopped"].linear.weight is not None and np.any(np.asarray(ns["stopped"].linear.weight) != 0)
    assert float(ns["decayed"].loss_fn.delta) == pytest.approx(-1e-3, rel=1e-5)
    adam_state = optax.adam(1e-2).init(ns["arrays"])
    assert adam_state[0].mu.loss_fn.delta is not None
    # partition: delta untouched by the steps, the weights moved
    assert float(ns["trained"].loss_fn.delta) == 1.0
    start = ns["EqxRegressor"](jaxloss.HuberLoss(delta=jnp.asarray(1.0)), jax.random.PRNGKey(4))
    assert not np.allclose(start.linear.weight, ns["trained"].linear.weight)
    assert eqx.filter(ns["trained"], ns["filter_spec"]).loss_fn.delta is None


def test_nnx_only_params_get_gradients(page):
    ns = names(page, "nnx_grads", "learned", "learned_grads")
    grads = nnx.to_pure_dict(ns["nnx_grads"])
    assert set(grads) == {"linear"} and set(grads["linear"]) == {"kernel", "bias"}
    model = ns["NnxRegressor"](jaxloss.HuberLoss(delta=jnp.asarray(1.0)), nnx.Rngs(5))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    kernel = np.asarray(model.linear.kernel[...]).copy()
    optimizer.update(model, nnx.grad(lambda m: m.loss(ns["x"], ns["y"]))(model))
    assert float(model.loss_fn.delta) == 1.0
    assert not np.allclose(kernel, model.linear.kernel[...])
    # an nnx.Param hyper-parameter is trained
    learned = ns["learned"]
    assert float(ns["learned_grads"].delta[...]) != 0.0
    opt = nnx.Optimizer(learned, optax.adam(1e-2), wrt=nnx.Param)
    opt.update(learned, ns["learned_grads"])
    assert float(learned.delta[...]) == pytest.approx(0.99, abs=1e-6)


def test_linen_attribute_gets_no_gradient(page):
    ns = names(page, "linen_grads")
    assert jax.tree.structure(ns["linen_grads"]) == jax.tree.structure(ns["regressor_vars"])
    assert len(jax.tree.leaves(ns["linen_grads"])) == 2
