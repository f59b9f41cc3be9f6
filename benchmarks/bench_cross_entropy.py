"""sparse_cross_entropy vs optax's integer-label cross-entropy: time, memory, bf16 accuracy.

1. Time: ``value_and_grad`` of the mean loss with respect to the logits, jitted,
   ``[N, V]`` float32 logits (default N = 2048, V = 32768), timed in interleaved
   rounds (jaxloss, optax, jaxloss, optax, ...) so machine noise hits both alike;
   medians and the ratio jaxloss/optax (target: <= 1.0).
2. Memory: the compiled temporary buffer size of the same jitted functions,
   ``jit(...).lower(...).compile().memory_analysis().temp_size_in_bytes``
   (target: no larger than optax's), also with jaxloss's options switched on.
   A second copy of optax's function is timed in the same rounds to show the
   noise floor: the ratio of two identical programs.
3. Formulations tried for the kernel, side by side (bare, without jaxloss's
   decorator): how the target logit is picked and differentiated.
4. bf16 accuracy: both losses on the same bf16 logits against the float32
   computation on those values (and a float64 NumPy reference).

    python benchmarks/bench_cross_entropy.py [--n 2048] [--v 32768] [--rounds 21]
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
from jaxloss.classification import _logsumexp


def _timer(compiled, *args):
    def run():
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        return time.perf_counter() - start

    run()  # warm up
    return run


def _compile(fn, *args):
    return jax.jit(jax.value_and_grad(fn)).lower(*args).compile()


def _temp_mib(compiled) -> float:
    return compiled.memory_analysis().temp_size_in_bytes / 2**20


def _interleaved(timers: dict, rounds: int) -> dict:
    times = {k: [] for k in timers}
    for _ in range(rounds):
        for k, run in timers.items():
            times[k].append(run())
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


# ---- formulations of the kernel (plain mean cross-entropy, labels in range) ---------------


def _lse(x):
    # jaxloss's log-sum-exp (stop-gradient max shift; -inf rows safe), shared by every formulation
    # below so that they differ only in how the target logit is picked and differentiated
    return _logsumexp(x, 1)


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
    y_ign = jnp.where(jnp.arange(n) % 8 == 0, -100, y)
    cw = jnp.asarray(rng.uniform(0.5, 2.0, size=(v,)).astype(np.float32))

    print(f"jax {jax.__version__}, optax {optax.__version__} on {jax.default_backend()} "
          f"({jax.devices()[0].device_kind}); logits [{n}, {v}] float32, labels int32; "
          f"jitted value_and_grad of the mean loss; {args.rounds} interleaved rounds, medians")

    # ---- 1 + 2: jaxloss vs optax -------------------------------------------------------
    def optax_ce(a, b):
        return jnp.mean(optax.losses.softmax_cross_entropy_with_integer_labels(a, b))

    ours = _compile(lambda a, b: jaxloss.sparse_cross_entropy(a, b), x, y)
    theirs = _compile(optax_ce, x, y)
    v_ours, g_ours = ours(x, y)
    v_theirs, g_theirs = theirs(x, y)
    # a second, separately compiled copy of optax's function, timed in the same rounds: its ratio
    # to the first shows how much two identical programs differ on this machine (the noise floor)
    control = _compile(lambda a, b: optax_ce(a, b) * 1.0, x, y)
    med = _interleaved({"ours": _timer(ours, x, y), "theirs": _timer(theirs, x, y),
                        "control": _timer(control, x, y)}, args.rounds)
    print("\n1-2. sparse_cross_entropy vs optax.losses.softmax_cross_entropy_with_integer_labels")
    print(f"   {'':38s} {'median ms':>10s} {'temp MiB':>10s}")
    print(f"   {'jaxloss.sparse_cross_entropy':38s} {med['ours']:10.1f} {_temp_mib(ours):10.2f}")
    print(f"   {'optax (mean)':38s} {med['theirs']:10.1f} {_temp_mib(theirs):10.2f}")
    print(f"   time ratio jaxloss/optax: {med['ours'] / med['theirs']:.3f} (target <= 1.0); "
          f"temp memory ratio: {_temp_mib(ours) / max(_temp_mib(theirs), 1e-9):.2f} (target <= 1.0)")
    print(f"   noise floor: optax / a second copy of optax = {med['theirs'] / med['control']:.3f}")
    print(f"   same value: |diff| = {abs(float(v_ours) - float(v_theirs)):.2e}; "
          f"max |grad diff| = {float(jnp.max(jnp.abs(g_ours - g_theirs))):.2e}")

    options = {
        "ignore_index=-100 (1/8 ignored)": (lambda a: jaxloss.sparse_cross_entropy(a, y_ign, ignore_index=-100), ),
        "+ label_smoothing=0.1, z_loss=1e-4": (lambda a: jaxloss.sparse_cross_entropy(
            a, y_ign, ignore_index=-100, label_smoothing=0.1, z_loss=1e-4), ),
        "+ class_weights": (lambda a: jaxloss.sparse_cross_entropy(
            a, y_ign, ignore_index=-100, label_smoothing=0.1, z_loss=1e-4, class_weights=cw), ),
    }
    compiled = {k: jax.jit(jax.value_and_grad(f)).lower(x).compile() for k, (f,) in options.items()}
    timers = {"optax": _timer(theirs, x, y), **{k: _timer(c, x) for k, c in compiled.items()}}
    med = _interleaved(timers, max(3, args.rounds // 3))
    print("\n   with options (informative; optax has none of them):")
    for k, c in compiled.items():
        print(f"   {k:38s} {med[k]:10.1f} {_temp_mib(c):10.2f}   ({med[k] / med['optax']:.2f}x optax plain)")

    # ---- 3: formulations ----------------------------------------------------------------
    if not args.skip_formulations:
        comp = {k: _compile(f, x, y) for k, f in FORMULATIONS.items()}
        med = _interleaved({k: _timer(c, x, y) for k, c in comp.items()}, max(3, args.rounds // 2))
        base = med["gather + autodiff (optax's)"]
        print("\n3. formulations of the kernel (bare, no decorator)")
        print(f"   {'':38s} {'median ms':>10s} {'temp MiB':>10s} {'vs gather':>10s}")
        for k, c in comp.items():
            print(f"   {k:38s} {med[k]:10.1f} {_temp_mib(c):10.2f} {med[k] / base:10.3f}")

    # ---- 4: bf16 accuracy -----------------------------------------------------------------
    xb = x.astype(jnp.bfloat16)
    x64 = np.asarray(xb.astype(jnp.float32), np.float64)
    m = x64.max(-1, keepdims=True)
    lse64 = np.log(np.exp(x64 - m).sum(-1)) + m[:, 0]
    ref64 = float(np.mean(lse64 - x64[np.arange(n), np.asarray(y)]))
    f32 = float(jaxloss.sparse_cross_entropy(xb.astype(jnp.float32), y))
    ours_b = jaxloss.sparse_cross_entropy(xb, y)
    theirs_b = jax.jit(optax_ce)(xb, y)
    theirs_f32 = float(jax.jit(optax_ce)(xb.astype(jnp.float32), y))
    print("\n4. bf16 logits (the same bf16 values for everyone)")
    print(f"   float64 reference on the bf16 values: {ref64:.9f}")
    print(f"   float32 computation (jaxloss on upcast): {f32:.9f}  (optax on upcast: {theirs_f32:.9f})")
    for name, val in (("jaxloss, bf16 in", ours_b), ("optax, bf16 in", theirs_b)):
        fv = float(val)
        print(f"   {name:18s} -> {str(val.dtype):8s} {fv:.9f}  rel. err vs float32 {abs(fv - f32) / abs(f32):.2e}"
              f"  vs float64 {abs(fv - ref64) / abs(ref64):.2e}")
    per_ours = np.asarray(jaxloss.sparse_cross_entropy(xb, y, reduction="none"), np.float64)
    per_theirs = np.asarray(optax.losses.softmax_cross_entropy_with_integer_labels(xb, y).astype(jnp.float32), np.float64)
    per_ref = lse64 - x64[np.arange(n), np.asarray(y)]
    print(f"   per-example max rel. err vs float64: jaxloss {np.max(np.abs(per_ours - per_ref) / np.abs(per_ref)):.2e}, "
          f"optax {np.max(np.abs(per_theirs - per_ref) / np.abs(per_ref)):.2e}")


if __name__ == "__main__":
    main()
