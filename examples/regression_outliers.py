"""Robust regression: MSE vs MAE vs Huber vs log-cosh on data with 5% outliers.

The same small MLP is fitted to noisy samples of a 1-D curve in which 5% of the
training targets are gross errors (a faulty sensor adds +6 to +12). Each model is
then scored on *clean* test data (the same curve and noise, no outliers).

MSE's gradient grows with the residual, so the few outliers pull the whole fit
up; MAE, Huber and log-cosh have bounded gradients (``sign(r)``,
``clip(r, -delta, delta)``, ``tanh(r)``) and ignore them.

    python examples/regression_outliers.py            # default size (seconds on a CPU)
    python examples/regression_outliers.py --small    # the size CI runs
    python examples/regression_outliers.py --large    # 10x the data, 3x the steps
    python examples/regression_outliers.py --seed 1   # another data seed

Prints the clean test error of each loss and saves ``regression_outliers.png``
(the training data and the four fits) under ``--out`` (default ``examples/out/``).
"""

from __future__ import annotations

import _common  # what every example shares: command line, timing, plot file (examples/_common.py)
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

import jaxloss

NOISE = 0.2


def truth(x):
    return np.sin(2.0 * x) + 0.3 * x


def make_data(rng, n, outlier_fraction=0.05):
    x = rng.uniform(-3.0, 3.0, size=n).astype(np.float32)
    y = (truth(x) + NOISE * rng.normal(size=n)).astype(np.float32)
    bad = rng.choice(n, size=int(round(outlier_fraction * n)), replace=False)
    y[bad] += rng.uniform(6.0, 12.0, size=bad.size).astype(np.float32)
    x_test = rng.uniform(-3.0, 3.0, size=4000).astype(np.float32)
    y_test = (truth(x_test) + NOISE * rng.normal(size=4000)).astype(np.float32)
    return x[:, None], y, bad, x_test[:, None], y_test


def init(key, width=64):
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "w1": jax.random.normal(k1, (1, width)),
        "b1": jax.random.uniform(k2, (width,), minval=-3.0, maxval=3.0),
        "w2": jax.random.normal(k3, (width, 1)) / jnp.sqrt(width),
        "b2": jnp.zeros(1),
    }


def apply(params, x):
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return (h @ params["w2"] + params["b2"])[:, 0]  # (N,), the targets' shape


def fit(loss, x, y, *, steps, seed, desc):
    """Full-batch Adam with a cosine schedule, via jaxloss.make_train_step."""
    optimizer = optax.adam(optax.cosine_decay_schedule(2e-2, steps, alpha=0.05))
    params = init(jax.random.PRNGKey(seed))
    opt_state = optimizer.init(params)
    step = jaxloss.make_train_step(apply, loss, optimizer)
    x, y = jnp.asarray(x), jnp.asarray(y)
    for _ in tqdm(range(steps), desc=desc, leave=False, disable=None):
        params, opt_state, _value = step(params, opt_state, x, y)
    return params


LOSSES = {
    "MSE": jaxloss.MSELoss(),
    "MAE": jaxloss.MAELoss(),
    "Huber": jaxloss.HuberLoss(delta=1.0),
    "log-cosh": jaxloss.LogCoshLoss(),
}

SIZES = {
    "small": {"n": 400, "steps": 1500},
    "default": {"n": 1000, "steps": 2500},
    "large": {"n": 10000, "steps": 8000},
}


def main(argv=None):
    args, cfg, start = _common.setup(__doc__, SIZES, argv, large_help="10x the data, 3x the steps")

    rng = np.random.default_rng(args.seed)
    x, y, bad, x_test, y_test = make_data(rng, cfg["n"])
    print(f"{len(x)} training points, {bad.size} of them ({bad.size / len(x):.0%}) outliers "
          f"(+6 to +12); {len(x_test)} clean test points; noise std {NOISE}")

    params = {k: fit(crit, x, y, steps=cfg["steps"], seed=args.seed, desc=k) for k, crit in LOSSES.items()}
    errors = {k: float(jaxloss.mse_loss(apply(p, x_test), y_test)) for k, p in params.items()}
    bias = {k: float(jnp.mean(apply(p, x_test) - y_test)) for k, p in params.items()}

    print(f"\n{'loss':10s} {'clean test MSE':>15s} {'mean error':>11s}")
    for k in LOSSES:
        print(f"{k:10s} {errors[k]:15.4f} {bias[k]:+11.4f}")
    print(f"(noise floor: {NOISE}^2 = {NOISE ** 2:.4f})")
    for k in ("MAE", "Huber", "log-cosh"):
        print(f"{k} / MSE clean test error: {errors[k] / errors['MSE']:.3f}")

    path = _common.plot_file(args.out, "regression_outliers.png")
    plot(x, y, bad, params, errors, path)
    _common.finish(path, start)


def plot(x, y, bad, params, errors, path):
    plt = _common.pyplot()

    good = np.ones(len(x), bool)
    good[bad] = False
    grid = np.linspace(-3, 3, 400, dtype=np.float32)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1, 1.6]})
    for ax, zoom in zip(axes, (False, True)):
        ax.scatter(x[good, 0], y[good], s=5, c="0.7", label="training data")
        ax.scatter(x[bad, 0], y[bad], s=12, c="crimson", marker="x", label="outliers (5%)")
        ax.plot(grid, truth(grid), "k--", lw=1.5, label="true curve")
        for k, p in params.items():
            ax.plot(grid, apply(p, grid[:, None]), lw=2, label=f"{k} (clean test MSE {errors[k]:.3f})")
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        if zoom:
            ax.set_ylim(-2.2, 2.5)
            ax.set_title("zoom on the clean data")
            ax.legend(fontsize=8, loc="lower right")
        else:
            ax.set_title("all training data, 5% outliers")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
