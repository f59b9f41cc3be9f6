"""Contrastive losses across devices: ``gather="ring"`` against ``gather="all"``.

On 8 simulated host devices (``--xla_force_host_platform_device_count=8``, set
before JAX starts), for ``clip_loss`` and ``siglip_loss`` inside ``jax.shard_map``
with the batch split over the 8 devices:

1. Compiled per-device temporary memory of the jitted value-and-gradient (with
   respect to both towers, ``scale`` and, for SigLIP, ``bias``) of the
   shard-mapped ``"mean"``, from ``.lower(...).compile().memory_analysis()``
   (compiled, not run; the SPMD program is the per-device program), at global
   B=8192, D=512, float32. Targets (design §17): ring <= 25% of all for CLIP,
   <= 33% for SigLIP (whose "all" form gathers one tower only).
2. Measured time of the same value-and-gradient at global B=4096, D=64
   (float32): repetitions interleaved in random order (``_timing.interleaved``),
   medians and the ring/all ratio (target <= 1.2x), with the noise floor (the
   "all" program timed twice).
3. ``arcface_loss`` compiled temporary memory at N=1024, D=512, C=10**6
   against the logits and their gradient (target <= 5%).

Run:  python benchmarks/bench_contrastive.py              (about two minutes on 2 CPU cores)
      python benchmarks/bench_contrastive.py --reps 3     (quick look)
"""

from __future__ import annotations

import os

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()

import argparse  # noqa: E402

import _timing  # noqa: E402  (benchmarks/_timing.py: interleaved timing, memory, tables)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import jaxloss  # noqa: E402

LOSSES = {"clip_loss": ("scale",), "siglip_loss": ("scale", "bias")}
TARGETS = {"clip_loss": 0.25, "siglip_loss": 1 / 3}


def mesh():
    devices = jax.devices()
    if len(devices) < 8:
        raise SystemExit(f"needs 8 devices, got {len(devices)} (XLA_FLAGS={os.environ.get('XLA_FLAGS')})")
    return Mesh(np.array(devices[:8]), ("data",))


def value_and_grad(name, gather, m):
    """jit(value_and_grad) of the shard-mapped mean w.r.t. a, b and the hyper-parameters."""
    fn = getattr(jaxloss, name)
    keys = LOSSES[name]

    def local(a, b, *h):
        return fn(a, b, **dict(zip(keys, h)), axis_name="data", gather=gather)

    sharded = jax.shard_map(local, mesh=m, in_specs=(P("data"), P("data")) + (P(),) * len(keys), out_specs=P())
    return jax.jit(jax.value_and_grad(sharded, argnums=tuple(range(2 + len(keys)))))


def args(name, n, d, m, concrete=False):
    keys = LOSSES[name]
    data = NamedSharding(m, P("data"))
    rep = NamedSharding(m, P())
    if not concrete:
        s = jax.ShapeDtypeStruct
        return (s((n, d), jnp.float32, sharding=data), s((n, d), jnp.float32, sharding=data),
                *(s((), jnp.float32, sharding=rep) for _ in keys))
    rng = np.random.default_rng(0)
    a = rng.normal(size=(n, d)).astype(np.float32)
    b = (a + rng.normal(size=(n, d))).astype(np.float32)
    hp = {"scale": 10.0, "bias": -10.0}
    return (jax.device_put(a, data), jax.device_put(b, data),
            *(jax.device_put(jnp.float32(hp[k]), rep) for k in keys))


def mib(x):
    return x / 2**20


