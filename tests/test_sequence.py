"""CTC and RNN-T against NumPy float64 references written here: the CTC forward
algorithm, brute-force sums over every alignment (CTC and RNN-T, tiny sizes),
central finite differences of those references, and the semantics of the
reductions, the blank, infeasible sequences and padding."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _reference import assert_close, central_diff, reduce_ref

import jaxloss
from jaxloss.sequence import _ctc_nll

# ---------------------------------------------------------------------------
# NumPy float64 references
# ---------------------------------------------------------------------------


def np_log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def np_ctc_forward(logits, labels, t_len, l_len, blank=0):
    """Per-sequence CTC nll by the forward algorithm over the extended labels."""
    out = []
    for b in range(len(t_len)):
        lp = np_log_softmax(logits[b, : t_len[b]])
        ext = [blank]
        for lab in labels[b, : l_len[b]]:
            ext += [int(lab), blank]
        ext = np.array(ext)
        n = len(ext)
        skip = np.zeros(n, bool)
        skip[2:] = (ext[2:] != blank) & (ext[2:] != ext[:-2])
        if t_len[b] == 0:
            out.append(0.0 if l_len[b] == 0 else np.inf)
            continue
        alpha = np.full(n, -np.inf)         # the first frame: the first blank or the first label
        alpha[: min(n, 2)] = lp[0, ext[: min(n, 2)]]
        for t in range(1, t_len[b]):
            prev1 = np.concatenate([[-np.inf], alpha[:-1]])
            prev2 = np.where(skip, np.concatenate([[-np.inf, -np.inf], alpha])[:n], -np.inf)
            alpha = np.logaddexp(np.logaddexp(alpha, prev1), prev2) + lp[t, ext]
        ends = alpha[-1] if n == 1 else np.logaddexp(alpha[-1], alpha[-2])
        out.append(-ends)
    return np.array(out)


def collapse(path, blank):
    merged = [k for i, k in enumerate(path) if i == 0 or k != path[i - 1]]
    return [k for k in merged if k != blank]


def np_ctc_brute(logits, labels, t_len, l_len, blank=0):
    """Per-sequence CTC nll by summing the probability of every path of C^T."""
    out = []
    for b in range(len(t_len)):
        lp = np_log_softmax(logits[b, : t_len[b]])
        target = [int(v) for v in labels[b, : l_len[b]]]
        total = 0.0
        for path in itertools.product(range(lp.shape[-1]), repeat=int(t_len[b])):
            if collapse(path, blank) == target:
                total += np.exp(sum(lp[t, k] for t, k in enumerate(path)))
        out.append(-np.log(total) if total > 0 else np.inf)
    return np.array(out)


def np_rnnt_brute(logits, labels, t_len, u_len, blank=0):
    """Per-sequence RNN-T nll by summing over every alignment: the U label steps
    placed among the first T + U - 1 steps, the last step the final blank."""
    out = []
    for b in range(len(t_len)):
        lp = np_log_softmax(logits[b])
        big_t, big_u = int(t_len[b]), int(u_len[b])
        total = 0.0
        for where in itertools.combinations(range(big_t + big_u - 1), big_u):
            t = u = 0
            logp = 0.0
            for step in range(big_t + big_u):
                if step in where:
                    logp += lp[t, u, labels[b, u]]
                    u += 1
                else:
                    logp += lp[t, u, blank]
                    t += 1
            total += np.exp(logp)
        out.append(-np.log(total) if big_t > 0 else np.inf)
    return np.array(out)


def _ctc(x, labels, tl, ll, **kw):
    return jaxloss.ctc_loss(jnp.asarray(x), jnp.asarray(labels), jnp.asarray(tl), jnp.asarray(ll), **kw)


def _rnnt(x, labels, tl, ul, **kw):
    return jaxloss.rnnt_loss(jnp.asarray(x), jnp.asarray(labels), jnp.asarray(tl), jnp.asarray(ul), **kw)


# ---------------------------------------------------------------------------
# CTC
# ---------------------------------------------------------------------------

RNG = np.random.default_rng(0)
# 5 sequences, T = 5 frames, C = 3 classes (blank 0), S = 3: repeated labels,
# an empty label sequence, labels past their lengths holding -1 and 7.
X = (RNG.normal(size=(5, 5, 3)) * 1.5).astype(np.float32)
LABELS = np.array([[1, 2, 1], [1, 1, -1], [2, 2, 2], [2, 7, 7], [-1, -1, -1]], np.int32)
T_LEN = np.array([5, 4, 5, 3, 4], np.int32)
L_LEN = np.array([3, 2, 2, 1, 0], np.int32)


def test_ctc_forward_reference_agrees_with_brute_force():
    x64 = X.astype(np.float64)
    assert_close(np_ctc_forward(x64, LABELS, T_LEN, L_LEN), np_ctc_brute(x64, LABELS, T_LEN, L_LEN), rtol=1e-12)


def test_ctc_every_reduction_with_weights_and_where():
    nll = np_ctc_brute(X.astype(np.float64), LABELS, T_LEN, L_LEN)
    per_label = nll / np.maximum(L_LEN, 1)
    w = np.array([0.5, 2.0, 1.0, 0.0, 1.5], np.float32)
    m = np.array([True, True, False, True, True])
    assert_close(_ctc(X, LABELS, T_LEN, L_LEN, reduction="none"), nll, rtol=1e-5)
    assert_close(_ctc(X, LABELS, T_LEN, L_LEN), per_label.mean(), rtol=1e-5)    # PyTorch's "mean"
    for reduction in ("none", "sum"):
        assert_close(_ctc(X, LABELS, T_LEN, L_LEN, reduction=reduction, weights=w, where=m),
                     reduce_ref(nll, reduction, w, m), rtol=1e-5)
    assert_close(_ctc(X, LABELS, T_LEN, L_LEN, weights=w, where=m), reduce_ref(per_label, "mean", w, m), rtol=1e-5)
    s, d = _ctc(X, LABELS, T_LEN, L_LEN, weights=w, where=m, reduction="sum_and_weight")
    assert_close(s, reduce_ref(per_label, "sum", w, m), rtol=1e-5)
    assert_close(d, np.sum(w * m), rtol=1e-6)


def test_ctc_matches_optax_on_feasible_inputs_with_lengths_from_paddings():
    pads = (np.arange(5)[None, :] >= T_LEN[:, None]).astype(np.float32)
    lab_pads = (np.arange(3)[None, :] >= L_LEN[:, None]).astype(np.float32)
    assert np.array_equal(jaxloss.lengths_from_paddings(pads), T_LEN)
    assert np.array_equal(jaxloss.lengths_from_paddings(lab_pads > 0), L_LEN)
    labels = np.where(lab_pads > 0, 0, LABELS)
    theirs = optax.ctc_loss(jnp.asarray(X), jnp.asarray(pads), jnp.asarray(labels), jnp.asarray(lab_pads))
    assert_close(_ctc(X, LABELS, T_LEN, L_LEN, reduction="none"), theirs, rtol=1e-4)


def test_ctc_gradient_equals_finite_differences_of_brute_force():
    with jax.enable_x64(True):
        x = X[:3, :4].astype(np.float64)
        labels, tl, ll = LABELS[:3], np.array([4, 4, 3]), L_LEN[:3]
        w = np.array([1.0, 0.5, 2.0])
        expected = central_diff(lambda z: np.sum(w * np_ctc_brute(z, labels, tl, ll) / np.maximum(ll, 1)), x)
        g = jax.grad(lambda z: jaxloss.ctc_loss(z, labels, tl, ll, reduction="sum",
                                                weights=jnp.asarray(w / np.maximum(ll, 1))))(jnp.asarray(x))
        assert_close(g, expected, rtol=1e-6, atol=1e-8)
        assert np.all(np.asarray(g)[2, 3] == 0)                     # past logit_lengths


def test_ctc_forward_backward_gradient_equals_autodiff_through_the_scan():
    rest = (jnp.asarray(LABELS), jnp.asarray(T_LEN), jnp.asarray(L_LEN))

    @jax.jit
    def both(z):
        return [jax.grad(lambda y, g=g: jnp.sum(_ctc_nll(y, *rest, gradient=g)[0]))(z) for g in ("fb", "autodiff")]

    fb, ad = both(jnp.asarray(X))
    assert_close(fb, ad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("blank", [2, -1])
def test_ctc_non_zero_blank(blank):
    labels = np.array([[0, 1, 0], [1, 1, 0]], np.int32)
    tl, ll = np.array([5, 5]), np.array([3, 2])
    expected = np_ctc_brute(X[:2].astype(np.float64), labels, tl, ll, blank=2)
    assert_close(_ctc(X[:2], labels, tl, ll, blank=blank, reduction="none"), expected, rtol=1e-5)


def test_ctc_infeasible_rows_inf_or_zero_with_zero_gradient():
    # 3 frames cannot hold "1 1 2" (needs a blank between the 1s: 4 frames); 0 frames cannot hold "1"
    labels = np.array([[1, 1, 2], [1, 2, 0], [1, 0, 0]], np.int32)
    tl, ll = np.array([3, 3, 0]), np.array([3, 2, 1])
    x = X[:3, :3]
    ref = np_ctc_forward(x.astype(np.float64), labels, tl, ll)
    assert np.isinf(ref[0]) and np.isinf(ref[2])
    for zero_infinity in (False, True):
        def f(z, zi=zero_infinity):
            per = jaxloss.ctc_loss(z, labels, tl, ll, zero_infinity=zi, reduction="none")
            return jnp.sum(jnp.where(jnp.isfinite(per), per, 0.0)), per

        g, value = jax.jit(jax.grad(f, has_aux=True))(jnp.asarray(x))
        expected = np.where(np.isinf(ref), 0.0, ref) if zero_infinity else ref
        assert_close(value, expected, rtol=1e-5)
        g = np.asarray(g)
        assert np.all(np.isfinite(g)) and np.all(g[[0, 2]] == 0) and np.any(g[1] != 0)
    mean = jaxloss.ctc_loss(jnp.asarray(x), labels, tl, ll, zero_infinity=True)    # infeasible rows count as 0
    assert_close(mean, ref[1] / 2 / 3, rtol=1e-5)


def test_ctc_nan_past_the_lengths_reaches_neither_value_nor_gradient():
    poisoned = X.copy()
    for b, t in enumerate(T_LEN):
        poisoned[b, t:] = np.nan
    garbage = np.where(np.arange(3)[None, :] < L_LEN[:, None], LABELS, np.array([[99, -5, 3]]))

    def vg(x, labels):
        return jax.value_and_grad(lambda z: jaxloss.ctc_loss(z, labels, T_LEN, L_LEN))(jnp.asarray(x))

    (v0, g0), (v1, g1) = vg(X, LABELS), vg(poisoned, garbage)
    assert_close(v1, v0, rtol=0, atol=0)
    assert np.all(np.isfinite(np.asarray(g1)))
    assert_close(g1, g0, rtol=0, atol=0)
    assert np.all(np.asarray(g1)[~(np.arange(5)[None, :] < T_LEN[:, None])] == 0)


def np_ctc_long(logits, labels, blank=0):
    """The forward algorithm for one long sequence, vectorised over the states."""
    lp = np_log_softmax(logits)
    ext = np.full(2 * len(labels) + 1, blank)
    ext[1::2] = labels
    skip = np.zeros(len(ext), bool)
    skip[2:] = (ext[2:] != blank) & (ext[2:] != ext[:-2])
    alpha = np.full(len(ext), -np.inf)
    alpha[0] = 0.0
    for t in range(len(lp)):
        prev1 = np.concatenate([[-np.inf], alpha[:-1]])
        prev2 = np.where(skip, np.concatenate([[-np.inf, -np.inf], alpha[:-2]]), -np.inf)
        alpha = np.logaddexp(np.logaddexp(alpha, prev1), prev2) + lp[t, ext]
    return -np.logaddexp(alpha[-1], alpha[-2])


def test_ctc_float32_at_2000_frames_agrees_with_float64_and_is_never_negative():
    rng = np.random.default_rng(1)
    t, c = 2000, 5
    labels = rng.integers(1, c, size=(2, 40)).astype(np.int32)
    x = rng.normal(size=(2, t, c)).astype(np.float32)
    # row 1: a confident model, the labels' alignment scored 12 above the rest (nll ~ 1e-2)
    align = np.repeat(np.stack([np.zeros(40, int), labels[1]], 1).reshape(-1), t // 80)
    x[1] = np.where(np.arange(c)[None, :] == align[:, None], 12.0, 0.0).astype(np.float32)
    ref = np.array([np_ctc_long(x[b].astype(np.float64), labels[b]) for b in range(2)])
    out = np.asarray(_ctc(x, labels, np.array([t, t]), np.array([40, 40]), reduction="none"), np.float64)
    assert_close(out, ref, rtol=1e-4, atol=0)
    assert np.all(out >= 0)
    # optax's example: two frames of logits [0, 17], label "1"; the exact loss is 1.7e-15
    tiny = _ctc(np.array([[[0.0, 17.0], [0.0, 17.0]]], np.float32), np.array([[1]]), np.array([2]), np.array([1]),
                reduction="none")
    assert 0.0 <= float(tiny[0]) < 1e-12


def test_ctc_errors_name_the_loss():
    x, lab, tl, ll = X[:2], LABELS[:2], T_LEN[:2], L_LEN[:2]
    with pytest.raises(ValueError, match="ctc_loss: logits must have shape"):
        _ctc(x[0], lab, tl, ll)
    with pytest.raises(TypeError, match="ctc_loss: logit_lengths must be an integer array"):
        _ctc(x, lab, tl.astype(np.float32), ll)
    with pytest.raises(TypeError, match="ctc_loss: labels must hold integer"):
        _ctc(x, lab.astype(np.float32), tl, ll)
    with pytest.raises(ValueError, match="ctc_loss: logit_lengths must lie in"):
        _ctc(x, lab, np.array([6, 1]), ll)
    with pytest.raises(ValueError, match="differ from blank=0"):
        _ctc(x, np.array([[0, 1, 1], [1, 1, 1]]), tl, ll)
    with pytest.raises(ValueError, match="ctc_loss: blank must lie in"):
        _ctc(x, lab, tl, ll, blank=3)
    with pytest.raises(ValueError, match="ctc_loss: label_lengths must have shape"):
        _ctc(x, lab, tl, ll[:1])


# ---------------------------------------------------------------------------
# RNN-T
# ---------------------------------------------------------------------------

# B = 3, arrays padded to T = 5, U = 3 beyond the longest sequence (4 frames, 2 labels)
RX = RNG.normal(size=(3, 5, 4, 4)).astype(np.float32)
RLABELS = np.array([[1, 3, 9], [2, -1, -1], [3, 3, 0]], np.int32)
RT_LEN = np.array([4, 3, 2], np.int32)
RU_LEN = np.array([2, 1, 2], np.int32)


def test_rnnt_against_brute_force_every_reduction_and_padding():
    nll = np_rnnt_brute(RX.astype(np.float64), RLABELS, RT_LEN, RU_LEN)
    poisoned = RX.copy()
    for b in range(3):
        poisoned[b, RT_LEN[b]:] = np.nan
        poisoned[b, :, RU_LEN[b] + 1:] = np.nan
    w = np.array([0.5, 2.0, 1.0], np.float32)
    assert_close(_rnnt(poisoned, RLABELS, RT_LEN, RU_LEN, reduction="none"), nll, rtol=1e-5)
    assert_close(_rnnt(poisoned, RLABELS, RT_LEN, RU_LEN), nll.mean(), rtol=1e-5)
    assert_close(_rnnt(poisoned, RLABELS, RT_LEN, RU_LEN, weights=w), reduce_ref(nll, "mean", w), rtol=1e-5)
    assert_close(_rnnt(poisoned, RLABELS, RT_LEN, RU_LEN, reduction="sum"), nll.sum(), rtol=1e-5)


def test_rnnt_gradient_equals_finite_differences_and_is_zero_past_the_lengths():
    with jax.enable_x64(True):
        x = RX[:, :4, :3].astype(np.float64)
        labels = RLABELS[:, :2]
        expected = central_diff(lambda z: np.sum(np_rnnt_brute(z, labels, RT_LEN, RU_LEN)), x)
        poisoned = x.copy()
        poisoned[2, 2:] = np.nan
        g = jax.grad(lambda z: jaxloss.rnnt_loss(z, labels, RT_LEN, RU_LEN, reduction="sum"))(jnp.asarray(poisoned))
        assert_close(g, np.where(np.isnan(poisoned), 0.0, expected), rtol=1e-6, atol=1e-8)
        assert np.all(np.asarray(g)[1, :, 2:] == 0)                  # u past label_lengths


def test_rnnt_non_zero_blank_and_no_frames():
    labels = np.array([[0, 1], [2, 2]], np.int32)
    x = RX[:2, :3, :3]
    expected = np_rnnt_brute(x.astype(np.float64), labels, [3, 2], [2, 2], blank=3)
    assert_close(_rnnt(x, labels, np.array([3, 2]), np.array([2, 2]), blank=-1, reduction="none"), expected, rtol=1e-5)
    value, g = jax.value_and_grad(lambda z: jnp.sum(jaxloss.rnnt_loss(z, labels, np.array([0, 2]), np.array([0, 2]),
                                                                        blank=3, reduction="none", where=np.array(
                                                                            [False, True]))))(jnp.asarray(x))
    assert_close(value, expected[1], rtol=1e-5)
    with pytest.raises(ValueError, match=r"rnnt_loss: logits \[B, T, U\+1, C\] need labels \[B, U\]"):
        _rnnt(x, labels[:, :1], np.array([3, 2]), np.array([1, 1]))
    inf = _rnnt(x, labels, np.array([0, 2]), np.array([0, 2]), blank=3, reduction="none")
    assert np.isinf(float(inf[0]))


# -- issue 26: PyTorch's time-major layout -----------------------------------

def test_ctc_time_major_input_names_the_loss_and_the_transpose():
    t, b, c = 5, 2, 4
    logits = jnp.zeros((t, b, c))
    labels, lengths, label_lengths = jnp.array([[1, 2], [3, 0]]), jnp.array([5, 5]), jnp.array([2, 1])
    with pytest.raises(ValueError, match=r"ctc_loss: .*time-major.*batch-first \[B, T, C\].*"
                                         r"jnp\.transpose\(logits, \(1, 0, 2\)\)"):
        jaxloss.ctc_loss(logits, labels, lengths, label_lengths)
    fixed = jaxloss.ctc_loss(jnp.transpose(logits, (1, 0, 2)), labels, lengths, label_lengths)
    assert np.isfinite(float(fixed))
    assert "jnp.transpose" in jaxloss.ctc_loss.__doc__ and "input_lengths" in jaxloss.ctc_loss.__doc__
