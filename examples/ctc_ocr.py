"""Reading synthetic digit strips with CTC: a small model learns to transcribe without alignments.

Synthetic data: each of the 10 digits has its own random 7 x 4 binary glyph. A
strip is 2 to 6 digits drawn side by side with random gaps (1 or 2 empty
columns between digits, up to 3 before the first), plus Gaussian pixel noise,
on a canvas padded to a fixed width. Only the digit sequence is known, not
where each digit is: the frames of the model are the strip's columns, and
``jaxloss.ctc_loss`` sums over every alignment of the labels to them.

* The model: each column with its two neighbours on either side (35 pixels) goes
  through a two-layer MLP to 11 logits per frame: blank (class 0) and the digits
  (classes 1-10).
* ``ctc_loss(logits, labels, logit_lengths, label_lengths)``: frames past a
  strip's width (``logit_lengths``) and labels past its digit count
  (``label_lengths``, padded with -1) are ignored; ``"mean"`` divides each
  strip's loss by its number of digits, as PyTorch does.
* Greedy decoding: the most likely class per frame, repeats merged, blanks dropped.

Scored by sequence accuracy (the whole strip read exactly) and by per-digit edit
distance on held-out strips, before and after training.

    python examples/ctc_ocr.py            # default size (seconds on a CPU)
    python examples/ctc_ocr.py --small    # the size CI runs
    python examples/ctc_ocr.py --large    # more data, longer training
    python examples/ctc_ocr.py --seed 1   # another data seed

Saves ``ctc_ocr.png`` (the training loss and a held-out strip with the
per-frame predictions) under ``--out`` (default ``examples/out/``).
"""

from __future__ import annotations

import _common  # what every example shares: command line, timing, plot file (examples/_common.py)
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

import jaxloss

DIGITS, HEIGHT, GLYPH = 10, 7, 4
MIN_LEN, MAX_LEN = 2, 6
WIDTH = 3 + MAX_LEN * (GLYPH + 2)          # the widest strip
WINDOW = 2                                 # neighbouring columns on each side


def make_glyphs(rng):
    while True:
        glyphs = (rng.uniform(size=(DIGITS, HEIGHT, GLYPH)) < 0.5).astype(np.float32)
        flat = glyphs.reshape(DIGITS, -1)
        dist = np.abs(flat[:, None] - flat[None]).sum(-1) + 99 * np.eye(DIGITS)
        if dist.min() >= 6 and np.all(flat.sum(1) > 4):   # distinct, and none almost empty
            return glyphs


def make_strips(rng, glyphs, n):
    images = rng.normal(scale=0.35, size=(n, HEIGHT, WIDTH)).astype(np.float32)
    labels = np.full((n, MAX_LEN), -1, np.int32)
    widths = np.zeros(n, np.int32)
    lengths = rng.integers(MIN_LEN, MAX_LEN + 1, size=n).astype(np.int32)
    for i in range(n):
        col = rng.integers(0, 4)
        for j in range(lengths[i]):
            d = rng.integers(DIGITS)
            images[i, :, col:col + GLYPH] += glyphs[d]
            labels[i, j] = d + 1                         # class 0 is the blank
            col += GLYPH + rng.integers(1, 3)
        widths[i] = min(col, WIDTH)
    return images, labels, widths, lengths


def frames(images):
    """``[N, H, W] -> [N, W, (2 WINDOW + 1) H]``: each column with its neighbours."""
    padded = jnp.pad(images, ((0, 0), (0, 0), (WINDOW, WINDOW)))
    cols = [padded[:, :, k:k + images.shape[2]] for k in range(2 * WINDOW + 1)]
    return jnp.transpose(jnp.concatenate(cols, axis=1), (0, 2, 1))


def init(key, sizes=((2 * WINDOW + 1) * HEIGHT, 128, 128, DIGITS + 1)):
    keys = jax.random.split(key, len(sizes) - 1)
    return [{"w": jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a), "b": jnp.zeros(b)}
            for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def apply(params, images):
    x = frames(images)
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]          # [N, W, 11] logits


def greedy_decode(logits, widths):
    best = np.asarray(jnp.argmax(logits, axis=-1))
    out = []
    for row, w in zip(best, widths):
        seq = [int(k) for i, k in enumerate(row[:w]) if i == 0 or k != row[i - 1]]
        out.append([k for k in seq if k != 0])
    return out


