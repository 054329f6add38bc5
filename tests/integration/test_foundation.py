"""Foundation checks on the real machine: vLLM loads the cached model, the sandbox image runs Python with
no network, and the set-up script is idempotent."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rlvr.paths import REPO_ROOT

SANDBOX_IMAGE = os.environ.get("RLVR_SANDBOX_IMAGE", "rlvr-sandbox:bookworm-1")

VLLM_SCRIPT = textwrap.dedent(
    """
    import sys
    if __name__ == "__main__":
        from vllm import LLM, SamplingParams
        from transformers import AutoTokenizer
        # float32: in bf16 the greedy answer of this Q4_1-dequantized 135M model depends on the CPU's bf16 kernels
        # (on one machine "Paris", on another "L'Étoile, la Marseillaise, ..."); float32 matches HF's "Paris".
        prompt = AutoTokenizer.from_pretrained(sys.argv[1]).apply_chat_template(
            [{"role": "user", "content": "What is the capital of France?"}], tokenize=False, add_generation_prompt=True)
        llm = LLM(model=sys.argv[1], max_model_len=512, enforce_eager=True, seed=0, dtype="float32")
        out = llm.generate([prompt], SamplingParams(max_tokens=12, temperature=0.0))
        print("ANSWER:" + out[0].outputs[0].text.replace("\\n", " "))
    """
)


def test_vllm_loads_the_cached_model_and_generates(base_model_dir: Path, tmp_path: Path) -> None:
    script = tmp_path / "gen.py"
    script.write_text(VLLM_SCRIPT)
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), str(base_model_dir)], capture_output=True, text=True, timeout=600, env=env
    )
    answers = [line for line in proc.stdout.splitlines() if line.startswith("ANSWER:")]
    assert proc.returncode == 0 and answers, proc.stderr[-3000:]
    assert "Paris" in answers[0]


def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def test_sandbox_image_runs_python_without_network() -> None:
    proc = _docker("run", "--rm", "--network", "none", SANDBOX_IMAGE, "python3", "-c", "print(1)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1"


def test_sandbox_image_defaults_to_unprivileged_user_and_has_no_interfaces_but_lo() -> None:
    code = "import os, socket; print(os.getuid()); print(sorted(n for _, n in socket.if_nameindex()))"
    proc = _docker("run", "--rm", "--network", "none", SANDBOX_IMAGE, "python3", "-c", code)
    assert proc.returncode == 0, proc.stderr
    uid, ifaces = proc.stdout.split("\n")[:2]
    assert uid == "10001"
    assert ifaces == "['lo']"


def test_setup_script_is_idempotent() -> None:
    # `make test` ran the set-up just before; a second run must find everything in place.
    start = time.monotonic()
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "setup.sh")], capture_output=True, text=True, timeout=300
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    assert "nothing to do" in proc.stdout, proc.stdout
    assert elapsed < 20, f"a no-op set-up took {elapsed:.1f}s"


@pytest.mark.parametrize("module", ["torchvision", "torchaudio", "torchcodec"])
def test_cpu_environment_has_no_broken_torch_extras(module: str) -> None:
    import importlib.util

    import torch

    if torch.cuda.is_available():
        pytest.fail("this check is for the CPU environment; the GPU set-up keeps these packages")
    assert importlib.util.find_spec(module) is None
