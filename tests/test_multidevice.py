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

tests/multidevice_heads.py (same 8 devices): the fused heads on a 2-D
``"data"`` x ``"model"`` mesh under plain ``jit``, Auto and Explicit, equal one
device with no all-gather of the whole weight in the compiled program and a
row-split weight gradient; ``make_train_step`` with FSDP-sharded parameters.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).with_name("multidevice_check.py")
HEADS = pathlib.Path(__file__).with_name("multidevice_heads.py")


def _run_on_8(script, timeout):
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
    env["JAX_PLATFORMS"] = "cpu"
    # this checkout's jaxloss, not an installed one (the script's directory is tests/)
    env["PYTHONPATH"] = os.pathsep.join([str(SCRIPT.parents[1]), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, cwd=script.parents[1], capture_output=True, text=True, timeout=timeout
    )
    return proc, proc.stdout + proc.stderr


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
    # every registered loss on the explicit mesh, none excused
    m = re.search(r"explicit mesh: (\d+) of (\d+) registered losses", proc.stdout)
    assert m and m.group(1) == m.group(2), report[-5000:]


@pytest.mark.slow
def test_fused_heads_and_fsdp_on_a_2d_mesh():
    proc, report = _run_on_8(HEADS, 600)
    assert proc.returncode == 0, f"fused-head checks failed:\n{report[-20000:]}"
    assert "0 failed" in proc.stdout and "HLO detector" in proc.stdout, report


MULTIHOST = pathlib.Path(__file__).with_name("multihost_check.py")


@pytest.mark.slow
def test_multihost_2_processes_x_4_devices():
    """2 processes x 4 CPU devices (jax.distributed, gloo, a free localhost port):
    data-parallel make_train_step, CLIP/SigLIP, a vocabulary split across hosts,
    class-sharded ArcFace and registry losses under GSPMD equal one device
    (tests/multihost_check.py launches both processes and kills them after 240 s)."""
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, str(MULTIHOST), "--timeout", "240"], env=env, cwd=MULTIHOST.parents[1],
                          capture_output=True, text=True, timeout=300)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"multi-host checks failed:\n{report[-20000:]}"
    for i in (0, 1):
        assert f"process {i}: 7 passed, 0 failed" in proc.stdout, report[-20000:]
