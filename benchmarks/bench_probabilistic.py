"""crps_ensemble_loss (sorting, O(M log M)) against the O(M^2) pairwise form, and
ranking_softmax_loss against optax's ranking_softmax_loss.

Run:  python benchmarks/bench_probabilistic.py                 (N=64 forecasts of M=1000 members)
      python benchmarks/bench_probabilistic.py --n 256 --members 100 1000 4000 --rounds 10

What is measured, side by side in one process (rounds interleaved, each in a random
order -- see ``_timing.interleaved`` -- medians), jitted ``value_and_grad`` with
respect to the ensemble of the mean fair CRPS over ``N`` forecasts:

* ``jaxloss.crps_ensemble_loss(ensemble, target)`` (members sorted once per forecast);
* the pairwise form written the usual way,
  ``mean|x - y| - sum_ij |x_i - x_j| / (2 M (M - 1))`` on an ``[N, M, M]`` array;

with their ratio (target: <= 0.1 at M = 1000) and XLA's compiled scratch memory of
each. The last table times ``ranking_softmax_loss`` against optax's function of the
same name (the one ranking loss optax has), on ``[B, L]`` lists with padding.
"""

from __future__ import annotations

import argparse

import _timing  # what every benchmark shares: interleaved timing, medians, memory, tables (benchmarks/_timing.py)
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxloss


def pairwise_crps(ensemble, target):
    """The O(M^2) fair CRPS: every member pair formed explicitly."""
    m = ensemble.shape[-1]
    first = jnp.mean(jnp.abs(ensemble - target[:, None]), axis=-1)
    pairs = jnp.sum(jnp.abs(ensemble[:, :, None] - ensemble[:, None, :]), axis=(-2, -1))
    return jnp.mean(first - pairs / (2 * m * (m - 1)))


def crps_rows(n: int, members: list[int], rounds: int) -> list[tuple]:
    rows = []
    for i, m in enumerate(members):
        rng = np.random.default_rng(i)
        ensemble = jnp.asarray(rng.normal(size=(n, m)), jnp.float32)
        target = jnp.asarray(rng.normal(size=(n,)), jnp.float32)
        ours = jax.jit(jax.value_and_grad(lambda x, y: jaxloss.crps_ensemble_loss(x, y)))
        theirs = jax.jit(jax.value_and_grad(pairwise_crps))
        a, b = ours(ensemble, target), theirs(ensemble, target)
        np.testing.assert_allclose(float(a[0]), float(b[0]), rtol=1e-4)
        np.testing.assert_allclose(np.asarray(a[1]), np.asarray(b[1]), rtol=1e-3, atol=1e-6)
        med = _timing.medians_ms(_timing.interleaved(
            {"ours": lambda: ours(ensemble, target), "pairwise": lambda: theirs(ensemble, target)}, rounds, seed=i))
        mem_ours = _timing.temp_bytes(ours, ensemble, target)
        mem_pair = _timing.temp_bytes(theirs, ensemble, target)
        rows.append((m, f"{med['ours']:.3f}", f"{med['pairwise']:.3f}", f"{med['ours'] / med['pairwise']:.4f}",
                     f"{mem_ours / 2**20:.2f}", f"{mem_pair / 2**20:.1f}"))
    return rows


def ranking_rows(batch: int, length: int, rounds: int) -> list[tuple]:
    rng = np.random.default_rng(7)
    scores = jnp.asarray(rng.normal(size=(batch, length)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 3, size=(batch, length)), jnp.float32)
    where = jnp.asarray(rng.uniform(size=(batch, length)) < 0.9)
    ours = jax.jit(jax.value_and_grad(lambda s, y, m: jaxloss.ranking_softmax_loss(s, y, where=m)))
    theirs = jax.jit(jax.value_and_grad(lambda s, y, m: optax.losses.ranking_softmax_loss(s, y, where=m)))
    np.testing.assert_allclose(float(ours(scores, labels, where)[0]), float(theirs(scores, labels, where)[0]),
                               rtol=1e-5)
    med = _timing.medians_ms(_timing.interleaved(
        {"ours": lambda: ours(scores, labels, where), "optax": lambda: theirs(scores, labels, where)}, rounds))
    return [(f"{batch} x {length}", f"{med['ours']:.3f}", f"{med['optax']:.3f}", f"{med['ours'] / med['optax']:.2f}")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="forecasts in the batch")
    ap.add_argument("--members", type=int, nargs="*", default=[100, 1000])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--lists", type=int, nargs=2, default=[4096, 256], metavar=("B", "L"))
    args = ap.parse_args()

    print(f"jax {jax.__version__}, optax {optax.__version__} on {jax.default_backend()} "
          f"({jax.devices()[0].device_kind}); float32, value_and_grad under jit, {args.rounds} interleaved rounds, "
          f"medians\n")
    print(f"crps_ensemble_loss (fair) on {args.n} forecasts:\n")
    rows = crps_rows(args.n, args.members, args.rounds)
    _timing.table(("M", "jaxloss ms", "pairwise ms", "ratio", "jaxloss scratch MiB", "pairwise scratch MiB"),
                  rows, align="rrrrrr")
    at = [r for r in rows if r[0] == 1000]
    if at:
        print(f"\nratio at M = 1000: {at[0][3]} (target <= 0.1)")
    print("\nranking_softmax_loss against optax.losses.ranking_softmax_loss (with a padding mask):\n")
    _timing.table(("lists B x L", "jaxloss ms", "optax ms", "ratio"), ranking_rows(*args.lists, args.rounds),
                  align="rrrr")


if __name__ == "__main__":
    main()
