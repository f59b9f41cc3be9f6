"""What the benchmark scripts share (not a benchmark itself): interleaved timing,
medians, the noise floor, compiled scratch memory and a Markdown table.

* :func:`interleaved` times several candidates in rounds. Each round calls every
  candidate once, in a freshly shuffled order, and waits for its result, so that
  machine noise (other processes, clock changes, cache state) falls on all of
  them alike and no position in a round is favoured.
* :func:`median_ms` and :func:`medians_ms` summarise those times.
* :func:`with_control` adds a second copy of the baseline to the candidates and
  :func:`noise_floor` reads off the baseline against that copy: how far apart
  two identical programs come out on this machine, to set a ratio against.
* :func:`temp_bytes` (and :func:`memory`) is XLA's compiled temporary memory of a
  jitted function, ``jit(f).lower(...).compile().memory_analysis()``.
* :func:`table` prints a plain Markdown table.

The scripts run as ``python benchmarks/NAME.py``, which puts this folder on
``sys.path``; that is how they ``import _timing``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

CONTROL = "control"
"""The key :func:`with_control` gives the second copy of the baseline."""


def interleaved(fns: Mapping[str, Callable[[], Any]], rounds: int, seed: int = 0,
                warmup: int = 1) -> dict[str, list[float]]:
    """Time every candidate once per round, in a new random order each round.

    ``fns`` maps a name to a call without arguments (``lambda: f(x, y)``). Each
    is first called ``warmup`` times untimed (compilation, first allocations),
    then ``rounds`` times timed, each call waited for with
    ``jax.block_until_ready``. Returns the times in seconds, per name, in the
    order of the rounds.
    """
    for fn in fns.values():
        for _ in range(warmup):
            jax.block_until_ready(fn())
    names = list(fns)
    order = np.random.default_rng(seed)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        for i in order.permutation(len(names)):
            fn = fns[names[i]]
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[names[i]].append(time.perf_counter() - start)
    return times


def median_ms(times: Sequence[float]) -> float:
    """The median of times in seconds, in milliseconds."""
    return statistics.median(times) * 1e3


def medians_ms(times: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """:func:`median_ms` of every candidate of :func:`interleaved`."""
    return {name: median_ms(ts) for name, ts in times.items()}


def with_control(fns: Mapping[str, Callable[[], Any]], baseline: str,
                 copy: Callable[[], Any] | None = None) -> dict[str, Callable[[], Any]]:
    """``fns`` plus a second copy of ``fns[baseline]`` under the key :data:`CONTROL`.

    ``copy`` is that second copy (a separately compiled program, say); by
    default the baseline's own call, timed again as a candidate of its own.
    Timed in the same rounds, it gives the :func:`noise_floor`.
    """
    return {**fns, CONTROL: copy if copy is not None else fns[baseline]}


def noise_floor(medians: Mapping[str, float], baseline: str) -> float:
    """Baseline / its second copy: the ratio two identical programs reach here."""
    return medians[baseline] / medians[CONTROL]


def memory(fn: Callable[..., Any], *args: Any) -> Any:
    """XLA's memory analysis of ``fn`` compiled for ``args`` (arrays or
    ``jax.ShapeDtypeStruct``; compiled, not run).

    ``fn`` may already be jitted: its own ``lower`` is used then, so a program
    it has compiled (or will compile) for these arguments is compiled once, not
    again under another name.
    """
    jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
    return jitted.lower(*args).compile().memory_analysis()


def temp_bytes(fn: Callable[..., Any], *args: Any) -> int:
    """Temporary (scratch) bytes of ``fn`` compiled for ``args``: what the
    program allocates besides its inputs and outputs (see :func:`memory`)."""
    return int(memory(fn, *args).temp_size_in_bytes)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> None:
    """Print a Markdown table, its columns padded to line up in plain text too.

    Cells are printed with ``str`` (format numbers before), a ``|`` in them
    escaped as ``\\|``. ``align`` has one
    letter per column, ``"l"`` or ``"r"``; by default the first column is left-
    and the others right-aligned.
    """
    cells = [[str(c).replace("|", "\\|") for c in row] for row in (header, *rows)]
    align = align or "l" + "r" * (len(header) - 1)
    widths = [max(3, *(len(row[j]) for row in cells)) for j in range(len(header))]

    def line(row):
        padded = (c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align))
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * w if a == "l" else "-" * (w - 1) + ":" for w, a in zip(widths, align)]
    print(line(cells[0]))
    print("| " + " | ".join(rule) + " |")
    for row in cells[1:]:
        print(line(row))
