"""`rlvr train sft` config and CLI refusals: typed errors naming file and field, packing refused, --show-config,
a failing data check stops the run (exit 1) before any training, an existing run needs --resume."""

from __future__ import annotations

import importlib.util
import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rlvr.cli import app
from rlvr.config import ConfigError
from trainer.sft.config import load_sft_config

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def test_unknown_key_and_bad_value_name_the_file_and_field(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[train]\nbatch_sise = 4\n")
    with pytest.raises(ConfigError, match=r"bad.toml: invalid config[\s\S]*train.batch_sise"):
        load_sft_config(cfg)
    cfg.write_text("[data]\nmax_len = 2\n")
    with pytest.raises(ConfigError, match=r"data.max_len"):
        load_sft_config(cfg)
    result = runner.invoke(app, ["train", "sft", "-c", str(cfg)])
    assert result.exit_code == 2 and "data.max_len" in result.output


def test_packing_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError, match="packed examples attend to each other"):
        load_sft_config(None, ["train.packing=true"])


def test_show_config_and_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text("[train]\nsteps = 3\n")
    result = runner.invoke(app, ["train", "sft", "-c", str(cfg), "optim.lr=5e-5", "--show-config"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["train"]["steps"] == 3 and shown["optim"]["lr"] == 5e-5 and shown["run_dir"] == "runs/run"
    assert shown["model"]["finetune"] == "full" and shown["output"]["merge_lora"] is True


def test_failing_data_check_stops_before_training(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = tmp_path / "train.jsonl"
    row = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    data.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    args = ["train", "sft", f"run_dir='{tmp_path / 'run'}'", f"model.path='{tiny_model_dir}'", f"data.path='{data}'"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "exact_duplicate" in result.output and "--skip-check" in result.output
    assert json.loads((tmp_path / "run" / "data_check.json").read_text())["errors"] == 1
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "model").exists()
    again = runner.invoke(app, args)  # no run started, so the fixed data can be retried without --resume
    assert again.exit_code == 1 and "--resume" not in again.output


def test_arith_example_prompt_is_the_grpo_example_prompt() -> None:
    spec = importlib.util.spec_from_file_location("make_arith_sft", ROOT / "examples/data/make_arith_sft.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    grpo = tomllib.loads((ROOT / "examples/grpo_arith.toml").read_text())
    assert grpo["data"]["template"] == mod.TEMPLATE and grpo["data"]["rg_config"] == mod.RG_CONFIG
    first = json.loads((ROOT / "examples/data/arith_sft.jsonl").read_text().splitlines()[0])
    assert first["messages"][0]["content"].endswith(mod.TEMPLATE.split("{question}")[1])


def test_cli_modules_import_no_heavy_libraries() -> None:
    import subprocess
    import sys

    code = ("import sys, trainer.sft.cli, trainer.datacheck.cli; "
            "print([m for m in ('torch', 'transformers', 'trl', 'datasketch') if m in sys.modules])")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_only_marked_checkpoints_count(tmp_path: Path) -> None:
    from trainer.sft.callbacks import MARKER, latest_complete, remove_incomplete

    for step, done in ((2, True), (4, True), (6, False)):  # 6: a save killed before its marker
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        (d / "trainer_state.json").write_text("{}")
        if done:
            (d / MARKER).write_text(f"{step}\n")
    assert latest_complete(tmp_path) == tmp_path / "checkpoint-4"
    assert remove_incomplete(tmp_path) == [tmp_path / "checkpoint-6"] and not (tmp_path / "checkpoint-6").exists()
