"""Helpers for code that runs inside ``jax.shard_map``: which mesh axes a value
varies over (its "vma"), and marking a value as varying so that loop carries
and cotangents have the types JAX expects (``check_vma=True``, the default)."""

from __future__ import annotations

import jax
from jax import lax

__all__ = ["check_axis_name", "replicated", "to_varying", "varying", "vma"]


def _bound_axes() -> tuple | None:
    """The mesh axis names bound where this runs (``shard_map``, ``vmap``
    with ``axis_name``), or None when this JAX does not say."""
    try:
        from jax._src import core
        return tuple(core.unsafe_get_axis_names())
    except Exception:  # noqa: BLE001 - a private API: only the error's wording uses it
        return None


def check_axis_name(owner: str, axis_name) -> None:
    """A ``ValueError`` naming ``owner`` when ``axis_name`` (a name or a tuple of
    names) is not bound at trace time: the call must run inside ``jax.shard_map``
    over that axis. None passes."""
    if axis_name is None:
        return
    names = tuple(axis_name) if isinstance(axis_name, (tuple, list)) else (axis_name,)
    for n in names:
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


def replicated(x):
    """``x`` resharded to be replicated when it lives on a mesh with explicit axes
    and is split over any of them (e.g. the second operand of an in-batch
    ``[B, B]`` product ``x @ x.T``, whose result could not be sharded along both
    axes); ``x`` itself otherwise (``shard_map``, ``Auto`` meshes, one device)."""
    sharding = getattr(jax.typeof(x), "sharding", None)
    mesh = getattr(sharding, "mesh", None)
    spec = getattr(sharding, "spec", None)
    explicit = getattr(getattr(jax.sharding, "AxisType", None), "Explicit", None)
    types = getattr(mesh, "axis_types", None) or ()
    if explicit is None or spec is None or not any(t == explicit for t in types):
        return x
    if all(s is None for s in spec):
        return x
    return jax.sharding.reshard(x, jax.sharding.PartitionSpec())
