"""Contrastive two-tower training across 8 devices: SigLIP and CLIP, ring form.

Synthetic paired data stands in for images and captions: each pair shares a
hidden 12-D latent code, and the two "modalities" see it through different
random nonlinear maps (48-D and 32-D inputs) plus noise. Two small MLP towers
map them to 16-D unit embeddings, trained with

* ``siglip_loss`` (learned ``scale = exp(t)`` and ``bias``, from 10 and -10), and
* ``clip_loss`` (learned ``scale = exp(t)``, from 1/0.07),

each on 8 devices with the batch split over them inside ``jax.shard_map`` and
``gather="ring"``: the other tower's chunks travel around the ring, so no device
ever holds more than a ``[B/8, B/8]`` block of logits. The gradient is taken
from outside the ``shard_map`` (the loss leaves it replicated, ``out_specs=P()``)
and equals the single-device gradient of the global batch. Without 8
accelerators the 8 devices are simulated on the host CPU
(``--xla_force_host_platform_device_count=8``).

Scored on held-out pairs by retrieval recall@1 in both directions: the fraction
of first-tower embeddings whose most similar second-tower embedding is their own
pair (and the reverse), before training (random towers) and after.

A second part trains an embedding net for identity recognition (synthetic
"faces": identities are latent codes, samples add nuisance noise) with
``arcface_loss`` (learned class centres, additive angular margin) and with plain
softmax cross-entropy on a linear head, and scores verification accuracy --
same identity or not, from the cosine of two embeddings -- on identities held
out of training.

    python examples/contrastive.py            # default size (under a minute on a CPU)
    python examples/contrastive.py --small    # the size CI runs
    python examples/contrastive.py --large    # more data, longer training
    python examples/contrastive.py --seed 1   # another data seed

Saves ``contrastive.png`` (held-out pairs of embeddings, both towers, projected
on their first two principal components, with the loss curves) under ``--out``
(default ``examples/out/``).
"""

from __future__ import annotations

import os

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()

import _common  # noqa: E402  (what every example shares: command line, timing, plot file)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

import jaxloss  # noqa: E402

LATENT, DIM_A, DIM_B, EMBEDDING, DEVICES = 12, 48, 32, 16, 8


# ---------------------------------------------------------------------------
# Data and towers
# ---------------------------------------------------------------------------


def make_world(rng):
    """The two random nonlinear views of the shared latent code."""
    return {"wa": rng.normal(size=(LATENT, DIM_A)) / np.sqrt(LATENT),
            "wn": rng.normal(size=(LATENT, DIM_A)) / np.sqrt(LATENT),
            "wb": rng.normal(size=(LATENT, DIM_B)) / np.sqrt(LATENT),
            "vb": rng.normal(size=(DIM_B, DIM_B)) / np.sqrt(DIM_B)}


def make_pairs(rng, world, n):
    z = rng.normal(size=(n, LATENT))
    xa = np.tanh(1.5 * z @ world["wa"]) + 0.15 * rng.normal(size=(n, DIM_A))
    xb = np.sin(z @ world["wb"]) @ world["vb"] + 0.15 * rng.normal(size=(n, DIM_B))
    return xa.astype(np.float32), xb.astype(np.float32)


def init_tower(key, sizes):
    keys = jax.random.split(key, len(sizes) - 1)
    return [{"w": jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a), "b": jnp.zeros(b)}
            for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def tower(layers, x):
    for layer in layers[:-1]:
        x = jax.nn.gelu(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]  # the losses normalise the rows


def init_params(key, loss_name):
    ka, kb = jax.random.split(key)
    params = {"a": init_tower(ka, (DIM_A, 128, EMBEDDING)), "b": init_tower(kb, (DIM_B, 128, EMBEDDING))}
    f32 = jnp.float32  # not weak-typed: the step then keeps one signature and compiles once
    if loss_name == "siglip":
        params.update(log_scale=jnp.asarray(np.log(10.0), f32), bias=jnp.asarray(-10.0, f32))
    else:
        params.update(log_scale=jnp.asarray(np.log(1 / 0.07), f32))
    return params


