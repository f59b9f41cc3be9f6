"""Fused heads and sharded-parameter train steps under plain ``jit`` on 8 host CPU devices.

    python tests/multidevice_heads.py   (sets XLA_FLAGS=--xla_force_host_platform_device_count=8)

(tests/test_multidevice.py runs it in a fresh process). Checks, on a 2-D mesh
``"data"`` (2) x ``"model"`` (4), the batch over ``"data"`` and the weight's rows
over ``"model"``, with plain ``jax.jit`` under ``jax.set_mesh``:

1. ``linear_cross_entropy`` (with a bias), ``arcface_loss``, ``cosface_loss``
   (sub-centres), ``linear_sequence_logprobs`` and ``linear_distillation_loss``:
   value and gradients equal one device; the compiled program (forward and
   backward) holds no all-gather whose result is the whole weight; the weight's
   gradient comes back split over ``"model"`` along its rows. Explicit meshes
   (the split is read from the weight's type), and Auto meshes where the loss
   takes ``axis_name="model"``.
2. The HLO detector itself: it flags the program GSPMD builds for
   ``linear_cross_entropy`` on an Auto mesh without ``axis_name`` (which does
   gather the weight), so a regression cannot pass silently.
3. ``make_train_step`` with FSDP-style parameters (each matrix split over
   ``"data"`` along one axis) and the batch split over ``"data"`` on an Explicit
   mesh: the updated parameters equal one device and keep their shardings.

Also prints the per-device compiled memory (``memory_analysis``) of the fused
head on the 2-D mesh against one device. Prints one line per check; exits 1 if
any failed.
"""

from __future__ import annotations

import functools
import re

import _multidevice as md  # first: 8 host devices before JAX starts

# isort: split
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import AxisType, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import jaxloss  # noqa: E402

check = md.check
close = functools.partial(md.close, rtol=2e-5, atol=2e-5)







ONE = jax.devices()[0]
MESHES = {kind: jax.make_mesh((2, 4), ("data", "model"), axis_types=(kind, kind))
          for kind in (AxisType.Auto, AxisType.Explicit)}

_GATHER = re.compile(r"=\s*\(?([a-z0-9]+)\[([0-9,]*)\][^=]*?\ball-gather(?:-start)?\(")


def full_gathers(hlo: str, shapes) -> list[str]:
    """The all-gather instructions of compiled ``hlo`` whose result has one of
    ``shapes`` (the whole weight), as their HLO lines."""
    wanted = {tuple(int(d) for d in s) for s in shapes}
    hits = []
    for line in hlo.splitlines():
        m = _GATHER.search(line)
        if m and tuple(int(d) for d in m.group(2).split(",") if d) in wanted:
            hits.append(line.strip()[:200])
    return hits


def same_spec(a, b):
    """Equal partition specs up to trailing ``None`` (``P(None)`` is ``P()``)."""
    def norm(spec):
        spec = list(spec)
        while spec and spec[-1] is None:
            spec.pop()
        return tuple(spec)
    return norm(a) == norm(b)


def rows_split(x, axis="model"):
    spec = x.sharding.spec
    first = spec[0] if len(spec) else None
    return first == axis or (isinstance(first, tuple) and axis in first)


# ---------------------------------------------------------------------------
# 1. The heads
# ---------------------------------------------------------------------------

RNG = np.random.default_rng(0)
N, D, V, IGNORE = 16, 8, 104, -100
H = RNG.normal(size=(N, D)).astype(np.float32)
W = (RNG.normal(size=(V, D)) * 0.7).astype(np.float32)
B = (RNG.normal(size=(V,)) * 0.3).astype(np.float32)
W3 = RNG.normal(size=(V, 3, D)).astype(np.float32)
Y = RNG.integers(0, V, size=(N,)).astype(np.int32)
Y_IGN = Y.copy()
Y_IGN[[1, 6]] = IGNORE
H_T = RNG.normal(size=(N, 6)).astype(np.float32)
W_T = (RNG.normal(size=(V, 6)) * 0.7).astype(np.float32)
SEQ_MASK = RNG.uniform(size=(4, 4)) < 0.8


def _lce(h, w, b, y, **kw):
    return jaxloss.linear_cross_entropy(h, w, y, bias=b, chunk_size=7, ignore_index=IGNORE, label_smoothing=0.1,
                                        z_loss=1e-3, logit_softcap=5.0, **kw)


