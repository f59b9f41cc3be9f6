"""sparse_cross_entropy vs optax's integer-label cross-entropy: time, memory, bf16 accuracy.

1. Time: ``value_and_grad`` of the mean loss with respect to the logits, jitted,
   ``[N, V]`` float32 logits (default N = 2048, V = 32768), timed in interleaved
   rounds (each round runs jaxloss, optax and the control once, in a random
   order; see ``_timing.interleaved``) so machine noise hits all alike; medians
   and the ratio jaxloss/optax (target: <= 1.0). The control is a second,
   separately compiled copy of optax's function: its ratio to optax shows the
   noise floor, how far apart two identical programs come out.
2. Memory: the compiled temporary buffer size of the same jitted functions,
   ``jit(...).lower(...).compile().memory_analysis().temp_size_in_bytes``
   (target: no larger than optax's), also with jaxloss's options switched on.
3. Formulations tried for the kernel, side by side (bare, without jaxloss's
   decorator, written out here): how the target logit is picked and differentiated.
4. bf16 accuracy: both losses on the same bf16 logits against the float32
   computation on those values (and a float64 NumPy reference).

    python benchmarks/bench_cross_entropy.py [--n 2048] [--v 32768] [--rounds 21] [--skip-formulations]
"""

from __future__ import annotations

import argparse

import _timing  # what every benchmark shares: interleaved timing, medians, memory, tables (benchmarks/_timing.py)
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxloss


def value_and_grad(fn):
    return jax.jit(jax.value_and_grad(fn))


def optax_ce(a, b):
    """optax's mean integer-label cross-entropy, the reference throughout."""
    return jnp.mean(optax.losses.softmax_cross_entropy_with_integer_labels(a, b))


def mib(fn, *args) -> float:
    return _timing.temp_bytes(fn, *args) / 2**20


# ---- formulations of the kernel (plain mean cross-entropy, labels in range) ---------------


def _lse(x):
    """Log-sum-exp over the classes, shifted by the row maximum under stop_gradient
    (the shift's derivative cancels, so it need not be differentiated); a row
    of -inf gives -inf. jaxloss computes it this way; every formulation below
    shares it, so that they differ only in how the target logit is picked and
    differentiated."""
    m = jax.lax.stop_gradient(jnp.max(x, axis=1))
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    total = jnp.sum(jnp.exp(x - m[:, None]), axis=1)
    some = total > 0
    return jnp.where(some, jnp.log(jnp.where(some, total, 1.0)) + m, -jnp.inf)


def f_gather(x, y):
    """take_along_axis pick, autodiff (its derivative is a scatter) -- optax's formulation."""
    return jnp.mean(_lse(x) - jnp.take_along_axis(x, y[:, None], axis=-1)[:, 0])


def f_compare(x, y):
    """compare-and-sum pick (a fused select in both passes)."""
    hit = jax.lax.broadcasted_iota(jnp.int32, x.shape, 1) == y[:, None]
    return jnp.mean(_lse(x) - jnp.sum(jnp.where(hit, x, 0.0), axis=-1))


@jax.custom_jvp
def _pick(x, y):
    return jnp.take_along_axis(x, y[:, None], axis=-1, mode="promise_in_bounds")[:, 0]


@_pick.defjvp
def _pick_jvp(primals, tangents):
    (x, y), (dx, _) = primals, tangents
    hit = jax.lax.broadcasted_iota(jnp.int32, x.shape, 1) == y[:, None]
    return _pick(x, y), jnp.sum(jnp.where(hit, dx, 0.0), axis=-1)


def f_gather_jvp(x, y):
    """gather pick whose JVP is a compare-and-sum (transposes to a fused select) -- jaxloss's choice."""
    return jnp.mean(_lse(x) - _pick(x, y))


@jax.custom_vjp
def _ce(x, y):
    return _lse(x) - jnp.take_along_axis(x, y[:, None], axis=-1)[:, 0]


