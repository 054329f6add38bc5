"""One whole optimizer step of trainer/grpo.py (`policy_update`: group passes, gradient accumulation, clipping,
the parameter update) against TRL 1.16's GRPOTrainer loss on the full batch, on a batch with zero-advantage
groups, for every loss type.

TRL is driven like its training loop drives it with one group per micro-batch: `_compute_loss` on every group
(zero-advantage ones included) with gradient-accumulation steps = groups, then `clip_grad_norm_` (what
transformers' Trainer calls) and the optimizer. Both sides step plain SGD, so the parameter change is
lr × the clipped gradient: AdamW's first step is ~lr × sign(gradient) and would hide a wrong loss scale. With
beta = 0 rlvr skips the zero-advantage groups' passes, and must still land on TRL's gradient (normalisers
count the skipped groups); with beta > 0 they are kept, since their KL term has a gradient."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from rollout.types import Sample
from trainer.config import GRPOConfig
from trainer.data import Task
from trainer.grpo import policy_update
from trainer.loss import group_advantages
from trainer.pipeline import Group, ScoredSample
from trainer.policy import Policy
from trainer.rewards import RewardOutcome

G, PROMPT_LEN, VOCAB_LIMIT, MAX_LEN = 4, 5, 2000, 8
# Groups 1 and 2 have no reward variance: advantages exactly 0.
REWARDS = [[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.5, 0.0, 1.0, 0.0]]
LR, CAP = 0.5, 1.5


def _zero_reward(completions: list[Any], **_: Any) -> list[float | None]:
    return [0.0] * len(completions)


@pytest.fixture(scope="module")
def trl_trainer(tiny_model_dir: Path) -> Any:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    args = TRLConfig(
        output_dir="/tmp/rlvr-test-trl-update", use_vllm=False, num_generations=G, per_device_train_batch_size=G,
        steps_per_generation=1, max_completion_length=MAX_LEN, report_to=[], use_cpu=True, bf16=False,
        vllm_importance_sampling_mode="token_truncate",
    )  # fmt: skip
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    data = Dataset.from_list([{"prompt": "hi"}] * G)
    trainer = GRPOTrainer(model=model, reward_funcs=_zero_reward, args=args, processing_class=tok, train_dataset=data)
    model.train()
    return trainer


def _groups(seed: int) -> list[Group]:
    g = torch.Generator().manual_seed(seed)
    groups = []
    for gi, rewards in enumerate(REWARDS):
        prompt = torch.randint(0, VOCAB_LIMIT, (PROMPT_LEN,), generator=g).tolist()
        samples = []
        for si, r in enumerate(rewards):
            n = int(torch.randint(2, MAX_LEN + 1, (1,), generator=g))
            ids = torch.randint(0, VOCAB_LIMIT, (n,), generator=g).tolist()
            logprobs = (-3 * torch.rand(n, generator=g)).tolist()  # the engine's: far enough off to hit the cap
            s = Sample(f"t{gi}", gi, si, prompt, ids, "x", logprobs, "stop", 0)
            samples.append(ScoredSample(s, RewardOutcome(reward=r, per_grader={"m": r}, statuses={"m": "passed"})))
        groups.append(Group(Task(f"t{gi}", [{"role": "user", "content": "q"}]), G, samples))
    return groups


def _perturb(model: torch.nn.Module, seed: int) -> None:
    # Moves the policy away from its reference (a fresh copy would make every KL gradient exactly 0).
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for q in model.parameters():
            q.add_(0.02 * torch.randn(q.shape, generator=g))


class RecordingSGD(torch.optim.SGD):
    """Plain SGD that keeps the (clipped) gradients it stepped with."""

    grads: dict[int, torch.Tensor]

    def step(self, closure: Any = None) -> Any:
        self.grads = {id(q): q.grad.clone() for grp in self.param_groups for q in grp["params"] if q.grad is not None}
        return super().step(closure)


def _trl_step(tr: Any, groups: list[Group], policy: Policy, cfg: GRPOConfig) -> dict[str, torch.Tensor]:
    """TRL's gradient on the full batch: every group a micro-batch, clipped, one SGD step; returns the grads."""
    lc = cfg.loss
    tr.loss_type, tr.beta, tr.epsilon_low, tr.epsilon_high = lc.loss_type, lc.beta, lc.epsilon_low, lc.epsilon_high
    tr.max_completion_length = MAX_LEN
    tr.args.use_bias_correction_kl = lc.kl_bias_correction
    tr.use_vllm = tr.vllm_importance_sampling_correction = lc.is_correction
    tr.current_gradient_accumulation_steps = tr.args.steps_per_generation = len(groups)
    num_items = torch.tensor(float(sum(len(s.sample.token_ids) for grp in groups for s in grp.samples)))
    tr.model.zero_grad(set_to_none=True)
    for grp in groups:
        comps = [s.sample.token_ids for s in grp.samples]
        width = max(len(c) for c in comps)
        ids = torch.zeros(G, width, dtype=torch.long)
        mask = torch.zeros(G, width, dtype=torch.long)
        sampling = torch.zeros(G, width)
        for i, s in enumerate(grp.samples):
            n = len(s.sample.token_ids)
            ids[i, :n], mask[i, :n] = torch.tensor(s.sample.token_ids), 1
            sampling[i, :n] = torch.tensor(s.sample.logprobs)
        prompt = torch.tensor([grp.samples[0].sample.prompt_token_ids] * G)
        inputs: dict[str, Any] = {
            "prompt_ids": prompt, "prompt_mask": torch.ones_like(prompt), "completion_ids": ids,
            "completion_mask": mask, "num_items_in_batch": num_items,
            "advantages": group_advantages(torch.tensor([[s.reward for s in grp.samples]]), lc.scale_rewards)[0],
        }  # fmt: skip
        with torch.no_grad():
            full_ids, full_mask = torch.cat([prompt, ids], 1), torch.cat([torch.ones_like(prompt), mask], 1)
            current, _, _ = tr._get_per_token_logps_and_entropies(tr.model, full_ids, full_mask, width)
        # TRL computes this at generation time (token_truncate); old log-probs = the current ones (1 iteration).
        inputs["importance_sampling_ratio"] = torch.clamp(torch.exp((current - sampling) * mask), max=lc.is_cap)
        if lc.beta:
            inputs["ref_per_token_logps"] = policy.reference_logps(inputs["prompt_ids"][0].tolist(), comps, 1.0)
        tr._compute_loss(tr.model, inputs).backward()
    if cfg.optim.max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(tr.model.parameters(), cfg.optim.max_grad_norm)
    grads = {n: q.grad.clone() for n, q in tr.model.named_parameters()}
    with torch.no_grad():
        for q in tr.model.parameters():
            q.sub_(LR * q.grad)
    return grads


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
@pytest.mark.parametrize(("beta", "max_grad_norm"), [(0.0, None), (0.0, 1e-5), (0.04, None)])
def test_update_step_matches_trl_full_batch(
    trl_trainer: Any, tiny_model_dir: Path, loss_type: str, beta: float, max_grad_norm: float | None
) -> None:
    cfg = GRPOConfig.model_validate({
        "model": {"path": str(tiny_model_dir), "dtype": "float32", "finetune": "full"},
        "loss": {"loss_type": loss_type, "beta": beta, "is_cap": CAP, "max_completion_length": MAX_LEN},
        "optim": {"max_grad_norm": max_grad_norm}, "sampling": {"group_size": G, "temperature": 1.0},
    })  # fmt: skip
    policy = Policy(cfg.model, beta=beta)
    _perturb(policy.model, seed=7)
    tr = trl_trainer
    tr.model.load_state_dict(policy.model.state_dict())
    groups = _groups(seed=len(loss_type))
    names = [n for n, _ in policy.model.named_parameters()]

    opt = RecordingSGD(policy.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    stats = policy_update(policy, opt, sched, groups, cfg)
    ours = {n: opt.grads[id(q)] for n, q in policy.model.named_parameters()}
    trl_grads = _trl_step(tr, groups, policy, cfg)

    # beta = 0: the two zero-advantage groups cost no pass; beta > 0: their KL term is trained on.
    assert stats["train/active_groups"] == (4.0 if beta else 2.0)
    trl_norm = float(torch.norm(torch.stack([g.norm() for g in trl_grads.values()])))
    our_norm = float(torch.norm(torch.stack([g.norm() for g in ours.values()])))
    assert trl_norm > 0
    assert our_norm == pytest.approx(trl_norm, rel=1e-4)
    if max_grad_norm is not None:  # clipping bound: the raw norm is far above it (clip_grad_norm_ adds 1e-6)
        assert our_norm == pytest.approx(max_grad_norm, rel=1e-2) and stats["loss/grad_norm"] > 10 * max_grad_norm
    worst = max(float((ours[n] - trl_grads[n]).abs().max()) for n in names)
    assert worst <= 1e-4 * max(float(g.abs().max()) for g in trl_grads.values())
    trl_params = dict(tr.model.named_parameters())
    for n, q in policy.model.named_parameters():
        torch.testing.assert_close(q.detach(), trl_params[n].detach(), rtol=1e-5, atol=1e-6)


def test_zero_advantage_groups_have_a_kl_gradient(tiny_model_dir: Path) -> None:
    """Why they are kept with beta > 0: alone, they still move the policy (towards the reference)."""
    zero_groups = _groups(seed=1)[1:3]
    for beta in (0.0, 0.04):
        cfg = GRPOConfig.model_validate({
            "model": {"path": str(tiny_model_dir), "dtype": "float32", "finetune": "full"},
            "loss": {"beta": beta}, "sampling": {"group_size": G},
        })  # fmt: skip
        policy = Policy(cfg.model, beta=beta)
        _perturb(policy.model, seed=7)
        opt = RecordingSGD(policy.parameters(), lr=LR)
        stats = policy_update(policy, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0), zero_groups, cfg)
        if beta:
            assert stats["train/active_groups"] == 2.0 and stats["loss/grad_norm"] > 0 and stats["loss/kl"] > 0
        else:
            assert stats["train/skipped_update"] == 1.0 and not hasattr(opt, "grads")
