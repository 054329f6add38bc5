"""Students for distillation: `rlvr models shrink` (keep K of a teacher's decoder layers), parameter counts,
and the teacher/student compatibility check that logit-level distillation needs.

Which layers a shrunk student keeps: the teacher's first K - T layers and its last T (T = `tail`, default 4,
at most K - 1), i.e. one contiguous block of upper-middle layers is dropped. This follows the layer-pruning
literature (Gromov et al. 2024, "The Unreasonable Ineffectiveness of the Deeper Layers"; Men et al. 2024, ShortGPT):
the first layers turn embeddings into features, the last ones map features back onto the vocabulary, and the
layers just before the last ones are the most redundant; a contiguous cut also leaves every kept layer but one
reading exactly the input it saw in the teacher. Measured on SmolLM2-135M (30 layers) distilled to 11 layers on
2-digit addition (benchmarks/results/distill_demo.json): the first 7 + last 4 start at a held-out forward KL of
8.5 nats against 14.5 for 11 evenly spaced layers, and the KD loss after 7 steps was 2.5 against 6.0. Embeddings,
final norm and LM head are copied unchanged, so the student starts as a model that already speaks the teacher's
vocabulary.

`--select greedy` (a probe of task examples) chooses the layers on the task instead: greedy backward
elimination by the KL to the teacher on the examples' answer tokens (rlvr/layer_search.py). Measured on the
addition task it starts closer to the teacher but trained worse than the positional cut, which stays the default.

Any HF model directory may also be a student; `check_compatible` decides whether logit-level modes can compare the
two models token for token (same vocabulary ids, same special tokens). Sequence-level distillation only exchanges
text, so it works across tokenizers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlvr.models import COMPLETE_MARKER
from rlvr.paths import atomic_dir, models_dir

SHRINK_INFO = "shrink.json"


class ShrinkError(ValueError):
    """The requested student cannot be made (bad layer count, not a decoder model with model.layers.N ...)."""


class CompatibilityError(ValueError):
    """Teacher and student tokenizers differ, so their logits cannot be compared token for token."""


def load_tokenizer(model_dir: str | Path, role: str) -> Any:
    """The tokenizer of a model directory, or a clear error (e.g. a bare weights dir, or a GRPO checkpoint written
    before checkpoints carried their tokenizer)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as e:
        raise ShrinkError(
            f"{role} {model_dir}: no usable tokenizer ({type(e).__name__}); copy the tokenizer files "
            "(tokenizer.json, tokenizer_config.json, chat_template.jinja) of the model it was trained from into it"
        ) from None


DEFAULT_TAIL = 4
"""Kept layers taken from the top of the teacher (see the module docstring)."""
SELECTIONS = ("block", "greedy")
"""How shrink chooses the kept layers: by position (select_layers) or on task examples (rlvr/layer_search.py)."""
PROBE_ROWS = 48
"""Task examples the greedy choice decides on by default (about 3 minutes for SmolLM2 on 2 cores)."""


def select_layers(num_layers: int, keep: int, tail: int = DEFAULT_TAIL) -> list[int]:
    """Indices of the `keep` layers a student keeps out of `num_layers`: the first keep - t and the last t, where
    t = min(tail, keep - 1), so the first and the last layer are always kept."""
    if num_layers < 1:
        raise ShrinkError(f"the teacher has {num_layers} decoder layers")
    if not 1 <= keep <= num_layers:
        raise ShrinkError(f"--layers {keep}: must be between 1 and the teacher's {num_layers} layers")
    if tail < 1:
        raise ShrinkError(f"--tail {tail}: must be at least 1 (the last layer is always kept)")
    if keep == 1:
        if num_layers > 1:
            raise ShrinkError("--layers 1 cannot keep both the first and the last layer; use at least 2")
        return [0]
    t = min(tail, keep - 1)
    return [*range(keep - t), *range(num_layers - t, num_layers)]


