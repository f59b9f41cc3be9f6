"""The compiled program of a loss and the public function that calls it.

:func:`make_public` builds the function users call: it binds the call to the
advertised signature, runs every trace-time check (:func:`validate_call`) and
calls the one jitted program of :func:`make_compute`, which applies the dtype
policy, lays ``where``/``weights`` out as the layout's where mode says, runs the
kernel, the optional value checks and the reduction.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import Interval, check_broadcastable, check_range, checking, value_check
from ._docs import document
from ._layout import Layout
from ._numerics import safe_div
from ._reduce import Unreduced, check_reduction, compute_dtype, counted, reduce_parts
from ._sharding import check_axis_name
from ._signature import Signature

__all__ = ["make_public"]

Array = jax.Array


def _run_kernel(kernel: Callable[..., Any], sig: Signature, arrays: Mapping[str, Array],
                options: Mapping[str, Any]) -> Unreduced:
    out = kernel(*(arrays[n] for n in sig.inputs), **options)  # by name: jax orders dicts by key
    return out if isinstance(out, Unreduced) else Unreduced(out)


def _check_values(sig: Signature, layout: Layout, checks: Mapping[str, Interval], arrays: Mapping[str, Array],
                  hparams: Mapping[str, Any], options: Mapping[str, Any], *weights: Array | None) -> None:
    """The checkify checks of :func:`jaxloss.value_checks` (only traced inside it)."""
    layout.value_checks(sig.name, arrays, options)
    for w in weights:
        if w is not None:
            value_check(w >= 0, sig.name, "be >= 0", "weights", w)
    for k, interval in checks.items():
        h = hparams.get(k)
        if h is not None:
            h = jnp.asarray(h)
            value_check(interval.test(h), sig.name, f"lie in {interval.describe()}", k, h)


def _cast_hparam(h: Any, dtype: Any) -> Any:
    return jax.tree_util.tree_map(
        lambda x: jnp.asarray(x, dtype) if jnp.issubdtype(jnp.result_type(x), jnp.floating) else x, h
    )


def _global(total: Array, den: Array, reduction: str, axis_name: Any) -> Any:
    """The reduction of the global sum and weight over a ``shard_map`` axis."""
    total, den = jax.lax.psum((total, den), axis_name)
    if reduction == "sum":
        return total
    return (total, den) if reduction == "sum_and_weight" else safe_div(total, den)


def make_compute(kernel: Callable[..., Any], sig: Signature, layout: Layout, checks: Mapping[str, Interval]):
    """The jitted program for one loss: cast, lay out ``where``, run the kernel, check, reduce."""

    @functools.partial(jax.jit, static_argnames=("reduction", "static_items", "checked"))
    def compute(arrays, hparams, weights, where, *, reduction, static_items, checked):
        options = dict(static_items)
        dtype = compute_dtype(*arrays)
        arrays = {
            n: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) and not layout.role(n).native else a
            for n, a in zip(sig.inputs, arrays)
        }
        hparams = {k: (None if h is None else _cast_hparam(h, dtype)) for k, h in hparams.items()}
        kernel_options = {**hparams, **options}
        if sig.takes_where:
            kernel_options["where"] = None
        loss_shape = jax.eval_shape(lambda xs: _run_kernel(kernel, sig, xs, kernel_options).loss, arrays).shape
        elements = None
        if layout.per_element:
            arrays, weights, where, elements = layout.split_per_element(sig.name, arrays, weights, where, loss_shape,
                                                                        options, dtype)
            kernel_options["where"] = elements
        if weights is not None:
            check_broadcastable(sig.name, "weights", weights.shape, loss_shape)
        if where is not None:
            check_broadcastable(sig.name, "where", where.shape, loss_shape)
            mask = jnp.broadcast_to(where, loss_shape)
            if layout.masks_inputs:
                arrays = layout.zero_masked(sig.name, arrays, mask, options)
            if layout.where == "kernel":
                kernel_options["where"] = mask
        if checked:
            _check_values(sig, layout, checks, arrays, hparams, options, weights,
                          None if elements is None else elements.weights)
        out = _run_kernel(kernel, sig, arrays, kernel_options)
        values = out.loss.astype(dtype)
        mean, stream = out.mean, out.stream
        if mean is not None and mean.scale is not None and reduction in ("mean", "sum_and_weight"):
            values = values * mean.scale.astype(dtype)
        count = None if mean is None else mean.count
        fused = None if stream is None else stream.fused
        w = out.weight if weights is None else (weights if out.weight is None else out.weight * weights)
        axis_name = options.get(layout.axis_name) if layout.axis_name else None
        if axis_name is None or reduction == "none":
            reduced, fused_aux = reduce_parts(values, reduction, w, where, count, fused)
        else:  # the global sum and weight over the batch axis, on every device
            (total, den), fused_aux = reduce_parts(values, "sum_and_weight", w, where, count, fused)
            reduced = _global(total, den, reduction, axis_name)
        if stream is None or stream.summarize is None:
            return reduced
        per_element = stream.per_element if fused_aux is None else fused_aux
        kept = counted(values.shape, None if w is None else jnp.broadcast_to(w, values.shape), where)
        kept = jnp.ones(values.shape, bool) if kept is None else kept
        return reduced, stream.summarize(per_element, kept)

    return compute


def validate_call(sig: Signature, layout: Layout, checks: Mapping[str, Interval],
                  validate: Callable[..., None] | None, arrays: dict, hparams: dict, static: dict,
                  common: dict) -> tuple[str, Array | None, Array | None]:
    """Every trace-time check of one call; returns ``(reduction, weights, where)``."""
    name = sig.name
    reduction = check_reduction(name, common.get("reduction", "mean"))
    for k, v in static.items():
        sig.static_types[k].check(name, k, v)
        try:
            hash(v)
        except TypeError:
            raise TypeError(f"{name}: {k} is a static option and must be hashable, got {type(v).__name__}") from None
    if validate is not None:  # the loss's own checks first: they know its inputs' meaning
        validate(name, *arrays.values(), **hparams, **static)
    layout.check(name, arrays, static)
    if layout.axis_name:
        check_axis_name(name, static.get(layout.axis_name))
    for k, interval in checks.items():
        check_range(name, k, hparams.get(k), interval)
    weights, where = common.get("weights"), common.get("where")
    if weights is not None:
        weights = jnp.asarray(weights)
        if not jnp.issubdtype(weights.dtype, jnp.number) or jnp.issubdtype(weights.dtype, jnp.complexfloating):
            raise TypeError(f"{name}: weights must be a real numeric array, got dtype {weights.dtype}")
    if where is not None:
        where = jnp.asarray(where)
        if where.dtype != jnp.bool_:
            if not jnp.issubdtype(where.dtype, jnp.integer) and not jnp.issubdtype(where.dtype, jnp.floating):
                raise TypeError(f"{name}: where must be a boolean mask or a 0/1 integer or float mask "
                                f"(read as where != 0), got dtype {where.dtype}")
            if checking():  # a 0/1 mask holding a 2 or 0.5 is likely a mistake (a count, a weight)
                value_check((where == 0) | (where == 1), name, "be 0 or 1 (a 0/1 mask)", "where", where)
            where = where != 0  # PyTorch's and TRL's 0/1 completion masks; any nonzero counts as True
    return reduction, weights, where


def _as_traced(hparams: dict, dtype: Any) -> dict:
    """Python numbers become arrays of the compute dtype, so ``gamma=2`` and
    ``gamma=2.0`` (and ``gamma=3.0``) share one compiled program eagerly."""
    out = {}
    for k, v in hparams.items():
        if isinstance(v, (list, tuple)):
            v = jnp.asarray(v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            v = np.asarray(v, dtype)
        out[k] = v
    return out


def make_public(kernel: Callable[..., Any], sig: Signature, layout: Layout, checks: Mapping[str, Interval],
                validate: Callable[..., None] | None) -> Callable[..., Any]:
    """The function users call for ``kernel``: binds any binding of the advertised
    signature, runs every trace-time check, calls the one jitted program, and
    carries the signature, the docstring (with the shared arguments) and the kernel."""
    compute = make_compute(kernel, sig, layout, checks)

    def public(*args: Any, **kwargs: Any) -> Any:
        arrays, hparams, static, common = sig.bind(args, kwargs)
        reduction, weights, where = validate_call(sig, layout, checks, validate, arrays, hparams, static, common)
        hparams = _as_traced(hparams, compute_dtype(*arrays.values()))
        return compute(
            tuple(arrays.values()), hparams, weights, where,
            reduction=reduction, static_items=tuple(static.items()), checked=checking(),
        )

    public.__signature__ = sig.python_signature()  # type: ignore[attr-defined]
    public.__name__ = public.__qualname__ = sig.name
    public.__doc__ = document(kernel.__doc__, sig, layout)
    public.__module__ = kernel.__module__ or "__main__"
    public.__wrapped_kernel__ = kernel  # type: ignore[attr-defined]
    public._compute = compute  # type: ignore[attr-defined]  # the jitted program (tests read its cache)
    return public
