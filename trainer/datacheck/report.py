"""The result of `rlvr data check`: counts per problem kind with locations, token statistics, and the exit
code; rendered for people (first few file:line per kind) and as JSON for machines (every location)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.datacheck.lengths import TokenStats
from trainer.datacheck.problems import KINDS, Findings

SHOWN = 5
EXIT_OK = 0
EXIT_ERRORS = 1


@dataclass
class Report:
    path: Path
    lines: int
    """Non-blank lines read."""
    valid_rows: int
    """Rows that passed the structural checks."""
    findings: Findings
    near_duplicate_threshold: float
    tokens: TokenStats | None = None
    model: str | None = None
    eval_path: Path | None = None
    held_out_rows: int = 0
    boilerplate_ignored: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return self.findings.count("error")

    @property
    def warnings(self) -> int:
        return self.findings.count("warning")

    @property
    def exit_code(self) -> int:
        return EXIT_ERRORS if self.errors else EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        problems = {
            kind: {"severity": KINDS[kind].severity, "description": KINDS[kind].description, "count": len(found),
                   "locations": [{"line": f.line, "detail": f.detail} for f in found]}
            for kind in KINDS if (found := self.findings.by_kind.get(kind))
        }  # fmt: skip
        return {
            "file": str(self.path), "lines": self.lines, "valid_rows": self.valid_rows, "errors": self.errors,
            "warnings": self.warnings, "exit_code": self.exit_code, "problems": problems,
            "near_duplicate_threshold": self.near_duplicate_threshold, "model": self.model,
            "tokens": self.tokens.to_dict() if self.tokens else None,
            "eval_file": str(self.eval_path) if self.eval_path else None, "held_out_rows": self.held_out_rows,
            "boilerplate_5grams_ignored": self.boilerplate_ignored, "notes": self.notes,
        }  # fmt: skip

    def write_json(self, out: Path) -> None:
        out.write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n")

    def render(self) -> str:
        """The human summary: one block per problem kind (errors first), then token statistics."""
        lines = [f"{self.path}: {self.lines} rows, {self.valid_rows} structurally valid"]
        for severity in ("error", "warning"):
            for kind, spec in KINDS.items():
                found = self.findings.by_kind.get(kind)
                if not found or spec.severity != severity:
                    continue
                lines.append(f"{severity}: {kind}: {len(found)} row(s) — {spec.description}")
                lines.extend(f"  {self.path}:{f.line}: {f.detail}" for f in found[:SHOWN])
                if len(found) > SHOWN:
                    lines.append(f"  ... and {len(found) - SHOWN} more (--json lists all)")
        lines.append(f"near-duplicates: MinHash/LSH, estimated Jaccard >= {self.near_duplicate_threshold} "
                     "on word 3-grams")  # fmt: skip
        if self.eval_path is not None:
            lines.append(f"contamination: 13-grams vs {self.eval_path} ({self.held_out_rows} rows; "
                         f"{self.boilerplate_ignored} 5-grams in >1% of them cut out as boilerplate)")  # fmt: skip
        t = self.tokens
        if t is not None:
            lines.append(f"tokens ({self.model} chat template): min {t.min}  median {t.median:.0f}  p95 {t.p95:.0f}  "
                         f"max {t.max}  total {t.total_tokens}")  # fmt: skip
            if t.max_len is not None:
                lines.append(f"--max-len {t.max_len}: {t.truncated_rows} row(s) truncated")
            lines.append(f"assistant tokens (what the loss sees): {t.assistant_tokens} = {t.assistant_share:.1%}")
        lines.extend(f"note: {n}" for n in self.notes)
        verdict = "FAIL" if self.errors else "OK"
        lines.append(f"{verdict}: {self.errors} error(s), {self.warnings} warning(s)")
        return "\n".join(lines)