# ---------------------------------------------------------------------------
# The loss across devices and the training step
# ---------------------------------------------------------------------------


def make_mesh():
    devices = jax.devices() if jax.device_count() >= DEVICES else jax.devices("cpu")
    return Mesh(np.array(devices[:DEVICES]), ("data",))


def sharded_loss(loss_name, mesh, gather="ring"):
    """``loss(params, xa, xb)``: the global-batch loss, computed with the batch
    split over the mesh's ``"data"`` axis; parameters replicated."""

    def local(params, xa, xb):
        ea, eb = tower(params["a"], xa), tower(params["b"], xb)
        scale = jnp.exp(params["log_scale"])
        if loss_name == "siglip":
            return jaxloss.siglip_loss(ea, eb, scale=scale, bias=params["bias"], axis_name="data", gather=gather)
        return jaxloss.clip_loss(ea, eb, scale=scale, axis_name="data", gather=gather)

    return jax.shard_map(local, mesh=mesh, in_specs=(P(), P("data"), P("data")), out_specs=P())


def make_step(loss, optimizer):
    @jax.jit
    def step(params, opt_state, xa, xb):
        value, grads = jax.value_and_grad(loss)(params, xa, xb)  # from outside the shard_map
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step


def fit(loss_name, mesh, xa, xb, *, steps, batch, lr, seed):
    optimizer = optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=0.05))
    # parameters and optimizer state replicated on the mesh from the start, so the
    # step's inputs keep one sharding and it compiles once
    replicated = NamedSharding(mesh, P())
    params = jax.device_put(init_params(jax.random.PRNGKey(seed), loss_name), replicated)
    opt_state = jax.device_put(optimizer.init(params), replicated)
    step = make_step(sharded_loss(loss_name, mesh), optimizer)
    data = NamedSharding(mesh, P("data"))
    rng = np.random.default_rng(seed)
    history = []
    for _ in tqdm(range(steps), desc=loss_name, leave=False, disable=None):
        idx = rng.choice(len(xa), size=batch, replace=False)
        params, opt_state, value = step(params, opt_state, jax.device_put(xa[idx], data),
                                        jax.device_put(xb[idx], data))
        history.append(float(value))
    return params, history


def recall_at_1(ea, eb):
    """(a -> b, b -> a) retrieval recall@1 by cosine similarity."""
    ea = np.asarray(ea, np.float64)
    eb = np.asarray(eb, np.float64)
    sim = (ea / np.linalg.norm(ea, axis=1, keepdims=True)) @ (eb / np.linalg.norm(eb, axis=1, keepdims=True)).T
    own = np.arange(len(ea))
    return float(np.mean(sim.argmax(1) == own)), float(np.mean(sim.argmax(0) == own))


SIZES = {
    "small": {"train": 2048, "test": 256, "steps": 30, "batch": 128, "lr": 1e-2},
    "default": {"train": 16384, "test": 512, "steps": 400, "batch": 512, "lr": 3e-3},
    "large": {"train": 65536, "test": 1024, "steps": 2000, "batch": 1024, "lr": 3e-3},
}


