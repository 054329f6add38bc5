"""Hand-made GRPO groups and a weight-movement measure, shared by the trainer's CPU unit tests
(tests/unit/test_trainer_policy.py) and its CUDA tests (tests/gpu/test_cuda_trainer.py)."""

from __future__ import annotations

import torch

from rollout.types import Sample
from trainer.data import Task
from trainer.pipeline import Group, ScoredSample
from trainer.rewards import RewardOutcome

PROMPT = list(range(5, 25))
COMPLETIONS = [list(range(100 + i, 104 + 2 * i)) for i in range(4)]


def make_group(task_id: str, rewards: list[float]) -> Group:
    """A group of len(rewards) samples of PROMPT, completions cycling through COMPLETIONS."""
    samples = []
    for i, r in enumerate(rewards):
        c = COMPLETIONS[i % len(COMPLETIONS)]
        s = Sample(task_id, 0, i, PROMPT, c, "x", [-1.0] * len(c), "stop", 0)
        samples.append(ScoredSample(s, RewardOutcome(reward=r, per_grader={"math": r}, statuses={"math": "passed"})))
    return Group(Task(task_id, [{"role": "user", "content": "q"}]), len(rewards), samples)


def moved_fraction(before: list[torch.Tensor], after: list[torch.Tensor], min_abs: float) -> float:
    """Fraction of weights with |w| > min_abs that an update changed."""
    moved = total = 0
    for b, a in zip(before, after, strict=True):
        big = b.float().abs() > min_abs
        moved += int((a.float() != b.float())[big].sum())
        total += int(big.sum())
    return moved / total
