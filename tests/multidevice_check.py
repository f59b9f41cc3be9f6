"""Multi-device checks, run on 8 host CPU devices in a separate process.

    python tests/multidevice_check.py   (sets XLA_FLAGS=--xla_force_host_platform_device_count=8)

(tests/test_multidevice.py runs it; the flag must be set before JAX starts,
which is why this is a script and not a test module). Checks:

1. Data parallelism needs no special code: every loss in ``jaxloss.REGISTRY``,
   on its registry sample with the batch sharded over the devices
   (``NamedSharding``, plain ``jit``), gives the values (every reduction, and
   with a ``where`` mask) and gradients it gives on one device.
2. ``vocab_parallel_cross_entropy`` under ``shard_map`` with the vocabulary split
   over devices equals a float64 NumPy sparse cross-entropy of the gathered
   logits and ``jaxloss.sparse_cross_entropy`` in value and gradient, alone
   and with the batch split over a second mesh axis.
3. ``linear_cross_entropy`` with ``weight`` (and ``bias``) sharded over the
   vocabulary equals one device: under GSPMD (plain ``jit``), and inside
   ``shard_map`` with ``axis_name``.
4. The code blocks of docs/large_vocab.md run and their assertions hold.

Prints one line per check and exits 1 if any failed.
"""

from __future__ import annotations

import _multidevice as md  # first: 8 host devices before JAX starts (tests/ is this script's directory)

# isort: split
import math
import re
import time

import jax
import jax.numpy as jnp
import numpy as np
from _multidevice import ROOT, check, close, mesh_of
from _reference import reduce_ref, reduce_ref_grad
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import jaxloss

ONE = jax.devices()[0]

# ---------------------------------------------------------------------------
# 1. Every registered loss, batch sharded over 8 devices == one device
# ---------------------------------------------------------------------------

DATA = mesh_of((8,), ("data",))
# jax.make_mesh's default in recent JAX: sharding is part of every array's type.
DATA_EXPLICIT = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))

# The losses are checked in batches: one compiled program computes every loss of a batch
# (each on its own inputs), once on one device, once on each mesh; a batch that fails to
# run is run again loss by loss, so a failure names its loss.
BATCH = 16


def batch_sharded_case(spec):
    """The sample tiled so the batch splits over all 8 devices, which inputs are batched,
    and the function of those inputs computing every reduction, ``where`` and the gradients."""
    rng = np.random.default_rng(0)
    inputs = [np.asarray(a) for a in spec.example.sample(rng)]
    batch = inputs[0].shape[0]
    reps = 8 // math.gcd(batch, 8)  # tile the sample so the batch splits over all 8 devices
    batched = [a.ndim >= 1 and a.shape[0] == batch for a in inputs]
    inputs = [np.concatenate([a] * reps) if b else a for a, b in zip(inputs, batched)]
    diff = spec.example.differentiable
    loss_shape = jax.eval_shape(lambda *a: spec.fn(*a, reduction="none"), *inputs).shape
    mask = None
    if loss_shape and loss_shape[0] == batch * reps:
        mask = rng.uniform(size=loss_shape) < 0.7

    def everything(*args):
        def mean(*d):
            full = list(args[: len(inputs)])
            for i, x in zip(diff, d):
                full[i] = x
            return spec.fn(*full)

        out = {r: spec.fn(*args[: len(inputs)], reduction=r) for r in ("mean", "sum", "none")}
        out["grad"] = jax.grad(mean, argnums=tuple(range(len(diff))))(*(args[i] for i in diff))
        if mask is not None:
            out["where"] = spec.fn(*args[: len(inputs)], where=args[-1])
        return out

    args = inputs + ([mask] if mask is not None else [])
    return {"args": args, "batched": batched + ([True] if mask is not None else []), "everything": everything}


def run(cases, mesh=None):
    """Every case's results from one program: on one device, or batch sharded over ``mesh``."""
    if mesh is None:
        placed = {n: [jax.device_put(a, ONE) for a in c["args"]] for n, c in cases.items()}
    else:
        placed = {}
        for n, c in cases.items():
            placed[n] = [jax.device_put(a, NamedSharding(mesh, P("data") if b else P()))
                         for a, b in zip(c["args"], c["batched"])]
            assert any(len(p.sharding.device_set) == 8 and b for p, b in zip(placed[n], c["batched"])), (
                f"{n}: nothing was sharded")
    program = jax.jit(lambda placed: {n: cases[n]["everything"](*placed[n]) for n in placed})
    if mesh is None:
        return program(placed)
    with jax.set_mesh(mesh):
        return program(placed)