def retrieval_section(args, cfg):
    """Two towers trained with siglip_loss and clip_loss (ring form, 8 devices)."""
    rng = np.random.default_rng(args.seed)
    world = make_world(rng)
    xa, xb = make_pairs(rng, world, cfg["train"])
    ta, tb = make_pairs(rng, world, cfg["test"])
    mesh = make_mesh()
    print(f"{cfg['train']} training and {cfg['test']} held-out pairs, inputs {DIM_A}-D and {DIM_B}-D "
          f"(shared {LATENT}-D latent), {EMBEDDING}-D embeddings; batch {cfg['batch']} split over "
          f"{mesh.devices.size} {mesh.devices.flat[0].platform} devices, gather='ring'")
    results = {}
    for name in ("siglip", "clip"):
        p0 = init_params(jax.random.PRNGKey(args.seed), name)
        before = recall_at_1(tower(p0["a"], ta), tower(p0["b"], tb))
        params, history = fit(name, mesh, xa, xb, steps=cfg["steps"], batch=cfg["batch"], lr=cfg["lr"],
                              seed=args.seed)
        ea, eb = np.asarray(tower(params["a"], ta)), np.asarray(tower(params["b"], tb))
        after = recall_at_1(ea, eb)
        learned = f"scale {float(jnp.exp(params['log_scale'])):.1f}"
        if "bias" in params:
            learned += f", bias {float(params['bias']):.2f}"
        results[name] = {"before": before, "after": after, "history": history, "ea": ea, "eb": eb,
                         "learned": learned}

    print(f"\nheld-out retrieval recall@1 among {cfg['test']} pairs (chance {1 / cfg['test']:.4f}):")
    print(f"  {'loss':14s} {'before a->b':>11s} {'b->a':>7s} {'after a->b':>11s} {'b->a':>7s}   learned")
    for name, r in results.items():
        print(f"  {name + '_loss':14s} {r['before'][0]:11.4f} {r['before'][1]:7.4f} "
              f"{r['after'][0]:11.4f} {r['after'][1]:7.4f}   {r['learned']}")
    return results


# ---------------------------------------------------------------------------
# Identity recognition: arcface_loss against softmax cross-entropy
# ---------------------------------------------------------------------------

IDENTITY = {"small": {"ids": 100, "per_id": 20, "test_ids": 64, "steps": 300},
            "default": {"ids": 400, "per_id": 20, "test_ids": 128, "steps": 1000},
            "large": {"ids": 1600, "per_id": 20, "test_ids": 256, "steps": 3000}}


def make_faces(rng, world, ids, per_id):
    """``ids`` identities, each a random latent code; a sample is its code with a
    little noise plus a strong nuisance code (pose, light), both seen through the
    first view's nonlinear map: a random net keeps the nuisance, training must
    learn to ignore it."""
    n = ids * per_id
    codes = rng.normal(size=(ids, LATENT))
    z = np.repeat(codes, per_id, axis=0) + 0.3 * rng.normal(size=(n, LATENT))
    nuisance = 1.5 * rng.normal(size=(n, LATENT)) @ world["wn"]
    x = np.tanh(z @ world["wa"] + nuisance) + 0.15 * rng.normal(size=(n, DIM_A))
    return x.astype(np.float32), np.repeat(np.arange(ids), per_id).astype(np.int32)


def verification_accuracy(emb, ids, rng, pairs=2000):
    """Same-or-different identity from the cosine of two held-out embeddings: the
    threshold is picked on half of the pairs and scored on the other half."""
    e = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    i, j = rng.integers(0, len(e), size=(2, pairs))
    same = rng.uniform(size=pairs) < 0.5  # half the pairs from one identity
    j = np.where(same, [rng.choice(np.flatnonzero(ids == ids[k])) for k in i], j)
    cos, label = np.sum(e[i] * e[j], axis=1), ids[i] == ids[j]
    half = pairs // 2
    grid = np.sort(cos[:half])
    best = grid[np.argmax([np.mean((cos[:half] > t) == label[:half]) for t in grid])]
    return float(np.mean((cos[half:] > best) == label[half:])), cos[half:], label[half:]


