"""GRPOConfig: defaults, overrides, strictness, cross-field checks, documentation of every field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from rlvr.config import ConfigError
from trainer.config import GRPOConfig, load_grpo_config
from trainer.data import DataConfig
from trainer.loss import LossConfig
from trainer.rewards import RewardSpec


def write(tmp_path: Path, text: str, name: str = "run.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_are_valid_and_compose_t1_sections() -> None:
    cfg = GRPOConfig()
    assert isinstance(cfg.data, DataConfig) and isinstance(cfg.loss, LossConfig)
    assert cfg.rewards == [RewardSpec(grader="math")]
    assert cfg.train.max_staleness == 1 and cfg.sampling.group_size == 8


def test_load_with_overrides_and_default_run_dir(tmp_path: Path) -> None:
    path = write(tmp_path, '[train]\nsteps = 5\n[[rewards]]\ngrader = "exact_match"\n', "my_run.toml")
    cfg = load_grpo_config(path, ["train.steps=7", "optim.lr=3e-5", "model.finetune=full", "loss.beta=0.02"])
    assert cfg.train.steps == 7 and cfg.optim.lr == 3e-5 and cfg.model.finetune == "full"
    assert cfg.loss.beta == 0.02 and cfg.rewards[0].grader == "exact_match"
    assert cfg.run_dir == Path("runs/my_run")
    assert load_grpo_config(path, ["run_dir=/tmp/x"]).run_dir == Path("/tmp/x")


def test_unknown_keys_are_errors_naming_file_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "[train]\nstepz = 5\n")
    with pytest.raises(ConfigError) as e:
        load_grpo_config(path)
    assert str(path) in str(e.value) and "train.stepz" in str(e.value)


@pytest.mark.parametrize(
    ("override", "field"),
    [("train.max_staleness=-1", "train.max_staleness"), ("sampling.group_size=1", "sampling.group_size"),
     ("model.finetune=\"half\"", "model.finetune"), ("optim.lr=0", "optim.lr")],
)  # fmt: skip
def test_bad_values_name_the_field(override: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_grpo_config(None, [override])


def test_cross_field_checks() -> None:
    with pytest.raises(ConfigError, match="max_completion_length"):
        load_grpo_config(None, ['loss.loss_type="dr_grpo"'])
    assert load_grpo_config(None, ['model.finetune="qlora"', 'model.device="cpu"']).model.finetune == "qlora"
    with pytest.raises(ConfigError, match="duplicate reward names"):
        load_grpo_config(None, ['rewards=[{grader="math"}, {grader="math"}]'])
    with pytest.raises(ConfigError, match="at least one reward"):
        load_grpo_config(None, ["rewards=[]"])


@pytest.mark.parametrize("override", ["sampling.top_p=0.9", "sampling.top_k=20"])
def test_truncated_sampling_needs_is_correction_off(override: str) -> None:
    """The engine's log-probs are renormalised over the top-p / top-k set, the trainer's are not: the IS ratio
    between them would be biased, so the combination is refused, naming the fields to change."""
    with pytest.raises(ConfigError, match=r"sampling\.top_p.*sampling\.top_k.*loss\.is_correction = false"):
        load_grpo_config(None, [override])
    cfg = load_grpo_config(None, [override, "loss.is_correction=false"])
    assert cfg.sampling.top_p < 1 or cfg.sampling.top_k > 0
    assert load_grpo_config(None, ["sampling.top_k=0"]).loss.is_correction  # 0 = off, like -1


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_decaying_schedule_is_refused_with_a_time_budget(schedule: str) -> None:
    with pytest.raises(ConfigError, match=rf'optim\.schedule = "{schedule}".*train\.max_time_s'):
        load_grpo_config(None, [f'optim.schedule="{schedule}"', "train.max_time_s=600"])
    cfg = load_grpo_config(None, ['optim.schedule="constant"', "optim.warmup_steps=5", "train.max_time_s=600"])
    assert cfg.optim.warmup_steps == 5  # warm-up ends at a step count, whenever the budget ends


def test_used_graders_name_the_rewards_and_the_scorer() -> None:
    """The embedded grader server gets a sandbox when ListGraders says one of these is sandboxed."""
    cfg = GRPOConfig.model_validate({"rewards": [{"grader": "python_tests"}], "data": {"source": "humaneval"}})
    assert cfg.used_graders() == ["python_tests"]
    assert GRPOConfig().used_graders() == ["last_integer", "math"]


def _undocumented(model: type[BaseModel], prefix: str = "") -> list[str]:
    missing = []
    for name, info in model.model_fields.items():
        if not info.description:
            missing.append(prefix + name)
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            missing += _undocumented(ann, f"{prefix}{name}.")
    return missing


def test_every_field_is_documented() -> None:
    assert _undocumented(GRPOConfig) == []
