"""ctc_loss vs optax's ctc_loss (time, memory, float32 accuracy) and rnnt_loss (time, memory).

1. CTC time and memory: ``value_and_grad`` of the summed per-sequence loss with
   respect to the logits, jitted, ``[B, T, C]`` float32 logits (default B = 32,
   T = 500, C = 64, S = 100, lengths drawn in [0.8 T, T] and [S/2, S]), timed in
   interleaved rounds with a second copy of optax's program as the noise floor
   (``_timing``); the compiled temporary memory of each program. Target: <= 1.0x
   optax in both.
2. The two gradients of jaxloss's CTC side by side: the forward-backward
   ``custom_vjp`` (the one ``ctc_loss`` uses) and reverse mode through the
   forward scan.
3. float32 accuracy at T = 2000 frames: both losses against a NumPy float64
   forward algorithm on the same float32 logits (random logits, and a confident
   model whose loss is near 0), the worst relative error and the smallest value;
   and optax's own example of a confident alignment (issue #1771), whose exact
   loss is 1.7e-15.
4. RNN-T: ``value_and_grad`` of ``rnnt_loss`` at B = 8, T = 200, U = 50, C = 128:
   time (value alone and value+grad) and temporary memory against the logits' size.

    python benchmarks/bench_sequence.py [--rounds 15] [--skip-rnnt]
"""

from __future__ import annotations

import argparse

import _timing  # interleaved timing, medians, memory, tables (benchmarks/_timing.py)
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxloss
from jaxloss.sequence import _ctc_nll


def mib(fn, *args) -> float:
    return _timing.temp_bytes(fn, *args) / 2**20


