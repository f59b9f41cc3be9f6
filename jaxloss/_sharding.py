"""Helpers for code that runs inside ``jax.shard_map``: which mesh axes a value
varies over (its "vma"), and marking a value as varying so that loop carries
and cotangents have the types JAX expects (``check_vma=True``, the default)."""

from __future__ import annotations

import jax
from jax import lax

__all__ = ["check_axis_name", "explicit_spec", "replicated", "rows_like", "to_varying", "unsplit", "varying", "vma"]


def _bound_axes() -> tuple | None:
    """The mesh axis names bound where this runs (``shard_map``, ``vmap``
    with ``axis_name``), or None when this JAX does not say."""
    try:
        from jax._src import core
        return tuple(core.unsafe_get_axis_names())
    except Exception:  # noqa: BLE001 - a private API: only the error's wording uses it
        return None


def check_axis_name(owner: str, axis_name, mesh_ok: bool = False) -> None:
    """A ``ValueError`` naming ``owner`` when ``axis_name`` (a name or a tuple of
    names) is not bound at trace time: the call must run inside ``jax.shard_map``
    over that axis. None passes. ``mesh_ok``: an axis of the current mesh
    (``jax.set_mesh``) also passes, for the streamed heads, which run a
    ``shard_map`` of their own under plain ``jit``."""
    if axis_name is None:
        return
    names = tuple(axis_name) if isinstance(axis_name, (tuple, list)) else (axis_name,)
    in_mesh = tuple(getattr(jax.sharding.get_abstract_mesh(), "axis_names", ()) or ()) if mesh_ok else ()
    for n in names:
        if n in in_mesh:
            continue
        try:
            lax.axis_size(n)
        except NameError:
            bound = _bound_axes()
            if bound:
                where = f"the axes in scope here are {bound}"
            else:
                where = "no mesh axis is in scope here (not inside jax.shard_map)"
            raise ValueError(
                f"{owner}: axis_name={axis_name!r} names an axis {n!r} that is not bound; {where}. "
                f"{owner} must be called inside jax.shard_map over a mesh with an axis named {n!r} "
                f"(e.g. mesh = jax.make_mesh((n_devices,), ({n!r},)))"
            ) from None


def vma(*xs) -> frozenset:
    """Mesh axes over which any of ``xs`` varies inside ``shard_map`` (empty outside)."""
    out: frozenset = frozenset()
    for x in xs:
        if x is None:
            continue
        aval = jax.typeof(x)
        names = getattr(aval, "vma", None)  # jax < 0.9
        if names is None:
            names = getattr(getattr(aval, "manual_axis_type", None), "varying", None)
        out |= frozenset(names or ())
    return out


def varying(x, names):
    """``x`` marked varying over the mesh axes ``names`` (loop carries must have
    the type of the loop body's results inside ``shard_map``)."""
    missing = tuple(sorted(frozenset(names) - vma(x)))
    return lax.pcast(x, missing, to="varying") if missing else x


def to_varying(x, axis_name):
    """Mark ``x`` as varying over ``axis_name`` inside ``shard_map`` (a no-op when
    it already is), so that its cotangent is summed over the axis."""
    return varying(x, tuple(axis_name) if isinstance(axis_name, (tuple, list)) else (axis_name,))


def explicit_spec(x):
    """The ``PartitionSpec`` of ``x`` when it lives on a mesh with an explicit axis
    (under ``jax.set_mesh``); ``None`` otherwise (``shard_map``, ``Auto`` meshes,
    one device)."""
    sharding = getattr(jax.typeof(x), "sharding", None)
    mesh = getattr(sharding, "mesh", None)
    spec = getattr(sharding, "spec", None)
    explicit = getattr(getattr(jax.sharding, "AxisType", None), "Explicit", None)
    types = getattr(mesh, "axis_types", None) or ()
    if explicit is None or spec is None or not any(t == explicit for t in types):
        return None
    return spec


def rows_like(x, ndim):
    """``out_sharding`` for a new ``ndim``-dimensional array whose first axis is
    ``x``'s first axis (split like it on an explicit mesh, the other axes
    unsplit); ``None`` where there is no explicit mesh, so that constants built
    with it (``jnp.full``, ``jnp.zeros``, ``lax.broadcasted_iota``) are what they
    are on one device."""
    spec = explicit_spec(x)
    if spec is None:
        return None
    first = spec[0] if len(spec) else None
    return jax.sharding.PartitionSpec(first, *([None] * (ndim - 1)))


def replicated(x):
    """``x`` resharded to be replicated when it lives on a mesh with explicit axes
    and is split over any of them (e.g. the second operand of an in-batch
    ``[B, B]`` product ``x @ x.T``, whose result could not be sharded along both
    axes); ``x`` itself otherwise (``shard_map``, ``Auto`` meshes, one device)."""
    spec = explicit_spec(x)
    if spec is None or all(s is None for s in spec):
        return x
    return jax.sharding.reshard(x, jax.sharding.PartitionSpec())


def unsplit(x, axis=-1):
    """``x`` resharded so that ``axis`` is not split, when it lives on a mesh with
    explicit axes and is split along it (a sort or a cumulative sum along that
    axis needs all of it on each device); ``x`` itself otherwise."""
    spec = explicit_spec(x)
    if spec is None:
        return x
    spec = tuple(spec) + (None,) * (x.ndim - len(spec))
    axis = axis % x.ndim
    if spec[axis] is None:
        return x
    return jax.sharding.reshard(x, jax.sharding.PartitionSpec(*spec[:axis], None, *spec[axis + 1:]))
