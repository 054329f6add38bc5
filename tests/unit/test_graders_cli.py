"""`rlvr grade`: order, carried fields, malformed lines, --keep-going, atomic output (no sandbox needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rlvr.cli import app

ROWS = [
    {"grader": "exact_match", "completion": "Paris", "answer": "paris", "extra": {"k": 1}, "id": "a"},
    {"grader": "math", "completion": "\\boxed{4}", "answer": "4"},
    {"grader": "json_schema", "completion": "[1]", "schema": {"type": "object"}},
    {"grader": "exact_match", "completion": "x"},
]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "graders.toml"
    path.write_text('[sandbox]\nbackend = "none"\n[workers]\nprocesses = 1\n')
    return path


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_grade_file_with_embedded_server(tmp_path: Path, config: Path) -> None:
    src = write(tmp_path / "in.jsonl", [json.dumps(r) for r in ROWS] + [""])
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(app, ["grade", "-i", str(src), "-o", str(out), "--config", str(config)])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["status"] for x in lines] == ["passed", "passed", "failed", "invalid_request"]
    assert lines[0]["extra"] == {"k": 1} and lines[0]["id"] == "a" and lines[0]["reward"] == 1.0
    assert all({"reward", "status", "details", "duration_s"} <= set(x) for x in lines)
    assert not list(tmp_path.glob(".out.jsonl.*"))  # no temp file left behind


def test_malformed_line_names_file_and_line(tmp_path: Path, config: Path) -> None:
    src = write(tmp_path / "bad.jsonl", [json.dumps(ROWS[0]), "{not json", json.dumps({"grader": "math"})])
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(app, ["grade", "-i", str(src), "-o", str(out), "--config", str(config)])
    assert res.exit_code == 2
    assert f"{src}:2:" in res.output
    assert not out.exists()


def test_keep_going_records_error_rows(tmp_path: Path, config: Path) -> None:
    src = write(tmp_path / "bad.jsonl", [json.dumps(ROWS[0]), "{not json", json.dumps({"grader": "math"})])
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(app, ["grade", "-i", str(src), "-o", str(out), "--config", str(config),
                                   "--keep-going"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["status"] for x in lines] == ["passed", "invalid_request", "invalid_request"]
    assert f"{src}:2:" in lines[1]["message"] and "completion" in lines[2]["message"]


def test_rlvr_grade_no_longer_passes_the_restated_question(tmp_path: Path, config: Path) -> None:
    """Issue 9's reproduction: `rlvr grade` passed this completion for the answer 122."""
    hack = "To find 92 + 30, we need to perform the arithmetic operation within parentheses."
    prompt = "What is 92 + 30? Reply with only the number."
    rows = [
        {"grader": "math", "completion": hack, "answer": "122"},
        {"grader": "math", "completion": hack, "answer": "122", "prompt": prompt},
        {"grader": "math", "completion": "\\boxed{92 + 30}", "answer": "122", "prompt": prompt},
        {"grader": "math", "completion": "92 + 30 = 122", "answer": "122", "prompt": prompt},
        {"grader": "math", "completion": "\\boxed{3}", "answer": "3\\pi"},
        {"grader": "math", "completion": "\\boxed{1}", "answer": "\\frac{1}{"},
        {"grader": "last_integer", "completion": hack, "answer": "122"},
    ]
    src = write(tmp_path / "in.jsonl", [json.dumps(r) for r in rows])
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(app, ["grade", "-i", str(src), "-o", str(out), "--config", str(config)])
    assert res.exit_code == 0, res.output
    statuses = [json.loads(x)["status"] for x in out.read_text().splitlines()]
    assert statuses == ["failed", "failed", "failed", "passed", "failed", "invalid_request", "failed"]
