"""KD losses against reference formulas (values and gradients on small tensors) and against TRL's GKD."""

from __future__ import annotations

import os

import pytest
import torch

from trainer.distill.losses import generalized_jsd, masked_mean, token_divergence, truncate_top_k

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def logits(seed: int, shape: tuple[int, ...] = (2, 3, 7)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * 2).requires_grad_(True)


def ref_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) written out from probabilities."""
    return (p * (p.log() - q.log())).sum(-1)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_forward_and_reverse_kl_match_the_textbook_formulas(temperature: float) -> None:
    s, t = logits(0), logits(1).detach()
    ps, pt = torch.softmax(s / temperature, -1), torch.softmax(t / temperature, -1)
    fwd = token_divergence(s, t, "forward_kl", temperature=temperature)
    rev = token_divergence(s, t, "reverse_kl", temperature=temperature)
    torch.testing.assert_close(fwd, ref_kl(pt, ps))
    torch.testing.assert_close(rev, ref_kl(ps, pt))
    assert not torch.allclose(fwd, rev)


def test_jsd_matches_the_mixture_formula_and_its_endpoints() -> None:
    s, t = logits(2), logits(3).detach()
    ps, pt = torch.softmax(s, -1), torch.softmax(t, -1)
    for beta in (0.1, 0.5, 0.9):
        m = beta * pt + (1 - beta) * ps
        expected = beta * ref_kl(pt, m) + (1 - beta) * ref_kl(ps, m)
        torch.testing.assert_close(token_divergence(s, t, "jsd", beta=beta), expected)
    torch.testing.assert_close(token_divergence(s, t, "jsd", beta=0.0), token_divergence(s, t, "forward_kl"))
    torch.testing.assert_close(token_divergence(s, t, "jsd", beta=1.0), token_divergence(s, t, "reverse_kl"))


def test_divergences_are_zero_for_identical_distributions_and_positive_otherwise() -> None:
    s = logits(4)
    for div in ("forward_kl", "reverse_kl", "jsd"):
        same = token_divergence(s, s.detach().clone(), div)  # type: ignore[arg-type]
        torch.testing.assert_close(same, torch.zeros_like(same), atol=1e-12, rtol=0)
        assert (token_divergence(s, logits(5).detach(), div) > 0).all()  # type: ignore[arg-type]


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_gradients_match_the_analytic_ones(temperature: float) -> None:
    s, t = logits(6), logits(7).detach()
    ps, pt = torch.softmax(s / temperature, -1), torch.softmax(t / temperature, -1)
    # d KL(pt || ps) / dz = (ps - pt) / T
    (g_fwd,) = torch.autograd.grad(token_divergence(s, t, "forward_kl", temperature=temperature).sum(), s)
    torch.testing.assert_close(g_fwd, (ps - pt).detach() / temperature)
    # d KL(ps || pt) / dz = ps * (log ps - log pt - KL(ps || pt)) / T
    (g_rev,) = torch.autograd.grad(token_divergence(s, t, "reverse_kl", temperature=temperature).sum(), s)
    log_ratio = ps.log() - pt.log()
    expected = ps * (log_ratio - (ps * log_ratio).sum(-1, keepdim=True)) / temperature
    torch.testing.assert_close(g_rev, expected.detach())


def test_gradients_pass_a_numerical_check_and_skip_the_teacher() -> None:
    t = logits(9, (1, 2, 5)).detach().requires_grad_(True)
    for div, beta in (("forward_kl", 0.5), ("reverse_kl", 0.5), ("jsd", 0.3)):
        fn = lambda z, d=div, b=beta: token_divergence(z, t, d, beta=b)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (logits(8, (1, 2, 5)),))
    token_divergence(logits(8, (1, 2, 5)), t, "jsd").sum().backward()
    assert t.grad is None


def trl_jsd(s: torch.Tensor, t: torch.Tensor, mask: torch.Tensor, beta: float, temperature: float) -> torch.Tensor:
    from trl.experimental.gkd import GKDTrainer

    labels = torch.where(mask.bool(), 0, -100)
    return GKDTrainer.generalized_jsd_loss(s, t, labels=labels, beta=beta, temperature=temperature)


@pytest.mark.parametrize(("beta", "temperature"), [(0.0, 1.0), (1.0, 1.0), (0.5, 1.0), (0.25, 2.0), (0.9, 0.7)])
def test_loss_and_gradient_equal_trl_gkd(beta: float, temperature: float) -> None:
    s, t = logits(10), logits(11).detach()
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]], dtype=torch.float64)
    ours = masked_mean(token_divergence(s, t, "jsd", beta=beta, temperature=temperature), mask)
    theirs = trl_jsd(s, t, mask, beta, temperature)
    torch.testing.assert_close(ours, theirs)
    (g_ours,) = torch.autograd.grad(ours, s)
    (g_theirs,) = torch.autograd.grad(theirs, s)
    torch.testing.assert_close(g_ours, g_theirs)


def test_top_k_renormalises_both_sides_over_the_teachers_top_k() -> None:
    s, t = logits(12), logits(13).detach()
    k = 3
    got = token_divergence(s, t, "forward_kl", top_k=k)
    ids = t.topk(k, -1).indices
    pt = torch.softmax(t.gather(-1, ids), -1)  # the teacher's top-k, renormalised
    ps = torch.softmax(s.gather(-1, ids), -1)  # the student at those ids, renormalised over them
    torch.testing.assert_close(got, ref_kl(pt, ps))
    # Equal to TRL's function on the gathered logits, for any beta.
    mask = torch.ones(2, 3, dtype=torch.float64)
    s_k, t_k = truncate_top_k(s, t, k)
    torch.testing.assert_close(masked_mean(token_divergence(s, t, "jsd", beta=0.4, top_k=k), mask),
                               trl_jsd(s_k, t_k, mask, 0.4, 1.0))  # fmt: skip
    # k >= vocab (or 0) is no truncation.
    torch.testing.assert_close(token_divergence(s, t, "jsd", top_k=7), token_divergence(s, t, "jsd", top_k=0))


def test_masked_mean_counts_only_selected_tokens() -> None:
    v = torch.tensor([[1.0, 2.0, 100.0]])
    m = torch.tensor([[1.0, 1.0, 0.0]])
    assert float(masked_mean(v, m)) == 1.5
    assert float(masked_mean(v, m, denominator=6.0)) == 0.5
    assert float(masked_mean(v, torch.zeros_like(m))) == 0.0


def test_bad_arguments_are_rejected() -> None:
    s, t = logits(14), logits(15).detach()
    with pytest.raises(ValueError, match="unknown divergence"):
        token_divergence(s, t, "kl")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="temperature"):
        token_divergence(s, t, temperature=0.0)
    with pytest.raises(ValueError, match="beta"):
        generalized_jsd(s, t, beta=1.5)
