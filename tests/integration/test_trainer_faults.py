"""Service faults during training, with real services and the tiny model: the rollout server is killed
(kill -9) and restarted on the same port, the grader service likewise. Training pauses with a clear
message, re-syncs the restarted rollout server to the current policy version, and finishes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlvr.procs import ServiceProcess
from rollout.client import RolloutClient
from trainer.metrics import read_records

pytestmark = pytest.mark.timeout(600)
STEPS = 10
# Earned by the tiny random model about 60% of the time, so nearly every step changes the weights (and the
# policy version): the restarted server must then be re-synced to a version it never saw.
REWARD = "rewards=[{grader='regex', fields={pattern='^[a-mA-M]', mode='search'}}]"


def rollout_server(tiny: Path, port: int, log: Path) -> ServiceProcess:
    args = ["--model", str(tiny), "--port", str(port), "--max-model-len", "256", "--threads", "1", "--grace-s", "1",
            "--enable-lora", "--max-lora-rank", "16"]  # fmt: skip
    return ServiceProcess("rollout.server", args, "rollout", env={"VLLM_CPU_KVCACHE_SPACE": "1"}, log_path=log)


def grader_server(port: int, log: Path) -> ServiceProcess:
    return ServiceProcess("graders.server", ["--port", str(port), "--backend", "none"], "graders", log_path=log)


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def wait_for_step(run: Path, step: int, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "training ended early"
        if any(r["step"] >= step for r in read_records(run / "tasks.jsonl")):
            return
        time.sleep(0.1)
    raise AssertionError(f"step {step} not reached")


async def served_version(address: str) -> int:
    async with RolloutClient(address) as client:
        return (await client.info())[0].policy_version


def test_rollout_and_grader_restarts_pause_resync_and_finish(tmp_path: Path, tiny_model_dir: Path) -> None:
    rollout = rollout_server(tiny_model_dir, 0, tmp_path / "rollout.log")
    graders = grader_server(0, tmp_path / "graders.log")
    r_addr, g_addr = rollout.start(300), graders.start(120)
    run = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "rlvr.cli", "train", "grpo", f"run_dir='{run}'", f"model.path='{tiny_model_dir}'",
        "model.finetune='lora'", "model.threads=1", "data.size=300", "data.eval_size=4", "sampling.group_size=4",
        "sampling.max_tokens=6", f"train.steps={STEPS}", "train.prompts_per_step=2", "eval.every=0",
        "eval.at_start=false", "logging.progress='plain'", "logging.tensorboard=false",
        f"rollout.address=['{r_addr}']", f"graders.address='{g_addr}'", "graders.backoff_s=0.5", REWARD,
    ]  # fmt: skip
    log = tmp_path / "trainer.log"
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_for_step(run, 3, proc, 300)
        rollout.kill()  # kill -9: the engine and every pushed adapter are gone
        time.sleep(2)
        rollout = rollout_server(tiny_model_dir, port_of(r_addr), tmp_path / "rollout.log")
        rollout.start(300)
        wait_for_step(run, 7, proc, 300)
        graders.kill()
        time.sleep(1)
        graders = grader_server(port_of(g_addr), tmp_path / "graders.log")
        graders.start(120)
        assert proc.wait(400) == 0, log.read_text()[-4000:]
        final_version = [m for m in read_records(run / "metrics.jsonl") if m["kind"] == "train"][-1]["policy_version"]
        assert final_version > 3
        assert asyncio.run(served_version(r_addr)) == final_version  # the restarted server was brought up to date
    finally:
        if proc.poll() is None:
            proc.kill()
        rollout.stop()
        graders.stop()

    text = log.read_text()
    assert "training paused until it" in text and "re-syncing" in text
    steps = read_records(run / "tasks.jsonl")
    assert [r["step"] for r in steps] == list(range(1, STEPS + 1))
    trained = [t for r in steps for t in r["task_ids"]]
    assert len(trained) == len(set(trained))
    for r in steps:  # no sample from the restarted server's base weights (version 0) after the restart
        for versions in r["versions"]:
            assert all(0 <= r["trained_on"] - v <= 1 for v in versions)
    metrics = [m for m in read_records(run / "metrics.jsonl") if m["kind"] == "train"]
    assert sum(m.get("pipeline/rollout_outages", 0) for m in metrics) + text.count("unreachable during") >= 1
    # Grader trouble is retried or dropped and counted, never scored: every training reward is a verdict.
    assert all(m["samples"] >= 4 for m in metrics)
