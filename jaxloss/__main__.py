"""``python -m jaxloss``: a self-check of the installed library on the current backend.

Prints the backend and its devices, then for every registered loss its value
and the norm of its gradient on the registry's sample inputs under ``jit``,
whether both are finite and agree with the eager computation, and the compile
and run times. Exits 1 if any loss fails. Useful as the first cell of a Colab
notebook (TPU, GPU or CPU).

Options: ``--family NAME`` to check one family, ``--quiet`` to print failures only.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxloss
from jaxloss import REGISTRY, LossSpec


def check(spec: LossSpec) -> dict:
    """Run one loss's self-check; returns a row of the report."""
    row = {"name": spec.name, "family": spec.family, "ok": False, "error": ""}
    try:
        args = tuple(jnp.asarray(a) for a in spec.example.sample(np.random.default_rng(0)))
        i = spec.example.differentiable[0]

        def value_and_grad(*xs):
            def f(x):
                full = list(xs)
                full[i] = x
                return spec.fn(*full)

            return jax.value_and_grad(f)(xs[i])

        compiled_fn = jax.jit(value_and_grad)
        start = time.perf_counter()
        compiled = compiled_fn.lower(*args).compile()
        row["compile_ms"] = (time.perf_counter() - start) * 1e3
        value, grad = jax.block_until_ready(compiled(*args))
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            jax.block_until_ready(compiled(*args))
            runs.append(time.perf_counter() - start)
        row["run_us"] = float(np.median(runs)) * 1e6
        eager_value = spec.fn(*args)
        row["value"] = float(value)
        row["grad_norm"] = float(jnp.linalg.norm(grad.astype(jnp.float32)))
        finite = bool(np.isfinite(row["value"]) and np.all(np.isfinite(np.asarray(grad))))
        agrees = bool(np.allclose(float(eager_value), row["value"], rtol=1e-4, atol=1e-5))
        row["ok"] = finite and agrees
        if not finite:
            row["error"] = "non-finite value or gradient"
        elif not agrees:
            row["error"] = f"jit {row['value']:.6g} != eager {float(eager_value):.6g}"
    except Exception as exc:  # the report must list every failure, not stop at the first
        row["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
    return row


def main(argv: list[str] | None = None) -> int:
    """Print the backend and a table of every registered loss's self-check;
    return 0 when all pass, 1 otherwise (the process's exit code)."""
    ap = argparse.ArgumentParser(prog="python -m jaxloss", description="Self-check of jaxloss on this backend.")
    families = sorted({spec.family for spec in REGISTRY.values()})
    ap.add_argument("--family", default=None, choices=families, help="check only this family")
    ap.add_argument("--quiet", action="store_true", help="print only failures and the summary")
    args = ap.parse_args(argv)

    devices = jax.devices()
    print(f"jaxloss {jaxloss.__version__}, jax {jax.__version__}")
    print(f"backend: {jax.default_backend()}, {len(devices)} device(s): "
          + ", ".join(sorted({d.device_kind for d in devices})))
    specs = [s for s in sorted(REGISTRY.values(), key=lambda s: (s.family, s.name))
             if args.family is None or s.family == args.family]
    if not specs:
        print(f"no registered loss in family {args.family!r}")
        return 1
    header = f"{'loss':36s} {'family':14s} {'value':>12s} {'|grad|':>10s} {'compile ms':>10s} {'run us':>9s}  status"
    print(header)
    print("-" * len(header))
    failures = 0
    for spec in specs:
        row = check(spec)
        failures += not row["ok"]
        if args.quiet and row["ok"]:
            continue
        if "value" in row:
            print(f"{row['name']:36s} {row['family']:14s} {row['value']:12.6g} {row['grad_norm']:10.4g} "
                  f"{row['compile_ms']:10.1f} {row['run_us']:9.1f}  {'ok' if row['ok'] else 'FAIL ' + row['error']}")
        else:
            print(f"{row['name']:36s} {row['family']:14s} {'':12s} {'':10s} {'':10s} {'':9s}  FAIL {row['error']}")
    print("-" * len(header))
    print(f"{len(specs) - failures}/{len(specs)} losses passed on {jax.default_backend()}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
