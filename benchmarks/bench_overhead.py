"""Eager call overhead: jaxloss's losses called without a jit of the caller's, against optax.

1. Time: ``jaxloss.mse_loss(p, t)`` against ``optax.losses.squared_error(p, t).mean()``,
   and ``jaxloss.huber_loss(p, t)`` against ``optax.losses.huber_loss(p, t).mean()``,
   called eagerly on 1000-element float32 arrays, each call waited for. The three
   candidates of a pair (jaxloss, optax and a second copy of optax, the control)
   are timed in interleaved rounds, each in a new random order (see
   ``_timing.interleaved``); medians in microseconds, the ratio jaxloss/optax
   and the noise floor optax/control (the ratio of two identical calls).
   At this size the arithmetic is negligible: this is the price of a call,
   Python argument checks and dispatch of one jitted program (jaxloss) against
   a dispatch per jnp operation (optax).
2. Compilations: how many XLA programs each eager call
   ``jaxloss.sigmoid_focal_loss(x, t, gamma=...)`` compiles, with ``gamma=2``,
   then ``gamma=2.0``, then ``gamma=3.0``, in that order, the first being the
   process's first call of the loss.
   They are counted two ways that must agree: the "Compiling ..." records jax
   logs under ``jax_log_compiles``, and ``jax.monitoring``'s backend-compile
   duration events. The counter is checked first on a fresh jitted function
   (a first call, the same shape again, a new shape: 1, 0, 1 compilations).

    python benchmarks/bench_overhead.py [--n 1000] [--rounds 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Iterator

import _timing  # what every benchmark shares: interleaved timing, medians, tables (benchmarks/_timing.py)
import jax
import jax.numpy as jnp
import optax

import jaxloss

PAIRS = {
    "mse_loss": (lambda p, t: jaxloss.mse_loss(p, t), lambda p, t: optax.losses.squared_error(p, t).mean(),
                 "optax.losses.squared_error(p, t).mean()"),
    "huber_loss": (lambda p, t: jaxloss.huber_loss(p, t), lambda p, t: optax.losses.huber_loss(p, t).mean(),
                   "optax.losses.huber_loss(p, t).mean()"),
}

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"  # one event per XLA compilation


class CompileCounter(logging.Handler):
    """Counts compilations while active, from jax's log and from jax.monitoring.

    Install once (:meth:`install`), then ``with counter.counting():`` around the
    calls to count; ``programs`` lists the names logged, ``backend`` counts the
    backend-compile events.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.active = False
        self.programs: list[str] = []
        self.backend = 0

    def install(self) -> CompileCounter:
        logging.getLogger("jax").addHandler(self)
        jax.monitoring.register_event_duration_secs_listener(self._event)
        return self

    def _event(self, event: str, duration_secs: float, **kwargs: str | int) -> None:
        if self.active and event == BACKEND_COMPILE:
            self.backend += 1

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.active and message.startswith("Compiling "):
            self.programs.append(message.split()[1])

    @contextlib.contextmanager
    def counting(self) -> Iterator[CompileCounter]:
        """Count afresh inside the block, with ``jax_log_compiles`` on."""
        self.programs, self.backend, self.active = [], 0, True
        try:
            with jax.log_compiles(True):
                yield self
        finally:
            self.active = False


def count(counter: CompileCounter, call) -> tuple[list[str], int]:
    """Programs logged as compiled and backend compilations during ``call()``."""
    with counter.counting():
        jax.block_until_ready(call())
    return counter.programs, counter.backend


def check_counter(counter: CompileCounter) -> None:
    """The counter sees 1, 0, 1 compilations for a new function, a cache hit, a new shape."""
    f = jax.jit(lambda a: 2.0 * a + 1.0)
    a3, a4 = jnp.ones(3), jnp.ones(4)
    seen = [count(counter, lambda a=a: f(a)) for a in (a3, a3, a4)]
    got = [(len(programs), backend) for programs, backend in seen]
    if got != [(1, 1), (0, 0), (1, 1)]:
        raise SystemExit(f"compile counter check failed: (logged, backend) = {got}, expected 1, 0, 1 of each")
    print("compile counter check (new jit, same shape, new shape): 1, 0, 1 compilations, both ways: ok")


def overhead_table(n: int, rounds: int) -> None:
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    p = jax.random.normal(k1, (n,), jnp.float32)
    t = jax.random.normal(k2, (n,), jnp.float32)
    rows = []
    for i, (name, (ours, theirs, label)) in enumerate(PAIRS.items()):
        fns = _timing.with_control({"ours": lambda f=ours: f(p, t), "theirs": lambda f=theirs: f(p, t)}, "theirs")
        med = _timing.medians_ms(_timing.interleaved(fns, rounds, seed=i, warmup=10))
        rows.append((f"jaxloss.{name}(p, t)", label, f"{1e3 * med['ours']:.1f}", f"{1e3 * med['theirs']:.1f}",
                     f"{med['ours'] / med['theirs']:.2f}", f"{_timing.noise_floor(med, 'theirs'):.2f}"))
    print(f"\n1. eager call time, {n}-element float32 arrays, {rounds} interleaved rounds "
          f"(random order in each), medians\n")
    _timing.table(("jaxloss", "optax", "jaxloss us", "optax us", "jaxloss/optax", "optax/control"), rows,
                  align="llrrrr")


def compile_table(counter: CompileCounter, n: int) -> None:
    k1, k2 = jax.random.split(jax.random.PRNGKey(1))
    x = jax.random.normal(k1, (n,), jnp.float32)
    t = (jax.random.uniform(k2, (n,)) < 0.3).astype(jnp.float32)
    rows = []
    for gamma in (2, 2.0, 3.0):
        programs, backend = count(counter, lambda g=gamma: jaxloss.sigmoid_focal_loss(x, t, gamma=g))
        rows.append((f"sigmoid_focal_loss(x, t, gamma={gamma!r})", len(programs), backend,
                     ", ".join(programs) or "-"))
    print("\n2. compilations of eager calls, in this order (float32 x and t of the same shape)\n")
    _timing.table(("call", "compiled (log)", "backend compiles", "programs"), rows, align="lrrl")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2000)
    args = ap.parse_args()
    print(f"jax {jax.__version__}, optax {optax.__version__} on {jax.default_backend()} "
          f"({jax.devices()[0].device_kind}); eager calls, no jit of the caller's\n")
    counter = CompileCounter().install()
    check_counter(counter)
    overhead_table(args.n, args.rounds)
    compile_table(counter, args.n)


if __name__ == "__main__":
    main()
