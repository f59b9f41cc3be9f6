"""The core: the public decorator, loss objects and their composition, the self-check."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxloss
from jaxloss import __main__ as selfcheck
from jaxloss._core import REGISTRY, class_name_for
from _reference import assert_close, reduce_ref


@jaxloss.loss(static=("power",))
def cubic_loss(pred, target, *, scale=1.0, power=3):
    r"""A user-defined loss: :math:`s |p - t|^k`.

    Example:
      >>> cubic_loss(jnp.ones(2), jnp.zeros(2))
    """
    return scale * jnp.abs(pred - target) ** power


def test_user_loss_gets_the_whole_contract():
    p = jnp.array([1.0, -2.0, 0.5, 3.0])
    t = jnp.zeros(4)
    w = jnp.array([1.0, 2.0, 0.0, 1.0])
    m = jnp.array([True, True, True, False])
    ref = 2.0 * np.abs(np.asarray(p, np.float64)) ** 3
    for reduction in ("mean", "sum", "none"):
        assert_close(cubic_loss(p, t, scale=2.0, reduction=reduction, weights=w, where=m),
                     reduce_ref(ref, reduction, np.asarray(w), np.asarray(m)))
    assert_close(cubic_loss(p, t, power=2, reduction="sum"), 14.25)
    assert "cubic_loss" not in REGISTRY  # only built-ins are registered
    crit = cubic_loss.Loss(scale=2.0, power=2)
    assert repr(crit) == "CubicLoss(scale=2.0, power=2, reduction='mean')"
    assert crit.scale == 2.0 and crit.power == 2
    leaves, _ = jax.tree_util.tree_flatten(crit)
    assert leaves == [2.0]  # numeric options are leaves, structural ones static
    with pytest.raises(ValueError, match=r"cubic_loss.*\(4, 1\).*\(4,\)"):
        cubic_loss(p[:, None], t)
    assert cubic_loss(p.astype(jnp.bfloat16), t).dtype == jnp.float32


def test_decorator_rejects_bad_kernels():
    with pytest.raises(TypeError, match="reduction"):
        @jaxloss.loss
        def bad(pred, target, *, reduction="mean"):
            """:math:`x`"""
            return pred

    with pytest.raises(TypeError, match="static"):
        @jaxloss.loss
        def bad2(pred, target, *, mode="a"):
            """:math:`x`"""
            return pred


def test_class_names():
    assert class_name_for("huber_loss") == "HuberLoss"
    assert class_name_for("mse_loss") == "MSELoss"
    assert class_name_for("nll_loss") == "NLLLoss"
    assert class_name_for("kl_divergence") == "KLDivergence"
    assert class_name_for("ntxent_loss") == "NTXentLoss"
    assert class_name_for("binary_cross_entropy_with_logits") == "BinaryCrossEntropyWithLogits"
    assert class_name_for("smooth_l1_loss") == "SmoothL1Loss"


def test_composition_is_a_weighted_sum():
    rng = np.random.default_rng(0)
    p = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
    t = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
    combo = jaxloss.HuberLoss(delta=0.5) + 0.5 * jaxloss.MSELoss() - jaxloss.MAELoss() / 4
    expected = (jaxloss.huber_loss(p, t, delta=0.5) + 0.5 * jaxloss.mse_loss(p, t)
                - 0.25 * jaxloss.mae_loss(p, t))
    assert_close(combo(p, t), expected)
    assert repr(combo) == ("HuberLoss(delta=0.5, reduction='mean') + 0.5 * MSELoss(reduction='mean') "
                           "- 0.25 * MAELoss(reduction='mean')")
    assert_close((-jaxloss.MSELoss())(p, t), -jaxloss.mse_loss(p, t))
    assert_close(sum([jaxloss.MSELoss(), jaxloss.MAELoss()])(p, t), jaxloss.mse_loss(p, t) + jaxloss.mae_loss(p, t))
    m = jnp.asarray(rng.uniform(size=(3, 4)) < 0.5)
    assert_close(combo(p, t, where=m), jaxloss.huber_loss(p, t, delta=0.5, where=m)
                 + 0.5 * jaxloss.mse_loss(p, t, where=m) - 0.25 * jaxloss.mae_loss(p, t, where=m))
    with pytest.raises(TypeError):
        jaxloss.MSELoss() * jnp.ones(3)
    with pytest.raises(TypeError):
        jaxloss.MSELoss() + 1.0


def test_composition_passes_through_jit_without_recompiling():
    p, t = jnp.ones((2, 3)), jnp.zeros((2, 3))
    traces = []

    @jax.jit
    def f(loss_obj, a, b):
        traces.append(1)
        return loss_obj(a, b)

    for delta, c in ((1.0, 0.5), (0.25, 2.0), (3.0, 0.1)):
        combo = jaxloss.HuberLoss(delta=delta) + c * jaxloss.MSELoss()
        assert_close(f(combo, p, t), jaxloss.huber_loss(p, t, delta=delta) + c * jaxloss.mse_loss(p, t))
    assert len(traces) == 1


def test_vmap_over_loss_objects_hyperparameter():
    p, t = jnp.array([0.0, 3.0]), jnp.zeros(2)
    deltas = jnp.array([0.5, 1.0, 2.0, 4.0])
    out = jax.vmap(lambda d: jaxloss.HuberLoss(delta=d)(p, t))(deltas)
    assert_close(out, [jaxloss.huber_loss(p, t, delta=float(d)) for d in deltas])


def test_loss_objects_are_immutable_and_comparable():
    a, b = jaxloss.HuberLoss(delta=2.0), jaxloss.HuberLoss(delta=2.0)
    assert a == b and a != jaxloss.HuberLoss(delta=1.0)
    with pytest.raises(Exception):
        a.delta = 3.0
    with pytest.raises(TypeError, match="unexpected"):
        jaxloss.HuberLoss(beta=1.0)
    with pytest.raises(ValueError, match="reduction"):
        jaxloss.HuberLoss(reduction="avg")


def test_reduction_none_accepts_python_none():
    p, t = jnp.array([1.0, 2.0]), jnp.zeros(2)
    assert_close(jaxloss.mse_loss(p, t, reduction=None), [1.0, 4.0])


def test_x64_float64_stays_float64():
    with jax.enable_x64(True):
        p = jnp.array([1.0, 2.0], jnp.float64)
        out = jaxloss.huber_loss(p, jnp.zeros(2, jnp.float64))
        assert out.dtype == jnp.float64
        out32 = jaxloss.huber_loss(p.astype(jnp.float32), jnp.zeros(2, jnp.float32))
        assert out32.dtype == jnp.float32


def test_composed_loss_in_a_train_step():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(128, 2)), jnp.float32)
    y = jnp.asarray((x[:, 0] - x[:, 1] > 0), jnp.float32)
    params = jnp.zeros(2)
    loss_obj = jaxloss.BinaryCrossEntropyWithLogits() + 0.1 * jaxloss.HingeLoss()
    opt = optax.sgd(0.5)
    step = jaxloss.make_train_step(lambda w, x: x @ w, loss_obj, opt)
    state = opt.init(params)
    values = []
    for _ in range(50):
        params, state, v = step(params, state, x, y)
        values.append(float(v))
    assert values[-1] < 0.5 * values[0]


def test_self_check_passes(capsys):
    assert selfcheck.main([]) == 0
    out = capsys.readouterr().out
    assert "backend: cpu" in out
    assert f"{len(REGISTRY)}/{len(REGISTRY)} losses passed" in out


def _readme() -> str:
    import pathlib

    return (pathlib.Path(__file__).parent.parent / "README.md").read_text()


def test_readme_tour_runs_and_lists_every_loss():
    text = _readme()
    block = text.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)  # the tour must run as written
    for name in REGISTRY:
        assert f"`{name}" in text, f"README's table does not list {name}"
    assert 'python -m pip install -e ".[test]" && python -m pytest' in text


@pytest.mark.parametrize("module", ["_core", "regression", "classification", "divergence", "segmentation",
                                    "metric", "large_vocab", "train"])
def test_docstring_examples_are_true(module):
    import doctest
    import importlib

    mod = importlib.import_module(f"jaxloss.{module}")
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) in jaxloss.{module} print something else"
    assert result.attempted > 0 or module == "_core"
