"""jaxloss vs optax for the registered losses that reduce a class or feature axis.

Each loss whose registry entry names an optax equivalent (``spec.example.optax``)
and whose inputs ``REDUCED_CALLS`` knows how to build is timed against that optax
function computing the same mean loss: ``value_and_grad`` of the mean with respect
to the first input, jitted, on ``[N, C]`` float32 inputs (N = 4096, C = 1024 by
default: 4M elements), in interleaved rounds (``_timing.interleaved``: each round
runs jaxloss and optax once, in a random order). Integer-label losses get labels
``[N]``; optax's forms that take one-hot targets (``poly_loss_cross_entropy``) get
``jax.nn.one_hot`` of them inside their jitted function, as an optax user writes it.
The table gives medians and the ratio jaxloss/optax (target: <= 1.0).

    python benchmarks/bench_reduced.py [--n 4096] [--c 1024] [--rounds 30] [--only NAME ...]
"""

from __future__ import annotations

import argparse

import _timing  # what every benchmark shares: interleaved timing, medians, tables (benchmarks/_timing.py)
import jax
import jax.numpy as jnp
import optax

import jaxloss


def _floats(key, n, c):
    k1, k2 = jax.random.split(key)
    return jax.random.normal(k1, (n, c), jnp.float32) * 2.0, jax.random.normal(k2, (n, c), jnp.float32)


def _labels(key, n, c):
    k1, k2 = jax.random.split(key)
    return jax.random.normal(k1, (n, c), jnp.float32) * 2.0, jax.random.randint(k2, (n,), 0, c)


def _log_measures(key, n, c):
    k1, k2 = jax.random.split(key)
    return jax.random.normal(k1, (n, c), jnp.float32) * 0.5, jax.random.uniform(k2, (n, c), jnp.float32, 0.05, 2.0)


def _distributions(key, n, c):
    k1, k2 = jax.random.split(key)
    return (jax.nn.log_softmax(jax.random.normal(k1, (n, c), jnp.float32)),
            jax.nn.softmax(jax.random.normal(k2, (n, c), jnp.float32)))


# How each loss's inputs are drawn (the compared function is the registry entry's example.compare).
MAKERS = {
    "cosine_distance_loss": _floats, "generalized_kl_divergence": _log_measures, "kl_divergence": _distributions,
    "cross_entropy": _distributions, "poly1_cross_entropy": _labels, "multiclass_sparsemax_loss": _labels,
    "multiclass_perceptron_loss": _labels, "multiclass_hinge_loss": _labels,
}


def time_loss(spec, n, c, rounds, seed):
    make, theirs_fn = MAKERS[spec.name], spec.example.compare
    a, b = make(jax.random.PRNGKey(seed), n, c)
    ours = jax.jit(jax.value_and_grad(lambda x, y: spec.fn(x, y)))
    theirs = jax.jit(jax.value_and_grad(theirs_fn))
    (v_ours, _), (v_theirs, _) = ours(a, b), theirs(a, b)
    fns = {"ours": lambda: ours(a, b), "theirs": lambda: theirs(a, b)}
    med = _timing.medians_ms(_timing.interleaved(fns, rounds, seed=seed))
    return med, abs(float(v_ours) - float(v_theirs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--c", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    print(f"jax {jax.__version__}, optax {optax.__version__} on {jax.default_backend()} "
          f"({jax.devices()[0].device_kind}); [{args.n}, {args.c}] float32, value_and_grad under jit, "
          f"{args.rounds} interleaved rounds, medians\n")
    rows, worst = [], 0.0
    for i, spec in enumerate(sorted(jaxloss.REGISTRY.values(), key=lambda s: s.name)):
        if spec.name not in MAKERS or spec.example.compare is None:
            continue
        if args.only and spec.name not in args.only:
            continue
        med, diff = time_loss(spec, args.n, args.c, args.rounds, seed=i)
        ratio = med["ours"] / med["theirs"]
        worst = max(worst, ratio)
        rows.append((spec.name, f"optax.losses.{spec.example.optax}", f"{med['ours']:.2f}", f"{med['theirs']:.2f}",
                     f"{ratio:.2f}", f"{diff:.1e}"))
    _timing.table(("loss", "compared with", "jaxloss ms", "optax ms", "ratio", "|value diff|"), rows,
                  align="llrrrr")
    print(f"\nworst jaxloss/optax ratio: {worst:.2f} (target <= 1.00)")


if __name__ == "__main__":
    main()
