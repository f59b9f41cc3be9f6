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

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._checks import (
    ANY,
    NONNEGATIVE,
    OPTIONAL_INT,
    POSITIVE,
    POSITIVE_INT_OR_NONE,
    UNIT_HALF_OPEN,
    check_labels,
    is_concrete,
)
from ._core import Example, Layout, Unreduced, builtin, compute_dtype, loss
from ._numerics import softcap
from ._sharding import to_varying, varying, vma

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
# The streaming kernel (2-D: hidden [N, D], weight [V, D], labels [N])
# ---------------------------------------------------------------------------


def _chunk_logits(cfg, hidden, weight, bias, cap, start):
    """Recompute one chunk: ``z = softcap(hidden @ weight[start:start+C].T + bias)``.

    Returns the raw logits ``l`` (needed for the soft-cap derivative) and ``z``,
    both ``[N, C]`` in the accumulation dtype.
    """
    chunk, precision = cfg[0], cfg[1]
    acc = compute_dtype(hidden, weight)
    w = lax.dynamic_slice_in_dim(weight, start, chunk, axis=0)
    logits = lax.dot_general(
        hidden, w, (((1,), (1,)), ((), ())), precision=precision, preferred_element_type=acc
    )
    if bias is not None:
        logits = logits + lax.dynamic_slice_in_dim(bias, start, chunk).astype(acc)[None, :]
    z = logits if cap is None else cap * jnp.tanh(logits / cap)
    return logits, z


def _chunk_start(k, chunk, vocab):
    """Chunk ``k`` covers columns ``[k*C, (k+1)*C)``; the last one is clamped to
    ``[V-C, V)`` so every slice has the static size ``C`` and ``weight`` is never
    padded. Columns below ``k*C`` in the clamped chunk were seen already."""
    return jnp.minimum(k * chunk, vocab - chunk)




def _explicit_sharding(x):
    """``x``'s sharding when it lives on a mesh with explicit axes, else None."""
    sharding = getattr(jax.typeof(x), "sharding", None)
    mesh = getattr(sharding, "mesh", None)
    types = getattr(mesh, "axis_types", None) or ()
    explicit = getattr(getattr(jax.sharding, "AxisType", None), "Explicit", None)
    return sharding if explicit is not None and any(t == explicit for t in types) else None


def _sharded_axes(x, dim):
    """Mesh axes an explicitly sharded ``x`` is split over along ``dim`` (empty tuple
    when it is not, or outside explicit meshes)."""
    sharding = _explicit_sharding(x)
    spec = getattr(sharding, "spec", None)
    if spec is None or len(spec) <= dim or spec[dim] is None:
        return ()
    return tuple(spec[dim]) if isinstance(spec[dim], tuple) else (spec[dim],)




def _sum_to(d, x):
    """Sum a cotangent ``d`` over the mesh axes along which it varies but its
    primal ``x`` does not (e.g. a replicated weight's gradient over a
    batch-sharded axis)."""
    extra = tuple(sorted(vma(d) - vma(x)))
    return lax.psum(d, extra) if extra else d


