"""GRPO objective: group-relative advantages and the token-level clipped surrogate.

Semantics follow TRL 1.16's `GRPOTrainer._compute_loss` (tests check agreement to 1e-5) so results are
comparable with the reference implementation, but the functions take plain tensors: our trainer computes
log-probs itself and overlaps rollouts with training, which TRL's loop cannot do.

Notation (all [B, T] over completion tokens only, B = sequences, T = padded completion length):
  logps           trainer log-probs under the current parameters (requires grad)
  old_logps       trainer log-probs before this optimizer step (detached); ratio = exp(logps - old_logps)
  sampling_logps  log-probs the rollout engine reported when it sampled the tokens
  ref_logps       reference-model log-probs (k3 KL penalty when beta > 0)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from rlvr.config import StrictModel

LossType = Literal["grpo", "dr_grpo", "dapo", "bnpo"]

# TRL adds this to the group std so a near-constant group does not blow up the advantages.
STD_EPS = 1e-4


class LossConfig(StrictModel):
    """How per-token losses are clipped, corrected and aggregated."""

    loss_type: LossType = "dapo"
    """Aggregation: grpo = mean over each sequence's tokens then over sequences; bnpo = mean over all tokens
    of the micro-batch; dr_grpo = sum / (sequences × max_completion_length); dapo = sum / tokens of the whole
    generation batch (`num_items_in_batch`), so long and short completions weigh the same per token."""
    epsilon_low: float = 0.2
    """Lower clip: the ratio is clipped at 1 - epsilon_low (binds for negative advantages)."""
    epsilon_high: float = 0.28
    """Upper clip: the ratio is clipped at 1 + epsilon_high (binds for positive advantages; DAPO)."""
    beta: float = 0.0
    """Weight of the k3 KL penalty to the reference model; 0 disables it (and the reference model)."""
    kl_bias_correction: bool = True
    """Multiply the per-token KL by the policy ratio (unbiased reverse-KL gradient; TRL's default)."""
    scale_rewards: bool = True
    """Divide group-centred rewards by the group std; False is Dr. GRPO (no std normalisation)."""
    drop_zero_variance_groups: bool = False
    """Drop groups whose samples all got the same reward (no learning signal; DAPO dynamic sampling)."""
    is_correction: bool = True
    """Multiply each token's loss by the truncated importance ratio between trainer and rollout engine."""
    is_cap: float = 2.0
    """Upper truncation of the trainer/engine importance ratio."""
    max_completion_length: int | None = None
    """Constant normaliser of dr_grpo (set it to the sampling max_tokens); required for loss_type dr_grpo."""


@dataclass
class LossOutput:
    """The scalar to back-propagate and float statistics for logging."""

    loss: torch.Tensor
    stats: dict[str, float] = field(default_factory=dict)


def zero_variance_groups(rewards: torch.Tensor) -> torch.Tensor:
    """[num_groups, G] rewards → Bool[num_groups]: True where every (non-NaN) reward of the group is equal."""
    filled_max = torch.nan_to_num(rewards, nan=-torch.inf).amax(dim=1)
    filled_min = torch.nan_to_num(rewards, nan=torch.inf).amin(dim=1)
    # A group with fewer than two scored samples has no variance either.
    return ~(filled_max > filled_min)


def group_advantages(rewards: torch.Tensor, scale_rewards: bool) -> torch.Tensor:
    """Group-relative advantages (r - mean) / (std + 1e-4), std unbiased as in TRL; NaN rewards (unscorable
    samples) are left out of the baseline and get advantage 0."""
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [num_groups, G], got shape {tuple(rewards.shape)}")
    rewards = rewards.to(torch.float32)
    mean = torch.nanmean(rewards, dim=1, keepdim=True)
    adv = rewards - mean
    if scale_rewards:
        count = (~torch.isnan(rewards)).sum(dim=1, keepdim=True)
        var = torch.nanmean((rewards - mean) ** 2, dim=1, keepdim=True) * count / (count - 1).clamp(min=1)
        std = torch.where(count > 1, var.sqrt(), torch.zeros_like(var))
        adv = adv / (std + STD_EPS)
    return torch.nan_to_num(adv, nan=0.0)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    return float((x * mask).sum() / mask.sum().clamp(min=1.0))


def _masked_extreme(x: torch.Tensor, mask: torch.Tensor, largest: bool) -> float:
    sel = x[mask.bool()]
    if sel.numel() == 0:
        return float("nan")
    return float(sel.max() if largest else sel.min())


def importance_ratio(
    old_logps: torch.Tensor, sampling_logps: torch.Tensor, mask: torch.Tensor, cap: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """Truncated token-level IS ratio min(exp(old - sampling), cap) and the trainer/engine mismatch stats.
    Tokens the engine could not score (NaN) get ratio 1, as in TRL."""
    diff = torch.nan_to_num((old_logps - sampling_logps) * mask, nan=0.0)
    raw = torch.exp(diff)
    ratio = torch.clamp(raw, max=cap)
    # k3 estimate of KL(engine || trainer) from the engine's own samples.
    mismatch_k3 = torch.exp(diff) - diff - 1
    stats = {
        "is_ratio_mean": _masked_mean(ratio, mask),
        "is_ratio_min": _masked_extreme(ratio, mask, largest=False),
        "is_ratio_max": _masked_extreme(ratio, mask, largest=True),
        "is_clipped_frac": _masked_mean((raw > cap).float(), mask),
        "mismatch_kl": _masked_mean(mismatch_k3, mask),
        "mismatch_abs_mean": _masked_mean(diff.abs(), mask),
    }
    return ratio.detach(), stats


def _aggregate(
    per_token_loss: torch.Tensor,
    mask: torch.Tensor,
    cfg: LossConfig,
    num_items_in_batch: float | torch.Tensor | None,
    num_micro_batches: int,
) -> torch.Tensor:
    if cfg.loss_type == "grpo":
        per_seq = (per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
        return per_seq.mean() / num_micro_batches
    if cfg.loss_type == "bnpo":
        return (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0) / num_micro_batches
    if cfg.loss_type == "dr_grpo":
        if cfg.max_completion_length is None:
            raise ValueError("loss.max_completion_length is required for loss_type='dr_grpo'")
        denom = per_token_loss.size(0) * cfg.max_completion_length
        return (per_token_loss * mask).sum() / denom / num_micro_batches
    # dapo: the normaliser already spans every micro-batch of the generation batch.
    total = mask.sum() if num_items_in_batch is None else torch.as_tensor(num_items_in_batch, device=mask.device)
    return (per_token_loss * mask).sum() / total.to(per_token_loss.dtype).clamp(min=1.0)


def compute_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cfg: LossConfig,
    *,
    ref_logps: torch.Tensor | None = None,
    sampling_logps: torch.Tensor | None = None,
    num_items_in_batch: float | torch.Tensor | None = None,
    num_micro_batches: int = 1,
) -> LossOutput:
    """Clipped-surrogate GRPO loss of one micro-batch.

    `num_items_in_batch` (dapo) is the completion-token count of the whole generation batch this micro-batch
    belongs to (defaults to this micro-batch's); `num_micro_batches` divides the other aggregations so that
    gradients accumulated over micro-batches average them."""
    # The group's advantages and the engine's log-probs are built on the CPU; the policy may run on a GPU.
    dev = logps.device
    mask = mask.to(dev, logps.dtype)
    adv = advantages.to(dev, logps.dtype)
    if adv.dim() == 1:
        adv = adv.unsqueeze(1)
    old_logps = old_logps.detach().to(dev)
    sampling_logps = None if sampling_logps is None else sampling_logps.to(dev)
    ref_logps = None if ref_logps is None else ref_logps.to(dev)
    coef_1 = torch.exp(logps - old_logps)
    coef_2 = torch.clamp(coef_1, 1 - cfg.epsilon_low, 1 + cfg.epsilon_high)
    per_token_loss = -torch.min(coef_1 * adv, coef_2 * adv)
    stats: dict[str, float] = {}

    if cfg.is_correction and sampling_logps is not None:
        ratio, is_stats = importance_ratio(old_logps, sampling_logps.detach(), mask, cfg.is_cap)
        per_token_loss = per_token_loss * ratio
        stats.update(is_stats)

    if cfg.beta != 0.0:
        if ref_logps is None:
            raise ValueError("beta > 0 needs ref_logps (log-probs of the reference model)")
        delta = ref_logps.detach() - logps
        per_token_kl = torch.exp(delta) - delta - 1
        if cfg.kl_bias_correction:
            per_token_kl = per_token_kl * coef_1
        per_token_loss = per_token_loss + cfg.beta * per_token_kl
        stats["kl"] = _masked_mean(per_token_kl.detach(), mask)

    loss = _aggregate(per_token_loss, mask, cfg, num_items_in_batch, num_micro_batches)
    with torch.no_grad():
        low = (coef_1 < 1 - cfg.epsilon_low) & (adv < 0)
        high = (coef_1 > 1 + cfg.epsilon_high) & (adv > 0)
        stats["clip_frac_low"] = _masked_mean(low.float(), mask)
        stats["clip_frac_high"] = _masked_mean(high.float(), mask)
        stats["clip_frac"] = _masked_mean((low | high).float(), mask)
        stats["ratio_mean"] = _masked_mean(coef_1.detach(), mask)
        stats["policy_loss"] = float(loss.detach())
        stats["tokens"] = float(mask.sum())
    return LossOutput(loss=loss, stats=stats)