def edit_distance(a, b):
    d = np.arange(len(b) + 1)
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
    return int(d[-1])


def score(params, data):
    images, labels, widths, lengths = data
    decoded = greedy_decode(apply(params, jnp.asarray(images)), widths)
    truth = [list(row[:n]) for row, n in zip(labels, lengths)]
    exact = np.mean([d == t for d, t in zip(decoded, truth)])
    cer = sum(edit_distance(d, t) for d, t in zip(decoded, truth)) / sum(len(t) for t in truth)
    return float(exact), float(cer), decoded


SIZES = {
    "small": {"train": 1500, "steps": 250, "batch": 64},
    "default": {"train": 5000, "steps": 1500, "batch": 64},
    "large": {"train": 20000, "steps": 5000, "batch": 128},
}


def main(argv=None):
    args, cfg, start = _common.setup(__doc__, SIZES, argv, large_help="more data, longer training")
    rng = np.random.default_rng(args.seed)
    glyphs = make_glyphs(rng)
    train = make_strips(rng, glyphs, cfg["train"])
    test = make_strips(rng, glyphs, 500)
    print(f"{cfg['train']} training and {len(test[0])} held-out strips of {MIN_LEN}-{MAX_LEN} digits, "
          f"{HEIGHT} x {WIDTH} pixels (frames = columns), {DIGITS} digits + blank")

    ctc = jaxloss.CTCLoss(blank=0)                         # "mean": each strip's nll / its digit count
    optimizer = optax.adam(optax.cosine_decay_schedule(6e-3, cfg["steps"], alpha=0.1))

    @jax.jit
    def step(params, opt_state, images, labels, widths, lengths):
        value, grads = jax.value_and_grad(lambda p: ctc(apply(p, images), labels, widths, lengths))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    params = init(jax.random.PRNGKey(args.seed))
    before, cer_before, _ = score(params, test)
    opt_state = optimizer.init(params)
    history = []
    for _ in tqdm(range(cfg["steps"]), desc="ctc", leave=False, disable=None):
        idx = rng.choice(cfg["train"], size=cfg["batch"], replace=False)
        params, opt_state, value = step(params, opt_state, *(jnp.asarray(a[idx]) for a in train))
        history.append(float(value))
    after, cer_after, decoded = score(params, test)

    print(f"\nCTC loss (mean per digit): {np.mean(history[:10]):.3f} -> {np.mean(history[-10:]):.3f}")
    print(f"held-out sequence accuracy: before {before:.3f}, after {after:.3f}")
    print(f"held-out character error rate: before {cer_before:.3f}, after {cer_after:.3f}")
    truth = [list(row[:n]) for row, n in zip(test[1], test[3])]
    for i in range(3):
        print(f"  strip {i}: labels {''.join(str(k - 1) for k in truth[i])}, "
              f"read {''.join(str(k - 1) for k in decoded[i])}")

    path = _common.plot_file(args.out, "ctc_ocr.png")
    plot(history, test, apply(params, jnp.asarray(test[0][:1])), truth[0], decoded[0], path)
    _common.finish(path, start)


def plot(history, test, logits, truth, decoded, path):
    plt = _common.pyplot()
    fig, axes = plt.subplots(3, 1, figsize=(9, 7), gridspec_kw={"height_ratios": [2, 1.2, 1.2]})
    axes[0].plot(history, lw=0.8)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("CTC loss per digit")
    width = int(test[2][0])
    axes[1].imshow(test[0][0][:, :width], cmap="gray_r", aspect="auto")
    axes[1].set_title(f"held-out strip: labels {''.join(str(k - 1) for k in truth)}, "
                      f"read {''.join(str(k - 1) for k in decoded)}")
    axes[1].set_yticks([])
    probs = np.asarray(jax.nn.softmax(logits[0, :width], axis=-1)).T
    axes[2].imshow(probs, cmap="viridis", aspect="auto", interpolation="nearest")
    axes[2].set_yticks(range(DIGITS + 1), ["blank"] + [str(d) for d in range(DIGITS)], fontsize=6)
    axes[2].set_xlabel("frame (column)")
    axes[2].set_title("per-frame class probabilities")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