def compare(name, single, sharded):
    for key in single:
        for a, b in zip(jax.tree_util.tree_leaves(single[key]), jax.tree_util.tree_leaves(sharded[key])):
            close(b, a, f"{name}: {key} differs between 8 devices and one", rtol=1e-5, atol=1e-5)
            assert np.isfinite(np.asarray(a)).all(), f"{name}: {key} not finite"


def run_batch(cases, mesh=None):
    """``run``, or where the whole batch fails, ``run`` of each case alone: the results by
    name, and the error of each case that failed alone."""
    try:
        return run(cases, mesh), {}
    except Exception:  # noqa: BLE001 -- find the losses that fail
        print(f"  (a batch of {len(cases)} failed {'on one device' if mesh is None else 'sharded'}: "
              "running its losses one by one)", flush=True)
    results, errors = {}, {}
    for n in cases:
        try:
            results.update(run({n: cases[n]}, mesh))
        except Exception as e:  # noqa: BLE001
            errors[n] = e
    return results, errors


EXPLICIT: list[str] = []


def batch_sharded_checks(specs):
    cases, errors = {}, {}
    for spec in specs:
        try:
            cases[spec.name] = batch_sharded_case(spec)
        except Exception as e:  # noqa: BLE001
            errors[spec.name] = e
    t0 = time.perf_counter()
    single, failed = run_batch(cases)
    errors.update(failed)
    auto, auto_errors = run_batch({n: c for n, c in cases.items() if n in single}, DATA)
    explicit, explicit_errors = run_batch(
        {n: c for n, c in cases.items() if n in single}, DATA_EXPLICIT)
    print(f"  ({len(specs)} losses compiled and run in {time.perf_counter() - t0:.1f} s)", flush=True)
    for spec in specs:
        name = spec.name

        @check(f"batch-sharded == one device: {name}")
        def _auto(name=name):
            if name in errors:
                raise errors[name]
            if name in auto_errors:
                raise auto_errors[name]
            compare(name, single[name], auto[name])

        if name not in single:
            continue
        @check(f"batch-sharded == one device, explicit mesh: {name}")
        def _explicit(name=name):
            if name in explicit_errors:
                raise explicit_errors[name]
            compare(name, single[name], explicit[name])
            EXPLICIT.append(name)


_SPECS = sorted(jaxloss.REGISTRY.values(), key=lambda s: s.name)
for _at in range(0, len(_SPECS), BATCH):
    batch_sharded_checks(_SPECS[_at:_at + BATCH])


# ---------------------------------------------------------------------------
# 2. vocab_parallel_cross_entropy under shard_map == gathered sparse cross-entropy
# ---------------------------------------------------------------------------

IGNORE = -100


def np_sparse_ce(z, y, eps=0.0, zl=0.0, ignore_index=None):
    """float64 per-token loss and d loss_i / d z_i (0 rows for ignored tokens)."""
    z = np.asarray(z, np.float64)
    vocab = z.shape[-1]
    mx = z.max(-1, keepdims=True)
    lse = (mx + np.log(np.exp(z - mx).sum(-1, keepdims=True)))[..., 0]
    ignored = np.zeros(y.shape, bool) if ignore_index is None else y == ignore_index
    onehot = np.eye(vocab)[np.where(ignored, 0, y)]
    logp = z - lse[..., None]
    loss = (1 - eps) * -(onehot * logp).sum(-1) - (eps / vocab) * logp.sum(-1) + zl * lse**2
    dz = (1 + 2 * zl * lse)[..., None] * np.exp(logp) - (1 - eps) * onehot - eps / vocab
    loss[ignored] = 0
    dz[ignored] = 0
    return loss, (~ignored).astype(np.float64), dz


def np_reduce(loss, wi, dz, reduction, weights=None, where=None):
    """Reduced value and (but for 'none') its gradient in the logits."""
    value = reduce_ref(loss, reduction, weights, where, counted=wi > 0)
    if reduction == "none":
        return value, None
    return value, reduce_ref_grad(loss.shape, reduction, weights, where, counted=wi > 0)[..., None] * dz


VP_OPTIONS = [
    {},
    {"ignore_index": IGNORE, "label_smoothing": 0.1, "z_loss": 1e-3},
]


