"""make_train_step: micro-batched steps equal the full-batch step, exactly."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _reference import assert_close

import jaxloss

C, D, B = 5, 3, 12


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(B, D)), jnp.float32)
    y = rng.integers(0, C, size=B)
    y[: B // 3] = -100  # the first slice is all padding, the others none
    y[B // 3] = 2
    return x, jnp.asarray(y)


def _params(seed=1):
    rng = np.random.default_rng(seed)
    return {"w": jnp.asarray(rng.normal(size=(D, C)), jnp.float32), "b": jnp.zeros(C)}


def apply(p, x):
    return x @ p["w"] + p["b"]


def _one_step(loss, k, params=None):
    opt = optax.sgd(0.5)
    params = _params() if params is None else params
    step = jaxloss.make_train_step(apply, loss, opt, micro_batches=k)
    x, y = _data()
    new, _, value = step(params, opt.init(params), x, y)
    return new, value


@pytest.mark.parametrize("k", [2, 3, 4])
def test_micro_batched_step_equals_full_batch_step_with_uneven_padding(k):
    loss = jaxloss.SparseCrossEntropy(ignore_index=-100, label_smoothing=0.1)
    full, v_full = _one_step(loss, 1)
    micro, v_micro = _one_step(loss, k)
    assert_close(v_micro, v_full)
    for name in full:
        assert_close(micro[name], full[name], rtol=1e-5, atol=1e-6)


def test_the_mean_of_micro_batch_means_is_not_the_full_batch_mean():
    x, y = _data()
    loss = jaxloss.SparseCrossEntropy(ignore_index=-100)
    logits = apply(_params(), x)
    full = loss(logits, y)
    slices = [jaxloss.sparse_cross_entropy(logits[i:i + 4], y[i:i + 4], ignore_index=-100) for i in (0, 4, 8)]
    naive = sum(slices) / 3  # the first slice has no counted token: its mean is 0
    assert abs(float(naive) - float(full)) > 0.05
    full_params, _ = _one_step(loss, 1)
    micro_params, _ = _one_step(loss, 3)
    assert_close(micro_params["w"], full_params["w"], rtol=1e-5, atol=1e-6)


def test_composed_losses_combine_term_by_term():
    loss = jaxloss.SparseCrossEntropy(ignore_index=-100) + 0.3 * jaxloss.SoftmaxFocalLoss(
        ignore_index=-100, gamma=2.0, reduction="sum")
    full, v_full = _one_step(loss, 1)
    micro, v_micro = _one_step(loss, 4)
    assert_close(v_micro, v_full)
    assert_close(micro["w"], full["w"], rtol=1e-5, atol=1e-6)


def test_weights_and_class_weights_stay_exact():
    loss = jaxloss.SparseCrossEntropy(ignore_index=-100, class_weights=jnp.arange(1.0, C + 1.0))
    full, v_full = _one_step(loss, 1)
    micro, v_micro = _one_step(loss, 2)
    assert_close(v_micro, v_full)
    assert_close(micro["b"], full["b"], rtol=1e-5, atol=1e-6)


def test_micro_batches_need_loss_objects():
    with pytest.raises(TypeError, match="make_train_step: micro_batches > 1 and axis_name need a jaxloss loss object"):
        _one_step(lambda pred, y: jnp.mean(pred), 2)


def test_micro_batches_must_divide_the_batch():
    with pytest.raises(ValueError, match="make_train_step: the batch of 12 does not split into micro_batches=5"):
        _one_step(jaxloss.SparseCrossEntropy(ignore_index=-100), 5)


@pytest.mark.parametrize("k", [0, 1.5, True])
def test_micro_batches_is_a_positive_int(k):
    with pytest.raises(ValueError, match="make_train_step: micro_batches must be a positive int"):
        jaxloss.make_train_step(apply, jaxloss.MSELoss(), optax.sgd(0.1), micro_batches=k)


def test_micro_batched_step_traces_once():
    traces = []

    def counted(p, x):
        traces.append(1)
        return apply(p, x)

    opt = optax.sgd(0.1)
    step = jaxloss.make_train_step(counted, jaxloss.SparseCrossEntropy(ignore_index=-100), opt, micro_batches=3)
    params = _params()
    state = opt.init(params)
    x, y = _data()
    params, state, _ = step(params, state, x, y)
    first = len(traces)
    assert first <= 2  # the slice's shapes, then the scan body: not once per slice
    for _ in range(2):
        params, state, _ = step(params, state, x, y)
    assert len(traces) == first  # compiled once


def test_tuple_predictions_feed_linear_cross_entropy():
    """An apply_fn returning (hidden, weight) drives linear_cross_entropy; two
    micro-batches with very different padding give the full-batch update, which
    is plain gradient descent on the NumPy mean over counted tokens."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    y = rng.integers(0, 11, size=8).astype(np.int32)
    y[:3] = -100  # the first micro-batch is mostly padding
    params = {"proj": rng.normal(size=(4, 4)).astype(np.float32), "embed": rng.normal(size=(11, 4)).astype(np.float32)}

    def apply(p, x):
        return x @ p["proj"], p["embed"]

    crit = jaxloss.LinearCrossEntropy(ignore_index=-100)
    opt = optax.sgd(1.0)
    full = jaxloss.make_train_step(apply, crit, opt)(params, opt.init(params), x, y)
    micro = jaxloss.make_train_step(apply, crit, opt, micro_batches=2)(params, opt.init(params), x, y)
    h = x.astype(np.float64) @ params["proj"]
    z = h @ params["embed"].T.astype(np.float64)
    keep = y != -100
    lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    want = np.mean((lse - z[np.arange(8), np.where(keep, y, 0)])[keep])
    assert_close(full[2], want, rtol=1e-5)
    assert_close(micro[2], want, rtol=1e-5)
    for name in params:
        assert_close(micro[0][name], full[0][name], rtol=1e-5, atol=1e-6)


