"""Typed configuration of `rlvr train grpo` (TOML file + `key=value` overrides).

GRPOConfig composes the algorithm and data sections (trainer.loss.LossConfig, trainer.data.DataConfig,
trainer.rewards.RewardSpec) with the loop's own: model and fine-tuning mode, sampling, optimiser, schedule
of evaluation and checkpoints, and where the rollout and grader services are (or that they are started
as child processes). Every field has a docstring, shown by `rlvr train grpo --help-config`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from rlvr.config import StrictModel, load_config
from trainer.data import DataConfig
from trainer.evaluate import DEFAULT_SCORERS, ScorerSpec
from trainer.loss import LossConfig
from trainer.rewards import RewardSpec, check_specs


class LoraSection(StrictModel):
    """LoRA adapter shape (finetune = "lora" or "qlora")."""

    r: int = Field(default=16, ge=1)
    """Adapter rank; the rollout server must allow it (its --max-lora-rank is set from this when embedded)."""
    alpha: float = Field(default=32.0, gt=0)
    """Scaling numerator: the update is scaled by alpha / r."""
    dropout: float = Field(default=0.0, ge=0, lt=1)
    """Dropout on the adapter input (0 keeps trainer and rollout log-probs identical)."""
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    """Modules that get adapters: "all-linear" or names such as ["q_proj", "v_proj"]."""


class ModelSection(StrictModel):
    """The policy: which model, how it is fine-tuned, and on what."""

    path: str = "base"
    """HF model directory, or "base" (SmolLM2-135M-Instruct, dequantized from a Q4_1 GGUF) / "tiny" (2-layer random
    Llama) from the cache."""
    finetune: Literal["full", "lora", "qlora"] = "lora"
    """full: every weight (pushed whole each step); lora: a peft adapter (only it is pushed); qlora: LoRA on a
    4-bit NF4 base (bitsandbytes; CUDA or CPU)."""
    lora: LoraSection = Field(default_factory=lambda: LoraSection())
    """Adapter settings for lora / qlora."""
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    """Compute dtype of the trainer's forward and backward passes; auto = bfloat16 where the device has bf16 matmul
    kernels (a bf16 GPU; a CPU with AVX512 / AMX), else float32 (an AVX2-only CPU runs bf16 ~7-40x slower). Full
    fine-tuning always keeps float32 master weights and AdamW state (pure-bf16 AdamW rounds away every update
    below half a bf16 ulp: at lr 1e-5, every weight above ~0.008 in magnitude); bf16 then runs the passes under
    bf16 autocast. LoRA / QLoRA: the frozen base is stored in this dtype and the adapter in float32 (peft).
    Pushed weights are cast to the rollout server's dtype either way."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the trainer runs; auto = cuda when available."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, ~30% more compute; disables shared_prefix)."""
    shared_prefix: bool = True
    """Run each group's common prompt through the model once and its G completions on top of that cache
    (exact: gradients flow through the shared prompt), instead of G copies of prompt + completion."""
    groups_per_pass: int | None = Field(default=None, ge=1)
    """Groups per forward/backward pass of a policy update (None: 1 on a CPU, 8 on a GPU). 1: one pass per
    group, with shared_prefix (the fastest on a CPU). k > 1: k groups' prompt + completion rows as one padded
    batch (no prefix sharing), k times fewer kernel launches. On a GPU one group's pass is launch-bound: on an
    H200 the demo's update took 2.03 s one group per pass, 0.12 s eight (benchmarks/results/
    trainer_dtype_cuda.json). Same gradients either way (tests/unit/test_trainer_policy.py)."""
    threads: int | None = Field(default=None, ge=1)
    """torch threads of the trainer (None: torch's default). Set it when sharing cores with the rollout."""


class SamplingSection(StrictModel):
    """How rollouts are sampled for training."""

    group_size: int = Field(default=8, ge=2)
    """Samples per prompt (G); advantages are relative to the group."""
    temperature: float = Field(default=1.0, gt=0)
    """Sampling temperature (the trainer scores tokens at the same temperature)."""
    top_p: float = Field(default=1.0, gt=0, le=1)
    """Nucleus sampling mass. Below 1 the engine reports log-probs renormalised over the nucleus, which the
    trainer does not reproduce: it needs loss.is_correction = false."""
    top_k: int = -1
    """Top-k sampling; -1 (or 0) disables. Above 0 it needs loss.is_correction = false (see top_p)."""
    max_tokens: int = Field(default=256, ge=1)
    """Completion length limit in tokens."""
    stop: list[str] = Field(default_factory=list)
    """Stop strings."""


