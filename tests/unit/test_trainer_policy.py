"""The policy on the tiny random Llama: exact shared-prefix scoring, LoRA reference without a second copy,
weight export, QLoRA's clear refusal on CPU, and the optimizer update of one GRPO step."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from tests.groups import COMPLETIONS, PROMPT, make_group, moved_fraction
from trainer.config import GRPOConfig, ModelSection
from trainer.grpo import make_optimizer, policy_update
from trainer.policy import Policy, PolicyError, check_qlora_supported


def policy(tiny: Path, finetune: str, beta: float = 0.0) -> Policy:
    torch.manual_seed(0)
    return Policy(ModelSection(path=str(tiny), dtype="float32", finetune=finetune), beta=beta)  # type: ignore[arg-type]


def perturb_lora(p: Policy) -> None:
    # A fresh adapter has B = 0 (identical to the base); give it weight so the tests can see it.
    with torch.no_grad():
        for name, param in p.model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.05)


def logps_and_grads(p: Policy, shared: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    p.cfg = p.cfg.model_copy(update={"shared_prefix": shared})
    p.model.zero_grad()
    lp, mask = p.group_logps(PROMPT, COMPLETIONS, temperature=0.7)
    (lp * mask).sum().backward()
    return lp.detach(), [q.grad.clone() for q in p.parameters()]


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_shared_prefix_is_exact(tiny_model_dir: Path, finetune: str) -> None:
    p = policy(tiny_model_dir, finetune=finetune)
    if finetune == "lora":
        perturb_lora(p)
    lp_shared, g_shared = logps_and_grads(p, True)
    lp_plain, g_plain = logps_and_grads(p, False)
    assert lp_shared.shape == (4, max(len(c) for c in COMPLETIONS))
    mask = torch.zeros_like(lp_shared)
    for i, c in enumerate(COMPLETIONS):
        mask[i, : len(c)] = 1
    assert torch.allclose(lp_shared * mask, lp_plain * mask, atol=1e-5)
    for a, b in zip(g_shared, g_plain, strict=True):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-3)


def test_logps_match_a_manual_forward(tiny_model_dir: Path) -> None:
    p = policy(tiny_model_dir, finetune="full")
    with torch.no_grad():
        lp, _ = p.group_logps(PROMPT, [COMPLETIONS[0]])
        ids = torch.tensor([PROMPT + COMPLETIONS[0]])
        logits = p.model(input_ids=ids).logits[0, len(PROMPT) - 1 : -1].float()
        manual = torch.log_softmax(logits, -1).gather(-1, torch.tensor(COMPLETIONS[0])[:, None])[:, 0]
    assert torch.allclose(lp[0], manual, atol=1e-5)


def test_lora_reference_is_the_base_without_a_copy(tiny_model_dir: Path) -> None:
    base = policy(tiny_model_dir, finetune="full")
    p = policy(tiny_model_dir, finetune="lora", beta=0.1)
    perturb_lora(p)
    assert p.ref_model is None
    with torch.no_grad():
        ref = p.reference_logps(PROMPT, COMPLETIONS, 1.0)
        want, _ = base.group_logps(PROMPT, COMPLETIONS)
        now, _ = p.group_logps(PROMPT, COMPLETIONS)
    assert torch.allclose(ref, want, atol=1e-5)
    assert not torch.allclose(now, want, atol=1e-3)  # the adapter is back on afterwards


def test_full_finetune_reference_is_a_frozen_copy(tiny_model_dir: Path) -> None:
    p = policy(tiny_model_dir, finetune="full", beta=0.1)
    assert p.ref_model is not None
    assert all(not q.requires_grad for q in p.ref_model.parameters())
    plain = policy(tiny_model_dir, finetune="full")
    with pytest.raises(PolicyError, match="beta"), plain.reference():
        pass


def test_weight_export(tiny_model_dir: Path) -> None:
    full = policy(tiny_model_dir, finetune="full")
    state = full.full_state()
    assert "model.embed_tokens.weight" in state and "lm_head.weight" not in state  # tied: engine re-derives it
    lora = policy(tiny_model_dir, finetune="lora")
    cfg, tensors = lora.adapter_state()
    assert cfg["r"] == 16 and cfg["peft_type"] == "LORA"
    assert tensors and all(".lora_A." in k or ".lora_B." in k for k in tensors)
    assert all(k.startswith("base_model.model.") for k in tensors)
    trainable, total = lora.num_parameters()
    assert sum(t.numel() for t in tensors.values()) == trainable < total


def test_qlora_trains_on_cpu(tiny_model_dir: Path) -> None:
    """bitsandbytes' 4-bit layers run on CPU: the base is quantized, only the adapter trains, the loss falls."""
    check_qlora_supported(torch.device("cpu"))
    p = Policy(ModelSection(path=str(tiny_model_dir), finetune="qlora", device="cpu", dtype="bfloat16"))
    import bitsandbytes as bnb

    assert any(isinstance(m, bnb.nn.Linear4bit) for m in p.model.modules())
    opt = torch.optim.AdamW(p.parameters(), lr=1e-2)
    ids = torch.arange(10, 42).reshape(2, 16)
    losses = []
    for _ in range(4):
        loss = p.model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(n.count("lora_") for n, q in p.model.named_parameters() if q.requires_grad)


