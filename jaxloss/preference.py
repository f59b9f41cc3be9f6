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

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import FLAG, NONNEGATIVE, POSITIVE, Domain, Interval, Static, choice, is_concrete
from ._core import Example, Layout, Mean, Role, Unreduced, builtin
from ._numerics import softplus

preference = builtin("preference")

__all__ = [
    "dpo_loss", "DPOLoss",
    "grpo_loss", "GRPOLoss",
    "orpo_loss", "ORPOLoss",
    "simpo_loss", "SimPOLoss",
    "kto_loss", "KTOLoss",
    "cpo_loss", "CPOLoss",
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


def _sorted_pairs(a, b, valid):
    """``a_i - b_(rank_i)``: the k-th smallest ``a`` paired with the k-th smallest
    ``b`` over the valid entries, each pair placed at the entry whose ``a`` it
    holds (``a_(rank_i) = a_i``), so sums and means over the valid entries are
    those of the sorted pairs. Masked entries sort last and meet each other
    (their terms leave the reduction)."""
    rank = jnp.argsort(jnp.argsort(jnp.where(valid, a, jnp.inf), stable=True), stable=True)
    b_sorted = b[jnp.argsort(jnp.where(valid, b, jnp.inf), stable=True)]
    return a - b_sorted[rank]


# ---------------------------------------------------------------------------
# DPO and its variants
# ---------------------------------------------------------------------------


_DPO_TYPES = ("sigmoid", "hinge", "ipo", "robust", "exo_pair", "nca_pair", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop")


def _dpo_validate(name, *inputs, label_smoothing=0.0, loss_type="sigmoid", **_):
    if loss_type == "exo_pair" and is_concrete(label_smoothing) and float(np.asarray(label_smoothing)) == 0:
        raise ValueError(f"{name}: loss_type='exo_pair' needs label_smoothing > 0 (the EXO paper uses 1e-3); "
                         "at 0 its KL to the one-hot label distribution is infinite")


@preference(
    class_name="DPOLoss",
    static={"loss_type": choice(*_DPO_TYPES)},
    checks={"beta": POSITIVE, "label_smoothing": _SMOOTHING, "discopop_tau": POSITIVE},
    layout=Layout(where="kernel"),  # AOT's sort over the batch leaves masked pairs out
    validate=_dpo_validate,
    example=Example(_pair_sample, sweep=("beta", (0.05, 0.1, 0.2, 0.5)), differentiable=(0, 1, 2, 3)),
)
def dpo_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, *,
             beta=0.1, label_smoothing=0.0, loss_type="sigmoid", discopop_tau=0.05, where=None):
    r"""Direct Preference Optimisation loss and the variants of TRL's ``DPOTrainer``.

    With the log-ratios of the chosen and rejected completions
    :math:`c = \pi_c - \rho_c`, :math:`r = \pi_r - \rho_r` (policy :math:`\pi`
    over reference :math:`\rho` log-probabilities), the margin
    :math:`h = c - r = (\pi_c - \pi_r) - (\rho_c - \rho_r)`, :math:`\beta > 0`,
    the label smoothing :math:`\epsilon` and
    :math:`\mathrm{ls}(z) = \log\sigma(z)`:

    .. math::
       \ell = \begin{cases}
         -(1-\epsilon)\,\mathrm{ls}(\beta h) - \epsilon\,\mathrm{ls}(-\beta h) & \text{sigmoid} \\
         \max(0,\ 1 - \beta h) & \text{hinge} \\
         \bigl(h - \tfrac{1}{2\beta}\bigr)^2 & \text{ipo} \\
         \bigl(-(1-\epsilon)\,\mathrm{ls}(\beta h) + \epsilon\,\mathrm{ls}(-\beta h)\bigr) / (1 - 2\epsilon)
           & \text{robust} \\
         \sigma(\beta h)\bigl(\mathrm{ls}(\beta h) - \log(1-\epsilon)\bigr)
           + \sigma(-\beta h)\bigl(\mathrm{ls}(-\beta h) - \log\epsilon\bigr) & \text{exo\_pair} \\
         -\mathrm{ls}(\beta c) - \tfrac12\mathrm{ls}(-\beta c) - \tfrac12\mathrm{ls}(-\beta r) & \text{nca\_pair} \\
         -\mathrm{ls}(\beta c) - \mathrm{ls}(-\beta r) & \text{bco\_pair} \\
         \bigl(c - \tfrac{1}{2\beta}\bigr)^2 + \bigl(r + \tfrac{1}{2\beta}\bigr)^2 & \text{sppo\_hard} \\
         -(1-\epsilon)\,\mathrm{ls}(\beta \Delta) - \epsilon\,\mathrm{ls}(-\beta \Delta) & \text{aot, aot\_unpaired} \\
         1 - \sigma(\beta c) + \sigma(\beta r) & \text{apo\_zero} \\
         \sigma(\beta c) + 1 - \sigma(\beta h) & \text{apo\_down} \\
         -\mathrm{ls}(\beta h)\bigl(1 - \sigma(\beta h / \tau)\bigr) + e^{-\beta h}\sigma(\beta h / \tau)
           & \text{discopop}
       \end{cases}

    ``"sigmoid"`` is DPO (Rafailov et al., 2023, "Direct Preference
    Optimization: Your Language Model is Secretly a Reward Model") with the
    conservative-DPO smoothing of Mitchell (2023, "A note on DPO with noisy
    preferences"): TRL's ``loss_type="sigmoid"`` when :math:`\epsilon = 0`
    (current TRL ignores :math:`\epsilon` there; jaxloss applies it).
    ``"hinge"`` is SLiC (Zhao et al., 2023, "SLiC-HF"), ``"ipo"`` IPO (Azar et
    al., 2023, "A General Theoretical Paradigm to Understand Learning from Human
    Preferences"), ``"robust"`` the unbiased loss under label noise of
    Chowdhury et al. (2024, "Provably Robust DPO"), ``"exo_pair"`` EXO (Ji et
    al., 2024, "Towards Efficient Exact Optimization of Language Model
    Alignment"; needs :math:`\epsilon > 0`), ``"nca_pair"`` NCA (Chen et al.,
    2024, "Noise Contrastive Alignment of Language Models with Explicit
    Rewards"), ``"bco_pair"`` the paired BCO loss (Jung et al., 2024, "Binary
    Classifier Optimization"), ``"sppo_hard"`` SPPO with hard preference
    probabilities (Wu et al., 2024, "Self-Play Preference Optimization"),
    ``"aot"``/``"aot_unpaired"`` AOT (Melnyk et al., 2024, "Distributional
    Preference Alignment of LLMs via Optimal Transport"), ``"apo_zero"`` and
    ``"apo_down"`` APO (D'Oosterlinck et al., 2024, "Anchored Preference
    Optimization and Contrastive Revisions") and ``"discopop"`` DiscoPOP (Chris
    Lu et al., 2024, "Discovering Preference Optimization Algorithms with and
    for Large Language Models"), with TRL's formulas.

    AOT sorts over the batch: for ``"aot"``,
    :math:`\Delta_{(k)} = (\pi_c - \pi_r)_{(k)} - (\rho_c - \rho_r)_{(k)}`, the
    k-th smallest policy log-ratio margin against the k-th smallest reference
    one; for ``"aot_unpaired"``, :math:`\Delta_{(k)} = c_{(k)} - r_{(k)}`. The
    sort runs over the entries ``where`` keeps; the k-th sorted term is
    reported (``"none"``) and weighted at the entry holding the k-th smallest
    policy quantity (:math:`\pi_c - \pi_r`, or :math:`c`). Hinge, ipo,
    nca_pair, bco_pair, sppo_hard and the apo types ignore :math:`\epsilon`.
    The log-probabilities are used as given: pass mean per-token
    log-probabilities for IPO's length normalisation (TRL averages them itself
    for ``"ipo"``).

    Args:
      policy_chosen_logps: ``[B]`` policy log-probabilities of the chosen completions.
      policy_rejected_logps: ``[B]`` policy log-probabilities of the rejected completions.
      reference_chosen_logps: ``[B]`` reference log-probabilities of the chosen completions.
      reference_rejected_logps: ``[B]`` reference log-probabilities of the rejected completions.
      beta: :math:`\beta > 0`, the strength of the implicit KL penalty (traced).
      label_smoothing: :math:`\epsilon \in [0, 0.5)`, the assumed probability
        that a preference label is flipped (traced; sigmoid, robust, exo_pair, aot).
      loss_type: one of ``"sigmoid"``, ``"hinge"``, ``"ipo"``, ``"robust"``,
        ``"exo_pair"``, ``"nca_pair"``, ``"bco_pair"``, ``"sppo_hard"``,
        ``"aot"``, ``"aot_unpaired"``, ``"apo_zero"``, ``"apo_down"``,
        ``"discopop"`` (static).
      discopop_tau: :math:`\tau > 0`, DiscoPOP's temperature of the mixing
        coefficient (traced; TRL's and the paper's 0.05).

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
      >>> round(float(jaxloss.dpo_loss(pc, pr, rc, rr, beta=0.5, loss_type="sppo_hard")), 6)  # 0^2 + 0^2
      0.0
    """
    c = policy_chosen_logps - reference_chosen_logps
    r = policy_rejected_logps - reference_rejected_logps
    h = c - r
    eps = label_smoothing
    if loss_type in ("aot", "aot_unpaired"):
        valid = jnp.ones(h.shape, bool) if where is None else where
        if loss_type == "aot":
            delta = _sorted_pairs(policy_chosen_logps - policy_rejected_logps,
                                  reference_chosen_logps - reference_rejected_logps, valid)
        else:
            delta = _sorted_pairs(c, r, valid)
        return _sigmoid_pair(beta * delta, eps)
    z = beta * h
    if loss_type == "sigmoid":
        return _sigmoid_pair(z, eps)
    if loss_type == "hinge":
        return jnp.maximum(1.0 - z, 0.0)
    if loss_type == "ipo":
        d = h - 1.0 / (2.0 * beta)
        return d * d
    if loss_type == "robust":
        return ((1.0 - eps) * softplus(-z) - eps * softplus(z)) / (1.0 - 2.0 * eps)
    if loss_type == "exo_pair":
        # KL(softmax over {chosen, rejected} of beta*(c, r) || (1 - eps, eps))
        return (jax.nn.sigmoid(z) * (-softplus(-z) - jnp.log1p(-eps))
                + jax.nn.sigmoid(-z) * (-softplus(z) - jnp.log(eps)))
    bc, br = beta * c, beta * r
    if loss_type == "nca_pair":
        return softplus(-bc) + 0.5 * softplus(bc) + 0.5 * softplus(br)
    if loss_type == "bco_pair":
        return softplus(-bc) + softplus(br)
    if loss_type == "sppo_hard":
        half = 0.5 / beta
        return (c - half) ** 2 + (r + half) ** 2
    if loss_type == "apo_zero":
        return jax.nn.sigmoid(-bc) + jax.nn.sigmoid(br)
    if loss_type == "apo_down":
        return jax.nn.sigmoid(bc) + jax.nn.sigmoid(-z)
    # discopop: e^{-z} sigma(z / tau) as one exponent, finite where e^{-z} alone overflows
    zt = z / discopop_tau
    return softplus(-z) * jax.nn.sigmoid(-zt) + jnp.exp(-z - softplus(-zt))


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


_GRPO_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo")
#: the ``"mean"`` each loss type has in TRL's ``GRPOTrainer``
_GRPO_NORMALIZATION = {"grpo": "sequence", "sapo": "sequence", "bnpo": "token", "dapo": "token", "cispo": "token",
                       "dr_grpo": "constant"}
_NORMALIZATIONS = ("token", "sequence", "constant")
_OPTIONAL_NORMALIZATION = Static(
    "Literal['token', 'sequence', 'constant'] | None", lambda v: v is None or (isinstance(v, str) and v in
                                                                              _NORMALIZATIONS),
    "one of 'token', 'sequence', 'constant' or None", ValueError,
)


@preference(
    class_name="GRPOLoss",
    static={"loss_type": choice(*_GRPO_TYPES), "importance_sampling_level": choice("token", "sequence"),
            "kl_bias_correction": FLAG, "normalization": _OPTIONAL_NORMALIZATION},
    checks={"beta": NONNEGATIVE, "epsilon_low": Interval(0.0, 1.0, hi_open=True), "epsilon_high": NONNEGATIVE,
            "delta": POSITIVE, "sapo_temperature_pos": POSITIVE, "sapo_temperature_neg": POSITIVE},
    layout=Layout({"advantages": Role(shape="free")}, where="kernel"),
    validate=_grpo_validate,
    example=Example(_grpo_sample, sweep=("beta", (0.0, 0.04, 0.1, 0.5)), differentiable=(0, 2, 3), grad_order=1),
)
def grpo_loss(logps, old_logps, ref_logps, advantages, *, beta=0.0, epsilon_low=0.2, epsilon_high=0.2,
              loss_type="dapo", importance_sampling_level="token", delta=None, sapo_temperature_pos=1.0,
              sapo_temperature_neg=1.05, kl_bias_correction=False, normalization=None, where=None):
    r"""GRPO and its variants (TRL's ``GRPOTrainer`` loss types) per token, with a k3 KL penalty.

    With per-token log-probabilities :math:`\log\pi` (``logps``, the policy being
    trained), :math:`\log\pi_{old}` (the policy that sampled the completions),
    :math:`\log\pi_{ref}` (the reference), advantages :math:`A`, the completion
    mask :math:`m` (``where``) and the importance ratio :math:`r`, per token
    :math:`r_{bt} = e^{\log\pi_{bt} - \log\pi_{old,bt}}` or, with
    ``importance_sampling_level="sequence"`` (GSPO), one per sequence,
    :math:`r_b = \exp\bigl(\sum_t m_{bt}(\log\pi_{bt} - \log\pi_{old,bt}) / \max(1, \sum_t m_{bt})\bigr)`:

    .. math::
       \ell_{bt} = \begin{cases}
         -\min\bigl(\min(r, \delta) A,\ \operatorname{clip}(r, 1-\varepsilon_{low}, 1+\varepsilon_{high}) A\bigr)
           & \text{grpo, bnpo, dr\_grpo, dapo} \\
         -\operatorname{sg}\bigl(\min(r, \varepsilon_{high})\bigr)\, A \log\pi & \text{cispo} \\
         -\sigma\bigl(\tau_A (r - 1)\bigr)\, \tfrac{4}{\tau_A}\, A & \text{sapo}
       \end{cases}
       \; + \; \beta\, [r]\bigl(e^{\log\pi_{ref} - \log\pi} - (\log\pi_{ref} - \log\pi) - 1\bigr)

    the PPO clipped surrogate (Schulman et al., 2017) as GRPO uses it (Shao et
    al., 2024, "DeepSeekMath"), with DAPO's asymmetric "clip-higher" bounds (Yu
    et al., 2025), the two-sided clip :math:`\min(r, \delta)` of INTELLECT-2
    (``delta=None``: no cap), CISPO's clipped, stop-gradiented importance
    weight (MiniMax-M1, 2025; ScaleRL's :math:`\varepsilon_{max}` is
    ``epsilon_high`` itself, 5.0 recommended), SAPO's soft gate (Gao et al.,
    2025, "Soft Adaptive Policy Optimization": :math:`\tau_A` is
    ``sapo_temperature_pos`` where :math:`A > 0`, ``sapo_temperature_neg``
    elsewhere) and GSPO's sequence-level ratio (Zheng et al., 2025, "Group
    Sequence Policy Optimization"); :math:`\operatorname{sg}` is the
    stop-gradient. The KL term is the k3 estimator of
    :math:`\mathrm{KL}(\pi \| \pi_{ref})` (Schulman, 2020), multiplied by
    :math:`r` with ``kl_bias_correction=True`` (TRL's
    ``use_bias_correction_kl``); it is skipped when :math:`\beta = 0`.

    ``"mean"`` follows the loss type, as in TRL; ``normalization=`` overrides it:

    * ``"token"`` (bnpo, dapo, cispo): :math:`\sum m \ell / \sum m`. Its
      ``"sum_and_weight"`` is :math:`(\sum m\ell, \sum m)`, so summing both over
      micro-batches and devices gives the global token mean TRL's dapo and cispo
      divide by (its ``num_items_in_batch``);
    * ``"sequence"`` (grpo, sapo): :math:`\frac1B \sum_b \sum_t m_{bt}\ell_{bt} /
      \sum_t m_{bt}`, the mean of the per-sequence token means; a fully masked
      sequence adds 0 and still counts in :math:`B` (``"sum_and_weight"``: the
      summed sequence means and :math:`B`);
    * ``"constant"`` (dr_grpo): :math:`\sum m \ell / (B T)` with :math:`T` the
      arrays' length (Liu et al., 2025, "Dr. GRPO": pad to the maximum
      completion length; ``"sum_and_weight"``: :math:`\sum m\ell` and :math:`BT`).

    ``"sum"`` is :math:`\sum m \ell` and ``"none"`` the per-token losses (0 where
    masked) whatever the normalisation. With ``weights``, each token's loss is
    weighted in the numerator and (for ``"token"``) the denominator.
    ``old_logps`` and ``ref_logps`` are used as given: stop-gradient them if they
    come from the trained model (with ``old_logps = stop_gradient(logps)``,
    :math:`r = 1` and the clipped types' gradient is :math:`-A \nabla \log\pi`).

    Args:
      logps: ``[B, T]`` per-token log-probabilities of the sampled completions under the policy.
      old_logps: ``[B, T]`` the same under the sampling policy.
      ref_logps: ``[B, T]`` the same under the reference policy (unused when ``beta == 0``).
      advantages: ``[B]`` per-completion advantages (e.g. group-normalised rewards) or ``[B, T]``.
      beta: :math:`\beta \ge 0`, the KL coefficient (traced; 0 disables the penalty, TRL's default).
      epsilon_low: :math:`\varepsilon_{low} \in [0, 1)`, the lower clip range (traced).
      epsilon_high: :math:`\varepsilon_{high} \ge 0`, the upper clip range (traced; DAPO uses 0.28);
        for ``"cispo"`` the cap of the ratio itself.
      loss_type: ``"grpo"``, ``"bnpo"``, ``"dr_grpo"``, ``"dapo"`` (default, TRL's),
        ``"cispo"`` or ``"sapo"`` (static).
      importance_sampling_level: ``"token"`` or ``"sequence"`` (GSPO) (static).
      delta: :math:`\delta > 0`, the cap of the unclipped ratio in the clipped
        types (traced; ``None``: no cap; INTELLECT-2 recommends above :math:`1 + \varepsilon_{high}`).
      sapo_temperature_pos: :math:`\tau > 0` of SAPO's gate where :math:`A > 0` (traced).
      sapo_temperature_neg: :math:`\tau > 0` of SAPO's gate where :math:`A \le 0` (traced).
      kl_bias_correction: multiply the KL term by the importance ratio (static).
      normalization: ``None`` (the loss type's), ``"token"``, ``"sequence"`` or
        ``"constant"`` (static), the ``"mean"``'s denominator.

    Returns:
      The reduced loss; with ``reduction="none"`` the per-token losses ``[B, T]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> logps = jnp.log(jnp.array([[0.5, 0.5], [0.2, 0.2]]))
      >>> adv = jnp.array([1.0, -1.0])
      >>> float(jaxloss.grpo_loss(logps, logps, logps, adv))   # ratio 1: the mean of -A over tokens
      0.0
      >>> mask = jnp.array([[True, True], [True, False]])
      >>> float(jaxloss.grpo_loss(logps, logps, logps, adv, where=mask))   # dapo: (-1 - 1 + 1) / 3
      -0.3333333432674408
      >>> float(jaxloss.grpo_loss(logps, logps, logps, adv, where=mask, loss_type="grpo"))   # (-1 + 1) / 2
      0.0
    """
    m = None if where is None else where.astype(logps.dtype)
    a = advantages if advantages.ndim == 2 else advantages[:, None]
    log_ratio = logps - old_logps
    if importance_sampling_level == "sequence":
        n_tok = jnp.full(logps.shape[:1], logps.shape[1], logps.dtype) if m is None else jnp.sum(m, axis=1)
        masked = log_ratio if m is None else log_ratio * m
        log_ratio = (jnp.sum(masked, axis=1) / jnp.maximum(n_tok, 1.0))[:, None]
    ratio = jnp.exp(log_ratio)
    if loss_type == "cispo":
        value = -jax.lax.stop_gradient(jnp.minimum(ratio, epsilon_high)) * a * logps
    elif loss_type == "sapo":
        tau = jnp.where(a > 0, sapo_temperature_pos, sapo_temperature_neg)
        value = -jax.nn.sigmoid(tau * (ratio - 1.0)) * (4.0 / tau) * a
    else:
        clipped = jnp.clip(ratio, 1.0 - epsilon_low, 1.0 + epsilon_high)
        capped = ratio if delta is None else jnp.minimum(ratio, delta)
        value = -jnp.minimum(capped * a, clipped * a)
    value = jnp.broadcast_to(value, logps.shape)
    d = ref_logps - logps
    kl = jnp.expm1(d) - d
    if kl_bias_correction:
        kl = kl * ratio
    value = value + jnp.where(beta == 0, 0.0, beta * kl)
    norm = _GRPO_NORMALIZATION[loss_type] if normalization is None else normalization
    if norm == "token":
        return value
    n_seq, length = logps.shape
    m = jnp.ones(logps.shape, value.dtype) if m is None else m
    total = jnp.sum(m)
    if norm == "constant":
        # the mean's denominator is B*T whatever the mask: each counted token counts B*T / sum(m)
        return Unreduced(value, mean=Mean(count=jnp.where(total > 0, n_seq * length / jnp.maximum(total, 1.0), 0.0)))
    per_seq = jnp.sum(m, axis=1, keepdims=True)
    # numerator: each token's loss over its sequence's token count; denominator: B
    return Unreduced(value, mean=Mean(count=jnp.where(total > 0, n_seq / jnp.maximum(total, 1.0), 0.0),
                                      scale=jnp.broadcast_to(1.0 / jnp.maximum(per_seq, 1.0), value.shape)))


# ---------------------------------------------------------------------------
# KTO (unpaired) and CPO (reference-free)
# ---------------------------------------------------------------------------


def _kto_sample(rng: np.random.Generator) -> tuple:
    """Per-sequence log-probabilities of 6 completions, 4 of them desirable."""
    policy = -rng.uniform(5.0, 15.0, size=(6,))
    reference = policy + rng.normal(size=(6,))
    return policy.astype(np.float32), reference.astype(np.float32), np.array([1, 0, 1, 1, 0, 1], bool)


def _kto_validate(name, policy_logps, reference_logps, desirable, **_):
    if jnp.result_type(desirable) != jnp.bool_:
        raise TypeError(f"{name}: desirable must be boolean, got dtype {jnp.result_type(desirable)}")
    if tuple(desirable.shape) != tuple(policy_logps.shape):
        raise ValueError(f"{name}: desirable {tuple(desirable.shape)} must have the shape of policy_logps "
                         f"{tuple(policy_logps.shape)}")


@preference(
    class_name="KTOLoss",
    static={"loss_type": choice("kto", "apo_zero_unpaired")},
    checks={"beta": POSITIVE, "desirable_weight": NONNEGATIVE, "undesirable_weight": NONNEGATIVE},
    layout=Layout({"desirable": Role("real")}),
    validate=_kto_validate,
    example=Example(_kto_sample, sweep=("beta", (0.05, 0.1, 0.2, 0.5)), differentiable=(0, 1)),
)
def kto_loss(policy_logps, reference_logps, desirable, *, kl=0.0, beta=0.1, desirable_weight=1.0,
             undesirable_weight=1.0, loss_type="kto"):
    r"""KTO: Kahneman-Tversky optimisation on unpaired desirable and undesirable completions.

    With the log-ratio :math:`x = \pi - \rho` of a completion under the policy
    and the reference, the batch KL estimate
    :math:`z_0 = \max(0, \operatorname{sg}(\mathrm{kl}))`, :math:`\beta > 0` and
    the weights :math:`\lambda_D, \lambda_U`:

    .. math::
       \ell = \begin{cases}
         \lambda_D \bigl(1 - \sigma(\beta (x - z_0))\bigr) & \text{desirable} \\
         \lambda_U \bigl(1 - \sigma(\beta (z_0 - x))\bigr) & \text{undesirable}
       \end{cases}
       \quad\text{(kto)}, \qquad
       \ell = \begin{cases}
         \lambda_D \bigl(1 - \sigma(\beta x)\bigr) & \text{desirable} \\
         \lambda_U\, \sigma(\beta x) & \text{undesirable}
       \end{cases}
       \quad\text{(apo\_zero\_unpaired)}

    Ethayarajh et al. (2024), "KTO: Model Alignment as Prospect Theoretic
    Optimization", eq. 7, and the unpaired APO-zero of D'Oosterlinck et al.
    (2024); TRL's ``KTOTrainer``. ``kl`` is the reference point: TRL estimates
    it as the batch mean of :math:`\pi - \rho` on mismatched
    (prompt, completion) pairs, gathered over devices; it is stop-gradiented and
    clamped at 0 here, as there (``"apo_zero_unpaired"`` ignores it). ``"mean"``
    is the plain mean over the batch of the weighted terms, as TRL's (the
    weights :math:`\lambda` are not in the denominator; ``weights=`` are).

    Args:
      policy_logps: ``[B]`` policy log-probabilities of the completions (summed over tokens).
      reference_logps: ``[B]`` reference log-probabilities of the completions.
      desirable: ``[B]`` boolean, True for a desirable (chosen) completion.
      kl: the batch KL estimate :math:`z_0` (traced; a scalar; no gradient).
      beta: :math:`\beta > 0` (traced; TRL's 0.1).
      desirable_weight: :math:`\lambda_D \ge 0` (traced).
      undesirable_weight: :math:`\lambda_U \ge 0` (traced).
      loss_type: ``"kto"`` or ``"apo_zero_unpaired"`` (static).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-completion losses ``[B]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> pi, ref = jnp.array([-10.0, -10.0]), jnp.array([-12.0, -12.0])
      >>> good = jnp.array([True, False])
      >>> [round(float(v), 6) for v in jaxloss.kto_loss(pi, ref, good, beta=0.5, reduction="none")]
      [0.268941, 0.731059]
    """
    x = policy_logps - reference_logps
    if loss_type == "kto":
        z0 = jnp.maximum(jax.lax.stop_gradient(kl), 0.0)
        good = jax.nn.sigmoid(-beta * (x - z0))
        bad = jax.nn.sigmoid(-beta * (z0 - x))
    else:
        good = jax.nn.sigmoid(-beta * x)
        bad = jax.nn.sigmoid(beta * x)
    return jnp.where(desirable, desirable_weight * good, undesirable_weight * bad)


@preference(
    class_name="CPOLoss",
    static={"loss_type": choice("sigmoid", "hinge", "ipo", "simpo")},
    checks={"beta": POSITIVE, "label_smoothing": _SMOOTHING},
    example=Example(_mean_logp_sample, sweep=("beta", (0.05, 0.1, 0.2, 0.5)), differentiable=(0, 1)),
)
def cpo_loss(chosen_logps, rejected_logps, *, beta=0.1, label_smoothing=0.0, loss_type="sigmoid", simpo_gamma=0.5):
    r"""CPO: the reference-free preference loss of contrastive preference optimisation.

    With the policy log-probabilities :math:`c` and :math:`r` of the chosen and
    rejected completions, the margin :math:`h = c - r` (``"simpo"``:
    :math:`h = c - r - \gamma / \beta`), :math:`\beta > 0` and the label
    smoothing :math:`\epsilon`:

    .. math::
       \ell = \begin{cases}
         -(1-\epsilon)\log\sigma(\beta h) - \epsilon\log\sigma(-\beta h) & \text{sigmoid, simpo} \\
         \max(0,\ 1 - \beta h) & \text{hinge} \\
         \bigl(h - \tfrac{1}{2\beta}\bigr)^2 & \text{ipo}
       \end{cases}

    Xu et al. (2024), "Contrastive Preference Optimization: Pushing the
    Boundaries of LLM Performance in Machine Translation", eq. 3: DPO without a
    reference model; TRL's (experimental) ``CPOTrainer`` with ``alpha=0``. The
    full CPO objective adds the chosen completion's negative log-likelihood,
    which the user adds (TRL's ``cpo_alpha`` times it). ``"simpo"`` with mean
    per-token log-probabilities is SimPO (:func:`simpo_loss` with
    :math:`\gamma_{simpo} = \gamma`); hinge and ipo ignore :math:`\epsilon`.

    Args:
      chosen_logps: ``[B]`` policy log-probabilities of the chosen completions.
      rejected_logps: ``[B]`` the same for the rejected completions.
      beta: :math:`\beta > 0` (traced; TRL's 0.1).
      label_smoothing: :math:`\epsilon \in [0, 0.5)` (traced; sigmoid and simpo).
      loss_type: ``"sigmoid"``, ``"hinge"``, ``"ipo"`` or ``"simpo"`` (static).
      simpo_gamma: :math:`\gamma`, the target reward margin of ``"simpo"`` (traced; TRL's 0.5).

    Returns:
      The reduced loss; with ``reduction="none"`` the per-pair losses ``[B]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> c, r = jnp.array([-10.0]), jnp.array([-12.0])
      >>> round(float(jaxloss.cpo_loss(c, r, beta=0.5)), 6)  # -log sigmoid(0.5 * 2)
      0.313262
      >>> round(float(jaxloss.cpo_loss(c, r, beta=0.5, loss_type="simpo", simpo_gamma=1.0)), 6)  # -log sigmoid(0)
      0.693147
    """
    h = chosen_logps - rejected_logps
    if loss_type == "simpo":
        h = h - simpo_gamma / beta
    z = beta * h
    if loss_type in ("sigmoid", "simpo"):
        return _sigmoid_pair(z, label_smoothing)
    if loss_type == "hinge":
        return jnp.maximum(1.0 - z, 0.0)
    d = h - 1.0 / (2.0 * beta)
    return d * d


DPOLoss = dpo_loss.Loss
ORPOLoss = orpo_loss.Loss
SimPOLoss = simpo_loss.Loss
GRPOLoss = grpo_loss.Loss
KTOLoss = kto_loss.Loss
CPOLoss = cpo_loss.Loss
