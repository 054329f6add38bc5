"""trainer/loss.py against a plain-Python transcription of the published formulas (GRPO, Dr. GRPO, DAPO,
truncated IS), covering what TRL cannot express (NaN engine log-probs, KL without bias correction, DAPO
normaliser spanning micro-batches, dropped groups), plus the advantage helpers."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.loss import LossConfig, compute_loss, group_advantages, importance_ratio, zero_variance_groups


def reference_loss(
    logps: list[list[float]],
    old: list[list[float]],
    adv: list[float],
    mask: list[list[int]],
    cfg: LossConfig,
    ref: list[list[float]] | None = None,
    sampling: list[list[float]] | None = None,
    num_items: float | None = None,
) -> float:
    """J = agg_t [ w_t · -min(r_t A, clip(r_t, 1-εl, 1+εh) A) + β k3_t ], written token by token."""
    per_seq_sums, per_seq_counts = [], []
    for i, row in enumerate(logps):
        total, count = 0.0, 0
        for t, lp in enumerate(row):
            if not mask[i][t]:
                continue
            r = math.exp(lp - old[i][t])
            clipped = min(max(r, 1 - cfg.epsilon_low), 1 + cfg.epsilon_high)
            term = -min(r * adv[i], clipped * adv[i])
            if cfg.is_correction and sampling is not None:
                s = sampling[i][t]
                w = 1.0 if math.isnan(s) else min(math.exp(old[i][t] - s), cfg.is_cap)
                term *= w
            if cfg.beta:
                assert ref is not None
                d = ref[i][t] - lp
                k3 = math.exp(d) - d - 1
                term += cfg.beta * k3 * (r if cfg.kl_bias_correction else 1.0)
            total += term
            count += 1
        per_seq_sums.append(total)
        per_seq_counts.append(count)
    if cfg.loss_type == "grpo":
        return sum(s / max(c, 1) for s, c in zip(per_seq_sums, per_seq_counts, strict=True)) / len(logps)
    if cfg.loss_type == "bnpo":
        return sum(per_seq_sums) / max(sum(per_seq_counts), 1)
    if cfg.loss_type == "dr_grpo":
        assert cfg.max_completion_length is not None
        return sum(per_seq_sums) / (len(logps) * cfg.max_completion_length)
    return sum(per_seq_sums) / (num_items if num_items is not None else sum(per_seq_counts))


def _inputs(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logps = -torch.rand(3, 5, generator=g, dtype=torch.float64) * 3
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.float64)
    return {
        "logps": logps,
        "old": logps + 0.4 * torch.randn(3, 5, generator=g, dtype=torch.float64),
        "sampling": logps + 0.6 * torch.randn(3, 5, generator=g, dtype=torch.float64),
        "ref": logps + 0.3 * torch.randn(3, 5, generator=g, dtype=torch.float64),
        "adv": torch.tensor([0.9, -1.4, 0.2], dtype=torch.float64),
        "mask": mask,
    }


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
@pytest.mark.parametrize(
    ("beta", "kl_bias", "is_on", "nan_sampling", "num_items"),
    [
        (0.0, True, False, False, None),
        (0.1, False, True, True, None),
        (0.1, True, True, False, 17.0),
    ],
)
def test_matches_reference(
    loss_type: str, beta: float, kl_bias: bool, is_on: bool, nan_sampling: bool, num_items: float | None
) -> None:
    x = _inputs(seed=len(loss_type) + int(beta * 10))
    if nan_sampling:
        x["sampling"][0, 1] = float("nan")  # a token the engine could not score
    cfg = LossConfig(
        loss_type=loss_type,  # type: ignore[arg-type]
        beta=beta,
        kl_bias_correction=kl_bias,
        is_correction=is_on,
        is_cap=1.3,
        max_completion_length=7,
    )
    out = compute_loss(
        x["logps"],
        x["old"],
        x["adv"],
        x["mask"],
        cfg,
        ref_logps=x["ref"],
        sampling_logps=x["sampling"],
        num_items_in_batch=num_items,
    )
    expected = reference_loss(
        x["logps"].tolist(),
        x["old"].tolist(),
        x["adv"].tolist(),
        x["mask"].int().tolist(),
        cfg,
        ref=x["ref"].tolist(),
        sampling=x["sampling"].tolist(),
        num_items=num_items,
    )
    assert abs(float(out.loss) - expected) < 1e-10
    assert math.isfinite(float(out.loss))


def test_micro_batches_accumulate_to_the_full_batch_gradient() -> None:
    """Two equal micro-batches with num_micro_batches=2 (and the dapo token total of the whole batch)
    accumulate exactly the gradient of one pass over the batch, for every aggregation."""
    g = torch.Generator().manual_seed(3)
    logps = -torch.rand(4, 5, generator=g, dtype=torch.float64) * 3
    old = logps + 0.4 * torch.randn(4, 5, generator=g, dtype=torch.float64)
    adv = torch.tensor([0.9, -1.4, 0.2, -0.3], dtype=torch.float64)
    # 8 tokens in each half, so bnpo's per-micro-batch token mean is split-invariant too.
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 0]], dtype=torch.float64)
    for loss_type in ("grpo", "bnpo", "dr_grpo", "dapo"):
        cfg = LossConfig(loss_type=loss_type, max_completion_length=5)  # type: ignore[arg-type]
        full = logps.clone().requires_grad_(True)
        compute_loss(full, old, adv, mask, cfg).loss.backward()
        split = logps.clone().requires_grad_(True)
        for rows in (slice(0, 2), slice(2, 4)):
            out = compute_loss(
                split[rows],
                old[rows],
                adv[rows],
                mask[rows],
                cfg,
                num_items_in_batch=mask.sum(),
                num_micro_batches=2,
            )
            out.loss.backward()
        assert full.grad is not None and split.grad is not None
        assert full.grad.abs().sum() > 0
        torch.testing.assert_close(split.grad, full.grad)


def test_importance_ratio_truncates_and_reports_mismatch() -> None:
    old = torch.tensor([[-1.0, -2.0, -0.5]])
    sampling = torch.tensor([[-1.0, -3.0, float("nan")]])
    mask = torch.tensor([[1.0, 1.0, 1.0]])
    ratio, stats = importance_ratio(old, sampling, mask, cap=2.0)
    # exp(0)=1, exp(1)=2.718 → capped at 2, NaN → 1
    torch.testing.assert_close(ratio, torch.tensor([[1.0, 2.0, 1.0]]))
    assert stats["is_clipped_frac"] == pytest.approx(1 / 3)
    assert stats["is_ratio_max"] == pytest.approx(2.0)
    assert stats["mismatch_abs_mean"] == pytest.approx(1 / 3)
    assert stats["mismatch_kl"] == pytest.approx((math.e - 1 - 1) / 3)


def test_is_correction_off_ignores_sampling_logps() -> None:
    x = _inputs(seed=5)
    cfg = LossConfig(is_correction=False)
    a = compute_loss(x["logps"], x["old"], x["adv"], x["mask"], cfg, sampling_logps=x["sampling"])
    b = compute_loss(x["logps"], x["old"], x["adv"], x["mask"], cfg)
    assert float(a.loss) == float(b.loss)
    assert "is_ratio_mean" not in a.stats


def test_errors_are_explicit() -> None:
    x = _inputs(seed=6)
    with pytest.raises(ValueError, match="ref_logps"):
        compute_loss(x["logps"], x["old"], x["adv"], x["mask"], LossConfig(beta=0.1))
    with pytest.raises(ValueError, match="max_completion_length"):
        compute_loss(x["logps"], x["old"], x["adv"], x["mask"], LossConfig(loss_type="dr_grpo"))


# ----------------------------------------------------------------------------------------- advantages


def test_advantages_with_std_normalisation() -> None:
    rewards = torch.tensor([[1.0, 0.0, 1.0, 0.0], [2.0, 0.0, 0.0, 0.0]])
    adv = group_advantages(rewards, scale_rewards=True)
    std0 = math.sqrt(1 / 3)  # unbiased std of {1,0,1,0}
    expected0 = [0.5 / (std0 + 1e-4), -0.5 / (std0 + 1e-4)] * 2
    torch.testing.assert_close(adv[0], torch.tensor(expected0))
    std1 = math.sqrt((1.5**2 + 3 * 0.5**2) / 3)
    torch.testing.assert_close(adv[1], torch.tensor([1.5, -0.5, -0.5, -0.5]) / (std1 + 1e-4))


def test_advantages_without_std_normalisation_dr_grpo() -> None:
    rewards = torch.tensor([[1.0, 0.0, 1.0, 0.0], [2.0, 0.0, 0.0, 0.0]])
    adv = group_advantages(rewards, scale_rewards=False)
    torch.testing.assert_close(adv, torch.tensor([[0.5, -0.5, 0.5, -0.5], [1.5, -0.5, -0.5, -0.5]]))


def test_zero_variance_groups_get_zero_advantage_and_are_flagged() -> None:
    rewards = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0], [0.2, 0.2, 0.2], [float("nan"), 1.0, float("nan")]])
    flags = zero_variance_groups(rewards)
    assert flags.tolist() == [True, False, True, True]
    adv = group_advantages(rewards, scale_rewards=True)
    assert adv[0].abs().max() == 0 and adv[2].abs().max() == 0
    assert adv[1].abs().min() > 0
    # Dropping flagged groups (DAPO dynamic sampling) keeps exactly the informative ones.
    assert rewards[~flags].tolist() == [[0.0, 1.0, 0.0]]


def test_unscorable_samples_are_left_out_of_the_baseline() -> None:
    rewards = torch.tensor([[1.0, float("nan"), 0.0, 0.0]])
    adv = group_advantages(rewards, scale_rewards=False)
    mean = 1 / 3
    torch.testing.assert_close(adv, torch.tensor([[1 - mean, 0.0, -mean, -mean]]))


def test_advantages_reject_flat_input() -> None:
    with pytest.raises(ValueError, match="num_groups"):
        group_advantages(torch.zeros(4), scale_rewards=True)
