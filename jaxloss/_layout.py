"""How a loss's inputs relate to its unreduced loss, and what ``where`` means for it.

A :class:`Layout` is four declarations:

* **input roles** (:class:`Role`, one per positional input; unlisted inputs are
  floating point of the shared shape): the input's kind (float, integer labels,
  or any real numbers), its shape relative to the others and to the loss, the
  value domain checked inside :func:`jaxloss.value_checks`, whether it stays in
  its own dtype, and -- for labels -- whether they index the reduced axis and
  which option holds an ignored label value;
* **the reduced axis**: an int, the name of a static option (``"axis"``), or
  None (the loss is laid out like the shared inputs);
* **the where mode**: what the shared ``where`` argument does (see
  :data:`WHERE_MODES`);
* **axis_name**: the option that names a ``shard_map`` axis the batch is split
  over; the reduction's sum and weight are then ``psum``-ed over it.

Nothing is decided by comparing shapes at run time: the roles say which inputs
a mask reaches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from ._checks import (
    Domain,
    broadcasts_to,
    check_broadcastable,
    check_float,
    check_int,
    check_labels,
    check_real,
    check_same_shape,
    normalize_axis,
    value_check,
)

__all__ = ["ELEMENTWISE", "WHERE_MODES", "Elements", "Layout", "Role", "element_parts"]

Array = jax.Array
Kind = Literal["float", "labels", "real"]
Shape = Literal["shared", "reduced", "broadcast", "trailing", "free"]
WhereMode = Literal["inputs", "elements", "items", "kernel", "anchors"]

#: What ``where`` means, by mode:
#:
#: * ``"inputs"`` (default): a mask of the unreduced loss's shape; the masked
#:   entries of the inputs whose role reaches the loss (``"shared"``,
#:   ``"reduced"``, ``"broadcast"``, ``"trailing"``) are zeroed before the kernel
#:   runs, and the reduction leaves them out (the double ``where``).
#: * ``"elements"``: dense prediction. A ``where``/``weights`` that broadcasts to
#:   the loss applies per score; one that broadcasts to the inputs (or to the
#:   inputs without the class axis) applies per element: the kernel receives an
#:   :class:`Elements` as its ``where=`` (masked elements zeroed in the shared
#:   inputs first), and a score with no element left leaves the mean.
#: * ``"items"``: as ``"elements"``, for lists whose masked items leave the list
#:   as if sliced away (the kernel uses ``Elements.mask``, not only the weights).
#: * ``"kernel"``: as ``"inputs"``, and the kernel also receives the mask, of the
#:   loss's shape, as ``where=`` (in-batch losses where a masked example must
#:   also leave the others' terms, GRPO's token mask).
#: * ``"anchors"``: the mask only reaches the reduction: a masked anchor still
#:   serves as the others' positive or negative.
WHERE_MODES = ("inputs", "elements", "items", "kernel", "anchors")
_SHAPES = ("shared", "reduced", "broadcast", "trailing", "free")
_KINDS = ("float", "labels", "real")


@dataclasses.dataclass(frozen=True)
class Role:
    """The role of one positional input.

    Attributes:
      kind: ``"float"`` (floating point; finite inside ``value_checks``),
        ``"labels"`` (integer) or ``"real"`` (any real numeric or bool dtype).
      shape: ``"shared"`` (one shape with every other shared input: the loss's
        shape, plus the reduced axis when there is one), ``"reduced"`` (the
        loss's shape: the shared shape without the reduced axis), ``"broadcast"``
        (broadcastable to the loss), ``"trailing"`` (the loss's shape followed by
        axes of its own; checked by the loss's ``validate``) or ``"free"``
        (checked by ``validate`` only; never masked).
      domain: the :class:`~jaxloss._checks.Domain` of its values, checked inside
        :func:`jaxloss.value_checks`.
      native: a floating input handed to the kernel in its own dtype (a kernel
        that accumulates in float32 itself and must not copy a large bf16 input).
      indexes: labels index the reduced axis of the first input (the core checks
        them against its size).
      ignore: the name of the static option holding a label value that is
        ignored (exempt from the range check), e.g. ``"ignore_index"``.
    """

    kind: Kind = "float"
    shape: Shape = "shared"
    domain: Domain | None = None
    native: bool = False
    indexes: bool = False
    ignore: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"Role: kind must be one of {_KINDS}, got {self.kind!r}")
        if self.shape not in _SHAPES:
            raise ValueError(f"Role: shape must be one of {_SHAPES}, got {self.shape!r}")
        if (self.indexes or self.ignore is not None) and self.kind != "labels":
            raise ValueError("Role: indexes and ignore apply to labels only")


_DEFAULT = Role()


class Elements(NamedTuple):
    """The per-element ``where``/``weights`` of a dense loss, as its kernel receives them.

    Attributes:
      weights: float weights of the inputs' shape: the user's per-element
        weights (1 when not given), 0 at masked elements.
      mask: the boolean per-element mask alone, or None when ``where`` was not
        given per element (a masked element differs from one of weight 0 for
        losses whose masked items leave a softmax).
    """

    weights: Array
    mask: Array | None


def element_parts(where: Elements | None) -> tuple[Array | None, Array | None]:
    """``(weights, mask)`` of a per-element kernel's ``where`` (both None when
    neither ``where`` nor ``weights`` was given per element)."""
    return (None, None) if where is None else (where.weights, where.mask)


@dataclasses.dataclass(frozen=True)
class Layout:
    """How a loss's positional inputs relate to its unreduced loss.

    Attributes:
      inputs: the :class:`Role` of each input that is not floating point of the
        shared shape (the default role).
      axis: the axis of the shared inputs the loss reduces (a class or feature
        axis), as an int or as the name of a static option (``"axis"``); None
        when the loss is laid out like the shared inputs.
      where: the where mode, one of :data:`WHERE_MODES`.
      axis_name: the name of a static option that holds a ``shard_map`` mesh
        axis (or tuple of axes) over which the batch is split. When that option
        is not None, the sum and the weight of ``"mean"``, ``"sum"`` and
        ``"sum_and_weight"`` are all-reduced (``psum``) over it before
        ``"mean"`` divides, so every device returns the global value;
        ``"none"`` stays per device.
    """

    inputs: Mapping[str, Role] = dataclasses.field(default_factory=dict)
    axis: int | str | None = None
    where: WhereMode = "inputs"
    axis_name: str | None = None

    def __post_init__(self) -> None:
        if self.where not in WHERE_MODES:
            raise ValueError(f"Layout: where must be one of {WHERE_MODES}, got {self.where!r}")
        for n, r in self.inputs.items():
            if not isinstance(r, Role):
                raise TypeError(f"Layout: the role of {n!r} must be a Role, got {type(r).__name__}")

    # -- what the declarations imply --------------------------------------

    def role(self, name: str) -> Role:
        return self.inputs.get(name, _DEFAULT)

    def reduced_axis(self, options: Mapping[str, Any]) -> int | None:
        """The reduced axis for these static options (may be negative)."""
        return options[self.axis] if isinstance(self.axis, str) else self.axis

    @property
    def kernel_takes_where(self) -> bool:
        """Whether the kernel receives ``where=`` (an :class:`Elements`, or the mask)."""
        return self.where in ("elements", "items", "kernel")

    @property
    def per_element(self) -> bool:
        """Whether ``where``/``weights`` may be given per input element."""
        return self.where in ("elements", "items")

    @property
    def masks_inputs(self) -> bool:
        """Whether a loss-shaped ``where`` zeroes the inputs before the kernel runs."""
        return self.where in ("inputs", "kernel")

    def shaped(self, inputs, *shapes: str) -> tuple[str, ...]:
        return tuple(n for n in inputs if self.role(n).shape in shapes)

    # -- trace-time checks -------------------------------------------------

    def check(self, loss_name: str, arrays: Mapping[str, Array], options: Mapping[str, Any]) -> None:
        """The trace-time checks of dtypes, shapes, the axis and the labels."""
        inputs = tuple(arrays)
        for n in inputs:
            kind = self.role(n).kind
            (check_float if kind == "float" else check_int if kind == "labels" else check_real)(loss_name, n, arrays[n])
        same = self.shaped(inputs, "shared")
        if len(same) > 1:
            check_same_shape(loss_name, same, [arrays[n] for n in same])
        axis = self.reduced_axis(options)
        if axis is None:
            return
        first = arrays[inputs[0]]
        if first.ndim == 0:
            raise ValueError(f"{loss_name}: {inputs[0]} must have an axis {axis} to reduce, got a scalar")
        ax = normalize_axis(loss_name, axis, first.ndim)
        expected = first.shape[:ax] + first.shape[ax + 1:]
        for n in self.shaped(inputs, "reduced"):
            if tuple(arrays[n].shape) != tuple(expected):
                raise ValueError(
                    f"{loss_name}: {n} must have the shape of {inputs[0]} without axis {axis}: "
                    f"{inputs[0]} {tuple(first.shape)} needs {n} {tuple(expected)}, got {n} {tuple(arrays[n].shape)}"
                )
        for n in inputs:
            role = self.role(n)
            if role.indexes:
                if first.shape[ax] == 0:
                    raise ValueError(
                        f"{loss_name}: {inputs[0]} has no classes along axis {axis} (shape {tuple(first.shape)})"
                    )
                check_labels(loss_name, arrays[n], first.shape[ax], self._ignored(role, options), arg=n)

    @staticmethod
    def _ignored(role: Role, options: Mapping[str, Any]) -> Any:
        return None if role.ignore is None else options.get(role.ignore)

    def value_checks(self, loss_name: str, arrays: Mapping[str, Array], options: Mapping[str, Any]) -> None:
        """The checkify checks of the inputs' values (traced inside ``value_checks()`` only)."""
        inputs = tuple(arrays)
        for n in inputs:
            role = self.role(n)
            if role.kind == "float":
                value_check(jnp.isfinite(arrays[n]), loss_name, "be finite", n, arrays[n])
            if role.domain is not None and (role.domain.unless is None or not options.get(role.domain.unless)):
                value_check(role.domain.test(arrays[n]), loss_name, role.domain.describe, n, arrays[n])
            axis = self.reduced_axis(options)
            if role.indexes and axis is not None:
                num = arrays[inputs[0]].shape[axis]
                ignore = self._ignored(role, options)
                lab = arrays[n]
                ok = (lab >= 0) & (lab < num)
                if ignore is not None:
                    ok = ok | (lab == ignore)
                what = f"lie in [0, {num})" + ("" if ignore is None else f" or equal {role.ignore}")
                value_check(ok, loss_name, what, n, lab)

    # -- where -------------------------------------------------------------

    def zero_masked(self, loss_name: str, arrays: Mapping[str, Array], mask: Array,
                    options: Mapping[str, Any]) -> dict[str, Array]:
        """The inputs with the entries that ``mask`` (the loss's shape) masks set to
        0, for every input whose role reaches the loss; free inputs unchanged."""
        axis = self.reduced_axis(options)
        out = {}
        for n, x in arrays.items():
            shape = self.role(n).shape
            if shape == "free":
                out[n] = x
                continue
            if shape == "shared" and axis is not None:
                m = jnp.expand_dims(mask, axis % x.ndim)
            elif shape == "trailing":
                m = mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim))
            else:
                m = mask
            if not broadcasts_to(m.shape, x.shape):  # a smaller input of the loss's layout: broadcast it
                if not broadcasts_to(x.shape, m.shape):
                    raise ValueError(f"{loss_name}: {n} {tuple(x.shape)} does not lay out like the loss "
                                     f"{tuple(mask.shape)} that where masks")
                x = jnp.broadcast_to(x, m.shape)
            out[n] = jnp.where(m, x, jnp.zeros_like(x))
        return out

    def split_per_element(self, loss_name: str, arrays: Mapping[str, Array], weights: Array | None,
                          where: Array | None, loss_shape: tuple, options: Mapping[str, Any], dtype: Any):
        """A per-element layout's ``(arrays, weights, where, Elements or None)``: a
        ``where``/``weights`` that broadcasts to the loss stays per loss entry; the
        others apply per input element (per pixel, shaped like the labels, with a
        class axis), whose masked elements are zeroed in the shared inputs."""
        input_shape = next(iter(arrays.values())).shape
        axis = self.reduced_axis(options)
        axis = None if axis is None else axis % len(input_shape)
        where, element_mask = _split(loss_name, where, "where", loss_shape, input_shape, axis)
        weights, element = _split(loss_name, weights, "weights", loss_shape, input_shape, axis)
        if element_mask is not None:
            arrays = {n: jnp.where(element_mask, x, jnp.zeros_like(x)) if self.role(n).shape == "shared" else x
                      for n, x in arrays.items()}
            element = element_mask if element is None else jnp.where(element_mask, element, 0)
        elements = None if element is None else Elements(element.astype(dtype), element_mask)
        return arrays, weights, where, elements


def _split(name: str, mask_like: Array | None, arg: str, loss_shape: tuple, input_shape: tuple,
           axis: int | None) -> tuple[Array | None, Array | None]:
    """``(per loss entry, per input element)``: ``where`` or ``weights`` applies per
    loss entry when it broadcasts to the loss, else per element of the inputs.
    With a class ``axis`` (label maps), one that broadcasts to the pixels (the
    inputs without that axis, the labels' shape) applies to every class of its pixel."""
    if mask_like is None or broadcasts_to(mask_like.shape, loss_shape):
        return mask_like, None
    what = f"the unreduced loss {tuple(loss_shape)} or the inputs"
    if axis is not None:
        pixels = tuple(input_shape[:axis]) + tuple(input_shape[axis + 1:])
        if broadcasts_to(mask_like.shape, pixels):
            return None, jnp.broadcast_to(jnp.expand_dims(jnp.broadcast_to(mask_like, pixels), axis), input_shape)
        what = f"the unreduced loss {tuple(loss_shape)}, the pixels {pixels} or the inputs"
    check_broadcastable(name, arg, mask_like.shape, input_shape, what)
    return None, jnp.broadcast_to(mask_like, input_shape)


ELEMENTWISE = Layout()
