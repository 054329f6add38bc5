"""The pass@k estimator against references: the closed form with exact binomials, and brute force over every
k-subset of the samples (what the estimator is the expectation of)."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest

from trainer.passk import ks_for, mean_pass_at_k, pass_at_k


def closed_form(n: int, c: int, k: int) -> Fraction:
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


def brute_force(n: int, c: int, k: int) -> Fraction:
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return Fraction(sum(any(samples[i] for i in s) for s in subsets), len(subsets))


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_matches_brute_force_and_closed_form(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            ref = brute_force(n, c, k)
            assert ref == closed_form(n, c, k)
            assert pass_at_k(n, c, k) == pytest.approx(float(ref), abs=1e-12), (n, c, k)


def test_large_n_does_not_overflow() -> None:
    assert pass_at_k(2000, 3, 100) == pytest.approx(float(closed_form(2000, 3, 100)), rel=1e-9)
    assert pass_at_k(200, 1, 1) == pytest.approx(1 / 200)


def test_edges_and_mean() -> None:
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 4, 1) == 1.0
    assert mean_pass_at_k([(4, 1), (4, 0)], 1) == pytest.approx(0.125)
    assert math.isnan(mean_pass_at_k([], 1))
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)
    assert ks_for(1) == [1] and ks_for(8) == [1, 2, 4, 8] and ks_for(10) == [1, 2, 4, 8, 10]