# -- issue 26: where and weights through the step ------------------------------

def _masked_data(seed=4):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(B, D)), jnp.float32)
    y = jnp.asarray(rng.integers(0, C, size=B))
    mask = np.ones(B, np.int32)
    mask[: B // 3] = 0  # the first slice is all masked (an integer 0/1 mask, as TRL's)
    mask[B // 3 + 1:: 2] = 0
    w = jnp.asarray(rng.uniform(0.5, 2.0, size=B), jnp.float32)
    return x, y, jnp.asarray(mask), w


@pytest.mark.parametrize("k", [1, 2, 3])
def test_dict_targets_micro_batched_equals_full_batch_masked_step(k):
    x, y, mask, w = _masked_data()
    loss = jaxloss.SparseCrossEntropy() + 0.5 * jaxloss.MulticlassHingeLoss()
    opt = optax.sgd(0.5)
    params = _params()
    targets = {"targets": y, "where": mask, "weights": w}
    new, _, value = jaxloss.make_train_step(apply, loss, opt, micro_batches=k)(params, opt.init(params), x, targets)

    def full(p):  # the full-batch masked loss, every term masked and weighted
        z = apply(p, x)
        return (jaxloss.sparse_cross_entropy(z, y, where=mask != 0, weights=w)
                + 0.5 * jaxloss.multiclass_hinge_loss(z, y, where=mask != 0, weights=w))

    import jax
    want_value, grads = jax.value_and_grad(full)(params)
    assert_close(value, want_value, rtol=1e-5)
    for name in params:
        assert_close(new[name], params[name] - 0.5 * grads[name], rtol=1e-5, atol=1e-6)


def test_dict_targets_without_where_or_weights_is_the_plain_step():
    x, y = _data()
    loss = jaxloss.SparseCrossEntropy(ignore_index=-100)
    opt = optax.sgd(0.5)
    params = _params()
    a = jaxloss.make_train_step(apply, loss, opt, micro_batches=2)(params, opt.init(params), x, {"targets": y})
    b = jaxloss.make_train_step(apply, loss, opt, micro_batches=2)(params, opt.init(params), x, y)
    assert_close(a[2], b[2], rtol=1e-6)


@pytest.mark.parametrize("targets", [
    lambda y, m: (y, m),                                # (advantages, mask): the mask belongs in the dict
    lambda y, m: {"labels": y, "mask": m},             # unknown keys
    lambda y, m: {"where": m},                          # no targets
])
def test_unsupported_targets_name_make_train_step_and_show_the_dict_form(targets):
    x, y, mask, _ = _masked_data()
    opt = optax.sgd(0.5)
    params = _params()
    step = jaxloss.make_train_step(apply, jaxloss.SparseCrossEntropy(), opt)
    with pytest.raises(TypeError, match=r'make_train_step: .*\{"targets": t, "where": mask, "weights": w\}'):
        step(params, opt.init(params), x, targets(y, mask))


def test_tuple_targets_spread_over_a_multi_input_loss():
    """ctc_loss's labels and both lengths as one tuple of targets."""
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.normal(size=(4, 6, 3)), jnp.float32)
    labels = jnp.asarray(rng.integers(1, 4, size=(4, 2)))
    lengths, label_lengths = jnp.array([6, 5, 6, 4]), jnp.array([2, 1, 2, 2])
    params = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
    opt = optax.sgd(0.1)
    crit = jaxloss.CTCLoss()
    step = jaxloss.make_train_step(lambda p, x: x @ p, crit, opt, micro_batches=2)
    _, _, value = step(params, opt.init(params), x, (labels, lengths, label_lengths))
    assert_close(value, jaxloss.ctc_loss(x @ params, labels, lengths, label_lengths), rtol=1e-5)


def test_train_step_axis_name_outside_shard_map_names_make_train_step():
    x, y = _data()
    opt = optax.sgd(0.5)
    params = _params()
    step = jaxloss.make_train_step(apply, jaxloss.SparseCrossEntropy(ignore_index=-100), opt, axis_name="data")
    with pytest.raises(ValueError, match=r"make_train_step: axis_name='data' .*must be called inside jax\.shard_map"):
        step(params, opt.init(params), x, y)


def test_dict_targets_through_shard_map_on_one_device():
    """axis_name bound by shard_map (one device): the dict leaves are split with the batch."""
    import jax
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    x, y, mask, w = _masked_data()
    loss = jaxloss.SparseCrossEntropy()
    opt = optax.sgd(0.5)
    params = _params()
    targets = {"targets": y, "where": mask, "weights": w}
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    local = jaxloss.make_train_step(apply, loss, opt, micro_batches=2, axis_name="data", jit=False)
    dp = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P(), P("data"), P("data")), out_specs=(P(), P(), P())))
    got = dp(params, opt.init(params), x, targets)
    want = jaxloss.make_train_step(apply, loss, opt)(params, opt.init(params), x, targets)
    assert_close(got[2], want[2], rtol=1e-5)
    for name in params:
        assert_close(got[0][name], want[0][name], rtol=1e-5, atol=1e-6)
