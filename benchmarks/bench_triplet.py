"""batch_triplet_loss: value-and-gradient time and compiled scratch memory per mining strategy.

Run:  python benchmarks/bench_triplet.py            (B=1024, D=128; a few minutes on 2 CPU cores)
      python benchmarks/bench_triplet.py --batch 256 --dim 64 --reps 5

What is measured, side by side in one process (repetitions interleaved, medians):

* ``jaxloss.batch_triplet_loss`` for each ``mining``, jitted ``value_and_grad`` with
  respect to the embeddings, on a P x K batch (P = B / K classes, K = 8 per class);
* a *floor*: ``value_and_grad`` of the sum of the [B, B] Euclidean distance matrix
  (the same Gram-matrix distances every strategy needs), so ``x floor`` says what
  the mining itself costs;
* a *naive* formulation that builds the [B, B, B] triplet tensor with masks (the
  usual way to write batch-all / semi-hard mining), timed at a smaller batch
  (``--naive-batch``) beside jaxloss at that batch, and compiled -- not run -- at
  the full batch to read off its scratch memory.

Scratch memory is XLA's ``memory_analysis().temp_size_in_bytes`` of the compiled
value-and-gradient program (inputs and outputs excluded).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxloss

MINING = ("batch_all", "batch_hard", "semi_hard")


def pk_batch(B: int, D: int, k: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(max(B // k, 1)), k)[:B]).astype(np.int32)
    x = rng.normal(size=(B, D)).astype(np.float32) / np.sqrt(D)
    return jnp.asarray(x), jnp.asarray(labels)


def _dists(x):
    sq = jnp.sum(x * x, -1)
    d2 = jnp.maximum(sq[:, None] + sq[None] - 2.0 * jnp.matmul(x, x.T, precision=jax.lax.Precision.HIGHEST), 0.0)
    eye = jnp.eye(x.shape[0], dtype=bool)
    return jnp.where(eye, 0.0, jnp.sqrt(jnp.where(eye, 1.0, d2)))


def floor_loss(x, labels):
    return jnp.sum(_dists(x))


def naive_loss(x, labels, mining, margin=1.0):
    """The [B, B, B] formulation (batch_all: mean over active triplets; semi_hard:
    closest negative farther than the positive, else the farthest negative)."""
    d = _dists(x)
    eye = jnp.eye(x.shape[0], dtype=bool)
    same = labels[:, None] == labels[None]
    pos, neg = same & ~eye, ~same
    if mining == "batch_all":
        valid = pos[:, :, None] & neg[:, None, :]
        t = jnp.where(valid, jax.nn.relu(d[:, :, None] - d[:, None, :] + margin), 0.0)
        return jnp.sum(t) / jnp.maximum(jnp.sum(t > 0), 1)
    farther = neg[:, None, :] & (d[:, None, :] > d[:, :, None])
    outside = jnp.min(jnp.where(farther, d[:, None, :], jnp.inf), -1)
    inside = jnp.max(jnp.where(neg, d, -jnp.inf), -1)[:, None]
    chosen = jnp.where(jnp.any(farther, -1), outside, inside)
    valid = pos & jnp.any(neg, 1)[:, None]
    t = jnp.where(valid, jax.nn.relu(d - jnp.where(valid, chosen, 0.0) + margin), 0.0)
    return jnp.sum(t) / jnp.maximum(jnp.sum(valid), 1)


def compile_vg(fn, x, labels):
    jitted = jax.jit(jax.value_and_grad(fn))
    compiled = jitted.lower(x, labels).compile()
    return compiled, compiled.memory_analysis().temp_size_in_bytes


def time_interleaved(fns: dict, args: tuple, reps: int) -> dict:
    for f in fns.values():  # warm up
        jax.block_until_ready(f(*args))
    times = {name: [] for name in fns}
    for _ in range(reps):
        for name, f in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f(*args))
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def mib(n: int) -> str:
    return f"{n / 2**20:9.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--naive-batch", type=int, default=256)
    ap.add_argument("--skip-naive-compile", action="store_true",
                    help="do not compile the naive [B, B, B] program at the full batch")
    args = ap.parse_args()
    B, D = args.batch, args.dim
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, device {jax.devices()[0].device_kind}")
    print(f"batch_triplet_loss value_and_grad, B={B}, D={D}, P x K batch with K=8, float32, "
          f"{args.reps} interleaved repetitions, medians\n")

    x, labels = pk_batch(B, D)
    fns, temps = {}, {}
    for m in MINING:
        fns[m], temps[m] = compile_vg(lambda e, y, m=m: jaxloss.batch_triplet_loss(e, y, mining=m), x, labels)
    fns["floor"], temps["floor"] = compile_vg(floor_loss, x, labels)
    med = time_interleaved(fns, (x, labels), args.reps)
    print(f"{'':12s} {'ms':>9s} {'x floor':>8s} {'temp MiB':>9s} {'temp / (4 B^2)':>15s}")
    for name in (*MINING, "floor"):
        print(f"{name:12s} {1e3 * med[name]:9.2f} {med[name] / med['floor']:8.2f} {mib(temps[name])} "
              f"{temps[name] / (4 * B * B):15.1f}")

    nb = min(args.naive_batch, B)
    xs, ls = pk_batch(nb, D)
    print(f"\njaxloss against the naive [B, B, B] formulation, B={nb}, D={D} (value and gradient)")
    print(f"{'':12s} {'jaxloss ms':>11s} {'naive ms':>9s} {'naive/jaxloss':>14s} "
          f"{'jaxloss MiB':>12s} {'naive MiB':>10s} {'max |diff|':>11s}")
    for m in ("batch_all", "semi_hard"):
        ours, t_ours = compile_vg(lambda e, y, m=m: jaxloss.batch_triplet_loss(e, y, mining=m), xs, ls)
        naive, t_naive = compile_vg(lambda e, y, m=m: naive_loss(e, y, m), xs, ls)
        med = time_interleaved({"ours": ours, "naive": naive}, (xs, ls), args.reps)
        (v1, g1), (v2, g2) = ours(xs, ls), naive(xs, ls)
        diff = max(float(jnp.abs(v1 - v2)), float(jnp.max(jnp.abs(g1 - g2))))
        print(f"{m:12s} {1e3 * med['ours']:11.2f} {1e3 * med['naive']:9.2f} {med['naive'] / med['ours']:14.2f} "
              f"{mib(t_ours):>12s} {mib(t_naive):>10s} {diff:11.2e}")

    if not args.skip_naive_compile and nb < B:
        print(f"\nscratch memory of the naive formulation compiled (not run) at B={B}, D={D}:")
        for m in ("batch_all", "semi_hard"):
            _, t_naive = compile_vg(lambda e, y, m=m: naive_loss(e, y, m), x, labels)
            print(f"{m:12s} naive {mib(t_naive)} MiB   jaxloss {mib(temps[m])} MiB   "
                  f"ratio {t_naive / temps[m]:.0f}x")


if __name__ == "__main__":
    main()
