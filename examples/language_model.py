"""A tiny character-level language model trained with ``linear_cross_entropy``.

The model reads the previous 16 characters (embedded and concatenated), passes
them through a two-layer MLP to a hidden state ``h`` of size D, and predicts the
next character with an output matrix ``W`` of shape (V, D). The loss is the
cross-entropy of the logits ``h @ W.T``, computed two ways from the same
initialisation and the same batches:

* ``jaxloss.linear_cross_entropy(h, W, labels, chunk_size=...)``: the logits are
  never materialised; the vocabulary is streamed in chunks, forward and backward;
* ``jaxloss.sparse_cross_entropy(h @ W.T, labels)``: the usual way, with the
  (tokens, V) logits in memory (and their gradient in the backward pass).

At identical parameters the two losses and their gradients agree to float32
rounding; the two training runs track each other step by step (their small
differences are that rounding, compounded by training).
The memory each training step needs is read from XLA's plan of the compiled
step (``compiled.memory_analysis().temp_size_in_bytes``) at this model's size
and at a language-model-sized head (8192 tokens, D = 1024, V = 32768 / 131072),
which is compiled but not run.

The corpus is the docstrings of jaxloss itself, so the script needs no data.

    python examples/language_model.py            # default size (seconds on a CPU)
    python examples/language_model.py --small    # the size CI runs
    python examples/language_model.py --large    # a wider model, longer training
    python examples/language_model.py --seed 1   # another data seed

Saves ``language_model.png`` (the two training curves and the memory table) under
``--out`` (default ``examples/out/``).
"""

from __future__ import annotations

import inspect

import _common  # what every example shares: command line, timing, plot file (examples/_common.py)
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

import jaxloss

CONTEXT = 16


def corpus() -> str:
    """Every docstring of the public jaxloss API, in a fixed order."""
    docs = [inspect.getdoc(jaxloss)]
    for name in sorted(jaxloss.__all__):
        doc = inspect.getdoc(getattr(jaxloss, name))
        if doc and doc not in docs:
            docs.append(doc)
    return "\n\n".join(docs)


def windows(ids, n, rng):
    """``n`` random (context, next character) pairs."""
    starts = rng.integers(0, len(ids) - CONTEXT - 1, size=n)
    idx = starts[:, None] + np.arange(CONTEXT + 1)
    chunk = ids[idx]
    return chunk[:, :CONTEXT], chunk[:, CONTEXT]


def init(key, vocab, embed=24, hidden=256):
    k = jax.random.split(key, 4)
    return {
        "embed": jax.random.normal(k[0], (vocab, embed)) * 0.5,
        "w1": jax.random.normal(k[1], (CONTEXT * embed, hidden)) * jnp.sqrt(2.0 / (CONTEXT * embed)),
        "b1": jnp.zeros(hidden),
        "w2": jax.random.normal(k[2], (hidden, hidden)) * jnp.sqrt(1.0 / hidden),
        "b2": jnp.zeros(hidden),
        "out": jax.random.normal(k[3], (vocab, hidden)) * 0.02,  # W, (V, D)
    }


def hidden_state(params, context):
    x = params["embed"][context].reshape(context.shape[0], -1)
    x = jax.nn.relu(x @ params["w1"] + params["b1"])
    return jnp.tanh(x @ params["w2"] + params["b2"])


# Two heads over the same trunk. make_train_step calls loss(apply_fn(params, x), y).
def apply_fused(params, context):
    return hidden_state(params, context), params["out"]


def apply_materialised(params, context):
    return hidden_state(params, context) @ params["out"].T  # (tokens, V) logits


def fused_loss(chunk_size):
    def loss(pred, labels):
        h, w = pred
        return jaxloss.linear_cross_entropy(h, w, labels, chunk_size=chunk_size)

    return loss


