"""Runs every check of `rlvr data check` over one file, and writes the cleaned copy.

Order: structure (rows.py) → exact, conflicting and near duplicates (duplicates.py) → contamination
(contamination.py) → token lengths (lengths.py). Later checks skip rows an earlier check already made errors
of, so a row is reported once per reason that drops it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from trainer.datacheck.contamination import HeldOutError, contamination, load_held_out
from trainer.datacheck.duplicates import conflicting_duplicates, exact_duplicates, near_duplicates
from trainer.datacheck.lengths import token_checks
from trainer.datacheck.ngrams import Vocab
from trainer.datacheck.problems import Findings
from trainer.datacheck.report import Report
from trainer.datacheck.rows import Row, iter_lines, read_rows

NEAR_DUPLICATE_THRESHOLD = 0.8


class CheckUsageError(ValueError):
    """The check cannot run as asked (missing file, unreadable held-out file, model without a tokenizer)."""


def load_tokenizer(model: str) -> Any:
    """The tokenizer of an HF model directory, or of the bundled "base" / "tiny" model."""
    from transformers import AutoTokenizer

    from rlvr.models import prepare_base_model, prepare_tiny_model

    try:
        path = prepare_base_model() if model == "base" else prepare_tiny_model() if model == "tiny" else Path(model)
        if not (path / "tokenizer_config.json").is_file():
            raise CheckUsageError(f"--model {model}: not an HF model directory (no tokenizer_config.json)")
        return AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        raise CheckUsageError(f"--model {model}: {e}") from None


def run_check(
    path: Path, *, eval_path: Path | None = None, tokenizer: Any = None, model_name: str | None = None,
    max_len: int | None = None, threshold: float = NEAR_DUPLICATE_THRESHOLD, chat_template: str | None = None,
) -> tuple[Report, list[Row]]:  # fmt: skip
    """Check `path`; returns the report and the structurally valid rows (in file order)."""
    if not path.is_file():
        raise CheckUsageError(f"{path}: no such file")
    if eval_path is not None and not eval_path.is_file():
        raise CheckUsageError(f"--eval {eval_path}: no such file")
    findings = Findings()
    rows, total = read_rows(path, findings)
    report = Report(path=path, lines=total, valid_rows=len(rows), findings=findings,
                    near_duplicate_threshold=threshold, model=model_name, eval_path=eval_path)  # fmt: skip
    dups = exact_duplicates(rows, findings)
    conflicting_duplicates(rows, findings, skip=dups)
    # Word ids of every message, once, for both the shingles and the held-out n-grams (one vocabulary).
    vocab = Vocab()
    words = {r.line: [vocab.ids(m["content"]) for m in r.messages] for r in rows}
    near_duplicates(rows, findings, skip=findings.error_lines(), threshold=threshold, words=words)
    if eval_path is not None:
        try:
            held = load_held_out(eval_path, vocab)
        except HeldOutError as e:
            raise CheckUsageError(str(e)) from None
        report.held_out_rows, report.boilerplate_ignored = held.rows, held.ignored
        contamination(rows, findings, held, vocab, skip=findings.error_lines(), words=words)
    if tokenizer is not None:
        from trainer.sft.encode import TemplateError

        try:
            report.tokens = token_checks(rows, findings, tokenizer, max_len, skip=findings.error_lines(),
                                         chat_template=chat_template)  # fmt: skip
        except TemplateError as e:
            raise CheckUsageError(f"--model {model_name}: {e}") from None
    else:
        report.notes.append("no tokenizer: token lengths, truncation and assistant share not checked")
    return report, rows


def write_clean(report: Report, out: Path) -> Counter[str]:
    """Copy the rows that survive (no error, no near-duplicate) to `out` in file order; drops by reason."""
    drops = report.findings.dropped_lines()
    dropped: Counter[str] = Counter()
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("wb") as f:
        for n, raw in iter_lines(report.path):
            if n in drops:
                dropped[drops[n]] += 1
            else:
                f.write(raw + b"\n")
    tmp.replace(out)
    return dropped
