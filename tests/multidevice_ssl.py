"""The self-supervised losses with ``axis_name`` on 8 host CPU devices (run in a separate process).

    python tests/multidevice_ssl.py   (sets XLA_FLAGS=--xla_force_host_platform_device_count=8)

tests/test_self_supervised.py runs it (the flag must be set before JAX starts). For each
loss, inside ``jax.shard_map`` with the batch split over 8 devices (float64):

1. ``"mean"`` with ``where`` and ``weights``, ``"sum"`` and ``"sum_and_weight"`` equal, on
   every device, the single-device values of the global batch; ``"none"`` gives each
   device its own rows of the single-device result;
2. ``jax.grad`` of the shard-mapped mean (``out_specs=P()``), taken from outside, equals
   the single-device gradient;
3. ``dino_center_update`` gives the single-device centre on every device.

Prints one line per check and exits 1 if any failed.
"""

from __future__ import annotations

import functools

import _multidevice as md  # first: 8 host devices before JAX starts

# isort: split
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import jaxloss  # noqa: E402

check = md.check
close = functools.partial(md.close, rtol=1e-9, atol=1e-11)

jax.config.update("jax_enable_x64", True)
MESH = Mesh(np.array(jax.devices()), ("data",))






rng = np.random.default_rng(0)
N = 16
WHERE = jnp.asarray(rng.uniform(size=N) < 0.75)
WEIGHTS = jnp.asarray(rng.uniform(0.5, 2.0, size=N))
EMB = jnp.asarray(0.6 * rng.normal(size=(N, 5)))
EMB2 = EMB + 0.4 * jnp.asarray(rng.normal(size=(N, 5)))
ROWS, VIEWS = P("data"), P(None, "data")

# name: (inputs, the batch spec of each input (None: replicated), options)
CASES = {
    "vicreg_loss": ((EMB, EMB2), (ROWS, ROWS), {"cov_coeff": 2.0}),
    "barlow_twins_loss": ((EMB, EMB2), (ROWS, ROWS), {"lambda_param": 0.05}),
    "negative_cosine_loss": ((EMB, EMB2), (ROWS, ROWS), {}),
    "koleo_loss": ((EMB,), (ROWS,), {}),
    "dino_loss": ((jnp.asarray(rng.normal(size=(3, N, 6))), jnp.asarray(rng.normal(size=(2, N, 6))),
                   jnp.asarray(0.1 * rng.normal(size=6))), (VIEWS, VIEWS, P()), {"student_temp": 0.2}),
    "swav_loss": ((jnp.asarray(np.tanh(rng.normal(size=(3, N, 5)))),), (VIEWS,), {"high_resolution_views": 2}),
}


def one_device(fn, inputs, opts):
    out = {
        "mean": fn(*inputs, **opts, where=WHERE, weights=WEIGHTS),
        "sum": fn(*inputs, **opts, reduction="sum"),
        "sum_and_weight": fn(*inputs, **opts, where=WHERE, reduction="sum_and_weight"),
        "none": fn(*inputs, **opts, reduction="none"),
    }
    grad = jax.grad(lambda x: fn(x, *inputs[1:], **opts, where=WHERE))(inputs[0])
    return out, grad


def sharded(fn, inputs, specs, opts):
    def local(inputs, where, weights):
        return {
            "mean": fn(*inputs, **opts, where=where, weights=weights, axis_name="data"),
            "sum": fn(*inputs, **opts, reduction="sum", axis_name="data"),
            "sum_and_weight": fn(*inputs, **opts, where=where, reduction="sum_and_weight", axis_name="data"),
            "none": fn(*inputs, **opts, reduction="none", axis_name="data"),
        }

    out_specs = {"mean": P(), "sum": P(), "sum_and_weight": (P(), P()), "none": P("data")}
    mapped = jax.jit(jax.shard_map(local, mesh=MESH, in_specs=(specs, ROWS, ROWS), out_specs=out_specs))
    out = mapped(inputs, WHERE, WEIGHTS)

    def mean(x):
        f = jax.shard_map(lambda xs, w: fn(*xs, **opts, where=w, axis_name="data"), mesh=MESH,
                          in_specs=(specs, ROWS), out_specs=P())
        return f((x, *inputs[1:]), WHERE)

    return out, jax.jit(jax.grad(mean))(inputs[0])


for _name, (_inputs, _specs, _opts) in CASES.items():
    @check(f"shard_map(axis_name) == one device, values and gradient: {_name}")
    def _(name=_name, inputs=_inputs, specs=_specs, opts=_opts):
        fn = getattr(jaxloss, name)
        (ref, gref), (out, g) = one_device(fn, inputs, opts), sharded(fn, inputs, specs, opts)
        for key in ref:
            for a, b in zip(jax.tree_util.tree_leaves(out[key]), jax.tree_util.tree_leaves(ref[key])):
                close(a, b, f"{name}: {key}")
        close(g, gref, f"{name}: gradient")
        assert np.all(np.isfinite(np.asarray(g)))


@check("shard_map(axis_name) == one device: dino_center_update")
def _center():
    t, c = CASES["dino_loss"][0][1], CASES["dino_loss"][0][2]
    ref = jaxloss.dino_center_update(t, c, momentum=0.7, where=WHERE)
    f = jax.shard_map(lambda t, c, w: jaxloss.dino_center_update(t, c, momentum=0.7, where=w, axis_name="data"),
                      mesh=MESH, in_specs=(VIEWS, P(), ROWS), out_specs=P())
    close(jax.jit(f)(t, c, WHERE), ref, "dino_center_update")


md.finish()
