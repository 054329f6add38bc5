"""`rlvr eval` on the real services: two tiny models of one shape (the second with perturbed weights) are
examined by one engine (weights swapped, not restarted) — greedy strict accuracy, pass@k from K samples, the
training reward's mean, status counts, a JSONL row per prompt/completion/verdict, the side-by-side table; and an
exported GGUF file beside its HF source (llama.cpp, no engine), scoring alike."""

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
GGUF_SIZE = 20


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


def test_gguf_export_scores_like_its_hf_source(tmp_path: Path, base_model_dir: Path) -> None:
    """SmolLM2 and its bf16 GGUF (the exact type of its weights) side by side in one `rlvr eval`: the HF directory
    through vLLM in float32, the file through llama.cpp with only the grader service started. Greedy answers
    agree and so does the strict accuracy (llama.cpp sums in another order than vLLM, so a near-tie may flip one
    answer: the tolerance is one task of GGUF_SIZE, as the export check allows 1 of 50 probes to diverge). Measured
    (loaded 2-core machine, 135 s): identical on 20/20, 3/20 correct by both, equal token counts."""
    from trainer.export.gguf_writer import write_gguf
    from trainer.export.source import load_source

    src = load_source(base_model_dir)
    gguf = tmp_path / "export" / "model.gguf"
    write_gguf(src.model, src.tokenizer, gguf, "bf16")
    del src
    out, summary = tmp_path / "out", tmp_path / "eval.json"
    cmd = [sys.executable, "-m", "rlvr.cli", "eval", "--model", str(base_model_dir), "--model", str(gguf),
           "--config", str(EXAMPLE), f"size={GGUF_SIZE}", f"out_dir={out}", "rollout.dtype=float32", "--samples", "2",
           "--json", str(summary)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=540, env={"COLUMNS": "160", **_env()})
    assert proc.returncode == 0, proc.stderr[-3000:]
    hf, exported = json.loads(summary.read_text())
    assert (hf["label"], exported["label"]) == (base_model_dir.name, "model.gguf")
    assert not (out / "model.gguf" / "logs" / "rollout.log").exists()  # no vLLM engine for the file
    assert (out / "model.gguf" / "logs" / "graders.log").is_file() and "(llama.cpp)" in proc.stderr
    rows = {r["label"]: [json.loads(x) for x in (out / r["label"] / "eval_samples.jsonl").read_text().splitlines()]
            for r in (hf, exported)}  # fmt: skip
    same = sum(a["completion"] == b["completion"] for a, b in zip(*rows.values(), strict=True))
    print(f"greedy answers identical on {same}/{GGUF_SIZE}; accuracy HF {hf['metrics']['accuracy']:.3f}, "
          f"GGUF {exported['metrics']['accuracy']:.3f}")
    assert same >= GGUF_SIZE - 1, [(a["completion"], b["completion"]) for a, b in zip(*rows.values(), strict=True)]
    assert all(a["completion_tokens"] == b["completion_tokens"] for a, b in zip(*rows.values(), strict=True)
               if a["completion"] == b["completion"])  # both count the end token  # fmt: skip
    assert abs(hf["metrics"]["correct"] - exported["metrics"]["correct"]) <= 1
    assert hf["metrics"]["correct"] >= 2, "SmolLM2 adds some 2-digit numbers: an all-wrong exam would prove nothing"
    for r in (hf, exported):
        m = r["metrics"]
        assert m["tasks"] == GGUF_SIZE and {"pass@1", "pass@2", "reward/math"} <= set(m)
        assert 1 <= m["completion_tokens_mean"] <= 16
    assert len((out / "model.gguf" / "pass_at_k_samples.jsonl").read_text().splitlines()) == 2 * GGUF_SIZE
    assert "model.gguf" in proc.stdout and base_model_dir.name in proc.stdout
