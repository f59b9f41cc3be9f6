"""The core: the public decorator, loss objects and their composition, the self-check."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _reference import assert_close, reduce_ref
from jax.experimental import checkify

import jaxloss
from jaxloss import __main__ as selfcheck
from jaxloss._core import REGISTRY, class_name_for


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
    with pytest.raises(dataclasses.FrozenInstanceError, match=r"HuberLoss is immutable; use .replace\(delta=...\)"):
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


@pytest.mark.parametrize("module", ["_core", "_objects", "regression", "binary", "multiclass", "divergence",
                                    "segmentation", "metric", "large_vocab", "train", "ranking", "probabilistic",
                                    "multimodal", "margin_softmax", "sequence", "detection", "preference",
                                    "self_supervised", "image", "geometry", "gan"])
def test_docstring_examples_are_true(module):
    import doctest
    import importlib

    mod = importlib.import_module(f"jaxloss.{module}")
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) in jaxloss.{module} print something else"
    assert result.attempted > 0


# ---- the second edition of the core ------------------------------------------------------


@jaxloss.loss(static={"mode": jaxloss.Static("str", lambda v: v in ("a", "b"), "'a' or 'b'", ValueError)})
def picklable_loss(pred, target, *, scale=1.0, mode="a"):
    r"""A module-level user loss :math:`s (p - t)^2` (its objects pickle).

    Args:
      pred: predictions.
      target: targets.
    """
    return scale * (pred - target) ** 2 * (1.0 if mode == "a" else 2.0)


def test_user_loss_objects_hash_pickle_and_replace():
    import pickle

    crit = picklable_loss.Loss(scale=2, mode="b")
    same = picklable_loss.Loss(scale=2.0, mode="b")
    assert crit == same and hash(crit) == hash(same)
    assert pickle.loads(pickle.dumps(crit)) == crit
    assert crit.replace(scale=3.0).scale == 3.0 and crit.replace(scale=3.0).mode == "b"
    with pytest.raises(ValueError, match="PicklableLoss: mode must be 'a' or 'b', got 'c'"):
        picklable_loss.Loss(mode="c")
    with pytest.raises(ValueError, match="picklable_loss: mode must be 'a' or 'b', got 'c'"):
        picklable_loss(jnp.ones(2), jnp.zeros(2), mode="c")


def test_unhashable_hyper_parameter_says_what_to_do():
    crit = jaxloss.HuberLoss(delta=jnp.asarray(2.0))
    with pytest.raises(TypeError, match="HuberLoss is not hashable: delta is a"):
        hash(crit)


def test_loss_objects_work_as_static_arguments():
    traces = []

    @functools.partial(jax.jit, static_argnums=0)
    def f(crit, p, t):
        traces.append(1)
        return crit(p, t)

    p, t = jnp.ones(3), jnp.zeros(3)
    assert_close(f(jaxloss.HuberLoss(delta=0.5), p, t), jaxloss.huber_loss(p, t, delta=0.5))
    assert_close(f(jaxloss.HuberLoss(delta=0.5), p, t), jaxloss.huber_loss(p, t, delta=0.5))
    assert len(traces) == 1
    f(jaxloss.HuberLoss(delta=0.25), p, t)
    assert len(traces) == 2


def test_composition_is_hashable_and_equal():
    a = jaxloss.DiceLoss() + 0.5 * jaxloss.BinaryCrossEntropyWithLogits()
    b = jaxloss.DiceLoss() + 0.5 * jaxloss.BinaryCrossEntropyWithLogits()
    assert a == b and hash(a) == hash(b)
    assert a != jaxloss.DiceLoss() + 0.25 * jaxloss.BinaryCrossEntropyWithLogits()


def test_signature_shown_is_the_one_bound():
    import inspect

    sig = inspect.signature(jaxloss.huber_loss)
    assert list(sig.parameters) == ["pred", "target", "delta", "reduction", "weights", "where"]
    assert sig.parameters["pred"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert list(inspect.signature(jaxloss.HuberLoss).parameters) == ["delta", "reduction"]
    p, t = jnp.ones(3), jnp.zeros(3)
    bound = sig.bind(p, target=t, delta=2.0)
    assert_close(jaxloss.huber_loss(*bound.args, **bound.kwargs), jaxloss.huber_loss(p, t, delta=2.0))


@pytest.mark.parametrize("word, suggestion", [("dleta", "delta"), ("weight", None), ("reductoin", "reduction")])
def test_did_you_mean(word, suggestion):
    with pytest.raises(TypeError, match=rf"huber_loss: unexpected keyword argument '{word}'") as info:
        jaxloss.huber_loss(jnp.ones(2), jnp.zeros(2), **{word: 1.0})
    if suggestion:
        assert f"did you mean '{suggestion}'" in str(info.value)


def test_pytorch_weight_suggests_class_weights():
    with pytest.raises(TypeError, match="did you mean 'class_weights'"):
        jaxloss.sparse_cross_entropy(jnp.zeros((2, 3)), jnp.array([0, 1]), weight=jnp.ones(3))
    with pytest.raises(TypeError, match="SparseCrossEntropy: unexpected keyword argument 'weight'; did you mean"):
        jaxloss.SparseCrossEntropy(weight=jnp.ones(3))


def test_no_eager_recompile_when_a_hyper_parameter_changes_value_or_python_type():
    x, t = jnp.array([0.5, -1.0, 2.0]), jnp.array([1.0, 0.0, 1.0])
    jaxloss.sigmoid_focal_loss(x, t)  # the default, compiled once
    before = jaxloss.sigmoid_focal_loss._compute._cache_size()
    values = [jaxloss.sigmoid_focal_loss(x, t, gamma=g) for g in (2, 2.0, 3.0, np.float64(1.5))]
    assert jaxloss.sigmoid_focal_loss._compute._cache_size() == before
    assert_close(values[0], values[1])


def test_value_checks_leave_the_program_unchanged_when_off():
    f = jax.jit(lambda x, y: jaxloss.sparse_cross_entropy(x, y))
    args = (jnp.zeros((4, 5)), jnp.array([0, 1, 2, 3]))
    before = f.lower(*args).as_text()
    with jaxloss.value_checks():
        checked = jax.jit(checkify.checkify(f)).lower(*args).as_text()
    after = f.lower(*args).as_text()
    assert before == after
    assert checked != before


def test_value_checks_are_part_of_the_cache_key():
    traces = []

    @jax.jit
    def f(x, y):
        traces.append(1)
        return jaxloss.sparse_cross_entropy(x, y)

    args = (jnp.zeros((2, 5)), jnp.array([1, 10]))
    assert np.isnan(float(f(*args)))  # unchecked: the documented NaN
    with jaxloss.value_checks():
        err, _ = checkify.checkify(f)(*args)
    assert "sparse_cross_entropy: labels must lie in [0, 5); first bad entry labels[1] = 10" in err.get()
    assert len(traces) == 2


@pytest.mark.parametrize("call, message", [
    (lambda: jaxloss.binary_cross_entropy(jnp.array([0.5, 1.5]), jnp.array([1.0, 0.0])),
     "binary_cross_entropy: probs must lie in [0, 1]; first bad entry probs[1] = 1.5"),
    (lambda: jaxloss.binary_cross_entropy_with_logits(jnp.zeros(3), jnp.array([0.0, 2.0, 1.0])),
     "binary_cross_entropy_with_logits: targets must lie in [0, 1]; first bad entry targets[1] = 2"),
    (lambda: jaxloss.hinge_loss(jnp.zeros((2, 2)), jnp.array([[1.0, 0.0], [0.5, 1.0]])),
     "hinge_loss: targets must be -1, 0 or 1; first bad entry targets[1, 0] = 0.5"),
    (lambda: jaxloss.mse_loss(jnp.zeros(3), jnp.zeros(3), weights=jnp.array([1.0, -1.0, 1.0])),
     "mse_loss: weights must be >= 0; first bad entry weights[1] = -1"),
    (lambda: jaxloss.mse_loss(jnp.array([0.0, jnp.inf]), jnp.zeros(2)),
     "mse_loss: pred must be finite; first bad entry pred[1] = inf"),
    (lambda: jaxloss.sparse_cross_entropy(jnp.zeros((3, 4)), jnp.array([0, -100, 4]), ignore_index=-100),
     "sparse_cross_entropy: labels must lie in [0, 4) or equal ignore_index; first bad entry labels[2] = 4"),
    (lambda: jaxloss.huber_loss(jnp.zeros(2), jnp.zeros(2), delta=-jnp.ones(())),
     "huber_loss: delta must lie in (0, inf)"),
], ids=["probs", "binary-targets", "sign-targets", "negative-weight", "inf-input", "label-range", "traced-hparam"])
def test_value_checks_report_loss_check_and_index(call, message):
    with jaxloss.value_checks():
        err, _ = checkify.checkify(jax.jit(call))()
    assert err.get() is not None and err.get().startswith(message), err.get()


def test_value_checks_skip_masked_entries():
    p = jnp.array([0.0, jnp.nan]); t = jnp.zeros(2)
    with jaxloss.value_checks():
        err, value = checkify.checkify(jax.jit(lambda: jaxloss.mse_loss(p, t, where=jnp.array([True, False]))))()
    assert err.get() is None and float(value) == 0.0


def test_self_check_family_choices(capsys):
    assert selfcheck.main(["--family", "binary", "--quiet"]) == 0
    assert "losses passed" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        selfcheck.main(["--family", "classification"])


def test_public_api_lists_no_modules():
    import types

    assert all(not isinstance(getattr(jaxloss, name), types.ModuleType) for name in jaxloss.__all__)
    specs = REGISTRY.values()
    assert set(jaxloss.__all__) >= {s.name for s in specs} | {s.cls.__name__ for s in specs}


def test_public_names_are_derived_from_the_module_lists():
    """One hand-kept list of public names per module (its ``__all__``: functions and
    their classes); ``jaxloss.__all__``, the attributes and the API index agree
    with it, and every registered loss and its class are listed in its module."""
    import importlib.util
    import pathlib

    listed = [n for m in jaxloss._MODULES for n in m.__all__]
    assert len(listed) == len(set(listed)), "a name is listed by two modules"
    assert jaxloss.__all__ == jaxloss._CORE + listed
    for m in jaxloss._MODULES:
        for n in m.__all__:
            assert getattr(jaxloss, n) is getattr(m, n), n
    for spec in REGISTRY.values():
        module = importlib.import_module(spec.fn.__module__)
        assert module in jaxloss._MODULES and module.__name__ == f"jaxloss.{spec.family}", spec.name
        assert {spec.name, spec.cls.__name__} <= set(module.__all__), spec.name
        assert getattr(module, spec.cls.__name__) is spec.cls
    root = pathlib.Path(__file__).resolve().parent.parent
    gen_spec = importlib.util.spec_from_file_location("gen_stubs", root / "scripts" / "gen_stubs.py")
    gen = importlib.util.module_from_spec(gen_spec)
    gen_spec.loader.exec_module(gen)
    text = gen.INDEX.read_text()
    assert text == gen.render_index(text), "docs/api/index.md is stale: run python scripts/gen_stubs.py"


def test_sum_and_weight_combines_micro_batch_means_exactly():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(10, 4)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 4, size=10))
    y = y.at[:3].set(-100)  # the first slice is mostly padding
    full = jaxloss.sparse_cross_entropy(x, y, ignore_index=-100)
    parts = [jaxloss.sparse_cross_entropy(x[a:b], y[a:b], ignore_index=-100, reduction="sum_and_weight")
             for a, b in ((0, 4), (4, 10))]
    assert_close(sum(s for s, _ in parts) / sum(w for _, w in parts), full)
    means = [s / w for s, w in parts]
    assert abs(float(sum(means) / 2) - float(full)) > 1e-3  # the naive mean of means differs


COMPARED = [s for s in REGISTRY.values() if s.example.compare is not None]


@pytest.mark.parametrize("spec", COMPARED, ids=[s.name for s in COMPARED])
def test_example_compare_is_the_same_mean(spec):
    """Each registry entry's ``example.compare`` (what the benchmarks time the loss
    against: optax's function or a plain formulation) computes the loss's mean."""
    args = tuple(jnp.asarray(a) for a in spec.example.sample(np.random.default_rng(0)))
    np.testing.assert_allclose(float(spec.example.compare(*args)), float(spec.fn(*args)), rtol=2e-5, atol=1e-6)


# -- issue 26: integer and float 0/1 masks ----------------------------------

@pytest.mark.parametrize("dtype", [jnp.int32, jnp.int8, jnp.float32, jnp.bfloat16, jnp.uint8])
def test_where_accepts_01_masks_like_bool(dtype):
    x, y = jnp.arange(1.0, 7.0).reshape(2, 3), jnp.zeros((2, 3))
    m = jnp.array([[1, 0, 1], [0, 1, 1]])
    want = jaxloss.mse_loss(x, y, where=m.astype(bool))
    np.testing.assert_allclose(jaxloss.mse_loss(x, y, where=m.astype(dtype)), want, rtol=1e-6)
    g = jax.grad(lambda x: jaxloss.mse_loss(x, y, where=m.astype(dtype)))(x)
    np.testing.assert_array_equal(g == 0, m == 0)


def test_where_01_mask_per_element_and_nonzero_counts_as_true():
    p = jax.nn.sigmoid(jnp.linspace(-2, 2, 2 * 4 * 4).reshape(2, 4, 4))
    t = (jnp.arange(32).reshape(2, 4, 4) % 3 == 0).astype(jnp.float32)
    m = (jnp.arange(32).reshape(2, 4, 4) % 5 != 0)
    want = jaxloss.dice_loss(p, t, where=m)
    np.testing.assert_allclose(jaxloss.dice_loss(p, t, where=m.astype(jnp.int32)), want, rtol=1e-6)
    np.testing.assert_allclose(jaxloss.dice_loss(p, t, where=2.0 * m), want, rtol=1e-6)  # read as != 0


def test_where_mask_dtype_error_and_docs():
    with pytest.raises(TypeError, match=r"mse_loss: where must be a boolean mask or a 0/1 integer or float mask"):
        jaxloss.mse_loss(jnp.zeros(3), jnp.zeros(3), where=jnp.ones(3, jnp.complex64))
    assert "where != 0" in jaxloss.mse_loss.__doc__ and "0/1" in jaxloss.dice_loss.__doc__


# -- issue 26: an axis_name that is not bound ---------------------------------

_UNBOUND_CALLS = {
    "clip_loss": lambda a, ax: jaxloss.clip_loss(a, a, axis_name=ax),
    "siglip_loss": lambda a, ax: jaxloss.siglip_loss(a, a, axis_name=ax),
    "linear_cross_entropy": lambda a, ax: jaxloss.linear_cross_entropy(a, jnp.ones((5, 3)), jnp.zeros(4, int),
                                                                       axis_name=ax),
    "vocab_parallel_cross_entropy": lambda a, ax: jaxloss.vocab_parallel_cross_entropy(
        jnp.ones((4, 5)), jnp.zeros(4, int), axis_name=ax),
    "arcface_loss": lambda a, ax: jaxloss.arcface_loss(a, jnp.ones((5, 3)), jnp.zeros(4, int), axis_name=ax),
    "cosface_loss": lambda a, ax: jaxloss.cosface_loss(a, jnp.ones((5, 3)), jnp.zeros(4, int), axis_name=ax),
}


@pytest.mark.parametrize("name", sorted(_UNBOUND_CALLS))
def test_unbound_axis_name_outside_shard_map(name):
    with pytest.raises(ValueError, match=rf"^{name}: axis_name='batch' .*not bound.*{name} must be called inside "
                                         r"jax\.shard_map"):
        _UNBOUND_CALLS[name](jnp.ones((4, 3)), "batch")


@pytest.mark.parametrize("name", ["clip_loss", "linear_cross_entropy"])
def test_wrong_axis_name_inside_shard_map_lists_the_axes_in_scope(name):
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",))

    def run(ax):
        f = jax.shard_map(lambda a: _UNBOUND_CALLS[name](a, ax), mesh=mesh, in_specs=P("data"), out_specs=P())
        return jax.jit(f)(jnp.ones((4, 3)))

    with pytest.raises(ValueError, match=rf"{name}: axis_name='batch' .*the axes in scope here are \('data',\)"):
        run("batch")
    assert np.isfinite(float(run("data")))  # the bound name still traces


def test_where_01_mask_other_values_are_an_error_under_value_checks():
    x, y = jnp.ones(4), jnp.zeros(4)
    f = jax.jit(lambda m: jaxloss.mse_loss(x, y, where=m))
    with jaxloss.value_checks():
        err, _ = checkify.checkify(f)(jnp.array([1, 0, 2, 1]))
        with pytest.raises(Exception, match=r"mse_loss: where must be 0 or 1 \(a 0/1 mask\); first bad entry "
                                             r"where\[2\] = 2"):
            err.throw()
        err, _ = checkify.checkify(f)(jnp.array([1.0, 0.0, 1.0, 1.0]))
        err.throw()  # a 0/1 float mask passes


# Until the module split of design §18 lands these names still live in the module their
# function reports; their tests are already in the file of the module the split moves them to.
# Each entry applies only while that module does not exist (then it can be deleted).
def _public_functions():
    """``(name, module)`` for every registered loss and every other public function of a
    family module, ``module`` the short name of the module whose ``__all__`` lists it."""
    import inspect

    found = {spec.name: spec.family for spec in REGISTRY.values()}
    for module in jaxloss._MODULES:
        for name in module.__all__:
            if inspect.isfunction(getattr(module, name)):
                found.setdefault(name, module.__name__.rpartition(".")[2])
    return sorted(found.items())


def test_each_public_function_is_tested_in_its_module_s_test_file():
    import pathlib
    import re

    tests = pathlib.Path(__file__).resolve().parent
    checked, missing = 0, []
    for name, module in _public_functions():
        path = tests / f"test_{module}.py"
        if not (path.is_file() and re.search(rf"\b{name}\b", path.read_text())):
            missing.append(f"{name} (jaxloss.{module}): not in tests/test_{module}.py")
        checked += 1
    assert checked >= len(REGISTRY) and not missing, "\n".join(missing)
