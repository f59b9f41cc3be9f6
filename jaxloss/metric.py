r"""Metric-learning losses: pairs, triplets and in-batch contrastive losses.

Two kinds of losses live here.

*Per-pair losses* (:func:`contrastive_loss`, :func:`triplet_loss`,
:func:`cosine_embedding_loss`, :func:`margin_ranking_loss`) take one row per
example (``[..., D]`` embeddings, ``[...]`` labels) and return one loss per
example with ``reduction="none"``. ``weights``/``where`` are per example; a
masked example's embeddings are replaced by zeros before the kernel runs.

*Batch losses* (:func:`batch_triplet_loss`, :func:`ntxent_loss`,
:func:`supcon_loss`) take a batch ``embeddings [B, D]`` with integer
``labels [B]`` (equal labels = a positive pair) and form every pair or triplet
inside the batch with masks, so shapes are static and they run under ``jit`` and
``vmap`` (``vmap`` over a leading axis gives one loss per batch). With
``reduction="none"`` they return one value per *anchor*, :math:`S_a`, the sum of
the anchor's counted terms (0 for an anchor with nothing to count). Each anchor
also has a count :math:`n_a` (its number of counted pairs/triplets, or 1), and
``"mean"`` is :math:`\sum_a S_a / \sum_a n_a` -- the mean over every counted
pair/triplet of the batch -- and 0 (with zero gradients) when nothing is
counted; ``"sum"`` is :math:`\sum_a S_a`. ``weights`` (shape ``[B]``) weigh
anchors: ``"mean"`` is :math:`\sum_a w_a S_a / \sum_a w_a n_a`. ``where``
(shape ``[B]``) or a zero weight leaves an anchor out of the value and the
mean, while it still serves as a positive or negative of the other anchors
(the batch losses opt out of the decorator's zeroing of masked inputs, so a
masked example's embedding and label are seen unchanged by the others).

Every distance and normalisation has a finite gradient at zero distance
(identical embeddings) and at zero vectors: Euclidean distances use
:math:`\sqrt{d^2}` with a double ``where`` (gradient 0 at :math:`d^2 = 0`, the
minimum-norm subgradient), and unit vectors are
:math:`x / \sqrt{\max(\lVert x\rVert^2, \epsilon)}` with :math:`\epsilon` the
machine epsilon of the compute dtype (as optax's ``cosine_similarity``).
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._checks import (
    FLAG,
    NONNEGATIVE,
    PLUS_MINUS_ONE,
    POSITIVE,
    PROBABILITIES,
    SIGNS,
    Interval,
    Static,
    choice,
    is_concrete,
)
from ._core import Example, Layout, Mean, Role, Unreduced, builtin
from ._numerics import abs0, masked_logsumexp, safe_div, safe_sqrt, softplus
from ._sharding import replicated

metric = builtin("metric")

__all__ = [
    "batch_triplet_loss", "BatchTripletLoss",
    "circle_loss", "CircleLoss",
    "contrastive_loss", "ContrastiveLoss",
    "cosine_embedding_loss", "CosineEmbeddingLoss",
    "hinge_embedding_loss", "HingeEmbeddingLoss",
    "margin_ranking_loss", "MarginRankingLoss",
    "multi_similarity_loss", "MultiSimilarityLoss",
    "ntxent_loss", "NTXentLoss",
    "supcon_loss", "SupConLoss",
    "triplet_loss", "TripletLoss",
]

# ---------------------------------------------------------------------------
# Safe distances and similarities
# ---------------------------------------------------------------------------


def _pnorm(diff, p, squared=False):
    r""":math:`\lVert x\rVert_p` over the last axis (``squared``: its square), with a
    finite gradient everywhere (0 at the zero vector and for zero components)."""
    if p == 2:
        d2 = jnp.sum(diff * diff, axis=-1)
        return d2 if squared else safe_sqrt(d2)
    a = abs0(diff)  # derivative sign(x): 0 for a zero component
    if p == 1:
        d = jnp.sum(a, axis=-1)
    elif math.isinf(p):
        d = jnp.max(a, axis=-1)
    else:
        # Scaled by the largest component so |x|^p cannot overflow or underflow;
        # the scale is homogeneous, so its gradient contribution is exactly 0.
        m = lax.stop_gradient(jnp.max(a, axis=-1, keepdims=True))
        nz_row = m > 0
        m_safe = jnp.where(nz_row, m, 1.0)
        nz = a > 0
        r = jnp.where(nz, a, 1.0) / m_safe
        s = jnp.sum(jnp.where(nz, r**p, 0.0), axis=-1)
        nz_row = nz_row[..., 0]
        d = jnp.where(nz_row, m_safe[..., 0] * jnp.where(nz_row, s, 1.0) ** (1.0 / p), 0.0)
    return d * d if squared else d


def _unit(x):
    r""":math:`x / \sqrt{\max(\lVert x\rVert^2, \epsilon)}` over the last axis (optax's floor)."""
    eps = jnp.finfo(x.dtype).eps
    n2 = jnp.sum(x * x, axis=-1, keepdims=True)
    return x * lax.rsqrt(jnp.maximum(n2, eps))


def _pairwise_sq_dists(x):
    r"""``[B, B]`` squared Euclidean distances :math:`\lVert x_i\rVert^2 + \lVert x_j\rVert^2 - 2 x_i\cdot x_j`,
    clamped at 0, with an exact 0 on the diagonal. O(B^2) memory."""
    # columns from a replicated copy, so that under an explicit mesh with the batch
    # split the [B, B] result is sharded by rows only
    cols = replicated(x)
    sq = jnp.sum(x * x, axis=-1)
    gram = jnp.matmul(x, cols.T, precision=lax.Precision.HIGHEST)
    d2 = jnp.maximum(sq[:, None] + jnp.sum(cols * cols, axis=-1)[None, :] - 2.0 * gram, 0.0)
    eye = jnp.eye(x.shape[0], dtype=bool)
    return jnp.where(eye, 0.0, d2)


def _label_masks(labels, columns=None):
    """(positive mask without the diagonal, negative mask), both ``[B, B]``
    (``columns``: the labels of the columns, when given separately)."""
    columns = labels if columns is None else columns
    same = labels[:, None] == columns[None, :]
    eye = jnp.eye(labels.shape[0], dtype=bool)
    return same & ~eye, ~same


# ---------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------


def _check_values(name, arg, y, allowed):
    if is_concrete(y):
        vals = np.unique(np.asarray(y))
        vals = vals[~np.isnan(vals)] if vals.dtype.kind == "f" else vals  # NaN may sit in masked-out entries
        if not np.all(np.isin(vals, allowed)):
            raise ValueError(f"{name}: {arg} must take values in {set(allowed)}, got {vals[:5].tolist()}")


def _batch_validate(name, embeddings, labels, **_):
    if embeddings.ndim != 2:
        raise ValueError(f"{name}: embeddings must have shape [B, D], got {tuple(embeddings.shape)}")


P_NORM = Static(
    "float", lambda p: isinstance(p, numbers.Real) and not isinstance(p, bool) and p > 0,
    "a positive Python number (or math.inf)", ValueError,
)
DISTANCE_FN = Static(
    "Callable[[jax.Array, jax.Array], jax.Array] | None", lambda f: f is None or callable(f),
    "None or a callable distance_fn(x, y) -> distances", TypeError,
)
MINING = ("batch_all", "batch_hard", "semi_hard")
# In-batch losses: labels [B] beside embeddings [B, D]; a masked anchor is still seen by the others.
_BATCH = Layout({"labels": Role("labels", "reduced")}, axis=-1, where="anchors")


# ---------------------------------------------------------------------------
# Sample inputs for the registry (kept away from hinge kinks and ties, so the
# finite-difference gradient checks are meaningful)
# ---------------------------------------------------------------------------


def _unit_rows(rng, n, d):
    v = rng.normal(size=(n, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _contrastive_sample(rng):
    x1 = rng.normal(size=(6, 4))
    dist = rng.permutation([0.3, 0.6, 0.8, 1.3, 1.6, 2.0])
    x2 = x1 + dist[:, None] * _unit_rows(rng, 6, 4)
    similar = np.array([1, 0, 1, 0, 0, 1], dtype=np.float32)
    return x1.astype(np.float32), x2.astype(np.float32), similar


def _triplet_sample(rng):
    a = rng.normal(size=(6, 4))
    dp = rng.permutation([0.3, 0.5, 0.9, 1.2, 2.5, 0.4])
    dn = rng.permutation([0.2, 0.6, 1.5, 2.0, 3.5, 4.0])
    # keep d(a,p) - d(a,n) + 1 away from 0 (the hinge) for the default margin
    dn = np.where(np.abs(dp - dn + 1.0) < 0.15, dn + 0.4, dn)
    p = a + dp[:, None] * _unit_rows(rng, 6, 4)
    n = a + dn[:, None] * _unit_rows(rng, 6, 4)
    return a.astype(np.float32), p.astype(np.float32), n.astype(np.float32)


def _batch_sample(rng):
    """8 embeddings in 3 classes, redrawn until no triplet sits within 0.05 of a
    hinge kink (margin 1) and no two distances of an anchor tie."""
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    while True:
        x = rng.normal(size=(8, 4)) * 0.7
        lab = rng.permutation(labels)
        d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
        same = lab[:, None] == lab[None]
        ok = True
        for a in range(8):
            dp = [d[a, j] for j in range(8) if same[a, j] and j != a]
            dn = [d[a, j] for j in range(8) if not same[a, j]]
            hinge = np.subtract.outer(dp, dn) + 1.0
            row = np.sort(np.delete(d[a], a))
            if np.min(np.abs(hinge)) < 0.05 or np.min(np.diff(row)) < 0.02:
                ok = False
                break
            # semi-hard choice must not sit on a switch (d_an close to d_ap)
            if np.min(np.abs(np.subtract.outer(dp, dn))) < 0.02:
                ok = False
                break
        if ok:
            return x.astype(np.float32), lab.astype(np.int32)


def _contrastive_batch_sample(rng):
    x = rng.normal(size=(8, 4))
    labels = rng.permutation(np.array([0, 0, 1, 1, 2, 2, 3, 3]))
    return x.astype(np.float32), labels.astype(np.int32)


def _cosine_sample(rng):
    while True:
        x1 = rng.normal(size=(6, 4))
        x2 = rng.normal(size=(6, 4))
        cos = (x1 * x2).sum(1) / np.linalg.norm(x1, axis=1) / np.linalg.norm(x2, axis=1)
        if np.min(np.abs(cos)) > 0.1:
            break
    y = np.array([1, -1, 1, -1, -1, 1], dtype=np.float32)
    return x1.astype(np.float32), x2.astype(np.float32), y


def _ranking_sample(rng):
    while True:
        x1 = rng.normal(size=(4, 6))
        x2 = rng.normal(size=(4, 6))
        y = np.where(rng.uniform(size=(4, 6)) < 0.5, 1.0, -1.0)
        if np.min(np.abs(-y * (x1 - x2))) > 0.05:
            return x1.astype(np.float32), x2.astype(np.float32), y.astype(np.float32)


# ---------------------------------------------------------------------------
# Per-pair losses
# ---------------------------------------------------------------------------


@metric(checks={"margin": NONNEGATIVE},
        layout=Layout({"similar": Role("real", "reduced", domain=PROBABILITIES)}, axis=-1),
        example=Example(_contrastive_sample, sweep=("margin", (0.5, 1.0, 1.5, 2.5)), differentiable=(0, 1),
                        grad_order=1))
def contrastive_loss(x1, x2, similar, *, margin=1.0):
    r"""Contrastive loss on pairs (Hadsell, Chopra & LeCun, 2006).

    .. math:: \ell_i = \tfrac12\Bigl(y_i\, d_i^2 + (1 - y_i)\max(0,\ m - d_i)^2\Bigr),
              \qquad d_i = \lVert x_{1,i} - x_{2,i}\rVert_2

    ``y = 1`` pulls a similar pair together; ``y = 0`` pushes a dissimilar pair
    apart until it is at least ``margin`` away. Soft ``y`` in ``[0, 1]`` mixes
    the two terms. At ``d = 0`` the gradient of ``d`` is taken as 0, so identical
    embeddings give finite gradients (the similar term uses :math:`d^2` directly).

    Args:
      x1: embeddings ``[..., D]``, floating point.
      x2: embeddings, the same shape as ``x1``.
      similar: ``[...]`` (``x1.shape[:-1]``), 1 for a similar pair, 0 for a
        dissimilar one (float, int or bool).
      margin: :math:`m \ge 0`.

    Returns:
      The reduced loss; with ``reduction="none"`` one loss per pair, shape
      ``x1.shape[:-1]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> e1 = jnp.array([[1.0, 2.0, 3.0]])
      >>> round(float(jaxloss.contrastive_loss(e1, jnp.array([[1.1, 2.1, 2.9]]), jnp.array([1.0]))), 6)
      0.015
      >>> float(jaxloss.contrastive_loss(e1, jnp.array([[5.0, 6.0, 7.0]]), jnp.array([0.0])))
      0.0
    """
    y = similar.astype(x1.dtype)
    diff = x1 - x2
    d2 = jnp.sum(diff * diff, axis=-1)
    d = safe_sqrt(d2)
    gap = jax.nn.relu(margin - d)
    return 0.5 * (y * d2 + (1.0 - y) * gap * gap)


def _triplet_validate(name, anchor, positive, negative, *, p=2, squared=False, distance_fn=None, **_):
    if distance_fn is None:
        return
    if p != 2 or squared:
        raise ValueError(f"{name}: p and squared choose the built-in distance; leave them at their defaults "
                         f"(p=2, squared=False) when distance_fn is given, got p={p!r}, squared={squared!r}")
    expected = tuple(anchor.shape[:-1])
    try:
        out = jax.eval_shape(distance_fn, anchor, positive)
    except Exception as e:
        raise ValueError(f"{name}: distance_fn(anchor, positive) failed: {e}") from e
    if tuple(getattr(out, "shape", ())) != expected:
        raise ValueError(f"{name}: distance_fn(x, y) must return one distance per triplet, shape {expected} "
                         f"(anchor.shape[:-1]), got {getattr(out, 'shape', out)}")


@metric(static={"p": P_NORM, "swap": FLAG, "squared": FLAG, "distance_fn": DISTANCE_FN},
        checks={"margin": NONNEGATIVE}, layout=Layout(axis=-1), validate=_triplet_validate,
        example=Example(_triplet_sample, sweep=("margin", (0.5, 1.0, 1.5, 2.0)), differentiable=(0, 1, 2),
                        grad_order=1))
def triplet_loss(anchor, positive, negative, *, margin=1.0, p=2, swap=False, squared=False, distance_fn=None):
    r"""Triplet margin loss (PyTorch's ``triplet_margin_loss``; FaceNet with ``squared=True``).

    .. math:: \ell_i = \max\bigl(0,\ d(a_i, p_i) - d(a_i, n_i) + m\bigr),\qquad
              d(x, y) = \lVert x - y\rVert_p \ \ (\text{or } \lVert x - y\rVert_p^2 \text{ if squared})

    With ``swap=True`` (Balntas et al., 2016) the negative distance is
    :math:`\min(d(a, n), d(p, n))`. The p-norm takes absolute values (so odd
    ``p`` is a norm) and is computed scaled by the largest component, so large
    ``p`` neither overflows nor underflows; its gradient is finite everywhere
    (0 at zero distance). Unlike PyTorch, no ``eps=1e-6`` is added to the
    difference before the norm (PyTorch's values are larger by up to about
    :math:`10^{-6} D^{1/p}`).

    ``distance_fn`` replaces the p-norm by any distance, as PyTorch's
    ``TripletMarginWithDistanceLoss(distance_function=...)``: a callable
    ``distance_fn(x, y)`` of two ``[..., D]`` arrays returning the ``[...]``
    distances (``swap`` then also uses ``distance_fn(positive, negative)``; ``p``
    and ``squared`` must stay at their defaults). It is a static option: the
    compiled program is cached per callable, by identity, so define it once (a
    module-level function, or one ``functools.partial`` kept around) rather than
    a new ``lambda`` per call, which compiles again every time. A
    ``TripletLoss(distance_fn=f)`` object hashes and compares by ``f``'s
    identity, and pickles when ``f`` does (a module-level function; not a
    lambda). The gradient of the distance is the callable's own (give it a
    finite one at zero distance, as the built-in norms have).

    Args:
      anchor: embeddings ``[..., D]``, floating point.
      positive: same shape, similar to the anchor.
      negative: same shape, dissimilar to the anchor.
      margin: :math:`m \ge 0`.
      p: static norm degree, a Python number ``> 0`` or ``math.inf`` (default 2).
      swap: static, use the distance swap.
      squared: static, use squared distances (FaceNet, Schroff et al., 2015).
      distance_fn: static, ``None`` (the p-norm) or a callable
        ``distance_fn(x, y) -> [...]`` distances (PyTorch's ``distance_function``).

    Returns:
      The reduced loss; with ``reduction="none"`` one loss per triplet, shape
      ``anchor.shape[:-1]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> a = jnp.array([[0.0, 0.0]]); p = jnp.array([[3.0, 4.0]]); n = jnp.array([[1.0, 1.0]])
      >>> float(jaxloss.triplet_loss(a, p, n, margin=0.5, p=1))
      5.5
      >>> def cosine_distance(x, y):
      ...     return 1.0 - jnp.sum(x * y, -1) / jnp.linalg.norm(x, axis=-1) / jnp.linalg.norm(y, axis=-1)
      >>> float(jaxloss.triplet_loss(jnp.array([[1.0, 0.0]]), jnp.array([[1.0, 1.0]]), jnp.array([[0.0, 1.0]]),
      ...                            margin=0.2, distance_fn=cosine_distance))
      0.0
    """
    if distance_fn is None:
        def distance(x, y):
            return _pnorm(x - y, p, squared)
    else:
        distance = distance_fn
    d_ap = distance(anchor, positive)
    d_an = distance(anchor, negative)
    if swap:
        d_an = jnp.minimum(d_an, distance(positive, negative))
    return jax.nn.relu(d_ap - d_an + margin)


def _cosine_validate(name, x1, x2, y, **_):
    _check_values(name, "y", y, (-1, 0, 1))


@metric(checks={"margin": Interval(-1.0, 1.0)},
        layout=Layout({"y": Role("real", "reduced", domain=SIGNS)}, axis=-1), validate=_cosine_validate,
        example=Example(_cosine_sample, sweep=("margin", (-0.5, 0.0, 0.25, 0.5)), differentiable=(0, 1),
                        grad_order=1))
def cosine_embedding_loss(x1, x2, y, *, margin=0.0):
    r"""Cosine embedding loss (PyTorch's ``CosineEmbeddingLoss``).

    .. math:: \ell_i = \begin{cases} 1 - \cos(x_{1,i}, x_{2,i}) & y_i = 1 \\
                                     \max\bigl(0,\ \cos(x_{1,i}, x_{2,i}) - m\bigr) & \text{otherwise}
                       \end{cases}

    ``y`` takes PyTorch's ``{1, -1}``; ``0`` is accepted as the dissimilar label
    too (as jaxloss' hinge losses accept ``{0, 1}``). Other values raise
    ``ValueError`` when concrete. The cosine uses unit vectors
    :math:`x / \sqrt{\max(\lVert x\rVert^2, \epsilon)}`, so a zero vector has
    cosine 0 and finite gradients (PyTorch adds ``1e-12`` to the squared norms
    instead; the values agree to float precision for non-tiny vectors).

    Args:
      x1: embeddings ``[..., D]``, floating point.
      x2: embeddings, the same shape.
      y: ``[...]`` (``x1.shape[:-1]``) labels, ``1`` similar, ``-1`` (or ``0``) dissimilar.
      margin: :math:`m` in ``[-1, 1]`` (PyTorch suggests 0 to 0.5).

    Returns:
      The reduced loss; with ``reduction="none"`` one loss per pair.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x1 = jnp.array([[1.0, 0.0], [1.0, 0.0]]); x2 = jnp.array([[0.0, 2.0], [1.0, 1.0]])
      >>> jaxloss.cosine_embedding_loss(x1, x2, jnp.array([1, -1]), reduction="none").round(4)
      Array([1.    , 0.7071], dtype=float32)
    """
    cos = jnp.sum(_unit(x1) * _unit(x2), axis=-1)
    return jnp.where(y > 0, 1.0 - cos, jax.nn.relu(cos - margin))


def _ranking_validate(name, x1, x2, y, **_):
    _check_values(name, "y", y, (-1, 1))


@metric(layout=Layout({"y": Role("real", domain=PLUS_MINUS_ONE)}), validate=_ranking_validate,
        example=Example(_ranking_sample, sweep=("margin", (0.0, 0.5, 1.0, 2.0)), differentiable=(0, 1),
                        grad_order=1))
def margin_ranking_loss(x1, x2, y, *, margin=0.0):
    r"""Margin ranking loss (PyTorch's ``MarginRankingLoss``).

    .. math:: \ell_i = \max\bigl(0,\ -y_i\,(x_{1,i} - x_{2,i}) + m\bigr)

    ``y = 1`` means ``x1`` should rank higher than ``x2`` (by at least ``m``),
    ``y = -1`` the reverse. ``y`` must be in ``{-1, 1}`` (``ValueError`` when
    concrete). The gradient at the kink is 0.

    Args:
      x1: scores, any shape, floating point.
      x2: scores, the same shape.
      y: ``{-1, 1}``, the same shape (any real dtype).
      margin: :math:`m` (any real number; PyTorch's default 0).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-element losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> float(jaxloss.margin_ranking_loss(jnp.array([1.0, 2.0]), jnp.array([2.0, 0.0]),
      ...                                   jnp.array([1.0, 1.0]), margin=0.5))
      0.75
    """
    return jax.nn.relu(margin - y.astype(x1.dtype) * (x1 - x2))


def _hinge_embedding_validate(name, distances, targets, **_):
    _check_values(name, "targets", targets, (-1, 1))


def _hinge_embedding_sample(rng):
    distances = rng.uniform(0.0, 2.5, size=(4, 6))
    distances = np.where(np.abs(distances - 1.0) < 0.1, distances + 0.3, distances)  # away from the margin
    targets = np.where(rng.uniform(size=(4, 6)) < 0.5, 1.0, -1.0)
    return distances.astype(np.float32), targets.astype(np.float32)


@metric(layout=Layout({"targets": Role("real", domain=PLUS_MINUS_ONE)}), validate=_hinge_embedding_validate,
        example=Example(_hinge_embedding_sample, sweep=("margin", (0.5, 1.0, 1.5, 2.0)), grad_order=1))
def hinge_embedding_loss(distances, targets, *, margin=1.0):
    r"""Hinge embedding loss (PyTorch's ``HingeEmbeddingLoss``).

    .. math:: \ell_i = \begin{cases} x_i & y_i = 1 \\ \max(0,\ m - x_i) & y_i = -1 \end{cases}

    ``distances`` are usually distances between pairs (e.g. an L1 distance):
    similar pairs (``y = 1``) are pulled to 0, dissimilar ones (``y = -1``)
    pushed beyond the margin. ``targets`` must be in ``{-1, 1}``
    (``ValueError`` when concrete; PyTorch adds both terms for other values).
    The gradient at the kink is 0.

    Args:
      distances: any shape, floating point.
      targets: ``{-1, 1}``, the same shape (any real dtype).
      margin: :math:`m` (PyTorch's default 1).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-element losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.hinge_embedding_loss(jnp.array([0.3, 0.4, 2.0]), jnp.array([1.0, -1.0, -1.0]), reduction="none")
      Array([0.3, 0.6, 0. ], dtype=float32)

    References: PyTorch ``torch.nn.HingeEmbeddingLoss``.
    """
    x = distances
    return jnp.where(targets > 0, x, jnp.where(x < margin, margin - x, 0.0))


# ---------------------------------------------------------------------------
# Batch losses
# ---------------------------------------------------------------------------


def _sorted_negatives(d, neg):
    """Each anchor's negative distances sorted ascending (non-negatives at +inf
    at the end) and the number of negatives."""
    s = _sort_nonnegative_rows(jnp.where(neg, d, jnp.inf))
    return s, jnp.sum(neg, axis=-1)


def _searchsorted_rows(s, v, side):
    """Row-wise ``searchsorted``: for each row ``s[a]`` (ascending) and query ``v[a, j]``.

    A bisection by ``take_along_axis`` over whole rows (``ceil(log2(n + 1))``
    steps), the same integers as ``jnp.searchsorted`` per row; unlike a ``vmap``
    of it, every intermediate keeps the rows' sharding on an explicit mesh."""
    n = s.shape[-1]
    lo = jnp.zeros_like(v, dtype=jnp.int32)
    hi = jnp.full_like(v, n, dtype=jnp.int32)
    for _ in range(max(n, 1).bit_length()):
        mid = (lo + hi) // 2
        val = jnp.take_along_axis(s, jnp.minimum(mid, n - 1), axis=-1)
        right = (val < v) if side == "left" else (val <= v)
        active = lo < hi
        lo = jnp.where(active & right, mid + 1, lo)
        hi = jnp.where(active & ~right, mid, hi)
    return lo


def _key_sort(x):
    # For x >= 0 (and +inf) the IEEE bit patterns, read as signed integers, sort
    # in the same order as the values; XLA sorts one integer operand several
    # times faster than floats (measured 4x on CPU at [1024, 1024]).
    ints = {2: jnp.int16, 4: jnp.int32, 8: jnp.int64}[x.dtype.itemsize]
    keys = lax.sort(lax.bitcast_convert_type(x, ints), dimension=x.ndim - 1, is_stable=False)
    return lax.bitcast_convert_type(keys, x.dtype)


@jax.custom_vjp
def _sort_nonnegative_rows(x):
    """``jnp.sort(x, axis=-1)`` for non-negative ``x`` (``+inf`` allowed).

    The gradient of a sorted position goes to the entry that holds its value;
    entries with equal values share the gradient of their positions equally
    (as ``jnp.max`` does for ties). Neither pass sorts a second operand."""
    return _key_sort(x)


def _sort_fwd(x):
    s = _key_sort(x)
    return s, (x, s)


def _sort_bwd(res, ct):
    x, s = res
    lo = _searchsorted_rows(s, x, "left")
    hi = _searchsorted_rows(s, x, "right")
    c = jnp.concatenate([jnp.zeros_like(ct[..., :1]), jnp.cumsum(ct, axis=-1)], axis=-1)
    total = jnp.take_along_axis(c, hi, axis=-1) - jnp.take_along_axis(c, lo, axis=-1)
    return (total / jnp.maximum(hi - lo, 1).astype(ct.dtype),)


_sort_nonnegative_rows.defvjp(_sort_fwd, _sort_bwd)


def _batch_all(d, pos, neg, margin):
    # For anchor a and positive p, the active negatives are those with
    # d_an < d_ap + m; with the negatives sorted, they are a prefix of length k,
    # and the sum of their hinge terms is k (d_ap + m) - sum_{j<k} s_j. Distances
    # are shifted by the anchor's smallest negative distance to limit cancellation
    # (the hinge terms are invariant to the shift).
    s, n_neg = _sorted_negatives(d, neg)
    has_neg = n_neg > 0
    shift = lax.stop_gradient(jnp.where(has_neg, s[:, 0], 0.0))
    s = s - shift[:, None]
    thr = d - shift[:, None] + margin
    k = _searchsorted_rows(s, thr, "left")
    k = jnp.where(pos, k, 0)
    csum = jnp.cumsum(jnp.where(jnp.isfinite(s), s, 0.0), axis=-1)
    csum = jnp.concatenate([jnp.zeros_like(csum[:, :1]), csum], axis=-1)
    prefix = jnp.take_along_axis(csum, k, axis=-1)
    terms = jnp.where(k > 0, k.astype(d.dtype) * thr - prefix, 0.0)
    valid = jnp.any(pos, axis=-1) & has_neg
    count = jnp.sum(k, axis=-1).astype(d.dtype)
    return Unreduced(jnp.sum(terms, axis=-1), valid.astype(d.dtype), Mean(count))


def _batch_hard(d, pos, neg, margin):
    has_pos = jnp.any(pos, axis=-1)
    has_neg = jnp.any(neg, axis=-1)
    valid = has_pos & has_neg
    hardest_pos = jnp.max(jnp.where(pos, d, -jnp.inf), axis=-1)
    hardest_neg = jnp.min(jnp.where(neg, d, jnp.inf), axis=-1)
    gap = jnp.where(valid, hardest_pos - hardest_neg, 0.0)
    return Unreduced(jnp.where(valid, jax.nn.relu(gap + margin), 0.0), valid.astype(d.dtype))


def _semi_hard(d, pos, neg, margin):
    s, n_neg = _sorted_negatives(d, neg)
    has_neg = n_neg > 0
    # number of negatives with d_an <= d_ap: the next one is the closest negative
    # farther than the positive; if there is none, take the farthest negative
    k = _searchsorted_rows(s, d, "right")
    last = jnp.maximum(n_neg - 1, 0)[:, None]
    idx = jnp.where(k < n_neg[:, None], k, last)
    idx = jnp.minimum(idx, s.shape[-1] - 1)
    chosen = jnp.take_along_axis(s, idx, axis=-1)
    valid = pos & has_neg[:, None]
    gap = jnp.where(valid, d - jnp.where(valid, chosen, 0.0), 0.0)
    terms = jnp.where(valid, jax.nn.relu(gap + margin), 0.0)
    count = jnp.sum(valid, axis=-1).astype(d.dtype)
    return Unreduced(jnp.sum(terms, axis=-1), jnp.any(valid, axis=-1).astype(d.dtype), Mean(count))


@metric(static={"mining": choice(*MINING), "squared": FLAG}, checks={"margin": NONNEGATIVE}, layout=_BATCH,
        validate=_batch_validate,
        example=Example(_batch_sample, sweep=("margin", (0.2, 0.5, 1.0, 2.0)), grad_order=1))
def batch_triplet_loss(embeddings, labels, *, margin=1.0, mining="batch_all", squared=False):
    r"""Triplet loss with in-batch triplet mining (Schroff et al., 2015; Hermans et al., 2017).

    Every triplet is built inside the batch: anchor ``a``, positive ``p != a``
    with ``labels[p] == labels[a]``, negative ``n`` with ``labels[n] != labels[a]``.
    With :math:`d` the Euclidean distance (``squared=True``: its square),

    .. math:: \ell(a, p, n) = \max\bigl(0,\ d_{ap} - d_{an} + m\bigr)

    and ``mining`` (static) chooses what is averaged:

    * ``"batch_all"``: every valid triplet. ``"mean"`` averages over the *active*
      triplets, those with :math:`\ell > 0` (Hermans et al.'s "batch all
      :math:`\neq 0`", as pytorch-metric-learning's ``AvgNonZeroReducer``); an
      anchor's count :math:`n_a` is its number of active triplets, and
      ``"sum"`` is the sum over all valid triplets (inactive ones add 0).
    * ``"batch_hard"``: per anchor, its farthest positive and closest negative,
      :math:`\max(0, \max_p d_{ap} - \min_n d_{an} + m)`; ``"mean"`` is over
      anchors (:math:`n_a = 1`).
    * ``"semi_hard"``: per anchor-positive pair, the closest negative farther
      than the positive (:math:`d_{an} > d_{ap}`; FaceNet's semi-hard negative
      when it lies within the margin). When the pair has no such negative (every
      negative is closer than the positive) the *farthest* negative is used, as
      TensorFlow Addons' ``triplet_semihard_loss``. ``"mean"`` is over
      anchor-positive pairs (:math:`n_a` = the anchor's number of positives).

    Anchors without a positive or without a negative count for nothing
    (:math:`S_a = n_a = 0`); a batch with no valid triplet gives 0 and zero
    gradients.
    Nothing of size :math:`B^3` is built: distances are one ``[B, B]`` Gram
    matrix (``Precision.HIGHEST``), and ``batch_all``/``semi_hard`` sort each
    anchor's negative distances and use ``searchsorted`` and prefix sums, so every
    strategy needs O(B^2) memory and O(B^2 log B + B^2 D) time. (Where negative
    distances tie exactly, their gradient is shared equally, as ``jnp.max``
    shares it between tied maxima.) ``benchmarks/bench_triplet.py`` measures
    time and scratch memory at B=1024, D=128.

    Args:
      embeddings: ``[B, D]``, floating point.
      labels: ``[B]`` integer class labels.
      margin: :math:`m \ge 0`.
      mining: static, ``"batch_all"`` (default), ``"batch_hard"`` or ``"semi_hard"``.
      squared: static, use squared Euclidean distances.

    Returns:
      The reduced loss; with ``reduction="none"`` a ``[B]`` array with, per
      anchor, the sum :math:`S_a` of its counted terms (the hardest triplet's
      loss for ``batch_hard``), so that ``"sum"`` is its sum and ``"mean"`` its
      sum divided by :math:`\sum_a n_a`.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x = jnp.array([[0.0], [0.5], [1.0], [3.0]]); y = jnp.array([0, 0, 1, 1])
      >>> float(jaxloss.batch_triplet_loss(x, y, mining="batch_hard"))
      1.125
      >>> jaxloss.batch_triplet_loss(x, y, mining="batch_hard", reduction="none")
      Array([0.5, 1. , 2.5, 0.5], dtype=float32)
    """
    pos, neg = _label_masks(labels, replicated(labels))
    d2 = _pairwise_sq_dists(embeddings)
    d = d2 if squared else safe_sqrt(d2)
    if mining == "batch_all":
        return _batch_all(d, pos, neg, margin)
    if mining == "batch_hard":
        return _batch_hard(d, pos, neg, margin)
    return _semi_hard(d, pos, neg, margin)


@metric(checks={"temperature": POSITIVE}, layout=_BATCH, validate=_batch_validate,
        example=Example(_contrastive_batch_sample, sweep=("temperature", (0.05, 0.1, 0.2, 0.5)), optax="ntxent"))
def ntxent_loss(embeddings, labels, *, temperature=0.07):
    r"""NT-Xent, the normalized temperature-scaled cross-entropy (Chen et al., 2020, SimCLR).

    With :math:`s_{ij} = \cos(x_i, x_j)/\tau`, every positive pair
    (:math:`i \ne j`, equal labels) is a softmax classification of :math:`j`
    against the negatives of :math:`i` (different labels):

    .. math:: \ell_{ij} = -\log\frac{e^{s_{ij}}}{e^{s_{ij}} + \sum_{k:\,y_k \ne y_i} e^{s_{ik}}}
                        = \operatorname{softplus}\Bigl(\operatorname{LSE}_{k:\,y_k \ne y_i} s_{ik} - s_{ij}\Bigr)

    and ``"mean"`` is the mean over all positive pairs -- the same value as
    ``optax.losses.ntxent``, with the same unit-vector floor; where optax returns NaN (no positive pair in
    the batch) this returns 0 with zero gradients. An anchor's count
    :math:`n_i` is its number of positives; a batch of one class has no
    negatives and gives 0. For SimCLR, stack the two views and give each pair
    of views one label.

    Args:
      embeddings: ``[B, D]``, floating point (normalised inside).
      labels: ``[B]`` integer labels; equal labels form positive pairs.
      temperature: :math:`\tau > 0`.

    Returns:
      The reduced loss; with ``reduction="none"`` a ``[B]`` array with, per
      anchor, the sum of its positive pairs' losses (0 for an anchor without a
      positive).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
      >>> round(float(jaxloss.ntxent_loss(x, jnp.array([0, 0, 1, 1]), temperature=1.0)), 6)
      0.551445
    """
    s, pos, neg = _pair_similarities(embeddings, labels)
    s = s / temperature
    has_neg = jnp.any(neg, axis=-1, keepdims=True)
    lse_neg = masked_logsumexp(s, neg)
    counted = pos & has_neg
    pair = jnp.where(counted, jax.nn.softplus(lse_neg[:, None] - jnp.where(counted, s, 0.0)), 0.0)
    n_pos = jnp.sum(pos, axis=-1).astype(s.dtype)
    return Unreduced(jnp.sum(pair, axis=-1), (n_pos > 0).astype(s.dtype), Mean(n_pos))


@metric(checks={"temperature": POSITIVE}, layout=_BATCH, validate=_batch_validate,
        example=Example(_contrastive_batch_sample, sweep=("temperature", (0.05, 0.1, 0.2, 0.5))))
def supcon_loss(embeddings, labels, *, temperature=0.1):
    r"""Supervised contrastive loss (Khosla et al., 2020), the :math:`\mathcal{L}^{sup}_{out}` form.

    With :math:`s_{ij} = \cos(x_i, x_j)/\tau`, positives
    :math:`P(i) = \{p \ne i: y_p = y_i\}` and :math:`A(i) = \{a \ne i\}`:

    .. math:: \ell_i = -\frac{1}{|P(i)|}\sum_{p \in P(i)}
                       \log\frac{e^{s_{ip}}}{\sum_{a \in A(i)} e^{s_{ia}}}
                     = \operatorname{LSE}_{a \in A(i)} s_{ia} - \frac{1}{|P(i)|}\sum_{p\in P(i)} s_{ip}

    ``"mean"`` is over anchors that have at least one positive (:math:`n_i = 1`;
    anchors without a positive are left out, where the reference code would
    divide by zero). The reference implementation's extra factor
    ``temperature / base_temperature`` is not applied (it is 1 at its defaults).
    For multi-view batches ``[B, V, D]``, reshape to ``[B*V, D]`` and repeat the
    labels ``V`` times.

    Args:
      embeddings: ``[B, D]``, floating point (normalised inside).
      labels: ``[B]`` integer labels.
      temperature: :math:`\tau > 0`.

    Returns:
      The reduced loss; with ``reduction="none"`` the ``[B]`` per-anchor losses
      (0 for an anchor without a positive).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x = jnp.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
      >>> round(float(jaxloss.supcon_loss(x, jnp.array([0, 0, 0, 1]), temperature=1.0)), 6)
      0.861995
    """
    s, pos, _ = _pair_similarities(embeddings, labels)
    s = s / temperature
    others = ~jnp.eye(labels.shape[0], dtype=bool)
    lse = masked_logsumexp(s, others)
    n_pos = jnp.sum(pos, axis=-1).astype(s.dtype)
    mean_pos = safe_div(jnp.sum(jnp.where(pos, s, 0.0), axis=-1), n_pos)
    has_pos = n_pos > 0
    return Unreduced(jnp.where(has_pos, lse - mean_pos, 0.0), has_pos.astype(s.dtype))


def _pair_similarities(embeddings, labels):
    """Cosine similarities ``[B, B]`` and the (positive, negative) pair masks."""
    z = _unit(embeddings)
    # under an explicit mesh with the batch split, gather the second operand (and the
    # labels) so the [B, B] result is sharded by rows only
    s = jnp.matmul(z, replicated(z).T, precision=lax.Precision.HIGHEST)
    pos, neg = _label_masks(labels, replicated(labels))
    return s, pos, neg


@metric(checks={"margin": Interval(0.0, 1.0), "gamma": POSITIVE}, layout=_BATCH, validate=_batch_validate,
        example=Example(_contrastive_batch_sample, sweep=("margin", (0.1, 0.25, 0.4, 0.6)), grad_order=0))
def circle_loss(embeddings, labels, *, margin=0.4, gamma=80.0):
    r"""Circle loss (Sun et al., 2020) on in-batch pairs, with class-level labels.

    With cosine similarities :math:`s_{ij}`, each anchor's positives
    :math:`P(i) = \{p \ne i: y_p = y_i\}` and negatives
    :math:`N(i) = \{n: y_n \ne y_i\}`, margin :math:`m` and scale :math:`\gamma`:

    .. math:: \ell_i = \operatorname{softplus}\Bigl(
                \log\sum_{p \in P(i)} e^{-\gamma\, \alpha_p (s_{ip} - \Delta_p)}
              + \log\sum_{n \in N(i)} e^{\gamma\, \alpha_n (s_{in} - \Delta_n)}\Bigr),

    .. math:: \alpha_p = [1 + m - s_{ip}]_+,\quad \alpha_n = [s_{in} + m]_+,\quad
              \Delta_p = 1 - m,\quad \Delta_n = m

    The adaptive weights :math:`\alpha_p, \alpha_n` are constants for the
    gradient (``stop_gradient``), as in the paper and pytorch-metric-learning's
    ``CircleLoss``, whose semantics this follows (cosine similarity, no miner):
    so ``jax.grad`` is the paper's gradient, not the derivative of the value
    with respect to the similarities through :math:`\alpha`. An anchor without a
    positive or without a negative is not counted (:math:`\ell_i = 0`), and
    ``"mean"`` is over the counted anchors (pytorch-metric-learning's default
    ``MeanReducer`` averages over every anchor, the uncounted ones as 0).
    Embeddings are normalised with the floor of :func:`ntxent_loss`, so equal
    (:math:`s = 1`) or opposite (:math:`s = -1`) embeddings and zero vectors
    give finite gradients.

    Args:
      embeddings: ``[B, D]``, floating point (normalised inside).
      labels: ``[B]`` integer labels; equal labels form positive pairs.
      margin: the relaxation :math:`m \in [0, 1]` (the paper suggests 0.25 for
        face recognition, 0.4 is pytorch-metric-learning's default).
      gamma: the scale :math:`\gamma > 0` (80; 256 for face recognition).

    Returns:
      The reduced loss; with ``reduction="none"`` the ``[B]`` per-anchor losses
      (0 for an anchor that is not counted).

    Example:
      >>> import jax.numpy as jnp, numpy as np, jaxloss
      >>> x = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]); y = jnp.array([0, 0, 1])
      >>> # anchor 0: s_p = 1 (alpha_p = 0.4), s_n = 0 (alpha_n = 0.4)
      >>> ref = np.logaddexp(0, -80 * 0.4 * (1 - 0.6) + 80 * 0.4 * (0 - 0.4))
      >>> out = jaxloss.circle_loss(x, y, reduction="none")
      >>> bool(np.allclose(out, [ref, ref, 0.0], rtol=1e-5)), bool(np.isclose(jaxloss.circle_loss(x, y), ref))
      (True, True)
    """
    s, pos, neg = _pair_similarities(embeddings, labels)
    sg = lax.stop_gradient(s)
    alpha_p = jax.nn.relu(1.0 + margin - sg)
    alpha_n = jax.nn.relu(sg + margin)
    logit_p = -gamma * alpha_p * (s - (1.0 - margin))
    logit_n = gamma * alpha_n * (s - margin)
    counted = jnp.any(pos, axis=-1) & jnp.any(neg, axis=-1)
    value = softplus(masked_logsumexp(logit_p, pos) + masked_logsumexp(logit_n, neg))
    return Unreduced(jnp.where(counted, value, 0.0), counted.astype(s.dtype))


def _log1p_sum_exp(x, mask):
    r""":math:`\log(1 + \sum_{mask} e^{x})` per row (0 for an empty row)."""
    has = jnp.any(mask, axis=-1)
    return jnp.where(has, softplus(masked_logsumexp(x, mask)), 0.0)


@metric(checks={"alpha": POSITIVE, "beta": POSITIVE, "base": Interval(-1.0, 1.0)}, layout=_BATCH,
        validate=_batch_validate,
        example=Example(_contrastive_batch_sample, sweep=("base", (0.0, 0.25, 0.5, 0.75))))
def multi_similarity_loss(embeddings, labels, *, alpha=2.0, beta=50.0, base=0.5):
    r"""Multi-Similarity loss (Wang et al., 2019) on in-batch pairs, without mining.

    With cosine similarities :math:`s_{ij}`, positives
    :math:`P(i) = \{p \ne i: y_p = y_i\}`, negatives :math:`N(i) = \{n: y_n \ne y_i\}`
    and the similarity offset :math:`\lambda` (``base``):

    .. math:: \ell_i = \frac{1}{\alpha}\log\Bigl(1 + \sum_{p \in P(i)} e^{-\alpha (s_{ip} - \lambda)}\Bigr)
                     + \frac{1}{\beta}\log\Bigl(1 + \sum_{n \in N(i)} e^{\beta (s_{in} - \lambda)}\Bigr)

    Semantics of pytorch-metric-learning's ``MultiSimilarityLoss`` with its
    cosine similarity and no miner (the paper's pair mining is a separate step
    there too): a term with no pairs is 0, and ``"mean"`` is over all anchors.
    Written as ``softplus`` of a masked log-sum-exp, so it is exact for any
    :math:`\beta` and has finite gradients at :math:`s = \pm 1`.

    Args:
      embeddings: ``[B, D]``, floating point (normalised inside).
      labels: ``[B]`` integer labels; equal labels form positive pairs.
      alpha: the positive scale :math:`\alpha > 0`.
      beta: the negative scale :math:`\beta > 0`.
      base: the offset :math:`\lambda \in [-1, 1]`.

    Returns:
      The reduced loss; with ``reduction="none"`` the ``[B]`` per-anchor losses.

    Example:
      >>> import jax.numpy as jnp, numpy as np, jaxloss
      >>> x = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]); y = jnp.array([0, 0, 1])
      >>> pos = np.log1p(np.exp(-2 * (1 - 0.5))) / 2; neg = np.log1p(np.exp(50 * (0 - 0.5))) / 50
      >>> bool(np.allclose(jaxloss.multi_similarity_loss(x, y, reduction="none"),
      ...                  [pos + neg, pos + neg, 2 * neg], rtol=1e-5))
      True
    """
    s, pos, neg = _pair_similarities(embeddings, labels)
    return (_log1p_sum_exp(-alpha * (s - base), pos) / alpha
            + _log1p_sum_exp(beta * (s - base), neg) / beta)


ContrastiveLoss = contrastive_loss.Loss
TripletLoss = triplet_loss.Loss
CosineEmbeddingLoss = cosine_embedding_loss.Loss
MarginRankingLoss = margin_ranking_loss.Loss
HingeEmbeddingLoss = hinge_embedding_loss.Loss
BatchTripletLoss = batch_triplet_loss.Loss
NTXentLoss = ntxent_loss.Loss
SupConLoss = supcon_loss.Loss
CircleLoss = circle_loss.Loss
MultiSimilarityLoss = multi_similarity_loss.Loss
