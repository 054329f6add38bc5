"""trainer/loss.py against TRL 1.16's GRPOTrainer._compute_loss (driven directly on the tiny model).

TRL computes log-probs itself from prompt/completion ids; we feed the same model's log-probs into
`compute_loss` and compare the loss value and the gradient it sends into the model. TRL only applies the
engine importance ratio when `use_vllm` is on, so the test flips that attribute on a trainer built with
use_vllm=False (no engine is touched by `_compute_loss`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from trainer.loss import LossConfig, compute_loss

B, P, T, VOCAB_LIMIT = 4, 5, 6, 2000
TOL = 1e-5


def _zero_reward(completions: list[Any], **_: Any) -> list[float | None]:
    return [0.0] * len(completions)


@pytest.fixture(scope="module")
def trl_trainer(tiny_model_dir: Path) -> Any:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    args = GRPOConfig(
        output_dir="/tmp/rlvr-test-trl-loss",
        use_vllm=False,
        num_generations=2,
        per_device_train_batch_size=B,
        steps_per_generation=1,
        max_completion_length=T + 2,
        beta=0.0,
        report_to=[],
        use_cpu=True,
        bf16=False,
        vllm_importance_sampling_mode="token_truncate",
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=_zero_reward,
        args=args,
        train_dataset=Dataset.from_list([{"prompt": "hi"}] * B),
        processing_class=tok,
    )
    model.train()
    return trainer


def _batch(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    prompt_ids = torch.randint(0, VOCAB_LIMIT, (B, P), generator=g)
    prompt_mask = torch.ones(B, P, dtype=torch.long)
    prompt_mask[1, :2] = 0  # left padding
    completion_ids = torch.randint(0, VOCAB_LIMIT, (B, T), generator=g)
    completion_mask = torch.ones(B, T, dtype=torch.long)
    completion_mask[0, 4:] = 0  # completions of different lengths
    completion_mask[2, 2:] = 0
    return {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": torch.tensor([1.3, -0.7, 0.4, -1.1]),
    }


def _logps(trainer: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attn = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    logps, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, ids, attn, T)
    return logps


def _grads(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


CASES = [
    # (loss_type, beta, is_correction, grad_accum)
    ("grpo", 0.0, False, 1),
    ("bnpo", 0.0, False, 1),
    ("dr_grpo", 0.0, False, 1),
    ("dapo", 0.0, False, 1),
    ("grpo", 0.05, True, 1),
    ("bnpo", 0.05, True, 1),
    ("dr_grpo", 0.05, True, 1),
    ("dapo", 0.05, True, 1),
    ("grpo", 0.05, True, 2),
]


@pytest.mark.parametrize(("loss_type", "beta", "is_on", "accum"), CASES)
def test_loss_matches_trl(trl_trainer: Any, loss_type: str, beta: float, is_on: bool, accum: int) -> None:
    tr = trl_trainer
    batch = _batch(seed=CASES.index((loss_type, beta, is_on, accum)))
    with torch.no_grad():
        current = _logps(tr, batch)
    g = torch.Generator().manual_seed(1)
    mask = batch["completion_mask"].float()
    # Perturbations large enough that both clip bounds and the IS cap bind on some tokens.
    old = current + 0.35 * torch.randn(B, T, generator=g)
    sampling = old + 0.5 * torch.randn(B, T, generator=g)
    ref = current + 0.3 * torch.randn(B, T, generator=g)
    cap = 1.5
    cfg = LossConfig(
        loss_type=loss_type,  # type: ignore[arg-type]
        beta=beta,
        is_correction=is_on,
        is_cap=cap,
        epsilon_low=0.2,
        epsilon_high=0.28,
        max_completion_length=T + 2,
    )
    num_items = torch.tensor(float(mask.sum()) + 3.0)  # as if other micro-batches had 3 more tokens

    tr.loss_type, tr.beta, tr.epsilon_low, tr.epsilon_high = loss_type, beta, 0.2, 0.28
    tr.max_completion_length = T + 2
    tr.use_vllm = tr.vllm_importance_sampling_correction = is_on
    tr.current_gradient_accumulation_steps = accum
    tr.args.steps_per_generation = accum
    inputs = dict(batch, old_per_token_logps=old, ref_per_token_logps=ref, num_items_in_batch=num_items)
    # TRL computes this ratio while generating (token_truncate mode); same formula, clip_min unset.
    inputs["importance_sampling_ratio"] = torch.clamp(torch.exp((old - sampling) * mask), max=cap)

    tr.model.zero_grad()
    trl_loss = tr._compute_loss(tr.model, inputs)
    trl_loss.backward()
    trl_grad = _grads(tr.model).clone()
    trl_metrics = {k: v[-1] for k, v in tr._metrics["train"].items() if v}

    tr.model.zero_grad()
    out = compute_loss(
        _logps(tr, batch),
        old,
        batch["advantages"],
        mask,
        cfg,
        ref_logps=ref,
        sampling_logps=sampling,
        num_items_in_batch=num_items,
        num_micro_batches=accum,
    )
    out.loss.backward()
    ours_grad = _grads(tr.model)

    loss_diff = abs(float(out.loss) - float(trl_loss))
    grad_diff = float((ours_grad - trl_grad).abs().max())
    print(
        f"\n{loss_type:8s} beta={beta} is={is_on} accum={accum}: trl={float(trl_loss):+.8f} "
        f"ours={float(out.loss):+.8f} |dloss|={loss_diff:.2e} max|dgrad|={grad_diff:.2e}"
    )
    assert float(trl_loss) != 0.0
    assert loss_diff < TOL
    assert grad_diff < TOL
    assert abs(out.stats["clip_frac_low"] - trl_metrics["clip_ratio/low_mean"]) < 1e-6
    assert abs(out.stats["clip_frac_high"] - trl_metrics["clip_ratio/high_mean"]) < 1e-6
    assert out.stats["clip_frac_low"] > 0 and out.stats["clip_frac_high"] > 0
    if beta:
        assert abs(out.stats["kl"] - trl_metrics["kl"]) < TOL
    if is_on:
        assert out.stats["is_clipped_frac"] > 0
