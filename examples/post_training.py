"""Post-training a tiny language model: distillation (forward KL vs JSD), then DPO.

A teacher language model is trained on synthetic text from a random Markov chain
with ``jaxloss.linear_cross_entropy``; two smaller students are distilled from it
with ``jaxloss.linear_distillation_loss`` (forward KL and the generalised JSD),
both heads streamed over the vocabulary. Then the forward-KL student is tuned
with ``jaxloss.dpo_loss`` on synthetic preference pairs (chosen: a continuation
from the chain; rejected: a uniformly random one), its sequence log-probabilities
from ``jaxloss.linear_sequence_logprobs``: the preferred completion's log-prob
margin over the frozen reference rises.

    python examples/post_training.py --small    # the size CI runs
    python examples/post_training.py            # longer
"""

from __future__ import annotations

import _common  # what every example shares: command line, timing, plot file (examples/_common.py)
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxloss

SIZES = {
    "small": {"vocab": 64, "teacher_dim": 48, "student_dim": 16, "batch": 16, "length": 16, "steps": 60},
    "default": {"vocab": 256, "teacher_dim": 96, "student_dim": 32, "batch": 32, "length": 32, "steps": 300},
    "large": {"vocab": 1024, "teacher_dim": 192, "student_dim": 64, "batch": 64, "length": 64, "steps": 600},
}


def make_chain(rng, vocab):
    """A sparse random transition matrix: each token has ~4 likely successors."""
    logits = rng.normal(size=(vocab, vocab)) * 0.5
    for i in range(vocab):
        logits[i, rng.choice(vocab, 4, replace=False)] += 4.0
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def sample(rng, chain, batch, length, start=None):
    vocab = chain.shape[0]
    x = np.zeros((batch, length), np.int32)
    x[:, 0] = rng.integers(0, vocab, size=batch) if start is None else start
    cdf = np.cumsum(chain, axis=1)
    for t in range(1, length):
        u = rng.uniform(size=(batch, 1))
        x[:, t] = np.minimum((u > cdf[x[:, t - 1]]).sum(1), vocab - 1)
    return x


def init(key, vocab, dim):
    k1, k2, k3 = jax.random.split(key, 3)
    return {"emb": jax.random.normal(k1, (vocab, dim)) * 0.5,
            "mix": jax.random.normal(k2, (dim, dim)) / np.sqrt(dim),
            "head": jax.random.normal(k3, (vocab, dim)) / np.sqrt(dim)}


def hidden(params, tokens):
    """A bigram-style network: the next token depends on the current one."""
    return jnp.tanh(params["emb"][tokens] @ params["mix"])


def next_token_ce(params, x):
    return jaxloss.linear_cross_entropy(hidden(params, x[:, :-1]), params["head"], x[:, 1:])


def train(params, loss_fn, batches, lr=3e-2, eval_fn=None):
    opt = optax.adam(lr)
    state = opt.init(params)

    @jax.jit
    def step(params, state, batch):
        value, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, state = opt.update(grads, state)
        return optax.apply_updates(params, updates), state, value

    eval_fn = None if eval_fn is None else jax.jit(eval_fn)
    curve, evals = [], []
    for batch in batches:
        params, state, value = step(params, state, batch)
        curve.append(float(value))
        if eval_fn is not None:
            evals.append(float(eval_fn(params)))
    return params, curve, evals


