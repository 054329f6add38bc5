"""Held-out evaluation by an independent strict scorer: the one place that says how well a policy does.

Accuracy is judged by the task's canonical checker (a grader of the grader service named by a ScorerSpec:
`last_integer` for addition, `reasoning_gym` for reasoning-gym tasks, `python_tests` for code), never by the
run's training rewards: a reward a policy has learned to game would otherwise grade its own exam. The
rewards may be graded too; their means are reported separately, labelled as rewards.

    report = await evaluate(held_out, rollout_client, grader_client, ScorerSpec(grader="last_integer"),
                            SamplingConfig(n=1, temperature=0.0, max_tokens=16), adapter="policy")
    report.accuracy, report.rows[0].completion, report.rows[0].verdict

Used by the GRPO trainer; the SFT stage, distillation and `rlvr eval` are meant to call `evaluate` too (a
new task type needs only its scorer's name in DEFAULT_SCORERS or in its config)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import Field

from graders.types import GradeItem
from rlvr.config import StrictModel
from rollout.types import PromptInput, Sample, SamplingConfig
from trainer.data import Task
from trainer.pipeline import GradeRetry, ScoredSample, grade_sample
from trainer.rewards import RewardOutcome, RewardSpec

DEFAULT_SCORERS = {"addition": "last_integer", "reasoning_gym": "reasoning_gym", "humaneval": "python_tests"}
"""The canonical checker of each built-in data source (jsonl / hf sources name theirs in eval.scorer)."""


class ScorerSpec(StrictModel):
    """The strict scorer of held-out accuracy: a grader of the grader service and the fields it gets."""

    grader: str
    """Grader name, e.g. "last_integer", "reasoning_gym", "math", "python_tests"."""
    field_map: dict[str, str] = Field(default_factory=dict)
    """Scorer field ← task field, e.g. {"answer": "solution"}; unmapped task fields keep their names."""
    fields: dict[str, Any] = Field(default_factory=dict)
    """Static fields for every item (a task's own fields take precedence)."""

    def task_for(self, task: Task) -> Task:
        """The task with its fields renamed as the scorer reads them."""
        mapped = dict(task.fields)
        for scorer_field, task_field in self.field_map.items():
            if task_field in task.fields:
                mapped[scorer_field] = task.fields[task_field]
        return Task(task.id, task.messages, mapped, task.source)

    def as_reward(self) -> RewardSpec:
        return RewardSpec(grader=self.grader, fields=self.fields, name=f"scorer:{self.grader}")


class RolloutLike(Protocol):
    """What generates the answers: the rollout service's client (rollout.client.RolloutClient), or a GGUF file
    run by llama.cpp (trainer.gguf_rollout.GgufRollout)."""

    async def generate(
        self, prompts: Sequence[PromptInput], params: SamplingConfig | None = None, adapter: str | None = None
    ) -> list[Sample]: ...


class GraderLike(Protocol):
    def grade_stream(self, items: Sequence[GradeItem]) -> Any: ...


@dataclass
class EvalRow:
    """One held-out task: what was asked, what the policy answered, and the scorer's verdict."""

    task_id: str
    prompt: str
    completion: str
    gold: Any
    verdict: str
    """The scorer's status ("passed", "failed", ...), or "no_verdict" when it gave none (infra failure)."""
    correct: bool
    message: str = ""
    rewards: dict[str, float] | None = None
    """The training rewards of this completion (None when they were not graded or gave no verdict)."""
    completion_tokens: int = 0
    """Tokens generated, as the model's own tokenizer counts them (an end-of-generation token included)."""


@dataclass
class EvalReport:
    """Accuracy by the scorer over the held-out tasks it judged, with every row."""

    scorer: str
    rows: list[EvalRow] = field(default_factory=list)
    reward_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def judged(self) -> list[EvalRow]:
        return [r for r in self.rows if r.verdict != "no_verdict"]

    @property
    def accuracy(self) -> float:
        judged = self.judged
        return sum(r.correct for r in judged) / len(judged) if judged else float("nan")

    def metrics(self, prefix: str = "eval/") -> dict[str, float]:
        """eval/accuracy (by the scorer) and eval/rewards/* (the training rewards, for comparison)."""
        out = {
            f"{prefix}accuracy": self.accuracy,
            f"{prefix}correct": float(sum(r.correct for r in self.rows)),
            f"{prefix}samples": float(len(self.judged)),
            f"{prefix}scorer_no_verdict": float(len(self.rows) - len(self.judged)),
        }
        out.update(self.reward_metrics)
        return out

    def examples(self, k: int = 5) -> str:
        """The first k rows as `prompt → answer → verdict` lines (the same tasks at every evaluation)."""
        lines = []
        for r in self.rows[:k]:
            answer = r.completion.strip().replace("\n", " ⏎ ")
            gold = f" (gold {r.gold})" if r.gold is not None else ""
            lines.append(f"  {_short(r.prompt, 70)!r} → {_short(answer, 70)!r} → {r.verdict}{gold}")
        return "\n".join(lines)

    def write_jsonl(self, path: Path, step: int) -> None:
        """Append every row, tagged with the step, to `path` (e.g. <run_dir>/eval_samples.jsonl)."""
        with path.open("a", encoding="utf-8") as f:
            for r in self.rows:
                f.write(json.dumps({"step": step, "scorer": self.scorer, **asdict(r)}) + "\n")


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


NO_VERDICT_REASONS = ("invalid_request", "infra_error")
"""The `message` of a row without a verdict: the grader rejected the request, or gave none after the retries."""


def _no_verdict_reason(counts: Counter[str]) -> str:
    return NO_VERDICT_REASONS[0] if counts["grader_invalid"] else NO_VERDICT_REASONS[1]


def prompt_text(task: Task) -> str:
    """The task's user-visible question (its last user message)."""
    users = [m["content"] for m in task.messages if m["role"] == "user"]
    return users[-1] if users else task.messages[-1]["content"]


async def evaluate(
    tasks: Sequence[Task],
    rollout: RolloutLike,
    grader: GraderLike,
    scorer: ScorerSpec,
    sampling: SamplingConfig,
    *,
    adapter: str | None = None,
    rewards: Sequence[RewardSpec] = (),
    retry: GradeRetry | None = None,
) -> EvalReport:
    """Generate one completion per task (as `sampling` says; greedy for a fixed exam), judge each with the
    scorer and, when given, grade it with the training rewards too. Grader infrastructure failures are
    retried; a task still without a verdict is reported as such, never counted wrong."""
    from trainer.metrics import sample_metrics

    retry = retry or GradeRetry()
    prompts = [PromptInput(id=t.id, messages=t.messages) for t in tasks]
    samples = await rollout.generate(prompts, sampling, adapter)
    counts: Counter[str] = Counter()
    judge = scorer.as_reward()
    # Per sample, why the scorer gave no verdict: the grader rejected the request, or its retries ran out.
    reasons: dict[int, Counter[str]] = {}

    async def one(sample: Sample) -> tuple[RewardOutcome | None, RewardOutcome | None]:
        task = tasks[sample.prompt_index]
        mine = reasons.setdefault(id(sample), Counter())
        verdict = grade_sample(grader, scorer.task_for(task), sample.text, [judge], retry, mine)
        if not rewards:
            return await verdict, None
        both = await asyncio.gather(verdict, grade_sample(grader, task, sample.text, rewards, retry, counts))
        return both[0], both[1]

    graded = await asyncio.gather(*(one(s) for s in samples))
    report = EvalReport(scorer=scorer.grader)
    scored: list[ScoredSample] = []
    for sample, (verdict, reward) in zip(samples, graded, strict=True):
        task = tasks[sample.prompt_index]
        status = verdict.statuses.get(judge.key, "no_verdict") if verdict and verdict.reward is not None else None
        report.rows.append(EvalRow(
            task_id=task.id, prompt=prompt_text(task), completion=sample.text,
            gold=scorer.task_for(task).fields.get("answer"), verdict=status or "no_verdict",
            correct=status == "passed", message=(verdict.messages.get(judge.key, "") if verdict else
                                                 _no_verdict_reason(reasons[id(sample)])),
            rewards=dict(reward.per_grader) if reward is not None and reward.reward is not None else None,
            completion_tokens=len(sample.token_ids),
        ))  # fmt: skip
        if reward is not None and reward.reward is not None:
            scored.append(ScoredSample(sample, reward))
    if rewards:
        metrics = sample_metrics(scored, rewards, prefix="eval/rewards/")
        metrics["eval/rewards/no_verdict"] = float(len(samples) - len(scored))
        report.reward_metrics = metrics
    return report