def _ce_fwd(x, y):
    lse = _lse(x)
    return lse - jnp.take_along_axis(x, y[:, None], axis=-1)[:, 0], (x, y, lse)


def _ce_bwd(res, g):
    x, y, lse = res
    hit = jax.lax.broadcasted_iota(jnp.int32, x.shape, 1) == y[:, None]
    return (jnp.exp(x - lse[:, None]) - hit) * g[:, None], None


_ce.defvjp(_ce_fwd, _ce_bwd)


def f_custom_vjp(x, y):
    """custom_vjp with the fused softmax-minus-one-hot backward (no forward-mode, so no jax.hessian)."""
    return jnp.mean(_ce(x, y))


FORMULATIONS = {
    "gather + autodiff (optax's)": f_gather,
    "compare-and-sum + autodiff": f_compare,
    "gather, compare-and-sum JVP (chosen)": f_gather_jvp,
    "custom_vjp fused backward": f_custom_vjp,
}


def compare_with_optax(x, y, rounds):
    """Sections 1-2: time, temp memory and agreement of jaxloss and optax, with the noise floor."""
    ours = value_and_grad(lambda a, b: jaxloss.sparse_cross_entropy(a, b))
    theirs = value_and_grad(optax_ce)
    # value_and_grad makes a new function, so this is compiled again: the same program, twice
    control = value_and_grad(optax_ce)
    fns = _timing.with_control({"ours": lambda: ours(x, y), "theirs": lambda: theirs(x, y)}, "theirs",
                               copy=lambda: control(x, y))
    med = _timing.medians_ms(_timing.interleaved(fns, rounds, seed=0))
    mem = {"ours": mib(ours, x, y), "theirs": mib(theirs, x, y)}
    (v_ours, g_ours), (v_theirs, g_theirs) = ours(x, y), theirs(x, y)
    print("\n1-2. sparse_cross_entropy vs optax.losses.softmax_cross_entropy_with_integer_labels\n")
    _timing.table(("", "median ms", "temp MiB"), [
        ("jaxloss.sparse_cross_entropy", f"{med['ours']:.1f}", f"{mem['ours']:.2f}"),
        ("optax (mean)", f"{med['theirs']:.1f}", f"{mem['theirs']:.2f}"),
    ])
    print(f"\ntime ratio jaxloss/optax: {med['ours'] / med['theirs']:.3f} (target <= 1.0); "
          f"temp memory ratio: {mem['ours'] / max(mem['theirs'], 1e-9):.2f} (target <= 1.0)")
    print(f"noise floor: optax / a second copy of optax = {_timing.noise_floor(med, 'theirs'):.3f}")
    print(f"same value: |diff| = {abs(float(v_ours) - float(v_theirs)):.2e}; "
          f"max |grad diff| = {float(jnp.max(jnp.abs(g_ours - g_theirs))):.2e}")
    return theirs