def ctc_inputs(rng, b, t, c, s):
    x = jnp.asarray(rng.normal(size=(b, t, c)).astype(np.float32))
    labels = jnp.asarray(rng.integers(1, c, size=(b, s)).astype(np.int32))
    t_len = jnp.asarray(rng.integers(int(0.8 * t), t + 1, size=b).astype(np.int32))
    l_len = jnp.asarray(rng.integers(s // 2, s + 1, size=b).astype(np.int32))
    return x, labels, t_len, l_len


def paddings(lengths, size):
    return (jnp.arange(size)[None, :] >= lengths[:, None]).astype(jnp.float32)


def compare_with_optax(x, labels, t_len, l_len, rounds):
    t, s = x.shape[1], labels.shape[1]
    pad_t, pad_l = paddings(t_len, t), paddings(l_len, s)

    def optax_sum(z):
        return jnp.sum(optax.ctc_loss(z, pad_t, labels, pad_l))

    ours = jax.jit(jax.value_and_grad(lambda z: jaxloss.ctc_loss(z, labels, t_len, l_len, reduction="sum")))
    theirs = jax.jit(jax.value_and_grad(optax_sum))
    control = jax.jit(jax.value_and_grad(optax_sum))
    fns = _timing.with_control({"ours": lambda: ours(x), "theirs": lambda: theirs(x)}, "theirs",
                               copy=lambda: control(x))
    med = _timing.medians_ms(_timing.interleaved(fns, rounds, seed=0))
    mem = {"ours": mib(ours, x), "theirs": mib(theirs, x)}
    (v1, g1), (v2, g2) = ours(x), theirs(x)
    b, _, c = x.shape
    print(f"\n1. ctc_loss value+grad, B={b}, T={t}, C={c}, S={s}, float32\n")
    _timing.table(("", "median ms", "temp MiB"), [
        ("jaxloss.ctc_loss", f"{med['ours']:.1f}", f"{mem['ours']:.1f}"),
        ("optax.ctc_loss", f"{med['theirs']:.1f}", f"{mem['theirs']:.1f}"),
    ])
    print(f"\ntime ratio jaxloss/optax: {med['ours'] / med['theirs']:.3f} (target <= 1.0); "
          f"temp memory ratio: {mem['ours'] / mem['theirs']:.2f} (target <= 1.0)")
    print(f"noise floor: optax / a second copy of optax = {_timing.noise_floor(med, 'theirs'):.3f}")
    print(f"same value: rel. diff {abs(float(v1) - float(v2)) / abs(float(v2)):.1e}; "
          f"max |grad diff| = {float(jnp.max(jnp.abs(g1 - g2))):.1e}")


def gradients_table(x, labels, t_len, l_len, rounds):
    jitted = {
        "forward-backward custom_vjp (used)": jax.jit(jax.value_and_grad(
            lambda z: jnp.sum(_ctc_nll(z, labels, t_len, l_len, gradient="fb")[0]))),
        "reverse mode through the scan": jax.jit(jax.value_and_grad(
            lambda z: jnp.sum(_ctc_nll(z, labels, t_len, l_len, gradient="autodiff")[0]))),
    }
    med = _timing.medians_ms(_timing.interleaved({k: (lambda f=f: f(x)) for k, f in jitted.items()},
                                                 max(3, rounds // 2), seed=1))
    print("\n2. jaxloss's two CTC gradients (bare kernel)\n")
    _timing.table(("", "median ms", "temp MiB"), [(k, f"{med[k]:.1f}", f"{mib(f, x):.1f}") for k, f in jitted.items()])


def np_log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def np_ctc(logits, labels, blank=0):
    """float64 forward algorithm for one sequence, vectorised over the states."""
    lp = np_log_softmax(np.asarray(logits, np.float64))
    ext = np.full(2 * len(labels) + 1, blank)
    ext[1::2] = labels
    skip = np.zeros(len(ext), bool)
    skip[2:] = (ext[2:] != blank) & (ext[2:] != ext[:-2])
    alpha = np.full(len(ext), -np.inf)
    alpha[0] = 0.0
    for t in range(len(lp)):
        prev1 = np.concatenate([[-np.inf], alpha[:-1]])
        prev2 = np.where(skip, np.concatenate([[-np.inf, -np.inf], alpha[:-2]]), -np.inf)
        alpha = np.logaddexp(np.logaddexp(alpha, prev1), prev2) + lp[t, ext]
    return -np.logaddexp(alpha[-1], alpha[-2])


def accuracy(rng, t=2000, c=32, s=50, b=4):
    labels = rng.integers(1, c, size=(b, s)).astype(np.int32)
    x = rng.normal(size=(b, t, c)).astype(np.float32)
    confident = x.copy()
    for i in range(b):    # the labels' alignment scored 12 (or 20) above the other classes
        align = np.repeat(np.stack([np.zeros(s, int), labels[i]], 1).reshape(-1), t // (2 * s))
        confident[i] = np.where(np.arange(c)[None, :] == align[:, None], 12.0 + 8.0 * (i % 2), 0.0)
    full_t, full_l = jnp.full((b,), t, jnp.int32), jnp.full((b,), s, jnp.int32)
    print(f"\n3. float32 accuracy at T={t}, C={c}, S={s}, against a NumPy float64 forward algorithm\n")
    rows = []
    for name, logits in (("random logits", x), ("confident model", confident)):
        ref = np.array([np_ctc(logits[i], labels[i]) for i in range(b)])
        ours = np.asarray(jaxloss.ctc_loss(jnp.asarray(logits), labels, full_t, full_l, reduction="none"), np.float64)
        theirs = np.asarray(optax.ctc_loss(jnp.asarray(logits), jnp.zeros((b, t)), labels, jnp.zeros((b, s))),
                            np.float64)
        for lib, val in (("jaxloss", ours), ("optax", theirs)):
            rows.append((f"{name}, {lib}", f"{ref.min():.3e}", f"{np.max(np.abs(val - ref) / np.abs(ref)):.1e}",
                         f"{val.min():.3e}"))
    _timing.table(("", "smallest float64 loss", "max rel. error", "smallest float32 loss"), rows)
    tiny = jnp.array([[[0.0, 17.0], [0.0, 17.0]]], jnp.float32)
    ours = float(jaxloss.ctc_loss(tiny, jnp.array([[1]]), jnp.array([2]), jnp.array([1]), reduction="none")[0])
    theirs = float(optax.ctc_loss(tiny, jnp.zeros((1, 2)), jnp.array([[1]]), jnp.zeros((1, 1)))[0])
    print(f"\noptax #1771 (logits [0, 17] twice, label 1; exact 1.7e-15): jaxloss {ours:.3e}, optax {theirs:.3e}")


def rnnt(rng, rounds, b=8, t=200, u=50, c=128):
    x = jnp.asarray(rng.normal(size=(b, t, u + 1, c)).astype(np.float32))
    labels = jnp.asarray(rng.integers(1, c, size=(b, u)).astype(np.int32))
    t_len = jnp.asarray(rng.integers(int(0.8 * t), t + 1, size=b).astype(np.int32))
    u_len = jnp.asarray(rng.integers(u // 2, u + 1, size=b).astype(np.int32))
    value = jax.jit(lambda z: jaxloss.rnnt_loss(z, labels, t_len, u_len, reduction="sum"))
    both = jax.jit(jax.value_and_grad(lambda z: jaxloss.rnnt_loss(z, labels, t_len, u_len, reduction="sum")))
    med = _timing.medians_ms(_timing.interleaved({"value": lambda: value(x), "value+grad": lambda: both(x)},
                                                 max(3, rounds // 2), seed=2))
    logits_mib = x.size * 4 / 2**20
    print(f"\n4. rnnt_loss, B={b}, T={t}, U={u}, C={c}, float32 (logits {logits_mib:.0f} MiB)\n")
    _timing.table(("", "median ms", "temp MiB", "temp / logits"), [
        ("value", f"{med['value']:.1f}", f"{mib(value, x):.1f}", f"{mib(value, x) / logits_mib:.2f}"),
        ("value+grad", f"{med['value+grad']:.1f}", f"{mib(both, x):.1f}", f"{mib(both, x) / logits_mib:.2f}"),
    ])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--b", type=int, default=32)
    parser.add_argument("--t", type=int, default=500)
    parser.add_argument("--c", type=int, default=64)
    parser.add_argument("--s", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--skip-rnnt", action="store_true")
    args = parser.parse_args()
    print(f"jax {jax.__version__}, optax {optax.__version__}, backend {jax.default_backend()}")
    rng = np.random.default_rng(0)
    inputs = ctc_inputs(rng, args.b, args.t, args.c, args.s)
    compare_with_optax(*inputs, args.rounds)
    gradients_table(*inputs, args.rounds)
    accuracy(rng)
    if not args.skip_rnnt:
        rnnt(rng, args.rounds)


if __name__ == "__main__":
    main()