class OptimSection(StrictModel):
    """AdamW, learning-rate schedule and gradient handling."""

    lr: float = Field(default=1e-5, gt=0)
    """Peak learning rate."""
    weight_decay: float = Field(default=0.0, ge=0)
    """AdamW weight decay."""
    betas: tuple[float, float] = (0.9, 0.99)
    """AdamW betas."""
    eps: float = Field(default=1e-8, gt=0)
    """AdamW epsilon."""
    schedule: Literal["constant", "linear", "cosine"] = "constant"
    """Decay after warm-up (transformers.get_scheduler), reaching 0 at train.steps. A decaying schedule needs the
    run to end at train.steps, so it is refused together with train.max_time_s (a time budget may stop the run
    anywhere before it); warm-up alone is allowed."""
    warmup_steps: int = Field(default=0, ge=0)
    """Linear warm-up from 0 to lr over this many steps (transformers' convention: the first update uses lr 0
    when warm-up is on)."""
    max_grad_norm: float | None = Field(default=1.0, gt=0)
    """Clip the global gradient norm (None disables)."""


class TrainSection(StrictModel):
    """Length of the run and the async pipeline."""

    steps: int = Field(default=100, ge=1)
    """Optimizer steps (policy version = step)."""
    max_time_s: float | None = Field(default=None, gt=0)
    """Also stop once this many seconds of training have passed (the metrics clock: set-up and held-out
    evaluation excluded, continued across resumes); the end-of-run evaluation and checkpoint still happen. The
    progress ETA counts down to whichever of train.steps and this budget comes first. Not combinable with a
    decaying optim.schedule (it would not end where the run ends)."""
    prompts_per_step: int = Field(default=8, ge=1)
    """Groups (prompts × group_size samples) per optimizer step. Each group is one forward/backward pass and
    gradients accumulate over the step's groups, so memory is bounded by one group whatever this is."""
    num_iterations: int = Field(default=1, ge=1)
    """PPO epochs: optimizer updates per batch (old log-probs are taken before the first)."""
    max_staleness: int = Field(default=1, ge=0)
    """Largest (trainer version − sample version) a sample may have; 0 = synchronous (generation waits for
    the weights of the current step). Older samples are dropped, counted, and their prompts re-generated."""
    seed: int = 0
    """Seeds the trainer's python and torch RNGs (e.g. LoRA initialisation). Not rollout sampling: the trainer
    sends no per-request seed (vLLM's CPU build refuses them, see rollout.types.SamplingConfig.seed); samples
    come from the rollout engine's own RNG (the rollout server's `seed`), so they are not reproducible across
    runs. Data order and generated datasets use `data.seed`."""


class EvalSection(StrictModel):
    """Held-out evaluation: greedy (temperature 0) on data's held-out tasks; accuracy is judged by an
    independent strict scorer (never the training rewards, whose means are reported beside it)."""

    scorer: ScorerSpec | None = None
    """The scorer of eval/accuracy: a grader name ("last_integer") or {grader, field_map, fields}. None: the
    data source's canonical checker (addition: last_integer, reasoning_gym: reasoning_gym, humaneval:
    python_tests); jsonl and hf sources must name one."""
    examples: int = Field(default=5, ge=0)
    """Held-out prompt → answer → verdict lines printed at each evaluation (every row is appended to
    <run_dir>/eval_samples.jsonl)."""
    rewards: bool = True
    """Also grade the held-out answers with the training rewards (reported as eval/rewards/*)."""

    @field_validator("scorer", mode="before")
    @classmethod
    def _scorer_by_name(cls, value: object) -> object:
        return {"grader": value} if isinstance(value, str) else value

    every: int = Field(default=10, ge=0)
    """Evaluate every N steps (0: only before and after training)."""
    at_start: bool = True
    """Evaluate the initial policy before the first step."""
    at_end: bool = True
    """Evaluate after the last step."""
    max_tokens: int | None = Field(default=None, ge=1)
    """Completion limit for evaluation (None: sampling.max_tokens)."""
    size: int | None = Field(default=None, ge=1)
    """Evaluate the first N held-out tasks only (None: all of data.eval_size)."""


