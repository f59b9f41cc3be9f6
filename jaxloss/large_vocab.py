r"""Cross-entropy for large vocabularies and vocabulary-sharded logits.

A language-model head turns hidden states ``[N, D]`` into logits ``[N, V]``; at
``N = 8192`` tokens and ``V = 256000`` that is 8 GB of float32 before the
backward pass doubles it. This module never builds that array:

* :func:`linear_cross_entropy` fuses the projection ``hidden @ weight.T (+ bias)``
  with the cross-entropy. The forward pass streams a log-sum-exp over chunks of
  the vocabulary inside one ``lax.fori_loop`` (so compile time does not depend on
  the number of chunks); a ``jax.custom_vjp`` backward pass recomputes each
  chunk's logits and accumulates the gradients of ``hidden``, ``weight`` and
  ``bias`` chunk by chunk. Peak temporary memory is a few ``[N, chunk]`` blocks.
  Inside ``jax.shard_map`` with ``axis_name=``, ``weight`` is a vocabulary
  slice and the per-token statistics are combined across devices, so tensor
  parallelism needs neither the logits nor a gathered weight.
* :func:`vocab_parallel_cross_entropy` is the cross-entropy for use inside
  ``jax.shard_map`` when each device holds a contiguous slice of the vocabulary:
  three small all-reduces (max, target logit, sum of exponentials) instead of an
  all-gather of the logits.

Both follow :func:`jaxloss.sparse_cross_entropy`'s semantics (label smoothing,
z-loss, ``ignore_index``, reduction, weights, where); see ``docs/large_vocab.md``
for data-parallel and tensor-parallel training steps.

``vocab_parallel_cross_entropy`` only runs under a named mesh axis, so it is not
in :data:`jaxloss.REGISTRY` (whose shared checks call every loss on plain
arrays); the multi-device tests cover it.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._checks import (
    ANY,
    FLAG,
    NONNEGATIVE,
    OPTIONAL_INT,
    POSITIVE,
    POSITIVE_INT_OR_NONE,
    UNIT_HALF_OPEN,
    check_class_vector,
    check_labels,
    is_concrete,
)
from ._core import Aux, Example, Layout, Unreduced, builtin, compute_dtype, loss
from ._numerics import softcap
from ._sharding import to_varying
from ._streaming import Config, Stats, _explicit_sharding, fused_sum, local_stats, token_chunk_size

__all__ = [
    "linear_cross_entropy", "LinearCrossEntropy",
    "vocab_parallel_cross_entropy", "VocabParallelCrossEntropy",
    "default_chunk_size",
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


# ---------------------------------------------------------------------------
# The linear head on the streaming engine (jaxloss/_streaming.py)
# ---------------------------------------------------------------------------


def _sharded_axes(x, dim):
    """Mesh axes an explicitly sharded ``x`` is split over along ``dim`` (empty tuple
    when it is not, or outside explicit meshes)."""
    sharding = _explicit_sharding(x)
    spec = getattr(sharding, "spec", None)
    if spec is None or len(spec) <= dim or spec[dim] is None:
        return ()
    return tuple(spec[dim]) if isinstance(spec[dim], tuple) else (spec[dim],)


def _linear_transform(cap, raw, chunk, cols, labels):
    """``z = softcap(raw + bias)`` for one chunk (``chunk = (weight[, bias])``)."""
    z = raw if len(chunk) == 1 else raw + chunk[1].astype(raw.dtype)[None, :]
    return z if cap is None else cap * jnp.tanh(z / cap)


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


def _global_stats(stats, axis_name, v_local):
    """Combine the per-device statistics of a vocabulary split over ``axis_name``:
    one ``pmax`` and one ``psum`` of ``[N]`` vectors (and two small ones for
    the argmax, whose ties go to the lowest global column)."""
    if axis_name is None:
        return stats
    lse, zy, sz, top, am = stats
    m = lax.pmax(lax.stop_gradient(lse), axis_name)
    e, zy, sz = lax.psum((jnp.exp(lse - m), zy, sz), axis_name)
    top_all = lax.pmax(lax.stop_gradient(top), axis_name)
    offset = lax.axis_index(axis_name) * v_local
    cand = jnp.where(top == top_all, am + offset, jnp.iinfo(jnp.int32).max)
    return Stats(m + jnp.log(e), zy, sz, top_all, lax.pmin(cand, axis_name))


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


# ---------------------------------------------------------------------------
# linear_cross_entropy: the public loss
# ---------------------------------------------------------------------------


def _lce_sample(rng: np.random.Generator) -> tuple:
    hidden = rng.normal(size=(6, 8)).astype(np.float32)
    weight = (rng.normal(size=(37, 8)) * 0.5).astype(np.float32)
    labels = rng.integers(0, 37, size=(6,)).astype(np.int32)
    return hidden, weight, labels


_PRECISIONS = (None, "default", "high", "highest", "bfloat16", "tensorfloat32", "float32")


def _lce_validate(name, hidden, weight, labels, *, bias, class_weights, ignore_index, chunk_size, token_chunk_size,
                  precision, axis_name, **_):
    if hidden.ndim < 1:
        raise ValueError(f"{name}: hidden must have shape [..., D], got a scalar")
    if weight.ndim != 2:
        raise ValueError(f"{name}: weight must have shape [V, D], got {tuple(weight.shape)}")
    if weight.shape[1] != hidden.shape[-1]:
        raise ValueError(
            f"{name}: hidden {tuple(hidden.shape)} and weight {tuple(weight.shape)} must share the last "
            f"(feature) dimension D; weight is [V, D] (transpose a [D, V] kernel)"
        )
    if weight.shape[0] == 0:
        raise ValueError(f"{name}: weight must have at least one row (vocabulary of size 0)")
    if tuple(labels.shape) != tuple(hidden.shape[:-1]):
        raise ValueError(
            f"{name}: labels {tuple(labels.shape)} must have the shape of hidden {tuple(hidden.shape)} "
            f"without its last axis, i.e. {tuple(hidden.shape[:-1])}"
        )
    if bias is not None and tuple(jnp.shape(bias)) != (weight.shape[0],):
        raise ValueError(f"{name}: bias must have shape ({weight.shape[0]},) = [V], got {tuple(jnp.shape(bias))}")
    if bias is not None and not jnp.issubdtype(jnp.result_type(bias), jnp.floating):
        raise TypeError(f"{name}: bias must be a floating-point array, got dtype {jnp.result_type(bias)}")
    check_class_vector(name, "class_weights", class_weights, weight.shape[0])
    if class_weights is not None and axis_name is not None:
        raise ValueError(
            f"{name}: class_weights with axis_name is not supported (each device would need the weights of "
            f"the whole vocabulary); weight the tokens with weights=class_weights[labels] instead"
        )
    if token_chunk_size is not None and (chunk_size is not None or axis_name is not None):
        raise ValueError(
            f"{name}: token_chunk_size selects the route that forms the gradients in the forward pass over "
            f"chunks of tokens with the whole vocabulary; it cannot be combined with "
            f"{'chunk_size' if chunk_size is not None else 'axis_name'} (vocabulary chunks)"
        )
    if not (isinstance(precision, (lax.Precision, tuple)) or precision in _PRECISIONS):
        raise ValueError(
            f"{name}: precision must be None, a jax.lax.Precision or one of {_PRECISIONS[1:]}, got {precision!r}"
        )
    for arg, x in (("weight", weight), ("bias", bias)):
        split = _sharded_axes(x, 0) if x is not None and hasattr(x, "dtype") else ()
        if split:
            raise ValueError(
                f"{name}: {arg} is sharded over the vocabulary along mesh axes {split} of an explicit mesh; "
                f"the chunked loop would have to gather it. Call {name} inside jax.shard_map with "
                f"axis_name={split[0] if len(split) == 1 else split!r} (no gather; see docs/large_vocab.md), "
                f"or reshard {arg} to be replicated along its first axis (jax.sharding.reshard)"
            )
    if axis_name is None:
        check_labels(name, labels, weight.shape[0], ignore_index)
    else:
        _check_nonnegative_labels(name, labels, ignore_index)


@builtin("large_vocab")(
    static={"ignore_index": OPTIONAL_INT, "chunk_size": POSITIVE_INT_OR_NONE,
            "token_chunk_size": POSITIVE_INT_OR_NONE, "precision": ANY, "axis_name": ANY, "return_stats": FLAG},
    checks={"label_smoothing": UNIT_HALF_OPEN, "z_loss": NONNEGATIVE, "logit_softcap": POSITIVE,
            "class_weights": NONNEGATIVE},
    layout=Layout(labels=("labels",), same_shape=(), native=("hidden", "weight")),
    validate=_lce_validate,
    example=Example(_lce_sample, sweep=("label_smoothing", (0.0, 0.05, 0.1, 0.2)), differentiable=(0, 1),
                    grad_order=1),
)
def linear_cross_entropy(
    hidden,
    weight,
    labels,
    *,
    bias=None,
    class_weights=None,
    ignore_index=None,
    label_smoothing=0.0,
    z_loss=0.0,
    logit_softcap=None,
    chunk_size=None,
    token_chunk_size=None,
    precision=None,
    axis_name=None,
    return_stats=False,
):
    r"""Cross-entropy of a linear head, without materialising the logits.

    With logits :math:`z = s(h W^\top + b)` for a hidden state :math:`h`, where
    :math:`s(x) = c \tanh(x / c)` is the optional soft-cap,
    :math:`\operatorname{lse} = \log \sum_{j=1}^{V} e^{z_j}` and class weights
    :math:`w_j` (1 when not given), the per-token loss is

    .. math::
       \ell = w_y \left[(1 - \epsilon)(\operatorname{lse} - z_y)
            + \lambda_z \operatorname{lse}^2\right]
            + \frac{\epsilon}{V}\sum_{j=1}^{V} w_j (\operatorname{lse} - z_j)

    i.e. exactly ``sparse_cross_entropy(s(hidden @ weight.T + bias), labels,
    class_weights=w, label_smoothing=eps, z_loss=lambda_z, ignore_index=...)``
    in value and in the gradients of ``hidden``, ``weight`` and ``bias``
    (PyTorch's ``F.linear_cross_entropy`` / ``cross_entropy(..., weight=w)``:
    ``"mean"`` divides by :math:`\sum_i w_{y_i}` over the counted tokens). The
    ``[N, V]`` logits are never built, in the forward or the backward pass.

    Two routes, both exact, chosen by the arguments:

    * **Gradients in the forward pass** (the default for ``"mean"``, ``"sum"``
      and ``"sum_and_weight"`` when ``weight`` is float32/float64, ``V <=
      131072`` and neither ``chunk_size`` nor ``axis_name`` is given; or
      whenever ``token_chunk_size`` is given): one ``lax.fori_loop`` over
      chunks of tokens, each meeting the whole vocabulary, so its log-sum-exp
      is exact at once and the gradients of ``hidden``, ``weight`` and ``bias``
      are formed right there; the backward pass only scales them. Three matrix
      products per token, as the naive program, and temporary memory of a few
      ``[token_chunk_size, V]`` blocks (``benchmarks/bench_large_vocab.py``:
      under 10% of the naive program at ``N=4096, V=32768``).
    * **Vocabulary chunks** (``"none"``, ``axis_name``, ``chunk_size``, a
      bf16/f16 weight or a larger vocabulary): the forward pass streams an
      online log-sum-exp (with the weighted sum of logits for label smoothing,
      the target logit and the argmax) over vocabulary chunks; a
      ``jax.custom_vjp`` backward pass recomputes each chunk, with
      :math:`\partial \ell / \partial z_j = (w_y(1 + 2\lambda_z
      \operatorname{lse}) + \epsilon\bar w) p_j - w_y(1 - \epsilon)[j = y] -
      \epsilon w_j / V` (:math:`\bar w = \sum_j w_j / V`). Temporary memory is
      a few ``[N, chunk_size]`` blocks plus ``[N, D]``.

    Either way the compiled program is the same size for any number of chunks,
    and ``V`` (or ``N``) need not be a multiple of the chunk: the last chunk is
    shifted to end at the array's end and its overlap is masked, so nothing is
    padded or copied.

    Under ``jit`` with the batch sharded (``NamedSharding``) it needs nothing
    special; with ``weight`` sharded over the vocabulary GSPMD gives the same
    result but gathers ``weight`` -- for tensor parallelism without that, call
    it inside ``shard_map`` with ``axis_name`` (see ``docs/large_vocab.md``).

    Matrix products accumulate in float32 (``preferred_element_type``), float64
    for float64 inputs; a bf16 ``weight`` is read chunk by chunk in bf16 (on the
    CPU backend XLA converts the whole bf16 weight to float32 before any
    dynamically sliced loop; TPU and GPU slice bf16 natively). Forward-mode
    differentiation (``jax.jvp``, ``jax.hessian``) is not supported (a
    ``custom_vjp``); reverse mode is.

    Args:
      hidden: ``[..., D]`` hidden states (floating point).
      weight: ``[V, D]`` output embedding (the layout of a tied embedding table;
        pass ``kernel.T`` for a ``[D, V]`` dense kernel -- XLA folds the
        transpose).
      labels: ``[...]`` integer labels in ``[0, V)`` (or ``ignore_index``).
        Out-of-range labels raise ``ValueError`` when concrete and give a NaN
        loss for that token under ``jit``.
      bias: optional ``[V]`` output bias; it is differentiable like ``hidden``.
      class_weights: ``None`` or ``[V]`` non-negative per-class weights
        (PyTorch's ``weight``): they scale a token's cross-entropy and z-loss
        by its label's weight, the smoothing term by every class's weight, and
        ``"mean"`` divides by the summed weights of the counted tokens' labels.
        Not with ``axis_name``.
      ignore_index: label value whose tokens contribute 0 and are left out of the
        mean (PyTorch's ``ignore_index``; e.g. ``-100``); all ignored gives 0 with
        zero gradients. Static.
      label_smoothing: :math:`\epsilon \in [0, 1)`, uniform over the ``V`` classes.
      z_loss: :math:`\lambda_z \ge 0`, the PaLM auxiliary loss on
        :math:`\operatorname{lse}^2` (e.g. ``1e-4``).
      logit_softcap: ``None`` or :math:`c > 0` (Gemma 2 uses 30.0).
      chunk_size: vocabulary columns per chunk of the vocabulary-chunk route
        (static); giving it selects that route. ``None`` picks
        :func:`default_chunk_size` (``N * chunk_size <= 2**25``, at most 8192)
        when that route is taken.
      token_chunk_size: tokens per chunk of the gradients-in-the-forward-pass
        route (static); giving it selects that route for scalar reductions.
        ``None`` picks the largest power of two up to 1024 whose
        ``[token_chunk_size, V]`` block holds at most ``2**22`` elements.
      precision: ``lax.dot_general`` precision of the products (static), e.g.
        ``"highest"`` for full float32 on TPU.
      axis_name: ``None`` (default), or -- inside ``jax.shard_map`` -- the mesh
        axis (or tuple of axes) over which the vocabulary is split: ``weight``
        (and ``bias``) are then this device's contiguous slice ``[V_local, D]``
        and ``labels`` are global. Each device streams over its slice and the
        per-token log-sum-exp, target logit and logit sum are combined with one
        ``pmax`` and one ``psum`` of ``[N]`` vectors: no logits and no weight
        are gathered. The result is the same on every device of the axis.
        Static.
      return_stats: when True (static) return ``(loss, stats)`` with
        ``stats["lse"]`` the per-token log-sum-exp (``labels``' shape),
        ``stats["z_loss"]`` the mean of :math:`\operatorname{lse}^2` over the
        counted tokens (``where`` True, non-zero weight, not ignored), unscaled
        whatever ``z_loss`` is, and ``stats["accuracy"]`` the fraction of the
        counted tokens whose largest logit is at the label (ties go to the
        lowest class index), all found while streaming and carrying no
        gradient. Both are 0 when nothing is counted.

    Returns:
      The reduced loss (float32 for bf16/f32 inputs); with ``reduction="none"``
      the per-token losses, shaped like ``labels`` (0 for ignored tokens); with
      ``return_stats=True`` the pair ``(loss, stats)``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxloss
      >>> h = jnp.array([[1.0, 0.0], [0.0, 2.0]]); w = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
      >>> y = jnp.array([0, 2])
      >>> round(float(jaxloss.linear_cross_entropy(h, w, y, chunk_size=2)), 6)
      0.810309
      >>> float(jaxloss.linear_cross_entropy(h, w, y, ignore_index=2, reduction="sum")) == float(
      ...     jaxloss.linear_cross_entropy(h[:1], w, y[:1], reduction="sum"))
      True
      >>> loss, stats = jaxloss.linear_cross_entropy(h, w, y, return_stats=True)
      >>> float(stats["accuracy"])  # token 2's logits tie at classes 1 and 2: argmax 1
      0.5

    References: Wijmans et al., "Cut Your Losses in Large-Vocabulary Language
    Models" (2024); Chowdhery et al., "PaLM" (2022) for the z-loss; Gemma 2 for
    the soft-cap. PyTorch equivalent: ``F.cross_entropy(F.linear(h, W, b), y)``.
    """
    acc = compute_dtype(hidden, weight)
    cap = None if logit_softcap is None else jnp.asarray(logit_softcap, acc)
    params = (weight,) if bias is None else (weight, bias)
    hp = (jnp.asarray(label_smoothing, acc), jnp.asarray(z_loss, acc), class_weights)
    return head_cross_entropy(
        hidden, params, labels, _linear_transform, cap, hp, smooth_weights=class_weights, ignore_index=ignore_index,
        chunk_size=chunk_size, token_chunk_size=token_chunk_size, precision=precision, axis_name=axis_name,
        return_stats=return_stats,
    )


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
    v_local = weight.shape[0]
    h2 = hidden.reshape((-1, hidden.shape[-1]))
    y = labels.reshape((-1,)).astype(jnp.int32)
    acc = compute_dtype(hidden, weight)
    local = y
    if axis_name is not None:
        # Gradients of hidden and theta are partial sums over the vocabulary
        # shards: marking them varying makes JAX sum them over the axis.
        h2 = to_varying(h2, axis_name)
        theta = jax.tree_util.tree_map(lambda t: to_varying(t, axis_name), theta)
        local = y - lax.axis_index(axis_name) * v_local
    vocab = v_local if axis_name is None else v_local * lax.axis_size(axis_name)
    rows = _CrossEntropyRows(vocab, ignore_index)
    if chunk_size is None:
        chunk = max(1, default_chunk_size(h2.shape[0] * columns_per_class, v_local))
    else:
        chunk = min(int(chunk_size), v_local)
    stats = _global_stats(
        local_stats(Config(chunk, precision, acc), transform, theta, h2, params, smooth_weights, local),
        axis_name, v_local,
    )
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
    aux = Aux(per_token, _summarize) if return_stats else None
    return Unreduced(value.reshape(lead), keep, count, fused=fused, aux=aux)


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
    if _explicit_sharding(hidden) is not None:
        return 0  # token chunks of a batch sharded on an explicit mesh: the vocabulary route instead
    if token_chunk is not None:
        return min(int(token_chunk), n)
    if any(jnp.result_type(p) != acc for p in params):
        return 0
    rows = token_chunk_size(n, v)
    return rows if rows >= min(32, n) else 0


# ---------------------------------------------------------------------------
# vocab_parallel_cross_entropy: for shard_map with a vocabulary-sharded axis
# ---------------------------------------------------------------------------


def _check_nonnegative_labels(name, labels, ignore_index):
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


def _vp_validate(name, local_logits, labels, *, axis_name, ignore_index, **_):
    if axis_name is None:
        raise TypeError(
            f"{name}: axis_name is required: the shard_map mesh axis (or tuple of axes) over which "
            f"the vocabulary is split"
        )
    if local_logits.ndim < 1:
        raise ValueError(f"{name}: local_logits must have shape [..., V_local], got a scalar")
    _check_nonnegative_labels(name, labels, ignore_index)


@loss(
    family="large_vocab",
    static={"axis_name": ANY, "ignore_index": OPTIONAL_INT},
    checks={"label_smoothing": UNIT_HALF_OPEN, "z_loss": NONNEGATIVE, "logit_softcap": POSITIVE},
    layout=Layout(labels=("labels",), per_example=("labels",), reduced_axis=-1),
    validate=_vp_validate,
    example=Example(grad_order=1),
    register=False,  # it needs a named mesh axis, so the shared checks cannot call it
)
def vocab_parallel_cross_entropy(
    local_logits, labels, *, axis_name=None, ignore_index=None, label_smoothing=0.0, z_loss=0.0,
    logit_softcap=None,
):
    r"""Sparse cross-entropy of logits whose vocabulary is split across devices.

    For use inside ``jax.shard_map`` where device :math:`k` of the mesh axis
    ``axis_name`` holds the contiguous vocabulary slice
    :math:`[k V_\ell, (k+1) V_\ell)` of the logits (``P(..., axis_name)`` on the
    last axis) and every device holds the same (global) ``labels``. With
    :math:`m = \max_j z_j` (all-reduced max, no gradient through it),

    .. math::
       \operatorname{lse} = m + \log \textstyle\sum_{\text{devices}} \sum_{j \in \text{slice}} e^{z_j - m},
       \qquad
       \ell = \operatorname{lse} - (1 - \epsilon) z_y - \frac{\epsilon}{V}\sum_j z_j + \lambda_z \operatorname{lse}^2

    where :math:`z_y` and :math:`\sum_j z_j` are all-reduced sums of the local
    parts. Value and gradients equal :func:`jaxloss.sparse_cross_entropy` on the
    gathered ``[..., V]`` logits, with one ``pmax`` and three ``psum`` of
    ``[...]``-shaped arrays instead of an all-gather of the logits. The result is
    the same on every device of ``axis_name`` (use ``out_specs=P()``).

    The reduction is over the tokens this call sees; if the batch is also split
    over a data axis, average across it (``jax.lax.pmean``) or let the caller
    combine per-device ``"sum"`` results. Not in :data:`jaxloss.REGISTRY`: it
    needs a named axis. A batch-sharded loss needs no special function:
    use :func:`linear_cross_entropy` or ``sparse_cross_entropy`` under ``jit``.

    Args:
      local_logits: ``[..., V_local]``, this device's slice of the logits.
      labels: ``[...]`` global integer labels in ``[0, V)`` with
        ``V = V_local * axis_size`` (or ``ignore_index``); out-of-range labels
        give a NaN loss for that token (they cannot be checked before the
        collectives run, except negative concrete ones).
      axis_name: the mesh axis name (or tuple of names) the vocabulary is split
        over. Required, static.
      ignore_index: label whose tokens contribute 0 and are left out of the mean.
      label_smoothing: :math:`\epsilon \in [0, 1)`, uniform over all ``V`` classes.
      z_loss: :math:`\lambda_z \ge 0`.
      logit_softcap: ``None`` or :math:`c > 0`: each device replaces its finite
        logits :math:`x` by :math:`c \tanh(x / c)` first (elementwise, so this
        equals capping the gathered logits), as :func:`sparse_cross_entropy`.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-token losses shaped
      like ``labels``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxloss
      >>> from jax.sharding import PartitionSpec as P
      >>> mesh = jax.make_mesh((1,), ("vocab",), axis_types=(jax.sharding.AxisType.Auto,))
      >>> f = jax.shard_map(
      ...     lambda z, y: jaxloss.vocab_parallel_cross_entropy(z, y, axis_name="vocab"),
      ...     mesh=mesh, in_specs=(P(None, "vocab"), P()), out_specs=P())
      >>> round(float(f(jnp.array([[2.0, 1.0, 0.1]]), jnp.array([0]))), 6)
      0.41703

    Reference: Megatron-LM's ``vocab_parallel_cross_entropy`` (Shoeybi et al.,
    2019).
    """
    v_local = local_logits.shape[-1]
    n_dev = lax.axis_size(axis_name)
    vocab = v_local * n_dev
    offset = lax.axis_index(axis_name) * v_local
    z = local_logits if logit_softcap is None else softcap(local_logits, logit_softcap)
    y = labels.astype(jnp.int32)
    local = y - offset
    mine = (local >= 0) & (local < v_local)
    picked = jnp.take_along_axis(z, jnp.clip(local, 0, v_local - 1)[..., None], axis=-1)[..., 0]
    m = lax.pmax(lax.stop_gradient(jnp.max(z, axis=-1)), axis_name)
    # One all-reduce for the three sums: exponentials, target logit, all logits.
    s, zy, sz = lax.psum(
        (
            jnp.sum(jnp.exp(z - m[..., None]), axis=-1),
            jnp.where(mine, picked, jnp.zeros_like(picked)),
            jnp.sum(z, axis=-1),
        ),
        axis_name,
    )
    lse = m + jnp.log(s)
    value = lse - (1.0 - label_smoothing) * zy - label_smoothing * (sz / vocab) + z_loss * lse * lse
    in_range = (y >= 0) & (y < vocab)
    value = jnp.where(in_range, value, jnp.nan)
    if ignore_index is None:
        return value
    keep = labels != ignore_index
    return Unreduced(jnp.where(keep, value, jnp.zeros_like(value)), keep.astype(value.dtype))


LinearCrossEntropy = linear_cross_entropy.Loss
VocabParallelCrossEntropy = vocab_parallel_cross_entropy.Loss


# ---------------------------------------------------------------------------
# Per-sequence log-probabilities (post-training: DPO, ORPO, SimPO, GRPO inputs)
# ---------------------------------------------------------------------------

__all__ += ["sequence_logprobs", "linear_sequence_logprobs"]  # noqa: PLE0605


def _check_sequence_inputs(name, lead, labels, mask, what):
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        raise TypeError(f"{name}: labels must be integer token ids, got dtype {jnp.result_type(labels)}")
    if tuple(labels.shape) != tuple(lead) or len(lead) < 1:
        raise ValueError(f"{name}: labels {tuple(labels.shape)} must have the shape of {what} without its last "
                         f"axis, {tuple(lead)} ([B, T])")
    if mask is not None:
        if tuple(jnp.shape(mask)) != tuple(labels.shape):
            raise ValueError(f"{name}: mask {tuple(jnp.shape(mask))} must have the shape of labels "
                             f"{tuple(labels.shape)}")
        if jnp.result_type(mask) != jnp.bool_:
            raise TypeError(f"{name}: mask must be boolean, got dtype {jnp.result_type(mask)}")


def _per_sequence(tok, labels, mask, vocab, average):
    """Masked per-token log-probs summed (or averaged) over the last axis; NaN for
    an unmasked out-of-range label; 0 for a fully masked sequence."""
    keep = jnp.ones(labels.shape, bool) if mask is None else mask
    in_range = (labels >= 0) & (labels < vocab)
    tok = jnp.where(keep, jnp.where(in_range, tok, jnp.nan), jnp.zeros_like(tok))
    total = jnp.sum(tok, axis=-1)
    if not average:
        return total
    n = jnp.sum(keep, axis=-1).astype(total.dtype)
    return total / jnp.maximum(n, 1)


def sequence_logprobs(logits, labels, *, mask=None, average=False):
    r"""Per-sequence log-probability of the label tokens under ``logits``.

    .. math::
       s_b = \sum_t m_{bt} \log \operatorname{softmax}(z_{bt})_{y_{bt}}
           = \sum_t m_{bt} \bigl(z_{bt y_{bt}} - \log\textstyle\sum_v e^{z_{btv}}\bigr),
       \qquad \text{or } s_b / \max(1, \textstyle\sum_t m_{bt}) \text{ with } ``average=True``

    The quantity DPO-style losses take (TRL's ``get_batch_logps``; the labels
    are already shifted: ``labels[:, t]`` is the token that ``logits[:, t]``
    predicts). Only ``[B, T]`` per-token values are formed (a log-sum-exp and
    a gather), not a second ``[B, T, V]`` array of log-probabilities. A plain
    differentiable function, not a registry loss (no ``reduction``).

    Args:
      logits: ``[B, T, V]`` floating-point logits (any leading axes before ``T``).
      labels: ``[B, T]`` integer token ids in ``[0, V)``; entries where ``mask`` is
        False are ignored whatever they hold (e.g. ``-100``). An unmasked label
        outside ``[0, V)`` raises ``ValueError`` when concrete and gives NaN for
        its sequence under ``jit``.
      mask: optional ``[B, T]`` boolean mask of the counted tokens (the
        completion); ``None`` counts every token. Masked logits must be finite
        (their gradient is 0).
      average: when True, divide each sequence's sum by its number of counted
        tokens (IPO, ORPO, SimPO); a fully masked sequence gives 0 either way.

    Returns:
      ``[B]`` per-sequence log-probabilities (float32 for bf16/f32 logits).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> logits = jnp.log(jnp.array([[[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]]))
      >>> labels = jnp.array([[0, 1, -100]]); mask = jnp.array([[True, True, False]])
      >>> round(float(jaxloss.sequence_logprobs(logits, labels, mask=mask)[0]), 6)  # log 0.5 + log 0.1
      -2.995732
    """
    name = "sequence_logprobs"
    if not jnp.issubdtype(jnp.result_type(logits), jnp.floating):
        raise TypeError(f"{name}: logits must be floating point, got dtype {jnp.result_type(logits)}")
    if logits.ndim < 2:
        raise ValueError(f"{name}: logits must have shape [B, T, V], got {tuple(logits.shape)}")
    _check_sequence_inputs(name, logits.shape[:-1], labels, mask, "logits")
    vocab = logits.shape[-1]
    y = labels.astype(jnp.int32) if mask is None else jnp.where(mask, labels, 0).astype(jnp.int32)
    check_labels(name, y, vocab)
    z = logits.astype(compute_dtype(logits))
    lse = jax.nn.logsumexp(z, axis=-1)
    picked = jnp.take_along_axis(z, jnp.clip(y, 0, vocab - 1)[..., None], axis=-1)[..., 0]
    return _per_sequence(picked - lse, y, mask, vocab, average)


def linear_sequence_logprobs(hidden, weight, labels, *, mask=None, average=False, chunk_size=None):
    r"""Per-sequence log-probabilities of a linear head, streamed over the vocabulary.

    Equal, in value and in the gradients of ``hidden`` and ``weight``, to
    ``sequence_logprobs(hidden @ weight.T, labels, mask=mask, average=average)``,
    without building the ``[B, T, V]`` logits in the forward or the backward
    pass:

    .. math::
       s_b = \sum_t m_{bt} \bigl(h_{bt} \cdot w_{y_{bt}} - \log\textstyle\sum_v e^{h_{bt} \cdot w_v}\bigr)

    The per-token log-sum-exp and target logit come from the streaming engine of
    :func:`linear_cross_entropy` (an online log-sum-exp over vocabulary chunks;
    the backward pass recomputes each chunk), so temporary memory is a few
    ``[B*T, chunk_size]`` blocks. Feed the result to :func:`dpo_loss` and the
    other preference losses. A plain differentiable function, not a registry
    loss. Products accumulate in float32 (float64 for float64 inputs).

    Args:
      hidden: ``[B, T, D]`` hidden states (any leading axes before ``T``).
      weight: ``[V, D]`` output embedding (pass ``kernel.T`` for a ``[D, V]`` kernel).
      labels: ``[B, T]`` integer token ids in ``[0, V)``; entries where ``mask`` is
        False are ignored whatever they hold.
      mask: optional ``[B, T]`` boolean mask of the counted tokens; masked tokens
        get exactly zero gradient (even when their hidden states are NaN).
      average: when True, the mean over counted tokens instead of the sum (0 for
        a fully masked sequence).
      chunk_size: vocabulary columns per chunk (static); ``None`` picks
        :func:`default_chunk_size`.

    Returns:
      ``[B]`` per-sequence log-probabilities.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> h = jnp.array([[[1.0, 0.0], [0.0, 2.0]]]); w = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
      >>> y = jnp.array([[0, 2]])
      >>> a = jaxloss.linear_sequence_logprobs(h, w, y, chunk_size=2)
      >>> b = jaxloss.sequence_logprobs(jnp.einsum("btd,vd->btv", h, w), y)
      >>> bool(jnp.allclose(a, b))
      True
    """
    name = "linear_sequence_logprobs"
    for arg, x in (("hidden", hidden), ("weight", weight)):
        if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
            raise TypeError(f"{name}: {arg} must be floating point, got dtype {jnp.result_type(x)}")
    if hidden.ndim < 2:
        raise ValueError(f"{name}: hidden must have shape [B, T, D], got {tuple(hidden.shape)}")
    if weight.ndim != 2 or weight.shape[1] != hidden.shape[-1] or weight.shape[0] == 0:
        raise ValueError(f"{name}: weight {tuple(weight.shape)} must be [V, D] with the D of hidden "
                         f"{tuple(hidden.shape)}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size <= 0):
        raise ValueError(f"{name}: chunk_size must be a positive int or None, got {chunk_size!r}")
    _check_sequence_inputs(name, hidden.shape[:-1], labels, mask, "hidden")
    vocab = weight.shape[0]
    y = labels.astype(jnp.int32) if mask is None else jnp.where(mask, labels, 0).astype(jnp.int32)
    check_labels(name, y, vocab)
    acc = compute_dtype(hidden, weight)
    h2 = hidden.reshape((-1, hidden.shape[-1]))
    if mask is not None:
        h2 = jnp.where(mask.reshape((-1, 1)), h2, jnp.zeros_like(h2))
    chunk = default_chunk_size(h2.shape[0], vocab) if chunk_size is None else min(int(chunk_size), vocab)
    stats = local_stats(Config(chunk, None, acc), _linear_transform, None, h2, (weight,), None, y.reshape((-1,)))
    tok = (stats.target - stats.lse).reshape(y.shape)
    return _per_sequence(tok, y, mask, vocab, average)


# ---------------------------------------------------------------------------
# linear_distillation_loss: both heads streamed over vocabulary chunks
# ---------------------------------------------------------------------------

__all__ += ["linear_distillation_loss", "LinearDistillationLoss"]  # noqa: PLE0605

from ._checks import Interval, choice  # noqa: E402


def _tempered(temperature, raw, chunk, cols, labels):
    """``z = raw / T`` for one chunk of a head (no bias)."""
    return raw / temperature


def _streamed_divergence(cfg, divergence, beta, temperature, hs, ws, ht, wt, lse_s, lse_t):
    """Pass 2: per-row sums of the divergence's terms over vocabulary chunks, given
    both (tempered) log-sum-exps. The chunk body is checkpointed, so reverse mode
    through the loop recomputes each chunk's logits instead of storing them."""
    from ._streaming import _project, chunk_start
    from .divergence import distillation_terms

    vocab = ws.shape[0]
    chunk = cfg.chunk
    cols0 = lax.iota(jnp.int32, chunk)

    @jax.checkpoint
    def body(k, total):
        start = chunk_start(k, chunk, vocab)
        fresh = (start + cols0 >= k * chunk)[None, :]
        zs = _project(cfg, hs, lax.dynamic_slice_in_dim(ws, start, chunk, axis=0)) / temperature
        zt = _project(cfg, ht, lax.dynamic_slice_in_dim(wt, start, chunk, axis=0)) / temperature
        terms = distillation_terms(zt - lse_t[:, None], zs - lse_s[:, None], divergence, beta)
        return total + jnp.sum(jnp.where(fresh, terms, jnp.zeros_like(terms)), axis=1)

    return lax.fori_loop(0, -(-vocab // chunk), body, jnp.zeros_like(hs[:, 0], dtype=cfg.acc))


def _ld_sample(rng: np.random.Generator) -> tuple:
    hs = rng.normal(size=(4, 6)).astype(np.float32)
    ws = (rng.normal(size=(19, 6)) * 0.5).astype(np.float32)
    ht = rng.normal(size=(4, 5)).astype(np.float32)
    wt = (rng.normal(size=(19, 5)) * 0.5).astype(np.float32)
    return hs, ws, ht, wt


def _ld_validate(name, student_hidden, student_weight, teacher_hidden, teacher_weight, **_):
    for who, h, w in (("student", student_hidden, student_weight), ("teacher", teacher_hidden, teacher_weight)):
        if h.ndim < 1 or w.ndim != 2 or w.shape[1] != h.shape[-1]:
            raise ValueError(f"{name}: {who}_weight {tuple(w.shape)} must be [V, D] with the D of {who}_hidden "
                             f"{tuple(h.shape)}")
    if student_weight.shape[0] != teacher_weight.shape[0] or student_weight.shape[0] == 0:
        raise ValueError(f"{name}: student_weight {tuple(student_weight.shape)} and teacher_weight "
                         f"{tuple(teacher_weight.shape)} must share a non-empty vocabulary V (first axis)")
    if tuple(student_hidden.shape[:-1]) != tuple(teacher_hidden.shape[:-1]):
        raise ValueError(f"{name}: student_hidden {tuple(student_hidden.shape)} and teacher_hidden "
                         f"{tuple(teacher_hidden.shape)} must have the same leading (token) axes")


@builtin("large_vocab")(
    static={"divergence": choice("forward", "reverse", "jsd"), "chunk_size": POSITIVE_INT_OR_NONE},
    checks={"temperature": POSITIVE, "beta": Interval(0.0, 1.0, lo_open=True, hi_open=True)},
    layout=Layout(same_shape=(), native=("student_hidden", "student_weight", "teacher_hidden", "teacher_weight")),
    validate=_ld_validate,
    example=Example(_ld_sample, sweep=("temperature", (0.5, 1.0, 2.0, 4.0)), differentiable=(0, 1, 2, 3)),
)
def linear_distillation_loss(student_hidden, student_weight, teacher_hidden, teacher_weight, *, temperature=1.0,
                             divergence="forward", beta=0.5, chunk_size=None, loss_where=None):
    r"""Distillation loss between two linear heads, streamed over the vocabulary.

    Exactly :func:`jaxloss.distillation_loss` of the student logits
    :math:`z_s = h_s W_s^\top` and the teacher logits :math:`z_t = h_t W_t^\top`
    (value and the gradients of all four inputs), without building either
    ``[N, V]`` array. With :math:`p = \operatorname{softmax}(z_t / T)`,
    :math:`q = \operatorname{softmax}(z_s / T)`:

    .. math::
       \ell = T^2 \cdot \begin{cases}
         \sum_v p_v (\log p_v - \log q_v) & \text{forward} \\
         \sum_v q_v (\log q_v - \log p_v) & \text{reverse} \\
         \sum_v \beta p_v (\log p_v - \log m_v) + (1 - \beta) q_v (\log q_v - \log m_v),
           \ m = \beta p + (1-\beta) q & \text{jsd}
       \end{cases}

    Two passes over vocabulary chunks: the first streams both log-sum-exps
    (the engine of :func:`linear_cross_entropy`, whose backward pass recomputes
    each chunk); the second accumulates the divergence's terms chunk by chunk in
    a ``lax.fori_loop`` whose body is ``jax.checkpoint``-ed, so the backward pass
    recomputes each chunk's ``[N, chunk_size]`` logits instead of storing them.
    Temporary memory is a few ``[N, chunk_size]`` blocks plus the weights'
    gradients. The anchor is Liger-Kernel's fused-linear JSD/KL distillation
    (``LigerFusedLinearJSD``), with jaxloss's :math:`T^2` scaling and
    :math:`\beta` convention (:func:`distillation_loss`). The teacher is not
    stop-gradiented (wrap its inputs in ``jax.lax.stop_gradient``).

    Args:
      student_hidden: ``[..., Ds]`` student hidden states.
      student_weight: ``[V, Ds]`` student output embedding.
      teacher_hidden: ``[..., Dt]`` teacher hidden states (same leading axes).
      teacher_weight: ``[V, Dt]`` teacher output embedding (same ``V``).
      temperature: :math:`T > 0` (traced).
      divergence: ``"forward"``, ``"reverse"`` or ``"jsd"`` (static).
      beta: :math:`\beta \in (0, 1)`, the JSD's mixture weight (traced; ``"jsd"`` only).
      chunk_size: vocabulary columns per chunk (static); ``None`` picks
        ``default_chunk_size(4 * N, V)`` (2048 at ``N = 4096``).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-token divergences
      (the hidden states' leading shape).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> hs, ws = jnp.array([[1.0, 0.0]]), jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
      >>> ht, wt = jnp.array([[0.0, 2.0]]), ws
      >>> a = jaxloss.linear_distillation_loss(hs, ws, ht, wt, divergence="jsd", chunk_size=2)
      >>> b = jaxloss.distillation_loss(hs @ ws.T, ht @ wt.T, divergence="jsd")
      >>> bool(jnp.allclose(a, b))
      True
    """
    lead = student_hidden.shape[:-1]
    acc = compute_dtype(student_hidden, student_weight, teacher_hidden, teacher_weight)
    hs = student_hidden.reshape((-1, student_hidden.shape[-1]))
    ht = teacher_hidden.reshape((-1, teacher_hidden.shape[-1]))
    if loss_where is not None:
        keep = loss_where.reshape((-1, 1))
        hs = jnp.where(keep, hs, jnp.zeros_like(hs))
        ht = jnp.where(keep, ht, jnp.zeros_like(ht))
    vocab = student_weight.shape[0]
    # a quarter of linear_cross_entropy's chunk: pass 2 holds several [N, chunk] blocks of both heads
    chunk = default_chunk_size(4 * hs.shape[0], vocab) if chunk_size is None else min(int(chunk_size), vocab)
    cfg = Config(chunk, None, acc)
    temp = jnp.asarray(temperature, acc)
    labels = jnp.zeros_like(hs[:, 0], dtype=jnp.int32)
    lse_s = local_stats(cfg, _tempered, temp, hs, (student_weight,), None, labels).lse
    lse_t = local_stats(cfg, _tempered, temp, ht, (teacher_weight,), None, labels).lse
    d = _streamed_divergence(cfg, divergence, jnp.asarray(beta, acc), temp, hs, student_weight, ht, teacher_weight,
                             lse_s, lse_t)
    return (temp * temp * d).reshape(lead)


LinearDistillationLoss = linear_distillation_loss.Loss
