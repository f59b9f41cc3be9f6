"""Probabilistic forecasting with the fair CRPS, and a robust fit that learns its own shape.

Part 1: an ensemble forecaster of a chaotic series. The series is the logistic map
x_{t+1} = 3.9 x_t (1 - x_t), observed with noise; from the last two observations
the model forecasts the observation ``H`` steps ahead, where chaos has turned the
small observation noise into a wide, skewed spread of outcomes. The model is one
MLP that also takes a random vector, so ``M`` draws of the vector give an ensemble
of ``M`` forecasts. Trained with ``crps_ensemble_loss`` (fair), the ensemble learns
the spread of the outcomes; trained with MSE (each member against the target), every
member collapses onto the mean. On held-out data the script reports each one's
CRPS and spread-skill ratio (ensemble spread over the error of the ensemble mean:
1 for a calibrated ensemble, near 0 for an over-confident one).

Part 2: ``general_robust_loss`` learns its shape ``alpha`` (and scale) with a line
fitted to data with 15% gross outliers, by minimising the negative log-likelihood of
Barron's distribution, rho(r / c, alpha) + log c + log Z(alpha), with the partition
function Z computed by quadrature of the loss itself on a grid of ``alpha`` and
interpolated (as Barron does); the gradient of rho in ``alpha`` is jaxloss's. On
the outliers alpha falls towards 0 (Cauchy-like, robust); on the same line without
outliers it rises towards 2 (Gaussian).

    python examples/forecasting.py            # default size (tens of seconds on a CPU)
    python examples/forecasting.py --small    # the size CI runs
    python examples/forecasting.py --large    # more data, members and steps
    python examples/forecasting.py --seed 1   # another data seed

Prints both parts' figures and saves ``forecasting.png`` (the ensembles on a
stretch of held-out series and the robust fit) under ``--out`` (default
``examples/out/``).
"""

from __future__ import annotations

import _common  # what every example shares: command line, timing, plot file (examples/_common.py)
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

import jaxloss

R, NOISE, WINDOW, HORIZON, LATENT = 3.9, 0.04, 2, 2, 2

SIZES = {
    "small": {"n": 800, "members": 8, "steps": 500, "robust_steps": 300, "width": 32},
    "default": {"n": 4000, "members": 16, "steps": 2000, "robust_steps": 600, "width": 64},
    "large": {"n": 20000, "members": 32, "steps": 6000, "robust_steps": 1500, "width": 64},
}

# ---- part 1: ensemble forecasts of a chaotic series --------------------------------------------


def logistic_series(rng, n):
    x = np.empty(n)
    x[0] = rng.uniform(0.2, 0.8)
    for t in range(n - 1):
        x[t + 1] = R * x[t] * (1 - x[t])
    return x, x + NOISE * rng.normal(size=n)


def windows(obs):
    """Inputs: the last WINDOW observations; target: the observation HORIZON steps later."""
    n = len(obs) - WINDOW - HORIZON + 1
    inputs = np.stack([obs[i:i + n] for i in range(WINDOW)], axis=1)
    return inputs.astype(np.float32), obs[WINDOW + HORIZON - 1:].astype(np.float32)


