"""jaxloss: loss functions for JAX.

Every loss is a pure function ``loss(pred, target, **hparams, reduction="mean",
weights=None, where=None)`` plus a class (``HuberLoss``) that composes with
``+ - * /`` and drops into optax training steps. This module only re-exports:
each family lives in its own module, whose ``__all__`` (its functions and
their classes) is the one hand-kept list of its public names; this module,
the stub ``__init__.pyi`` and the API index are derived from those lists
(``tests/test_core.py`` checks they agree). Names not listed in ``__all__``
(and the modules themselves) are not part of the public API.
"""

from . import (
    binary,
    detection,
    distillation,
    divergence,
    gan,
    geometry,
    image,
    large_vocab,
    logprobs,
    margin_softmax,
    metric,
    multiclass,
    multimodal,
    preference,
    probabilistic,
    ranking,
    regression,
    segmentation,
    self_supervised,
    sequence,
    train,
)
from ._checks import value_checks as value_checks
from ._core import REGISTRY as REGISTRY
from ._core import Example as Example
from ._core import Interval as Interval
from ._core import Layout as Layout
from ._core import LossSpec as LossSpec
from ._core import Mean as Mean
from ._core import Role as Role
from ._core import Static as Static
from ._core import Unreduced as Unreduced
from ._core import loss as loss
from ._objects import Loss as Loss
from ._objects import WeightedSum as WeightedSum
from .binary import *  # noqa: F403
from .detection import *  # noqa: F403
from .distillation import *  # noqa: F403
from .divergence import *  # noqa: F403
from .gan import *  # noqa: F403
from .geometry import *  # noqa: F403
from .image import *  # noqa: F403
from .large_vocab import *  # noqa: F403
from .logprobs import *  # noqa: F403
from .margin_softmax import *  # noqa: F403
from .metric import *  # noqa: F403
from .multiclass import *  # noqa: F403
from .multimodal import *  # noqa: F403
from .preference import *  # noqa: F403
from .probabilistic import *  # noqa: F403
from .ranking import *  # noqa: F403
from .regression import *  # noqa: F403
from .segmentation import *  # noqa: F403
from .self_supervised import *  # noqa: F403
from .sequence import *  # noqa: F403
from .train import *  # noqa: F403

__version__ = "0.1.0"

#: The public modules, in the order of the API reference (their ``__all__`` lists
#: are re-exported here).
_MODULES = (
    regression, binary, multiclass, divergence, distillation, segmentation, detection, image, metric, multimodal,
    self_supervised, margin_softmax, large_vocab, logprobs, preference, ranking, probabilistic, sequence, geometry,
    gan, train,
)
_CORE = ["REGISTRY", "Example", "Interval", "Layout", "LossSpec", "Mean", "Role", "Static", "Unreduced", "loss",
         "value_checks", "Loss", "WeightedSum"]

__all__ = _CORE + [name for module in _MODULES for name in module.__all__]


def _plain_docs() -> None:
    """The public functions and classes not made by :func:`loss` (``make_train_step``,
    ``sequence_logprobs``, ``lengths_from_paddings``, ``value_checks``, ``Layout``, ...)
    get the plain-text docstrings the losses get, so ``help()`` shows no reST roles."""
    from ._docs import plain_markup

    for name in __all__:
        obj = globals()[name]
        doc = getattr(obj, "__doc__", None)
        if isinstance(doc, str) and (":math:" in doc or ".. math::" in doc or ":`" in doc):
            try:
                obj.__doc__ = plain_markup(doc)
            except (AttributeError, TypeError):  # an object whose __doc__ cannot be set
                pass


_plain_docs()
