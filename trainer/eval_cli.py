"""`rlvr eval --model DIR|FILE.gguf [--model ...] --config examples/eval_*.toml [--samples K] [--json OUT]`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

EXIT_CONFIG = 2
EXIT_SERVICE = 3


def eval_models(
    model: list[str] = typer.Option(..., "--model", "-m", help="HF dir, base, tiny or FILE.gguf; repeat to compare."),
    config: Path | None = typer.Option(None, "--config", "-c", help="Eval TOML (see examples/eval_*.toml)."),
    overrides: list[str] | None = typer.Argument(None, help="Config overrides, e.g. size=50 generation.max_tokens=32."),
    samples: int | None = typer.Option(None, "--samples", "-k", min=1, help="K samples per task for pass@k."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the numbers of every model as JSON here."),
) -> None:  # fmt: skip
    """Held-out accuracy (greedy, strict scorer), pass@k, reward means and grader status counts of each model,
    side by side; every prompt/completion/verdict goes to <out_dir>/<model>/eval_samples.jsonl."""
    from rich.console import Console

    from rlvr.config import ConfigError
    from rlvr.procs import ServiceStartError
    from trainer.cli import _setup_logging
    from trainer.data import DataError
    from trainer.eval_config import load_eval_config
    from trainer.eval_models import comparison_table, evaluate_models
    from trainer.export.readers import ReaderError
    from trainer.policy import PolicyError

    try:
        cfg = load_eval_config(config, list(overrides or []))
    except (ConfigError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    out_dir = cfg.out_dir or Path("runs") / time.strftime("eval-%Y%m%d-%H%M%S")
    _setup_logging()
    try:
        results = evaluate_models(cfg, model, out_dir, samples)
    except (PolicyError, DataError, ValueError, ReaderError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    except ServiceStartError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_SERVICE) from None
    Console().print(comparison_table(results))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps([r.to_dict() for r in results], indent=1))
    typer.echo(f"answers and verdicts: {out_dir}/<model>/eval_samples.jsonl")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_models)
