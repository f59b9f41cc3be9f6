"""RL with a verifiable reward: a tiny policy learns a counting task with GRPO.

Prompt: a token ``p``. Completion: ``L`` tokens; the reward is the fraction of
positions ``t`` whose token is ``(p + t) mod V`` (checked exactly, no reward
model). Each step samples a group of ``G`` completions per prompt from the
current policy, normalises the rewards within each group (the advantages:
``(r - mean) / (std + 1e-4)``), and takes a few optimiser steps on
``jaxloss.grpo_loss`` (TRL's default ``loss_type="dapo"``, clip-higher bounds,
a k3 KL penalty to a frozen reference copy of the initial policy). The
per-token log-probabilities and entropies come from
``jaxloss.linear_token_logprobs`` at the sampling temperature, streamed from the
hidden states and the output embedding (no ``[B, T, V]`` logits). The mean reward
is printed before and after, and the reward curve is drawn.

    python examples/rl.py --small    # the size CI runs (well under a minute on a CPU)
    python examples/rl.py            # longer
    python examples/rl.py --large    # a larger vocabulary, longer completions
    python examples/rl.py --out DIR --seed 1   # where the plot goes (default examples/out/), another seed
"""

from __future__ import annotations

import _common  # what every example shares: command line, timing, plot file (examples/_common.py)
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

import jaxloss

SIZES = {
    "small": {"vocab": 16, "dim": 32, "length": 6, "prompts": 16, "group": 8, "steps": 40, "inner": 2},
    "default": {"vocab": 64, "dim": 64, "length": 12, "prompts": 32, "group": 8, "steps": 150, "inner": 2},
    "large": {"vocab": 256, "dim": 128, "length": 24, "prompts": 64, "group": 16, "steps": 400, "inner": 4},
}
TEMPERATURE = 0.9


def init(key, vocab, dim, length):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    return {"emb": jax.random.normal(k1, (vocab, dim)) * 0.5, "pos": jax.random.normal(k2, (length, dim)) * 0.5,
            "mix": jax.random.normal(k3, (dim, dim)) / np.sqrt(dim),
            "head": jax.random.normal(k4, (vocab, dim)) / np.sqrt(dim)}


def hidden(params, prompts, length):
    """[B, L, D]: each position sees the prompt token and its own index."""
    x = params["emb"][prompts][:, None, :] + params["pos"][None, :length, :]
    return jnp.tanh(jnp.tanh(x) @ params["mix"])


def reward(prompts, completions, vocab):
    target = (prompts[:, None] + jnp.arange(completions.shape[1])[None, :]) % vocab
    return jnp.mean(completions == target, axis=1)


def main(argv=None):
    args, cfg, start = _common.setup(__doc__, SIZES, argv, large_help="a larger vocabulary, longer completions")
    v, L, G = cfg["vocab"], cfg["length"], cfg["group"]
    key = jax.random.PRNGKey(args.seed)
    key, k0 = jax.random.split(key)
    params = init(k0, v, cfg["dim"], L)
    reference = jax.tree_util.tree_map(jax.lax.stop_gradient, params)  # frozen copy of the initial policy
    opt = optax.adam(3e-2)
    state = opt.init(params)

    def token_stats(p, prompts, completions):
        return jaxloss.linear_token_logprobs(hidden(p, prompts, L), p["head"], completions, temperature=TEMPERATURE,
                                             return_entropy=True)

    @jax.jit
    def sample(p, key):
        kp, kc = jax.random.split(key)
        prompts = jnp.repeat(jax.random.randint(kp, (cfg["prompts"],), 0, v), G)  # G completions per prompt
        logits = hidden(p, prompts, L) @ p["head"].T / TEMPERATURE
        completions = jax.random.categorical(kc, logits)
        r = reward(prompts, completions, v)
        grouped = r.reshape(-1, G)
        adv = ((grouped - grouped.mean(1, keepdims=True)) / (grouped.std(1, keepdims=True) + 1e-4)).reshape(-1)
        old_logps, _ = token_stats(p, prompts, completions)
        ref_logps, _ = token_stats(reference, prompts, completions)
        return prompts, completions, r, adv, old_logps, ref_logps

    @jax.jit
    def update(p, state, batch):
        prompts, completions, _, adv, old_logps, ref_logps = batch

        def loss_fn(p):
            logps, entropy = token_stats(p, prompts, completions)
            loss = jaxloss.grpo_loss(logps, old_logps, ref_logps, adv, beta=0.04, epsilon_high=0.28)
            return loss, jnp.mean(entropy)

        (value, entropy), grads = jax.value_and_grad(loss_fn, has_aux=True)(p)
        updates, state = opt.update(grads, state)
        return optax.apply_updates(p, updates), state, value, entropy

    @jax.jit
    def mean_reward(p, key):  # greedy-free: the mean reward of fresh samples at the sampling temperature
        return jnp.mean(sample(p, key)[2])

    eval_key = jax.random.PRNGKey(args.seed + 1000)
    before = float(mean_reward(params, eval_key))
    curve, entropies = [], []
    for _ in tqdm(range(cfg["steps"]), desc="GRPO", leave=False):
        key, ks = jax.random.split(key)
        batch = sample(params, ks)
        curve.append(float(jnp.mean(batch[2])))
        for _ in range(cfg["inner"]):  # several updates per sampled batch: the ratio leaves 1 and clipping acts
            params, state, _, entropy = update(params, state, batch)
        entropies.append(float(entropy))
    after = float(mean_reward(params, eval_key))
    print(f"mean reward: before {before:.3f}, after {after:.3f} (chance {1 / v:.3f})")
    print(f"mean token entropy: {entropies[0]:.3f} -> {entropies[-1]:.3f} nats")

    path = _common.plot_file(args.out, "rl.png")
    plt = _common.pyplot()
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    ax[0].plot(curve)
    ax[0].axhline(1 / v, color="k", ls=":", label="chance")
    ax[0].set(title="GRPO: mean reward of the sampled groups", xlabel="step", ylim=(0, 1.02))
    ax[0].legend()
    ax[1].plot(entropies)
    ax[1].set(title="mean token entropy (nats)", xlabel="step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _common.finish(path, start)


if __name__ == "__main__":
    main()
