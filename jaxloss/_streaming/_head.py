"""The cross-entropy head on the streaming engine, shared by every loss with a
large softmax head (:func:`jaxloss.linear_cross_entropy`, ArcFace/CosFace):
the per-token cross-entropy from the streamed statistics, the combination of
statistics across a vocabulary split over devices, the choice of route and of
chunk sizes, ``return_stats``, and the trace-time checks those heads share."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._checks import check_labels, is_concrete
from .._reduce import Mean, Stream, Unreduced, compute_dtype
from .._sharding import check_axis_name
from ._engine import Config, explicit_sharding, fused_sum, outer_axes, split_stats, token_chunk_size

__all__ = [
    "PRECISIONS", "check_head", "check_nonnegative_labels", "default_chunk_size", "head_cross_entropy",
    "sharded_axes",
]

_MAX_CHUNK = 8192
_MIN_CHUNK = 128
_CHUNK_ELEMENTS = 1 << 25  # N * chunk: 128 MiB of float32 per [N, chunk] block


def default_chunk_size(num_tokens: int, vocab_size: int) -> int:
    """The vocabulary chunk :func:`linear_cross_entropy` uses when ``chunk_size=None``.

    The largest power of two ``c <= 8192`` with ``num_tokens * c <= 2**25`` (one
    ``[N, c]`` float32 block is at most 128 MiB), at least 128, and at most
    ``vocab_size``. For example 4096 at ``N = 8192`` and 8192 at ``N <= 4096``.

    Example:
      >>> from jaxloss import default_chunk_size
      >>> default_chunk_size(8192, 256000), default_chunk_size(512, 32000), default_chunk_size(6, 37)
      (4096, 8192, 37)
    """
    n = max(int(num_tokens), 1)
    c = _MAX_CHUNK
    while c > _MIN_CHUNK and n * c > _CHUNK_ELEMENTS:
        c //= 2
    return max(1, min(c, int(vocab_size)))



def sharded_axes(x, dim):
    """Mesh axes an explicitly sharded ``x`` is split over along ``dim`` (empty tuple
    when it is not, or outside explicit meshes)."""
    sharding = explicit_sharding(x)
    spec = getattr(sharding, "spec", None)
    if spec is None or len(spec) <= dim or spec[dim] is None:
        return ()
    return tuple(spec[dim]) if isinstance(spec[dim], tuple) else (spec[dim],)


class _CrossEntropyRows(NamedTuple):
    """Per-token cross-entropy from the streamed statistics:
    ``w_y [(1 - eps)(lse - z_y) + zl lse^2] + eps / V (sum_c w_c lse - sum_c w_c z_c)``
    (``w = 1`` without class weights); NaN for an out-of-range label, 0 for an
    ignored one. Static (hashable), so both routes can take it."""

    vocab: int
    ignore_index: int | None

    def __call__(self, lse, zy, sz, labels, hp):
        eps, zl, cw = hp
        # A NaN statistic (a NaN hidden state, masked or not) gives a NaN loss
        # and no cotangent: the where below never multiplies 0 by NaN.
        bad = jnp.isnan(lse) | jnp.isnan(zy) | jnp.isnan(sz)
        lse, zy, sz = (jnp.where(bad, jnp.zeros_like(x), x) for x in (lse, zy, sz))
        in_range = (labels >= 0) & (labels < self.vocab) & ~bad
        main = (1.0 - eps) * (lse - zy) + zl * lse * lse
        total = self.vocab if cw is None else jnp.sum(cw)
        if cw is not None:
            main = jnp.take(cw, jnp.where(in_range, labels, 0)) * main
        smooth = jnp.where(eps > 0, (eps / self.vocab) * (total * lse - sz), 0)
        value = jnp.where(in_range, main + smooth, jnp.nan)
        if self.ignore_index is not None:
            value = jnp.where(labels == self.ignore_index, jnp.zeros_like(value), value)
        return value


def _summarize(per_element, counted):
    """``return_stats``: the per-token log-sum-exp, and the mean of ``lse**2`` and
    of argmax hits over the counted tokens (no gradients)."""
    lse = lax.stop_gradient(per_element["lse"])
    n = jnp.maximum(jnp.sum(counted), 1).astype(lse.dtype)
    return {
        "lse": lse,
        "z_loss": jnp.sum(jnp.where(counted, lse * lse, 0)) / n,
        "accuracy": jnp.sum(jnp.where(counted, per_element["correct"], False)).astype(lse.dtype) / n,
    }


PRECISIONS = (None, "default", "high", "highest", "bfloat16", "tensorfloat32", "float32")


def head_cross_entropy(hidden, params, labels, transform, theta, hp, *, smooth_weights=None, ignore_index=None,
                       chunk_size=None, token_chunk_size=None, precision=None, axis_name=None, return_stats=False,
                       columns_per_class=1):
    """The cross-entropy of a streamed head ``z = transform(theta, hidden @ params[0].T, ...)``
    (see ``_streaming``), as a kernel result: per-token values by vocabulary
    chunks, the gradients-in-the-forward-pass route for scalar reductions where
    :func:`_fused_rows` allows it, ignored labels and PyTorch's class-weighted
    mean (``hp = (label_smoothing, z_loss, class_weights)``), ``return_stats``.
    ``params[0]`` is ``[V, D]`` or ``[V, K, D]`` (``columns_per_class = K``
    products per class). Shared by every loss with a large softmax head."""
    weight = params[0]
    lead = labels.shape
    # Under plain jit with the vocabulary split over mesh axes (axis_name naming
    # them, or the weight's rows split on an explicit mesh): a shard_map of our own.
    outer = outer_axes(weight, axis_name)
    n_split = 1
    if outer:
        mesh = jax.sharding.get_abstract_mesh()
        n_split = int(np.prod([mesh.shape[a] for a in outer]))
        if weight.shape[0] % n_split:
            raise ValueError(f"the vocabulary ({weight.shape[0]} rows of weight) must divide evenly over mesh axes "
                             f"{outer} ({n_split} devices)")
        if hp[2] is not None:
            raise ValueError("class_weights with a vocabulary split over mesh axes is not supported (each device "
                             "would need the weights of the whole vocabulary); weight the tokens with "
                             "weights=class_weights[labels] instead")
        axis_name = outer
    v_local = weight.shape[0] // n_split
    h2 = hidden.reshape((-1, hidden.shape[-1]))
    y = labels.reshape((-1,)).astype(jnp.int32)
    acc = compute_dtype(hidden, weight)
    vocab = v_local if axis_name is None else v_local * (n_split if outer else lax.axis_size(axis_name))
    rows = _CrossEntropyRows(vocab, ignore_index)
    if chunk_size is None:
        chunk = max(1, default_chunk_size(h2.shape[0] * columns_per_class, v_local))
    else:
        chunk = min(int(chunk_size), v_local)
    cfg = Config(chunk, precision, acc)
    if outer:
        stats = split_stats(cfg, transform, theta, h2, params, smooth_weights, y, outer=outer)
    else:
        stats = split_stats(cfg, transform, theta, h2, params, smooth_weights, y, axis_name)
    value = rows(stats.lse, stats.target, stats.smooth, y, hp)
    per_token = {"lse": stats.lse.reshape(lead), "correct": (stats.argmax == y).reshape(lead)}

    fused = None
    n_tok = _fused_rows(h2.shape[0], v_local * columns_per_class, acc, h2, params, chunk_size, token_chunk_size,
                        axis_name)
    if n_tok:
        cfg = Config(n_tok, precision, acc)

        def fused(coef):
            total, lse, am = fused_sum(cfg, transform, rows, theta, hp, h2, params, smooth_weights, y,
                                       coef.reshape((-1,)))
            return total, {"lse": lax.stop_gradient(lse).reshape(lead), "correct": (am == y).reshape(lead)}

    keep = None if ignore_index is None else (labels != ignore_index).astype(value.dtype)
    count = None
    class_weights = hp[2]
    if class_weights is not None:
        w_y = jnp.take(class_weights, jnp.clip(y, 0, v_local - 1)).reshape(lead)
        keep = jnp.ones(lead, value.dtype) if keep is None else keep
        count = keep * w_y
    stats = (per_token, _summarize) if return_stats else (None, None)
    return Unreduced(value.reshape(lead), keep, None if count is None else Mean(count=count), Stream(fused, *stats))


def _fused_rows(n, v, acc, hidden, params, chunk_size, token_chunk, axis_name) -> int:
    """Tokens per chunk of the route that forms the gradients in the forward pass,
    or 0 to stream over vocabulary chunks instead. Taken when the caller asks
    (``token_chunk_size``) or, by default, when the weight is in the accumulation
    dtype (a low-precision weight would need a float32 ``[V, D]`` accumulator),
    no vocabulary chunking or mesh axis is asked for, the tokens are not sharded
    on an explicit mesh, and a block of at least 32
    tokens by the whole vocabulary fits in 16 MiB of float32 (``V <= 131072``)."""
    if n == 0 or axis_name is not None or chunk_size is not None:
        return 0
    if explicit_sharding(hidden) is not None:
        return 0  # token chunks of a batch sharded on an explicit mesh: the vocabulary route instead
    if token_chunk is not None:
        return min(int(token_chunk), n)
    if any(jnp.result_type(p) != acc for p in params):
        return 0
    rows = token_chunk_size(n, v)
    return rows if rows >= min(32, n) else 0


def check_nonnegative_labels(name, labels, ignore_index):
    """With a sharded vocabulary only the lower bound can be checked up front."""
    if is_concrete(labels):
        lab = np.asarray(labels)
        bad = (lab < 0) if ignore_index is None else (lab < 0) & (lab != ignore_index)
        if bad.any():
            raise ValueError(
                f"{name}: labels must be >= 0"
                + ("" if ignore_index is None else f" or equal ignore_index={ignore_index}")
                + f", got {lab[bad][:5].tolist()}"
            )


def check_head(name, hidden, weight, labels, *, hidden_arg, ranks, shapes, transpose, empty, sharded, precision,
               axis_name, ignore_index=None, params=()):
    """The trace-time checks every streamed head shares, worded for its loss:
    ``hidden [..., D]``, ``weight`` of one of ``ranks`` (described by
    ``shapes``) sharing ``D``, at least one row (``empty`` otherwise), labels of
    ``hidden``'s shape without ``D``, a valid ``precision``, ``params`` split over
    the vocabulary like ``weight`` on an explicit mesh (``sharded(arg, axes,
    weight_axes)`` words that error), and labels in range (only ``>= 0`` with ``axis_name``: the
    vocabulary is then split and the upper bound is global)."""
    if hidden.ndim < 1:
        raise ValueError(f"{name}: {hidden_arg} must have shape [..., D], got a scalar")
    if weight.ndim not in ranks:
        raise ValueError(f"{name}: weight must have shape {shapes}, got {tuple(weight.shape)}")
    if weight.shape[-1] != hidden.shape[-1]:
        raise ValueError(
            f"{name}: {hidden_arg} {tuple(hidden.shape)} and weight {tuple(weight.shape)} must share the last "
            f"(feature) dimension D; weight is {transpose}"
        )
    if weight.shape[0] == 0 or (weight.ndim == 3 and weight.shape[1] == 0):
        raise ValueError(f"{name}: {empty(tuple(weight.shape))}")
    if tuple(labels.shape) != tuple(hidden.shape[:-1]):
        raise ValueError(
            f"{name}: labels {tuple(labels.shape)} must have the shape of {hidden_arg} {tuple(hidden.shape)} "
            f"without its last axis, i.e. {tuple(hidden.shape[:-1])}"
        )
    if not (isinstance(precision, (lax.Precision, tuple)) or precision in PRECISIONS):
        raise ValueError(
            f"{name}: precision must be None, a jax.lax.Precision or one of {PRECISIONS[1:]}, got {precision!r}"
        )
    # A weight whose rows are split on an explicit mesh is streamed by a shard_map of the
    # head's own (outer_axes); the arrays sliced with it must be split the same way.
    split_w = sharded_axes(weight, 0)
    for arg, x in params:
        if x is None or not hasattr(x, "dtype"):
            continue
        split = sharded_axes(x, 0)
        if split != split_w:
            raise ValueError(f"{name}: {sharded(arg, split, split_w)}")
    if axis_name is None:
        check_labels(name, labels, weight.shape[0], ignore_index)
    else:
        check_nonnegative_labels(name, labels, ignore_index)
    check_axis_name(name, axis_name, mesh_ok=True)
