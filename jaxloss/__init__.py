"""jaxloss: loss functions for JAX.

Every loss is a pure function ``loss(pred, target, **hparams, reduction="mean",
weights=None, where=None)`` plus a generated class (``HuberLoss``) that composes
with ``+ - * /`` and drops into optax training steps. This module only
re-exports; each family lives in its own module and lists its public names
(functions and their classes) in ``__all__``.
"""

from ._core import REGISTRY, Interval, Loss, LossSpec, WeightedSum, loss
from .classification import *  # noqa: F401,F403
from .divergence import *  # noqa: F401,F403
from .large_vocab import *  # noqa: F401,F403
from .metric import *  # noqa: F401,F403
from .regression import *  # noqa: F401,F403
from .segmentation import *  # noqa: F401,F403
from .train import make_train_step

__version__ = "0.1.0"

__all__ = [name for name in dir() if not name.startswith("_")]