def init(key, width=64):
    sizes = [WINDOW + LATENT, width, width, 1]
    keys = jax.random.split(key, len(sizes) - 1)
    return [{"w": jax.random.normal(k, (a, b)) / jnp.sqrt(a), "b": jnp.zeros(b)}
            for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def members(params, x, key, m):
    """``[N, M]`` forecasts: the MLP on the inputs and M random vectors per example."""
    noise = jax.random.normal(key, (x.shape[0], m, LATENT))
    h = jnp.concatenate([jnp.broadcast_to(2 * x[:, None, :] - 1, (x.shape[0], m, WINDOW)), noise], axis=-1)
    for layer in params[:-1]:
        h = jax.nn.gelu(h @ layer["w"] + layer["b"])
    return 0.5 + (h @ params[-1]["w"] + params[-1]["b"])[..., 0]


LOSSES = {
    "fair CRPS": lambda ens, y: jaxloss.crps_ensemble_loss(ens, y),
    "MSE": lambda ens, y: jaxloss.mse_loss(ens, jnp.broadcast_to(y[:, None], ens.shape)),
}


def train(loss, x, y, m, steps, width, seed, desc):
    optimizer = optax.adam(optax.cosine_decay_schedule(1e-2, steps, alpha=0.02))
    params = init(jax.random.PRNGKey(seed), width)
    state = optimizer.init(params)
    x, y = jnp.asarray(x), jnp.asarray(y)

    def step(carry, key):
        params, state = carry
        value, grads = jax.value_and_grad(lambda p: loss(members(p, x, key, m), y))(params)
        updates, state = optimizer.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), value

    chunk = 100  # steps per compiled call (a lax.scan), so the loop costs one compilation
    run = jax.jit(lambda carry, keys: jax.lax.scan(step, carry, keys))
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), steps).reshape(steps // chunk, chunk, -1)
    carry = (params, state)
    for k in tqdm(keys, desc=desc, leave=False, disable=None):
        carry, _values = run(carry, k)
    return carry[0]


def scores(ens, y):
    """(fair CRPS, spread-skill ratio) of ``[N, M]`` ensembles against ``y``."""
    m = ens.shape[1]
    crps = float(jaxloss.crps_ensemble_loss(ens, y))
    rmse = float(jnp.sqrt(jnp.mean((ens.mean(axis=1) - y) ** 2)))
    spread = float(jnp.sqrt(jnp.mean(ens.var(axis=1, ddof=1)) * (m + 1) / m))  # unbiased, finite-M corrected
    return crps, spread / rmse


# ---- part 2: a robust line whose loss learns its shape ------------------------------------------

_U = (jnp.arange(4096) + 0.5) / 4096 * jnp.pi - jnp.pi / 2  # midpoints on (-pi/2, pi/2)


def log_partition(alpha):
    """log of Z(alpha) = integral of exp(-rho(z, alpha)) dz, with z = tan(u)."""
    z = jnp.tan(_U)
    rho = jaxloss.general_robust_loss(z, jnp.zeros_like(z), alpha=alpha, reduction="none")
    return jnp.log(jnp.sum(jnp.exp(-rho) / jnp.cos(_U) ** 2) * (jnp.pi / _U.size))


# log Z on a grid of alpha in [0, 2], interpolated during the fit (as Barron does with a spline)
_ALPHAS = jnp.linspace(0.0, 2.0, 129)
_LOG_Z = jax.jit(jax.vmap(log_partition))(_ALPHAS)


def line_data(rng, n, outliers):
    x = rng.uniform(-3, 3, size=n).astype(np.float32)
    y = (1.5 * x - 0.5 + 0.3 * rng.normal(size=n)).astype(np.float32)
    bad = rng.uniform(size=n) < outliers
    y[bad] = rng.uniform(-10, 10, size=bad.sum()).astype(np.float32)
    return x, y, bad


def fit_line(x, y, steps, robust):
    """(slope, intercept, alpha, scale): MSE, or Barron's NLL with alpha = 2 sigmoid(a)
    in (0, 2) and scale = softplus(s) learned with the line."""
    w, b, a, s = _fit_line(jnp.asarray(x), jnp.asarray(y), steps, robust)
    return float(w), float(b), float(2 * jax.nn.sigmoid(a)), float(jax.nn.softplus(s) + 1e-3)


@jax.jit(static_argnums=(2, 3))
def _fit_line(x, y, steps, robust):
    params = {"w": jnp.zeros(()), "b": jnp.zeros(()), "a": jnp.zeros(()), "s": jnp.zeros(())}
    optimizer = optax.adam(optax.cosine_decay_schedule(5e-2, steps, alpha=0.05))

    def nll(p):
        pred = p["w"] * x + p["b"]
        if not robust:
            return jaxloss.mse_loss(pred, y)
        alpha, scale = 2 * jax.nn.sigmoid(p["a"]), jax.nn.softplus(p["s"]) + 1e-3
        rho = jaxloss.general_robust_loss(pred, y, alpha=alpha, scale=scale)
        return rho + jnp.log(scale) + jnp.interp(alpha, _ALPHAS, _LOG_Z)

    def step(_, carry):
        p, state = carry
        updates, state = optimizer.update(jax.grad(nll)(p), state, p)
        return optax.apply_updates(p, updates), state

    p, _ = jax.lax.fori_loop(0, steps, step, (params, optimizer.init(params)))
    return p["w"], p["b"], p["a"], p["s"]


def main(argv=None):
    args, cfg, start = _common.setup(__doc__, SIZES, argv, large_help="more data, members and steps")
    rng = np.random.default_rng(args.seed)

    # part 1
    _, obs = logistic_series(rng, cfg["n"] + 1000)
    x_all, y_all = windows(obs)
    x_train, y_train, x_test, y_test = x_all[:cfg["n"]], y_all[:cfg["n"]], x_all[cfg["n"]:], y_all[cfg["n"]:]
    m = cfg["members"]
    print(f"logistic map (r = {R}) observed with noise {NOISE}; forecasts {HORIZON} steps ahead from "
          f"{WINDOW} observations; {len(x_train)} training and {len(x_test)} held-out windows; "
          f"{m} members")
    params = {k: train(loss, x_train, y_train, m, cfg["steps"], cfg["width"], args.seed, k)
              for k, loss in LOSSES.items()}
    test_key = jax.random.PRNGKey(args.seed + 7)
    ensembles = {k: members(p, jnp.asarray(x_test), test_key, m) for k, p in params.items()}
    print(f"\n{'trained with':12s} {'test CRPS':>10s} {'spread-skill':>13s}")
    results = {}
    for k, ens in ensembles.items():
        results[k] = scores(ens, jnp.asarray(y_test))
        print(f"{k:12s} {results[k][0]:10.4f} {results[k][1]:13.3f}")
    print(f"fair CRPS / MSE test CRPS: {results['fair CRPS'][0] / results['MSE'][0]:.3f}")

    # part 2
    n_line = 400
    fits = {}
    for label, frac in (("outliers", 0.15), ("clean", 0.0)):
        x, y, bad = line_data(np.random.default_rng(args.seed + 11), n_line, frac)
        fits[label] = {"data": (x, y, bad), "MSE": fit_line(x, y, cfg["robust_steps"], robust=False),
                       "robust": fit_line(x, y, cfg["robust_steps"], robust=True)}
    print(f"\nline y = 1.5 x - 0.5 + N(0, 0.3^2), {n_line} points:")
    for label, f in fits.items():
        w_mse, w_rob = f["MSE"][0], f["robust"][0]
        print(f"  {label:8s}: learned alpha = {f['robust'][2]:.3f}, scale = {f['robust'][3]:.3f}; "
              f"slope error MSE = {abs(w_mse - 1.5):.4f}, robust = {abs(w_rob - 1.5):.4f}")

    path = _common.plot_file(args.out, "forecasting.png")
    plot(ensembles, y_test, results, fits, path)
    _common.finish(path, start)


def plot(ensembles, y_test, results, fits, path):
    plt = _common.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5), gridspec_kw={"width_ratios": [1.3, 1.3, 1]})
    t = np.arange(60)
    for ax, (k, ens) in zip(axes[:2], ensembles.items()):
        ens = np.asarray(ens)[:40]
        t = t[:40]
        lo, hi = np.quantile(ens, [0.1, 0.9], axis=1)
        ax.fill_between(t, lo, hi, color="tab:blue", alpha=0.25, label="members' 10-90% range")
        ax.plot(np.repeat(t, ens.shape[1]), ens.ravel(), ".", color="tab:blue", ms=2, alpha=0.6)
        ax.plot(t, ens.mean(axis=1), color="tab:blue", lw=1.5, label="ensemble mean")
        ax.plot(t, y_test[:40], "k.", ms=7, label="observed")
        crps, ss = results[k]
        ax.set_title(f"trained with {k}: CRPS {crps:.3f}, spread-skill {ss:.2f}")
        ax.set_xlabel(f"held-out time step (forecast {HORIZON} steps ahead)")
        ax.set_ylim(-0.1, 1.1)
        ax.legend(fontsize=8, loc="lower left")
    ax = axes[2]
    x, y, bad = fits["outliers"]["data"]
    ax.scatter(x[~bad], y[~bad], s=5, c="0.6", label="data")
    ax.scatter(x[bad], y[bad], s=8, c="crimson", marker="x", label="outliers (15%)")
    grid = np.linspace(-3, 3, 2)
    for k, style in (("MSE", "--"), ("robust", "-")):
        w, b = fits["outliers"][k][:2]
        label = "MSE" if k == "MSE" else f"general_robust_loss, learned alpha {fits['outliers'][k][2]:.2f}"
        ax.plot(grid, w * grid + b, style, lw=2, label=label)
    ax.plot(grid, 1.5 * grid - 0.5, "k:", lw=1, label="true line")
    ax.set_ylim(-11, 11)
    ax.set_title("robust fit: alpha learned with the line")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
