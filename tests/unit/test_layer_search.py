"""Greedy task-aware layer selection (rlvr/layer_search.py): it must pick what a plain, independent greedy search
over full HF forwards picks, and shrink/CLI/pipeline must wire it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from rlvr.layer_search import LayerSearchError, greedy_layers
from rlvr.student import ShrinkError, shrink
from trainer.data import DataConfig, load_jsonl
from trainer.distill.examples import probe_batch

ROWS = [
    {"messages": [{"role": "user", "content": f"What is {a} + {b}?"}, {"role": "assistant", "content": str(a + b)}]}
    for a, b in [(12, 7), (30, 45), (8, 91), (66, 6), (23, 23), (50, 49)]
]


@pytest.fixture(scope="module")
def teacher(small_llama: Callable[..., Path]) -> Path:
    return small_llama(layers=6, seed=1, scale=8.0)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("probe") / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def _reference_greedy(model_dir: Path, ids: torch.Tensor, loss_mask: torch.Tensor, keep: int) -> list[int]:
    """The same greedy criterion computed the slow, obvious way: a full HF forward (with the padding mask) of a
    copy of the model holding only the candidate layers."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    layers = list(model.model.layers)
    attn = torch.ones_like(ids)
    mask = loss_mask.bool()

    def logp(kept: list[int]) -> torch.Tensor:
        model.model.layers = torch.nn.ModuleList([layers[i] for i in kept])
        model.config.num_hidden_layers = len(kept)
        with torch.no_grad():
            return model(input_ids=ids, attention_mask=attn, use_cache=False).logits[:, :-1][mask].log_softmax(-1)

    full = logp(list(range(len(layers))))
    kept = list(range(len(layers)))
    while len(kept) > keep:
        kls = {}
        for i in kept:
            lp = logp([j for j in kept if j != i])
            kls[i] = float(torch.nn.functional.kl_div(lp, full, log_target=True, reduction="none").sum(-1).mean())
        ordered = sorted(kls, key=kls.__getitem__)
        assert kls[ordered[1]] - kls[ordered[0]] > 1e-4, "a near tie: the test model does not separate the layers"
        kept.remove(ordered[0])
    return kept


def test_greedy_matches_an_independent_full_forward_search(teacher: Path, data_file: Path) -> None:
    ids, loss_mask = probe_batch(teacher, load_jsonl(data_file, DataConfig()))
    model = AutoModelForCausalLM.from_pretrained(teacher, dtype=torch.float32).eval()
    seen: list[list[int]] = []
    kept, steps = greedy_layers(model, ids, loss_mask, 3, progress=lambda r, k: seen.append(k))
    assert kept == _reference_greedy(teacher, ids, loss_mask, 3)
    assert len(steps) == 3 and seen[-1] == kept and sorted({s.layer for s in steps} | set(kept)) == list(range(6))
    assert all(s.kl >= 0 and 0 <= s.top1_agreement <= 1 for s in steps)


def test_shrink_with_a_probe_keeps_the_greedy_layers_and_records_them(
    teacher: Path, data_file: Path, tmp_path: Path
) -> None:
    probe = probe_batch(teacher, load_jsonl(data_file, DataConfig()))
    result = shrink(teacher, 3, tmp_path / "student", probe=probe)
    model = AutoModelForCausalLM.from_pretrained(teacher, dtype=torch.float32).eval()
    expected, _ = greedy_layers(model, *probe, 3)
    assert result.kept_layers == expected
    info = json.loads((result.path / "shrink.json").read_text())
    assert info["select"] == "greedy" and info["probe_rows"] == len(ROWS) and len(info["removals"]) == 3
    assert AutoModelForCausalLM.from_pretrained(result.path).config.num_hidden_layers == 3


def test_a_probe_without_answer_tokens_is_refused(teacher: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(teacher, dtype=torch.float32).eval()
    ids = torch.tensor([[1, 2, 3, 4]])
    with pytest.raises(LayerSearchError, match="no answer tokens"):
        greedy_layers(model, ids, torch.zeros(1, 3), 2)
    with pytest.raises(ShrinkError, match="no answer tokens"):
        shrink(teacher, 2, teacher.parent / "never", probe=(ids, torch.zeros(1, 3)))


def test_cli_needs_data_exactly_with_greedy(teacher: Path, data_file: Path, tmp_path: Path) -> None:
    from rlvr.cli import app

    runner = CliRunner()
    bad = runner.invoke(app, ["models", "shrink", "--from", str(teacher), "--layers", "3", "--select", "greedy"])
    assert bad.exit_code == 2 and "--data" in bad.output
    ok = runner.invoke(app, ["models", "shrink", "--from", str(teacher), "--layers", "3", "--select", "greedy",
                             "--data", str(data_file), "--out", str(tmp_path / "s")])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert json.loads((tmp_path / "s" / "shrink.json").read_text())["select"] == "greedy"