def vocab_parallel_case(mesh, opts, weights=None, where=None):
    """Every reduction and its gradient from one compiled program, against the
    float64 closed form and sparse_cross_entropy."""
    rng = np.random.default_rng(1)
    n, vocab = 16, 40
    z = (rng.normal(size=(n, vocab)) * 3).astype(np.float32)
    y = rng.integers(0, vocab, size=(n,)).astype(np.int32)
    if "ignore_index" in opts:
        y[[2, 9]] = opts["ignore_index"]
    data_axis = "data" in mesh.axis_names
    spec_z, spec_y = (P("data", "vocab"), P("data")) if data_axis else (P(None, "vocab"), P())
    extra = {k: jnp.asarray(v) for k, v in (("weights", weights), ("where", where)) if v is not None}

    def local(z, y, extra):
        def vp(reduction):
            return jaxloss.vocab_parallel_cross_entropy(z, y, axis_name="vocab", reduction=reduction, **opts, **extra)

        if not data_axis:
            return {r: vp(r) for r in ("mean", "sum", "none")}
        # batch also split over "data": per-device sums, combined across it
        total = jax.lax.psum(vp("sum"), "data")
        count = jnp.ones(y.shape) if "ignore_index" not in opts else (y != opts["ignore_index"]).astype(jnp.float32)
        for k in extra:
            count = count * extra[k]
        return {"mean": total / jax.lax.psum(jnp.sum(count), "data"), "sum": total, "none": vp("none")}

    out_specs = {"mean": P(), "sum": P(), "none": spec_y}
    f = jax.shard_map(local, mesh=mesh, in_specs=(spec_z, spec_y, {k: spec_y for k in extra}), out_specs=out_specs)

    def everything(z, y, extra):
        out = f(z, y, extra)
        for r in ("mean", "sum"):
            out["grad_" + r] = jax.grad(lambda z: f(z, y, extra)[r])(z)
        return out

    got = jax.jit(everything)(jnp.asarray(z), jnp.asarray(y), extra)
    loss, wi, dz = np_sparse_ce(z, y, opts.get("label_smoothing", 0.0), opts.get("z_loss", 0.0),
                                opts.get("ignore_index"))
    for r in ("mean", "sum", "none"):
        want, want_grad = np_reduce(loss, wi, dz, r, weights, where)
        close(got[r], want, f"{r} value")
        if r != "none":
            close(got["grad_" + r], want_grad, f"{r} gradient")

    def ref(z):
        out = {r: jaxloss.sparse_cross_entropy(z, jnp.asarray(y), reduction=r, **opts, **extra)
               for r in ("mean", "sum", "none")}
        for r in ("mean", "sum"):
            out["grad_" + r] = jax.grad(
                lambda z: jaxloss.sparse_cross_entropy(z, jnp.asarray(y), reduction=r, **opts, **extra))(z)
        return out

    want = jax.jit(ref)(jnp.asarray(z))
    for k in want:
        close(got[k], want[k], f"{k} vs sparse_cross_entropy")


VOCAB8 = mesh_of((8,), ("vocab",))
DATA_VOCAB = mesh_of((2, 4), ("data", "vocab"))
_w = np.random.default_rng(3).uniform(0, 2, size=16).astype(np.float32)
_m = np.random.default_rng(4).uniform(size=16) < 0.6
for _mesh, _label in ((VOCAB8, "8-way vocab"), (DATA_VOCAB, "2 data x 4 vocab")):
    for _i, _opts in enumerate(VP_OPTIONS):
        check(f"vocab_parallel_cross_entropy in shard_map == gathered, {_label}, options {_i}")(
            lambda m=_mesh, o=_opts: vocab_parallel_case(m, o))
    check(f"vocab_parallel_cross_entropy in shard_map == gathered, {_label}, weights and where")(
        lambda m=_mesh: vocab_parallel_case(m, VP_OPTIONS[1], weights=_w, where=_m))


@check("vocab_parallel_cross_entropy: one pmax and one psum, no all-gather")
def _collectives():
    f = jax.jit(jax.shard_map(
        lambda z, y: jaxloss.vocab_parallel_cross_entropy(z, y, axis_name="vocab", label_smoothing=0.1),
        mesh=VOCAB8, in_specs=(P(None, "vocab"), P()), out_specs=P()))
    hlo = f.lower(jnp.zeros((16, 40)), jnp.zeros((16,), jnp.int32)).compile().as_text()
    assert "all-gather" not in hlo, "the logits were gathered"


# ---------------------------------------------------------------------------
# 3. linear_cross_entropy with a vocabulary-sharded weight == one device
# ---------------------------------------------------------------------------

