"""Imbalanced binary classification (1:99): BCE vs weighted BCE vs focal loss.

One positive for every 99 negatives, overlapping in feature space. With plain
BCE-with-logits the negatives dominate the loss, so few points ever reach a
predicted probability of 0.5 and the rare class is mostly missed. Two remedies:

* weighted BCE: ``binary_cross_entropy_with_logits(..., pos_weight=n_neg / n_pos)``
  (PyTorch's ``BCEWithLogitsLoss(pos_weight=...)`` recipe);
* focal loss: ``sigmoid_focal_loss(..., alpha, gamma=2)``, which down-weights the
  many easy negatives by the factor (1 - p_t)^gamma. Shown with RetinaNet's
  ``alpha=0.25`` (which weights the *positive* class by 0.25: tuned for dense
  detection, it suppresses a rare positive class here) and with ``alpha=0.75``.

Reported for the rare class on a held-out set with the same imbalance: recall,
precision and F1 at the threshold 0.5, and average precision (threshold-free).
What to expect: the average precision of all four models is about the same --
the losses rank the points alike -- but the reweighted losses move the decision
boundary into the overlap, trading precision for recall at the 0.5 threshold.

    python examples/imbalanced_classification.py            # default size
    python examples/imbalanced_classification.py --small    # the size CI runs
    python examples/imbalanced_classification.py --large    # 5x the data, 2x the steps
    python examples/imbalanced_classification.py --seed 1   # another data seed

Saves ``imbalanced_classification.png`` (decision boundaries and precision-recall
curves) under ``--out`` (default ``examples/out/``).
"""

from __future__ import annotations

import _common  # what every example shares: command line, timing, plot file (examples/_common.py)
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

import jaxloss

POS_MEAN = np.array([1.6, 1.6])
POS_STD = 0.6


def make_data(rng, n, pos_fraction=0.01):
    n_pos = int(round(pos_fraction * n))
    neg = rng.normal(size=(n - n_pos, 2))
    pos = POS_MEAN + POS_STD * rng.normal(size=(n_pos, 2))
    x = np.concatenate([neg, pos]).astype(np.float32)
    y = np.concatenate([np.zeros(n - n_pos), np.ones(n_pos)]).astype(np.float32)
    order = rng.permutation(n)
    return x[order], y[order]


def init(key, sizes=(2, 32, 32, 1)):
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {"w": jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a), "b": jnp.zeros(b)}
        for k, a, b in zip(keys, sizes[:-1], sizes[1:])
    ]


def apply(params, x):
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return (x @ params[-1]["w"] + params[-1]["b"])[:, 0]  # logits, shape (N,)


def fit(loss, x, y, *, steps, seed, desc):
    optimizer = optax.adam(optax.cosine_decay_schedule(1e-2, steps, alpha=0.1))
    params = init(jax.random.PRNGKey(seed))
    opt_state = optimizer.init(params)
    step = jaxloss.make_train_step(apply, loss, optimizer)
    x, y = jnp.asarray(x), jnp.asarray(y)
    for _ in tqdm(range(steps), desc=desc, leave=False, disable=None):
        params, opt_state, _value = step(params, opt_state, x, y)
    return params


def average_precision(scores, labels):
    """Area under the precision-recall curve as the mean precision at each positive
    (ties broken by order; the same definition as scikit-learn's)."""
    order = np.argsort(-scores, kind="stable")
    hits = labels[order] > 0.5
    precision_at_k = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision_at_k[hits].mean())


def pr_curve(scores, labels):
    order = np.argsort(-scores, kind="stable")
    hits = labels[order] > 0.5
    tp = np.cumsum(hits)
    return tp / hits.sum(), tp / np.arange(1, len(hits) + 1)


def rare_class_metrics(logits, labels):
    predicted = logits > 0.0  # probability > 0.5
    positive = labels > 0.5
    tp = np.sum(predicted & positive)
    recall = tp / positive.sum()
    precision = tp / max(predicted.sum(), 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"recall": float(recall), "precision": float(precision), "f1": float(f1),
            "ap": average_precision(logits, labels)}


