"""jaxloss quickstart: the seed tutorial's three tasks, trained with optax.

1. Regression with 5% outliers: the same MLP trained with MSE, MAE and Huber;
   each model's error is measured on *clean* test data (no outliers).
2. Binary classification with BCE-with-logits.
3. Multi-class classification with (sparse) cross-entropy.

Every model is trained with ``jaxloss.make_train_step(apply_fn, loss, optimizer)``,
which returns a jitted ``step(params, opt_state, x, y) -> (params, opt_state, loss)``.

    python examples/quickstart.py            # default size, a few seconds on a CPU
    python examples/quickstart.py --small    # the size CI runs
    python examples/quickstart.py --large    # 4x the data and the training steps
    python examples/quickstart.py --seed 1   # another data seed

Prints what it measured and saves ``quickstart_training.png`` (training curves)
under ``--out`` (default ``examples/out/``).
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
# A two-hidden-layer MLP whose parameters are a plain pytree (no framework needed)
# ---------------------------------------------------------------------------


def mlp_init(key, sizes):
    params = []
    for k, (n_in, n_out) in zip(jax.random.split(key, len(sizes) - 1), zip(sizes[:-1], sizes[1:])):
        params.append({"w": jax.random.normal(k, (n_in, n_out)) * jnp.sqrt(2.0 / n_in), "b": jnp.zeros(n_out)})
    return params


def mlp_apply(params, x):
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def scalar_head(params, x):
    """One output per example: shape (N,), matching targets of shape (N,).

    jaxloss never broadcasts (N, 1) against (N,) (it raises ValueError instead
    of silently building an (N, N) loss), so the model output is squeezed here.
    """
    return mlp_apply(params, x)[:, 0]


def train(apply_fn, loss, x, y, *, out_dim, epochs, batch, lr, seed, desc):
    """Adam on minibatches; returns the trained parameters and the loss per epoch."""
    params = mlp_init(jax.random.PRNGKey(seed), [x.shape[1], 32, 32, out_dim])
    optimizer = optax.adam(lr)
    opt_state = optimizer.init(params)
    step = jaxloss.make_train_step(apply_fn, loss, optimizer)
    rng = np.random.default_rng(seed)
    n_batches = len(x) // batch
    history = []
    for _ in tqdm(range(epochs), desc=desc, leave=False, disable=None):
        order = rng.permutation(len(x))
        total = 0.0
        for b in range(n_batches):
            idx = order[b * batch:(b + 1) * batch]
            params, opt_state, value = step(params, opt_state, x[idx], y[idx])
            total += value
        history.append(float(total) / n_batches)
    return params, history


# ---------------------------------------------------------------------------
# The three tasks
# ---------------------------------------------------------------------------


def regression_data(rng, n, dim=10, outlier_fraction=0.05):
    """y = f(x) + N(0, 0.3^2); a fraction of the *training* targets is corrupted by
    a large one-sided error (a broken sensor), the test targets are clean."""
    w = rng.normal(size=dim) / np.sqrt(dim)

    def f(x):
        return 2.0 * np.tanh(x @ w) + 0.5 * x[:, 0]

    x_train = rng.normal(size=(n, dim)).astype(np.float32)
    y_train = (f(x_train) + 0.3 * rng.normal(size=n)).astype(np.float32)
    bad = rng.choice(n, size=int(round(outlier_fraction * n)), replace=False)
    y_train[bad] += rng.uniform(10.0, 20.0, size=bad.size).astype(np.float32)
    x_test = rng.normal(size=(2000, dim)).astype(np.float32)
    y_test = (f(x_test) + 0.3 * rng.normal(size=2000)).astype(np.float32)
    return x_train, y_train, x_test, y_test, bad.size


def run_regression(cfg, rng):
    x, y, x_test, y_test, n_bad = regression_data(rng, cfg["n"])
    print(f"\n[1] Regression, {len(x)} training points of which {n_bad} "
          f"({n_bad / len(x):.0%}) are outliers; clean test set of {len(x_test)}")
    losses = {
        "MSE": jaxloss.MSELoss(),
        "MAE": jaxloss.MAELoss(),
        "Huber": jaxloss.HuberLoss(delta=1.0),
    }
    results, curves = {}, {}
    for name, crit in losses.items():
        params, curves[name] = train(scalar_head, crit, x, y, out_dim=1, epochs=cfg["epochs"],
                                     batch=32, lr=3e-3, seed=0, desc=f"regression/{name}")
        pred = scalar_head(params, x_test)
        results[name] = float(jaxloss.mse_loss(pred, y_test))
    for name, err in results.items():
        print(f"  trained with {name:5s}  clean test MSE = {err:.4f}")
    print("  (noise floor: 0.3^2 = 0.09)")
    return results, curves


def run_binary(cfg, rng):
    dim = 10
    x = rng.normal(size=(cfg["n"], dim)).astype(np.float32)
    y = (x.sum(axis=1) > 0).astype(np.float32)
    x_test = rng.normal(size=(2000, dim)).astype(np.float32)
    y_test = (x_test.sum(axis=1) > 0).astype(np.float32)
    print(f"\n[2] Binary classification, {len(x)} training points, labels = [sum(x) > 0]")
    params, curve = train(scalar_head, jaxloss.BinaryCrossEntropyWithLogits(), x, y, out_dim=1,
                          epochs=cfg["epochs"], batch=32, lr=3e-3, seed=0, desc="binary/BCE")
    logits = scalar_head(params, x_test)
    acc = float(jnp.mean((logits > 0) == (y_test > 0.5)))
    test_loss = float(jaxloss.binary_cross_entropy_with_logits(logits, y_test))
    print(f"  trained with BCE-with-logits  test loss = {test_loss:.4f}  test accuracy = {acc:.4f}")
    return {"accuracy": acc, "loss": test_loss}, {"BCE-with-logits": curve}


def run_multiclass(cfg, rng):
    dim, classes = 10, 3
    w = rng.normal(size=(dim, classes))
    x = rng.normal(size=(cfg["n"], dim)).astype(np.float32)
    y = np.argmax(x @ w, axis=1).astype(np.int32)
    x_test = rng.normal(size=(2000, dim)).astype(np.float32)
    y_test = np.argmax(x_test @ w, axis=1).astype(np.int32)
    print(f"\n[3] Multi-class classification, {classes} classes, {len(x)} training points, "
          f"class counts {np.bincount(y, minlength=classes).tolist()}")
    params, curve = train(mlp_apply, jaxloss.SparseCrossEntropy(), x, y, out_dim=classes,
                          epochs=cfg["epochs"], batch=32, lr=3e-3, seed=0, desc="multiclass/CE")
    logits = mlp_apply(params, x_test)
    acc = float(jnp.mean(jnp.argmax(logits, axis=-1) == y_test))
    test_loss = float(jaxloss.sparse_cross_entropy(logits, y_test))
    print(f"  trained with sparse cross-entropy  test loss = {test_loss:.4f}  test accuracy = {acc:.4f}")
    return {"accuracy": acc, "loss": test_loss}, {"cross-entropy": curve}


def plot(curves, path):
    plt = _common.pyplot()

    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.4))
    for ax, (title, task_curves) in zip(np.atleast_1d(axes), curves.items()):
        for name, curve in task_curves.items():
            ax.plot(np.arange(1, len(curve) + 1), curve, label=name)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss (its own scale)")
        ax.set_yscale("log")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


SIZES = {
    "small": {"n": 1000, "epochs": 10},
    "default": {"n": 1000, "epochs": 20},
    "large": {"n": 4000, "epochs": 80},
}


def main(argv=None):
    args, cfg, start = _common.setup(
        __doc__, SIZES, argv,
        small_help="the CI size (fewest epochs)", large_help="4x the data and the training steps",
        out_help="directory for the PNG plots (default: examples/out/)", seed_help="data seed (default 0)")

    rng = np.random.default_rng(args.seed)
    regression, reg_curves = run_regression(cfg, rng)
    binary, bin_curves = run_binary(cfg, rng)
    curves = {"regression (5% outliers)": reg_curves, "binary": bin_curves}
    multiclass, mc_curves = run_multiclass(cfg, rng)
    curves["multi-class"] = mc_curves

    path = _common.plot_file(args.out, "quickstart_training.png")
    plot(curves, path)

    best = min(regression, key=regression.get)
    print("\nSummary")
    print("  regression clean test MSE: " + ", ".join(f"{k} {v:.4f}" for k, v in regression.items())
          + f"  -> best: {best}")
    print(f"  Huber / MSE clean test error ratio: {regression['Huber'] / regression['MSE']:.3f}")
    print(f"  binary test accuracy: {binary['accuracy']:.4f}")
    print(f"  multi-class test accuracy: {multiclass['accuracy']:.4f}")
    _common.finish(path, start, indent="  ")


if __name__ == "__main__":
    main()
