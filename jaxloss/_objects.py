"""Loss objects: the class generated for every loss, and their composition.

A loss object stores a loss's options and is called like its function,
``crit(*inputs, weights=None, where=None)``. It is

* immutable, with a readable ``repr`` and ``replace(**changes)``;
* a pytree: numeric hyper-parameters are leaves (traced under ``jit``/``vmap``),
  structural options and the reduction are static;
* hashable, with equal objects hashing equal, when its hyper-parameters are
  Python numbers or None (so it can be a ``static_argnums`` value or a flax
  linen attribute);
* picklable when its function is defined at module level;
* composable: ``+``, ``-`` and scalar ``*`` and ``/`` give a :class:`WeightedSum`.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from ._checks import Interval, check_range, is_concrete
from ._docs import plain_markup
from ._reduce import check_reduction
from ._signature import Signature, unknown_keyword

Array = jax.Array

__all__ = ["FunctionLoss", "Loss", "WeightedSum"]


def _is_scalar(x: Any) -> bool:
    return isinstance(x, numbers.Number) or (hasattr(x, "shape") and getattr(x, "ndim", 1) == 0)


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Number) or (is_concrete(x) and np.ndim(x) == 0 and hasattr(x, "dtype"))


def _fmt(x: Any) -> str:
    if isinstance(x, float) or (hasattr(x, "dtype") and is_concrete(x) and np.ndim(x) == 0):
        return f"{float(x):g}"
    return repr(x)


def _same_value(x: Any, y: Any) -> bool:
    if x is y:
        return True
    if x is None or y is None or not (is_concrete(x) and is_concrete(y)):
        return False
    return bool(np.array_equal(np.asarray(x), np.asarray(y)))


def _hash_key(owner: str, name: str, value: Any) -> Any:
    """A hashable stand-in for a hyper-parameter value that is a Python number,
    None or a tuple of them; ``TypeError`` (saying what to do) for an array."""
    if value is None or (isinstance(value, numbers.Number)):
        return value
    if isinstance(value, tuple) and all(isinstance(v, numbers.Number) for v in value):
        return value
    raise TypeError(
        f"{owner} is not hashable: {name} is a {type(value).__name__}, not a Python number; "
        f"give {name} as a Python number (e.g. float(x)) or a tuple of numbers to use the object as a "
        "static argument or a flax linen attribute, or pass the object as a traced argument instead"
    )


class Loss:
    """Base class of every loss object: composition with ``+ - * /``.

    Example:
      >>> import jaxloss
      >>> jaxloss.DiceLoss(from_logits=True) + 0.5 * jaxloss.MSELoss()
      DiceLoss(smooth=1.0, axis=None, from_logits=True, reduction='mean') + 0.5 * MSELoss(reduction='mean')
    """

    def __call__(self, *inputs: Any, weights: Any = None, where: Any = None) -> Array:
        raise NotImplementedError

    def _terms(self) -> tuple[tuple[Any, Loss], ...]:
        return ((1.0, self),)

    def __add__(self, other: Any) -> WeightedSum:
        if not isinstance(other, Loss):
            return NotImplemented
        return WeightedSum(self._terms() + other._terms())

    def __radd__(self, other: Any) -> Loss:
        if isinstance(other, numbers.Number) and other == 0:  # sum([...]) starts at 0
            return self
        return NotImplemented

    def __sub__(self, other: Any) -> WeightedSum:
        if not isinstance(other, Loss):
            return NotImplemented
        return self + (-1.0) * other

    def __mul__(self, scale: Any) -> WeightedSum:
        if not _is_scalar(scale):
            return NotImplemented
        return WeightedSum(tuple((c * scale, term) for c, term in self._terms()))

    __rmul__ = __mul__

    def __truediv__(self, scale: Any) -> WeightedSum:
        if not _is_scalar(scale):
            return NotImplemented
        return WeightedSum(tuple((c / scale, term) for c, term in self._terms()))

    def __neg__(self) -> WeightedSum:
        return self * -1.0

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(
            f"{type(self).__name__} is immutable; use .replace({name}=...) for a changed copy"
        )

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"{type(self).__name__} is immutable")


@jax.tree_util.register_pytree_node_class
class WeightedSum(Loss):
    """``sum_k c_k * loss_k(*inputs, weights=..., where=...)``: losses composed
    with ``+ - * /``. The coefficients are pytree leaves (traced under jit)."""

    def __init__(self, terms: Sequence[tuple[Any, Loss]]):
        object.__setattr__(self, "terms", tuple((c, term) for c, term in terms))

    def _terms(self) -> tuple[tuple[Any, Loss], ...]:
        return self.terms

    def __call__(self, *inputs: Any, weights: Any = None, where: Any = None) -> Array:
        total = None
        for c, term in self.terms:
            part = c * term(*inputs, weights=weights, where=where)
            total = part if total is None else total + part
        return total

    def __repr__(self) -> str:
        out = []
        for i, (c, term) in enumerate(self.terms):
            neg = _is_number(c) and c < 0
            mag = -c if neg else c
            body = repr(term) if _is_number(mag) and mag == 1 else f"{_fmt(mag)} * {term!r}"
            out.append(("- " if neg else "+ ") + body if i else ("-" if neg else "") + body)
        return " ".join(out)

    def __eq__(self, other: Any) -> bool:
        if type(other) is not WeightedSum or len(other.terms) != len(self.terms):
            return NotImplemented if not isinstance(other, Loss) else False
        return all(_same_value(c, d) and t == u for (c, t), (d, u) in zip(self.terms, other.terms))

    def __hash__(self) -> int:
        return hash(tuple((_hash_key("WeightedSum", "coefficient", c), t) for c, t in self.terms))

    def tree_flatten(self):
        return (tuple(c for c, _ in self.terms), tuple(t for _, t in self.terms)), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        coefs, losses = children
        obj = object.__new__(cls)
        object.__setattr__(obj, "terms", tuple(zip(coefs, losses)))
        return obj


def _repr_value(v: Any) -> str:
    if hasattr(v, "shape") and np.ndim(v) > 0:
        return f"Array(shape={tuple(v.shape)}, dtype={v.dtype})"
    if hasattr(v, "dtype") and is_concrete(v):
        return repr(np.asarray(v).item())
    return repr(v)


def _rebuild(module: str, function: str, options: Mapping[str, Any]) -> FunctionLoss:
    """Unpickle a loss object: its module's function's ``.Loss(**options)``."""
    return getattr(importlib.import_module(module), function).Loss(**options)


class FunctionLoss(Loss):
    """Base of the classes generated by :func:`jaxloss.loss` (one per loss function).

    The options live as plain attributes (``HuberLoss().delta``); the class
    attributes ``_fn``, ``_hparams``, ``_static`` and ``_checks`` describe the loss.
    """

    _fn: Callable[..., Any]
    _hparams: Mapping[str, Any]
    _static: Mapping[str, Any]
    _sig: Signature
    _checks: Mapping[str, Interval]

    def __init__(self, **options: Any):
        cls = type(self)
        allowed = (*cls._hparams, *cls._static, "reduction")
        for k in options:
            if k not in allowed:
                raise unknown_keyword(cls.__name__, k, allowed)
        values = {**cls._hparams, **cls._static, "reduction": "mean", **options}
        values["reduction"] = check_reduction(cls.__name__, values["reduction"])
        for k in cls._static:
            cls._sig.static_types[k].check(cls.__name__, k, values[k])
        for k, interval in cls._checks.items():
            check_range(cls.__name__, k, values.get(k), interval)
        for k in allowed:
            object.__setattr__(self, k, values[k])

    def options(self) -> dict[str, Any]:
        """Every option of this object, by name (hyper-parameters, static options, reduction)."""
        return {k: self.__dict__[k] for k in (*type(self)._hparams, *type(self)._static, "reduction")}

    def replace(self, **changes: Any) -> FunctionLoss:
        """A copy with some options changed: ``HuberLoss().replace(delta=2.0)``."""
        return type(self)(**{**self.options(), **changes})

    def __call__(self, *inputs: Any, weights: Any = None, where: Any = None) -> Any:
        return type(self)._fn(*inputs, **self.options(), weights=weights, where=where)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={_repr_value(v)}' for k, v in self.options().items())})"

    def __eq__(self, other: Any) -> bool:
        if type(other) is not type(self):
            return NotImplemented if not isinstance(other, Loss) else False
        mine, theirs = self.options(), other.options()
        return all(_same_value(mine[k], theirs[k]) if k in type(self)._hparams else mine[k] == theirs[k]
                   for k in mine)

    def __hash__(self) -> int:
        name = type(self).__name__
        items = tuple((k, _hash_key(name, k, v) if k in type(self)._hparams else v)
                      for k, v in self.options().items())
        return hash((type(self), items))

    def __reduce__(self):
        fn = type(self)._fn
        return _rebuild, (fn.__module__, fn.__name__, self.options())

    def tree_flatten(self):
        cls = type(self)
        static = tuple((k, self.__dict__[k]) for k in (*cls._static, "reduction"))
        return tuple(self.__dict__[k] for k in cls._hparams), static

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        for k, v in zip(cls._hparams, children):
            object.__setattr__(obj, k, v)
        for k, v in aux:
            object.__setattr__(obj, k, v)
        return obj


def _class_doc(cname: str, fn: Callable[..., Any], sig: Signature) -> str:
    summary = (fn.__doc__ or "").strip().split("\n")[0]
    opts = ", ".join([*sig.hparams, *sig.static, "reduction"])
    return plain_markup(
        f"Loss object for :func:`jaxloss.{sig.name}`.\n\n"
        + (summary + "\n\n" if summary else "")
        + f"``{cname}({opts})`` stores the options; calling it as ``crit(*inputs, weights=None, where=None)`` "
        f"equals ``{sig.name}(*inputs, **options, weights=weights, where=where)``. Numeric options are pytree "
        "leaves (traced under jit/vmap), structural ones are static. Compose with ``+ - * /``; "
        "``.replace(**changes)`` gives a changed copy."
    )


def _class_signature(sig: Signature) -> inspect.Signature:
    public = sig.python_signature().parameters
    names = (*sig.hparams, *sig.static, "reduction")
    return inspect.Signature([public[n] for n in names], return_annotation=None)


def make_loss_class(cname: str, fn: Callable[..., Any], sig: Signature, checks: Mapping[str, Interval]) -> type:
    """The loss object class of one loss function (a pytree subclass of :class:`FunctionLoss`)."""
    cls = type(
        cname,
        (FunctionLoss,),
        {
            "__doc__": _class_doc(cname, fn, sig),
            "__module__": fn.__module__,
            "__qualname__": cname,
            "__signature__": _class_signature(sig),
            "_fn": staticmethod(fn),
            "_hparams": dict(sig.hparams),
            "_static": dict(sig.static),
            "_sig": sig,
            "_checks": dict(checks),
        },
    )
    return jax.tree_util.register_pytree_node_class(cls)
