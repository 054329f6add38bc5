"""Typed configuration of `rlvr eval` and of a pipeline's eval stage (examples/eval_*.toml): the held-out tasks
(the same `[data]` split a training run holds out), the strict scorer that judges accuracy, the training
`[[rewards]]` reported beside it, generation settings, and where the rollout and grader services are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from rlvr.config import StrictModel, load_config
from trainer.config import GradersSection, GRPOConfig, RolloutSection
from trainer.data import DataConfig
from trainer.evaluate import DEFAULT_SCORERS, ScorerSpec
from trainer.rewards import RewardSpec


class GenerationSection(StrictModel):
    """How completions are generated: one greedy answer per task for accuracy, K samples for pass@k."""

    max_tokens: int = Field(default=256, ge=1)
    """Completion length limit in tokens."""
    stop: list[str] = Field(default_factory=list)
    """Stop strings."""
    samples: int = Field(default=1, ge=1)
    """K: sampled completions per task for pass@k (1: greedy only). `--samples` overrides it."""
    temperature: float = Field(default=1.0, gt=0)
    """Sampling temperature of the K samples (accuracy is always greedy)."""
    top_p: float = Field(default=1.0, gt=0, le=1)
    """Nucleus sampling mass of the K samples."""


class EvalConfig(StrictModel):
    """`rlvr eval --model DIR [--model DIR ...] --config eval.toml`."""

    data: DataConfig = Field(default_factory=lambda: DataConfig())
    """The task source; its held-out split (data.eval_size tasks, or eval_path) is the exam."""
    size: int | None = Field(default=None, ge=1)
    """Evaluate the first N held-out tasks only."""
    scorer: ScorerSpec | None = None
    """The strict scorer of accuracy (a grader name or {grader, field_map, fields}); None: the data source's
    canonical checker (addition: last_integer, reasoning_gym: reasoning_gym, humaneval: python_tests)."""
    rewards: list[RewardSpec] = Field(default_factory=list)
    """Training rewards to report beside accuracy (mean per entry); never used for accuracy."""
    generation: GenerationSection = Field(default_factory=lambda: GenerationSection())
    """Generation settings."""
    out_dir: Path | None = None
    """Where the per-model JSONL of every prompt/completion/verdict goes; default runs/eval-<time>."""
    rollout: RolloutSection = Field(default_factory=lambda: RolloutSection())
    """Rollout service (embedded per model unless addresses are given)."""
    graders: GradersSection = Field(default_factory=lambda: GradersSection())
    """Grader service."""

    @field_validator("scorer", mode="before")
    @classmethod
    def _scorer_by_name(cls, value: object) -> object:
        return {"grader": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _resolve_scorer(self) -> EvalConfig:
        if self.scorer is None:
            default = DEFAULT_SCORERS.get(self.data.source)
            if default is None:
                raise ValueError(f"scorer: required for data.source = {self.data.source!r}: name the strict checker, "
                                 "e.g. scorer = \"math\"")  # fmt: skip
            self.scorer = ScorerSpec(grader=default)
        return self

    @property
    def resolved_scorer(self) -> ScorerSpec:
        assert self.scorer is not None
        return self.scorer

    def service_config(self, model: str) -> GRPOConfig:
        """A run config that the shared service launcher (trainer.services.Services) understands."""
        data: dict[str, Any] = {
            "model": {"path": model, "finetune": "full"},
            "data": self.data.model_dump(mode="json"),
            # A run needs a reward; with none to report, the scorer stands in (it decides the grader sandbox only).
            "rewards": [r.model_dump(mode="json") for r in self.rewards] or [{"grader": self.resolved_scorer.grader}],
            "eval": {"scorer": self.resolved_scorer.model_dump(mode="json"), "rewards": bool(self.rewards)},
            "rollout": self.rollout.model_dump(mode="json"),
            "graders": self.graders.model_dump(mode="json"),
        }
        return GRPOConfig.model_validate(data)


def load_eval_config(path: str | Path | None, overrides: list[str] | None = None) -> EvalConfig:
    return load_config(EvalConfig, path, overrides)
