"""`rlvr data check`. Only typer and the standard library are imported at module level."""

from __future__ import annotations

from pathlib import Path

import typer

EXIT_USAGE = 2


def data_check(
    file: Path = typer.Argument(..., help="SFT JSONL: {messages} or {prompt, completion} rows (TRL's formats)."),
    eval_file: Path | None = typer.Option(None, "--eval", help="Held-out JSONL to check contamination against."),
    model: str = typer.Option("base", "--model", help="Model dir (or base/tiny) whose chat template and tokenizer "
                              "measure token lengths; 'none' skips the token checks."),
    max_len: int | None = typer.Option(None, "--max-len", min=1, help="Training max length: count truncated rows."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the whole report as JSON here."),
    write_clean_to: Path | None = typer.Option(None, "--write-clean", help="Write the rows that pass here "
                                               "(order kept; errors and near-duplicates dropped)."),
    threshold: float = typer.Option(0.8, "--near-dup-threshold", min=0.05, max=1.0,
                                    help="Estimated Jaccard similarity (word 3-grams) above which rows are "
                                    "near-duplicates."),
) -> None:  # fmt: skip
    """Check an SFT dataset: structure, duplicates, conflicts, contamination, token lengths.

    Exit 0 when no errors were found, 1 when some were, 2 for bad usage."""
    from trainer.datacheck.check import CheckUsageError, load_tokenizer, run_check, write_clean

    try:
        tok = None if model == "none" else load_tokenizer(model)
        report, _ = run_check(file, eval_path=eval_file, tokenizer=tok, model_name=None if tok is None else model,
                              max_len=max_len, threshold=threshold)  # fmt: skip
    except CheckUsageError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    typer.echo(report.render())
    if json_out is not None:
        report.write_json(json_out)
        typer.echo(f"report: {json_out}")
    if write_clean_to is not None:
        dropped = write_clean(report, write_clean_to)
        kept = report.lines - sum(dropped.values())
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(dropped.items())) or "none"
        typer.echo(f"clean: {write_clean_to}: kept {kept} of {report.lines} rows; dropped {sum(dropped.values())} "
                   f"({reasons})")  # fmt: skip
    raise typer.Exit(report.exit_code)


def register(group: typer.Typer) -> None:
    """`rlvr data check` on the data group."""
    group.command("check")(data_check)
