"""Every examples/*.toml parses with the config class it is for, and the files it names exist; so does every
benchmark pipeline (benchmarks/*.toml)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlvr.config import load_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def config_class(path: Path) -> type:
    if path.name == "graders.toml":
        from graders.config import GradersConfig

        return GradersConfig
    if path.name == "rollout.toml":
        from rollout.config import RolloutConfig

        return RolloutConfig
    if path.name.startswith("distill"):
        from trainer.distill.config import DistillConfig

        return DistillConfig
    if path.name.startswith("eval"):
        from trainer.eval_config import EvalConfig

        return EvalConfig
    if path.name.startswith("grpo"):
        from trainer.config import GRPOConfig

        return GRPOConfig
    if path.name.startswith("sft"):
        from trainer.sft.config import SFTConfig

        return SFTConfig
    raise AssertionError(f"{path.name}: no config class is known for this example; add it to test_examples.py")


def all_examples() -> list[Path]:
    return sorted(EXAMPLES.glob("*.toml"))


@pytest.mark.parametrize("path", sorted((EXAMPLES.parent / "benchmarks").glob("*.toml")), ids=lambda p: p.name)
def test_benchmark_pipeline_parses(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.config import load_pipeline

    monkeypatch.chdir(EXAMPLES.parent)
    load_pipeline(path)


def test_examples_exist() -> None:
    names = {p.name for p in all_examples()}
    assert {"grpo_addition.toml", "grpo_lora_addition.toml", "grpo_gsm.toml", "grpo_humaneval.toml"} <= names


@pytest.mark.parametrize("path", all_examples(), ids=lambda p: p.name)
def test_example_parses(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if path.name.startswith("pipeline"):
        from pipeline.config import load_pipeline

        monkeypatch.chdir(EXAMPLES.parent)  # stage config files are relative to the working directory
        load_pipeline(path)  # validates every stage's own config too
        return
    cfg = load_config(config_class(path), path)
    data = getattr(cfg, "data", None)
    if data is not None:
        for name in ("path", "eval_path"):
            value = getattr(data, name)
            if value:
                assert (EXAMPLES.parent / value).exists(), f"{path.name}: data.{name} = {value} does not exist"


def test_grpo_examples_validate_their_data_and_rewards() -> None:
    """Cheap sources (jsonl, addition) are built and checked against the graders' required fields."""
    from graders.client import Catalog
    from graders.registry import REGISTRY, load_builtins
    from trainer.config import load_grpo_config
    from trainer.data import build_tasks
    from trainer.rewards import check_task_fields

    load_builtins()
    catalog = Catalog.of_registry(REGISTRY)

    for path in all_examples():
        if not path.name.startswith("grpo"):
            continue
        cfg = load_grpo_config(path)
        if cfg.data.source not in ("jsonl", "addition"):
            continue
        data = cfg.data.model_copy(update={
            "path": str(EXAMPLES.parent / cfg.data.path) if cfg.data.path else None,
            "eval_path": str(EXAMPLES.parent / cfg.data.eval_path) if cfg.data.eval_path else None,
        })  # fmt: skip
        stream, held_out = build_tasks(data)
        check_task_fields([*stream.tasks, *held_out], cfg.rewards, catalog)
        assert cfg.scorer is not None
        check_task_fields([cfg.scorer.task_for(t) for t in held_out], [cfg.scorer.as_reward()], catalog)
        # Held-out means held out: no example evaluates on a prompt it trains on.
        assert not cfg.data.eval_path or cfg.data.eval_path != cfg.data.path, path.name
        train_prompts = {str(t.messages) for t in stream.tasks}
        assert held_out and not train_prompts & {str(t.messages) for t in held_out}, path.name
