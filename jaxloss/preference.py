r"""Preference-optimisation and policy-gradient losses for language-model post-training.

The inputs are per-sequence (or, for :func:`grpo_loss`, per-token)
log-probabilities of completions under the policy being trained and, where the
method uses one, a frozen reference policy. Compute them with
:func:`jaxloss.sequence_logprobs` from logits, or with
:func:`jaxloss.linear_sequence_logprobs` straight from the hidden states and the
output embedding (streamed over the vocabulary, never building ``[B, T, V]``)::

    chosen = jaxloss.linear_sequence_logprobs(h_chosen, w_out, y_chosen, mask=m_chosen)
    loss = jaxloss.dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.1)

The log-probabilities are used as given: a sum over tokens for DPO, a mean over
tokens (``average=True``) for IPO's length normalisation, ORPO and SimPO. The
reference log-probabilities are not stop-gradiented (they are usually computed
by a frozen model; wrap them in ``jax.lax.stop_gradient`` otherwise).

``"mean"`` is the mean over preference pairs (over tokens for
:func:`grpo_loss`, with its ``normalization``); ``reduction="none"`` returns
the per-pair (per-token) losses.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ._checks import NONNEGATIVE, POSITIVE, Domain, Interval, choice
from ._core import Example, Layout, Mean, Role, Unreduced, builtin
from ._numerics import softplus

preference = builtin("preference")

__all__ = [
    "dpo_loss", "DPOLoss",
    "grpo_loss", "GRPOLoss",
    "orpo_loss", "ORPOLoss",
    "simpo_loss", "SimPOLoss",
]

_SMOOTHING = Interval(0.0, 0.5, hi_open=True)
_NEGATIVE = Domain("be < 0 (mean per-token log-probabilities)", lambda x: x < 0)


def _pair_sample(rng: np.random.Generator) -> tuple:
    """Per-sequence log-probabilities of 5 preference pairs under a policy and a reference."""
    return tuple((-rng.uniform(5.0, 15.0, size=(5,))).astype(np.float32) for _ in range(4))


def _mean_logp_sample(rng: np.random.Generator) -> tuple:
    """Mean per-token log-probabilities (negative) of 5 chosen and rejected completions."""
    return tuple((-rng.uniform(0.3, 2.5, size=(5,))).astype(np.float32) for _ in range(2))


def _sigmoid_pair(z, eps):
    """:math:`-(1-\\epsilon) \\log\\sigma(z) - \\epsilon \\log\\sigma(-z)`, stable for any ``z``."""
    return (1.0 - eps) * softplus(-z) + eps * softplus(z)


# ---------------------------------------------------------------------------
# DPO and its variants
# ---------------------------------------------------------------------------


@preference(
    class_name="DPOLoss",
    static={"loss_type": choice("sigmoid", "hinge", "ipo", "robust")},
    checks={"beta": POSITIVE, "label_smoothing": _SMOOTHING},
    example=Example(_pair_sample, sweep=("beta", (0.05, 0.1, 0.2, 0.5)), differentiable=(0, 1, 2, 3)),
)
def dpo_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, *,
             beta=0.1, label_smoothing=0.0, loss_type="sigmoid"):
    r"""Direct Preference Optimisation loss and its hinge, IPO and robust variants.

    With the log-ratio margin
    :math:`h = (\pi_c - \pi_r) - (\rho_c - \rho_r)` of the policy's (:math:`\pi`)
    over the reference's (:math:`\rho`) log-probabilities of the chosen
    (:math:`c`) and rejected (:math:`r`) completions, :math:`\beta > 0` and the
    label smoothing :math:`\epsilon`:

    .. math::
       \ell = \begin{cases}
         -(1-\epsilon)\log\sigma(\beta h) - \epsilon\log\sigma(-\beta h) & \text{sigmoid} \\
         \max(0,\ 1 - \beta h) & \text{hinge} \\
         \bigl(h - \tfrac{1}{2\beta}\bigr)^2 & \text{ipo} \\
         \bigl(-(1-\epsilon)\log\sigma(\beta h) + \epsilon\log\sigma(-\beta h)\bigr) / (1 - 2\epsilon) & \text{robust}
       \end{cases}

    ``"sigmoid"`` is DPO (Rafailov et al., 2023, "Direct Preference
    Optimization: Your Language Model is Secretly a Reward Model") with the
    conservative-DPO smoothing of Mitchell (2023, "A note on DPO with noisy
    preferences"): TRL's ``DPOTrainer`` with ``loss_type="sigmoid"`` when
    :math:`\epsilon = 0` (current TRL ignores :math:`\epsilon` there; jaxloss
    applies it). ``"hinge"`` is the SLiC-style hinge (Zhao et al., 2023,
    "SLiC-HF"), ``"ipo"`` the IPO loss (Azar et al., 2023, "A General
    Theoretical Paradigm to Understand Learning from Human Preferences") and
    ``"robust"`` the unbiased loss under label noise of Chowdhury et al. (2024,
    "Provably Robust DPO"); hinge and ipo ignore :math:`\epsilon`. The
    log-probabilities are used as given: pass mean per-token log-probabilities
    for IPO's length normalisation (TRL averages them itself for ``"ipo"``).

    Args:
      policy_chosen_logps: ``[B]`` policy log-probabilities of the chosen completions.
      policy_rejected_logps: ``[B]`` policy log-probabilities of the rejected completions.
      reference_chosen_logps: ``[B]`` reference log-probabilities of the chosen completions.
      reference_rejected_logps: ``[B]`` reference log-probabilities of the rejected completions.
      beta: :math:`\beta > 0`, the strength of the implicit KL penalty (traced).
      label_smoothing: :math:`\epsilon \in [0, 0.5)`, the assumed probability
        that a preference label is flipped (traced; ``"sigmoid"`` and ``"robust"``).
      loss_type: ``"sigmoid"``, ``"hinge"``, ``"ipo"`` or ``"robust"`` (static).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-pair losses ``[B]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> pc, pr = jnp.array([-10.0]), jnp.array([-12.0])
      >>> rc, rr = jnp.array([-11.0]), jnp.array([-11.0])
      >>> round(float(jaxloss.dpo_loss(pc, pr, rc, rr, beta=0.5)), 6)  # -log sigmoid(0.5 * 2)
      0.313262
      >>> round(float(jaxloss.dpo_loss(pc, pr, rc, rr, beta=0.5, loss_type="ipo")), 6)  # (2 - 1)^2
      1.0
    """
    h = (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - reference_rejected_logps)
    z = beta * h
    if loss_type == "sigmoid":
        return _sigmoid_pair(z, label_smoothing)
    if loss_type == "hinge":
        return jnp.maximum(1.0 - z, 0.0)
    if loss_type == "ipo":
        d = h - 1.0 / (2.0 * beta)
        return d * d
    eps = label_smoothing
    return ((1.0 - eps) * softplus(-z) - eps * softplus(z)) / (1.0 - 2.0 * eps)


@preference(
    class_name="ORPOLoss",
    checks={"beta": POSITIVE},
    layout=Layout({"chosen_logps": Role(domain=_NEGATIVE), "rejected_logps": Role(domain=_NEGATIVE)}),
    example=Example(_mean_logp_sample, sweep=("beta", (0.05, 0.1, 0.2, 0.5)), differentiable=(0, 1)),
)
def orpo_loss(chosen_logps, rejected_logps, *, beta=0.1):
    r"""The odds-ratio term of ORPO (monolithic preference optimisation).

    With the mean per-token log-probabilities :math:`c, r < 0` of the chosen
    and rejected completions and the log-odds
    :math:`\operatorname{lo}(x) = x - \log(1 - e^{x})`:

    .. math::
       \ell = -\beta \log\sigma\bigl(\operatorname{lo}(c) - \operatorname{lo}(r)\bigr)
            = -\beta \log\sigma\Bigl((c - r) - \bigl(\log(1 - e^{c}) - \log(1 - e^{r})\bigr)\Bigr)

    Hong et al. (2024), "ORPO: Monolithic Preference Optimization without
    Reference Model"; TRL's ``ORPOTrainer`` odds-ratio loss (its
    ``-beta * log_sigmoid(log_odds)``). The full ORPO objective adds the chosen
    completion's negative log-likelihood, :math:`-c`, which the user adds
    (``orpo_loss(c, r) - c.mean()``). :math:`\log(1 - e^{x})` is computed as
    ``log(-expm1(x))``; a log-probability of 0 (a certain completion) gives an
    infinite log-odds.

    Args:
      chosen_logps: ``[B]`` mean per-token log-probabilities of the chosen completions, ``< 0``.
      rejected_logps: ``[B]`` the same for the rejected completions, ``< 0``.
      beta: :math:`\beta > 0`, the weight of the odds-ratio term (traced; TRL's ``beta``, 0.1).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-pair losses ``[B]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> c, r = jnp.log(jnp.array([0.5])), jnp.log(jnp.array([0.2]))  # odds 1 and 1/4
      >>> round(float(jaxloss.orpo_loss(c, r, beta=1.0)), 6)  # -log sigmoid(log 4)
      0.223144
    """
    log_odds = (chosen_logps - rejected_logps) - (jnp.log(-jnp.expm1(chosen_logps))
                                                  - jnp.log(-jnp.expm1(rejected_logps)))
    return beta * softplus(-log_odds)


@preference(
    class_name="SimPOLoss",
    checks={"beta": POSITIVE, "label_smoothing": _SMOOTHING},
    example=Example(_mean_logp_sample, sweep=("gamma", (0.0, 0.5, 1.0, 2.0)), differentiable=(0, 1)),
)
def simpo_loss(chosen_logps, rejected_logps, *, beta=2.0, gamma=1.0, label_smoothing=0.0):
    r"""SimPO: a reference-free preference loss on length-normalised log-probabilities.

    With the mean per-token log-probabilities :math:`c` and :math:`r` of the
    chosen and rejected completions, :math:`z = \beta (c - r) - \gamma`:

    .. math:: \ell = -(1 - \epsilon)\log\sigma(z) - \epsilon \log\sigma(-z)

    Meng et al. (2024), "SimPO: Simple Preference Optimization with a
    Reference-Free Reward"; TRL's ``CPOTrainer`` with ``loss_type="simpo"``
    (its ``simpo_gamma`` is :math:`\gamma`, and it passes :math:`\gamma/\beta`
    inside the bracket, which is the same :math:`z`).

    Args:
      chosen_logps: ``[B]`` mean per-token log-probabilities of the chosen completions.
      rejected_logps: ``[B]`` the same for the rejected completions.
      beta: :math:`\beta > 0`, the reward scale (traced; the paper uses 2 to 10).
      gamma: :math:`\gamma`, the target reward margin (traced; 0.5 to 1.5 in the paper).
      label_smoothing: :math:`\epsilon \in [0, 0.5)` (traced).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-pair losses ``[B]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> c, r = jnp.array([-1.0]), jnp.array([-1.5])
      >>> round(float(jaxloss.simpo_loss(c, r, beta=2.0, gamma=1.0)), 6)  # -log sigmoid(0)
      0.693147
    """
    return _sigmoid_pair(beta * (chosen_logps - rejected_logps) - gamma, label_smoothing)


# ---------------------------------------------------------------------------
# GRPO
# ---------------------------------------------------------------------------


def _grpo_sample(rng: np.random.Generator) -> tuple:
    logps = -rng.uniform(0.5, 3.0, size=(3, 4))
    old = logps + rng.normal(size=(3, 4)) * 0.1  # ratios near 1, away from the clip kinks
    ref = logps + rng.normal(size=(3, 4)) * 0.3
    adv = rng.normal(size=(3,))
    return tuple(x.astype(np.float32) for x in (logps, old, ref, adv))


def _grpo_validate(name, logps, old_logps, ref_logps, advantages, **_):
    if logps.ndim != 2:
        raise ValueError(
            f"{name}: logps must have shape [B, T] (per-token log-probabilities), got {tuple(logps.shape)}")
    if tuple(advantages.shape) not in (tuple(logps.shape[:1]), tuple(logps.shape)):
        raise ValueError(
            f"{name}: advantages must have shape [B] = {tuple(logps.shape[:1])} or [B, T] = {tuple(logps.shape)}, "
            f"got {tuple(advantages.shape)}"
        )


@preference(
    class_name="GRPOLoss",
    static={"normalization": choice("token", "sequence", "constant")},
    checks={"beta": NONNEGATIVE, "epsilon_low": Interval(0.0, 1.0, hi_open=True), "epsilon_high": NONNEGATIVE},
    layout=Layout({"advantages": Role(shape="free")}, where="kernel"),
    validate=_grpo_validate,
    example=Example(_grpo_sample, sweep=("beta", (0.0, 0.04, 0.1, 0.5)), differentiable=(0, 2, 3), grad_order=1),
)
def grpo_loss(logps, old_logps, ref_logps, advantages, *, beta=0.0, epsilon_low=0.2, epsilon_high=0.2,
              normalization="token", where=None):
    r"""GRPO's clipped policy-gradient loss per token, with a k3 KL penalty to a reference.

    With per-token log-probabilities :math:`\log\pi` (``logps``, the policy being
    trained), :math:`\log\pi_{old}` (the policy that sampled the completions),
    :math:`\log\pi_{ref}` (the reference), the ratio :math:`r = e^{\log\pi -
    \log\pi_{old}}` and advantages :math:`A`:

    .. math::
       \ell_{bt} = -\min\bigl(r A,\ \operatorname{clip}(r, 1-\varepsilon_{low}, 1+\varepsilon_{high}) A\bigr)
         + \beta\bigl(e^{\log\pi_{ref} - \log\pi} - (\log\pi_{ref} - \log\pi) - 1\bigr)

    the PPO clipped surrogate (Schulman et al., 2017) as GRPO uses it (Shao et
    al., 2024, "DeepSeekMath"), with the k3 estimator of
    :math:`\mathrm{KL}(\pi \| \pi_{ref})` (Schulman, 2020, "Approximating KL
    divergence"), the asymmetric "clip-higher" bounds of DAPO (Yu et al., 2025)
    and the normalisations of TRL's ``GRPOTrainer`` (``loss_type`` ``"grpo"``,
    ``"bnpo"``/``"dapo"`` and ``"dr_grpo"``). With ``where`` the completion mask
    :math:`m` (``[B, T]``), ``"mean"`` is

    * ``normalization="token"``: :math:`\sum m \ell / \sum m` (DAPO, TRL's ``"dapo"``);
    * ``"sequence"``: :math:`\frac1B \sum_b \sum_t m_{bt}\ell_{bt} / \sum_t m_{bt}`,
      the mean of the per-sequence token means (the original GRPO); a fully
      masked sequence adds 0 and still counts in :math:`B`;
    * ``"constant"``: :math:`\sum m \ell / (B T)` with :math:`T` the arrays'
      length (Liu et al., 2025, "Dr. GRPO": pad to the maximum completion length).

    ``"sum"`` is :math:`\sum m \ell` and ``"none"`` the per-token losses (0 where
    masked) whatever the normalisation; ``"sum_and_weight"`` returns the
    numerator and denominator of ``"mean"`` (sequence means summed and
    :math:`B`; :math:`\sum m \ell` and :math:`BT` for ``"constant"``). With
    ``weights``, each token's loss is weighted in the numerator and (for
    ``"token"``) the denominator. ``old_logps`` and ``ref_logps`` are used as
    given: stop-gradient them if they come from the trained model (with
    ``old_logps = stop_gradient(logps)``, :math:`r = 1` and the gradient is
    :math:`-A \nabla \log\pi`).

    Args:
      logps: ``[B, T]`` per-token log-probabilities of the sampled completions under the policy.
      old_logps: ``[B, T]`` the same under the sampling policy.
      ref_logps: ``[B, T]`` the same under the reference policy (unused when ``beta == 0``).
      advantages: ``[B]`` per-completion advantages (e.g. group-normalised rewards) or ``[B, T]``.
      beta: :math:`\beta \ge 0`, the KL coefficient (traced; 0 disables the penalty, TRL's default).
      epsilon_low: :math:`\varepsilon_{low} \in [0, 1)`, the lower clip range (traced).
      epsilon_high: :math:`\varepsilon_{high} \ge 0`, the upper clip range (traced; DAPO uses 0.28).
      normalization: ``"token"``, ``"sequence"`` or ``"constant"`` (static), the ``"mean"``'s denominator.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-token losses ``[B, T]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> logps = jnp.log(jnp.array([[0.5, 0.5], [0.2, 0.2]]))
      >>> adv = jnp.array([1.0, -1.0])
      >>> float(jaxloss.grpo_loss(logps, logps, logps, adv))   # ratio 1: the mean of -A over tokens
      0.0
      >>> mask = jnp.array([[True, True], [True, False]])
      >>> float(jaxloss.grpo_loss(logps, logps, logps, adv, where=mask))   # (-1 - 1 + 1) / 3
      -0.3333333432674408
    """
    a = advantages if advantages.ndim == 2 else advantages[:, None]
    ratio = jnp.exp(logps - old_logps)
    clipped = jnp.clip(ratio, 1.0 - epsilon_low, 1.0 + epsilon_high)
    value = -jnp.minimum(ratio * a, clipped * a)
    d = ref_logps - logps
    value = value + jnp.where(beta == 0, 0.0, beta * (jnp.expm1(d) - d))
    if normalization == "token":
        return value
    n_seq, length = logps.shape
    m = jnp.ones(logps.shape, value.dtype) if where is None else where.astype(value.dtype)
    total = jnp.sum(m)
    if normalization == "constant":
        # the mean's denominator is B*T whatever the mask: each counted token counts B*T / sum(m)
        return Unreduced(value, mean=Mean(count=jnp.where(total > 0, n_seq * length / jnp.maximum(total, 1.0), 0.0)))
    per_seq = jnp.sum(m, axis=1, keepdims=True)
    # numerator: each token's loss over its sequence's token count; denominator: B
    return Unreduced(value, mean=Mean(count=jnp.where(total > 0, n_seq / jnp.maximum(total, 1.0), 0.0),
                                      scale=jnp.broadcast_to(1.0 / jnp.maximum(per_seq, 1.0), value.shape)))


DPOLoss = dpo_loss.Loss
ORPOLoss = orpo_loss.Loss
SimPOLoss = simpo_loss.Loss
GRPOLoss = grpo_loss.Loss
