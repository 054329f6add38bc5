"""`rlvr data check` on small crafted files: each problem kind is detected at its line, a clean file passes,
--write-clean output re-checks clean, exit codes 0/1/2, --json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rlvr.cli import app
from trainer.datacheck.check import run_check
from trainer.datacheck.duplicates import final_answer

runner = CliRunner()


def conv(q: str, a: str, system: str | None = None) -> dict[str, Any]:
    msgs = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": q}, {"role": "assistant", "content": a}]  # fmt: skip
    return {"messages": msgs}


CLEAN = [
    conv("What is 12 + 29?", "12 + 29 = 41\nAnswer: 41"),
    {"prompt": "Translate to French: cat", "completion": " chat"},
    {"prompt": [{"role": "user", "content": "Name a colour."}],
     "completion": [{"role": "assistant", "content": "Blue."}]},
    conv("What is 3 + 4?", "3 + 4 = 7\nAnswer: 7", system="Be brief."),
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
                  {"role": "user", "content": "Add 1 and 1."}, {"role": "assistant", "content": "1 + 1 = 2"}]},
]


def write(path: Path, rows: list[Any]) -> Path:
    path.write_bytes(b"".join(r if isinstance(r, bytes) else (json.dumps(r) + "\n").encode() for r in rows))
    return path


@pytest.fixture(scope="module")
def tok(base_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(base_model_dir))


def kinds(path: Path, **kw: Any) -> dict[str, list[int]]:
    report, _ = run_check(path, **kw)
    return {k: [f.line for f in v] for k, v in report.findings.by_kind.items()}


STRUCTURAL = [
    (b"{not json\n", "unparseable"),
    (b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n', "invalid_utf8"),
    (json.dumps(conv("a\ud800b", "x")).encode() + b"\n", "invalid_utf8"),
    (json.dumps(conv("bell \x07 here", "x")).encode() + b"\n", "control_characters"),
    (b"[1, 2]\n", "wrong_type"),
    (json.dumps({"messages": "hello"}).encode() + b"\n", "wrong_type"),
    (json.dumps({"messages": [{"role": "user", "content": 3}]}).encode() + b"\n", "wrong_type"),
    (json.dumps({"prompt": "q", "completion": 5}).encode() + b"\n", "wrong_type"),
    (json.dumps({"text": "hello"}).encode() + b"\n", "missing_field"),
    (json.dumps({"messages": [{"content": "q"}, {"role": "assistant", "content": "a"}]}).encode() + b"\n",
     "missing_role"),
    (json.dumps({"messages": [{"role": "human", "content": "q"}, {"role": "assistant", "content": "a"}]}).encode()
     + b"\n", "unknown_role"),
    (json.dumps(conv("q", "   ")).encode() + b"\n", "empty_content"),
    (json.dumps({"prompt": "", "completion": "a"}).encode() + b"\n", "empty_content"),
    (json.dumps({"messages": [{"role": "user", "content": "q"}]}).encode() + b"\n", "no_final_assistant"),
    (json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "system", "content": "s"},
                              {"role": "assistant", "content": "a"}]}).encode() + b"\n", "system_not_first"),
    (json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "q2"},
                              {"role": "assistant", "content": "a"}]}).encode() + b"\n", "consecutive_user"),
    (json.dumps({"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "user", "content": "a"}]})
     .encode() + b"\n", "unknown_role"),
]  # fmt: skip


@pytest.mark.parametrize(("line", "kind"), STRUCTURAL, ids=[f"{k}-{i}" for i, (_, k) in enumerate(STRUCTURAL)])
def test_each_structural_problem_is_found_at_its_line(tmp_path: Path, line: bytes, kind: str) -> None:
    path = write(tmp_path / "d.jsonl", [CLEAN[0], line, CLEAN[1]])
    found = kinds(path)
    assert found == {kind: [2]}


def test_clean_file_passes_with_token_stats(tmp_path: Path, tok: Any) -> None:
    path = write(tmp_path / "d.jsonl", CLEAN)
    report, rows = run_check(path, tokenizer=tok, model_name="base", max_len=512)
    assert report.exit_code == 0 and report.errors == 0 and report.warnings == 0, report.render()
    assert len(rows) == 5 and report.tokens is not None
    assert report.tokens.min <= report.tokens.median <= report.tokens.p95 <= report.tokens.max
    assert 0 < report.tokens.assistant_share < 1 and report.tokens.truncated_rows == 0


def test_duplicates_exact_near_and_conflicting(tmp_path: Path) -> None:
    long_a = ("First add the tens: 10 + 20 = 30. Then add the ones: 2 + 9 = 11. Together that is 30 + 11 = 41, "
              "which we double check by counting up from 12 in steps. Answer: 41")  # fmt: skip
    rows = [
        conv("What is 12 + 29?", long_a),                                   # 1
        conv("What is 12 + 29?", long_a),                                   # 2 exact duplicate of 1
        conv("What is 12 + 29?", long_a.replace("double check", "verify")),  # 3 near duplicate, same answer
        conv("What is 12 + 29?", "Count up: 41.\nAnswer: 41"),              # 4 another solution, same answer: fine
        conv("What is 5 + 5?", "Answer: 10"),                               # 5 conflicts with 6
        conv("What is 5 + 5?", "5 + 5 = 11\nAnswer: 11"),                   # 6
    ]
    found = kinds(write(tmp_path / "d.jsonl", rows))
    assert found == {"exact_duplicate": [2], "near_duplicate": [3], "conflicting_duplicate": [5, 6]}


@pytest.mark.parametrize(("text", "answer"), [
    ("so \\boxed{\\frac{1}{2}} is it", "\\frac{1}{2}"), ("steps\nAnswer: 1,234.", "1234"), ("#### 72", "72"),
    ("The total is 17 apples", "17"), ("Paris", "paris"), ("a\nFinal answer: Blue Whale", "blue whale"),
])  # fmt: skip
def test_final_answer(text: str, answer: str) -> None:
    assert final_answer(text) == answer


def test_contamination_13grams_boilerplate_and_short_items(tmp_path: Path) -> None:
    instruction = "Please think step by step and put the final answer after the word Answer at the very end."
    held = [{"prompt": f"{instruction} What is {i} + {i + 1}?", "answer": str(2 * i + 1)} for i in range(10)]
    held.append({"prompt": "The quick brown fox jumps over the lazy dog near the river bank today.",
                 "answer": "fox"})  # fmt: skip
    held.append({"prompt": "Who wrote War and Peace?", "answer": "Tolstoy"})
    eval_path = write(tmp_path / "held.jsonl", held)
    rows = [
        conv(f"{instruction} What is 100 + 200?", "Answer: 300"),              # 1 boilerplate only: clean
        conv("Story: the quick brown fox jumps over the lazy dog near the river bank today!", "ok"),  # 2 13-gram
        conv("Quiz: who wrote War and Peace? Reply briefly.", "Tolstoy"),       # 3 short item whole
        conv("What is 7?", "Answer: 3"),                                        # 4 held-out answers are too short
    ]
    report, _ = run_check(write(tmp_path / "d.jsonl", rows), eval_path=eval_path)
    found = {k: [f.line for f in v] for k, v in report.findings.by_kind.items()}
    assert found == {"contamination": [2, 3]}
    assert report.held_out_rows == 12 and report.boilerplate_ignored > 0
    assert "held-out line 11" in report.findings.by_kind["contamination"][0].detail


def test_truncation_and_low_assistant_share(tmp_path: Path, tok: Any) -> None:
    long_prompt = "word " * 300
    rows = [
        conv("What is 1 + 1?", "1 + 1 = 2\nAnswer: 2"),                  # 1 fits
        conv("Explain.", "A long answer " * 40),                         # 2 partially truncated
        conv(long_prompt, "ok"),                                         # 3 fully truncated, low share
    ]
    report, _ = run_check(write(tmp_path / "d.jsonl", rows), tokenizer=tok, model_name="base", max_len=100)
    found = {k: [f.line for f in v] for k, v in report.findings.by_kind.items()}
    assert found == {"partially_truncated": [2], "fully_truncated": [3], "low_assistant_share": [3]}
    assert report.exit_code == 1 and report.tokens is not None and report.tokens.truncated_rows == 2


def test_cli_exit_codes_json_and_write_clean_rechecks_clean(tmp_path: Path) -> None:
    rows: list[Any] = [*CLEAN, CLEAN[0], b"{oops\n", conv("What is 3 + 4?", "Answer: 8", system="Be brief.")]
    path = write(tmp_path / "d.jsonl", rows)
    clean, report_path = tmp_path / "clean.jsonl", tmp_path / "r.json"
    result = runner.invoke(app, ["data", "check", str(path), "--model", "none", "--json", str(report_path),
                                 "--write-clean", str(clean)])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert f"{path}:6: same as line 1" in result.output and f"{path}:7:" in result.output
    assert "kept 4 of 8 rows; dropped 4 (conflicting_duplicate 2, exact_duplicate 1, unparseable 1)" in result.output
    data = json.loads(report_path.read_text())
    assert data["exit_code"] == 1 and data["problems"]["conflicting_duplicate"]["count"] == 2
    assert [loc["line"] for loc in data["problems"]["conflicting_duplicate"]["locations"]] == [4, 8]
    assert clean.read_text().splitlines() == [json.dumps(r) for r in (CLEAN[0], CLEAN[1], CLEAN[2], CLEAN[4])]
    again = runner.invoke(app, ["data", "check", str(clean), "--model", "none"])
    assert again.exit_code == 0 and "OK: 0 error(s)" in again.output


def test_cli_bad_usage_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", CLEAN)
    assert runner.invoke(app, ["data", "check", str(tmp_path / "missing.jsonl")]).exit_code == 2
    result = runner.invoke(app, ["data", "check", str(path), "--model", str(tmp_path)])
    assert result.exit_code == 2 and "not an HF model directory" in result.output
    (tmp_path / "held.jsonl").write_text("{broken\n")
    result = runner.invoke(app, ["data", "check", str(path), "--model", "none", "--eval", str(tmp_path / "held.jsonl")])
    assert result.exit_code == 2 and "held.jsonl:1" in result.output
    assert runner.invoke(app, ["data", "check", str(path), "--max-len", "0"]).exit_code == 2


def test_contamination_templated_questions_match_only_the_whole_problem(tmp_path: Path) -> None:
    tpl = "State the final answer to the following arithmetic problem: {} =\nWork it out step by step, then answer."
    held = [{"messages": [{"role": "user", "content": tpl.format(f"{i} - {i + 3} + {2 * i + 1}")}], "answer": "0"}
            for i in range(10, 60)]  # fmt: skip
    eval_path = write(tmp_path / "held.jsonl", held)
    rows = [
        conv(tpl.format("10 - 13"), "Answer: -3"),            # 1 starts like held-out line 1: not contamination
        conv(tpl.format("11 - 14 + 23"), "Answer: 20"),       # 2 the same problem as held-out line 2
    ]
    report, _ = run_check(write(tmp_path / "d.jsonl", rows), eval_path=eval_path)
    found = report.findings.by_kind
    assert [f.line for f in found["contamination"]] == [2] and "held-out line 2" in found["contamination"][0].detail
