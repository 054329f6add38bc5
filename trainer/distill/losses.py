"""Token-level distillation losses: forward KL, reverse KL and the generalized Jensen-Shannon divergence.

Definitions follow TRL's GKD (`trl.experimental.gkd.GKDTrainer.generalized_jsd_loss`, Eq. 1 of Agarwal et al.
2306.13649), so a value here equals TRL's for the same logits:

    M      = beta * P_teacher + (1 - beta) * P_student
    JSD_b  = beta * KL(P_teacher || M) + (1 - beta) * KL(P_student || M)
    beta = 0 → KL(P_teacher || P_student)   (forward KL: the student covers the teacher's mass)
    beta = 1 → KL(P_student || P_teacher)   (reverse KL: the student seeks the teacher's modes)

Both distributions are softmax(logits / temperature); like TRL, the loss is not multiplied by temperature².
Per-token divergences are averaged over the tokens the mask selects (TRL's "batchmean" with labels).

Top-k truncation (top_k > 0) bounds memory to k entries per position: the teacher's k largest logits are kept
and its distribution is renormalised over those k tokens; the student's logits are gathered at the same k token
ids and renormalised over them too. Both are then distributions on one k-token support, so every divergence is
finite and equals TRL's function applied to the gathered logits. The price: the student's mass outside the
teacher's top-k is not penalised (with k = 0, the default, nothing is truncated)."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

Divergence = Literal["forward_kl", "reverse_kl", "jsd"]
DIVERGENCES: dict[str, float | None] = {"forward_kl": 0.0, "reverse_kl": 1.0, "jsd": None}
"""Each divergence as the generalized-JSD beta it equals (None: the configured beta)."""


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(P || Q) over the last axis from log-probabilities (0 · log 0 = 0)."""
    return F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(-1)


def generalized_jsd(student_logps: torch.Tensor, teacher_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-position generalized JSD (shape = inputs without the last axis) from log-probabilities."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    if beta == 0.0:
        return _kl(teacher_logps, student_logps)
    if beta == 1.0:
        return _kl(student_logps, teacher_logps)
    mixture = torch.logsumexp(
        torch.stack([student_logps + math.log1p(-beta), teacher_logps + math.log(beta)]), dim=0
    )
    return beta * _kl(teacher_logps, mixture) + (1.0 - beta) * _kl(student_logps, mixture)


def truncate_top_k(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, top_k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(student, teacher) logits restricted to the teacher's top-k token ids at each position (k <= 0: all)."""
    if top_k <= 0 or top_k >= teacher_logits.shape[-1]:
        return student_logits, teacher_logits
    teacher_top, ids = teacher_logits.topk(top_k, dim=-1)
    return student_logits.gather(-1, ids), teacher_top


def _upcast(x: torch.Tensor) -> torch.Tensor:
    # bf16 log-softmax over a 49k vocabulary loses the small differences KD learns from; float64 stays float64.
    return x if x.dtype == torch.float64 else x.float()


def token_divergence(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    divergence: Divergence = "forward_kl",
    beta: float = 0.5,
    temperature: float = 1.0,
    top_k: int = 0,
) -> torch.Tensor:
    """Divergence between the teacher's and the student's next-token distributions at each position.

    Logits are [..., vocab] (the same vocabulary: see rlvr.student.check_compatible); returns [...]. Gradients
    flow into the student's logits only."""
    if divergence not in DIVERGENCES:
        raise ValueError(f"unknown divergence {divergence!r}; choose one of {sorted(DIVERGENCES)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    s, t = truncate_top_k(_upcast(student_logits), _upcast(teacher_logits.detach()), top_k)
    s_logps = F.log_softmax(s / temperature, dim=-1)
    t_logps = F.log_softmax(t / temperature, dim=-1)
    fixed = DIVERGENCES[divergence]
    return generalized_jsd(s_logps, t_logps, beta if fixed is None else fixed)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, denominator: float | None = None) -> torch.Tensor:
    """Sum of values where mask is set, over the mask's token count (or a given count, for gradient
    accumulation over micro-batches, as TRL's num_items_in_batch)."""
    total = (values * mask).sum()
    count = float(mask.sum()) if denominator is None else denominator
    return total / max(count, 1.0)
