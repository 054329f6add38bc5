"""`rlvr train sft`. Only typer and the standard library are imported at module level; the config is parsed
(and reported) before torch, TRL or the model are loaded."""

from __future__ import annotations

from pathlib import Path

import typer

EXIT_DATA = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130


def train_sft(
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML run config (see examples/sft_*.toml)."),
    overrides: list[str] | None = typer.Argument(None, help="Config overrides, e.g. train.steps=50 optim.lr=1e-5."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last complete checkpoint in run_dir."),
    show_config: bool = typer.Option(False, "--show-config", help="Print the resolved config and exit."),
    skip_check: bool = typer.Option(False, "--skip-check", help="Train even when the data check finds errors."),
) -> None:
    """Supervised fine-tuning (warm-up before GRPO) on TRL's SFTTrainer, loss on assistant tokens only.

    Runs `rlvr data check` on data.path first. Writes <run_dir>/metrics.jsonl, tensorboard/, checkpoints/,
    data_check.json and model/ (an HF model directory for `rlvr train grpo model.path=...`)."""
    from trainer.cli import load_config_or_exit
    from trainer.sft.config import load_sft_config

    cfg = load_config_or_exit(load_sft_config, config, overrides, show_config)
    if cfg is None:
        return
    from trainer.cli import _setup_logging, _sigterm_to_exit
    from trainer.data import DataError
    from trainer.datacheck.check import CheckUsageError
    from trainer.policy import PolicyError
    from trainer.sft.encode import TemplateError
    from trainer.sft.run import DataCheckFailed, RunDirError, run_sft

    _setup_logging()
    _sigterm_to_exit()
    try:
        summary = run_sft(cfg, resume=resume, skip_check=skip_check)
    except DataCheckFailed as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_DATA) from None
    except (RunDirError, PolicyError, DataError, CheckUsageError, TemplateError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    except KeyboardInterrupt:
        typer.echo("interrupted (continue with --resume)", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    loss = ("" if summary.first_eval_loss is None else
            f"; held-out loss {summary.first_eval_loss:.4f} → {summary.last_eval_loss:.4f}")  # fmt: skip
    typer.echo(f"done: {summary.steps} steps{loss}; model {summary.model_dir}")


def register(group: typer.Typer) -> None:
    """`rlvr train sft` on the train group."""
    group.command("sft")(train_sft)
