"""`rlvr train distill` and `rlvr models shrink` on the command line: registration, no heavy imports, config and
compatibility errors as exit code 2 before any model or service is started."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from rlvr.cli import app

runner = CliRunner()


def test_commands_are_registered() -> None:
    result = runner.invoke(app, ["train", "distill", "--help"])
    assert result.exit_code == 0 and "--resume" in result.output and "--show-config" in result.output
    result = runner.invoke(app, ["models", "shrink", "--help"])
    assert result.exit_code == 0 and "--layers" in result.output and "--from" in result.output


def test_cli_module_imports_no_heavy_libraries() -> None:
    code = ("import sys, trainer.distill.cli; "
            "print([m for m in ('torch', 'grpc', 'transformers', 'vllm') if m in sys.modules])")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_show_config_and_config_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "distill", "mode=sequence", "kd.top_k=64", "--show-config"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["mode"] == "sequence" and shown["kd"]["top_k"] == 64 and shown["student"]["finetune"] == "full"
    result = runner.invoke(app, ["train", "distill", "mode=distill_everything"])
    assert result.exit_code == 2 and "mode" in result.output


def test_incompatible_tokenizers_stop_the_run_before_it_starts(tmp_path: Path, tiny_model_dir: Path) -> None:
    student = tmp_path / "student"
    shutil.copytree(tiny_model_dir, student)
    data = json.loads((student / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    a, b = next(k for k, v in vocab.items() if v == 500), next(k for k, v in vocab.items() if v == 501)
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (student / "tokenizer.json").write_text(json.dumps(data))
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["train", "distill", f"teacher.path={tiny_model_dir}", f"student.path={student}",
                                 f"run_dir={run_dir}"])  # fmt: skip
    assert result.exit_code == 2
    assert "vocabularies differ at id 500" in result.output and repr(a) in result.output
    assert not run_dir.exists()  # nothing was started or written


def test_shrink_rejects_an_impossible_layer_count(tiny_model_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["models", "shrink", "--from", str(tiny_model_dir), "--layers", "3",
                                 "--out", str(tmp_path / "s")])  # fmt: skip
    assert result.exit_code == 2 and "--layers 3" in result.output
