"""The trained policy: loading (full / LoRA / QLoRA), per-token log-probs of sampled completions, the
reference model for the KL term, and exporting weights in the form the rollout service takes.

Precision: a full fine-tune keeps float32 master weights (so AdamW's state is float32 too) and computes in
model.dtype (bf16 autocast, or float32); LoRA keeps its frozen base in model.dtype and the adapter in float32.
model.dtype = "auto" is bf16 only where the hardware has bf16 matmul kernels (compute_dtype).

The trainer never tokenizes: the rollout service returns prompt and completion token ids, and the policy
scores exactly those ids, so trainer and engine log-probs refer to the same tokens."""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from rlvr.hardware import bf16_is_native
from trainer.config import ModelSection

log = logging.getLogger(__name__)


class PolicyError(RuntimeError):
    """The policy cannot be built as configured (missing model, QLoRA without a GPU, ...)."""


def resolve_model_path(path: str) -> Path:
    """"base"/"tiny" name the bundled models (prepared on first use); anything else is an HF directory."""
    from rlvr.models import prepare_base_model, prepare_tiny_model

    if path == "base":
        return prepare_base_model()
    if path == "tiny":
        return prepare_tiny_model()
    p = Path(path)
    if not (p / "config.json").is_file():
        raise PolicyError(f"model.path = {path!r}: not an HF model directory (no config.json)")
    return p


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise PolicyError("model.device = \"cuda\" but torch sees no CUDA device")
    return torch.device(device)