LCE_OPTIONS = {"ignore_index": IGNORE, "label_smoothing": 0.1, "z_loss": 1e-3, "logit_softcap": 5.0}


def lce_data(n=16, dim=8, vocab=104):
    rng = np.random.default_rng(5)
    h = rng.normal(size=(n, dim)).astype(np.float32)
    w = (rng.normal(size=(vocab, dim)) * 0.7).astype(np.float32)
    b = (rng.normal(size=(vocab,)) * 0.3).astype(np.float32)
    y = rng.integers(0, vocab, size=(n,)).astype(np.int32)
    y[[1, 6]] = IGNORE
    return h, w, b, y


def lce_one_device(h, w, b, y, reduction="mean"):
    def f(h, w, b):
        return jaxloss.linear_cross_entropy(h, w, y, bias=b, chunk_size=7, reduction=reduction, **LCE_OPTIONS)

    return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))(*(jax.device_put(x, ONE) for x in (h, w, b)))


def gspmd_case(mesh, h_spec):
    h, w, b, y = lce_data()
    want = lce_one_device(h, w, b, y)
    vocab_spec = NamedSharding(mesh, P("vocab"))
    placed = (jax.device_put(h, NamedSharding(mesh, h_spec)), jax.device_put(w, vocab_spec),
              jax.device_put(b, vocab_spec))
    assert len(placed[1].sharding.device_set) == mesh.size
    got = jax.jit(jax.value_and_grad(
        lambda h, w, b: jaxloss.linear_cross_entropy(h, w, jnp.asarray(y), bias=b, chunk_size=7, **LCE_OPTIONS),
        argnums=(0, 1, 2)))(*placed)
    close(got[0], want[0], "value")
    for g, r, n in zip(got[1], want[1], ("hidden", "weight", "bias")):
        close(g, r, f"d {n}")


check("linear_cross_entropy, GSPMD, weight 8-way over vocab")(lambda: gspmd_case(VOCAB8, P()))
check("linear_cross_entropy, GSPMD, hidden 2-way over data x weight 4-way over vocab")(
    lambda: gspmd_case(DATA_VOCAB, P("data")))


def shard_map_case(mesh):
    h, w, b, y = lce_data()
    want = lce_one_device(h, w, b, y)
    data_axis = "data" in mesh.axis_names

    def local(h, w, b, y):
        s = jaxloss.linear_cross_entropy(h, w, y, bias=b, chunk_size=7, axis_name="vocab", reduction="sum",
                                         **LCE_OPTIONS)
        count = jnp.sum(y != IGNORE).astype(jnp.float32)
        if data_axis:
            s, count = jax.lax.psum((s, count), "data")
        return s / count  # the global mean over counted tokens

    h_spec = P("data") if data_axis else P()
    f = jax.shard_map(local, mesh=mesh, in_specs=(h_spec, P("vocab"), P("vocab"), h_spec), out_specs=P())
    vg = jax.jit(jax.value_and_grad(lambda h, w, b: f(h, w, b, jnp.asarray(y)), argnums=(0, 1, 2)))
    got = vg(h, w, b)
    close(got[0], want[0], "value")
    for g, r, n in zip(got[1], want[1], ("hidden", "weight", "bias")):
        close(g, r, f"d {n}")
    if not data_axis:  # (with a data axis the replicated weight's gradient is all-reduced, as it should)
        hlo = vg.lower(h, w, b).compile().as_text()
        assert "all-gather" not in hlo, "weight or logits gathered"


check("linear_cross_entropy(axis_name=...) in shard_map, 8-way vocab")(lambda: shard_map_case(VOCAB8))
check("linear_cross_entropy(axis_name=...) in shard_map, 2 data x 4 vocab")(lambda: shard_map_case(DATA_VOCAB))


@check("linear_cross_entropy(return_stats=True, axis_name=...) in shard_map == one device, argmax ties across shards")
def _stats_sharded():
    h, w, b, y = lce_data()
    w = w.copy()
    w[2] *= 4.0
    w[90] = w[2]  # shard 0 and shard 6 of 8 hold the tied classes
    h = h.copy()
    h[:3] = w[2]
    y = y.copy()
    y[:3] = [90, 2, 90]

    def stats(h, w, b, y, **kw):
        return jaxloss.linear_cross_entropy(h, w, y, bias=None, chunk_size=5, return_stats=True, ignore_index=IGNORE,
                                            **kw)[1]

    want = stats(*(jax.device_put(x, ONE) for x in (h, w, b, y)))
    f = jax.shard_map(lambda h, w, b, y: stats(h, w, b, y, axis_name="vocab"), mesh=VOCAB8,
                      in_specs=(P(), P("vocab"), P("vocab"), P()), out_specs=P())
    got = jax.jit(f)(h, w, b, y)
    for k in ("lse", "z_loss", "accuracy"):
        close(got[k], want[k], k)
    z = h.astype(np.float64) @ w.astype(np.float64).T
    keep = y != IGNORE
    assert abs(float(got["accuracy"]) - float(np.mean((np.argmax(z, 1) == y)[keep]))) < 1e-6


