"""What the example scripts share (not an example itself): their command line,
the line they open with, where their plot goes, the lines they close with, and
matplotlib without a display.

The scripts run as ``python examples/NAME.py``, which puts this folder on
``sys.path``; that is how they ``import _common``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import jax

import jaxloss

OUT = Path(__file__).resolve().parent / "out"


def setup(doc, sizes, argv=None, *, large_help, small_help="the CI size",
          out_help="directory for the PNG plot (default: examples/out/)", seed_help=None):
    """Parse ``--small | --large``, ``--out`` and ``--seed``, print what runs, start the clock.

    ``doc`` is the script's docstring (its first paragraph describes it in
    ``--help``); ``sizes`` maps ``"small"``, ``"default"`` and ``"large"`` to the
    script's settings. Returns ``(args, cfg, start)``: the parsed flags, the
    chosen entry of ``sizes`` and ``time.perf_counter()`` at the start.
    """
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--small", action="store_true", help=small_help)
    size.add_argument("--large", action="store_true", help=large_help)
    parser.add_argument("--out", type=Path, default=OUT, help=out_help)
    parser.add_argument("--seed", type=int, default=0, help=seed_help)
    args = parser.parse_args(argv)
    name = "small" if args.small else "large" if args.large else "default"
    cfg = sizes[name]
    print(f"jaxloss {jaxloss.__version__} on {jax.default_backend()}; size {name} {cfg}, seed {args.seed}")
    return args, cfg, time.perf_counter()


def plot_file(out, name):
    """``out / name``, creating the directory ``out`` if need be."""
    out.mkdir(parents=True, exist_ok=True)
    return out / name


def finish(path, start, indent=""):
    """Print where the plot went and the time since ``start``."""
    print(f"{indent}plot: {path}")
    print(f"{indent}total time: {time.perf_counter() - start:.1f} s")


def pyplot():
    """``matplotlib.pyplot``, drawing to files (Agg) unless ``MPLBACKEND`` names a backend."""
    import matplotlib

    if os.environ.get("MPLBACKEND") is None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
