"""A kernel's signature, and the binding of calls to the public function.

The kernel's positional parameters are its input arrays; its keyword-only
parameters (with defaults) are its options: numeric ones are traced
hyper-parameters, the ones listed in ``static=`` are structural (typed by
:class:`~jaxloss._checks.Static`). ``reduction``, ``weights`` and ``where`` are
added by :func:`jaxloss.loss`; a kernel declares ``where=None`` only when its
layout's where mode hands the mask to it (see :mod:`jaxloss._layout`).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import ANY, Static

__all__ = ["COMMON", "Signature", "did_you_mean", "unknown_keyword"]

COMMON = ("reduction", "weights", "where")

# Names users bring from PyTorch, Keras and optax, mapped to jaxloss's.
_ALIASES = {
    "weight": "class_weights", "size_average": "reduction", "reduce": "reduction",
    "sample_weight": "weights", "mask": "where", "margin_": "margin", "temp": "temperature",
    "tau": "temperature", "beta_": "beta",
}


def did_you_mean(word: str, allowed: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for a misspelled or foreign option name, or ''."""
    alias = _ALIASES.get(word)
    if alias in allowed:
        return f"; did you mean {alias!r}?"
    close = difflib.get_close_matches(word, list(allowed), n=2, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(map(repr, close)) + "?"


def unknown_keyword(owner: str, word: str, allowed: Sequence[str]) -> TypeError:
    """The ``TypeError`` for a keyword ``owner`` does not take: the word, a "did you
    mean", and the keywords it does take."""
    return TypeError(
        f"{owner}: unexpected keyword argument {word!r}{did_you_mean(word, allowed)} "
        f"(allowed: {', '.join(allowed)})"
    )


def _is_numeric_default(value: Any) -> bool:
    return value is None or (
        isinstance(value, (numbers.Number, np.ndarray, jax.Array)) and not isinstance(value, bool)
    )


def _as_array(x: Any) -> jax.Array:
    return x if isinstance(x, jax.Array) else jnp.asarray(x)


@dataclasses.dataclass(frozen=True)
class Signature:
    """A kernel's inputs and options, and the binding of calls to them.

    ``takes_where``: the kernel receives ``where=`` itself (its layout's where
    mode says so; the keyword is not part of its options)."""

    name: str
    inputs: tuple[str, ...]
    hparams: Mapping[str, Any]
    static: Mapping[str, Any]
    static_types: Mapping[str, Static]
    takes_where: bool = False

    @classmethod
    def parse(cls, kernel: Callable[..., Any], name: str, static: Mapping[str, Static] | Sequence[str],
              takes_where: bool = False) -> Signature:
        """Read the kernel's signature; ``TypeError`` for a kernel jaxloss cannot wrap."""
        params = inspect.signature(kernel).parameters.values()
        inputs = tuple(p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
        keywords = {p.name: p.default for p in params if p.kind == p.KEYWORD_ONLY}
        if takes_where:
            if keywords.pop("where", inspect.Parameter.empty) is not None:
                raise TypeError(f"{name}: its layout hands the where mask to the kernel, which must take where=None")
        types = dict(static) if isinstance(static, Mapping) else {k: ANY for k in static}
        for k, v in keywords.items():
            if v is inspect.Parameter.empty:
                raise TypeError(f"{name}: keyword option {k!r} needs a default")
            if k in COMMON:
                hint = " (or declare a where mode that hands it to the kernel)" if k == "where" else ""
                raise TypeError(f"{name}: {k!r} is provided by jaxloss.loss; remove it from the kernel{hint}")
            if k not in types and not _is_numeric_default(v):
                raise TypeError(f"{name}: option {k!r} has a non-numeric default {v!r}; list it in static=")
        unknown = set(types) - set(keywords)
        if unknown:
            raise TypeError(f"{name}: static options {sorted(unknown)} are not keyword arguments of the kernel")
        return cls(
            name=name,
            inputs=inputs,
            hparams={k: v for k, v in keywords.items() if k not in types},
            static={k: v for k, v in keywords.items() if k in types},
            static_types=types,
            takes_where=takes_where,
        )

    @property
    def options(self) -> tuple[str, ...]:
        return (*self.hparams, *self.static)

    def bind(self, args: tuple, kwargs: dict) -> tuple[dict, dict, dict, dict]:
        """``(arrays, hparams, static, common)`` for one call; any binding of the
        advertised signature works (inputs by position or by name)."""
        if len(args) > len(self.inputs):
            raise TypeError(
                f"{self.name}: takes {len(self.inputs)} positional inputs ({', '.join(self.inputs)}), "
                f"got {len(args)}; options are keyword-only"
            )
        arrays = dict(zip(self.inputs, args))
        hparams, static, common = dict(self.hparams), dict(self.static), {}
        for k, v in kwargs.items():
            if k in self.hparams:
                hparams[k] = v
            elif k in self.static:
                static[k] = v
            elif k in COMMON:
                common[k] = v
            elif k in self.inputs:
                if k in arrays:
                    raise TypeError(f"{self.name}: got multiple values for input {k!r}")
                arrays[k] = v
            else:
                raise unknown_keyword(self.name, k, (*self.inputs, *self.options, *COMMON))
        missing = [n for n in self.inputs if n not in arrays]
        if missing:
            raise TypeError(f"{self.name}: missing input(s) {', '.join(map(repr, missing))}")
        return {n: _as_array(arrays[n]) for n in self.inputs}, hparams, static, common

    def python_signature(self) -> inspect.Signature:
        """The signature users see: inputs, options, then ``reduction``, ``weights``, ``where``."""
        P = inspect.Parameter
        params = [P(n, P.POSITIONAL_OR_KEYWORD, annotation="ArrayLike") for n in self.inputs]
        for k, v in self.hparams.items():
            params.append(P(k, P.KEYWORD_ONLY, default=v, annotation="ArrayLike | None" if v is None else "ArrayLike"))
        for k, v in self.static.items():
            params.append(P(k, P.KEYWORD_ONLY, default=v, annotation=self.static_types[k].annotation))
        params += [
            P("reduction", P.KEYWORD_ONLY, default="mean", annotation="Reduction | None"),
            P("weights", P.KEYWORD_ONLY, default=None, annotation="ArrayLike | None"),
            P("where", P.KEYWORD_ONLY, default=None, annotation="ArrayLike | None"),
        ]
        return inspect.Signature(params, return_annotation="jax.Array")