for _fn_name, _sub in (("arcface_loss", None), ("cosface_loss", 3)):
    @check(f"{_fn_name}(axis_name=...) class-sharded 8 ways == one device (value, embeddings, centres, scale), "
           f"sub-centres={_sub}")
    def _(fn_name=_fn_name, sub=_sub):
        fn = getattr(jaxloss, fn_name)
        rng = np.random.default_rng(11)
        e = rng.normal(size=(12, 8)).astype(np.float32)
        w = rng.normal(size=(104, 8) if sub is None else (104, sub, 8)).astype(np.float32)
        y = rng.integers(0, 104, size=12).astype(np.int32)

        def one(e, w, s):
            return fn(e, w, jnp.asarray(y), scale=s, margin=0.3, chunk_size=5)

        want = jax.jit(jax.value_and_grad(one, argnums=(0, 1, 2)))(e, w, jnp.float32(16.0))
        w_spec = P("vocab") if sub is None else P("vocab", None, None)
        f = jax.shard_map(lambda e, w, s, y: fn(e, w, y, scale=s, margin=0.3, chunk_size=5, axis_name="vocab"),
                          mesh=VOCAB8, in_specs=(P(), w_spec, P(), P()), out_specs=P())
        got = jax.jit(jax.value_and_grad(lambda e, w, s: f(e, w, s, jnp.asarray(y)), argnums=(0, 1, 2)))(
            e, w, jnp.float32(16.0))
        close(got[0], want[0], "value")
        for g, r, n in zip(got[1], want[1], ("embeddings", "weight", "scale")):
            close(g, r, f"d {n}", rtol=1e-4, atol=1e-5)


@check("vocabulary split over a tuple of mesh axes (2 x 4): both forms == one device")
def _tuple_axes():
    mesh = mesh_of((2, 4), ("a", "b"))
    h, w, b, y = lce_data()
    want = lce_one_device(h, w, b, y)
    f = jax.shard_map(
        lambda h, w, b, y: jaxloss.linear_cross_entropy(h, w, y, bias=b, chunk_size=7, axis_name=("a", "b"),
                                                        **LCE_OPTIONS),
        mesh=mesh, in_specs=(P(), P(("a", "b")), P(("a", "b")), P()), out_specs=P())
    got = jax.jit(jax.value_and_grad(lambda h, w, b: f(h, w, b, jnp.asarray(y)), argnums=(0, 1, 2)))(h, w, b)
    close(got[0], want[0], "value")
    for g, r, n in zip(got[1], want[1], ("hidden", "weight", "bias")):
        close(g, r, f"d {n}")
    z = (h @ w.T).astype(np.float32)
    vp = jax.jit(jax.shard_map(
        lambda z, y: jaxloss.vocab_parallel_cross_entropy(z, y, axis_name=("a", "b"), ignore_index=IGNORE),
        mesh=mesh, in_specs=(P(None, ("a", "b")), P()), out_specs=P()))
    loss, wi, _ = np_sparse_ce(z, y, ignore_index=IGNORE)
    close(vp(z, jnp.asarray(y)), reduce_ref(loss, "mean", counted=wi > 0), "vocab_parallel_cross_entropy value")


@check("linear_cross_entropy(axis_name=...) in shard_map on an explicit 2 data x 4 vocab mesh")
def _explicit_tp():
    mesh = jax.make_mesh((2, 4), ("data", "vocab"), axis_types=(jax.sharding.AxisType.Explicit,) * 2)
    h, w, b, y = lce_data()
    want = lce_one_device(h, w, b, y)

    def local(h, w, b, y):
        s = jaxloss.linear_cross_entropy(h, w, y, bias=b, chunk_size=7, axis_name="vocab", reduction="sum",
                                         **LCE_OPTIONS)
        s, count = jax.lax.psum((s, jnp.sum(y != IGNORE).astype(jnp.float32)), "data")
        return s / count

    specs = (P("data"), P("vocab"), P("vocab"), P("data"))
    placed = [jax.device_put(x, NamedSharding(mesh, sp)) for x, sp in zip((h, w, b, y), specs)]
    with jax.set_mesh(mesh):
        f = jax.shard_map(local, in_specs=specs, out_specs=P())
        got = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))(*placed)
    close(got[0], want[0], "value")
    for g, r, n in zip(got[1], want[1], ("hidden", "weight", "bias")):
        close(g, r, f"d {n}")


