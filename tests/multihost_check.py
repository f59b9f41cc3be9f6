"""Multi-host checks: 2 processes x 4 CPU devices, JAX's multi-controller runtime.

    python tests/multihost_check.py              (launches both processes, waits, reports)
    python tests/multihost_check.py --process I --port P --processes 2   (one of them)

tests/test_multidevice.py runs the launcher. Each process starts JAX with
``--xla_force_host_platform_device_count=4``, gloo CPU collectives and
``jax.distributed.initialize("127.0.0.1:PORT", 2, I)``, so the 8 global devices
span two processes. Every global array is built from the process's own rows
(``jax.make_array_from_process_local_data``); every result is compared, in each
process, with the one-device value of the whole batch (computed locally):

1. ``make_train_step(axis_name="data")`` in ``shard_map``, with and without
   ``micro_batches``, equals the one-device full-batch step;
2. ``clip_loss`` and ``siglip_loss`` with ``axis_name``, ``gather="ring"`` and
   ``"all"``: value and gradients;
3. ``vocab_parallel_cross_entropy`` and ``linear_cross_entropy(axis_name=...)``
   with the vocabulary split over all 8 devices (half of it on each host), and
   class-sharded ``arcface_loss``;
4. registry losses under GSPMD (plain ``jit``, the batch split over both hosts),
   all in one compiled program: value and gradients.

One launch runs everything (a few compilations, small shapes), bounded by a
timeout. Prints one line per check; exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LOCAL_DEVICES = 4


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(processes=2, timeout=240) -> int:
    """Start ``processes`` copies of this script on a free localhost port; return 0 when all pass."""
    port = _free_port()
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={LOCAL_DEVICES}"])
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, __file__, "--process", str(i), "--port", str(port),
                               "--processes", str(processes)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(processes)]
    outs, rcs = [], []
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            out, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:  # one hung process would hang the other in its next collective
                q.kill()
            out, _ = p.communicate()
            out += f"\n[killed after {timeout} s]"
        outs.append(out)
        rcs.append(p.returncode)
    for i, out in enumerate(outs):
        print(f"===== process {i} (rc={rcs[i]}) =====\n{out}")
    print(f"multi-host wall time: {time.perf_counter() - t0:.1f} s")
    return 0 if all(rc == 0 for rc in rcs) else 1


def worker(index: int, port: int, processes: int) -> int:  # noqa: C901 -- one script, every check
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"127.0.0.1:{port}", processes, index)

    import _report
    import jax.numpy as jnp
    import numpy as np
    import optax
    from _report import check
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    import jaxloss

    def close(a, b, what, rtol=2e-5, atol=2e-5):
        _report.close(a, b, what, rtol=rtol, atol=atol)

    assert jax.process_count() == processes and jax.local_device_count() == LOCAL_DEVICES, (
        jax.process_count(), jax.local_device_count())
    n_dev = jax.device_count()
    mesh = Mesh(np.array(jax.devices()), ("data",))  # process 0's devices, then process 1's
    assert {d.process_index for d in jax.devices()} == set(range(processes))
    one = jax.local_devices()[0]
    rep = NamedSharding(mesh, P())

    def local_rows(x, axis=0):
        """This process's contiguous block of ``x`` along ``axis`` (its devices' rows)."""
        k = x.shape[axis] // processes
        return np.take(x, np.arange(index * k, (index + 1) * k), axis=axis)

    def global_array(x, spec):
        """The global array of ``x`` split by ``spec`` over the mesh, from this process's part only."""
        sharding = NamedSharding(mesh, spec)
        axis = next((i for i, s in enumerate(spec) if s is not None), None)
        local = x if axis is None else local_rows(x, axis)
        return jax.make_array_from_process_local_data(sharding, np.asarray(local), np.shape(x))

    def on_one(fn, *args):
        return jax.jit(fn)(*(jax.device_put(a, one) for a in args))

    def fetch(tree):
        """A replicated result's value, read from this process's first device."""
        return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)

    # ------------------------------------------------------------------
    # 1. data-parallel make_train_step
    # ------------------------------------------------------------------
    rng = np.random.default_rng(40)
    x = rng.normal(size=(32, 3)).astype(np.float32)
    y = rng.integers(0, 5, size=32).astype(np.int32)
    y[:12] = -100  # process 0's rows are mostly padding: the means of the hosts differ
    params = {"w": rng.normal(size=(3, 5)).astype(np.float32), "b": np.zeros(5, np.float32)}

    def apply(p, x):
        return x @ p["w"] + p["b"]

    crit = jaxloss.SparseCrossEntropy(ignore_index=-100) + 0.5 * jaxloss.SoftmaxFocalLoss(ignore_index=-100)
    opt = optax.adam(0.1)
    full = on_one(lambda p, x, y: jaxloss.make_train_step(apply, crit, opt, jit=False)(p, opt.init(p), x, y),
                  params, x, y)
    xg, yg = global_array(x, P("data")), global_array(y, P("data"))
    pg = jax.tree.map(lambda a: global_array(a, P()), params)

    for k in (1, 2):
        @check(f"make_train_step(axis_name='data', micro_batches={k}) over 2 hosts == one device")
        def _(k=k):
            local = jaxloss.make_train_step(apply, crit, opt, micro_batches=k, axis_name="data", jit=False)
            dp = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P(), P("data"), P("data")),
                                       out_specs=(P(), P(), P())))
            new, _, value = fetch(dp(pg, jax.tree.map(lambda a: global_array(np.asarray(a), P()),
                                                      opt.init(params)), xg, yg))
            close(value, full[2], "loss value", rtol=1e-5, atol=1e-6)
            for name in params:
                close(new[name], full[0][name], name, rtol=1e-5, atol=1e-6)

    # ------------------------------------------------------------------
    # 2. CLIP and SigLIP across hosts, ring and all-gather
    # ------------------------------------------------------------------
    rng = np.random.default_rng(3)
    a = rng.normal(size=(16, 6)).astype(np.float32)
    b = rng.normal(size=(16, 6)).astype(np.float32)
    for fn_name in ("clip_loss", "siglip_loss"):
        fn = getattr(jaxloss, fn_name)

        @check(f"{fn_name}(axis_name='data'), gather='ring' and 'all', over 2 hosts == one device")
        def _(fn=fn):
            want = on_one(jax.value_and_grad(lambda a, b: fn(a, b), argnums=(0, 1)), a, b)

            def both(a, b):
                out = {}
                for gather in ("ring", "all"):
                    f = jax.shard_map(lambda a, b, g=gather: fn(a, b, axis_name="data", gather=g), mesh=mesh,
                                      in_specs=(P("data"), P("data")), out_specs=P())
                    out[gather] = jax.value_and_grad(f, argnums=(0, 1))(a, b)
                return out

            got = fetch(jax.jit(both, out_shardings=rep)(global_array(a, P("data")), global_array(b, P("data"))))
            for gather in ("ring", "all"):
                close(got[gather][0], want[0], f"{gather}: value")
                for g, r, n in zip(got[gather][1], want[1], "ab"):
                    close(g, r, f"{gather}: d{n}", rtol=1e-4, atol=1e-5)

    # ------------------------------------------------------------------
    # 3. a vocabulary (classes) split across hosts
    # ------------------------------------------------------------------
    rng = np.random.default_rng(5)
    n, d, vocab = 12, 8, 8 * 13
    h = rng.normal(size=(n, d)).astype(np.float32)
    w = (rng.normal(size=(vocab, d)) * 0.7).astype(np.float32)
    bias = (rng.normal(size=(vocab,)) * 0.3).astype(np.float32)
    lab = rng.integers(0, vocab, size=(n,)).astype(np.int32)
    lab[[1, 6]] = -100
    opts = {"ignore_index": -100, "label_smoothing": 0.1, "z_loss": 1e-3}

    @check("vocab_parallel_cross_entropy and linear_cross_entropy(axis_name=...), vocabulary over 2 hosts "
           "== one device")
    def _vocab():
        def ref(h, w, bias):
            return jaxloss.sparse_cross_entropy(h @ w.T + bias, jnp.asarray(lab), **opts)

        want = on_one(jax.value_and_grad(ref, argnums=(0, 1, 2)), h, w, bias)
        want_lce = on_one(jax.value_and_grad(
            lambda h, w, bias: jaxloss.linear_cross_entropy(h, w, jnp.asarray(lab), bias=bias, chunk_size=5, **opts),
            argnums=(0, 1, 2)), h, w, bias)
        z = h @ w.T + bias
        vp = jax.shard_map(lambda z, y: jaxloss.vocab_parallel_cross_entropy(z, y, axis_name="data", **opts),
                           mesh=mesh, in_specs=(P(None, "data"), P()), out_specs=P())
        lce = jax.shard_map(
            lambda h, w, bias, y: jaxloss.linear_cross_entropy(h, w, y, bias=bias, chunk_size=5, axis_name="data",
                                                               **opts),
            mesh=mesh, in_specs=(P(), P("data"), P("data"), P()), out_specs=P())

        def both(z, h, w, bias, y):
            return (jax.value_and_grad(vp)(z, y),
                    jax.value_and_grad(lambda h, w, bias: lce(h, w, bias, y), argnums=(0, 1, 2))(h, w, bias))

        got = fetch(jax.jit(both, out_shardings=rep)(
            global_array(z, P(None, "data")), global_array(h, P()), global_array(w, P("data")),
            global_array(bias, P("data")), global_array(lab, P())))
        close(got[0][0], want[0], "vocab_parallel_cross_entropy value")
        want_dz = on_one(jax.grad(lambda z: jaxloss.sparse_cross_entropy(z, jnp.asarray(lab), **opts)), z)
        close(got[0][1], want_dz, "vocab_parallel_cross_entropy d logits")
        close(got[1][0], want_lce[0], "linear_cross_entropy value")
        close(got[1][0], want[0], "linear_cross_entropy value vs the logits")
        for g, r, nm in zip(got[1][1], want_lce[1], ("hidden", "weight", "bias")):
            close(g, r, f"linear_cross_entropy d {nm}")

    @check("arcface_loss(axis_name=...), classes over 2 hosts == one device")
    def _arcface():
        y = np.clip(lab, 0, None)

        def f(e, w, **kw):
            return jaxloss.arcface_loss(e, w, jnp.asarray(y), scale=16.0, margin=0.3, chunk_size=5, **kw)

        want = on_one(jax.value_and_grad(f, argnums=(0, 1)), h, w)
        sm = jax.shard_map(lambda e, w: f(e, w, axis_name="data"), mesh=mesh, in_specs=(P(), P("data")),
                           out_specs=P())
        got = fetch(jax.jit(jax.value_and_grad(sm, argnums=(0, 1)), out_shardings=rep)(
            global_array(h, P()), global_array(w, P("data"))))
        close(got[0], want[0], "value")
        for g, r, nm in zip(got[1], want[1], ("embeddings", "weight")):
            close(g, r, f"d {nm}", rtol=1e-4, atol=1e-5)

    # ------------------------------------------------------------------
    # 4. registry losses under GSPMD, the batch over both hosts, one program
    # ------------------------------------------------------------------
    # One loss of each family (and the in-batch, sort, scan and streamed-head kernels), so that the
    # one program stays cheap to compile in two processes; every registered loss is checked
    # batch-sharded on 8 devices of one process by tests/multidevice_check.py.
    names = ["mse_loss", "binary_cross_entropy_with_logits", "sparse_cross_entropy", "ctc_loss",
             "lovasz_softmax_loss", "ntxent_loss", "batch_triplet_loss", "dpo_loss", "linear_cross_entropy"]
    names = [n for n in names if n in jaxloss.REGISTRY]

    @check(f"{len(names)} registry losses under GSPMD, batch over 2 hosts, one program == one device")
    def _registry():
        rng = np.random.default_rng(0)
        cases = {}
        for name in names:
            spec = jaxloss.REGISTRY[name]
            inputs = [np.asarray(t) for t in spec.example.sample(rng)]
            batch = inputs[0].shape[0]
            reps = n_dev // np.gcd(batch, n_dev)
            batched = [t.ndim >= 1 and t.shape[0] == batch for t in inputs]
            inputs = [np.concatenate([t] * reps) if bt else t for t, bt in zip(inputs, batched)]
            cases[name] = (spec, inputs, batched)

        def everything(args):
            out = {}
            for name, (spec, _, _) in cases.items():
                xs = args[name]
                diff = spec.example.differentiable

                def mean(*dx, xs=xs, spec=spec, diff=diff):
                    full = list(xs)
                    for i, v in zip(diff, dx):
                        full[i] = v
                    return spec.fn(*full)

                out[name] = jax.value_and_grad(mean, argnums=tuple(range(len(diff))))(*(xs[i] for i in diff))
            return out

        want = jax.jit(everything)({k: [jax.device_put(t, one) for t in c[1]] for k, c in cases.items()})
        placed = {k: [global_array(t, P("data") if bt else P()) for t, bt in zip(c[1], c[2])]
                  for k, c in cases.items()}
        got = fetch(jax.jit(everything, out_shardings=rep)(placed))
        bad = []
        for name in names:
            try:
                for u, v in zip(jax.tree.leaves(got[name]), jax.tree.leaves(want[name])):
                    close(u, v, name, rtol=1e-5, atol=1e-5)
            except AssertionError as e:
                bad.append(f"{name}: {str(e).splitlines()[1] if len(str(e).splitlines()) > 1 else e}")
        assert not bad, "\n".join(bad)

    print(f"\nprocess {index}: {len(_report.PASSED)} passed, {len(_report.FAILED)} failed", flush=True)
    jax.distributed.shutdown()
    return 1 if _report.FAILED else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--process", type=int)
    parser.add_argument("--port", type=int)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=240)
    args = parser.parse_args()
    if args.process is None:
        sys.exit(launch(args.processes, args.timeout))
    sys.exit(worker(args.process, args.port, args.processes))
