"""Fused linear + cross-entropy against the materialised optax version.

Four tables, all from one run:

1. Compiled temporary memory of jitted value-and-gradient (w.r.t. hidden and
   weight) from ``.lower(...).compile().memory_analysis()`` -- compiled only,
   never run -- at N=4096, D=512, V=32768 (float32) for each route of
   ``linear_cross_entropy``: the default (gradients formed in the forward pass
   over token chunks), explicit token chunks, and vocabulary chunks.
2. The same at a Gemma-2-2B head (N=8192 tokens, D=2304, V=256000) in float32
   and bfloat16, and whether the compiled program holds a float32 copy of the
   whole weight.
3. Compile time (lower + compile) of value-and-gradient at 4, 16 and 64
   vocabulary chunks: one loop body, so it does not grow with the number of
   chunks.
4. Measured time of jitted value-and-gradient at N=4096, D=512, V=32768
   (float32): repetitions of the versions interleaved, each round in a random
   order (see ``_timing.interleaved``), medians and their ratio to optax.

Run:  python benchmarks/bench_large_vocab.py            (several minutes on 2 CPU cores)
      python benchmarks/bench_large_vocab.py --reps 3 --tokens 1024 --skip-gemma   (quick look)
"""

from __future__ import annotations

import argparse
import time

import _timing  # what every benchmark shares: interleaved timing, medians, memory, tables (benchmarks/_timing.py)
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxloss


def materialised(hidden, weight, labels):
    logits = hidden @ weight.T
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def fused(**options):
    def f(hidden, weight, labels):
        return jaxloss.linear_cross_entropy(hidden, weight, labels, **options)

    return f


ROUTES = {
    "linear_cross_entropy (default route)": {},
    "  token_chunk_size=128": {"token_chunk_size": 128},
    "  token_chunk_size=512": {"token_chunk_size": 512},
    "  vocabulary chunks, chunk_size=8192": {"chunk_size": 8192},
    "  vocabulary chunks, chunk_size=2048": {"chunk_size": 2048},
}


def value_and_grad(f):
    return jax.jit(jax.value_and_grad(f, argnums=(0, 1)))


def shapes(n, d, v, dtype=jnp.float32):
    s = jax.ShapeDtypeStruct
    return s((n, d), dtype), s((v, d), dtype), s((n,), jnp.int32)


def gib(x):
    return x / 2**30


def memory_rows(n, d, v, dtype, versions):
    args = shapes(n, d, v, dtype)
    rows, base = [], None
    for name, f in versions:
        compiled = value_and_grad(f).lower(*args).compile()
        m = compiled.memory_analysis()
        temp = m.temp_size_in_bytes
        base = temp if base is None else base
        copy = f"f32[{v},{d}]" in compiled.as_text() and dtype != jnp.float32
        rows.append((name, f"{gib(temp):.3f}", f"{100 * temp / base:.1f}%", f"{gib(m.output_size_in_bytes):.3f}",
                     "yes" if copy else "no"))
    return rows


HEAD = ("", "temp GiB", "of optax", "output GiB", "f32 copy of a low-precision weight")


def memory_table(n, d, v):
    print(f"\n1. compiled temporary memory of value-and-grad, N={n} D={d} V={v} float32 (compiled, not run)\n")
    versions = [("optax, materialised logits", materialised)] + [(k, fused(**o)) for k, o in ROUTES.items()]
    _timing.table(HEAD, memory_rows(n, d, v, jnp.float32, versions))
    print(f"\ndefault token chunk here: {jaxloss._streaming.token_chunk_size(n, v)}")


def gemma_table(n, d, v):
    print(f"\n2. compiled temporary memory of value-and-grad at the Gemma-2-2B head, N={n} D={d} V={v}\n")
    rows = []
    for dtype in (jnp.float32, jnp.bfloat16):
        name = jnp.dtype(dtype).name
        rows += [(f"{name}: {k}", *r[1:]) for k, r in zip(
            ("optax, materialised logits", "linear_cross_entropy"),
            memory_rows(n, d, v, dtype, [("", materialised), ("", fused())]))]
    _timing.table(HEAD, rows)
    print("\n(a bf16 weight: XLA's CPU backend converts it to float32 as a whole before any dynamically"
          "\n sliced loop -- its float normalisation does not slice bf16 -- so on CPU the copy is in both"
          "\n programs; TPU and GPU slice bf16 natively)")


def time_table(n, d, v, reps):
    print(f"\n4. time of jitted value-and-grad, N={n} D={d} V={v} float32, {reps} interleaved reps "
          f"(random order in each round), medians\n")
    rng = np.random.default_rng(0)
    h = jnp.asarray(rng.normal(size=(n, d)).astype(np.float32))
    w = jnp.asarray((rng.normal(size=(v, d)) / np.sqrt(d)).astype(np.float32))
    y = jnp.asarray(rng.integers(0, v, size=(n,)).astype(np.int32))
    fns = {"optax, materialised": value_and_grad(materialised)}
    fns.update({k.strip(): value_and_grad(fused(**o)) for k, o in ROUTES.items()
                if "512" not in k and "2048" not in k})
    outs = {k: jax.block_until_ready(f(h, w, y)) for k, f in fns.items()}  # compile + warm up
    a_val, a_grads = outs["optax, materialised"]
    calls = {k: (lambda f=f: f(h, w, y)) for k, f in fns.items()}
    med = _timing.medians_ms(_timing.interleaved(calls, reps, seed=0, warmup=0))
    base = med["optax, materialised"]
    _timing.table(("", "median ms", "x optax"), [(k, f"{m:.1f}", f"{m / base:.2f}") for k, m in med.items()])
    for k, (val, grads) in outs.items():
        err = max(float(jnp.max(jnp.abs(x - y_))) for x, y_ in zip(a_grads, grads))
        print(f"{k}: |value difference| {abs(float(a_val) - float(val)):.2e}, max |grad difference| {err:.2e}")


def compile_table(n, d, v):
    print(f"\n3. lower + compile time of value-and-grad, vocabulary chunks, N={n} D={d} V={v}\n")
    args = shapes(n, d, v)
    rows = []
    for chunks in (4, 16, 64):
        c = v // chunks
        f = value_and_grad(fused(chunk_size=c))
        t0 = time.perf_counter()
        f.lower(*args).compile()
        rows.append((chunks, c, f"{(time.perf_counter() - t0) * 1e3:.1f}"))
    _timing.table(("chunks", "chunk_size", "ms"), rows, align="rrr")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mem-tokens", type=int, default=8192)
    p.add_argument("--mem-dim", type=int, default=2304)
    p.add_argument("--mem-vocab", type=int, default=256000)
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--vocab", type=int, default=32768)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--skip-gemma", action="store_true")
    a = p.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.device_count()} device(s))")
    memory_table(a.tokens, a.dim, a.vocab)
    if not a.skip_gemma:
        gemma_table(a.mem_tokens, a.mem_dim, a.mem_vocab)
    compile_table(a.tokens, a.dim, a.vocab)
    time_table(a.tokens, a.dim, a.vocab, a.reps)


if __name__ == "__main__":
    main()
