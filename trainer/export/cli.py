"""`rlvr export`: write a model (optionally with a LoRA adapter merged in) as an HF directory or a GGUF file,
then verify it against the model it came from (see export/verify.py). Exit 0 only when every check passed."""

from __future__ import annotations

import json
from pathlib import Path

import typer

EXIT_INPUT = 2
EXIT_CHECK_FAILED = 1


def _print_report(report: object) -> None:
    from trainer.export.exporter import Report

    assert isinstance(report, Report)
    for c in report.checks:
        typer.echo(f"  [{'PASS' if c.passed else 'FAIL'}] {c.name}: {c.detail}")
    for a in report.agreements:
        for d in a.divergences:
            typer.echo(f"    {a.reader} diverges on probe {d['probe']} at token {d['first_diff_token']}: "
                       f"reference {d['reference']!r} vs {d['got']!r}")  # fmt: skip
    rounding = report.info.get("rounding")
    if rounding:
        typer.echo(f"  {rounding['what']} (reported, not a check): top-1 {rounding['top1']:.2%}, greedy identical "
                   f"{rounding['greedy_same']}/{rounding['greedy_total']}")  # fmt: skip
    sizes = ", ".join(f"{k} {v:.1f} MB" for k, v in report.sizes_mb.items())
    typer.echo(f"  size on disk: {sizes}")
    if report.tokens_per_s:
        speeds = ", ".join(f"{k} {v:.1f}" for k, v in report.tokens_per_s.items())
        typer.echo(f"  generation tokens/s on the CPU: {speeds}")


def register(app: typer.Typer) -> None:
    """Add `rlvr export` to the rlvr CLI."""

    @app.command("export")
    def export_cmd(
        model: Path = typer.Option(..., "--model", help="HF model directory (the base when --adapter is given)."),
        out: Path = typer.Option(..., "--out", help="Output: a directory (hf) or a .gguf file (gguf)."),
        format: str = typer.Option("gguf", "--format", help="hf | gguf"),
        quant: str = typer.Option("f16", "--quant", help="GGUF tensor type: f16 | bf16 | q8_0."),
        adapter: Path | None = typer.Option(None, "--adapter", help="peft LoRA adapter to merge first."),
        compare: str = typer.Option("greedy", "--compare", help="greedy (real models) | logits (random models)."),
        max_new_tokens: int = typer.Option(32, help="Greedy tokens per probe."),
        threads: int = typer.Option(2, help="CPU threads for torch and llama.cpp."),
        report_json: Path | None = typer.Option(None, "--report", help="Also write the report as JSON here."),
    ) -> None:
        """Export a model for laptops and phones and verify the result (HF reload; GGUF via transformers'
        GGUF reader and llama.cpp on 50 probe prompts)."""
        from trainer.export.exporter import FORMATS, ExportOptions, run_export
        from trainer.export.gguf_writer import QUANTS, GgufWriteError
        from trainer.export.integrity import GgufIntegrityError
        from trainer.export.llama_layout import LayoutError
        from trainer.export.readers import ReaderError
        from trainer.export.source import SourceError
        from trainer.export.vocab import VocabError

        if format not in FORMATS:
            typer.echo(f"error: --format {format!r}: choose one of {', '.join(FORMATS)}", err=True)
            raise typer.Exit(EXIT_INPUT)
        if quant not in QUANTS:
            typer.echo(f"error: --quant {quant!r}: choose one of {', '.join(QUANTS)} (q4_k is not offered: "
                       "SmolLM2's 576-wide rows are not a multiple of its 256-wide blocks)", err=True)  # fmt: skip
            raise typer.Exit(EXIT_INPUT)
        if compare not in ("greedy", "logits"):
            typer.echo(f"error: --compare {compare!r}: choose greedy or logits", err=True)
            raise typer.Exit(EXIT_INPUT)
        opts = ExportOptions(model=model, out=out, format=format, quant=quant, adapter=adapter, compare=compare,
                             max_new_tokens=max_new_tokens, threads=threads)  # fmt: skip
        try:
            report = run_export(opts)
        except (SourceError, LayoutError, VocabError, GgufWriteError, GgufIntegrityError, ReaderError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(EXIT_INPUT) from None
        typer.echo(f"exported {out} ({format}{'' if format == 'hf' else ' ' + quant})")
        _print_report(report)
        if report_json:
            report_json.parent.mkdir(parents=True, exist_ok=True)
            report_json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        if not report.passed:
            failed = ", ".join(c.name for c in report.checks if not c.passed)
            where = f"; the file was renamed to {out}.unverified" if format == "gguf" else ""
            typer.echo(f"error: verification failed ({failed}){where}", err=True)
            raise typer.Exit(EXIT_CHECK_FAILED)
