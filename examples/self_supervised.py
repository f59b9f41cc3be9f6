"""Self-supervised two-view training on 8 devices: VICReg vs Barlow Twins vs NT-Xent.

Synthetic data stands in for images: a sample is a class prototype plus its own
variation (an 6-D "content" shared by both views of the sample) and a 18-D "nuisance"
that each augmented view draws afresh (the crop, the colour jitter), all seen through a
fixed random rotation of the 24 input features, so no input axis is clean. A small MLP
encoder (24 -> 64 -> 16) and a projector (16 -> 32) are trained, SimCLR-style, to make the
two views of each sample agree, with

* ``vicreg_loss`` and ``barlow_twins_loss``, their batch statistics (variances,
  covariances, the cross-correlation) global over the 8 devices (``axis_name="data"``
  inside ``jax.shard_map``, the batch split over the devices), and
* ``ntxent_loss`` (SimCLR) on the all-gathered projections (every sample a negative of
  every other, over the global batch).

No labels are used in training. Scored by linear-probe accuracy: a ridge classifier on
the frozen 16-D encoder features, fitted on labelled training samples and tested on
held-out ones, before training (the random encoder) and after. Without 8 accelerators the
8 devices are simulated on the host CPU.

    python examples/self_supervised.py            # default size
    python examples/self_supervised.py --small    # the size CI runs (well under a minute)
    python examples/self_supervised.py --large    # more steps

Saves ``self_supervised.png`` (the loss curves and the probe accuracies) under ``--out``.
"""

from __future__ import annotations

import os

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()

import _common  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import Mesh  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import jaxloss  # noqa: E402

CLASSES, CONTENT, NUISANCE, HIDDEN, FEATURES, PROJ, DEVICES = 10, 6, 18, 64, 16, 32, 8
DIM = CONTENT + NUISANCE
SIZES = {
    "small": {"steps": 150, "batch": 256, "lr": 3e-3},
    "default": {"steps": 400, "batch": 512, "lr": 3e-3},
    "large": {"steps": 1500, "batch": 1024, "lr": 2e-3},
}


def make_world(rng):
    q, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
    return {"protos": 1.2 * rng.normal(size=(CLASSES, CONTENT)), "rotation": q}


def make_samples(rng, world, n):
    labels = rng.integers(0, CLASSES, size=n)
    content = world["protos"][labels] + 0.5 * rng.normal(size=(n, CONTENT))
    return content, labels


def view(rng, world, content):
    """One augmented view: the sample's content, a fresh nuisance, rotated."""
    nuisance = 2.0 * rng.normal(size=(len(content), NUISANCE))
    return (np.concatenate([content, nuisance], axis=1) @ world["rotation"]).astype(np.float32)


def init(key):
    sizes = [(DIM, HIDDEN), (HIDDEN, FEATURES), (FEATURES, PROJ)]
    keys = jax.random.split(key, len(sizes))
    return [{"w": jax.random.normal(k, s) / np.sqrt(s[0]), "b": jnp.zeros(s[1])} for k, s in zip(keys, sizes)]


def encode(params, x):
    h = jnp.tanh(x @ params[0]["w"] + params[0]["b"])
    return h @ params[1]["w"] + params[1]["b"]


def project(params, x):
    return jnp.tanh(encode(params, x)) @ params[2]["w"] + params[2]["b"]


def local_loss(name):
    """The loss of one device's rows; global over the mesh axis ``"data"``."""
    def f(params, xa, xb):
        za, zb = project(params, xa), project(params, xb)
        if name == "vicreg_loss":
            return jaxloss.vicreg_loss(za, zb, axis_name="data")
        if name == "barlow_twins_loss":
            return jaxloss.barlow_twins_loss(za, zb, axis_name="data")
        za, zb = jax.lax.all_gather(za, "data", tiled=True), jax.lax.all_gather(zb, "data", tiled=True)
        labels = jnp.tile(jnp.arange(za.shape[0]), 2)  # view a of sample i and view b of sample i
        value = jaxloss.ntxent_loss(jnp.concatenate([za, zb]), labels, temperature=0.2)
        return jax.lax.pmean(value, "data")  # the same value on every device, typed as replicated
    return f


