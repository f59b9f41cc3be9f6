"""chamfer_distance against a NumPy float64 reference of PyTorch3D's defaults.

Squared distances, the mean over each cloud's (valid) points, both directions added,
``"mean"`` over the batch (PyTorch3D's ``weights`` are ``weights``), ragged clouds by
per-point masks; the chunked neighbour search equals the one-block one; gradients against
central differences; empty masked clouds finite. The memory figure (no ``[B, N, M]``
array) is printed by benchmarks/bench_geometry.py from the compiled programs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import assert_close, reduce_ref

import jaxloss


def np_chamfer(a, b, ma=None, mb=None):
    """Per-cloud Chamfer distances [B] (PyTorch3D: norm=2, point_reduction='mean')."""
    out = []
    for k in range(a.shape[0]):
        x = a[k] if ma is None else a[k][ma[k]]
        y = b[k] if mb is None else b[k][mb[k]]
        if len(x) == 0 or len(y) == 0:
            out.append(0.0)
            continue
        d = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
        out.append(d.min(1).mean() + d.min(0).mean())
    return np.array(out)


RNG = np.random.default_rng(0)
A = RNG.normal(size=(3, 40, 3)).astype(np.float32)
B = RNG.normal(size=(3, 27, 3)).astype(np.float32)
A64, B64 = A.astype(np.float64), B.astype(np.float64)


def test_matches_pytorch3d_defaults_and_chunked_equals_dense():
    per = np_chamfer(A64, B64)
    for reduction in ("mean", "sum", "none"):
        assert_close(jaxloss.chamfer_distance(A, B, reduction=reduction), reduce_ref(per, reduction), rtol=1e-5)
    w = np.array([0.5, 2.0, 1.0])
    assert_close(jaxloss.chamfer_distance(A, B, weights=w), (w * per).sum() / w.sum(), rtol=1e-5)
    dense = jaxloss.chamfer_distance(A, B, chunk_size=40, reduction="none")
    for chunk in (1, 16):  # uneven last blocks
        assert_close(jaxloss.chamfer_distance(A, B, chunk_size=chunk, reduction="none"), dense, rtol=1e-6, atol=1e-7)
    ga = jax.grad(lambda a: jaxloss.chamfer_distance(a, B, chunk_size=40))(jnp.asarray(A))
    gc = jax.grad(lambda a: jaxloss.chamfer_distance(a, B, chunk_size=7))(jnp.asarray(A))
    assert_close(gc, ga, rtol=1e-6, atol=1e-7)


def test_ragged_clouds_by_masks():
    ma = np.arange(40)[None, :] < np.array([[40], [12], [0]])  # the last cloud of a is empty
    mb = np.arange(27)[None, :] < np.array([[5], [27], [9]])
    per = np_chamfer(A64, B64, ma, mb)
    assert per[2] == 0.0
    for chunk in (None, 6):
        out = jaxloss.chamfer_distance(A, B, mask_a=jnp.asarray(ma), mask_b=jnp.asarray(mb), chunk_size=chunk,
                                       reduction="none")
        assert_close(out, per, rtol=1e-5, atol=1e-7)
    poisoned = np.where(ma[..., None], A, np.nan).astype(np.float32)
    value, g = jax.value_and_grad(lambda a: jaxloss.chamfer_distance(a, B, mask_a=jnp.asarray(ma),
                                                                     mask_b=jnp.asarray(mb)))(jnp.asarray(poisoned))
    assert_close(value, per.mean(), rtol=1e-5)
    assert np.all(np.isfinite(g)) and np.all(np.asarray(g)[~ma] == 0)
    # a fully masked pair of clouds: 0 with a zero gradient
    none = jnp.zeros((3, 40), bool)
    value, g = jax.value_and_grad(lambda a: jaxloss.chamfer_distance(a, B, mask_a=none))(jnp.asarray(A))
    assert float(value) == 0.0 and np.all(np.asarray(g) == 0)


def test_gradient_matches_central_differences():
    with jax.enable_x64(True):
        a, b = A64[:2, :6], B64[:2, :5]

        def ref(x, y):
            return np_chamfer(x, y).mean()

        ga, gb = jax.grad(lambda x, y: jaxloss.chamfer_distance(x, y, chunk_size=4), argnums=(0, 1))(a, b)
        for g, x, f in ((ga, a, lambda v: ref(v, b)), (gb, b, lambda v: ref(a, v))):
            num = np.zeros_like(x)
            for idx in np.ndindex(x.shape):
                up, dn = x.copy(), x.copy()
                up[idx] += 1e-6
                dn[idx] -= 1e-6
                num[idx] = (f(up) - f(dn)) / 2e-6
            assert_close(g, num, rtol=1e-6, atol=1e-8)


def test_default_chunk_and_errors():
    assert jaxloss.geometry.default_chamfer_chunk(100, 100) == 100
    assert jaxloss.geometry.default_chamfer_chunk(16384, 16384) == 64
    with pytest.raises(ValueError, match="chamfer_distance: points_a and points_b must be batched clouds"):
        jaxloss.chamfer_distance(A[0], B[0])
    with pytest.raises(ValueError, match="chamfer_distance: .* must share the batch size"):
        jaxloss.chamfer_distance(A, B[:2])
    with pytest.raises(ValueError, match=r"chamfer_distance: mask_a must have shape \(3, 40\)"):
        jaxloss.chamfer_distance(A, B, mask_a=jnp.ones((3, 39), bool))
    with pytest.raises(TypeError, match="chamfer_distance: mask_b must be a boolean mask"):
        jaxloss.chamfer_distance(A, B, mask_b=jnp.ones((3, 27)))
    with pytest.raises(ValueError, match="chamfer_distance: chunk_size"):
        jaxloss.chamfer_distance(A, B, chunk_size=0)
