"""`rlvr train distill`. Only typer and the standard library are imported at module level; the config is parsed
(and reported) before torch or any model is loaded."""

from __future__ import annotations

from pathlib import Path

import typer

from trainer.cli import EXIT_CONFIG, EXIT_INTERRUPTED, EXIT_SERVICE, _setup_logging, _sigterm_to_exit


def train_distill(
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML run config (see examples/distill_*.toml)."),
    overrides: list[str] | None = typer.Argument(None, help="Config overrides, e.g. train.steps=50 kd.top_k=64."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in run_dir."),
    show_config: bool = typer.Option(False, "--show-config", help="Print the resolved config and exit."),
) -> None:
    """Distill a teacher into a student (mode = logits | sequence), e.g. one made by `rlvr models shrink`.

    Writes <run_dir>/metrics.jsonl, tasks.jsonl, tensorboard/, checkpoints/, student/ (the distilled model) and,
    when the teacher samples, teacher_samples/verified.jsonl with per-prompt pass counts."""
    from trainer.cli import load_config_or_exit
    from trainer.distill.config import load_distill_config

    cfg = load_config_or_exit(load_distill_config, config, overrides, show_config)
    if cfg is None:
        return
    _setup_logging()
    _sigterm_to_exit()
    from rlvr.procs import ServiceStartError
    from rollout.client import RolloutError
    from trainer.data import DataError
    from trainer.distill.loop import DistillRunError, run_distill
    from trainer.policy import PolicyError

    try:
        summary = run_distill(cfg, resume=resume)
    except (PolicyError, DistillRunError, DataError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    except (ServiceStartError, RolloutError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_SERVICE) from None
    except KeyboardInterrupt:
        typer.echo("interrupted (continue with --resume)", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    typer.echo(f"done: {summary.steps} steps; student {summary.student_dir}; run dir {summary.run_dir}")
