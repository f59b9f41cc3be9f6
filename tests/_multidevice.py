"""The prelude of the multi-device scripts (tests/multidevice_check.py,
tests/multidevice_contrastive.py, tests/multidevice_heads.py, tests/multidevice_ssl.py):
8 host CPU devices, and the helpers they use (the reporting ones from ``_report``).

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

DEVICES = 8
_FLAG = f"--xla_force_host_platform_device_count={DEVICES}"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from _report import FAILED, PASSED, check, close, finish  # noqa: E402,F401 -- re-exported for the scripts
from jax.sharding import Mesh  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]

assert jax.device_count() == DEVICES, (
    f"expected {DEVICES} host devices, got {jax.device_count()} (XLA_FLAGS={os.environ.get('XLA_FLAGS')})"
)


def mesh_of(shape, names):
    """A mesh of the first ``prod(shape)`` devices."""
    return Mesh(np.array(jax.devices()[: math.prod(shape)]).reshape(shape), names)


