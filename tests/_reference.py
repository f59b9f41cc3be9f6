"""NumPy float64 references shared by the family tests (independent of jaxloss)."""

from __future__ import annotations

import numpy as np


def reduce_ref(values, reduction, weights=None, where=None, *, counted=None, count=None):
    """The contract's reduction rule, written independently in NumPy.

    ``counted``: entries the loss itself counts (False for an ignored label);
    ``count``: the ``"mean"`` denominator's weight per entry (default 1:
    the plain weighted mean; a class weight or a pair count for losses whose
    mean divides by those).
    """
    values = np.asarray(values, np.float64)
    w = np.ones_like(values) if weights is None else np.broadcast_to(np.asarray(weights, np.float64), values.shape)
    m = np.ones(values.shape, bool) if where is None else np.broadcast_to(np.asarray(where, bool), values.shape)
    if counted is not None:
        m = m & np.broadcast_to(np.asarray(counted, bool), values.shape)
    m = m & (w != 0)
    contrib = np.where(m, w * np.where(m, values, 0.0), 0.0)
    if reduction == "none":
        return contrib
    if reduction == "sum":
        return contrib.sum()
    per = 1.0 if count is None else np.broadcast_to(np.asarray(count, np.float64), values.shape)
    den = np.where(m, w * per, 0.0).sum()
    return 0.0 if den == 0 else contrib.sum() / den


def assert_close(actual, expected, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64), rtol=rtol, atol=atol)


REDUCTIONS = ("mean", "sum", "none")


def extras(weights, where):
    """The per-example arguments a reference test runs with, by name: none,
    ``weights`` alone, ``where`` alone."""
    return {"plain": {}, "weights": {"weights": weights}, "where": {"where": where}}


def reduce_ref_grad(shape, reduction, weights=None, where=None, *, counted=None, count=None):
    """The derivative of :func:`reduce_ref` in each entry of ``values`` (of ``shape``).

    The rule is linear in the values, so for ``"sum"`` and ``"mean"`` the
    derivative in entry ``i`` is the reduction of the ``i``-th unit array; for
    ``"none"`` it is ``d out[i] / d values[i]`` (the reduction of an all-ones array).
    """
    kwargs = {"counted": counted, "count": count}
    if reduction == "none":
        return reduce_ref(np.ones(shape), "none", weights, where, **kwargs)
    n = int(np.prod(shape))
    units = np.eye(n).reshape((n, *shape))
    return np.array([reduce_ref(u, reduction, weights, where, **kwargs) for u in units], np.float64).reshape(shape)