SIZES = {
    "small": {"n": 10000, "steps": 600},
    "default": {"n": 20000, "steps": 1000},
    "large": {"n": 100000, "steps": 2000},
}


def main(argv=None):
    args, cfg, start = _common.setup(__doc__, SIZES, argv, large_help="5x the data, 2x the steps")

    rng = np.random.default_rng(args.seed)
    x, y = make_data(rng, cfg["n"])
    x_test, y_test = make_data(rng, 50000)
    n_pos = int(y.sum())
    pos_weight = (len(y) - n_pos) / n_pos
    print(f"train: {len(y)} points, {n_pos} positives (1:{pos_weight:.0f}); "
          f"test: {len(y_test)} points, {int(y_test.sum())} positives")

    losses = {
        "BCE": jaxloss.BinaryCrossEntropyWithLogits(),
        f"weighted BCE (pos_weight={pos_weight:.0f})": jaxloss.BinaryCrossEntropyWithLogits(pos_weight=pos_weight),
        "focal (alpha=0.25, gamma=2)": jaxloss.SigmoidFocalLoss(alpha=0.25, gamma=2.0),
        "focal (alpha=0.75, gamma=2)": jaxloss.SigmoidFocalLoss(alpha=0.75, gamma=2.0),
    }
    params = {k: fit(crit, x, y, steps=cfg["steps"], seed=args.seed, desc=k) for k, crit in losses.items()}
    logits = {k: np.asarray(apply(p, x_test)) for k, p in params.items()}
    metrics = {k: rare_class_metrics(v, y_test) for k, v in logits.items()}

    print("\nrare class on the test set (threshold 0.5):")
    print(f"{'loss':32s} {'recall':>7s} {'precision':>9s} {'F1':>6s} {'AP':>6s}")
    for k, m in metrics.items():
        print(f"{k:32s} {m['recall']:7.4f} {m['precision']:9.4f} {m['f1']:6.4f} {m['ap']:6.4f}")
    base = metrics["BCE"]["recall"]
    for k, m in metrics.items():
        if k != "BCE":
            print(f"recall gain over BCE, {k}: {m['recall'] - base:+.4f}")

    path = _common.plot_file(args.out, "imbalanced_classification.png")
    plot(x_test, y_test, params, logits, metrics, path)
    _common.finish(path, start)


def plot(x, y, params, logits, metrics, path):
    plt = _common.pyplot()

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 5))
    neg, pos = y < 0.5, y > 0.5
    ax0.scatter(x[neg, 0], x[neg, 1], s=1, c="0.75", label="negatives (99%)")
    ax0.scatter(x[pos, 0], x[pos, 1], s=4, c="crimson", label="positives (1%)")
    g = np.linspace(-3.5, 4.0, 200, dtype=np.float32)
    gx, gy = np.meshgrid(g, g)
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for color, (k, p) in zip(colors, params.items()):
        z = np.asarray(apply(p, grid)).reshape(gx.shape)
        ax0.contour(gx, gy, z, levels=[0.0], colors=[color], linewidths=2)
        ax0.plot([], [], color=color, lw=2, label=f"{k}: p = 0.5")
        recall, precision = pr_curve(logits[k], y)
        ax1.plot(recall, precision, color=color, lw=2,
                 label=f"{k} (AP {metrics[k]['ap']:.3f}, recall@0.5 {metrics[k]['recall']:.2f})")
        ax1.plot(metrics[k]["recall"], metrics[k]["precision"], "o", color=color)
    ax0.set_xlim(g[0], g[-1])
    ax0.set_ylim(g[0], g[-1])
    ax0.set_title("test data and decision boundaries")
    ax0.legend(fontsize=7, loc="lower left", markerscale=3)
    ax1.set_xlabel("recall (rare class)")
    ax1.set_ylabel("precision (rare class)")
    ax1.set_title("precision-recall on the test set (dots: threshold 0.5)")
    ax1.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