def fit(name, mesh, world, rng, cfg, key):
    params = init(key)
    opt = optax.adam(cfg["lr"])
    state = opt.init(params)
    loss = jax.shard_map(local_loss(name), mesh=mesh, in_specs=(P(), P("data"), P("data")), out_specs=P())

    @jax.jit
    def step(params, state, xa, xb):
        value, grads = jax.value_and_grad(loss)(params, xa, xb)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    curve = []
    for _ in range(cfg["steps"]):
        content, _ = make_samples(rng, world, cfg["batch"])
        params, state, value = step(params, state, view(rng, world, content), view(rng, world, content))
        curve.append(float(value))
    return params, curve


def probe_accuracy(params, world, train, test, rng):
    """Ridge classifier on standardised frozen encoder features, fitted on ``train``."""
    (ct, yt), (cv, yv) = train, test
    ft, fv = np.asarray(encode(params, view(rng, world, ct))), np.asarray(encode(params, view(rng, world, cv)))
    mu, sd = ft.mean(0), ft.std(0) + 1e-6
    ft, fv = np.c_[(ft - mu) / sd, np.ones(len(ft))], np.c_[(fv - mu) / sd, np.ones(len(fv))]
    w = np.linalg.solve(ft.T @ ft + 1.0 * np.eye(ft.shape[1]), ft.T @ np.eye(CLASSES)[yt])
    return float(np.mean(np.argmax(fv @ w, axis=1) == yv))


def main(argv=None):
    args, cfg, start = _common.setup(__doc__, SIZES, argv, large_help="more steps and a larger batch")
    assert jax.device_count() >= DEVICES, f"needs {DEVICES} devices, got {jax.device_count()}"
    mesh = Mesh(np.array(jax.devices()[:DEVICES]), ("data",))
    rng = np.random.default_rng(args.seed)
    world = make_world(rng)
    train, test = make_samples(rng, world, 2000), make_samples(rng, world, 2000)
    print(f"batch {cfg['batch']} split over {DEVICES} devices ({cfg['batch'] // DEVICES} per device), "
          f"{cfg['steps']} steps; linear probe on {FEATURES}-D encoder features (chance {1 / CLASSES:.2f})")
    print(f"  {'loss':<20} {'probe before':>12} {'probe after':>12} {'final loss':>11}")
    results = {}
    for name in ("vicreg_loss", "barlow_twins_loss", "ntxent_loss"):
        key = jax.random.PRNGKey(args.seed + 1)
        before = probe_accuracy(init(key), world, train, test, np.random.default_rng(args.seed))
        params, curve = fit(name, mesh, world, rng, cfg, key)
        after = probe_accuracy(params, world, train, test, np.random.default_rng(args.seed))
        results[name] = (before, after, curve)
        print(f"  {name:<20} {before:>12.3f} {after:>12.3f} {curve[-1]:>11.4f}")
    plt = _common.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for name, (_, _, curve) in results.items():
        axes[0].plot(np.asarray(curve) / max(abs(curve[0]), 1e-9), label=name)
    axes[0].set(xlabel="step", ylabel="loss / first loss", title="training (8 devices)")
    axes[0].legend()
    names = list(results)
    axes[1].bar(np.arange(3) - 0.2, [results[n][0] for n in names], 0.4, label="random encoder")
    axes[1].bar(np.arange(3) + 0.2, [results[n][1] for n in names], 0.4, label="trained")
    axes[1].set(xticks=range(3), xticklabels=names, ylabel="linear-probe accuracy", ylim=(0, 1))
    axes[1].legend()
    fig.tight_layout()
    path = _common.plot_file(args.out, "self_supervised.png")
    fig.savefig(path, dpi=110)
    _common.finish(path, start)


if __name__ == "__main__":
    main()
