"""batch_triplet_loss: value-and-gradient time and compiled scratch memory per mining strategy.

Run:  python benchmarks/bench_triplet.py            (B=1024, D=128; a few minutes on 2 CPU cores)
      python benchmarks/bench_triplet.py --batch 256 --dim 64 --reps 5

What is measured, side by side in one process (repetitions interleaved, each
round in a random order -- see ``_timing.interleaved`` -- medians):

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

import _timing  # what every benchmark shares: interleaved timing, medians, memory, tables (benchmarks/_timing.py)
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


def value_and_grad(fn):
    return jax.jit(jax.value_and_grad(fn))


def batch_triplet(mining):
    return lambda e, y: jaxloss.batch_triplet_loss(e, y, mining=mining)


def naive(mining):
    return lambda e, y: naive_loss(e, y, mining)


def time_ms(jitted: dict, args: tuple, reps: int, seed: int) -> dict:
    """Median ms of each jitted function called on ``args``, interleaved."""
    fns = {name: (lambda f=f: f(*args)) for name, f in jitted.items()}
    return _timing.medians_ms(_timing.interleaved(fns, reps, seed=seed))


def mib(n: int) -> str:
    return f"{n / 2**20:.1f}"


def mining_table(x, labels, reps) -> dict:
    """Every mining strategy and the floor at the full batch; returns their temp bytes."""
    B = x.shape[0]
    fns = {m: value_and_grad(batch_triplet(m)) for m in MINING}
    fns["floor"] = value_and_grad(floor_loss)
    temps = {name: _timing.temp_bytes(f, x, labels) for name, f in fns.items()}
    med = time_ms(fns, (x, labels), reps, seed=0)
    _timing.table(("", "ms", "x floor", "temp MiB", "temp / (4 B^2)"), [
        (name, f"{med[name]:.2f}", f"{med[name] / med['floor']:.2f}", mib(temps[name]),
         f"{temps[name] / (4 * B * B):.1f}") for name in fns
    ])
    return temps


def naive_table(nb, D, reps) -> None:
    """jaxloss against the naive [B, B, B] formulation at the small batch ``nb``: time, memory, agreement."""
    xs, ls = pk_batch(nb, D)
    print(f"\njaxloss against the naive [B, B, B] formulation, B={nb}, D={D} (value and gradient)\n")
    rows = []
    for i, m in enumerate(("batch_all", "semi_hard")):
        fns = {"ours": value_and_grad(batch_triplet(m)), "naive": value_and_grad(naive(m))}
        med = time_ms(fns, (xs, ls), reps, seed=1 + i)
        (v1, g1), (v2, g2) = fns["ours"](xs, ls), fns["naive"](xs, ls)
        diff = max(float(jnp.abs(v1 - v2)), float(jnp.max(jnp.abs(g1 - g2))))
        rows.append((m, f"{med['ours']:.2f}", f"{med['naive']:.2f}", f"{med['naive'] / med['ours']:.2f}",
                     mib(_timing.temp_bytes(fns["ours"], xs, ls)), mib(_timing.temp_bytes(fns["naive"], xs, ls)),
                     f"{diff:.2e}"))
    _timing.table(("", "jaxloss ms", "naive ms", "naive/jaxloss", "jaxloss MiB", "naive MiB", "max |diff|"), rows)


def naive_memory_table(x, labels, temps) -> None:
    """Scratch memory of the naive formulation compiled (not run) at the full batch."""
    B, D = x.shape
    print(f"\nscratch memory of the naive formulation compiled (not run) at B={B}, D={D}:\n")
    rows = []
    for m in ("batch_all", "semi_hard"):
        t_naive = _timing.temp_bytes(value_and_grad(naive(m)), x, labels)
        rows.append((m, mib(t_naive), mib(temps[m]), f"{t_naive / temps[m]:.0f}x"))
    _timing.table(("", "naive MiB", "jaxloss MiB", "ratio"), rows)


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
          f"{args.reps} interleaved repetitions (random order in each round), medians\n")

    x, labels = pk_batch(B, D)
    temps = mining_table(x, labels, args.reps)
    nb = min(args.naive_batch, B)
    naive_table(nb, D, args.reps)
    if not args.skip_naive_compile and nb < B:
        naive_memory_table(x, labels, temps)


if __name__ == "__main__":
    main()
