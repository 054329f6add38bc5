"""Typed configuration of `rlvr train sft` (TOML file + `key=value` overrides).

The model section is GRPO's (trainer.config.ModelSection: path, full / lora / qlora, dtype, threads), and so
is the optimiser (OptimSection), so one TOML vocabulary covers both stages. Every field has a docstring,
shown by `--show-config`'s JSON and the README."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from rlvr.config import StrictModel, load_config
from trainer.config import GradersSection, LoggingSection, ModelSection, OptimSection
from trainer.data import DataConfig
from trainer.evaluate import DEFAULT_SCORERS, ScorerSpec


class SFTDataSection(StrictModel):
    """Training and held-out examples (TRL's formats: messages, or prompt + completion)."""

    path: Path = Path("data/train.jsonl")
    """Training JSONL; checked by `rlvr data check` before training (errors stop the run unless --skip-check)."""
    eval_path: Path | None = None
    """Held-out JSONL in the same format: held-out loss, and the contamination check of the training file."""
    max_len: int = Field(default=1024, ge=8)
    """Token limit per example (the start is kept); the check reports rows it would cut."""
    chat_template: Path | None = None
    """A Jinja chat template file to use instead of the model's (e.g. for a base model without one)."""
    near_dup_threshold: float = Field(default=0.8, gt=0, le=1)
    """The data check's near-duplicate threshold (estimated Jaccard)."""


class SFTTrainSection(StrictModel):
    """Length of the run and batching."""

    epochs: float = Field(default=1.0, gt=0)
    """Passes over the training set (ignored when steps is set)."""
    steps: int | None = Field(default=None, ge=1)
    """Optimizer steps; overrides epochs."""
    batch_size: int = Field(default=8, ge=1)
    """Examples per forward pass (padded to the longest in the batch)."""
    grad_accum: int = Field(default=1, ge=1)
    """Forward passes per optimizer step (effective batch = batch_size × grad_accum)."""
    packing: bool = False
    """Refused: without FlashAttention's varlen kernels (CPU) packed examples attend to each other, so the
    loss would not be the per-example loss."""
    seed: int = 0
    """Seeds model init of adapters, data order and dropout."""


class SFTEvalSection(StrictModel):
    """Held-out evaluation: the loss on data.eval_path, and (with tasks) greedy answers to held-out tasks judged
    through the grader service by the task's strict scorer and a format regex."""

    every: int = Field(default=0, ge=0)
    """Evaluate every N optimizer steps (0: only before and after training)."""
    at_start: bool = True
    """Evaluate the initial model too (the baseline the run must beat)."""
    batch_size: int = Field(default=16, ge=1)
    """Examples per evaluation forward pass (loss) or generation batch."""
    tasks: DataConfig | None = None
    """Held-out tasks for generation: a prompt source as in GRPO's [data] (its held-out split is used, e.g.
    reasoning_gym with eval_size); None: loss only."""
    scorer: ScorerSpec | None = None
    """Strict scorer of eval/accuracy: a grader name or {grader, field_map, fields}; None: the source's canonical
    checker (trainer.evaluate.DEFAULT_SCORERS). Never a training reward."""
    format_pattern: str | None = None
    """Regex the whole answer must match (regex grader, fullmatch, dot matches newline): eval/format_rate."""
    max_tokens: int = Field(default=128, ge=1)
    """Completion limit of held-out generation."""
    size: int | None = Field(default=None, ge=1)
    """Generate for the first N held-out tasks only."""
    examples: int = Field(default=3, ge=0)
    """Held-out prompt → answer → verdict lines logged at each evaluation (all go to eval_samples.jsonl)."""

    @field_validator("scorer", mode="before")
    @classmethod
    def _scorer_by_name(cls, value: object) -> object:
        return {"grader": value} if isinstance(value, str) else value


class SFTCheckpointSection(StrictModel):
    """Resumable checkpoints under <run_dir>/checkpoints (TRL/transformers format plus a completion marker)."""

    every: int = Field(default=0, ge=0)
    """Save every N optimizer steps (0: only the final model)."""
    keep_last: int = Field(default=2, ge=1)
    """Complete checkpoints kept."""


class SFTOutputSection(StrictModel):
    """The model directory written at the end (<run_dir>/model)."""

    merge_lora: bool = True
    """LoRA / QLoRA: merge the adapter into the (unquantized) base weights, giving a plain HF model that
    `rlvr train grpo model.path=...` takes; false keeps the adapter (loadable with peft's AutoPeftModel)."""


class SFTConfig(StrictModel):
    """`rlvr train sft --config run.toml [key=value ...]`."""

    run_dir: Path | None = None
    """Output directory (metrics.jsonl, tensorboard/, checkpoints/, model/, data_check.json); default
    runs/<config file name>."""
    model: ModelSection = Field(default_factory=lambda: ModelSection(finetune="full", shared_prefix=False))
    """Model and fine-tuning mode (full / lora / qlora), as in GRPO; shared_prefix does not apply."""
    data: SFTDataSection = Field(default_factory=lambda: SFTDataSection())
    """Training and held-out files."""
    optim: OptimSection = Field(default_factory=lambda: OptimSection(lr=2e-5))
    """AdamW and schedule (as in GRPO)."""
    train: SFTTrainSection = Field(default_factory=lambda: SFTTrainSection())
    """Epochs / steps and batching."""
    eval: SFTEvalSection = Field(default_factory=lambda: SFTEvalSection())
    """Held-out loss."""
    checkpoint: SFTCheckpointSection = Field(default_factory=lambda: SFTCheckpointSection())
    """Resumable checkpoints."""
    output: SFTOutputSection = Field(default_factory=lambda: SFTOutputSection())
    """Final model directory."""
    graders: GradersSection = Field(default_factory=lambda: GradersSection())
    """Grader service of the held-out generation evaluation (started here unless an address is given)."""
    logging: LoggingSection = Field(default_factory=lambda: LoggingSection())
    """TensorBoard and progress display."""
    report_every: int = Field(default=1, ge=1)
    """Log training loss every N optimizer steps."""

    @model_validator(mode="after")
    def _consistent(self) -> SFTConfig:
        if self.train.packing:
            raise ValueError(
                "train.packing = true is refused: on CPU, without FlashAttention's varlen kernels, packed examples "
                "attend to each other (the machine has no varlen attention kernel), so the loss would not be the "
                "per-example loss. Leave it false; batches are padded per batch instead."
            )
        if self.eval.tasks is not None and self.eval.scorer is None:
            default = DEFAULT_SCORERS.get(self.eval.tasks.source)
            if default is None:
                raise ValueError(f"eval.scorer: required for eval.tasks.source = {self.eval.tasks.source!r} (the "
                                 "strict checker of held-out accuracy, e.g. \"math\")")  # fmt: skip
            self.eval.scorer = ScorerSpec(grader=default)
        return self


def load_sft_config(path: str | Path | None, overrides: list[str] | None = None) -> SFTConfig:
    """Load and validate an SFT config; relative paths stay relative to the working directory."""
    cfg = load_config(SFTConfig, path, overrides)
    if cfg.run_dir is None:
        name = Path(path).stem if path is not None else "sft"
        cfg.run_dir = Path("runs") / name
    return cfg
