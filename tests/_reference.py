"""NumPy float64 references and checks shared by the family tests (independent of jaxloss)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
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


def central_diff(f, x, h=1e-6, *, elementwise=False):
    """Central differences ``(f(x + h e_i) - f(x - h e_i)) / 2h`` of a reference.

    ``f`` maps an array shaped like ``x`` to a number: the result is its
    gradient at ``x`` in float64, one entry per entry of ``x``. With
    ``elementwise=True``, ``f`` acts entry by entry (``f(x)[i]`` depends on
    ``x[i]`` alone) and every entry is differenced at once: the result is
    ``f``'s derivative at each entry, in the type of ``f``'s values (``x`` and
    ``h`` may be any numbers with arithmetic, ``decimal.Decimal`` included).
    """
    if elementwise:
        return (f(x + h) - f(x - h)) / (2 * h)
    x = np.asarray(x, np.float64)
    g = np.zeros(x.shape)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        g[idx] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def f32(x):
    """The float32 values jaxloss sees, back in float64 for the references."""
    return np.asarray(x, np.float32).astype(np.float64)


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def softplus(x):
    return np.logaddexp(0.0, x)


def log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def check_reductions(fn, args, expected, *, weights=None, where=None, rtol=2e-5, atol=2e-6, counted=None,
                     **options):
    """``fn`` against the reference per-example values: ``"none"`` as is, and
    ``"mean"``/``"sum"`` with the weights and the mask together (the reduction
    rule, ``reduce_ref``; the registry tests cover each reduction alone)."""
    jargs = [jnp.asarray(a) for a in args]
    assert_close(fn(*jargs, **options, reduction="none"), reduce_ref(expected, "none", counted=counted),
                 rtol=rtol, atol=atol)
    extra = {k: v for k, v in (("weights", weights), ("where", where)) if v is not None}
    for reduction in ("mean", "sum"):
        out = fn(*jargs, **options, reduction=reduction, **{k: jnp.asarray(v) for k, v in extra.items()})
        ref = reduce_ref(expected, reduction, extra.get("weights"), extra.get("where"), counted=counted)
        assert_close(out, ref, rtol=rtol, atol=atol)


def grad_of(fn, args, i=0, **options):
    """``d fn(*args, reduction="sum") / d args[i]`` in float64."""
    return np.asarray(jax.grad(lambda x: fn(*[jnp.asarray(a) for a in args[:i]], x,
                                            *[jnp.asarray(a) for a in args[i + 1:]],
                                            reduction="sum", **options))(jnp.asarray(args[i])), np.float64)
