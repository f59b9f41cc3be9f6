"""What every multi-device and multi-host script reports with: ``check`` (one
line per check, every check runs), ``close`` (a float64 comparison) and
``finish`` (the summary line and the exit status). No JAX import, so a
multi-host worker can use it before ``jax.distributed.initialize``."""

from __future__ import annotations

import sys
import time
import traceback

import numpy as np

FAILED: list[str] = []
PASSED: list[str] = []


def check(name):
    """Run the decorated function now as the check ``name``: one line per check,
    ``ok`` with its time or ``FAIL`` with the traceback (every check runs)."""

    def deco(fn):
        t0 = time.perf_counter()
        try:
            fn()
        except Exception:  # noqa: BLE001 -- report every failure, then exit 1
            FAILED.append(name)
            print(f"FAIL {name}\n{traceback.format_exc()}", flush=True)
        else:
            PASSED.append(name)
            print(f"ok   {name} ({time.perf_counter() - t0:.1f} s)", flush=True)
        return fn

    return deco


def close(a, b, what, rtol=2e-5, atol=2e-6):
    """``a`` equals ``b`` up to ``rtol``/``atol``, compared in float64."""
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol,
                               err_msg=what)


def finish(extra: str = "") -> None:
    """Print the summary line (``N passed, M failed``) and exit 1 if a check failed."""
    print(f"\n{len(PASSED)} passed, {len(FAILED)} failed{extra}")
    sys.exit(1 if FAILED else 0)
