"""`rlvr eval` on the real services: two tiny models of one shape (the second with perturbed weights) are
examined by one engine (weights swapped, not restarted) — greedy strict accuracy, pass@k from K samples, the
training reward's mean, status counts, a JSONL row per prompt/completion/verdict, the side-by-side table."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

pytestmark = pytest.mark.timeout(600)
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "eval_addition.toml"


def perturbed_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    gen = torch.Generator().manual_seed(1)
    for f in dst.glob("*.safetensors"):
        state = load_file(str(f))
        state = {k: v + 0.5 * torch.randn(v.shape, generator=gen).to(v.dtype) for k, v in state.items()}
        save_file(state, str(f), metadata={"format": "pt"})
    return dst


def test_two_models_one_engine(tmp_path: Path, tiny_model_dir: Path) -> None:
    other = perturbed_copy(tiny_model_dir, tmp_path / "other")
    out, summary = tmp_path / "out", tmp_path / "eval.json"
    cmd = [sys.executable, "-m", "rlvr.cli", "eval", "--model", str(tiny_model_dir), "--model", str(other),
           "--config", str(EXAMPLE), "size=4", f"out_dir={out}", "--samples", "2", "--json", str(summary)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=540, env={"COLUMNS": "160", **_env()})
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(summary.read_text())
    labels = [r["label"] for r in results]
    assert labels == [tiny_model_dir.name, "other"]
    for r in results:
        m = r["metrics"]
        assert m["tasks"] == 4 and 0.0 <= m["accuracy"] <= 1.0 and m["judged"] + r["statuses"].get("no_verdict", 0) == 4
        assert {"pass@1", "pass@2", "reward/math", "completion_tokens_mean"} <= set(m)
        assert sum(r["statuses"].values()) == 4
    rows = {label: [json.loads(x) for x in (out / label / "eval_samples.jsonl").read_text().splitlines()]
            for label in labels}  # fmt: skip
    assert all(len(v) == 4 for v in rows.values())
    assert all({"prompt", "completion", "verdict", "gold"} <= set(row) for v in rows.values() for row in v)
    sampled = (out / "other" / "pass_at_k_samples.jsonl").read_text().splitlines()
    assert len(sampled) == 8
    # The swap really happened: the perturbed weights answer differently, and only one engine was started.
    assert [r["completion"] for r in rows[labels[0]]] != [r["completion"] for r in rows["other"]]
    assert "weights swapped into the running engine" in proc.stderr
    assert (out / labels[0] / "logs" / "rollout.log").is_file() and not (out / "other" / "logs").exists()
    assert labels[0] in proc.stdout and "other" in proc.stdout and "accuracy" in proc.stdout


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)
