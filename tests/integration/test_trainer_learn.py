"""It learns: GRPO on 2-digit addition with SmolLM2-135M-Instruct and the real rollout and grader services
(examples/grpo_addition.toml, as `rlvr demo` runs it) raises held-out greedy accuracy well beyond noise."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trainer.metrics import read_records

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "grpo_addition.toml"
MIN_GAIN = 0.15
MIN_Z = 3.0


def two_proportion_z(p1: float, p2: float, n: int) -> float:
    """z of the difference of two pass rates measured on n tasks each (pooled variance)."""
    pooled = (p1 + p2) / 2
    se = math.sqrt(max(pooled * (1 - pooled) * 2 / n, 1e-12))
    return (p2 - p1) / se


def test_grpo_raises_held_out_accuracy(tmp_path: Path, base_model_dir: Path) -> None:
    run = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "rlvr.cli", "train", "grpo", "--config", str(EXAMPLE), f"run_dir='{run}'",
        "eval.every=0", "checkpoint.every=0", "checkpoint.at_end=false", "logging.progress='plain'",
    ]  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1100)
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-4000:]
    evals = [r for r in read_records(run / "metrics.jsonl") if r["kind"] == "eval"]
    before, after = evals[0], evals[-1]
    n = int(after["eval/samples"])
    p1, p2 = before["eval/pass_rate"], after["eval/pass_rate"]
    z = two_proportion_z(p1, p2, n)
    train = [r for r in read_records(run / "metrics.jsonl") if r["kind"] == "train"]
    print(f"held-out pass rate {p1:.2f} -> {p2:.2f} on {n} tasks (z = {z:.1f}); {len(train)} steps, "
          f"training {after['elapsed_s']:.0f}s, wall {wall:.0f}s")  # fmt: skip
    assert n >= 100
    assert p2 - p1 >= MIN_GAIN, f"pass rate {p1:.2f} -> {p2:.2f}: gain below {MIN_GAIN:.2f}"
    assert z >= MIN_Z, f"pass rate {p1:.2f} -> {p2:.2f} on {n} tasks is within noise (z = {z:.1f})"
    # Training reward rises too (the signal the optimiser sees, not only the held-out score).
    first, last = train[:5], train[-5:]
    assert sum(r["reward_mean"] for r in last) / 5 > sum(r["reward_mean"] for r in first) / 5
