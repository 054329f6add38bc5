"""`rlvr eval` without services: the config, pass@k from sampled rows (no-verdict rows left out), labels, the
engine-sharing key and the side-by-side table (the real run is tests/integration/test_eval.py)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console

from rlvr.config import ConfigError
from trainer.eval_config import load_eval_config
from trainer.eval_models import (
    ModelResult,
    comparison_table,
    engine_key,
    is_gguf,
    model_labels,
    pass_at_k_metrics,
    resolve_model,
    status_counts,
)
from trainer.passk import pass_at_k

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@dataclass
class Row:
    task_id: str
    verdict: str
    correct: bool


def test_example_config_and_defaults(tmp_path: Path) -> None:
    cfg = load_eval_config(EXAMPLES / "eval_addition.toml")
    assert cfg.resolved_scorer.grader == "last_integer" and [r.grader for r in cfg.rewards] == ["math"]
    service = cfg.service_config("tiny")
    assert service.scorer.grader == "last_integer" and service.model.path == "tiny"
    bare = tmp_path / "e.toml"
    bare.write_text('[data]\nsource = "jsonl"\npath = "x.jsonl"\n')
    with pytest.raises(ConfigError, match=r"scorer: required for data\.source = 'jsonl'"):
        load_eval_config(bare)
    with pytest.raises(ConfigError, match=r"generation\.samples"):
        load_eval_config(EXAMPLES / "eval_addition.toml", ["generation.samples=0"])


def test_pass_at_k_from_rows() -> None:
    rows = [Row("a", "passed", True), Row("a", "failed", False), Row("a", "failed", False), Row("a", "failed", False),
            Row("b", "failed", False), Row("b", "failed", False), Row("b", "no_verdict", False),
            Row("b", "failed", False)]  # fmt: skip
    m = pass_at_k_metrics(rows, 4)
    assert m["pass@1"] == pytest.approx((pass_at_k(4, 1, 1) + pass_at_k(3, 0, 1)) / 2)
    assert m["pass@2"] == pytest.approx((pass_at_k(4, 1, 2) + pass_at_k(3, 0, 2)) / 2)
    assert m["pass@4"] == pytest.approx(1.0)  # task b has only 3 judged samples: it cannot enter pass@4


def test_status_counts_split_no_verdict_by_reason() -> None:
    @dataclass
    class R:
        verdict: str
        message: str = ""

    rows = [R("passed"), R("failed", "expected 3"), R("no_verdict", "infra_error"), R("no_verdict", "invalid_request"),
            R("timeout")]  # fmt: skip
    assert status_counts(rows) == {"passed": 1, "failed": 1, "infra_error": 1, "invalid_request": 1, "timeout": 1}


def test_labels() -> None:
    assert model_labels(["@sft", "/x/grpo/model", "base"]) == ["sft", "model", "base"]
    assert model_labels(["/a/model", "/b/model"]) == ["model-1", "model-2"]


def test_engine_key(tmp_path: Path) -> None:
    def model(name: str, layers: int) -> Path:
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": layers,
                                                   "_name_or_path": name}))  # fmt: skip
        (d / "tokenizer.json").write_text("{}")
        return d

    assert engine_key(model("a", 2)) == engine_key(model("b", 2))
    assert engine_key(model("c", 1)) != engine_key(tmp_path / "a")
    # GGUF files (run by llama.cpp) group together and apart from every HF engine.
    assert engine_key(tmp_path / "x" / "model.gguf") == engine_key(tmp_path / "y.gguf") != engine_key(tmp_path / "a")


def test_a_gguf_model_must_be_a_file(tmp_path: Path) -> None:
    gguf = tmp_path / "export" / "model.gguf"
    with pytest.raises(ValueError, match=r"--model .*export/model\.gguf: no such GGUF file"):
        resolve_model(str(gguf))
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    assert resolve_model(str(gguf)) == gguf and is_gguf(gguf) and not is_gguf(tmp_path)


def test_side_by_side_table() -> None:
    results = [
        ModelResult("base", "/m/base", {"accuracy": 0.25, "pass@1": 0.3, "reward/math": 0.25},
                    {"passed": 1, "failed": 3}),
        ModelResult("grpo", "/m/grpo", {"accuracy": 1.0, "pass@1": math.nan}, {"passed": 3, "infra_error": 1}),
    ]  # fmt: skip
    console = Console(width=200, record=True)
    console.print(comparison_table(results))
    text = console.export_text()
    assert "base" in text and "grpo" in text and "25.0%" in text and "100.0%" in text
    assert "status infra_error (no verdict: not a failure)" in text
    line = next(ln for ln in text.splitlines() if "status failed" in ln)
    assert "3" in line and "0" in line


def test_cli_names_a_missing_gguf_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rlvr.cli import app

    missing = tmp_path / "model.gguf"
    result = CliRunner().invoke(app, ["eval", "--model", str(missing), "--config", str(EXAMPLES / "eval_addition.toml"),
                                      f"out_dir={tmp_path / 'out'}"])  # fmt: skip
    assert result.exit_code == 2 and f"{missing}: no such GGUF file" in result.output
