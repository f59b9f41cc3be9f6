"""Per-token log-probabilities and entropies of a linear head: streamed against materialised.

One table from one run, memory and time side by side, for

* ``linear_token_logprobs(..., temperature=0.7, return_entropy=True)``, the scalar
  ``sum(logp) + 0.01 * sum(entropy)`` (both outputs get a cotangent);
* ``linear_token_logprobs`` without the entropy, ``sum(logp)``;
* ``linear_sequence_logprobs(..., temperature=0.7)``, ``sum`` of the sequences;

each against the materialised program a user writes: ``logits = h @ W.T``,
``log_softmax(logits / T)``, a gather and ``-sum(p * log p)``.

* Memory: compiled temporary memory of jitted value-and-gradient (w.r.t. hidden
  and weight) from ``.lower(...).compile().memory_analysis()`` at B*T = 8192
  (B=8, T=1024), D=1024, V=128000, float32 -- compiled only, never run.
* Time: the same programs run at tokens and vocabulary divided by
  ``--time-scale`` (default 16: N=512, V=8000), repetitions interleaved in a
  random order each round (``_timing.interleaved``), medians, ratio streamed /
  materialised.

Run:  python benchmarks/bench_logprobs.py            (a few minutes on 2 CPU cores)
      python benchmarks/bench_logprobs.py --reps 3 --time-scale 32   (quick look)
"""

from __future__ import annotations

import argparse

import _timing
import jax
import jax.numpy as jnp
import numpy as np

import jaxloss

TEMP = 0.7


def _mat_tokens(hidden, weight, labels, entropy):
    lp_all = jax.nn.log_softmax(jnp.einsum("btd,vd->btv", hidden, weight) / TEMP, axis=-1)
    lp = jnp.take_along_axis(lp_all, labels[..., None], axis=-1)[..., 0]
    if not entropy:
        return lp
    return lp, -jnp.sum(jnp.exp(lp_all) * lp_all, axis=-1)


def tok_ent_streamed(h, w, y):
    lp, ent = jaxloss.linear_token_logprobs(h, w, y, temperature=TEMP, return_entropy=True)
    return jnp.sum(lp) + 0.01 * jnp.sum(ent)


def tok_ent_materialised(h, w, y):
    lp, ent = _mat_tokens(h, w, y, True)
    return jnp.sum(lp) + 0.01 * jnp.sum(ent)


def tok_streamed(h, w, y):
    return jnp.sum(jaxloss.linear_token_logprobs(h, w, y, temperature=TEMP))


def tok_materialised(h, w, y):
    return jnp.sum(_mat_tokens(h, w, y, False))


def seq_streamed(h, w, y):
    return jnp.sum(jaxloss.linear_sequence_logprobs(h, w, y, temperature=TEMP))


def seq_materialised(h, w, y):
    return jnp.sum(jnp.sum(_mat_tokens(h, w, y, False), axis=-1))


PROGRAMS = [
    ("linear_token_logprobs + entropy", tok_ent_streamed, tok_ent_materialised),
    ("linear_token_logprobs", tok_streamed, tok_materialised),
    ("linear_sequence_logprobs (T=0.7)", seq_streamed, seq_materialised),
]


def make_args(b, t, d, v, concrete):
    if not concrete:
        return (jax.ShapeDtypeStruct((b, t, d), jnp.float32), jax.ShapeDtypeStruct((v, d), jnp.float32),
                jax.ShapeDtypeStruct((b, t), jnp.int32))
    rng = np.random.default_rng(0)
    return (jnp.asarray(rng.normal(size=(b, t, d)), jnp.float32),
            jnp.asarray(rng.normal(size=(v, d)) * d**-0.5, jnp.float32),
            jnp.asarray(rng.integers(0, v, size=(b, t)), jnp.int32))


def grad_hw(f):
    return jax.jit(jax.value_and_grad(f, argnums=(0, 1)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--time-scale", type=int, default=16, help="divide tokens and vocabulary for the timing")
    args = ap.parse_args()
    gib = 2.0**30
    b, t, d, v = 8, 1024, 1024, 128000
    s = args.time_scale
    big = make_args(b, t, d, v, False)
    small = make_args(b, t // s, d, v // s, True)
    rows = []
    for name, streamed, mat in PROGRAMS:
        m_s = _timing.temp_bytes(grad_hw(streamed), *big)
        m_m = _timing.temp_bytes(grad_hw(mat), *big)
        fs, fm = grad_hw(streamed), grad_hw(mat)
        times = _timing.medians_ms(_timing.interleaved({"s": lambda: fs(*small), "m": lambda: fm(*small)},
                                                       args.reps))
        rows.append((name, f"{m_s / gib:.3f}", f"{m_m / gib:.3f}", f"{100 * m_s / m_m:.1f}%",
                     f"{times['s']:.1f}", f"{times['m']:.1f}", f"{times['s'] / times['m']:.2f}x"))
        print(f"  done: {name}", flush=True)
    print(f"\nValue and gradient (hidden, weight), float32, backend {jax.default_backend()}: temporary memory "
          f"compiled at B*T={b * t} D={d} V={v} (GiB, not run); time at B*T={b * t // s} D={d} V={v // s} "
          f"(ms, medians of {args.reps})\n")
    _timing.table(("program", "mem streamed", "mem materialised", "mem ratio", "ms streamed", "ms materialised",
                   "time ratio"), rows)


if __name__ == "__main__":
    main()