def _lce_sum(h, w, b, y, **kw):
    return _lce(h, w, b, y, reduction="sum", **kw)


def _arc(h, w, y, **kw):
    return jaxloss.arcface_loss(h, w, y, scale=16.0, margin=0.3, chunk_size=5, **kw)


def _cos(h, w, y, **kw):
    return jaxloss.cosface_loss(h, w, y, scale=16.0, margin=0.3, chunk_size=5, **kw)


def _seq(h, w, y, **kw):
    b, t = SEQ_MASK.shape
    s = jaxloss.linear_sequence_logprobs(h.reshape(b, t, D), w, y.reshape(b, t), mask=jnp.asarray(SEQ_MASK),
                                         chunk_size=7, **kw)
    return jnp.sum(s * jnp.arange(1.0, b + 1.0))


def _distill(hs, ws, ht, wt, **kw):
    return jaxloss.linear_distillation_loss(hs, ws, ht, wt, temperature=2.0, divergence="jsd", chunk_size=7, **kw)


# name, function, inputs, their specs on the 2-D mesh, indices differentiated, indices of the weights,
# whether the Auto mesh form (axis_name="model") exists
HEADS = [
    ("linear_cross_entropy", _lce, (H, W, B, Y_IGN), (P("data"), P("model"), P("model"), P("data")), (0, 1, 2),
     (1,), True),
    ("linear_cross_entropy, reduction='sum'", _lce_sum, (H, W, B, Y_IGN),
     (P("data"), P("model"), P("model"), P("data")), (0, 1, 2), (1,), True),
    ("arcface_loss", _arc, (H, W, Y), (P("data"), P("model"), P("data")), (0, 1), (1,), True),
    ("cosface_loss, 3 sub-centres", _cos, (H, W3, Y), (P("data"), P("model"), P("data")), (0, 1), (1,), True),
    ("linear_sequence_logprobs", _seq, (H, W, Y), (P("data"), P("model"), P("data")), (0, 1), (1,), True),
    ("linear_distillation_loss", _distill, (H, W, H_T, W_T), (P("data"), P("model"), P("data"), P("model")),
     (0, 1, 2, 3), (1, 3), False),
]


def head_program(fn, argnums, **kw):
    return jax.jit(jax.value_and_grad(lambda *a: fn(*a, **kw), argnums=argnums))


def head_case(fn, inputs, specs, argnums, weights, kind):
    want = head_program(fn, argnums)(*(jax.device_put(x, ONE) for x in inputs))
    mesh = MESHES[kind]
    placed = [jax.device_put(x, NamedSharding(mesh, s)) for x, s in zip(inputs, specs)]
    kw = {"axis_name": "model"} if kind == AxisType.Auto else {}
    with jax.set_mesh(mesh):
        prog = head_program(fn, argnums, **kw)
        got = prog(*placed)
        hlo = prog.lower(*placed).compile().as_text()
    close(got[0], want[0], "value")
    for i, g, r in zip(argnums, got[1], want[1]):
        close(g, r, f"d input {i}", rtol=1e-4, atol=1e-5)
    gathered = full_gathers(hlo, [inputs[i].shape for i in weights])
    assert not gathered, "the whole weight is all-gathered:\n" + "\n".join(gathered)
    for i in weights:
        assert rows_split(got[1][argnums.index(i)]), (
            f"the gradient of input {i} is not row-split over 'model': {got[1][argnums.index(i)].sharding}")


for _name, _fn, _inputs, _specs, _argnums, _weights, _auto in HEADS:
    for _kind in (AxisType.Explicit, AxisType.Auto):
        if _kind == AxisType.Auto and not _auto:
            continue
        _form = "explicit mesh" if _kind == AxisType.Explicit else "Auto mesh, axis_name='model'"
        check(f"{_name}: 2 data x 4 model, {_form}, plain jit == one device, no full-weight all-gather, "
              f"row-split weight gradient")(
            lambda f=_fn, i=_inputs, s=_specs, a=_argnums, w=_weights, k=_kind: head_case(f, i, s, a, w, k))


@check("HLO detector: flags the full-weight all-gather of GSPMD's program (Auto mesh, no axis_name)")
def _negative_control():
    mesh = MESHES[AxisType.Auto]
    placed = [jax.device_put(x, NamedSharding(mesh, s))
              for x, s in zip((H, W, B, Y_IGN), (P("data"), P("model"), P("model"), P("data")))]
    with jax.set_mesh(mesh):
        hlo = head_program(_lce, (0, 1, 2)).lower(*placed).compile().as_text()
    assert full_gathers(hlo, [W.shape]), "the detector missed a gathered weight"


