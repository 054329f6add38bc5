"""The problem kinds `rlvr data check` reports, their severity, and the collector that counts them.

A new check adds its kind to KINDS (severity + one-line description, shown in the report) and records
findings through `Findings.add`; the collector keeps the count, every location (for --json) and which rows
--write-clean must drop."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Kind:
    severity: Severity
    description: str
    drop: bool
    """--write-clean leaves such rows out (every error, and near-duplicates)."""


def _error(description: str) -> Kind:
    return Kind("error", description, drop=True)


KINDS: dict[str, Kind] = {
    "invalid_utf8": _error("line is not valid UTF-8 (or holds an unpaired surrogate)"),
    "unparseable": _error("line is not one JSON value"),
    "wrong_type": _error("a field has the wrong type"),
    "missing_field": _error("no 'messages', nor 'prompt' + 'completion'"),
    "missing_role": _error("a message has no role"),
    "unknown_role": _error("a message role is not system/user/assistant/tool"),
    "empty_content": _error("a message (or prompt/completion) is empty"),
    "control_characters": _error("text holds control characters (other than tab/newline/CR)"),
    "no_final_assistant": _error("the conversation does not end with an assistant turn"),
    "system_not_first": _error("a system turn that is not the first message"),
    "consecutive_user": _error("two user turns in a row"),
    "exact_duplicate": _error("same conversation as an earlier row"),
    "conflicting_duplicate": _error("same prompt as another row with a different final answer"),
    "fully_truncated": _error("--max-len cuts off every assistant token"),
    "contamination": _error("shares a 13-token n-gram (or a whole short item) with the held-out set"),
    "near_duplicate": Kind("warning", "near-duplicate of an earlier row (MinHash/LSH)", drop=True),
    "partially_truncated": Kind("warning", "--max-len cuts off part of the assistant tokens", drop=False),
    "low_assistant_share": Kind("warning", "assistant tokens are a small share of the row", drop=False),
}


@dataclass
class Finding:
    line: int
    detail: str


@dataclass
class Findings:
    """Problems found so far, by kind, in file order within each check."""

    by_kind: dict[str, list[Finding]] = field(default_factory=lambda: defaultdict(list))

    def add(self, kind: str, line: int, detail: str) -> None:
        if kind not in KINDS:
            raise KeyError(f"unknown problem kind {kind!r}: add it to trainer.datacheck.problems.KINDS")
        self.by_kind[kind].append(Finding(line, detail))

    def count(self, severity: Severity) -> int:
        return sum(len(v) for k, v in self.by_kind.items() if KINDS[k].severity == severity)

    def dropped_lines(self) -> dict[int, str]:
        """line → the first reason it is dropped by --write-clean (kinds in KINDS order)."""
        out: dict[int, str] = {}
        for kind, spec in KINDS.items():
            if spec.drop:
                for f in self.by_kind.get(kind, []):
                    out.setdefault(f.line, kind)
        return out

    def error_lines(self) -> set[int]:
        return {f.line for k, v in self.by_kind.items() if KINDS[k].severity == "error" for f in v}