def count_parameters(model: Any) -> int:
    """Number of weights (numel), each storage counted once: tied embeddings / LM head count once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for _, p in model.named_parameters(remove_duplicate=False):
        key = (p.untyped_storage().data_ptr(), p.storage_offset())
        if key in seen:
            continue
        seen.add(key)
        total += p.numel()
    return total


def default_student_dir(teacher: Path, keep: int) -> Path:
    return models_dir() / f"{teacher.resolve().name}-{keep}layers"


def _remap(state: dict[str, Any], keep: list[int]) -> dict[str, Any]:
    """Teacher state dict → student state dict: layer keep[j] becomes layer j, everything else is copied."""
    new_index = {old: new for new, old in enumerate(keep)}
    out: dict[str, Any] = {}
    for name, tensor in state.items():
        parts = name.split(".")
        if "layers" in parts:
            pos = parts.index("layers") + 1
            old = int(parts[pos])
            if old not in new_index:
                continue
            parts[pos] = str(new_index[old])
        out[".".join(parts)] = tensor
    return out


@dataclass
class ShrinkResult:
    path: Path
    kept_layers: list[int]
    teacher_layers: int
    teacher_params: int
    student_params: int


def shrink(
    teacher: str | Path,
    keep: int,
    out: str | Path | None = None,
    tail: int = DEFAULT_TAIL,
    probe: tuple[Any, Any] | None = None,
) -> ShrinkResult:
    """Write a student keeping `keep` of the teacher's decoder layers as a plain HF directory (weights in the
    teacher's dtype, the teacher's tokenizer and chat template, generation config and a shrink.json record).

    Which layers: `select_layers` (by position), or, given a probe (input_ids, loss_mask) of task examples, the
    greedy task-aware choice of rlvr/layer_search.py."""
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    src = Path(teacher)
    if not (src / "config.json").is_file():
        raise ShrinkError(f"--from {src}: not an HF model directory (no config.json)")
    config = AutoConfig.from_pretrained(src)
    tokenizer = load_tokenizer(src, "--from")
    n = int(getattr(config, "num_hidden_layers", 0) or 0)
    kept = select_layers(n, keep, tail)
    model = AutoModelForCausalLM.from_pretrained(src, dtype="auto")
    if not any(".layers." in k for k in model.state_dict()):
        raise ShrinkError(f"{src}: no `layers.N` decoder blocks in the state dict; cannot drop layers")
    search: dict[str, Any] = {"select": "block", "tail": tail}
    if probe is not None:
        kept, search = _greedy(model, probe, keep)
    config.num_hidden_layers = keep
    # Per-layer lists (attention types in newer configs) follow the kept layers.
    for attr in ("layer_types", "sliding_window_pattern_list"):
        values = getattr(config, attr, None)
        if isinstance(values, list) and len(values) == n:
            setattr(config, attr, [values[i] for i in kept])
    student = AutoModelForCausalLM.from_config(config, dtype=model.dtype)
    missing, unexpected = student.load_state_dict(_remap(model.state_dict(), kept), strict=False)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    if unexpected or [m for m in missing if not (tied and m.startswith("lm_head"))]:
        raise ShrinkError(f"{src}: teacher weights do not map onto the student: {missing=} {unexpected=}")
    if tied:
        student.tie_weights()
    final = Path(out) if out is not None else default_student_dir(src, keep)
    result = ShrinkResult(final, kept, n, count_parameters(model), count_parameters(student))
    with atomic_dir(final) as tmp:
        student.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if (src / "generation_config.json").is_file():
            GenerationConfig.from_pretrained(src).save_pretrained(tmp)
        info = {"teacher": str(src.resolve()), "teacher_layers": n, "kept_layers": kept,
                "teacher_params": result.teacher_params, "student_params": result.student_params, **search}  # fmt: skip
        (tmp / SHRINK_INFO).write_text(json.dumps(info, indent=1) + "\n")
        (tmp / COMPLETE_MARKER).write_text("ok\n")  # as rlvr.models publishes its models
    return result


def _greedy(model: Any, probe: tuple[Any, Any], keep: int) -> tuple[list[int], dict[str, Any]]:
    from rlvr.layer_search import LayerSearchError, greedy_layers

    input_ids, loss_mask = probe
    try:
        kept, steps = greedy_layers(model, input_ids, loss_mask, keep)
    except LayerSearchError as e:
        raise ShrinkError(str(e)) from None
    removals = [{"layer": s.layer, "kl": round(s.kl, 4), "top1_agreement": round(s.top1_agreement, 4)} for s in steps]
    return kept, {"select": "greedy", "probe_rows": int(input_ids.shape[0]), "removals": removals}


# ---------------------------------------------------------------------------------------------- compatibility


def _special_tokens(tok: Any) -> dict[str, tuple[str, int | None]]:
    """Role → (token, id) for bos/eos/pad/unk and every added special token (keyed by its text)."""
    out: dict[str, tuple[str, int | None]] = {}
    for role in ("bos_token", "eos_token", "pad_token", "unk_token"):
        text = getattr(tok, role, None)
        if text is not None:
            out[role] = (str(text), tok.convert_tokens_to_ids(str(text)))
    for idx, added in sorted(tok.added_tokens_decoder.items()):
        if added.special:
            out[f"special token {added.content!r}"] = (added.content, idx)
    return out


def compare_tokenizers(teacher: Any, student: Any) -> None:
    """Raise CompatibilityError naming the first id whose token differs, or the first special token that
    differs (missing, other text, other id)."""
    t_vocab = {i: s for s, i in teacher.get_vocab().items()}
    s_vocab = {i: s for s, i in student.get_vocab().items()}
    for i in range(max(len(t_vocab), len(s_vocab))):
        a, b = t_vocab.get(i), s_vocab.get(i)
        if a != b:
            raise CompatibilityError(
                f"tokenizer vocabularies differ at id {i}: teacher {a!r}, student {b!r} "
                f"(teacher {len(t_vocab)} tokens, student {len(s_vocab)}); logit-level distillation needs the same "
                "vocabulary: use mode = \"sequence\" or a student made with `rlvr models shrink`"
            )
    t_special, s_special = _special_tokens(teacher), _special_tokens(student)
    for role in sorted(set(t_special) | set(s_special)):
        a_tok, b_tok = t_special.get(role), s_special.get(role)
        if a_tok != b_tok:
            raise CompatibilityError(
                f"special tokens differ: {role} is {_fmt(a_tok)} in the teacher, {_fmt(b_tok)} in the student; "
                "logit-level distillation needs the same special tokens (or use mode = \"sequence\")"
            )


def _fmt(tok: tuple[str, int | None] | None) -> str:
    return "absent" if tok is None else f"{tok[0]!r} (id {tok[1]})"


def check_compatible(teacher_dir: str | Path, student_dir: str | Path, mode: str) -> None:
    """Stop before a distillation run whose mode cannot work with these two models. Logit-level modes
    ("logits", "on_policy") compare distributions over token ids, so the tokenizers must agree; "sequence" only
    exchanges text and accepts any pair."""
    teacher, student = load_tokenizer(teacher_dir, "teacher"), load_tokenizer(student_dir, "student")
    if mode != "sequence":
        compare_tokenizers(teacher, student)
