"""trainer/gguf_rollout.py on a real GGUF file of the tiny model (llama.cpp runs it in milliseconds): prompts are
rendered and tokenized as the rollout engine does it with the HF tokenizer, greedy is llama.cpp's argmax, stop
strings and max_tokens end a completion, sampling is reproducible, and a file without a chat template or a request
for an adapter is refused by name. The sampler's arithmetic is checked on hand-made logits."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rollout.types import PromptInput, Sample, SamplingConfig
from trainer.export.probes import probe_messages
from trainer.gguf_rollout import GgufRollout, GgufRolloutError, pick_token, stop_at


@pytest.fixture(scope="module")
def tiny_source(tiny_model_dir: Path) -> Any:
    from trainer.export.source import load_source

    return load_source(tiny_model_dir)


@pytest.fixture(scope="module")
def rollout(tiny_source: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from trainer.export.gguf_writer import write_gguf

    out = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    write_gguf(tiny_source.model, tiny_source.tokenizer, out, "f16")
    r = GgufRollout(out, threads=1, n_ctx=256)
    yield r
    r.close()


def gen(r: GgufRollout, prompts: list[PromptInput], **params: Any) -> list[Sample]:
    return asyncio.run(r.generate(prompts, SamplingConfig(**params)))


PROMPTS = [PromptInput(id=f"p{i}", messages=m) for i, m in enumerate(probe_messages()[:3] + probe_messages()[-3:])]


def test_prompts_are_rendered_and_tokenized_like_the_rollout_engine(rollout: GgufRollout, tiny_source: Any) -> None:
    tok = tiny_source.tokenizer
    for p in PROMPTS:  # addition problems, a system prompt, a second turn
        text = tok.apply_chat_template(p.messages, tokenize=False, add_generation_prompt=True)
        assert rollout.render(p.messages) == text
        assert rollout.prompt_ids(p) == tok.encode(text, add_special_tokens=False)
    assert rollout.special_tokens["eos_token"] == tok.eos_token and tok.eos_token_id in rollout.end_ids


def test_greedy_is_llama_cpps_argmax_and_honours_max_tokens(rollout: GgufRollout) -> None:
    from trainer.export.readers import LlamaCppRunner

    samples = gen(rollout, PROMPTS, n=1, temperature=0.0, max_tokens=7)
    reference = LlamaCppRunner(rollout.path, 1, n_ctx=256)
    for s, p in zip(samples, PROMPTS, strict=True):
        assert (s.prompt_id, s.sample_index) == (p.id, 0)
        assert s.token_ids == reference.greedy(s.prompt_token_ids, 7, set(rollout.end_ids))
        assert len(s.token_ids) == len(s.logprobs) == 7 and s.finish_reason == "length"
        assert all(lp <= 0 for lp in s.logprobs) and s.text == rollout._text(s.token_ids)
    reference.llm.close()


def test_stop_strings_and_end_tokens_end_a_completion(rollout: GgufRollout) -> None:
    full = gen(rollout, PROMPTS[:1], temperature=0.0, max_tokens=10)[0]
    stop = full.text[3:6]
    cut = gen(rollout, PROMPTS[:1], temperature=0.0, max_tokens=10, stop=["never there", stop])[0]
    assert cut.text == full.text[: full.text.find(stop)] and cut.finish_reason == "stop"
    assert cut.token_ids == full.token_ids[: len(cut.token_ids)] and len(cut.token_ids) < 10
    ends = rollout.end_ids
    end = full.token_ids[2]
    try:  # the random model never emits a real end token: make its third token one
        rollout.end_ids = frozenset({end})
        ended = gen(rollout, PROMPTS[:1], temperature=0.0, max_tokens=10)[0]
    finally:
        rollout.end_ids = ends
    assert ended.token_ids == full.token_ids[: full.token_ids.index(end) + 1] and ended.finish_reason == "stop"


def test_sampling_is_reproducible_per_seed(rollout: GgufRollout) -> None:
    a = gen(rollout, PROMPTS[:2], n=3, temperature=1.0, top_p=0.95, max_tokens=6)
    b = gen(rollout, PROMPTS[:2], n=3, temperature=1.0, top_p=0.95, max_tokens=6)
    c = gen(rollout, PROMPTS[:2], n=3, temperature=1.0, top_p=0.95, max_tokens=6, seed=7)
    assert [(s.prompt_index, s.sample_index) for s in a] == [(i, k) for i in range(2) for k in range(3)]
    assert [s.token_ids for s in a] == [s.token_ids for s in b]
    assert len({tuple(s.token_ids) for s in a}) == 6 and [s.token_ids for s in a] != [s.token_ids for s in c]


def test_refusals_name_the_problem(rollout: GgufRollout, tiny_source: Any, tmp_path: Path) -> None:
    from trainer.export.gguf_writer import write_gguf

    with pytest.raises(GgufRolloutError, match="adapter 'policy'"):
        asyncio.run(rollout.generate(PROMPTS[:1], SamplingConfig(temperature=0.0), adapter="policy"))
    with pytest.raises(GgufRolloutError, match="max_tokens must be >= 1"):
        gen(rollout, PROMPTS[:1], max_tokens=0)
    long = PromptInput(id="long", token_ids=[17] * 300)
    with pytest.raises(GgufRolloutError, match=r"prompt 'long': 300 tokens do not fit the context of 256"):
        gen(rollout, [long], temperature=0.0, max_tokens=4)
    tok = tiny_source.tokenizer
    template, tok.chat_template = tok.chat_template, None
    try:
        bare = tmp_path / "no-template.gguf"
        write_gguf(tiny_source.model, tok, bare, "f16")
    finally:
        tok.chat_template = template
    with pytest.raises(GgufRolloutError, match=r"no-template\.gguf: the file has no tokenizer\.chat_template"):
        GgufRollout(bare, threads=1, n_ctx=64)


def test_pick_token() -> None:
    rng = np.random.default_rng(0)
    logits = np.array([0.0, math.log(3.0), -50.0], dtype=np.float32)
    token, lp = pick_token(logits, SamplingConfig(temperature=0.0), rng)
    assert token == 1 and lp == pytest.approx(math.log(0.75), abs=1e-6)
    draws = [pick_token(logits, SamplingConfig(temperature=1.0), rng)[0] for _ in range(4000)]
    assert draws.count(1) / 4000 == pytest.approx(0.75, abs=0.03) and 2 not in draws
    assert {pick_token(logits, SamplingConfig(temperature=1.0, top_k=1), rng) for _ in range(20)} == {(1, 0.0)}
    assert {pick_token(logits, SamplingConfig(temperature=1.0, top_p=0.5), rng)[0] for _ in range(20)} == {1}
    hot = [pick_token(logits, SamplingConfig(temperature=100.0), rng)[0] for _ in range(3000)]
    assert hot.count(2) / 3000 == pytest.approx(np.exp(-0.5) / (np.exp(-0.5) + 1 + 3 ** 0.01), abs=0.04)


def test_stop_at() -> None:
    assert stop_at("12 + 3\nnext", ["\n"]) == 6
    assert stop_at("answer: 5. Done", ["Done", ". "]) == 9
    assert stop_at("nothing", ["x", ""]) is None
