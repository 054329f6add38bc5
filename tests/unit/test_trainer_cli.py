"""`rlvr train grpo` and `rlvr demo`: registration, fast help, config errors, refusals before any service
starts (QLoRA on CPU, a run directory that already holds a run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from rlvr.cli import app

runner = CliRunner()


def test_commands_are_registered() -> None:
    result = runner.invoke(app, ["train", "grpo", "--help"])
    assert result.exit_code == 0 and "--resume" in result.output and "--config" in result.output
    result = runner.invoke(app, ["demo", "--help"])
    assert result.exit_code == 0 and "addition" in result.output


def test_help_config_prints_every_field_with_its_docstring() -> None:
    from trainer.config import GRPOConfig

    result = runner.invoke(app, ["train", "grpo", "--help-config"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "train.max_time_s: float | None = None\n    Also stop once" in out
    assert "[loss]" in out and "loss.loss_type:" in out and "sampling.top_p: float = 1.0" in out
    # Every field of every section is listed, and none lacks its docstring.
    for section, info in GRPOConfig.model_fields.items():
        sub = getattr(info.annotation, "model_fields", None)
        for name in sub or [None]:
            assert (f"{section}.{name}:" if name else f"{section}:") in out or f"[{section}]" in out
    assert "(undocumented)" not in out


def test_cli_module_imports_no_heavy_libraries() -> None:
    code = ("import sys, trainer.cli; "
            "print([m for m in ('torch', 'grpc', 'transformers', 'vllm') if m in sys.modules])")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_show_config_applies_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text("[train]\nsteps = 3\n")
    result = runner.invoke(app, ["train", "grpo", "-c", str(cfg), "optim.lr=5e-5", "--show-config"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["train"]["steps"] == 3 and shown["optim"]["lr"] == 5e-5
    assert shown["run_dir"] == "runs/run"


def test_config_errors_exit_2_with_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[sampling]\ngroup_sise = 4\n")
    result = runner.invoke(app, ["train", "grpo", "-c", str(cfg)])
    assert result.exit_code == 2 and "sampling.group_sise" in result.output
    result = runner.invoke(app, ["train", "grpo", "-c", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2 and "no such config file" in result.output


def test_qlora_on_cpu_is_accepted(tmp_path: Path, tiny_model_dir: Path) -> None:
    # bitsandbytes >= 0.45 trains 4-bit layers on CPU (tests/unit/test_trainer_policy.py), so no CUDA refusal.
    result = runner.invoke(app, ["train", "grpo", f"run_dir='{tmp_path / 'run'}'", f"model.path='{tiny_model_dir}'",
                                 "model.finetune='qlora'", "model.device='cpu'", "--show-config"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["model"]["finetune"] == "qlora"


def test_existing_run_needs_resume(tmp_path: Path, tiny_model_dir: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"kind": "train", "step": 1, "elapsed_s": 1.0}\n')
    result = runner.invoke(app, ["train", "grpo", f"run_dir='{run}'", f"model.path='{tiny_model_dir}'"])
    assert result.exit_code == 2 and "--resume" in result.output
