"""A tiny-model pipeline end to end through `rlvr pipeline run` (real vLLM rollout and grader services): stage
`warm` (GRPO from the tiny model) feeds stage `rl` (GRPO from @previous); stage `exam` evaluates both on one
engine, which the stages share (trainer/service_pool.py). The pipeline is killed with SIGKILL
in the middle of `rl`; a re-run without --resume refuses, `--resume` finishes `rl` from its checkpoint with the
history before it kept and `warm`'s outputs untouched; the report opens cleanly in headless Chromium; a last
run skips every stage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from report.browser import check_page
from report.records import read_jsonl

pytestmark = pytest.mark.timeout(900)
RL_STEPS = 6
STAGE = """
[stages.config]
data = {{ source = "addition", size = 200, eval_size = 4 }}
rewards = [{{ grader = "math" }}]
sampling = {{ group_size = 4, max_tokens = 6 }}
optim = {{ lr = 1e-4 }}
train = {{ steps = {steps}, prompts_per_step = 2, max_staleness = 1 }}
eval = {{ at_start = false, at_end = true, every = 0 }}
checkpoint = {{ every = {ckpt}, keep_last = 2 }}
rollout = {{ threads = 1, max_model_len = 256 }}
logging = {{ progress = "plain", tensorboard = false }}
model = {{ finetune = "full", threads = 1 }}
"""
EXAM = """
[[stages]]
name = "exam"
kind = "eval"
models = ["@warm", "@rl"]
[stages.config]
data = { source = "addition", size = 200, eval_size = 4 }
generation = { max_tokens = 6 }
rollout = { threads = 1, max_model_len = 256 }
"""


def write_pipeline(tmp_path: Path, tiny: Path) -> Path:
    path = tmp_path / "pipe.toml"
    path.write_text(
        f'name = "tiny chain"\nrun_dir = "{tmp_path / "run"}"\n'
        f'[[stages]]\nname = "warm"\nkind = "grpo"\nmodel = "{tiny}"\n' + STAGE.format(steps=2, ckpt=0)
        + '[[stages]]\nname = "rl"\nkind = "grpo"\nmodel = "@previous"\n' + STAGE.format(steps=RL_STEPS, ckpt=2)
        + EXAM
    )  # fmt: skip
    return path


def rlvr(*args: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "rlvr.cli", "pipeline", "run", *args],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)  # fmt: skip


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            out += [int(child), *descendants(int(child))]
    return out


def alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_mid_rl(run: Path, proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    """Until `rl` has a checkpoint and has trained a step past it; returns the checkpoint's step."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the pipeline ended before it could be killed"
        latest = run / "rl" / "checkpoints" / "latest"
        if latest.is_file():
            ckpt = int(latest.read_text().strip().split("-")[1])
            steps = [r["step"] for r in read_jsonl(run / "rl" / "tasks.jsonl")]
            if ckpt >= 2 and steps and max(steps) > ckpt:
                return ckpt
        time.sleep(0.1)
    raise AssertionError("stage rl reached no checkpoint + further step in time")


def snapshot(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in sorted(path.rglob("*")) if p.is_file()}


def test_pipeline_kill_9_resume_report_and_skip(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = write_pipeline(tmp_path, tiny_model_dir)
    run, log = tmp_path / "run", tmp_path / "pipeline.log"
    proc = rlvr(str(cfg), log=log)
    try:
        killed_ckpt = wait_mid_rl(run, proc, timeout_s=400)
        servers = descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 60  # the embedded services die with the pipeline (parent-death signal)
    while any(alive(p) for p in servers) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert servers and not any(alive(p) for p in servers)

    manifest = {e["name"]: e for e in json.loads((run / "manifest.json").read_text())["stages"]}
    assert manifest["warm"]["status"] == "done" and manifest["rl"]["status"] == "running"
    warm_files = snapshot(run / "warm")
    assert "model/config.json" in warm_files and "model/tokenizer_config.json" in warm_files
    before = {r["step"]: r for r in read_jsonl(run / "rl" / "tasks.jsonl")}

    refused = subprocess.run([sys.executable, "-m", "rlvr.cli", "pipeline", "run", str(cfg)], capture_output=True,
                             text=True, timeout=120)  # fmt: skip
    assert refused.returncode == 2 and "stage rl is running" in refused.stderr and "--resume" in refused.stderr

    resumed = rlvr(str(cfg), "--resume", log=log)
    assert resumed.wait(500) == 0, log.read_text()[-4000:]
    # One engine per pipeline process, shared by its stages: `rl` got warm's engine and `exam` the resumed rl's,
    # each with the stage's weights swapped in instead of a restart.
    said = log.read_text()
    assert said.count("starting pooled rollout engine") == 2 and said.count("swapped in (no restart)") == 2, said
    manifest = {e["name"]: e for e in json.loads((run / "manifest.json").read_text())["stages"]}
    assert [manifest[n]["status"] for n in ("warm", "rl", "exam")] == ["done", "done", "done"]
    exam = manifest["exam"]["result"]["models"]
    assert [m["label"] for m in exam.values()] == ["warm", "rl"] and all("accuracy" in m for m in exam.values())
    assert snapshot(run / "warm") == warm_files, "the finished stage's outputs were touched"
    assert manifest["rl"]["input_model"] == manifest["warm"]["output"] == str(run / "warm" / "model")
    steps = read_jsonl(run / "rl" / "tasks.jsonl")
    assert [r["step"] for r in steps] == list(range(1, RL_STEPS + 1))
    assert all(r == before[r["step"]] for r in steps if r["step"] <= killed_ckpt)
    assert (run / "rl" / "model" / "model.safetensors").is_file()
    assert isinstance(manifest["rl"]["result"].get("accuracy"), float)

    html = run / "report.html"
    text = html.read_text()
    assert "<td>warm</td>" in text and "<td>rl</td>" in text and "rlvr report: tiny chain" in text
    assert '<table id="samples">' in text and "<th>exam/warm</th>" in text and "<th>exam/rl</th>" in text
    result = check_page(html)
    assert result.ok, result.problems()
    assert result.images >= 8 and (run / "report_screenshot.png").is_file()

    t0 = time.monotonic()
    again = subprocess.run([sys.executable, "-m", "rlvr.cli", "pipeline", "run", str(cfg)], capture_output=True,
                           text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("done, config unchanged") == 3 and time.monotonic() - t0 < 60
