"""jaxloss vs optax: jitted value-and-gradient time of every registered loss optax also has.

Each loss is compared with the optax function its registry entry names
(``spec.example.compare``: the optax function called so that it computes the same
mean loss, or, for losses optax lacks, a plain formulation such as ``mae_loss``'s
``jnp.abs(p - t)``); the table says which. Both are
jitted as ``value_and_grad`` of the mean loss with respect to the prediction, on
the same arrays (4M float32 elements by default), and timed in interleaved rounds
(each round runs jaxloss, the comparison and the floor once, in a random order;
see ``_timing.interleaved``) so that machine noise hits all three alike. The table
gives medians, the ratio jaxloss/comparison (target: <= 1.0) and the ratio to a
bandwidth floor, ``jit(lambda a, b: a - b)`` on the same arrays.

    python benchmarks/bench_elementwise.py [--n 4194304] [--rounds 30] [--only mse_loss ...]
"""

from __future__ import annotations

import argparse

import _timing  # what every benchmark shares: interleaved timing, medians, tables (benchmarks/_timing.py)
import jax
import jax.numpy as jnp
import optax

import jaxloss


def comparison(spec):
    """``(label, mean-loss function)`` that ``spec`` is compared with (its registry
    entry's ``example.compare``: optax's function, or a plain formulation where
    optax has none), or None for a loss that is not elementwise or has none."""
    layout = spec.layout
    elementwise = layout.axis is None and layout.where == "inputs" and all(
        layout.role(n).shape == "shared" for n in spec.inputs)
    if spec.example.compare is None or not elementwise:
        return None
    compare = spec.example.compare
    return ("optax" if spec.example.optax else compare.__doc__ or compare.__name__), compare


def _inputs(name: str, n: int, key: jax.Array):
    k1, k2 = jax.random.split(key)
    pred = jax.random.normal(k1, (n,), jnp.float32) * 2.0
    if name in ("binary_cross_entropy_with_logits", "sigmoid_focal_loss", "hinge_loss", "sparsemax_loss",
                "perceptron_loss"):
        target = (jax.random.uniform(k2, (n,)) < 0.3).astype(jnp.float32)
    else:
        target = jax.random.normal(k2, (n,), jnp.float32) * 2.0
    return pred, target


def time_loss(spec, other, n: int, rounds: int, seed: int) -> dict[str, float]:
    """Median ms of jaxloss's, the comparison's and the floor's jitted calls, interleaved."""
    pred, target = _inputs(spec.name, n, jax.random.PRNGKey(0))
    ours = jax.jit(jax.value_and_grad(lambda p, t: spec.fn(p, t)))
    theirs = jax.jit(jax.value_and_grad(other))
    floor = jax.jit(lambda a, b: a - b)
    fns = {"ours": lambda: ours(pred, target), "theirs": lambda: theirs(pred, target),
           "floor": lambda: floor(pred, target)}
    return _timing.medians_ms(_timing.interleaved(fns, rounds, seed=seed))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4 * 1024 * 1024)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()

    print(f"jax {jax.__version__}, optax {optax.__version__} on {jax.default_backend()} "
          f"({jax.devices()[0].device_kind}); n = {args.n:,} float32, value_and_grad under jit, "
          f"{args.rounds} interleaved rounds (random order in each), medians\n")
    rows, worst = [], 0.0
    for i, spec in enumerate(sorted(jaxloss.REGISTRY.values(), key=lambda s: s.name)):
        other = comparison(spec)
        if other is None or (args.only and spec.name not in args.only):
            continue
        label, fn = other
        med = time_loss(spec, fn, args.n, args.rounds, seed=i)
        ratio = med["ours"] / med["theirs"]
        worst = max(worst, ratio)
        rows.append((spec.name, label, f"{med['ours']:.2f}", f"{med['theirs']:.2f}", f"{ratio:.2f}",
                     f"{med['floor']:.2f}", f"{med['ours'] / med['floor']:.2f}"))
    _timing.table(("loss", "compared with", "jaxloss ms", "other ms", "ratio", "floor ms", "/floor"), rows,
                  align="llrrrrr")
    print(f"\nworst jaxloss/other ratio: {worst:.2f} (target <= 1.00)")


if __name__ == "__main__":
    main()
