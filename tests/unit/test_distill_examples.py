"""Distillation examples: prompt/completion split, token ids, the assistant-only loss mask; the config."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from rlvr.config import ConfigError
from trainer.data import DataError, Task
from trainer.distill.config import load_distill_config
from trainer.distill.examples import collate, encode_task, split_task


def test_completion_is_the_assistant_turn_else_the_answer_field() -> None:
    chat = Task("a", [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
    assert split_task(chat) == ([{"role": "user", "content": "hi"}], "hello")
    qa = Task("b", [{"role": "user", "content": "1+1?"}], {"answer": 2})
    assert split_task(qa) == ([{"role": "user", "content": "1+1?"}], "2")
    with pytest.raises(DataError, match=r"data\.jsonl:3: field 'messages' / 'answer'"):
        split_task(Task("c", [{"role": "user", "content": "x"}], source="data.jsonl:3"))


def test_loss_mask_selects_exactly_the_reply_and_its_end_of_turn(tiny_model_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tasks = [Task("a", [{"role": "user", "content": "What is 12 + 30?"}], {"answer": "42"}),
             Task("b", [{"role": "user", "content": "Say something longer"},
                        {"role": "assistant", "content": "A longer reply, with words."}])]  # fmt: skip
    examples = [encode_task(tok, t) for t in tasks]
    prompt_text = tok.apply_chat_template(tasks[0].messages, tokenize=False, add_generation_prompt=True)
    assert tok.decode(examples[0].prompt_ids) == prompt_text
    batch = collate(examples, pad_id=tok.pad_token_id)
    assert batch.input_ids.shape[0] == 2 and batch.loss_mask.shape[1] == batch.input_ids.shape[1] - 1
    for i, reply in enumerate(["42", "A longer reply, with words."]):
        targets = batch.input_ids[i, 1:][batch.loss_mask[i].bool()].tolist()
        assert tok.decode(targets) == reply + "<|im_end|>"
        assert targets[-1] == tok.eos_token_id  # the end-of-turn token is learned, not masked as padding
    # Padding is hidden by the attention mask, whatever the pad id (SmolLM2 pads with its eos).
    short = len(examples[0].prompt_ids) + len(examples[0].completion_ids)
    assert batch.attention_mask[0, :short].all() and not batch.attention_mask[0, short:].any()
    assert batch.tokens == len(examples[0].completion_ids) + len(examples[1].completion_ids)
    # The prompt mask selects every prompt token after the first (the first has no logits predicting it), and
    # never a completion token or a pad.
    for i, e in enumerate(examples):
        prompt_targets = batch.input_ids[i, 1:][batch.prompt_mask[i].bool()].tolist()
        assert prompt_targets == e.prompt_ids[1:]
    assert not (batch.prompt_mask * batch.loss_mask).any()


def test_prompt_weight_adds_the_prompt_tokens_to_the_loss(tiny_model_dir: Path) -> None:
    import torch

    from trainer.distill.loop import _weights
    from trainer.distill.losses import masked_mean

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    batch = collate([encode_task(tok, Task("a", [{"role": "user", "content": "What is 1 + 2?"}], {"answer": "3"}))],
                    pad_id=tok.pad_token_id)  # fmt: skip
    assert torch.equal(_weights(batch, 0.0), batch.loss_mask)
    w = _weights(batch, 0.5)
    assert torch.equal(w, batch.loss_mask + 0.5 * batch.prompt_mask)
    # A per-token loss of 1 on the completion and 3 on the prompt: the weighted mean over the total weight.
    per_token = batch.loss_mask + 3 * batch.prompt_mask
    n_c, n_p = float(batch.loss_mask.sum()), float(batch.prompt_mask.sum())
    expected = (n_c + 0.5 * 3 * n_p) / (n_c + 0.5 * n_p)
    assert float(masked_mean(per_token, w, float(w.sum()))) == pytest.approx(expected)


def test_config_defaults_overrides_and_errors(tmp_path: Path) -> None:
    cfg = load_distill_config(None, ["mode=sequence", "kd.divergence=jsd", "kd.beta=0.3"])
    assert cfg.mode == "sequence" and cfg.kd.beta == 0.3 and cfg.uses_teacher_samples
    assert cfg.run_dir == Path("runs/distill")
    assert cfg.completions == "teacher" and load_distill_config(None, []).completions == "dataset"
    control = load_distill_config(None, ["mode=sequence", "completions=dataset"])  # SFT on the dataset's answers
    assert not control.uses_teacher_samples
    with pytest.raises(ConfigError, match=r"kd\.beta"):
        load_distill_config(None, ["kd.beta=1.5"])
    with pytest.raises(ConfigError, match="on_policy"):
        load_distill_config(None, ["mode=on_policy", "student.finetune=lora", "eval.accuracy=false"])
    assert load_distill_config(None, ["mode=on_policy", "eval.accuracy=false"]).serves_student
    assert load_distill_config(None, ["kd.prompt_weight=0.5"]).kd.prompt_weight == 0.5
    with pytest.raises(ConfigError, match=r"kd\.prompt_weight.*sequence"):
        load_distill_config(None, ["mode=sequence", "kd.prompt_weight=1"])
    bad = tmp_path / "d.toml"
    bad.write_text("[kd]\ndivergnce = 'jsd'\n")
    with pytest.raises(ConfigError, match=r"(?s)d\.toml.*kd\.divergnce"):
        load_distill_config(bad)
    svc = cfg.services_config("/some/model")
    assert svc.model.path == "/some/model" and svc.rewards == cfg.rewards
    assert svc.used_graders() == ["last_integer", "math"]
    assert cfg.scorer.grader == "last_integer"  # the addition task's strict scorer, not the training reward
    with pytest.raises(ConfigError, match="LoRA student"):
        load_distill_config(None, ["student.finetune=lora"])
    assert load_distill_config(None, ["student.finetune=lora", "eval.accuracy=false"]).student.finetune == "lora"
    with pytest.raises(ConfigError, match=r"eval\.scorer: required"):
        load_distill_config(None, ["data.source=jsonl", "data.path=x.jsonl"])


@pytest.mark.parametrize(("mode", "prompt_weight"), [("logits", 0.0), ("logits", 0.5), ("sequence", 0.0)])
def test_loss_on_the_masked_columns_equals_the_loss_on_every_position(
    small_llama, mode: str, prompt_weight: float
) -> None:
    """The head runs only on the columns a mask reads (logits_to_keep), and the rows' shared prefix runs once:
    loss and gradients must equal those computed from the logits of every position of every row."""
    import contextlib
    import types

    import torch
    from transformers import AutoModelForCausalLM

    from trainer.distill.loop import DistillTrainer, _columns, _token_ce, _weights, shared_prefix
    from trainer.distill.losses import masked_mean, token_divergence

    teacher = AutoModelForCausalLM.from_pretrained(small_llama(layers=3, seed=1)).eval()
    student_dir = small_llama(layers=2, seed=2)
    student = AutoModelForCausalLM.from_pretrained(student_dir).eval()
    tok = AutoTokenizer.from_pretrained(student_dir)
    tasks = [Task("a", [{"role": "user", "content": "What is 12 + 30? Reply with the number."}], {"answer": "42"}),
             Task("b", [{"role": "user", "content": "What is 7 + 5?"}], {"answer": "twelve, I think"}),
             Task("c", [{"role": "user", "content": "What is the longest river, in a few more words?"}],
                  {"answer": "x y"})]  # fmt: skip
    batch = collate([encode_task(tok, t) for t in tasks], pad_id=tok.pad_token_id)
    weights = _weights(batch, prompt_weight)
    cols = _columns(weights)
    assert (cols.start > 0) == (prompt_weight == 0)  # the prompts' columns are skipped
    assert (shared_prefix(batch.input_ids, cols.start) > 0) == (prompt_weight == 0)
    kd = types.SimpleNamespace(prompt_weight=prompt_weight, divergence="forward_kl", beta=0.5, temperature=1.0,
                               top_k=0)  # fmt: skip
    policy = types.SimpleNamespace(model=student, device=torch.device("cpu"), autocast=contextlib.nullcontext)

    def loss_and_grads(share: bool) -> tuple[float, list[torch.Tensor]]:
        fake = types.SimpleNamespace(cfg=types.SimpleNamespace(kd=kd, mode=mode), student=policy, teacher=teacher,
                                     vocab=len(tok), share_prefix=share)  # fmt: skip
        fake._logits = types.MethodType(DistillTrainer._logits, fake)
        student.zero_grad()
        loss = DistillTrainer._micro_loss(fake, batch, float(weights.sum()))  # type: ignore[arg-type]
        loss.backward()
        return float(loss.detach()), [p.grad.clone() for p in student.parameters()]

    s_all = student(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]
    if mode == "sequence":
        per_token = _token_ce(s_all, batch.input_ids[:, 1:])
    else:
        with torch.no_grad():
            t_all = teacher(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]
        per_token = token_divergence(s_all, t_all, "forward_kl")
    want = masked_mean(per_token, weights, float(weights.sum()))
    student.zero_grad()
    want.backward()
    want_grads = [p.grad.clone() for p in student.parameters()]
    for share in (False, True):
        got, grads = loss_and_grads(share)
        assert got == pytest.approx(float(want.detach()), rel=1e-5, abs=1e-6) and got > 0
        for g, w in zip(grads, want_grads, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)


def test_teacher_sampling_fills_the_engine_batch_in_order() -> None:
    from trainer.distill.teacher_samples import CHUNK_SEQUENCES, chunks

    tasks = [Task(str(i), [{"role": "user", "content": str(i)}]) for i in range(1000)]
    for n in (1, 4, 3, 1000):
        parts = chunks(tasks, n)
        assert [t for _, c in parts for t in c] == tasks  # every prompt once, in order
        assert [off for off, _ in parts] == [sum(len(c) for _, c in parts[:k]) for k in range(len(parts))]
        assert all(len(c) * n <= max(CHUNK_SEQUENCES, n) for _, c in parts)
        assert len(parts[0][1]) == max(1, CHUNK_SEQUENCES // n)  # a full batch, not a fixed prompt count
    assert CHUNK_SEQUENCES == 256 and len(chunks(tasks, 1)[0][1]) == 256
