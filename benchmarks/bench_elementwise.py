"""jaxloss vs optax: jitted value-and-gradient time of every registered loss optax also has.

For each loss whose registry entry names an optax equivalent, both are jitted as
``value_and_grad`` of the mean loss with respect to the prediction, on the same
arrays (4M float32 elements by default), and timed in interleaved rounds (each
round runs jaxloss, optax and the floor once, in a random order) so that machine
noise hits all three alike. The table gives medians, the ratio jaxloss/optax (target:
<= 1.0) and the ratio to a bandwidth floor, ``jit(lambda a, b: a - b)`` on the
same arrays.

    python benchmarks/bench_elementwise.py [--n 4194304] [--rounds 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxloss
from jaxloss._core import REGISTRY

# How each optax equivalent is called so that it computes the same mean loss.
OPTAX_CALLS = {
    "squared_error": lambda p, t: jnp.mean(optax.losses.squared_error(p, t)),
    "l1": lambda p, t: jnp.mean(jnp.abs(p - t)),  # optax has no L1 loss: the plain jnp form
    "huber_loss": lambda p, t: jnp.mean(optax.losses.huber_loss(p, t, delta=1.0)),
    "log_cosh": lambda p, t: jnp.mean(optax.losses.log_cosh(p, t)),
    "sigmoid_binary_cross_entropy": lambda p, t: jnp.mean(optax.losses.sigmoid_binary_cross_entropy(p, t)),
    "sigmoid_focal_loss": lambda p, t: jnp.mean(optax.losses.sigmoid_focal_loss(p, t, alpha=0.25, gamma=2.0)),
    "hinge_loss": lambda p, t: jnp.mean(optax.losses.hinge_loss(p, 2.0 * t - 1.0)),
}


def _inputs(name: str, n: int, key: jax.Array):
    k1, k2 = jax.random.split(key)
    pred = jax.random.normal(k1, (n,), jnp.float32) * 2.0
    if name in ("binary_cross_entropy_with_logits", "sigmoid_focal_loss", "hinge_loss"):
        target = (jax.random.uniform(k2, (n,)) < 0.3).astype(jnp.float32)
    else:
        target = jax.random.normal(k2, (n,), jnp.float32) * 2.0
    return pred, target


def _timer(fn, *args):
    def run():
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        return time.perf_counter() - start

    run()  # compile
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4 * 1024 * 1024)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()

    print(f"jax {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind}); "
          f"n = {args.n:,} float32, value_and_grad under jit, {args.rounds} interleaved rounds, medians")
    print(f"{'loss':36s} {'jaxloss ms':>10s} {'optax ms':>10s} {'ratio':>6s} {'floor ms':>9s} {'/floor':>7s}")
    worst = 0.0
    order_rng = np.random.default_rng(0)
    for spec in sorted(REGISTRY.values(), key=lambda s: s.name):
        if spec.optax is None or spec.optax not in OPTAX_CALLS:
            continue
        if args.only and spec.name not in args.only:
            continue
        pred, target = _inputs(spec.name, args.n, jax.random.PRNGKey(0))
        ours = _timer(jax.jit(jax.value_and_grad(lambda p, t, f=spec.fn: f(p, t))), pred, target)
        theirs = _timer(jax.jit(jax.value_and_grad(OPTAX_CALLS[spec.optax])), pred, target)
        floor = _timer(jax.jit(lambda a, b: a - b), pred, target)
        runners = {"ours": ours, "theirs": theirs, "floor": floor}
        times = {k: [] for k in runners}
        for _ in range(args.rounds):
            for k in order_rng.permutation(list(runners)):  # no position in a round is favoured
                times[k].append(runners[k]())
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        ratio = med["ours"] / med["theirs"]
        worst = max(worst, ratio)
        print(f"{spec.name:36s} {med['ours']:10.2f} {med['theirs']:10.2f} {ratio:6.2f} "
              f"{med['floor']:9.2f} {med['ours'] / med['floor']:7.2f}")
    print(f"worst jaxloss/optax ratio: {worst:.2f} (target <= 1.00)")


if __name__ == "__main__":
    main()
