"""`rlvr pipeline run FILE.toml [--from STAGE] [--only STAGE] [--resume] [key=value ...]`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130

pipeline_app = typer.Typer(help="Run a chain of stages (SFT → GRPO → distill → export → eval) in one run dir.",
                           no_args_is_help=True)  # fmt: skip


def _show_plan(decisions: list[Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="pipeline plan")
    for col in ("stage", "action", "why"):
        table.add_column(col)
    for d in decisions:
        table.add_row(d.stage, d.action, d.reason)
    Console(stderr=True).print(table)


@pipeline_app.command("run")
def pipeline_run(
    config: Path = typer.Argument(..., help="Pipeline TOML (see examples/pipeline_*.toml)."),
    overrides: list[str] | None = typer.Argument(None, help="Overrides of the pipeline file, e.g. run_dir=runs/x."),
    from_stage: str | None = typer.Option(None, "--from", help="Re-run this stage and every stage after it."),
    only: str | None = typer.Option(None, "--only", help="Run just this stage (its inputs must exist)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted stage from its last checkpoint."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the config, print the plan and exit."),
) -> None:  # fmt: skip
    """Run the pipeline's stages in order; finished stages whose config is unchanged are skipped."""
    from pipeline.config import load_pipeline
    from pipeline.manifest import PlanError
    from pipeline.runner import PipelineRun, StageFailed
    from rlvr.config import ConfigError
    from trainer.cli import _setup_logging, _sigterm_to_exit

    try:
        cfg = load_pipeline(config, list(overrides or []))
        run = PipelineRun(cfg, str(config))
        if dry_run:
            _show_plan(run.plan(resume, from_stage, only))
            return
    except (ConfigError, PlanError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    _setup_logging()
    _sigterm_to_exit()
    code = 0
    try:
        run.execute(resume, from_stage, only, on_decisions=_show_plan)
    except PlanError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    except StageFailed as e:
        typer.echo(f"error: {e}\nearlier stages' outputs are kept; fix the cause and re-run (finished stages are "
                   "skipped; add --resume to continue the failed stage from its checkpoint)", err=True)  # fmt: skip
        code = EXIT_FAILED
    except KeyboardInterrupt:
        typer.echo("interrupted; continue with --resume", err=True)
        code = EXIT_INTERRUPTED
    typer.echo(f"run dir: {cfg.run_dir}\nreport: {Path(str(cfg.run_dir)) / 'report.html'}")
    if code:
        raise typer.Exit(code)


@pipeline_app.command("status")
def pipeline_status(run_dir: Path = typer.Argument(..., help="The pipeline's run dir.")) -> None:
    """Each stage's status, output, held-out accuracy and wall time, from the run dir's manifest."""
    from rich.console import Console
    from rich.table import Table

    from report.records import load_stages
    from report.render import pipeline_rows

    stages, manifest = load_stages(run_dir)
    if manifest is None:
        typer.echo(f"error: {run_dir}: no manifest.json (not a pipeline run dir)", err=True)
        raise typer.Exit(EXIT_CONFIG)
    cols = ("stage", "kind", "status", "output", "accuracy", "size", "wall")
    table = Table(title=f"{manifest.get('name') or run_dir} ({run_dir})")
    for col in cols:
        table.add_column(col)
    for row in pipeline_rows(stages):
        table.add_row(*(row[c] for c in cols))
        if row["error"]:
            table.add_row("", "", "", f"[red]{row['error']}[/red]", "", "", "")
    Console().print(table)


def register(app: typer.Typer) -> None:
    from pipeline.demo import demo

    app.add_typer(pipeline_app, name="pipeline")
    app.command("demo")(demo)