def _local_stats(cfg, hidden, weight, bias, labels, cap):
    """One streaming pass over the (local) vocabulary: per-row log-sum-exp, sum
    of (capped) logits and target logit (0 when the label is not in this slice)."""
    chunk = cfg[0]
    vocab = weight.shape[0]
    acc = compute_dtype(hidden, weight)
    num_chunks = -(-vocab // chunk)
    cols = lax.iota(jnp.int32, chunk)

    def body(k, carry):
        m, s, sz, zy = carry
        start = _chunk_start(k, chunk, vocab)
        _, z = _chunk_logits(cfg, hidden, weight, bias, cap, start)
        col = start + cols
        fresh = (col >= k * chunk)[None, :]
        zf = jnp.where(fresh, z, -jnp.inf)
        m_new = jnp.maximum(m, jnp.max(zf, axis=1))
        s = s * jnp.exp(m - m_new) + jnp.sum(jnp.exp(zf - m_new[:, None]), axis=1)
        sz = sz + jnp.sum(jnp.where(fresh, z, 0), axis=1)
        hit = fresh & (col[None, :] == labels[:, None])
        zy = zy + jnp.sum(jnp.where(hit, z, 0), axis=1)
        return m_new, s, sz, zy

    # Carries built from the inputs keep their sharding (explicit meshes) and
    # are marked varying like the loop's results (shard_map).
    names = vma(hidden, weight, bias, labels, cap)
    row = varying(jnp.zeros_like(hidden[:, 0], dtype=acc), names)
    init = (row - jnp.inf, row, row, row)
    m, s, sz, zy = lax.fori_loop(0, num_chunks, body, init)
    return m + jnp.log(s), sz, zy


def _local_labels(cfg, labels, v_local):
    """Labels relative to this device's vocabulary slice (the labels themselves
    without a vocabulary axis)."""
    axis_name = cfg[2]
    if axis_name is None:
        return labels
    return labels - lax.axis_index(axis_name) * v_local


def _stats(cfg, hidden, weight, bias, labels, cap):
    """``(lse, sum_j z_j, z_label, V)`` per row over the whole vocabulary: one
    streaming pass, then (vocabulary sharded over ``axis_name``) one ``pmax``
    and one ``psum`` of ``[N]`` vectors."""
    axis_name = cfg[2]
    v_local = weight.shape[0]
    lse, sz, zy = _local_stats(cfg, hidden, weight, bias, _local_labels(cfg, labels, v_local), cap)
    if axis_name is None:
        return lse, sz, zy, v_local
    m = lax.pmax(lax.stop_gradient(lse), axis_name)
    e, sz, zy = lax.psum((jnp.exp(lse - m), sz, zy), axis_name)
    return m + jnp.log(e), sz, zy, v_local * lax.axis_size(axis_name)


def _row_status(cfg, labels, vocab):
    ignore_index = cfg[3]
    in_range = (labels >= 0) & (labels < vocab)
    ignored = jnp.zeros_like(in_range) if ignore_index is None else labels == ignore_index
    return in_range, ignored


def _rows(cfg, lse, sz, zy, labels, vocab, eps, zl):
    """``(1 - eps)(lse - z_y) + eps (lse - mean_j z_j) + zl lse^2``; NaN for an
    out-of-range label, 0 for an ignored one."""
    in_range, ignored = _row_status(cfg, labels, vocab)
    value = lse - (1.0 - eps) * zy - eps * (sz / vocab) + zl * lse * lse
    value = jnp.where(in_range, value, jnp.nan)
    return jnp.where(ignored, jnp.zeros_like(value), value)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _lce(cfg, hidden, weight, bias, labels, eps, zl, cap):
    lse, sz, zy, vocab = _stats(cfg, hidden, weight, bias, labels, cap)
    return _rows(cfg, lse, sz, zy, labels, vocab, eps, zl)


def _lce_fwd(cfg, hidden, weight, bias, labels, eps, zl, cap):
    lse, sz, zy, vocab = _stats(cfg, hidden, weight, bias, labels, cap)
    out = _rows(cfg, lse, sz, zy, labels, vocab, eps, zl)
    return out, (hidden, weight, bias, labels, eps, zl, cap, lse, sz, zy)


def _lce_bwd(cfg, res, g):
    hidden, weight, bias, labels, eps, zl, cap, lse, sz, zy = res
    chunk = cfg[0]
    v_local = weight.shape[0]
    vocab = v_local if cfg[2] is None else v_local * lax.axis_size(cfg[2])
    acc = compute_dtype(hidden, weight)
    num_chunks = -(-v_local // chunk)
    cols = lax.iota(jnp.int32, chunk)
    in_range, ignored = _row_status(cfg, labels, vocab)
    local = _local_labels(cfg, labels, v_local)
    # Rows that get a gradient: counted, and with a nonzero cotangent. Zeroing
    # the others (and their hidden states) keeps a NaN in a masked or ignored
    # row out of every gradient.
    live = in_range & ~ignored & (g != 0)
    gr = jnp.where(live, g, 0).astype(acc)
    h = jnp.where(live[:, None], hidden, jnp.zeros_like(hidden))
    lse_live = jnp.where(live, lse, 0)
    # dl/dz_j = (1 + 2 zl lse) p_j - (1 - eps) [j = y] - eps / V
    a = (gr * (1.0 + 2.0 * zl * lse_live))[:, None]
    t = (gr * (1.0 - eps))[:, None]
    u = (gr * (eps / vocab))[:, None]

    dw_sharding = _explicit_sharding(weight)
    if dw_sharding is None and _explicit_sharding(h) is not None:
        dw_sharding = jax.sharding.NamedSharding(_explicit_sharding(h).mesh, jax.sharding.PartitionSpec())

    def body(k, carry):
        dh, dw, db, dcap = carry
        start = _chunk_start(k, chunk, v_local)
        logits, z = _chunk_logits(cfg, h, weight, bias, cap, start)
        col = start + cols
        fresh = (col >= k * chunk)[None, :]
        # exp(-inf) = 0 in rows that get no gradient, whatever their logits.
        p = jnp.exp(jnp.where(live[:, None], z - lse_live[:, None], -jnp.inf))
        hit = col[None, :] == local[:, None]
        dz = a * p - jnp.where(hit, t, 0) - u
        dz = jnp.where(fresh, dz, 0)
        if cap is not None:
            th = z / cap
            dcap = dcap + jnp.sum(dz * (th - (logits / cap) * (1.0 - th * th)))
            dz = dz * (1.0 - th * th)
        dz_in = dz.astype(weight.dtype) if weight.dtype != acc else dz
        w = lax.dynamic_slice_in_dim(weight, start, chunk, axis=0)
        dh = dh + lax.dot_general(
            dz_in, w, (((1,), (0,)), ((), ())), precision=cfg[1], preferred_element_type=acc
        )
        # The token axis is contracted: under an explicit mesh with sharded
        # tokens, the result is laid out like weight (all-reduced over tokens).
        dw_c = lax.dot_general(
            dz_in, h, (((0,), (0,)), ((), ())), precision=cfg[1], preferred_element_type=acc,
            out_sharding=dw_sharding,
        )
        # Rows of the clamped last chunk that were seen already get dz == 0, so
        # adding keeps their gradient; every other row is written exactly once.
        old = lax.dynamic_slice_in_dim(dw, start, chunk, axis=0)
        dw = lax.dynamic_update_slice_in_dim(dw, old + dw_c.astype(dw.dtype), start, axis=0)
        if db is not None:
            old_b = lax.dynamic_slice_in_dim(db, start, chunk)
            db = lax.dynamic_update_slice_in_dim(db, old_b + jnp.sum(dz, axis=0).astype(db.dtype), start, axis=0)
        return dh, dw, db, dcap

    names = vma(hidden, weight, bias, labels, eps, zl, cap, lse, sz, zy, g)
    init = (
        varying(jnp.zeros_like(hidden, dtype=acc), names),
        varying(jnp.zeros_like(weight), names),
        None if bias is None else varying(jnp.zeros_like(bias), names),
        varying(jnp.zeros((), acc), names),
    )
    dh, dw, db, dcap = lax.fori_loop(0, num_chunks, body, init)
    # The hyper-parameters are traced, so they get their cotangents too.
    deps = jnp.sum(gr * jnp.where(live, zy - sz / vocab, 0))
    dzl = jnp.sum(gr * lse_live * lse_live)

    def like(d, x):
        if x is None:
            return None
        return _sum_to(jnp.broadcast_to(d, jnp.shape(x)).astype(jnp.result_type(x)), x)

    return (
        like(dh, hidden), like(dw, weight), like(db, bias), None, like(deps, eps), like(dzl, zl), like(dcap, cap),
    )


_lce.defvjp(_lce_fwd, _lce_bwd)




# ---------------------------------------------------------------------------
# linear_cross_entropy: the public loss
# ---------------------------------------------------------------------------


def _lce_sample(rng: np.random.Generator) -> tuple:
    hidden = rng.normal(size=(6, 8)).astype(np.float32)
    weight = (rng.normal(size=(37, 8)) * 0.5).astype(np.float32)
    labels = rng.integers(0, 37, size=(6,)).astype(np.int32)
    return hidden, weight, labels


_PRECISIONS = (None, "default", "high", "highest", "bfloat16", "tensorfloat32", "float32")


def _lce_validate(name, hidden, weight, labels, *, bias, ignore_index, chunk_size, precision, axis_name, **_):
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
    static={"ignore_index": OPTIONAL_INT, "chunk_size": POSITIVE_INT_OR_NONE, "precision": ANY, "axis_name": ANY},
    checks={"label_smoothing": UNIT_HALF_OPEN, "z_loss": NONNEGATIVE, "logit_softcap": POSITIVE},
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
    ignore_index=None,
    label_smoothing=0.0,
    z_loss=0.0,
    logit_softcap=None,
    chunk_size=None,
    precision=None,
    axis_name=None,
):
    r"""Cross-entropy of a linear head, without materialising the logits.

    With logits :math:`z = s(h W^\top + b)` for a hidden state :math:`h`, where
    :math:`s(x) = c \tanh(x / c)` is the optional soft-cap, and
    :math:`\operatorname{lse} = \log \sum_{j=1}^{V} e^{z_j}`, the per-token loss is

    .. math::
       \ell = (1 - \epsilon)(\operatorname{lse} - z_y)
            + \frac{\epsilon}{V}\sum_{j=1}^{V} (\operatorname{lse} - z_j)
            + \lambda_z \operatorname{lse}^2

    i.e. exactly ``sparse_cross_entropy(s(hidden @ weight.T + bias), labels,
    label_smoothing=eps, z_loss=lambda_z, ignore_index=...)`` in value and in the
    gradients of ``hidden``, ``weight`` and ``bias``. The ``[N, V]`` logits are
    never built, in the forward or the backward pass: the forward pass streams
    an online log-sum-exp (with the sum of logits for label smoothing and the
    target logit) over vocabulary chunks inside one ``lax.fori_loop``, and a
    ``jax.custom_vjp`` backward pass recomputes each chunk, using
    :math:`\partial \ell / \partial z_j = (1 + 2\lambda_z \operatorname{lse}) p_j
    - (1 - \epsilon)[j = y] - \epsilon / V`. Temporary memory is a few
    ``[N, chunk_size]`` blocks plus ``[N, D]``; the compiled program is the same
    size for any number of chunks. ``V`` need not be a multiple of
    ``chunk_size``: the last chunk is shifted to end at ``V`` and its overlap is
    masked, so ``weight`` is never padded or copied.

    Under ``jit`` with the batch sharded (``NamedSharding``) it needs nothing
    special; with ``weight`` sharded over the vocabulary GSPMD gives the same
    result but gathers ``weight`` -- for tensor parallelism without that, call
    it inside ``shard_map`` with ``axis_name`` (see ``docs/large_vocab.md``).

    Matrix products accumulate in float32 (``preferred_element_type``), float64
    for float64 inputs. Note that jaxloss's dtype policy computes bf16/f16
    inputs in float32. Forward-mode differentiation (``jax.jvp``,
    ``jax.hessian``) is not supported (a ``custom_vjp``); reverse mode of any
    order is.

    Args:
      hidden: ``[..., D]`` hidden states (floating point).
      weight: ``[V, D]`` output embedding (the layout of a tied embedding table;
        pass ``kernel.T`` for a ``[D, V]`` dense kernel -- XLA folds the
        transpose).
      labels: ``[...]`` integer labels in ``[0, V)`` (or ``ignore_index``).
        Out-of-range labels raise ``ValueError`` when concrete and give a NaN
        loss for that token under ``jit``.
      bias: optional ``[V]`` output bias; it is differentiable like ``hidden``.
      ignore_index: label value whose tokens contribute 0 and are left out of the
        mean (PyTorch's ``ignore_index``; e.g. ``-100``); all ignored gives 0 with
        zero gradients. Static.
      label_smoothing: :math:`\epsilon \in [0, 1)`, uniform over the ``V`` classes.
      z_loss: :math:`\lambda_z \ge 0`, the PaLM auxiliary loss on
        :math:`\operatorname{lse}^2` (e.g. ``1e-4``).
      logit_softcap: ``None`` or :math:`c > 0` (Gemma 2 uses 30.0).
      chunk_size: vocabulary columns per chunk (static); ``None`` picks
        :func:`default_chunk_size` (``N * chunk_size <= 2**25``, at most 8192).
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

    Returns:
      The reduced loss (float32 for bf16/f32 inputs); with ``reduction="none"``
      the per-token losses, shaped like ``labels`` (0 for ignored tokens).

    Example:
      >>> import jax, jax.numpy as jnp, jaxloss
      >>> h = jnp.array([[1.0, 0.0], [0.0, 2.0]]); w = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
      >>> y = jnp.array([0, 2])
      >>> round(float(jaxloss.linear_cross_entropy(h, w, y, chunk_size=2)), 6)
      0.810309
      >>> float(jaxloss.linear_cross_entropy(h, w, y, ignore_index=2, reduction="sum")) == float(
      ...     jaxloss.linear_cross_entropy(h[:1], w, y[:1], reduction="sum"))
      True

    References: Wijmans et al., "Cut Your Losses in Large-Vocabulary Language
    Models" (2024); Chowdhery et al., "PaLM" (2022) for the z-loss; Gemma 2 for
    the soft-cap. PyTorch equivalent: ``F.cross_entropy(F.linear(h, W, b), y)``.
    """
    lead = labels.shape
    d = hidden.shape[-1]
    v_local = weight.shape[0]
    h2 = hidden.reshape((-1, d))
    y = labels.reshape((-1,)).astype(jnp.int32)
    chunk = default_chunk_size(h2.shape[0], v_local) if chunk_size is None else min(int(chunk_size), v_local)
    dtype = compute_dtype(hidden, weight)
    cap = None if logit_softcap is None else jnp.asarray(logit_softcap, dtype)
    if axis_name is not None:
        # Gradients of hidden and cap are partial sums over the vocabulary
        # shards: marking them varying makes JAX sum them over the axis.
        h2 = to_varying(h2, axis_name)
        cap = None if cap is None else to_varying(cap, axis_name)
    cfg = (chunk, precision, axis_name, ignore_index)
    out = _lce(
        cfg, h2, weight, bias, y, jnp.asarray(label_smoothing, dtype), jnp.asarray(z_loss, dtype), cap
    ).reshape(lead)
    if ignore_index is None:
        return out
    return Unreduced(out, (labels != ignore_index).astype(out.dtype))


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
