"""Multi-device checks on 8 host CPU devices.

The device count is fixed when JAX starts, so the checks live in
tests/multidevice_check.py and run here in a fresh process with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``:

* every loss in the registry, batch sharded over 8 devices (``NamedSharding``,
  plain ``jit``), equals one device in value (every reduction, with ``where``)
  and gradient;
* ``vocab_parallel_cross_entropy`` under ``shard_map`` equals the float64
  sparse cross-entropy of the gathered logits (and ``sparse_cross_entropy``);
* ``linear_cross_entropy`` with a vocabulary-sharded weight equals one device,
  under GSPMD and inside ``shard_map`` with ``axis_name``;
* the code of docs/large_vocab.md runs and its assertions hold.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).with_name("multidevice_check.py")


@pytest.mark.slow
def test_multidevice_checks_pass_on_8_devices():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
    env["JAX_PLATFORMS"] = "cpu"
    # this checkout's jaxloss, not another installed copy
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SCRIPT.parents[1]), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, cwd=SCRIPT.parents[1], capture_output=True, text=True, timeout=900
    )
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"multi-device checks failed:\n{report[-20000:]}"
    assert "0 failed" in proc.stdout and "batch-sharded == one device: linear_cross_entropy" in proc.stdout, report