def check_qlora_supported(device: torch.device) -> None:
    """QLoRA needs bitsandbytes (its 4-bit NF4 layers run on CUDA and, since 0.45, on CPU: measured here, a
    LoRA on the 4-bit tiny model trains on CPU); say so plainly instead of failing deep inside peft."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        raise PolicyError(f"model.finetune = \"qlora\" needs bitsandbytes: pip install bitsandbytes ({e})") from None
    if device.type not in ("cpu", "cuda"):
        raise PolicyError(f"model.finetune = \"qlora\": bitsandbytes has no 4-bit kernels for {device.type}")


def load_base_model(path: Path, cfg: ModelSection, device: torch.device) -> Any:
    from transformers import AutoModelForCausalLM

    dtype = compute_dtype(cfg)
    if cfg.finetune == "qlora":
        check_qlora_supported(device)
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        quant = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=True
        )
        where = (device.index or 0) if device.type == "cuda" else "cpu"
        model = AutoModelForCausalLM.from_pretrained(
            path, quantization_config=quant, dtype=dtype, device_map={"": where}
        )
        return prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    # Full fine-tuning updates every weight: float32 masters (and so float32 AdamW state), whatever the compute
    # dtype. LoRA's base is frozen, so it is stored in the compute dtype (peft keeps the adapter in float32).
    storage = torch.float32 if cfg.finetune == "full" else dtype
    model = AutoModelForCausalLM.from_pretrained(path, dtype=storage)
    return model.to(device)  # type: ignore[arg-type]


def _load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise PolicyError(
            f"model {path}: no usable tokenizer ({type(e).__name__}); the rollout service needs it too: copy the "
            "tokenizer files (tokenizer.json, tokenizer_config.json, chat_template.jinja) of the model it was "
            "trained from into it"
        ) from None


@functools.cache
def _warn_emulated_bf16(device_type: str) -> None:
    log.warning(
        "dtype = \"bfloat16\" on a %s without bf16 matmul kernels: every pass runs a reference bf16 gemm (~7x slower "
        "forward, ~40x slower backward than float32 here); \"auto\" picks float32 on such hardware", device_type
    )


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """A config's dtype name on a device: "auto" is bf16 where bf16_is_native, else float32; an explicit
    "bfloat16" is kept (with a warning where it is emulated)."""
    if name == "auto":
        return torch.bfloat16 if bf16_is_native(device) else torch.float32
    if name == "bfloat16" and not bf16_is_native(device):
        _warn_emulated_bf16(device.type)
    return {"bfloat16": torch.bfloat16, "float32": torch.float32}[name]


def compute_dtype(cfg: ModelSection) -> torch.dtype:
    """The dtype of the forward/backward passes (model.dtype on model.device)."""
    return resolve_dtype(cfg.dtype, resolve_device(cfg.device))


def add_lora(model: Any, cfg: ModelSection) -> Any:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,  # type: ignore[arg-type]  # peft annotates int, accepts float
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def _token_logps(logits: torch.Tensor, ids: torch.Tensor, temperature: float) -> torch.Tensor:
    """log softmax(logits / temperature) at the token ids [B, T], in float32."""
    logits = logits.float() / temperature
    return logits.gather(-1, ids.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


GPU_GROUPS_PER_PASS = 8
"""model.groups_per_pass's default on a GPU: the demo's whole step (8 groups) in one pass."""


class Policy:
    """The model being trained plus what the loop needs from it."""

    def __init__(self, cfg: ModelSection, beta: float = 0.0) -> None:
        self.cfg = cfg
        self.path = resolve_model_path(cfg.path)
        self.device = resolve_device(cfg.device)
        model = load_base_model(self.path, cfg, self.device)
        self.tied = bool(getattr(model.config, "tie_word_embeddings", False))
        # A full fine-tune needs a frozen copy for the KL term; LoRA's reference is the base itself
        # (adapter disabled), so no second copy is made.
        self.ref_model: Any = None
        if beta > 0 and cfg.finetune == "full":
            # Never updated, so it needs no float32 master: stored in the compute dtype (half the memory in bf16).
            self.ref_model = copy.deepcopy(model).to(compute_dtype(cfg)).eval().requires_grad_(False)
        if cfg.finetune in ("lora", "qlora"):
            model = add_lora(model, cfg)
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.config.use_cache = False
        self.model = model
        self.model.train()
        # Never used to tokenize (see above): saved with every checkpoint, so a checkpoint's model dir is a
        # complete HF model (chat template included) that can be served, shrunk or distilled from as is.
        self.tokenizer = _load_tokenizer(self.path)

    @property
    def is_lora(self) -> bool:
        return self.cfg.finetune in ("lora", "qlora")

    @property
    def groups_per_pass(self) -> int:
        """model.groups_per_pass, or its device default (see trainer/config.py)."""
        if self.cfg.groups_per_pass is not None:
            return self.cfg.groups_per_pass
        return GPU_GROUPS_PER_PASS if self.device.type == "cuda" else 1

    @property
    def shared_prefix(self) -> bool:
        return self.cfg.shared_prefix and not self.cfg.gradient_checkpointing

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The compute-dtype context of forward and backward passes: bf16 autocast over the float32 masters of a
        full fine-tune; a no-op otherwise (LoRA computes in its base's dtype). Entered once around a whole
        step's passes, autocast casts each master weight to bf16 once and reuses the copy (its cast cache)."""
        if self.cfg.finetune == "full" and compute_dtype(self.cfg) == torch.bfloat16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def num_parameters(self) -> tuple[int, int]:
        """(trainable, total) parameter counts."""
        total = sum(p.numel() for p in self.model.parameters())
        return sum(p.numel() for p in self.parameters()), total

    # ------------------------------------------------------------------ log-probs

    def group_logps(
        self, prompt: list[int], completions: list[list[int]], temperature: float = 1.0, model: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs [G, T] of each completion token given the shared prompt, and the mask [G, T] of real
        (non-padding) tokens. Gradients flow when called with grad enabled."""
        model = model if model is not None else self.model
        lengths = [len(c) for c in completions]
        width = max(max(lengths), 1)
        ids = torch.zeros(len(completions), width, dtype=torch.long)
        for i, c in enumerate(completions):
            ids[i, : len(c)] = torch.tensor(c, dtype=torch.long)
        mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).float()
        ids = ids.to(self.device)
        with self.autocast():
            if self.shared_prefix and model is self.model:
                logits = self._logits_shared(model, prompt, ids)
            else:
                logits = self._logits_plain(model, prompt, ids)
        # Right padding needs no attention mask: causal attention never lets a real token see the pads.
        logps = _token_logps(logits, ids, temperature)
        return logps, mask.to(logps.device)

    def batch_logps(
        self, groups: list[tuple[list[int], list[list[int]]]], temperature: float = 1.0, model: Any = None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """group_logps of several groups (prompt, completions) in one forward pass: every prompt + completion
        is a row of one right-padded batch (pads come after a row's real tokens, so causal attention never lets
        a real token see them). Returns each group's (log-probs [G, T], mask [G, T]) as group_logps does."""
        model = model if model is not None else self.model
        rows = [(p, c) for p, cs in groups for c in cs]
        width = max(len(p) + len(c) for p, c in rows)
        first = min(len(p) for p, _ in rows) - 1  # the first logit column any completion token needs
        t = max(max((len(c) for _, c in rows), default=1), 1)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        cols = torch.zeros(len(rows), t, dtype=torch.long)
        targets = torch.zeros(len(rows), t, dtype=torch.long)
        for i, (p, c) in enumerate(rows):
            ids[i, : len(p) + len(c)] = torch.tensor(p + c, dtype=torch.long)
            # A row's columns past its completion are masked out: clamped into the batch rather than padded for.
            cols[i] = (torch.arange(t) + len(p) - 1).clamp(max=width - 1) - first
            targets[i, : len(c)] = torch.tensor(c, dtype=torch.long)
        ids = ids.to(self.device)
        keep = torch.arange(first, width, device=self.device)
        with self.autocast():
            logits = model(input_ids=ids, logits_to_keep=keep, use_cache=False).logits
        cols = cols.to(self.device)
        logits = logits.gather(1, cols[..., None].expand(-1, -1, logits.shape[-1]))
        logps = _token_logps(logits, targets.to(self.device), temperature)
        out, row = [], 0
        for _, cs in groups:
            lengths = torch.tensor([len(c) for c in cs])
            width_g = max(int(lengths.max()), 1)
            mask = (torch.arange(width_g)[None, :] < lengths[:, None]).float().to(self.device)
            out.append((logps[row : row + len(cs), :width_g], mask))
            row += len(cs)
        return out

    def _logits_plain(self, model: Any, prompt: list[int], ids: torch.Tensor) -> torch.Tensor:
        g, t = ids.shape
        p = torch.tensor(prompt, dtype=torch.long, device=ids.device).expand(g, -1)
        out = model(input_ids=torch.cat([p, ids], dim=1), logits_to_keep=t + 1, use_cache=False)
        return out.logits[:, :-1]

    def _logits_shared(self, model: Any, prompt: list[int], ids: torch.Tensor) -> torch.Tensor:
        from transformers import DynamicCache

        g, _ = ids.shape
        p = torch.tensor([prompt], dtype=torch.long, device=ids.device)
        first = model(input_ids=p, use_cache=True, logits_to_keep=1)
        # The prompt's keys/values are computed once and broadcast to the G completions; expand() keeps
        # them one tensor, so the backward pass sums the G gradients into the single prompt pass (exact).
        layers = first.past_key_values.layers
        cache = DynamicCache(
            ddp_cache_data=[(la.keys.expand(g, -1, -1, -1), la.values.expand(g, -1, -1, -1)) for la in layers],
            config=self._config(model),
        )
        rest = model(input_ids=ids, past_key_values=cache, use_cache=True)
        return torch.cat([first.logits[:, -1:].expand(g, -1, -1), rest.logits[:, :-1]], dim=1)

    @staticmethod
    def _config(model: Any) -> Any:
        return model.get_base_model().config if hasattr(model, "get_base_model") else model.config

    @contextlib.contextmanager
    def reference(self) -> Iterator[Any]:
        """The reference model for the KL term: LoRA → the base with the adapter disabled; full → the copy."""
        if self.is_lora:
            with self.model.disable_adapter():
                yield self.model
        elif self.ref_model is not None:
            yield self.ref_model
        else:
            raise PolicyError("no reference model: loss.beta was 0 when the policy was built")

    def reference_logps(self, prompt: list[int], completions: list[list[int]], temperature: float) -> torch.Tensor:
        with torch.no_grad(), self.reference() as ref:
            logps, _ = self.group_logps(prompt, completions, temperature, model=ref)
        return logps

    # ------------------------------------------------------------------ weight export

    def full_state(self) -> dict[str, torch.Tensor]:
        """HF state-dict names → tensors (a tied lm_head is left out: the engine re-derives it). These are the
        float32 masters of a full fine-tune; the rollout client casts them to the server's dtype as it sends."""
        state = self.model.state_dict()
        if self.tied:
            state.pop("lm_head.weight", None)
        return {k: v.detach() for k, v in state.items()}

    def adapter_state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(adapter_config.json contents, peft tensor names → tensors) of the LoRA adapter."""
        from peft import get_peft_model_state_dict

        cfg = self.model.peft_config["default"].to_dict()
        cfg["base_model_name_or_path"] = str(self.path)
        tensors = {k: v.detach().clone() for k, v in get_peft_model_state_dict(self.model).items()}
        return cfg, tensors