def step_memory(n_tokens, d, vocab, chunk_size):
    """Temporary memory (bytes) of one jitted value-and-gradient of each head,
    as XLA plans it for the current backend (compiled, never run)."""
    h = jax.ShapeDtypeStruct((n_tokens, d), jnp.float32)
    w = jax.ShapeDtypeStruct((vocab, d), jnp.float32)
    y = jax.ShapeDtypeStruct((n_tokens,), jnp.int32)

    def fused(h, w, y):
        return jaxloss.linear_cross_entropy(h, w, y, chunk_size=chunk_size)

    def materialised(h, w, y):
        return jaxloss.sparse_cross_entropy(h @ w.T, y)

    out = {}
    for name, f in (("linear_cross_entropy", fused), ("materialised logits", materialised)):
        compiled = jax.jit(jax.value_and_grad(f, argnums=(0, 1))).lower(h, w, y).compile()
        out[name] = compiled.memory_analysis().temp_size_in_bytes
    return out


def mib(b):
    return f"{b / 2 ** 20:9.1f} MiB"


SIZES = {
    "small": {"steps": 300, "batch": 256, "hidden": 128},
    "default": {"steps": 1200, "batch": 256, "hidden": 256},
    "large": {"steps": 6000, "batch": 512, "hidden": 512},
}


def main(argv=None):
    args, cfg, start = _common.setup(__doc__, SIZES, argv, large_help="a wider model, longer training")

    text = corpus()
    chars = sorted(set(text))
    vocab = len(chars)
    ids = np.array([chars.index(c) for c in text], np.int32)
    split = int(0.9 * len(ids))
    train_ids, val_ids = ids[:split], ids[split:]
    chunk = 32  # the vocabulary is small here; 32 still streams it in several chunks
    print(f"corpus: {len(text)} characters of jaxloss docstrings, vocabulary V = {vocab}, "
          f"context {CONTEXT}, hidden D = {cfg['hidden']}, chunk_size {chunk}")

    heads = {
        "linear_cross_entropy": (apply_fused, fused_loss(chunk)),
        "materialised logits": (apply_materialised, jaxloss.SparseCrossEntropy()),
    }
    curves, params_out = {}, {}
    optimizer = optax.adam(optax.cosine_decay_schedule(3e-3, cfg["steps"], alpha=0.1))
    for name_, (apply_fn, loss) in heads.items():
        params = init(jax.random.PRNGKey(args.seed), vocab, hidden=cfg["hidden"])
        opt_state = optimizer.init(params)
        step = jaxloss.make_train_step(apply_fn, loss, optimizer)
        rng = np.random.default_rng(args.seed)  # the same batches for both heads
        values = []
        for _ in tqdm(range(cfg["steps"]), desc=name_, leave=False, disable=None):
            x, y = windows(train_ids, cfg["batch"], rng)
            params, opt_state, value = step(params, opt_state, x, y)
            values.append(value)
        curves[name_] = np.asarray(jnp.stack(values))
        params_out[name_] = params

    x_val, y_val = windows(val_ids, 4096, np.random.default_rng(1234))
    val = {}
    for name_, params in params_out.items():
        h = hidden_state(params, x_val)
        val[name_] = float(jaxloss.linear_cross_entropy(h, params["out"], y_val, chunk_size=chunk))
    # Both losses at identical parameters: value and gradients w.r.t. the hidden states and W.
    h = hidden_state(params_out["linear_cross_entropy"], x_val)
    w = params_out["linear_cross_entropy"]["out"]
    fused_vg = jax.value_and_grad(lambda h, w: jaxloss.linear_cross_entropy(h, w, y_val, chunk_size=chunk),
                                  argnums=(0, 1))(h, w)
    mat_vg = jax.value_and_grad(lambda h, w: jaxloss.sparse_cross_entropy(h @ w.T, y_val), argnums=(0, 1))(h, w)
    same_value = abs(float(fused_vg[0]) - float(mat_vg[0])) / abs(float(mat_vg[0]))
    same_grad = max(float(jnp.max(jnp.abs(g1 - g2)) / jnp.max(jnp.abs(g2))) for g1, g2 in zip(fused_vg[1], mat_vg[1]))
    a, b = curves["linear_cross_entropy"], curves["materialised logits"]
    rel = np.max(np.abs(a - b) / np.abs(b))

    print(f"\ntraining loss (nats/char), step 1 -> step {cfg['steps']}:")
    for name_, c in curves.items():
        print(f"  {name_:22s} {c[0]:.4f} -> {c[-1]:.4f}   validation {val[name_]:.4f}")
    print(f"at identical (trained) parameters, 4096 validation tokens: relative difference of the losses "
          f"{same_value:.2e}, of the gradients (dh, dW; max-norm) {same_grad:.2e}")
    print(f"the two training runs: relative difference at step 1 {abs(a[0] - b[0]) / abs(b[0]):.2e}, "
          f"largest over all steps {rel:.2e} (float32 rounding, compounded by training)")
    print(f"(uniform guess: ln V = {np.log(vocab):.4f} nats/char)")

    configs = [("this model", cfg["batch"], cfg["hidden"], vocab, chunk),
               ("LM head, V = 32768", 8192, 1024, 32768, 4096),
               ("LM head, V = 131072", 8192, 1024, 131072, 4096)]
    print(f"\ntemporary memory of one value-and-gradient of the head ({jax.default_backend()}, XLA's plan):")
    print(f"  {'configuration':20s} {'tokens':>6s} {'D':>5s} {'V':>7s} {'logits':>13s} "
          f"{'materialised':>13s} {'linear_ce':>13s} {'ratio':>7s}")
    memory = []
    for label, n, d, v, cs in configs:
        m = step_memory(n, d, v, cs)
        ratio = m["materialised logits"] / max(m["linear_cross_entropy"], 1)
        memory.append((label, n, d, v, m, ratio))
        print(f"  {label:20s} {n:6d} {d:5d} {v:7d} {mib(n * v * 4)} {mib(m['materialised logits'])} "
              f"{mib(m['linear_cross_entropy'])} {ratio:6.1f}x")

    print("\nsample (greedy) from the linear_cross_entropy model:")
    print("  " + repr(generate(params_out["linear_cross_entropy"], text[:CONTEXT], chars, 120)))

    path = _common.plot_file(args.out, "language_model.png")
    plot(curves, memory, path)
    _common.finish(path, start)


