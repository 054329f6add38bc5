"""`rlvr report RUN_DIR`: (re)build a run's report.html, at any time, also while the run is going."""

from __future__ import annotations

from pathlib import Path

import typer

EXIT_CHECK_FAILED = 1
EXIT_ERROR = 2


def report(
    run_dir: Path = typer.Argument(..., help="A pipeline run dir (with manifest.json) or one stage's run dir."),
    out: Path | None = typer.Option(None, "--out", help="Where to write report.html and its PNGs (default RUN_DIR)."),
    check: bool = typer.Option(False, "--check", help="Open the report in headless Chromium: fail on any image "
                               "that did not render or any console error; write a screenshot beside it."),
) -> None:  # fmt: skip
    """Render report.html (self-contained: plots inlined) plus the plot PNGs from the run dir's metrics."""
    from report.render import render_report

    try:
        path = render_report(run_dir, out)
    except FileNotFoundError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_ERROR) from None
    typer.echo(f"report: {path}")
    if check:
        from report.browser import BrowserError, check_page

        try:
            result = check_page(path)
        except BrowserError as e:
            typer.echo(f"error: browser check could not run: {e}", err=True)
            raise typer.Exit(EXIT_ERROR) from None
        typer.echo(f"screenshot: {result.screenshot}")
        if not result.ok:
            typer.echo(f"browser check failed:\n{result.problems()}", err=True)
            raise typer.Exit(EXIT_CHECK_FAILED)
        typer.echo(f"browser check: {result.images} images rendered, no console errors")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