def memory_table(n, d, m):
    print(f"\n1. per-device compiled temporary memory of value-and-grad, 8 devices, global B={n} D={d} float32 "
          f"(compiled, not run)\n")
    rows, results = [], {}
    for name in LOSSES:
        temps = {}
        for gather in ("all", "ring"):
            temps[gather] = _timing.temp_bytes(value_and_grad(name, gather, m), *args(name, n, d, m))
        ratio = temps["ring"] / temps["all"]
        results[name] = ratio
        rows.append((name, f"{mib(temps['all']):.1f}", f"{mib(temps['ring']):.1f}", f"{100 * ratio:.1f}%",
                     f"<= {100 * TARGETS[name]:.0f}%", "yes" if ratio <= TARGETS[name] else "NO"))
    blocks = (n // 8) ** 2 * 4
    _timing.table(("loss", "all MiB", "ring MiB", "ring / all", "target", "met"), rows)
    print(f"\n(one [B/8, B/8] float32 block of logits is {mib(blocks):.1f} MiB, one [B/8, D] chunk "
          f"{mib(n // 8 * d * 4):.1f} MiB)")
    return results


def time_table(n, d, reps, m):
    print(f"\n2. time of jitted value-and-grad, 8 devices, global B={n} D={d} float32, {reps} interleaved reps "
          f"(random order in each round), medians\n")
    rows = []
    for name in LOSSES:
        x = args(name, n, d, m, concrete=True)
        fns = {g: (lambda f=value_and_grad(name, g, m): f(*x)) for g in ("all", "ring")}
        copy = value_and_grad(name, "all", m)
        fns = _timing.with_control(fns, "all", copy=lambda f=copy: f(*x))
        med = _timing.medians_ms(_timing.interleaved(fns, reps))
        ratio = med["ring"] / med["all"]
        rows.append((name, f"{med['all']:.1f}", f"{med['ring']:.1f}", f"{ratio:.2f}x",
                     f"{_timing.noise_floor(med, 'all'):.2f}x", "yes" if ratio <= 1.2 else "NO"))
    _timing.table(("loss", "all ms", "ring ms", "ring / all", "noise (all / all)", "<= 1.2x"), rows)


# ---------------------------------------------------------------------------
# arcface: added with margin_softmax.py
# ---------------------------------------------------------------------------


def arcface_table(n=1024, d=512, c=10**6):
    """arcface_loss compiled temporary memory at N=1024, D=512, C=10**6 (one device,
    value and gradients of embeddings and centres) against the logits and their
    gradient, 2 N C 4 bytes (target <= 5%), and against materialising the
    cosine logits with optax's cross-entropy."""
    print(f"\n3. arcface_loss value-and-grad, N={n} D={d} C={c} float32 (compiled, not run)\n")
    sds = jax.ShapeDtypeStruct
    args = (sds((n, d), jnp.float32), sds((c, d), jnp.float32), sds((n,), jnp.int32))

    def materialised(e, w, y):
        cos = (e / jnp.linalg.norm(e, axis=1, keepdims=True)) @ (w / jnp.linalg.norm(w, axis=1, keepdims=True)).T
        theta = jnp.arccos(jnp.clip(jnp.take_along_axis(cos, y[:, None], 1), -1 + 1e-7, 1 - 1e-7))
        z = 64.0 * cos.at[jnp.arange(n), y].set(jnp.cos(theta[:, 0] + 0.5))
        return optax.softmax_cross_entropy_with_integer_labels(z, y).mean()

    logits_and_grad = 2 * n * c * 4
    rows = []
    for name, f in (("materialised cosine logits + optax", materialised),
                    ("arcface_loss", lambda e, w, y: jaxloss.arcface_loss(e, w, y))):
        m = _timing.memory(jax.jit(jax.value_and_grad(f, argnums=(0, 1))), *args)
        temp = m.temp_size_in_bytes
        rows.append((name, f"{temp / 2**20:.1f}", f"{100 * temp / logits_and_grad:.2f}%"))
    _timing.table(("", "temp MiB", "of 2·N·C·4 bytes"), rows)
    print(f"\n(2·N·C·4 bytes = {logits_and_grad / 2**30:.2f} GiB; a [C, D] float32 copy would be "
          f"{c * d * 4 / 2**30:.2f} GiB)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8192, help="global batch of the memory table")
    parser.add_argument("--dim", type=int, default=512, help="embedding size of the memory table")
    parser.add_argument("--time-batch", type=int, default=4096)
    parser.add_argument("--time-dim", type=int, default=64)
    parser.add_argument("--reps", type=int, default=7)
    opts = parser.parse_args()
    m = mesh()
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, {jax.device_count()} devices")
    memory_table(opts.batch, opts.dim, m)
    time_table(opts.time_batch, opts.time_dim, opts.reps, m)
    arcface_table()


if __name__ == "__main__":
    main()