def generate(params, prompt, chars, n):
    ids = [chars.index(c) for c in prompt]
    for _ in range(n):
        h = hidden_state(params, jnp.asarray([ids[-CONTEXT:]]))
        ids.append(int(jnp.argmax(h @ params["out"].T, axis=-1)[0]))
    return "".join(chars[i] for i in ids)


def plot(curves, memory, path):
    plt = _common.pyplot()

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.2))
    for (name, c), style in zip(curves.items(), ("-", "--")):
        ax0.plot(np.arange(1, len(c) + 1), c, style, lw=1.5, label=name)
    ax0.set_xlabel("step")
    ax0.set_ylabel("training loss (nats/char)")
    ax0.set_title("the two heads train identically")
    ax0.legend()
    labels = [m[0] for m in memory]
    xs = np.arange(len(labels))
    mat = [m[4]["materialised logits"] / 2 ** 20 for m in memory]
    fused = [m[4]["linear_cross_entropy"] / 2 ** 20 for m in memory]
    ax1.bar(xs - 0.2, mat, 0.4, label="materialised logits")
    ax1.bar(xs + 0.2, fused, 0.4, label="linear_cross_entropy")
    ax1.set_xticks(xs, labels)
    ax1.set_yscale("log")
    ax1.set_ylabel("temporary memory (MiB)")
    ax1.set_title("memory of one value-and-gradient of the head")
    ax1.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