def test_policy_keeps_the_tokenizer_for_checkpoints(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The policy holds its model's tokenizer (saved with every checkpoint); a dir without one fails up front."""
    assert "<|im_start|>" in policy(tiny_model_dir, "full").tokenizer.chat_template
    weights_only = tmp_path / "weights_only"
    weights_only.mkdir()
    for name in ("config.json", "model.safetensors"):
        (weights_only / name).write_bytes((tiny_model_dir / name).read_bytes())
    with pytest.raises(PolicyError, match=r"weights_only: no usable tokenizer"):
        Policy(ModelSection(path=str(weights_only), dtype="float32"))


@pytest.mark.parametrize("overrides", [{}, {"train": {"num_iterations": 2}}, {"loss": {"beta": 0.05}},
                                       {"model": {"gradient_checkpointing": True}}])  # fmt: skip
def test_policy_update_moves_weights(tiny_model_dir: Path, overrides: dict) -> None:
    data = {"model": {"path": str(tiny_model_dir), "dtype": "float32", "finetune": "full"}, "optim": {"lr": 1e-3}}
    for k, v in overrides.items():
        data.setdefault(k, {}).update(v)
    cfg = GRPOConfig.model_validate(data)
    p = Policy(cfg.model, beta=cfg.loss.beta)
    opt, sched = make_optimizer(p, cfg)
    before = [q.detach().clone() for q in p.parameters()]
    stats = policy_update(p, opt, sched, [make_group("a", [1, 0, 0, 1]), make_group("b", [0, 0, 0, 0])], cfg)
    # Without a KL term the zero-variance group has zero gradient and costs no forward pass.
    assert stats["train/active_groups"] == (2.0 if cfg.loss.beta else 1.0)
    assert any(not torch.equal(a, b) for a, b in zip(before, p.parameters(), strict=True))
    for key in ("loss/clip_frac", "loss/is_ratio_mean", "loss/grad_norm", "train/lr"):
        assert key in stats
    if cfg.loss.beta:
        assert "loss/kl" in stats


def test_update_with_no_signal_is_skipped(tiny_model_dir: Path) -> None:
    cfg = GRPOConfig.model_validate({"model": {"path": str(tiny_model_dir), "dtype": "float32", "finetune": "lora"}})
    p = Policy(cfg.model)
    opt, sched = make_optimizer(p, cfg)
    before = [q.detach().clone() for q in p.parameters()]
    stats = policy_update(p, opt, sched, [make_group("a", [1, 1, 1, 1])], cfg)
    assert stats["train/skipped_update"] == 1.0
    assert all(torch.equal(a, b) for a, b in zip(before, p.parameters(), strict=True))


class _OneParam:
    def __init__(self) -> None:
        self.param = torch.nn.Parameter(torch.zeros(1))

    def parameters(self) -> list[torch.nn.Parameter]:
        return [self.param]


def test_schedules_are_transformers_and_end_at_train_steps() -> None:
    for schedule, last in (("constant", 1.0), ("linear", 0.0), ("cosine", 0.0)):
        cfg = GRPOConfig.model_validate({"optim": {"lr": 1.0, "schedule": schedule, "warmup_steps": 2},
                                         "train": {"steps": 10}})  # fmt: skip
        opt, sched = make_optimizer(_OneParam(), cfg)  # type: ignore[arg-type]
        lrs = []
        for _ in range(10):
            lrs.append(sched.get_last_lr()[0])
            opt.step()
            sched.step()
        assert lrs[:3] == pytest.approx([0.0, 0.5, 1.0])  # transformers' warm-up: the first update uses lr 0
        assert sched.get_last_lr()[0] == pytest.approx(last, abs=1e-6)
        if schedule != "constant":
            assert lrs[-1] > 0 and all(a >= b for a, b in itertools.pairwise(lrs[2:]))


def test_skipped_updates_still_advance_the_schedule(tiny_model_dir: Path) -> None:
    cfg = GRPOConfig.model_validate({
        "model": {"path": str(tiny_model_dir), "dtype": "float32", "finetune": "full"},
        "optim": {"lr": 1.0, "schedule": "linear"}, "train": {"steps": 4},
    })  # fmt: skip
    p = Policy(cfg.model)
    opt, sched = make_optimizer(p, cfg)
    lrs = [policy_update(p, opt, sched, [make_group("a", [1, 1, 1, 1])], cfg)["train/lr"] for _ in range(4)]
    assert lrs == pytest.approx([0.75, 0.5, 0.25, 0.0])  # the run's 4 steps end the schedule, skipped or not


def test_full_finetune_keeps_float32_masters_and_small_updates(tiny_model_dir: Path) -> None:
    """lr 1e-5 moves each weight by ~1e-5 on AdamW's first step: less than half a bf16 ulp for |w| > 0.008.
    Pure-bf16 AdamW rounds all of those updates away; float32 masters (bf16 compute) keep them."""
    cfg = GRPOConfig.model_validate({"model": {"path": str(tiny_model_dir), "dtype": "bfloat16", "finetune": "full"},
                                     "optim": {"lr": 1e-5}})  # fmt: skip
    groups = [make_group("a", [1, 0, 0, 1])]

    torch.manual_seed(0)
    pure = Policy(cfg.model)
    pure.model.to(torch.bfloat16)  # the old path: bf16 weights, so bf16 AdamW state
    opt, sched = make_optimizer(pure, cfg)
    before = [q.detach().clone() for q in pure.parameters()]
    policy_update(pure, opt, sched, groups, cfg)
    assert moved_fraction(before, [q.detach() for q in pure.parameters()], 0.008) < 0.001

    torch.manual_seed(0)
    p = Policy(cfg.model)
    assert {q.dtype for q in p.parameters()} == {torch.float32}
    opt, sched = make_optimizer(p, cfg)
    before = [q.detach().clone() for q in p.parameters()]
    stats = policy_update(p, opt, sched, groups, cfg)
    assert stats["loss/grad_norm"] > 0
    assert {s["exp_avg"].dtype for s in opt.state.values()} == {torch.float32}
    assert moved_fraction(before, [q.detach() for q in p.parameters()], 0.008) > 0.5
    # The compute really is bf16 (autocast) ...
    with p.autocast():
        assert p.model.model.layers[0].mlp.down_proj(torch.ones(1, p.model.config.intermediate_size)).dtype == (
            torch.bfloat16
        )
    # ... and the export is the float32 masters, which RolloutClient casts to the server's dtype as it sends
    # (tests/unit/test_rollout_client.py: test_weights_go_to_every_replica_in_their_dtype...).
    assert {t.dtype for t in p.full_state().values()} == {torch.float32}


@pytest.mark.parametrize("native", [True, False])
def test_auto_dtype_is_bf16_only_where_the_hardware_has_bf16_kernels(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, native: bool
) -> None:
    """On an AVX2-only CPU torch's bf16 gemm is a reference loop (a policy update 13x slower than in float32:
    benchmarks/results/trainer_dtype.json): "auto" picks float32 there; an explicit "bfloat16" is kept, warned."""
    import trainer.policy as pol

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
    pol._warn_emulated_bf16.cache_clear()
    cpu = torch.device("cpu")
    assert pol.bf16_is_native(cpu) is native
    expected = torch.bfloat16 if native else torch.float32
    assert pol.compute_dtype(ModelSection(dtype="auto", device="cpu")) == expected
    assert pol.compute_dtype(ModelSection(device="cpu")) == expected  # the default is auto
    assert pol.compute_dtype(ModelSection(dtype="float32", device="cpu")) == torch.float32
    with caplog.at_level("WARNING", logger="trainer.policy"):
        assert pol.compute_dtype(ModelSection(dtype="bfloat16", device="cpu")) == torch.bfloat16
    assert ("without bf16 matmul kernels" in caplog.text) is not native


def test_batch_logps_equal_group_logps(tiny_model_dir: Path) -> None:
    """Several groups (prompts of different lengths) in one padded pass give each group's group_logps."""
    p = policy(tiny_model_dir, finetune="full")
    groups = [(PROMPT, COMPLETIONS), (PROMPT[:7], COMPLETIONS[:2]), ([*PROMPT, 30, 31], [[200, 201, 202, 203, 204]])]
    with torch.no_grad():
        batched = p.batch_logps(groups, temperature=0.7)
        for (prompt, comps), (lp, mask) in zip(groups, batched, strict=True):
            ref_lp, ref_mask = p.group_logps(prompt, comps, temperature=0.7)
            assert torch.equal(mask, ref_mask)
            assert torch.allclose(lp * mask, ref_lp * ref_mask, atol=1e-5)


@pytest.mark.parametrize("overrides", [{}, {"loss": {"beta": 0.05}, "train": {"num_iterations": 2}}])
def test_groups_per_pass_gives_the_same_update(tiny_model_dir: Path, overrides: dict) -> None:
    """model.groups_per_pass batches groups into one pass (the GPU path); the update must not change."""
    groups = [make_group("a", [1, 0, 0, 1]), make_group("b", [0, 0, 0, 0]), make_group("c", [0.5, 0, 1, 0])]
    results = []
    for per_pass in (1, 2):
        data = {"model": {"path": str(tiny_model_dir), "dtype": "float32", "finetune": "full",
                          "groups_per_pass": per_pass}, "optim": {"lr": 1e-3}}  # fmt: skip
        for k, v in overrides.items():
            data.setdefault(k, {}).update(v)
        cfg = GRPOConfig.model_validate(data)
        torch.manual_seed(0)
        p = Policy(cfg.model, beta=cfg.loss.beta)
        opt, sched = make_optimizer(p, cfg)
        stats = policy_update(p, opt, sched, groups, cfg)
        results.append((stats, [q.detach().clone() for q in p.parameters()]))
    (one, w_one), (two, w_two) = results
    # A second iteration starts from AdamW's first step, ~lr x sign(gradient): a weight whose gradient is ~0
    # may step either way, so its statistics agree a little less closely than a single iteration's.
    rel = 1e-3 if overrides else 1e-4
    for key in ("loss/grad_norm", "loss/policy_loss", "train/tokens", "train/active_groups"):
        assert two[key] == pytest.approx(one[key], rel=rel, abs=1e-7), key
    if overrides:
        assert two["loss/kl"] == pytest.approx(one["loss/kl"], rel=rel, abs=1e-7)
    # Weights: within a tenth of one step (lr) of each other; AdamW amplifies float noise on ~0 gradients.
    close = sum(int(torch.isclose(a, b, atol=1e-4, rtol=0).sum()) for a, b in zip(w_one, w_two, strict=True))
    assert close / sum(a.numel() for a in w_one) > 0.999


def test_groups_per_pass_defaults_by_device(tiny_model_dir: Path) -> None:
    """None: 1 on a CPU (prefix sharing), 8 on a GPU (one group's pass is launch-bound there); a value wins."""
    p = Policy(ModelSection(path=str(tiny_model_dir), dtype="float32", device="cpu"))
    assert p.groups_per_pass == 1
    p.device = torch.device("cuda")  # only the default's rule is under test: nothing runs on it
    assert p.groups_per_pass == 8
    p.cfg = p.cfg.model_copy(update={"groups_per_pass": 3})
    assert p.groups_per_pass == 3
