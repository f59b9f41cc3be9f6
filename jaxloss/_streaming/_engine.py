r"""A softmax over the columns of a projection, streamed so it is never built.

Every large-output loss of jaxloss (a language-model head, ArcFace over a
million identities, per-sequence log-probabilities for preference losses) has
the same shape: row ``i`` of ``hidden [N, D]`` meets every row (column block) of
a ``weight [V, D]`` (or ``[V, K, D]``), the products go through a cheap
column-wise ``transform`` (bias, soft-cap, a margin on the target column,
cosine normalisation, the max over sub-centres), and the loss needs only
per-row statistics of the resulting logits ``z [N, V]``:

* ``lse``: :math:`\log \sum_j e^{z_j}`,
* ``target``: :math:`z_{y}` (0 when the label is outside this slice),
* ``smooth``: :math:`\sum_j s_j z_j` (label smoothing; :math:`s` the class
  weights, 1 when not given),
* ``argmax``: the first column of the largest logit (no gradient).

Two routes compute them, both exact:

``local_stats`` (any cotangents, any reduction)
  One ``lax.fori_loop`` over vocabulary chunks with an online log-sum-exp; a
  ``custom_vjp`` backward pass recomputes each chunk and maps the cotangents of
  the statistics back through
  :math:`\partial / \partial z_j = g_{\text{lse}}\, p_j + g_{\text{target}} [j = y]
  + g_{\text{smooth}}\, s_j`, then through ``transform`` (its ``jax.vjp``) and
  the projection. Two logits products per chunk (forward, recompute).

``fused_sum`` (a scalar reduction whose coefficients are known)
  When the loss is :math:`\sum_i c_i \, f(\text{stats}_i)` with known ``c`` (a
  mean or sum), the gradients are formed in the forward pass: one loop over
  *row* chunks, each seeing all ``V`` columns at once (exact statistics, no
  online rescaling), so one logits product per chunk and the same three
  products as the naive program; the backward pass only scales the stored
  gradients by the scalar cotangent.

The projection's products accumulate in float32 (float64 for float64 inputs)
through ``preferred_element_type``; the weight is only ever sliced, never
copied or converted as a whole.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from .._sharding import to_varying, varying, vma

__all__ = [
    "Config", "Stats", "chunk_start", "explicit_sharding", "fused_sum", "global_stats", "local_stats", "outer_axes",
    "project", "split_stats", "token_chunk_size",
]

Array = jax.Array
#: ``transform(theta, raw [n, c*K], params_chunk, cols [c], labels [n]) -> z [n, c]``
Transform = Callable[[Any, Array, tuple, Array, Array], Array]


class Config(NamedTuple):
    """Static settings of a streamed head."""

    chunk: int  # vocabulary columns per chunk (local_stats) or rows per chunk (fused_sum)
    precision: Any  # lax.dot_general precision
    acc: Any  # accumulation dtype


class Stats(NamedTuple):
    """Per-row statistics of the logits (``top`` and ``argmax`` carry no gradient)."""

    lse: Array
    target: Array
    smooth: Array
    top: Array
    argmax: Array


def chunk_start(k, chunk, size):
    """Chunk ``k`` covers ``[k*C, (k+1)*C)``; the last one is clamped to
    ``[size-C, size)`` so every slice has the static size ``C`` and nothing is
    padded. Entries below ``k*C`` in the clamped chunk were seen already."""
    return jnp.minimum(k * chunk, size - chunk)


def token_chunk_size(num_tokens: int, columns: int, budget: int = 1 << 22) -> int:
    """Rows per chunk of :func:`fused_sum`: the largest power of two ``n <= 1024``
    with ``n * columns <= budget`` (a 16 MiB float32 block by default), at least
    1 and at most ``num_tokens``."""
    n = 1024
    while n > 1 and n * columns > budget:
        n //= 2
    return max(1, min(n, int(num_tokens)))


def project(cfg, h, w, out_sharding=None):
    """``h [n, D] @ w[..., D].T -> [n, c*K]`` accumulated in ``cfg.acc``."""
    w2 = w.reshape((-1, w.shape[-1]))
    return lax.dot_general(h, w2, (((1,), (1,)), ((), ())), precision=cfg.precision,
                           preferred_element_type=cfg.acc, out_sharding=out_sharding)


def _project_vjp(cfg, draw, h, w, dw_sharding=None):
    """Cotangents of :func:`project` for ``h`` (in ``cfg.acc``) and ``w`` (its shape)."""
    w2 = w.reshape((-1, w.shape[-1]))
    d = draw.astype(w.dtype) if w.dtype != cfg.acc else draw
    dh = lax.dot_general(d, w2, (((1,), (0,)), ((), ())), precision=cfg.precision, preferred_element_type=cfg.acc)
    # The token axis is contracted: under an explicit mesh with sharded tokens
    # the result is laid out like the weight (all-reduced over tokens).
    dw = lax.dot_general(d, h, (((0,), (0,)), ((), ())), precision=cfg.precision, preferred_element_type=cfg.acc,
                         out_sharding=dw_sharding)
    return dh, dw.reshape(w.shape)


def _slice(params, start, size):
    return jax.tree_util.tree_map(lambda p: lax.dynamic_slice_in_dim(p, start, size, axis=0), params)


def _add_slice(full, part, start):
    """``full[start:start+len(part)] += part`` for every leaf."""
    def add(f, p):
        old = lax.dynamic_slice_in_dim(f, start, p.shape[0], axis=0)
        return lax.dynamic_update_slice_in_dim(f, old + p.astype(f.dtype), start, axis=0)
    return jax.tree_util.tree_map(add, full, part)


def _tree_add(a, b):
    return jax.tree_util.tree_map(lambda x, y: x + y.astype(x.dtype), a, b)


def _zeros(tree, names, dtype=None):
    return jax.tree_util.tree_map(lambda x: varying(jnp.zeros_like(x, dtype=dtype), names), tree)


def _sum_to(d, x):
    """Sum a cotangent over the mesh axes along which it varies but its primal
    does not (a replicated weight's gradient over a batch-sharded axis)."""
    extra = tuple(sorted(vma(d) - vma(x)))
    return lax.psum(d, extra) if extra else d


def _like(d, x):
    return jax.tree_util.tree_map(
        lambda di, xi: _sum_to(jnp.broadcast_to(di, jnp.shape(xi)).astype(jnp.result_type(xi)), xi), d, x
    )


def explicit_sharding(x):
    """``x``'s sharding when it lives on a mesh with explicit axes, else None."""
    sharding = getattr(jax.typeof(x), "sharding", None)
    mesh = getattr(sharding, "mesh", None)
    types = getattr(mesh, "axis_types", None) or ()
    explicit = getattr(getattr(jax.sharding, "AxisType", None), "Explicit", None)
    return sharding if explicit is not None and any(t == explicit for t in types) else None


def _dw_sharding(h, weight):
    s = explicit_sharding(weight)
    if s is None and explicit_sharding(h) is not None:
        s = jax.sharding.NamedSharding(explicit_sharding(h).mesh, jax.sharding.PartitionSpec())
    return s


def _names(*trees):
    """Mesh axes any leaf of ``trees`` varies over (loop carries are marked with them)."""
    return vma(*jax.tree_util.tree_leaves(trees))


def _vary(tree, names):
    """Every leaf marked varying over ``names``: a ``jax.vjp`` taken at such
    values has no implicit broadcast to transpose, so the cotangents stay
    per-device partial sums, summed once at the end (``_like``)."""
    return jax.tree_util.tree_map(lambda x: varying(x, names), tree)


def _finite(z):
    return jnp.where(jnp.isfinite(z), z, jnp.zeros_like(z))


# ---------------------------------------------------------------------------
# Route 1: statistics over vocabulary chunks, recomputed in the backward pass
# ---------------------------------------------------------------------------


def _forward(cfg, transform, theta, h, params, sw, labels):
    vocab = params[0].shape[0]
    chunk = cfg.chunk
    cols0 = lax.iota(jnp.int32, chunk)

    def body(k, carry):
        m, s, zy, sz, am = carry
        start = chunk_start(k, chunk, vocab)
        pc = _slice(params, start, chunk)
        cols = start + cols0
        z = transform(theta, project(cfg, h, pc[0]), pc, cols, labels)
        fresh = (cols >= k * chunk)[None, :]
        zf = jnp.where(fresh, z, -jnp.inf)
        cmax = jnp.max(zf, axis=1)
        carg = start + jnp.argmax(zf, axis=1).astype(jnp.int32)
        am = jnp.where(cmax > m, carg, am)  # strict: ties keep the earlier (lower) column
        m_new = jnp.maximum(m, cmax)
        safe_m = jnp.where(jnp.isfinite(m_new), m_new, 0)
        s = s * jnp.exp(jnp.where(jnp.isfinite(m), m - safe_m, -jnp.inf)) + jnp.sum(
            jnp.exp(zf - safe_m[:, None]), axis=1)
        w = 1.0 if sw is None else lax.dynamic_slice_in_dim(sw, start, chunk).astype(cfg.acc)[None, :]
        sz = sz + jnp.sum(jnp.where(fresh, z * w, 0), axis=1)
        hit = fresh & (cols[None, :] == labels[:, None])
        zy = zy + jnp.sum(jnp.where(hit, z, 0), axis=1)
        return m_new, s, zy, sz, am

    names = _names(theta, h, params, sw, labels)
    # Carries built from the inputs keep their sharding (explicit meshes).
    row = varying(jnp.zeros_like(h[:, 0], dtype=cfg.acc), names)
    init = (row - jnp.inf, row, row, row, varying(jnp.zeros_like(h[:, 0], dtype=jnp.int32), names))
    m, s, zy, sz, am = lax.fori_loop(0, -(-vocab // chunk), body, init)
    safe_m = jnp.where(jnp.isfinite(m), m, 0)
    return Stats(safe_m + jnp.log(s), zy, sz, m, am)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def local_stats(cfg: Config, transform: Transform, theta, h, params: tuple, sw, labels) -> Stats:
    """:class:`Stats` of ``z = transform(theta, h @ params[0].T, params, cols, labels)``
    over this device's columns, streamed over chunks of ``cfg.chunk`` columns.

    ``params`` is a tuple of arrays sharing the leading column axis (the first
    is projected; the others, e.g. a bias, reach ``transform`` sliced), ``sw``
    the optional smoothing weights ``[V]``, ``labels [N]`` local column ids
    (outside ``[0, V)``: no target). Differentiable in ``theta``, ``h``,
    ``params`` and ``sw`` (not ``argmax``).
    """
    return _forward(cfg, transform, theta, h, params, sw, labels)


def _stats_fwd(cfg, transform, theta, h, params, sw, labels):
    out = _forward(cfg, transform, theta, h, params, sw, labels)
    return out, (theta, h, params, sw, labels, out.lse)


def _stats_bwd(cfg, transform, res, g):
    theta, h, params, sw, labels, lse = res
    g_lse, g_y, g_s = (gi.astype(cfg.acc) for gi in g[:3])
    vocab = params[0].shape[0]
    chunk = cfg.chunk
    cols0 = lax.iota(jnp.int32, chunk)
    # Rows with no cotangent get none: zeroing them (and their hidden states)
    # keeps a NaN in a masked or ignored row out of every gradient.
    live = (g_lse != 0) | (g_y != 0) | (g_s != 0)
    h0 = jnp.where(live[:, None], h, jnp.zeros_like(h))
    lse0 = jnp.where(live, lse, 0)
    dw_sharding = _dw_sharding(h0, params[0])

    def body(k, carry):
        dth, dh, dp, dsw = carry
        start = chunk_start(k, chunk, vocab)
        pc = _slice(params, start, chunk)
        cols = start + cols0
        fresh = (cols >= k * chunk)[None, :]
        raw = project(cfg, h0, pc[0])
        z, t_vjp = jax.vjp(lambda th, r, p: transform(th, r, p, cols, labels), _vary(theta, names), raw,
                           _vary(pc, names))
        p = jnp.exp(jnp.where(live[:, None], z - lse0[:, None], -jnp.inf))
        w = None if sw is None else lax.dynamic_slice_in_dim(sw, start, chunk).astype(cfg.acc)[None, :]
        hit = cols[None, :] == labels[:, None]
        dz = g_lse[:, None] * p + jnp.where(hit, g_y[:, None], 0) + g_s[:, None] * (1.0 if w is None else w)
        dz = jnp.where(fresh & live[:, None], dz, 0)
        d_th, d_raw, d_pc = t_vjp(dz)
        dh_c, dw_c = _project_vjp(cfg, d_raw, h0, pc[0], dw_sharding)
        d_pc = (d_pc[0] + dw_c.astype(d_pc[0].dtype),) + tuple(d_pc[1:])
        dp = _add_slice(dp, d_pc, start)
        if dsw is not None:
            d_w = jnp.sum(jnp.where(fresh & live[:, None], g_s[:, None] * _finite(z), 0), axis=0)
            dsw = _add_slice(dsw, d_w, start)
        return _tree_add(dth, d_th), dh + dh_c, dp, dsw

    names = _names(theta, h, params, sw, labels, lse, g[:3])
    init = (_zeros(theta, names), varying(jnp.zeros_like(h, dtype=cfg.acc), names), _zeros(params, names),
            None if sw is None else _zeros(sw, names))
    dth, dh, dp, dsw = lax.fori_loop(0, -(-vocab // chunk), body, init)
    return _like(dth, theta), _like(dh, h), _like(dp, params), None if sw is None else _like(dsw, sw), None


local_stats.defvjp(_stats_fwd, _stats_bwd)


# ---------------------------------------------------------------------------
# Route 2: a weighted sum of per-row losses, gradients formed in the forward pass
# ---------------------------------------------------------------------------

#: ``row_fn(lse, target, smooth, labels, hp) -> per-row loss`` (elementwise in the rows)
RowFn = Callable[[Array, Array, Array, Array, Any], Array]


def _row_stats(z, labels, sw):
    """Exact :class:`Stats` of a block ``z [n, V]`` holding every column."""
    m = jnp.max(z, axis=1)
    safe_m = jnp.where(jnp.isfinite(m), m, 0)
    lse = safe_m + jnp.log(jnp.sum(jnp.exp(z - safe_m[:, None]), axis=1))
    hit = lax.iota(jnp.int32, z.shape[1])[None, :] == labels[:, None]
    target = jnp.sum(jnp.where(hit, z, 0), axis=1)
    smooth = jnp.sum(z if sw is None else jnp.where(sw[None, :] == 0, 0, z * sw[None, :]), axis=1)
    return Stats(lse, target, smooth, m, jnp.argmax(z, axis=1).astype(jnp.int32))


def _fused_forward(cfg, transform, row_fn, theta, hp, h, params, sw, labels, coef):
    n_rows = h.shape[0]
    n = cfg.chunk
    vocab = params[0].shape[0]
    cols = lax.iota(jnp.int32, vocab)
    swa = None if sw is None else sw.astype(cfg.acc)
    w_full = params[0]
    names = _names(theta, hp, h, params, sw, labels, coef)

    def body(k, carry):
        total, dth, dhp, dh, dp, dsw, dcoef, lse_out, am_out = carry
        start = chunk_start(k, n, n_rows)
        fresh = lax.iota(jnp.int32, n) + start >= k * n
        hc = lax.dynamic_slice_in_dim(h, start, n, axis=0)
        yc = lax.dynamic_slice_in_dim(labels, start, n, axis=0)
        cc = jnp.where(fresh, lax.dynamic_slice_in_dim(coef, start, n, axis=0), 0).astype(cfg.acc)
        live = cc != 0
        z, t_vjp = jax.vjp(lambda th, r, p: transform(th, r, p, cols, yc), _vary(theta, names),
                           project(cfg, hc, w_full), _vary(params, names))
        st = _row_stats(z, yc, swa)
        vals, r_vjp = jax.vjp(lambda a, b, c, q: row_fn(a, b, c, yc, q), st.lse, st.target, st.smooth,
                              _vary(hp, names))
        total = total + jnp.sum(jnp.where(live, cc * vals, 0))
        g_lse, g_y, g_s, d_hp = r_vjp(cc)
        g_lse, g_y, g_s = (jnp.where(live, gi, 0) for gi in (g_lse, g_y, g_s))
        p = jnp.exp(jnp.where(live[:, None], z - jnp.where(live, st.lse, 0)[:, None], -jnp.inf))
        hit = cols[None, :] == yc[:, None]
        dz = g_lse[:, None] * p + jnp.where(hit, g_y[:, None], 0) + g_s[:, None] * (1.0 if swa is None else swa)
        dz = jnp.where(live[:, None], dz, 0)
        d_th, d_raw, d_p = t_vjp(dz)
        h0 = jnp.where(live[:, None], hc, jnp.zeros_like(hc))
        dh_c, dw_c = _project_vjp(cfg, d_raw, h0, w_full)
        dp = _tree_add(dp, (d_p[0] + dw_c.astype(d_p[0].dtype),) + tuple(d_p[1:]))
        if dsw is not None:
            dsw = dsw + jnp.sum(jnp.where(live[:, None], g_s[:, None] * _finite(z), 0), axis=0)
        dh = _add_slice(dh, dh_c, start)
        dcoef = _add_slice(dcoef, jnp.where(live, vals, 0), start)
        lse_out = lax.dynamic_update_slice_in_dim(lse_out, st.lse, start, axis=0)
        am_out = lax.dynamic_update_slice_in_dim(am_out, st.argmax, start, axis=0)
        return total, _tree_add(dth, d_th), _tree_add(dhp, d_hp), dh, dp, dsw, dcoef, lse_out, am_out

    init = (varying(jnp.zeros((), cfg.acc), names), _zeros(theta, names), _zeros(hp, names),
            varying(jnp.zeros(h.shape, cfg.acc), names), _zeros(params, names, cfg.acc),
            None if sw is None else _zeros(sw, names, cfg.acc), varying(jnp.zeros(coef.shape, cfg.acc), names),
            varying(jnp.zeros((n_rows,), cfg.acc), names), varying(jnp.zeros((n_rows,), jnp.int32), names))
    out = lax.fori_loop(0, -(-n_rows // n), body, init)
    return out[0], out[7], out[8], out[1:7]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def fused_sum(cfg: Config, transform: Transform, row_fn: RowFn, theta, hp, h, params: tuple, sw, labels, coef):
    r"""``(sum_i coef_i * row_fn(stats_i), lse, argmax)`` over all columns, in
    row chunks of ``cfg.chunk``, with every gradient formed in the forward pass.

    Rows with ``coef == 0`` contribute exactly 0 to the value and the
    gradients (even when their inputs are NaN). ``lse`` and ``argmax`` are for
    reporting: their cotangents are ignored (``stop_gradient`` them). No mesh
    axis: the columns are all on this device.
    """
    total, lse, am, _ = _fused_forward(cfg, transform, row_fn, theta, hp, h, params, sw, labels, coef)
    return total, lse, am


def _fused_fwd(cfg, transform, row_fn, theta, hp, h, params, sw, labels, coef):
    total, lse, am, grads = _fused_forward(cfg, transform, row_fn, theta, hp, h, params, sw, labels, coef)
    return (total, lse, am), grads


def _fused_bwd(cfg, transform, row_fn, grads, g):
    dth, dhp, dh, dp, dsw, dcoef = grads
    s = g[0]
    scale = lambda t: jax.tree_util.tree_map(lambda x: x * s.astype(x.dtype), t)  # noqa: E731
    return (scale(dth), scale(dhp), scale(dh), scale(dp), None if dsw is None else scale(dsw), None, scale(dcoef))


def _cast_like(grads, primals):
    return jax.tree_util.tree_map(lambda d, x: _like(d, x), grads, primals)


def _fused_bwd_typed(cfg, transform, row_fn, res, g):
    grads, primals = res
    return _cast_like(_fused_bwd(cfg, transform, row_fn, grads, g), primals)


def _fused_fwd_typed(cfg, transform, row_fn, theta, hp, h, params, sw, labels, coef):
    out, grads = _fused_fwd(cfg, transform, row_fn, theta, hp, h, params, sw, labels, coef)
    primals = (theta, hp, h, params, sw, None, coef)
    return out, (grads, primals)


fused_sum.defvjp(_fused_fwd_typed, _fused_bwd_typed)


# ---------------------------------------------------------------------------
# A vocabulary split over mesh axes: inside shard_map, or under plain jit
# ---------------------------------------------------------------------------


def global_stats(stats, axis_name, v_local):
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


def _as_axes(axis_name):
    return tuple(axis_name) if isinstance(axis_name, (tuple, list)) else (axis_name,)


def outer_axes(weight, axis_name):
    """The mesh axes to split the vocabulary over by a ``shard_map`` of our own,
    for a head called under plain ``jit`` (not inside ``shard_map``), or ``()``:

    * ``axis_name`` naming axes of the current mesh (``jax.set_mesh``, ``Auto``
      or ``Explicit``) that are not already manual: those axes;
    * no ``axis_name``, and ``weight``'s rows split on an explicit mesh: the axes
      they are split over (read from its type).

    Inside ``shard_map`` (the axes are manual) ``axis_name`` is the caller's, and
    ``()`` is returned."""
    mesh = jax.sharding.get_abstract_mesh()
    names = tuple(getattr(mesh, "axis_names", ()) or ())
    types = dict(zip(names, getattr(mesh, "axis_types", ()) or ()))
    manual = jax.sharding.AxisType.Manual
    if axis_name is not None:
        axes = _as_axes(axis_name)
        if all(a in types and types[a] != manual for a in axes):
            return axes
        return ()
    sharding = explicit_sharding(weight)
    spec = getattr(sharding, "spec", None)
    if not spec or spec[0] is None:
        return ()
    return _as_axes(spec[0])


def _split_local(cfg, transform, axis_name, theta, h, params, sw, labels):
    v_local = params[0].shape[0]
    local = labels
    if axis_name is not None:
        # Gradients of h and theta are partial sums over the vocabulary
        # shards: marking them varying makes JAX sum them over the axis.
        h = to_varying(h, axis_name)
        theta = jax.tree_util.tree_map(lambda t: to_varying(t, axis_name), theta)
        local = labels - lax.axis_index(axis_name) * v_local
    cfg = cfg._replace(chunk=max(1, min(cfg.chunk, v_local)))
    return global_stats(local_stats(cfg, transform, theta, h, params, sw, local), axis_name, v_local)


def split_stats(cfg: Config, transform: Transform, theta, h, params: tuple, sw, labels, axis_name=None,
                outer=()) -> Stats:
    """:class:`Stats` over the whole vocabulary, ``labels`` global column ids.

    ``axis_name`` (inside ``shard_map``): ``params`` and ``sw`` are this
    device's slice of the vocabulary, combined across the axis. ``outer`` (from
    :func:`outer_axes`, under plain ``jit``): ``params`` and ``sw`` are global
    arrays whose rows are split over those mesh axes; the head runs in a
    ``shard_map`` manual over them only (the other axes, e.g. a batch split of
    ``h``, stay as they are), so no device ever holds more than its slice of
    the weight, and the weight's gradient comes back split like the weight."""
    if not outer:
        return _split_local(cfg, transform, axis_name, theta, h, params, sw, labels)
    P = jax.sharding.PartitionSpec
    row = P(outer if len(outer) > 1 else outer[0])
    # On an explicit mesh the tokens' split is in h's type: those axes are manual
    # too, so each device streams only its tokens (on an Auto mesh they stay
    # automatic, and the partitioner keeps h's split through the shard_map).
    spec = getattr(explicit_sharding(h), "spec", None)
    batch = _as_axes(spec[0]) if spec and spec[0] is not None else ()
    if set(batch) & set(outer):
        batch = ()
    tok = P(batch if len(batch) > 1 else batch[0]) if batch else P()
    f = jax.shard_map(
        functools.partial(_split_local, cfg, transform, outer),
        in_specs=(P(), tok, tuple(row for _ in params), None if sw is None else row, tok),
        out_specs=tok, axis_names=frozenset(outer + batch),
    )
    return f(theta, h, params, sw, labels)
