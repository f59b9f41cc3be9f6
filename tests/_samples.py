"""Small samples shared by the family tests of the issue-14 losses (binary,
multiclass, metric, regression, divergence), drawn once from one generator in
a fixed order, so every test sees the same values whichever file or worker
runs it."""

from __future__ import annotations

import numpy as np

_RNG = np.random.default_rng(14)

# binary (and hinge_embedding_loss): scores, {0, 1}, {-1, 1} and soft targets, weights, masks
X = (_RNG.normal(size=(5, 4)) * 2.5).astype(np.float32)
T01 = (_RNG.uniform(size=(5, 4)) < 0.4).astype(np.float32)
TPM = np.where(T01 > 0, 1.0, -1.0).astype(np.float32)
TSOFT = _RNG.uniform(size=(5, 4)).astype(np.float32)
W = _RNG.uniform(0.2, 2.0, size=(5, 4))
M = _RNG.uniform(size=(5, 4)) < 0.7
W_ROW, M_ROW = W[:, 0], M[:, 0]

# multi-class: scores [6, 5], labels, per-example weights and mask, class weights
S = (_RNG.normal(size=(6, 5)) * 1.5).astype(np.float32)
Y = np.array([0, 3, 1, 4, 2, 3], np.int32)
WE, ME = _RNG.uniform(0.2, 2.0, size=6), _RNG.uniform(size=6) < 0.7
CW_MARGIN = np.array([0.5, 1.0, 2.0, 0.0, 1.5], np.float32)

# triplets [6, 3] (metric), vector pairs [6, 4] (cosine distance), unnormalised
# measures [6, 5] (generalized KL: predictions in [0.05, 2], targets in [0, 2])
TRIPLET = tuple(_RNG.normal(size=(6, 3)).astype(np.float32) for _ in range(3))
COSINE = tuple(_RNG.normal(size=(6, 4)).astype(np.float32) for _ in range(2))
GKL = (_RNG.uniform(0.05, 2.0, size=(6, 5)), _RNG.uniform(0.0, 2.0, size=(6, 5)))

for _a in (X, T01, TPM, TSOFT, W, M, S, Y, WE, ME, CW_MARGIN, *TRIPLET, *COSINE, *GKL):
    _a.setflags(write=False)  # shared by several files: a test copies before it changes one