def identity_section(args, size):
    """An embedding net trained on some identities with arcface_loss or softmax
    cross-entropy, scored on identities it never saw (verification)."""
    cfg = IDENTITY[size]
    rng = np.random.default_rng(args.seed + 1)
    world = make_world(rng)
    x, y = make_faces(rng, world, cfg["ids"], cfg["per_id"])
    tx, ty = make_faces(rng, world, cfg["test_ids"], cfg["per_id"])
    print(f"\nidentity recognition: {cfg['ids']} training identities x {cfg['per_id']} samples, "
          f"{cfg['test_ids']} held-out identities")
    heads = {"arcface_loss": lambda e, w, y: jaxloss.arcface_loss(e, w, y, scale=16.0, margin=0.2),
             "sparse_cross_entropy": lambda e, w, y: jaxloss.sparse_cross_entropy(e @ w.T, y)}
    results = {}
    for name, head in heads.items():
        key_t, key_w = jax.random.split(jax.random.PRNGKey(args.seed))
        params = {"net": init_tower(key_t, (DIM_A, 128, EMBEDDING)),
                  "centres": jax.random.normal(key_w, (cfg["ids"], EMBEDDING))}
        before, _, _ = verification_accuracy(np.asarray(tower(params["net"], tx)), ty, np.random.default_rng(0))
        optimizer = optax.adam(3e-3)
        opt_state = optimizer.init(params)

        @jax.jit
        def step(params, opt_state, xb, yb, head=head):
            loss, grads = jax.value_and_grad(lambda p: head(tower(p["net"], xb), p["centres"], yb))(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        for _ in tqdm(range(cfg["steps"]), desc=name, leave=False, disable=None):
            idx = rng.choice(len(x), size=256, replace=False)
            params, opt_state, _ = step(params, opt_state, x[idx], y[idx])
        after, cos, same = verification_accuracy(np.asarray(tower(params["net"], tx)), ty, np.random.default_rng(0))
        results[name] = {"before": before, "after": after, "cos": cos, "same": same}
    print("held-out identity verification accuracy (chance 0.5):")
    for name, r in results.items():
        print(f"  {name:22s} before {r['before']:.3f}  after {r['after']:.3f}")
    return results


def main(argv=None):
    args, cfg, start = _common.setup(__doc__, SIZES, argv, large_help="more data, longer training")
    results = retrieval_section(args, cfg)
    size = "small" if args.small else "large" if args.large else "default"
    identity = identity_section(args, size)
    path = _common.plot_file(args.out, "contrastive.png")
    plot(results, path, identity)
    _common.finish(path, start)


def plot(results, path, identity, pairs=40):
    plt = _common.pyplot()
    fig, axes = plt.subplots(1, len(results) + 2, figsize=(5.2 * (len(results) + 2), 4.8))
    ax = axes[-1]
    for (name, r), color in zip(identity.items(), ("tab:green", "tab:gray")):
        ax.hist(r["cos"][r["same"]], bins=30, alpha=0.5, color=color, label=f"{name}: same identity")
        ax.hist(r["cos"][~r["same"]], bins=30, alpha=0.5, color=color, histtype="step", lw=1.5,
                label=f"{name}: different")
    ax.set_xlabel("cosine of two held-out embeddings")
    ax.set_title("identity verification (held-out identities)")
    ax.legend(fontsize=7)
    axes = axes[:-1]
    for ax, (name, r) in zip(axes, results.items()):
        ea, eb = (e / np.linalg.norm(e, axis=1, keepdims=True) for e in (r["ea"][:pairs], r["eb"][:pairs]))
        both = np.concatenate([ea, eb])
        centred = both - both.mean(axis=0)
        pc = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
        pa, pb = pc[:pairs], pc[pairs:]
        for i in range(pairs):
            ax.plot([pa[i, 0], pb[i, 0]], [pa[i, 1], pb[i, 1]], color="0.75", lw=0.8, zorder=1)
        ax.scatter(pa[:, 0], pa[:, 1], s=14, c="tab:blue", label="tower a", zorder=2)
        ax.scatter(pb[:, 0], pb[:, 1], s=14, c="tab:orange", marker="s", label="tower b", zorder=2)
        ax.set_title(f"{name}_loss: recall@1 a->b {r['after'][0]:.3f}")
        ax.set_aspect("equal", adjustable="datalim")
        ax.legend(loc="lower right", fontsize=8)
    ax = axes[-1]
    for name, r in results.items():
        ax.plot(r["history"], label=f"{name}_loss")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title("training loss (global batch, 8 devices, ring)")
    ax.legend()
    fig.suptitle(f"{pairs} held-out pairs (lines join a pair), unit embeddings, first two principal components")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