def main(argv=None):
    args, cfg, start = _common.setup(__doc__, SIZES, argv, large_help="a larger vocabulary, longer training")
    rng = np.random.default_rng(args.seed)
    key = jax.random.PRNGKey(args.seed)
    v, steps = cfg["vocab"], cfg["steps"]
    chain = make_chain(rng, v)
    data = [jnp.asarray(sample(rng, chain, cfg["batch"], cfg["length"])) for _ in range(steps)]
    held_out = jnp.asarray(sample(rng, chain, 4 * cfg["batch"], cfg["length"]))

    # 1. the teacher
    teacher, _, _ = train(init(key, v, cfg["teacher_dim"]), next_token_ce, data)
    teacher_ce = float(jax.jit(next_token_ce)(teacher, held_out))
    print(f"teacher held-out cross-entropy: {teacher_ce:.3f}")

    # 2. distillation: both heads streamed over the vocabulary, the teacher frozen
    def distill_loss(kind):
        def f(params, x):
            ht = jax.lax.stop_gradient(hidden(teacher, x[:, :-1]))
            return jaxloss.linear_distillation_loss(hidden(params, x[:, :-1]), params["head"], ht,
                                                    jax.lax.stop_gradient(teacher["head"]), divergence=kind,
                                                    temperature=1.0, chunk_size=max(16, v // 4))
        return f

    student0 = init(jax.random.PRNGKey(args.seed + 1), v, cfg["student_dim"])
    ce0 = float(jax.jit(next_token_ce)(student0, held_out))
    curves, students = {}, {}
    for kind in ("forward", "jsd"):
        students[kind], curves[kind], evals = train(student0, distill_loss(kind), data,
                                                    eval_fn=lambda p: next_token_ce(p, held_out))
        curves[kind + " CE"] = evals
        print(f"distillation ({kind}): loss {curves[kind][0]:.3f} -> {curves[kind][-1]:.3f}; "
              f"student held-out cross-entropy {ce0:.3f} -> {evals[-1]:.3f}")

    # 3. DPO on preference pairs, from the forward-KL student; the reference is its frozen copy
    reference = students["forward"]
    prompts = rng.integers(0, v, size=(steps, cfg["batch"]))
    chosen = [jnp.asarray(sample(rng, chain, cfg["batch"], cfg["length"], start=p)) for p in prompts]
    uniform = np.full((v, v), 1.0 / v)
    rejected = [jnp.asarray(sample(rng, uniform, cfg["batch"], cfg["length"], start=p)) for p in prompts]
    mask = jnp.ones((cfg["batch"], cfg["length"] - 1), bool).at[:, :1].set(False)  # completion after the prompt

    def logps(params, x):
        return jaxloss.linear_sequence_logprobs(hidden(params, x[:, :-1]), params["head"], x[:, 1:], mask=mask)

    def margin(params, pair):
        c, r = pair
        return (logps(params, c) - logps(params, r)) - (logps(reference, c) - logps(reference, r))

    def dpo(params, pair):
        c, r = pair
        return jaxloss.dpo_loss(logps(params, c), logps(params, r), jax.lax.stop_gradient(logps(reference, c)),
                                jax.lax.stop_gradient(logps(reference, r)), beta=0.1)

    test_pair = (chosen[0], rejected[0])
    _, dpo_curve, margins = train(reference, dpo, list(zip(chosen, rejected)), lr=1e-2,
                                  eval_fn=lambda p: jnp.mean(margin(p, test_pair)))
    print(f"DPO: loss {dpo_curve[0]:.3f} -> {dpo_curve[-1]:.3f}; chosen-over-rejected log-prob margin "
          f"{margins[0]:.2f} -> {margins[-1]:.2f}")

    path = _common.plot_file(args.out, "post_training.png")
    plt = _common.pyplot()
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    for kind in ("forward", "jsd"):
        ax[0].plot(curves[kind], label=f"{kind} loss")
        ax[1].plot(curves[kind + " CE"], label=f"{kind}")
    ax[0].set(title="distillation loss", xlabel="step")
    ax[1].axhline(teacher_ce, color="k", ls=":", label="teacher")
    ax[1].set(title="student held-out cross-entropy", xlabel="step")
    ax[2].plot(margins)
    ax[2].set(title="DPO: log-prob margin over the reference", xlabel="step")
    for a in ax[:2]:
        a.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _common.finish(path, start)


if __name__ == "__main__":
    main()
