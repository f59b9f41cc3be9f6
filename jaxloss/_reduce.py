"""The kernel's result and the one safe reduction every loss shares.

A kernel returns its unreduced loss, or an :class:`Unreduced` that adds what
the reduction needs to know: an intrinsic weight (class weights; 0 for an
ignored label), a :class:`Mean` rule when ``"mean"`` is not the weighted mean
of the values, and a :class:`Stream` when the streaming head can form the
gradients of a scalar reduction in its forward pass. :func:`reduce_loss` is the
one reduction: the four reductions, ``weights`` and ``where`` with masked
entries contributing exactly 0 (even inf or NaN).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._numerics import safe_div

__all__ = ["REDUCTIONS", "Mean", "Reduction", "Stream", "Unreduced", "check_reduction", "compute_dtype", "counted",
           "reduce_loss", "reduce_parts"]

Array = jax.Array
Reduction = Literal["mean", "sum", "none", "sum_and_weight"]
REDUCTIONS = ("mean", "sum", "none", "sum_and_weight")


def compute_dtype(*arrays: Array) -> jnp.dtype:
    """The dtype a loss is computed and returned in: float32, or float64 when an
    input is float64 (x64 enabled). bf16/f16 inputs are computed in float32."""
    dts = [jnp.promote_types(a.dtype, jnp.float32) for a in arrays if jnp.issubdtype(a.dtype, jnp.floating)]
    return functools.reduce(jnp.promote_types, dts, jnp.dtype(jnp.float32))


class Mean(NamedTuple):
    """The rule of a ``"mean"`` that is not ``sum(w l) / sum(w)``.

    Attributes:
      count: replaces the weight in the denominator (broadcastable to the loss):
        the number of pairs an anchor's sum covers, or PyTorch's class-weighted
        mean with label smoothing, whose value is not a multiple of its weight.
      scale: a per-entry factor on the numerator of ``"mean"`` and
        ``"sum_and_weight"`` only (``"sum"`` and ``"none"`` do not see it): CTC's
        ``nll / max(label_length, 1)`` averaged over sequences.
    """

    count: Array | None = None
    scale: Array | None = None


class Stream(NamedTuple):
    """The streaming head's own route to a scalar reduction, and its side results.

    Attributes:
      fused: ``fused(coef) -> (total, per_element)`` computing ``sum(coef * loss)``
        with the gradients formed in the forward pass, once the per-entry
        coefficients of the reduction are known (0 for entries not counted,
        whose loss, even NaN, must not reach the total or the gradients). Used
        for ``"mean"``, ``"sum"`` and ``"sum_and_weight"``; the unreduced loss is
        then not evaluated (XLA drops it). ``per_element`` replaces the one below.
        None: the reduction sums the unreduced loss.
      per_element: a pytree of arrays shaped like the loss (the per-token
        log-sum-exp), for ``summarize``.
      summarize: ``summarize(per_element, counted) -> stats`` (``counted`` the
        boolean mask of the entries the reduction counts); the loss then returns
        ``(loss, stats)``. None: the loss returns the loss alone.
    """

    fused: Callable[[Array], tuple[Array, Any]] | None = None
    per_element: Any = None
    summarize: Callable[[Any, Array], Any] | None = None


class Unreduced(NamedTuple):
    """What a kernel may return instead of a bare array of losses.

    Attributes:
      loss: the unreduced loss (per element, per example, per score or per anchor).
      weight: intrinsic weight broadcastable to ``loss``, multiplying it in the
        value and in the ``"mean"`` denominator (a class weight; 0 for an
        ignored label, which also leaves the mean).
      mean: a :class:`Mean` rule, when ``"mean"`` is not the weighted mean.
      stream: a :class:`Stream`, produced only by the streaming head.
    """

    loss: Array
    weight: Array | None = None
    mean: Mean | None = None
    stream: Stream | None = None


def counted(shape: tuple, weights: Array | None, where: Array | None) -> Array | None:
    """The entries a reduction counts: ``where`` True and weight non-zero (None: all)."""
    out = None if where is None else jnp.broadcast_to(where, shape)
    if weights is not None:
        nonzero = jnp.broadcast_to(weights, shape) != 0
        out = nonzero if out is None else out & nonzero
    return out


def reduce_loss(
    values: Array,
    *,
    reduction: str,
    weights: Array | None = None,
    where: Array | None = None,
    count: Array | None = None,
    fused: Callable[[Array], tuple[Array, Any]] | None = None,
) -> Array | tuple[Array, Array]:
    """Weight, mask and reduce an unreduced loss.

    With ``w`` the weights (1 when not given) and the *counted* entries those
    with ``where`` True and ``w != 0``:

    * ``"none"``: ``w * l``, exactly 0 where not counted (even if ``l`` is inf/NaN);
    * ``"sum"``: ``s = sum(w * l)`` over counted entries;
    * ``"sum_and_weight"``: ``(s, d)`` with ``d = sum(w)`` (or ``sum(count * w)``)
      over counted entries, so that means over slices combine exactly as
      ``sum(s) / sum(d)``;
    * ``"mean"``: ``s / d``, 0 when nothing is counted.

    ``fused`` (see :class:`Stream`) computes ``s`` from the per-entry
    coefficients ``w`` (0 where not counted) instead of ``values``.
    """
    return reduce_parts(values, reduction, weights, where, count, fused)[0]


def reduce_parts(values, reduction, weights, where, count, fused):
    """``(reduced, per_element from fused or None)``."""
    shape, dtype = values.shape, values.dtype
    w = None if weights is None else jnp.broadcast_to(weights.astype(dtype), shape)
    kept = counted(shape, w, where)
    if reduction == "none":
        weighted = values if w is None else w * values
        if kept is not None:
            weighted = jnp.where(kept, weighted, jnp.zeros_like(weighted))
        return weighted, None
    aux = None
    if fused is not None:
        coef = jnp.ones(shape, dtype) if w is None else w
        if kept is not None:
            coef = jnp.where(kept, coef, jnp.zeros_like(coef))
        total, aux = fused(coef)
        total = total.astype(dtype)
    elif kept is None and w is None:
        total = jnp.sum(values)
    else:
        weighted = values if w is None else w * values
        total = jnp.sum(weighted if kept is None else jnp.where(kept, weighted, jnp.zeros_like(weighted)))
    if kept is None and w is None and count is None:
        den = jnp.asarray(np.prod(shape, dtype=np.int64), dtype)
    else:
        per = jnp.ones(shape, dtype) if w is None else w
        if count is not None:
            per = jnp.broadcast_to(count.astype(dtype), shape) * (1 if weights is None else per)
        den = jnp.sum(per if kept is None else jnp.where(kept, per, 0))
    if reduction == "sum":
        return total, aux
    if reduction == "sum_and_weight":
        return (total, den), aux
    return safe_div(total, den), aux


def check_reduction(loss_name: str, reduction: Any) -> str:
    """The reduction, with ``None`` read as ``"none"``; ``ValueError`` listing the
    choices otherwise."""
    if reduction is None:
        return "none"
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        listed = ", ".join(map(repr, REDUCTIONS))
        raise ValueError(f"{loss_name}: reduction must be one of {listed} (or None), got {reduction!r}")
    return reduction
