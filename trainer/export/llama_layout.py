"""HF Llama tensors -> GGUF tensors: names from gguf-py's TensorNameMap, and llama.cpp's q/k row order.

HF stores each attention head's rotary pairs as two halves (rotate_half); llama.cpp's rope kernel expects the
two members of a pair interleaved. llama.cpp's own converter (convert_hf_to_gguf.py, LlamaModel.permute)
reorders the rows of q_proj and k_proj; gguf-py does not. Without it the file loads silently and agrees on
~54% of top-1 tokens (issue 12), so the permutation is tested as a round trip (unpermute_qk) and end to end.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

SUPPORTED_MODEL_TYPES = ("llama",)


class LayoutError(ValueError):
    """The model cannot be written as a llama-architecture GGUF (names the field or tensor)."""


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Rows of a q or k projection from HF's half-split rotary layout to llama.cpp's interleaved one."""
    rows = w.shape[0]
    if rows % (2 * n_head):
        raise LayoutError(f"cannot permute a {w.shape} projection over {n_head} heads")
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of permute_qk (what a GGUF reader does to get HF weights back)."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def check_config(config: Any) -> None:
    """Refuse what this writer does not map (rather than write a file that loads and answers wrongly)."""
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise LayoutError(f"config.model_type={model_type!r}: GGUF export supports {SUPPORTED_MODEL_TYPES}")
    rope = rope_parameters(config)
    if rope.get("rope_type", "default") != "default":
        raise LayoutError(f"config rope_type={rope.get('rope_type')!r}: only the default RoPE is mapped")
    for flag in ("attention_bias", "mlp_bias"):
        if getattr(config, flag, False):
            raise LayoutError(f"config.{flag}=true: biases are not mapped to GGUF")


def rope_parameters(config: Any) -> dict[str, Any]:
    """transformers 5 keeps rope_theta inside rope_parameters; 4.x had it at the top level."""
    params = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    params.setdefault("rope_theta", getattr(config, "rope_theta", 10000.0))
    return params


def head_dim(config: Any) -> int:
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def gguf_tensors(state: Mapping[str, Any], config: Any) -> Iterator[tuple[str, np.ndarray]]:
    """(GGUF name, float32 array in llama.cpp layout) for every tensor llama.cpp needs, in a stable order.

    Tied embeddings: llama.cpp uses token_embd for the output when output.weight is absent, so lm_head is
    not written (it is the same tensor)."""
    import gguf

    check_config(config)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in state.items():
        if tied and hf_name == "lm_head.weight":
            continue
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue  # recomputed by every runtime from rope_theta
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise LayoutError(f"tensor {hf_name!r} has no llama GGUF name (unsupported model variant?)")
        data = tensor.detach().float().cpu().numpy()
        if hf_name.endswith("q_proj.weight"):
            data = permute_qk(data, config.num_attention_heads)
        elif hf_name.endswith("k_proj.weight"):
            data = permute_qk(data, config.num_key_value_heads)
        yield name, data


def hparams(config: Any) -> dict[str, Any]:
    """The llama.* metadata llama.cpp reads, from the HF config (one place, used by the writer and tests)."""
    check_config(config)
    return {
        "context_length": int(config.max_position_embeddings),
        "embedding_length": int(config.hidden_size),
        "block_count": int(config.num_hidden_layers),
        "feed_forward_length": int(config.intermediate_size),
        "head_count": int(config.num_attention_heads),
        "head_count_kv": int(config.num_key_value_heads),
        "rope_dimension_count": head_dim(config),
        "rope_freq_base": float(rope_parameters(config)["rope_theta"]),
        "layer_norm_rms_eps": float(config.rms_norm_eps),
        "vocab_size": int(config.vocab_size),
    }
