"""The trainer's CUDA path: what `model.device = "auto"` does on a GPU machine. Run with `make gpu-test` there
(marked `gpu`; `make test` does not select it, and it is skipped where torch sees no CUDA device).

Checked on the tiny random Llama: the device and dtype choice, one GRPO update on the GPU against the same
update on the CPU (float32 on both: same loss, gradient norm and parameter step), float32 master weights under
bf16 autocast keeping updates smaller than half a bf16 ulp, a checkpoint written from the GPU and resumed on the
CPU, and `rlvr train distill` (logits mode) lowering its held-out divergence with the student on the GPU."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.groups import make_group, moved_fraction
from trainer.checkpoint import TrainState, latest_checkpoint, load_checkpoint, save_checkpoint
from trainer.config import GRPOConfig
from trainer.grpo import make_optimizer, policy_update
from trainer.policy import Policy

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
GROUPS = [("a", [1, 0, 0, 1]), ("b", [0, 0, 0, 0]), ("c", [0.5, 0, 1, 0])]


def _cfg(tiny: Path, device: str, dtype: str, lr: float = 1e-3, per_pass: int | None = None) -> GRPOConfig:
    model = {"path": str(tiny), "dtype": dtype, "finetune": "full", "device": device, "groups_per_pass": per_pass}
    return GRPOConfig.model_validate({"model": model, "optim": {"lr": lr}})


Update = tuple[dict[str, float], list[torch.Tensor], list[torch.Tensor]]


def _update(tiny: Path, device: str, dtype: str, lr: float = 1e-3, pure_bf16: bool = False, per_pass: int = 1
            ) -> Update:  # fmt: skip
    """(stats, weights before, weights after) of one policy update; pure_bf16: bf16 weights and AdamW state."""
    cfg = _cfg(tiny, device, dtype, lr, per_pass)
    torch.manual_seed(0)
    p = Policy(cfg.model, beta=cfg.loss.beta)
    if pure_bf16:
        p.model.to(torch.bfloat16)
    opt, sched = make_optimizer(p, cfg)
    before = [q.detach().float().cpu().clone() for q in p.parameters()]
    stats = policy_update(p, opt, sched, [make_group(n, r) for n, r in GROUPS], cfg)
    after = [q.detach().float().cpu() for q in p.parameters()]
    return stats, before, after


def test_auto_device_is_cuda_with_bf16_compute_over_float32_masters(tiny_model_dir: Path) -> None:
    p = Policy(_cfg(tiny_model_dir, "auto", "auto").model)
    assert p.device.type == "cuda"
    assert p.groups_per_pass == 8  # a GPU's default: one group's pass is launch-bound
    assert {q.device.type for q in p.parameters()} == {"cuda"}
    assert {q.dtype for q in p.parameters()} == {torch.float32}
    with p.autocast():
        out = p.model.model.layers[0].mlp.down_proj(torch.ones(1, p.model.config.intermediate_size, device="cuda"))
    assert out.dtype == torch.bfloat16


@pytest.mark.parametrize("per_pass", [1, 3])
def test_grpo_update_on_cuda_equals_the_cpu_update(tiny_model_dir: Path, per_pass: int) -> None:
    """float32 on both devices (TF32 off, torch's default for matmuls): the loss, the gradient norm and AdamW's
    first step (~lr x sign of the gradient) agree; only weights whose gradient is ~0 may step differently. The
    GPU side also with all groups in one pass (model.groups_per_pass = 3), against the CPU's one per pass."""
    assert not torch.backends.cuda.matmul.allow_tf32
    gpu, gpu_before, gpu_after = _update(tiny_model_dir, "cuda", "float32", per_pass=per_pass)
    cpu, cpu_before, cpu_after = _update(tiny_model_dir, "cpu", "float32")
    assert all(torch.equal(a, b) for a, b in zip(gpu_before, cpu_before, strict=True))  # same initial weights
    for key in ("loss/policy_loss", "loss/grad_norm", "loss/mismatch_kl", "train/active_groups"):
        assert gpu[key] == pytest.approx(cpu[key], rel=1e-4, abs=1e-6), key
    same = total = 0
    for b, g, c in zip(cpu_before, gpu_after, cpu_after, strict=True):
        same += int(torch.isclose(g - b, c - b, atol=1e-4 * 1e-3, rtol=1e-2).sum())
        total += b.numel()
    assert same / total > 0.999


def test_bf16_autocast_on_cuda_keeps_updates_below_half_a_bf16_ulp(tiny_model_dir: Path) -> None:
    """lr 1e-5: AdamW's first step moves each weight by ~1e-5, under half a bf16 ulp for |w| > 0.008."""
    _, before, after = _update(tiny_model_dir, "cuda", "bfloat16", lr=1e-5, pure_bf16=True)
    assert moved_fraction(before, after, 0.008) < 0.001  # bf16 weights round those updates away
    stats, before, after = _update(tiny_model_dir, "cuda", "bfloat16", lr=1e-5)
    assert stats["loss/grad_norm"] > 0
    assert moved_fraction(before, after, 0.008) > 0.5  # float32 masters keep them


def test_checkpoint_written_on_cuda_resumes_on_cpu(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = _cfg(tiny_model_dir, "cuda", "float32")
    p = Policy(cfg.model)
    opt, sched = make_optimizer(p, cfg)
    policy_update(p, opt, sched, [make_group(n, r) for n, r in GROUPS], cfg)
    save_checkpoint(tmp_path, 1, p.model, opt, sched, TrainState(step=1), keep_last=1)
    cpu_cfg = _cfg(tiny_model_dir, "cpu", "float32")
    q = Policy(cpu_cfg.model)
    q_opt, q_sched = make_optimizer(q, cpu_cfg)
    ckpt = latest_checkpoint(tmp_path)
    assert ckpt is not None
    state = load_checkpoint(ckpt, q.model, q_opt, q_sched)
    assert state.step == 1
    for a, b in zip(p.parameters(), q.parameters(), strict=True):
        assert torch.equal(a.detach().cpu(), b.detach())
    moments = [s["exp_avg"] for s in q_opt.state.values()]
    assert moments and {m.device.type for m in moments} == {"cpu"}


def test_distill_logits_mode_on_cuda_lowers_the_held_out_divergence(
    tiny_model_dir: Path, small_llama: Callable[..., Path], tmp_path: Path
) -> None:
    from trainer.distill.config import load_distill_config
    from trainer.distill.loop import run_distill
    from trainer.metrics import read_records

    cfg = load_distill_config(None, [
        f"run_dir={tmp_path / 'distill'}", f"teacher.path={tiny_model_dir}", f"student.path={small_llama(layers=2)}",
        "student.device=cuda", "data.size=200", "data.eval_size=12", "train.batch_size=4", "train.steps=12",
        "optim.lr=2e-3", "eval.every=0", "eval.accuracy=false", "logging.progress=plain", "logging.tensorboard=false",
    ])  # fmt: skip
    summary = run_distill(cfg)
    evals = [r for r in read_records(summary.run_dir / "metrics.jsonl") if r["kind"] == "eval"]
    first, last = evals[0], evals[-1]
    assert (first["step"], last["step"]) == (0, 12)
    assert last["eval/forward_kl"] < first["eval/forward_kl"]
    assert (summary.student_dir / "model.safetensors").is_file()
