"""clip_loss and siglip_loss across 8 host CPU devices (run in a separate process).

    python tests/multidevice_contrastive.py   (sets XLA_FLAGS=--xla_force_host_platform_device_count=8)

tests/test_multimodal.py runs it (the flag must be set before JAX starts). Checks,
for both losses and both ``gather`` modes, inside ``jax.shard_map`` with the batch
split over 8 devices (in float64, and once in float32):

1. ``"mean"``, ``"sum"`` and ``"sum_and_weight"`` (with ``weights`` and ``where``)
   are, on every device, the single-device values of the global batch, and
   ``"none"`` gives each device its own rows of the single-device result;
2. ``jax.grad`` of the shard-mapped loss (``out_specs=P()``), taken from outside,
   equals the single-device gradient for ``a``, ``b``, ``scale``, ``bias`` (SigLIP)
   and ``label_smoothing`` (CLIP);
3. the same gradients under ``shard_map(check_vma=False)`` (CLIP, ring);
4. the ``python`` blocks of docs/contrastive.md run and their assertions hold.

Prints one line per check and exits 1 if any failed.
"""

from __future__ import annotations

import _multidevice as md  # first: 8 host devices before JAX starts (tests/ is this script's directory)

# isort: split
import re

import jax
import jax.numpy as jnp
import numpy as np
from _multidevice import ROOT, check, close, mesh_of
from jax.sharding import PartitionSpec as P

import jaxloss

MESH = mesh_of((8,), ("data",))


def data(dtype, n=32, d=8, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, d))
    b = a + rng.normal(size=(n, d))
    w = rng.uniform(0.5, 2.0, size=n)
    m = rng.uniform(size=n) < 0.75
    m[:4] = False  # device 0 holds only masked rows
    return tuple(jnp.asarray(x, dtype) for x in (a, b, w)) + (jnp.asarray(m),)


CASES = [
    # (loss, hyper-parameters differentiated from outside, other options)
    ("clip_loss", {"scale": 4.0, "label_smoothing": 0.1}, {}),
    ("clip_loss", {"scale": 1 / 0.07, "label_smoothing": 0.0}, {"normalize": False}),
    ("siglip_loss", {"scale": 5.0, "bias": -2.0}, {}),
    ("siglip_loss", {"scale": 10.0, "bias": -10.0}, {"normalize": False}),
]


def run_case(name, hp, opts, gather, dtype, rtol, atol):
    fn = getattr(jaxloss, name)
    a, b, w, m = data(dtype)
    if opts.get("normalize") is False:
        a, b = a * 0.3, b * 0.3
    keys = tuple(hp)
    hvals = tuple(jnp.asarray(hp[k], dtype) for k in keys)

    def single(a_, b_, *h):
        kw = dict(zip(keys, h))
        return {r: fn(a_, b_, **kw, **opts, weights=w, where=m, reduction=r)
                for r in ("mean", "sum", "none", "sum_and_weight")}

    def local(a_, b_, w_, m_, *h):
        kw = dict(zip(keys, h))
        out = {r: fn(a_, b_, **kw, **opts, axis_name="data", gather=gather, weights=w_, where=m_, reduction=r)
               for r in ("mean", "sum", "sum_and_weight")}
        # one copy per device, to see that every device holds the global value
        per_device = jax.tree_util.tree_map(lambda v: jax.lax.pcast(v, ("data",), to="varying")[None], out)
        none = fn(a_, b_, **kw, **opts, axis_name="data", gather=gather, weights=w_, where=m_, reduction="none")
        return per_device, none

    specs = (P("data"), P("data"), P("data"), P("data")) + (P(),) * len(keys)
    sharded = jax.shard_map(local, mesh=MESH, in_specs=specs, out_specs=(P("data"), P("data")))

    # gradients from outside the shard_map (out_specs=P())
    def mean_local(a_, b_, w_, m_, *h):
        return fn(a_, b_, **dict(zip(keys, h)), **opts, axis_name="data", gather=gather, weights=w_, where=m_)

    mean_sharded = jax.shard_map(mean_local, mesh=MESH, in_specs=specs, out_specs=P())
    argnums = tuple(range(2)) + tuple(range(4, 4 + len(keys)))

    @jax.jit
    def on_8(*x):  # one program: values on every device, rows, gradients
        return sharded(*x), jax.grad(mean_sharded, argnums=argnums)(*x)

    @jax.jit
    def on_1(*x):
        return single(*x), jax.grad(lambda *y: single(*y)["mean"], argnums=tuple(range(2 + len(keys))))(*x)

    ref, g1 = on_1(a, b, *hvals)
    (per_device, none), g8 = on_8(a, b, w, m, *hvals)
    label = f"{name} {gather} {opts or ''} {np.dtype(dtype).name}"
    for r in ("mean", "sum", "sum_and_weight"):
        for got, want in zip(jax.tree_util.tree_leaves(per_device[r]), jax.tree_util.tree_leaves(ref[r])):
            assert got.shape == (8,), got.shape
            close(got, np.full(8, np.asarray(want)), f"{label}: {r} on every device", rtol, atol)
    close(none, ref["none"], f"{label}: none, each device's rows", rtol, atol)
    for what, x, y in zip(("a", "b") + keys, g8, g1):
        close(x, y, f"{label}: d mean / d {what}", rtol, atol)
        assert np.all(np.isfinite(np.asarray(x))), f"{label}: {what} gradient not finite"
    assert np.all(np.asarray(g8[0])[~np.asarray(m)] == 0), f"{label}: masked rows got a gradient"


for _name, _hp, _opts in CASES:
    for _gather in ("all", "ring"):
        with jax.enable_x64(True):
            check(f"{_name} gather={_gather} {_opts or ''} == one device (float64): values on every device, "
                  f"gradients from outside")(
                lambda: run_case(_name, _hp, _opts, _gather, jnp.float64, 1e-10, 1e-12))

# float32 (the default dtype): CLIP's ring here, SigLIP's ring in the docs' training step below
check("clip_loss gather=ring == one device (float32)")(
    lambda: run_case(*CASES[0], "ring", jnp.float32, 2e-5, 2e-6))


@check("clip_loss gather=ring under shard_map(check_vma=False): gradients from outside == one device")
def _unchecked():
    with jax.enable_x64(True):
        a, b, w, m = data(jnp.float64)

        def local(a_, b_, s_):
            return jaxloss.clip_loss(a_, b_, scale=s_, axis_name="data", gather="ring")

        f = jax.shard_map(local, mesh=MESH, in_specs=(P("data"), P("data"), P()), out_specs=P(), check_vma=False)
        g8 = jax.jit(jax.grad(f, argnums=(0, 1, 2)))(a, b, jnp.float64(3.0))
        g1 = jax.jit(jax.grad(lambda *x: jaxloss.clip_loss(x[0], x[1], scale=x[2]), argnums=(0, 1, 2)))(
            a, b, jnp.float64(3.0))
        for what, x, y in zip("abs", g8, g1):
            close(x, y, f"check_vma=False: d / d {what}", 1e-10, 1e-12)


@check("docs/contrastive.md: the python blocks run and their assertions hold")
def _docs():
    text = (ROOT / "docs" / "contrastive.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "no python blocks in docs/contrastive.md"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/contrastive.md", "exec"), namespace)  # noqa: S102


md.finish()
