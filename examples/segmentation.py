"""Segmentation of small shapes: Dice + BCE vs BCE (binary), and CE vs CE + Dice vs Lovász-softmax (multi-class).

Binary task. Synthetic images: a few small discs, squares and bars on a noisy,
shaded background; the target is the mask of the shapes (a few percent of the
pixels). The same small fully-convolutional network is trained twice:

* ``BinaryCrossEntropyWithLogits()`` alone, and
* ``DiceLoss(from_logits=True, axis=(1, 2)) + BinaryCrossEntropyWithLogits()``,
  the Dice + BCE recipe, built by adding two loss objects (one Dice score per
  image, averaged over the batch, plus the pixel-wise BCE, on the same logits).

Both are scored on held-out images by the Dice score of the thresholded masks
(``p > 0.5``), per image and averaged. With few foreground pixels, BCE is
dominated by the easy background and leaves the uncertain pixels at the
objects' edges below 0.5; the Dice term rewards overlap directly. Early in
training BCE alone can also sit at the all-background solution for a while (at
the ``--small`` size it has not left it for some seeds); Dice + BCE leaves it at once.

Multi-class task. Discs, squares and thin bars of one brightness on the same
kind of background; the integer label map says which shape covers each pixel
(4 classes, about 89% background, the bars about 2%). The network (4 logits per
pixel, channels last) is trained three times:

* ``SparseCrossEntropy()`` (per-pixel cross-entropy),
* ``SparseCrossEntropy() + MulticlassDiceLoss()`` (one soft Dice per class over the batch), and
* ``LovaszSoftmaxLoss()`` (the Lovász extension of the per-class IoU),

and scored by the IoU of the arg-max label map per class over the held-out
pixels, and their mean (mIoU). Cross-entropy alone favours the frequent
classes and leaves the rare thin bars (and often the squares) unlabelled; the
overlap losses weigh every class equally and raise the mean IoU, mostly through
the rare classes.

    python examples/segmentation.py            # both tasks, default size (about a minute on a 2-core CPU)
    python examples/segmentation.py --small    # the size CI runs
    python examples/segmentation.py --large    # more images, bigger images, longer training
    python examples/segmentation.py --seed 1   # another data seed
    python examples/segmentation.py --task multiclass   # one task only: binary, multiclass (default both)

Saves ``segmentation.png`` (images, true masks and both models' masks) and
``segmentation_multiclass.png`` (images, true label maps and the three models'
maps) under ``--out`` (default ``examples/out/``).
"""

from __future__ import annotations

import argparse
import sys
import time

import _common  # what every example shares: command line, timing, plot file (examples/_common.py)
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

import jaxloss

# ---------------------------------------------------------------------------
# Data: small shapes on a noisy background
# ---------------------------------------------------------------------------


def make_images(rng, n, size, max_shapes=3, noise=0.8):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.empty((n, size, size, 1), np.float32)
    masks = np.zeros((n, size, size), np.float32)
    for i in range(n):
        mask = np.zeros((size, size), bool)
        for _ in range(rng.integers(1, max_shapes + 1)):
            cy, cx = rng.uniform(3, size - 3, size=2)
            r = rng.uniform(1.5, 3.2)
            kind = rng.integers(3)
            if kind == 0:  # disc
                shape = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            elif kind == 1:  # square
                shape = (np.abs(yy - cy) <= r * 0.85) & (np.abs(xx - cx) <= r * 0.85)
            else:  # thin bar, horizontal or vertical
                a, b = (yy, xx) if rng.integers(2) else (xx, yy)
                ca, cb = (cy, cx) if a is yy else (cx, cy)
                shape = (np.abs(a - ca) <= 0.8) & (np.abs(b - cb) <= 2.2 * r)
            mask |= shape
        gy, gx = rng.normal(size=2) * 0.3
        shading = gy * (yy / size - 0.5) + gx * (xx / size - 0.5)
        image = 0.8 * mask + shading + noise * rng.normal(size=(size, size))
        images[i, :, :, 0] = image
        masks[i] = mask
    return images, masks


# ---------------------------------------------------------------------------
# A small fully-convolutional network (3x3 convolutions, NHWC), no framework
# ---------------------------------------------------------------------------

def init(key, width, classes=1):
    channels = (1, width, width, width)
    params = []
    keys = jax.random.split(key, len(channels))
    for k, c_in, c_out in zip(keys, channels[:-1], channels[1:]):
        params.append({"w": jax.random.normal(k, (3, 3, c_in, c_out)) * jnp.sqrt(2.0 / (9 * c_in)),
                       "b": jnp.zeros(c_out)})
    params.append({"w": jax.random.normal(keys[-1], (1, 1, width, classes)) * 0.1, "b": jnp.zeros(classes)})
    return params