def options_table(x, y, theirs, rounds, rng):
    """Section 2 continued: jaxloss with its options switched on, against plain optax."""
    n, v = x.shape
    y_ign = jnp.where(jnp.arange(n) % 8 == 0, -100, y)
    cw = jnp.asarray(rng.uniform(0.5, 2.0, size=(v,)).astype(np.float32))
    options = {
        "ignore_index=-100 (1/8 ignored)": {"ignore_index": -100},
        "+ label_smoothing=0.1, z_loss=1e-4": {"ignore_index": -100, "label_smoothing": 0.1, "z_loss": 1e-4},
        "+ class_weights": {"ignore_index": -100, "label_smoothing": 0.1, "z_loss": 1e-4, "class_weights": cw},
    }
    jitted = {k: value_and_grad(lambda a, kw=kw: jaxloss.sparse_cross_entropy(a, y_ign, **kw))
              for k, kw in options.items()}
    fns = {"optax": lambda: theirs(x, y), **{k: (lambda f=f: f(x)) for k, f in jitted.items()}}
    med = _timing.medians_ms(_timing.interleaved(fns, max(3, rounds // 3), seed=1))
    print("\nwith options (informative; optax has none of them):\n")
    _timing.table(("", "median ms", "temp MiB", "vs optax plain"), [
        (k, f"{med[k]:.1f}", f"{mib(f, x):.2f}", f"{med[k] / med['optax']:.2f}x") for k, f in jitted.items()
    ])


def formulations_table(x, y, rounds):
    """Section 3: the bare kernels of FORMULATIONS, timed against each other."""
    jitted = {k: value_and_grad(f) for k, f in FORMULATIONS.items()}
    fns = {k: (lambda f=f: f(x, y)) for k, f in jitted.items()}
    med = _timing.medians_ms(_timing.interleaved(fns, max(3, rounds // 2), seed=2))
    base = med["gather + autodiff (optax's)"]
    print("\n3. formulations of the kernel (bare, no decorator)\n")
    _timing.table(("", "median ms", "temp MiB", "vs gather"), [
        (k, f"{med[k]:.1f}", f"{mib(f, x, y):.2f}", f"{med[k] / base:.3f}") for k, f in jitted.items()
    ])


def bf16_accuracy(x, y):
    """Section 4: both losses on the same bf16 logits against float32 and float64 on those values."""
    n = x.shape[0]
    xb = x.astype(jnp.bfloat16)
    x64 = np.asarray(xb.astype(jnp.float32), np.float64)
    m = x64.max(-1, keepdims=True)
    lse64 = np.log(np.exp(x64 - m).sum(-1)) + m[:, 0]
    per_ref = lse64 - x64[np.arange(n), np.asarray(y)]
    ref64 = float(np.mean(per_ref))
    f32 = float(jaxloss.sparse_cross_entropy(xb.astype(jnp.float32), y))
    ours_b = jaxloss.sparse_cross_entropy(xb, y)
    theirs_b = jax.jit(optax_ce)(xb, y)
    theirs_f32 = float(jax.jit(optax_ce)(xb.astype(jnp.float32), y))
    print("\n4. bf16 logits (the same bf16 values for everyone)")
    print(f"   float64 reference on the bf16 values: {ref64:.9f}")
    print(f"   float32 computation (jaxloss on upcast): {f32:.9f}  (optax on upcast: {theirs_f32:.9f})")
    for name, val in (("jaxloss, bf16 in", ours_b), ("optax, bf16 in", theirs_b)):
        fv = float(val)
        print(f"   {name:18s} -> {val.dtype!s:8s} {fv:.9f}  rel. err vs float32 {abs(fv - f32) / abs(f32):.2e}"
              f"  vs float64 {abs(fv - ref64) / abs(ref64):.2e}")
    per_ours = np.asarray(jaxloss.sparse_cross_entropy(xb, y, reduction="none"), np.float64)
    per_theirs = np.asarray(optax.losses.softmax_cross_entropy_with_integer_labels(xb, y).astype(jnp.float32),
                            np.float64)
    ours_err = np.max(np.abs(per_ours - per_ref) / np.abs(per_ref))
    print(f"   per-example max rel. err vs float64: jaxloss {ours_err:.2e}, "
          f"optax {np.max(np.abs(per_theirs - per_ref) / np.abs(per_ref)):.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--v", type=int, default=32768)
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--skip-formulations", action="store_true")
    args = ap.parse_args()
    n, v = args.n, args.v

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(n, v)).astype(np.float32) * 3.0)
    y = jnp.asarray(rng.integers(0, v, size=(n,)).astype(np.int32))

    print(f"jax {jax.__version__}, optax {optax.__version__} on {jax.default_backend()} "
          f"({jax.devices()[0].device_kind}); logits [{n}, {v}] float32, labels int32; "
          f"jitted value_and_grad of the mean loss; {args.rounds} interleaved rounds "
          f"(random order in each), medians")
    theirs = compare_with_optax(x, y, args.rounds)
    options_table(x, y, theirs, args.rounds, rng)
    if not args.skip_formulations:
        formulations_table(x, y, args.rounds)
    bf16_accuracy(x, y)


if __name__ == "__main__":
    main()
