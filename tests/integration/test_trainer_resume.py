"""kill -9 of a training run, then `--resume`: the data cursor and the prompt sequence continue exactly (no
prompt trained twice, none skipped), the policy version continues, and the killed run's embedded servers
go away with it. Real rollout (vLLM) and grader services, tiny model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trainer.config import load_grpo_config
from trainer.data import build_tasks
from trainer.metrics import read_records

pytestmark = pytest.mark.timeout(600)
STEPS = 12


def write_config(tmp_path: Path, tiny: Path) -> Path:
    cfg = tmp_path / "resume.toml"
    cfg.write_text(f"""
run_dir = "{tmp_path / 'run'}"
[model]
path = "{tiny}"
finetune = "full"
threads = 1
[data]
source = "addition"
size = 300
eval_size = 4
# A reward the tiny random model earns about 60% of the time, so nearly every step updates the weights (a step
# whose groups all agree changes nothing and keeps the policy version); the test needs versions to move.
[[rewards]]
grader = "regex"
fields = {{ pattern = "^[a-mA-M]", mode = "search" }}
[sampling]
group_size = 4
max_tokens = 6
[optim]
lr = 1e-4
[train]
steps = {STEPS}
prompts_per_step = 2
max_staleness = 1
[eval]
at_start = false
at_end = false
every = 0
[checkpoint]
every = 2
keep_last = 2
[rollout]
threads = 1
max_model_len = 256
[logging]
progress = "plain"
tensorboard = false
""")
    return cfg


def trainer(cfg: Path, *extra: str, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "rlvr.cli", "train", "grpo", "--config", str(cfg), *extra]
    return subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(x) for x in text]
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def wait_for_step_after_checkpoint(run: Path, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Until some step beyond a saved checkpoint has been trained (so the kill loses real work)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        latest = run / "checkpoints" / "latest"
        if latest.is_file():
            ckpt_step = int(latest.read_text().strip().split("-")[1])
            steps = [r["step"] for r in read_records(run / "tasks.jsonl")]
            if ckpt_step >= 2 and steps and max(steps) > ckpt_step:
                return
        time.sleep(0.1)
    raise AssertionError("no checkpoint + further step in time")


def test_kill_9_and_resume_continue_the_data_exactly(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg_path = write_config(tmp_path, tiny_model_dir)
    run = tmp_path / "run"
    log = tmp_path / "trainer.log"
    proc = trainer(cfg_path, log=log)
    try:
        wait_for_step_after_checkpoint(run, proc, timeout_s=300)
        servers = children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_ckpt = int((run / "checkpoints" / "latest").read_text().strip().split("-")[1])
    restored = json.loads((run / "checkpoints" / f"ckpt-{killed_ckpt:08d}" / "state.json").read_text())
    restored_version = restored["policy_version"]
    assert restored_version > 0, "no step before the kill changed the weights: nothing to re-sync"
    before = {r["step"]: r for r in read_records(run / "tasks.jsonl")}
    assert max(before) > killed_ckpt

    # The embedded servers die with their trainer (parent-death signal), not orphaned.
    deadline = time.monotonic() + 60
    while any(alive(p) for p in servers) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert servers and not any(alive(p) for p in servers)

    resumed = trainer(cfg_path, "--resume", log=log)
    assert resumed.wait(400) == 0, log.read_text()[-3000:]

    steps = read_records(run / "tasks.jsonl")
    assert [r["step"] for r in steps] == list(range(1, STEPS + 1))
    for r in steps:  # the history up to the checkpoint is kept as it was
        if r["step"] <= killed_ckpt:
            assert r == before[r["step"]]
    trained = [tid for r in steps for tid in r["task_ids"]]
    assert len(trained) == len(set(trained)) == STEPS * 2, "a prompt was trained twice"

    # Exact accounting: trained + still in flight at the end == the stream's prefix up to the cursor.
    final = json.loads((run / "checkpoints" / f"ckpt-{STEPS:08d}" / "state.json").read_text())
    inflight = [t["id"] for t in final["inflight_tasks"]]
    stream, _ = build_tasks(load_grpo_config(cfg_path).data)
    taken = [t.id for t in stream.take(final["data_state"]["position"])]
    assert sorted(trained + inflight) == sorted(taken), "a prompt was skipped"
    assert not set(trained) & set(inflight)

    # Versions continue: resumed steps only use samples from the restored policy or later. A version names
    # weights, so it moves by one per step that changed them and stays on a step that did not.
    for r in steps:
        for versions in r["versions"]:
            assert all(0 <= r["trained_on"] - v <= 1 for v in versions)
            if r["step"] > killed_ckpt:
                assert min(versions) >= restored_version
    metrics = [m for m in read_records(run / "metrics.jsonl") if m["kind"] == "train"]
    assert [m["step"] for m in metrics] == list(range(1, STEPS + 1))
    previous = 0
    for m, r in zip(metrics, steps, strict=True):
        assert r["trained_on"] == previous
        assert m["policy_version"] - previous == (0 if m.get("train/skipped_update") else 1)
        previous = m["policy_version"]
    assert previous > restored_version
    assert f"re-syncing the rollout service to policy version {restored_version}" in log.read_text()