class CheckpointSection(StrictModel):
    """Resumable checkpoints under <run_dir>/checkpoints."""

    every: int = Field(default=0, ge=0)
    """Save every N steps (0: only at the end)."""
    every_s: float | None = Field(default=None, gt=0)
    """Also save once this many seconds of wall time have passed since training started or since the last
    save (benchmarks/grpo.py scores such checkpoints afterwards on a wall clock)."""
    keep_last: int = Field(default=2, ge=1)
    """Checkpoints kept (older ones are deleted after a successful save)."""
    at_end: bool = True
    """Save after the last step."""


class RolloutSection(StrictModel):
    """The rollout (vLLM) service: given addresses, or started as a child process on loopback."""

    address: list[str] = Field(default_factory=list)
    """host:port of running replicas; empty = start one (`python -m rollout.server`) and stop it on exit."""
    token: str | None = None
    """Shared token of the replicas (or $RLVR_ROLLOUT_TOKEN)."""
    tls_ca: Path | None = None
    """CA bundle for TLS replicas."""
    threads: int | None = Field(default=None, ge=1)
    """Embedded server: engine OpenMP threads (unpinned, so it shares cores with the trainer)."""
    max_model_len: int = Field(default=1024, ge=16)
    """Embedded server: prompt + completion token limit."""
    kv_cache_gib: float = Field(default=1.0, gt=0)
    """Embedded server: KV cache size."""
    dtype: Literal["auto", "bfloat16", "float32", "float16"] = "auto"
    """Embedded server: engine dtype."""
    lora_mode: Literal["auto", "native", "merge"] = "auto"
    """Embedded server, LoRA runs: serve the pushed adapter through vLLM's LoRA layers (native) or merged into the
    weights (merge: several times faster generation on CPU). auto: merge on CPU, native elsewhere."""
    extra_args: list[str] = Field(default_factory=list)
    """Embedded server: further command-line flags."""
    start_timeout_s: float = Field(default=600.0, gt=0)
    """How long the embedded server (and any given replica) may take to report SERVING."""
    outage_timeout_s: float = Field(default=1800.0, gt=0)
    """How long training stays paused waiting for an unreachable rollout server before it gives up."""
    request_timeout_s: float = Field(default=600.0, gt=0)
    """Deadline of one generation call."""


class GradersSection(StrictModel):
    """The grader service: a given address, or started as a child process on loopback."""

    address: str | None = None
    """host:port of a running grader service; None = start one (`python -m graders.server`)."""
    token: str | None = None
    """Shared token (or $RLVR_GRADER_TOKEN)."""
    tls_ca: Path | None = None
    """CA bundle for a TLS service."""
    sandbox: Literal["auto", "docker", "bwrap", "none"] | None = None
    """Embedded server's sandbox backend; None = "auto" when a grader the run uses is sandboxed (as the
    service's ListGraders says), else "none"."""
    config: Path | None = None
    """Embedded server: its own TOML config (see examples/graders.toml)."""
    retries: int = Field(default=3, ge=0)
    """Re-grades of a sample whose grader gave no verdict (INFRA_ERROR) or timed out, with backoff."""
    backoff_s: float = Field(default=1.0, ge=0)
    """First retry delay; doubles each retry."""
    timeout_s: float = Field(default=120.0, gt=0)
    """Deadline of one grading call."""
    start_timeout_s: float = Field(default=300.0, gt=0)
    """How long the embedded server may take to start."""


class LoggingSection(StrictModel):
    """Where metrics go."""

    tensorboard: bool = True
    """Write TensorBoard event files to <run_dir>/tensorboard."""
    progress: Literal["auto", "rich", "plain", "off"] = "auto"
    """auto: a live progress bar on a terminal, plain log lines otherwise."""


