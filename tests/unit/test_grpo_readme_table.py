"""The README's GRPO race table is generated (benchmarks/grpo_table.py --readme), never edited by hand: the
committed block must equal the table printed from the committed benchmarks/results/grpo_race.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

# appended, not inserted: benchmarks/graders.py must not shadow the graders package for later tests
sys.path.append(str(Path(__file__).resolve().parents[2] / "benchmarks"))
from grpo_table import BEGIN, END, markdown, readme_block, with_table

ROOT = Path(__file__).resolve().parents[2]


def test_committed_readme_block_equals_the_table_generated_from_the_committed_results() -> None:
    results = json.loads((ROOT / "benchmarks" / "results" / "grpo_race.json").read_text())
    assert readme_block((ROOT / "README.md").read_text()) == markdown(results)


def test_with_table_replaces_only_the_block_and_round_trips() -> None:
    readme = f"intro\n{BEGIN}\nold table\nold row\n{END}\noutro\n"
    new = with_table(readme, "| new |")
    assert new == f"intro\n{BEGIN}\n| new |\n{END}\noutro\n"
    assert readme_block(new) == "| new |" and with_table(new, "| new |") == new


def test_missing_markers_are_a_clear_error() -> None:
    with pytest.raises(ValueError, match="markers"):
        readme_block("a README without the block")
    with pytest.raises(ValueError, match="markers"):
        readme_block(f"{END}\n{BEGIN}")
