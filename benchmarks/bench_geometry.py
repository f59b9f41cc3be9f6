"""chamfer_distance: the blocked neighbour search against the dense ``[B, N, M]`` programs.

Two tables, from one run:

1. Compiled temporary memory of jitted value-and-gradient (w.r.t. both clouds) from
   ``.lower(...).compile().memory_analysis()`` -- compiled only, never run -- at
   B=8, N=M=16384, D=3, float32, of

   * ``chamfer_distance`` with its default blocks (``chunk_size=None``: 64 rows here);
   * ``chamfer_distance(chunk_size=N)``: the same code in one block, ``[B, N, M]``;
   * a plain dense Chamfer in ``jax.numpy`` (``jnp.min`` over the ``[B, N, M]``
     squared distances, differentiated through the minimum), as one writes it by hand.

2. Measured time of the same programs at a size that runs on a CPU in seconds
   (``--n``, default 2048 points per cloud): repetitions interleaved in a random order
   each round (``_timing.interleaved``), medians and the ratios to the plain dense one.

Run:  python benchmarks/bench_geometry.py               (about a minute on 2 CPU cores)
      python benchmarks/bench_geometry.py --reps 3 --n 1024   (quick look)
"""

from __future__ import annotations

import argparse

import _timing
import jax
import jax.numpy as jnp
import numpy as np

import jaxloss


def plain_dense(a, b):
    d = jnp.sum((a[:, :, None, :] - b[:, None, :, :]) ** 2, axis=-1)
    return jnp.mean(jnp.mean(jnp.min(d, axis=2), axis=1) + jnp.mean(jnp.min(d, axis=1), axis=1))


def blocked(chunk_size=None):
    return lambda a, b: jaxloss.chamfer_distance(a, b, chunk_size=chunk_size)


def grad_both(f):
    return jax.jit(jax.value_and_grad(f, argnums=(0, 1)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--n", type=int, default=2048, help="points per cloud for the timing table")
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args()
    mib = 2.0**20
    b, n, m = 8, 16384, 16384
    programs = {
        "chamfer_distance (default blocks)": blocked(),
        "chamfer_distance (chunk_size=N, one block)": blocked(n),
        "plain dense jnp (min over [B, N, M])": plain_dense,
    }

    if not args.skip_memory:
        spec = (jax.ShapeDtypeStruct((b, n, 3), jnp.float32), jax.ShapeDtypeStruct((b, m, 3), jnp.float32))
        temp = {name: _timing.temp_bytes(grad_both(f), *spec) for name, f in programs.items()}
        dense = temp["chamfer_distance (chunk_size=N, one block)"]
        plain = temp["plain dense jnp (min over [B, N, M])"]
        print(f"\nCompiled temporary memory of value-and-gradient, B={b} N={n} M={m} D=3 float32 "
              f"(MiB; compiled, not run; default block {jaxloss.geometry.default_chamfer_chunk(n, m)} rows)\n")
        rows = [(name, f"{t / mib:.1f}", f"{100 * t / dense:.2f}%", f"{100 * t / plain:.2f}%")
                for name, t in temp.items()]
        _timing.table(("program", "temp MiB", "/ one block", "/ plain dense"), rows)

    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.normal(size=(b, args.n, 3)), jnp.float32)
    c = jnp.asarray(rng.normal(size=(b, args.n, 3)), jnp.float32)
    fns = {name: grad_both(f) for name, f in programs.items()}
    fns["chamfer_distance (chunk_size=64)"] = grad_both(blocked(64))
    times = _timing.medians_ms(_timing.interleaved({k: (lambda f=f: f(a, c)) for k, f in fns.items()}, args.reps))
    base = times["plain dense jnp (min over [B, N, M])"]
    print(f"\nTime of jitted value-and-gradient, B={b} N=M={args.n} D=3 float32 "
          f"(ms, medians of {args.reps}; backend {jax.default_backend()})\n")
    _timing.table(("program", "ms", "/ plain dense"), [(k, f"{t:.1f}", f"{t / base:.2f}x") for k, t in times.items()])


if __name__ == "__main__":
    main()
