r"""Gradient-safe arithmetic shared by the loss kernels.

Each function here is exact where its plain form is, and its gradient is
finite (never NaN or inf) at the points where the plain form's is not. The
rule used throughout is the *double* ``where``: the unsafe input is replaced
before the operation, so the unused branch's derivative is never formed from
an invalid value, and the result is selected after it::

    ok = x > 0
    jnp.where(ok, jnp.sqrt(jnp.where(ok, x, 1.0)), 0.0)   # value and gradient 0 at x <= 0

:func:`where_safe` writes that pattern once. The choices of derivative at a
kink are part of each function's contract and have their own tests:
``abs0'(0) = 0``, ``pos'(0) = 1`` (the side ``jnp.abs`` takes), ``safe_sqrt'(0) = 0``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array

__all__ = [
    "abs0",
    "class_iota",
    "logsumexp",
    "masked_logsumexp",
    "pick",
    "pos",
    "safe_div",
    "safe_sqrt",
    "softcap",
    "softplus",
    "where_safe",
]


def where_safe(fn: Callable[[Array], Array], x: Array, ok: Array, fill: float = 0.0, safe: float = 1.0) -> Array:
    """``fn(x)`` where ``ok`` and ``fill`` elsewhere, with ``fn`` evaluated only at
    safe points (``x`` replaced by ``safe`` where not ``ok``): the double ``where``.
    The gradient is ``fn'(x)`` where ``ok`` and exactly 0 elsewhere."""
    inner = fn(jnp.where(ok, x, jnp.asarray(safe, x.dtype)))
    return jnp.where(ok, inner, jnp.asarray(fill, inner.dtype))


def safe_div(num: Array, den: Array) -> Array:
    """``num / den`` with 0 where ``den == 0``; zero gradient there, never NaN."""
    zero = den == 0
    return jnp.where(zero, jnp.zeros_like(num), num / jnp.where(zero, jnp.ones_like(den), den))


def safe_sqrt(x: Array) -> Array:
    """``sqrt(x)`` for ``x >= 0`` with value and gradient 0 at ``x <= 0``."""
    return where_safe(jnp.sqrt, x, x > 0)


@jax.custom_jvp
def abs0(x: Array) -> Array:
    """``|x|`` whose derivative is ``sign(x)``, so 0 at 0 (the subgradient jaxloss
    uses; ``jnp.abs`` gives 1 there). Measured faster than ``max(x, -x)`` or
    ``x * sign(x)`` in value-and-gradient (benchmarks/bench_elementwise.py)."""
    return jnp.abs(x)


@abs0.defjvp
def _abs0_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return jnp.abs(x), jnp.sign(x) * dx


def pos(x: Array) -> Array:
    """``max(x, 0)`` whose derivative at 0 is 1, the same side as ``jnp.abs``'s.

    ``max(x, 0) + log1p(exp(-|x|))`` is smooth only if both kinks at 0 take their
    derivative from the same side: ``jnp.maximum`` (1/2 at 0) with ``jnp.abs`` (1)
    would give a gradient of ``-t`` instead of ``1/2 - t`` at a zero logit."""
    return jnp.where(x >= 0, x, 0.0)


def softplus(x: Array) -> Array:
    """``log(1 + e^x)``, exact for every finite ``x``; derivative ``sigmoid(x)``
    (1/2 at 0, see :func:`pos`)."""
    return pos(x) + jnp.log1p(jnp.exp(-jnp.abs(x)))


def logsumexp(x: Array, axis: int) -> Array:
    r"""``log(sum(exp(x), axis))`` with a stop-gradient shift by the maximum.

    A slice whose entries are all ``-inf`` gives ``-inf`` with a zero (not NaN)
    gradient; ``jax.nn.logsumexp`` gives NaN gradients there.
    """
    m = lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    m = jnp.where(jnp.isfinite(m), m, jnp.zeros_like(m))
    s = jnp.sum(jnp.exp(x - m), axis=axis)
    return where_safe(jnp.log, s, s > 0, fill=-jnp.inf) + jnp.squeeze(m, axis)


def masked_logsumexp(s: Array, mask: Array) -> Array:
    """Row-wise (last axis) log-sum-exp of ``s`` over ``mask``; 0 for an empty
    row. Masked entries contribute exactly 0 to value and gradient."""
    has = jnp.any(mask, axis=-1)
    m = jnp.max(jnp.where(mask, s, -jnp.inf), axis=-1)
    m = lax.stop_gradient(jnp.where(has, m, 0.0))
    e = jnp.exp(jnp.where(mask, s - m[..., None], -jnp.inf))
    total = jnp.sum(e, axis=-1)
    return jnp.where(has, m + where_safe(jnp.log, total, has), 0.0)


def softcap(x: Array, cap: Array) -> Array:
    """``cap * tanh(x / cap)`` for finite ``x`` (Gemma 2's logit soft-cap); ``-inf``
    and ``inf`` are kept, so a masked logit stays masked. Zero gradient there."""
    finite = jnp.isfinite(x)
    return jnp.where(finite, cap * jnp.tanh(jnp.where(finite, x, 0.0) / cap), x)


def class_iota(shape, axis):
    """An int32 iota of ``shape`` along ``axis`` (class indices, fused by XLA)."""
    return jax.lax.broadcasted_iota(jnp.int32, shape, axis)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def pick(x, index, axis):
    """``x`` at class ``index`` (in range) along ``axis``: a gather whose
    derivative is a compare-and-select (fused by XLA), not a scatter."""
    return jnp.squeeze(
        jnp.take_along_axis(x, jnp.expand_dims(index, axis), axis=axis, mode="promise_in_bounds"), axis
    )


@pick.defjvp
def _pick_jvp(axis, primals, tangents):
    x, index = primals
    dx, _ = tangents
    hit = class_iota(x.shape, axis) == jnp.expand_dims(index, axis)
    return pick(x, index, axis), jnp.sum(jnp.where(hit, dx, jnp.zeros_like(dx)), axis=axis)
