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
