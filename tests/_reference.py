"""NumPy float64 references shared by the family tests (independent of jaxloss)."""

from __future__ import annotations

import numpy as np


def reduce_ref(values, reduction, weights=None, where=None):
    """The contract's reduction rule, written independently in NumPy."""
    values = np.asarray(values, np.float64)
    w = np.ones_like(values) if weights is None else np.broadcast_to(np.asarray(weights, np.float64), values.shape)
    m = np.ones(values.shape, bool) if where is None else np.broadcast_to(np.asarray(where, bool), values.shape)
    m = m & (w != 0)
    contrib = np.where(m, w * np.where(m, values, 0.0), 0.0)
    if reduction == "none":
        return contrib
    if reduction == "sum":
        return contrib.sum()
    den = np.where(m, w, 0.0).sum()
    return 0.0 if den == 0 else contrib.sum() / den


def assert_close(actual, expected, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64), rtol=rtol, atol=atol)