@check("per-device compiled memory of linear_cross_entropy: 2 data x 4 model vs one device")
def _memory():
    rng = np.random.default_rng(1)
    n, d, v = 512, 256, 32768
    h = rng.normal(size=(n, d)).astype(np.float32)
    w = (rng.normal(size=(v, d)) * 0.05).astype(np.float32)
    y = rng.integers(0, v, size=(n,)).astype(np.int32)

    def prog(**kw):
        return jax.jit(jax.value_and_grad(
            lambda h, w, y: jaxloss.linear_cross_entropy(h, w, y, chunk_size=1024, **kw), argnums=(0, 1)))

    def total(compiled):
        m = compiled.memory_analysis()
        return m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes

    one = total(prog().lower(*(jax.device_put(x, ONE) for x in (h, w, y))).compile())
    mesh = MESHES[AxisType.Explicit]
    placed = [jax.device_put(x, NamedSharding(mesh, s)) for x, s in zip((h, w, y), (P("data"), P("model"), P("data")))]
    with jax.set_mesh(mesh):
        split = total(prog().lower(*placed).compile())
    print(f"     linear_cross_entropy N={n} D={d} V={v}, value and gradients: one device {one / 2**20:.1f} MiB, "
          f"2 x 4 mesh {split / 2**20:.1f} MiB per device ({one / split:.1f}x less)")
    assert split < one / 2, (one, split)


# ---------------------------------------------------------------------------
# 3. make_train_step with FSDP-style parameters on an explicit mesh
# ---------------------------------------------------------------------------


@check("make_train_step: FSDP-sharded params and batch on an explicit 8-device mesh == one device, "
       "shardings kept")
def _fsdp():
    import optax

    rng = np.random.default_rng(7)
    x = rng.normal(size=(32, 16)).astype(np.float32)
    y = rng.integers(0, 8, size=(32,)).astype(np.int32)
    y[:5] = -100
    params = {"w1": (rng.normal(size=(16, 32)) * 0.3).astype(np.float32), "b1": np.zeros(32, np.float32),
              "w2": (rng.normal(size=(32, 8)) * 0.3).astype(np.float32), "b2": np.zeros(8, np.float32)}

    def gathered(a):  # FSDP: a parameter is gathered where it is used (its gradient is reduce-scattered back)
        explicit = getattr(jax.typeof(a).sharding.mesh, "axis_types", ()) == (AxisType.Explicit,)
        return jax.sharding.reshard(a, P()) if explicit else a

    def apply(p, x):
        p = {k: gathered(v) for k, v in p.items()}
        return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    crit = jaxloss.SparseCrossEntropy(ignore_index=-100) + 0.5 * jaxloss.SoftmaxFocalLoss(ignore_index=-100)
    opt = optax.adamw(0.05)
    step = jaxloss.make_train_step(apply, crit, opt)
    put1 = lambda t: jax.tree.map(lambda a: jax.device_put(a, ONE), t)  # noqa: E731
    want = step(put1(params), opt.init(put1(params)), *put1((x, y)))

    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Explicit,))
    specs = {"w1": P(None, "data"), "b1": P("data"), "w2": P("data", None), "b2": P()}
    sp = {k: jax.device_put(v, NamedSharding(mesh, specs[k])) for k, v in params.items()}
    xs, ys = (jax.device_put(a, NamedSharding(mesh, P("data"))) for a in (x, y))
    with jax.set_mesh(mesh):
        state = opt.init(sp)
        new, new_state, value = step(sp, state, xs, ys)
    close(value, want[2], "loss value", rtol=1e-5, atol=1e-6)
    for k in params:
        close(new[k], want[0][k], k, rtol=1e-5, atol=1e-6)
        assert same_spec(new[k].sharding.spec, sp[k].sharding.spec), (k, new[k].sharding.spec, sp[k].sharding.spec)
    for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(state)):
        assert same_spec(a.sharding.spec, b.sharding.spec), (a.sharding, b.sharding)
    close(jax.tree.leaves(new_state)[1], jax.tree.leaves(want[1])[1], "optimizer state", rtol=1e-5, atol=1e-6)


md.finish()
