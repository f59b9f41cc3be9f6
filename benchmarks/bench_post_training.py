"""Streamed post-training heads against the materialised programs.

Two tables, from one run:

1. Compiled temporary memory of jitted value-and-gradient (w.r.t. every hidden
   state and weight) from ``.lower(...).compile().memory_analysis()`` -- compiled
   only, never run -- of

   * ``linear_sequence_logprobs`` at B=8, T=1024, D=1024, V=128000 (the sum of
     the per-sequence log-probs as the scalar) against ``log_softmax`` of the
     materialised ``[B, T, V]`` logits and a gather;
   * ``linear_distillation_loss`` (forward KL and JSD) at N=4096, D=1024,
     V=65536 against ``distillation_loss`` on both materialised ``[N, V]`` logits.

2. Measured time of the same programs at a size that runs on a CPU in seconds
   (``--time-scale`` divides tokens and vocabulary; default 16): repetitions
   interleaved in a random order each round (``_timing.interleaved``), medians
   and the ratio streamed / materialised.

Run:  python benchmarks/bench_post_training.py                 (a few minutes on 2 CPU cores)
      python benchmarks/bench_post_training.py --reps 3 --time-scale 32   (quick look)
"""

from __future__ import annotations

import argparse

import _timing
import jax
import jax.numpy as jnp
import numpy as np

import jaxloss


def seq_materialised(hidden, weight, labels):
    lp = jax.nn.log_softmax(jnp.einsum("btd,vd->btv", hidden, weight), axis=-1)
    return jnp.sum(jnp.take_along_axis(lp, labels[..., None], axis=-1))


def seq_streamed(hidden, weight, labels):
    return jnp.sum(jaxloss.linear_sequence_logprobs(hidden, weight, labels))


def distill_materialised(kind):
    def f(hs, ws, ht, wt):
        return jaxloss.distillation_loss(hs @ ws.T, ht @ wt.T, divergence=kind, temperature=2.0)
    return f


def distill_streamed(kind):
    def f(hs, ws, ht, wt):
        return jaxloss.linear_distillation_loss(hs, ws, ht, wt, divergence=kind, temperature=2.0)
    return f


def seq_args(b, t, d, v, concrete=False):
    if not concrete:
        return (jax.ShapeDtypeStruct((b, t, d), jnp.float32), jax.ShapeDtypeStruct((v, d), jnp.float32),
                jax.ShapeDtypeStruct((b, t), jnp.int32))
    rng = np.random.default_rng(0)
    return (jnp.asarray(rng.normal(size=(b, t, d)), jnp.float32),
            jnp.asarray(rng.normal(size=(v, d)) * d**-0.5, jnp.float32),
            jnp.asarray(rng.integers(0, v, size=(b, t)), jnp.int32))


def distill_args(n, d, v, concrete=False):
    if not concrete:
        return tuple(jax.ShapeDtypeStruct(s, jnp.float32) for s in ((n, d), (v, d), (n, d), (v, d)))
    rng = np.random.default_rng(0)
    return tuple(jnp.asarray(rng.normal(size=s) * (1.0 if s[0] == n else d**-0.5), jnp.float32)
                 for s in ((n, d), (v, d), (n, d), (v, d)))


def grad_all(f, n):
    return jax.jit(jax.value_and_grad(f, argnums=tuple(range(n))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--time-scale", type=int, default=16, help="divide tokens and vocabulary for the timing table")
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args()
    gib = 2.0**30

    programs = [
        ("linear_sequence_logprobs", "B=8 T=1024 D=1024 V=128000", seq_streamed, seq_materialised, 2,
         lambda s, c=False: seq_args(8, 1024 // s, 1024, 128000 // s, c)),
    ]
    for kind in ("forward", "jsd"):
        programs.append((f"linear_distillation_loss ({kind})", "N=4096 D=1024 V=65536", distill_streamed(kind),
                         distill_materialised(kind), 4,
                         lambda s, c=False: distill_args(4096 // s, 1024, 65536 // s, c)))

    if not args.skip_memory:
        rows = []
        for name, size, streamed, mat, n, mk in programs:
            a = mk(1)
            t_s = _timing.temp_bytes(grad_all(streamed, n), *a)
            t_m = _timing.temp_bytes(grad_all(mat, n), *a)
            rows.append((name, size, f"{t_s / gib:.3f}", f"{t_m / gib:.3f}", f"{100 * t_s / t_m:.1f}%"))
        print("\nCompiled temporary memory of value-and-gradient (GiB; compiled, not run)\n")
        _timing.table(("program", "size", "streamed", "materialised", "streamed / materialised"), rows)

    rows = []
    for name, _size, streamed, mat, n, mk in programs:
        a = mk(args.time_scale, True)
        fs, fm = grad_all(streamed, n), grad_all(mat, n)
        times = _timing.medians_ms(_timing.interleaved({"s": lambda: fs(*a), "m": lambda: fm(*a)}, args.reps))
        shape = " ".join(f"{tuple(x.shape)}" for x in a[:2])
        rows.append((name, shape, f"{times['s']:.1f}", f"{times['m']:.1f}", f"{times['s'] / times['m']:.2f}x"))
    print(f"\nTime of jitted value-and-gradient, tokens and vocabulary / {args.time_scale} "
          f"(ms, medians of {args.reps}; backend {jax.default_backend()})\n")
    _timing.table(("program", "hidden, weight", "streamed", "materialised", "ratio"), rows)


if __name__ == "__main__":
    main()
