"""Metric learning: triplet loss with batch-hard mining vs contrastive loss.

Synthetic data: 10 classes in a 32-dimensional input space. Each class is a
Gaussian cluster around its own centre in 8 informative dimensions, and every
point also carries 24 dimensions of large class-independent noise, so
nearest neighbours in the raw inputs are often of the wrong class. A small MLP
maps the inputs to an 8-D embedding on the unit sphere (L2-normalised, as is
usual for both losses), trained with

* ``BatchTripletLoss(margin=0.2, mining="batch_hard")``: for every anchor in the batch, its
  farthest positive against its closest negative (Hermans et al., 2017); a loss
  object called as ``loss(embeddings, labels)``, so it drops straight into
  ``jaxloss.make_train_step``;
* ``contrastive_loss(margin=0.5)`` on every pair of the batch: similar pairs
  pulled together, dissimilar pairs pushed beyond the margin.

Scored on held-out points by recall@1: the fraction whose nearest other
held-out point (Euclidean, in the embedding) has the same class.

    python examples/metric_learning.py            # default size (seconds on a CPU)
    python examples/metric_learning.py --small    # the size CI runs
    python examples/metric_learning.py --large    # more data, longer training
    python examples/metric_learning.py --seed 1   # another data seed

(Without the normalisation, and in a 2-D embedding, batch-hard mining is prone to
collapsing every point onto one spot; the unit sphere and 8 dimensions avoid it.)

Saves ``metric_learning.png`` (the held-out embeddings projected on their first
two principal components)
under ``--out`` (default ``examples/out/``).
"""

from __future__ import annotations

import _common  # what every example shares: command line, timing, plot file (examples/_common.py)
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

import jaxloss

CLASSES, INFORMATIVE, NUISANCE = 10, 8, 24


def make_data(rng, n_per_class, centres):
    labels = np.repeat(np.arange(CLASSES), n_per_class)
    signal = centres[labels] + 0.6 * rng.normal(size=(labels.size, INFORMATIVE))
    noise = 3.0 * rng.normal(size=(labels.size, NUISANCE))
    x = np.concatenate([signal, noise], axis=1).astype(np.float32)
    order = rng.permutation(labels.size)
    return x[order], labels[order].astype(np.int32)


EMBEDDING = 8


def init(key, sizes=(INFORMATIVE + NUISANCE, 64, 64, EMBEDDING)):
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {"w": jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a), "b": jnp.zeros(b)}
        for k, a, b in zip(keys, sizes[:-1], sizes[1:])
    ]


def embed(params, x):
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    e = x @ params[-1]["w"] + params[-1]["b"]
    return e * jax.lax.rsqrt(jnp.sum(e * e, axis=-1, keepdims=True) + 1e-12)  # unit length


def all_pairs_contrastive(margin):
    """``contrastive_loss`` over every ordered pair (i, j), i != j, of a batch,
    as a ``loss(embeddings, labels)`` function for ``make_train_step``."""

    def loss(embeddings, labels):
        b, d = embeddings.shape
        x1 = jnp.broadcast_to(embeddings[:, None, :], (b, b, d))
        x2 = jnp.broadcast_to(embeddings[None, :, :], (b, b, d))
        similar = labels[:, None] == labels[None, :]
        off_diagonal = ~jnp.eye(b, dtype=bool)
        return jaxloss.contrastive_loss(x1, x2, similar, margin=margin, where=off_diagonal)

    return loss


def fit(loss, x, y, *, steps, batch, seed, desc):
    optimizer = optax.adam(optax.cosine_decay_schedule(3e-3, steps, alpha=0.1))
    params = init(jax.random.PRNGKey(seed))
    opt_state = optimizer.init(params)
    step = jaxloss.make_train_step(embed, loss, optimizer)
    rng = np.random.default_rng(seed)
    for _ in tqdm(range(steps), desc=desc, leave=False, disable=None):
        idx = rng.choice(len(x), size=batch, replace=False)
        params, opt_state, _value = step(params, opt_state, x[idx], y[idx])
    return params


def recall_at_1(points, labels):
    points = np.asarray(points, np.float64)
    sq = np.sum(points ** 2, axis=1)
    dist = sq[:, None] + sq[None, :] - 2.0 * points @ points.T
    np.fill_diagonal(dist, np.inf)
    return float(np.mean(labels[np.argmin(dist, axis=1)] == labels))


SIZES = {
    "small": {"per_class": 100, "steps": 500, "batch": 64},
    "default": {"per_class": 200, "steps": 1500, "batch": 64},
    "large": {"per_class": 1000, "steps": 5000, "batch": 128},
}


def main(argv=None):
    args, cfg, start = _common.setup(__doc__, SIZES, argv, large_help="more data, longer training")

    rng = np.random.default_rng(args.seed)
    centres = 2.0 * rng.normal(size=(CLASSES, INFORMATIVE))
    x, y = make_data(rng, cfg["per_class"], centres)
    x_test, y_test = make_data(rng, 100, centres)
    print(f"{CLASSES} classes, {len(x)} training and {len(x_test)} held-out points, "
          f"{INFORMATIVE} informative + {NUISANCE} noise input dimensions, {EMBEDDING}-D unit embedding")

    losses = {
        "triplet, batch-hard": jaxloss.BatchTripletLoss(margin=0.2, mining="batch_hard"),
        "contrastive, all pairs": all_pairs_contrastive(margin=0.5),
    }
    params = {k: fit(crit, x, y, steps=cfg["steps"], batch=cfg["batch"], seed=args.seed, desc=k)
              for k, crit in losses.items()}
    emb = {k: np.asarray(embed(p, x_test)) for k, p in params.items()}
    recall = {"raw inputs (32-D)": recall_at_1(x_test, y_test)}
    recall.update({k: recall_at_1(v, y_test) for k, v in emb.items()})

    print("\nheld-out recall@1 (nearest other held-out point has the same class):")
    for k, r in recall.items():
        print(f"  {k:24s} {r:.4f}")
    print("recall@1 gain over the raw inputs: " + ", ".join(
        f"{k} {recall[k] - recall['raw inputs (32-D)']:+.4f}" for k in emb))

    path = _common.plot_file(args.out, "metric_learning.png")
    plot(emb, y_test, recall, path)
    _common.finish(path, start)


def plot(emb, labels, recall, path):
    plt = _common.pyplot()

    fig, axes = plt.subplots(1, len(emb), figsize=(5.5 * len(emb), 5))
    for ax, (k, e) in zip(np.atleast_1d(axes), emb.items()):
        centred = e - e.mean(axis=0)
        e = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T  # first two principal components
        sc = ax.scatter(e[:, 0], e[:, 1], c=labels, cmap="tab10", s=8, vmin=-0.5, vmax=CLASSES - 0.5)
        ax.set_title(f"{k}: recall@1 {recall[k]:.3f}")
        ax.set_aspect("equal", adjustable="datalim")
    fig.colorbar(sc, ax=axes, label="class", ticks=range(CLASSES))
    fig.suptitle(f"held-out {EMBEDDING}-D embeddings, first two principal components")
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