@check("linear_cross_entropy: vocabulary-sharded weight on an explicit mesh, plain jit == one device")
def _explicit_gspmd():
    # (the 2-D data x model forms, the HLO and the gradients' shardings: tests/multidevice_heads.py)
    h, w, b, y = lce_data()
    want = lce_one_device(h, w, b, y)
    vocab = NamedSharding(DATA_EXPLICIT, P("data"))
    with jax.set_mesh(DATA_EXPLICIT):
        got = jax.jit(jax.value_and_grad(
            lambda h, w, b: jaxloss.linear_cross_entropy(h, w, jnp.asarray(y), bias=b, chunk_size=7, **LCE_OPTIONS),
            argnums=(0, 1, 2)))(h, jax.device_put(w, vocab), jax.device_put(b, vocab))
    close(got[0], want[0], "value")
    for g, r, n in zip(got[1], want[1], ("hidden", "weight", "bias")):
        close(g, r, f"d {n}")


@check("linear_cross_entropy, data-parallel shard_map without axis_name")
def _dp_shard_map():
    h, w, b, y = lce_data()
    want = lce_one_device(h, w, b, y, "sum")
    f = jax.shard_map(
        lambda h, w, b, y: jax.lax.psum(jaxloss.linear_cross_entropy(
            h, w, y, bias=b, chunk_size=7, reduction="sum", **LCE_OPTIONS), "data"),
        mesh=DATA, in_specs=(P("data"), P(), P(), P("data")), out_specs=P())
    got = jax.jit(jax.value_and_grad(lambda h, w, b: f(h, w, b, jnp.asarray(y)), argnums=(0, 1, 2)))(h, w, b)
    close(got[0], want[0], "value")
    for g, r, n in zip(got[1], want[1], ("hidden", "weight", "bias")):
        close(g, r, f"d {n}")


# ---------------------------------------------------------------------------
# 4. The documentation's examples
# ---------------------------------------------------------------------------


def _train_problem():
    rng = np.random.default_rng(40)
    x = jnp.asarray(rng.normal(size=(32, 3)), jnp.float32)
    y = rng.integers(0, 5, size=32)
    y[:12] = -100  # the first devices' rows are mostly padding
    params = {"w": jnp.asarray(rng.normal(size=(3, 5)), jnp.float32), "b": jnp.zeros(5, jnp.float32)}
    return x, jnp.asarray(y), params


def _apply(p, x):
    return x @ p["w"] + p["b"]


for _k, _check_vma in ((1, True), (2, True), (2, False)):
    @check(f"make_train_step(axis_name='data', micro_batches={_k}) on 8 devices, check_vma={_check_vma}, "
           "== one device, full batch")
    def _(k=_k, check_vma=_check_vma):
        import optax

        x, y, params = _train_problem()
        crit = jaxloss.SparseCrossEntropy(ignore_index=-100) + 0.5 * jaxloss.SoftmaxFocalLoss(ignore_index=-100)
        opt = optax.adam(0.1)
        full = jaxloss.make_train_step(_apply, crit, opt)(params, opt.init(params), x, y)
        local = jaxloss.make_train_step(_apply, crit, opt, micro_batches=k, axis_name="data", jit=False)
        dp = jax.jit(jax.shard_map(local, mesh=DATA, in_specs=(P(), P(), P("data"), P("data")),
                                   out_specs=(P(), P(), P()), check_vma=check_vma))
        new, _, value = dp(params, opt.init(params), x, y)
        close(value, full[2], "loss value", rtol=1e-5, atol=1e-6)
        for name in params:
            close(new[name], full[0][name], name, rtol=1e-5, atol=1e-6)


@check("docs/large_vocab.md code blocks run")
def _docs():
    text = (ROOT / "docs" / "large_vocab.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "no python blocks in docs/large_vocab.md"
    scope: dict = {"__name__": "docs_large_vocab"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/large_vocab.md[block {i}]", "exec"), scope)  # noqa: S102


md.finish(f"; explicit mesh: {len(EXPLICIT)} of {len(jaxloss.REGISTRY)} registered losses equal one device")
