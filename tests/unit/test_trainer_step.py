"""One GRPOTrainer step with a fake pipeline and rollout client: a step with nothing to learn (every group
zero-variance) pushes nothing and keeps the policy version; the next real update pushes version + 1, as the
float32 masters (the client casts them to the server's dtype)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rollout.types import Sample
from trainer.checkpoint import TrainState
from trainer.config import GRPOConfig
from trainer.data import Task
from trainer.grpo import GRPOTrainer, make_optimizer
from trainer.metrics import RunLog, read_records
from trainer.pipeline import Group, ScoredSample
from trainer.policy import Policy
from trainer.rewards import RewardOutcome


@dataclass
class Info:
    address: str
    policy_version: int


class FakeRollout:
    def __init__(self) -> None:
        self.version = 0
        self.pushes: list[tuple[int, set[torch.dtype]]] = []

    async def info(self) -> list[Info]:
        return [Info("fake:1", self.version)]

    async def update_weights(self, tensors: dict[str, torch.Tensor], version: int) -> int:
        self.pushes.append((version, {t.dtype for t in tensors.values()}))
        self.version = version
        return version


class FakePipeline:
    def __init__(self, batches: list[list[Group]]) -> None:
        self.batches = batches
        self.gen_tokens = 0
        self.versions: list[int] = []
        self.returned_slots = 0

    async def next_batch(self, version: int, resync: Any) -> tuple[list[Group], int]:
        return self.batches.pop(0), 0

    async def set_version(self, version: int) -> None:
        self.versions.append(version)

    async def batch_without_update(self, groups: int) -> None:
        self.returned_slots += groups

    def take_counts(self) -> Counter[str]:
        return Counter()


def group(task_id: str, rewards: list[float]) -> Group:
    samples = []
    for i, r in enumerate(rewards):
        s = Sample(task_id, 0, i, [5, 6, 7], [100 + i, 101], "x", [-1.0, -1.0], "stop", 0)
        samples.append(ScoredSample(s, RewardOutcome(reward=r, per_grader={"math": r}, statuses={"math": "passed"})))
    return Group(Task(task_id, [{"role": "user", "content": "q"}]), len(rewards), samples)


def trainer(tmp_path: Path, tiny: Path, rollout: FakeRollout) -> GRPOTrainer:
    cfg = GRPOConfig.model_validate({"model": {"path": str(tiny), "finetune": "full"}, "optim": {"lr": 1e-3}})
    t = GRPOTrainer.__new__(GRPOTrainer)  # the step needs no services: only what _train_step touches
    t.cfg, t.policy = cfg, Policy(cfg.model)
    t.optimizer, t.scheduler = make_optimizer(t.policy, cfg)
    t.state, t.step, t.version = TrainState(), 0, 0
    t.rollout = rollout  # type: ignore[assignment]
    t.runlog = RunLog(tmp_path, total_steps=3, start_step=0, elapsed_offset=0.0, tensorboard=False, progress="off")
    return t


async def test_a_step_without_update_pushes_nothing_and_keeps_the_version(tmp_path: Path, tiny_model_dir: Path) -> None:
    rollout = FakeRollout()
    t = trainer(tmp_path, tiny_model_dir, rollout)
    flat = [group("a", [1, 1, 1, 1]), group("b", [0, 0, 0, 0])]
    pipe = FakePipeline([flat, [group("c", [1, 0, 0, 1])], flat])
    before = [q.detach().clone() for q in t.policy.parameters()]

    await t._train_step(pipe)  # type: ignore[arg-type]
    assert (t.step, t.version, rollout.pushes, pipe.versions, pipe.returned_slots) == (1, 0, [], [], 2)
    assert all(torch.equal(a, b) for a, b in zip(before, t.policy.parameters(), strict=True))

    await t._train_step(pipe)  # type: ignore[arg-type]
    assert (t.step, t.version, pipe.versions) == (2, 1, [1])
    assert rollout.pushes == [(1, {torch.float32})]  # float32 masters; RolloutClient casts them for the server

    await t._train_step(pipe)  # type: ignore[arg-type]
    assert (t.step, t.version, len(rollout.pushes), pipe.returned_slots) == (3, 1, 1, 4)
    t.runlog.close()
    train = [r for r in read_records(tmp_path / "metrics.jsonl") if r["kind"] == "train"]
    assert [r["policy_version"] for r in train] == [0, 1, 1]
    assert [r.get("train/skipped_update", 0) for r in train] == [1, 0, 1]
