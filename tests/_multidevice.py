"""The prelude of the multi-device scripts (tests/multidevice_check.py,
tests/multidevice_contrastive.py): 8 host CPU devices, and the helpers both use.

The device count is fixed when JAX starts, so a script imports this module
before it imports jax::

    import _multidevice as md  # first: 8 host devices before JAX starts
    # isort: split
    import jax

Never import it from a test module: it would give the pytest process 8 devices.
"""

from __future__ import annotations

import math
import os
import pathlib
import sys
import time
import traceback

DEVICES = 8
_FLAG = f"--xla_force_host_platform_device_count={DEVICES}"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
FAILED: list[str] = []
PASSED: list[str] = []

assert jax.device_count() == DEVICES, (
    f"expected {DEVICES} host devices, got {jax.device_count()} (XLA_FLAGS={os.environ.get('XLA_FLAGS')})"
)


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
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol,
                               err_msg=what)


def mesh_of(shape, names):
    """A mesh of the first ``prod(shape)`` devices."""
    return Mesh(np.array(jax.devices()[: math.prod(shape)]).reshape(shape), names)


def finish(extra: str = "") -> None:
    """Print the summary line (``N passed, M failed``) and exit 1 if a check failed."""
    print(f"\n{len(PASSED)} passed, {len(FAILED)} failed{extra}")
    sys.exit(1 if FAILED else 0)