def conv(x, layer, dilation=1):
    y = jax.lax.conv_general_dilated(x, layer["w"], window_strides=(1, 1), padding="SAME",
                                     rhs_dilation=(dilation, dilation),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + layer["b"]


def apply_multi(params, images):
    x = images
    for layer, dilation in zip(params[:-1], (1, 2, 1)):
        x = jax.nn.relu(conv(x, layer, dilation))
    return conv(x, params[-1])  # per-pixel logits, (N, H, W, C), channels last


def apply(params, images):
    return apply_multi(params, images)[..., 0]  # one logit per pixel, (N, H, W) like the masks


def fit(loss, images, masks, *, steps, batch, width, seed, desc, classes=1):
    optimizer = optax.adam(optax.cosine_decay_schedule(3e-3, steps, alpha=0.1))
    params = init(jax.random.PRNGKey(seed), width, classes)
    opt_state = optimizer.init(params)
    step = jaxloss.make_train_step(apply if classes == 1 else apply_multi, loss, optimizer)
    rng = np.random.default_rng(seed)
    for _ in tqdm(range(steps), desc=desc, leave=False, disable=None):
        idx = rng.integers(0, len(images), size=batch)
        params, opt_state, _value = step(params, opt_state, images[idx], masks[idx])
    return params


def dice_scores(logits, masks):
    """Hard Dice score per image (predicted mask: p > 0.5); 1 when both are empty."""
    pred = np.asarray(logits) > 0.0
    truth = masks > 0.5
    inter = np.sum(pred & truth, axis=(1, 2))
    total = pred.sum(axis=(1, 2)) + truth.sum(axis=(1, 2))
    return np.where(total > 0, 2.0 * inter / np.maximum(total, 1), 1.0)


CLASSES = ("background", "disc", "square", "bar")


def make_label_maps(rng, n, size, max_shapes=4, noise=0.6):
    """Images with discs, squares and thin bars of one brightness; the label map
    says which shape covers each pixel (0: background, 1: disc, 2: square, 3: bar)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.empty((n, size, size, 1), np.float32)
    labels = np.zeros((n, size, size), np.int32)
    for i in range(n):
        lab = np.zeros((size, size), np.int32)
        for _ in range(rng.integers(1, max_shapes + 1)):
            cy, cx = rng.uniform(3, size - 3, size=2)
            r = rng.uniform(2.0, 3.5)
            kind = rng.integers(1, 4)
            if kind == 1:
                shape = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            elif kind == 2:
                shape = (np.abs(yy - cy) <= r * 0.8) & (np.abs(xx - cx) <= r * 0.8)
            else:
                a, b, ca, cb = (yy, xx, cy, cx) if rng.integers(2) else (xx, yy, cx, cy)
                shape = (np.abs(a - ca) <= 0.6) & (np.abs(b - cb) <= 2.0 * r)
            lab[shape] = kind
        gy, gx = rng.normal(size=2) * 0.3
        shading = gy * (yy / size - 0.5) + gx * (xx / size - 0.5)
        images[i, :, :, 0] = 1.0 * (lab > 0) + shading + noise * rng.normal(size=(size, size))
        labels[i] = lab
    return images, labels


def iou_per_class(logits, labels, num_classes):
    """IoU of the arg-max prediction per class over all held-out pixels."""
    pred = np.argmax(logits, axis=-1)
    inter = np.array([np.sum((pred == c) & (labels == c)) for c in range(num_classes)])
    union = np.array([np.sum((pred == c) | (labels == c)) for c in range(num_classes)])
    return inter / np.maximum(union, 1)


SIZES = {
    "small": {"train": 512, "size": 24, "steps": 600, "batch": 8, "width": 12,
              "mc_train": 384, "mc_size": 20, "mc_steps": 300, "mc_batch": 8, "mc_width": 12},
    "default": {"train": 1024, "size": 24, "steps": 1200, "batch": 16, "width": 12,
                "mc_train": 1024, "mc_size": 24, "mc_steps": 1000, "mc_batch": 16, "mc_width": 16},
    "large": {"train": 4096, "size": 32, "steps": 4000, "batch": 32, "width": 16,
              "mc_train": 4096, "mc_size": 32, "mc_steps": 4000, "mc_batch": 32, "mc_width": 24},
}


def binary_task(args, cfg):
    rng = np.random.default_rng(args.seed)
    images, masks = make_images(rng, cfg["train"], cfg["size"])
    test_images, test_masks = make_images(rng, 256, cfg["size"])
    print(f"binary task: {len(images)} training and {len(test_images)} held-out {cfg['size']}x{cfg['size']} "
          f"images; foreground {masks.mean():.1%} of the pixels")

    losses = {
        "BCE": jaxloss.BinaryCrossEntropyWithLogits(),
        "Dice + BCE": jaxloss.DiceLoss(from_logits=True, axis=(1, 2)) + jaxloss.BinaryCrossEntropyWithLogits(),
    }
    for k, crit in losses.items():
        print(f"  {k:10s} = {crit!r}")
    params = {k: fit(crit, images, masks, steps=cfg["steps"], batch=cfg["batch"], width=cfg["width"],
                     seed=args.seed, desc=k)
              for k, crit in losses.items()}
    logits = {k: np.asarray(apply(p, test_images)) for k, p in params.items()}
    scores = {k: dice_scores(v, test_masks) for k, v in logits.items()}
    fg = {k: float((v > 0).mean()) for k, v in logits.items()}

    print("\nheld-out images (threshold 0.5):")
    print(f"{'loss':12s} {'Dice score':>10s} {'predicted fg':>13s}   (true fg {test_masks.mean():.2%})")
    for k in losses:
        print(f"{k:12s} {scores[k].mean():10.4f} {fg[k]:13.2%}")
    wins = float(np.mean(scores["Dice + BCE"] > scores["BCE"]))
    print(f"Dice score gain of Dice + BCE over BCE: {scores['Dice + BCE'].mean() - scores['BCE'].mean():+.4f} "
          f"(better on {wins:.0%} of the images)")

    path = _common.plot_file(args.out, "segmentation.png")
    plot(test_images, test_masks, logits, scores, path)
    print(f"plot: {path}")


def multiclass_task(args, cfg):
    rng = np.random.default_rng(args.seed + 1000)
    c = len(CLASSES)
    images, labels = make_label_maps(rng, cfg["mc_train"], cfg["mc_size"])
    test_images, test_labels = make_label_maps(rng, 256, cfg["mc_size"])
    share = ", ".join(f"{name} {np.mean(labels == k):.1%}" for k, name in enumerate(CLASSES))
    print(f"multi-class task: {len(images)} training and {len(test_images)} held-out "
          f"{cfg['mc_size']}x{cfg['mc_size']} label maps; pixels: {share}")

    losses = {
        "CE": jaxloss.SparseCrossEntropy(),
        "CE + Dice": jaxloss.SparseCrossEntropy() + jaxloss.MulticlassDiceLoss(),
        "Lovasz-softmax": jaxloss.LovaszSoftmaxLoss(),
    }
    for k, crit in losses.items():
        print(f"  {k:14s} = {crit!r}")
    params = {k: fit(crit, images, labels, steps=cfg["mc_steps"], batch=cfg["mc_batch"], width=cfg["mc_width"],
                     seed=args.seed, desc=k, classes=c)
              for k, crit in losses.items()}
    logits = {k: np.asarray(apply_multi(p, test_images)) for k, p in params.items()}
    ious = {k: iou_per_class(v, test_labels, c) for k, v in logits.items()}

    print("\nheld-out label maps (arg-max), IoU per class and mean IoU:")
    print(f"{'loss':16s}" + "".join(f"{name:>11s}" for name in CLASSES) + f"{'mean IoU':>10s}")
    for k in losses:
        print(f"{k:16s}" + "".join(f"{v:11.4f}" for v in ious[k]) + f"{ious[k].mean():10.4f}")

    path = _common.plot_file(args.out, "segmentation_multiclass.png")
    plot_multiclass(test_images, test_labels, logits, ious, path)
    print(f"plot: {path}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--task", choices=("binary", "multiclass", "both"), default="both")
    task, rest = pre.parse_known_args(argv)
    args, cfg, start = _common.setup(__doc__, SIZES, rest, large_help="more and bigger images, longer training")
    if task.task in ("binary", "both"):
        binary_task(args, cfg)
    if task.task == "both":
        print()
    if task.task in ("multiclass", "both"):
        multiclass_task(args, cfg)
    print(f"total time: {time.perf_counter() - start:.1f} s")


def plot(images, masks, logits, scores, path, n=6):
    plt = _common.pyplot()

    rows = [("image", images[:n, :, :, 0], "gray"), ("true mask", masks[:n], "gray")]
    rows += [(f"{k}", (v[:n] > 0).astype(float), "gray") for k, v in logits.items()]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.7 * n, 1.8 * len(rows)))
    for r, (label, data, cmap) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(data[c], cmap=cmap, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if label in scores:
                ax.set_title(f"Dice {scores[label][c]:.2f}", fontsize=8)
        axes[r, 0].set_ylabel(label, fontsize=9)
    fig.suptitle("held-out images: masks at p > 0.5 " + ", ".join(
        f"({k}: mean Dice {v.mean():.3f})" for k, v in scores.items()), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_multiclass(images, labels, logits, ious, path, n=6):
    plt = _common.pyplot()
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap(["#202020", "#e6550d", "#3182bd", "#31a354"])
    rows = [("image", images[:n, :, :, 0], "gray", {}), ("true labels", labels[:n], cmap, {"vmin": 0, "vmax": 3})]
    rows += [(k, np.argmax(v[:n], axis=-1), cmap, {"vmin": 0, "vmax": 3}) for k, v in logits.items()]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.7 * n, 1.8 * len(rows)))
    for r, (label, data, cm, kw) in enumerate(rows):
        for col in range(n):
            ax = axes[r, col]
            ax.imshow(data[col], cmap=cm, interpolation="nearest", **kw)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=9)
    fig.suptitle("held-out label maps (orange disc, blue square, green bar): " + ", ".join(
        f"{k} mIoU {v.mean():.3f}" for k, v in ious.items()), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