class GRPOConfig(StrictModel):
    """`rlvr train grpo --config run.toml [key=value ...]`."""

    run_dir: Path | None = None
    """Output directory (metrics.jsonl, tasks.jsonl, tensorboard/, checkpoints/, service logs); default
    runs/<config file name>."""
    model: ModelSection = Field(default_factory=lambda: ModelSection())
    """Policy model and fine-tuning mode."""
    data: DataConfig = Field(default_factory=lambda: DataConfig())
    """Training prompts and the held-out split."""
    rewards: list[RewardSpec] = Field(default_factory=lambda: [RewardSpec(grader="math")])
    """Graders whose weighted rewards sum to each sample's reward."""
    loss: LossConfig = Field(default_factory=lambda: LossConfig())
    """GRPO objective (clipping, KL, aggregation, IS correction)."""
    sampling: SamplingSection = Field(default_factory=lambda: SamplingSection())
    """Training rollouts."""
    optim: OptimSection = Field(default_factory=lambda: OptimSection())
    """Optimiser and schedule."""
    train: TrainSection = Field(default_factory=lambda: TrainSection())
    """Run length and async pipeline."""
    eval: EvalSection = Field(default_factory=lambda: EvalSection())
    """Held-out evaluation."""
    checkpoint: CheckpointSection = Field(default_factory=lambda: CheckpointSection())
    """Checkpoints (resume with --resume)."""
    rollout: RolloutSection = Field(default_factory=lambda: RolloutSection())
    """Rollout service."""
    graders: GradersSection = Field(default_factory=lambda: GradersSection())
    """Grader service."""
    logging: LoggingSection = Field(default_factory=lambda: LoggingSection())
    """Metrics outputs."""

    @model_validator(mode="after")
    def _consistent(self) -> GRPOConfig:
        check_specs(self.rewards)
        if self.loss.loss_type == "dr_grpo" and self.loss.max_completion_length is None:
            raise ValueError("loss.max_completion_length is required for loss_type = \"dr_grpo\"")
        s = self.sampling
        if self.loss.is_correction and (s.top_p < 1 or s.top_k > 0):
            raise ValueError(
                f"sampling.top_p = {s.top_p} / sampling.top_k = {s.top_k} truncate the sampling distribution: the "
                "engine renormalises its log-probs over the kept tokens and the trainer's are not, so "
                "loss.is_correction = true would weigh tokens by a biased importance ratio. Set sampling.top_p = 1 "
                "and sampling.top_k = -1, or loss.is_correction = false"
            )
        if self.train.max_time_s is not None and self.optim.schedule != "constant":
            raise ValueError(
                f"optim.schedule = \"{self.optim.schedule}\" decays to 0 at train.steps, but train.max_time_s = "
                f"{self.train.max_time_s} may end the run earlier, leaving the decay unfinished. Use optim.schedule = "
                "\"constant\" (warm-up is allowed) or drop train.max_time_s"
            )
        evaluates = self.eval.at_start or self.eval.at_end or self.eval.every > 0
        if self.eval.scorer is None and evaluates:
            default = DEFAULT_SCORERS.get(self.data.source)
            if default is None:
                raise ValueError(
                    f"eval.scorer: required for data.source = {self.data.source!r}: name the strict checker of "
                    "held-out accuracy, e.g. scorer = \"math\" or { grader = \"math\", field_map = { answer = "
                    "\"solution\" } } (the training rewards never grade the held-out exam)"
                )
            self.eval.scorer = ScorerSpec(grader=default)
        return self

    @property
    def scorer(self) -> ScorerSpec | None:
        """The resolved held-out scorer (set by validation; None only for a run that never evaluates)."""
        return self.eval.scorer

    def used_graders(self) -> list[str]:
        """Every grader the run calls: the rewards' and the held-out scorer's."""
        scorer = [self.scorer.grader] if self.scorer is not None else []
        return sorted({*(s.grader for s in self.rewards), *scorer})


def load_grpo_config(path: str | Path | None, overrides: list[str] | None = None) -> GRPOConfig:
    """Load and validate a GRPO config; relative paths in it stay relative to the working directory."""
    cfg = load_config(GRPOConfig, path, overrides)
    if cfg.run_dir is None:
        name = Path(path).stem if path is not None else "grpo"
        cfg.run_dir = Path("runs") / name
    return cfg
