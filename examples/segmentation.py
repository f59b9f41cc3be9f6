"""Binary segmentation of small shapes: Dice + BCE (composed loss objects) vs BCE alone.

Synthetic images: a few small discs, squares and bars on a noisy, shaded
background; the target is the mask of the shapes (a few percent of the pixels).
The same small fully-convolutional network is trained twice:

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

    python examples/segmentation.py            # default size (about 30 s on a 2-core CPU)
    python examples/segmentation.py --small    # the size CI runs
    python examples/segmentation.py --large    # more images, bigger images, longer training
    python examples/segmentation.py --seed 1   # another data seed

Saves ``segmentation.png`` (images, true masks and both models' masks) under
``--out`` (default ``examples/out/``).
"""

from __future__ import annotations

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

def init(key, width):
    channels = (1, width, width, width)
    params = []
    keys = jax.random.split(key, len(channels))
    for k, c_in, c_out in zip(keys, channels[:-1], channels[1:]):
        params.append({"w": jax.random.normal(k, (3, 3, c_in, c_out)) * jnp.sqrt(2.0 / (9 * c_in)),
                       "b": jnp.zeros(c_out)})
    params.append({"w": jax.random.normal(keys[-1], (1, 1, width, 1)) * 0.1, "b": jnp.zeros(1)})
    return params


def conv(x, layer, dilation=1):
    y = jax.lax.conv_general_dilated(x, layer["w"], window_strides=(1, 1), padding="SAME",
                                     rhs_dilation=(dilation, dilation),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + layer["b"]


def apply(params, images):
    x = images
    for layer, dilation in zip(params[:-1], (1, 2, 1)):
        x = jax.nn.relu(conv(x, layer, dilation))
    return conv(x, params[-1])[..., 0]  # per-pixel logits, (N, H, W) like the masks


def fit(loss, images, masks, *, steps, batch, width, seed, desc):
    optimizer = optax.adam(optax.cosine_decay_schedule(3e-3, steps, alpha=0.1))
    params = init(jax.random.PRNGKey(seed), width)
    opt_state = optimizer.init(params)
    step = jaxloss.make_train_step(apply, loss, optimizer)
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


SIZES = {
    "small": {"train": 512, "size": 24, "steps": 600, "batch": 8, "width": 12},
    "default": {"train": 1024, "size": 24, "steps": 1200, "batch": 16, "width": 12},
    "large": {"train": 4096, "size": 32, "steps": 4000, "batch": 32, "width": 16},
}


def main(argv=None):
    args, cfg, start = _common.setup(__doc__, SIZES, argv, large_help="more and bigger images, longer training")

    rng = np.random.default_rng(args.seed)
    images, masks = make_images(rng, cfg["train"], cfg["size"])
    test_images, test_masks = make_images(rng, 256, cfg["size"])
    print(f"{len(images)} training and {len(test_images)} held-out {cfg['size']}x{cfg['size']} images; "
          f"foreground {masks.mean():.1%} of the pixels")

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
    _common.finish(path, start)


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


if __name__ == "__main__":
    main()
